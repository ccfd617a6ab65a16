/* Per-thread store handles: SQLite connections must not be shared between
 * threads mid-statement, and one connection per worker lets readers run in
 * parallel under WAL while writers queue on the database lock. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"
#include "core/str.h"
#include "store/store.h"

struct store_pool {
	char url[600];
	char tenant[64];
	char temp_path[256]; /* set when the pool owns a temporary database */
	pthread_key_t key;
	/* Every handle's write transactions queue here (one database, one
	 * writer at a time): in order, not in SQLite's busy handler. */
	pthread_mutex_t writer;
};

static void
close_handle(void *p)
{
	store_close(p);
}

enum am_err
store_pool_new(const char *url, const char *tenant, struct store_pool **out, struct am_error *e)
{
	struct store_pool *p = calloc(1, sizeof(*p));
	struct store *first = NULL;
	enum am_err rc;

	if (p == NULL)
		return am_fail(e, AM_E_INTERNAL, "out of memory");
	if (strcmp(url, "sqlite::memory:") == 0) {
		const char *dir = getenv("TMPDIR");
		int fd;

		snprintf(p->temp_path, sizeof(p->temp_path), "%s/authmd-mem-XXXXXX.db",
			 dir != NULL && dir[0] != '\0' ? dir : "/tmp");
		if ((fd = mkstemps(p->temp_path, 3)) < 0) {
			free(p);
			return am_fail(e, AM_E_UNAVAILABLE, "cannot create a temporary store");
		}
		close(fd);
		snprintf(p->url, sizeof(p->url), "sqlite:%s", p->temp_path);
	} else if (!am_copy(p->url, sizeof(p->url), url)) {
		free(p);
		return am_fail(e, AM_E_INTERNAL, "store url too long");
	}
	if (!am_copy(p->tenant, sizeof(p->tenant), tenant) ||
	    pthread_key_create(&p->key, close_handle) != 0) {
		free(p);
		return am_fail(e, AM_E_INTERNAL, "cannot set up the store pool");
	}
	pthread_mutex_init(&p->writer, NULL);
	/* Open once here: migrations run before any worker starts, and a bad
	 * URL stops start-up instead of failing the first request. */
	if ((rc = store_open(p->url, p->tenant, &first, e)) != AM_OK) {
		store_pool_free(p);
		return rc;
	}
	store_set_writer_lock(first, &p->writer);
	pthread_setspecific(p->key, first);
	*out = p;
	return AM_OK;
}

enum am_err
store_pool_get(struct store_pool *p, struct store **out, struct am_error *e)
{
	struct store *st = pthread_getspecific(p->key);
	enum am_err rc;

	if (st == NULL) {
		if ((rc = store_open(p->url, p->tenant, &st, e)) != AM_OK)
			return rc;
		store_set_writer_lock(st, &p->writer);
		pthread_setspecific(p->key, st);
	}
	*out = st;
	return AM_OK;
}

enum am_err
store_pool_open(struct store_pool *p, struct store **out, struct am_error *e)
{
	struct store *st;
	enum am_err rc;

	if ((rc = store_open(p->url, p->tenant, &st, e)) != AM_OK)
		return rc;
	store_set_writer_lock(st, &p->writer);
	*out = st;
	return AM_OK;
}

void
store_pool_free(struct store_pool *p)
{
	if (p == NULL)
		return;
	/* Only the calling thread's handle is still open: workers closed theirs
	 * through the key destructor when they ended. */
	store_close(pthread_getspecific(p->key));
	pthread_setspecific(p->key, NULL);
	pthread_key_delete(p->key);
	pthread_mutex_destroy(&p->writer);
	if (p->temp_path[0] != '\0') {
		char side[300];

		unlink(p->temp_path);
		snprintf(side, sizeof(side), "%s-wal", p->temp_path);
		unlink(side);
		snprintf(side, sizeof(side), "%s-shm", p->temp_path);
		unlink(side);
	}
	free(p);
}
