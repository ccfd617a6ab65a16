/* User sign-in at the service by email (issue 14; docs/protocol.md "User
 * sign-in"): a login attempt mails a one-time code and a link; either one,
 * presented back, makes a server-side session whose cookie value is handed
 * out once and stored only as its SHA-256. No HTTP types here: the pages
 * are service/login_page.c, the cookie and CSRF rules service/websession.c.
 *
 * The writes go through the group commit (env->writer) with the contract of
 * flow_register_anonymous_submit (flows.h): checks that need no write are
 * made at submit (an error then is final and done is not called); the step
 * is one job; done(done_arg) runs once on the writer's thread; then
 * flow_pending_login_result gives the answer, AM_OK only once durable. */
#ifndef AM_FLOWS_LOGIN_H
#define AM_FLOWS_LOGIN_H

#include "flows/flows.h"

#define FLOW_LOGIN_LINK_PREFIX "lnk_" /* a mailed sign-in link's token */
#define FLOW_SESSION_PREFIX "ses_"    /* a session cookie's value */
#define FLOW_PRESESSION_PREFIX "pre_" /* a pre-session (CSRF binding) cookie's value */

/* True when s is a same-origin relative path that may be redirected to
 * after sign-in: it starts with one "/", is at most AM_MAX_FIELD_BYTES,
 * and holds no "//" at its start, no backslash, no control character,
 * space or non-ASCII byte, and no scheme. NULL and "" are refused. */
bool flow_return_to_ok(const char *s);

enum flow_login_kind { FLOW_LOGIN_START, FLOW_LOGIN_VERIFY, FLOW_LOGOUT };

struct flow_pending_login {
	struct store_job job;
	const struct flow_env *env;
	enum flow_login_kind kind;
	/* inputs, copied at submit */
	char ip[64];
	char email[AM_MAX_EMAIL_BYTES + 1]; /* normalized */
	char return_to[AM_MAX_FIELD_BYTES + 1];
	uint8_t browser_hash[AM_HASH_LEN]; /* SHA-256 of the pre-session cookie */
	char attempt_id[STORE_ID_LEN];	   /* START: made; VERIFY: the attempt checked */
	bool by_link;			   /* VERIFY: the link, not the code */
	char code[AM_OTP_DIGITS + 1];	   /* VERIFY by code; START: the code mailed */
	char link[FLOW_SECRET_LEN];	   /* START: the link token mailed */
	uint8_t session_hash[AM_HASH_LEN]; /* LOGOUT */
	/* the step's outcome */
	enum am_err rc;
	struct am_error err;
	struct audit_batch batch;
	int64_t expires_at;	      /* START: the code's and link's end */
	struct store_session session; /* VERIFY: the new session */
	char cookie[FLOW_SECRET_LEN]; /* VERIFY: its cookie value (secret) */
	bool user_created;	      /* VERIFY: the address had no user before */
	bool mail_due;		      /* START without a mail worker: send it after commit */
	void (*done)(void *arg);
	void *done_arg;
};

/* Starts a sign-in for email from a browser whose pre-session cookie has
 * this hash: an attempt with a fresh code and link token (CSPRNG, hashed
 * at rest), its mail a row of the durable mail queue in the same
 * transaction. return_to must pass flow_return_to_ok (NULL: "/login").
 * Refused: a bad address (AM_E_INVALID_REQUEST), [login] per_ip from ip
 * or mails_per_address to the address (AM_E_RATE_LIMITED, retry_after).
 * The answer says nothing about whether the address has an account. */
enum am_err flow_login_start_submit(const struct flow_env *env, const char *ip, const char *email,
				    const char *return_to, const uint8_t browser_hash[AM_HASH_LEN],
				    struct flow_pending_login *p, void (*done)(void *arg),
				    void *done_arg, struct am_error *e) AM_WUR;

/* Checks a code typed into the browser that started attempt_id, or (link
 * token given, attempt_id NULL) a mailed link from any browser. The
 * attempt is read on st at submit; per_ip and verify_per_address are
 * spent. A wrong code is counted (committed before the refusal): 401
 * otp_invalid with the tries left, and after max_attempts the attempt is
 * burned (410 otp_expired). Unknown, used, burned or expired attempts and
 * links: 410 otp_expired. A code from another browser: 401 otp_invalid
 * (not counted: it can never match there). On a match the attempt is used
 * (once only), the user of the address found or created, and a session
 * made with auth_time now: p->session, p->cookie, p->return_to. */
enum am_err flow_login_verify_submit(const struct flow_env *env, struct store *st, const char *ip,
				     const char *attempt_id, const char *code,
				     const char *link_token,
				     const uint8_t browser_hash[AM_HASH_LEN],
				     struct flow_pending_login *p, void (*done)(void *arg),
				     void *done_arg, struct am_error *e) AM_WUR;

/* Ends the session whose cookie has this hash (none: no error). */
enum am_err flow_logout_submit(const struct flow_env *env, const uint8_t session_hash[AM_HASH_LEN],
			       struct flow_pending_login *p, void (*done)(void *arg),
			       void *done_arg, struct am_error *e) AM_WUR;

/* After done: AM_OK once durable, the step's refusal, or AM_E_UNAVAILABLE. */
enum am_err flow_pending_login_result(struct flow_pending_login *p, struct am_error *e) AM_WUR;
/* Zeroes the secrets of p and frees what it holds (not p itself). */
void flow_pending_login_wipe(struct flow_pending_login *p);

/* The open attempt a mailed link names, for the confirmation page (reads
 * only; a GET never signs in). AM_E_OTP_EXPIRED when unknown, used,
 * burned or expired. */
enum am_err flow_login_peek_link(const struct flow_env *env, struct store *st,
				 const char *link_token, struct store_login *out,
				 struct am_error *e) AM_WUR;

/* The live session of a cookie value: AM_OK with *out, AM_E_NOT_FOUND when
 * the value is malformed or unknown, past its fixed lifetime or idle
 * longer than session_idle. When last_seen is more than a minute old it is
 * moved to now by a writer job nobody waits for (the idle clock's
 * resolution is that minute). */
enum am_err flow_session_get(const struct flow_env *env, struct store *st, const char *cookie,
			     struct store_session *out, struct am_error *e) AM_WUR;

/* The sweeper's part: expired login attempts and sessions (past their
 * lifetime or idle limit) deleted in bounded steps through the writer. */
enum am_err flow_login_sweep(const struct flow_env *env, struct store *st,
			     struct am_error *e) AM_WUR;

#endif
