/* User sign-in by email (login.h): attempts, codes and links, sessions. */
#include "flows/login.h"

#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/str.h"
#include "flows/internal.h"
#include "flows/ratelimit.h"
#include "mail/mail.h"

#define TOUCH_EVERY_S 60 /* last_seen moves at most this often per session */
#define SWEEP_ROUNDS 1000

bool
flow_return_to_ok(const char *s)
{
	size_t n = s != NULL ? strlen(s) : 0;

	/* "//host" and "/\host" are network paths to browsers; a scheme
	 * ("javascript:") cannot start with "/" but is refused anywhere in the
	 * first segment all the same. */
	if (n == 0 || n > AM_MAX_FIELD_BYTES || s[0] != '/' || s[1] == '/' || s[1] == '\\')
		return false;
	for (const char *p = s; *p != '\0'; p++) {
		unsigned char c = (unsigned char)*p;

		if (c <= 0x20 || c >= 0x7f || c == '\\')
			return false;
	}
	/* No colon in the first segment: nothing a parser could read as a
	 * scheme even after someone strips the leading slash. */
	return strcspn(s + 1, ":") >= strcspn(s + 1, "/?#");
}

static enum am_err
limited(struct am_error *e, int64_t retry_after, const char *what)
{
	e->retry_after = (long)(retry_after > 0 ? retry_after : 1);
	log_warn("login refused limit=%s retry_after=%ld", what, e->retry_after);
	return am_fail(e, AM_E_RATE_LIMITED, "too many sign-in requests %s; retry in %ld s", what,
		       e->retry_after);
}

/* One hit of a [login] limit per [limits] rate_window (0: no limit). */
static enum am_err
spend(const struct flow_env *env, const char *kind, const char *key, int64_t limit,
      const char *what, struct am_error *e)
{
	char k[AM_MAX_EMAIL_BYTES + 80];
	int64_t retry = 0;

	if (env->limits == NULL || limit <= 0 || key == NULL || key[0] == '\0')
		return AM_OK;
	snprintf(k, sizeof(k), "login-%s:%s", kind, key);
	if (!ratelimit_hit(env->limits, k, limit, flow_now(env), &retry))
		return limited(e, retry, what);
	return AM_OK;
}

/* ---- the mail ---- */

static enum am_err
render_mail(const struct flow_env *env, const struct flow_pending_login *p, char **out,
	    struct am_error *e)
{
	const struct am_config *cfg = env->cfg;
	struct am_buf text = {.secret = true}, html = {.secret = true}, link = {.secret = true};
	char subject[200], until[40];
	enum am_err rc;

	am_time_iso(p->expires_at, until, sizeof(until));
	am_buf_printf(&link, "%s/login/verify?token=%s", cfg->public_url, p->link);
	snprintf(subject, sizeof(subject), "Your sign-in code for %s", cfg->resource_name);
	am_buf_printf(&text,
		      "Someone asked to sign in to %s as %s.\n\n"
		      "Your code: %s\n\n"
		      "Type it on the sign-in page, or open this link and press the button:\n\n"
		      "%s\n\n"
		      "The code and the link work once, until %s.\n\n"
		      "If you did not ask to sign in, ignore this email.\n",
		      cfg->resource_name, p->email, p->code, link.data, until);
	am_buf_puts(&html, "<!doctype html><html><body><p>Someone asked to sign in to ");
	am_buf_html(&html, cfg->resource_name);
	am_buf_puts(&html, " as ");
	am_buf_html(&html, p->email);
	am_buf_puts(&html, ".</p><p>Your code: <strong style=\"font-size:1.6em\">");
	am_buf_html(&html, p->code);
	am_buf_puts(&html, "</strong></p><p>Type it on the sign-in page, or <a href=\"");
	am_buf_html(&html, link.data);
	am_buf_puts(&html, "\">open this link</a> and press the button.</p><p>The code and the "
			   "link work once, until ");
	am_buf_html(&html, until);
	am_buf_puts(&html, ".</p><p>If you did not ask to sign in, ignore this email.</p>"
			   "</body></html>");
	rc = flow_render_mail(env, p->email, subject, &text, &html, out, e);
	am_buf_free(&text);
	am_buf_free(&html);
	am_buf_free(&link);
	return rc;
}

/* ---- start ---- */

static enum am_err
start_step(struct store *st, struct flow_pending_login *p, struct am_error *e)
{
	const struct flow_env *env = p->env;
	const struct am_config *cfg = env->cfg;
	int64_t now = flow_now(env), n = 0, oldest = 0;
	struct store_login l = {0};
	char *message = NULL;
	enum am_err rc;

	if ((rc = store_begin(st, e)) != AM_OK)
		return rc;
	/* Counted from the rows, inside the transaction: durable, and shared
	 * by replicas. */
	if (cfg->login_mails_per_address > 0) {
		if ((rc = store_login_count(st, p->email, now - cfg->login_mail_window,
					    cfg->login_mails_per_address, &n, &oldest, e)) != AM_OK)
			goto fail;
		if (n >= cfg->login_mails_per_address) {
			rc = limited(e, oldest + cfg->login_mail_window - now, "to this address");
			goto fail;
		}
	}
	am_copy(l.id, sizeof(l.id), p->attempt_id);
	am_copy(l.email, sizeof(l.email), p->email);
	am_sha256_str(p->link, l.link_hash);
	flow_code_hash(l.id, p->code, l.code_hash);
	memcpy(l.browser_hash, p->browser_hash, AM_HASH_LEN);
	am_copy(l.return_to, sizeof(l.return_to), p->return_to);
	am_copy(l.ip, sizeof(l.ip), p->ip);
	l.status = LOGIN_OPEN;
	l.created_at = now;
	l.expires_at = p->expires_at;
	if ((rc = store_login_insert(st, &l, e)) != AM_OK)
		goto fail;
	p->mail_due = env->mail != NULL && !mailer_queued(env->mail);
	if (env->mail != NULL && mailer_queued(env->mail)) {
		/* The mail is a queue row of this transaction: it exists exactly
		 * when the attempt does. */
		if ((rc = render_mail(env, p, &message, e)) != AM_OK)
			goto fail;
		rc = store_mail_enqueue(st, l.id, l.email, message, now, l.expires_at, e);
		OPENSSL_cleanse(message, strlen(message));
		free(message);
		if (rc != AM_OK)
			goto fail;
	}
	if ((rc = store_commit(st, e)) != AM_OK)
		goto fail;
	OPENSSL_cleanse(&l, sizeof(l));
	return AM_OK;
fail:
	store_rollback(st);
	OPENSSL_cleanse(&l, sizeof(l));
	return rc;
}

/* ---- verify ---- */

/* The user of a proven address: the existing one, or a new one. */
static enum am_err
user_for(const struct flow_env *env, struct store *st, const char *email, char *user_id,
	 bool *created, struct am_error *e)
{
	struct store_user u = {0};
	enum am_err rc = store_user_by_email(st, email, &u, e);

	*created = false;
	if (rc == AM_OK) {
		am_copy(user_id, STORE_ID_LEN, u.id);
		return AM_OK;
	}
	if (rc != AM_E_NOT_FOUND)
		return rc;
	memset(&u, 0, sizeof(u));
	if ((rc = flow_ordered_id("usr_", u.id, sizeof(u.id), e)) != AM_OK)
		return rc;
	am_copy(u.email, sizeof(u.email), email);
	u.created_at = flow_now(env);
	if ((rc = store_user_insert(st, &u, e)) != AM_OK)
		return rc;
	am_copy(user_id, STORE_ID_LEN, u.id);
	*created = true;
	return AM_OK;
}

static enum am_err
attempt_gone(struct am_error *e)
{
	return am_fail(e, AM_E_OTP_EXPIRED,
		       "this code or link no longer works; ask for a new one on the sign-in page");
}

/* An attempt that can still sign in (read again inside the transaction). */
static enum am_err
live_login(const struct flow_env *env, struct store *st, const struct flow_pending_login *p,
	   struct store_login *l, struct am_error *e)
{
	enum am_err rc = store_login_by_id(st, p->attempt_id, l, e);

	if (rc == AM_E_NOT_FOUND)
		return attempt_gone(e);
	if (rc != AM_OK)
		return rc;
	if (l->status != LOGIN_OPEN || flow_now(env) >= l->expires_at)
		return attempt_gone(e);
	return AM_OK;
}

/* Whether what was presented matches the attempt, in constant time. */
static bool
presented_matches(const struct flow_pending_login *p, const struct store_login *l)
{
	uint8_t h[AM_HASH_LEN];
	bool ok;

	if (p->by_link) {
		am_sha256_str(p->link, h);
		ok = am_ct_equal(h, l->link_hash, AM_HASH_LEN);
	} else {
		flow_code_hash(l->id, p->code, h);
		ok = am_ct_equal(h, l->code_hash, AM_HASH_LEN);
	}
	OPENSSL_cleanse(h, sizeof(h));
	return ok;
}

/* A wrong code, counted and committed before its refusal. */
static enum am_err
count_failure(const struct flow_env *env, struct store *st, const struct store_login *l,
	      struct am_error *e)
{
	int64_t max = env->cfg->login_max_attempts;
	int64_t left = max - (l->failures + 1);
	enum am_err rc;

	if ((rc = store_login_fail(st, l->id, max, e)) != AM_OK ||
	    (rc = store_commit(st, e)) != AM_OK) {
		store_rollback(st);
		return rc == AM_E_NOT_FOUND ? attempt_gone(e) : rc;
	}
	log_info("login code mismatch attempt=%s failures=%lld", l->id,
		 (long long)(l->failures + 1));
	if (left <= 0)
		return am_fail(e, AM_E_OTP_EXPIRED,
			       "too many wrong codes: this sign-in no longer works; ask for a new "
			       "code");
	return am_fail(e, AM_E_OTP_INVALID, "the code does not match; %lld tries left",
		       (long long)left);
}

static enum am_err
verify_step(struct store *st, struct flow_pending_login *p, struct am_error *e)
{
	const struct flow_env *env = p->env;
	const struct am_config *cfg = env->cfg;
	struct store_session *w = &p->session;
	struct store_login l;
	int64_t now = flow_now(env);
	enum am_err rc;

	if ((rc = store_begin(st, e)) != AM_OK)
		return rc;
	if ((rc = live_login(env, st, p, &l, e)) != AM_OK)
		goto fail;
	if (!presented_matches(p, &l)) {
		rc = p->by_link ? attempt_gone(e) : count_failure(env, st, &l, e);
		OPENSSL_cleanse(&l, sizeof(l));
		return rc;
	}
	memset(w, 0, sizeof(*w));
	if ((rc = store_login_use(st, l.id, e)) != AM_OK) {
		rc = rc == AM_E_NOT_FOUND ? attempt_gone(e) : rc;
		goto fail;
	}
	if ((rc = user_for(env, st, l.email, w->user_id, &p->user_created, e)) != AM_OK ||
	    (rc = flow_ordered_id("ws_", w->id, sizeof(w->id), e)) != AM_OK ||
	    (rc = am_rand_token(FLOW_SESSION_PREFIX, p->cookie, sizeof(p->cookie), e)) != AM_OK)
		goto fail;
	am_sha256_str(p->cookie, w->hash);
	am_copy(w->email, sizeof(w->email), l.email);
	w->auth_time = now;
	w->created_at = now;
	w->last_seen = now;
	w->expires_at = am_time_add(now, cfg->login_session_ttl);
	am_copy(p->return_to, sizeof(p->return_to), l.return_to);
	am_copy(p->email, sizeof(p->email), l.email);
	if ((rc = store_session_insert(st, w, e)) != AM_OK ||
	    (rc = audit_add(st, &p->batch, cfg->tenant, now, "user.signed_in", NULL,
			    json_pack("{s:s, s:s, s:s, s:b, s:s?}", "user_id", w->user_id,
				      "session_id", w->id, "method", p->by_link ? "link" : "code",
				      "user_created", p->user_created, "ip",
				      p->ip[0] != '\0' ? p->ip : NULL),
			    e)) != AM_OK ||
	    (rc = store_commit(st, e)) != AM_OK)
		goto fail;
	OPENSSL_cleanse(&l, sizeof(l));
	return AM_OK;
fail:
	store_rollback(st);
	audit_discard(&p->batch);
	OPENSSL_cleanse(&l, sizeof(l));
	OPENSSL_cleanse(p->cookie, sizeof(p->cookie));
	return rc;
}

static enum am_err
logout_step(struct store *st, struct flow_pending_login *p, struct am_error *e)
{
	enum am_err rc;

	if ((rc = store_begin(st, e)) != AM_OK)
		return rc;
	if ((rc = store_session_delete(st, p->session_hash, e)) != AM_OK ||
	    (rc = store_commit(st, e)) != AM_OK)
		store_rollback(st);
	return rc;
}

/* ---- the group commit ---- */

static enum am_err
login_job(struct store *st, void *arg, struct am_error *e)
{
	struct flow_pending_login *p = arg;

	(void)e;
	audit_discard(&p->batch); /* a retried job starts clean */
	memset(&p->err, 0, sizeof(p->err));
	switch (p->kind) {
	case FLOW_LOGIN_START:
		p->rc = start_step(st, p, &p->err);
		break;
	case FLOW_LOGIN_VERIFY:
		p->rc = verify_step(st, p, &p->err);
		break;
	case FLOW_LOGOUT:
		p->rc = logout_step(st, p, &p->err);
		break;
	}
	return AM_OK; /* the step's refusal is its answer, not the batch's failure */
}

static void
login_done(struct store_job *job)
{
	struct flow_pending_login *p = job->arg;

	p->done(p->done_arg);
}

static enum am_err
submit(struct flow_pending_login *p, void (*done)(void *arg), void *done_arg, struct am_error *e)
{
	enum am_err rc;

	p->done = done;
	p->done_arg = done_arg;
	p->job = (struct store_job){.run = login_job, .done = login_done, .arg = p};
	if ((rc = store_writer_submit(p->env->writer, &p->job, e)) != AM_OK)
		flow_pending_login_wipe(p);
	return rc;
}

static void
prepare(const struct flow_env *env, enum flow_login_kind kind, const char *ip,
	struct flow_pending_login *p)
{
	memset(p, 0, sizeof(*p));
	p->env = env;
	p->kind = kind;
	am_copy(p->ip, sizeof(p->ip), ip != NULL ? ip : "");
}

enum am_err
flow_login_start_submit(const struct flow_env *env, const char *ip, const char *email,
			const char *return_to, const uint8_t browser_hash[AM_HASH_LEN],
			struct flow_pending_login *p, void (*done)(void *arg), void *done_arg,
			struct am_error *e)
{
	const struct am_config *cfg = env->cfg;
	enum am_err rc;

	prepare(env, FLOW_LOGIN_START, ip, p);
	if (email == NULL || !mail_address_normalize(email, p->email, sizeof(p->email)) ||
	    p->email[0] == '\0')
		rc = am_fail(e, AM_E_INVALID_REQUEST,
			     "enter a plain email address (like name@example.com)");
	else if (return_to != NULL && !flow_return_to_ok(return_to))
		rc = am_fail(e, AM_E_INVALID_REQUEST,
			     "return_to must be a path on this site (like /account)");
	else
		rc = spend(env, "ip", p->ip, cfg->login_per_ip, "from this address", e);
	if (rc == AM_OK &&
	    (rc = flow_ordered_id("lgn_", p->attempt_id, sizeof(p->attempt_id), e)) == AM_OK &&
	    (rc = am_rand_token(FLOW_LOGIN_LINK_PREFIX, p->link, sizeof(p->link), e)) == AM_OK)
		rc = am_rand_otp(p->code, e);
	if (rc != AM_OK) {
		flow_pending_login_wipe(p);
		return rc;
	}
	am_copy(p->return_to, sizeof(p->return_to), return_to != NULL ? return_to : "/login");
	memcpy(p->browser_hash, browser_hash, AM_HASH_LEN);
	p->expires_at = am_time_add(flow_now(env), cfg->login_code_ttl);
	return submit(p, done, done_arg, e);
}

static bool
code_well_formed(const char *code)
{
	if (code == NULL || strlen(code) != AM_OTP_DIGITS)
		return false;
	for (const char *c = code; *c != '\0'; c++) {
		if (*c < '0' || *c > '9')
			return false;
	}
	return true;
}

static bool
token_well_formed(const char *t, const char *prefix)
{
	size_t n = t != NULL ? strlen(t) : 0;

	if (n == 0 || n >= FLOW_SECRET_LEN || strncmp(t, prefix, strlen(prefix)) != 0)
		return false;
	for (const char *c = t; *c != '\0'; c++) {
		if (!((*c >= '0' && *c <= '9') || (*c >= 'a' && *c <= 'z') ||
		      (*c >= 'A' && *c <= 'Z') || *c == '_'))
			return false;
	}
	return true;
}

enum am_err
flow_login_peek_link(const struct flow_env *env, struct store *st, const char *link_token,
		     struct store_login *out, struct am_error *e)
{
	uint8_t h[AM_HASH_LEN];
	struct store_login l;
	enum am_err rc;

	if (!token_well_formed(link_token, FLOW_LOGIN_LINK_PREFIX))
		return attempt_gone(e);
	/* The lookup by hash is the comparison: the index never sees the
	 * token, and a timing difference reveals nothing of it. */
	am_sha256_str(link_token, h);
	rc = store_login_by_link(st, h, &l, e);
	OPENSSL_cleanse(h, sizeof(h));
	if (rc == AM_E_NOT_FOUND)
		return attempt_gone(e);
	if (rc != AM_OK)
		return rc;
	if (l.status != LOGIN_OPEN || flow_now(env) >= l.expires_at)
		return attempt_gone(e);
	*out = l;
	return AM_OK;
}

enum am_err
flow_login_verify_submit(const struct flow_env *env, struct store *st, const char *ip,
			 const char *attempt_id, const char *code, const char *link_token,
			 const uint8_t browser_hash[AM_HASH_LEN], struct flow_pending_login *p,
			 void (*done)(void *arg), void *done_arg, struct am_error *e)
{
	const struct am_config *cfg = env->cfg;
	struct store_login l = {0};
	enum am_err rc;

	prepare(env, FLOW_LOGIN_VERIFY, ip, p);
	p->by_link = link_token != NULL;
	if ((rc = spend(env, "ip", p->ip, cfg->login_per_ip, "from this address", e)) != AM_OK)
		goto fail;
	if (p->by_link) {
		if ((rc = flow_login_peek_link(env, st, link_token, &l, e)) != AM_OK)
			goto fail;
		am_copy(p->link, sizeof(p->link), link_token);
	} else {
		if (!code_well_formed(code)) {
			rc = am_fail(e, AM_E_INVALID_REQUEST,
				     "the code is the %d digits from the "
				     "email",
				     AM_OTP_DIGITS);
			goto fail;
		}
		rc = attempt_id != NULL && strlen(attempt_id) < STORE_ID_LEN
			     ? store_login_by_id(st, attempt_id, &l, e)
			     : AM_E_NOT_FOUND;
		if (rc == AM_E_NOT_FOUND)
			rc = attempt_gone(e);
		if (rc != AM_OK)
			goto fail;
		if (l.status != LOGIN_OPEN || flow_now(env) >= l.expires_at) {
			rc = attempt_gone(e);
			goto fail;
		}
		if (!am_ct_equal(l.browser_hash, browser_hash, AM_HASH_LEN)) {
			rc = am_fail(e, AM_E_OTP_INVALID,
				     "type the code in the browser where you asked for it, or "
				     "open the link in the email");
			goto fail;
		}
		am_copy(p->code, sizeof(p->code), code);
	}
	if ((rc = spend(env, "verify", l.email, cfg->login_verify_per_address, "for this address",
			e)) != AM_OK)
		goto fail;
	am_copy(p->attempt_id, sizeof(p->attempt_id), l.id);
	OPENSSL_cleanse(&l, sizeof(l));
	return submit(p, done, done_arg, e);
fail:
	OPENSSL_cleanse(&l, sizeof(l));
	flow_pending_login_wipe(p);
	return rc;
}

enum am_err
flow_logout_submit(const struct flow_env *env, const uint8_t session_hash[AM_HASH_LEN],
		   struct flow_pending_login *p, void (*done)(void *arg), void *done_arg,
		   struct am_error *e)
{
	prepare(env, FLOW_LOGOUT, NULL, p);
	memcpy(p->session_hash, session_hash, AM_HASH_LEN);
	return submit(p, done, done_arg, e);
}

enum am_err
flow_pending_login_result(struct flow_pending_login *p, struct am_error *e)
{
	const struct flow_env *env = p->env;
	char *message = NULL, why[160];
	enum am_err rc;

	if (p->job.rc != AM_OK) {
		*e = p->job.err;
		return p->job.rc;
	}
	if (p->rc != AM_OK) {
		*e = p->err;
		return p->rc;
	}
	audit_flush(env->audit, &p->batch);
	switch (p->kind) {
	case FLOW_LOGIN_START:
		log_info("login requested attempt=%s", p->attempt_id);
		if (env->mail != NULL && mailer_queued(env->mail))
			mailer_kick(env->mail); /* the row is committed: wake the worker */
		if (!p->mail_due)
			break;
		/* No mail worker (tools): sent now, after the commit. */
		if ((rc = render_mail(env, p, &message, e)) != AM_OK)
			return rc;
		rc = mailer_deliver(env->mail, p->email, message, why, sizeof(why)) == MAIL_SENT
			     ? AM_OK
			     : am_fail(e, AM_E_UNAVAILABLE, "the mail could not be sent; retry");
		OPENSSL_cleanse(message, strlen(message));
		free(message);
		return rc;
	case FLOW_LOGIN_VERIFY:
		log_info("user signed in user=%s session=%s method=%s created=%d",
			 p->session.user_id, p->session.id, p->by_link ? "link" : "code",
			 p->user_created ? 1 : 0);
		break;
	case FLOW_LOGOUT:
		log_info("user signed out");
		break;
	}
	return AM_OK;
}

void
flow_pending_login_wipe(struct flow_pending_login *p)
{
	audit_discard(&p->batch);
	OPENSSL_cleanse(p->code, sizeof(p->code));
	OPENSSL_cleanse(p->link, sizeof(p->link));
	OPENSSL_cleanse(p->cookie, sizeof(p->cookie));
	OPENSSL_cleanse(p->browser_hash, sizeof(p->browser_hash));
	OPENSSL_cleanse(p->session_hash, sizeof(p->session_hash));
	OPENSSL_cleanse(p->session.hash, sizeof(p->session.hash));
}

/* ---- sessions ---- */

struct touch_job {
	struct store_job job;
	uint8_t hash[AM_HASH_LEN];
	int64_t now;
};

static enum am_err
touch_run(struct store *st, void *arg, struct am_error *e)
{
	struct touch_job *t = arg;
	enum am_err rc;

	if ((rc = store_begin(st, e)) != AM_OK)
		return rc;
	if ((rc = store_session_touch(st, t->hash, t->now, e)) != AM_OK ||
	    (rc = store_commit(st, e)) != AM_OK)
		store_rollback(st);
	return rc;
}

static void
touch_done(struct store_job *job)
{
	struct touch_job *t = job->arg;

	OPENSSL_cleanse(t->hash, sizeof(t->hash));
	free(t);
}

/* Nobody waits for it: a lost touch only makes the idle clock start a
 * minute earlier. */
static void
touch_later(const struct flow_env *env, const uint8_t hash[AM_HASH_LEN], int64_t now)
{
	struct touch_job *t;
	struct am_error ignored;

	if (env->writer == NULL || (t = calloc(1, sizeof(*t))) == NULL)
		return;
	memcpy(t->hash, hash, AM_HASH_LEN);
	t->now = now;
	t->job = (struct store_job){.run = touch_run, .done = touch_done, .arg = t};
	if (store_writer_submit(env->writer, &t->job, &ignored) != AM_OK)
		free(t);
}

enum am_err
flow_session_get(const struct flow_env *env, struct store *st, const char *cookie,
		 struct store_session *out, struct am_error *e)
{
	const struct am_config *cfg = env->cfg;
	struct store_session w;
	uint8_t h[AM_HASH_LEN];
	int64_t now = flow_now(env);
	enum am_err rc;

	if (!token_well_formed(cookie, FLOW_SESSION_PREFIX))
		return am_fail(e, AM_E_NOT_FOUND, "not signed in");
	am_sha256_str(cookie, h);
	rc = store_session_get(st, h, &w, e);
	OPENSSL_cleanse(h, sizeof(h));
	if (rc != AM_OK)
		return rc == AM_E_NOT_FOUND ? am_fail(e, AM_E_NOT_FOUND, "not signed in") : rc;
	if (now >= w.expires_at || now >= am_time_add(w.last_seen, cfg->login_session_idle))
		return am_fail(e, AM_E_NOT_FOUND, "the session has ended; sign in again");
	if (now - w.last_seen >= TOUCH_EVERY_S)
		touch_later(env, w.hash, now);
	*out = w;
	return AM_OK;
}

struct purge_job {
	int64_t now, idle_before;
	int logins, sessions;
};

static enum am_err
purge_run(struct store *st, void *arg, struct am_error *e)
{
	struct purge_job *j = arg;
	enum am_err rc;

	if ((rc = store_login_purge(st, j->now, &j->logins, e)) != AM_OK)
		return rc;
	return store_session_purge(st, j->now, j->idle_before, &j->sessions, e);
}

enum am_err
flow_login_sweep(const struct flow_env *env, struct store *st, struct am_error *e)
{
	int64_t now = flow_now(env);
	enum am_err rc;

	for (int round = 0; round < SWEEP_ROUNDS; round++) {
		struct purge_job j = {.now = now,
				      .idle_before = now - env->cfg->login_session_idle};
		struct store_job job = {.run = purge_run, .arg = &j};

		if (env->writer != NULL)
			rc = store_writer_run(env->writer, &job, e);
		else if ((rc = store_begin(st, e)) == AM_OK &&
			 ((rc = purge_run(st, &j, e)) != AM_OK ||
			  (rc = store_commit(st, e)) != AM_OK))
			store_rollback(st);
		if (rc != AM_OK)
			return rc;
		if (j.logins > 0 || j.sessions > 0)
			log_debug("login rows purged attempts=%d sessions=%d", j.logins,
				  j.sessions);
		if (j.logins < STORE_PURGE_MAX && j.sessions < STORE_PURGE_MAX)
			break;
	}
	return AM_OK;
}
