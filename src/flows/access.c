/* The resource gate and the registration rate limits: the two checks that
 * run before any work is done for a request. */
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "core/log.h"
#include "core/metrics.h"
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

/* The credential row of k: from the cache (by hash), or one lookup, by
 * primary key for a token that names its row. */
static enum am_err
lookup(const struct flow_env *env, struct store *st, const struct store_secret *k, int64_t now,
       struct store_auth *out, struct am_error *e)
{
	uint64_t gen;
	int64_t made_ms;
	enum am_err rc;

	if (cache_get(env->cfg, k->hash, out))
		return AM_OK;
	gen = store_auth_generation();
	made_ms = mono_ms();
	if ((rc = store_cred_auth(st, k, now, out, e)) == AM_OK)
		cache_put(env->cfg, k->hash, gen, made_ms, out);
	return rc;
}

enum am_err
flow_authenticate(const struct flow_env *env, struct store *st, const char *bearer,
		  struct store_auth *out, struct am_error *e)
{
	struct store_secret k;
	int64_t now = flow_now(env);
	enum am_err rc;

	if (bearer == NULL || bearer[0] == '\0' || strlen(bearer) > AM_MAX_TOKEN_BYTES)
		return am_fail(e, AM_E_INVALID_TOKEN, "a valid bearer credential is required");
	flow_secret_key(bearer, "crd_", &k);
	rc = lookup(env, st, &k, now, out, e);
	if (rc == AM_E_NOT_FOUND)
		return am_fail(e, AM_E_INVALID_TOKEN, "the credential is not valid");
	if (rc != AM_OK)
		return rc;
	/* The lookup matched the hash already; compare in constant time
	 * anyway so correctness never rests on its collation or encoding. */
	if (!am_ct_equal(k.hash, out->cred.hash, AM_HASH_LEN))
		return am_fail(e, AM_E_INVALID_TOKEN, "the credential is not valid");
	/* v0.6 (RFC 8707): a token issued for one resource is refused by the
	 * gate of any other, even one sharing this store. */
	if (out->cred.resource[0] != '\0' && strcmp(out->cred.resource, env->cfg->resource) != 0)
		return am_fail(e, AM_E_INVALID_TOKEN, "the credential is for another resource");
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
	am_metrics_inc(AM_M_RATE_LIMITED, kind, NULL);
	am_fail(e, AM_E_RATE_LIMITED, "too many %s registrations %s; retry in %llds", kind, refused,
		(long long)*retry_after);
	if (e != NULL)
		e->retry_after = (long)*retry_after;
	return AM_E_RATE_LIMITED;
}

/* ---- the gate: route policy, introspection, RFC 7009 ---- */

static int
hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static bool
unreserved(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '.' || c == '_' || c == '~';
}

enum am_err
flow_gate_path(const char *target, char *out, size_t cap, struct am_error *e)
{
	char dec[AM_MAX_URL_BYTES + 1];
	size_t n = 0, o = 0;
	const char *p;

	if (target == NULL || target[0] != '/')
		return am_fail(e, AM_E_INVALID_REQUEST, "the original URI must start with /");
	/* Pass 1: escapes and forbidden bytes, up to the query. */
	for (p = target; *p != '\0' && *p != '?' && *p != '#'; p++) {
		unsigned char c = (unsigned char)*p;

		if (n + 3 >= sizeof(dec))
			return am_fail(e, AM_E_INVALID_REQUEST, "the original URI is too long");
		if (c < 0x21 || c == 0x7f || c == '\\' || c == ';')
			return am_fail(e, AM_E_INVALID_REQUEST,
				       "the original URI has a character the gate refuses "
				       "(control, space, backslash or ;)");
		if (c != '%') {
			dec[n++] = (char)c;
			continue;
		}
		int hi = hexval(p[1]), lo = hi < 0 ? -1 : hexval(p[2]);

		if (lo < 0)
			return am_fail(e, AM_E_INVALID_REQUEST,
				       "the original URI has a bad %% escape");
		c = (unsigned char)(hi * 16 + lo);
		if (c < 0x20 || c == 0x7f || c == '/' || c == '\\' || c == ';')
			return am_fail(e, AM_E_INVALID_REQUEST,
				       "the original URI encodes a separator or control character");
		if (unreserved(c)) {
			dec[n++] = (char)c;
		} else {
			dec[n++] = '%';
			dec[n++] = "0123456789ABCDEF"[c >> 4];
			dec[n++] = "0123456789ABCDEF"[c & 15];
		}
		p += 2;
	}
	dec[n] = '\0';
	/* Pass 2: segments, RFC 3986 remove_dot_segments plus merged slashes. */
	if (cap < 2)
		return am_fail(e, AM_E_INVALID_REQUEST, "the original URI is too long");
	out[o++] = '/';
	for (size_t i = 1; i <= n;) {
		size_t j = i, len;

		while (j < n && dec[j] != '/')
			j++;
		len = j - i;
		if (len == 0 || (len == 1 && dec[i] == '.')) {
			/* "//" or "/./": nothing */
		} else if (len == 2 && dec[i] == '.' && dec[i + 1] == '.') {
			if (o == 1)
				return am_fail(e, AM_E_INVALID_REQUEST,
					       "the original URI climbs above the root");
			o--; /* the slash after the last segment */
			while (o > 0 && out[o - 1] != '/')
				o--;
		} else {
			if (o + len + 1 >= cap)
				return am_fail(e, AM_E_INVALID_REQUEST,
					       "the original URI is too long");
			memcpy(out + o, dec + i, len);
			o += len;
			if (j < n)
				out[o++] = '/';
		}
		if (j >= n) {
			/* A final "." or ".." names a directory: keep its slash. */
			break;
		}
		i = j + 1;
		if (i == n)
			break; /* a trailing slash, already written */
	}
	out[o] = '\0';
	return AM_OK;
}

/* Segment-wise prefix: "/api/" covers "/api/x"; "/api" covers "/api" and
 * "/api/x" but not "/apix". */
static bool
covers(const char *prefix, const char *path)
{
	size_t pl = strlen(prefix);

	if (strncmp(path, prefix, pl) != 0)
		return false;
	return pl == 0 || prefix[pl - 1] == '/' || path[pl] == '\0' || path[pl] == '/';
}

const struct am_route *
flow_route_find(const struct am_config *cfg, const char *method, const char *path,
		bool *method_refused)
{
	const struct am_route *named = NULL, *all = NULL;
	size_t best = 0;
	bool any = false;

	*method_refused = false;
	for (size_t i = 0; i < cfg->nroutes; i++) {
		const struct am_route *r = &cfg->routes[i];
		size_t len = strlen(r->path);

		if (!covers(r->path, path) || (any && len < best))
			continue;
		if (!any || len > best) {
			named = all = NULL;
			best = len;
			any = true;
		}
		if (r->methods[0] == '\0')
			all = r;
		else if (am_word_in(r->methods, method))
			named = r;
	}
	if (named != NULL)
		return named;
	if (all != NULL)
		return all;
	*method_refused = any;
	return NULL;
}

static bool
method_ok(const char *m)
{
	size_t n = m != NULL ? strlen(m) : 0;

	if (n == 0 || n > 16)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (m[i] < 'A' || m[i] > 'Z')
			return false;
	}
	return true;
}

/* The first scope of need missing from have, into miss; false if none. */
static bool
missing_scope(const char *need, const char *have, char *miss, size_t cap)
{
	char copy[AM_CFG_STR], *save = NULL;

	snprintf(copy, sizeof(copy), "%s", need);
	for (char *t = strtok_r(copy, " ", &save); t != NULL; t = strtok_r(NULL, " ", &save)) {
		if (!am_scope_in(have, t)) {
			snprintf(miss, cap, "%s", t);
			return true;
		}
	}
	return false;
}

enum am_err
flow_gate_check(const struct flow_env *env, struct store *st, const char *method,
		const char *target, const char *bearer, struct gate_result *out, struct am_error *e)
{
	char path[AM_MAX_URL_BYTES + 1], miss[128];
	const struct am_route *route;
	struct store_auth auth;
	bool refused;
	enum am_err rc;

	out->route = NULL;
	if (!method_ok(method))
		return am_fail(e, AM_E_INVALID_REQUEST, "the original method is not a method name");
	if ((rc = flow_gate_path(target, path, sizeof(path), e)) != AM_OK)
		return rc;
	route = flow_route_find(env->cfg, method, path, &refused);
	if (route == NULL && (refused || strcmp(env->cfg->gate_default, "authenticated") != 0))
		return am_fail(e, AM_E_ACCESS_DENIED, "no route of the access policy allows %s %s",
			       method, refused ? "with this method" : "on this path");
	out->route = route;
	if (bearer == NULL)
		return am_fail(e, AM_E_INVALID_TOKEN,
			       "send a credential as Authorization: Bearer <credential>; see "
			       "resource_metadata in WWW-Authenticate to get one");
	if ((rc = flow_authenticate(env, st, bearer, &auth, e)) != AM_OK)
		return rc;
	if (route != NULL && missing_scope(route->scope, auth.cred.scopes, miss, sizeof(miss))) {
		OPENSSL_cleanse(&auth, sizeof(auth));
		return am_fail(e, AM_E_INSUFFICIENT_SCOPE,
			       "this request needs the %s scope; claim the registration to get it",
			       miss);
	}
	out->auth = auth;
	return AM_OK;
}

const struct am_introspection_client *
flow_introspection_client(const struct am_config *cfg, const char *name, const char *secret)
{
	static const uint8_t dummy[AM_HASH_LEN] = {0};
	const struct am_introspection_client *hit = NULL;
	uint8_t hash[AM_HASH_LEN];
	bool ok;

	if (name == NULL || secret == NULL)
		return NULL;
	am_sha256_str(secret, hash);
	for (size_t i = 0; i < cfg->nintrospection_clients; i++) {
		if (strcmp(cfg->introspection_clients[i].name, name) == 0)
			hit = &cfg->introspection_clients[i];
	}
	/* One compare either way, so timing tells nothing about which names
	 * exist. */
	ok = am_ct_equal(hash, hit != NULL ? hit->secret_hash : dummy, AM_HASH_LEN);
	OPENSSL_cleanse(hash, sizeof(hash));
	return ok && hit != NULL ? hit : NULL;
}

enum am_err
flow_introspect(const struct flow_env *env, struct store *st, const char *token, bool *active,
		struct store_auth *auth, struct am_error *e)
{
	struct store_auth a;
	enum am_err rc;

	*active = false;
	rc = flow_authenticate(env, st, token, &a, e);
	if (rc == AM_E_INVALID_TOKEN)
		return AM_OK;
	if (rc != AM_OK)
		return rc;
	*auth = a;
	*active = true;
	return AM_OK;
}
