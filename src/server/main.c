/* authmd-server: flags, configuration, and the life cycle (serve, sweep,
 * drain on SIGTERM). Everything else is in libauthmd. */
#include <curl/curl.h>
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>
#include <time.h>
#include <unistd.h>

#include "core/config.h"
#include "core/limits.h"
#include "core/log.h"
#include "flows/admin.h"
#include "http/http.h"
#include "service/service.h"
#include "jose/skey.h"
#include "store/db.h"

#ifndef AUTHMD_VERSION
#define AUTHMD_VERSION "dev"
#endif

struct sweeper {
	struct app *app;
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool stop;
};

static void *
sweep_loop(void *arg)
{
	struct sweeper *sw = arg;
	const struct am_config *cfg = sw->app->cfg;

	pthread_mutex_lock(&sw->mu);
	while (!sw->stop) {
		struct am_error e = {0};
		struct store *st;
		struct timespec until;
		int n = 0;

		pthread_mutex_unlock(&sw->mu);
		if (app_store(sw->app, &st, &e) != AM_OK ||
		    flow_sweep(&sw->app->env, st, &n, &e) != AM_OK)
			log_warn("sweep failed code=%s detail=\"%s\"", am_err_name(e.code),
				 e.detail);
		pthread_mutex_lock(&sw->mu);
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += cfg->sweep_interval;
		while (!sw->stop && pthread_cond_timedwait(&sw->cv, &sw->mu, &until) != ETIMEDOUT) {
		}
	}
	pthread_mutex_unlock(&sw->mu);
	return NULL;
}

static void
usage(FILE *f)
{
	fprintf(f, "usage: authmd-server [-c|--config FILE]\n"
		   "       authmd-server --check-config FILE\n"
		   "       authmd-server revoke [--config FILE] (--all | --issuer ISS [--subject "
		   "SUB] |\n"
		   "                            --user ID | --registration ID)\n"
		   "       authmd-server unblock [--config FILE] (--issuer ISS [--subject SUB] |\n"
		   "                             --user ID | --registration ID)\n"
		   "       authmd-server rotate-key [--config FILE]\n"
		   "       authmd-server migrate [--config FILE]\n"
		   "       authmd-server -V|--version | -h|--help\n\n"
		   "Serves the auth.md agent-registration protocol. Without --config it runs on\n"
		   "the built-in defaults (see authmd.ini(5)). Exit codes: 0 ok, 1 failed,\n"
		   "2 usage; see authmd-server(8).\n");
}

/* The configuration of path, or the built-in defaults when path is NULL;
 * -1 after saying why on stderr. */
static int
load_config(const char *path, struct am_config *cfg)
{
	char err[512];

	if (path == NULL) {
		am_config_defaults(cfg);
		return 0;
	}
	if (am_config_load(path, cfg, err, sizeof(err)) != 0) {
		fprintf(stderr, "authmd-server: %s\n", err);
		return -1;
	}
	return 0;
}

/* What an operator command names: --all, or one block target. */
struct target {
	bool all;
	bool set;
	enum block_kind kind;
	const char *value, *sub;
	const char *config_path;
};

/* Parses the flags of revoke (allow_all) or unblock with getopt_long;
 * argv[0] is the command's name. -1 on a usage error. */
static int
parse_target(int argc, char **argv, bool allow_all, struct target *t)
{
	static const struct option opts[] = {
		{"config", required_argument, NULL, 'c'},
		{"all", no_argument, NULL, 'a'},
		{"issuer", required_argument, NULL, 'i'},
		{"subject", required_argument, NULL, 's'},
		{"user", required_argument, NULL, 'u'},
		{"registration", required_argument, NULL, 'r'},
		{NULL, 0, NULL, 0},
	};
	const char *issuer = NULL;
	int ch, nkind = 0;

	memset(t, 0, sizeof(*t));
	optind = 0; /* glibc: a full re-initialisation for this second parse */
	while ((ch = getopt_long(argc, argv, "+c:", opts, NULL)) != -1) {
		if (ch != 'a' && (optarg == NULL || optarg[0] == '\0'))
			return -1;
		switch (ch) {
		case 'c':
			if (t->config_path != NULL)
				return -1;
			t->config_path = optarg;
			break;
		case 'a':
			if (!allow_all || t->all)
				return -1;
			t->all = true;
			break;
		case 'i':
			if (issuer != NULL)
				return -1;
			issuer = optarg;
			break;
		case 's':
			if (t->sub != NULL)
				return -1;
			t->sub = optarg;
			break;
		case 'u':
		case 'r':
			if (t->value != NULL)
				return -1;
			t->kind = ch == 'u' ? BLOCK_USER : BLOCK_REGISTRATION;
			t->value = optarg;
			nkind++;
			break;
		default:
			return -1;
		}
	}
	if (optind != argc)
		return -1;
	if (t->all)
		/* --all names everything: nothing else goes with it */
		return issuer == NULL && t->sub == NULL && nkind == 0 ? 0 : -1;
	if (t->sub != NULL && issuer == NULL)
		return -1; /* a subject is only ever a provider's */
	if (issuer != NULL) {
		if (nkind > 0)
			return -1;
		t->kind = t->sub != NULL ? BLOCK_SUBJECT : BLOCK_ISSUER;
		t->value = issuer;
		nkind++;
	}
	t->set = nkind == 1;
	return t->set ? 0 : -1;
}

/* The store options of cfg: the [store] bounds for PostgreSQL. */
static void
store_opts(const struct am_config *cfg, struct db_opts *o)
{
	o->connect_timeout_s = (int)cfg->store_connect_timeout;
	o->statement_timeout_ms = (int)cfg->store_statement_timeout * 1000;
}

/* authmd-server migrate: applies the store's pending migrations (on
 * PostgreSQL under the advisory lock that replicas starting together also
 * take) and prints the schema version, so an operator can migrate before
 * rolling out new replicas. */
static int
cmd_migrate(int argc, char **argv)
{
	static const struct option opts[] = {
		{"config", required_argument, NULL, 'c'},
		{NULL, 0, NULL, 0},
	};
	const char *path = NULL;
	struct am_config cfg;
	struct db_opts o;
	struct store *st = NULL;
	struct am_error e = {0};
	char shown[AM_CFG_STR];
	int ch;

	optind = 0;
	while ((ch = getopt_long(argc, argv, "+c:", opts, NULL)) != -1) {
		if (ch != 'c' || path != NULL || optarg[0] == '\0') {
			usage(stderr);
			return 2;
		}
		path = optarg;
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}
	if (load_config(path, &cfg) != 0)
		return 1;
	(void)am_log_set_level(cfg.log_level);
	store_opts(&cfg, &o);
	store_url_redact(cfg.store_url, shown, sizeof(shown));
	if (store_open_opts(cfg.store_url, cfg.tenant, &o, &st, &e) != AM_OK) {
		fprintf(stderr, "authmd-server: migrate failed: %s\n", e.detail);
		return 1;
	}
	printf("%s: schema version %d\n", shown, store_schema_version(st));
	store_close(st);
	return 0;
}

/* Opens what an operator command needs: config, audit sink, store. */
static int
open_operator(const struct target *t, struct am_config *cfg, struct flow_env *env,
	      struct audit_sink **sink, struct store **st)
{
	struct am_error e = {0};
	struct db_opts o;

	if (load_config(t->config_path, cfg) != 0)
		return -1;
	(void)am_log_set_level("warn");
	env->cfg = cfg;
	store_opts(cfg, &o);
	if (audit_sink_open(cfg->audit_sink, sink, &e) != AM_OK ||
	    store_open_opts(cfg->store_url, cfg->tenant, &o, st, &e) != AM_OK) {
		fprintf(stderr, "authmd-server: %s\n", e.detail);
		return -1;
	}
	env->audit = *sink;
	return 0;
}

/* The operator a command acts for, as audit events name it: "cli:" and
 * the login name of the user running it (or the uid). */
static void
cli_actor(char *out, size_t cap)
{
	struct passwd pw, *found = NULL;
	char buf[1024];

	if (getpwuid_r(getuid(), &pw, buf, sizeof(buf), &found) == 0 && found != NULL)
		snprintf(out, cap, "cli:%s", found->pw_name);
	else
		snprintf(out, cap, "cli:uid=%u", (unsigned)getuid());
}

static void
to_admin_target(const struct target *t, struct admin_target *at)
{
	*at = (struct admin_target){
		.all = t->all, .kind = t->kind, .value = t->value, .sub = t->sub};
}

/* authmd-server revoke: the operator's incident-response switch. It works
 * on the store directly (beside a running server, which sees the change at
 * its next lookup) through the same flow as the admin API's POST
 * /admin/revoke (flows/admin.c), records an audit event per credential
 * naming the operator, and prints the count. Revoking an issuer, subject,
 * user or registration also blocks it durably (see flow_revoke_block)
 * until `unblock`; --all revokes every credential but blocks nothing, so
 * the service can take agents again. */
static int
cmd_revoke(int argc, char **argv)
{
	struct target t;
	struct admin_target at;
	struct am_config cfg;
	struct flow_env env = {0};
	struct audit_sink *sink = NULL;
	struct store *st = NULL;
	struct am_error e = {0};
	json_t *out = NULL;
	char actor[160];
	int count, rc = 1;

	if (parse_target(argc, argv, true, &t) != 0) {
		usage(stderr);
		return 2;
	}
	if (open_operator(&t, &cfg, &env, &sink, &st) != 0)
		goto out;
	cli_actor(actor, sizeof(actor));
	to_admin_target(&t, &at);
	if (flow_admin_revoke(&env, st, actor, &at, &out, &e) != AM_OK) {
		fprintf(stderr, "authmd-server: revoke failed: %s\n", e.detail);
		goto out;
	}
	count = (int)json_integer_value(json_object_get(out, "revoked"));
	if (!t.all)
		printf("%s %s (lift it with authmd-server unblock)\n",
		       strcmp(json_string_value(json_object_get(out, "block")), "created") == 0
			       ? "blocked"
			       : "already blocked",
		       store_block_kind_name(t.kind));
	printf("revoked %d credential%s\n", count, count == 1 ? "" : "s");
	rc = 0;
out:
	json_decref(out);
	store_close(st);
	audit_sink_free(sink);
	return rc;
}

/* authmd-server unblock: lifts a block that revoke made, with a
 * block.lifted audit event naming the operator (the flow of POST
 * /admin/unblock). Nothing is un-revoked; the subject's next ID-JAG
 * registers again. Exit 1 when there was no such block. */
static int
cmd_unblock(int argc, char **argv)
{
	struct target t;
	struct admin_target at;
	struct am_config cfg;
	struct flow_env env = {0};
	struct audit_sink *sink = NULL;
	struct store *st = NULL;
	struct am_error e = {0};
	char actor[160];
	int rc = 1;

	if (parse_target(argc, argv, false, &t) != 0) {
		usage(stderr);
		return 2;
	}
	if (open_operator(&t, &cfg, &env, &sink, &st) != 0)
		goto out;
	cli_actor(actor, sizeof(actor));
	to_admin_target(&t, &at);
	if (flow_admin_unblock(&env, st, actor, &at, &e) != AM_OK) {
		fprintf(stderr, "authmd-server: unblock failed: %s\n", e.detail);
		goto out;
	}
	printf("unblocked %s\n", store_block_kind_name(t.kind));
	rc = 0;
out:
	store_close(st);
	audit_sink_free(sink);
	return rc;
}

/* `authmd-server rotate-key [--config FILE]` (protocol v0.6, issue 13):
 * a new current service signing key; the previous one stays published for
 * [v06] key_overlap. A running server picks the new key up at its next
 * signature. */
static int
cmd_rotate_key(int argc, char **argv)
{
	static const struct option opts[] = {
		{"config", required_argument, NULL, 'c'},
		{NULL, 0, NULL, 0},
	};
	const char *config_path = NULL;
	struct am_config cfg;
	struct am_error e = {0};
	char kid[64];
	int ch;

	optind = 1;
	while ((ch = getopt_long(argc, argv, "c:", opts, NULL)) != -1) {
		if (ch != 'c' || config_path != NULL) {
			usage(stderr);
			return 2;
		}
		config_path = optarg;
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}
	if (load_config(config_path, &cfg) != 0)
		return 1;
	if (skey_rotate(cfg.v06_keys_dir, cfg.v06_key_overlap, am_clock_now(NULL), kid, &e) !=
	    AM_OK) {
		fprintf(stderr, "authmd-server: rotate-key: %s\n", e.detail);
		return 1;
	}
	printf("new service signing key kid=%s; the previous key stays published for %llds\n", kid,
	       (long long)cfg.v06_key_overlap);
	return 0;
}

/* SIGHUP: log and audit files are opened again (after rotation), then the
 * trust list and routes are reloaded from path (NULL: the defaults, which
 * have nothing to reload). Every failure keeps what runs and says why. */
static void
on_hangup(struct app *app, const char *path)
{
	struct am_error e = {0};

	(void)sd_notify(0, "RELOADING=1");
	if (am_log_reopen() != 0)
		log_error("reload: cannot open the log file again: %s; logging on to the old "
			  "one",
			  strerror(errno));
	if (audit_sink_reopen(app->env.audit, &e) != AM_OK)
		log_error("reload: %s; writing on to the old audit file", e.detail);
	if (path != NULL && app_reload(app, path, &e) != AM_OK)
		log_error("reload refused, still serving the previous trust list and routes: %s",
			  e.detail);
	(void)sd_notify(0, "READY=1\nSTATUS=serving");
}

/* The options before a command (getopt_long, stopping at the first word):
 * --help and --version answer as the commands "help" and "version"; a
 * word left in argv[optind] is revoke or unblock. -1 on a usage error. */
static int
parse_main(int argc, char **argv, const char **config_path, bool *check_only, const char **cmd)
{
	static const struct option opts[] = {
		{"config", required_argument, NULL, 'c'},
		{"check-config", required_argument, NULL, 'C'},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{NULL, 0, NULL, 0},
	};
	int ch;

	while ((ch = getopt_long(argc, argv, "+c:hV", opts, NULL)) != -1) {
		switch (ch) {
		case 'c':
		case 'C':
			if (*config_path != NULL || optarg[0] == '\0')
				return -1;
			*config_path = optarg;
			*check_only = ch == 'C';
			break;
		case 'h':
			*cmd = "help";
			return 0;
		case 'V':
			*cmd = "version";
			return 0;
		default:
			return -1;
		}
	}
	if (optind == argc)
		return 0;
	if (*config_path != NULL)
		return -1; /* revoke and unblock take --config after their name */
	if (strcmp(argv[optind], "revoke") != 0 && strcmp(argv[optind], "unblock") != 0 &&
	    strcmp(argv[optind], "rotate-key") != 0 && strcmp(argv[optind], "migrate") != 0)
		return -1;
	*cmd = argv[optind];
	return 0;
}

int
main(int argc, char **argv)
{
	const char *config_path = NULL, *cmd = NULL;
	bool check_only = false;
	struct am_config cfg;
	struct am_error e = {0};
	struct app *app = NULL;
	struct http_server *srv = NULL, *admin = NULL;
	struct sweeper sw = {0};
	sigset_t sigs;
	int sig = 0;
	char why[256], shown[AM_CFG_STR];

	if (parse_main(argc, argv, &config_path, &check_only, &cmd) != 0) {
		usage(stderr);
		return 2;
	}
	if (cmd != NULL && strcmp(cmd, "help") == 0) {
		usage(stdout);
		return 0;
	}
	if (cmd != NULL && strcmp(cmd, "version") == 0) {
		printf("authmd-server %s\n", AUTHMD_VERSION);
		return 0;
	}
	if (cmd != NULL && strcmp(cmd, "revoke") == 0)
		return cmd_revoke(argc - optind, argv + optind);
	if (cmd != NULL && strcmp(cmd, "unblock") == 0)
		return cmd_unblock(argc - optind, argv + optind);
	if (cmd != NULL && strcmp(cmd, "rotate-key") == 0)
		return cmd_rotate_key(argc - optind, argv + optind);
	if (cmd != NULL && strcmp(cmd, "migrate") == 0)
		return cmd_migrate(argc - optind, argv + optind);
	if (load_config(config_path, &cfg) != 0)
		return 1;
	/* The store URL is checked as libpq or SQLite would read it, without
	 * connecting: --check-config runs where the database may not be. */
	if (!store_url_check(cfg.store_url, why, sizeof(why))) {
		fprintf(stderr, "authmd-server: [store] url: %s\n", why);
		return 1;
	}
	/* Every thread that uses the store holds one connection: HTTP workers,
	 * the writer, the mail worker, the sweeper and this one. */
	if (db_url_is_pg(cfg.store_url) && cfg.store_pool_size < cfg.threads + 4) {
		fprintf(stderr,
			"authmd-server: [store] pool_size = %lld is below what [server] threads = "
			"%lld "
			"needs (%lld)\n",
			(long long)cfg.store_pool_size, (long long)cfg.threads,
			(long long)cfg.threads + 4);
		return 1;
	}
	if (check_only) {
		printf("%s: ok\n", config_path);
		return 0;
	}
	(void)am_log_set_level(cfg.log_level);
	(void)am_log_set_format(cfg.log_format);
	am_log_set_requests(cfg.log_requests);
	if (am_log_open(cfg.log_file) != 0) {
		fprintf(stderr, "authmd-server: [log] file: %s: %s\n", cfg.log_file,
			strerror(errno));
		return 1;
	}

	/* Block the stop and reload signals before any thread starts, so that
	 * they all inherit the mask and only sigwait below receives them. */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		fprintf(stderr, "authmd-server: libcurl failed to initialise\n");
		return 1;
	}
	if (app_new(&cfg, &app, &e) != AM_OK) {
		fprintf(stderr, "authmd-server: %s\n", e.detail);
		curl_global_cleanup();
		return 1;
	}
	{
		struct http_options opt = {
			.host = cfg.listen_host,
			.port = cfg.listen_port,
			.threads = (unsigned)cfg.threads,
			.max_body = (size_t)cfg.body_bytes,
			.max_connections = (unsigned)cfg.max_connections,
			.per_ip_connections = (unsigned)cfg.max_connections_per_ip,
			.connection_memory = (size_t)cfg.connection_memory,
			.header_timeout_s = (unsigned)cfg.header_timeout,
			.request_timeout_s = (unsigned)cfg.request_timeout,
			.idle_timeout_s = (unsigned)cfg.idle_timeout,
			.log_interval_s = (unsigned)cfg.slow_log_interval,
			.trusted_proxies = cfg.trusted_proxies,
			.forwarded_rfc7239 = strcmp(cfg.trusted_proxy_header, "forwarded") == 0};

		if (http_server_start(&opt, app->routes, app->nroutes, app, &srv, &e) != AM_OK) {
			fprintf(stderr, "authmd-server: %s\n", e.detail);
			app_free(app);
			curl_global_cleanup();
			return 1;
		}
	}
	/* The admin API: its own listener, so the public one never routes to
	 * it and a firewall can tell them apart (docs/operations.md). */
	if (cfg.admin_listen[0] != '\0') {
		struct http_options aopt = {.host = cfg.admin_host,
					    .port = cfg.admin_port,
					    .threads = 2,
					    .max_body = AM_ADMIN_BODY_BYTES,
					    .per_ip_connections = 16,
					    .header_timeout_s = (unsigned)cfg.header_timeout,
					    .request_timeout_s = (unsigned)cfg.request_timeout,
					    .idle_timeout_s = (unsigned)cfg.idle_timeout,
					    .log_interval_s = (unsigned)cfg.slow_log_interval};

		admin_routes_build(app);
		if (http_server_start(&aopt, app->admin_routes, app->nadmin_routes, app, &admin,
				      &e) != AM_OK) {
			fprintf(stderr, "authmd-server: [admin] listen: %s\n", e.detail);
			http_server_stop(srv);
			app_free(app);
			curl_global_cleanup();
			return 1;
		}
		log_info("admin API listening on %s:%u operators=%zu", cfg.admin_host,
			 (unsigned)cfg.admin_port, cfg.nadmin_keys);
	}
	/* The claim mails go through the durable queue from here on: requests
	 * commit a row and the worker sends it (and what a crash left). */
	if (app->env.mail != NULL && mailer_start(app->env.mail, app->pool, &e) != AM_OK) {
		fprintf(stderr, "authmd-server: %s\n", e.detail);
		if (admin != NULL)
			http_server_stop(admin);
		http_server_stop(srv);
		app_free(app);
		return 1;
	}
	sw.app = app;
	pthread_mutex_init(&sw.mu, NULL);
	pthread_cond_init(&sw.cv, NULL);
	if (pthread_create(&sw.thread, NULL, sweep_loop, &sw) != 0) {
		fprintf(stderr, "authmd-server: cannot start the sweeper\n");
		if (admin != NULL)
			http_server_stop(admin);
		http_server_stop(srv);
		app_free(app);
		return 1;
	}
	log_info("authmd-server %s listening on %s:%u public_url=%s resource=%s store=%s",
		 AUTHMD_VERSION, cfg.listen_host, (unsigned)cfg.listen_port, cfg.public_url,
		 cfg.resource, (store_url_redact(cfg.store_url, shown, sizeof(shown)), shown));
	log_info("flows anonymous=%s verified_email=%s id_jag=%s",
		 cfg.flow_anonymous ? "on" : "off", cfg.flow_verified_email ? "on" : "off",
		 cfg.flow_id_jag ? "on" : "off");
	/* Type=notify units (systemd/): ready once the socket listens; a no-op
	 * without $NOTIFY_SOCKET. */
	(void)sd_notify(0, "READY=1\nSTATUS=serving");

	for (;;) {
		if (sigwait(&sigs, &sig) != 0)
			continue;
		if (sig != SIGHUP)
			break;
		log_info("signal=SIGHUP: reopening logs, reloading the trust list and routes");
		on_hangup(app, config_path);
	}
	log_info("signal=%d: draining", sig);
	(void)sd_notify(0, "STOPPING=1");
	/* No new connections; then the writes already queued are committed
	 * and their parked requests resumed, so none is left suspended when
	 * the daemon stops (libmicrohttpd refuses to stop with one). */
	http_server_quiesce(srv);
	if (admin != NULL)
		http_server_stop(admin); /* its requests never park: they just finish */
	pthread_mutex_lock(&sw.mu);
	sw.stop = true;
	pthread_cond_signal(&sw.cv);
	pthread_mutex_unlock(&sw.mu);
	pthread_join(sw.thread, NULL);
	app_stop_writer(app);
	http_server_stop(srv);
	mailer_stop(app->env.mail); /* before the pool it reads goes */
	app_free(app);
	curl_global_cleanup();
	log_info("stopped");
	return 0;
}
