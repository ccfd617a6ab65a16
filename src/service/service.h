/* The service: one handler per protocol surface over the flows. A handler
 * parses and validates input, calls one flow, and shapes the response; the
 * protocol decisions live in flows/. */
#ifndef AM_SERVICE_H
#define AM_SERVICE_H

#include "core/config.h"
#include "flows/flows.h"
#include "http/http.h"
#include "store/store.h"

#define SVC_URL_MAX 600

struct app {
	const struct am_config *cfg;
	struct flow_env env;
	struct store_pool *pool;
	/* Documents fixed at start-up (the config does not change while
	 * serving), so discovery costs one copy per request. */
	char *prm_json;
	char *as_json;
	char *auth_md;
	char prm_url[SVC_URL_MAX];	     /* the URL the 401 header points to */
	char prm_path_inserted[SVC_URL_MAX]; /* RFC 9728 path form; empty if none */
	struct http_route routes[16];
	size_t nroutes;
};

/* Builds the app from cfg: store pool (migrated), mailer, audit sink, rate
 * limits, discovery documents, auth.md, routes. */
enum am_err app_new(const struct am_config *cfg, struct app **out, struct am_error *e) AM_WUR;
/* Finishes every write queued for the store writer (each waiting request
 * is resumed with its outcome) and stops it; later durable writes are
 * refused with 503. Called on shutdown before the HTTP server stops. */
void app_stop_writer(struct app *a);
void app_free(struct app *a);

/* This worker thread's store. */
enum am_err app_store(struct app *a, struct store **st, struct am_error *e) AM_WUR;

/* True when ID-JAG registration is on and some provider is trusted. */
bool app_id_jag_enabled(const struct am_config *cfg);

/* Builds the discovery documents and the PRM URLs (discovery.c). */
enum am_err discovery_build(struct app *a, struct am_error *e) AM_WUR;
/* Renders auth.md from the template or loads the operator's file (skill.c). */
enum am_err skill_build(struct app *a, struct am_error *e) AM_WUR;
/* Fills tmpl's {{name}} fields and {{#flag}}...{{/flag}} sections for cfg;
 * the result is the caller's (free()). Used by skill_build and its tests. */
char *skill_render(const struct app *a, const char *tmpl);

/* Sets the WWW-Authenticate discovery header on rs (resource.c); error may
 * be NULL (no credentials sent) or an RFC 6750 error code, scope NULL. */
void resource_challenge(struct app *a, struct http_resp *rs, const char *error, const char *scope);

/* Handlers, in the route table built by app_new. */
enum am_err h_prm(void *app, struct http_req *rq, struct http_resp *rs, struct am_error *e);
enum am_err h_as_metadata(void *app, struct http_req *rq, struct http_resp *rs, struct am_error *e);
enum am_err h_auth_md(void *app, struct http_req *rq, struct http_resp *rs, struct am_error *e);
enum am_err h_register(void *app, struct http_req *rq, struct http_resp *rs, struct am_error *e);
enum am_err h_claim(void *app, struct http_req *rq, struct http_resp *rs, struct am_error *e);
enum am_err h_claim_complete(void *app, struct http_req *rq, struct http_resp *rs,
			     struct am_error *e);
enum am_err h_claim_challenge(void *app, struct http_req *rq, struct http_resp *rs,
			      struct am_error *e);
enum am_err h_claim_view(void *app, struct http_req *rq, struct http_resp *rs, struct am_error *e);
enum am_err h_revoke(void *app, struct http_req *rq, struct http_resp *rs, struct am_error *e);
enum am_err h_resource_get(void *app, struct http_req *rq, struct http_resp *rs,
			   struct am_error *e);
enum am_err h_resource_post(void *app, struct http_req *rq, struct http_resp *rs,
			    struct am_error *e);

/* The JSON answer of the challenge endpoint (agent_api.c). */
enum am_err svc_challenge_json(struct app *a, struct http_req *rq, struct http_resp *rs,
			       struct am_error *e) AM_WUR;

/* Parses a JSON request body, refusing other media types (415). */
enum am_err svc_json_body(struct http_req *rq, json_t **out, struct am_error *e) AM_WUR;

#endif
