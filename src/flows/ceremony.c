/* The v0.4-v0.6 claim ceremony (issue 14): the service mints an RFC 8628
 * user_code, the agent shows it with the verification URL, the user signs in
 * at the service and types it on the /claim page (or rejects), and the agent
 * polls the claim grant at /oauth2/token. One flow for anonymous and
 * service_auth registrations; the rows are the v0.1 registrations. */
#include <ctype.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <string.h>

#include "core/log.h"
#include "core/str.h"
#include "flows/internal.h"
#include "mail/mail.h"

#define SLOW_DOWN_STEP 5 /* RFC 8628 3.5: each slow_down adds 5 s to the interval */

/* What the user typed, as the code was minted: upper case, without dashes
 * and spaces. False when it cannot be a code (then it is a wrong entry). */
static bool
normalize_code(const char *typed, char out[AM_USER_CODE_CHARS + 1])
{
	size_t n = 0;

	for (const char *c = typed; *c != '\0'; c++) {
		if (*c == '-' || *c == ' ' || *c == '\t')
			continue;
		if (n == AM_USER_CODE_CHARS)
			return false;
		out[n] = (char)toupper((unsigned char)*c);
		if (strchr(AM_USER_CODE_ALPHABET, out[n]) == NULL)
			return false;
		n++;
	}
	out[n] = '\0';
	return n == AM_USER_CODE_CHARS;
}

/* ---- POST /agent/identity/claim ---- */

static enum am_err
start_step(struct store *st, struct flow_pending_op *p, struct am_error *e)
{
	const struct flow_env *env = p->env;
	struct store_reg reg;
	char addr[AM_MAX_EMAIL_BYTES + 1];
	bool readback = p->ceremony_mode == CEREMONY_READBACK;
	int64_t now = flow_now(env);
	enum am_err rc;

	am_copy(addr, sizeof(addr), p->email);
	if ((rc = store_begin(st, e)) != AM_OK)
		return rc;
	if ((rc = flow_claimable(st, p->token, now, AM_E_CLAIMED_OR_IN_FLIGHT, &reg, e)) != AM_OK)
		goto fail;
	if (reg.kind == REG_AGENT) {
		rc = am_fail(e, AM_E_CLAIMED_OR_IN_FLIGHT,
			     "this registration links a provider identity to an existing "
			     "account; present a fresh ID-JAG at /agent/identity for a new code");
		goto fail;
	}
	if (reg.kind == REG_EMAIL) {
		/* service_auth: the address was fixed at registration */
		if (addr[0] != '\0' && strcmp(addr, reg.email) != 0) {
			rc = am_fail(e, AM_E_INVALID_REQUEST,
				     "%s must be the address this registration was made for",
				     readback ? "login_hint" : "email");
			goto fail;
		}
		am_copy(addr, sizeof(addr), reg.email);
	} else if (addr[0] == '\0' && !readback) {
		/* a read-back attempt without login_hint is bound to whoever
		 * signs in and confirms */
		rc = am_fail(e, AM_E_INVALID_REQUEST, "the field \"email\" is required");
		goto fail;
	}
	if ((rc = flow_ceremony_new_attempt(env, st, &reg, addr, p->ceremony_mode, NULL, NULL, &p->batch,
					    &p->ceremony, e)) != AM_OK)
		goto fail;
	if (reg.status == REG_UNCLAIMED &&
	    (rc = store_reg_transition(st, reg.id, REG_UNCLAIMED, REG_PENDING_CLAIM, e)) != AM_OK)
		goto fail;
	if ((rc = audit_add(st, &p->batch, env->cfg->tenant, now, "claim.requested", reg.id,
			    json_pack("{s:s?, s:s, s:s?, s:s}", "email",
				      addr[0] != '\0' ? addr : NULL, "claim_attempt_id",
				      p->ceremony.attempt_id, "ip", p->ip[0] != '\0' ? p->ip : NULL,
				      "ceremony", readback ? "readback" : "user_code"),
			    e)) != AM_OK ||
	    (rc = store_commit(st, e)) != AM_OK)
		goto fail;
	p->reg = reg; /* the answer names its kind and claim window */
	return AM_OK;
fail:
	store_rollback(st);
	audit_discard(&p->batch);
	OPENSSL_cleanse(&p->ceremony, sizeof(p->ceremony));
	return rc;
}

enum am_err
flow_ceremony_start_submit(const struct flow_env *env, const char *ip, const char *claim_token,
			   const char *email, struct flow_pending_op *p, void (*done)(void *arg),
			   void *done_arg, struct am_error *e)
{
	return flow_ceremony_start_mode_submit(env, ip, claim_token, email, CEREMONY_USER_CODE, p,
					       done, done_arg, e);
}

enum am_err
flow_ceremony_start_mode_submit(const struct flow_env *env, const char *ip,
				const char *claim_token, const char *email,
				enum ceremony_mode mode, struct flow_pending_op *p,
				void (*done)(void *arg), void *done_arg, struct am_error *e)
{
	memset(p, 0, sizeof(*p));
	p->env = env;
	p->kind = FLOW_OP_CEREMONY_START;
	p->step = start_step;
	p->ceremony_mode = mode;
	if (email != NULL &&
	    (!mail_address_normalize(email, p->email, sizeof(p->email)) || p->email[0] == '\0'))
		return mode == CEREMONY_READBACK
			       ? am_fail(e, AM_E_INVALID_LOGIN_HINT,
					 "login_hint must be a plain email address "
					 "(user@example.com)")
			       : am_fail(e, AM_E_INVALID_REQUEST,
					 "email must be a plain email address (user@example.com)");
	if (!am_copy(p->token, sizeof(p->token), claim_token) ||
	    !am_copy(p->ip, sizeof(p->ip), ip != NULL ? ip : ""))
		return am_fail(e, AM_E_INVALID_REQUEST, "claim_token is too long");
	return flow_op_submit(p, done, done_arg, e);
}

/* ---- POST /agent/identity {type: service_auth} ---- */

enum am_err
flow_service_auth_register(const struct flow_env *env, struct store *st, const char *ip,
			   const char *login_hint, struct service_auth_result *out,
			   struct am_error *e)
{
	const struct am_config *cfg = env->cfg;
	struct service_auth_result res = {0};
	struct audit_batch batch = {0};
	struct store_reg reg = {0};
	int64_t now = flow_now(env), retry_after;
	enum am_err rc;

	if (!cfg->flow_service_auth)
		return am_fail(e, AM_E_SERVICE_AUTH_NOT_ENABLED,
			       "this service does not offer service_auth; use anonymous or "
			       "identity_assertion");
	if (!mail_address_normalize(login_hint, reg.email, sizeof(reg.email)) ||
	    reg.email[0] == '\0')
		return am_fail(e, AM_E_INVALID_LOGIN_HINT,
			       "login_hint must be an email address (user@example.com)");
	if ((rc = flow_rate_check(env, "identity", FLOW_RATE_PER_IP, ip, &retry_after, e)) !=
		    AM_OK ||
	    (rc = flow_rate_check(env, "identity", FLOW_RATE_GLOBAL, ip, &retry_after, e)) != AM_OK)
		return rc;
	if ((rc = flow_ordered_id("reg_", reg.id, sizeof(reg.id), e)) != AM_OK ||
	    (rc = flow_mint_claim_token(&reg, res.reg.claim_token, sizeof(res.reg.claim_token),
					e)) != AM_OK)
		goto out;
	reg.kind = REG_EMAIL;
	reg.status = REG_PENDING_CLAIM;
	reg.credential_type = CRED_ACCESS_TOKEN;
	reg.created_at = now;
	reg.expires_at = am_time_add(now, cfg->ttl_registration);
	am_copy(reg.ip, sizeof(reg.ip), ip != NULL ? ip : "");
	am_copy(res.reg.registration_id, sizeof(res.reg.registration_id), reg.id);
	res.reg.kind = REG_EMAIL;
	res.reg.claim_token_expires = reg.expires_at;
	am_copy(res.reg.post_claim_scopes, sizeof(res.reg.post_claim_scopes),
		cfg->scopes_post_claim);
	if ((rc = store_begin(st, e)) != AM_OK)
		goto out;
	if ((rc = store_reg_insert(st, &reg, e)) != AM_OK ||
	    (rc = audit_add(st, &batch, cfg->tenant, now, "registration.created", reg.id,
			    json_pack("{s:s, s:s, s:s?}", "registration_type", "service_auth",
				      "protocol", "v0.6", "ip", ip),
			    e)) != AM_OK ||
	    (rc = flow_ceremony_new_attempt(env, st, &reg, reg.email, CEREMONY_USER_CODE, NULL, NULL, &batch,
					    &res.claim, e)) != AM_OK ||
	    (rc = audit_add(st, &batch, cfg->tenant, now, "claim.requested", reg.id,
			    json_pack("{s:s, s:s, s:s?, s:s}", "email", reg.email,
				      "claim_attempt_id", res.claim.attempt_id, "ip", ip,
				      "ceremony", "user_code"),
			    e)) != AM_OK ||
	    (rc = store_commit(st, e)) != AM_OK) {
		store_rollback(st);
		audit_discard(&batch);
		goto out;
	}
	audit_flush(env->audit, &batch);
	log_info("registration created id=%s kind=service_auth protocol=v0.6 attempt=%s", reg.id,
		 res.claim.attempt_id);
	*out = res;
out:
	OPENSSL_cleanse(&res, sizeof(res));
	return rc;
}

/* ---- the claim grant ---- */

void
flow_ceremony_token_wipe(struct ceremony_token_result *r)
{
	flow_result_wipe(&r->token, sizeof(r->token));
	OPENSSL_cleanse(r->refresh_token, sizeof(r->refresh_token));
	free(r->assertion);
	r->assertion = NULL;
}

/* Records a poll of an initiated attempt and answers it: slow_down when it
 * came within the interval (which then grows), else authorization_pending. */
static enum am_err
pending(const struct flow_env *env, struct store *st, const struct store_ceremony *att,
	struct am_error *e)
{
	int64_t now = flow_now(env), interval = att->poll_interval;
	bool too_soon = att->last_poll_at != 0 && now - att->last_poll_at < interval;
	enum am_err rc;

	if (too_soon)
		interval = am_time_add(interval, SLOW_DOWN_STEP);
	if ((rc = store_begin(st, e)) != AM_OK)
		return rc;
	if ((rc = store_ceremony_poll(st, att->id, now, interval, e)) != AM_OK ||
	    (rc = store_commit(st, e)) != AM_OK) {
		store_rollback(st);
		return rc;
	}
	if (too_soon)
		return am_fail(e, AM_E_SLOW_DOWN, "polled within the interval; wait %lld s",
			       (long long)interval);
	return am_fail(e, AM_E_AUTHORIZATION_PENDING,
		       "the user has not completed the claim yet; poll again in %lld s",
		       (long long)interval);
}

/* The one answer with tokens: the attempt is marked redeemed in the same
 * transaction that issues the access token, so two polls cannot both get one. */
static enum am_err
redeem(const struct flow_env *env, struct store *st, struct skey *keys,
       const struct store_ceremony *att, struct ceremony_token_result *out, struct am_error *e)
{
	struct ceremony_token_result res = {0};
	struct audit_batch batch = {0};
	struct store_reg reg;
	const char *type, *scopes;
	int64_t gen;
	enum am_err rc;

	if ((rc = store_reg_by_id(st, att->registration_id, &reg, e)) != AM_OK ||
	    (rc = store_reg_gen(st, reg.id, &gen, e)) != AM_OK)
		return rc == AM_E_NOT_FOUND ? am_fail(e, AM_E_INVALID_GRANT, "no such registration")
					    : rc;
	type = reg.kind == REG_ANONYMOUS ? "anonymous"
	       : reg.kind == REG_AGENT	 ? "identity_assertion"
					 : "service_auth";
	scopes = env->cfg->scopes_post_claim;
	if (reg.kind == REG_AGENT) {
		/* a first link: the provider's scopes, and the assertion of an
		 * ID-JAG registration (no email, as /agent/identity mints it) */
		const struct am_provider *pr = am_config_provider(env->cfg, reg.iss);

		if (pr == NULL)
			return am_fail(e, AM_E_INVALID_GRANT,
				       "the registration's provider is no longer trusted here");
		scopes = pr->scopes;
	}
	/* Signing is CPU work only: done before the transaction. */
	if ((rc = flow_v06_mint(env, keys, reg.id, type, gen,
				reg.kind == REG_AGENT ? NULL : att->email, &res.assertion,
				&res.assertion_expires, e)) != AM_OK)
		goto out;
	if ((rc = store_begin(st, e)) != AM_OK)
		goto out;
	rc = store_ceremony_redeem(st, att->id, flow_now(env), e);
	if (rc == AM_E_NOT_FOUND)
		rc = am_fail(e, AM_E_INVALID_GRANT,
			     "the claim grant was answered already; exchange the identity "
			     "assertion with the jwt-bearer grant");
	if (rc != AM_OK || reg.status != REG_CLAIMED ||
	    (rc = flow_v06_issue_in_tx(env, st, &reg, scopes, "claim", NULL, &batch, &res.token,
				       e)) != AM_OK ||
	    (rc = audit_add(st, &batch, env->cfg->tenant, flow_now(env), "assertion.issued", reg.id,
			    json_object(), e)) != AM_OK ||
	    (rc = flow_refresh_family_start_in_tx(env, st, reg.id, res.refresh_token,
						  &res.refresh_expires, e)) != AM_OK ||
	    (rc = store_commit(st, e)) != AM_OK) {
		if (rc == AM_OK)
			rc = am_fail(e, AM_E_INVALID_GRANT, "the registration is %s",
				     store_status_name(reg.status));
		store_rollback(st);
		audit_discard(&batch);
		goto out;
	}
	audit_flush(env->audit, &batch);
	*out = res;
	memset(&res, 0, sizeof(res));
out:
	flow_ceremony_token_wipe(&res);
	return rc;
}

enum am_err
flow_ceremony_poll(const struct flow_env *env, struct store *st, struct skey *keys,
		   const char *claim_token, struct ceremony_token_result *out, struct am_error *e)
{
	struct store_reg reg;
	struct store_ceremony att;
	int64_t now = flow_now(env);
	enum am_err rc;

	rc = flow_reg_by_claim_token(st, claim_token, &reg, e);
	if (rc == AM_E_NOT_FOUND || (rc == AM_OK && reg.status == REG_REVOKED))
		return am_fail(e, AM_E_INVALID_GRANT, "the claim_token is unknown");
	if (rc != AM_OK)
		return rc;
	rc = store_ceremony_latest_for(st, reg.id, &att, e);
	/* a v0.1 first link (its code mailed) has no attempt to poll */
	if (rc == AM_E_NOT_FOUND && reg.kind == REG_AGENT)
		return am_fail(e, AM_E_INVALID_GRANT, "the claim_token is unknown");
	if (rc == AM_E_NOT_FOUND) {
		if (flow_reg_window_closed(&reg, now))
			return am_fail(e, AM_E_EXPIRED_TOKEN, "the registration expired");
		return am_fail(e, AM_E_INVALID_GRANT,
			       reg.status == REG_CLAIMED
				       ? "this registration was claimed without the user_code "
					 "ceremony; exchange its identity assertion"
				       : "no claim was started; call /agent/identity/claim first");
	}
	if (rc != AM_OK)
		return rc;
	if (att.mode == CEREMONY_READBACK)
		return am_fail(e, AM_E_INVALID_GRANT,
			       "this claim uses the read-back ceremony: send the code the user "
			       "reads to /agent/identity/claim/complete");
	if (att.status == CEREMONY_COMPLETED) {
		if (att.redeemed_at != 0)
			return am_fail(
				e, AM_E_INVALID_GRANT,
				"the claim grant was answered already; exchange the identity "
				"assertion with the jwt-bearer grant");
		return redeem(env, st, keys, &att, out, e);
	}
	if (flow_reg_window_closed(&reg, now))
		return am_fail(e, AM_E_EXPIRED_TOKEN, "the claim ceremony window has closed");
	if (reg.status == REG_CLAIMED)
		return am_fail(e, AM_E_INVALID_GRANT,
			       "this registration was claimed another way; exchange its identity "
			       "assertion");
	if (att.status == CEREMONY_DENIED)
		return am_fail(e, AM_E_ACCESS_DENIED, "the user rejected this claim");
	if (att.status == CEREMONY_EXPIRED || now >= att.expires_at)
		return am_fail(e, AM_E_EXPIRED_TOKEN,
			       "the user_code expired; call /agent/identity/claim for a new one");
	return pending(env, st, &att, e);
}

/* ---- the /claim page ---- */

enum am_err
flow_ceremony_peek(const struct flow_env *env, struct store *st, const char *attempt_token,
		   struct store_ceremony *att, struct store_reg *reg, struct am_error *e)
{
	uint8_t hash[AM_HASH_LEN];
	int64_t now = flow_now(env);
	enum am_err rc;

	am_sha256_str(attempt_token, hash);
	rc = store_ceremony_by_token_hash(st, hash, att, e);
	if (rc == AM_E_NOT_FOUND)
		return am_fail(e, AM_E_NOT_FOUND, "this claim link is unknown");
	if (rc != AM_OK)
		return rc;
	if (att->status == CEREMONY_COMPLETED)
		return am_fail(e, AM_E_CLAIM_COMPLETED, "this claim was completed already");
	if (att->status == CEREMONY_DENIED)
		return am_fail(e, AM_E_ACCESS_DENIED, "this claim was rejected");
	if (att->status == CEREMONY_EXPIRED || now >= att->expires_at)
		return am_fail(e, AM_E_EXPIRED_TOKEN,
			       "this code expired or was replaced; ask the agent for a new one");
	if ((rc = store_reg_by_id(st, att->registration_id, reg, e)) != AM_OK)
		return rc == AM_E_NOT_FOUND ? am_fail(e, AM_E_NOT_FOUND, "no such registration")
					    : rc;
	if (reg->status == REG_CLAIMED || reg->status == REG_REVOKED)
		return am_fail(e, AM_E_CLAIMED_OR_IN_FLIGHT, "this agent is claimed already");
	if (flow_reg_window_closed(reg, now))
		return am_fail(e, AM_E_CLAIM_EXPIRED, "the agent's registration expired");
	return AM_OK;
}

enum am_err
flow_ceremony_due(const struct flow_env *env, struct store *st, const char *attempt_token,
		  const char *email, const enum ceremony_mode *mode, struct store_ceremony *att,
		  struct store_reg *reg, struct am_error *e)
{
	char addr[AM_MAX_EMAIL_BYTES + 1];
	enum am_err rc;

	if ((rc = flow_ceremony_peek(env, st, attempt_token, att, reg, e)) != AM_OK)
		return rc;
	if (mode != NULL && att->mode != *mode)
		return am_fail(e, AM_E_INVALID_REQUEST,
			       att->mode == CEREMONY_READBACK
				       ? "this claim is confirmed without a code; reload the page"
				       : "this claim needs the code the agent shows; reload the "
					 "page");
	if (email == NULL || !mail_address_normalize(email, addr, sizeof(addr)) ||
	    (strcmp(addr, att->email) != 0 &&
	     /* an unbound read-back attempt: whoever signs in confirms it */
	     !(att->mode == CEREMONY_READBACK && att->email[0] == '\0')))
		return am_fail(e, AM_E_WRONG_ACCOUNT,
			       "this claim is for another account; sign in with the address the "
			       "agent named");
	return AM_OK;
}

static bool
code_matches(const struct store_ceremony *att, const char *typed)
{
	char code[AM_USER_CODE_CHARS + 1];
	uint8_t hash[AM_HASH_LEN];
	bool ok = normalize_code(typed, code);

	flow_code_hash(att->id, ok ? code : "", hash);
	ok = am_ct_equal(hash, att->code_hash, AM_HASH_LEN) && ok;
	OPENSSL_cleanse(code, sizeof(code));
	OPENSSL_cleanse(hash, sizeof(hash));
	return ok;
}

/* Counts a wrong entry and commits it, so the failure sticks though the
 * request fails. */
static enum am_err
wrong_code(struct store *st, const struct store_ceremony *att, struct am_error *e)
{
	int64_t left = att->attempts_left - 1;
	enum am_err rc;

	if ((rc = flow_commit_miss(st, store_ceremony_fail(st, att->id, e), e)) != AM_OK)
		return rc;
	log_info("user_code mismatch attempt=%s left=%lld", att->id, (long long)left);
	if (left <= 0)
		return am_fail(e, AM_E_EXPIRED_TOKEN,
			       "too many wrong codes: this attempt is over; ask the agent for a "
			       "new code");
	return am_fail(e, AM_E_INVALID_USER_CODE, "the code does not match; %lld tries left",
		       (long long)left);
}

/* The completion's transaction; its events stay in batch for the caller to
 * flush after the commit (the group commit's). */
static const enum ceremony_mode user_code_mode = CEREMONY_USER_CODE;

static enum am_err
complete_tx(const struct flow_env *env, struct store *st, const struct flow_pending_op *p,
	    struct audit_batch *batch, struct am_error *e)
{
	const struct am_config *cfg = env->cfg;
	const char *ip = p->ip[0] != '\0' ? p->ip : NULL;
	struct store_ceremony att;
	struct store_reg reg;
	int64_t now = flow_now(env);
	int revoked = 0;
	enum am_err rc;

	if ((rc = store_begin(st, e)) != AM_OK)
		return rc;
	if ((rc = flow_ceremony_due(env, st, p->token, p->email, &user_code_mode, &att, &reg,
				    e)) != AM_OK)
		goto fail;
	if (!code_matches(&att, p->user_code))
		return wrong_code(st, &att, e);
	rc = store_reg_claim(st, reg.id, p->user_id, now, e);
	if (rc == AM_OK)
		rc = store_ceremony_set_status(st, att.id, CEREMONY_INITIATED, CEREMONY_COMPLETED,
					       p->user_id, e);
	if (rc == AM_E_NOT_FOUND)
		rc = am_fail(e, AM_E_CLAIMED_OR_IN_FLIGHT, "this agent was claimed meanwhile");
	if (rc != AM_OK)
		goto fail;
	/* v0.5 first link: the signed-in owner of the bound account links the
	 * provider identity; the claim grant issues the token. */
	if (reg.kind == REG_AGENT &&
	    (rc = flow_first_link_delegate(env, st, &reg, p->user_id, batch, e)) != AM_OK)
		goto fail;
	/* v0.7's ID-JAG claim that met the gate: the attempt names the subject */
	if (reg.kind == REG_ANONYMOUS && att.link_iss[0] != '\0') {
		struct store_reg subject = reg;

		am_copy(subject.iss, sizeof(subject.iss), att.link_iss);
		am_copy(subject.sub, sizeof(subject.sub), att.link_sub);
		if ((rc = flow_first_link_delegate(env, st, &subject, p->user_id, batch, e)) !=
		    AM_OK)
			goto fail;
	}
	if (reg.kind == REG_ANONYMOUS &&
	    /* v0.4: the pre-claim access tokens end; the claim grant answers the
	     * canonical one. A v0.1 API key keeps its value at the new scopes. */
	    ((rc = store_cred_revoke_reg_type(st, reg.id, CRED_ACCESS_TOKEN, now, &revoked, e)) !=
		     AM_OK ||
	     (rc = store_cred_upgrade(st, reg.id, p->user_id, cfg->scopes_post_claim, e)) != AM_OK))
		goto fail;
	if ((rc = audit_add(st, batch, cfg->tenant, now, "claim.confirmed", reg.id,
			    json_pack("{s:s, s:s, s:s?, s:s, s:i}", "claimed_by_user_id",
				      p->user_id, "claim_attempt_id", att.id, "ip", ip, "ceremony",
				      "user_code", "credentials_revoked", revoked),
			    e)) != AM_OK ||
	    (rc = store_commit(st, e)) != AM_OK)
		goto fail;
	log_info("claim confirmed registration=%s user=%s attempt=%s revoked=%d", reg.id,
		 p->user_id, att.id, revoked);
	return AM_OK;
fail:
	store_rollback(st);
	audit_discard(batch);
	return rc;
}

static enum am_err
deny_tx(const struct flow_env *env, struct store *st, const struct flow_pending_op *p,
	struct audit_batch *batch, struct am_error *e)
{
	struct store_ceremony att;
	struct store_reg reg;
	enum am_err rc;

	if ((rc = store_begin(st, e)) != AM_OK)
		return rc;
	/* either mode: the reject form is the same */
	if ((rc = flow_ceremony_due(env, st, p->token, p->email, NULL, &att, &reg, e)) != AM_OK)
		goto fail;
	rc = store_ceremony_set_status(st, att.id, CEREMONY_INITIATED, CEREMONY_DENIED, p->user_id,
				       e);
	if (rc == AM_E_NOT_FOUND)
		rc = am_fail(e, AM_E_EXPIRED_TOKEN, "this attempt ended meanwhile");
	if (rc != AM_OK ||
	    (rc = audit_add(st, batch, env->cfg->tenant, flow_now(env), "claim.denied", reg.id,
			    json_pack("{s:s, s:s, s:s?}", "user_id", p->user_id, "claim_attempt_id",
				      att.id, "ip", p->ip[0] != '\0' ? p->ip : NULL),
			    e)) != AM_OK ||
	    (rc = store_commit(st, e)) != AM_OK)
		goto fail;
	log_info("claim denied registration=%s user=%s attempt=%s", reg.id, p->user_id, att.id);
	return AM_OK;
fail:
	store_rollback(st);
	audit_discard(batch);
	return rc;
}

static enum am_err
complete_step(struct store *st, struct flow_pending_op *p, struct am_error *e)
{
	return complete_tx(p->env, st, p, &p->batch, e);
}

static enum am_err
deny_step(struct store *st, struct flow_pending_op *p, struct am_error *e)
{
	return deny_tx(p->env, st, p, &p->batch, e);
}

/* The inputs of a page POST, copied before any store work. */
static enum am_err
page_prepare(const struct flow_env *env, const char *ip, const char *attempt_token,
	     const char *user_code, const char *user_id, const char *email,
	     struct flow_pending_op *p, struct am_error *e)
{
	memset(p, 0, sizeof(*p));
	p->env = env;
	if (!am_copy(p->token, sizeof(p->token), attempt_token) ||
	    !am_copy(p->user_code, sizeof(p->user_code), user_code != NULL ? user_code : "") ||
	    !am_copy(p->user_id, sizeof(p->user_id), user_id) ||
	    !am_copy(p->email, sizeof(p->email), email != NULL ? email : "") ||
	    !am_copy(p->ip, sizeof(p->ip), ip != NULL ? ip : ""))
		return am_fail(e, AM_E_INVALID_REQUEST, "the form's fields are too long");
	return AM_OK;
}

static enum am_err
page_submit(struct flow_pending_op *p, enum flow_op_kind kind,
	    enum am_err (*step)(struct store *, struct flow_pending_op *, struct am_error *),
	    enum am_err prepared, void (*done)(void *arg), void *done_arg, struct am_error *e)
{
	if (prepared != AM_OK) {
		flow_pending_op_wipe(p);
		return prepared;
	}
	p->kind = kind;
	p->step = step;
	return flow_op_submit(p, done, done_arg, e);
}

enum am_err
flow_ceremony_complete_submit(const struct flow_env *env, const char *ip, const char *attempt_token,
			      const char *user_code, const char *user_id, const char *email,
			      struct flow_pending_op *p, void (*done)(void *arg), void *done_arg,
			      struct am_error *e)
{
	return page_submit(p, FLOW_OP_CEREMONY_COMPLETE, complete_step,
			   page_prepare(env, ip, attempt_token, user_code, user_id, email, p, e),
			   done, done_arg, e);
}

enum am_err
flow_ceremony_deny_submit(const struct flow_env *env, const char *ip, const char *attempt_token,
			  const char *user_id, const char *email, struct flow_pending_op *p,
			  void (*done)(void *arg), void *done_arg, struct am_error *e)
{
	return page_submit(p, FLOW_OP_CEREMONY_DENY, deny_step,
			   page_prepare(env, ip, attempt_token, NULL, user_id, email, p, e), done,
			   done_arg, e);
}

/* The same two, run here as their own transactions (unit tests, tools). */
static enum am_err
run_here(const struct flow_env *env, struct store *st, struct flow_pending_op *p,
	 enum am_err prepared,
	 enum am_err (*tx)(const struct flow_env *, struct store *, const struct flow_pending_op *,
			   struct audit_batch *, struct am_error *),
	 struct am_error *e)
{
	struct audit_batch batch = {0};
	enum am_err rc = prepared != AM_OK ? prepared : tx(env, st, p, &batch, e);

	if (rc == AM_OK)
		audit_flush(env->audit, &batch);
	audit_discard(&batch);
	flow_pending_op_wipe(p);
	return rc;
}

enum am_err
flow_ceremony_complete(const struct flow_env *env, struct store *st, const char *ip,
		       const char *attempt_token, const char *user_code, const char *user_id,
		       const char *email, struct am_error *e)
{
	struct flow_pending_op p;

	return run_here(env, st, &p,
			page_prepare(env, ip, attempt_token, user_code, user_id, email, &p, e),
			complete_tx, e);
}

enum am_err
flow_ceremony_deny(const struct flow_env *env, struct store *st, const char *ip,
		   const char *attempt_token, const char *user_id, const char *email,
		   struct am_error *e)
{
	struct flow_pending_op p;

	return run_here(env, st, &p,
			page_prepare(env, ip, attempt_token, NULL, user_id, email, &p, e), deny_tx,
			e);
}
