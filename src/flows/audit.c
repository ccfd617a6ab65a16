#include "flows/audit.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/clock.h"
#include "core/json.h"
#include "core/metrics.h"
#include "core/log.h"
#include "core/str.h"

/* A failing sink (full disk, closed pipe) would log on every event; one line
 * per interval carries the count instead. */
#define AUDIT_WARN_INTERVAL_S 60

struct audit_sink {
	FILE *f;
	bool owned;
	char path[256]; /* of a file sink, for audit_sink_reopen */
	pthread_mutex_t mu;
	uint64_t lost;		/* lines not written, ever (under mu) */
	uint64_t lost_unlogged; /* lost since the last warning */
	time_t warned_at;	/* 0: never */
};

enum am_err
audit_sink_open(const char *spec, struct audit_sink **out, struct am_error *e)
{
	struct audit_sink *s = calloc(1, sizeof(*s));

	if (s == NULL)
		return am_fail(e, AM_E_INTERNAL, "out of memory");
	pthread_mutex_init(&s->mu, NULL);
	if (strcmp(spec, "stdout") == 0) {
		s->f = stdout;
	} else if (strcmp(spec, "stderr") == 0) {
		s->f = stderr;
	} else if (strncmp(spec, "file:", 5) == 0) {
		snprintf(s->path, sizeof(s->path), "%s", spec + 5);
		s->f = fopen(spec + 5, "ae");
		s->owned = true;
		if (s->f == NULL) {
			audit_sink_free(s);
			return am_fail(e, AM_E_UNAVAILABLE, "cannot open the audit file");
		}
	}
	*out = s;
	return AM_OK;
}

void
audit_sink_free(struct audit_sink *s)
{
	if (s == NULL)
		return;
	if (s->owned && s->f != NULL)
		fclose(s->f);
	pthread_mutex_destroy(&s->mu);
	free(s);
}

enum am_err
audit_sink_reopen(struct audit_sink *s, struct am_error *e)
{
	FILE *f;

	if (s == NULL || !s->owned)
		return AM_OK;
	if ((f = fopen(s->path, "ae")) == NULL)
		return am_fail(e, AM_E_UNAVAILABLE, "cannot open the audit file again: %s",
			       strerror(errno));
	pthread_mutex_lock(&s->mu);
	if (s->f != NULL)
		fclose(s->f); /* flushed: every batch is flushed under mu */
	s->f = f;
	pthread_mutex_unlock(&s->mu);
	return AM_OK;
}

/* Room for one more line and its meta; false when out of memory (the batch
 * keeps what it had). */
static bool
grow(struct audit_batch *b)
{
	size_t cap = b->n < b->cap ? b->cap : b->cap == 0 ? 8 : 2 * b->cap;
	bool had_meta = b->meta != NULL;
	char **lines;
	struct audit_meta *meta;

	if (cap != b->cap) {
		if ((lines = realloc(b->lines, cap * sizeof(*lines))) == NULL)
			return false;
		b->lines = lines; /* larger than cap says until meta follows: harmless */
	}
	if ((meta = realloc(b->meta, cap * sizeof(*meta))) == NULL)
		return false;
	for (size_t i = 0; !had_meta && i < b->n; i++) {
		memset(&meta[i], 0, sizeof(meta[i])); /* lines given without meta */
		meta[i].count.metric = -1;	      /* count nothing */
	}
	b->meta = meta;
	b->cap = cap;
	return true;
}

/* The event's line: compact, keys sorted, so equal events read the same. */
static char *
event_line(const json_t *ev)
{
	struct am_buf text = {.data = am_xmalloc(512), .cap = 512};
	char *line;

	text.data[0] = '\0';
	line = am_json_dump(&text, ev, true) ? am_buf_take(&text) : NULL;
	am_buf_free(&text);
	return line;
}

/* key: value, unless the event has the key already. */
static void
set_default(json_t *ev, const char *key, const char *value)
{
	if (json_object_get(ev, key) == NULL)
		json_object_set_new(ev, key, json_string(value));
}

enum am_err
audit_prepare(struct audit_batch *b, const char *tenant, int64_t at, const char *event,
	      const char *registration_id, json_t *fields, struct am_error *e)
{
	/* The fields become the event (a copy of them into a fresh object was
	 * a tenth of the writer's audit work); where they name one of the
	 * common keys themselves, theirs is kept, as an update would. */
	json_t *ev = fields != NULL && json_is_object(fields) ? fields : json_object();
	struct audit_meta *m;
	char iso[40];
	char *line;

	if (ev != fields)
		json_decref(fields);
	am_time_iso(at, iso, sizeof(iso));
	set_default(ev, "event", event);
	set_default(ev, "at", iso);
	set_default(ev, "tenant", tenant);
	if (registration_id != NULL)
		set_default(ev, "registration_id", registration_id);
	if ((b->n == b->cap || b->meta == NULL) && !grow(b)) {
		json_decref(ev);
		return am_fail(e, AM_E_INTERNAL, "out of memory");
	}
	m = &b->meta[b->n];
	am_metrics_event_of(ev, &m->count);
	line = event_line(ev);
	json_decref(ev);
	if (line == NULL)
		return am_fail(e, AM_E_INTERNAL, "the audit event cannot be written");
	m->at = at;
	m->event = event;
	if (!am_copy(m->registration_id, sizeof(m->registration_id),
		     registration_id != NULL ? registration_id : "")) {
		free(line);
		return am_fail(e, AM_E_INTERNAL, "registration id too long");
	}
	b->lines[b->n++] = line;
	return AM_OK;
}

static enum am_err
store_line(struct store *st, const struct audit_batch *b, size_t i, struct am_error *e)
{
	const struct audit_meta *m = &b->meta[i];

	return store_audit_insert(st, m->at, m->event,
				  m->registration_id[0] != '\0' ? m->registration_id : NULL,
				  b->lines[i], e);
}

enum am_err
audit_add(struct store *st, struct audit_batch *b, const char *tenant, int64_t at,
	  const char *event, const char *registration_id, json_t *fields, struct am_error *e)
{
	enum am_err rc;

	if ((rc = audit_prepare(b, tenant, at, event, registration_id, fields, e)) != AM_OK)
		return rc;
	if ((rc = store_line(st, b, b->n - 1, e)) != AM_OK)
		free(b->lines[--b->n]);
	return rc;
}

enum am_err
audit_store_prepared(struct store *st, const struct audit_batch *b, struct am_error *e)
{
	enum am_err rc;

	for (size_t i = 0; i < b->n; i++) {
		if ((rc = store_line(st, b, i, e)) != AM_OK)
			return rc;
	}
	return AM_OK;
}

/* Writes the lines and reports whether all of them reached the file. */
static bool
write_lines(FILE *f, const struct audit_batch *b)
{
	bool ok = true;

	for (size_t i = 0; i < b->n; i++) {
		if (fprintf(f, "%s\n", b->lines[i]) < 0)
			ok = false;
	}
	if (fflush(f) != 0)
		ok = false;
	if (ferror(f)) {
		ok = false;
		clearerr(f); /* so that the next batch is tried afresh */
	}
	return ok;
}

void
audit_flush(struct audit_sink *s, struct audit_batch *b)
{
	if (s != NULL && s->f != NULL && b->n > 0) {
		pthread_mutex_lock(&s->mu);
		if (!write_lines(s->f, b)) {
			int err = errno;
			time_t now = time(NULL);

			s->lost += b->n;
			s->lost_unlogged += b->n;
			if (s->warned_at == 0 || now - s->warned_at >= AUDIT_WARN_INTERVAL_S) {
				log_warn("audit sink write failed lines=%llu lost_total=%llu: %s; "
					 "the events are in the store (audit_events); next warning "
					 "in %ds at the earliest",
					 (unsigned long long)s->lost_unlogged,
					 (unsigned long long)s->lost, strerror(err),
					 AUDIT_WARN_INTERVAL_S);
				s->warned_at = now;
				s->lost_unlogged = 0;
			}
		}
		pthread_mutex_unlock(&s->mu);
	}
	for (size_t i = 0; b->meta != NULL && i < b->n; i++)
		am_metrics_event_count(&b->meta[i].count); /* gate: committed events as metrics */
	audit_discard(b);
}

uint64_t
audit_sink_lost(struct audit_sink *s)
{
	uint64_t n;

	if (s == NULL)
		return 0;
	pthread_mutex_lock(&s->mu);
	n = s->lost;
	pthread_mutex_unlock(&s->mu);
	return n;
}

void
audit_discard(struct audit_batch *b)
{
	for (size_t i = 0; i < b->n; i++)
		free(b->lines[i]);
	free(b->lines);
	free(b->meta);
	b->lines = NULL;
	b->meta = NULL;
	b->n = b->cap = 0;
}
