/* authmd: the agent's command line, a thin layer over include/authmd/client.h.
 * Exit codes are enum authmd_status (docs/agent.md). */
#include <curl/curl.h>
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "agent/mcp.h"
#include "agent/view.h"
#include "authmd/client.h"

#ifndef AUTHMD_VERSION
#define AUTHMD_VERSION "dev"
#endif

struct args {
	const char *cmd, *url, *email, *provider, *session, *cred_type, *otp, *method, *data,
		*store, *consent, *protocol, *code;
	const char *headers[32];
	int nheaders;
	bool json, yes, anonymous, help, version, allow_missing_issuer, dpop, readback, wait,
		no_wait;
};

static const char *const usage_text =
	"usage: authmd [--store FILE] [--allow-missing-issuer] [--protocol auto|v0.1|v0.6] "
	"[--dpop]\n"
	"              COMMAND [--json] ...\n"
	"\n"
	"  discover URL                       find how to register with a service\n"
	"  register URL [--anonymous | --email ADDR | --provider URL --session TOKEN]\n"
	"               [--consent once|always] [--credential-type api_key|access_token] [--yes]\n"
	"  claim URL [--email ADDR] [--otp CODE] [--no-wait | --wait]\n"
	"                                     claim a registration for the user: v0.1 by\n"
	"                                     the mailed code, v0.6 by a code the user\n"
	"                                     types at the service's page (polled)\n"
	"  claim URL --readback [--email ADDR] [--code CODE]\n"
	"                                     v0.6: the user confirms at a URL and reads a\n"
	"                                     code back (without --code: print the URL, ask)\n"
	"  curl URL [-X METHOD] [-d DATA] [-H 'Name: value']...\n"
	"                                     call the API with the stored credential\n"
	"  refresh URL                        rotate the v0.6 refresh token: a new identity\n"
	"                                     assertion and access token (automatic when\n"
	"                                     the assertion expired before an exchange)\n"
	"  status                             what is stored\n"
	"  forget URL                         drop what is stored for a service\n"
	"  mcp                                serve these as MCP tools on stdin/stdout\n"
	"\n"
	"--consent once|always is the user's consent at the provider, asked for in this\n"
	"command: without it no grant is made, and an existing grant is never widened.\n"
	"--yes answers prompts only; it grants nothing.\n"
	"--allow-missing-issuer accepts authorization server metadata with no issuer\n"
	"(old services only; by default such metadata is refused, exit 7).\n"
	"--protocol picks the generation to register with: auto (default) speaks v0.6\n"
	"(/agent/identity, then the token endpoint) when the service offers it, else\n"
	"v0.1 (/agent/auth); v0.1 or v0.6 forces one.\n"
	"--dpop binds v0.6 access tokens to a key kept beside the credentials file\n"
	"(dpop-key.pem, mode 0600) and sends a DPoP proof (RFC 9449) with every use.\n"
	"  -h, --help       this text          -V, --version    the version\n"
	"\n"
	"The provider session may also come from $AUTHMD_SESSION, which keeps it out of\n"
	"the process list. Credentials live in $XDG_CONFIG_HOME/authmd/credentials.json.\n"
	"Exit codes: 0 ok, 1 failed, 2 usage, 3 network or 5xx, 4 refused by the service,\n"
	"5 a person must act, 6 credentials file, 7 the service breaks the protocol;\n"
	"see authmd(1).\n";

static int
usage(FILE *f, int rc)
{
	fputs(usage_text, f);
	return rc;
}

/* Fills *a from argv with getopt_long: options anywhere, then the command
 * and its URL in order. False on a usage error (an unknown option, a
 * missing value, too many -H, a third word). */
static bool
parse(int argc, char **argv, struct args *a)
{
	enum {
		OPT_JSON = 256,
		OPT_ANON,
		OPT_EMAIL,
		OPT_PROVIDER,
		OPT_SESSION,
		OPT_TYPE,
		OPT_OTP,
		OPT_STORE,
		OPT_CONSENT,
		OPT_ALLOW_MISSING_ISSUER,
		OPT_PROTOCOL,
		OPT_DPOP,
		OPT_READBACK,
		OPT_CODE,
		OPT_WAIT,
		OPT_NO_WAIT
	};
	static const struct option opts[] = {
		{"json", no_argument, NULL, OPT_JSON},
		{"yes", no_argument, NULL, 'y'},
		{"anonymous", no_argument, NULL, OPT_ANON},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{"email", required_argument, NULL, OPT_EMAIL},
		{"provider", required_argument, NULL, OPT_PROVIDER},
		{"session", required_argument, NULL, OPT_SESSION},
		{"credential-type", required_argument, NULL, OPT_TYPE},
		{"otp", required_argument, NULL, OPT_OTP},
		{"store", required_argument, NULL, OPT_STORE},
		{"consent", required_argument, NULL, OPT_CONSENT},
		{"allow-missing-issuer", no_argument, NULL, OPT_ALLOW_MISSING_ISSUER},
		{"protocol", required_argument, NULL, OPT_PROTOCOL},
		{"dpop", no_argument, NULL, OPT_DPOP},
		{"readback", no_argument, NULL, OPT_READBACK},
		{"code", required_argument, NULL, OPT_CODE},
		{"wait", no_argument, NULL, OPT_WAIT},
		{"no-wait", no_argument, NULL, OPT_NO_WAIT},
		{"request", required_argument, NULL, 'X'},
		{"data", required_argument, NULL, 'd'},
		{"header", required_argument, NULL, 'H'},
		{NULL, 0, NULL, 0},
	};
	int ch;

	memset(a, 0, sizeof(*a));
	while ((ch = getopt_long(argc, argv, "yhVX:d:H:", opts, NULL)) != -1) {
		const char **slot = NULL;

		switch (ch) {
		case OPT_JSON:
			a->json = true;
			break;
		case 'y':
			a->yes = true;
			break;
		case OPT_ANON:
			a->anonymous = true;
			break;
		case OPT_ALLOW_MISSING_ISSUER:
			a->allow_missing_issuer = true;
			break;
		case OPT_DPOP:
			a->dpop = true;
			break;
		case OPT_READBACK:
			a->readback = true;
			break;
		case OPT_CODE:
			slot = &a->code;
			break;
		case OPT_WAIT:
			a->wait = true;
			break;
		case OPT_NO_WAIT:
			a->no_wait = true;
			break;
		case 'h':
			a->help = true;
			break;
		case 'V':
			a->version = true;
			break;
		case OPT_EMAIL:
			slot = &a->email;
			break;
		case OPT_PROVIDER:
			slot = &a->provider;
			break;
		case OPT_SESSION:
			slot = &a->session;
			break;
		case OPT_TYPE:
			slot = &a->cred_type;
			break;
		case OPT_OTP:
			slot = &a->otp;
			break;
		case OPT_CONSENT:
			slot = &a->consent;
			break;
		case OPT_STORE:
			slot = &a->store;
			break;
		case OPT_PROTOCOL:
			slot = &a->protocol;
			break;
		case 'X':
			slot = &a->method;
			break;
		case 'd':
			slot = &a->data;
			break;
		case 'H':
			if (a->nheaders >= 31)
				return false;
			a->headers[a->nheaders++] = optarg;
			break;
		default:
			return false;
		}
		if (slot != NULL)
			*slot = optarg;
	}
	for (; optind < argc; optind++) {
		if (a->cmd == NULL)
			a->cmd = argv[optind];
		else if (a->url == NULL)
			a->url = argv[optind];
		else
			return false;
	}
	return true;
}

/* ---- output ---- */

static int
report_error(const struct args *a, const struct authmd_error *e)
{
	if (a->json) {
		json_t *o = json_pack("{s:b, s:{s:i, s:i, s:s, s:s, s:s?}}", "ok", 0, "error",
				      "status", (int)e->status, "http_status", e->http_status,
				      "code", e->code, "message", e->message, "advice", e->advice);

		json_dumpf(o, stdout, JSON_COMPACT);
		putchar('\n');
		json_decref(o);
	} else {
		fprintf(stderr, "authmd: %s\n", e->message);
		if (e->advice != NULL)
			fprintf(stderr, "%s\n", e->advice);
	}
	return e->status != AUTHMD_OK ? (int)e->status : 1;
}

static void
emit(const struct args *a, json_t *o)
{
	if (a->json) {
		json_object_set_new(o, "ok", json_true());
		json_dumpf(o, stdout, JSON_COMPACT | JSON_SORT_KEYS);
		putchar('\n');
	}
	json_decref(o);
}

/* Says in one line what happened to the user's consent. */
static void
say_consent(FILE *f, const struct args *a, const struct authmd_grant *g)
{
	const char *mode = g->mode[0] != '\0' ? g->mode : "unstated";

	if (g->created)
		fprintf(f,
			"consent: created a %s grant %s at the provider, as asked (--consent %s)\n",
			mode, g->id, a->consent);
	else if (g->kept_as_is)
		fprintf(f,
			"consent: used the user's existing %s grant %s unchanged; it was not "
			"replaced or changed to %s (change it at the provider if the user wants "
			"that)\n",
			mode, g->id, a->consent);
	else
		fprintf(f, "consent: used the user's existing %s grant %s; nothing was changed\n",
			mode, g->id);
}

/* ---- prompts ---- */

/* Prompts go to stderr and answers come from stdin, only when stdin is a
 * terminal: a script never blocks on a question it cannot see. */
static bool
interactive(void)
{
	return isatty(STDIN_FILENO) == 1;
}

static bool
ask_consent(const struct args *a, const struct authmd_discovery *d)
{
	char line[16] = "";

	if (a->yes)
		return true;
	if (!interactive())
		return false;
	fprintf(stderr,
		"Your identity will be asserted to this service:\n"
		"  name:   %s\n  logo:   %s\n  scopes: %s\n"
		"Proceed? [y/N] ",
		d->resource_name[0] != '\0' ? d->resource_name : d->resource,
		d->resource_logo_uri[0] != '\0' ? d->resource_logo_uri : "(none)", d->scopes);
	fflush(stderr);
	return fgets(line, sizeof(line), stdin) != NULL && (line[0] == 'y' || line[0] == 'Y');
}

/* What read_code found. */
enum code_read {
	CODE_OK,	/* out holds six digits */
	CODE_NONE,	/* end of input: nothing more will come */
	CODE_NOT_A_CODE /* a line that is not a code; out is emptied */
};

/* One line from the terminal into out (NUL-terminated, the newline
 * dropped), or false at end of input. It reads with read(2), a byte at a
 * time, so stdio buffers nothing past the line; input typed or pasted before
 * the prompt appeared, and whatever a paste holds after its first line, are
 * discarded, so a terminal without bracketed paste cannot have the next
 * pasted line taken as the code (or run by the shell afterwards). A line
 * longer than cap is cut to fit (and then is not a code). */
static bool
read_tty_line(const char *prompt, char *out, size_t cap)
{
	size_t n = 0;
	bool got = false;
	char ch;

	(void)tcflush(STDIN_FILENO, TCIFLUSH);
	fputs(prompt, stderr);
	fflush(stderr);
	for (;;) {
		ssize_t r = read(STDIN_FILENO, &ch, 1);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		got = true;
		if (ch == '\n' || ch == '\r')
			break;
		if (n + 1 < cap)
			out[n++] = ch;
	}
	out[n] = '\0';
	(void)tcflush(STDIN_FILENO, TCIFLUSH);
	return got;
}

/* The code typed at the prompt when stdin is a terminal, else one line of
 * stdin; surrounding blanks are dropped and anything but exactly
 * AUTHMD_OTP_DIGITS digits is refused, so it is never sent as a code. */
static enum code_read
read_code(char *out, size_t cap, bool *tty)
{
	size_t n, skip;
	bool got;

	*tty = interactive();
	if (*tty)
		got = read_tty_line("Check your email and tell me the 6-digit code: ", out, cap);
	else
		got = fgets(out, (int)cap, stdin) != NULL;
	if (!got)
		return CODE_NONE;
	n = strcspn(out, "\r\n");
	while (n > 0 && (out[n - 1] == ' ' || out[n - 1] == '\t'))
		n--;
	out[n] = '\0';
	skip = strspn(out, " \t");
	memmove(out, out + skip, n - skip + 1);
	if (strlen(out) != AUTHMD_OTP_DIGITS || strspn(out, "0123456789") != AUTHMD_OTP_DIGITS) {
		OPENSSL_cleanse(out, cap); /* it may be something pasted by mistake */
		return CODE_NOT_A_CODE;
	}
	return CODE_OK;
}

/* ---- commands ---- */

/* Discovery, and a warning on stderr when the AS metadata's missing issuer
 * was let through by --allow-missing-issuer. */
static enum authmd_status
discover(struct authmd_client *c, const char *url, struct authmd_discovery *d,
	 struct authmd_error *e)
{
	enum authmd_status st = authmd_discover(c, url, d, e);

	if (st == AUTHMD_OK && d->issuer_missing)
		fprintf(stderr,
			"authmd: warning: %s publishes no issuer in its metadata; accepted only "
			"because of --allow-missing-issuer\n",
			d->issuer);
	return st;
}

static int
cmd_discover(struct authmd_client *c, const struct args *a)
{
	struct authmd_discovery d;
	struct authmd_error e = {0};
	json_t *o;

	if (discover(c, a->url, &d, &e) != AUTHMD_OK)
		return report_error(a, &e);
	o = agent_discovery_json(&d);
	if (!a->json) {
		printf("%s\n  -> %s%s\n  -> resource %s (%s)\n  -> authorization server %s\n",
		       d.url, d.prm_url, d.header_found ? " (from the 401)" : " (well-known path)",
		       d.resource, d.resource_name, d.issuer);
		printf("methods:%s%s%s\nscopes: %s\nprotocol: %s%s\nregister at %s\n",
		       d.id_jag ? " id-jag" : "", d.verified_email ? " email" : "",
		       d.anonymous ? " anonymous" : "", d.scopes, d.protocol,
		       d.v06_offered ? " (v0.6 offered)" : "",
		       strcmp(d.protocol, "v0.6") == 0 ? d.identity_endpoint : d.register_uri);
	}
	emit(a, o);
	return 0;
}

/* ---- the v0.6 user_code ceremony ---- */

static volatile sig_atomic_t interrupted;

static void
on_interrupt(int sig)
{
	(void)sig;
	interrupted = 1;
}

/* Ctrl-C (or SIGTERM) ends a wait at its next slice, cleanly: the attempt
 * stays open and stored for a later --wait. */
static void
catch_interrupts(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_interrupt;
	sigemptyset(&sa.sa_mask);
	(void)sigaction(SIGINT, &sa, NULL);
	(void)sigaction(SIGTERM, &sa, NULL);
}

static bool
on_poll(void *arg, enum authmd_claim_status st, long interval, long remaining)
{
	(void)arg;
	(void)remaining;
	if (interrupted)
		return false;
	if (st == AUTHMD_CLAIM_SLOW_DOWN)
		fprintf(stderr,
			"authmd: the service asked to slow down (slow_down): polling every "
			"%ld s now\n",
			interval);
	return true;
}

/* The code and the page, for the user, on stderr (stdout is the result). */
static void
show_attempt(const struct authmd_claim_attempt *t, const char *email)
{
	fprintf(stderr, "\nTo claim this registration, the user opens\n\n    %s\n\n",
		t->verification_uri);
	if (email != NULL && email[0] != '\0')
		fprintf(stderr, "signs in there as %s and enters the code\n\n", email);
	else
		fprintf(stderr, "signs in there and enters the code\n\n");
	fprintf(stderr, "    %s\n\n", t->user_code);
	if (t->verification_uri_complete[0] != '\0')
		fprintf(stderr, "(or opens %s,\nwhich fills the code in).\n",
			t->verification_uri_complete);
	fprintf(stderr, "The code expires in %ld min %02ld s (at %s).\n", t->expires_in / 60,
		t->expires_in % 60, t->expires_at);
}

/* Polls the open attempt for resource to its end and says what changed. */
static int
wait_claim(struct authmd_client *c, const struct args *a, const struct authmd_credential *before,
	   const struct authmd_claim_attempt *t)
{
	struct authmd_credential after;
	struct authmd_error e = {0};
	json_t *o;

	fprintf(stderr,
		"Waiting for the user (polling every %ld s; Ctrl-C stops, authmd claim %s --wait "
		"resumes)...\n",
		t->interval, a->url);
	catch_interrupts();
	if (authmd_claim_code_wait(c, before->resource, on_poll, NULL, &after, &e) != AUTHMD_OK)
		return report_error(a, &e);
	if (!a->json)
		printf("claimed: %s\n  scopes: %s -> %s\n  stored: a new %s access token%s%s and "
		       "identity assertion%s%s%s\n",
		       after.resource, before->scopes[0] != '\0' ? before->scopes : "(none)",
		       after.scopes, after.token_type[0] != '\0' ? after.token_type : "Bearer",
		       after.credential_expires[0] != '\0' ? " until " : "",
		       after.credential_expires,
		       after.assertion_expires[0] != '\0' ? " until " : "", after.assertion_expires,
		       before->credential[0] != '\0' ? "; the pre-claim token is no longer used"
						     : "");
	o = agent_credential_json(&after);
	json_object_set_new(o, "previous_scopes", agent_scopes_json(before->scopes));
	emit(a, o);
	OPENSSL_cleanse(&after, sizeof(after));
	return 0;
}

/* Shows the open attempt, then waits for it unless --no-wait. */
static int
show_and_wait(struct authmd_client *c, const struct args *a, const struct authmd_credential *cred,
	      const struct authmd_claim_attempt *t)
{
	show_attempt(t, cred->claim_email);
	if (a->no_wait) {
		if (!a->json)
			printf("claim started for %s; not waiting: authmd claim %s --wait polls "
			       "it\n",
			       t->resource, a->url);
		emit(a, json_pack("{s:o}", "claim_attempt", agent_attempt_json(t)));
		return 0;
	}
	return wait_claim(c, a, cred, t);
}

/* authmd claim for a v0.6 registration: --email starts an attempt (a new
 * code); without it the open attempt is polled. */
static int
claim_v06(struct authmd_client *c, const struct args *a, const struct authmd_credential *cred)
{
	struct authmd_claim_attempt t;
	struct authmd_error e = {0};

	if (a->wait && a->no_wait)
		return usage(stderr, AUTHMD_ERR_USAGE);
	if (a->otp != NULL) {
		e = (struct authmd_error){.status = AUTHMD_ERR_USAGE};
		snprintf(e.message, sizeof(e.message),
			 "%.400s is a v0.6 registration: its claim has no mailed code",
			 cred->resource);
		e.advice = "The user types the code authmd claim shows at the service's page: "
			   "authmd claim URL --email ADDR.";
		return report_error(a, &e);
	}
	if (a->email != NULL) {
		if (authmd_claim_code_start(c, cred->resource, a->email, &t, &e) != AUTHMD_OK)
			return report_error(a, &e);
	} else if (authmd_claim_code_attempt(c, cred->resource, &t, &e) != AUTHMD_OK) {
		return report_error(a, &e);
	}
	{
		struct authmd_credential now = *cred;

		if (a->email != NULL)
			snprintf(now.claim_email, sizeof(now.claim_email), "%s", a->email);
		return show_and_wait(c, a, &now, &t);
	}
}

static int claim_code(struct authmd_client *c, const struct args *a, const char *resource);

static int
cmd_register(struct authmd_client *c, const struct args *a)
{
	struct authmd_discovery d;
	struct authmd_credential cred;
	struct authmd_error e = {0};
	const char *session = a->session != NULL ? a->session : getenv("AUTHMD_SESSION");
	struct authmd_grant grant;
	enum authmd_consent consent = AUTHMD_CONSENT_NONE;
	enum authmd_status st;

	memset(&grant, 0, sizeof(grant));
	if ((a->provider != NULL) != (session != NULL) ||
	    (a->anonymous + (a->email != NULL) + (a->provider != NULL)) > 1)
		return usage(stderr, AUTHMD_ERR_USAGE);
	if (a->consent != NULL) {
		if (a->provider == NULL)
			return usage(stderr, AUTHMD_ERR_USAGE);
		if (strcmp(a->consent, "once") == 0)
			consent = AUTHMD_CONSENT_ONCE;
		else if (strcmp(a->consent, "always") == 0)
			consent = AUTHMD_CONSENT_ALWAYS;
		else
			return usage(stderr, AUTHMD_ERR_USAGE);
	}
	if (discover(c, a->url, &d, &e) != AUTHMD_OK)
		return report_error(a, &e);
	/* AUTH.md's decision tree: a provider session, else an email, else
	 * anonymous; each checked against agent_auth by the library. */
	if (a->provider != NULL || a->email != NULL) {
		if (!ask_consent(a, &d)) {
			e.status = AUTHMD_ERR_ACTION_NEEDED;
			snprintf(e.message, sizeof(e.message),
				 "no consent to assert the user's identity to %.400s", d.resource);
			e.advice = "Ask the user, then run again with --yes.";
			return report_error(a, &e);
		}
	}
	if (a->provider != NULL)
		st = authmd_register_provider(c, &d, a->provider, session, a->cred_type, consent,
					      &grant, &cred, &e);
	else if (a->email != NULL)
		st = authmd_register_email(c, &d, a->email, a->cred_type, &cred, &e);
	else
		st = authmd_register_anonymous(c, &d, &cred, &e);
	if (st == AUTHMD_ERR_ACTION_NEEDED && strcmp(e.code, "interaction_required") == 0) {
		/* v0.5 first link with a claim block: the owner confirms with the
		 * code, and the poll brings the credential. */
		struct authmd_claim_attempt t;
		struct authmd_error e2 = {0};

		if (authmd_credential_for(c, d.resource, &cred, &e2) == AUTHMD_OK &&
		    authmd_claim_code_attempt(c, cred.resource, &t, &e2) == AUTHMD_OK) {
			int rc;

			if (!a->json) {
				if (a->provider != NULL)
					say_consent(stdout, a, &grant);
				printf("registered with %s (%s, %s); the account's owner must "
				       "confirm this link\n",
				       cred.resource, cred.method, cred.registration_id);
				fflush(stdout);
			}
			rc = show_and_wait(c, a, &cred, &t);
			OPENSSL_cleanse(&cred, sizeof(cred));
			return rc;
		}
	}
	if (st != AUTHMD_OK)
		return report_error(a, &e);
	if (!a->json) {
		if (a->provider != NULL)
			say_consent(stdout, a, &grant);
		printf("registered with %s (%s, %s)\n", cred.resource, cred.method,
		       cred.registration_id);
		if (cred.credential[0] != '\0')
			printf("credential: %s, scopes %s%s%s\n", cred.credential_type, cred.scopes,
			       cred.credential_expires[0] != '\0' ? ", expires " : "",
			       cred.credential_expires);
		if (strcmp(cred.method, "anonymous") == 0 && strcmp(cred.protocol, "v0.6") == 0)
			printf("to unlock %s, the user can claim it: authmd claim %s --email ADDR "
			       "(a code to type at the service's page), or --readback (a code "
			       "the page shows, read back)\n",
			       cred.post_claim_scopes, a->url);
		else if (strcmp(cred.method, "anonymous") == 0)
			printf("to unlock %s, the user can claim it: authmd claim %s --email "
			       "ADDR\n",
			       cred.post_claim_scopes, a->url);
		if (strcmp(cred.method, "email") == 0)
			printf("an email went to %s: authmd claim %s --otp CODE\n", a->email,
			       a->url);
	}
	{
		json_t *o = agent_credential_json(&cred);

		if (a->provider != NULL)
			json_object_set_new(o, "consent", agent_grant_json(&grant));
		emit(a, o);
	}
	OPENSSL_cleanse(&cred, sizeof(cred));
	return 0;
}

static int
claim_code(struct authmd_client *c, const struct args *a, const char *resource)
{
	struct authmd_credential cred;
	struct authmd_error e = {0};
	char code[32];
	bool interactive = false;

	for (int tries = 0; tries < 3; tries++) {
		enum code_read got = CODE_OK;

		if (a->otp != NULL)
			snprintf(code, sizeof(code), "%s", a->otp);
		else if ((got = read_code(code, sizeof(code), &interactive)) != CODE_OK) {
			if (got == CODE_NOT_A_CODE && interactive && tries < 2) {
				fprintf(stderr, "That is not a code: type the 6 digits the email's "
						"page shows (like 123456), then Enter.\n");
				continue;
			}
			e = (struct authmd_error){.status = AUTHMD_ERR_ACTION_NEEDED};
			snprintf(e.message, sizeof(e.message), "%s",
				 got == CODE_NONE ? "no code was given"
						  : "that is not a code: a code is 6 digits");
			e.advice = "Check your email and tell me the 6-digit code (--otp CODE).";
			return report_error(a, &e);
		}
		if (authmd_claim_complete(c, resource, code, &cred, &e) == AUTHMD_OK) {
			if (!a->json)
				printf("claimed: %s now has scopes %s\n", cred.resource,
				       cred.scopes);
			emit(a, agent_credential_json(&cred));
			OPENSSL_cleanse(&cred, sizeof(cred));
			return 0;
		}
		if (!interactive || a->otp != NULL || strcmp(e.code, "otp_invalid") != 0)
			break;
		fprintf(stderr, "%s\n", e.advice != NULL ? e.advice : e.message);
	}
	return report_error(a, &e);
}

/* ---- the read-back claim (issue 14, proposal (b)) ---- */

/* The code the user reads back: --code, else a line of the terminal or
 * stdin; blanks and dashes dropped ("123 456"). False when there is none or
 * it is not AUTHMD_OTP_DIGITS digits (out is then wiped). */
static bool
readback_code(const struct args *a, char *out, size_t cap)
{
	char line[64];
	size_t n = 0;
	bool got;

	if (a->code != NULL)
		got = snprintf(line, sizeof(line), "%s", a->code) < (int)sizeof(line);
	else if (interactive())
		got = read_tty_line("Type the 6-digit code the page shows you: ", line,
				    sizeof(line));
	else
		got = fgets(line, (int)sizeof(line), stdin) != NULL;
	for (const char *p = line; got && *p != '\0' && *p != '\n' && *p != '\r'; p++) {
		if (*p == ' ' || *p == '\t' || *p == '-')
			continue;
		if (*p < '0' || *p > '9' || n + 1 >= cap) {
			got = false;
			break;
		}
		out[n++] = *p;
	}
	OPENSSL_cleanse(line, sizeof(line));
	out[n] = '\0';
	if (got && n == AUTHMD_OTP_DIGITS)
		return true;
	OPENSSL_cleanse(out, cap);
	return false;
}

/* Without --code: a new attempt, its URL printed, then the code read from
 * the user; with --code: the attempt already started is completed. */
static int
cmd_claim_readback(struct authmd_client *c, const struct args *a, const char *resource)
{
	struct authmd_credential cred;
	struct authmd_error e = {0};
	char uri[AUTHMD_URL_MAX], code[16];
	int rc;

	if (a->otp != NULL || a->wait || a->no_wait)
		return usage(stderr, AUTHMD_ERR_USAGE);
	if (a->code == NULL) {
		if (authmd_claim_readback_start(c, resource, a->email, uri, sizeof(uri), &e) !=
		    AUTHMD_OK)
			return report_error(a, &e);
		/* the URL goes to stdout (stderr beside --json): the user must open it */
		fprintf(a->json ? stderr : stdout,
			"Ask the user to open this link, sign in, confirm, and tell you the "
			"code it shows:\n  %s\n",
			uri);
		fflush(a->json ? stderr : stdout);
	}
	if (!readback_code(a, code, sizeof(code))) {
		e = (struct authmd_error){.status = AUTHMD_ERR_ACTION_NEEDED};
		snprintf(e.message, sizeof(e.message), "%s",
			 a->code != NULL ? "that is not a code: a code is 6 digits"
					 : "no code was given");
		e.advice = "When the user has the code: authmd claim URL --readback --code CODE";
		return report_error(a, &e);
	}
	rc = authmd_claim_readback_complete(c, resource, code, &cred, &e);
	OPENSSL_cleanse(code, sizeof(code));
	if (rc != AUTHMD_OK)
		return report_error(a, &e);
	if (!a->json)
		printf("claimed: %s now has scopes %s\n", cred.resource, cred.scopes);
	emit(a, agent_credential_json(&cred));
	OPENSSL_cleanse(&cred, sizeof(cred));
	return 0;
}

static int
cmd_claim(struct authmd_client *c, const struct args *a)
{
	struct authmd_credential cred;
	struct authmd_error e = {0};

	if (authmd_credential_for(c, a->url, &cred, &e) != AUTHMD_OK)
		return report_error(a, &e);
	/* The registration's stored generation picks the ceremony; a forced
	 * --protocol that names the other one is a mistake, not a switch. */
	if (a->protocol != NULL && strcmp(a->protocol, "auto") != 0 &&
	    strcmp(a->protocol, cred.protocol[0] != '\0' ? cred.protocol : "v0.1") != 0) {
		e = (struct authmd_error){.status = AUTHMD_ERR_USAGE};
		snprintf(e.message, sizeof(e.message),
			 "the registration for %.300s was made with %s; it is claimed that way",
			 cred.resource, cred.protocol[0] != '\0' ? cred.protocol : "v0.1");
		e.advice = "Drop --protocol (auto claims each registration by its generation).";
		return report_error(a, &e);
	}
	if (a->readback) {
		int rc = cmd_claim_readback(c, a, cred.resource);

		OPENSSL_cleanse(&cred, sizeof(cred));
		return rc;
	}
	if (strcmp(cred.protocol, "v0.6") == 0) {
		int rc = claim_v06(c, a, &cred);

		OPENSSL_cleanse(&cred, sizeof(cred));
		return rc;
	}
	if (a->wait || a->no_wait)
		return usage(stderr, AUTHMD_ERR_USAGE);
	if (a->email != NULL) {
		if (authmd_claim_start(c, cred.resource, a->email, &e) != AUTHMD_OK)
			return report_error(a, &e);
		if (!a->json)
			fprintf(stderr, "An email with a link went to %s.\n", a->email);
	}
	return claim_code(c, a, cred.resource);
}

static int
cmd_curl(struct authmd_client *c, const struct args *a)
{
	struct authmd_response r;
	struct authmd_error e = {0};
	const char *method = a->method != NULL ? a->method : (a->data != NULL ? "POST" : "GET");
	const char *headers[33];
	int rc;

	memcpy(headers, a->headers, sizeof(a->headers[0]) * (size_t)a->nheaders);
	headers[a->nheaders] = NULL;
	if (authmd_request(c, method, a->url, headers, a->data, &r, &e) != AUTHMD_OK)
		return report_error(a, &e);
	if (a->json) {
		json_t *body = json_loadb(r.body, r.len, 0, NULL);
		json_t *o = json_pack("{s:b, s:i, s:o}", "ok", r.status < 400, "status", r.status,
				      "body", body != NULL ? body : json_stringn(r.body, r.len));

		if (e.message[0] != '\0')
			json_object_set_new(o, "error",
					    json_pack("{s:s, s:s, s:s?}", "code", e.code, "message",
						      e.message, "advice", e.advice));
		json_dumpf(o, stdout, JSON_COMPACT);
		putchar('\n');
		json_decref(o);
	} else {
		fwrite(r.body, 1, r.len, stdout);
		if (r.len > 0 && r.body[r.len - 1] != '\n')
			putchar('\n');
		if (r.status >= 400 && e.message[0] != '\0') {
			fprintf(stderr, "authmd: %s\n", e.message);
			if (e.advice != NULL)
				fprintf(stderr, "%s\n", e.advice);
		}
	}
	rc = r.status < 400			    ? 0
	     : e.status == AUTHMD_ERR_ACTION_NEEDED ? AUTHMD_ERR_ACTION_NEEDED
	     : r.status >= 500			    ? AUTHMD_ERR_NETWORK
						    : AUTHMD_ERR_REFUSED;
	authmd_response_clear(&r);
	return rc;
}

static int
cmd_status(struct authmd_client *c, const struct args *a)
{
	struct authmd_credential *all = NULL;
	struct authmd_error e = {0};
	json_t *list = json_array();
	size_t n = 0;

	if (authmd_credentials(c, &all, &n, &e) != AUTHMD_OK) {
		json_decref(list);
		return report_error(a, &e);
	}
	for (size_t i = 0; i < n; i++) {
		json_array_append_new(list, agent_credential_json(&all[i]));
		if (!a->json)
			printf("%s\n  %s registration %s, %s%s%s, scopes %s, claim %s\n",
			       all[i].resource, all[i].method, all[i].registration_id,
			       all[i].credential[0] != '\0' ? all[i].credential_type
							    : "no credential yet",
			       all[i].credential_expires[0] != '\0' ? " until " : "",
			       all[i].credential_expires,
			       all[i].scopes[0] != '\0' ? all[i].scopes : "-", all[i].claim_state);
	}
	if (!a->json && n == 0)
		printf("nothing stored\n");
	OPENSSL_cleanse(all, n * sizeof(*all));
	free(all);
	emit(a, json_pack("{s:o}", "credentials", list));
	return 0;
}

/* The MCP server: JSON-RPC on the real stdout, which nothing else may write
 * to, so stdout is moved aside and fd 1 becomes stderr for the rest. */
static int
cmd_mcp(struct authmd_client *c, const struct args *a)
{
	struct agent_mcp_options o = {AUTHMD_VERSION,
				      a->session != NULL ? a->session : getenv("AUTHMD_SESSION")};
	int fd = dup(STDOUT_FILENO);
	FILE *out;
	int rc;

	fflush(stdout);
	if (fd < 0 || dup2(STDERR_FILENO, STDOUT_FILENO) < 0 || (out = fdopen(fd, "w")) == NULL) {
		fprintf(stderr, "authmd: cannot set up stdout for MCP\n");
		return AUTHMD_ERR_FAILED;
	}
	fprintf(stderr, "authmd mcp: serving MCP %s on stdio%s\n", AGENT_MCP_PROTOCOL,
		o.session != NULL ? ", with a provider session" : "");
	rc = agent_mcp_serve(c, &o, stdin, out);
	fclose(out);
	return rc;
}

static int
cmd_refresh(struct authmd_client *c, const struct args *a)
{
	struct authmd_credential cred;
	struct authmd_error e = {0};

	if (authmd_identity_refresh(c, a->url, &cred, &e) != AUTHMD_OK)
		return report_error(a, &e);
	if (!a->json)
		printf("refreshed %s: registration %s, new assertion until %s, %s until %s\n",
		       cred.resource, cred.registration_id, cred.assertion_expires,
		       cred.credential_type,
		       cred.credential_expires[0] != '\0' ? cred.credential_expires : "-");
	emit(a, agent_credential_json(&cred));
	OPENSSL_cleanse(&cred, sizeof(cred));
	return 0;
}

static int
cmd_forget(struct authmd_client *c, const struct args *a)
{
	struct authmd_error e = {0};

	if (authmd_forget(c, a->url, &e) != AUTHMD_OK)
		return report_error(a, &e);
	if (!a->json)
		printf("forgot %s\n", a->url);
	emit(a, json_pack("{s:s}", "forgot", a->url));
	return 0;
}

int
main(int argc, char **argv)
{
	struct args a;
	struct authmd_options opt = {.store_path = NULL, .max_retries = -1};
	struct authmd_client *c = NULL;
	struct authmd_error e = {0};
	int rc;

	if (!parse(argc, argv, &a))
		return usage(stderr, AUTHMD_ERR_USAGE);
	if (a.version && !a.help) {
		printf("authmd %s\n", AUTHMD_VERSION);
		return 0;
	}
	if (a.help || a.cmd == NULL)
		return usage(a.help ? stdout : stderr, a.help ? 0 : AUTHMD_ERR_USAGE);
	if (a.url == NULL && strcmp(a.cmd, "status") != 0 && strcmp(a.cmd, "mcp") != 0)
		return usage(stderr, AUTHMD_ERR_USAGE);
	opt.store_path = a.store != NULL ? a.store : getenv("AUTHMD_CREDENTIALS");
	opt.allow_missing_issuer = a.allow_missing_issuer;
	opt.dpop = a.dpop;
	if (a.protocol == NULL || strcmp(a.protocol, "auto") == 0)
		opt.protocol = AUTHMD_PROTOCOL_AUTO;
	else if (strcmp(a.protocol, "v0.1") == 0)
		opt.protocol = AUTHMD_PROTOCOL_V01;
	else if (strcmp(a.protocol, "v0.6") == 0)
		opt.protocol = AUTHMD_PROTOCOL_V06;
	else
		return usage(stderr, AUTHMD_ERR_USAGE);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	if (authmd_client_new(&opt, &c, &e) != AUTHMD_OK) {
		rc = report_error(&a, &e);
	} else if (strcmp(a.cmd, "discover") == 0) {
		rc = cmd_discover(c, &a);
	} else if (strcmp(a.cmd, "register") == 0) {
		rc = cmd_register(c, &a);
	} else if (strcmp(a.cmd, "claim") == 0) {
		rc = cmd_claim(c, &a);
	} else if (strcmp(a.cmd, "curl") == 0) {
		rc = cmd_curl(c, &a);
	} else if (strcmp(a.cmd, "status") == 0) {
		rc = cmd_status(c, &a);
	} else if (strcmp(a.cmd, "mcp") == 0 && a.url == NULL) {
		rc = cmd_mcp(c, &a);
	} else if (strcmp(a.cmd, "forget") == 0) {
		rc = cmd_forget(c, &a);
	} else if (strcmp(a.cmd, "refresh") == 0) {
		rc = cmd_refresh(c, &a);
	} else {
		rc = usage(stderr, AUTHMD_ERR_USAGE);
	}
	authmd_client_free(c);
	curl_global_cleanup();
	return rc;
}
