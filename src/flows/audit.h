/* Audit events: each is a row in the store (written inside the caller's
 * transaction, so it exists exactly when the state change does) and, after
 * the commit, one JSON line on the configured sink. */
#ifndef AM_AUDIT_H
#define AM_AUDIT_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/errors.h"
#include "core/metrics.h"
#include "store/store.h"

struct audit_sink;

/* spec: "stdout", "stderr", "off" or "file:PATH" (appended to). */
enum am_err audit_sink_open(const char *spec, struct audit_sink **out, struct am_error *e) AM_WUR;
void audit_sink_free(struct audit_sink *s);
/* For a file: opens its path anew and swaps it in under the sink's lock
 * (log rotation, SIGHUP), so no line is lost or split; on failure the old
 * file is kept and AM_E_UNAVAILABLE returned. Other sinks: AM_OK. */
enum am_err audit_sink_reopen(struct audit_sink *s, struct am_error *e) AM_WUR;

/* What a line's row holds besides the line, and what it counts once
 * committed. */
struct audit_meta {
	struct am_metrics_event count;
	int64_t at;
	const char *event; /* a string literal */
	char registration_id[STORE_ID_LEN]; /* "" for none */
};

/* Events recorded in one transaction, emitted to the sink after commit. */
struct audit_batch {
	char **lines;
	struct audit_meta *meta; /* beside lines[i]; NULL: none (a test's batch) */
	size_t n, cap;
};

/* Records event for registration_id with the members of fields (stolen: the
 * batch takes the reference) in the store, and keeps its line for flush.
 * event must be a string literal (the batch keeps the pointer). */
enum am_err audit_add(struct store *st, struct audit_batch *b, const char *tenant, int64_t at,
		      const char *event, const char *registration_id, json_t *fields,
		      struct am_error *e) AM_WUR;

/* The first half of audit_add: builds the event's line into b (fields
 * stolen, as there) without writing its row, for a step whose events are
 * known before its transaction, so that the JSON is made on the request's
 * thread rather than on the store writer's. audit_store_prepared writes the
 * rows. */
enum am_err audit_prepare(struct audit_batch *b, const char *tenant, int64_t at, const char *event,
			  const char *registration_id, json_t *fields, struct am_error *e) AM_WUR;

/* The second half: inserts the row of every line in b, which must all come
 * from audit_prepare. The batch is unchanged, so a transaction that rolled
 * back can run it again. */
enum am_err audit_store_prepared(struct store *st, const struct audit_batch *b,
				 struct am_error *e) AM_WUR;

/* A field's value that only the transaction decides (the user it matched,
 * whether the registration is new): given in audit_prepare's fields, it
 * leaves a hole in the line that audit_add_filled fills on the store writer,
 * so the writer does not build and sort the whole event again. */
json_t *audit_hole(void);

/* A hole's value: the string text, or when text is NULL the boolean flag. */
struct audit_value {
	const char *key;
	const char *text;
	bool flag;
};

/* audit_add for a line prepared with holes: line i of tpl (from
 * audit_prepare, whose fields gave audit_hole() for each v[k].key) with
 * its holes filled from v, recorded for registration_id in the store and
 * kept in b for flush. The line is what audit_add would have made of the
 * same fields. tpl is unchanged, so a job run again fills it again. Every
 * key must name exactly one hole (AM_E_INTERNAL otherwise). */
enum am_err audit_add_filled(struct store *st, struct audit_batch *b, const struct audit_batch *tpl,
			     size_t i, const char *registration_id, const struct audit_value *v,
			     size_t n, struct am_error *e) AM_WUR;

/* The first half of audit_add_filled: the filled line into b, no row. */
enum am_err audit_fill(struct audit_batch *b, const struct audit_batch *tpl, size_t i,
		       const char *registration_id, const struct audit_value *v, size_t n,
		       struct am_error *e) AM_WUR;

/* Writes the batch's lines to the sink and empties it. Runs after the
 * commit, so a failed write cannot fail the request: the events are already
 * rows of audit_events. It is counted (audit_sink_lost) and logged, at most
 * once a minute with the count since the last warning. */
void audit_flush(struct audit_sink *s, struct audit_batch *b);

/* Lines the sink failed to write since it was opened (0 for NULL). */
uint64_t audit_sink_lost(struct audit_sink *s);

/* Empties the batch without writing (the transaction rolled back). */
void audit_discard(struct audit_batch *b);

#endif
