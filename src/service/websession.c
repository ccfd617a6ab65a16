/* Sessions, pre-sessions and CSRF of the service's pages (websession.h). */
#include "service/websession.h"

#include <openssl/crypto.h>
#include <stdio.h>
#include <string.h>

#include "core/log.h"
#include "flows/login.h"
#include "service/page.h"

#define CSRF_LABEL "authmd page form v1:"

static bool
secure_cookies(const struct app *a)
{
	return strncmp(a->cfg->public_url, "https://", 8) == 0;
}

/* __Host-: the browser accepts it only with Secure, Path=/ and no Domain,
 * so no sibling host or plain-http page can plant or overwrite it. */
static const char *
session_cookie(const struct app *a)
{
	return secure_cookies(a) ? "__Host-authmd_session" : "authmd_session";
}

static const char *
presession_cookie(const struct app *a)
{
	return secure_cookies(a) ? "__Host-authmd_pre" : "authmd_pre";
}

static void
set_cookie(struct app *a, struct http_resp *rs, const char *name, const char *value,
	   int64_t max_age)
{
	char line[FLOW_SECRET_LEN + 160];

	snprintf(line, sizeof(line), "%s=%s; Path=/; HttpOnly; SameSite=Lax; Max-Age=%lld%s", name,
		 value != NULL ? value : "", value != NULL ? (long long)max_age : 0LL,
		 secure_cookies(a) ? "; Secure" : "");
	http_add_header(rs, "Set-Cookie", line);
	OPENSSL_cleanse(line, sizeof(line));
}

void
websession_set_cookie(struct app *a, struct http_resp *rs, const char *value)
{
	set_cookie(a, rs, session_cookie(a), value, a->cfg->login_session_ttl);
}

/* The form token of a cookie value: SHA-256 under a label, in hex. Only a
 * page that can read the cookie (none can: HttpOnly) or that this server
 * rendered knows it. */
static void
csrf_of(const char *cookie, char out[WEBSESSION_CSRF_LEN + 1])
{
	struct am_buf b = {.secret = true};
	uint8_t h[AM_HASH_LEN];

	am_buf_puts(&b, CSRF_LABEL);
	am_buf_puts(&b, cookie);
	am_sha256(b.data, b.len, h);
	am_buf_free(&b);
	am_hex(h, sizeof(h), out);
	OPENSSL_cleanse(h, sizeof(h));
}

static void
csrf_field(struct am_buf *b, const char *token)
{
	am_buf_puts(b, "<input type=\"hidden\" name=\"" WEBSESSION_CSRF_FIELD "\" value=\"");
	am_buf_html(b, token);
	am_buf_puts(b, "\">");
}

/* The origin rules of a page POST: a browser says where the form came
 * from; what it says must be this site. A client that sends neither header
 * still needs the token. */
enum am_err
websession_check_origin(struct app *a, struct http_req *rq, struct am_error *e)
{
	const char *site = http_header(rq, "Sec-Fetch-Site");
	const char *origin = http_header(rq, "Origin");

	if (site != NULL && strcmp(site, "same-origin") != 0 && strcmp(site, "none") != 0)
		return am_fail(e, AM_E_CSRF_REFUSED,
			       "this form was sent from another site; nothing was done");
	/* "null": what a browser sends instead of the origin under our own
	 * Referrer-Policy no-referrer (Chromium does for form posts); the
	 * token and Sec-Fetch-Site decide then. */
	if (origin != NULL && strcmp(origin, "null") != 0 &&
	    strcmp(origin, a->cfg->public_url) != 0)
		return am_fail(e, AM_E_CSRF_REFUSED,
			       "this form was sent from another origin; nothing was done");
	return AM_OK;
}

static enum am_err
token_ok(struct http_req *rq, const char *want, struct am_error *e)
{
	char got[WEBSESSION_CSRF_LEN + 2] = "";

	if (!http_form_field(rq, WEBSESSION_CSRF_FIELD, got, sizeof(got)) ||
	    strlen(got) != WEBSESSION_CSRF_LEN || !am_ct_equal(got, want, WEBSESSION_CSRF_LEN))
		return am_fail(e, AM_E_CSRF_REFUSED,
			       "this form has expired or did not come from this site; reload the "
			       "page and try again");
	return AM_OK;
}

enum am_err
websession_get(struct app *a, struct http_req *rq, struct websession *out, struct am_error *e)
{
	const char *cookie = http_cookie(rq, session_cookie(a));
	struct store_session w;
	struct store *st;
	enum am_err rc;

	if (cookie == NULL)
		return am_fail(e, AM_E_NOT_FOUND, "not signed in");
	if ((rc = app_store(a, &st, e)) != AM_OK ||
	    (rc = flow_session_get(&a->env, st, cookie, &w, e)) != AM_OK)
		return rc;
	memset(out, 0, sizeof(*out));
	am_copy(out->id, sizeof(out->id), w.id);
	am_copy(out->user_id, sizeof(out->user_id), w.user_id);
	am_copy(out->email, sizeof(out->email), w.email);
	out->auth_time = w.auth_time;
	out->expires_at = w.expires_at;
	memcpy(out->hash, w.hash, AM_HASH_LEN);
	csrf_of(cookie, out->csrf);
	OPENSSL_cleanse(&w, sizeof(w));
	return AM_OK;
}

void
websession_csrf_field(struct am_buf *b, const struct websession *s)
{
	csrf_field(b, s->csrf);
}

enum am_err
websession_check_post(struct app *a, struct http_req *rq, struct websession *out,
		      struct am_error *e)
{
	struct websession s;
	enum am_err rc;

	if ((rc = websession_check_origin(a, rq, e)) != AM_OK ||
	    (rc = websession_get(a, rq, &s, e)) != AM_OK)
		return rc;
	if ((rc = token_ok(rq, s.csrf, e)) != AM_OK) {
		log_warn("page post refused: csrf token session=%s path=%s", s.id, rq->path);
		OPENSSL_cleanse(&s, sizeof(s));
		return rc;
	}
	*out = s;
	return AM_OK;
}

bool
websession_fresh(const struct websession *s, int64_t max_age, int64_t now)
{
	return max_age <= 0 || (s->auth_time <= now && now - s->auth_time <= max_age);
}

/* Percent-encodes s (RFC 3986 unreserved characters kept) onto b. */
static void
query_escape(struct am_buf *b, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";

	for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
		if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		    (*p >= '0' && *p <= '9') || strchr("-._~/", *p) != NULL) {
			am_buf_add(b, (const char *)p, 1);
		} else {
			char pct[3] = {'%', hex[*p >> 4], hex[*p & 15]};

			am_buf_add(b, pct, 3);
		}
	}
}

void
websession_redirect_login(struct app *a, struct http_req *rq, struct http_resp *rs,
			  const char *return_to)
{
	struct am_buf b = {0};
	const char *back = return_to != NULL ? return_to : rq->path;

	(void)a;
	am_buf_puts(&b, "/login");
	if (flow_return_to_ok(back)) {
		am_buf_puts(&b, "?return_to=");
		query_escape(&b, back);
	}
	page_redirect(rs, b.data);
	am_buf_free(&b);
}

enum am_err
websession_presession(struct app *a, struct http_req *rq, struct http_resp *rs,
		      struct presession *out, struct am_error *e)
{
	const char *have = http_cookie(rq, presession_cookie(a));
	enum am_err rc;

	memset(out, 0, sizeof(*out));
	if (have != NULL && strlen(have) < sizeof(out->value) &&
	    strncmp(have, FLOW_PRESESSION_PREFIX, strlen(FLOW_PRESESSION_PREFIX)) == 0) {
		am_copy(out->value, sizeof(out->value), have);
	} else {
		if ((rc = am_rand_token(FLOW_PRESESSION_PREFIX, out->value, sizeof(out->value),
					e)) != AM_OK)
			return rc;
		set_cookie(a, rs, presession_cookie(a), out->value, a->cfg->login_session_ttl);
	}
	am_sha256_str(out->value, out->hash);
	csrf_of(out->value, out->csrf);
	return AM_OK;
}

enum am_err
websession_check_presession_post(struct app *a, struct http_req *rq, struct presession *out,
				 struct am_error *e)
{
	const char *have = http_cookie(rq, presession_cookie(a));
	enum am_err rc;

	memset(out, 0, sizeof(*out));
	if ((rc = websession_check_origin(a, rq, e)) != AM_OK)
		return rc;
	if (have == NULL || !am_copy(out->value, sizeof(out->value), have))
		return am_fail(e, AM_E_CSRF_REFUSED,
			       "this browser did not open the sign-in page first (are cookies "
			       "off?); open it and try again");
	am_sha256_str(out->value, out->hash);
	csrf_of(out->value, out->csrf);
	if ((rc = token_ok(rq, out->csrf, e)) != AM_OK) {
		log_warn("page post refused: csrf token (pre-session) path=%s", rq->path);
		websession_presession_wipe(out);
	}
	return rc;
}

void
websession_presession_wipe(struct presession *p)
{
	OPENSSL_cleanse(p, sizeof(*p));
}

void
websession_presession_field(struct am_buf *b, const struct presession *p)
{
	csrf_field(b, p->csrf);
}
