#include "core/clock.h"

#include <stdio.h>
#include <time.h>

int64_t
am_clock_now(const struct am_clock *c)
{
	if (c != NULL && c->now != 0)
		return c->now;
	return (int64_t)time(NULL);
}

void
am_time_iso(int64_t t, char *out, size_t cap)
{
	struct tm tm;
	time_t tt = (time_t)t;

	gmtime_r(&tt, &tm);
	snprintf(out, cap, "%04d-%02d-%02dT%02d:%02d:%02d.000Z", tm.tm_year + 1900, tm.tm_mon + 1,
		 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
}
