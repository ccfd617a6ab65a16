/* The mail worker: one thread that sends the durable mail queue (the
 * store's mail_queue rows, written by the flows inside the transaction of
 * the claim attempt they belong to). Nothing on a request path waits for
 * it: the request only commits the row and kicks the worker.
 *
 * A mail is tried at once; a temporary failure (no connection, timeout,
 * SMTP 4xx, an outbox write error) is retried after mail_backoff; a
 * permanent one (SMTP 5xx) is recorded: the row keeps status failed
 * without its message, a claim.mail_failed audit event is written, and the
 * attempt (whose link never left) is deleted, so that it counts against no
 * claim-mail limit and the agent's next /claim mails a fresh link. A mail
 * still unsent when its attempt expires is given up the same way (its link
 * no longer works). Every other counted attempt gets its mail, superseded
 * or not, exactly as when mail was sent inline. Rows outlive restarts, so a kill -9
 * between the commit and the send loses no mail (it may, rarely, send one
 * twice: delivery is at least once). */
#include <errno.h>
#include <jansson.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/log.h"
#include "mail/mail.h"
#include "mail/worker.h"
#include "store/store.h"

struct mail_worker {
	struct mailer *m;
	struct store_pool *pool;
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool stop;
	bool kicked;
};

int64_t
mail_backoff(int64_t tries, int64_t min_s, int64_t max_s, uint32_t rnd)
{
	int64_t d = min_s < 1 ? 1 : min_s;

	for (int64_t i = 1; i < tries && d < max_s; i++)
		d *= 2;
	if (d > max_s)
		d = max_s;
	/* Jitter: uniform in [d/2, d], never below one second. */
	d -= (int64_t)(rnd % (uint32_t)(d / 2 + 1));
	return d < 1 ? 1 : d;
}

static int64_t
wall_now(void)
{
	return (int64_t)time(NULL);
}

static uint32_t
random_u32(void)
{
	uint32_t r = 0;

	if (RAND_bytes((unsigned char *)&r, sizeof(r)) != 1)
		r = (uint32_t)time(NULL); /* jitter only: no secret rests on it */
	return r;
}

/* Records a permanent failure in one transaction: the failed row, the
 * audit event, and the attempt gone. */
static enum am_err
record_failure(struct store *st, const struct store_mail *mail, const char *why, int64_t now,
	       struct am_error *e)
{
	json_t *data = json_pack("{s:s, s:s, s:I}", "claim_attempt_id", mail->attempt_id, "reason",
				 why, "tries", (json_int_t)(mail->tries + 1));
	char *text = data != NULL ? json_dumps(data, JSON_COMPACT) : NULL;
	enum am_err rc;

	json_decref(data);
	if (text == NULL)
		return am_fail(e, AM_E_INTERNAL, "out of memory");
	if ((rc = store_begin(st, e)) != AM_OK) {
		free(text);
		return rc;
	}
	rc = store_mail_failed(st, mail->id, why, e);
	if (rc == AM_OK) {
		rc = store_attempt_delete(st, mail->attempt_id, e);
		if (rc == AM_E_NOT_FOUND)
			rc = AM_OK; /* closed meanwhile: nothing to uncount */
	}
	if (rc == AM_OK)
		rc = store_audit_insert(
			st, now, "claim.mail_failed",
			mail->registration_id[0] != '\0' ? mail->registration_id : NULL, text, e);
	if (rc == AM_OK)
		rc = store_commit(st, e);
	if (rc != AM_OK)
		store_rollback(st);
	free(text);
	return rc;
}

/* Zeroes and deletes a row in one transaction: a crash between the two
 * never leaves a queued row whose message is zeros. */
static enum am_err
finish(struct store *st, int64_t id, struct am_error *e)
{
	enum am_err rc;

	if ((rc = store_begin(st, e)) != AM_OK)
		return rc;
	if ((rc = store_mail_done(st, id, e)) != AM_OK || (rc = store_commit(st, e)) != AM_OK)
		store_rollback(st);
	return rc;
}

/* One queue row: sent, retried or failed. */
static enum am_err
handle(struct mail_worker *w, struct store *st, struct store_mail *mail, struct am_error *e)
{
	const struct am_config *cfg = mailer_config(w->m);
	int64_t now = wall_now();
	struct store_mail_stats stats = {0};
	struct am_error ignored = {0};
	enum mail_outcome out;
	char why[160] = "";
	int64_t delay;

	if (!mail->live || mail->message == NULL || mail->message[0] == '\0') {
		log_info("mail dropped unsent id=%lld attempt=%s: the attempt is gone",
			 (long long)mail->id, mail->attempt_id);
		return finish(st, mail->id, e);
	}
	if (now >= mail->expires_at) {
		/* Its link no longer works: not worth sending, and, never sent,
		 * it must count against no limit. */
		log_warn("mail failed id=%lld attempt=%s: expired before it could be sent",
			 (long long)mail->id, mail->attempt_id);
		return record_failure(st, mail, "expired before it could be sent", now, e);
	}
	out = mailer_deliver(w->m, mail->rcpt, mail->message, why, sizeof(why));
	now = wall_now();
	switch (out) {
	case MAIL_SENT:
		log_info("mail delivered id=%lld attempt=%s tries=%lld", (long long)mail->id,
			 mail->attempt_id, (long long)(mail->tries + 1));
		return finish(st, mail->id, e);
	case MAIL_PERMANENT:
		log_warn("mail failed for good id=%lld attempt=%s: %s", (long long)mail->id,
			 mail->attempt_id, why);
		return record_failure(st, mail, why, now, e);
	case MAIL_TEMPORARY:
		break;
	}
	delay = mail_backoff(mail->tries + 1, cfg->mail_retry_min, cfg->mail_retry_max,
			     random_u32());
	/* The queue's depth and the age of its oldest mail, what an operator
	 * alerts on, ride on every deferral. */
	if (store_mail_stats(st, &stats, &ignored) != AM_OK)
		stats.queued = -1;
	log_warn("mail deferred id=%lld attempt=%s tries=%lld retry_in=%llds queue_depth=%lld "
		 "oldest_age=%llds: %s",
		 (long long)mail->id, mail->attempt_id, (long long)(mail->tries + 1),
		 (long long)delay, (long long)stats.queued,
		 (long long)(stats.oldest_created_at > 0 ? now - stats.oldest_created_at : 0), why);
	return store_mail_retry(st, mail->id, now + delay, why, e);
}

static bool
stopping(struct mail_worker *w)
{
	bool stop;

	pthread_mutex_lock(&w->mu);
	stop = w->stop;
	pthread_mutex_unlock(&w->mu);
	return stop;
}

/* Sends every mail due now; false when the store failed (try again on the
 * next tick). */
static bool
drain(struct mail_worker *w, struct store *st)
{
	while (!stopping(w)) {
		struct store_mail mail = {0};
		struct am_error e = {0};
		enum am_err rc = store_mail_next(st, wall_now(), &mail, &e);

		if (rc == AM_E_NOT_FOUND)
			return true;
		if (rc != AM_OK) {
			log_warn("mail queue read failed code=%s", am_err_name(e.code));
			return false;
		}
		rc = handle(w, st, &mail, &e);
		store_mail_wipe(&mail);
		if (rc != AM_OK) {
			/* The row stays as it was and is tried again: at
			 * least once, never lost. */
			log_warn("mail queue update failed code=%s detail=\"%s\"",
				 am_err_name(e.code), e.detail);
			return false;
		}
	}
	return true;
}

static void *
worker_main(void *arg)
{
	struct mail_worker *w = arg;
	struct store *st = NULL;

	pthread_mutex_lock(&w->mu);
	while (!w->stop) {
		struct am_error e = {0};
		struct timespec until;

		w->kicked = false;
		pthread_mutex_unlock(&w->mu);
		if (st == NULL && store_pool_get(w->pool, &st, &e) != AM_OK) {
			log_warn("mail worker has no store code=%s", am_err_name(e.code));
			st = NULL;
		}
		if (st != NULL)
			(void)drain(w, st);
		pthread_mutex_lock(&w->mu);
		/* A kick wakes at once; retries fall due on the next tick. */
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += 1;
		while (!w->stop && !w->kicked &&
		       pthread_cond_timedwait(&w->cv, &w->mu, &until) != ETIMEDOUT) {
		}
	}
	pthread_mutex_unlock(&w->mu);
	return NULL;
}

enum am_err
mailer_start(struct mailer *m, struct store_pool *pool, struct am_error *e)
{
	struct mail_worker **slot = mailer_worker_slot(m);
	struct mail_worker *w;

	if (*slot != NULL)
		return AM_OK;
	if ((w = calloc(1, sizeof(*w))) == NULL)
		return am_fail(e, AM_E_INTERNAL, "out of memory");
	w->m = m;
	w->pool = pool;
	pthread_mutex_init(&w->mu, NULL);
	pthread_cond_init(&w->cv, NULL);
	mailer_set_stopping(m, false);
	if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
		pthread_cond_destroy(&w->cv);
		pthread_mutex_destroy(&w->mu);
		free(w);
		return am_fail(e, AM_E_INTERNAL, "cannot start the mail worker");
	}
	*slot = w;
	log_info("mail worker started retry_min=%llds retry_max=%llds",
		 (long long)mailer_config(m)->mail_retry_min,
		 (long long)mailer_config(m)->mail_retry_max);
	return AM_OK;
}

void
mailer_stop(struct mailer *m)
{
	struct mail_worker **slot, *w;

	if (m == NULL || *(slot = mailer_worker_slot(m)) == NULL)
		return;
	w = *slot;
	mailer_set_stopping(m, true);
	pthread_mutex_lock(&w->mu);
	w->stop = true;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
	pthread_join(w->thread, NULL);
	pthread_cond_destroy(&w->cv);
	pthread_mutex_destroy(&w->mu);
	free(w);
	*slot = NULL;
}

void
mailer_kick(struct mailer *m)
{
	struct mail_worker *w;

	if (m == NULL || (w = *mailer_worker_slot(m)) == NULL)
		return;
	pthread_mutex_lock(&w->mu);
	w->kicked = true;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
}
