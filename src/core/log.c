#include "core/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static enum am_log_level min_level = AM_LOG_INFO;
static _Thread_local char request_id[32];

static const char *const names[] = {"debug", "info", "warn", "error"};

int
am_log_set_level(const char *name)
{
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (strcmp(name, names[i]) == 0) {
			min_level = (enum am_log_level)i;
			return 0;
		}
	}
	return -1;
}

void
am_log_set_request(const char *id)
{
	if (id == NULL)
		request_id[0] = '\0';
	else
		snprintf(request_id, sizeof(request_id), "%s", id);
}

void
am_log(enum am_log_level lvl, const char *fmt, ...)
{
	char line[1024];
	char stamp[32];
	struct tm tm;
	time_t now = time(NULL);
	int n;
	va_list ap;

	if (lvl < min_level)
		return;
	gmtime_r(&now, &tm);
	strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%SZ", &tm);
	n = snprintf(line, sizeof(line), "%s level=%s ", stamp, names[lvl]);
	if (request_id[0] != '\0' && n > 0 && (size_t)n < sizeof(line))
		n += snprintf(line + n, sizeof(line) - (size_t)n, "req=%s ", request_id);
	if (n > 0 && (size_t)n < sizeof(line)) {
		va_start(ap, fmt);
		vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
		va_end(ap);
	}
	/* One write per line so lines of concurrent threads never interleave. */
	fprintf(stderr, "%s\n", line);
}
