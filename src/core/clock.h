/* Wall-clock time in whole seconds, replaceable so tests control it. */
#ifndef AM_CLOCK_H
#define AM_CLOCK_H

#include <stddef.h>
#include <stdint.h>

struct am_clock {
	/* When now is 0 the real time is used; tests set a fixed value. */
	int64_t now;
};

/* Seconds since the epoch: c->now when set, else the system clock. */
int64_t am_clock_now(const struct am_clock *c);

/* Formats t as RFC 3339 UTC with milliseconds ("2026-05-04T13:00:00.000Z")
 * into out (at least 25 bytes). */
void am_time_iso(int64_t t, char *out, size_t cap);

#endif
