#include "flows/ratelimit.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/crypto.h"
#include "core/log.h"
#include "store/store.h"

#define SALT_LEN 16
#define KEY_HASHED 255

struct slot {
	uint64_t tag;  /* 64 bits of the key's keyed hash; 0: empty */
	int64_t start; /* start of the current fixed window */
	int64_t cur, prev;
};

struct set {
	pthread_mutex_t mu;
	uint64_t hits, probes, evictions; /* under mu */
	struct slot slot[RATELIMIT_WAYS];
};

struct ratelimit {
	int64_t window;
	struct store_pool *shared; /* set: count in the shared database */
	uint8_t salt[SALT_LEN];
	struct set *sets; /* RATELIMIT_SETS of them, allocated once */
};

struct ratelimit *
ratelimit_new(int64_t window)
{
	struct ratelimit *rl = calloc(1, sizeof(*rl));

	if (rl == NULL)
		return NULL;
	rl->window = window > 0 ? window : 1;
	/* A salt nobody outside knows, so a client cannot pick keys (IPv6
	 * sources are cheap) that all land in the set of a key it wants evicted. */
	if (RAND_bytes(rl->salt, sizeof(rl->salt)) != 1 ||
	    (rl->sets = calloc(RATELIMIT_SETS, sizeof(*rl->sets))) == NULL) {
		free(rl);
		return NULL;
	}
	for (size_t i = 0; i < RATELIMIT_SETS; i++)
		pthread_mutex_init(&rl->sets[i].mu, NULL);
	return rl;
}

void
ratelimit_free(struct ratelimit *rl)
{
	if (rl == NULL)
		return;
	for (size_t i = 0; i < RATELIMIT_SETS; i++)
		pthread_mutex_destroy(&rl->sets[i].mu);
	free(rl->sets);
	OPENSSL_cleanse(rl->salt, sizeof(rl->salt));
	free(rl);
}

/* The key's set and its tag, from SHA-256(salt || key). */
static struct set *
locate(struct ratelimit *rl, const char *key, uint64_t *tag)
{
	uint8_t buf[SALT_LEN + KEY_HASHED], h[AM_HASH_LEN];
	size_t n = strnlen(key, KEY_HASHED);
	uint32_t idx;

	memcpy(buf, rl->salt, SALT_LEN);
	memcpy(buf + SALT_LEN, key, n);
	am_sha256(buf, SALT_LEN + n, h);
	memcpy(tag, h, sizeof(*tag));
	memcpy(&idx, h + sizeof(*tag), sizeof(idx));
	if (*tag == 0)
		*tag = 1;
	return &rl->sets[idx % RATELIMIT_SETS];
}

/* The slot's weight at now, scaled by the window: prev * (w - elapsed) + cur * w.
 * A slot two windows old weighs nothing. */
static int64_t
weight(const struct slot *s, int64_t w, int64_t now)
{
	int64_t start = now - (now % w), elapsed = now - start;

	if (start == s->start)
		return s->prev * (w - elapsed) + s->cur * w;
	if (start - s->start == w)
		return s->cur * (w - elapsed);
	return 0;
}

/* The key's slot in set: its own, else an empty one, else the one that
 * weighs least (the oldest window among equals), which is reset. Slots fill
 * in order and are never emptied, so the first empty one ends the search.
 * Examines RATELIMIT_WAYS slots at most. */
static struct slot *
claim(struct set *set, uint64_t tag, int64_t w, int64_t now)
{
	struct slot *victim = NULL;
	int64_t least = INT64_MAX;

	for (size_t i = 0; i < RATELIMIT_WAYS; i++) {
		struct slot *s = &set->slot[i];
		int64_t wt;

		set->probes++;
		if (s->tag == tag)
			return s;
		if (s->tag == 0) {
			victim = s, least = 0;
			break;
		}
		wt = weight(s, w, now);
		if (victim == NULL || wt < least || (wt == least && s->start < victim->start))
			victim = s, least = wt;
	}
	if (victim->tag != 0 && least > 0)
		set->evictions++; /* a live count is lost: that key fails open */
	victim->tag = tag;
	victim->start = now - (now % w);
	victim->cur = victim->prev = 0;
	return victim;
}

void
ratelimit_share(struct ratelimit *rl, struct store_pool *pool)
{
	rl->shared = pool != NULL && store_pool_is_shared(pool) ? pool : NULL;
}

/* The shared count; false when the database did not answer. */
static bool
shared_hit(struct ratelimit *rl, const char *key, int64_t limit, int64_t now, bool *ok,
	   int64_t *retry_after)
{
	struct am_error e = {0};
	struct store *st;

	if (store_pool_get(rl->shared, &st, &e) != AM_OK ||
	    store_rate_hit(st, key, rl->window, limit, now, ok, retry_after, &e) != AM_OK) {
		log_warn("shared rate limit unavailable code=%s; counting in this process",
			 am_err_name(e.code));
		return false;
	}
	return true;
}

bool
ratelimit_hit(struct ratelimit *rl, const char *key, int64_t limit, int64_t now,
	      int64_t *retry_after)
{
	int64_t w = rl->window, start = now - (now % w), elapsed;
	struct set *set;
	struct slot *en;
	uint64_t tag;
	bool ok;

	*retry_after = 0;
	if (limit <= 0)
		return true;
	if (rl->shared != NULL && shared_hit(rl, key, limit, now, &ok, retry_after))
		return ok;
	set = locate(rl, key, &tag);
	pthread_mutex_lock(&set->mu);
	set->hits++;
	en = claim(set, tag, w, now);
	if (start != en->start) {
		en->prev = start - en->start == w ? en->cur : 0;
		en->cur = 0;
		en->start = start;
	}
	elapsed = now - start;
	/* estimate = prev * (w - elapsed) / w + cur, kept in integers */
	ok = en->prev * (w - elapsed) + en->cur * w < limit * w;
	if (ok) {
		en->cur++;
	} else if (en->cur >= limit) {
		*retry_after = w - elapsed; /* the current window alone is full */
	} else {
		/* Wait until enough of the previous window has slid out:
		 * prev * (w - t) + cur * w < limit * w. */
		int64_t need = en->prev * w - (limit - en->cur) * w;
		int64_t t = en->prev > 0 ? need / en->prev + 1 : 1;

		*retry_after = t > elapsed ? t - elapsed : 1;
	}
	pthread_mutex_unlock(&set->mu);
	return ok;
}

void
ratelimit_stats(struct ratelimit *rl, struct ratelimit_stats *out)
{
	memset(out, 0, sizeof(*out));
	out->bytes = sizeof(*rl) + RATELIMIT_SETS * sizeof(*rl->sets);
	out->slots = (size_t)RATELIMIT_SETS * RATELIMIT_WAYS;
	for (size_t i = 0; i < RATELIMIT_SETS; i++) {
		struct set *set = &rl->sets[i];

		pthread_mutex_lock(&set->mu);
		for (size_t j = 0; j < RATELIMIT_WAYS; j++)
			out->used += set->slot[j].tag != 0;
		out->hits += set->hits;
		out->probes += set->probes;
		out->evictions += set->evictions;
		pthread_mutex_unlock(&set->mu);
	}
}
