#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/json.h"
#include "core/log.h"
#include "core/url.h"
#include "flows/ratelimit.h"
#include "jose/skey.h"
#include "trust/cimd.h"
#include "trust/trust.h"
#include "service/service.h"
#include "service/page.h"
#include "service/websession.h"

static void
route(struct app *a, const char *method, const char *path, http_handler h)
{
	if (a->nroutes < sizeof(a->routes) / sizeof(a->routes[0]))
		a->routes[a->nroutes++] = (struct http_route){method, path, HTTP_EXACT, h};
}

/* gate: a route of any method, or of a path prefix (Envoy's ext_authz). */
static void
route_any(struct app *a, const char *path, enum http_match match, http_handler h)
{
	if (a->nroutes < sizeof(a->routes) / sizeof(a->routes[0]))
		a->routes[a->nroutes++] = (struct http_route){"*", path, match, h};
}

/* A route with CORS headers of class cls (cors.c), and OPTIONS on its path
 * answered as a preflight. */
static void
route_cors(struct app *a, const char *method, const char *path, http_handler h, enum cors_class cls)
{
	bool seen = false;

	for (size_t i = 0; i < a->ncors; i++)
		seen = seen || strcmp(a->cors[i].path, path) == 0;
	if (a->ncors >= sizeof(a->cors) / sizeof(a->cors[0]))
		return;
	a->cors[a->ncors++] = (struct cors_route){method, path, h, cls};
	route(a, method, path, h_cors);
	if (!seen)
		route(a, "OPTIONS", path, h_preflight);
}

enum am_err
app_new(const struct am_config *cfg, struct app **out, struct am_error *e)
{
	struct app *a = calloc(1, sizeof(*a));
	/* [store] bounds for PostgreSQL (store/pq.c) */
	struct store_pool_opts po = {(int)cfg->store_connect_timeout,
				     (int)cfg->store_statement_timeout * 1000,
				     (int)cfg->store_pool_size};
	enum am_err rc;

	if (a == NULL)
		return am_fail(e, AM_E_INTERNAL, "out of memory");
	a->cfg = cfg;
	a->env.cfg = cfg;

	if ((rc = store_pool_new_opts(cfg->store_url, cfg->tenant, &po, &a->pool, e)) != AM_OK ||
	    (rc = store_writer_new(a->pool, (int)cfg->store_writer_priority, &a->env.writer, e)) != AM_OK ||
	    (rc = mailer_new(cfg, &a->env.mail, e)) != AM_OK ||
	    (rc = audit_sink_open(cfg->audit_sink, &a->env.audit, e)) != AM_OK ||
	    (rc = trust_new(cfg, &a->env.trust, e)) != AM_OK ||
	    (rc = cimd_new(cfg, &a->env.cimd, e)) != AM_OK ||
	    (rc = skey_open(cfg->v06_keys_dir, cfg->v06_key_overlap, am_clock_now(NULL), &a->skey,
			    e)) != AM_OK ||
	    (rc = app_log_trust_list(a, cfg, e)) != AM_OK ||
	    (rc = discovery_build(a, e)) != AM_OK || (rc = skill_build(a, e)) != AM_OK)
		goto fail;
	{ /* gate */
		char why[128];

		if (am_cidr_parse(cfg->metrics_allow, &a->metrics_allow, why, sizeof(why)) != 0) {
			rc = am_fail(e, AM_E_INVALID_REQUEST, "[metrics] allow: %s", why);
			goto fail;
		}
	}
	if ((a->env.limits = ratelimit_new(cfg->rate_window)) == NULL ||
	    (a->gate_limits = ratelimit_new(60)) == NULL) {
		rc = am_fail(e, AM_E_INTERNAL, "out of memory");
		goto fail;
	}
	ratelimit_share(a->env.limits, a->pool); /* across replicas on PostgreSQL */
	route_cors(a, "GET", "/.well-known/oauth-protected-resource", h_prm, CORS_PUBLIC);
	if (a->prm_path_inserted[0] != '\0')
		route_cors(a, "GET", a->prm_path_inserted, h_prm, CORS_PUBLIC);
	route_cors(a, "GET", "/.well-known/oauth-authorization-server", h_as_metadata, CORS_PUBLIC);
	route_cors(a, "GET", "/auth.md", h_auth_md, CORS_PUBLIC);
	route_cors(a, "POST", "/agent/auth", h_register, CORS_AGENT);
	route_cors(a, "POST", "/agent/auth/claim", h_claim, CORS_AGENT);
	route_cors(a, "POST", "/agent/auth/claim/complete", h_claim_complete, CORS_AGENT);
	/* Its HTML answer (the code page, for the claim page's form) gets no
	 * CORS headers: cors.c never decorates HTML. */
	route_cors(a, "POST", "/agent/auth/claim/attempt/challenge", h_claim_challenge, CORS_AGENT);
	if (app_id_jag_enabled(cfg))
		route_cors(a, "POST", "/agent/auth/revoke", h_revoke, CORS_AGENT);
	/* The claim page is never cross-origin: no CORS route. */
	route(a, "GET", "/agent/auth/claim/view", h_claim_view);
	route(a, "GET", "/api/resource", h_resource_get);
	route(a, "POST", "/api/resource", h_resource_post);
	/* gate (docs/gate.md) */
	route_any(a, "/authz", HTTP_EXACT, h_authz);
	route_any(a, "/authz/", HTTP_PREFIX, h_authz);
	route(a, "POST", "/oauth2/introspect", h_introspect);
	route(a, "POST", "/oauth2/revoke", h_oauth_revoke);
	route(a, "GET", "/healthz", h_healthz);
	route(a, "GET", "/readyz", h_readyz);
	route(a, "GET", "/metrics", h_metrics);
	/* protocol v0.6 (issue 13) */
	route_cors(a, "GET", "/.well-known/jwks.json", h_service_jwks, CORS_PUBLIC);
	route_cors(a, "POST", "/agent/identity", h_identity, CORS_AGENT);
	route_cors(a, "POST", "/agent/identity/claim", h_identity_claim, CORS_AGENT);
	/* the read-back ceremony's completion by the agent (issue 14, (b)) */
	route_cors(a, "POST", "/agent/identity/claim/complete", h_readback_complete, CORS_AGENT);
	route_cors(a, "POST", "/oauth2/token", h_token, CORS_AGENT);
	if (app_id_jag_enabled(cfg))
		route(a, "POST", "/agent/event/notify", h_event_notify);
	/* user sign-in at the service (issue 14; service/login_page.c) */
	route(a, "GET", PAGE_CSS_PATH, h_page_css);
	if (cfg->login_enabled) {
		route(a, "GET", "/login", h_login_form);
		route(a, "POST", "/login", h_login_start);
		route(a, "GET", "/login/verify", h_login_link);
		route(a, "POST", "/login/verify", h_login_verify);
		route(a, "POST", "/logout", h_logout);
	}
	route(a, "POST", CLAIM_REJECT_PATH, h_claim_reject);
	/* the v0.4-v0.6 user_code ceremony's pages (issue 14): they need sign-in */
	if (cfg->login_enabled) {
		route(a, "GET", "/claim", h_ceremony_page);
		/* both ceremonies' form actions (the v0.6 code, (b)'s confirm) */
		route(a, "POST", "/claim/confirm", h_ceremony_complete);
	}
	*out = a;
	return AM_OK;
fail:
	app_free(a);
	return rc;
}

void
app_stop_writer(struct app *a)
{
	/* First: a request parked on a document fetch is resumed (refused)
	 * now, and none goes on to submit to the writer once it is gone. */
	cimd_stop(a->env.cimd);
	store_writer_free(a->env.writer);
	a->env.writer = NULL;
}

void
app_free(struct app *a)
{
	if (a == NULL)
		return;
	app_stop_writer(a);
	app_reload_free(a);
	store_pool_free(a->pool);
	mailer_free(a->env.mail);
	audit_sink_free(a->env.audit);
	ratelimit_free(a->env.limits);
	ratelimit_free(a->gate_limits);
	trust_free(a->env.trust);
	cimd_free(a->env.cimd);
	skey_free(a->skey);
	free(a->prm_json);
	free(a->as_json);
	free(a->auth_md);
	free(a);
}
