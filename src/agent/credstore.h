/* The agent's credentials file: JSON, mode 0600 in a 0700 folder, written
 * atomically, keyed by protected resource. A file that others can read, or
 * that does not parse, is refused rather than used or overwritten. */
#ifndef AM_CREDSTORE_H
#define AM_CREDSTORE_H

#include <jansson.h>
#include <stdbool.h>
#include <time.h>

#include "authmd/client.h"

/* The default path: $XDG_CONFIG_HOME/authmd/credentials.json, or
 * $HOME/.config/authmd/credentials.json. */
bool cs_default_path(char *out, size_t cap);

/* Loads the file (a missing file is an empty store) into *doc (new ref). */
enum authmd_status cs_load(const char *path, json_t **doc, struct authmd_error *err);
enum authmd_status cs_save(const char *path, const json_t *doc, struct authmd_error *err);

bool cs_get(const json_t *doc, const char *resource, struct authmd_credential *out);
void cs_put(json_t *doc, const struct authmd_credential *c);
bool cs_del(json_t *doc, const char *resource);
/* Drops claim tokens whose claim_token_expires is before now (their state
 * becomes "expired"), with the open user_code attempt that needed them;
 * true when anything changed. */
bool cs_prune(json_t *doc, time_t now);

/* Seconds since the epoch of an RFC 3339 UTC time ("2026-05-04T13:00:00Z",
 * fractions ignored); 0 if it does not parse. */
time_t cs_parse_utc(const char *s);

/* The resource key best matching url: the longest stored resource that is
 * a prefix of url, else one on url's origin. NULL if none. */
const char *cs_match(const json_t *doc, const char *url);

/* Fills err and returns status (err may be NULL). */
enum authmd_status cs_fail(struct authmd_error *err, enum authmd_status status, const char *advice,
			   const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* The origin (scheme://host[:port], lower-cased scheme and host) of url. */
bool cs_origin(const char *url, char *out, size_t cap);

#endif
