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

/* t + d clamped to [INT64_MIN, INT64_MAX]: time arithmetic on values that
 * came from outside (a token's exp, iat, nbf) must never overflow, and a
 * clamped instant still compares the right way. */
static inline int64_t
am_time_add(int64_t t, int64_t d)
{
	int64_t r;

	if (__builtin_add_overflow(t, d, &r))
		return d > 0 ? INT64_MAX : INT64_MIN;
	return r;
}

#endif
