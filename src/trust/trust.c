#include "trust/trust.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/clock.h"
#include "core/fetch.h"
#include "core/limits.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/str.h"

struct cache {
	pthread_mutex_t mu;
	struct jose_keyset *keys; /* NULL until a fetch succeeded */
	int64_t expires_at;	  /* when the cached set should be refreshed */
	int64_t last_fetch;	  /* last attempt, successful or not */
	bool last_failed;	  /* that attempt gave no usable set */
	unsigned long fetches;
};

struct trust {
	const struct am_config *cfg;
	struct cache caches[AM_MAX_PROVIDERS];
};

enum am_err
trust_new(const struct am_config *cfg, struct trust **out, struct am_error *e)
{
	struct trust *t = calloc(1, sizeof(*t));

	if (t == NULL)
		return am_fail(e, AM_E_INTERNAL, "out of memory");
	t->cfg = cfg;
	for (size_t i = 0; i < AM_MAX_PROVIDERS; i++)
		pthread_mutex_init(&t->caches[i].mu, NULL);
	*out = t;
	return AM_OK;
}

void
trust_free(struct trust *t)
{
	if (t == NULL)
		return;
	for (size_t i = 0; i < AM_MAX_PROVIDERS; i++) {
		jose_keyset_release(t->caches[i].keys);
		pthread_mutex_destroy(&t->caches[i].mu);
	}
	free(t);
}

static struct cache *
cache_of(struct trust *t, const struct am_provider *p)
{
	size_t i = (size_t)(p - t->cfg->providers);

	return i < t->cfg->nproviders ? &t->caches[i] : NULL;
}

struct fetch {
	int64_t max_age; /* -1: none given */
};

/* Cache-Control: max-age=N (no-store and no-cache count as 0). */
static size_t
on_header(char *data, size_t size, size_t nmemb, void *user)
{
	struct fetch *f = user;

	(void)am_fetch_max_age(data, size * nmemb, &f->max_age);
	return size * nmemb;
}

/* Fetches and parses p's JWKS; on AM_OK *out is a new set and *max_age the
 * clamped lifetime. */
static enum am_err
fetch_jwks(const struct am_config *cfg, const struct am_provider *p, struct jose_keyset **out,
	   int64_t *max_age, struct am_error *e)
{
	struct fetch f = {-1};
	struct am_fetch req = {
		.method = "GET",
		.url = p->jwks_uri,
		.max_bytes = TRUST_MAX_JWKS_BYTES,
		.keep_body = true,
		.allow = cfg->outbound_allow,
		.user_agent = "authmd-server",
		.on_header = on_header,
		.header_ctx = &f,
	};
	struct am_fetch_result res;
	enum am_err rc;

	if (am_fetch_run(&req, &res) != AM_OK || res.status != 200) {
		log_warn("jwks fetch failed provider=%s http=%ld: %s", p->name, res.status,
			 res.why[0] != '\0' ? res.why : "not 200");
		am_buf_free(&res.body);
		return am_fail(e, AM_E_INVALID_SIGNATURE,
			       "the keys of issuer %.100s could not be fetched; retry later",
			       p->issuer);
	}
	rc = jose_keyset_parse(res.body.data, res.body.len, out, e);
	am_buf_free(&res.body);
	if (rc != AM_OK) {
		log_warn("jwks unusable provider=%s: %s", p->name, e->detail);
		return rc;
	}
	*max_age = f.max_age < TRUST_MAX_AGE_FLOOR ? TRUST_MAX_AGE_FLOOR : f.max_age;
	if (*max_age > TRUST_MAX_AGE_CEILING)
		*max_age = TRUST_MAX_AGE_CEILING;
	log_info("jwks fetched provider=%s keys=%zu max_age=%lld", p->name, jose_keyset_count(*out),
		 (long long)*max_age);
	return AM_OK;
}

/* The answer when no usable set can be had: the provider (or the way to
 * it) is down, not the token bad, so 503 with the time until the next fetch
 * is allowed; AM_E_INTERNAL stays what it is. */
static enum am_err
keys_unavailable(const struct trust *t, const struct cache *c, const struct am_provider *p,
		 int64_t now, const struct am_error *fetch_err, struct am_error *e)
{
	int64_t wait = t->cfg->jwks_refetch - (now - c->last_fetch);

	if (fetch_err->code == AM_E_INTERNAL)
		return am_fail(e, AM_E_INTERNAL, "%s", fetch_err->detail);
	if (wait < 1)
		wait = 1;
	am_fail(e, AM_E_UNAVAILABLE,
		"the keys of issuer %.100s could not be fetched; retry in %llds", p->issuer,
		(long long)wait);
	if (e != NULL)
		e->retry_after = (long)wait;
	return AM_E_UNAVAILABLE;
}

enum am_err
trust_keys(struct trust *t, const struct am_provider *p, const char *kid, int64_t now,
	   struct jose_keyset **out, struct am_error *e)
{
	struct cache *c = cache_of(t, p);
	bool may_fetch, want_fetch;
	struct am_error fetch_err = {0};
	enum am_err rc = AM_OK;

	if (c == NULL)
		return am_fail(e, AM_E_INTERNAL, "provider not in the trust list");
	/* One fetch at a time per provider; others wait for its result (at
	 * most the fetch timeout) and then use it. */
	pthread_mutex_lock(&c->mu);
	may_fetch = c->fetches == 0 || now - c->last_fetch >= t->cfg->jwks_refetch;
	want_fetch = c->keys == NULL || now >= c->expires_at || !jose_keyset_has(c->keys, kid);
	if (want_fetch && may_fetch) {
		struct jose_keyset *fresh = NULL;
		int64_t max_age = 0;

		c->last_fetch = now;
		c->fetches++;
		bool fetched = fetch_jwks(t->cfg, p, &fresh, &max_age, &fetch_err) == AM_OK;

		am_metrics_inc(AM_M_JWKS_FETCHES, fetched ? "ok" : "failed", NULL); /* gate */
		if (fetched) {
			jose_keyset_release(c->keys);
			c->keys = fresh;
			c->expires_at = am_time_add(now, max_age);
			c->last_failed = false;
		} else {
			c->last_failed = true;
			if (c->keys != NULL)
				log_warn("jwks refresh failed provider=%s; keeping cached keys "
					 "stale=%llds",
					 p->name, (long long)(now - c->expires_at));
		}
	}
	/* Refreshes have failed for longer than the operator allows: the
	 * provider may have withdrawn these keys, so stop trusting them. */
	if (c->keys != NULL && now >= am_time_add(c->expires_at, t->cfg->jwks_max_stale)) {
		log_warn(
			"jwks dropped provider=%s: stale for %llds, more than jwks_max_stale=%llds",
			p->name, (long long)(now - c->expires_at),
			(long long)t->cfg->jwks_max_stale);
		jose_keyset_release(c->keys);
		c->keys = NULL;
	}
	/* No set, or the kid is unknown and the refetch that could have found
	 * it failed: nothing can be said about the token yet. */
	if (c->keys == NULL || (c->last_failed && !jose_keyset_has(c->keys, kid)))
		rc = keys_unavailable(t, c, p, now, &fetch_err, e);
	else
		*out = jose_keyset_retain(c->keys);
	pthread_mutex_unlock(&c->mu);
	return rc;
}

unsigned long
trust_fetch_count(struct trust *t, const struct am_provider *p)
{
	struct cache *c = cache_of(t, p);
	unsigned long n;

	if (c == NULL)
		return 0;
	pthread_mutex_lock(&c->mu);
	n = c->fetches;
	pthread_mutex_unlock(&c->mu);
	return n;
}
