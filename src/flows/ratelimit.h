/* Sliding-window rate limits kept in this process: each key counts hits in
 * the current and the previous fixed window, and the previous one is
 * weighted by how much of it still overlaps the sliding window. */
#ifndef AM_RATELIMIT_H
#define AM_RATELIMIT_H

#include <stdbool.h>
#include <stdint.h>

#include "core/compiler.h"

struct ratelimit;

/* window in seconds; NULL when out of memory. */
struct ratelimit *ratelimit_new(int64_t window);
void ratelimit_free(struct ratelimit *rl);

/* Counts one hit on key at time now and says whether it is allowed under
 * limit per window (0 = unlimited: always true, nothing counted). A refused
 * hit is not counted, and *retry_after gets the seconds until one would be
 * allowed again. */
bool ratelimit_hit(struct ratelimit *rl, const char *key, int64_t limit, int64_t now,
		   int64_t *retry_after) AM_WUR;

#endif
