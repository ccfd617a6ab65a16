/* The resource gate and the registration rate limits: the two checks that
 * run before any work is done for a request. */
#include <openssl/crypto.h>
#include <stdio.h>
#include <string.h>

#include "flows/internal.h"
#include "flows/ratelimit.h"

enum am_err
flow_authenticate(const struct flow_env *env, struct store *st, const char *bearer,
		  struct store_auth *out, struct am_error *e)
{
	uint8_t hash[AM_HASH_LEN];
	int64_t now = flow_now(env);
	enum am_err rc;

	if (bearer == NULL || bearer[0] == '\0' || strlen(bearer) > AM_MAX_TOKEN_BYTES)
		return am_fail(e, AM_E_INVALID_TOKEN, "a valid bearer credential is required");
	am_sha256_str(bearer, hash);
	rc = store_cred_auth(st, hash, now, out, e);
	if (rc == AM_E_NOT_FOUND)
		return am_fail(e, AM_E_INVALID_TOKEN, "the credential is not valid");
	if (rc != AM_OK)
		return rc;
	/* The index found the row by hash; compare in constant time anyway so
	 * correctness never rests on the lookup's collation or encoding. */
	if (!am_ct_equal(hash, out->cred.hash, AM_HASH_LEN))
		return am_fail(e, AM_E_INVALID_TOKEN, "the credential is not valid");
	switch (out->reg_status) {
	case REG_CLAIMED:
		return AM_OK;
	case REG_UNCLAIMED:
	case REG_PENDING_CLAIM:
		/* Between sweeps the key stops at the TTL all the same. */
		if (now < out->reg_expires_at)
			return AM_OK;
		break;
	case REG_EXPIRED:
	case REG_REVOKED:
		break;
	}
	return am_fail(e, AM_E_INVALID_TOKEN, "the credential is not valid");
}

enum am_err
flow_rate_check(const struct flow_env *env, const char *kind, enum flow_rate_scope scope,
		const char *ip, int64_t *retry_after, struct am_error *e)
{
	const struct am_config *cfg = env->cfg;
	bool anon = strcmp(kind, "anonymous") == 0;
	int64_t per_ip = anon ? cfg->anonymous_per_ip : cfg->identity_per_ip;
	int64_t global = anon ? cfg->anonymous_global : cfg->identity_global;
	int64_t now = flow_now(env);
	const char *refused = NULL;
	char key[96];

	*retry_after = 0;
	if (env->limits == NULL)
		return AM_OK;
	if (scope == FLOW_RATE_PER_IP) {
		/* Skipped when the address is unknown rather than lumping such
		 * clients under one key. */
		if (ip == NULL || ip[0] == '\0')
			return AM_OK;
		snprintf(key, sizeof(key), "%s|ip|%s", kind, ip);
		if (!ratelimit_hit(env->limits, key, per_ip, now, retry_after))
			refused = "from this address";
	} else {
		snprintf(key, sizeof(key), "%s|global", kind);
		if (!ratelimit_hit(env->limits, key, global, now, retry_after))
			refused = "right now";
	}
	if (refused == NULL)
		return AM_OK;
	am_fail(e, AM_E_RATE_LIMITED, "too many %s registrations %s; retry in %llds", kind, refused,
		(long long)*retry_after);
	if (e != NULL)
		e->retry_after = (long)*retry_after;
	return AM_E_RATE_LIMITED;
}

void
flow_result_wipe(void *result, size_t size)
{
	OPENSSL_cleanse(result, size);
}
