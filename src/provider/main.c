/* authmd-provider: flags, configuration, and the commands. */
#include <curl/curl.h>
#include <getopt.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>

#include "core/clock.h"
#include "core/limits.h"
#include "core/log.h"
#include "core/str.h"
#include "mail/mail.h"
#include "provider/papi.h"
#include "provider/provider.h"

#ifndef AUTHMD_VERSION
#define AUTHMD_VERSION "dev"
#endif

static void
usage(FILE *f)
{
	fprintf(f, "usage: authmd-provider [-c|--config FILE]              serve the provider\n"
		   "       authmd-provider [--config FILE] user add --email E [--email-verified]\n"
		   "                       [--phone P] [--phone-verified] [--name N]\n"
		   "       authmd-provider [--config FILE] user list\n"
		   "       authmd-provider [--config FILE] session create --user EMAIL\n"
		   "       authmd-provider [--config FILE] session revoke --id SESSION_ID\n"
		   "       authmd-provider [--config FILE] keys rotate\n"
		   "       authmd-provider --check-config FILE | -V|--version | -h|--help\n"
		   "Exit codes: 0 ok, 1 failed, 2 usage; see authmd-provider(8).\n");
}

/* Everything the command line says, parsed by getopt_long: the options
 * before the command, then the command's words and options (--config is
 * also taken there). */
struct pargs {
	const char *config, *email, *phone, *name, *user, *id;
	bool check_only, email_verified, phone_verified, help, version;
	const char *words[2]; /* the command, e.g. "user" "add" */
	int nwords;
};

enum {
	OPT_CHECK = 256,
	OPT_EMAIL,
	OPT_EMAIL_VERIFIED,
	OPT_PHONE,
	OPT_PHONE_VERIFIED,
	OPT_NAME,
	OPT_USER,
	OPT_ID,
};

/* Fills *a from argv; -1 on a usage error (an unknown or repeated option,
 * an empty value, more than two command words). */
static int
parse(int argc, char **argv, struct pargs *a)
{
	static const struct option opts[] = {
		{"config", required_argument, NULL, 'c'},
		{"check-config", required_argument, NULL, OPT_CHECK},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{"email", required_argument, NULL, OPT_EMAIL},
		{"email-verified", no_argument, NULL, OPT_EMAIL_VERIFIED},
		{"phone", required_argument, NULL, OPT_PHONE},
		{"phone-verified", no_argument, NULL, OPT_PHONE_VERIFIED},
		{"name", required_argument, NULL, OPT_NAME},
		{"user", required_argument, NULL, OPT_USER},
		{"id", required_argument, NULL, OPT_ID},
		{NULL, 0, NULL, 0},
	};
	int ch;

	memset(a, 0, sizeof(*a));
	/* Options anywhere (getopt_long permutes argv), the words in order. */
	while ((ch = getopt_long(argc, argv, "c:hV", opts, NULL)) != -1) {
		const char **slot = NULL;

		switch (ch) {
		case 'c':
		case OPT_CHECK:
			a->check_only = ch == OPT_CHECK;
			slot = &a->config;
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
		case OPT_EMAIL_VERIFIED:
			a->email_verified = true;
			break;
		case OPT_PHONE:
			slot = &a->phone;
			break;
		case OPT_PHONE_VERIFIED:
			a->phone_verified = true;
			break;
		case OPT_NAME:
			slot = &a->name;
			break;
		case OPT_USER:
			slot = &a->user;
			break;
		case OPT_ID:
			slot = &a->id;
			break;
		default:
			return -1;
		}
		if (slot != NULL && (*slot != NULL || optarg[0] == '\0'))
			return -1;
		if (slot != NULL)
			*slot = optarg;
	}
	for (; optind < argc; optind++) {
		if (a->nwords == 2)
			return -1;
		a->words[a->nwords++] = argv[optind];
	}
	return 0;
}

/* True when the command is the words w1 w2. */
static bool
is_cmd(const struct pargs *a, const char *w1, const char *w2)
{
	return a->nwords == 2 && strcmp(a->words[0], w1) == 0 && strcmp(a->words[1], w2) == 0;
}

static int
fail(const struct am_error *e)
{
	fprintf(stderr, "authmd-provider: %s\n", e->detail);
	return 1;
}

static int
cmd_user_add(struct pstore *ps, const struct pargs *a)
{
	const char *email = a->email, *phone = a->phone;
	const char *name = a->name;
	struct prov_user u = {0};
	struct am_error e = {0};

	if (email == NULL || !mail_address_normalize(email, u.email, sizeof(u.email))) {
		fprintf(stderr, "authmd-provider: user add needs --email with a plain address\n");
		return 2;
	}
	if (phone != NULL && (strlen(phone) >= sizeof(u.phone) || phone[0] != '+' ||
			      strspn(phone + 1, "0123456789") != strlen(phone + 1))) {
		fprintf(stderr, "authmd-provider: --phone must be E.164, like +15553805188\n");
		return 2;
	}
	if (am_rand_id("pu_", u.id, sizeof(u.id), &e) != AM_OK ||
	    am_rand_id("sub_", u.sub, sizeof(u.sub), &e) != AM_OK)
		return fail(&e);
	u.email_verified = a->email_verified;
	am_copy(u.phone, sizeof(u.phone), phone != NULL ? phone : "");
	u.phone_verified = phone != NULL && a->phone_verified;
	am_copy(u.name, sizeof(u.name), name != NULL ? name : "");
	u.created_at = am_clock_now(NULL);
	if (pstore_user_add(ps, &u, &e) != AM_OK) {
		fprintf(stderr, "authmd-provider: cannot add the user (is %s already there?)\n",
			u.email);
		return 1;
	}
	printf("%s\t%s\n", u.id, u.email);
	return 0;
}

static void
print_user(void *ctx, const struct prov_user *u)
{
	(void)ctx;
	printf("%s\t%s\temail_verified=%s\tphone=%s\tphone_verified=%s\tsub=%s\n", u->id, u->email,
	       u->email_verified ? "yes" : "no", u->phone[0] != '\0' ? u->phone : "-",
	       u->phone_verified ? "yes" : "no", u->sub);
}

static int
cmd_session_create(struct pstore *ps, const struct pargs *a)
{
	const char *email = a->user;
	struct prov_user u;
	struct am_error e = {0};
	char id[40], token[64], addr[256];
	uint8_t hash[AM_HASH_LEN];

	if (email == NULL || !mail_address_normalize(email, addr, sizeof(addr))) {
		fprintf(stderr, "authmd-provider: session create needs --user EMAIL\n");
		return 2;
	}
	if (pstore_user_by_email(ps, addr, &u, &e) != AM_OK) {
		fprintf(stderr, "authmd-provider: no user %s\n", addr);
		return 1;
	}
	if (am_rand_id("ses_", id, sizeof(id), &e) != AM_OK ||
	    am_rand_token("ps_", token, sizeof(token), &e) != AM_OK)
		return fail(&e);
	am_sha256_str(token, hash);
	if (pstore_session_add(ps, id, hash, u.id, am_clock_now(NULL), &e) != AM_OK)
		return fail(&e);
	/* The token is shown once, here; only its hash is stored. */
	printf("%s\n", token);
	fprintf(stderr,
		"session %s for %s (keep the token secret; revoke with "
		"'session revoke --id %s')\n",
		id, u.email, id);
	OPENSSL_cleanse(token, sizeof(token));
	return 0;
}

static int
serve(const struct prov_config *c)
{
	struct prov_app *app = NULL;
	struct prov_http *api = NULL;
	struct http_server *srv = NULL;
	struct am_error e = {0};
	struct http_options o = {.host = c->listen_host,
				 .port = c->listen_port,
				 .threads = (unsigned)c->threads,
				 .max_body =
					 AM_DEFAULT_BODY_BYTES}; /* connection limits: defaults */
	sigset_t sigs;
	int sig = 0;

	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);
	if (prov_app_new(c, &app, &e) != AM_OK)
		return fail(&e);
	if (prov_http_new(app, &api, &e) != AM_OK ||
	    http_server_start(&o, api->routes, api->nroutes, app, &srv, &e) != AM_OK ||
	    prov_delivery_start(app, &e) != AM_OK) {
		http_server_stop(srv);
		prov_http_free(api);
		prov_app_free(app);
		return fail(&e);
	}
	log_info("authmd-provider %s listening on %s:%u issuer=%s client_id=%s", AUTHMD_VERSION,
		 c->listen_host, (unsigned)c->listen_port, c->issuer, c->client_id);
	(void)sd_notify(0, "READY=1\nSTATUS=serving"); /* Type=notify; no-op outside systemd */
	while (sigwait(&sigs, &sig) != 0) {
	}
	log_info("signal=%d: stopping", sig);
	(void)sd_notify(0, "STOPPING=1");
	http_server_stop(srv);
	prov_delivery_stop(app);
	prov_http_free(api);
	prov_app_free(app);
	log_info("stopped");
	return 0;
}

int
main(int argc, char **argv)
{
	struct pargs a;
	struct prov_config c;
	struct pstore *ps = NULL;
	struct am_error e = {0};
	char err[512], kid[64];
	int rc = 2;

	if (parse(argc, argv, &a) != 0) {
		usage(stderr);
		return 2;
	}
	if (a.help) {
		usage(stdout);
		return 0;
	}
	if (a.version) {
		printf("authmd-provider %s\n", AUTHMD_VERSION);
		return 0;
	}
	if (a.check_only && a.nwords > 0) {
		usage(stderr);
		return 2;
	}
	if (prov_config_load(a.config, &c, err, sizeof(err)) != 0) {
		fprintf(stderr, "authmd-provider: %s\n", err);
		return 1;
	}
	if (a.check_only) {
		printf("%s: ok\n", a.config);
		return 0;
	}
	(void)am_log_set_level(c.log_level);
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		return 1;
	if (a.nwords == 0) {
		rc = serve(&c);
		curl_global_cleanup();
		return rc;
	}
	(void)am_log_set_level("warn");
	if (pstore_open(c.store_url, &ps, &e) != AM_OK) {
		curl_global_cleanup();
		return fail(&e);
	}
	if (is_cmd(&a, "user", "add")) {
		rc = cmd_user_add(ps, &a);
	} else if (is_cmd(&a, "user", "list")) {
		rc = pstore_users(ps, print_user, NULL, &e) == AM_OK ? 0 : fail(&e);
	} else if (is_cmd(&a, "session", "create")) {
		rc = cmd_session_create(ps, &a);
	} else if (is_cmd(&a, "session", "revoke") && a.id != NULL) {
		rc = pstore_session_revoke(ps, a.id, am_clock_now(NULL), &e) == AM_OK ? 0
										      : fail(&e);
	} else if (is_cmd(&a, "keys", "rotate")) {
		rc = pkeys_rotate(&c, ps, kid, &e) == AM_OK ? (printf("%s\n", kid), 0) : fail(&e);
	} else {
		usage(stderr);
		rc = 2;
	}
	pstore_close(ps);
	curl_global_cleanup();
	return rc;
}
