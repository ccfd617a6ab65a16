/* One-time codes of the claim ceremonies (issue 14): their hash at rest,
 * shared by v0.1's OTPs and the user_codes, the commit of a wrong guess's
 * count, and the minting of a
 * user_code attempt, shared by the ceremony's starts (flows/ceremony.c)
 * and the first link of an ID-JAG (flows/agent.c). */
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <string.h>

#include "core/str.h"
#include "flows/internal.h"

#define PREFIX_CEREMONY_TOKEN "cat_"

void
flow_code_hash(const char *attempt_id, const char *code, uint8_t out[AM_HASH_LEN])
{
	char buf[STORE_ID_LEN + FLOW_CODE_MAX + 2];

	snprintf(buf, sizeof(buf), "%s:%s", attempt_id, code);
	am_sha256_str(buf, out);
	OPENSSL_cleanse(buf, sizeof(buf));
}

enum am_err
flow_commit_miss(struct store *st, enum am_err counted, struct am_error *e)
{
	enum am_err rc = counted;

	if (rc == AM_OK && (rc = store_commit(st, e)) == AM_OK)
		return AM_OK;
	store_rollback(st);
	return rc == AM_E_UNAVAILABLE ? rc : am_fail(e, AM_E_UNAVAILABLE, "the store is busy; retry");
}

enum am_err
flow_ceremony_new_attempt(const struct flow_env *env, struct store *st, const struct store_reg *reg,
			  const char *email, enum ceremony_mode mode, const char *link_iss,
			  const char *link_sub,
			  struct audit_batch *batch, struct ceremony_block *out, struct am_error *e)
{
	const struct am_config *cfg = env->cfg;
	struct store_ceremony c = {0};
	char code[AM_USER_CODE_CHARS + 1];
	int64_t now = flow_now(env);
	enum am_err rc;

	if ((rc = flow_ordered_id("cla_", c.id, sizeof(c.id), e)) != AM_OK ||
	    (rc = am_rand_token(PREFIX_CEREMONY_TOKEN, out->attempt_token,
				sizeof(out->attempt_token), e)) != AM_OK ||
	    (rc = am_rand_user_code(code, e)) != AM_OK)
		goto out;
	am_copy(c.registration_id, sizeof(c.registration_id), reg->id);
	am_sha256_str(out->attempt_token, c.token_hash);
	c.mode = mode;
	if (mode == CEREMONY_READBACK) {
		if (RAND_bytes(c.code_hash, sizeof(c.code_hash)) != 1) {
			rc = am_fail(e, AM_E_INTERNAL, "random source failed");
			goto out;
		}
	} else {
		flow_code_hash(c.id, code, c.code_hash);
	}
	am_copy(c.email, sizeof(c.email), email);
	if (link_iss != NULL && link_sub != NULL &&
	    (!am_copy(c.link_iss, sizeof(c.link_iss), link_iss) ||
	     !am_copy(c.link_sub, sizeof(c.link_sub), link_sub))) {
		rc = am_fail(e, AM_E_INVALID_REQUEST, "the subject to link is too long");
		goto out;
	}
	c.attempts_left = cfg->ceremony_code_tries;
	c.status = CEREMONY_INITIATED;
	c.created_at = now;
	c.expires_at = min64(am_time_add(now, cfg->ceremony_code_ttl), reg->expires_at);
	c.poll_interval = cfg->ceremony_interval;
	if ((rc = store_ceremony_expire_open(st, reg->id, e)) != AM_OK ||
	    (rc = store_ceremony_insert(st, &c, e)) != AM_OK ||
	    (mode == CEREMONY_USER_CODE &&
	     (rc = audit_add(st, batch, cfg->tenant, now, "user_code.minted", reg->id,
			     json_pack("{s:s}", "claim_attempt_id", c.id), e)) != AM_OK))
		goto out;
	am_copy(out->registration_id, sizeof(out->registration_id), reg->id);
	am_copy(out->attempt_id, sizeof(out->attempt_id), c.id);
	if (mode == CEREMONY_USER_CODE)
		snprintf(out->user_code, sizeof(out->user_code), "%.4s-%.4s", code, code + 4);
	out->expires_at = c.expires_at;
	out->interval = c.poll_interval;
out:
	OPENSSL_cleanse(code, sizeof(code));
	if (rc != AM_OK)
		OPENSSL_cleanse(out, sizeof(*out));
	return rc;
}
