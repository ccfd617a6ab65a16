/* The user's side of the claim: the page the email links to, and the code
 * it shows. Loading the page mints nothing (link scanners and refreshes
 * burn no code); the code is minted only when the user presses the button,
 * which POSTs the form to /agent/auth/claim/attempt/challenge. No script
 * runs on these pages, and every value from outside is HTML-escaped. */
#include <openssl/crypto.h>
#include <stdio.h>
#include <string.h>

#include "core/clock.h"
#include "core/limits.h"
#include "core/str.h"
#include "core/url.h"
#include "trust/cimd.h"
#include "service/page.h"
#include "service/service.h"
#include "service/websession.h"

/* Whether a page may show logo (a registration's logo_uri): https, or http
 * to a loopback host while this service itself runs on plain http (a
 * development setup); its origin goes into origin for the CSP. The origin
 * must hold only URL host characters, so it cannot end or add a CSP
 * directive. With no-referrer the logo's host never sees the page's URL
 * (and its token); it does learn that the page was opened. */
static bool
logo_origin(const struct app *a, const char *logo, char *origin, size_t cap)
{
	struct am_url u;

	if (logo[0] == '\0' || !am_url_parse(logo, &u) || u.has_userinfo)
		return false;
	if (strcmp(u.scheme, "https") != 0 &&
	    !(am_url_is_loopback(&u) && strncmp(a->cfg->public_url, "http://", 7) == 0))
		return false;
	if (!am_url_origin(&u, origin, cap))
		return false;
	for (const char *p = origin; *p != '\0'; p++) {
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || strchr(":/.-[]", *p) != NULL))
			return false;
	}
	return true;
}

enum am_err
svc_client_block(struct app *a, const char *registration_id, struct am_buf *b, char *img_origin,
		 size_t cap, struct am_error *e)
{
	struct store_reg_client c;
	struct store *st;
	enum am_err rc;

	img_origin[0] = '\0';
	if ((rc = app_store(a, &st, e)) != AM_OK)
		return rc;
	rc = flow_claim_client(&a->env, st, registration_id, &c, e);
	if (rc == AM_E_NOT_FOUND)
		return AM_OK;
	if (rc != AM_OK)
		return rc;
	if (c.client_name[0] == '\0' && c.logo_uri[0] == '\0')
		return AM_OK;
	am_buf_puts(b, "<p class=\"client\">");
	if (logo_origin(a, c.logo_uri, img_origin, cap)) {
		am_buf_puts(b, "<img src=\"");
		am_buf_html(b, c.logo_uri);
		am_buf_puts(b, "\" alt=\"\" width=\"48\" height=\"48\"> ");
	}
	am_buf_puts(b, "The agent says it is <strong>");
	am_buf_html(b, c.client_name[0] != '\0' ? c.client_name : c.client_id);
	am_buf_puts(b, "</strong> <span class=\"muted\">(");
	am_buf_html(b, c.client_id);
	am_buf_puts(b, ")</span></p>");
	return AM_OK;
}

/* Errors on these pages are pages too, with the status of the error table. */
static enum am_err
error_page(const struct app *a, struct http_resp *rs, enum am_err code, const struct am_error *e)
{
	return page_error(a->cfg, rs, code, e,
			  code == AM_E_CSRF_REFUSED ? "Request refused"
						    : "This link cannot be used");
}

static bool
token_ok(const char *t)
{
	size_t n = t != NULL ? strlen(t) : 0;

	if (n == 0 || n > AM_MAX_TOKEN_BYTES)
		return false;
	for (const char *p = t; *p != '\0'; p++) {
		if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z') ||
		      (*p >= 'A' && *p <= 'Z') || *p == '_'))
			return false;
	}
	return true;
}

enum am_err
h_claim_view(void *app, struct http_req *rq, struct http_resp *rs, struct am_error *e)
{
	struct app *a = app;
	const char *token = http_query(rq, "token");
	struct store_attempt att;
	struct am_buf b = {.secret = true}; /* the form carries the attempt token */
	struct presession pre;
	struct store *st;
	char until[40], img[CIMD_URL_BYTES];
	enum am_err rc;

	if (!token_ok(token)) {
		am_fail(e, AM_E_CLAIM_SUPERSEDED,
			"this link is not complete; open the link from "
			"the email exactly as it was sent");
		return error_page(a, rs, AM_E_CLAIM_SUPERSEDED, e);
	}
	if ((rc = app_store(a, &st, e)) != AM_OK)
		return rc;
	if ((rc = flow_claim_peek(&a->env, st, token, &att, e)) != AM_OK)
		return rc == AM_E_UNAVAILABLE || rc == AM_E_INTERNAL ? rc
								     : error_page(a, rs, rc, e);
	/* The reject form is bound to this browser's pre-session cookie. */
	if ((rc = websession_presession(a, rq, rs, &pre, e)) != AM_OK)
		return rc;
	am_time_iso(att.expires_at, until, sizeof(until));
	page_begin(&b, a->cfg, "Confirm your AI agent");
	if ((rc = svc_client_block(a, att.registration_id, &b, img, sizeof(img), e)) != AM_OK) {
		am_buf_free(&b);
		websession_presession_wipe(&pre);
		return rc;
	}
	am_buf_puts(&b, "<p>An AI agent asked to act for <strong>");
	am_buf_html(&b, att.email);
	am_buf_puts(&b, "</strong> at <strong>");
	am_buf_html(&b, a->cfg->resource_name);
	am_buf_puts(&b, "</strong>.</p><p>If you asked your agent to do this, press the button to "
			"see a 6-digit code, then tell the code to your agent.</p>"
			"<form method=\"post\" action=\"/agent/auth/claim/attempt/challenge\">"
			"<input type=\"hidden\" name=\"claim_attempt_token\" value=\"");
	am_buf_html(&b, token);
	am_buf_puts(&b, "\"><button type=\"submit\">Show my code</button></form>"
			"<p>If you did not ask for this, reject it: the link and any code stop "
			"working, and nothing is given to the agent.</p>"
			"<form method=\"post\" action=\"" CLAIM_REJECT_PATH "\">");
	websession_presession_field(&b, &pre);
	am_buf_puts(&b, "<input type=\"hidden\" name=\"claim_attempt_token\" value=\"");
	am_buf_html(&b, token);
	am_buf_puts(&b, "\"><button type=\"submit\" class=\"danger\">This wasn't me: "
			"reject</button></form><p class=\"muted\">This link works until ");
	am_buf_html(&b, until);
	am_buf_puts(&b, ".</p>");
	page_send(rs, 200, &b, img[0] != '\0' ? img : NULL);
	websession_presession_wipe(&pre);
	return AM_OK;
}

static enum am_err
page_submit(struct app *a, struct http_req *rq, struct flow_pending_op *p, void *arg, bool *queued,
	    void (*done)(void *arg), void *done_arg, struct am_error *e)
{
	(void)rq;
	(void)queued;
	return flow_claim_challenge_submit(&a->env, arg, p, done, done_arg, e);
}

/* The code page, once the new code is durable (or the error page). */
static enum am_err
page_render(struct app *a, struct http_req *rq, struct http_resp *rs, struct flow_pending_op *p,
	    enum am_err rc, struct am_error *e)
{
	struct am_buf b = {.secret = true}; /* the page carries the code */
	char until[40], img[CIMD_URL_BYTES];

	(void)rq;
	if (rc != AM_OK)
		return rc == AM_E_UNAVAILABLE || rc == AM_E_INTERNAL ? rc
								     : error_page(a, rs, rc, e);
	am_time_iso(p->challenge.expires_at, until, sizeof(until));
	page_begin(&b, a->cfg, "Your code");
	if ((rc = svc_client_block(a, p->challenge.registration_id, &b, img, sizeof(img), e)) !=
	    AM_OK) {
		am_buf_free(&b);
		return rc;
	}
	am_buf_puts(&b, "<p>Tell this code to your agent:</p><p class=\"code\">");
	am_buf_html(&b, p->challenge.otp);
	am_buf_puts(&b, "</p><p class=\"muted\">It works until ");
	am_buf_html(&b, until);
	am_buf_puts(&b, ". Pressing the button again makes a new code and the old one stops "
			"working.</p>");
	page_send(rs, 200, &b, img[0] != '\0' ? img : NULL);
	return AM_OK;
}

/* The button: the code is minted in the group commit and the request is
 * parked until it is durable, so the code shown always works. */
static enum am_err
challenge_page(struct app *a, struct http_req *rq, struct http_resp *rs, struct am_error *e)
{
	char token[AM_MAX_TOKEN_BYTES + 1];
	enum am_err rc;

	/* The form's CSRF token is the attempt token itself: a secret only
	 * the mailed link and this page hold. A browser that says the form
	 * came from another site is refused all the same. */
	if ((rc = websession_check_origin(a, rq, e)) != AM_OK)
		return error_page(a, rs, rc, e);
	if (!http_form_field(rq, "claim_attempt_token", token, sizeof(token)) || !token_ok(token)) {
		am_fail(e, AM_E_INVALID_REQUEST, "the form is missing its claim_attempt_token");
		return error_page(a, rs, AM_E_INVALID_REQUEST, e);
	}
	/* The answer will be a page: marked now, before the request parks, so
	 * that nothing set around this handler (CORS, service/cors.c) treats it
	 * as a JSON answer and makes the code page readable cross-origin. */
	rs->content_type = "text/html; charset=utf-8";
	rc = svc_op_park(a, rq, page_submit, token, page_render, rs, e);
	OPENSSL_cleanse(token, sizeof(token));
	return rc;
}

enum am_err
h_claim_challenge(void *app, struct http_req *rq, struct http_resp *rs, struct am_error *e)
{
	struct app *a = app;

	if (http_content_type_is(rq, "application/x-www-form-urlencoded"))
		return challenge_page(a, rq, rs, e);
	return svc_challenge_json(a, rq, rs, e);
}

/* ---- "this wasn't me" ---- */

static enum am_err
reject_submit(struct app *a, struct http_req *rq, struct flow_pending_op *p, void *arg,
	      bool *queued, void (*done)(void *arg), void *done_arg, struct am_error *e)
{
	(void)rq;
	(void)queued;
	return flow_claim_reject_submit(&a->env, arg, p, done, done_arg, e);
}

static enum am_err
reject_render(struct app *a, struct http_req *rq, struct http_resp *rs, struct flow_pending_op *p,
	      enum am_err rc, struct am_error *e)
{
	struct am_buf b = {0};

	(void)rq;
	(void)p;
	if (rc != AM_OK)
		return rc == AM_E_UNAVAILABLE || rc == AM_E_INTERNAL ? rc
								     : error_page(a, rs, rc, e);
	page_begin(&b, a->cfg, "Request rejected");
	page_para(&b, NULL,
		  "Thank you. The link and any code from it no longer work, and the agent was "
		  "given nothing. You can close this page.");
	page_send(rs, 200, &b, NULL);
	return AM_OK;
}

enum am_err
h_claim_reject(void *app, struct http_req *rq, struct http_resp *rs, struct am_error *e)
{
	struct app *a = app;
	char token[AM_MAX_TOKEN_BYTES + 1];
	struct presession pre;
	enum am_err rc;

	rs->content_type = "text/html; charset=utf-8";
	if ((rc = websession_check_presession_post(a, rq, &pre, e)) != AM_OK)
		return error_page(a, rs, rc, e);
	websession_presession_wipe(&pre);
	if (!http_form_field(rq, "claim_attempt_token", token, sizeof(token)) || !token_ok(token)) {
		am_fail(e, AM_E_INVALID_REQUEST, "the form is missing its claim_attempt_token");
		return error_page(a, rs, AM_E_INVALID_REQUEST, e);
	}
	rc = svc_op_park(a, rq, reject_submit, token, reject_render, rs, e);
	OPENSSL_cleanse(token, sizeof(token));
	return rc;
}
