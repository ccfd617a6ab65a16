/* The v0.4-v0.6 claim ceremony's HTTP surface (issue 14): POST
 * /agent/identity/claim (the agent starts an attempt and gets its user_code
 * and verification URL) and the ceremony block every answer that starts an
 * attempt carries. The claim grant is answered at /oauth2/token
 * (identity.c); the pages the user opens are in ceremony_page.c; the
 * endpoint's dispatch on `type` is claim_api.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/json.h"
#include "core/limits.h"
#include "jose/jose.h"
#include "service/service.h"

static void
no_store(struct http_resp *rs)
{
	http_add_header(rs, "Cache-Control", "no-store");
	http_add_header(rs, "Pragma", "no-cache");
}

/* The verification URL routes through /login, whose return_to is the /claim
 * page of the attempt (docs/protocol.md). The attempt token (base62 and
 * "_") and the code (the RFC 8628 alphabet and "-") need no escaping; the
 * path's own "/", "?", "=" and "&" are escaped as a query value. */
void
svc_verification_uri(const struct app *a, const struct ceremony_block *c, bool complete, char *out,
		     size_t cap)
{
	if (complete)
		snprintf(out, cap,
			 "%s/login?return_to=%%2Fclaim%%3Fclaim_attempt_token%%3D%s"
			 "%%26user_code%%3D%s",
			 a->cfg->public_url, c->attempt_token, c->user_code);
	else
		snprintf(out, cap, "%s/login?return_to=%%2Fclaim%%3Fclaim_attempt_token%%3D%s",
			 a->cfg->public_url, c->attempt_token);
}

json_t *
svc_ceremony_block(const struct app *a, const struct ceremony_block *c, int64_t now)
{
	char uri[SVC_URL_MAX], complete[SVC_URL_MAX];

	svc_verification_uri(a, c, false, uri, sizeof(uri));
	svc_verification_uri(a, c, true, complete, sizeof(complete));
	return json_pack("{s:s, s:s, s:s, s:I, s:I}", "user_code", c->user_code, "verification_uri",
			 uri, "verification_uri_complete", complete, "expires_in",
			 (json_int_t)(c->expires_at > now ? c->expires_at - now : 0), "interval",
			 (json_int_t)c->interval);
}

void
svc_login_required(struct http_resp *rs, int64_t max_age, const struct am_error *e)
{
	/* v0.5: the guide's 401 shape, with the window in both places */
	char hdr[160];

	snprintf(hdr, sizeof(hdr), "AgentAuth error=\"login_required\", max_age=\"%lld\"",
		 (long long)max_age);
	http_reply_json(rs, 401,
			json_pack("{s:s, s:s, s:s, s:I}", "error", "login_required",
				  "error_description", e->detail, "message", e->detail, "max_age",
				  (json_int_t)max_age));
	http_add_header(rs, "WWW-Authenticate", hdr);
	no_store(rs);
}

void
svc_claim_block_set(const struct app *a, json_t *body, const struct ceremony_block *c)
{
	json_t *claim = json_object_get(body, "claim");
	json_t *v6 = svc_ceremony_block(a, c, am_clock_now(&a->env.clock));

	if (claim == NULL) {
		json_object_set_new(body, "claim", v6);
		return;
	}
	json_object_set_new(claim, "attempt",
			    json_pack("{s:s, s:O, s:o}", "id", c->attempt_id, "verification_uri",
				      json_object_get(v6, "verification_uri"), "expires_at",
				      am_json_time(c->expires_at)));
	json_object_update(claim, v6);
	json_decref(v6);
}

void
svc_interaction_required(const struct app *a, struct http_resp *rs, json_t *body,
			 const struct ceremony_block *c)
{
	json_object_set_new(body, "error", json_string("interaction_required"));
	json_object_set_new(body, "error_description",
			    json_string("the owner of the existing account must confirm linking "
					"this provider identity: show them verification_uri and "
					"user_code, then poll the claim grant"));
	json_object_set_new(body, "claim_attempt_id", json_string(c->attempt_id));
	svc_claim_block_set(a, body, c);
	http_reply_json(rs, 401, body);
	http_add_header(rs, "WWW-Authenticate",
			"AgentAuth error=\"interaction_required\", error_description=\"the "
			"account owner must confirm the link\"");
	no_store(rs);
}

/* An attempt started: {registration_id, claim_attempt_id, status:
 * initiated, expires_at, claim_attempt}. */
static json_t *
attempt_body(const struct app *a, const struct ceremony_block *c)
{
	return json_pack("{s:s, s:s, s:s, s:o, s:o}", "registration_id", c->registration_id,
			 "claim_attempt_id", c->attempt_id, "status", "initiated", "expires_at",
			 am_json_time(c->expires_at), "claim_attempt",
			 svc_ceremony_block(a, c, am_clock_now(&a->env.clock)));
}

struct claim_args {
	const char *token, *email;
};

static enum am_err
claim_submit(struct app *a, struct http_req *rq, struct flow_pending_op *p, void *arg, bool *queued,
	     void (*done)(void *arg), void *done_arg, struct am_error *e)
{
	const struct claim_args *args = arg;

	(void)queued;
	return flow_ceremony_start_submit(&a->env, rq->ip, args->token, args->email, p, done,
					  done_arg, e);
}

static enum am_err
claim_render(struct app *a, struct http_req *rq, struct http_resp *rs, struct flow_pending_op *p,
	     enum am_err rc, struct am_error *e)
{
	const struct ceremony_block *c = &p->ceremony;

	(void)rq;
	(void)e;
	if (rc != AM_OK)
		return rc;
	http_reply_json(rs, 200, attempt_body(a, c));
	no_store(rs);
	return AM_OK;
}

/* ---- v0.7 (unmerged): {type: identity_assertion} ---- */

/* An ID-JAG claim parked while its commit is pending. */
struct idclaim_park {
	struct flow_pending_idclaim p;
	struct http_req *rq;
};

static void
idclaim_park_free(void *ctx)
{
	struct idclaim_park *k = ctx;

	flow_pending_idclaim_wipe(&k->p);
	free(k);
}

static void
idclaim_committed(void *arg)
{
	struct idclaim_park *k = arg;

	http_resume(k->rq);
}

/* The answer: a step-up is the v0.6 claim's initiated attempt; a claim is
 * the new assertion in v0.6's names and in the nested identity object of
 * the WorkOS shape (both, docs/protocol.md). */
static enum am_err
idclaim_finish(void *app, struct http_req *rq, struct http_resp *rs, struct am_error *e)
{
	struct app *a = app;
	struct idclaim_park *k = rq->park_ctx;
	struct flow_pending_idclaim *p = &k->p;
	json_t *identity;
	enum am_err rc;

	if ((rc = flow_pending_idclaim_result(p, e)) != AM_OK) {
		if (rc == AM_E_LOGIN_REQUIRED) {
			svc_login_required(rs, p->idjag.max_auth_age, e);
			return AM_OK;
		}
		return rc;
	}
	if (p->step_up) {
		http_reply_json(rs, 200, attempt_body(a, &p->ceremony));
	} else {
		identity = json_pack("{s:s, s:o}", "assertion", p->assertion, "expires_at",
				     am_json_time(p->assertion_expires));
		json_object_set_new(identity, "refresh_token", json_string(p->refresh_token));
		json_object_set_new(identity, "refresh_token_expires_at",
				    am_json_time(p->refresh_expires));
		http_reply_json(rs, 200,
				json_pack("{s:s, s:s, s:s, s:s, s:o, s:o, s:o}", "registration_id",
					  p->registration_id, "registration_type", "anonymous",
					  "status", "claimed", "identity_assertion", p->assertion,
					  "assertion_expires", am_json_time(p->assertion_expires),
					  "scopes", am_json_scopes(a->cfg->scopes_post_claim),
					  "identity", identity));
	}
	no_store(rs);
	return AM_OK;
}

/* Verified here (signature work, a key or document fetch when due); the
 * claim's transaction waits parked for the group commit. */
enum am_err
svc_idjag_claim(struct app *a, struct http_req *rq, struct http_resp *rs,
			 const json_t *req, struct am_error *e)
{
	struct idclaim_park *k;
	const char *token, *assertion;
	enum am_err rc;

	if ((rc = am_json_string(req, "claim_token", true, AM_MAX_TOKEN_BYTES, &token, e)) !=
		    AM_OK ||
	    (rc = am_json_string(req, "assertion", true, JOSE_MAX_TOKEN_BYTES, &assertion, e)) !=
		    AM_OK)
		return rc;
	if ((k = calloc(1, sizeof(*k))) == NULL)
		return am_fail(e, AM_E_INTERNAL, "out of memory");
	k->rq = rq;
	if ((rc = flow_identity_claim_submit(&a->env, a->skey, rq->ip, token, assertion, &k->p,
					     idclaim_committed, k, e)) != AM_OK) {
		if (rc == AM_E_LOGIN_REQUIRED) {
			svc_login_required(rs, k->p.idjag.max_auth_age, e);
			rc = AM_OK;
		}
		flow_pending_idclaim_wipe(&k->p);
		free(k);
		return rc;
	}
	http_park(rq, idclaim_finish, k, idclaim_park_free);
	return AM_OK;
}

/* The v0.6 body {claim_token, email} of POST /agent/identity/claim: a
 * user_code attempt. The attempt is all store work: it runs in the group
 * commit and the request is parked until its batch is durable. */
enum am_err
svc_ceremony_claim(struct app *a, struct http_req *rq, struct http_resp *rs, const json_t *req,
		   struct am_error *e)
{
	struct claim_args args;
	enum am_err rc;

	if ((rc = am_json_string(req, "claim_token", true, AM_MAX_TOKEN_BYTES, &args.token, e)) !=
		    AM_OK ||
	    (rc = am_json_string(req, "email", false, AM_MAX_EMAIL_BYTES, &args.email, e)) != AM_OK)
		return rc;
	return svc_op_park(a, rq, claim_submit, &args, claim_render, rs, e);
}
