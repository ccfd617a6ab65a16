/* authmd-mangen: writes authmd.ini(5) from its hand-written frame (argv[1])
 * and the configuration key table of core/config.c, so that the page lists
 * exactly the keys, types, defaults and ranges the server accepts.
 *
 * usage: authmd-mangen FRAME VERSION > authmd.ini.5
 * The frame is roff; a line "@KEYS@" becomes the key table and "@VERSION@"
 * anywhere becomes VERSION. Exit 0, or 1 with the reason on stderr. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"

/* Text with roff's special characters escaped, for use inside a line. */
static void
roff(FILE *out, const char *s)
{
	if (s[0] == '.' || s[0] == '\'')
		fputs("\\&", out);
	for (; *s != '\0'; s++) {
		if (*s == '\\')
			fputs("\\e", out);
		else if (*s == '-')
			fputs("\\-", out);
		else
			fputc(*s, out);
	}
}

static void
choices(FILE *out, const char *list)
{
	char buf[256], *save = NULL;
	bool first = true;

	snprintf(buf, sizeof(buf), "%s", list);
	fputs("one of ", out);
	for (char *t = strtok_r(buf, "|", &save); t != NULL; t = strtok_r(NULL, "|", &save)) {
		fputs(first ? "" : ", ", out);
		fputs("\\fB", out);
		roff(out, t);
		fputs("\\fP", out);
		first = false;
	}
}

static void
key(FILE *out, const struct cfg_key *k)
{
	fputs(".TP\n.B ", out);
	roff(out, k->key);
	fputc('\n', out);
	switch (k->type) {
	case CFG_STRING:
		if (k->choices != NULL)
			choices(out, k->choices);
		else
			fprintf(out, "text of %lld to %lld bytes", (long long)k->min,
				(long long)k->max);
		break;
	case CFG_URL:
		fprintf(out, "an absolute URL of at most %lld bytes%s", (long long)k->max,
			k->def[0] == '\0' ? ", or empty" : "");
		break;
	case CFG_HOSTPORT:
		fputs("\\fIhost\\fP:\\fIport\\fP (IPv6 as ::1:8000)", out);
		break;
	case CFG_SECONDS:
		fprintf(out, "seconds, %lld to %lld", (long long)k->min, (long long)k->max);
		break;
	case CFG_UINT:
		fprintf(out, "an integer, %lld to %lld", (long long)k->min, (long long)k->max);
		break;
	case CFG_BOOL:
		fputs("\\fBon\\fP or \\fBoff\\fP", out);
		break;
	case CFG_SCOPES:
		fputs("space-separated scope names", out);
		break;
	}
	fputs(".\nDefault: ", out);
	if (k->def[0] == '\0') {
		fputs("empty.\n", out);
	} else {
		fputs("\\fB", out);
		roff(out, k->def);
		fputs("\\fP.\n", out);
	}
}

static void
table(FILE *out)
{
	size_t n = 0, np = 0;
	const struct cfg_key *keys = am_config_keys(&n);
	const struct cfg_key *pkeys = am_config_provider_keys(&np);
	const char *section = NULL;

	for (size_t i = 0; i < n; i++) {
		if (section == NULL || strcmp(section, keys[i].section) != 0) {
			section = keys[i].section;
			fputs(".SS \"[", out);
			roff(out, section);
			fputs("]\"\n", out);
		}
		key(out, &keys[i]);
	}
	fputs(".SS \"[provider \\fINAME\\fP]\"\n"
	      "One section per trusted agent provider (the trust list); "
	      "\\fBissuer\\fP is required.\n",
	      out);
	for (size_t i = 0; i < np; i++)
		key(out, &pkeys[i]);
}

int
main(int argc, char **argv)
{
	FILE *in;
	char line[4096];

	if (argc != 3) {
		fprintf(stderr, "usage: authmd-mangen FRAME VERSION\n");
		return 1;
	}
	if ((in = fopen(argv[1], "r")) == NULL) {
		perror(argv[1]);
		return 1;
	}
	while (fgets(line, sizeof(line), in) != NULL) {
		const char *p = line, *at;

		if (strcmp(line, "@KEYS@\n") == 0) {
			table(stdout);
			continue;
		}
		while ((at = strstr(p, "@VERSION@")) != NULL) {
			fwrite(p, 1, (size_t)(at - p), stdout);
			fputs(argv[2], stdout);
			p = at + strlen("@VERSION@");
		}
		fputs(p, stdout);
	}
	fclose(in);
	return fflush(stdout) == 0 ? 0 : 1;
}
