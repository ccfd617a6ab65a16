#include "core/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

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

/* The line's time stamp, formatted once per second per thread. */
static size_t
stamp_now(char out[32])
{
	static _Thread_local time_t last = (time_t)-1;
	static _Thread_local char text[32];
	static _Thread_local size_t len;
	time_t now = time(NULL);

	if (now != last) {
		struct tm tm;

		gmtime_r(&now, &tm);
		len = strftime(text, sizeof(text), "%Y-%m-%dT%H:%M:%SZ", &tm);
		last = now;
	}
	memcpy(out, text, len + 1);
	return len;
}

/* One write(2) of the whole line: no stdio lock is taken, so threads
 * logging at once never queue on a mutex held across a system call, and
 * lines of concurrent threads still never interleave (stderr is opened
 * O_APPEND by the service manager, or is a pipe, where a write of a line
 * this short is atomic). */
static void
write_line(const char *line, size_t len)
{
	while (len > 0) {
		ssize_t n = write(STDERR_FILENO, line, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return; /* nowhere to report a failing log */
		line += n;
		len -= (size_t)n;
	}
}

void
am_log(enum am_log_level lvl, const char *fmt, ...)
{
	char line[1024];
	size_t n, room = sizeof(line) - 1; /* one byte kept for the newline */
	int k;
	va_list ap;

	if (lvl < min_level)
		return;
	n = stamp_now(line);
	k = snprintf(line + n, room - n, " level=%s ", names[lvl]);
	n = k < 0 ? n : n + (size_t)k >= room ? room - 1 : n + (size_t)k;
	if (request_id[0] != '\0' && n < room - 1) {
		k = snprintf(line + n, room - n, "req=%s ", request_id);
		n = k < 0 ? n : n + (size_t)k >= room ? room - 1 : n + (size_t)k;
	}
	if (n < room - 1) {
		va_start(ap, fmt);
		k = vsnprintf(line + n, room - n, fmt, ap);
		va_end(ap);
		n = k < 0 ? n : n + (size_t)k >= room ? room - 1 : n + (size_t)k;
	}
	line[n++] = '\n';
	write_line(line, n);
}
