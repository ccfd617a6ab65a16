/* The OTP claim ceremony shared by anonymous and verified_email
 * registrations: start (email the link), challenge (mint the code on the
 * page), complete (the agent presents the code). */
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/str.h"
#include "flows/internal.h"

bool
flow_reg_window_closed(const struct store_reg *reg, int64_t now)
{
	return reg->status == REG_EXPIRED ||
	       ((reg->status == REG_UNCLAIMED || reg->status == REG_PENDING_CLAIM) &&
		now >= reg->expires_at);
}

/* Finds the registration of a claim token; unknown and revoked ones are
 * invalid_claim_token. */
static enum am_err
reg_for_token(struct store *st, const char *claim_token, struct store_reg *reg, struct am_error *e)
{
	enum am_err rc;

	rc = flow_reg_by_claim_token(st, claim_token, reg, e);
	if (rc == AM_E_NOT_FOUND || (rc == AM_OK && reg->status == REG_REVOKED))
		return am_fail(e, AM_E_INVALID_CLAIM_TOKEN,
			       "the claim_token is unknown; register again to get a new one");
	return rc;
}

enum am_err
flow_claimable(struct store *st, const char *claim_token, int64_t now, enum am_err claimed,
	       struct store_reg *reg, struct am_error *e)
{
	enum am_err rc;

	if ((rc = reg_for_token(st, claim_token, reg, e)) != AM_OK)
		return rc;
	if (reg->status == REG_CLAIMED)
		return am_fail(e, claimed, "this registration is already claimed");
	if (flow_reg_window_closed(reg, now))
		return am_fail(e, AM_E_CLAIM_EXPIRED, "the registration expired; register again");
	return AM_OK;
}

static enum am_err
mail_refused(struct am_error *e, int64_t retry_after, const char *why)
{
	log_warn("claim mail refused limit=%s retry_after=%lld", why, (long long)retry_after);
	e->retry_after = (long)(retry_after > 0 ? retry_after : 1);
	return am_fail(e, AM_E_RATE_LIMITED, "too many claim emails %s; retry in %lld s", why,
		       (long long)e->retry_after);
}

/* The claim-mail flood limits, checked before an attempt (one attempt is one
 * mail) is created: per registration in all, per address and in all per
 * window. Counted from the attempts in the store, so a restart resets
 * nothing. */
static enum am_err
mail_allowed(const struct flow_env *env, struct store *st, const struct store_reg *reg,
	     const char *email, int64_t now, struct am_error *e)
{
	const struct am_config *cfg = env->cfg;
	int64_t since = now - cfg->claim_mail_window;
	int64_t n, oldest;
	enum am_err rc;

	if (cfg->claim_mails_per_registration > 0) {
		if ((rc = store_attempt_count(st, STORE_MAIL_REGISTRATION, reg->id, 0,
					      cfg->claim_mails_per_registration, &n, &oldest, e)) !=
		    AM_OK)
			return rc;
		/* Waiting does not reset this one: the registration ends first. */
		if (n >= cfg->claim_mails_per_registration)
			return mail_refused(e, reg->expires_at - now, "for this registration");
	}
	if (cfg->claim_mails_per_address > 0) {
		if ((rc = store_attempt_count(st, STORE_MAIL_ADDRESS, email, since,
					      cfg->claim_mails_per_address, &n, &oldest, e)) !=
		    AM_OK)
			return rc;
		if (n >= cfg->claim_mails_per_address)
			return mail_refused(e, oldest + cfg->claim_mail_window - now,
					    "to this address");
	}
	if (cfg->claim_mails_global > 0) {
		if ((rc = store_attempt_count(st, STORE_MAIL_ALL, NULL, since,
					      cfg->claim_mails_global, &n, &oldest, e)) != AM_OK)
			return rc;
		if (n >= cfg->claim_mails_global)
			return mail_refused(e, oldest + cfg->claim_mail_window - now,
					    "from this service");
	}
	return AM_OK;
}

static enum am_err enqueue_claim_mail(const struct flow_env *env, struct store *st,
				      const struct store_attempt *a, const char *token,
				      struct am_error *e);

enum am_err
flow_new_attempt(const struct flow_env *env, struct store *st, const struct store_reg *reg,
		 const char *email, const char *ip, struct store_attempt *out, char *token,
		 struct am_error *e)
{
	int64_t now = flow_now(env);
	struct store_attempt a = {0};
	enum am_err rc;

	if ((rc = mail_allowed(env, st, reg, email, now, e)) != AM_OK)
		return rc;
	if ((rc = flow_ordered_id("cla_", a.id, sizeof(a.id), e)) != AM_OK ||
	    (rc = am_rand_token(PREFIX_ATTEMPT_TOKEN, token, FLOW_SECRET_LEN, e)) != AM_OK)
		return rc;
	am_sha256_str(token, a.token_hash);
	am_copy(a.registration_id, sizeof(a.registration_id), reg->id);
	am_copy(a.email, sizeof(a.email), email);
	am_copy(a.ip, sizeof(a.ip), ip != NULL ? ip : "");
	a.status = ATTEMPT_OPEN;
	a.created_at = now;
	a.expires_at = min64(am_time_add(now, env->cfg->ttl_claim_attempt), reg->expires_at);
	if ((rc = store_attempt_insert(st, &a, e)) != AM_OK)
		return rc;
	if (env->mail != NULL && mailer_queued(env->mail) &&
	    (rc = enqueue_claim_mail(env, st, &a, token, e)) != AM_OK)
		return rc;
	*out = a;
	return AM_OK;
}

/* Writes the attempt's mail to the durable queue, inside the caller's
 * transaction: it commits or rolls back with the attempt, and the mail
 * worker sends it after the commit. */
static enum am_err
enqueue_claim_mail(const struct flow_env *env, struct store *st, const struct store_attempt *a,
		   const char *token, struct am_error *e)
{
	char *message = NULL;
	enum am_err rc;

	if ((rc = flow_render_claim_mail(env, a->email, token, a->expires_at, &message, e)) !=
	    AM_OK)
		return rc;
	rc = store_mail_enqueue(st, a->id, a->email, message, a->created_at, a->expires_at, e);
	OPENSSL_cleanse(message, strlen(message));
	free(message);
	return rc;
}

/* Without a mail worker (mailer_queued false) the mail is sent after the
 * commit: this deletes the attempt whose mail could not be sent, so a retry
 * of the same request mints and mails a new one instead of finding it open,
 * and a mail that never left is not counted against the claim-mail limits.
 * With the worker, a send never fails here: see mail/queue.c. */
static void
drop_unsent_attempt(struct store *st, const char *attempt_id)
{
	struct am_error ignored;

	if (store_begin(st, &ignored) != AM_OK)
		return;
	if (store_attempt_delete(st, attempt_id, &ignored) != AM_OK ||
	    store_commit(st, &ignored) != AM_OK)
		store_rollback(st);
}

/* The inputs of a claim start, checked before any store work. */
static enum am_err
claim_start_prepare(const struct flow_env *env, const char *ip, const char *claim_token,
		    const char *email, struct flow_pending_op *p, struct am_error *e)
{
	memset(p, 0, sizeof(*p));
	p->env = env;
	p->kind = FLOW_OP_CLAIM_START;
	if (email != NULL && !mail_address_normalize(email, p->email, sizeof(p->email)))
		return am_fail(e, AM_E_INVALID_REQUEST,
			       "email must be a plain email address (user@example.com)");
	if (email != NULL && p->email[0] == '\0')
		return am_fail(e, AM_E_INVALID_REQUEST,
			       "email must be a plain email address (user@example.com)");
	if (!am_copy(p->token, sizeof(p->token), claim_token) ||
	    !am_copy(p->ip, sizeof(p->ip), ip != NULL ? ip : ""))
		return am_fail(e, AM_E_INVALID_REQUEST, "claim_token is too long");
	return AM_OK;
}

/* The transaction of a claim start: the registration is checked, an open
 * attempt for the same address is returned as it is (no second mail), else
 * the others are superseded and a new one made with its mail queued. */
static enum am_err
claim_start_step(struct store *st, struct flow_pending_op *p, struct am_error *e)
{
	const struct flow_env *env = p->env;
	const char *ip = p->ip[0] != '\0' ? p->ip : NULL;
	struct claim_start_result *out = &p->start;
	struct store_reg reg;
	struct store_attempt att;
	char addr[AM_MAX_EMAIL_BYTES + 1];
	int64_t now = flow_now(env);
	enum am_err rc;

	am_copy(addr, sizeof(addr), p->email);
	if ((rc = store_begin(st, e)) != AM_OK)
		return rc;
	if ((rc = flow_claimable(st, p->token, now, AM_E_CLAIMED_OR_IN_FLIGHT, &reg, e)) != AM_OK)
		goto fail;
	if (reg.kind != REG_ANONYMOUS) {
		/* The address was fixed at registration (for a first link: the
		 * existing account's own): /claim only re-sends. */
		if (p->email[0] != '\0' && strcmp(addr, reg.email) != 0) {
			rc = am_fail(e, AM_E_INVALID_REQUEST,
				     "this registration's email was set at registration and "
				     "cannot change");
			goto fail;
		}
		am_copy(addr, sizeof(addr), reg.email);
	} else if (p->email[0] == '\0') {
		rc = am_fail(e, AM_E_INVALID_REQUEST, "the field \"email\" is required");
		goto fail;
	}
	rc = store_attempt_open_for(st, reg.id, &att, e);
	if (rc == AM_OK && strcmp(att.email, addr) == 0 && now < att.expires_at) {
		/* Idempotent: the same answer, and no second email, so a retrying
		 * agent cannot flood the user's inbox. */
		store_rollback(st);
		am_copy(out->registration_id, sizeof(out->registration_id), reg.id);
		am_copy(out->attempt_id, sizeof(out->attempt_id), att.id);
		out->expires_at = att.expires_at;
		return AM_OK;
	}
	if (rc != AM_OK && rc != AM_E_NOT_FOUND)
		goto fail;
	if ((rc = store_attempt_close_all(st, reg.id, ATTEMPT_SUPERSEDED, e)) != AM_OK ||
	    (rc = flow_new_attempt(env, st, &reg, addr, ip, &att, p->mail_token, e)) != AM_OK)
		goto fail;
	if (reg.status == REG_UNCLAIMED &&
	    (rc = store_reg_transition(st, reg.id, REG_UNCLAIMED, REG_PENDING_CLAIM, e)) != AM_OK)
		goto fail;
	if ((rc = audit_add(st, &p->batch, env->cfg->tenant, now, "claim.requested", reg.id,
			    json_pack("{s:s, s:s, s:s?}", "email", addr, "claim_attempt_id", att.id,
				      "ip", ip),
			    e)) != AM_OK ||
	    (rc = store_commit(st, e)) != AM_OK)
		goto fail;
	p->mail_due = true;
	am_copy(p->mail_to, sizeof(p->mail_to), addr);
	am_copy(p->attempt_id, sizeof(p->attempt_id), att.id);
	p->mail_expires = att.expires_at;
	am_copy(out->registration_id, sizeof(out->registration_id), reg.id);
	am_copy(out->attempt_id, sizeof(out->attempt_id), att.id);
	out->expires_at = att.expires_at;
	return AM_OK;
fail:
	store_rollback(st);
	audit_discard(&p->batch);
	OPENSSL_cleanse(p->mail_token, sizeof(p->mail_token));
	return rc;
}

enum am_err
flow_claim_start_submit(const struct flow_env *env, const char *ip, const char *claim_token,
			const char *email, struct flow_pending_op *p, void (*done)(void *arg),
			void *done_arg, struct am_error *e)
{
	enum am_err rc;

	if ((rc = claim_start_prepare(env, ip, claim_token, email, p, e)) != AM_OK) {
		flow_pending_op_wipe(p);
		return rc;
	}
	p->step = claim_start_step;
	return flow_op_submit(p, done, done_arg, e);
}

enum am_err
flow_claim_start(const struct flow_env *env, struct store *st, const char *ip,
		 const char *claim_token, const char *email, struct claim_start_result *out,
		 struct am_error *e)
{
	struct flow_pending_op p;
	enum am_err rc;

	if ((rc = claim_start_prepare(env, ip, claim_token, email, &p, e)) != AM_OK)
		goto out;
	p.step = claim_start_step;
	rc = flow_op_run_here(st, &p, e);
	if (rc != AM_OK && p.rc == AM_OK && p.attempt_id[0] != '\0')
		drop_unsent_attempt(st, p.attempt_id); /* committed, but its mail failed */
	if (rc == AM_OK)
		*out = p.start;
out:
	flow_pending_op_wipe(&p);
	return rc;
}

/* Loads an attempt by its token and checks it can still show a code. */
static enum am_err
live_attempt(const struct flow_env *env, struct store *st, const char *attempt_token,
	     struct store_attempt *att, struct store_reg *reg, struct am_error *e)
{
	uint8_t hash[AM_HASH_LEN];
	int64_t now = flow_now(env);
	enum am_err rc;

	am_sha256_str(attempt_token, hash);
	rc = store_attempt_by_token_hash(st, hash, att, e);
	if (rc == AM_E_NOT_FOUND)
		return am_fail(e, AM_E_CLAIM_SUPERSEDED,
			       "this link is not valid; ask your agent to start the claim again");
	if (rc != AM_OK)
		return rc;
	if ((rc = store_reg_by_id(st, att->registration_id, reg, e)) != AM_OK)
		return rc == AM_E_NOT_FOUND ? am_fail(e, AM_E_CLAIM_SUPERSEDED, "unknown claim")
					    : rc;
	if (reg->status == REG_CLAIMED || att->status == ATTEMPT_COMPLETED)
		return am_fail(e, AM_E_CLAIM_COMPLETED, "this registration is already claimed");
	if (reg->status == REG_REVOKED || att->status == ATTEMPT_SUPERSEDED)
		return am_fail(e, AM_E_CLAIM_SUPERSEDED,
			       "this link was replaced by a newer one; use the latest email");
	if (flow_reg_window_closed(reg, now) || now >= att->expires_at)
		return am_fail(e, AM_E_CLAIM_EXPIRED,
			       "this link has expired; ask your agent to start again");
	return AM_OK;
}

enum am_err
flow_claim_client(const struct flow_env *env, struct store *st, const char *registration_id,
		  struct store_reg_client *out, struct am_error *e)
{
	(void)env;
	return store_reg_client_get(st, registration_id, out, e);
}

enum am_err
flow_claim_peek(const struct flow_env *env, struct store *st, const char *attempt_token,
		struct store_attempt *out, struct am_error *e)
{
	struct store_reg reg;

	return live_attempt(env, st, attempt_token, out, &reg, e);
}

/* The transaction of a challenge: a new code for a live attempt, replacing
 * the previous one. */
static enum am_err
challenge_step(struct store *st, struct flow_pending_op *p, struct am_error *e)
{
	const struct flow_env *env = p->env;
	struct challenge_result *res = &p->challenge;
	struct store_attempt att;
	struct store_reg reg;
	uint8_t hash[AM_HASH_LEN];
	int64_t now = flow_now(env);
	enum am_err rc;

	memset(res, 0, sizeof(*res));
	if ((rc = store_begin(st, e)) != AM_OK)
		return rc;
	if ((rc = live_attempt(env, st, p->token, &att, &reg, e)) != AM_OK ||
	    (rc = am_rand_otp(res->otp, e)) != AM_OK)
		goto fail;
	flow_code_hash(att.id, res->otp, hash);
	res->expires_at = min64(am_time_add(now, env->cfg->ttl_otp), att.expires_at);
	am_copy(res->registration_id, sizeof(res->registration_id), reg.id);
	am_copy(p->attempt_id, sizeof(p->attempt_id), att.id);
	if ((rc = store_attempt_set_otp(st, att.id, true, hash, res->expires_at, e)) != AM_OK ||
	    (rc = audit_add(st, &p->batch, env->cfg->tenant, now, "otp.generated", reg.id,
			    json_pack("{s:s}", "claim_attempt_id", att.id), e)) != AM_OK ||
	    (rc = store_commit(st, e)) != AM_OK)
		goto fail;
	OPENSSL_cleanse(hash, sizeof(hash));
	return AM_OK;
fail:
	store_rollback(st);
	audit_discard(&p->batch);
	OPENSSL_cleanse(res, sizeof(*res));
	OPENSSL_cleanse(hash, sizeof(hash));
	return rc;
}

static enum am_err
challenge_prepare(const struct flow_env *env, const char *attempt_token, struct flow_pending_op *p,
		  struct am_error *e)
{
	memset(p, 0, sizeof(*p));
	p->env = env;
	p->kind = FLOW_OP_CHALLENGE;
	p->step = challenge_step;
	if (!am_copy(p->token, sizeof(p->token), attempt_token))
		return am_fail(e, AM_E_CLAIM_SUPERSEDED,
			       "this link is not valid; ask your agent to start the claim again");
	return AM_OK;
}

enum am_err
flow_claim_challenge_submit(const struct flow_env *env, const char *attempt_token,
			    struct flow_pending_op *p, void (*done)(void *arg), void *done_arg,
			    struct am_error *e)
{
	enum am_err rc;

	if ((rc = challenge_prepare(env, attempt_token, p, e)) != AM_OK) {
		flow_pending_op_wipe(p);
		return rc;
	}
	return flow_op_submit(p, done, done_arg, e);
}

enum am_err
flow_claim_challenge(const struct flow_env *env, struct store *st, const char *attempt_token,
		     struct challenge_result *out, struct am_error *e)
{
	struct flow_pending_op p;
	enum am_err rc;

	if ((rc = challenge_prepare(env, attempt_token, &p, e)) == AM_OK &&
	    (rc = flow_op_run_here(st, &p, e)) == AM_OK)
		*out = p.challenge;
	flow_pending_op_wipe(&p);
	return rc;
}

static bool
otp_well_formed(const char *otp)
{
	if (strlen(otp) != AM_OTP_DIGITS)
		return false;
	for (const char *p = otp; *p != '\0'; p++) {
		if (*p < '0' || *p > '9')
			return false;
	}
	return true;
}

/* The user the claim binds to: the one with this (now verified) email, or a
 * new one when JIT provisioning is on. */
static enum am_err
match_user(const struct flow_env *env, struct store *st, const char *email, char *user_id,
	   struct am_error *e)
{
	struct store_user u = {0};
	enum am_err rc = store_user_by_email(st, email, &u, e);

	if (rc == AM_OK) {
		am_copy(user_id, STORE_ID_LEN, u.id);
		return AM_OK;
	}
	if (rc != AM_E_NOT_FOUND)
		return rc;
	if (!env->cfg->flow_jit)
		return am_fail(e, AM_E_INVALID_REQUEST,
			       "no account exists for this email and this service does not "
			       "create accounts for agents");
	memset(&u, 0, sizeof(u));
	if ((rc = flow_ordered_id("usr_", u.id, sizeof(u.id), e)) != AM_OK)
		return rc;
	am_copy(u.email, sizeof(u.email), email);
	u.created_at = flow_now(env);
	u.created_by_agent = true;
	if ((rc = store_user_insert(st, &u, e)) != AM_OK)
		return rc;
	log_info("user provisioned id=%s via=claim", u.id);
	am_copy(user_id, STORE_ID_LEN, u.id);
	return AM_OK;
}

/* Records one wrong code and commits it, so that failures count even though
 * the request fails. */
static enum am_err
wrong_code(const struct flow_env *env, struct store *st, const struct store_attempt *att,
	   struct am_error *e)
{
	int64_t max = env->cfg->otp_attempts;
	int64_t left = max - (att->otp_failures + 1);
	enum am_err rc;

	if ((rc = flow_commit_miss(st, store_attempt_fail(st, att->id, max, e), e)) != AM_OK)
		return rc;
	log_info("otp mismatch attempt=%s failures=%lld", att->id,
		 (long long)(att->otp_failures + 1));
	if (left <= 0)
		return am_fail(e, AM_E_OTP_EXPIRED,
			       "too many wrong codes: this code no longer works; open the link in "
			       "the email again for a new one");
	return am_fail(e, AM_E_OTP_INVALID, "the code does not match; %lld tries left",
		       (long long)left);
}

/* The checks of a completion before its code is compared: the claim token's
 * registration can still be claimed and has an open attempt with a live
 * code. Reads only. */
static enum am_err
completion_due(const struct flow_env *env, struct store *st, const char *claim_token, int64_t now,
	       struct store_reg *reg, struct store_attempt *att, struct am_error *e)
{
	enum am_err rc;

	if ((rc = flow_claimable(st, claim_token, now, AM_E_PREVIOUSLY_CLAIMED, reg, e)) != AM_OK)
		return rc;
	rc = store_attempt_open_for(st, reg->id, att, e);
	if (rc == AM_E_NOT_FOUND)
		return am_fail(e, AM_E_INVALID_REQUEST,
			       "no claim is in progress; start one at /agent/auth/claim");
	if (rc != AM_OK)
		return rc;
	if (now >= att->expires_at)
		return am_fail(
			e, AM_E_OTP_EXPIRED,
			"the claim link expired; start the claim again at /agent/auth/claim");
	if (!att->has_otp) {
		if (att->otp_failures >= env->cfg->otp_attempts)
			return am_fail(e, AM_E_OTP_EXPIRED,
				       "too many wrong codes: this code no longer works; open the "
				       "link in the email again for a new one");
		return am_fail(e, AM_E_OTP_INVALID,
			       "no code has been shown yet; the user must open the link in "
			       "the email and press the button");
	}
	if (now >= att->otp_expires_at)
		return am_fail(e, AM_E_OTP_EXPIRED,
			       "the code expired; open the link in the email again for a new one");
	return AM_OK;
}

static bool
code_matches(const struct store_attempt *att, const char *otp)
{
	uint8_t hash[AM_HASH_LEN];
	bool ok;

	if (!otp_well_formed(otp))
		return false;
	flow_code_hash(att->id, otp, hash);
	ok = am_ct_equal(hash, att->otp_hash, AM_HASH_LEN);
	OPENSSL_cleanse(hash, sizeof(hash));
	return ok;
}

/* The completion's transaction; its events stay in batch for the caller to
 * flush after the commit (its own, or the group commit's). */
static enum am_err
complete_tx(const struct flow_env *env, struct store *st, const char *ip, const char *claim_token,
	    const char *otp, struct audit_batch *batch, struct reg_result *out,
	    char claimed_by[STORE_ID_LEN], struct am_error *e)
{
	struct store_reg reg;
	struct store_attempt att;
	struct reg_result res = {0};
	char user_id[STORE_ID_LEN] = "";
	int64_t now = flow_now(env);
	enum am_err rc;

	if ((rc = store_begin(st, e)) != AM_OK)
		return rc;
	if ((rc = completion_due(env, st, claim_token, now, &reg, &att, e)) != AM_OK)
		goto fail;
	if (!code_matches(&att, otp))
		return wrong_code(env, st, &att, e);

	if ((rc = match_user(env, st, att.email, user_id, e)) != AM_OK)
		goto fail;
	rc = store_reg_claim(st, reg.id, user_id, now, e);
	if (rc == AM_E_NOT_FOUND)
		rc = am_fail(e, AM_E_PREVIOUSLY_CLAIMED, "this registration was already claimed");
	if (rc != AM_OK ||
	    (rc = store_attempt_close_all(st, reg.id, ATTEMPT_COMPLETED, e)) != AM_OK)
		goto fail;
	am_copy(res.registration_id, sizeof(res.registration_id), reg.id);
	res.kind = reg.kind;
	if (reg.kind == REG_ANONYMOUS)
		rc = store_cred_upgrade(st, reg.id, user_id, env->cfg->scopes_post_claim, e);
	else if (reg.kind == REG_AGENT) /* first-link ceremony (flows/agent.c) */
		rc = flow_first_link_complete(env, st, &reg, user_id, batch, &res, e);
	else
		rc = flow_issue_credential(env, st, reg.id, reg.credential_type,
					   env->cfg->scopes_post_claim, user_id, "email", &res, e);
	if (rc != AM_OK ||
	    (rc = audit_add(st, batch, env->cfg->tenant, now, "claim.confirmed", reg.id,
			    json_pack("{s:s, s:s, s:s?}", "claimed_by_user_id", user_id,
				      "claim_attempt_id", att.id, "ip", ip),
			    e)) != AM_OK ||
	    (rc = store_commit(st, e)) != AM_OK)
		goto fail;
	log_info("claim confirmed registration=%s user=%s", reg.id, user_id);
	*out = res;
	am_copy(claimed_by, STORE_ID_LEN, user_id);
	OPENSSL_cleanse(&res, sizeof(res));
	return AM_OK;
fail:
	store_rollback(st);
	audit_discard(batch);
	OPENSSL_cleanse(&res, sizeof(res));
	return rc;
}

enum am_err
flow_claim_complete(const struct flow_env *env, struct store *st, const char *ip,
		    const char *claim_token, const char *otp, struct reg_result *out,
		    char claimed_by[STORE_ID_LEN], struct am_error *e)
{
	struct audit_batch batch = {0};
	enum am_err rc = complete_tx(env, st, ip, claim_token, otp, &batch, out, claimed_by, e);

	audit_flush(env->audit, &batch);
	return rc;
}

static enum am_err
complete_job(struct store *st, void *arg, struct am_error *e)
{
	struct flow_pending_claim *p = arg;

	(void)e;
	/* The completion opens and ends its own transaction (a savepoint of
	 * the batch): whatever it kept, a counted wrong code included, is the
	 * batch's to commit, so the job itself always succeeds. */
	memset(&p->err, 0, sizeof(p->err));
	audit_discard(&p->batch);
	/* Its events reach the sink only once the batch is durable
	 * (flow_pending_claim_result). */
	p->rc = complete_tx(p->env, st, p->ip, p->claim_token, p->otp, &p->batch, &p->res,
			    p->claimed_by, &p->err);
	return AM_OK;
}

/* A refused guess: only its count is written. */
static enum am_err
wrong_guess_job(struct store *st, void *arg, struct am_error *e)
{
	struct flow_pending_claim *p = arg;
	enum am_err rc;

	if ((rc = store_attempt_fail(st, p->attempt_id, p->env->cfg->otp_attempts, e)) != AM_OK)
		return rc; /* the job fails: 503, and an uncounted guess is never free */
	log_info("otp mismatch attempt=%s failures=%lld", p->attempt_id,
		 (long long)(p->failures + 1));
	p->rc = p->failures + 1 >= p->env->cfg->otp_attempts
			? am_fail(&p->err, AM_E_OTP_EXPIRED,
				  "too many wrong codes: this code no longer works; open the link "
				  "in the email again for a new one")
			: am_fail(&p->err, AM_E_OTP_INVALID,
				  "the code does not match; %lld tries left",
				  (long long)(p->env->cfg->otp_attempts - (p->failures + 1)));
	return AM_OK;
}

static void
complete_done(struct store_job *job)
{
	struct flow_pending_claim *p = job->arg;

	p->done(p->done_arg);
}

enum am_err
flow_claim_complete_submit(const struct flow_env *env, struct store *st, const char *ip,
			   const char *claim_token, const char *otp, struct flow_pending_claim *p,
			   void (*done)(void *arg), void *done_arg, struct am_error *e)
{
	struct store_reg reg;
	struct store_attempt att;
	enum am_err rc;
	bool matches;

	memset(p, 0, sizeof(*p));
	/* Checked first on the caller's own connection, reading only: a
	 * completion that fails a check writes nothing and is answered now, and
	 * a wrong code costs the writer one counter update. Only a matching
	 * code runs the whole completion in the group commit, where every check
	 * is made again inside the transaction. */
	if ((rc = completion_due(env, st, claim_token, flow_now(env), &reg, &att, e)) != AM_OK)
		return rc;
	matches = code_matches(&att, otp);
	am_copy(p->attempt_id, sizeof(p->attempt_id), att.id);
	p->failures = att.otp_failures;
	OPENSSL_cleanse(&att, sizeof(att));
	if (!am_copy(p->claim_token, sizeof(p->claim_token), claim_token) ||
	    !am_copy(p->otp, sizeof(p->otp), otp) ||
	    !am_copy(p->ip, sizeof(p->ip), ip != NULL ? ip : ""))
		return am_fail(e, AM_E_INVALID_REQUEST, "claim_token or otp is too long");
	p->env = env;
	p->done = done;
	p->done_arg = done_arg;
	p->job = (struct store_job){
		.run = matches ? complete_job : wrong_guess_job, .done = complete_done, .arg = p};
	return store_writer_submit(env->writer, &p->job, e);
}

enum am_err
flow_pending_claim_result(struct flow_pending_claim *p, struct reg_result *out,
			  char claimed_by[STORE_ID_LEN], struct am_error *e)
{
	if (p->job.rc != AM_OK) {
		*e = p->job.err;
		return p->job.rc;
	}
	if (p->rc != AM_OK) {
		*e = p->err;
		return p->rc;
	}
	audit_flush(p->env->audit, &p->batch);
	*out = p->res;
	am_copy(claimed_by, STORE_ID_LEN, p->claimed_by);
	return AM_OK;
}

void
flow_pending_claim_wipe(struct flow_pending_claim *p)
{
	audit_discard(&p->batch);
	OPENSSL_cleanse(p->claim_token, sizeof(p->claim_token));
	OPENSSL_cleanse(p->otp, sizeof(p->otp));
	flow_result_wipe(&p->res, sizeof(p->res));
}
