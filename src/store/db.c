#include "store/db.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/fs.h"
#include "core/log.h"
#include "core/str.h"

/* Savepoint statements run for every job of a batch: prepared once. */
enum { SP_JOB, SP_JOB_RELEASE, SP_FLOW, SP_FLOW_RELEASE, SP_COUNT };
static const char *const sp_sql[SP_COUNT] = {
	"SAVEPOINT batch_job",
	"RELEASE batch_job",
	"SAVEPOINT job",
	"RELEASE job",
};

struct db {
	sqlite3 *h;
	char tenant[64];
	const char *const *sql;
	size_t nsql;
	sqlite3_stmt **stmt;
	bool in_tx;
	bool in_batch;		    /* a group-commit batch is open: begin/commit are savepoints */
	sqlite3_stmt *sp[SP_COUNT]; /* the savepoint statements, prepared once */
	pthread_mutex_t *writer;    /* NULL: none; held from begin to commit/rollback */
	bool holds_writer;
};

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
	log_error("sqlite %s failed rc=%d: %s", what, rc, sqlite3_errmsg(db->h));
	return map_rc(rc, e);
}

enum am_err
db_prep(struct db *db, size_t idx, sqlite3_stmt **out, struct am_error *e)
{
	sqlite3_stmt *s;
	int rc;

	if (idx >= db->nsql)
		return am_fail(e, AM_E_INTERNAL, "no such statement");
	if ((s = db->stmt[idx]) == NULL) {
		rc = sqlite3_prepare_v3(db->h, db->sql[idx], -1, SQLITE_PREPARE_PERSISTENT, &s,
					NULL);
		if (rc != SQLITE_OK)
			return db_fail(db, rc, "prepare", e);
		db->stmt[idx] = s;
	}
	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
	sqlite3_bind_text(s, 1, db->tenant, -1, SQLITE_STATIC);
	*out = s;
	return AM_OK;
}

void
db_bind_text_or_null(sqlite3_stmt *s, int i, const char *v)
{
	if (v == NULL || v[0] == '\0')
		sqlite3_bind_null(s, i);
	else
		sqlite3_bind_text(s, i, v, -1, SQLITE_TRANSIENT);
}

void
db_bind_hash(sqlite3_stmt *s, int i, const uint8_t *h)
{
	sqlite3_bind_blob(s, i, h, AM_HASH_LEN, SQLITE_TRANSIENT);
}

void
db_col_text(sqlite3_stmt *s, int i, char *dst, size_t cap)
{
	const unsigned char *v = sqlite3_column_text(s, i);

	if (v == NULL || !am_copy(dst, cap, (const char *)v))
		dst[0] = '\0';
}

bool
db_col_hash(sqlite3_stmt *s, int i, uint8_t out[AM_HASH_LEN])
{
	if (sqlite3_column_type(s, i) != SQLITE_BLOB || sqlite3_column_bytes(s, i) != AM_HASH_LEN) {
		memset(out, 0, AM_HASH_LEN);
		return false;
	}
	memcpy(out, sqlite3_column_blob(s, i), AM_HASH_LEN);
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
db_run(struct db *db, sqlite3_stmt *s, const char *what, int *changes, struct am_error *e)
{
	int rc = sqlite3_step(s);

	sqlite3_reset(s);
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
db_one(struct db *db, sqlite3_stmt *s, const char *what, struct am_error *e)
{
	int rc = sqlite3_step(s);

	if (rc == SQLITE_ROW)
		return AM_OK;
	sqlite3_reset(s);
	if (rc == SQLITE_DONE)
		return am_fail(e, AM_E_NOT_FOUND, "not found");
	return db_fail(db, rc, what, e);
}

static enum am_err
exec(struct db *db, const char *text, struct am_error *e)
{
	char *msg = NULL;
	int rc = sqlite3_exec(db->h, text, NULL, NULL, &msg);

	if (rc != SQLITE_OK) {
		log_error("sqlite exec failed rc=%d: %s", rc, msg != NULL ? msg : "?");
		sqlite3_free(msg);
		return map_rc(rc, e);
	}
	return AM_OK;
}

static enum am_err
exec_sp(struct db *db, int which, struct am_error *e)
{
	int rc;

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

enum am_err
db_open(const char *url, const char *tenant, const char *const *migrations, size_t nmig,
	const char *const *sql, size_t nsql, struct db **out, struct am_error *e)
{
	struct db *db;
	const char *path;
	enum am_err rc;
	int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
	bool memory;

	if (strncmp(url, "sqlite:", 7) != 0)
		return am_fail(e, AM_E_INTERNAL, "unsupported store url (want sqlite:PATH)");
	path = url + 7;
	memory = strcmp(path, ":memory:") == 0;
	if (path[0] == '\0')
		return am_fail(e, AM_E_INTERNAL, "store url has no path");
	if ((db = calloc(1, sizeof(*db))) == NULL ||
	    (db->stmt = calloc(nsql, sizeof(*db->stmt))) == NULL) {
		free(db);
		return am_fail(e, AM_E_INTERNAL, "out of memory");
	}
	db->sql = sql;
	db->nsql = nsql;
	if (!am_copy(db->tenant, sizeof(db->tenant), tenant)) {
		db_close(db);
		return am_fail(e, AM_E_INTERNAL, "tenant name too long");
	}
	if (!memory && am_mkdir_parent(path) != 0) {
		log_error("store folder cannot be created path=%s", path);
		db_close(db);
		return am_fail(e, AM_E_UNAVAILABLE, "cannot create the store's folder");
	}
	if (sqlite3_open_v2(path, &db->h, flags, NULL) != SQLITE_OK) {
		log_error("store open failed path=%s: %s", path, sqlite3_errmsg(db->h));
		db_close(db);
		return am_fail(e, AM_E_UNAVAILABLE, "cannot open the store");
	}
	sqlite3_busy_timeout(db->h, DB_BUSY_WAIT_MS);
	sqlite3_extended_result_codes(db->h, 0);
	if ((rc = exec(db,
		       memory ? "PRAGMA foreign_keys = ON"
			      : "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; "
				"PRAGMA foreign_keys = ON",
		       e)) != AM_OK ||
	    (rc = migrate(db, migrations, nmig, e)) != AM_OK) {
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
	for (size_t i = 0; db->stmt != NULL && i < db->nsql; i++)
		sqlite3_finalize(db->stmt[i]);
	for (int i = 0; i < SP_COUNT; i++)
		sqlite3_finalize(db->sp[i]);
	free(db->stmt);
	sqlite3_close(db->h);
	free(db);
}

void
db_set_writer_lock(struct db *db, pthread_mutex_t *mu)
{
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

static enum am_err take_lock(struct db *db, int64_t deadline, struct am_error *e);

enum am_err
db_begin(struct db *db, struct am_error *e)
{
	int64_t deadline = now_ms() + DB_BUSY_WAIT_MS;
	enum am_err rc;

	if (db->in_tx)
		return am_fail(e, AM_E_INTERNAL, "a transaction is already open");
	if (db->in_batch) {
		/* Inside a group-commit batch a flow's transaction is a savepoint:
		 * its rollback undoes it alone, its "commit" waits for the batch. */
		if ((rc = exec_sp(db, SP_FLOW, e)) != AM_OK)
			return rc;
		db->in_tx = true;
		return AM_OK;
	}
	if ((rc = take_lock(db, deadline, e)) != AM_OK)
		return rc;
	db->in_tx = true;
	return AM_OK;
}

/* The writer queue, then BEGIN IMMEDIATE, within one bound (deadline). */
static enum am_err
take_lock(struct db *db, int64_t deadline, struct am_error *e)
{
	enum am_err rc;

	if (db->writer != NULL) {
		int64_t left;

		if ((rc = take_writer(db, deadline, e)) != AM_OK)
			return rc;
		/* One bound in all: what queueing used is not waited again. */
		left = deadline - now_ms();
		sqlite3_busy_timeout(db->h, left > 1 ? (int)left : 1);
	}
	rc = exec(db, "BEGIN IMMEDIATE", e);
	if (db->writer != NULL)
		sqlite3_busy_timeout(db->h, DB_BUSY_WAIT_MS);
	if (rc != AM_OK)
		drop_writer(db);
	return rc;
}

enum am_err
db_commit(struct db *db, struct am_error *e)
{
	enum am_err rc;

	if (db->in_batch) {
		if (!db->in_tx)
			return am_fail(e, AM_E_INTERNAL, "no transaction is open");
		if ((rc = exec_sp(db, SP_FLOW_RELEASE, e)) != AM_OK) {
			db_rollback(db);
			return rc;
		}
		db->in_tx = false;
		return AM_OK;
	}
	if ((rc = exec(db, "COMMIT", e)) != AM_OK) {
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
	 * back: a second ROLLBACK would only log an error. */
	if (sqlite3_get_autocommit(db->h)) {
		if (!db->in_batch)
			drop_writer(db);
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
db_batch_begin(struct db *db, struct am_error *e)
{
	enum am_err rc;

	if (db->in_tx || db->in_batch)
		return am_fail(e, AM_E_INTERNAL, "a transaction is already open");
	if ((rc = take_lock(db, now_ms() + DB_BUSY_WAIT_MS, e)) != AM_OK)
		return rc;
	db->in_batch = true;
	return AM_OK;
}

bool
db_batch_alive(struct db *db)
{
	return db->in_batch && !sqlite3_get_autocommit(db->h);
}

enum am_err
db_batch_commit(struct db *db, struct am_error *e)
{
	enum am_err rc;

	if (!db->in_batch)
		return am_fail(e, AM_E_INTERNAL, "no batch is open");
	db->in_tx = false;
	db->in_batch = false;
	if (sqlite3_get_autocommit(db->h)) {
		/* SQLite rolled the batch back on its own (full, I/O). */
		drop_writer(db);
		e->retry_after = DB_RETRY_AFTER_S;
		return am_fail(e, AM_E_UNAVAILABLE, "the store is busy; retry");
	}
	rc = exec(db, "COMMIT", e);
	if (rc != AM_OK && !sqlite3_get_autocommit(db->h))
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
	if (!sqlite3_get_autocommit(db->h))
		(void)exec(db, "ROLLBACK", NULL);
	drop_writer(db);
}

enum am_err
db_batch_job_begin(struct db *db, struct am_error *e)
{
	if (!db->in_batch || db->in_tx)
		return am_fail(e, AM_E_INTERNAL, "no batch is open");
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
	if (keep)
		(void)exec_sp(db, SP_JOB_RELEASE, NULL);
	else
		(void)exec(db, "ROLLBACK TO batch_job; RELEASE batch_job", NULL);
}

int64_t
db_pages_written(struct db *db)
{
	int cur = 0, hi = 0;

	if (sqlite3_db_status(db->h, SQLITE_DBSTATUS_CACHE_WRITE, &cur, &hi, 0) != SQLITE_OK)
		return -1;
	return cur;
}
