#include "trust/trust.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/limits.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/str.h"

struct cache {
	pthread_mutex_t mu;
	struct jose_keyset *keys; /* NULL until a fetch succeeded */
	int64_t expires_at;	  /* when the cached set should be refreshed */
	int64_t last_fetch;	  /* last attempt, successful or not */
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
	struct am_buf body;
	bool too_big;
	int64_t max_age; /* -1: none given */
};

static size_t
on_body(char *data, size_t size, size_t nmemb, void *user)
{
	struct fetch *f = user;
	size_t n = size * nmemb;

	if (f->body.len + n > TRUST_MAX_JWKS_BYTES) {
		f->too_big = true;
		return 0; /* aborts the transfer */
	}
	am_buf_add(&f->body, data, n);
	return n;
}

/* Cache-Control: max-age=N (no-store and no-cache count as 0). */
static size_t
on_header(char *data, size_t size, size_t nmemb, void *user)
{
	struct fetch *f = user;
	size_t n = size * nmemb;
	char line[512];
	char *p;

	if (n >= sizeof(line) || strncasecmp(data, "cache-control:", 14) != 0)
		return n;
	memcpy(line, data, n);
	line[n] = '\0';
	for (p = line; *p != '\0'; p++)
		*p = (char)((*p >= 'A' && *p <= 'Z') ? *p + 32 : *p);
	if (strstr(line, "no-store") != NULL || strstr(line, "no-cache") != NULL)
		f->max_age = 0;
	else if ((p = strstr(line, "max-age=")) != NULL)
		f->max_age = strtoll(p + 8, NULL, 10);
	return n;
}

/* Fetches and parses p's JWKS; on AM_OK *out is a new set and *max_age the
 * clamped lifetime. */
static enum am_err
fetch_jwks(const struct am_provider *p, struct jose_keyset **out, int64_t *max_age,
	   struct am_error *e)
{
	struct fetch f = {{0}, false, -1};
	CURL *c = curl_easy_init();
	CURLcode res;
	long status = 0;
	enum am_err rc;

	if (c == NULL)
		return am_fail(e, AM_E_INTERNAL, "out of memory");
	curl_easy_setopt(c, CURLOPT_URL, p->jwks_uri);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)AM_FETCH_TIMEOUT_MS);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)AM_FETCH_TIMEOUT_MS);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, &f);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, &f);
	curl_easy_setopt(c, CURLOPT_USERAGENT, "authmd-server");
	res = curl_easy_perform(c);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_cleanup(c);
	if (res != CURLE_OK || status != 200) {
		log_warn("jwks fetch failed provider=%s http=%ld curl=\"%s\"%s", p->name, status,
			 curl_easy_strerror(res), f.too_big ? " (document too large)" : "");
		am_buf_free(&f.body);
		return am_fail(e, AM_E_INVALID_SIGNATURE,
			       "the keys of issuer %.100s could not be fetched; retry later",
			       p->issuer);
	}
	rc = jose_keyset_parse(f.body.data, f.body.len, out, e);
	am_buf_free(&f.body);
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
		bool fetched = fetch_jwks(p, &fresh, &max_age, &fetch_err) == AM_OK;

		am_metrics_inc(AM_M_JWKS_FETCHES, fetched ? "ok" : "failed", NULL); /* gate */
		if (fetched) {
			jose_keyset_release(c->keys);
			c->keys = fresh;
			c->expires_at = now + max_age;
		} else if (c->keys != NULL) {
			log_warn("jwks refresh failed provider=%s; keeping cached keys", p->name);
		}
	}
	if (c->keys == NULL) {
		if (fetch_err.code != AM_OK)
			rc = am_fail(e, fetch_err.code, "%s", fetch_err.detail);
		else
			rc = am_fail(e, AM_E_INVALID_SIGNATURE,
				     "the keys of issuer %.100s could not be fetched; retry later",
				     p->issuer);
	} else {
		*out = jose_keyset_retain(c->keys);
	}
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
