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

/* Which CORS rules a route follows (cors.c). */
enum cors_class { CORS_NONE, CORS_PUBLIC, CORS_AGENT };

/* A route reached through h_cors: its real handler and class. */
struct cors_route {
	const char *method, *path;
	http_handler handler;
	enum cors_class cls;
};

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
	struct http_route routes[64];
	size_t nroutes;
	/* gate (docs/gate.md) */
	struct ratelimit *gate_limits;	   /* per-minute limits of introspect and revoke */
	struct am_cidr_list metrics_allow; /* [metrics] allow; empty: anyone */
	struct cors_route cors[24];	   /* the routes h_cors dispatches (cors.c) */
	size_t ncors;
	/* protocol v0.6 (issue 13) */
	struct skey *skey; /* the service's signing keys (jose/skey.h) */
	/* operator surface (admin.c): configurations replaced by SIGHUP,
	 * kept until app_free since a request may still read one */
	struct app_retired *retired;
	struct http_route admin_routes[8];
	size_t nadmin_routes;
};

/* Builds the app from cfg: store pool (migrated), mailer, audit sink, rate
 * limits, discovery documents, auth.md, routes. */
enum am_err app_new(const struct am_config *cfg, struct app **out, struct am_error *e) AM_WUR;
/* Finishes every write queued for the store writer (each waiting request
 * is resumed with its outcome) and stops it; later durable writes are
 * refused with 503. Called on shutdown before the HTTP server stops. */
void app_stop_writer(struct app *a);
void app_free(struct app *a);

/* This worker thread's store (handler.c). */
enum am_err app_store(struct app *a, struct store **st, struct am_error *e) AM_WUR;

/* True when ID-JAG registration is on and some provider is trusted
 * (discovery.c: what the documents advertise). */
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

/* The gate (authz.c): checks the Authorization header of a request for
 * (method, target) against the route policy. AM_OK fills *auth; a refusal
 * sets the challenge on rs (401 discovery pointer, 403 insufficient_scope
 * with the route's scopes) and never an identity header. A DPoP-bound
 * credential (RFC 9449) must come as "Authorization: DPoP" with a DPoP
 * proof for method and origin + target (the URL the client called; origin
 * is scheme://host[:port]); a refusal of the proof is
 * AM_E_DPOP_PROOF_REFUSED with a "WWW-Authenticate: DPoP" challenge. */
enum am_err svc_gate(struct app *a, struct http_req *rq, struct http_resp *rs, const char *method,
		     const char *origin, const char *target, struct store_auth *auth,
		     struct am_error *e) AM_WUR;

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

/* The gate's handlers: forward-auth (authz.c), RFC 7662 and RFC 7009
 * (introspect.c), operations (ops.c). */
enum am_err h_authz(void *app, struct http_req *rq, struct http_resp *rs, struct am_error *e);
enum am_err h_introspect(void *app, struct http_req *rq, struct http_resp *rs, struct am_error *e);
enum am_err h_oauth_revoke(void *app, struct http_req *rq, struct http_resp *rs,
			   struct am_error *e);
enum am_err h_healthz(void *app, struct http_req *rq, struct http_resp *rs, struct am_error *e);
enum am_err h_readyz(void *app, struct http_req *rq, struct http_resp *rs, struct am_error *e);
enum am_err h_metrics(void *app, struct http_req *rq, struct http_resp *rs, struct am_error *e);
/* CORS (cors.c): h_cors runs the marked route's real handler from a->cors
 * and adds the CORS headers of its class to the answer (never to an HTML
 * one); h_preflight answers OPTIONS on a marked path with 204, Allow, and,
 * for an origin the class admits, Access-Control-Allow-Origin, -Methods,
 * -Headers (Authorization, Content-Type) and -Max-Age. Neither ever sends
 * Access-Control-Allow-Credentials. */
enum am_err h_cors(void *app, struct http_req *rq, struct http_resp *rs, struct am_error *e);
enum am_err h_preflight(void *app, struct http_req *rq, struct http_resp *rs, struct am_error *e);

/* Protocol v0.6 (identity.c): POST /agent/identity, POST /oauth2/token
 * (RFC 7523 jwt-bearer), POST /agent/event/notify (RFC 8935), GET
 * /.well-known/jwks.json. */
enum am_err h_identity(void *app, struct http_req *rq, struct http_resp *rs, struct am_error *e);
enum am_err h_token(void *app, struct http_req *rq, struct http_resp *rs, struct am_error *e);
enum am_err h_event_notify(void *app, struct http_req *rq, struct http_resp *rs,
			   struct am_error *e);
enum am_err h_service_jwks(void *app, struct http_req *rq, struct http_resp *rs,
			   struct am_error *e);

/* POST /agent/identity/claim, dispatched on the body's type (claim_api.c),
 * and the v0.4-v0.6 ceremony's RFC 8628 block (user_code,
 * verification_uri[_complete], expires_in from now, interval) of an attempt,
 * a new reference (ceremony.c). */
enum am_err h_identity_claim(void *app, struct http_req *rq, struct http_resp *rs,
			     struct am_error *e);
json_t *svc_ceremony_block(const struct app *a, const struct ceremony_block *c, int64_t now);
/* Sets body's "claim" to c's v0.6 block; where body has (b)'s claim
 * {token, expires_at, url} already, the two share no member, so one object
 * holds both, with (b)'s attempt {id, verification_uri, expires_at} inside
 * (docs/protocol.md). */
void svc_claim_block_set(const struct app *a, json_t *body, const struct ceremony_block *c);
/* v0.5's 401 login_required: {error, error_description, message, max_age}
 * and WWW-Authenticate: AgentAuth with max_age, no-store; the detail of e. */
void svc_login_required(struct http_resp *rs, int64_t max_age, const struct am_error *e);
/* v0.5's 401 interaction_required of a first link: body (taken) gets the
 * error, claim_attempt_id and the claim block of c; WWW-Authenticate:
 * AgentAuth, no-store. */
void svc_interaction_required(const struct app *a, struct http_resp *rs, json_t *body,
			      const struct ceremony_block *c);
/* The verification URL of attempt c into out (cap bytes): /login with the
 * attempt's /claim page as return_to; complete adds the user_code to it. */
void svc_verification_uri(const struct app *a, const struct ceremony_block *c, bool complete,
			  char *out, size_t cap);
/* The v0.6 body of POST /agent/identity/claim (ceremony.c; req borrowed,
 * parsed by the caller, the dispatch on type is claim_api.c). */
enum am_err svc_ceremony_claim(struct app *a, struct http_req *rq, struct http_resp *rs,
			       const json_t *req, struct am_error *e) AM_WUR;
/* The read-back ceremony's agent side (readback_api.c): POST
 * /agent/identity/claim {type: login_hint, claim_token, login_hint?}
 * (req borrowed, parsed by the caller), and POST
 * /agent/identity/claim/complete {claim_token, user_code}. */
enum am_err svc_readback_claim(struct app *a, struct http_req *rq, struct http_resp *rs,
			       const json_t *req, struct am_error *e) AM_WUR;
enum am_err h_readback_complete(void *app, struct http_req *rq, struct http_resp *rs,
				struct am_error *e);
/* v0.7's ID-JAG claim of an anonymous registration (ceremony.c): POST
 * /agent/identity/claim {type: identity_assertion, claim_token, assertion}
 * (req borrowed, parsed by the caller), verified on the worker and parked
 * for its commit. */
enum am_err svc_idjag_claim(struct app *a, struct http_req *rq, struct http_resp *rs,
			    const json_t *req, struct am_error *e) AM_WUR;
/* The pages of the ceremony (ceremony_page.c): GET /claim (signed in as
 * the bound address: what is claimed and the user_code form) and its form
 * action POST /claim/confirm (either ceremony: confirm or reject). */
enum am_err h_ceremony_page(void *app, struct http_req *rq, struct http_resp *rs,
			    struct am_error *e);
enum am_err h_ceremony_complete(void *app, struct http_req *rq, struct http_resp *rs,
				struct am_error *e);
/* What the agent's client metadata document says about it, when its
 * registration came with one (claim_page.c): the name (escaped, as every
 * outside value on the pages) and the logo, appended to b. *img_origin
 * (cap bytes) is set to the logo's origin for the CSP when a logo is shown,
 * else "". */
struct am_buf;
enum am_err svc_client_block(struct app *a, const char *registration_id, struct am_buf *b,
			     char *img_origin, size_t cap, struct am_error *e) AM_WUR;

/* The JSON answer of the challenge endpoint (agent_api.c). */
enum am_err svc_challenge_json(struct app *a, struct http_req *rq, struct http_resp *rs,
			       struct am_error *e) AM_WUR;

/* Parking a request on a struct flow_pending_op (agent_api.c): svc_op_park
 * runs submit (a flow's *_submit, given &k->p, svc_op_committed and k) and,
 * when it queued the job, parks rq until the commit; then render answers
 * from the op's outcome rc (AM_OK: durable; else the error in *e, which
 * render returns or turns into a page). When submit refuses, its error is
 * returned and nothing is parked. */
typedef enum am_err (*svc_op_render)(struct app *a, struct http_req *rq, struct http_resp *rs,
				     struct flow_pending_op *p, enum am_err rc, struct am_error *e);
typedef enum am_err (*svc_op_submit)(struct app *a, struct http_req *rq, struct flow_pending_op *p,
				     void *submit_arg, bool *queued, void (*done)(void *arg),
				     void *done_arg, struct am_error *e);
enum am_err svc_op_park(struct app *a, struct http_req *rq, svc_op_submit submit, void *submit_arg,
			svc_op_render render, struct http_resp *rs, struct am_error *e) AM_WUR;

/* Parses a JSON request body, refusing other media types (415). */
enum am_err svc_json_body(struct http_req *rq, json_t **out, struct am_error *e) AM_WUR;

/* Renders refusal rc of an OAuth endpoint (/oauth2/token, /oauth2/revoke)
 * in RFC 6749 5.2's {error, error_description}, no-store, as 400 (401 for
 * the codes the table gives 401; a bad media type or size is
 * invalid_request) and returns AM_OK; the server's own trouble (429, 503,
 * 500) is returned unrendered, for the common renderer. */
enum am_err svc_oauth_error(struct http_resp *rs, enum am_err rc, const struct am_error *e) AM_WUR;

/* ---- operator surface (admin.c; docs/operations.md) ---- */

/* Logs cfg's trust list and records what changed since the last one the
 * store saw as a trust_list.changed audit event (app.c). */
enum am_err app_log_trust_list(struct app *a, const struct am_config *cfg,
			       struct am_error *e) AM_WUR;

/* SIGHUP: loads path and, when it is valid, makes its [provider] and
 * [route] sections the running trust list and route policy (a new
 * generation of a->env.cfg, published atomically; the old one stays alive
 * until app_free, so no request reading it is disturbed). A file with the
 * running trust list and routes changes nothing; one equal to a
 * configuration loaded before reuses it, so memory grows only with
 * different configurations, at most AM_RELOAD_MAX_CONFIGS of them. Any
 * other key that differs is logged as needing a restart and ignored. A
 * file that does not load, that would switch ID-JAG on or off (no provider
 * before or after), or that would pass that cap leaves everything as it
 * was: AM_E_INVALID_REQUEST with the reason, which the caller logs. */
enum am_err app_reload(struct app *a, const char *path, struct am_error *e) AM_WUR;
/* Frees the generations app_reload retired (app_free calls it). */
void app_reload_free(struct app *a);

/* The admin API's route table (a->admin_routes), served on [admin] listen
 * by its own HTTP server. Every route needs an operator key. */
void admin_routes_build(struct app *a);

#endif
