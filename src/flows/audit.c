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

/* A hole's value: one control byte, which a dumped string always escapes,
 * so that the text '"key":"\u0001"' can only be that member (a value's own
 * quotes are escaped, and only a key's closing quote is followed by ':'). */
#define AUDIT_HOLE "\x01"
#define AUDIT_HOLE_TEXT "\"\\u0001\""
#define AUDIT_HOLES_MAX 8

json_t *
audit_hole(void)
{
	return json_string(AUDIT_HOLE);
}

/* Where key's hole starts in line (at the key's opening quote), and its
 * length; false unless the line holds exactly one. */
static bool
find_hole(const char *line, const char *key, const char **at, size_t *len)
{
	char needle[80];
	int n = snprintf(needle, sizeof(needle), "\"%s\":" AUDIT_HOLE_TEXT, key);

	if (n <= 0 || (size_t)n >= sizeof(needle) || (*at = strstr(line, needle)) == NULL)
		return false;
	*len = (size_t)n;
	return strstr(*at + 1, needle) == NULL;
}

struct hole {
	const char *at;
	size_t len;
	const struct audit_value *v;
};

/* The line of tpl with its holes filled, or NULL. */
static char *
fill_line(const char *tpl, const struct audit_value *v, size_t n)
{
	struct hole hole[AUDIT_HOLES_MAX];
	struct am_buf out = {0};
	const char *cur = tpl;

	if (n > AUDIT_HOLES_MAX)
		return NULL;
	for (size_t k = 0; k < n; k++) {
		size_t j = k;

		if (!find_hole(tpl, v[k].key, &hole[k].at, &hole[k].len))
			return NULL;
		hole[k].v = &v[k];
		for (; j > 0 && hole[j - 1].at > hole[j].at; j--) { /* in the line's order */
			struct hole t = hole[j];

			hole[j] = hole[j - 1];
			hole[j - 1] = t;
		}
	}
	out.data = am_xmalloc(strlen(tpl) + 128);
	out.cap = strlen(tpl) + 128;
	out.data[0] = '\0';
	for (size_t k = 0; k < n; k++) {
		const char *cut = hole[k].at;

		if (cut > tpl && cut[-1] == ',')
			cut--; /* the member writer puts the comma back */
		am_buf_add(&out, cur, (size_t)(cut - cur));
		if (hole[k].v->text != NULL)
			am_jw_str(&out, hole[k].v->key, hole[k].v->text);
		else
			am_jw_bool(&out, hole[k].v->key, hole[k].v->flag);
		cur = hole[k].at + hole[k].len;
	}
	am_buf_puts(&out, cur);
	return am_buf_take(&out);
}

enum am_err
audit_fill(struct audit_batch *b, const struct audit_batch *tpl, size_t i,
	   const char *registration_id, const struct audit_value *v, size_t n, struct am_error *e)
{
	struct audit_meta *m;
	char *line;

	if (tpl == NULL || i >= tpl->n || tpl->meta == NULL ||
	    (line = fill_line(tpl->lines[i], v, n)) == NULL)
		return am_fail(e, AM_E_INTERNAL, "the audit event cannot be written");
	if ((b->n == b->cap || b->meta == NULL) && !grow(b)) {
		free(line);
		return am_fail(e, AM_E_INTERNAL, "out of memory");
	}
	m = &b->meta[b->n];
	*m = tpl->meta[i];
	if (!am_copy(m->registration_id, sizeof(m->registration_id),
		     registration_id != NULL ? registration_id : "")) {
		free(line);
		return am_fail(e, AM_E_INTERNAL, "registration id too long");
	}
	b->lines[b->n++] = line;
	return AM_OK;
}

enum am_err
audit_add_filled(struct store *st, struct audit_batch *b, const struct audit_batch *tpl, size_t i,
		 const char *registration_id, const struct audit_value *v, size_t n,
		 struct am_error *e)
{
	enum am_err rc;

	if ((rc = audit_fill(b, tpl, i, registration_id, v, n, e)) != AM_OK)
		return rc;
	if ((rc = store_line(st, b, b->n - 1, e)) != AM_OK)
		free(b->lines[--b->n]);
	return rc;
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
