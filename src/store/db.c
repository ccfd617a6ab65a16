/* The statement layer (db.h): the SQLite backend, and the dispatch to the
 * PostgreSQL one (pq.c) where the two differ. */
#include "store/db_impl.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/fs.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/str.h"

/* The WAL frames after which a commit copies the log into the database
 * file (SQLite's automatic checkpoint, 1000 by default). The writer's
 * commits rewrite the same right-edge pages of every table and index, so a
 * longer log means fewer copies of each page and fewer checkpoint fsyncs:
 * the anonymous registration row went from about 9 k to 11-12 k req/s at
 * 4000 (16 MiB of log at 4 KiB pages); 8000 and 16000 gained nothing more
 * there, and each checkpoint's pause grows with the log. A checkpointer on
 * a thread of its own was tried and lost on 2 cores (docs/decisions.md). */
#define DB_WAL_CHECKPOINT_FRAMES 4000

/* The page cache of a connection that does not run batches, in KiB (text:
 * it goes into a PRAGMA), and of the one that does. RSS at 1 000 000
 * registrations must stay under 30 MiB (issue 8) with a connection per
 * thread. */
#define DB_READER_CACHE_KIB "1024"
#define DB_WRITER_CACHE_PRAGMA "PRAGMA cache_size = -2000"

static const char *const sp_sql[SP_COUNT] = {
	"SAVEPOINT batch_job",
	"RELEASE batch_job",
	"SAVEPOINT job",
	"RELEASE job",
	/* SQLite only (PostgreSQL's BEGIN is plain, below); prepared once, as
	 * every batch runs them and sqlite3_exec parses its text each time */
	"BEGIN IMMEDIATE",
	"COMMIT",
};

bool
db_url_is_pg(const char *url)
{
	return pq_url_is(url);
}

bool
db_is_pg(const struct db *db)
{
	return db->pg != NULL;
}

/* Busy and locked (another writer kept the lock past the bounded wait), full
 * (disk or quota) and I/O errors are conditions that pass: the request gets
 * 503 with Retry-After, and the transaction it was in has been rolled back,
 * so nothing of it is written. */
static bool
transient(int rc)
{
	return rc == SQLITE_BUSY || rc == SQLITE_LOCKED || rc == SQLITE_IOERR || rc == SQLITE_FULL;
}

static enum am_err
map_rc(int rc, struct am_error *e)
{
	if (transient(rc)) {
		if (e != NULL)
			e->retry_after = DB_RETRY_AFTER_S;
		return am_fail(e, AM_E_UNAVAILABLE,
			       rc == SQLITE_FULL ? "the store is out of space; retry later"
						 : "the store is busy; retry");
	}
	return am_fail(e, AM_E_INTERNAL, "storage error");
}

enum am_err
db_fail(struct db *db, int rc, const char *what, struct am_error *e)
{
	if (db->pg != NULL)
		return pq_fail(db, NULL, what, e);
	log_error("sqlite %s failed rc=%d: %s", what, rc, sqlite3_errmsg(db->h));
	return map_rc(rc, e);
}

enum am_err
db_prep(struct db *db, size_t idx, struct db_stmt **out, struct am_error *e)
{
	struct db_stmt *s;
	int rc;

	if (idx >= db->nq)
		return am_fail(e, AM_E_INTERNAL, "no such statement");
	s = &db->stmt[idx];
	db_reset(s);
	if (db->pg != NULL) {
		if ((rc = pq_prep(db, s, e)) != AM_OK)
			return rc;
		db_bind_text(s, 1, db->tenant);
		*out = s;
		return AM_OK;
	}
	if (s->lite == NULL) {
		rc = sqlite3_prepare_v3(db->h, db->sql[idx], -1, SQLITE_PREPARE_PERSISTENT,
					&s->lite, NULL);
		if (rc != SQLITE_OK)
			return db_fail(db, rc, "prepare", e);
	}
	sqlite3_bind_text(s->lite, 1, db->tenant, -1, SQLITE_STATIC);
	*out = s;
	return AM_OK;
}

void
db_reset(struct db_stmt *s)
{
	if (s->db->pg != NULL) {
		pq_reset(s);
		return;
	}
	if (s->lite != NULL) {
		sqlite3_reset(s->lite);
		sqlite3_clear_bindings(s->lite);
	}
}

static int64_t
stmt_counter(struct db *db, int counter)
{
	int64_t n = 0;

	if (db->pg != NULL)
		return 0;
	for (size_t i = 0; i < db->nq; i++) {
		if (db->stmt[i].lite != NULL)
			n += sqlite3_stmt_status(db->stmt[i].lite, counter, 0);
	}
	return n;
}

int64_t
db_vm_steps(struct db *db)
{
	return stmt_counter(db, SQLITE_STMTSTATUS_VM_STEP);
}

int64_t
db_sorts(struct db *db)
{
	return stmt_counter(db, SQLITE_STMTSTATUS_SORT);
}

/* PostgreSQL parameters: i in 1..DB_MAX_PARAMS, kept as text (numbers in
 * decimal) or binary (blobs). */
static void
pq_param(struct db_stmt *s, int i, const char *v, int len, int fmt, char *own)
{
	if (i < 1 || i > DB_MAX_PARAMS) {
		free(own);
		return;
	}
	free(s->own[i - 1]);
	s->own[i - 1] = own;
	s->val[i - 1] = v;
	s->len[i - 1] = len;
	s->fmt[i - 1] = fmt;
}

void
db_bind_text(struct db_stmt *s, int i, const char *v)
{
	if (s->db->pg != NULL) {
		char *c = v != NULL ? am_xstrdup(v) : NULL;

		pq_param(s, i, c, 0, 0, c);
	} else if (v == NULL) {
		sqlite3_bind_null(s->lite, i);
	} else {
		sqlite3_bind_text(s->lite, i, v, -1, SQLITE_TRANSIENT);
	}
}

void
db_bind_text_or_null(struct db_stmt *s, int i, const char *v)
{
	db_bind_text(s, i, v != NULL && v[0] != '\0' ? v : NULL);
}

void
db_bind_int64(struct db_stmt *s, int i, int64_t v)
{
	if (s->db->pg != NULL) {
		char *c = am_xmalloc(24);

		snprintf(c, 24, "%lld", (long long)v);
		pq_param(s, i, c, 0, 0, c);
	} else {
		sqlite3_bind_int64(s->lite, i, v);
	}
}

void
db_bind_null(struct db_stmt *s, int i)
{
	if (s->db->pg != NULL)
		pq_param(s, i, NULL, 0, 0, NULL);
	else
		sqlite3_bind_null(s->lite, i);
}

void
db_bind_hash(struct db_stmt *s, int i, const uint8_t *h)
{
	if (s->db->pg != NULL) {
		char *c = am_xmalloc(AM_HASH_LEN);

		memcpy(c, h, AM_HASH_LEN);
		pq_param(s, i, c, AM_HASH_LEN, 1, c);
	} else {
		sqlite3_bind_blob(s->lite, i, h, AM_HASH_LEN, SQLITE_TRANSIENT);
	}
}

void
db_bind_blob_static(struct db_stmt *s, int i, const void *p, size_t n)
{
	if (s->db->pg != NULL)
		pq_param(s, i, p, (int)n, 1, NULL);
	else
		sqlite3_bind_blob(s->lite, i, p, (int)n, SQLITE_STATIC);
}

bool
db_col_null(struct db_stmt *s, int i)
{
	if (s->db->pg != NULL)
		return pq_col(s, i) == NULL;
	return sqlite3_column_type(s->lite, i) == SQLITE_NULL;
}

int64_t
db_col_int64(struct db_stmt *s, int i)
{
	const char *v;
	int64_t n;

	if (s->db->pg == NULL)
		return sqlite3_column_int64(s->lite, i);
	if ((v = pq_col(s, i)) == NULL)
		return 0;
	if (strcmp(v, "t") == 0 || strcmp(v, "f") == 0)
		return v[0] == 't';
	return am_parse_i64(v, INT64_MIN, INT64_MAX, &n) == 0 ? n : 0;
}

const char *
db_col_str(struct db_stmt *s, int i)
{
	if (s->db->pg != NULL)
		return pq_col(s, i);
	return (const char *)sqlite3_column_text(s->lite, i);
}

void
db_col_text(struct db_stmt *s, int i, char *dst, size_t cap)
{
	const char *v = db_col_str(s, i);

	if (v == NULL || !am_copy(dst, cap, v))
		dst[0] = '\0';
}

const void *
db_col_blob(struct db_stmt *s, int i, size_t *len)
{
	const char *v;
	size_t n = 0;

	*len = 0;
	if (s->db->pg == NULL) {
		const void *p = sqlite3_column_blob(s->lite, i);

		*len = p != NULL ? (size_t)sqlite3_column_bytes(s->lite, i) : 0;
		return p;
	}
	if ((v = pq_col(s, i)) == NULL)
		return NULL;
	if (s->blob != NULL) {
		OPENSSL_cleanse(s->blob, s->blob_len);
		PQfreemem(s->blob);
		s->blob = NULL;
	}
	/* Results come as text: bytea in hex, which libpq decodes. A blob may
	 * be a queued mail (it holds a claim link): the hex copy in the result
	 * is wiped once decoded, the decoded one at reset. */
	if ((s->blob = PQunescapeBytea((const unsigned char *)v, &n)) == NULL)
		return NULL;
	s->blob_len = n;
	OPENSSL_cleanse((char *)v, strlen(v));
	*len = n;
	return s->blob;
}

bool
db_col_hash(struct db_stmt *s, int i, uint8_t out[AM_HASH_LEN])
{
	size_t n;
	const void *p = db_col_blob(s, i, &n);

	if (p == NULL || n != AM_HASH_LEN) {
		memset(out, 0, AM_HASH_LEN);
		return false;
	}
	memcpy(out, p, AM_HASH_LEN);
	return true;
}

int
db_name_index(const char *const *names, size_t n, const char *s)
{
	for (size_t i = 0; s != NULL && i < n; i++) {
		if (strcmp(names[i], s) == 0)
			return (int)i;
	}
	return -1;
}

enum am_err
db_run(struct db *db, struct db_stmt *s, const char *what, int *changes, struct am_error *e)
{
	int rc;

	if (db->pg != NULL) {
		enum am_err r = pq_exec_stmt(db, s, what, e);

		if (r == AM_OK && changes != NULL)
			*changes = pq_changes(s);
		db_reset(s);
		return r;
	}
	rc = sqlite3_step(s->lite);
	sqlite3_reset(s->lite);
	if (rc != SQLITE_DONE) {
		if (rc == SQLITE_CONSTRAINT)
			return am_fail(e, AM_E_INTERNAL, "storage constraint");
		return db_fail(db, rc, what, e);
	}
	if (changes != NULL)
		*changes = sqlite3_changes(db->h);
	return AM_OK;
}

enum am_err
db_one(struct db *db, struct db_stmt *s, const char *what, struct am_error *e)
{
	int rc;

	if (db->pg != NULL) {
		enum am_err r = pq_exec_stmt(db, s, what, e);

		if (r != AM_OK) {
			db_reset(s);
			return r;
		}
		if (s->nrows == 0) {
			db_reset(s);
			return am_fail(e, AM_E_NOT_FOUND, "not found");
		}
		s->row = 0;
		return AM_OK;
	}
	rc = sqlite3_step(s->lite);
	if (rc == SQLITE_ROW)
		return AM_OK;
	sqlite3_reset(s->lite);
	if (rc == SQLITE_DONE)
		return am_fail(e, AM_E_NOT_FOUND, "not found");
	return db_fail(db, rc, what, e);
}

enum am_err
db_next(struct db *db, struct db_stmt *s, const char *what, struct am_error *e)
{
	int rc;

	if (db->pg != NULL) {
		enum am_err r;

		if (s->res == NULL) {
			if ((r = pq_exec_stmt(db, s, what, e)) != AM_OK)
				return r;
			s->row = -1;
		}
		if (++s->row >= s->nrows)
			return am_fail(e, AM_E_NOT_FOUND, "no more rows");
		return AM_OK;
	}
	rc = sqlite3_step(s->lite);
	if (rc == SQLITE_ROW)
		return AM_OK;
	if (rc == SQLITE_DONE)
		return am_fail(e, AM_E_NOT_FOUND, "no more rows");
	return db_fail(db, rc, what, e);
}

static enum am_err
exec(struct db *db, const char *text, struct am_error *e)
{
	char *msg = NULL;
	int rc;

	if (db->pg != NULL)
		return pq_exec(db, text, e);
	if ((rc = sqlite3_exec(db->h, text, NULL, NULL, &msg)) != SQLITE_OK) {
		log_error("sqlite exec failed rc=%d: %s", rc, msg != NULL ? msg : "?");
		sqlite3_free(msg);
		return map_rc(rc, e);
	}
	return AM_OK;
}

/* A transaction's COMMIT, fsync and all, timed for the commit histogram:
 * each one a request's answer may wait for, a flow's own or a batch's
 * (a flow's "commit" inside a batch is a savepoint, and is not one). */
static enum am_err exec_sp(struct db *db, int which, struct am_error *e);

static enum am_err
commit_timed(struct db *db, struct am_error *e)
{
	double started = am_metrics_now();
	enum am_err rc = exec_sp(db, SP_COMMIT, e);

	am_metrics_observe(AM_M_STORE_COMMIT, NULL, am_metrics_now() - started);
	return rc;
}

static enum am_err
exec_sp(struct db *db, int which, struct am_error *e)
{
	int rc;

	if (db->pg != NULL)
		return pq_exec(db, sp_sql[which], e);
	if (db->sp[which] == NULL &&
	    (rc = sqlite3_prepare_v3(db->h, sp_sql[which], -1, SQLITE_PREPARE_PERSISTENT,
				     &db->sp[which], NULL)) != SQLITE_OK)
		return db_fail(db, rc, "prepare savepoint", e);
	rc = sqlite3_step(db->sp[which]);
	sqlite3_reset(db->sp[which]);
	if (rc != SQLITE_DONE)
		return db_fail(db, rc, sp_sql[which], e);
	return AM_OK;
}

int
db_schema_version(struct db *db)
{
	sqlite3_stmt *s = NULL;
	int v = 0;

	if (db->pg != NULL)
		return pq_schema_version(db);
	if (sqlite3_prepare_v2(db->h, "SELECT COALESCE(MAX(version), 0) FROM schema_migrations", -1,
			       &s, NULL) == SQLITE_OK &&
	    sqlite3_step(s) == SQLITE_ROW)
		v = sqlite3_column_int(s, 0);
	sqlite3_finalize(s);
	return v;
}

static enum am_err
migrate(struct db *db, const char *const *migrations, size_t nmig, struct am_error *e)
{
	enum am_err rc;
	int version;

	/* Up to date is the common case (every worker thread opens its own
	 * connection): it needs no write lock, so a connection opened while
	 * another process holds the lock can still serve reads. */
	if (db_schema_version(db) == (int)nmig)
		return AM_OK;
	if ((rc = exec(db, "BEGIN IMMEDIATE", e)) != AM_OK)
		return rc;
	if ((rc = exec(db,
		       "CREATE TABLE IF NOT EXISTS schema_migrations "
		       "(version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)",
		       e)) != AM_OK)
		goto fail;
	version = db_schema_version(db);
	for (size_t i = (size_t)version; i < nmig; i++) {
		char mark[128];

		if ((rc = exec(db, migrations[i], e)) != AM_OK)
			goto fail;
		snprintf(mark, sizeof(mark),
			 "INSERT INTO schema_migrations VALUES (%zu, strftime('%%s','now'))",
			 i + 1);
		if ((rc = exec(db, mark, e)) != AM_OK)
			goto fail;
		log_info("store migrated to version=%zu", i + 1);
	}
	return exec(db, "COMMIT", e);
fail:
	(void)exec(db, "ROLLBACK", NULL);
	return rc;
}

/* Before SQLite's first use in the process: no memory statistics. They
 * would take a global mutex around every allocation SQLite makes (several
 * per statement step), which every connection's thread then queues on;
 * nothing here reads sqlite3_memory_used(). A process that started SQLite
 * before (a test harness) keeps its setting: the call then fails, harmlessly. */
static void
sqlite_configure(void)
{
	(void)sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
}

static enum am_err
open_sqlite(struct db *db, const char *url, const char *const *migrations, size_t nmig,
	    struct am_error *e)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	const char *path;
	int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
	bool memory;
	enum am_err rc;

	if (strncmp(url, "sqlite:", 7) != 0)
		return am_fail(e, AM_E_INTERNAL,
			       "unsupported store url (want sqlite:PATH or postgresql://...)");
	path = url + 7;
	memory = strcmp(path, ":memory:") == 0;
	if (path[0] == '\0')
		return am_fail(e, AM_E_INTERNAL, "store url has no path");
	if (!memory && am_mkdir_parent(path) != 0) {
		log_error("store folder cannot be created path=%s", path);
		return am_fail(e, AM_E_UNAVAILABLE, "cannot create the store's folder");
	}
	pthread_once(&once, sqlite_configure);
	if (sqlite3_open_v2(path, &db->h, flags, NULL) != SQLITE_OK) {
		log_error("store open failed path=%s: %s", path, sqlite3_errmsg(db->h));
		return am_fail(e, AM_E_UNAVAILABLE, "cannot open the store");
	}
	sqlite3_busy_timeout(db->h, DB_BUSY_WAIT_MS);
	sqlite3_extended_result_codes(db->h, 0);
	if (!memory)
		sqlite3_wal_autocheckpoint(db->h, DB_WAL_CHECKPOINT_FRAMES);
	/* A page cache of DB_READER_CACHE_KIB per thread's connection (SQLite's
	 * default is 2000): there is one per worker, and a reader's lookups by
	 * random hash miss a cache of either size once the indexes are large,
	 * while the interior pages they walk fit in the smaller one. The batch
	 * connection gets the default back (db_batch_begin). */
	(void)sqlite3_exec(db->h, "PRAGMA cache_size = -" DB_READER_CACHE_KIB, NULL, NULL, NULL);
	if ((rc = exec(db,
		       memory ? "PRAGMA foreign_keys = ON"
			      : "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; "
				"PRAGMA foreign_keys = ON",
		       e)) != AM_OK)
		return rc;
	return migrate(db, migrations, nmig, e);
}

enum am_err
db_open(const char *url, const char *tenant, const struct db_opts *opts,
	const char *const *migrations, size_t nmig, const char *const *sql, const char *const *pg,
	size_t nq, struct db **out, struct am_error *e)
{
	static const struct db_opts defaults = DB_OPTS_DEFAULT;
	struct db *db;
	enum am_err rc;

	if ((db = calloc(1, sizeof(*db))) == NULL ||
	    (db->stmt = calloc(nq, sizeof(*db->stmt))) == NULL) {
		free(db);
		return am_fail(e, AM_E_INTERNAL, "out of memory");
	}
	db->sql = sql;
	db->sql_pg = pg;
	db->nq = nq;
	db->opts = opts != NULL ? *opts : defaults;
	for (size_t i = 0; i < nq; i++) {
		db->stmt[i].db = db;
		db->stmt[i].idx = i;
	}
	if (!am_copy(db->tenant, sizeof(db->tenant), tenant)) {
		db_close(db);
		return am_fail(e, AM_E_INTERNAL, "tenant name too long");
	}
	rc = db_url_is_pg(url) ? pq_open(db, url, migrations, nmig, e)
			       : open_sqlite(db, url, migrations, nmig, e);
	if (rc != AM_OK) {
		db_close(db);
		return rc;
	}
	*out = db;
	return AM_OK;
}

static void
drop_writer(struct db *db)
{
	if (db->holds_writer) {
		db->holds_writer = false;
		pthread_mutex_unlock(db->writer);
	}
}

void
db_close(struct db *db)
{
	if (db == NULL)
		return;
	drop_writer(db);
	for (size_t i = 0; db->stmt != NULL && i < db->nq; i++) {
		pq_reset(&db->stmt[i]); /* frees what a PostgreSQL run holds */
		free(db->stmt[i].text);
		sqlite3_finalize(db->stmt[i].lite);
	}
	for (int i = 0; i < SP_COUNT; i++)
		sqlite3_finalize(db->sp[i]);
	free(db->stmt);
	if (db->pg != NULL)
		pq_close(db);
	sqlite3_close(db->h);
	free(db);
}

void
db_set_writer_lock(struct db *db, pthread_mutex_t *mu)
{
	if (db->pg == NULL)
		db->writer = mu;
}

static int64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Queues on the process's writer lock until deadline (ms, CLOCK_REALTIME). */
static enum am_err
take_writer(struct db *db, int64_t deadline, struct am_error *e)
{
	struct timespec until = {.tv_sec = deadline / 1000, .tv_nsec = (deadline % 1000) * 1000000};
	int rc = pthread_mutex_timedlock(db->writer, &until);

	if (rc == 0) {
		db->holds_writer = true;
		return AM_OK;
	}
	log_warn("store writer queue wait gave up after %dms: %s", DB_BUSY_WAIT_MS, strerror(rc));
	e->retry_after = DB_RETRY_AFTER_S;
	return am_fail(e, AM_E_UNAVAILABLE, "the store is busy; retry");
}

/* The writer queue, then BEGIN IMMEDIATE, within one bound (deadline). On
 * PostgreSQL a plain BEGIN: row locks, not a database lock, order writers. */
static enum am_err
take_lock(struct db *db, int64_t deadline, struct am_error *e)
{
	enum am_err rc;

	if (db->pg != NULL) {
		db->lost = false;
		return exec(db, "BEGIN", e);
	}
	if (db->writer != NULL) {
		int64_t left;

		if ((rc = take_writer(db, deadline, e)) != AM_OK)
			return rc;
		/* One bound in all: what queueing used is not waited again. */
		left = deadline - now_ms();
		sqlite3_busy_timeout(db->h, left > 1 ? (int)left : 1);
	}
	rc = exec_sp(db, SP_BEGIN, e);
	if (db->writer != NULL)
		sqlite3_busy_timeout(db->h, DB_BUSY_WAIT_MS);
	if (rc != AM_OK)
		drop_writer(db);
	return rc;
}

/* An optimistic batch's undo back to the change count since: with rows
 * changed since then it cannot be done without a savepoint, and the batch
 * must run again (db_batch_must_redo). */
static void
undo_since(struct db *db, int64_t since)
{
	if (sqlite3_total_changes64(db->h) != since)
		db->redo = true;
}

/* Whether the connection is in no transaction (SQLite's autocommit). */
static bool
autocommit(struct db *db)
{
	if (db->pg != NULL)
		return !pq_in_tx(db);
	return sqlite3_get_autocommit(db->h) != 0;
}

enum am_err
db_begin(struct db *db, struct am_error *e)
{
	int64_t deadline = now_ms() + DB_BUSY_WAIT_MS;
	enum am_err rc;

	if (db->in_tx)
		return am_fail(e, AM_E_INTERNAL, "a transaction is already open");
	if (db->in_batch) {
		/* Inside a group-commit batch a flow's transaction is a savepoint:
		 * its rollback undoes it alone, its "commit" waits for the batch.
		 * In an optimistic batch it is only the change count to compare. */
		if (db->optimistic)
			db->flow_changes = sqlite3_total_changes64(db->h);
		else if ((rc = exec_sp(db, SP_FLOW, e)) != AM_OK)
			return rc;
		db->in_tx = true;
		return AM_OK;
	}
	if ((rc = take_lock(db, deadline, e)) != AM_OK)
		return rc;
	db->in_tx = true;
	return AM_OK;
}

enum am_err
db_commit(struct db *db, struct am_error *e)
{
	enum am_err rc;

	if (db->in_batch) {
		if (!db->in_tx)
			return am_fail(e, AM_E_INTERNAL, "no transaction is open");
		if (!db->optimistic && (rc = exec_sp(db, SP_FLOW_RELEASE, e)) != AM_OK) {
			db_rollback(db);
			return rc;
		}
		db->in_tx = false;
		return AM_OK;
	}
	if ((rc = commit_timed(db, e)) != AM_OK) {
		db_rollback(db);
		return rc;
	}
	db->in_tx = false;
	drop_writer(db);
	return AM_OK;
}

void
db_rollback(struct db *db)
{
	if (!db->in_tx)
		return;
	db->in_tx = false;
	/* After SQLITE_FULL (and some I/O errors) SQLite has already rolled
	 * back, as PostgreSQL has with its connection lost: a second ROLLBACK
	 * would only log an error. */
	if (autocommit(db)) {
		if (!db->in_batch)
			drop_writer(db);
		return;
	}
	if (db->in_batch && db->optimistic) {
		undo_since(db, db->flow_changes);
		return;
	}
	if (db->in_batch) {
		(void)exec(db, "ROLLBACK TO job; RELEASE job", NULL);
		return;
	}
	(void)exec(db, "ROLLBACK", NULL);
	drop_writer(db);
}

enum am_err
db_batch_begin(struct db *db, bool optimistic, struct am_error *e)
{
	enum am_err rc;

	if (db->in_tx || db->in_batch)
		return am_fail(e, AM_E_INTERNAL, "a transaction is already open");
	/* A batch runs each job in a savepoint, and SQLite keeps what a
	 * savepoint would roll back in a statement journal: a temporary file by
	 * default, written page by page (about 21 pwrite(2)s per anonymous
	 * registration, more than the WAL's own 4.5) and opened and unlinked per
	 * batch. In memory it is emptied at each job's RELEASE, so it stays one
	 * job's pages. Only the connections that run batches (the writer) get
	 * it: a reader's large sort keeps spilling to disk. Durability is
	 * unchanged; the journal only serves a rollback inside the transaction. */
	if (db->pg == NULL && !db->sp_in_memory) {
		if ((rc = exec(db, "PRAGMA temp_store = MEMORY", e)) != AM_OK ||
		    (rc = exec(db, DB_WRITER_CACHE_PRAGMA, e)) != AM_OK)
			return rc;
		db->sp_in_memory = true;
	}
	if ((rc = take_lock(db, now_ms() + DB_BUSY_WAIT_MS, e)) != AM_OK)
		return rc;
	db->in_batch = true;
	/* PostgreSQL ends the whole transaction at a failed statement unless a
	 * savepoint catches it, so its batches keep theirs. */
	db->optimistic = optimistic && db->pg == NULL;
	db->redo = false;
	return AM_OK;
}

bool
db_batch_must_redo(struct db *db)
{
	return db->in_batch && db->redo;
}

bool
db_batch_alive(struct db *db)
{
	return db->in_batch && !autocommit(db);
}

enum am_err
db_batch_commit(struct db *db, struct am_error *e)
{
	enum am_err rc;

	if (!db->in_batch)
		return am_fail(e, AM_E_INTERNAL, "no batch is open");
	if (db->redo) {
		/* An undo it could not do: committing would keep what a job
		 * meant to take back. */
		db_batch_rollback(db);
		return am_fail(e, AM_E_INTERNAL,
			       "an optimistic batch committed after a failed undo");
	}
	db->in_tx = false;
	db->in_batch = false;
	if (autocommit(db)) {
		/* The database rolled the batch back on its own (full, I/O, a
		 * lost connection). */
		drop_writer(db);
		e->retry_after = DB_RETRY_AFTER_S;
		return am_fail(e, AM_E_UNAVAILABLE, "the store is busy; retry");
	}
	rc = commit_timed(db, e);
	if (rc != AM_OK && !autocommit(db))
		(void)exec(db, "ROLLBACK", NULL);
	drop_writer(db);
	return rc;
}

void
db_batch_rollback(struct db *db)
{
	if (!db->in_batch)
		return;
	db->in_tx = false;
	db->in_batch = false;
	if (!autocommit(db))
		(void)exec(db, "ROLLBACK", NULL);
	drop_writer(db);
}

enum am_err
db_batch_job_begin(struct db *db, struct am_error *e)
{
	if (!db->in_batch || db->in_tx)
		return am_fail(e, AM_E_INTERNAL, "no batch is open");
	if (db->optimistic) {
		db->job_changes = sqlite3_total_changes64(db->h);
		return AM_OK;
	}
	return exec_sp(db, SP_JOB, e);
}

void
db_batch_job_end(struct db *db, bool keep)
{
	/* A job that left its own transaction open is undone with it. */
	if (db->in_tx) {
		db->in_tx = false;
		keep = false;
	}
	if (!db_batch_alive(db))
		return;
	if (db->optimistic) {
		if (!keep)
			undo_since(db, db->job_changes);
		return;
	}
	if (keep)
		(void)exec_sp(db, SP_JOB_RELEASE, NULL);
	else
		(void)exec(db, "ROLLBACK TO batch_job; RELEASE batch_job", NULL);
}

int64_t
db_pages_written(struct db *db)
{
	int cur = 0, hi = 0;

	if (db->pg != NULL)
		return -1;
	if (sqlite3_db_status(db->h, SQLITE_DBSTATUS_CACHE_WRITE, &cur, &hi, 0) != SQLITE_OK)
		return -1;
	return cur;
}

enum am_err
db_try_lock(struct db *db, const char *name, bool *got, struct am_error *e)
{
	if (db->pg != NULL)
		return pq_try_lock(db, name, got, e);
	*got = true;
	return AM_OK;
}

void
db_unlock(struct db *db, const char *name)
{
	if (db->pg != NULL)
		pq_unlock(db, name);
}
