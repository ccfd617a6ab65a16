/* One line per event on stderr: time, level, request id (when in a request),
 * then the caller's key=value text. Never pass a secret to these. */
#ifndef AM_LOG_H
#define AM_LOG_H

#include "core/compiler.h"

enum am_log_level { AM_LOG_DEBUG, AM_LOG_INFO, AM_LOG_WARN, AM_LOG_ERROR };

/* Sets the lowest level written; returns -1 for an unknown name. */
int am_log_set_level(const char *name);

/* Sets (or clears, with NULL) the request id added to this thread's lines. */
void am_log_set_request(const char *request_id);

void am_log(enum am_log_level lvl, const char *fmt, ...) AM_PRINTF(2, 3);

#define log_debug(...) am_log(AM_LOG_DEBUG, __VA_ARGS__)
#define log_info(...) am_log(AM_LOG_INFO, __VA_ARGS__)
#define log_warn(...) am_log(AM_LOG_WARN, __VA_ARGS__)
#define log_error(...) am_log(AM_LOG_ERROR, __VA_ARGS__)

#endif
