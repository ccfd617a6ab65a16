/* POST /agent/auth, /agent/auth/claim, /agent/auth/claim/complete and the
 * JSON form of /agent/auth/claim/attempt/challenge. */
#include <openssl/crypto.h>
#include <string.h>

#include "core/json.h"
#include "core/limits.h"
#include "core/protocol.h"
#include "core/str.h"
#include "jose/jose.h"
#include "service/service.h"

static void
no_store(struct http_resp *rs)
{
	/* Answers carry credentials and claim tokens: never cache them. */
	http_add_header(rs, "Cache-Control", "no-store");
	http_add_header(rs, "Pragma", "no-cache");
}

static void
put_credential(json_t *body, const struct reg_result *r)
{
	json_object_set_new(body, "credential_type",
			    json_string(store_cred_type_name(r->credential_type)));
	json_object_set_new(body, "credential", json_string(r->credential));
	json_object_set_new(body, "credential_expires", am_json_time(r->credential_expires));
	json_object_set_new(body, "scopes", am_json_scopes(r->scopes));
}

static json_t *
registration_body(const struct app *a, const struct reg_result *r)
{
	json_t *body = json_object();
	char url[SVC_URL_MAX];

	json_object_set_new(body, "registration_id", json_string(r->registration_id));
	json_object_set_new(body, "registration_type",
			    json_string(r->agent_verified	   ? "agent-provider"
					: r->kind == REG_ANONYMOUS ? "anonymous"
								   : "email-verification"));
	if (r->has_credential)
		put_credential(body, r);
	if (r->agent_verified && r->has_credential)
		return body;   /* no claim: the provider vouched for the user */
	if (r->agent_verified) /* first link: the account's owner confirms by mail */
		json_object_set_new(body, "status", json_string("interaction_required"));
	snprintf(url, sizeof(url), "%s/agent/auth/claim", a->cfg->public_url);
	json_object_set_new(body, "claim_url", json_string(url));
	json_object_set_new(body, "claim_token", json_string(r->claim_token));
	json_object_set_new(body, "claim_token_expires", am_json_time(r->claim_token_expires));
	json_object_set_new(body, "post_claim_scopes", am_json_scopes(r->post_claim_scopes));
	return body;
}

/* A request parked on a flow_pending_op (service.h). */
struct svc_op {
	struct flow_pending_op p;
	struct http_req *rq;
	svc_op_render render;
};

static void
op_free(void *ctx)
{
	struct svc_op *k = ctx;

	flow_pending_op_wipe(&k->p);
	free(k);
}

static void
op_committed(void *arg)
{
	struct svc_op *k = arg;

	http_resume(k->rq);
}

static enum am_err
op_finish(void *app, struct http_req *rq, struct http_resp *rs, struct am_error *e)
{
	struct svc_op *k = rq->park_ctx;

	return k->render(app, rq, rs, &k->p, flow_pending_op_result(&k->p, e), e);
}

enum am_err
svc_op_park(struct app *a, struct http_req *rq, svc_op_submit submit, void *submit_arg,
	    svc_op_render render, struct http_resp *rs, struct am_error *e)
{
	struct svc_op *k = calloc(1, sizeof(*k));
	bool queued = true;
	enum am_err rc;

	if (k == NULL)
		return am_fail(e, AM_E_INTERNAL, "out of memory");
	k->rq = rq;
	k->render = render;
	if ((rc = submit(a, rq, &k->p, submit_arg, &queued, op_committed, k, e)) != AM_OK) {
		free(k); /* a refused submit has wiped k->p */
		return rc;
	}
	if (!queued) { /* answered without a write */
		rc = render(a, rq, rs, &k->p, AM_OK, e);
		op_free(k);
		return rc;
	}
	http_park(rq, op_finish, k, op_free);
	return AM_OK;
}

/* An ID-JAG registration parked while its commit is pending. */
struct idjag_park {
	struct flow_pending_idjag p;
	struct http_req *rq;
};

static void
idjag_park_free(void *ctx)
{
	struct idjag_park *k = ctx;

	flow_pending_idjag_wipe(&k->p);
	free(k);
}

static void
idjag_committed(void *arg)
{
	struct idjag_park *k = arg;

	http_resume(k->rq);
}

static enum am_err
idjag_finish(void *app, struct http_req *rq, struct http_resp *rs, struct am_error *e)
{
	struct idjag_park *k = rq->park_ctx;
	struct reg_result res = {0};
	enum am_err rc;

	if ((rc = flow_pending_idjag_result(&k->p, &res, e)) == AM_OK) {
		http_reply_json(rs, 200, registration_body(app, &res));
		no_store(rs);
	}
	flow_result_wipe(&res, sizeof(res));
	return rc;
}

/* Verifies the ID-JAG here (signature work, a key fetch when due), then
 * parks the request while its transaction waits for the group commit. */
static enum am_err
register_idjag_parked(struct app *a, struct http_req *rq, const char *assertion,
		      const char *cred_type, struct am_error *e)
{
	struct idjag_park *k = calloc(1, sizeof(*k));
	enum am_err rc;

	if (k == NULL)
		return am_fail(e, AM_E_INTERNAL, "out of memory");
	k->rq = rq;
	if ((rc = flow_register_idjag_submit(&a->env, rq->ip, assertion, cred_type, &k->p,
					     idjag_committed, k, e)) != AM_OK) {
		free(k);
		return rc;
	}
	http_park(rq, idjag_finish, k, idjag_park_free);
	return AM_OK;
}

struct email_args {
	const char *email, *cred_type;
};

static enum am_err
email_submit(struct app *a, struct http_req *rq, struct flow_pending_op *p, void *arg, bool *queued,
	     void (*done)(void *arg), void *done_arg, struct am_error *e)
{
	const struct email_args *args = arg;

	(void)queued;
	return flow_register_email_submit(&a->env, rq->ip, args->email, args->cred_type, p, done,
					  done_arg, e);
}

static enum am_err
email_render(struct app *a, struct http_req *rq, struct http_resp *rs, struct flow_pending_op *p,
	     enum am_err rc, struct am_error *e)
{
	(void)rq;
	(void)e;
	if (rc != AM_OK)
		return rc;
	http_reply_json(rs, 200, registration_body(a, &p->reg_res));
	no_store(rs);
	return AM_OK;
}

static enum am_err
register_identity(struct app *a, struct store *st, struct http_req *rq, struct http_resp *rs,
		  const json_t *req, const char *cred_type, struct reg_result *res,
		  struct am_error *e)
{
	const char *atype, *assertion;
	enum am_err rc;

	if ((rc = am_json_string(req, "assertion_type", true, AM_MAX_FIELD_BYTES, &atype, e)) !=
	    AM_OK)
		return rc;
	if (strcmp(atype, "verified_email") == 0) {
		if ((rc = am_json_string(req, "assertion", true, AM_MAX_EMAIL_BYTES, &assertion,
					 e)) != AM_OK)
			return rc;
		(void)st;
		(void)res;
		struct email_args args = {.email = assertion, .cred_type = cred_type};

		return svc_op_park(a, rq, email_submit, &args, email_render, rs, e);
	}
	if (strcmp(atype, AM_ID_JAG_URN) == 0) {
		if ((rc = am_json_string(req, "assertion", true, JOSE_MAX_TOKEN_BYTES, &assertion,
					 e)) != AM_OK)
			return rc;
		(void)res;
		return register_idjag_parked(a, rq, assertion, cred_type, e);
	}
	return am_fail(e, AM_E_UNSUPPORTED_ASSERTION_TYPE,
		       "assertion_type must be verified_email or " AM_ID_JAG_URN);
}

/* An anonymous registration parked while its commit is pending. */
struct reg_park {
	struct flow_pending_reg p;
	struct http_req *rq;
};

static void
reg_park_free(void *ctx)
{
	struct reg_park *k = ctx;

	flow_pending_reg_wipe(&k->p);
	free(k);
}

static void
reg_committed(void *arg)
{
	struct reg_park *k = arg;

	http_resume(k->rq);
}

static enum am_err
reg_finish(void *app, struct http_req *rq, struct http_resp *rs, struct am_error *e)
{
	struct reg_park *k = rq->park_ctx;
	struct reg_result res = {0};
	enum am_err rc;

	if ((rc = flow_pending_reg_result(&k->p, &res, e)) == AM_OK) {
		http_reply_json(rs, 200, registration_body(app, &res));
		no_store(rs);
	}
	flow_result_wipe(&res, sizeof(res));
	return rc;
}

/* Submits the registration to the group commit and parks the request; the
 * worker is free until the commit answers. */
static enum am_err
register_anonymous_parked(struct app *a, struct http_req *rq, const char *cred_type,
			  struct am_error *e)
{
	struct reg_park *k = calloc(1, sizeof(*k));
	enum am_err rc;

	if (k == NULL)
		return am_fail(e, AM_E_INTERNAL, "out of memory");
	k->rq = rq;
	if ((rc = flow_register_anonymous_submit(&a->env, rq->ip, cred_type, &k->p, reg_committed,
						 k, e)) != AM_OK) {
		free(k);
		return rc;
	}
	http_park(rq, reg_finish, k, reg_park_free);
	return AM_OK;
}

enum am_err
h_register(void *app, struct http_req *rq, struct http_resp *rs, struct am_error *e)
{
	struct app *a = app;
	struct reg_result res = {0};
	struct store *st;
	json_t *req = NULL;
	const char *type, *cred_type;
	enum am_err rc;

	if ((rc = svc_json_body(rq, &req, e)) != AM_OK)
		return rc;
	if ((rc = am_json_string(req, "type", true, AM_MAX_FIELD_BYTES, &type, e)) != AM_OK ||
	    (rc = am_json_string(req, "requested_credential_type", false, AM_MAX_FIELD_BYTES,
				 &cred_type, e)) != AM_OK ||
	    (rc = app_store(a, &st, e)) != AM_OK)
		goto out;
	if (strcmp(type, "anonymous") == 0) {
		rc = register_anonymous_parked(a, rq, cred_type, e);
		goto out;
	} else if (strcmp(type, "identity_assertion") == 0)
		rc = register_identity(a, st, rq, rs, req, cred_type, &res, e);
	else
		rc = am_fail(e, AM_E_INVALID_REQUEST,
			     "type must be \"anonymous\" or \"identity_assertion\"");
out:
	flow_result_wipe(&res, sizeof(res));
	json_decref(req);
	return rc;
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
	return flow_claim_start_submit(&a->env, rq->ip, args->token, args->email, p, done, done_arg,
				       e);
}

static enum am_err
claim_render(struct app *a, struct http_req *rq, struct http_resp *rs, struct flow_pending_op *p,
	     enum am_err rc, struct am_error *e)
{
	const struct claim_start_result *res = &p->start;

	(void)a;
	(void)rq;
	(void)e;
	if (rc != AM_OK)
		return rc;
	http_reply_json(rs, 200,
			json_pack("{s:s, s:s, s:s, s:o}", "registration_id", res->registration_id,
				  "claim_attempt_id", res->attempt_id, "status", "initiated",
				  "expires_at", am_json_time(res->expires_at)));
	no_store(rs);
	return AM_OK;
}

/* The claim start is all store work: it runs in the group commit and the
 * request is parked until its batch (with the attempt's queued mail) is
 * durable. */
enum am_err
h_claim(void *app, struct http_req *rq, struct http_resp *rs, struct am_error *e)
{
	struct app *a = app;
	struct claim_args args;
	json_t *req = NULL;
	enum am_err rc;

	if ((rc = svc_json_body(rq, &req, e)) != AM_OK)
		return rc;
	if ((rc = am_json_string(req, "claim_token", true, AM_MAX_TOKEN_BYTES, &args.token, e)) !=
		    AM_OK ||
	    (rc = am_json_string(req, "email", false, AM_MAX_EMAIL_BYTES, &args.email, e)) != AM_OK)
		goto out;
	rc = svc_op_park(a, rq, claim_submit, &args, claim_render, rs, e);
out:
	json_decref(req);
	return rc;
}

/* A claim completion parked while its commit is pending. */
struct claim_park {
	struct flow_pending_claim p;
	struct http_req *rq;
};

static void
claim_park_free(void *ctx)
{
	struct claim_park *k = ctx;

	flow_pending_claim_wipe(&k->p);
	free(k);
}

static void
claim_committed(void *arg)
{
	struct claim_park *k = arg;

	http_resume(k->rq);
}

static enum am_err
claim_finish(void *app, struct http_req *rq, struct http_resp *rs, struct am_error *e)
{
	struct claim_park *k = rq->park_ctx;
	struct reg_result res = {0};
	char user_id[STORE_ID_LEN];
	json_t *body;
	enum am_err rc;

	(void)app;
	if ((rc = flow_pending_claim_result(&k->p, &res, user_id, e)) == AM_OK) {
		body = json_pack("{s:s, s:s}", "registration_id", res.registration_id, "status",
				 "claimed");
		if (res.has_credential)
			put_credential(body, &res);
		http_reply_json(rs, 200, body);
		no_store(rs);
	}
	flow_result_wipe(&res, sizeof(res));
	return rc;
}

enum am_err
h_claim_complete(void *app, struct http_req *rq, struct http_resp *rs, struct am_error *e)
{
	struct app *a = app;
	struct claim_park *k = NULL;
	struct store *st;
	json_t *req = NULL;
	const char *token, *otp;
	enum am_err rc;

	(void)rs;
	if ((rc = svc_json_body(rq, &req, e)) != AM_OK)
		return rc;
	if ((rc = am_json_string(req, "claim_token", true, AM_MAX_TOKEN_BYTES, &token, e)) !=
		    AM_OK ||
	    (rc = am_json_string(req, "otp", true, 32, &otp, e)) != AM_OK ||
	    (rc = app_store(a, &st, e)) != AM_OK)
		goto out;
	if ((k = calloc(1, sizeof(*k))) == NULL) {
		rc = am_fail(e, AM_E_INTERNAL, "out of memory");
		goto out;
	}
	k->rq = rq;
	/* The completion is all store work: it runs in the group commit and the
	 * request is parked until its batch is durable. */
	if ((rc = flow_claim_complete_submit(&a->env, st, rq->ip, token, otp, &k->p,
					     claim_committed, k, e)) != AM_OK) {
		flow_pending_claim_wipe(&k->p);
		free(k);
		goto out;
	}
	http_park(rq, claim_finish, k, claim_park_free);
out:
	json_decref(req);
	return rc;
}

static enum am_err
challenge_submit(struct app *a, struct http_req *rq, struct flow_pending_op *p, void *arg,
		 bool *queued, void (*done)(void *arg), void *done_arg, struct am_error *e)
{
	(void)rq;
	(void)queued;
	return flow_claim_challenge_submit(&a->env, arg, p, done, done_arg, e);
}

static enum am_err
challenge_render(struct app *a, struct http_req *rq, struct http_resp *rs,
		 struct flow_pending_op *p, enum am_err rc, struct am_error *e)
{
	(void)a;
	(void)rq;
	(void)e;
	if (rc != AM_OK)
		return rc;
	http_reply_json(rs, 200,
			json_pack("{s:s, s:s, s:o}", "type", "otp", "challenge", p->challenge.otp,
				  "expires_at", am_json_time(p->challenge.expires_at)));
	no_store(rs);
	return AM_OK;
}

/* The JSON form of the challenge (the claim page uses the form encoding,
 * answered in HTML by claim_page.c), parked while the new code commits. */
enum am_err
svc_challenge_json(struct app *a, struct http_req *rq, struct http_resp *rs, struct am_error *e)
{
	json_t *req = NULL;
	const char *token;
	enum am_err rc;

	if ((rc = svc_json_body(rq, &req, e)) != AM_OK)
		return rc;
	if ((rc = am_json_string(req, "claim_attempt_token", true, AM_MAX_TOKEN_BYTES, &token,
				 e)) == AM_OK)
		rc = svc_op_park(a, rq, challenge_submit, (void *)token, challenge_render, rs, e);
	json_decref(req);
	return rc;
}

static enum am_err
logout_submit(struct app *a, struct http_req *rq, struct flow_pending_op *p, void *arg,
	      bool *queued, void (*done)(void *arg), void *done_arg, struct am_error *e)
{
	(void)rq;
	(void)queued;
	return flow_revoke_logout_submit(&a->env, arg, p, done, done_arg, e);
}

static enum am_err
logout_render(struct app *a, struct http_req *rq, struct http_resp *rs, struct flow_pending_op *p,
	      enum am_err rc, struct am_error *e)
{
	(void)a;
	(void)rq;
	(void)e;
	if (rc != AM_OK)
		return rc;
	http_reply_json(rs, 200, json_pack("{s:i}", "revoked", p->count));
	no_store(rs);
	return AM_OK;
}

enum am_err
h_revoke(void *app, struct http_req *rq, struct http_resp *rs, struct am_error *e)
{
	struct app *a = app;
	char token[JOSE_MAX_TOKEN_BYTES + 1];
	enum am_err rc;

	/* The guide's raw application/logout+jwt body, or the OIDC
	 * Back-Channel Logout form field. */
	if (http_content_type_is(rq, AM_MEDIA_LOGOUT_JWT) ||
	    http_content_type_is(rq, "application/jwt")) {
		size_t n = rq->body.len;

		while (n > 0 && (rq->body.data[n - 1] == '\n' || rq->body.data[n - 1] == '\r' ||
				 rq->body.data[n - 1] == ' '))
			n--;
		if (n == 0 || n > JOSE_MAX_TOKEN_BYTES || memchr(rq->body.data, '\0', n) != NULL)
			return am_fail(e, AM_E_INVALID_REQUEST,
				       "the body must be one logout token of at most %d bytes",
				       JOSE_MAX_TOKEN_BYTES);
		memcpy(token, rq->body.data, n);
		token[n] = '\0';
	} else if (http_content_type_is(rq, "application/x-www-form-urlencoded")) {
		if (!http_form_field(rq, "logout_token", token, sizeof(token)))
			return am_fail(e, AM_E_INVALID_REQUEST,
				       "the form needs a logout_token of at most %d bytes",
				       JOSE_MAX_TOKEN_BYTES);
	} else {
		return am_fail(e, AM_E_UNSUPPORTED_MEDIA_TYPE,
			       "send the logout token as application/logout+jwt or as the "
			       "logout_token form field");
	}
	/* Verified here (a key fetch when due); the replay record and the
	 * revocation are parked on the group commit. */
	rc = svc_op_park(a, rq, logout_submit, token, logout_render, rs, e);
	OPENSSL_cleanse(token, sizeof(token));
	return rc;
}
