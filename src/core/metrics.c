#include "core/metrics.h"

#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "core/str.h"

enum kind { COUNTER, GAUGE, HISTOGRAM };

struct family {
	const char *name;
	enum kind kind;
	const char *help;
	const char *label1, *label2; /* NULL: none */
};

static const struct family families[AM_M__COUNT] = {
	[AM_M_HTTP_REQUESTS] = {"authmd_http_requests_total", COUNTER,
				"HTTP requests answered, by route pattern and status.", "route",
				"status"},
	[AM_M_HTTP_DURATION] = {"authmd_http_request_duration_seconds", HISTOGRAM,
				"Time from the end of the request to the queued answer, by route.",
				"route", NULL},
	[AM_M_REGISTRATIONS] = {"authmd_registrations_total", COUNTER,
				"Registrations created, by registration_type.", "kind", NULL},
	[AM_M_CLAIMS] = {"authmd_claims_total", COUNTER, "Claims confirmed.", NULL, NULL},
	[AM_M_REVOCATIONS] = {"authmd_revocations_total", COUNTER,
			      "Credentials revoked, by reason.", "reason", NULL},
	[AM_M_EXPIRATIONS] = {"authmd_registration_expirations_total", COUNTER,
			      "Registrations expired by the sweeper.", NULL, NULL},
	[AM_M_GATE_DECISIONS] = {"authmd_gate_decisions_total", COUNTER,
				 "Forward-auth and resource gate decisions.", "decision", NULL},
	[AM_M_INTROSPECTIONS] = {"authmd_introspections_total", COUNTER,
				 "RFC 7662 introspection answers, by active.", "active", NULL},
	[AM_M_RATE_LIMITED] = {"authmd_rate_limit_refusals_total", COUNTER,
			       "Requests refused by a rate limit, by limit.", "limit", NULL},
	[AM_M_JWKS_FETCHES] = {"authmd_jwks_fetches_total", COUNTER,
			       "Fetches of trusted providers' JWKS, by result.", "result", NULL},
	[AM_M_STORE_COMMIT] = {"authmd_store_commit_duration_seconds", HISTOGRAM,
			       "Store transaction commits (including the fsync).", NULL, NULL},
	[AM_M_STORE_BATCH_JOBS] = {"authmd_store_batched_writes_total", COUNTER,
				   "Durable writes committed by the store writer's group commits.",
				   NULL, NULL},
	[AM_M_STORE_BATCH] = {"authmd_store_writer_batch_duration_seconds", HISTOGRAM,
			      "Time the store writer holds its transaction for one group commit: "
			      "every job's statements, then the commit.",
			      NULL, NULL},
	[AM_M_STORE_BATCH_REDOS] = {"authmd_store_batch_redos_total", COUNTER,
				    "Group commits rolled back and run again with a savepoint per "
				    "job, because a job's writes had to be undone.",
				    NULL, NULL},
	[AM_M_MAIL_QUEUE_DEPTH] = {"authmd_mail_queue_depth", GAUGE,
				   "Messages in the mail queue waiting to be sent.", NULL, NULL},
};

static const double bounds[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
				0.1,	0.25,  0.5,    1,     2.5,  5,	   10};
#define NBOUNDS (sizeof(bounds) / sizeof(bounds[0]))

struct series {
	enum am_metric m;
	char l1[64], l2[64];
	double value; /* counter, gauge; histogram sum */
	unsigned long long count;
	unsigned long long buckets[NBOUNDS];
};

/* Open addressing over the series, at most half full: every request counts
 * two or three series, and a scan of them all under the lock cost about 4 %
 * of a bearer check. */
#define SLOTS (2 * AM_METRICS_MAX_SERIES)

static struct {
	pthread_mutex_t mu;
	struct series s[AM_METRICS_MAX_SERIES];
	size_t n;
	unsigned short slot[SLOTS]; /* 1 + index into s, 0: empty */
	unsigned long long dropped;
} reg = {.mu = PTHREAD_MUTEX_INITIALIZER};

/* Keeps a label value to a safe closed alphabet, so an unexpected value can
 * never break the exposition format. */
static const char *
word(const char *v, char *buf, size_t cap)
{
	size_t i = 0;

	for (; v != NULL && v[i] != '\0' && i + 1 < cap; i++) {
		unsigned char c = (unsigned char)v[i];

		buf[i] = (c >= 0x21 && c <= 0x7e && c != '"' && c != '\\') ? (char)c : '_';
	}
	buf[i] = '\0';
	return buf;
}

static size_t
slot_of(enum am_metric m, const char *l1, const char *l2)
{
	uint32_t h = 2166136261u ^ (uint32_t)m; /* FNV-1a */

	for (const char *p = l1; *p != '\0'; p++)
		h = (h ^ (unsigned char)*p) * 16777619u;
	h = (h ^ 0xffu) * 16777619u; /* l1 "a" l2 "b" is not l1 "ab" */
	for (const char *p = l2; *p != '\0'; p++)
		h = (h ^ (unsigned char)*p) * 16777619u;
	return h % SLOTS;
}

/* The series for (m, l1, l2) (labels already passed through word()),
 * created when missing and create is set; NULL when absent or full.
 * Called with the lock held. */
static struct series *
lookup(enum am_metric m, const char *l1, const char *l2, bool create)
{
	struct series *s;
	size_t i = slot_of(m, l1, l2);

	for (; reg.slot[i] != 0; i = (i + 1) % SLOTS) {
		s = &reg.s[reg.slot[i] - 1];
		if (s->m == m && strcmp(s->l1, l1) == 0 && strcmp(s->l2, l2) == 0)
			return s;
	}
	if (!create)
		return NULL;
	if (reg.n == AM_METRICS_MAX_SERIES) {
		reg.dropped++;
		return NULL;
	}
	s = &reg.s[reg.n++];
	memset(s, 0, sizeof(*s));
	s->m = m;
	snprintf(s->l1, sizeof(s->l1), "%s", l1);
	snprintf(s->l2, sizeof(s->l2), "%s", l2);
	reg.slot[i] = (unsigned short)reg.n;
	return s;
}

/* The series for (m, l1, l2), created when missing; NULL when full. Called
 * with the lock held. */
static struct series *
find(enum am_metric m, const char *l1, const char *l2)
{
	const struct family *f = &families[m];
	char b1[64], b2[64];

	l1 = word(f->label1 != NULL ? l1 : NULL, b1, sizeof(b1));
	l2 = word(f->label2 != NULL ? l2 : NULL, b2, sizeof(b2));
	return lookup(m, l1, l2, true);
}

void
am_metrics_add(enum am_metric m, const char *l1, const char *l2, double n)
{
	struct series *s;

	if ((unsigned)m >= AM_M__COUNT || families[m].kind != COUNTER || !(n >= 0))
		return; /* a counter never goes down */
	pthread_mutex_lock(&reg.mu);
	if ((s = find(m, l1, l2)) != NULL)
		s->value += n;
	pthread_mutex_unlock(&reg.mu);
}

void
am_metrics_inc(enum am_metric m, const char *l1, const char *l2)
{
	am_metrics_add(m, l1, l2, 1);
}

void
am_metrics_observe(enum am_metric m, const char *l1, double seconds)
{
	struct series *s;

	if ((unsigned)m >= AM_M__COUNT || families[m].kind != HISTOGRAM)
		return;
	if (!(seconds >= 0))
		seconds = 0; /* NaN or a clock step */
	pthread_mutex_lock(&reg.mu);
	if ((s = find(m, l1, NULL)) != NULL) {
		s->value += seconds;
		s->count++;
		for (size_t i = 0; i < NBOUNDS; i++) {
			if (seconds <= bounds[i])
				s->buckets[i]++;
		}
	}
	pthread_mutex_unlock(&reg.mu);
}

void
am_metrics_set(enum am_metric m, double value)
{
	struct series *s;

	if ((unsigned)m >= AM_M__COUNT || families[m].kind != GAUGE)
		return;
	pthread_mutex_lock(&reg.mu);
	if ((s = find(m, NULL, NULL)) != NULL)
		s->value = value;
	pthread_mutex_unlock(&reg.mu);
}

double
am_metrics_value(enum am_metric m, const char *l1, const char *l2)
{
	const struct family *f;
	const struct series *s;
	double v = 0;
	char b1[64], b2[64];

	if ((unsigned)m >= AM_M__COUNT)
		return 0;
	f = &families[m];
	l1 = word(f->label1 != NULL ? l1 : NULL, b1, sizeof(b1));
	l2 = word(f->label2 != NULL ? l2 : NULL, b2, sizeof(b2));
	pthread_mutex_lock(&reg.mu);
	if ((s = lookup(m, l1, l2, false)) != NULL)
		v = f->kind == HISTOGRAM ? (double)s->count : s->value;
	pthread_mutex_unlock(&reg.mu);
	return v;
}

void
am_metrics_event_of(const json_t *ev, struct am_metrics_event *out)
{
	const char *name = json_string_value(json_object_get(ev, "event"));
	const char *label = NULL;

	out->metric = -1;
	out->label[0] = '\0';
	if (name == NULL)
		return;
	if (strcmp(name, "registration.created") == 0) {
		out->metric = AM_M_REGISTRATIONS;
		label = json_string_value(json_object_get(ev, "registration_type"));
	} else if (strcmp(name, "claim.confirmed") == 0) {
		out->metric = AM_M_CLAIMS;
	} else if (strcmp(name, "credential.revoked") == 0) {
		out->metric = AM_M_REVOCATIONS;
		label = json_string_value(json_object_get(ev, "reason"));
	} else if (strcmp(name, "registration.expired") == 0) {
		out->metric = AM_M_EXPIRATIONS;
	}
	(void)word(label, out->label, sizeof(out->label));
}

void
am_metrics_event_count(const struct am_metrics_event *m)
{
	if (m->metric >= 0 && m->metric < AM_M__COUNT)
		am_metrics_inc((enum am_metric)m->metric, m->label, NULL);
}

static void
labels(struct am_buf *b, const struct family *f, const struct series *s, const char *le)
{
	bool any = false;

	if (f->label1 == NULL && le == NULL)
		return;
	am_buf_puts(b, "{");
	if (f->label1 != NULL) {
		am_buf_printf(b, "%s=\"%s\"", f->label1, s->l1);
		any = true;
	}
	if (f->label2 != NULL) {
		am_buf_printf(b, ",%s=\"%s\"", f->label2, s->l2);
		any = true;
	}
	if (le != NULL)
		am_buf_printf(b, "%sle=\"%s\"", any ? "," : "", le);
	am_buf_puts(b, "}");
}

static void
render_series(struct am_buf *b, const struct family *f, const struct series *s)
{
	char le[32];

	if (f->kind != HISTOGRAM) {
		am_buf_puts(b, f->name);
		labels(b, f, s, NULL);
		am_buf_printf(b, " %.17g\n", s->value);
		return;
	}
	for (size_t i = 0; i < NBOUNDS; i++) {
		snprintf(le, sizeof(le), "%g", bounds[i]);
		am_buf_printf(b, "%s_bucket", f->name);
		labels(b, f, s, le);
		am_buf_printf(b, " %llu\n", s->buckets[i]);
	}
	am_buf_printf(b, "%s_bucket", f->name);
	labels(b, f, s, "+Inf");
	am_buf_printf(b, " %llu\n", s->count);
	am_buf_printf(b, "%s_sum", f->name);
	labels(b, f, s, NULL);
	am_buf_printf(b, " %.17g\n", s->value);
	am_buf_printf(b, "%s_count", f->name);
	labels(b, f, s, NULL);
	am_buf_printf(b, " %llu\n", s->count);
}

char *
am_metrics_render(void)
{
	struct am_buf b = {0};
	struct series zero = {0};

	pthread_mutex_lock(&reg.mu);
	for (int m = 0; m < AM_M__COUNT; m++) {
		const struct family *f = &families[m];
		bool seen = false;

		am_buf_printf(&b, "# HELP %s %s\n# TYPE %s %s\n", f->name, f->help, f->name,
			      f->kind == COUNTER ? "counter"
			      : f->kind == GAUGE ? "gauge"
						 : "histogram");
		for (size_t i = 0; i < reg.n; i++) {
			if (reg.s[i].m == (enum am_metric)m) {
				render_series(&b, f, &reg.s[i]);
				seen = true;
			}
		}
		/* A family without labels exists from the start, at zero. */
		if (!seen && f->label1 == NULL)
			render_series(&b, f, &zero);
	}
	am_buf_printf(&b,
		      "# HELP authmd_metrics_series_dropped_total Series not kept because the "
		      "registry was full.\n# TYPE authmd_metrics_series_dropped_total "
		      "counter\nauthmd_metrics_series_dropped_total %llu\n",
		      reg.dropped);
	pthread_mutex_unlock(&reg.mu);
	return am_buf_take(&b);
}

double
am_metrics_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}
