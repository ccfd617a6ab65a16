/* The read-back claim ceremony (issue 14, proposal (b), the shape WorkOS
 * runs): the agent starts a read-back attempt at /agent/identity/claim
 * (ceremony.c, mode CEREMONY_READBACK) and gets only a verification URL;
 * the user signs in at the service, confirms on the /claim page, and only
 * then is shown a 6-digit code, which the user reads back to the agent; the
 * agent completes with it at /agent/identity/claim/complete. No polling.
 * The attempts are rows of ceremony_attempts (migrations 0013 and 0015). */
#include <ctype.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <string.h>

#include "core/log.h"
#include "core/str.h"
#include "flows/internal.h"
#include "mail/mail.h"

/* What the user read out, as the code was minted: AM_OTP_DIGITS digits;
 * spaces and dashes (the page shows "123 456") are dropped. False when it
 * cannot be a code (then it is a wrong entry). */
static bool
normalize_digits(const char *typed, char out[AM_OTP_DIGITS + 1])
{
	size_t n = 0;

	for (const char *c = typed; *c != '\0'; c++) {
		if (*c == '-' || *c == ' ' || *c == '\t')
			continue;
		if (n == AM_OTP_DIGITS || !isdigit((unsigned char)*c))
			return false;
		out[n++] = *c;
	}
	out[n] = '\0';
	return n == AM_OTP_DIGITS;
}

static bool
digits_match(const struct store_ceremony *att, const char *typed)
{
	char code[AM_OTP_DIGITS + 1];
	uint8_t hash[AM_HASH_LEN];
	bool ok = normalize_digits(typed, code);

	/* hashed whatever was typed, so a malformed entry costs the same */
	flow_code_hash(att->id, ok ? code : "", hash);
	ok = am_ct_equal(hash, att->code_hash, AM_HASH_LEN) && ok;
	OPENSSL_cleanse(code, sizeof(code));
	OPENSSL_cleanse(hash, sizeof(hash));
	return ok;
}

/* ---- POST /claim/confirm (the signed-in user) ---- */

static enum am_err
confirm_step(struct store *st, struct flow_pending_op *p, struct am_error *e)
{
	const struct flow_env *env = p->env;
	const enum ceremony_mode mode = CEREMONY_READBACK;
	struct store_ceremony att;
	struct store_reg reg;
	char code[AM_OTP_DIGITS + 1] = "";
	int64_t now = flow_now(env);
	enum am_err rc;

	if ((rc = store_begin(st, e)) != AM_OK)
		return rc;
	if ((rc = flow_ceremony_due(env, st, p->token, p->email, &mode, &att, &reg, e)) != AM_OK)
		goto fail;
	if (att.code_serial != p->code_serial) {
		/* the form was sent before (a reload re-sends it) or another tab
		 * confirmed: no second code without the user asking for one */
		rc = am_fail(e, AM_E_CLAIM_SUPERSEDED,
			     "this claim was confirmed already and its code was shown once");
		goto fail;
	}
	if ((rc = am_rand_otp(code, e)) != AM_OK)
		goto fail;
	flow_code_hash(att.id, code, att.code_hash);
	att.confirmed_at = now;
	att.expires_at = min64(am_time_add(now, env->cfg->ceremony_readback_ttl), reg.expires_at);
	am_copy(att.user_id, sizeof(att.user_id), p->user_id);
	/* the confirming user's address: an unbound attempt is bound now */
	(void)mail_address_normalize(p->email, att.email, sizeof(att.email));
	rc = store_ceremony_confirm(st, &att, p->code_serial, e);
	if (rc == AM_E_NOT_FOUND)
		rc = am_fail(e, AM_E_CLAIM_SUPERSEDED,
			     "this claim changed meanwhile; reload the page");
	if (rc != AM_OK ||
	    (rc = audit_add(st, &p->batch, env->cfg->tenant, now, "claim.user_confirmed", reg.id,
			    json_pack("{s:s, s:s, s:s?, s:s, s:I}", "user_id", p->user_id,
				      "claim_attempt_id", att.id, "ip",
				      p->ip[0] != '\0' ? p->ip : NULL, "ceremony", "readback",
				      "code_serial", (json_int_t)(att.code_serial + 1)),
			    e)) != AM_OK ||
	    (rc = store_commit(st, e)) != AM_OK)
		goto fail;
	am_copy(p->ceremony.registration_id, sizeof(p->ceremony.registration_id), reg.id);
	am_copy(p->ceremony.attempt_id, sizeof(p->ceremony.attempt_id), att.id);
	snprintf(p->ceremony.user_code, sizeof(p->ceremony.user_code), "%.3s %.3s", code, code + 3);
	p->ceremony.expires_at = att.expires_at;
	OPENSSL_cleanse(code, sizeof(code));
	log_info("claim confirmed by the user registration=%s user=%s attempt=%s ceremony=readback",
		 reg.id, p->user_id, att.id);
	return AM_OK;
fail:
	OPENSSL_cleanse(code, sizeof(code));
	store_rollback(st);
	audit_discard(&p->batch);
	return rc;
}

enum am_err
flow_readback_confirm_submit(const struct flow_env *env, const char *ip, const char *attempt_token,
			     int64_t serial, const char *user_id, const char *email,
			     struct flow_pending_op *p, void (*done)(void *arg), void *done_arg,
			     struct am_error *e)
{
	memset(p, 0, sizeof(*p));
	p->env = env;
	p->kind = FLOW_OP_READBACK_CONFIRM;
	p->step = confirm_step;
	p->code_serial = serial;
	if (!am_copy(p->token, sizeof(p->token), attempt_token) ||
	    !am_copy(p->user_id, sizeof(p->user_id), user_id) ||
	    !am_copy(p->email, sizeof(p->email), email != NULL ? email : "") ||
	    !am_copy(p->ip, sizeof(p->ip), ip != NULL ? ip : "")) {
		flow_pending_op_wipe(p);
		return am_fail(e, AM_E_INVALID_REQUEST, "the form's fields are too long");
	}
	return flow_op_submit(p, done, done_arg, e);
}

/* ---- POST /agent/identity/claim/complete (the agent) ---- */

/* The attempt the agent may complete, read inside the transaction, in the
 * order of the answers of docs/protocol.md's table. */
static enum am_err
completable(const struct flow_env *env, struct store *st, const char *claim_token,
	    struct store_reg *reg, struct store_ceremony *att, struct am_error *e)
{
	int64_t now = flow_now(env);
	enum am_err rc;

	rc = flow_reg_by_claim_token(st, claim_token, reg, e);
	if (rc == AM_E_NOT_FOUND ||
	    (rc == AM_OK && (reg->status == REG_REVOKED || reg->kind == REG_AGENT)))
		return am_fail(e, AM_E_INVALID_GRANT, "the claim_token is unknown");
	if (rc != AM_OK)
		return rc;
	rc = store_ceremony_latest_for(st, reg->id, att, e);
	if (rc == AM_E_NOT_FOUND || (rc == AM_OK && att->mode != CEREMONY_READBACK))
		return am_fail(e, AM_E_INVALID_GRANT,
			       "no read-back claim was started; call /agent/identity/claim with "
			       "type login_hint first");
	if (rc != AM_OK)
		return rc;
	if (att->status == CEREMONY_COMPLETED || reg->status == REG_CLAIMED)
		return am_fail(e, AM_E_INVALID_GRANT, "this registration is claimed already");
	if (att->status == CEREMONY_DENIED)
		return am_fail(e, AM_E_ACCESS_DENIED, "the user rejected this claim");
	if (att->status == CEREMONY_EXPIRED || now >= att->expires_at ||
	    flow_reg_window_closed(reg, now))
		return am_fail(e, AM_E_USER_CODE_EXPIRED,
			       "this claim attempt is over; call /agent/identity/claim for a new "
			       "one");
	if (att->confirmed_at == 0)
		return am_fail(e, AM_E_CLAIM_NOT_CONFIRMED,
			       "the user has not confirmed on the claim page yet; ask them to open "
			       "the verification_uri");
	return AM_OK;
}

/* Counts a wrong code and commits it, so the failure sticks though the
 * request fails; the last allowed one expires the attempt (the store). */
static enum am_err
wrong_digits(struct store *st, const struct store_ceremony *att, struct am_error *e)
{
	int64_t left = att->attempts_left - 1;
	enum am_err rc;

	if ((rc = flow_commit_miss(st, store_ceremony_fail(st, att->id, e), e)) != AM_OK)
		return rc;
	log_info("read-back code mismatch attempt=%s left=%lld", att->id, (long long)left);
	if (left <= 0)
		return am_fail(e, AM_E_INVALID_USER_CODE,
			       "the code does not match and no tries are left: this attempt is "
			       "over; call /agent/identity/claim for a new one");
	return am_fail(e, AM_E_INVALID_USER_CODE, "the code does not match; %lld tries left",
		       (long long)left);
}

static enum am_err
complete_step(struct store *st, struct flow_pending_op *p, struct am_error *e)
{
	const struct flow_env *env = p->env;
	const struct am_config *cfg = env->cfg;
	struct store_ceremony att;
	struct store_reg reg;
	int64_t now = flow_now(env);
	int revoked = 0;
	enum am_err rc;

	if ((rc = store_begin(st, e)) != AM_OK)
		return rc;
	if ((rc = completable(env, st, p->token, &reg, &att, e)) != AM_OK)
		goto fail;
	if (!digits_match(&att, p->user_code))
		return wrong_digits(st, &att, e);
	/* the user who confirmed on the page, not whoever holds the code */
	rc = store_reg_claim(st, reg.id, att.user_id, now, e);
	if (rc == AM_OK)
		rc = store_ceremony_set_status(st, att.id, CEREMONY_INITIATED, CEREMONY_COMPLETED,
					       att.user_id, e);
	if (rc == AM_E_NOT_FOUND)
		rc = am_fail(e, AM_E_INVALID_GRANT, "this registration was claimed meanwhile");
	if (rc != AM_OK)
		goto fail;
	if (reg.kind == REG_ANONYMOUS &&
	    /* v0.4: the pre-claim access tokens end at completion; the new
	     * assertion exchanges for post-claim ones. A v0.1 API key keeps
	     * its value at the new scopes. */
	    ((rc = store_cred_revoke_reg_type(st, reg.id, CRED_ACCESS_TOKEN, now, &revoked, e)) !=
		     AM_OK ||
	     (rc = store_cred_upgrade(st, reg.id, att.user_id, cfg->scopes_post_claim, e)) !=
		     AM_OK))
		goto fail;
	if ((rc = store_reg_gen(st, reg.id, &p->reg_gen, e)) != AM_OK ||
	    (rc = flow_refresh_family_start_in_tx(env, st, reg.id, p->refresh_token,
						  &p->refresh_expires, e)) != AM_OK ||
	    (rc = audit_add(st, &p->batch, cfg->tenant, now, "claim.confirmed", reg.id,
			    json_pack("{s:s, s:s, s:s?, s:s, s:i}", "claimed_by_user_id",
				      att.user_id, "claim_attempt_id", att.id, "ip",
				      p->ip[0] != '\0' ? p->ip : NULL, "ceremony", "readback",
				      "credentials_revoked", revoked),
			    e)) != AM_OK ||
	    (rc = store_commit(st, e)) != AM_OK)
		goto fail;
	reg.status = REG_CLAIMED;
	p->reg = reg;
	am_copy(p->email, sizeof(p->email), att.email);
	am_copy(p->user_id, sizeof(p->user_id), att.user_id);
	am_copy(p->ceremony.registration_id, sizeof(p->ceremony.registration_id), reg.id);
	am_copy(p->ceremony.attempt_id, sizeof(p->ceremony.attempt_id), att.id);
	log_info("claim completed registration=%s user=%s attempt=%s ceremony=readback revoked=%d",
		 reg.id, att.user_id, att.id, revoked);
	return AM_OK;
fail:
	store_rollback(st);
	audit_discard(&p->batch);
	return rc;
}

enum am_err
flow_readback_complete_submit(const struct flow_env *env, const char *ip, const char *claim_token,
			      const char *user_code, struct flow_pending_op *p,
			      void (*done)(void *arg), void *done_arg, struct am_error *e)
{
	memset(p, 0, sizeof(*p));
	p->env = env;
	p->kind = FLOW_OP_READBACK_COMPLETE;
	p->step = complete_step;
	if (user_code == NULL || user_code[0] == '\0')
		return am_fail(e, AM_E_INVALID_REQUEST, "the field \"user_code\" is required");
	if (!am_copy(p->token, sizeof(p->token), claim_token) ||
	    !am_copy(p->user_code, sizeof(p->user_code), user_code) ||
	    !am_copy(p->ip, sizeof(p->ip), ip != NULL ? ip : "")) {
		flow_pending_op_wipe(p);
		return am_fail(e, AM_E_INVALID_REQUEST, "claim_token or user_code is too long");
	}
	return flow_op_submit(p, done, done_arg, e);
}

enum am_err
flow_readback_assertion(const struct flow_env *env, struct skey *keys,
			const struct flow_pending_op *p, char **out, int64_t *expires,
			struct am_error *e)
{
	return flow_v06_mint(env, keys, p->reg.id,
			     p->reg.kind == REG_ANONYMOUS ? "anonymous" : "service_auth",
			     p->reg_gen, p->email, out, expires, e);
}
