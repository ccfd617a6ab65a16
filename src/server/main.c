/* authmd-server: flags, configuration, and the life cycle (serve, sweep,
 * drain on SIGTERM). Everything else is in libauthmd. */
#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/config.h"
#include "core/log.h"
#include "http/http.h"
#include "service/service.h"

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
	fprintf(f, "usage: authmd-server [--config FILE]\n"
		   "       authmd-server --check-config FILE\n"
		   "       authmd-server revoke [--config FILE] (--all | --issuer ISS [--subject "
		   "SUB] |\n"
		   "                            --user ID | --registration ID)\n"
		   "       authmd-server unblock [--config FILE] (--issuer ISS [--subject SUB] |\n"
		   "                             --user ID | --registration ID)\n"
		   "       authmd-server --version\n\n"
		   "Serves the auth.md agent-registration protocol. Without --config it runs on\n"
		   "the built-in defaults (see docs/configuration.md).\n");
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

/* Parses the flags of revoke (allow_all) or unblock; -1 on a usage error. */
static int
parse_target(int argc, char **argv, bool allow_all, struct target *t)
{
	const char *issuer = NULL;

	memset(t, 0, sizeof(*t));
	for (int i = 1; i < argc; i++) {
		const char *arg = argv[i];
		const char *val = i + 1 < argc ? argv[i + 1] : NULL;

		if (strcmp(arg, "--all") == 0 && allow_all && !t->all && !t->set &&
		    issuer == NULL) {
			t->all = true;
			continue;
		}
		if (val == NULL || val[0] == '\0')
			return -1;
		if (strcmp(arg, "--config") == 0 && t->config_path == NULL)
			t->config_path = val;
		else if (t->all)
			return -1; /* --all names everything: nothing else goes with it */
		else if (strcmp(arg, "--issuer") == 0 && issuer == NULL &&
			 (!t->set || t->kind == BLOCK_SUBJECT))
			issuer = val;
		else if (strcmp(arg, "--subject") == 0 && t->sub == NULL && !t->set) {
			t->set = true;
			t->kind = BLOCK_SUBJECT;
			t->sub = val;
		} else if (strcmp(arg, "--user") == 0 && !t->set && issuer == NULL) {
			t->set = true;
			t->kind = BLOCK_USER;
			t->value = val;
		} else if (strcmp(arg, "--registration") == 0 && !t->set && issuer == NULL) {
			t->set = true;
			t->kind = BLOCK_REGISTRATION;
			t->value = val;
		} else
			return -1;
		i++;
	}
	if (issuer != NULL && !t->set) {
		t->set = true;
		t->kind = BLOCK_ISSUER;
	}
	if (issuer != NULL)
		t->value = issuer;
	if (t->set && t->kind == BLOCK_SUBJECT && issuer == NULL)
		return -1; /* a subject is only ever a provider's */
	return t->all || t->set ? 0 : -1;
}

/* Opens what an operator command needs: config, audit sink, store. */
static int
open_operator(const struct target *t, struct am_config *cfg, struct flow_env *env,
	      struct audit_sink **sink, struct store **st)
{
	struct am_error e = {0};

	if (load_config(t->config_path, cfg) != 0)
		return -1;
	(void)am_log_set_level("warn");
	env->cfg = cfg;
	if (audit_sink_open(cfg->audit_sink, sink, &e) != AM_OK ||
	    store_open(cfg->store_url, cfg->tenant, st, &e) != AM_OK) {
		fprintf(stderr, "authmd-server: %s\n", e.detail);
		return -1;
	}
	env->audit = *sink;
	return 0;
}

/* authmd-server revoke: the operator's incident-response switch. It works
 * on the store directly (beside a running server, which sees the change at
 * its next lookup), records an audit event per credential and prints the
 * count. Revoking an issuer, subject, user or registration also blocks it
 * durably (see flow_revoke_block) until `unblock`; --all revokes every
 * credential but blocks nothing, so the service can take agents again. */
static int
cmd_revoke(int argc, char **argv)
{
	struct target t;
	struct am_config cfg;
	struct flow_env env = {0};
	struct audit_sink *sink = NULL;
	struct store *st = NULL;
	struct am_error e = {0};
	struct store_cred_filter all = {0};
	bool created = false;
	int count = 0, rc = 1;
	enum am_err err;

	if (parse_target(argc, argv, true, &t) != 0) {
		usage(stderr);
		return 2;
	}
	if (open_operator(&t, &cfg, &env, &sink, &st) != 0)
		goto out;
	err = t.all ? flow_revoke_bulk(&env, st, &all, "operator", &count, &e)
		    : flow_revoke_block(&env, st, t.kind, t.value, t.sub, &count, &created, &e);
	if (err != AM_OK) {
		fprintf(stderr, "authmd-server: revoke failed: %s\n", e.detail);
		goto out;
	}
	if (!t.all)
		printf("%s %s (lift it with authmd-server unblock)\n",
		       created ? "blocked" : "already blocked", store_block_kind_name(t.kind));
	printf("revoked %d credential%s\n", count, count == 1 ? "" : "s");
	rc = 0;
out:
	store_close(st);
	audit_sink_free(sink);
	return rc;
}

/* authmd-server unblock: lifts a block that revoke made, with a
 * block.lifted audit event. Nothing is un-revoked; the subject's next
 * ID-JAG registers again. Exit 1 when there was no such block. */
static int
cmd_unblock(int argc, char **argv)
{
	struct target t;
	struct am_config cfg;
	struct flow_env env = {0};
	struct audit_sink *sink = NULL;
	struct store *st = NULL;
	struct am_error e = {0};
	int rc = 1;

	if (parse_target(argc, argv, false, &t) != 0) {
		usage(stderr);
		return 2;
	}
	if (open_operator(&t, &cfg, &env, &sink, &st) != 0)
		goto out;
	if (flow_unblock(&env, st, t.kind, t.value, t.sub, &e) != AM_OK) {
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

int
main(int argc, char **argv)
{
	const char *config_path = NULL;
	bool check_only = false;
	struct am_config cfg;
	struct am_error e = {0};
	struct app *app = NULL;
	struct http_server *srv = NULL;
	struct sweeper sw = {0};
	sigset_t sigs;
	int sig = 0;

	if (argc > 1 && strcmp(argv[1], "revoke") == 0)
		return cmd_revoke(argc - 1, argv + 1);
	if (argc > 1 && strcmp(argv[1], "unblock") == 0)
		return cmd_unblock(argc - 1, argv + 1);
	for (int i = 1; i < argc; i++) {
		if ((strcmp(argv[i], "--config") == 0 || strcmp(argv[i], "--check-config") == 0) &&
		    i + 1 < argc) {
			check_only = strcmp(argv[i], "--check-config") == 0;
			config_path = argv[++i];
		} else if (strcmp(argv[i], "--version") == 0) {
			printf("authmd-server %s\n", AUTHMD_VERSION);
			return 0;
		} else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			usage(stdout);
			return 0;
		} else {
			usage(stderr);
			return 2;
		}
	}
	if (load_config(config_path, &cfg) != 0)
		return 1;
	if (check_only) {
		printf("%s: ok\n", config_path);
		return 0;
	}
	(void)am_log_set_level(cfg.log_level);

	/* Block the stop signals before any thread starts, so that they all
	 * inherit the mask and only sigwait below receives them. */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
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
		struct http_options opt = {cfg.listen_host,
					   cfg.listen_port,
					   (unsigned)cfg.threads,
					   (size_t)cfg.body_bytes,
					   (unsigned)cfg.max_connections,
					   (unsigned)cfg.max_connections_per_ip,
					   (unsigned)cfg.header_timeout,
					   (unsigned)cfg.request_timeout,
					   (unsigned)cfg.idle_timeout,
					   (unsigned)cfg.slow_log_interval};

		if (http_server_start(&opt, app->routes, app->nroutes, app, &srv, &e) != AM_OK) {
			fprintf(stderr, "authmd-server: %s\n", e.detail);
			app_free(app);
			curl_global_cleanup();
			return 1;
		}
	}
	sw.app = app;
	pthread_mutex_init(&sw.mu, NULL);
	pthread_cond_init(&sw.cv, NULL);
	if (pthread_create(&sw.thread, NULL, sweep_loop, &sw) != 0) {
		fprintf(stderr, "authmd-server: cannot start the sweeper\n");
		http_server_stop(srv);
		app_free(app);
		return 1;
	}
	log_info("authmd-server %s listening on %s:%u public_url=%s resource=%s store=%s",
		 AUTHMD_VERSION, cfg.listen_host, (unsigned)cfg.listen_port, cfg.public_url,
		 cfg.resource, cfg.store_url);
	log_info("flows anonymous=%s verified_email=%s id_jag=%s",
		 cfg.flow_anonymous ? "on" : "off", cfg.flow_verified_email ? "on" : "off",
		 cfg.flow_id_jag ? "on" : "off");

	while (sigwait(&sigs, &sig) != 0) {
	}
	log_info("signal=%d: draining", sig);
	/* No new connections; then the writes already queued are committed
	 * and their parked requests resumed, so none is left suspended when
	 * the daemon stops (libmicrohttpd refuses to stop with one). */
	http_server_quiesce(srv);
	pthread_mutex_lock(&sw.mu);
	sw.stop = true;
	pthread_cond_signal(&sw.cv);
	pthread_mutex_unlock(&sw.mu);
	pthread_join(sw.thread, NULL);
	app_stop_writer(app);
	http_server_stop(srv);
	app_free(app);
	curl_global_cleanup();
	log_info("stopped");
	return 0;
}
