/* The v0.4-v0.6 claim ceremony's HTTP surface (issue 14): POST
 * /agent/identity/claim (the agent starts an attempt and gets its user_code
 * and verification URL) and the ceremony block every answer that starts an
 * attempt carries. The claim grant is answered at /oauth2/token
 * (identity.c); the pages the user opens are in ceremony_page.c; the
 * endpoint's dispatch on `type` is claim_api.c. */
#include <stdio.h>
#include <string.h>

#include "core/json.h"
#include "core/limits.h"
#include "service/service.h"

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
	http_reply_json(rs, 200,
			json_pack("{s:s, s:s, s:s, s:o, s:o}", "registration_id",
				  c->registration_id, "claim_attempt_id", c->attempt_id, "status",
				  "initiated", "expires_at", am_json_time(c->expires_at),
				  "claim_attempt",
				  svc_ceremony_block(a, c, am_clock_now(&a->env.clock))));
	http_add_header(rs, "Cache-Control", "no-store");
	http_add_header(rs, "Pragma", "no-cache");
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
