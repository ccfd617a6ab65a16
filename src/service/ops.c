/* Operations endpoints: /healthz (the process answers), /readyz (the store
 * answers; mail is sent inline, so there is no queue to be stuck) and
 * /metrics (Prometheus text format, only to peers in [metrics] allow). */
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/metrics.h"
#include "store/store.h"
#include "service/service.h"

enum am_err
h_healthz(void *app, struct http_req *rq, struct http_resp *rs, struct am_error *e)
{
	(void)app, (void)rq, (void)e;
	http_add_header(rs, "Cache-Control", "no-store");
	http_reply_json(rs, 200, json_pack("{s:s}", "status", "ok"));
	return AM_OK;
}

enum am_err
h_readyz(void *app, struct http_req *rq, struct http_resp *rs, struct am_error *e)
{
	struct app *a = app;
	struct store *st;
	struct store_mail_stats ms;
	int64_t age;
	char *v = NULL;
	enum am_err rc;

	(void)rq;
	http_add_header(rs, "Cache-Control", "no-store");
	/* One indexed read on this worker's connection: the database file is
	 * there, readable and not locked past the busy timeout. */
	if ((rc = app_store(a, &st, e)) == AM_OK)
		rc = store_setting_get(st, "trust_list", &v, e);
	free(v);
	if (rc != AM_OK && rc != AM_E_NOT_FOUND)
		return am_fail(e, AM_E_UNAVAILABLE, "the store is not answering");
	/* The mail queue (mail/queue.c): stuck when its oldest mail has waited
	 * longer than [mail] stuck_after, e.g. a relay that stopped answering. */
	if ((rc = store_mail_stats(st, &ms, e)) != AM_OK)
		return am_fail(e, AM_E_UNAVAILABLE, "the store is not answering");
	age = ms.queued > 0 ? am_clock_now(&a->env.clock) - ms.oldest_created_at : 0;
	am_metrics_set(AM_M_MAIL_QUEUE_DEPTH, (double)ms.queued);
	if (a->env.cfg->mail_stuck_after > 0 && age > a->env.cfg->mail_stuck_after) {
		e->retry_after = 30;
		return am_fail(e, AM_E_UNAVAILABLE,
			       "the mail queue is stuck: %lld mails waiting, the oldest for %llds",
			       (long long)ms.queued, (long long)age);
	}
	http_reply_json(rs, 200,
			json_pack("{s:s, s:s, s:{s:I, s:I}}", "status", "ready", "store", "ok",
				  "mail_queue", "depth", (json_int_t)ms.queued, "oldest_age_s",
				  (json_int_t)age));
	return AM_OK;
}

enum am_err
h_metrics(void *app, struct http_req *rq, struct http_resp *rs, struct am_error *e)
{
	struct app *a = app;
	struct store *st;
	struct store_mail_stats ms;
	char *text;

	/* The socket's peer, not a forwarded address: a proxy in front must not
	 * open the metrics to whoever it forwards. */
	if (a->metrics_allow.n > 0 && !am_cidr_match(&a->metrics_allow, rq->peer))
		return am_fail(e, AM_E_ACCESS_DENIED, "metrics are not served to this address");
	/* the queue depth gauge is read from the store at each scrape */
	if (app_store(a, &st, e) == AM_OK && store_mail_stats(st, &ms, e) == AM_OK)
		am_metrics_set(AM_M_MAIL_QUEUE_DEPTH, (double)ms.queued);
	text = am_metrics_render();
	http_reply_text(rs, 200, "text/plain; version=0.0.4; charset=utf-8", text, strlen(text));
	http_add_header(rs, "Cache-Control", "no-store");
	free(text);
	return AM_OK;
}
