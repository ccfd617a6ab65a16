/* authmd-provider configuration: the same INI machinery as the server. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/fetch.h"
#include "core/str.h"
#include "core/url.h"
#include "provider/provider.h"

#define AT(f) offsetof(struct prov_config, f), sizeof(((struct prov_config *)0)->f)

static const struct cfg_key keys[] = {
	{"provider", "listen", CFG_HOSTPORT, AT(listen), "127.0.0.1:4000", 0, 127, NULL},
	{"provider", "issuer", CFG_URL, AT(issuer), "http://127.0.0.1:4000", 1, 255, NULL},
	{"provider", "client_id", CFG_URL, AT(client_id), "", 0, 255, NULL},
	{"provider", "client_name", CFG_STRING, AT(client_name), "authmd provider", 1, 127, NULL},
	{"provider", "threads", CFG_UINT, AT(threads), "4", 1, 64, NULL},
	{"store", "url", CFG_STRING, AT(store_url), "sqlite:var/provider.db", 1, AM_CFG_STR - 1,
	 NULL},
	{"keys", "alg", CFG_STRING, AT(keys_alg), "ES256", 1, 7, "ES256|RS256|PS256"},
	{"keys", "dir", CFG_STRING, AT(keys_dir), "var/provider-keys", 1, 255, NULL},
	{"keys", "overlap", CFG_SECONDS, AT(keys_overlap), "86400", 1, 2592000, NULL},
	{"keys", "jwks_max_age", CFG_SECONDS, AT(jwks_max_age), "600", 0, 86400, NULL},
	{"idjag", "ttl", CFG_SECONDS, AT(idjag_ttl), "300", 10, 3600, NULL},
	{"revocation", "max_attempts", CFG_UINT, AT(retry_max_attempts), "10", 1, 100, NULL},
	{"revocation", "retry_base", CFG_SECONDS, AT(retry_base), "2", 1, 3600, NULL},
	{"revocation", "retry_max", CFG_SECONDS, AT(retry_max), "600", 1, 86400, NULL},
	{"log", "level", CFG_STRING, AT(log_level), "info", 0, 15, "debug|info|warn|error"},
	/* outbound requests (core/fetch.h) and where logout tokens may go */
	{"outbound", "allow_private_targets", CFG_STRING, AT(outbound_allow), "", 0, 255, NULL},
	{"revocation", "allowed_origins", CFG_STRING, AT(revocation_origins), "", 0, 511, NULL},
};

const struct cfg_key *
prov_config_keys(size_t *n)
{
	*n = sizeof(keys) / sizeof(keys[0]);
	return keys;
}

/* Each space-separated word of list must be an http(s) origin; the list
 * is rewritten in canonical form (core/url.h: lower-cased host, no default
 * port), the form grants are compared in. */
static int
origins_check(char *list, size_t cap, char *err, size_t errcap)
{
	char word[AM_CFG_STR], origin[300];
	struct am_buf out = {0};
	int rc = 0;

	for (const char *p = list + strspn(list, " "); *p != '\0'; p += strspn(p, " ")) {
		size_t n = strcspn(p, " ");

		snprintf(word, sizeof(word), "%.*s", (int)n, p);
		if (!am_url_is_origin_text(word) ||
		    !am_url_origin_of(word, origin, sizeof(origin))) {
			snprintf(err, errcap, "\"%.80s\" is not an origin (scheme://host[:port])",
				 word);
			rc = -1;
			goto out;
		}
		if (out.len > 0)
			am_buf_puts(&out, " ");
		am_buf_puts(&out, origin);
		p += n;
	}
	if (!am_copy(list, cap, out.data != NULL ? out.data : "")) {
		snprintf(err, errcap, "too long");
		rc = -1;
	}
out:
	am_buf_free(&out);
	return rc;
}

static int
validate(struct prov_config *c, char *err, size_t errcap)
{
	size_t n = strlen(c->issuer);
	char why[160];

	while (n > 0 && c->issuer[n - 1] == '/')
		c->issuer[--n] = '\0';
	if (c->client_id[0] == '\0')
		am_copy(c->client_id, sizeof(c->client_id), c->issuer);
	if (am_parse_hostport(c->listen, c->listen_host, sizeof(c->listen_host), &c->listen_port) !=
	    0) {
		snprintf(err, errcap, "[provider] listen must be host:port");
		return -1;
	}
	if (am_fetch_allow_check(c->outbound_allow, why, sizeof(why)) != 0) {
		snprintf(err, errcap, "[outbound] allow_private_targets: %s", why);
		return -1;
	}
	if (origins_check(c->revocation_origins, sizeof(c->revocation_origins), why, sizeof(why)) !=
	    0) {
		snprintf(err, errcap, "[revocation] allowed_origins: %s", why);
		return -1;
	}
	if (c->retry_max < c->retry_base) {
		snprintf(err, errcap, "[revocation] retry_max must be at least retry_base");
		return -1;
	}
	if (c->keys_overlap < c->idjag_ttl) {
		snprintf(err, errcap,
			 "[keys] overlap must be at least [idjag] ttl, or tokens "
			 "signed just before a rotation stop verifying early");
		return -1;
	}
	return 0;
}

void
prov_config_defaults(struct prov_config *c)
{
	char err[128];

	memset(c, 0, sizeof(*c));
	am_cfg_defaults(c, keys, sizeof(keys) / sizeof(keys[0]));
	if (validate(c, err, sizeof(err)) != 0)
		abort();
}

static int
set_key(void *ctx, const char *section, const char *key, const char *value, char *err,
	size_t errcap)
{
	return am_cfg_set_in(ctx, keys, sizeof(keys) / sizeof(keys[0]), section, key, value, err,
			     errcap);
}

int
prov_config_load(const char *path, struct prov_config *c, char *err, size_t errcap)
{
	char why[200];

	prov_config_defaults(c);
	if (path == NULL)
		return 0;
	c->client_id[0] = '\0';
	if (am_cfg_parse(path, set_key, c, err, errcap) != 0)
		return -1;
	if (validate(c, why, sizeof(why)) != 0) {
		snprintf(err, errcap, "%s: %s", path, why);
		return -1;
	}
	return 0;
}
