/* The protocol as plain functions: (environment, store, input) -> result.
 * No HTTP types here, so the same steps serve the HTTP service, the CLI and
 * the unit tests (which pass an in-memory store and a clock they control).
 *
 * Every function returns AM_OK or an error code with e->detail set for the
 * client; results are written only on AM_OK. Secrets in results (credential,
 * claim token, OTP) exist only in the result struct: the caller hands them
 * out once and the struct is wiped by flow_result_wipe. */
#ifndef AM_FLOWS_H
#define AM_FLOWS_H

#include <stdbool.h>
#include <stdint.h>

#include "core/clock.h"
#include "core/config.h"
#include "core/crypto.h"
#include "core/errors.h"
#include "flows/audit.h"
#include "mail/mail.h"
#include "store/store.h"

struct ratelimit;
struct trust;
struct cimd;
struct store_writer;

struct flow_env {
	/* Atomic: SIGHUP publishes a new generation (service/admin.c,
	 * app_reload); a reader gets an old or the new one, both alive. */
	const struct am_config *_Atomic cfg;
	struct mailer *mail;	     /* NULL: mail is not sent (unit tests) */
	struct audit_sink *audit;    /* NULL: store rows only */
	struct ratelimit *limits;    /* NULL: no rate limits */
	struct trust *trust;	     /* the trusted providers' keys */
	struct cimd *cimd;	     /* client metadata documents; NULL: none resolved */
	struct store_writer *writer; /* group commit; NULL: only the synchronous flows */
	struct am_clock clock;
};

#define FLOW_SECRET_LEN 96

/* What /agent/auth answers. Fields not relevant to the kind stay empty/0. */
struct reg_result {
	char registration_id[STORE_ID_LEN];
	enum reg_kind kind;
	bool has_credential;
	enum cred_type credential_type;
	char credential_id[STORE_ID_LEN]; /* public: for log lines */
	char credential[FLOW_SECRET_LEN];
	int64_t credential_expires; /* 0: never */
	char scopes[512];
	char claim_token[FLOW_SECRET_LEN];
	int64_t claim_token_expires;
	char post_claim_scopes[512];
	bool agent_verified; /* registration_type agent-provider */
};

/* Registers an anonymous agent: an API key at the pre-claim scopes and a
 * claim token, both returned once. requested_type may be NULL (api_key). */
enum am_err flow_register_anonymous(const struct flow_env *env, struct store *st, const char *ip,
				    const char *requested_type, struct reg_result *out,
				    struct am_error *e) AM_WUR;

/* An anonymous registration waiting for its commit (two-phase, for a
 * caller that must not block): the fields are the flow's. */
struct flow_pending_reg {
	struct store_job job;
	const struct flow_env *env;
	struct store_reg reg;
	struct store_cred cred;
	struct reg_result res;
	struct audit_batch batch;
	void (*done)(void *arg);
	void *done_arg;
};

/* The same as flow_register_anonymous, in two phases: the checks and the
 * secrets now (an error here is final and done is not called), the writes
 * as a job of env->writer's next group commit. done(done_arg) is called
 * once, on the writer's thread, when the outcome is known; it must only
 * hand over (wake the request), and then flow_pending_reg_result gives the
 * answer. p is the caller's until done has run, then until it is wiped
 * with flow_pending_reg_wipe (also after a failed submit: no need). */
enum am_err flow_register_anonymous_submit(const struct flow_env *env, const char *ip,
					   const char *requested_type, struct flow_pending_reg *p,
					   void (*done)(void *arg), void *done_arg,
					   struct am_error *e) AM_WUR;
/* After done: AM_OK with *out (the registration is durable), or the error
 * that undid it (AM_E_UNAVAILABLE with retry_after when the commit failed). */
enum am_err flow_pending_reg_result(struct flow_pending_reg *p, struct reg_result *out,
				    struct am_error *e) AM_WUR;
/* Zeroes the secrets of p and frees what it holds (not p itself). */
void flow_pending_reg_wipe(struct flow_pending_reg *p);

/* Registers with a user's email (verified_email): no credential; the claim
 * attempt is created and its email sent at once. */
enum am_err flow_register_email(const struct flow_env *env, struct store *st, const char *ip,
				const char *email, const char *requested_type,
				struct reg_result *out, struct am_error *e) AM_WUR;

struct claim_start_result {
	char registration_id[STORE_ID_LEN];
	char attempt_id[STORE_ID_LEN];
	int64_t expires_at;
};

/* POST /agent/auth/claim: starts (or, for the same address while one is
 * open, returns) a claim attempt and emails its link. */
enum am_err flow_claim_start(const struct flow_env *env, struct store *st, const char *ip,
			     const char *claim_token, const char *email,
			     struct claim_start_result *out, struct am_error *e) AM_WUR;

struct challenge_result {
	char otp[AM_OTP_DIGITS + 1];
	int64_t expires_at;
	char registration_id[STORE_ID_LEN];
};

/* Mints the OTP for an attempt (the claim page's button). A new code
 * replaces the previous one. */
enum am_err flow_claim_challenge(const struct flow_env *env, struct store *st,
				 const char *attempt_token, struct challenge_result *out,
				 struct am_error *e) AM_WUR;

/* Looks up an attempt for the claim page without changing anything. */
enum am_err flow_claim_peek(const struct flow_env *env, struct store *st, const char *attempt_token,
			    struct store_attempt *out, struct am_error *e) AM_WUR;

/* What the registration's client metadata document said (its name and
 * logo, for the claim pages); AM_E_NOT_FOUND when its client_id was not a
 * resolved document. Reads only. */
enum am_err flow_claim_client(const struct flow_env *env, struct store *st,
			      const char *registration_id, struct store_reg_client *out,
			      struct am_error *e) AM_WUR;

/* POST /agent/auth/claim/complete. For anonymous registrations the existing
 * key is upgraded in place (out->has_credential false); for email ones a
 * fresh credential of the requested type is issued. */
enum am_err flow_claim_complete(const struct flow_env *env, struct store *st, const char *ip,
				const char *claim_token, const char *otp, struct reg_result *out,
				char claimed_by[STORE_ID_LEN], struct am_error *e) AM_WUR;

/* A claim completion waiting for its commit (two-phase): the whole
 * completion (its checks, the counted wrong guess, the claim) runs as one
 * job of env->writer's next group commit; nothing in it waits on anything
 * but the store. The fields are the flow's. */
struct flow_pending_claim {
	struct store_job job;
	const struct flow_env *env;
	char ip[64];
	char claim_token[AM_MAX_TOKEN_BYTES + 1];
	char otp[33];
	char attempt_id[STORE_ID_LEN]; /* a wrong code: the attempt to count it on */
	int64_t failures;	       /* its failures before this one */
	enum am_err rc;		       /* the completion's own outcome */
	struct am_error err;
	struct reg_result res;
	char claimed_by[STORE_ID_LEN];
	struct audit_batch batch; /* its events, flushed once durable */
	void (*done)(void *arg);
	void *done_arg;
};

/* flow_claim_complete in two phases, with the contract of
 * flow_register_anonymous_submit: the checks are read first on st (the
 * caller's connection; an error now is final, done is not called, nothing
 * is written); a wrong code becomes a job that only counts it, a matching
 * one the whole completion (checked again inside the transaction). Then
 * done(done_arg) runs once on the writer's thread and
 * flow_pending_claim_result gives the answer (AM_OK only once committed;
 * a wrong code's counted failure is committed before its 401). */
enum am_err flow_claim_complete_submit(const struct flow_env *env, struct store *st, const char *ip,
				       const char *claim_token, const char *otp,
				       struct flow_pending_claim *p, void (*done)(void *arg),
				       void *done_arg, struct am_error *e) AM_WUR;
enum am_err flow_pending_claim_result(struct flow_pending_claim *p, struct reg_result *out,
				      char claimed_by[STORE_ID_LEN], struct am_error *e) AM_WUR;
/* Zeroes the secrets of p (not p itself). */
void flow_pending_claim_wipe(struct flow_pending_claim *p);

/* The resource gate: the live credential for a bearer value. Unknown,
 * revoked, expired, and credentials of expired registrations are all
 * AM_E_INVALID_TOKEN. Found rows are cached in-process (by hash) for at
 * most AM_AUTH_CACHE_TTL_MS: a change made by another process is seen
 * within that time, one made through this process's store at once, and
 * expiries are checked against env's clock on every call. Thread-safe. */
enum am_err flow_authenticate(const struct flow_env *env, struct store *st, const char *bearer,
			      struct store_auth *out, struct am_error *e) AM_WUR;

/* Expires every unclaimed or pending registration whose window has closed:
 * status expired, credentials revoked, registration.expired recorded.
 * *count gets how many. */
enum am_err flow_sweep(const struct flow_env *env, struct store *st, int *count,
		       struct am_error *e) AM_WUR;

/* The two budgets of a registration kind. A flow spends the per-IP one
 * first, before any work the request makes us do, and the global one only
 * once the request has passed its own checks (an ID-JAG's signature), so
 * garbage from many sources cannot exhaust the budget of real agents. */
enum flow_rate_scope { FLOW_RATE_PER_IP, FLOW_RATE_GLOBAL };

/* Spends one hit of the per-IP or the global limit of a registration kind
 * ("anonymous", "identity"); AM_E_RATE_LIMITED with *retry_after when
 * refused. The per-IP check is skipped when ip is NULL or empty. */
enum am_err flow_rate_check(const struct flow_env *env, const char *kind,
			    enum flow_rate_scope scope, const char *ip, int64_t *retry_after,
			    struct am_error *e) AM_WUR;

/* Registers with an ID-JAG from a trusted provider (agent verified): the
 * token is verified (typ, alg, issuer, signature, aud, exp, iat, jti, sub,
 * client_id, a verified email or phone), the user matched or provisioned,
 * the delegation recorded per (iss, sub, aud), and a credential issued at
 * once. requested_type may be NULL (access_token). */
enum am_err flow_register_idjag(const struct flow_env *env, struct store *st, const char *ip,
				const char *assertion, const char *requested_type,
				struct reg_result *out, struct am_error *e) AM_WUR;

/* An ID-JAG registration waiting for its commit (two-phase). The token is
 * verified and every check that needs no store made on the caller's thread
 * (a key fetch included); the transaction (replay record, user,
 * registration, credential) is a job of env->writer's group commit. The
 * contract is flow_register_anonymous_submit's; a first link's claim mail
 * is sent by flow_pending_idjag_result, after the commit. */
struct idjag_state;
struct flow_pending_idjag {
	struct store_job job;
	struct idjag_state *s; /* the flow's */
	int64_t max_auth_age;  /* v0.6: the auth_time window checked (a 401's max_age) */
	void (*done)(void *arg);
	void *done_arg;
};
enum am_err flow_register_idjag_submit(const struct flow_env *env, const char *ip,
				       const char *assertion, const char *requested_type,
				       struct flow_pending_idjag *p, void (*done)(void *arg),
				       void *done_arg, struct am_error *e) AM_WUR;
enum am_err flow_pending_idjag_result(struct flow_pending_idjag *p, struct reg_result *out,
				      struct am_error *e) AM_WUR;
/* Frees what p holds and zeroes its secrets (not p itself). */
void flow_pending_idjag_wipe(struct flow_pending_idjag *p);

/* Processes a provider's logout token: verified like an ID-JAG but with typ
 * logout+jwt, the revocation event, no nonce and its own replay check;
 * then every live credential of its (iss, sub, aud) is revoked. *count
 * gets how many. */
enum am_err flow_revoke_logout(const struct flow_env *env, struct store *st, const char *token,
			       int *count, struct am_error *e) AM_WUR;

/* Operator revocation: every live credential matching f (all fields NULL:
 * the whole tenant) is revoked, each with a credential.revoked event, and
 * their registrations marked revoked. *count gets how many. */
enum am_err flow_revoke_bulk(const struct flow_env *env, struct store *st,
			     const struct store_cred_filter *f, const char *reason, int *count,
			     struct am_error *e) AM_WUR;

/* Operator revocation that sticks: records a durable block on value (an
 * issuer, a user id or a registration id; for BLOCK_SUBJECT the issuer
 * with sub, else sub NULL), with a block.created event, then revokes every
 * live credential it covers as flow_revoke_bulk does. Until flow_unblock,
 * every ID-JAG the block covers (its issuer, subject, matched user or
 * registration) is refused with AM_E_INVALID_GRANT, so no fresh token
 * revives the registration. *created is false when the block existed
 * already (the revocation still runs); *count gets how many credentials.
 * actor names the operator in the event ("actor"; NULL: "operator"). */
enum am_err flow_revoke_block(const struct flow_env *env, struct store *st, enum block_kind kind,
			      const char *value, const char *sub, const char *actor, int *count,
			      bool *created, struct am_error *e) AM_WUR;

/* Lifts an operator block, with a block.lifted event; AM_E_NOT_FOUND when
 * there was none. Nothing is un-revoked: the next ID-JAG of the subject
 * registers again. */
enum am_err flow_unblock(const struct flow_env *env, struct store *st, enum block_kind kind,
			 const char *value, const char *sub, const char *actor,
			 struct am_error *e) AM_WUR;
/* ---- the gate (access.c; docs/gate.md) ---- */

/* Turns a request target (path and maybe a query) into the canonical path
 * the route policy is matched against: query and fragment cut, %XX of
 * unreserved characters decoded (other escapes kept, upper-cased), doubled
 * slashes merged, "." and ".." resolved. Refused (AM_E_INVALID_REQUEST):
 * no leading "/", control characters, backslash, ";", %2F, %5C, %00, bad
 * escapes, ".." above the root, or more than cap-1 bytes. */
enum am_err flow_gate_path(const char *target, char *out, size_t cap, struct am_error *e) AM_WUR;

/* The route for (method, canonical path): the longest path prefix (matched
 * segment-wise) wins; among routes of that path, one naming the method,
 * else one with every method. NULL when no route covers the path
 * (*method_refused false: [gate] default applies) or when routes cover the
 * path but none allows the method (*method_refused true: refuse). */
const struct am_route *flow_route_find(const struct am_config *cfg, const char *method,
				       const char *path, bool *method_refused);

struct gate_result {
	const struct am_route *route; /* NULL: [gate] default = authenticated */
	struct store_auth auth;	      /* the caller's credential, on AM_OK */
};

/* The forward-auth decision for a request: method (upper-case token),
 * target (as the proxy saw it) and bearer (the credential, NULL when none
 * was sent). AM_OK fills out. Refusals: AM_E_INVALID_REQUEST (a bad method
 * or target), AM_E_ACCESS_DENIED (no route allows it, whatever the
 * credential), AM_E_INVALID_TOKEN (missing or not live),
 * AM_E_INSUFFICIENT_SCOPE (live, but short of the route's scopes). On the
 * last two out->route is set (so the challenge can name the scopes);
 * out->auth is never filled on a refusal. */
enum am_err flow_gate_check(const struct flow_env *env, struct store *st, const char *method,
			    const char *target, const char *bearer, struct gate_result *out,
			    struct am_error *e) AM_WUR;

/* The introspection client named name whose secret has this SHA-256
 * (compared in constant time; an unknown name costs the same compare), or
 * NULL. */
const struct am_introspection_client *
flow_introspection_client(const struct am_config *cfg, const char *name, const char *secret);

/* RFC 7662: *active tells whether token is a live credential; when it is,
 * auth is filled. Unknown, revoked, expired and malformed tokens are all
 * inactive (AM_OK); only store failures are errors. */
enum am_err flow_introspect(const struct flow_env *env, struct store *st, const char *token,
			    bool *active, struct store_auth *auth, struct am_error *e) AM_WUR;

/* RFC 7009: when token is live (reason "agent", audited): an access token
 * minted at /oauth2/token (one with an RFC 8707 resource) is revoked alone,
 * its registration and identity assertion untouched (RFC 7009 2.1, the v0.6
 * guide); any other credential (v0.1, from /agent/auth) revokes its
 * registration and all its credentials. A token that is not live is no
 * error, so the answer reveals nothing. *count gets how many went. */
enum am_err flow_revoke_token(const struct flow_env *env, struct store *st, const char *token,
			      int *count, struct am_error *e) AM_WUR;

/* ---- the other durable steps through the group commit (two-phase) ----
 *
 * Email registration, claim start, the OTP challenge and the revocations
 * (logout token, RFC 7009) with the contract of
 * flow_register_anonymous_submit: what needs no store (and, for a logout
 * token, the signature check and a key fetch) is done at submit, on the
 * caller's thread: an error then is final and done is not called. The
 * step itself (its reads, its checks again, its writes, in a savepoint of
 * the batch) is one job of env->writer's next group commit; done(done_arg)
 * runs once on the writer's thread and must only hand over; then
 * flow_pending_op_result gives the step's answer: AM_OK only once the batch
 * is durable, the step's own refusal, or AM_E_UNAVAILABLE (retry_after)
 * when the batch failed and nothing of it exists. The audit lines go to the
 * sink, and the claim mail is handed to the mail worker, only after the
 * commit. The fields are the flow's; the caller reads the outcome member of
 * its kind after AM_OK and wipes p with flow_pending_op_wipe. */
/* A user_code ceremony attempt as the agent is told it (v0.4-v0.6): the
 * plaintext code and attempt token exist only here, wiped with the result. */
struct ceremony_block {
	char registration_id[STORE_ID_LEN];
	char attempt_id[STORE_ID_LEN];
	char user_code[AM_USER_CODE_CHARS + 2]; /* shown as XXXX-XXXX */
	char attempt_token[FLOW_SECRET_LEN];	/* goes into the verification URL only */
	int64_t expires_at;			/* the code's window */
	int64_t interval;			/* seconds between polls */
};
enum flow_op_kind {
	FLOW_OP_REGISTER_EMAIL,
	FLOW_OP_CLAIM_START,
	FLOW_OP_CHALLENGE,
	FLOW_OP_REVOKE,
	FLOW_OP_CLAIM_REJECT, /* the user's "this wasn't me" on the claim page (issue 14) */
	FLOW_OP_CEREMONY_START,
	FLOW_OP_CEREMONY_COMPLETE,
	FLOW_OP_CEREMONY_DENY,
	FLOW_OP_READBACK_CONFIRM, /* the read-back ceremony (issue 14, proposal (b)) */
	FLOW_OP_READBACK_COMPLETE
};
struct flow_pending_op {
	struct store_job job;
	const struct flow_env *env;
	enum flow_op_kind kind;
	enum am_err (*step)(struct store *st, struct flow_pending_op *p, struct am_error *e);
	/* inputs, copied at submit */
	char ip[64];
	char token[AM_MAX_TOKEN_BYTES + 1]; /* the claim or attempt token */
	char email[AM_MAX_EMAIL_BYTES + 1]; /* normalized; "" : none given */
	struct store_reg reg;		    /* FLOW_OP_REGISTER_EMAIL: the new row */
	char iss[STORE_TEXT_LEN], sub[STORE_TEXT_LEN], aud[STORE_TEXT_LEN];
	char jti_key[STORE_TEXT_LEN + 16]; /* a logout token's replay key; "" : none */
	int64_t jti_until;
	char registration_id[STORE_ID_LEN]; /* FLOW_OP_REVOKE by registration */
	char credential_id[STORE_ID_LEN];   /* FLOW_OP_REVOKE of one token; "" : none */
	char family_id[STORE_ID_LEN];	    /* FLOW_OP_REVOKE of a refresh token's family */
	const char *reason;		    /* static */
	const char *provider;		    /* config-owned name, for the log */
	bool set_event;			    /* FLOW_OP_REVOKE of an RFC 8417 SET */
	bool set_handled;		    /* it names the revocation event */
	size_t set_events;		    /* how many events it names, for the log */
	/* the step's outcome */
	enum am_err rc;
	struct am_error err;
	struct audit_batch batch;
	struct reg_result reg_res;	   /* FLOW_OP_REGISTER_EMAIL */
	struct claim_start_result start;   /* FLOW_OP_CLAIM_START */
	struct challenge_result challenge; /* FLOW_OP_CHALLENGE */
	struct ceremony_block ceremony;	   /* FLOW_OP_CEREMONY_START */
	char user_id[STORE_ID_LEN];	   /* FLOW_OP_CEREMONY_COMPLETE/DENY: the session's */
	char user_code[32];		   /* FLOW_OP_CEREMONY_COMPLETE: as typed */
	enum ceremony_mode ceremony_mode;  /* FLOW_OP_CEREMONY_START: which ceremony */
	int64_t code_serial;		   /* FLOW_OP_READBACK_CONFIRM: the page's */
	int64_t reg_gen; /* FLOW_OP_READBACK_COMPLETE: the claimed registration's generation */
	/* FLOW_OP_READBACK_COMPLETE: the new refresh-token family's first token */
	char refresh_token[FLOW_SECRET_LEN];
	int64_t refresh_expires;
	int count;			      /* FLOW_OP_REVOKE: credentials revoked */
	bool mail_due;			      /* an attempt was made: its mail */
	char mail_to[AM_MAX_EMAIL_BYTES + 1]; /* goes out after the commit */
	char mail_token[FLOW_SECRET_LEN];
	int64_t mail_expires;
	char attempt_id[STORE_ID_LEN]; /* the attempt made or given a code */
	void (*done)(void *arg);
	void *done_arg;
};

/* flow_register_email through the group commit: the answer in p->reg_res. */
enum am_err flow_register_email_submit(const struct flow_env *env, const char *ip,
				       const char *email, const char *requested_type,
				       struct flow_pending_op *p, void (*done)(void *arg),
				       void *done_arg, struct am_error *e) AM_WUR;
/* flow_claim_start through the group commit: the answer in p->start. */
enum am_err flow_claim_start_submit(const struct flow_env *env, const char *ip,
				    const char *claim_token, const char *email,
				    struct flow_pending_op *p, void (*done)(void *arg),
				    void *done_arg, struct am_error *e) AM_WUR;
/* flow_claim_challenge through the group commit: the code in p->challenge. */
enum am_err flow_claim_challenge_submit(const struct flow_env *env, const char *attempt_token,
					struct flow_pending_op *p, void (*done)(void *arg),
					void *done_arg, struct am_error *e) AM_WUR;
/* flow_revoke_logout through the group commit: the token is verified at
 * submit; the jti record and the revocation are the job; p->count. */
enum am_err flow_revoke_logout_submit(const struct flow_env *env, const char *token,
				      struct flow_pending_op *p, void (*done)(void *arg),
				      void *done_arg, struct am_error *e) AM_WUR;
/* flow_revoke_token through the group commit: the token is looked up on st
 * (the caller's connection, reading only) at submit; a token that is not
 * live is answered at once (AM_OK, *queued false, p->count 0, done is not
 * called); a live one is revoked by the job (*queued true), alone or with
 * its registration as flow_revoke_token says. */
enum am_err flow_revoke_token_submit(const struct flow_env *env, struct store *st,
				     const char *token, struct flow_pending_op *p, bool *queued,
				     void (*done)(void *arg), void *done_arg,
				     struct am_error *e) AM_WUR;
/* The claim page's "this wasn't me" (flows/claim_reject.c): every open
 * attempt of the attempt token's registration is closed (its link and code
 * stop working), with a claim.rejected event; p->start.registration_id
 * and p->attempt_id name them. The registration itself is left as it was
 * (an anonymous key keeps its pre-claim scopes; the agent may start again,
 * within the claim-mail limits). Refusals are flow_claim_peek's. */
enum am_err flow_claim_reject_submit(const struct flow_env *env, const char *attempt_token,
				     struct flow_pending_op *p, void (*done)(void *arg),
				     void *done_arg, struct am_error *e) AM_WUR;
/* After done: see above. */
enum am_err flow_pending_op_result(struct flow_pending_op *p, struct am_error *e) AM_WUR;
/* Zeroes the secrets of p and frees what it holds (not p itself). */
void flow_pending_op_wipe(struct flow_pending_op *p);

/* Zeroes the secrets of a result once they have been sent. */
void flow_result_wipe(void *result, size_t size);

/* ---- protocol v0.6 (issue 13; flows/identity.c, agent.c) ---- */

struct skey;

#define FLOW_ASSERTION_TYP "oauth-id-jag+jwt" /* v0.6 guide: the service's own assertion */

/* flow_register_idjag_submit without a credential: the registration (and
 * its delegation and user) of a v0.6 ID-JAG. All the checks of
 * flow_register_idjag hold (trust list, signature, CIMD, jti replay,
 * operator blocks) and v0.5's auth_time (AM_E_LOGIN_REQUIRED); the result's
 * has_credential is false, its scopes the provider's; a first link leaves
 * its claim_token set. then (may be NULL) runs in the same group-commit job
 * once the registration is written (never for a first link), on the
 * writer's store, with the result so far: store work of the caller's that
 * must commit with the registration; it records its own outcome in arg. */
enum am_err flow_register_idjag_identity_submit(
	const struct flow_env *env, const char *ip, const char *assertion,
	void (*then)(struct store *st, const struct reg_result *res, void *arg), void *then_arg,
	struct flow_pending_idjag *p, void (*done)(void *arg), void *done_arg,
	struct am_error *e) AM_WUR;

/* An RFC 8935 push of an RFC 8417 SET (typ secevent+jwt) through the group
 * commit: verified at submit like a logout token (trust list, signature,
 * aud, iat), its events a non-empty object; the job records its jti (a
 * replay is AM_E_REPLAY_DETECTED) and, when it names the revocation event
 * (p->set_handled; unknown events are ignored), revokes the registration
 * of (iss, sub, aud) and every live credential of the subject (p->count);
 * a fresh ID-JAG revives the registration unless an operator block covers
 * it. The contract of the other flow_pending_op submits. */
enum am_err flow_revoke_set_submit(const struct flow_env *env, const char *token,
				   struct flow_pending_op *p, void (*done)(void *arg),
				   void *done_arg, struct am_error *e) AM_WUR;

/* What /agent/identity answers: the registration (reg), and for a live one
 * the service-signed identity assertion (assertion, owned: free with
 * flow_v06_reg_wipe) expiring at assertion_expires. */
struct v06_reg_result {
	struct reg_result reg;
	char *assertion; /* NULL for a first link (interaction_required) */
	int64_t assertion_expires;
	struct ceremony_block claim; /* a first link: its user_code attempt */
	/* the assertion's refresh token (proposal (b)); "" with no assertion */
	char refresh_token[FLOW_SECRET_LEN];
	int64_t refresh_expires;
};

void flow_v06_reg_wipe(struct v06_reg_result *r);

/* An access token from /oauth2/token. */
struct v06_token_result {
	char access_token[FLOW_SECRET_LEN];
	int64_t expires_in;
	char scopes[512];
	char registration_id[STORE_ID_LEN];
};

/* A v0.6 request waiting for its commit (two-phase, with the contract of
 * flow_register_anonymous_submit: the checks, the signatures and a key or
 * document fetch at submit, where an error is final and done is not
 * called; the writes as one job of env->writer's group commit; done runs
 * once on the writer's thread and must only hand over; then
 * flow_pending_v06_result gives the answer, AM_OK only once durable, in
 * reg (the /agent/identity kinds) or token (FLOW_V06_TOKEN)). The fields
 * are the flow's; wipe p with flow_pending_v06_wipe. */
enum flow_v06_kind { FLOW_V06_ANONYMOUS, FLOW_V06_IDJAG, FLOW_V06_TOKEN, FLOW_V06_REFRESH };
struct flow_pending_v06 {
	struct store_job job;
	const struct flow_env *env;
	struct skey *keys;
	enum flow_v06_kind kind;
	bool via_idjag; /* a provider's ID-JAG: idjag holds its registration */
	struct flow_pending_idjag idjag;
	struct store_reg reg;	   /* FLOW_V06_ANONYMOUS: the new row */
	char reg_id[STORE_ID_LEN]; /* FLOW_V06_TOKEN of our own assertion: its registration */
	int64_t gen;		   /* and generation */
	char jkt[48];		   /* FLOW_V06_TOKEN: the DPoP key to bind; "" : Bearer */
	int64_t assertion_gen;	   /* FLOW_V06_IDJAG, _REFRESH: the registration's generation */
	uint8_t refresh_hash[AM_HASH_LEN];  /* FLOW_V06_REFRESH: of the presented token */
	char email[AM_MAX_EMAIL_BYTES + 1]; /* FLOW_V06_REFRESH: the assertion's (claimed) */
	bool keep_events; /* a refusal whose writes stand (a reuse revoked its family) */
	enum am_err rc;	  /* the step's own outcome */
	struct am_error err;
	struct audit_batch batch;
	struct v06_reg_result res;
	struct v06_token_result token;
	void (*done)(void *arg);
	void *done_arg;
};

/* POST /agent/identity {type: anonymous}: an unclaimed anonymous
 * registration with a claim token, no credential, and its assertion (signed
 * at submit). */
enum am_err flow_v06_register_anonymous_submit(const struct flow_env *env, struct skey *keys,
					       const char *ip, struct flow_pending_v06 *p,
					       void (*done)(void *arg), void *done_arg,
					       struct am_error *e) AM_WUR;

/* POST /agent/identity {type: identity_assertion}: the ID-JAG registration
 * (flow_register_idjag_identity_submit) and its assertion, minted by
 * flow_pending_v06_result once the registration is durable. */
enum am_err flow_v06_register_idjag_submit(const struct flow_env *env, struct skey *keys,
					   const char *ip, const char *idjag,
					   struct flow_pending_v06 *p, void (*done)(void *arg),
					   void *done_arg, struct am_error *e) AM_WUR;

/* RFC 7523 jwt-bearer at /oauth2/token. assertion is either this service's
 * identity assertion (iss = our issuer) or a provider's ID-JAG presented
 * directly (ID-JAG draft -04: registered as at /agent/identity, then
 * exchanged in the same job). resource (NULL: none) must be this service's
 * resource (AM_E_INVALID_TARGET otherwise). jkt (NULL or "": none) is the
 * DPoP key the token is bound to, in the same transaction that issues it.
 * The registration must be live: an agent one claimed, an anonymous one
 * unclaimed (pre-claim scopes) or claimed (post-claim scopes); expired,
 * revoked, blocked, of another generation (revoked and revived since the
 * assertion) are AM_E_INVALID_GRANT, as is every verification failure of
 * the assertion (the ID-JAG's own code leads the detail). The token
 * endpoint's jwt-bearer answer carries no refresh token (refresh tokens
 * come with assertions: flow_v06_refresh_submit). */
enum am_err flow_v06_token_submit(const struct flow_env *env, struct skey *keys, const char *ip,
				  const char *assertion, const char *resource, const char *jkt,
				  struct flow_pending_v06 *p, void (*done)(void *arg),
				  void *done_arg, struct am_error *e) AM_WUR;

/* POST /agent/identity {type: refresh, refresh_token} (proposal (b)): one
 * writer job spends the presented token (a compare-and-set: of two
 * concurrent refreshes one wins, the other is a reuse), adds the next one
 * to its family and records the new assertion's generation; the assertion
 * is signed once that is durable. p->res then holds the registration, the
 * assertion and the new refresh token. Refusals, all AM_E_INVALID_GRANT:
 * unknown, expired, of a revoked family, of an older generation of the
 * registration (revived since), a registration no longer live (revoked,
 * expired, a pending first link) or under an operator block; and a reuse
 * of a spent token, which revokes the whole family first (durably, with a
 * refresh.reused event) so its newest token stops working too. st is
 * the caller's connection, for one read at submit: an unknown token is
 * refused there and never reaches the writer. */
enum am_err flow_v06_refresh_submit(const struct flow_env *env, struct store *st, struct skey *keys,
				    const char *refresh_token, struct flow_pending_v06 *p,
				    void (*done)(void *arg), void *done_arg,
				    struct am_error *e) AM_WUR;

/* The registration_type of a registration of kind at the v0.6 endpoints:
 * anonymous, service_auth (email) or identity_assertion (agent). */
const char *flow_v06_type_name(enum reg_kind kind);

/* Starts a refresh-token family for registration_id at its current
 * generation, inside the caller's transaction (a writer job's savepoint or
 * a store_begin'd one), for any answer that hands out a new identity
 * assertion (the read-back ceremony's claim/complete among them): the
 * family row and its first token, which is written (FLOW_SECRET_LEN,
 * "rt_" prefixed, CSPRNG) into token and expires at *expires ([v06]
 * refresh_ttl from now). Only its SHA-256 is stored. The caller hands the
 * token out once its transaction is durable and wipes it afterwards. */
enum am_err flow_refresh_family_start_in_tx(const struct flow_env *env, struct store *st,
					    const char *registration_id,
					    char token[FLOW_SECRET_LEN], int64_t *expires,
					    struct am_error *e) AM_WUR;

/* After done: see struct flow_pending_v06. */
enum am_err flow_pending_v06_result(struct flow_pending_v06 *p, struct am_error *e) AM_WUR;
/* Zeroes the secrets of p and frees what it holds (not p itself). */
void flow_pending_v06_wipe(struct flow_pending_v06 *p);

/* ---- the v0.4-v0.6 user_code ceremony (issue 14; flows/ceremony.c) ----
 *
 * The agent starts an attempt (POST /agent/identity/claim, or a
 * service_auth registration) and gets a user_code and the token of the
 * verification URL; the user signs in at the service, opens the URL and
 * types the code (or rejects); the agent polls the claim grant at
 * /oauth2/token. */

/* POST /agent/identity/claim through the group commit (the contract of
 * flow_claim_start_submit): the claim token's registration (anonymous,
 * with email; or an email/service_auth one, email NULL or its own) gets a
 * new attempt, the open one expiring; the answer in p->ceremony.
 * Refusals: AM_E_INVALID_CLAIM_TOKEN, AM_E_CLAIMED_OR_IN_FLIGHT (claimed,
 * or a first link), AM_E_CLAIM_EXPIRED, AM_E_INVALID_REQUEST (no or a bad
 * email, or another address than an email registration's). */
enum am_err flow_ceremony_start_submit(const struct flow_env *env, const char *ip,
				       const char *claim_token, const char *email,
				       struct flow_pending_op *p, void (*done)(void *arg),
				       void *done_arg, struct am_error *e) AM_WUR;

/* The same for either ceremony (mode): a read-back attempt gets no code
 * (p->ceremony.user_code is ""), and its email may be NULL for an anonymous
 * registration (the attempt is then bound to whoever signs in and
 * confirms); a bad address is AM_E_INVALID_LOGIN_HINT. On AM_OK p->reg is
 * the registration as it was read (its kind and claim window). */
enum am_err flow_ceremony_start_mode_submit(const struct flow_env *env, const char *ip,
					    const char *claim_token, const char *email,
					    enum ceremony_mode mode, struct flow_pending_op *p,
					    void (*done)(void *arg), void *done_arg,
					    struct am_error *e) AM_WUR;

/* POST /agent/identity {type: service_auth, login_hint}: a pending
 * registration bound to the address (claim token in out->reg) and its
 * first attempt (out->claim); no assertion until the claim completes.
 * Refusals: AM_E_SERVICE_AUTH_NOT_ENABLED, AM_E_INVALID_LOGIN_HINT,
 * AM_E_RATE_LIMITED. */
struct service_auth_result {
	struct reg_result reg;
	struct ceremony_block claim;
};
enum am_err flow_service_auth_register(const struct flow_env *env, struct store *st, const char *ip,
				       const char *login_hint, struct service_auth_result *out,
				       struct am_error *e) AM_WUR;

/* The claim grant's answer on completion: the token response and the new
 * assertion (owned: free with flow_ceremony_token_wipe). */
struct ceremony_token_result {
	struct v06_token_result token;
	char *assertion;
	int64_t assertion_expires;
	char refresh_token[FLOW_SECRET_LEN]; /* the assertion's (proposal (b)) */
	int64_t refresh_expires;
};
void flow_ceremony_token_wipe(struct ceremony_token_result *r);

/* The claim grant (urn:workos:agent-auth:grant-type:claim): one poll.
 * AM_OK once, after the user completed: a post-claim access token and an
 * assertion naming the user's email. Otherwise AM_E_AUTHORIZATION_PENDING,
 * AM_E_SLOW_DOWN (polled within the interval, which grows by 5 s),
 * AM_E_EXPIRED_TOKEN (the attempt or the registration's window closed),
 * AM_E_ACCESS_DENIED (the user rejected), AM_E_INVALID_GRANT (unknown
 * claim token, no attempt started, already redeemed). Each poll is
 * recorded (its time and the interval). */
enum am_err flow_ceremony_poll(const struct flow_env *env, struct store *st, struct skey *keys,
			       const char *claim_token, struct ceremony_token_result *out,
			       struct am_error *e) AM_WUR;

/* What the /claim page shows: the attempt of attempt_token and its
 * registration, when it can still be completed. Reads only. Refusals:
 * AM_E_NOT_FOUND (unknown link), AM_E_CLAIM_COMPLETED, AM_E_ACCESS_DENIED
 * (rejected), AM_E_EXPIRED_TOKEN (attempt over, or replaced),
 * AM_E_CLAIMED_OR_IN_FLIGHT, AM_E_CLAIM_EXPIRED. */
enum am_err flow_ceremony_peek(const struct flow_env *env, struct store *st,
			       const char *attempt_token, struct store_ceremony *att,
			       struct store_reg *reg, struct am_error *e) AM_WUR;

/* The signed-in user (user_id, email) completes the attempt with the typed
 * user_code (case, dashes and spaces ignored; compared by hash in constant
 * time): the registration is claimed by the user, an anonymous one's
 * pre-claim access tokens revoked (its API keys, v0.1, get the post-claim
 * scopes). Refusals: those of flow_ceremony_peek, AM_E_WRONG_ACCOUNT (email
 * is not the bound one), AM_E_INVALID_USER_CODE (counted; the last allowed
 * wrong entry ends the attempt: AM_E_EXPIRED_TOKEN). */
enum am_err flow_ceremony_complete(const struct flow_env *env, struct store *st, const char *ip,
				   const char *attempt_token, const char *user_code,
				   const char *user_id, const char *email,
				   struct am_error *e) AM_WUR;

/* The signed-in user rejects the attempt ("this wasn't me"): the agent's
 * poll gets AM_E_ACCESS_DENIED. Refusals as flow_ceremony_complete's but
 * the code. */
enum am_err flow_ceremony_deny(const struct flow_env *env, struct store *st, const char *ip,
			       const char *attempt_token, const char *user_id, const char *email,
			       struct am_error *e) AM_WUR;

/* The two above through the group commit, for the page POSTs (the
 * contract of flow_claim_start_submit; the outcome is
 * flow_pending_op_result's, a wrong code included: it is counted durably
 * before it is answered). */
enum am_err flow_ceremony_complete_submit(const struct flow_env *env, const char *ip,
					  const char *attempt_token, const char *user_code,
					  const char *user_id, const char *email,
					  struct flow_pending_op *p, void (*done)(void *arg),
					  void *done_arg, struct am_error *e) AM_WUR;
enum am_err flow_ceremony_deny_submit(const struct flow_env *env, const char *ip,
				      const char *attempt_token, const char *user_id,
				      const char *email, struct flow_pending_op *p,
				      void (*done)(void *arg), void *done_arg,
				      struct am_error *e) AM_WUR;

/* ---- v0.7 (unmerged; issue 14 item 3): the ID-JAG claim of an anonymous
 * registration (flows/agent.c) ---- */

/* POST /agent/identity/claim {type: identity_assertion, claim_token,
 * assertion} waiting for its commit (the contract of struct
 * flow_pending_v06). The fields are the flow's; after done,
 * flow_pending_idclaim_result gives the outcome in step_up and the rest. */
struct flow_pending_idclaim {
	struct flow_pending_idjag idjag; /* the ID-JAG's checks and its job */
	const struct flow_env *env;
	struct skey *keys;
	char claim_token[AM_MAX_TOKEN_BYTES + 1];
	/* the outcome */
	bool step_up;			/* a first link: ceremony is its attempt */
	struct ceremony_block ceremony; /* step_up */
	char registration_id[STORE_ID_LEN];
	char user_id[STORE_ID_LEN];	    /* claimed: by whom */
	char email[AM_MAX_EMAIL_BYTES + 1]; /* claimed: the user's verified address, or "" */
	int64_t gen;			    /* claimed: the registration's generation */
	char *assertion;		    /* claimed: the new identity assertion (owned) */
	int64_t assertion_expires;
	char refresh_token[FLOW_SECRET_LEN]; /* claimed: a new refresh-token family's first */
	int64_t refresh_expires;
};

/* The claim with an ID-JAG: the assertion gets every check of an ID-JAG
 * registration at /agent/identity (trust list, signature, typ, aud, times,
 * client_id, a verified email or phone, the provider's auth_time window:
 * AM_E_LOGIN_REQUIRED with p->idjag.max_auth_age; the jti replay and
 * operator blocks in the job), then, in one transaction: the claim token's
 * registration must be anonymous and not claimed (else
 * AM_E_CLAIMED_OR_IN_FLIGHT; unknown AM_E_INVALID_CLAIM_TOKEN, expired
 * AM_E_CLAIM_EXPIRED); the subject's user is matched as at registration.
 * A clean match (a delegation, or a user made by JIT) claims the
 * registration for that user at once: the delegation created when new,
 * pre-claim access tokens revoked, an open user_code attempt ended, and
 * (in the result) a new assertion naming the user and a new refresh-token
 * family's first token. A match to an existing
 * account without a delegation (the first-link gate) starts a user_code
 * attempt bound to that account's address instead (step_up). */
enum am_err flow_identity_claim_submit(const struct flow_env *env, struct skey *keys,
				       const char *ip, const char *claim_token,
				       const char *assertion, struct flow_pending_idclaim *p,
				       void (*done)(void *arg), void *done_arg,
				       struct am_error *e) AM_WUR;
/* After done: AM_OK once durable (claimed: with the assertion minted). */
enum am_err flow_pending_idclaim_result(struct flow_pending_idclaim *p, struct am_error *e) AM_WUR;
/* Zeroes the secrets of p and frees what it holds (not p itself). */
void flow_pending_idclaim_wipe(struct flow_pending_idclaim *p);

/* ---- the read-back ceremony (issue 14, proposal (b); flows/readback.c) ----
 *
 * The agent starts a read-back attempt (flow_ceremony_start_mode_submit);
 * the user signs in, opens the verification URL and confirms (or rejects:
 * flow_ceremony_deny_submit); only then does the page show a 6-digit code,
 * which the user reads back to the agent, and the agent completes with it. */

/* POST /claim/confirm of a read-back attempt through the group commit: the
 * signed-in user (user_id, email: the bound address, or any for an unbound
 * attempt) confirms; a fresh 6-digit code (CSPRNG; only its hash stored,
 * with the attempt id) is minted, valid [ceremony] readback_code_ttl (never
 * past the registration's window), and handed back once in
 * p->ceremony.user_code ("123 456"), p->ceremony.expires_at. serial is the
 * code_serial the page showed: when the attempt has moved on (a re-sent
 * form, another tab) nothing is minted and the answer is
 * AM_E_CLAIM_SUPERSEDED. Refusals: those of flow_ceremony_peek,
 * AM_E_WRONG_ACCOUNT, AM_E_INVALID_REQUEST (not a read-back attempt). */
enum am_err flow_readback_confirm_submit(const struct flow_env *env, const char *ip,
					 const char *attempt_token, int64_t serial,
					 const char *user_id, const char *email,
					 struct flow_pending_op *p, void (*done)(void *arg),
					 void *done_arg, struct am_error *e) AM_WUR;

/* POST /agent/identity/claim/complete {claim_token, user_code} through the
 * group commit: the newest attempt of the claim token's registration must be
 * a confirmed read-back attempt with that code (compared by hash in
 * constant time; a wrong one is counted durably, the last allowed ends the
 * attempt). AM_OK: the registration is claimed by the user who confirmed,
 * an anonymous one's pre-claim access tokens revoked (its v0.1 API keys get
 * the post-claim scopes), p->reg the registration, p->email the user's
 * address, p->reg_gen its generation, p->ceremony.attempt_id, and a new
 * refresh-token family's first token in p->refresh_token (expiring at
 * p->refresh_expires). Refusals:
 * AM_E_INVALID_GRANT (unknown or revoked claim token, a first-link
 * registration, no read-back attempt, claimed already), AM_E_ACCESS_DENIED
 * (the user rejected), AM_E_USER_CODE_EXPIRED (the attempt's window or the
 * registration's closed, or its tries are used up), AM_E_CLAIM_NOT_CONFIRMED,
 * AM_E_INVALID_USER_CODE, AM_E_INVALID_REQUEST (no code). */
enum am_err flow_readback_complete_submit(const struct flow_env *env, const char *ip,
					  const char *claim_token, const char *user_code,
					  struct flow_pending_op *p, void (*done)(void *arg),
					  void *done_arg, struct am_error *e) AM_WUR;

/* After a completion's AM_OK: the identity assertion of the claimed
 * registration (its generation, the user's email), minted on the caller's
 * thread (CPU only). *out is the caller's to free. */
enum am_err flow_readback_assertion(const struct flow_env *env, struct skey *keys,
				    const struct flow_pending_op *p, char **out, int64_t *expires,
				    struct am_error *e) AM_WUR;

#endif
