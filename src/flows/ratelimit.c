#include "flows/ratelimit.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/str.h"

#define BUCKETS 1024
#define KEY_MAX 96
#define PRUNE_AT 65536 /* entries before stale ones are dropped */

struct entry {
	struct entry *next;
	char key[KEY_MAX];
	int64_t start; /* start of the current fixed window */
	int64_t cur, prev;
};

struct ratelimit {
	pthread_mutex_t mu;
	int64_t window;
	size_t count;
	struct entry *bucket[BUCKETS];
};

struct ratelimit *
ratelimit_new(int64_t window)
{
	struct ratelimit *rl = calloc(1, sizeof(*rl));

	if (rl == NULL)
		return NULL;
	pthread_mutex_init(&rl->mu, NULL);
	rl->window = window > 0 ? window : 1;
	return rl;
}

void
ratelimit_free(struct ratelimit *rl)
{
	if (rl == NULL)
		return;
	for (size_t i = 0; i < BUCKETS; i++) {
		for (struct entry *en = rl->bucket[i], *nx; en != NULL; en = nx) {
			nx = en->next;
			free(en);
		}
	}
	pthread_mutex_destroy(&rl->mu);
	free(rl);
}

static size_t
hash(const char *s)
{
	size_t h = 1469598103934665603ULL; /* FNV-1a: bucketing only, not security */

	for (; *s != '\0'; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ULL;
	return h % BUCKETS;
}

/* Drops entries idle for two windows; they would count as zero anyway. */
static void
prune(struct ratelimit *rl, int64_t now)
{
	for (size_t i = 0; i < BUCKETS; i++) {
		struct entry **pp = &rl->bucket[i];

		while (*pp != NULL) {
			if (now - (*pp)->start >= 2 * rl->window) {
				struct entry *dead = *pp;

				*pp = dead->next;
				free(dead);
				rl->count--;
			} else {
				pp = &(*pp)->next;
			}
		}
	}
}

static struct entry *
find(struct ratelimit *rl, const char *key, int64_t now)
{
	size_t h = hash(key);
	struct entry *en;

	for (en = rl->bucket[h]; en != NULL; en = en->next) {
		if (strcmp(en->key, key) == 0)
			return en;
	}
	if (rl->count >= PRUNE_AT)
		prune(rl, now);
	en = calloc(1, sizeof(*en));
	if (en == NULL)
		return NULL;
	if (!am_copy(en->key, sizeof(en->key), key))
		en->key[0] = '\0';
	en->start = now - (now % rl->window);
	en->next = rl->bucket[h];
	rl->bucket[h] = en;
	rl->count++;
	return en;
}

bool
ratelimit_hit(struct ratelimit *rl, const char *key, int64_t limit, int64_t now,
	      int64_t *retry_after)
{
	int64_t w = rl->window, start = now - (now % w), elapsed;
	struct entry *en;
	bool ok;

	*retry_after = 0;
	if (limit <= 0)
		return true;
	pthread_mutex_lock(&rl->mu);
	en = find(rl, key, now);
	if (en == NULL) {
		pthread_mutex_unlock(&rl->mu);
		return true; /* fail open, as the protocol's guidance says */
	}
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
	pthread_mutex_unlock(&rl->mu);
	return ok;
}
