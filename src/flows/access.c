/* The resource gate and the registration rate limits: the two checks that
 * run before any work is done for a request. */
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "flows/internal.h"
#include "flows/ratelimit.h"

/* The bearer check's cache: the last AM_AUTH_CACHE_ENTRIES store_cred_auth
 * results, by the SHA-256 of the credential (the only credential material
 * it holds, as the store does). An entry is used for at most
 * AM_AUTH_CACHE_TTL_MS, and not at all once store_auth_generation moved
 * (a revoking write in this process), so a revocation made elsewhere (the
 * revoke command, another replica) takes effect within that time and one
 * made here at once. Expiries are checked against the clock on every use.
 * Only found rows are kept: an unknown credential is one indexed lookup
 * every time and cannot evict anything but its own slot. Direct-mapped in
 * shards, each with its own lock held only for a copy. */
#define CACHE_SHARDS 16
#define CACHE_WAYS (AM_AUTH_CACHE_ENTRIES / CACHE_SHARDS)

struct cache_entry {
	bool used;
	uint8_t hash[AM_HASH_LEN];
	const void *owner; /* the config the entry was made under: one service */
	uint64_t generation;
	int64_t made_ms;
	struct store_auth auth;
};

static struct cache_shard {
	pthread_mutex_t mu;
	struct cache_entry e[CACHE_WAYS];
} cache[CACHE_SHARDS] = {
#define SHARD_INIT                                                                                 \
	{                                                                                          \
		.mu = PTHREAD_MUTEX_INITIALIZER                                                    \
	}
	SHARD_INIT, SHARD_INIT, SHARD_INIT, SHARD_INIT, SHARD_INIT, SHARD_INIT,
	SHARD_INIT, SHARD_INIT, SHARD_INIT, SHARD_INIT, SHARD_INIT, SHARD_INIT,
	SHARD_INIT, SHARD_INIT, SHARD_INIT, SHARD_INIT,
#undef SHARD_INIT
};

static int64_t
mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static struct cache_entry *
slot_of(const uint8_t hash[AM_HASH_LEN], struct cache_shard **shard)
{
	/* The hash is uniform: its bytes pick shard and slot. */
	*shard = &cache[hash[0] % CACHE_SHARDS];
	return &(*shard)->e[(((size_t)hash[1] << 8) | hash[2]) % CACHE_WAYS];
}

static bool
cache_get(const void *owner, const uint8_t hash[AM_HASH_LEN], struct store_auth *out)
{
	struct cache_shard *sh;
	struct cache_entry *en = slot_of(hash, &sh);
	uint64_t gen = store_auth_generation();
	int64_t now = mono_ms();
	bool hit;

	pthread_mutex_lock(&sh->mu);
	hit = en->used && en->owner == owner && en->generation == gen &&
	      now - en->made_ms < AM_AUTH_CACHE_TTL_MS && am_ct_equal(en->hash, hash, AM_HASH_LEN);
	if (hit)
		*out = en->auth;
	pthread_mutex_unlock(&sh->mu);
	return hit;
}

/* made_ms and gen are taken before the store read, so an entry never
 * outlives the bound counted from the moment its row was read. */
static void
cache_put(const void *owner, const uint8_t hash[AM_HASH_LEN], uint64_t gen, int64_t made_ms,
	  const struct store_auth *auth)
{
	struct cache_shard *sh;
	struct cache_entry *en = slot_of(hash, &sh);

	pthread_mutex_lock(&sh->mu);
	en->used = true;
	memcpy(en->hash, hash, AM_HASH_LEN);
	en->owner = owner;
	en->generation = gen;
	en->made_ms = made_ms;
	en->auth = *auth;
	pthread_mutex_unlock(&sh->mu);
}

/* The credential row of hash: from the cache, or one indexed lookup. */
static enum am_err
lookup(const struct flow_env *env, struct store *st, const uint8_t hash[AM_HASH_LEN], int64_t now,
       struct store_auth *out, struct am_error *e)
{
	uint64_t gen;
	int64_t made_ms;
	enum am_err rc;

	if (cache_get(env->cfg, hash, out))
		return AM_OK;
	gen = store_auth_generation();
	made_ms = mono_ms();
	if ((rc = store_cred_auth(st, hash, now, out, e)) == AM_OK)
		cache_put(env->cfg, hash, gen, made_ms, out);
	return rc;
}

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
	rc = lookup(env, st, hash, now, out, e);
	if (rc == AM_E_NOT_FOUND)
		return am_fail(e, AM_E_INVALID_TOKEN, "the credential is not valid");
	if (rc != AM_OK)
		return rc;
	/* The index found the row by hash; compare in constant time anyway so
	 * correctness never rests on the lookup's collation or encoding. */
	if (!am_ct_equal(hash, out->cred.hash, AM_HASH_LEN))
		return am_fail(e, AM_E_INVALID_TOKEN, "the credential is not valid");
	/* A cached row was live when read: its expiry is checked now. */
	if (out->cred.expires_at != 0 && now >= out->cred.expires_at)
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
