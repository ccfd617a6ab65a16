#include "core/log.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static enum am_log_level min_level = AM_LOG_INFO;
static bool json_format;
static _Thread_local char request_id[32];
/* the [log] file, for am_log_reopen; guarded by path_mu */
static pthread_mutex_t path_mu = PTHREAD_MUTEX_INITIALIZER;
static char log_path[512];

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

int
am_log_set_format(const char *name)
{
	if (strcmp(name, "text") != 0 && strcmp(name, "json") != 0)
		return -1;
	json_format = strcmp(name, "json") == 0;
	return 0;
}

static int
open_onto_stderr(const char *path)
{
	int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0640);
	int saved;

	if (fd < 0)
		return -1;
	/* dup2 swaps the file under fd 2 atomically: a concurrent write goes
	 * whole to the old file or whole to the new one. */
	if (dup2(fd, STDERR_FILENO) < 0) {
		saved = errno;
		close(fd);
		errno = saved;
		return -1;
	}
	close(fd);
	return 0;
}

int
am_log_open(const char *path)
{
	int rc = 0;

	if (path == NULL || path[0] == '\0')
		return 0;
	pthread_mutex_lock(&path_mu);
	if (strlen(path) >= sizeof(log_path)) {
		errno = ENAMETOOLONG;
		rc = -1;
	} else if ((rc = open_onto_stderr(path)) == 0) {
		memcpy(log_path, path, strlen(path) + 1);
	}
	pthread_mutex_unlock(&path_mu);
	return rc;
}

int
am_log_reopen(void)
{
	int rc = 0;

	pthread_mutex_lock(&path_mu);
	if (log_path[0] != '\0')
		rc = open_onto_stderr(log_path);
	pthread_mutex_unlock(&path_mu);
	return rc;
}

static atomic_bool requests_on = true;

void
am_log_set_requests(bool on)
{
	atomic_store_explicit(&requests_on, on, memory_order_relaxed);
}

bool
am_log_requests(void)
{
	return atomic_load_explicit(&requests_on, memory_order_relaxed);
}

void
am_log_set_request(const char *id)
{
	if (id == NULL)
		request_id[0] = '\0';
	else {
		size_t n = strnlen(id, sizeof(request_id)); /* no core/str here: it logs */

		n = n < sizeof(request_id) ? n : 0; /* too long: none, rather than cut */
		memcpy(request_id, id, n);
		request_id[n] = '\0';
	}
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

static bool
reserved(const char *key)
{
	return strcmp(key, "time") == 0 || strcmp(key, "level") == 0 || strcmp(key, "req") == 0 ||
	       strcmp(key, "msg") == 0;
}

/* Adds each key=value (or key="value") word of text to obj as a string. */
static void
add_pairs(json_t *obj, const char *text)
{
	const char *p = text;

	while (*p != '\0') {
		const char *word = p, *eq;
		size_t klen;
		char key[64];

		while (*p != '\0' && *p != ' ' && *p != '=')
			p++;
		if (*p != '=') {
			while (*p == ' ')
				p++;
			continue;
		}
		eq = p;
		klen = (size_t)(eq - word);
		p++;
		if (*p == '"') {
			const char *v = ++p;

			while (*p != '\0' && *p != '"')
				p++;
			if (klen > 0 && klen < sizeof(key)) {
				memcpy(key, word, klen);
				key[klen] = '\0';
				if (!reserved(key))
					json_object_set_new(obj, key,
							    json_stringn(v, (size_t)(p - v)));
			}
			if (*p == '"')
				p++;
		} else {
			const char *v = p;

			while (*p != '\0' && *p != ' ')
				p++;
			if (klen > 0 && klen < sizeof(key)) {
				memcpy(key, word, klen);
				key[klen] = '\0';
				if (!reserved(key))
					json_object_set_new(obj, key,
							    json_stringn(v, (size_t)(p - v)));
			}
		}
		while (*p == ' ')
			p++;
	}
}

static size_t
format_json(char *out, size_t cap, const char *stamp, enum am_log_level lvl, const char *req,
	    const char *text)
{
	json_t *obj = json_object();
	size_t n;

	if (obj == NULL)
		return 0;
	json_object_set_new(obj, "time", json_string(stamp));
	json_object_set_new(obj, "level", json_string(names[lvl]));
	if (req != NULL && req[0] != '\0')
		json_object_set_new(obj, "req", json_string(req));
	/* json_string refuses text that is not UTF-8 (a line cut inside a
	 * sequence): the line still goes out, saying so. */
	if (json_object_set_new(obj, "msg", json_string(text)) != 0)
		json_object_set_new(obj, "msg", json_string("(not UTF-8)"));
	add_pairs(obj, text);
	n = json_dumpb(obj, out, cap > 0 ? cap - 1 : 0, JSON_COMPACT | JSON_ENSURE_ASCII);
	if (n >= cap) {
		/* Too long for one line: the fixed members and the text cut. */
		json_t *small = json_pack("{s:s, s:s, s:s}", "time", stamp, "level", names[lvl],
					  "msg", "(line too long; cut)");

		n = small != NULL ? json_dumpb(small, out, cap - 1, JSON_COMPACT) : 0;
		json_decref(small);
		if (n >= cap)
			n = 0;
	}
	json_decref(obj);
	out[n] = '\0';
	return n;
}

size_t
am_log_format_line(char *out, size_t cap, long long now, enum am_log_level lvl, const char *req,
		   const char *text)
{
	char stamp[32];
	struct tm tm;
	time_t t = (time_t)now;
	int n;

	if (cap == 0)
		return 0;
	gmtime_r(&t, &tm);
	strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%SZ", &tm);
	if (json_format)
		return format_json(out, cap, stamp, lvl, req, text);
	if (req != NULL && req[0] != '\0')
		n = snprintf(out, cap, "%s level=%s req=%s %s", stamp, names[lvl], req, text);
	else
		n = snprintf(out, cap, "%s level=%s %s", stamp, names[lvl], text);
	if (n < 0) {
		out[0] = '\0';
		return 0;
	}
	return (size_t)n < cap ? (size_t)n : cap - 1;
}

static size_t
put(char *line, size_t n, const char *s, size_t len)
{
	memcpy(line + n, s, len);
	return n + len;
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
	if (json_format) {
		char text[1024], jline[2048];

		va_start(ap, fmt);
		vsnprintf(text, sizeof(text), fmt, ap);
		va_end(ap);
		n = am_log_format_line(jline, sizeof(jline) - 1, (long long)time(NULL), lvl,
				       request_id, text);
		jline[n++] = '\n';
		write_line(jline, n);
		return;
	}
	/* The prefix by hand (every request logs a line): the stamp (at most
	 * 31 bytes), " level=" and its name, "req=" and the id (under 32) fit
	 * the 1 KiB line with room to spare. */
	n = stamp_now(line);
	n = put(line, n, " level=", 7);
	n = put(line, n, names[lvl], strlen(names[lvl]));
	n = put(line, n, " ", 1);
	if (request_id[0] != '\0') {
		n = put(line, n, "req=", 4);
		n = put(line, n, request_id, strlen(request_id));
		n = put(line, n, " ", 1);
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
