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
	fprintf(f,
		"usage: authmd-server [--config FILE]\n"
		"       authmd-server --check-config FILE\n"
		"       authmd-server revoke [--config FILE] (--all | --issuer ISS | --user ID |\n"
		"                            --registration ID)\n"
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

/* authmd-server revoke: the operator's incident-response switch. It works
 * on the store directly (beside a running server, which sees the change at
 * its next lookup), records an audit event per credential and prints the
 * count. */
static int
cmd_revoke(int argc, char **argv)
{
	struct store_cred_filter f = {0};
	const char *config_path = NULL, *what = NULL;
	struct am_config cfg;
	struct flow_env env = {0};
	struct audit_sink *sink = NULL;
	struct store *st = NULL;
	struct am_error e = {0};
	int count = 0, rc = 1;

	for (int i = 1; i < argc; i++) {
		const char *arg = argv[i];
		const char *val = i + 1 < argc ? argv[i + 1] : NULL;

		if (strcmp(arg, "--all") == 0 && what == NULL) {
			what = "all";
			continue;
		}
		if (val == NULL)
			goto usage;
		if (strcmp(arg, "--config") == 0)
			config_path = val;
		else if (strcmp(arg, "--issuer") == 0 && what == NULL)
			f.iss = what = val;
		else if (strcmp(arg, "--user") == 0 && what == NULL)
			f.user_id = what = val;
		else if (strcmp(arg, "--registration") == 0 && what == NULL)
			f.registration_id = what = val;
		else
			goto usage;
		i++;
	}
	if (what == NULL)
		goto usage;
	if (load_config(config_path, &cfg) != 0)
		return 1;
	(void)am_log_set_level("warn");
	env.cfg = &cfg;
	if (audit_sink_open(cfg.audit_sink, &sink, &e) != AM_OK ||
	    store_open(cfg.store_url, cfg.tenant, &st, &e) != AM_OK) {
		fprintf(stderr, "authmd-server: %s\n", e.detail);
		goto out;
	}
	env.audit = sink;
	if (flow_revoke_bulk(&env, st, &f, "operator", &count, &e) != AM_OK) {
		fprintf(stderr, "authmd-server: revoke failed: %s\n", e.detail);
		goto out;
	}
	printf("revoked %d credential%s\n", count, count == 1 ? "" : "s");
	rc = 0;
out:
	store_close(st);
	audit_sink_free(sink);
	return rc;
usage:
	usage(stderr);
	return 2;
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
		struct http_options opt = {
			cfg.listen_host,       cfg.listen_port,
			(unsigned)cfg.threads, (size_t)cfg.body_bytes,
			cfg.trusted_proxies,   strcmp(cfg.trusted_proxy_header, "forwarded") == 0};

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
	http_server_stop(srv);
	pthread_mutex_lock(&sw.mu);
	sw.stop = true;
	pthread_cond_signal(&sw.cv);
	pthread_mutex_unlock(&sw.mu);
	pthread_join(sw.thread, NULL);
	app_free(app);
	curl_global_cleanup();
	log_info("stopped");
	return 0;
}
