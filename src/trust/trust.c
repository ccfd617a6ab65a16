#include "trust/trust.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "core/clock.h"
#include "core/fetch.h"
#include "core/limits.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/str.h"

/* One provider's key set. mu guards the fields and is only ever held for
 * a few loads and stores: the fetch itself runs on the provider's
 * refresher thread with mu released, so a request never waits behind a
 * fetch to read the current set. A request that cannot be answered from
 * the current set (none yet, or its kid is unknown) waits on `done` for
 * the fetch it (or another request) started, at most AM_JWKS_WAIT_MS. */
struct cache {
	pthread_mutex_t mu;
	pthread_cond_t wake;	  /* the refresher: a fetch was asked for, or stop */
	pthread_cond_t done;	  /* requests: a fetch finished */
	struct jose_keyset *keys; /* NULL until a fetch succeeded */
	int64_t expires_at;	  /* when the cached set should be refreshed */
	int64_t last_fetch;	  /* last attempt, successful or not */
	bool last_failed;	  /* that attempt gave no usable set */
	unsigned long fetches;
	struct am_error fetch_err; /* why the last attempt failed */
	/* the refresher thread, started on the first fetch */
	const struct trust *t;
	/* Who this cache is for (name, issuer, key URL), copied from the
	 * provider when the slot was taken and never changed after: a reload never turns one
	 * provider's cache into another's, and the refresher needs no config pointer. */
	char name[64], issuer[256], jwks_uri[256];
	bool live; /* on the trust list now (under trust.mu) */
	pthread_t thread;
	bool started, stop;
	bool pending;	   /* a fetch was asked for and has not finished */
	int64_t fetch_now; /* the request time it was asked at */
};

/* Slots are taken for each (issuer, jwks_uri) ever on the trust list and
 * never given to another, so a request inside trust_keys when a reload
 * drops its provider still reads that provider's keys. A reload that
 * would need more slots than there are is refused (TRUST_SLOTS). */
#define TRUST_SLOTS (4 * AM_MAX_PROVIDERS)

struct trust {
	const struct am_config *cfg; /* the limits and outbound rules (not reloaded) */
	pthread_mutex_t mu;	     /* the slots' identity and live flags */
	size_t nslots;
	struct cache caches[TRUST_SLOTS];
};

static enum am_err fetch_jwks(const struct am_config *cfg, const struct cache *c,
			      struct jose_keyset **out, int64_t *max_age, struct am_error *e);

/* The refresher of one provider: runs the fetches requests ask for, one at
 * a time, and publishes each result under mu. */
static void *
refresher_main(void *arg)
{
	struct cache *c = arg;

	pthread_mutex_lock(&c->mu);
	while (!c->stop) {
		struct jose_keyset *fresh = NULL;
		struct am_error err = {0};
		int64_t max_age = 0, at;
		enum am_err rc;

		if (!c->pending) {
			pthread_cond_wait(&c->wake, &c->mu);
			continue;
		}
		at = c->fetch_now;
		pthread_mutex_unlock(&c->mu);
		rc = fetch_jwks(c->t->cfg, c, &fresh, &max_age, &err);
		am_metrics_inc(AM_M_JWKS_FETCHES, rc == AM_OK ? "ok" : "failed", NULL);
		pthread_mutex_lock(&c->mu);
		if (rc == AM_OK) {
			jose_keyset_release(c->keys);
			c->keys = fresh;
			c->expires_at = am_time_add(at, max_age);
			c->last_failed = false;
		} else {
			c->last_failed = true;
			c->fetch_err = err;
			if (c->keys != NULL)
				log_warn("jwks refresh failed provider=%s; keeping cached keys "
					 "stale=%llds",
					 c->name, (long long)(at - c->expires_at));
		}
		c->pending = false;
		pthread_cond_broadcast(&c->done);
	}
	pthread_mutex_unlock(&c->mu);
	return NULL;
}

/* Asks the refresher for a fetch (mu held), starting it if need be. */
static void
ask_fetch(struct trust *t, struct cache *c, const struct am_provider *p, int64_t now)
{
	c->last_fetch = now;
	c->fetches++;
	c->fetch_now = now;
	if (!c->started) {
		c->t = t;
		if (pthread_create(&c->thread, NULL, refresher_main, c) != 0) {
			log_error("jwks refresher could not start provider=%s", p->name);
			c->last_failed = true;
			am_fail(&c->fetch_err, AM_E_UNAVAILABLE, "no refresher thread");
			return;
		}
		c->started = true;
	}
	c->pending = true;
	pthread_cond_signal(&c->wake);
}

/* Waits (mu held) for the pending fetch, at most AM_JWKS_WAIT_MS; false on
 * timeout. The wait releases mu, so other requests go on reading. */
static bool
wait_fetch(struct cache *c)
{
	struct timespec until;

	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += AM_JWKS_WAIT_MS / 1000;
	until.tv_nsec += (long)(AM_JWKS_WAIT_MS % 1000) * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	while (c->pending) {
		if (pthread_cond_timedwait(&c->done, &c->mu, &until) == ETIMEDOUT)
			return !c->pending;
	}
	return true;
}

enum am_err
trust_new(const struct am_config *cfg, struct trust **out, struct am_error *e)
{
	struct trust *t = calloc(1, sizeof(*t));

	if (t == NULL)
		return am_fail(e, AM_E_INTERNAL, "out of memory");
	t->cfg = cfg;
	pthread_mutex_init(&t->mu, NULL);
	for (size_t i = 0; i < TRUST_SLOTS; i++) {
		pthread_mutex_init(&t->caches[i].mu, NULL);
		pthread_cond_init(&t->caches[i].wake, NULL);
		pthread_cond_init(&t->caches[i].done, NULL);
	}
	if (trust_reload(t, cfg, e) != AM_OK) {
		trust_free(t);
		return e->code;
	}
	*out = t;
	return AM_OK;
}

static struct cache *
slot_of(struct trust *t, const struct am_provider *p)
{
	for (size_t i = 0; i < t->nslots; i++) {
		const struct cache *c = &t->caches[i];

		if (strcmp(c->issuer, p->issuer) == 0 && strcmp(c->jwks_uri, p->jwks_uri) == 0 &&
		    strcmp(c->name, p->name) == 0)
			return &t->caches[i];
	}
	return NULL;
}

enum am_err
trust_reload(struct trust *t, const struct am_config *cfg, struct am_error *e)
{
	size_t fresh = 0;

	pthread_mutex_lock(&t->mu);
	for (size_t i = 0; i < cfg->nproviders; i++) {
		if (slot_of(t, &cfg->providers[i]) == NULL)
			fresh++;
	}
	if (t->nslots + fresh > TRUST_SLOTS) {
		pthread_mutex_unlock(&t->mu);
		return am_fail(e, AM_E_UNAVAILABLE,
			       "the trust list changed more than a reload can take (%d key sets "
			       "since start); restart the server",
			       TRUST_SLOTS);
	}
	for (size_t i = 0; i < t->nslots; i++)
		t->caches[i].live = false;
	for (size_t i = 0; i < cfg->nproviders; i++) {
		const struct am_provider *p = &cfg->providers[i];
		struct cache *c = slot_of(t, p);

		if (c == NULL) {
			c = &t->caches[t->nslots++];
			am_copy(c->issuer, sizeof(c->issuer), p->issuer);
			am_copy(c->jwks_uri, sizeof(c->jwks_uri), p->jwks_uri);
			am_copy(c->name, sizeof(c->name), p->name);
		}
		c->live = true;
	}
	pthread_mutex_unlock(&t->mu);
	return AM_OK;
}

void
trust_free(struct trust *t)
{
	if (t == NULL)
		return;
	for (size_t i = 0; i < TRUST_SLOTS; i++) {
		struct cache *c = &t->caches[i];

		/* A fetch in flight ends within its timeout (AM_FETCH_TIMEOUT_MS). */
		pthread_mutex_lock(&c->mu);
		c->stop = true;
		pthread_cond_signal(&c->wake);
		pthread_mutex_unlock(&c->mu);
		if (c->started)
			pthread_join(c->thread, NULL);
		jose_keyset_release(c->keys);
		pthread_cond_destroy(&c->wake);
		pthread_cond_destroy(&c->done);
		pthread_mutex_destroy(&c->mu);
	}
	pthread_mutex_destroy(&t->mu);
	free(t);
}

/* The cache of p, found by its issuer and key URL (p may belong to any
 * generation of the configuration); NULL when p is not on the list now. */
static struct cache *
cache_of(struct trust *t, const struct am_provider *p)
{
	struct cache *c;

	pthread_mutex_lock(&t->mu);
	c = slot_of(t, p);
	if (c != NULL && !c->live)
		c = NULL;
	pthread_mutex_unlock(&t->mu);
	return c;
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
fetch_jwks(const struct am_config *cfg, const struct cache *p, struct jose_keyset **out,
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

	/* A request that found p just before a reload removed it. */
	if (c == NULL)
		return am_fail(e, AM_E_INVALID_ISSUER,
			       "issuer %.100s is not a trusted provider here", p->issuer);
	pthread_mutex_lock(&c->mu);
	may_fetch = c->fetches == 0 || now - c->last_fetch >= t->cfg->jwks_refetch;
	want_fetch = c->keys == NULL || now >= c->expires_at || !jose_keyset_has(c->keys, kid);
	if (want_fetch && may_fetch && !c->pending)
		ask_fetch(t, c, p, now);
	/* A set that holds kid answers now, even past its max-age (within
	 * jwks_max_stale, below) while the refresh runs; only a request the
	 * current set cannot answer waits, and only for that one fetch. */
	if (c->pending && (c->keys == NULL || !jose_keyset_has(c->keys, kid)) && !wait_fetch(c)) {
		log_warn("jwks fetch still running after %dms provider=%s", AM_JWKS_WAIT_MS,
			 p->name);
		am_fail(&fetch_err, AM_E_UNAVAILABLE, "the key fetch is taking too long");
		rc = keys_unavailable(t, c, p, now, &fetch_err, e);
		pthread_mutex_unlock(&c->mu);
		return rc;
	}
	if (c->last_failed)
		fetch_err = c->fetch_err;
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
