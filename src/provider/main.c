/* authmd-provider: flags, configuration, and the commands. */
#include <curl/curl.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/limits.h"
#include "core/log.h"
#include "core/str.h"
#include "mail/mail.h"
#include "provider/provider.h"

#ifndef AUTHMD_VERSION
#define AUTHMD_VERSION "dev"
#endif

static void
usage(FILE *f)
{
	fprintf(f, "usage: authmd-provider [--config FILE]              serve the provider\n"
		   "       authmd-provider [--config FILE] user add --email E [--email-verified]\n"
		   "                       [--phone P] [--phone-verified] [--name N]\n"
		   "       authmd-provider [--config FILE] user list\n"
		   "       authmd-provider [--config FILE] session create --user EMAIL\n"
		   "       authmd-provider [--config FILE] session revoke --id SESSION_ID\n"
		   "       authmd-provider [--config FILE] keys rotate\n"
		   "       authmd-provider --check-config FILE | --version | --help\n");
}

/* The value after flag name in argv, or NULL. */
static const char *
opt(int argc, char **argv, const char *name)
{
	for (int i = 0; i + 1 < argc; i++) {
		if (strcmp(argv[i], name) == 0)
			return argv[i + 1];
	}
	return NULL;
}

static bool
flag(int argc, char **argv, const char *name)
{
	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], name) == 0)
			return true;
	}
	return false;
}

static int
fail(const struct am_error *e)
{
	fprintf(stderr, "authmd-provider: %s\n", e->detail);
	return 1;
}

static int
cmd_user_add(struct pstore *ps, int argc, char **argv)
{
	const char *email = opt(argc, argv, "--email"), *phone = opt(argc, argv, "--phone");
	const char *name = opt(argc, argv, "--name");
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
	u.email_verified = flag(argc, argv, "--email-verified");
	am_copy(u.phone, sizeof(u.phone), phone != NULL ? phone : "");
	u.phone_verified = phone != NULL && flag(argc, argv, "--phone-verified");
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
cmd_session_create(struct pstore *ps, int argc, char **argv)
{
	const char *email = opt(argc, argv, "--user");
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
	struct http_server *srv = NULL;
	struct am_error e = {0};
	struct http_options o = {c->listen_host,	c->listen_port, (unsigned)c->threads,
				 AM_DEFAULT_BODY_BYTES, NULL,		false};
	sigset_t sigs;
	int sig = 0;

	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);
	if (prov_app_new(c, &app, &e) != AM_OK)
		return fail(&e);
	if (http_server_start(&o, app->routes, app->nroutes, app, &srv, &e) != AM_OK ||
	    prov_delivery_start(app, &e) != AM_OK) {
		http_server_stop(srv);
		prov_app_free(app);
		return fail(&e);
	}
	log_info("authmd-provider %s listening on %s:%u issuer=%s client_id=%s", AUTHMD_VERSION,
		 c->listen_host, (unsigned)c->listen_port, c->issuer, c->client_id);
	while (sigwait(&sigs, &sig) != 0) {
	}
	log_info("signal=%d: stopping", sig);
	http_server_stop(srv);
	prov_delivery_stop(app);
	prov_app_free(app);
	log_info("stopped");
	return 0;
}

int
main(int argc, char **argv)
{
	const char *config_path = NULL;
	struct prov_config c;
	struct pstore *ps = NULL;
	struct am_error e = {0};
	char err[512], kid[64];
	int i = 1, rc = 2;

	if (argc > 1 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
		usage(stdout);
		return 0;
	}
	if (argc > 1 && strcmp(argv[1], "--version") == 0) {
		printf("authmd-provider %s\n", AUTHMD_VERSION);
		return 0;
	}
	if (argc > 2 &&
	    (strcmp(argv[1], "--config") == 0 || strcmp(argv[1], "--check-config") == 0)) {
		config_path = argv[2];
		i = 3;
	}
	if (prov_config_load(config_path, &c, err, sizeof(err)) != 0) {
		fprintf(stderr, "authmd-provider: %s\n", err);
		return 1;
	}
	if (argc > 1 && strcmp(argv[1], "--check-config") == 0) {
		printf("%s: ok\n", config_path);
		return 0;
	}
	(void)am_log_set_level(c.log_level);
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		return 1;
	if (i == argc) {
		rc = serve(&c);
		curl_global_cleanup();
		return rc;
	}
	(void)am_log_set_level("warn");
	if (pstore_open(c.store_url, &ps, &e) != AM_OK) {
		curl_global_cleanup();
		return fail(&e);
	}
	argc -= i;
	argv += i;
	if (argc >= 2 && strcmp(argv[0], "user") == 0 && strcmp(argv[1], "add") == 0) {
		rc = cmd_user_add(ps, argc, argv);
	} else if (argc >= 2 && strcmp(argv[0], "user") == 0 && strcmp(argv[1], "list") == 0) {
		rc = pstore_users(ps, print_user, NULL, &e) == AM_OK ? 0 : fail(&e);
	} else if (argc >= 2 && strcmp(argv[0], "session") == 0 && strcmp(argv[1], "create") == 0) {
		rc = cmd_session_create(ps, argc, argv);
	} else if (argc >= 2 && strcmp(argv[0], "session") == 0 && strcmp(argv[1], "revoke") == 0 &&
		   opt(argc, argv, "--id") != NULL) {
		rc = pstore_session_revoke(ps, opt(argc, argv, "--id"), am_clock_now(NULL), &e) ==
				     AM_OK
			     ? 0
			     : fail(&e);
	} else if (argc >= 2 && strcmp(argv[0], "keys") == 0 && strcmp(argv[1], "rotate") == 0) {
		rc = pkeys_rotate(&c, ps, kid, &e) == AM_OK ? (printf("%s\n", kid), 0) : fail(&e);
	} else {
		usage(stderr);
		rc = 2;
	}
	pstore_close(ps);
	curl_global_cleanup();
	return rc;
}
