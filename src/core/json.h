/* Request-document helpers over jansson: strict parsing and typed field
 * access that turns every mistake into a clear invalid_request. */
#ifndef AM_JSON_H
#define AM_JSON_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "core/errors.h"
#include "core/str.h"

/* Parses body as one JSON object (duplicate keys refused). On AM_OK the
 * caller owns *out. */
enum am_err am_json_object(const char *body, size_t len, json_t **out, struct am_error *e) AM_WUR;

/* Reads the string member key of obj (borrowed) into *out. A missing member
 * gives *out = NULL and AM_OK when !required; a wrong type, an empty string
 * or one longer than maxlen bytes is refused with a message naming key. */
enum am_err am_json_string(const json_t *obj, const char *key, bool required, size_t maxlen,
			   const char **out, struct am_error *e) AM_WUR;

/* A JSON array of the space-separated scope list (new reference). */
json_t *am_json_scopes(const char *list);

/* A JSON string of an RFC 3339 time, or JSON null when t is 0. */
json_t *am_json_time(long long t);

/* Appends the compact text of the object or array j to b: byte for byte
 * what json_dumpb(j, JSON_COMPACT, plus JSON_SORT_KEYS when sort_keys)
 * writes, at a fraction of its cost (jansson decodes and re-checks every
 * character of every string it writes; the strings in a tree are valid
 * UTF-8 already, so runs of plain bytes are copied whole). False, with b
 * as it was, for anything else than an object or array, or nesting deeper
 * than 64. */
bool am_json_dump(struct am_buf *b, const json_t *j, bool sort_keys) AM_WUR;

#endif
