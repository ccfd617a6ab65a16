#include <stdlib.h>
#include <string.h>

#include "core/json.h"
#include "core/log.h"
#include "flows/ratelimit.h"
#include "service/service.h"

static void
route(struct app *a, const char *method, const char *path, http_handler h)
{
	if (a->nroutes < sizeof(a->routes) / sizeof(a->routes[0]))
		a->routes[a->nroutes++] = (struct http_route){method, path, HTTP_EXACT, h};
}

enum am_err
app_new(const struct am_config *cfg, struct app **out, struct am_error *e)
{
	struct app *a = calloc(1, sizeof(*a));
	enum am_err rc;

	if (a == NULL)
		return am_fail(e, AM_E_INTERNAL, "out of memory");
	a->cfg = cfg;
	a->env.cfg = cfg;
	if ((rc = store_pool_new(cfg->store_url, cfg->tenant, &a->pool, e)) != AM_OK ||
	    (rc = mailer_new(cfg, &a->env.mail, e)) != AM_OK ||
	    (rc = audit_sink_open(cfg->audit_sink, &a->env.audit, e)) != AM_OK ||
	    (rc = discovery_build(a, e)) != AM_OK || (rc = skill_build(a, e)) != AM_OK)
		goto fail;
	if ((a->env.limits = ratelimit_new(cfg->rate_window)) == NULL) {
		rc = am_fail(e, AM_E_INTERNAL, "out of memory");
		goto fail;
	}
	route(a, "GET", "/.well-known/oauth-protected-resource", h_prm);
	if (a->prm_path_inserted[0] != '\0')
		route(a, "GET", a->prm_path_inserted, h_prm);
	route(a, "GET", "/.well-known/oauth-authorization-server", h_as_metadata);
	route(a, "GET", "/auth.md", h_auth_md);
	route(a, "POST", "/agent/auth", h_register);
	route(a, "POST", "/agent/auth/claim", h_claim);
	route(a, "POST", "/agent/auth/claim/complete", h_claim_complete);
	route(a, "POST", "/agent/auth/claim/attempt/challenge", h_claim_challenge);
	route(a, "GET", "/agent/auth/claim/view", h_claim_view);
	route(a, "GET", "/api/resource", h_resource_get);
	route(a, "POST", "/api/resource", h_resource_post);
	*out = a;
	return AM_OK;
fail:
	app_free(a);
	return rc;
}

void
app_free(struct app *a)
{
	if (a == NULL)
		return;
	store_pool_free(a->pool);
	mailer_free(a->env.mail);
	audit_sink_free(a->env.audit);
	ratelimit_free(a->env.limits);
	free(a->prm_json);
	free(a->as_json);
	free(a->auth_md);
	free(a);
}

enum am_err
app_store(struct app *a, struct store **st, struct am_error *e)
{
	return store_pool_get(a->pool, st, e);
}

enum am_err
svc_json_body(struct http_req *rq, json_t **out, struct am_error *e)
{
	if (!http_content_type_is(rq, "application/json"))
		return am_fail(e, AM_E_UNSUPPORTED_MEDIA_TYPE,
			       "send the body as Content-Type: application/json");
	return am_json_object(rq->body.data, rq->body.len, out, e);
}
