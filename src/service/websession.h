/* Signed-in users at the service's pages (issue 14): the session API the
 * page handlers use (sign-in, the claim ceremony pages). A session is a
 * server-side row found by the SHA-256 of its cookie (flows/login.h); the
 * cookie is HttpOnly, SameSite=Lax, Path=/, and Secure with the __Host-
 * prefix when [server] public_url is https.
 *
 * CSRF: every page form carries a hidden field "csrf" whose value is the
 * SHA-256 (hex) of the browser's cookie value under a fixed label: the
 * session cookie once signed in, the pre-session cookie on the /login
 * forms before. A POST is refused (AM_E_CSRF_REFUSED, 403) when the field
 * does not match in constant time, or when its Origin is neither
 * public_url nor "null" (what browsers send under Referrer-Policy
 * no-referrer), or its Sec-Fetch-Site is neither same-origin nor none. See docs/protocol.md
 * "User sign-in". */
#ifndef AM_SERVICE_WEBSESSION_H
#define AM_SERVICE_WEBSESSION_H

#include <stdbool.h>
#include <stdint.h>

#include "core/str.h"
#include "service/service.h"

#define WEBSESSION_CSRF_FIELD "csrf"
#define WEBSESSION_CSRF_LEN 64 /* hex characters */

/* The signed-in user of a request. */
struct websession {
	char id[STORE_ID_LEN]; /* public: for logs and audit, never a credential */
	char user_id[STORE_ID_LEN];
	char email[AM_MAX_EMAIL_BYTES + 1];
	int64_t auth_time;  /* when the user last proved the address (unix seconds) */
	int64_t expires_at; /* the session's fixed end */
	char csrf[WEBSESSION_CSRF_LEN + 1]; /* this session's form token */
	uint8_t hash[AM_HASH_LEN];	    /* of the cookie: the row's key */
};

/* The signed-in session of rq: AM_OK with *out; AM_E_NOT_FOUND when rq has
 * no session cookie or its session is unknown or ended (lifetime or idle
 * limit); AM_E_UNAVAILABLE / AM_E_INTERNAL when the store fails (return
 * those as they are). Reads only (the idle clock moves in the background). */
enum am_err websession_get(struct app *a, struct http_req *rq, struct websession *out,
			   struct am_error *e) AM_WUR;

/* Appends the hidden CSRF field of s to a form being written in b. */
void websession_csrf_field(struct am_buf *b, const struct websession *s);

/* The checks of a page POST made by a signed-in user: the origin rules,
 * then the session (as websession_get: AM_E_NOT_FOUND when there is none;
 * answer with websession_redirect_login), then the form's CSRF field.
 * AM_OK fills *out. AM_E_CSRF_REFUSED: render page_error (a 403 page). */
enum am_err websession_check_post(struct app *a, struct http_req *rq, struct websession *out,
				  struct am_error *e) AM_WUR;

/* The origin rules alone (Origin is public_url or "null", Sec-Fetch-Site is
 * same-origin or none, each when sent): for a form whose token is a
 * secret of its own (the claim page's attempt token). AM_E_CSRF_REFUSED. */
enum am_err websession_check_origin(struct app *a, struct http_req *rq, struct am_error *e) AM_WUR;

/* True when s proved the address within max_age seconds of now (the
 * freshness rule; max_age 0: any age). */
bool websession_fresh(const struct websession *s, int64_t max_age, int64_t now);

/* Answers rq with 303 to /login?return_to=<return_to>, return_to being the
 * page to come back to (a same-origin path with its query, e.g.
 * "/claim?user_code=ABCD-EFGH"; NULL: rq's path). A return_to that is not
 * a plain same-origin path is dropped (the sign-in then returns to "/login"). */
void websession_redirect_login(struct app *a, struct http_req *rq, struct http_resp *rs,
			       const char *return_to);

/* ---- for the /login pages (login_page.c) ---- */

/* The browser's pre-session cookie: what the /login forms are bound to. */
struct presession {
	char value[FLOW_SECRET_LEN];
	uint8_t hash[AM_HASH_LEN];
	char csrf[WEBSESSION_CSRF_LEN + 1];
};

/* rq's pre-session cookie, or a new one (CSPRNG) set on rs when it has
 * none. Wipe with websession_presession_wipe. */
enum am_err websession_presession(struct app *a, struct http_req *rq, struct http_resp *rs,
				  struct presession *out, struct am_error *e) AM_WUR;
/* The origin rules and the CSRF field of a /login POST against rq's
 * pre-session cookie (none: AM_E_CSRF_REFUSED). */
enum am_err websession_check_presession_post(struct app *a, struct http_req *rq,
					     struct presession *out, struct am_error *e) AM_WUR;
void websession_presession_wipe(struct presession *p);
/* Appends the hidden CSRF field of a pre-session form. */
void websession_presession_field(struct am_buf *b, const struct presession *p);
/* Sets the session cookie to value for the session's lifetime; value NULL
 * clears it. */
void websession_set_cookie(struct app *a, struct http_resp *rs, const char *value);

/* The v0.1 claim page's "this wasn't me" form (claim_page.c). */
#define CLAIM_REJECT_PATH "/agent/auth/claim/attempt/reject"
enum am_err h_claim_reject(void *app, struct http_req *rq, struct http_resp *rs,
			   struct am_error *e);

/* The sign-in pages' handlers (login_page.c), routed when [login] enabled. */
enum am_err h_login_form(void *app, struct http_req *rq, struct http_resp *rs, struct am_error *e);
enum am_err h_login_start(void *app, struct http_req *rq, struct http_resp *rs, struct am_error *e);
enum am_err h_login_link(void *app, struct http_req *rq, struct http_resp *rs, struct am_error *e);
enum am_err h_login_verify(void *app, struct http_req *rq, struct http_resp *rs,
			   struct am_error *e);
enum am_err h_logout(void *app, struct http_req *rq, struct http_resp *rs, struct am_error *e);

#endif
