/* Per-thread store handles: connections must not be shared between
 * threads mid-statement, and one connection per worker lets readers run in
 * parallel under WAL while writers queue on the database lock. On
 * PostgreSQL the handles are the replica's connection pool: one per thread
 * that uses the store (HTTP workers, the writer, the mail worker, the
 * sweeper), opened on first use, at most [store] pool_size. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"
#include "core/str.h"
#include "store/db.h"
#include "store/store.h"

struct store_pool {
	char url[600];
	char tenant[64];
	char temp_path[256]; /* set when the pool owns a temporary database */
	pthread_key_t key;
	/* Every handle's write transactions queue here (one database, one
	 * writer at a time): in order, not in SQLite's busy handler. */
	pthread_mutex_t writer;
	struct db_opts opts;
	bool shared;
	int max_handles; /* 0: no bound */
	int handles;	 /* thread handles open, under count_mu */
	pthread_mutex_t count_mu;
};

/* What the thread key holds: the handle and the pool that counts it. */
struct handle {
	struct store *st;
	struct store_pool *pool;
};

static void
close_handle(void *p)
{
	struct handle *h = p;

	store_close(h->st);
	pthread_mutex_lock(&h->pool->count_mu);
	h->pool->handles--;
	pthread_mutex_unlock(&h->pool->count_mu);
	free(h);
}

/* Opens a thread handle for the calling thread, within max_handles. */
static enum am_err
open_handle(struct store_pool *p, struct store *st, struct store **out, struct am_error *e)
{
	struct handle *h;
	enum am_err rc;

	pthread_mutex_lock(&p->count_mu);
	if (p->max_handles > 0 && p->handles >= p->max_handles) {
		pthread_mutex_unlock(&p->count_mu);
		store_close(st);
		log_warn("store pool full handles=%d: raise [store] pool_size", p->handles);
		e->retry_after = DB_RETRY_AFTER_S;
		return am_fail(e, AM_E_UNAVAILABLE, "the store's connection pool is full; retry");
	}
	p->handles++;
	pthread_mutex_unlock(&p->count_mu);
	if (st == NULL && (rc = store_open_opts(p->url, p->tenant, &p->opts, &st, e)) != AM_OK) {
		pthread_mutex_lock(&p->count_mu);
		p->handles--;
		pthread_mutex_unlock(&p->count_mu);
		return rc;
	}
	h = am_xmalloc(sizeof(*h));
	h->st = st;
	h->pool = p;
	store_set_writer_lock(st, &p->writer);
	pthread_setspecific(p->key, h);
	*out = st;
	return AM_OK;
}

enum am_err
store_pool_new(const char *url, const char *tenant, struct store_pool **out, struct am_error *e)
{
	return store_pool_new_opts(url, tenant, NULL, out, e);
}

enum am_err
store_pool_new_opts(const char *url, const char *tenant, const struct store_pool_opts *o,
		    struct store_pool **out, struct am_error *e)
{
	static const struct db_opts defaults = DB_OPTS_DEFAULT;
	struct store_pool *p = calloc(1, sizeof(*p));
	struct store *first = NULL, *got;
	enum am_err rc;

	if (p == NULL)
		return am_fail(e, AM_E_INTERNAL, "out of memory");
	p->opts = defaults;
	if (o != NULL) {
		p->opts.connect_timeout_s = o->connect_timeout_s;
		p->opts.statement_timeout_ms = o->statement_timeout_ms;
	}
	p->shared = db_url_is_pg(url);
	/* The bound is PostgreSQL's connection budget; SQLite handles are
	 * file handles, one per thread, and stay unbounded as before. */
	if (o != NULL && p->shared)
		p->max_handles = o->max_handles;
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
	pthread_mutex_init(&p->count_mu, NULL);
	/* Open once here: migrations run before any worker starts, and a bad
	 * URL stops start-up instead of failing the first request. */
	if ((rc = store_open_opts(p->url, p->tenant, &p->opts, &first, e)) != AM_OK ||
	    (rc = open_handle(p, first, &got, e)) != AM_OK) {
		store_pool_free(p);
		return rc;
	}
	*out = p;
	return AM_OK;
}

bool
store_pool_is_shared(const struct store_pool *p)
{
	return p->shared;
}

enum am_err
store_pool_get(struct store_pool *p, struct store **out, struct am_error *e)
{
	struct handle *h = pthread_getspecific(p->key);

	if (h == NULL)
		return open_handle(p, NULL, out, e);
	*out = h->st;
	return AM_OK;
}

enum am_err
store_pool_open(struct store_pool *p, struct store **out, struct am_error *e)
{
	struct store *st;
	enum am_err rc;

	if ((rc = store_open_opts(p->url, p->tenant, &p->opts, &st, e)) != AM_OK)
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
	{
		struct handle *h = pthread_getspecific(p->key);

		if (h != NULL)
			close_handle(h);
	}
	pthread_setspecific(p->key, NULL);
	pthread_key_delete(p->key);
	pthread_mutex_destroy(&p->writer);
	pthread_mutex_destroy(&p->count_mu);
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
