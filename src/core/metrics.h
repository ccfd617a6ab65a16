/* Process-wide counters and histograms, rendered in the Prometheus text
 * exposition format (version 0.0.4) by GET /metrics. Like every Prometheus
 * client, the registry is one per process: any layer may count an event
 * without a handle being threaded through it. Thread-safe.
 *
 * Label values come from small closed sets chosen by our code (route
 * patterns, status codes, kinds), never from request text, so the number
 * of series is bounded; past AM_METRICS_MAX_SERIES new series are dropped
 * and counted in authmd_metrics_series_dropped_total. */
#ifndef AM_METRICS_H
#define AM_METRICS_H

#include <jansson.h>
#include <stddef.h>

#define AM_METRICS_MAX_SERIES 512

enum am_metric {
	AM_M_HTTP_REQUESTS,	/* counter {route, status} */
	AM_M_HTTP_DURATION,	/* histogram {route}, seconds */
	AM_M_REGISTRATIONS,	/* counter {kind} */
	AM_M_CLAIMS,		/* counter */
	AM_M_REVOCATIONS,	/* counter {reason} */
	AM_M_EXPIRATIONS,	/* counter: registrations expired by the sweeper */
	AM_M_GATE_DECISIONS,	/* counter {decision} */
	AM_M_INTROSPECTIONS,	/* counter {active} */
	AM_M_RATE_LIMITED,	/* counter {limit} */
	AM_M_JWKS_FETCHES,	/* counter {result} */
	AM_M_STORE_COMMIT,	/* histogram, seconds */
	AM_M_STORE_BATCH_JOBS,	/* counter: writes committed in group commits */
	AM_M_STORE_BATCH,	/* histogram, seconds: the store writer's hold per batch */
	AM_M_STORE_BATCH_REDOS, /* counter: optimistic batches run again with savepoints */
	AM_M_MAIL_QUEUE_DEPTH,	/* gauge */
	AM_M__COUNT
};

/* Adds 1 to the series of metric m with these label values (as many as the
 * metric has labels; extra ones are ignored, NULL is ""). */
void am_metrics_inc(enum am_metric m, const char *l1, const char *l2);

/* Adds n (>= 0) to counter m. */
void am_metrics_add(enum am_metric m, const char *l1, const char *l2, double n);

/* Records one observation (seconds) in histogram m. */
void am_metrics_observe(enum am_metric m, const char *l1, double seconds);

/* Sets gauge m. */
void am_metrics_set(enum am_metric m, double value);

/* The counter an audit event stands for, taken when the event is built and
 * counted once it is committed, so the committed line need not be parsed
 * again. */
struct am_metrics_event {
	int metric; /* an enum am_metric, or -1: the event counts nothing */
	char label[64];
};

/* Fills *out for an audit event object ev (its "event" member and the
 * fields): registration.created by registration_type, claim.confirmed,
 * credential.revoked by reason, registration.expired; any other event gets
 * metric -1. ev is borrowed. */
void am_metrics_event_of(const json_t *ev, struct am_metrics_event *out);

/* Counts *m (nothing for metric -1). */
void am_metrics_event_count(const struct am_metrics_event *m);

/* The current value of a series, for tests; 0 when it does not exist. */
double am_metrics_value(enum am_metric m, const char *l1, const char *l2);

/* The whole registry in text format; the caller frees it. */
char *am_metrics_render(void);

/* Seconds on a monotonic clock, for durations. */
double am_metrics_now(void);

#endif
