/* The sign-in pages (issue 14; docs/protocol.md "User sign-in"): GET and
 * POST /login (ask for a code), GET and POST /login/verify (the mailed
 * link's confirmation, the code form), POST /logout. Every POST is CSRF
 * checked (websession.h); a GET changes nothing, so a mail scanner that
 * follows the link signs nobody in. */
#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>

#include "core/limits.h"
#include "flows/login.h"
#include "service/page.h"
#include "service/websession.h"

#define MAX_CODE_FIELD 16

/* A request parked on the group commit, and how its answer is rendered. */
struct login_park {
	struct flow_pending_login p;
	struct http_req *rq;
	struct presession pre; /* the /login forms' binding, for a page re-shown */
	enum am_err (*render)(struct app *a, struct login_park *k, struct http_resp *rs,
			      enum am_err rc, struct am_error *e);
};

static void
park_free(void *ctx)
{
	struct login_park *k = ctx;

	flow_pending_login_wipe(&k->p);
	websession_presession_wipe(&k->pre);
	free(k);
}

static void
committed(void *arg)
{
	struct login_park *k = arg;

	http_resume(k->rq);
}

static enum am_err
finish(void *app, struct http_req *rq, struct http_resp *rs, struct am_error *e)
{
	struct login_park *k = rq->park_ctx;

	return k->render(app, k, rs, flow_pending_login_result(&k->p, e), e);
}

/* Errors of these pages are pages; store failures stay the JSON 503/500 of
 * the error table only when nothing better can be said. */
static enum am_err
fail_page(struct app *a, struct http_resp *rs, enum am_err rc, struct am_error *e)
{
	return page_error(a->cfg, rs, rc, e, rc == AM_E_CSRF_REFUSED ? "Request refused" : NULL);
}

static void
return_to_field(struct am_buf *b, const char *return_to)
{
	if (return_to == NULL || return_to[0] == '\0')
		return;
	am_buf_puts(b, "<input type=\"hidden\" name=\"return_to\" value=\"");
	am_buf_html(b, return_to);
	am_buf_puts(b, "\">");
}

/* ---- GET /login ---- */

static void
signed_in_page(struct app *a, struct http_resp *rs, const struct websession *s,
	       const char *return_to)
{
	struct am_buf b = {0};

	page_begin(&b, a->cfg, "You are signed in");
	am_buf_puts(&b, "<p>Signed in as <strong>");
	am_buf_html(&b, s->email);
	am_buf_puts(&b, "</strong>.</p>");
	if (return_to != NULL && strcmp(return_to, "/") != 0) {
		am_buf_puts(&b, "<p><a href=\"");
		am_buf_html(&b, return_to);
		am_buf_puts(&b, "\">Continue</a></p>");
	}
	am_buf_puts(&b, "<form method=\"post\" action=\"/logout\">");
	websession_csrf_field(&b, s);
	am_buf_puts(&b, "<button type=\"submit\" class=\"secondary\">Sign out</button></form>");
	page_send(rs, 200, &b, NULL);
}

static void
email_form(struct app *a, struct http_resp *rs, int status, const struct presession *pre,
	   const char *return_to, const char *error)
{
	struct am_buf b = {0};

	page_begin(&b, a->cfg, "Sign in");
	if (error != NULL)
		page_para(&b, "error", error);
	am_buf_puts(&b, "<p>Enter your email address. We will send you a code and a link to sign "
			"in; no password needed.</p><form method=\"post\" action=\"/login\">");
	websession_presession_field(&b, pre);
	return_to_field(&b, return_to);
	am_buf_puts(&b, "<label for=\"email\">Email address</label>"
			"<input type=\"email\" id=\"email\" name=\"email\" required "
			"autocomplete=\"email\" maxlength=\"254\" autofocus>"
			"<button type=\"submit\">Send me a code</button></form>");
	page_send(rs, status, &b, NULL);
}

enum am_err
h_login_form(void *app, struct http_req *rq, struct http_resp *rs, struct am_error *e)
{
	struct app *a = app;
	const char *return_to = http_query(rq, "return_to");
	struct presession pre;
	struct websession s;
	enum am_err rc;

	if (return_to != NULL && !flow_return_to_ok(return_to)) {
		am_fail(e, AM_E_INVALID_REQUEST,
			"return_to must be a path on this site (like /account); the sign-in was "
			"not started");
		return fail_page(a, rs, AM_E_INVALID_REQUEST, e);
	}
	rc = websession_get(a, rq, &s, e);
	if (rc == AM_OK) {
		signed_in_page(a, rs, &s, return_to);
		OPENSSL_cleanse(&s, sizeof(s));
		return AM_OK;
	}
	if (rc != AM_E_NOT_FOUND)
		return rc;
	if ((rc = websession_presession(a, rq, rs, &pre, e)) != AM_OK)
		return rc;
	email_form(a, rs, 200, &pre, return_to, NULL);
	websession_presession_wipe(&pre);
	return AM_OK;
}

/* ---- POST /login ---- */

static void
code_form(struct app *a, struct http_resp *rs, int status, const struct presession *pre,
	  const char *attempt_id, const char *email, const char *error)
{
	struct am_buf b = {0};

	page_begin(&b, a->cfg, "Check your email");
	if (error != NULL)
		page_para(&b, "error", error);
	if (email != NULL) {
		am_buf_puts(&b, "<p>If <strong>");
		am_buf_html(&b, email);
		am_buf_puts(&b, "</strong> is your address, a code and a link are on their way. "
				"Type the code here, or open the link in the email.</p>");
	}
	am_buf_puts(&b, "<form method=\"post\" action=\"/login/verify\">");
	websession_presession_field(&b, pre);
	am_buf_puts(&b, "<input type=\"hidden\" name=\"attempt\" value=\"");
	am_buf_html(&b, attempt_id);
	am_buf_puts(&b, "\"><label for=\"code\">Code from the email</label>"
			"<input type=\"text\" id=\"code\" name=\"code\" class=\"code\" required "
			"inputmode=\"numeric\" pattern=\"[0-9]{6}\" maxlength=\"6\" "
			"autocomplete=\"one-time-code\" autofocus>"
			"<button type=\"submit\">Sign in</button></form>"
			"<p class=\"muted\"><a href=\"/login\">Use another address or get a new "
			"code</a></p>");
	page_send(rs, status, &b, NULL);
}

static enum am_err
start_render(struct app *a, struct login_park *k, struct http_resp *rs, enum am_err rc,
	     struct am_error *e)
{
	if (rc == AM_E_INTERNAL)
		return rc;
	if (rc != AM_OK)
		return fail_page(a, rs, rc, e);
	code_form(a, rs, 200, &k->pre, k->p.attempt_id, k->p.email, NULL);
	return AM_OK;
}

/* Parks rq on p's commit (p filled by a successful *_submit). k->rq was
 * set before the submit: the commit may end before this runs. */
static void
park(struct http_req *rq, struct login_park *k)
{
	http_park(rq, finish, k, park_free);
}

/* A parking place for rq whose answer render gives. */
static struct login_park *
park_new(struct http_req *rq,
	 enum am_err (*render)(struct app *a, struct login_park *k, struct http_resp *rs,
			       enum am_err rc, struct am_error *e))
{
	struct login_park *k = calloc(1, sizeof(*k));

	if (k != NULL) {
		k->rq = rq;
		k->render = render;
	}
	return k;
}

enum am_err
h_login_start(void *app, struct http_req *rq, struct http_resp *rs, struct am_error *e)
{
	struct app *a = app;
	char email[AM_MAX_EMAIL_BYTES + 2] = "", back[AM_MAX_FIELD_BYTES + 2] = "";
	bool has_back;
	struct login_park *k;
	enum am_err rc;

	rs->content_type = "text/html; charset=utf-8";
	if ((k = park_new(rq, start_render)) == NULL)
		return am_fail(e, AM_E_INTERNAL, "out of memory");
	if ((rc = websession_check_presession_post(a, rq, &k->pre, e)) != AM_OK)
		goto refused;
	has_back = http_form_field(rq, "return_to", back, sizeof(back));
	if (!http_form_field(rq, "email", email, sizeof(email))) {
		email_form(a, rs, 400, &k->pre, has_back ? back : NULL,
			   "Enter your email address.");
		park_free(k);
		return AM_OK;
	}
	rc = flow_login_start_submit(&a->env, rq->ip, email, has_back ? back : NULL, k->pre.hash,
				     &k->p, committed, k, e);
	if (rc == AM_E_INVALID_REQUEST && !has_back) {
		email_form(a, rs, 400, &k->pre, NULL, e->detail);
		park_free(k);
		return AM_OK;
	}
	if (rc != AM_OK)
		goto refused;
	park(rq, k);
	return AM_OK;
refused:
	park_free(k);
	return rc == AM_E_INTERNAL ? rc : fail_page(a, rs, rc, e);
}

/* ---- GET /login/verify?token= ---- */

enum am_err
h_login_link(void *app, struct http_req *rq, struct http_resp *rs, struct am_error *e)
{
	struct app *a = app;
	const char *token = http_query(rq, "token");
	struct am_buf b = {.secret = true}; /* the form carries the link token */
	struct store_login l;
	struct presession pre;
	struct store *st;
	enum am_err rc;

	if ((rc = app_store(a, &st, e)) != AM_OK)
		return rc;
	if ((rc = flow_login_peek_link(&a->env, st, token, &l, e)) != AM_OK)
		return rc == AM_E_UNAVAILABLE || rc == AM_E_INTERNAL
			       ? rc
			       : page_error(a->cfg, rs, rc, e, "This link cannot be used");
	if ((rc = websession_presession(a, rq, rs, &pre, e)) != AM_OK) {
		OPENSSL_cleanse(&l, sizeof(l));
		return rc;
	}
	page_begin(&b, a->cfg, "Sign in");
	am_buf_puts(&b, "<p>Sign in to <strong>");
	am_buf_html(&b, a->cfg->resource_name);
	am_buf_puts(&b, "</strong> as <strong>");
	am_buf_html(&b, l.email);
	am_buf_puts(&b, "</strong>?</p><form method=\"post\" action=\"/login/verify\">");
	websession_presession_field(&b, &pre);
	am_buf_puts(&b, "<input type=\"hidden\" name=\"token\" value=\"");
	am_buf_html(&b, token);
	am_buf_puts(&b, "\"><button type=\"submit\">Sign in</button></form>"
			"<p class=\"muted\">If you did not ask to sign in, close this page: "
			"nothing happens.</p>");
	page_send(rs, 200, &b, NULL);
	OPENSSL_cleanse(&l, sizeof(l));
	websession_presession_wipe(&pre);
	return AM_OK;
}

/* ---- POST /login/verify ---- */

static enum am_err
verify_render(struct app *a, struct login_park *k, struct http_resp *rs, enum am_err rc,
	      struct am_error *e)
{
	if (rc == AM_E_OTP_INVALID && !k->p.by_link) {
		/* The same form again, with what went wrong. */
		code_form(a, rs, 401, &k->pre, k->p.attempt_id, NULL, e->detail);
		return AM_OK;
	}
	if (rc == AM_E_INTERNAL)
		return rc;
	if (rc != AM_OK)
		return fail_page(a, rs, rc, e);
	page_redirect(rs, k->p.return_to[0] != '\0' ? k->p.return_to : "/login");
	websession_set_cookie(a, rs, k->p.cookie);
	return AM_OK;
}

enum am_err
h_login_verify(void *app, struct http_req *rq, struct http_resp *rs, struct am_error *e)
{
	struct app *a = app;
	char token[FLOW_SECRET_LEN + 2] = "", attempt[STORE_ID_LEN + 2] = "";
	char code[MAX_CODE_FIELD] = "";
	struct store *st;
	struct login_park *k;
	bool by_link;
	enum am_err rc;

	rs->content_type = "text/html; charset=utf-8";
	if ((k = park_new(rq, verify_render)) == NULL)
		return am_fail(e, AM_E_INTERNAL, "out of memory");
	if ((rc = websession_check_presession_post(a, rq, &k->pre, e)) != AM_OK ||
	    (rc = app_store(a, &st, e)) != AM_OK)
		goto refused;
	by_link = http_form_field(rq, "token", token, sizeof(token));
	if (!by_link && (!http_form_field(rq, "attempt", attempt, sizeof(attempt)) ||
			 !http_form_field(rq, "code", code, sizeof(code)))) {
		rc = am_fail(e, AM_E_INVALID_REQUEST, "the form needs the code from the email");
		goto refused;
	}
	/* Spaces a user may type around the code are not part of it. */
	for (char *c = code + strlen(code); c > code && c[-1] == ' ';)
		*--c = '\0';
	rc = flow_login_verify_submit(&a->env, st, rq->ip, by_link ? NULL : attempt,
				      by_link ? NULL : code + strspn(code, " "),
				      by_link ? token : NULL, k->pre.hash, &k->p, committed, k, e);
	OPENSSL_cleanse(token, sizeof(token));
	OPENSSL_cleanse(code, sizeof(code));
	if (rc == AM_E_OTP_INVALID && !by_link) {
		code_form(a, rs, 401, &k->pre, attempt, NULL, e->detail);
		park_free(k);
		return AM_OK;
	}
	if (rc != AM_OK)
		goto refused;
	park(rq, k);
	return AM_OK;
refused:
	OPENSSL_cleanse(token, sizeof(token));
	OPENSSL_cleanse(code, sizeof(code));
	park_free(k);
	return rc == AM_E_INTERNAL ? rc : fail_page(a, rs, rc, e);
}

/* ---- POST /logout ---- */

static enum am_err
logout_render(struct app *a, struct login_park *k, struct http_resp *rs, enum am_err rc,
	      struct am_error *e)
{
	(void)k;
	if (rc != AM_OK)
		return rc == AM_E_INTERNAL ? rc : fail_page(a, rs, rc, e);
	page_redirect(rs, "/login");
	websession_set_cookie(a, rs, NULL);
	return AM_OK;
}

enum am_err
h_logout(void *app, struct http_req *rq, struct http_resp *rs, struct am_error *e)
{
	struct app *a = app;
	struct websession s;
	struct login_park *k;
	enum am_err rc;

	rs->content_type = "text/html; charset=utf-8";
	rc = websession_check_post(a, rq, &s, e);
	if (rc == AM_E_NOT_FOUND) { /* nothing to end: clear a stale cookie */
		page_redirect(rs, "/login");
		websession_set_cookie(a, rs, NULL);
		return AM_OK;
	}
	if (rc != AM_OK)
		return rc == AM_E_INTERNAL || rc == AM_E_UNAVAILABLE ? rc : fail_page(a, rs, rc, e);
	if ((k = park_new(rq, logout_render)) == NULL) {
		OPENSSL_cleanse(&s, sizeof(s));
		return am_fail(e, AM_E_INTERNAL, "out of memory");
	}
	rc = flow_logout_submit(&a->env, s.hash, &k->p, committed, k, e);
	OPENSSL_cleanse(&s, sizeof(s));
	if (rc != AM_OK) {
		park_free(k);
		return rc;
	}
	park(rq, k);
	return AM_OK;
}
