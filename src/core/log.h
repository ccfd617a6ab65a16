/* One line per event: time, level, request id (when in a request), then the
 * caller's key=value text; as text (the default) or as one JSON object per
 * line ([log] format = json). Lines go to stderr, which [log] file can point
 * at a file that am_log_reopen opens again (log rotation). Never pass a
 * secret to these. */
#ifndef AM_LOG_H
#define AM_LOG_H

#include <stdbool.h>
#include <stddef.h>

#include "core/compiler.h"

enum am_log_level { AM_LOG_DEBUG, AM_LOG_INFO, AM_LOG_WARN, AM_LOG_ERROR };

/* Sets the lowest level written; returns -1 for an unknown name. */
int am_log_set_level(const char *name);

/* Sets the line format, "text" or "json"; returns -1 for another name. In
 * json each line is an object with "time", "level", "req" (in a request),
 * "msg" (the caller's whole text) and one string member per key=value pair
 * of the text (a value in double quotes loses them); a pair whose key is one
 * of those four names is left in "msg" only. */
int am_log_set_format(const char *name);

/* Points stderr (and so every log line) at path, opened for appending with
 * mode 0640 (created if need be); NULL or "" leaves stderr as it is. Called
 * again (SIGHUP) it opens path anew and swaps it in with dup2, so a line is
 * never lost or split by the swap. 0, or -1 with errno set (stderr is then
 * unchanged). */
int am_log_open(const char *path) AM_WUR;
/* am_log_open on the path last given; 0 when there is none. */
int am_log_reopen(void) AM_WUR;

/* Whether the HTTP layer writes its line per answered request ([log]
 * requests; on until set). */
void am_log_set_requests(bool on);
bool am_log_requests(void);

/* Sets (or clears, with NULL) the request id added to this thread's lines. */
void am_log_set_request(const char *request_id);

void am_log(enum am_log_level lvl, const char *fmt, ...) AM_PRINTF(2, 3);

/* Formats one line (without its newline) into out as am_log would write it
 * at time `now` (for tests); returns the length. */
size_t am_log_format_line(char *out, size_t cap, long long now, enum am_log_level lvl,
			  const char *request_id, const char *text);

#define log_debug(...) am_log(AM_LOG_DEBUG, __VA_ARGS__)
#define log_info(...) am_log(AM_LOG_INFO, __VA_ARGS__)
#define log_warn(...) am_log(AM_LOG_WARN, __VA_ARGS__)
#define log_error(...) am_log(AM_LOG_ERROR, __VA_ARGS__)

#endif
