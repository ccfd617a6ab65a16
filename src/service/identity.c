/* Protocol v0.6 (issue 13), the thin surface over the same flows as v0.1:
 * POST /agent/identity, POST /oauth2/token, POST /agent/event/notify and
 * GET /.well-known/jwks.json. Each endpoint keeps the error envelope its
 * text names: the v0.6 guide's {error, message} at /agent/identity (the
 * http/ renderer's), RFC 6749 5.2's {error, error_description} at the
 * token endpoint, RFC 8935 2.4's {err, description} at the SET receiver. */
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/protocol.h"
#include "core/clock.h"
#include "core/json.h"
#include "core/limits.h"
#include "core/log.h"
#include "core/str.h"
#include "jose/jose.h"
#include "flows/dpop.h"
#include "jose/skey.h"
#include "service/service.h"

static void
no_store(struct http_resp *rs)
{
	http_add_header(rs, "Cache-Control", "no-store");
	http_add_header(rs, "Pragma", "no-cache");
}

/* An /agent/identity answer in both envelopes: every v0.6 field
 * (registration_id, registration_type, identity_assertion, ...) and
 * proposal (b)'s (id, type, identity {assertion, expires_at,
 * refresh_token}, claim {token, expires_at, url}); docs/protocol.md. The
 * claim fields only where a claim is possible and its token is known (a
 * refresh answer has none: the claim token is shown once). `refresh`: the
 * scopes are the registration's current ones, under "scopes". */
static json_t *
identity_body(const struct app *a, const struct v06_reg_result *r, const char *type, bool refresh)
{
	json_t *body = json_object();
	char url[SVC_URL_MAX];
	bool anonymous = r->reg.kind == REG_ANONYMOUS;

	json_object_set_new(body, "registration_id", json_string(r->reg.registration_id));
	json_object_set_new(body, "registration_type", json_string(type));
	json_object_set_new(body, "id", json_string(r->reg.registration_id));
	json_object_set_new(body, "type", json_string(type));
	if (r->assertion != NULL) {
		json_t *identity = json_pack("{s:s, s:o}", "assertion", r->assertion, "expires_at",
					     am_json_time(r->assertion_expires));

		if (r->refresh_token[0] != '\0') {
			json_object_set_new(identity, "refresh_token",
					    json_string(r->refresh_token));
			json_object_set_new(identity, "refresh_token_expires_at",
					    am_json_time(r->refresh_expires));
		}
		json_object_set_new(body, "identity", identity);
		json_object_set_new(body, "identity_assertion", json_string(r->assertion));
		json_object_set_new(body, "assertion_expires", am_json_time(r->assertion_expires));
		json_object_set_new(body, anonymous && !refresh ? "pre_claim_scopes" : "scopes",
				    am_json_scopes(r->reg.scopes));
	}
	if (r->reg.claim_token[0] == '\0' || (!anonymous && r->assertion != NULL))
		return body;
	snprintf(url, sizeof(url), "%s/agent/identity/claim", a->cfg->public_url);
	json_object_set_new(body, "claim_url", json_string(url));
	json_object_set_new(body, "claim_token", json_string(r->reg.claim_token));
	json_object_set_new(body, "claim_token_expires", am_json_time(r->reg.claim_token_expires));
	json_object_set_new(body, "post_claim_scopes", am_json_scopes(r->reg.post_claim_scopes));
	json_object_set_new(body, "claim",
			    json_pack("{s:s, s:o, s:s}", "token", r->reg.claim_token, "expires_at",
				      am_json_time(r->reg.claim_token_expires), "url", url));
	return body;
}

/* v0.6 service_auth: the registration and its first ceremony attempt; the
 * assertion comes with the claim grant once the user completed. */
static enum am_err
service_auth(struct app *a, struct store *st, struct http_req *rq, struct http_resp *rs,
	     const json_t *req, struct am_error *e)
{
	struct service_auth_result res = {0};
	const char *hint;
	json_t *body;
	enum am_err rc;

	if (!a->cfg->flow_service_auth)
		return am_fail(e, AM_E_SERVICE_AUTH_NOT_ENABLED,
			       "this service does not offer service_auth; use anonymous or "
			       "identity_assertion");
	/* A string that is no address is the v0.6 error; no string at all is
	 * a malformed request. */
	hint = json_string_value(json_object_get(req, "login_hint"));
	if (hint == NULL)
		return am_fail(e, AM_E_INVALID_REQUEST,
			       "the field \"login_hint\" must be a string");
	if (strlen(hint) > AM_MAX_EMAIL_BYTES)
		return am_fail(e, AM_E_INVALID_LOGIN_HINT, "login_hint is too long for an address");
	if ((rc = flow_service_auth_register(&a->env, st, rq->ip, hint, &res, e)) != AM_OK)
		goto out;
	body = identity_body(a, &(struct v06_reg_result){.reg = res.reg}, "service_auth", false);
	json_object_set_new(body, "claim_attempt_id", json_string(res.claim.attempt_id));
	svc_claim_block_set(a, body, &res.claim);
	http_reply_json(rs, 200, body);
	no_store(rs);
out:
	flow_result_wipe(&res, sizeof(res));
	return rc;
}

/* A v0.6 request parked while its commit is pending. */
struct v06_park {
	struct flow_pending_v06 p;
	struct http_req *rq;
	enum am_err (*render)(struct app *a, struct http_resp *rs, struct flow_pending_v06 *p,
			      enum am_err rc, struct am_error *e);
};

static void
v06_park_free(void *ctx)
{
	struct v06_park *k = ctx;

	flow_pending_v06_wipe(&k->p);
	free(k);
}

static void
v06_committed(void *arg)
{
	struct v06_park *k = arg;

	http_resume(k->rq);
}

static enum am_err
v06_finish(void *app, struct http_req *rq, struct http_resp *rs, struct am_error *e)
{
	struct v06_park *k = rq->park_ctx;

	return k->render(app, rs, &k->p, flow_pending_v06_result(&k->p, e), e);
}

/* /agent/identity's answer for rc (a refusal at submit or the outcome). */
static enum am_err
identity_render(struct app *a, struct http_resp *rs, struct flow_pending_v06 *p, enum am_err rc,
		struct am_error *e)
{
	if (rc == AM_E_LOGIN_REQUIRED) {
		svc_login_required(rs,
				   p != NULL && p->kind == FLOW_V06_IDJAG
					   ? p->idjag.max_auth_age
					   : a->cfg->v06_max_auth_age,
				   e);
		return AM_OK;
	}
	if (rc != AM_OK)
		return rc;
	if (p->res.assertion == NULL) {
		/* v0.5 first link: the account's owner confirms in the user_code
		 * ceremony (docs/protocol.md); the claim grant then answers. */
		svc_interaction_required(
			a, rs, identity_body(a, &p->res, "identity_assertion", false), &p->res.claim);
	} else if (p->kind == FLOW_V06_REFRESH) {
		http_reply_json(
			rs, 200,
			identity_body(a, &p->res, flow_v06_type_name(p->res.reg.kind), true));
		no_store(rs);
	} else {
		http_reply_json(rs, 200,
				identity_body(a, &p->res,
					      p->kind == FLOW_V06_ANONYMOUS ? "anonymous"
									    : "identity_assertion",
					      false));
		no_store(rs);
	}
	return AM_OK;
}

/* The token endpoint's answer for rc, in RFC 6749's shapes. */
static enum am_err
token_render(struct app *a, struct http_resp *rs, struct flow_pending_v06 *p, enum am_err rc,
	     struct am_error *e)
{
	const struct v06_token_result *t = &p->token;

	(void)a;
	if (rc != AM_OK)
		return svc_oauth_error(rs, rc, e);
	log_info("token issued registration=%s scopes=\"%s\"", t->registration_id, t->scopes);
	http_reply_json(rs, 200,
			json_pack("{s:s, s:s, s:I, s:s}", "access_token", t->access_token,
				  "token_type", p->jkt[0] != '\0' ? "DPoP" : "Bearer", "expires_in",
				  (json_int_t)t->expires_in, "scope", t->scopes));
	no_store(rs);
	return AM_OK;
}

/* Allocates the parking place of a v0.6 request. */
static enum am_err
v06_park_new(struct http_req *rq, struct v06_park **out, struct am_error *e)
{
	if ((*out = calloc(1, sizeof(**out))) == NULL)
		return am_fail(e, AM_E_INTERNAL, "out of memory");
	(*out)->rq = rq;
	return AM_OK;
}

enum am_err
h_identity(void *app, struct http_req *rq, struct http_resp *rs, struct am_error *e)
{
	struct app *a = app;
	struct v06_park *k = NULL;
	json_t *req = NULL;
	const char *type, *atype, *assertion;
	enum am_err rc;

	if ((rc = svc_json_body(rq, &req, e)) != AM_OK)
		return rc;
	if ((rc = am_json_string(req, "type", true, AM_MAX_FIELD_BYTES, &type, e)) != AM_OK)
		goto out;
	if (strcmp(type, "anonymous") == 0) {
		if ((rc = v06_park_new(rq, &k, e)) == AM_OK)
			rc = flow_v06_register_anonymous_submit(&a->env, a->skey, rq->ip, &k->p,
								v06_committed, k, e);
	} else if (strcmp(type, "identity_assertion") == 0) {
		if ((rc = am_json_string(req, "assertion_type", true, AM_MAX_FIELD_BYTES, &atype,
					 e)) != AM_OK ||
		    (rc = am_json_string(req, "assertion", true, JOSE_MAX_TOKEN_BYTES, &assertion,
					 e)) != AM_OK)
			goto out;
		if (strcmp(atype, AM_ID_JAG_URN) != 0) {
			rc = am_fail(e, AM_E_UNSUPPORTED_ASSERTION_TYPE,
				     "assertion_type must be " AM_ID_JAG_URN);
			goto out;
		}
		if ((rc = v06_park_new(rq, &k, e)) == AM_OK)
			rc = flow_v06_register_idjag_submit(&a->env, a->skey, rq->ip, assertion,
							    &k->p, v06_committed, k, e);
	} else if (strcmp(type, "refresh") == 0) {
		const char *token;
		struct store *st;

		if ((rc = am_json_string(req, "refresh_token", true, AM_MAX_TOKEN_BYTES, &token,
					 e)) != AM_OK)
			goto out;
		if ((rc = app_store(a, &st, e)) == AM_OK && (rc = v06_park_new(rq, &k, e)) == AM_OK)
			rc = flow_v06_refresh_submit(&a->env, st, a->skey, token, &k->p,
						     v06_committed, k, e);
	} else if (strcmp(type, "service_auth") == 0) {
		struct store *st;

		/* answered on this thread (not parked yet): see docs/performance.md */
		if ((rc = app_store(a, &st, e)) != AM_OK ||
		    (rc = service_auth(a, st, rq, rs, req, e)) != AM_OK)
			rc = identity_render(a, rs, NULL, rc, e);
		goto out;
	} else {
		rc = am_fail(e, AM_E_INVALID_REQUEST,
			     "type must be \"anonymous\", \"identity_assertion\", "
			     "\"service_auth\" or \"refresh\"");
	}
	if (rc == AM_OK) {
		/* the writes wait for the group commit; the worker is free */
		k->render = identity_render;
		http_park(rq, v06_finish, k, v06_park_free);
		k = NULL;
	} else {
		rc = identity_render(a, rs, k != NULL ? &k->p : NULL, rc,
				     e); /* refused at submit */
	}
out:
	free(k); /* a refused submit has wiped k->p */
	json_decref(req);
	return rc;
}

/* The claim grant (v0.4+): the agent's poll of the user_code ceremony; its
 * refusals (authorization_pending, slow_down, ...) are RFC 6749 errors. */
static enum am_err
claim_grant(struct app *a, struct http_req *rq, struct http_resp *rs, struct am_error *e)
{
	char token[AM_MAX_TOKEN_BYTES + 1];
	struct ceremony_token_result res = {0};
	struct store *st;
	enum am_err rc;

	if (!http_form_field(rq, "claim_token", token, sizeof(token)) || token[0] == '\0')
		return am_fail(e, AM_E_INVALID_REQUEST,
			       "claim_token is required (at most %d bytes)", AM_MAX_TOKEN_BYTES);
	if ((rc = app_store(a, &st, e)) != AM_OK ||
	    (rc = flow_ceremony_poll(&a->env, st, a->skey, token, &res, e)) != AM_OK)
		goto out;
	log_info("token issued registration=%s scopes=\"%s\" grant=claim",
		 res.token.registration_id, res.token.scopes);
	/* (b) adds the assertion's refresh token (for /agent/identity
	 * {type: refresh}; this endpoint takes no refresh_token grant). */
	http_reply_json(rs, 200,
			json_pack("{s:s, s:s, s:I, s:s, s:s, s:o, s:s, s:o}", "access_token",
				  res.token.access_token, "token_type", "Bearer", "expires_in",
				  (json_int_t)res.token.expires_in, "scope", res.token.scopes,
				  "identity_assertion", res.assertion, "assertion_expires",
				  am_json_time(res.assertion_expires), "refresh_token",
				  res.refresh_token, "refresh_token_expires_at",
				  am_json_time(res.refresh_expires)));
	no_store(rs);
out:
	flow_ceremony_token_wipe(&res);
	OPENSSL_cleanse(token, sizeof(token));
	return rc;
}

enum am_err
h_token(void *app, struct http_req *rq, struct http_resp *rs, struct am_error *e)
{
	struct app *a = app;
	char grant[128], resource[AM_MAX_FIELD_BYTES + 1];
	char grant_jkt[JOSE_JKT_LEN], jkt[JOSE_JKT_LEN] = "", url[SVC_URL_MAX + 16];
	char *assertion = NULL;
	struct v06_park *k = NULL;
	struct store *st;
	bool has_resource;
	enum am_err rc;

	if (!http_content_type_is(rq, "application/x-www-form-urlencoded")) {
		rc = am_fail(e, AM_E_INVALID_REQUEST,
			     "send the body as application/x-www-form-urlencoded");
		goto out;
	}
	if (!http_form_field(rq, "grant_type", grant, sizeof(grant)) || grant[0] == '\0') {
		rc = am_fail(e, AM_E_INVALID_REQUEST, "grant_type is required");
		goto out;
	}
	if (strcmp(grant, AM_GRANT_CLAIM) == 0) {
		rc = claim_grant(a, rq, rs, e);
		goto out;
	}
	if (strcmp(grant, AM_GRANT_JWT_BEARER) != 0) {
		rc = am_fail(e, AM_E_UNSUPPORTED_GRANT_TYPE,
			     "grant_type must be " AM_GRANT_JWT_BEARER " or " AM_GRANT_CLAIM);
		goto out;
	}
	assertion = am_xmalloc(JOSE_MAX_TOKEN_BYTES + 1);
	if (!http_form_field(rq, "assertion", assertion, JOSE_MAX_TOKEN_BYTES + 1) ||
	    assertion[0] == '\0') {
		rc = am_fail(e, AM_E_INVALID_REQUEST, "assertion is required (at most %d bytes)",
			     JOSE_MAX_TOKEN_BYTES);
		goto out;
	}
	has_resource = http_form_field(rq, "resource", resource, sizeof(resource));
	/* DPoP (flows/dpop.c): a proof binds the token to its key; a grant
	 * with cnf.jkt needs a proof from that key. */
	snprintf(url, sizeof(url), "%s/oauth2/token", a->cfg->public_url);
	if ((rc = app_store(a, &st, e)) != AM_OK ||
	    (rc = flow_dpop_grant_jkt(assertion, grant_jkt, e)) != AM_OK ||
	    (rc = flow_dpop_token_request(&a->env, st, http_header(rq, "DPoP"), "POST", url,
					  grant_jkt, jkt, e)) != AM_OK ||
	    (rc = v06_park_new(rq, &k, e)) != AM_OK)
		goto out;
	/* verified here; the token is issued (and bound) in the group commit */
	if ((rc = flow_v06_token_submit(&a->env, a->skey, rq->ip, assertion,
					has_resource ? resource : NULL, jkt, &k->p, v06_committed,
					k, e)) != AM_OK)
		goto out;
	k->render = token_render;
	http_park(rq, v06_finish, k, v06_park_free);
	k = NULL;
out:
	free(k);
	free(assertion);
	return rc == AM_OK ? AM_OK : svc_oauth_error(rs, rc, e);
}

/* RFC 8935 2.4's codes for a refusal of ours. */
static const char *
set_err(enum am_err rc)
{
	switch (rc) {
	case AM_E_INVALID_ISSUER:
		return "invalid_issuer";
	case AM_E_INVALID_AUDIENCE:
		return "invalid_audience";
	case AM_E_INVALID_SIGNATURE:
		return "invalid_key";
	default:
		return "invalid_request";
	}
}

/* The receiver's answer: 202 with no body, or RFC 8935 2.4's 400. */
static enum am_err
set_answer(struct http_resp *rs, enum am_err rc, const struct am_error *e)
{
	if (rc == AM_OK) {
		http_reply_text(rs, 202, "application/json", "", 0);
		return AM_OK;
	}
	if (rc == AM_E_RATE_LIMITED || rc == AM_E_UNAVAILABLE || rc == AM_E_INTERNAL)
		return rc;
	log_info("SET refused code=%s", am_err_name(rc));
	http_reply_json(rs, 400,
			json_pack("{s:s, s:s}", "err", set_err(rc), "description",
				  e->detail[0] != '\0' ? e->detail : am_err_message(rc)));
	return AM_OK;
}

static enum am_err
set_submit(struct app *a, struct http_req *rq, struct flow_pending_op *p, void *arg, bool *queued,
	   void (*done)(void *arg), void *done_arg, struct am_error *e)
{
	(void)rq;
	(void)queued;
	return flow_revoke_set_submit(&a->env, arg, p, done, done_arg, e);
}

static enum am_err
set_render(struct app *a, struct http_req *rq, struct http_resp *rs, struct flow_pending_op *p,
	   enum am_err rc, struct am_error *e)
{
	(void)a;
	(void)rq;
	(void)p;
	return set_answer(rs, rc, e);
}

enum am_err
h_event_notify(void *app, struct http_req *rq, struct http_resp *rs, struct am_error *e)
{
	struct app *a = app;
	char token[JOSE_MAX_TOKEN_BYTES + 1];
	enum am_err rc;

	if (!http_content_type_is(rq, AM_MEDIA_SET_JWT))
		return set_answer(rs,
				  am_fail(e, AM_E_INVALID_REQUEST,
					  "send the SET as Content-Type: " AM_MEDIA_SET_JWT),
				  e);
	if (rq->body.len == 0 || rq->body.len > JOSE_MAX_TOKEN_BYTES ||
	    memchr(rq->body.data, '\0', rq->body.len) != NULL)
		return set_answer(rs,
				  am_fail(e, AM_E_INVALID_REQUEST,
					  "the body must be one SET of at most %d bytes",
					  JOSE_MAX_TOKEN_BYTES),
				  e);
	memcpy(token, rq->body.data, rq->body.len);
	token[rq->body.len] = '\0';
	/* Verified here (a key fetch when due); the replay record and the
	 * revocation are parked on the group commit. */
	rc = svc_op_park(a, rq, set_submit, token, set_render, rs, e);
	return rc == AM_OK ? AM_OK : set_answer(rs, rc, e);
}

enum am_err
h_service_jwks(void *app, struct http_req *rq, struct http_resp *rs, struct am_error *e)
{
	struct app *a = app;
	char *doc = NULL;
	enum am_err rc;

	(void)rq;
	if ((rc = skey_jwks(a->skey, am_clock_now(NULL), &doc, e)) != AM_OK)
		return rc;
	http_reply_text(rs, 200, "application/jwk-set+json", doc, strlen(doc));
	/* short: a rotation shows within five minutes, well inside the overlap */
	http_add_header(rs, "Cache-Control", "public, max-age=300");
	free(doc);
	return AM_OK;
}
