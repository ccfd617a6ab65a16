/* The user's side of the v0.4-v0.6 claim ceremony (issue 14): GET /claim,
 * where the verification URL lands after sign-in, and its form action POST
 * /agent/identity/claim/complete. The page needs a session of the address
 * the agent named (else it says so and shows no form); it shows what is
 * being claimed and asks for the user_code the agent shows, with a visible
 * "this wasn't me" reject. Both forms carry the session's CSRF token; the
 * POST checks origin, session, CSRF, the account again and the code (by
 * hash, in constant time, attempt-limited) in the group commit. No script;
 * every value from outside is HTML-escaped. */
#include <openssl/crypto.h>
#include <stdio.h>
#include <string.h>

#include "core/clock.h"
#include "core/limits.h"
#include "core/str.h"
#include "trust/cimd.h"
#include "service/page.h"
#include "service/service.h"
#include "service/websession.h"

#define COMPLETE_PATH "/agent/identity/claim/complete"

/* Attempt tokens and codes hold only these, so a value passing it is safe
 * in the return_to path; anything else cannot be ours. */
static bool
plain(const char *s, size_t max)
{
	size_t n = s != NULL ? strlen(s) : 0;

	if (n == 0 || n > max)
		return false;
	for (; *s != '\0'; s++) {
		if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'z') ||
		      (*s >= 'A' && *s <= 'Z') || *s == '_' || *s == '-'))
			return false;
	}
	return true;
}

/* The page's own path, to come back to after sign-in. */
static void
claim_path(const char *token, const char *code, char *out, size_t cap)
{
	if (plain(code, 16))
		snprintf(out, cap, "/claim?claim_attempt_token=%s&user_code=%s", token, code);
	else
		snprintf(out, cap, "/claim?claim_attempt_token=%s", token);
}

static enum am_err
error_page(const struct app *a, struct http_resp *rs, enum am_err code, const struct am_error *e)
{
	if (code == AM_E_UNAVAILABLE || code == AM_E_INTERNAL)
		return code;
	return page_error(a->cfg, rs, code, e,
			  code == AM_E_CSRF_REFUSED ? "Request refused"
						    : "This claim cannot be completed");
}

/* Signed in as another address than the one the agent named: no form. */
static enum am_err
wrong_account_page(struct app *a, struct http_resp *rs, const struct websession *s)
{
	struct am_buf b = {0};

	page_begin(&b, a->cfg, "Signed in with another account");
	am_buf_puts(&b, "<p class=\"error\">This request is for a different account than the one "
			"you are signed in with (<strong>");
	am_buf_html(&b, s->email);
	am_buf_puts(&b, "</strong>).</p><p>Sign out, then open the link from your agent again "
			"and sign in with the address you gave the agent. Nothing was changed.</p>"
			"<form method=\"post\" action=\"/logout\">");
	websession_csrf_field(&b, s);
	am_buf_puts(&b, "<button type=\"submit\">Sign out</button></form>");
	page_send(rs, 403, &b, NULL);
	return AM_OK;
}

/* A first link (v0.5): a trusted provider's user (reg's iss and sub),
 * matched to this account by a verified address or phone, is to be linked
 * to it, the registration then getting scopes. The provider's name is the
 * trust list's, never the provider's own words. */
static void
first_link_text(const struct app *a, struct am_buf *b, const struct websession *s,
		const struct store_reg *reg, const char *scopes)
{
	const struct am_provider *p = am_config_provider(a->cfg, reg->iss);

	am_buf_puts(b, "<p><strong>");
	am_buf_html(b, p != NULL ? p->name : reg->iss);
	am_buf_puts(b, "</strong> is asking to link one of its users to your account <strong>");
	am_buf_html(b, s->email);
	am_buf_puts(b, "</strong> at <strong>");
	am_buf_html(b, a->cfg->resource_name);
	am_buf_puts(b, "</strong>, so the agent it runs can act for you.</p><p class=\"muted\">"
		       "The provider vouches that its user <strong>");
	am_buf_html(b, reg->sub);
	am_buf_puts(b, "</strong> has the verified email address (or phone number) of this "
		       "account, <strong>");
	am_buf_html(b, reg->email);
	am_buf_puts(b, "</strong>. Once linked, that provider's agents for this user get in "
		       "without asking again and may use: <strong>");
	am_buf_html(b, scopes);
	am_buf_puts(b, "</strong>.</p>");
}

/* What is being claimed, and the two forms; error (NULL: none) is the
 * refusal of a previous entry. */
static enum am_err
form_page(struct app *a, struct http_resp *rs, int status, const struct websession *s,
	  const struct store_ceremony *att, const struct store_reg *reg, const char *token,
	  const char *code, const char *error, struct am_error *e)
{
	struct am_buf b = {.secret = true}; /* the forms carry the attempt token */
	char until[40], img[CIMD_URL_BYTES];
	enum am_err rc;

	am_time_iso(att->expires_at, until, sizeof(until));
	page_begin(&b, a->cfg, "Link an AI agent to your account");
	if ((rc = svc_client_block(a, reg->id, &b, img, sizeof(img), e)) != AM_OK) {
		am_buf_free(&b);
		return rc;
	}
	if (reg->kind == REG_AGENT) {
		const struct am_provider *p = am_config_provider(a->cfg, reg->iss);

		first_link_text(a, &b, s, reg, p != NULL ? p->scopes : "");
	} else if (att->link_iss[0] != '\0') {
		/* v0.7's ID-JAG claim that met the gate: the attempt names it */
		struct store_reg subject = *reg;

		am_copy(subject.iss, sizeof(subject.iss), att->link_iss);
		am_copy(subject.sub, sizeof(subject.sub), att->link_sub);
		am_copy(subject.email, sizeof(subject.email), att->email);
		first_link_text(a, &b, s, &subject, a->cfg->scopes_post_claim);
	} else {
		am_buf_puts(&b, "<p>An AI agent asks to act for your account <strong>");
		am_buf_html(&b, s->email);
		am_buf_puts(&b, "</strong> at <strong>");
		am_buf_html(&b, a->cfg->resource_name);
		am_buf_puts(&b, "</strong>.</p><p class=\"muted\">");
		am_buf_html(&b,
			    reg->kind == REG_ANONYMOUS
				    ? "It registered anonymously and now asks to be linked to you."
				    : "It registered for your address (service_auth).");
		am_buf_puts(&b, " Once linked it may use: <strong>");
		am_buf_html(&b, a->cfg->scopes_post_claim);
		am_buf_puts(&b, "</strong>.</p>");
	}
	if (error != NULL)
		page_para(&b, "error", error);
	am_buf_puts(&b, "<p>If you asked your agent to do this, type the code it shows you.</p>"
			"<form method=\"post\" action=\"" COMPLETE_PATH "\">");
	websession_csrf_field(&b, s);
	am_buf_puts(&b, "<input type=\"hidden\" name=\"claim_attempt_token\" value=\"");
	am_buf_html(&b, token);
	am_buf_puts(&b, "\"><label>Code <input class=\"code\" name=\"user_code\" value=\"");
	am_buf_html(&b, plain(code, 16) ? code : "");
	am_buf_puts(
		&b,
		"\" required maxlength=\"16\" autocomplete=\"off\" autocapitalize=\"characters\" "
		"spellcheck=\"false\"></label> <button type=\"submit\">Confirm</button></form>"
		"<p>If you did not ask for this, reject it: the agent gets nothing.</p>"
		"<form method=\"post\" action=\"" COMPLETE_PATH "\">");
	websession_csrf_field(&b, s);
	am_buf_puts(&b, "<input type=\"hidden\" name=\"claim_attempt_token\" value=\"");
	am_buf_html(&b, token);
	am_buf_puts(&b, "\"><input type=\"hidden\" name=\"decision\" value=\"reject\">"
			"<button type=\"submit\" class=\"danger\">This wasn't me: reject</button>"
			"</form><p class=\"muted\">The code works until ");
	am_buf_html(&b, until);
	am_buf_puts(&b, ".</p>");
	page_send(rs, status, &b, img[0] != '\0' ? img : NULL);
	return AM_OK;
}

/* Looks the attempt up for session s and answers with its form, or with
 * the page that says why not. */
static enum am_err
show(struct app *a, struct http_resp *rs, int status, const struct websession *s, const char *token,
     const char *code, const char *error, struct am_error *e)
{
	struct store_ceremony att;
	struct store_reg reg;
	struct store *st;
	enum am_err rc;

	if ((rc = app_store(a, &st, e)) != AM_OK)
		return rc;
	if ((rc = flow_ceremony_peek(&a->env, st, token, &att, &reg, e)) != AM_OK)
		return error_page(a, rs, rc, e);
	if (strcmp(s->email, att.email) != 0)
		return wrong_account_page(a, rs, s);
	return form_page(a, rs, status, s, &att, &reg, token, code, error, e);
}

enum am_err
h_ceremony_page(void *app, struct http_req *rq, struct http_resp *rs, struct am_error *e)
{
	struct app *a = app;
	const char *token = http_query(rq, "claim_attempt_token");
	const char *code = http_query(rq, "user_code");
	char back[AM_MAX_TOKEN_BYTES + 80];
	struct websession s;
	enum am_err rc;

	if (!plain(token, AM_MAX_TOKEN_BYTES)) {
		am_fail(e, AM_E_INVALID_REQUEST,
			"this link is not complete; open the link from your agent exactly as it "
			"was given");
		return error_page(a, rs, AM_E_INVALID_REQUEST, e);
	}
	rc = websession_get(a, rq, &s, e);
	if (rc == AM_E_NOT_FOUND) {
		claim_path(token, code, back, sizeof(back));
		websession_redirect_login(a, rq, rs, back);
		return AM_OK;
	}
	if (rc != AM_OK)
		return rc;
	rc = show(a, rs, 200, &s, token, code, NULL, e);
	OPENSSL_cleanse(&s, sizeof(s));
	return rc;
}

/* ---- the form action ---- */

struct complete_args {
	const char *token, *code;
	const struct websession *s;
	bool reject;
};

static enum am_err
complete_submit(struct app *a, struct http_req *rq, struct flow_pending_op *p, void *arg,
		bool *queued, void (*done)(void *arg), void *done_arg, struct am_error *e)
{
	const struct complete_args *c = arg;

	(void)queued;
	if (c->reject)
		return flow_ceremony_deny_submit(&a->env, rq->ip, c->token, c->s->user_id,
						 c->s->email, p, done, done_arg, e);
	return flow_ceremony_complete_submit(&a->env, rq->ip, c->token, c->code, c->s->user_id,
					     c->s->email, p, done, done_arg, e);
}

static enum am_err
complete_render(struct app *a, struct http_req *rq, struct http_resp *rs, struct flow_pending_op *p,
		enum am_err rc, struct am_error *e)
{
	struct am_buf b = {0};
	struct websession s;
	char why[sizeof(e->detail)];

	if (rc == AM_E_INVALID_USER_CODE || rc == AM_E_WRONG_ACCOUNT) {
		/* the form again, with why (or the wrong-account page) */
		am_copy(why, sizeof(why), e->detail);
		if ((rc = websession_get(a, rq, &s, e)) != AM_OK)
			return error_page(a, rs, rc == AM_E_NOT_FOUND ? AM_E_CSRF_REFUSED : rc, e);
		rc = show(a, rs, 400, &s, p->token, NULL, why, e);
		OPENSSL_cleanse(&s, sizeof(s));
		return rc;
	}
	if (rc != AM_OK)
		return error_page(a, rs, rc, e);
	if (p->kind == FLOW_OP_CEREMONY_DENY) {
		page_begin(&b, a->cfg, "Request rejected");
		page_para(&b, NULL,
			  "Thank you. The agent was told no and given nothing. You can close this "
			  "page.");
	} else {
		page_begin(&b, a->cfg, "Agent linked");
		page_para(&b, NULL,
			  "Done: the agent is now linked to your account and will pick up its "
			  "access by itself. You can close this page.");
	}
	page_send(rs, 200, &b, NULL);
	return AM_OK;
}

enum am_err
h_ceremony_complete(void *app, struct http_req *rq, struct http_resp *rs, struct am_error *e)
{
	struct app *a = app;
	char token[AM_MAX_TOKEN_BYTES + 1], code[32] = "", decision[16] = "";
	char back[AM_MAX_TOKEN_BYTES + 80];
	struct complete_args args = {.token = token, .code = code};
	struct websession s;
	enum am_err rc;

	/* a page answer: nothing around the handler treats it as JSON */
	rs->content_type = "text/html; charset=utf-8";
	if (!http_form_field(rq, "claim_attempt_token", token, sizeof(token)) ||
	    !plain(token, AM_MAX_TOKEN_BYTES)) {
		am_fail(e, AM_E_INVALID_REQUEST, "the form is missing its claim_attempt_token");
		return error_page(a, rs, AM_E_INVALID_REQUEST, e);
	}
	rc = websession_check_post(a, rq, &s, e);
	if (rc == AM_E_NOT_FOUND) {
		claim_path(token, "", back, sizeof(back));
		websession_redirect_login(a, rq, rs, back);
		return AM_OK;
	}
	if (rc != AM_OK)
		return error_page(a, rs, rc, e);
	(void)http_form_field(rq, "decision", decision, sizeof(decision));
	args.reject = strcmp(decision, "reject") == 0;
	if (!args.reject && !http_form_field(rq, "user_code", code, sizeof(code))) {
		rc = show(a, rs, 400, &s, token, NULL, "type the code your agent shows you", e);
	} else {
		args.s = &s;
		if ((rc = svc_op_park(a, rq, complete_submit, &args, complete_render, rs, e)) !=
		    AM_OK)
			rc = error_page(a, rs, rc, e);
	}
	OPENSSL_cleanse(&s, sizeof(s));
	OPENSSL_cleanse(token, sizeof(token));
	OPENSSL_cleanse(code, sizeof(code));
	return rc;
}
