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

/* An object written member by member straight into b, with no tree: for
 * the answers every API call gets (the gate's), where building a jansson
 * tree to dump it at once cost more than the rest of the request. The
 * text is what am_json_dump writes for the same members in the same order.
 * Values are escaped as am_json_dump escapes them and must be valid UTF-8,
 * as every string the store holds is (it came through jansson or is an id
 * the service made). Nesting is by the caller's calls: an object inside an
 * array inside an object is begin, key_array, item..., array_end, end. */
void am_jw_begin(struct am_buf *b);
void am_jw_end(struct am_buf *b);
/* "key":"value", or "key":null when value is NULL. */
void am_jw_str(struct am_buf *b, const char *key, const char *value);
void am_jw_bool(struct am_buf *b, const char *key, bool value);
void am_jw_int(struct am_buf *b, const char *key, long long value);
/* "key":[ ... then am_jw_item for each element, then am_jw_array_end. */
void am_jw_key_array(struct am_buf *b, const char *key);
void am_jw_item(struct am_buf *b, const char *value, size_t len);
void am_jw_array_end(struct am_buf *b);
/* "key":["a","b"] of a space-separated list (am_json_scopes as text). */
void am_jw_scopes(struct am_buf *b, const char *key, const char *list);

#endif
