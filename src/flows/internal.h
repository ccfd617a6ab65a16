/* Helpers shared by the flow files; not part of the flows interface. */
#ifndef AM_FLOWS_INTERNAL_H
#define AM_FLOWS_INTERNAL_H

#include <stdlib.h>

#include "core/str.h"
#include "flows/flows.h"

/* Credential value prefixes: recognisable in a leak scan, never secret. */
#define PREFIX_API_KEY "sk_"
#define PREFIX_ACCESS_TOKEN "at_"
#define PREFIX_CLAIM_TOKEN "clm_"
#define PREFIX_ATTEMPT_TOKEN "cv_"
#define PREFIX_REFRESH_TOKEN "rt_"

static inline int64_t
flow_now(const struct flow_env *env)
{
	return am_clock_now(&env->clock);
}

static inline int64_t
min64(int64_t a, int64_t b)
{
	return a < b ? a : b;
}

/* Tokens that name their row (migration 0018): token_prefix, the row's
 * flow_ordered_id without its own prefix, '_', then AM_TOKEN_CHARS random
 * base62 characters: sk_0193a4c2e1fa0b1c...9e_Xq3... The id is no secret
 * (the answer carries it beside the token); it lets the store read the row
 * by primary key and compare the hash, where an index keyed by the hash
 * costs a random page write per registration. Tokens of the older form,
 * the prefix and 32 base62 characters, have no second '_'. */
enum am_err flow_mint_secret(const char *token_prefix, const char *row_id, char *out, size_t cap,
			     uint8_t hash[AM_HASH_LEN], struct am_error *e) AM_WUR;

/* What a presented token names: its hash, and the row id (with id_prefix,
 * "crd_" or "reg_") when it has the form above, else "". */
void flow_secret_key(const char *token, const char *id_prefix, struct store_secret *out);

/* The registration of a presented claim token (store_reg_by_claim). */
enum am_err flow_reg_by_claim_token(struct store *st, const char *token, struct store_reg *reg,
				    struct am_error *e) AM_WUR;

/* Mints reg's claim token (reg->id already made) into out, its hash on reg. */
enum am_err flow_mint_claim_token(struct store_reg *reg, char *out, size_t cap,
				  struct am_error *e) AM_WUR;

/* Mints a credential of type for a registration, stores its hash, and puts
 * the plaintext in out->credential (with type, scopes, expiry). */
enum am_err flow_issue_credential(const struct flow_env *env, struct store *st,
				  const char *registration_id, enum cred_type type,
				  const char *scopes, const char *user_id, const char *source,
				  struct reg_result *out, struct am_error *e) AM_WUR;

/* Mints a credential's id and secret (into out) and fills its row c, which
 * the caller inserts. */
enum am_err flow_new_credential(const struct flow_env *env, const char *registration_id,
				enum cred_type type, const char *scopes, const char *user_id,
				const char *source, const char *iss, const char *sub,
				struct store_cred *c, struct reg_result *out,
				struct am_error *e) AM_WUR;

/* The same for a provider-vouched subject: source id_jag, with iss and sub
 * and the canonical audience recorded on the credential. Without announce,
 * no "credential issued" line is logged: the caller names the credential
 * (out->credential_id) in its own line after the commit, off the writer. */
enum am_err flow_issue_credential_for(const struct flow_env *env, struct store *st,
				      const char *registration_id, enum cred_type type,
				      const char *scopes, const char *user_id, const char *iss,
				      const char *sub, bool announce, struct reg_result *out,
				      struct am_error *e) AM_WUR;

/* The end of the first-link ceremony, called by the claim completion for a
 * REG_AGENT registration once its code matched and it is claimed by
 * user_id (inside the caller's transaction): the (iss, sub, aud)
 * delegation is created and a credential of the requested type issued at
 * the provider's scopes (into out), with a delegation.created event in
 * batch. Refuses a provider no longer trusted (AM_E_INVALID_ISSUER), an
 * operator block (AM_E_INVALID_GRANT), and a subject linked meanwhile by
 * another ceremony (AM_E_PREVIOUSLY_CLAIMED). */
enum am_err flow_first_link_complete(const struct flow_env *env, struct store *st,
				     const struct store_reg *reg, const char *user_id,
				     struct audit_batch *batch, struct reg_result *out,
				     struct am_error *e) AM_WUR;

/* The delegation of a first link, once its ceremony matched and reg is
 * claimed by user_id (inside the caller's transaction): (iss, sub, aud) ->
 * user_id, with a delegation.created event (via first_link) in batch;
 * refusals as flow_first_link_complete's. No credential: the v0.6 claim
 * grant issues the access token. */
enum am_err flow_first_link_delegate(const struct flow_env *env, struct store *st,
				     const struct store_reg *reg, const char *user_id,
				     struct audit_batch *batch, struct am_error *e) AM_WUR;

/* A v0.6 ID-JAG registration's first link after its result: its user_code
 * attempt (for the interaction_required answer); NULL when it was none. */
const struct ceremony_block *flow_pending_idjag_claim(const struct flow_pending_idjag *p);

/* flow_pending_idclaim_result without the assertion (agent.c): the job's
 * outcome, its events flushed and logged. */
enum am_err flow_pending_idclaim_outcome(struct flow_pending_idclaim *p, struct am_error *e) AM_WUR;

/* Inserts a new initiated attempt of mode for reg bound to email ("": to
 * nobody yet, read-back only) inside the caller's transaction (the open one
 * expires), the token into out: a user_code attempt with its code in out and
 * its user_code.minted event in batch; a read-back attempt with no code yet
 * (random bytes stand for its hash until the user confirms). link_iss and
 * link_sub (NULL: none) name the provider subject its confirmation links to
 * the confirming user (v0.7's ID-JAG claim, migration 0016). */
enum am_err flow_ceremony_new_attempt(const struct flow_env *env, struct store *st,
				      const struct store_reg *reg, const char *email,
				      enum ceremony_mode mode, const char *link_iss,
				      const char *link_sub, struct audit_batch *batch,
				      struct ceremony_block *out, struct am_error *e) AM_WUR;

/* A public id for a new row: prefix, the current time in milliseconds (11
 * hex digits) and 96 random bits (24 hex digits), so ids sort by creation
 * and inserts stay at the right edge of their indexes. Fits STORE_ID_LEN
 * for prefixes of up to 4 characters. */
enum am_err flow_ordered_id(const char *prefix, char *out, size_t cap, struct am_error *e) AM_WUR;

/* Parses "api_key" / "access_token" (NULL gives dflt). */
enum am_err flow_cred_type(const char *name, enum cred_type dflt, enum cred_type *out,
			   struct am_error *e) AM_WUR;

/* Inserts a new open attempt for reg (inside the caller's transaction),
 * with its mail as a queue row when a mail worker runs, and
 * writes the plaintext attempt token into token (FLOW_SECRET_LEN). Refuses
 * with AM_E_RATE_LIMITED (e->retry_after set) when the mail it stands for
 * would pass a claim-mail limit of [limits]. */
enum am_err flow_new_attempt(const struct flow_env *env, struct store *st,
			     const struct store_reg *reg, const char *email, const char *ip,
			     struct store_attempt *out, char *token, struct am_error *e) AM_WUR;

/* Hands the claim mail of an attempt token off, after the commit: with a
 * mail worker (mailer_queued) the mail is already a queue row written by
 * flow_new_attempt and this only wakes the worker (never fails, never
 * waits); without one it renders and sends the mail at once. */
enum am_err flow_send_claim_mail(const struct flow_env *env, const char *email, const char *token,
				 int64_t expires_at, struct am_error *e) AM_WUR;
/* The claim mail of an attempt token to email, rendered (RFC 5322) into
 * *out: the caller wipes and frees it (it carries the link). */
enum am_err flow_render_claim_mail(const struct flow_env *env, const char *email, const char *token,
				   int64_t expires_at, char **out, struct am_error *e) AM_WUR;

/* A mail of the flows (the claim mail, the sign-in mail) from [mail] from
 * to `to`, with text and HTML parts (HTML already escaped), rendered
 * (RFC 5322) into *out: the caller wipes and frees it. */
enum am_err flow_render_mail(const struct flow_env *env, const char *to, const char *subject,
			     const struct am_buf *text, const struct am_buf *html, char **out,
			     struct am_error *e) AM_WUR;

/* Forgets the audit lines of b past its first n (their savepoint rolled
 * back while earlier ones of the same job were kept). */
static inline void
flow_audit_truncate(struct audit_batch *b, size_t n)
{
	while (b->n > n)
		free(b->lines[--b->n]);
}

/* The group-commit side of struct flow_pending_op (registration.c): submit
 * queues p (its env, kind, step and inputs set) on env->writer, wiping p when
 * refused; run_here runs the step on st as its own transaction and then
 * what follows a commit (events, log, mail), for the synchronous flows. */
enum am_err flow_op_submit(struct flow_pending_op *p, void (*done)(void *arg), void *done_arg,
			   struct am_error *e) AM_WUR;
enum am_err flow_op_run_here(struct store *st, struct flow_pending_op *p,
			     struct am_error *e) AM_WUR;

/* A one-time code is stored as SHA-256(attempt id ":" code): binding the
 * code to its attempt means equal codes of two attempts never share a hash.
 * For claim OTPs and user_codes (at most FLOW_CODE_MAX characters). */
#define FLOW_CODE_MAX 16
void flow_code_hash(const char *attempt_id, const char *code, uint8_t out[AM_HASH_LEN]);

/* Commits the count of a wrong code (counted: the result of the store's
 * count, run in st's open transaction), so the failure sticks though the
 * request fails. A failure to count or to commit rolls back and fails the
 * guess too (503 with the store's Retry-After): an uncounted wrong guess
 * must never be free. AM_OK: counted and durable. */
enum am_err flow_commit_miss(struct store *st, enum am_err counted, struct am_error *e) AM_WUR;

/* Whether reg's claim window is over: expired, or still unclaimed/pending
 * at or after its expires_at. */
bool flow_reg_window_closed(const struct store_reg *reg, int64_t now);

/* ---- the ceremonies' shared pieces (ceremony.c, readback.c) ---- */

/* The checks of a page POST inside its transaction: a live attempt of
 * attempt_token (flow_ceremony_peek's refusals) of *mode (NULL: either;
 * else AM_E_INVALID_REQUEST), and email (the signed-in address) the bound
 * one (AM_E_WRONG_ACCOUNT; an unbound read-back attempt takes any). */
enum am_err flow_ceremony_due(const struct flow_env *env, struct store *st,
			      const char *attempt_token, const char *email,
			      const enum ceremony_mode *mode, struct store_ceremony *att,
			      struct store_reg *reg, struct am_error *e) AM_WUR;

/* ---- v0.6 pieces shared by identity.c and ceremony.c ---- */

/* Mints the service's identity assertion for a registration: iss and aud
 * this service, sub the registration, typ oauth-id-jag+jwt (the v0.6
 * guide), its generation gen, and email with email_verified when email is
 * not NULL (v0.4: the assertion of a claimed registration). *out is the
 * caller's to free; *expires its exp. CPU work only. */
enum am_err flow_v06_mint(const struct flow_env *env, struct skey *keys,
			  const char *registration_id, const char *registration_type, int64_t gen,
			  const char *email, char **out, int64_t *expires,
			  struct am_error *e) AM_WUR;

/* Inside the caller's transaction: refuses an operator block covering reg
 * (AM_E_INVALID_GRANT), else issues an access token at scopes restricted to
 * this service's resource (and bound to the DPoP key thumbprint jkt when
 * not NULL or empty), with a token.issued event (grant named) in batch,
 * into out. */
enum am_err flow_v06_issue_in_tx(const struct flow_env *env, struct store *st,
				 const struct store_reg *reg, const char *scopes, const char *grant,
				 const char *jkt, struct audit_batch *batch,
				 struct v06_token_result *out, struct am_error *e) AM_WUR;

/* flows/liveness.c. Inside the caller's transaction: AM_E_INVALID_GRANT
 * when an operator block covers reg (its issuer, subject, user or
 * itself), else AM_OK. */
enum am_err flow_v06_unblocked(struct store *st, const struct store_reg *reg,
			       struct am_error *e) AM_WUR;

/* The scopes a live registration's access token gets (*scopes borrowed
 * from the config), or AM_E_INVALID_GRANT naming why it gets none: an
 * agent registration not claimed or of a provider no longer trusted, an
 * anonymous one past its window, any revoked or expired one. */
enum am_err flow_v06_scopes(const struct flow_env *env, const struct store_reg *reg,
			    const char **scopes, struct am_error *e) AM_WUR;

/* The registration of a claim token if it can still be claimed: unknown
 * and revoked give AM_E_INVALID_CLAIM_TOKEN, claimed ones `claimed` (the
 * endpoints name that case differently), closed windows AM_E_CLAIM_EXPIRED. */
enum am_err flow_claimable(struct store *st, const char *claim_token, int64_t now,
			   enum am_err claimed, struct store_reg *reg, struct am_error *e) AM_WUR;

#endif
