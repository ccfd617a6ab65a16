#include "trust/cimd.h"

#include <jansson.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/clock.h"
#include "core/fetch.h"
#include "core/json.h"
#include "core/log.h"
#include "core/str.h"
#include "core/url.h"

/* One cached URL. A slot is free when url is empty; a slot being fetched
 * is never reused, so a waiter finds it again by url after waking. */
struct entry {
	char url[CIMD_URL_BYTES];
	bool fetching;
	int64_t expires_at;
	int64_t used; /* last lookup, for eviction */
	enum am_err code;
	char detail[sizeof(((struct am_error *)0)->detail)];
	struct cimd_client client;
	struct cimd_waiter *waiters; /* parked requests waiting for this fetch */
};

struct cimd {
	const struct am_config *cfg;
	pthread_mutex_t mu;
	pthread_cond_t done; /* broadcast when any fetch finishes (CLOCK_MONOTONIC) */
	struct entry *slots;
	size_t nslots;
	size_t blocked;	    /* requests fetching or waiting for a fetch now */
	size_t max_blocked; /* at most: one worker thread less than there are */
	unsigned long fetches;
	size_t running; /* fetch threads (cimd_resolve_nowait) not yet ended */
	size_t calling; /* ready callbacks running now */
	bool stopping;	/* cimd_stop ran */
};

enum am_err
cimd_new(const struct am_config *cfg, struct cimd **out, struct am_error *e)
{
	struct cimd *c = calloc(1, sizeof(*c));
	pthread_condattr_t ca;

	if (c == NULL)
		return am_fail(e, AM_E_INTERNAL, "out of memory");
	c->cfg = cfg;
	c->nslots = (size_t)cfg->cimd_cache_entries;
	c->max_blocked = cfg->threads > 1 ? (size_t)cfg->threads - 1 : 1;
	if ((c->slots = calloc(c->nslots, sizeof(*c->slots))) == NULL) {
		free(c);
		return am_fail(e, AM_E_INTERNAL, "out of memory");
	}
	pthread_mutex_init(&c->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&c->done, &ca);
	pthread_condattr_destroy(&ca);
	*out = c;
	return AM_OK;
}

void
cimd_free(struct cimd *c)
{
	if (c == NULL)
		return;
	/* Fetch threads end within their timeout; none may outlive c. */
	pthread_mutex_lock(&c->mu);
	while (c->running > 0 || c->calling > 0)
		pthread_cond_wait(&c->done, &c->mu);
	pthread_mutex_unlock(&c->mu);
	pthread_cond_destroy(&c->done);
	pthread_mutex_destroy(&c->mu);
	free(c->slots);
	free(c);
}

static bool
has_dot_segment(const char *url)
{
	const char *p = strstr(url, "://");

	for (p = p != NULL ? strchr(p + 3, '/') : NULL; p != NULL; p = strchr(p + 1, '/')) {
		size_t n = strcspn(p + 1, "/");

		if ((n == 1 && p[1] == '.') || (n == 2 && p[1] == '.' && p[2] == '.'))
			return true;
	}
	return false;
}

/* True when origin text o is one of the words of list. */
static bool
origin_listed(const char *list, const char *o)
{
	return am_word_in(list, o);
}

enum am_err
cimd_check_url(const struct am_provider *p, const char *url, struct am_error *e)
{
	struct am_url u, iss;
	char origin[CIMD_URL_BYTES];

	if (!p->cimd)
		return am_fail(e, AM_E_INVALID_CLIENT_ID,
			       "client_id %.100s is not accepted for this issuer (client metadata "
			       "documents are off for it here)",
			       url);
	if (strlen(url) >= CIMD_URL_BYTES || !am_url_parse(url, &u) || u.has_userinfo ||
	    u.has_query || u.has_fragment || strcmp(u.path, "/") == 0 || has_dot_segment(url))
		return am_fail(e, AM_E_INVALID_CLIENT_ID,
			       "client_id %.100s is neither the issuer nor a client metadata "
			       "document URL (https, with a path, no query, fragment or dot "
			       "segments)",
			       url);
	if (strcmp(u.scheme, "https") != 0 && !am_url_is_loopback(&u))
		return am_fail(
			e, AM_E_INVALID_CLIENT_ID,
			"client_id %.100s must be an https URL (plain http only on loopback)", url);
	if (am_url_parse(p->issuer, &iss) && am_url_same_origin(&u, &iss))
		return AM_OK;
	if (am_url_origin(&u, origin, sizeof(origin)) && origin_listed(p->cimd_origins, origin))
		return AM_OK;
	return am_fail(e, AM_E_INVALID_CLIENT_ID,
		       "client_id %.100s is not on the issuer's origin nor on one this service "
		       "allows for it",
		       url);
}

/* Cache-Control of the answer; -1 when none was given. */
static size_t
on_header(char *data, size_t size, size_t nmemb, void *user)
{
	(void)am_fetch_max_age(data, size * nmemb, user);
	return size * nmemb;
}

static bool
printable(const char *s)
{
	for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
		if (*p < 0x20 || *p == 0x7f)
			return false;
	}
	return true;
}

/* The checks on a fetched document (body of len bytes) that claims to be
 * url's. */
static enum am_err
check_document(const char *url, const char *body, size_t len, struct cimd_client *out,
	       struct am_error *e)
{
	const char *id = NULL, *name = NULL, *logo = NULL;
	json_t *doc = NULL;
	struct am_url lu;
	enum am_err rc;

	memset(out, 0, sizeof(*out));
	if (am_json_object(body, len, &doc, e) != AM_OK)
		return am_fail(e, AM_E_INVALID_CLIENT_ID,
			       "the client metadata document at %.100s is not one JSON object",
			       url);
	rc = AM_E_INVALID_CLIENT_ID;
	if (am_json_string(doc, "client_id", true, CIMD_URL_BYTES - 1, &id, e) != AM_OK ||
	    strcmp(id, url) != 0) {
		am_fail(e, rc,
			"the client metadata document at %.100s must have that URL as its "
			"client_id",
			url);
		goto out;
	}
	if (am_json_string(doc, "client_name", false, AM_MAX_CIMD_NAME_BYTES, &name, e) != AM_OK ||
	    (name != NULL && !printable(name))) {
		am_fail(e, rc,
			"the client metadata document at %.100s has a client_name that is not "
			"text of 1 to %d bytes",
			url, AM_MAX_CIMD_NAME_BYTES);
		goto out;
	}
	if (am_json_string(doc, "logo_uri", false, CIMD_URL_BYTES - 1, &logo, e) != AM_OK ||
	    (logo != NULL && (!am_url_parse(logo, &lu) || lu.has_userinfo ||
			      (strcmp(lu.scheme, "https") != 0 && !am_url_is_loopback(&lu))))) {
		am_fail(e, rc,
			"the client metadata document at %.100s has a logo_uri that is not an "
			"https URL",
			url);
		goto out;
	}
	/* A document anyone can fetch cannot hold a shared secret. */
	if (json_object_get(doc, "client_secret") != NULL) {
		am_fail(e, rc,
			"the client metadata document at %.100s must not carry a client_secret",
			url);
		goto out;
	}
	am_copy(out->client_id, sizeof(out->client_id), id);
	am_copy(out->client_name, sizeof(out->client_name), name != NULL ? name : "");
	am_copy(out->logo_uri, sizeof(out->logo_uri), logo != NULL ? logo : "");
	rc = AM_OK;
out:
	json_decref(doc);
	return rc;
}

/* Fetches and checks url's document; on AM_OK *max_age is the answer's
 * Cache-Control max-age clamped to the configured bounds. */
static enum am_err
fetch_document(const struct am_config *cfg, const char *url, struct cimd_client *out,
	       int64_t *max_age, struct am_error *e)
{
	static const char *const headers[] = {"Accept: application/json", NULL};
	int64_t age = -1;
	struct am_fetch req = {
		.method = "GET",
		.url = url,
		.headers = headers,
		.max_bytes = AM_MAX_CIMD_BYTES,
		.keep_body = true,
		.timeout_ms = (long)cfg->cimd_fetch_timeout * 1000,
		.allow = cfg->outbound_allow,
		.user_agent = "authmd-server",
		.on_header = on_header,
		.header_ctx = &age,
	};
	struct am_fetch_result res;
	enum am_err rc;

	rc = am_fetch_run(&req, &res);
	if (rc != AM_OK && res.too_large)
		rc = am_fail(e, AM_E_INVALID_CLIENT_ID,
			     "the client metadata document at %.100s is larger than %d KiB", url,
			     AM_MAX_CIMD_BYTES / 1024);
	else if (rc == AM_E_INVALID_REQUEST)
		rc = am_fail(e, AM_E_INVALID_CLIENT_ID, "client_id %.100s cannot be fetched: %s",
			     url, res.why);
	else if (rc != AM_OK)
		rc = am_fail(e, AM_E_UNAVAILABLE,
			     "the client metadata document at %.100s could not be fetched (%s); "
			     "retry later",
			     url, res.why);
	else if (res.status >= 300 && res.status < 400)
		rc = am_fail(e, AM_E_INVALID_CLIENT_ID,
			     "the client metadata document at %.100s answers with a redirect "
			     "(HTTP %ld), which is not followed; serve it at that URL",
			     url, res.status);
	else if (res.status >= 500 || res.status == 429)
		rc = am_fail(e, AM_E_UNAVAILABLE,
			     "the client metadata document at %.100s could not be fetched (HTTP "
			     "%ld); retry later",
			     url, res.status);
	else if (res.status != 200)
		rc = am_fail(e, AM_E_INVALID_CLIENT_ID,
			     "the client metadata document at %.100s answers HTTP %ld", url,
			     res.status);
	else
		rc = check_document(url, res.body.data, res.body.len, out, e);
	am_buf_free(&res.body);
	if (rc != AM_OK) {
		log_warn("cimd refused url=%s http=%ld code=%s", url, res.status, am_err_name(rc));
		return rc;
	}
	*max_age = age < cfg->cimd_cache_min ? cfg->cimd_cache_min : age;
	if (*max_age > cfg->cimd_cache_max)
		*max_age = cfg->cimd_cache_max;
	log_info("cimd fetched url=%s max_age=%lld", url, (long long)*max_age);
	return AM_OK;
}

static struct entry *
find(struct cimd *c, const char *url)
{
	for (size_t i = 0; i < c->nslots; i++) {
		if (c->slots[i].url[0] != '\0' && strcmp(c->slots[i].url, url) == 0)
			return &c->slots[i];
	}
	return NULL;
}

/* A slot for a new URL: a free one, else the least recently used of those
 * not being fetched; NULL when every slot is being fetched. */
static struct entry *
take_slot(struct cimd *c)
{
	struct entry *best = NULL;

	for (size_t i = 0; i < c->nslots; i++) {
		struct entry *s = &c->slots[i];

		if (s->url[0] == '\0')
			return s;
		if (!s->fetching && (best == NULL || s->used < best->used))
			best = s;
	}
	return best;
}

static enum am_err
from_entry(const struct entry *s, int64_t now, struct cimd_client *out, struct am_error *e)
{
	if (s->code == AM_OK) {
		*out = s->client;
		return AM_OK;
	}
	am_fail(e, s->code, "%s", s->detail);
	if (e != NULL && s->code == AM_E_UNAVAILABLE)
		e->retry_after = (long)(s->expires_at > now ? s->expires_at - now : 1);
	return s->code;
}

/* The answer while fetches are still running: retry after one budget. */
static enum am_err
busy(const struct cimd *c, struct am_error *e)
{
	if (e != NULL)
		e->retry_after = (long)c->cfg->cimd_fetch_timeout;
	return AM_E_UNAVAILABLE;
}

/* Called with the lock held; releases it. */
static enum am_err
too_many_blocked(struct cimd *c, struct am_error *e)
{
	pthread_mutex_unlock(&c->mu);
	log_warn("cimd busy: %zu requests already wait on document fetches", c->max_blocked);
	am_fail(e, AM_E_UNAVAILABLE,
		"too many client metadata documents are being fetched; retry later");
	return busy(c, e);
}

static void
deadline_in(struct timespec *ts, int64_t secs)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_sec += (time_t)secs;
}

enum am_err
cimd_resolve(struct cimd *c, const char *url, int64_t now, struct cimd_client *out,
	     struct am_error *e)
{
	struct am_error fe = {0};
	struct cimd_client got;
	struct timespec until;
	int64_t max_age = 0;
	struct entry *s;
	enum am_err rc;

	if (strlen(url) >= CIMD_URL_BYTES)
		return am_fail(e, AM_E_INVALID_CLIENT_ID, "client_id is too long");
	/* Waiting for another request's fetch is bounded by that fetch's own
	 * budget and a second. */
	deadline_in(&until, c->cfg->cimd_fetch_timeout + 1);
	pthread_mutex_lock(&c->mu);
	while ((s = find(c, url)) != NULL && s->fetching) {
		int w;

		if (c->blocked >= c->max_blocked)
			return too_many_blocked(c, e);
		c->blocked++;
		w = pthread_cond_timedwait(&c->done, &c->mu, &until);
		c->blocked--;
		if (w != 0 && (s = find(c, url)) != NULL && s->fetching) {
			pthread_mutex_unlock(&c->mu);
			am_fail(e, AM_E_UNAVAILABLE,
				"the client metadata document at %.100s is still being fetched; "
				"retry later",
				url);
			return busy(c, e);
		}
	}
	if (s != NULL && now < s->expires_at) {
		s->used = now;
		rc = from_entry(s, now, out, e);
		pthread_mutex_unlock(&c->mu);
		return rc;
	}
	if (c->blocked >= c->max_blocked)
		return too_many_blocked(c, e);
	if (s == NULL && (s = take_slot(c)) == NULL) {
		pthread_mutex_unlock(&c->mu);
		am_fail(e, AM_E_UNAVAILABLE,
			"too many client metadata documents are being fetched; retry later");
		return busy(c, e);
	}
	memset(s, 0, sizeof(*s));
	am_copy(s->url, sizeof(s->url), url);
	s->fetching = true;
	s->used = now;
	c->fetches++;
	c->blocked++;
	pthread_mutex_unlock(&c->mu);

	/* No lock held: a slow host delays only the requests that name it. */
	rc = fetch_document(c->cfg, url, &got, &max_age, &fe);

	pthread_mutex_lock(&c->mu);
	s->fetching = false;
	c->blocked--;
	s->code = rc;
	if (rc == AM_OK) {
		s->client = got;
		s->expires_at = am_time_add(now, max_age);
	} else {
		am_copy(s->detail, sizeof(s->detail), fe.detail);
		s->expires_at = am_time_add(now, c->cfg->cimd_negative_cache);
	}
	rc = from_entry(s, now, out, e);
	pthread_cond_broadcast(&c->done);
	pthread_mutex_unlock(&c->mu);
	return rc;
}

/* Records a fetch's outcome in s (lock held) and wakes every waiter. */
static void
store_outcome(struct cimd *c, struct entry *s, enum am_err rc, const struct cimd_client *got,
	      const struct am_error *fe, int64_t now, int64_t max_age)
{
	s->fetching = false;
	s->code = rc;
	if (rc == AM_OK) {
		s->client = *got;
		s->expires_at = am_time_add(now, max_age);
	} else {
		am_copy(s->detail, sizeof(s->detail), fe->detail);
		s->expires_at = am_time_add(now, c->cfg->cimd_negative_cache);
	}
	pthread_cond_broadcast(&c->done);
}

/* Calls each waiter of list; the lock is not held, c->calling counts us. */
static void
call_waiters(struct cimd_waiter *w)
{
	while (w != NULL) {
		struct cimd_waiter *next = w->next; /* ready may free w */

		w->ready(w->arg);
		w = next;
	}
}

struct fetch_job {
	struct cimd *c;
	struct entry *s;
	char url[CIMD_URL_BYTES];
	int64_t now;
};

static void *
fetch_thread(void *arg)
{
	struct fetch_job *j = arg;
	struct cimd *c = j->c;
	struct am_error fe = {0};
	struct cimd_client got;
	struct cimd_waiter *w;
	int64_t max_age = 0;
	enum am_err rc;

	rc = fetch_document(c->cfg, j->url, &got, &max_age, &fe);
	pthread_mutex_lock(&c->mu);
	store_outcome(c, j->s, rc, &got, &fe, j->now, max_age);
	w = j->s->waiters;
	j->s->waiters = NULL;
	c->calling++;
	pthread_mutex_unlock(&c->mu);
	call_waiters(w);
	pthread_mutex_lock(&c->mu);
	c->calling--;
	c->running--;
	pthread_cond_broadcast(&c->done);
	pthread_mutex_unlock(&c->mu);
	free(j);
	return NULL;
}

/* Starts s's fetch of url on a thread of its own (lock held). */
static bool
start_fetch(struct cimd *c, struct entry *s, const char *url, int64_t now)
{
	struct fetch_job *j = calloc(1, sizeof(*j));
	pthread_attr_t attr;
	pthread_t t;
	int err;

	if (j == NULL)
		return false;
	j->c = c;
	j->s = s;
	j->now = now;
	am_copy(j->url, sizeof(j->url), url);
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	err = pthread_create(&t, &attr, fetch_thread, j);
	pthread_attr_destroy(&attr);
	if (err != 0) {
		free(j);
		return false;
	}
	c->running++;
	return true;
}

enum am_err
cimd_resolve_nowait(struct cimd *c, const char *url, int64_t now, struct cimd_client *out,
		    struct cimd_waiter *w, bool *pending, struct am_error *e)
{
	struct entry *s;
	enum am_err rc;

	*pending = false;
	if (strlen(url) >= CIMD_URL_BYTES)
		return am_fail(e, AM_E_INVALID_CLIENT_ID, "client_id is too long");
	pthread_mutex_lock(&c->mu);
	s = find(c, url);
	if (s != NULL && !s->fetching && now < s->expires_at) {
		s->used = now;
		rc = from_entry(s, now, out, e);
		pthread_mutex_unlock(&c->mu);
		return rc;
	}
	if (w == NULL || c->stopping) {
		pthread_mutex_unlock(&c->mu);
		am_fail(e, AM_E_UNAVAILABLE,
			c->stopping ? "the service is stopping; retry"
				    : "the client metadata document at %.100s is still being "
				      "fetched; retry later",
			url);
		return busy(c, e);
	}
	if (s != NULL && s->fetching) { /* another request's fetch: wait for it */
		w->next = s->waiters;
		s->waiters = w;
		*pending = true;
		pthread_mutex_unlock(&c->mu);
		return AM_OK;
	}
	if (c->running >= CIMD_MAX_FETCHING || (s == NULL && (s = take_slot(c)) == NULL)) {
		pthread_mutex_unlock(&c->mu);
		log_warn("cimd busy: %d document fetches running", CIMD_MAX_FETCHING);
		am_fail(e, AM_E_UNAVAILABLE,
			"too many client metadata documents are being fetched; retry later");
		return busy(c, e);
	}
	memset(s, 0, sizeof(*s));
	am_copy(s->url, sizeof(s->url), url);
	s->fetching = true;
	s->used = now;
	if (!start_fetch(c, s, url, now)) {
		memset(s, 0, sizeof(*s)); /* the slot is free again */
		pthread_mutex_unlock(&c->mu);
		am_fail(e, AM_E_UNAVAILABLE, "cannot fetch the client metadata document; retry");
		return busy(c, e);
	}
	c->fetches++;
	w->next = NULL;
	s->waiters = w;
	*pending = true;
	pthread_mutex_unlock(&c->mu);
	return AM_OK;
}

void
cimd_stop(struct cimd *c)
{
	struct cimd_waiter *all = NULL;

	if (c == NULL)
		return;
	pthread_mutex_lock(&c->mu);
	c->stopping = true;
	for (size_t i = 0; i < c->nslots; i++) {
		struct cimd_waiter *w = c->slots[i].waiters;

		c->slots[i].waiters = NULL;
		while (w != NULL) {
			struct cimd_waiter *next = w->next;

			w->next = all;
			all = w;
			w = next;
		}
	}
	c->calling++;
	pthread_mutex_unlock(&c->mu);
	call_waiters(all);
	pthread_mutex_lock(&c->mu);
	c->calling--;
	while (c->calling > 0)
		pthread_cond_wait(&c->done, &c->mu);
	pthread_mutex_unlock(&c->mu);
}

unsigned long
cimd_fetch_count(struct cimd *c)
{
	unsigned long n;

	pthread_mutex_lock(&c->mu);
	n = c->fetches;
	pthread_mutex_unlock(&c->mu);
	return n;
}
