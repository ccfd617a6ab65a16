/* Sliding-window rate limits kept in this process: each key counts hits in
 * the current and the previous fixed window, and the previous one is
 * weighted by how much of it still overlaps the sliding window.
 *
 * The counters live in one table allocated by ratelimit_new and never
 * grown: RATELIMIT_SETS sets of RATELIMIT_WAYS slots, a key hashed (keyed
 * SHA-256, the key drawn at start) to one set, one lock per set. A hit
 * looks at the slots of one set only, so its cost is bounded whatever the
 * number of keys. When a set is full, a new key takes the slot whose count
 * is lowest: under key pressure the limiter fails open for the least
 * active keys (an evicted key starts again from zero), while keys at or
 * near their limit, and the hot global keys, are the last to go. */
#ifndef AM_RATELIMIT_H
#define AM_RATELIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/compiler.h"

#define RATELIMIT_SETS 8192
#define RATELIMIT_WAYS 8 /* slots per set: the most a hit ever examines */

struct ratelimit;

/* window in seconds; NULL when out of memory or the CSPRNG fails. */
struct ratelimit *ratelimit_new(int64_t window) AM_WUR;
void ratelimit_free(struct ratelimit *rl); /* NULL is fine */

/* Counts one hit on key at time now and says whether it is allowed under
 * limit per window (0 = unlimited: always true, nothing counted). A refused
 * hit is not counted, and *retry_after gets the seconds until one would be
 * allowed again. Keys longer than 255 bytes are hashed by their first 255. */
bool ratelimit_hit(struct ratelimit *rl, const char *key, int64_t limit, int64_t now,
		   int64_t *retry_after) AM_WUR;

/* Makes the limiter count in pool's database when the database is shared
 * by replicas (PostgreSQL: store_rate_hit, one atomic upsert per hit, so
 * every replica's hits count toward one limit); on SQLite (one process) it
 * keeps counting here. When the database does not answer, a hit is counted
 * here instead (the request meets the store's 503 soon after anyway).
 * pool outlives rl. */
struct store_pool;
void ratelimit_share(struct ratelimit *rl, struct store_pool *pool);

/* What the table holds and has done, for tests and operators. */
struct ratelimit_stats {
	size_t bytes;	    /* memory of the table: fixed at ratelimit_new */
	size_t slots;	    /* capacity in keys */
	size_t used;	    /* slots holding a key */
	uint64_t hits;	    /* counted calls (limit > 0) */
	uint64_t probes;    /* slots examined by those calls, in all */
	uint64_t evictions; /* live keys dropped to make room */
};

/* Fills *out; takes each set's lock in turn, so it is a consistent view
 * of each set, not of the whole. */
void ratelimit_stats(struct ratelimit *rl, struct ratelimit_stats *out);

#endif
