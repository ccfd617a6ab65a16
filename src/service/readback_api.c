/* The agent's side of the read-back claim ceremony (issue 14, proposal
 * (b)): POST /agent/identity/claim {type: login_hint} starts an attempt
 * (no code goes to the agent: the user is shown one after confirming), and
 * POST /agent/identity/claim/complete {claim_token, user_code} finishes it
 * with the code the user read back. Both are parked on the group commit.
 * The answers use (b)'s envelope ({id, type, status, claim | identity}),
 * with the v0.6 fields that do not conflict (docs/protocol.md). The user's
 * pages are in ceremony_page.c. */
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/json.h"
#include "core/limits.h"
#include "service/service.h"

static const char *
type_name(const struct store_reg *reg)
{
	return reg->kind == REG_ANONYMOUS ? "anonymous" : "service_auth";
}

static void
no_store(struct http_resp *rs)
{
	http_add_header(rs, "Cache-Control", "no-store");
	http_add_header(rs, "Pragma", "no-cache");
}

/* ---- POST /agent/identity/claim {type: login_hint} ---- */

struct start_args {
	const char *token, *hint;
};

static enum am_err
start_submit(struct app *a, struct http_req *rq, struct flow_pending_op *p, void *arg, bool *queued,
	     void (*done)(void *arg), void *done_arg, struct am_error *e)
{
	const struct start_args *s = arg;

	(void)queued;
	return flow_ceremony_start_mode_submit(&a->env, rq->ip, s->token, s->hint,
					       CEREMONY_READBACK, p, done, done_arg, e);
}

static enum am_err
start_render(struct app *a, struct http_req *rq, struct http_resp *rs, struct flow_pending_op *p,
	     enum am_err rc, struct am_error *e)
{
	const struct ceremony_block *c = &p->ceremony;
	char uri[SVC_URL_MAX], url[SVC_URL_MAX];

	(void)rq;
	(void)e;
	if (rc != AM_OK)
		return rc;
	svc_verification_uri(a, c, false, uri, sizeof(uri));
	snprintf(url, sizeof(url), "%s/agent/identity/claim", a->cfg->public_url);
	http_reply_json(
		rs, 200,
		json_pack("{s:s, s:s, s:s, s:{s:s, s:o, s:s, s:{s:s, s:o}}, s:s, s:s, s:o}", "id",
			  c->registration_id, "type", type_name(&p->reg), "status", "initiated",
			  "claim", "token", p->token, "expires_at", am_json_time(p->reg.expires_at),
			  "url", url, "attempt", "verification_uri", uri, "expires_at",
			  am_json_time(c->expires_at),
			  /* v0.6's fields; its claim_attempt block would need a user_code */
			  "registration_id", c->registration_id, "claim_attempt_id", c->attempt_id,
			  "expires_at", am_json_time(c->expires_at)));
	no_store(rs);
	return AM_OK;
}

enum am_err
svc_readback_claim(struct app *a, struct http_req *rq, struct http_resp *rs, const json_t *req,
		   struct am_error *e)
{
	struct start_args args;
	const json_t *hint = json_object_get(req, "login_hint");
	enum am_err rc;

	if ((rc = am_json_string(req, "claim_token", true, AM_MAX_TOKEN_BYTES, &args.token, e)) !=
	    AM_OK)
		return rc;
	/* v0.6's rule for login_hint: not a string is a malformed request, a
	 * string that is no address its own error */
	if (hint != NULL && !json_is_null(hint) && !json_is_string(hint))
		return am_fail(e, AM_E_INVALID_REQUEST,
			       "the field \"login_hint\" must be a string");
	args.hint = json_string_value(hint);
	if (args.hint != NULL && strlen(args.hint) > AM_MAX_EMAIL_BYTES)
		return am_fail(e, AM_E_INVALID_LOGIN_HINT, "login_hint is too long for an address");
	return svc_op_park(a, rq, start_submit, &args, start_render, rs, e);
}

/* ---- POST /agent/identity/claim/complete ---- */

struct complete_args {
	const char *token, *code;
};

static enum am_err
complete_submit(struct app *a, struct http_req *rq, struct flow_pending_op *p, void *arg,
		bool *queued, void (*done)(void *arg), void *done_arg, struct am_error *e)
{
	const struct complete_args *c = arg;

	(void)queued;
	return flow_readback_complete_submit(&a->env, rq->ip, c->token, c->code, p, done, done_arg,
					     e);
}

static enum am_err
complete_render(struct app *a, struct http_req *rq, struct http_resp *rs, struct flow_pending_op *p,
		enum am_err rc, struct am_error *e)
{
	char *assertion = NULL;
	int64_t expires = 0;
	json_t *identity;

	(void)rq;
	if (rc != AM_OK)
		return rc;
	/* The claim is durable: the assertion is signed here, on the worker.
	 * Signing fails only without memory or keys (a 500 the log explains). */
	if ((rc = flow_readback_assertion(&a->env, a->skey, p, &assertion, &expires, e)) != AM_OK)
		return rc;
	identity = json_pack("{s:s, s:o}", "assertion", assertion, "expires_at",
			     am_json_time(expires));
	json_object_set_new(identity, "refresh_token", json_string(p->refresh_token));
	json_object_set_new(identity, "refresh_token_expires_at", am_json_time(p->refresh_expires));
	http_reply_json(rs, 200,
			json_pack("{s:s, s:s, s:s, s:o, s:s, s:s, s:s, s:o, s:o}", "id", p->reg.id,
				  "type", type_name(&p->reg), "status", "claimed", "identity",
				  identity,
				  /* v0.6's names of the same facts */
				  "registration_id", p->reg.id, "claim_attempt_id",
				  p->ceremony.attempt_id, "identity_assertion", assertion,
				  "assertion_expires", am_json_time(expires), "scopes",
				  am_json_scopes(a->cfg->scopes_post_claim)));
	no_store(rs);
	OPENSSL_cleanse(assertion, strlen(assertion));
	free(assertion);
	return AM_OK;
}

enum am_err
h_readback_complete(void *app, struct http_req *rq, struct http_resp *rs, struct am_error *e)
{
	struct app *a = app;
	struct complete_args args;
	json_t *req = NULL;
	enum am_err rc;

	/* JSON only: the claim page's forms post to /claim/confirm */
	if ((rc = svc_json_body(rq, &req, e)) != AM_OK)
		return rc;
	if ((rc = am_json_string(req, "claim_token", true, AM_MAX_TOKEN_BYTES, &args.token, e)) ==
		    AM_OK &&
	    (rc = am_json_string(req, "user_code", true, 32, &args.code, e)) == AM_OK)
		rc = svc_op_park(a, rq, complete_submit, &args, complete_render, rs, e);
	json_decref(req);
	return rc;
}
