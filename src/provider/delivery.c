/* Delivery of revocations, as a logout token (v0.1 revocation_uri) or a
 * Security Event Token (v0.6 events_endpoint, RFC 8935 push): a worker
 * drains the deliveries table. A 2xx
 * answer is delivered; a 4xx is final (the service refused it); anything
 * else (no connection, timeout, 5xx) is retried with exponential backoff
 * and jitter until [revocation] max_attempts. The queue is in the store, so
 * a restart of the provider loses nothing. */
#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/clock.h"
#include "core/fetch.h"
#include "core/limits.h"
#include "core/log.h"
#include "core/protocol.h"
#include "core/str.h"
#include "provider/provider.h"

#define DUE_BATCH 16
#define IDLE_WAKE_S 5 /* re-check the queue at least this often */

/* POSTs token to url under the outbound policy (core/fetch.h); *status
 * gets the HTTP status (0 if none), err what went wrong. The answer's body
 * is never kept: err says only "http 403" or why no answer came, because
 * the grant's owner reads it back in GET /grants. */
static void
post_token(const struct prov_config *c, const char *url, enum delivery_format format,
	   const char *token, long *status, char *err, size_t errcap)
{
	static const char *const logout[] = {"Content-Type: " AM_MEDIA_LOGOUT_JWT, NULL};
	/* RFC 8935 2.1 */
	static const char *const set[] = {"Content-Type: " AM_MEDIA_SET_JWT,
					  "Accept: application/json", NULL};
	const char *const *headers = format == FORMAT_SET ? set : logout;
	struct am_fetch f = {
		.method = "POST",
		.url = url,
		.headers = headers,
		.body = token,
		.max_bytes = AM_MAX_DELIVERY_ANSWER_BYTES,
		.keep_body = false,
		.timeout_ms = 2L * AM_FETCH_TIMEOUT_MS,
		.allow = c->outbound_allow,
		.user_agent = "authmd-provider",
	};
	struct am_fetch_result r;

	err[0] = '\0';
	if (am_fetch_run(&f, &r) != AM_OK)
		snprintf(err, errcap, "%s", r.why);
	else if (r.status < 200 || r.status >= 300)
		snprintf(err, errcap, "http %ld", r.status);
	*status = r.status;
	am_buf_free(&r.body);
}

/* base * 2^(attempt-1), capped, times a jitter in [0.5, 1.5). */
static int64_t
backoff(const struct prov_config *c, int64_t attempt)
{
	int64_t d = c->retry_base;
	unsigned char r = 128;

	for (int64_t i = 1; i < attempt && d < c->retry_max; i++)
		d *= 2;
	if (d > c->retry_max)
		d = c->retry_max;
	if (RAND_bytes(&r, 1) != 1)
		r = 128;
	d = d * (128 + r) / 256;
	return d > 0 ? d : 1;
}

static void
attempt(struct prov_app *a, struct pstore *ps, struct prov_delivery *d)
{
	const struct prov_config *c = a->cfg;
	struct am_error e = {0};
	char *token = NULL, err[256];
	int64_t now;
	long status = 0;

	const char *what = d->format == FORMAT_SET ? "SET" : "logout token";
	enum am_err rc = d->format == FORMAT_SET
				 ? prov_set_token(a, ps, d->sub, d->aud, &token, &e)
				 : prov_logout_token(a, ps, d->sub, d->aud, &token, &e);

	if (rc != AM_OK) {
		snprintf(err, sizeof(err), "cannot mint the %s: %s", what, e.detail);
	} else {
		post_token(c, d->url, d->format, token, &status, err, sizeof(err));
		OPENSSL_cleanse(token, strlen(token));
		free(token);
	}
	now = am_clock_now(NULL);
	d->attempts++;
	d->http_status = status;
	am_copy(d->last_error, sizeof(d->last_error), err);
	if (status >= 200 && status < 300) {
		d->status = DELIVERY_DELIVERED;
		log_info("%s delivered id=%s grant=%s attempts=%lld", what, d->id, d->grant_id,
			 (long long)d->attempts);
	} else if (status >= 400 && status < 500) {
		d->status = DELIVERY_FAILED;
		log_warn("%s refused id=%s grant=%s url=%s: %s (final)", what, d->id, d->grant_id,
			 d->url, err);
	} else if (d->attempts >= c->retry_max_attempts) {
		d->status = DELIVERY_FAILED;
		log_error("%s undeliverable id=%s grant=%s url=%s after %lld attempts: %s", what,
			  d->id, d->grant_id, d->url, (long long)d->attempts, err);
	} else {
		d->next_at = now + backoff(c, d->attempts);
		log_warn("%s delivery failed id=%s attempt=%lld retry_in=%llds: %s", what, d->id,
			 (long long)d->attempts, (long long)(d->next_at - now), err);
	}
	if (pstore_delivery_update(ps, d, now, &e) != AM_OK)
		log_error("cannot record the delivery id=%s: %s", d->id, e.detail);
}

static void *
worker(void *arg)
{
	struct prov_app *a = arg;

	pthread_mutex_lock(&a->mu);
	while (!a->stop) {
		struct prov_delivery due[DUE_BATCH];
		struct am_error e = {0};
		struct pstore *ps;
		struct timespec until;
		int64_t next = 0, wait, now = am_clock_now(NULL);
		size_t n = 0;

		a->wake = false;
		pthread_mutex_unlock(&a->mu);
		if (prov_store(a, &ps, &e) == AM_OK &&
		    pstore_deliveries_due(ps, now, due, DUE_BATCH, &n, &e) == AM_OK) {
			for (size_t i = 0; i < n; i++)
				attempt(a, ps, &due[i]);
			if (pstore_delivery_next(ps, &next, &e) != AM_OK)
				next = 0;
		}
		pthread_mutex_lock(&a->mu);
		if (n == DUE_BATCH || a->stop)
			continue;
		now = am_clock_now(NULL);
		wait = next != 0 && next - now < IDLE_WAKE_S ? next - now : IDLE_WAKE_S;
		if (wait <= 0)
			continue; /* something is due already */
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += wait;
		while (!a->stop && !a->wake &&
		       pthread_cond_timedwait(&a->cv, &a->mu, &until) != ETIMEDOUT) {
		}
	}
	pthread_mutex_unlock(&a->mu);
	return NULL;
}

enum am_err
prov_delivery_start(struct prov_app *a, struct am_error *e)
{
	if (pthread_create(&a->worker, NULL, worker, a) != 0)
		return am_fail(e, AM_E_INTERNAL, "cannot start the delivery worker");
	return AM_OK;
}

void
prov_delivery_kick(struct prov_app *a)
{
	pthread_mutex_lock(&a->mu);
	a->wake = true;
	pthread_cond_signal(&a->cv);
	pthread_mutex_unlock(&a->mu);
}

void
prov_delivery_stop(struct prov_app *a)
{
	pthread_mutex_lock(&a->mu);
	a->stop = true;
	pthread_cond_signal(&a->cv);
	pthread_mutex_unlock(&a->mu);
	pthread_join(a->worker, NULL);
}
