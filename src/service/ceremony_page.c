/* The user's side of the claim ceremonies (issue 14): GET /claim, where
 * the verification URL lands after sign-in, and its form action POST
 * /claim/confirm. The page needs a session of the address the agent named
 * (else it says so and shows no form); it shows what is being claimed and,
 * for a v0.4-v0.6 attempt, asks for the user_code the agent shows; for a
 * read-back attempt (proposal (b)) it asks for a confirmation and only then
 * shows the 6-digit code the user reads back to the agent. Each has a
 * visible "this wasn't me" reject. Both forms carry the session's CSRF token; the
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

#define COMPLETE_PATH "/claim/confirm"

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

/* The start of a claim page: the client block and what is being claimed
 * (service, account, kind, scopes; a first link's provider and subject),
 * into b; img (CIMD_URL_BYTES) the logo's origin for the CSP. */
static enum am_err
claim_head(struct app *a, struct am_buf *b, const char *title, const struct websession *s,
	   const struct store_ceremony *att, const struct store_reg *reg, char *img,
	   struct am_error *e)
{
	enum am_err rc;

	page_begin(b, a->cfg, title);
	if ((rc = svc_client_block(a, reg->id, b, img, CIMD_URL_BYTES, e)) != AM_OK)
		return rc;
	if (reg->kind == REG_AGENT) {
		const struct am_provider *p = am_config_provider(a->cfg, reg->iss);

		first_link_text(a, b, s, reg, p != NULL ? p->scopes : "");
	} else if (att->link_iss[0] != '\0') {
		/* v0.7's ID-JAG claim that met the gate: the attempt names it */
		struct store_reg subject = *reg;

		am_copy(subject.iss, sizeof(subject.iss), att->link_iss);
		am_copy(subject.sub, sizeof(subject.sub), att->link_sub);
		am_copy(subject.email, sizeof(subject.email), att->email);
		first_link_text(a, b, s, &subject, a->cfg->scopes_post_claim);
	} else {
		am_buf_puts(b, "<p>An AI agent asks to act for your account <strong>");
		am_buf_html(b, s->email);
		am_buf_puts(b, "</strong> at <strong>");
		am_buf_html(b, a->cfg->resource_name);
		am_buf_puts(b, "</strong>.</p><p class=\"muted\">");
		am_buf_html(b, reg->kind == REG_ANONYMOUS
				       ? "It registered anonymously and now asks to be linked to you."
				       : "It registered for your address (service_auth).");
		am_buf_puts(b, " Once linked it may use: <strong>");
		am_buf_html(b, a->cfg->scopes_post_claim);
		am_buf_puts(b, "</strong>.</p>");
	}
	return AM_OK;
}

/* The reject form of either ceremony. */
static void
reject_form(struct am_buf *b, const struct websession *s, const char *token)
{
	am_buf_puts(b, "<p>If you did not ask for this, reject it: the agent gets nothing.</p>"
		       "<form method=\"post\" action=\"" COMPLETE_PATH "\">");
	websession_csrf_field(b, s);
	am_buf_puts(b, "<input type=\"hidden\" name=\"claim_attempt_token\" value=\"");
	am_buf_html(b, token);
	am_buf_puts(b, "\"><input type=\"hidden\" name=\"decision\" value=\"reject\">"
		       "<button type=\"submit\" class=\"danger\">This wasn't me: reject</button>"
		       "</form>");
}

/* A read-back attempt (proposal (b)): Confirm (no code on this page), or,
 * once confirmed, what happened and a button for a new code, which
 * replaces the one shown; a reload never shows a code. */
static enum am_err
readback_page(struct app *a, struct http_resp *rs, int status, const struct websession *s,
	      const struct store_ceremony *att, const struct store_reg *reg, const char *token,
	      struct am_error *e)
{
	struct am_buf b = {.secret = true}; /* the forms carry the attempt token */
	char until[40], img[CIMD_URL_BYTES] = "", serial[24];
	bool confirmed = att->confirmed_at != 0;
	enum am_err rc;

	am_time_iso(att->expires_at, until, sizeof(until));
	snprintf(serial, sizeof(serial), "%lld", (long long)att->code_serial);
	if ((rc = claim_head(a, &b, "Link an AI agent to your account", s, att, reg, img, e)) != AM_OK) {
		am_buf_free(&b);
		return rc;
	}
	if (confirmed)
		am_buf_puts(&b, "<p class=\"error\">You confirmed this already, and its code was "
				"shown to you once. If you still have it, read it to your agent. "
				"If not, get a new code: the old one then stops working.</p>");
	else
		am_buf_puts(&b, "<p>If you asked your agent to do this, confirm. This page then "
				"shows a code to read back to your agent.</p>");
	am_buf_puts(&b, "<form method=\"post\" action=\"" COMPLETE_PATH "\">");
	websession_csrf_field(&b, s);
	am_buf_puts(&b, "<input type=\"hidden\" name=\"claim_attempt_token\" value=\"");
	am_buf_html(&b, token);
	am_buf_puts(&b, "\"><input type=\"hidden\" name=\"serial\" value=\"");
	am_buf_puts(&b, serial);
	am_buf_puts(&b, confirmed ? "\"><button type=\"submit\">Show a new code</button></form>"
				  : "\"><button type=\"submit\">Confirm</button></form>");
	reject_form(&b, s, token);
	am_buf_puts(&b, confirmed ? "<p class=\"muted\">The code works until "
				  : "<p class=\"muted\">This request works until ");
	am_buf_html(&b, until);
	am_buf_puts(&b, ".</p>");
	page_send(rs, status, &b, img[0] != '\0' ? img : NULL);
	return AM_OK;
}

/* After Confirm: the code, once. */
static void
code_page(struct app *a, struct http_resp *rs, const struct ceremony_block *c)
{
	struct am_buf b = {.secret = true}; /* the code */
	char until[40];

	am_time_iso(c->expires_at, until, sizeof(until));
	page_begin(&b, a->cfg, "Read this code to your agent");
	am_buf_puts(&b, "<p>Tell your agent this code, or type it where it asks:</p>"
			"<p class=\"code\" id=\"user-code\">");
	am_buf_html(&b, c->user_code);
	am_buf_puts(&b, "</p><p class=\"muted\">It works until ");
	am_buf_html(&b, until);
	am_buf_puts(&b, ", for this agent only. It is shown once: reloading this page does not "
			"show it again. Never give it to anyone else.</p>");
	page_send(rs, 200, &b, NULL);
}

/* What is being claimed, and the two forms; error (NULL: none) is the
 * refusal of a previous entry. */
static enum am_err
form_page(struct app *a, struct http_resp *rs, int status, const struct websession *s,
	  const struct store_ceremony *att, const struct store_reg *reg, const char *token,
	  const char *code, const char *error, struct am_error *e)
{
	struct am_buf b = {.secret = true}; /* the forms carry the attempt token */
	char until[40], img[CIMD_URL_BYTES] = "";
	enum am_err rc;

	am_time_iso(att->expires_at, until, sizeof(until));
	if ((rc = claim_head(a, &b, "Link an AI agent to your account", s, att, reg, img, e)) != AM_OK) {
		am_buf_free(&b);
		return rc;
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
		"spellcheck=\"false\"></label> <button type=\"submit\">Confirm</button></form>");
	reject_form(&b, s, token);
	am_buf_puts(&b, "<p class=\"muted\">The code works until ");
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
	/* an unbound read-back attempt is anyone's who signs in (until one
	 * confirms: then it is bound to that address) */
	if (strcmp(s->email, att.email) != 0 &&
	    !(att.mode == CEREMONY_READBACK && att.email[0] == '\0'))
		return wrong_account_page(a, rs, s);
	if (att.mode == CEREMONY_READBACK)
		return readback_page(a, rs, status, s, &att, &reg, token, e);
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
	bool readback;	/* the attempt's mode, as read before the job */
	int64_t serial; /* readback: the code_serial the page showed */
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
	if (c->readback)
		return flow_readback_confirm_submit(&a->env, rq->ip, c->token, c->serial,
						    c->s->user_id, c->s->email, p, done, done_arg,
						    e);
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

	if (rc == AM_E_INVALID_USER_CODE || rc == AM_E_WRONG_ACCOUNT ||
	    (rc == AM_E_CLAIM_SUPERSEDED && p->kind == FLOW_OP_READBACK_CONFIRM) ||
	    (rc == AM_E_INVALID_REQUEST && p->kind != FLOW_OP_CEREMONY_DENY)) {
		/* the page again as it is now, with why (or the wrong-account
		 * page): a re-sent confirm shows "confirmed already", never a
		 * fresh code; an attempt of the other mode its own form */
		am_copy(why, sizeof(why), e->detail);
		if ((rc = websession_get(a, rq, &s, e)) != AM_OK)
			return error_page(a, rs, rc == AM_E_NOT_FOUND ? AM_E_CSRF_REFUSED : rc, e);
		rc = show(a, rs, p->kind == FLOW_OP_READBACK_CONFIRM ? 409 : 400, &s, p->token,
			  NULL, why, e);
		OPENSSL_cleanse(&s, sizeof(s));
		return rc;
	}
	if (rc != AM_OK)
		return error_page(a, rs, rc, e);
	if (p->kind == FLOW_OP_READBACK_CONFIRM) {
		code_page(a, rs, &p->ceremony);
		return AM_OK;
	}
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

/* The mode of the attempt of token (a read: the job checks it again). */
static enum am_err
attempt_mode(struct app *a, const char *token, bool *readback, struct am_error *e)
{
	struct store_ceremony att;
	struct store_reg reg;
	struct store *st;
	enum am_err rc;

	if ((rc = app_store(a, &st, e)) != AM_OK ||
	    (rc = flow_ceremony_peek(&a->env, st, token, &att, &reg, e)) != AM_OK)
		return rc;
	*readback = att.mode == CEREMONY_READBACK;
	return AM_OK;
}

enum am_err
h_ceremony_complete(void *app, struct http_req *rq, struct http_resp *rs, struct am_error *e)
{
	struct app *a = app;
	char token[AM_MAX_TOKEN_BYTES + 1], code[32] = "", decision[16] = "", serial[24] = "";
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
	if (!args.reject && (rc = attempt_mode(a, token, &args.readback, e)) != AM_OK) {
		rc = error_page(a, rs, rc, e);
	} else if (!args.reject && args.readback) {
		if (!http_form_field(rq, "serial", serial, sizeof(serial)) ||
		    am_parse_i64(serial, 0, INT32_MAX, &args.serial) != 0) {
			rc = show(a, rs, 400, &s, token, NULL, NULL, e);
		} else {
			args.s = &s;
			if ((rc = svc_op_park(a, rq, complete_submit, &args, complete_render, rs,
					      e)) != AM_OK)
				rc = error_page(a, rs, rc, e);
		}
	} else if (!args.reject && !http_form_field(rq, "user_code", code, sizeof(code))) {
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
