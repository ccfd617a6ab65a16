/* The statement layer shared by the server's store (sqlite.c) and the
 * provider's (provider/pstore.c), over two backends: SQLite (WAL,
 * synchronous=FULL) and PostgreSQL (libpq, pq.c). One set of queries and
 * one set of numbered migrations serves both: queries are written with ?N
 * parameters (rewritten to $N for PostgreSQL when prepared), migrations use
 * TEXT, INTEGER and BLOB (BIGINT and BYTEA on PostgreSQL). Each query is
 * prepared once per connection, with the tenant bound as ?1. A db is used by
 * one thread at a time. See docs/storage.md. */
#ifndef AM_DB_H
#define AM_DB_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/crypto.h"
#include "core/errors.h"

struct db;
struct db_stmt;

/* How long a statement waits for another connection's write lock before it
 * gives up with SQLITE_BUSY, and the Retry-After sent with the 503 that
 * follows. Short, so that a locked database answers well within a second
 * instead of holding the request (and its worker) for seconds. */
#define DB_BUSY_WAIT_MS 500
#define DB_RETRY_AFTER_S 1
/* The most ?N parameters one query may use. */
#define DB_MAX_PARAMS 32

/* PostgreSQL connection bounds ([store] connect_timeout, statement_timeout):
 * every wait on the database server ends within them, so an unreachable
 * server gives 503 with Retry-After, never a hang. SQLite ignores them. */
struct db_opts {
	int connect_timeout_s;	  /* libpq connect_timeout: 2 at least */
	int statement_timeout_ms; /* server-side statement_timeout and lock_timeout */
};
#define DB_OPTS_DEFAULT                                                                            \
	{                                                                                          \
		.connect_timeout_s = 2, .statement_timeout_ms = 5000                               \
	}

/* True when url names a PostgreSQL database (postgresql:// or postgres://,
 * a libpq connection URI). */
bool db_url_is_pg(const char *url);
/* Checks a store URL without connecting: "sqlite:PATH" or a libpq URI that
 * libpq can parse. false with the reason (no secret in it) in why. */
bool db_url_check(const char *url, char *why, size_t cap);
/* url with any password replaced by "***", for logs and messages. */
void db_url_redact(const char *url, char *out, size_t cap);

/* Opens url ("sqlite:PATH", creating PATH's folder, "sqlite::memory:", or a
 * PostgreSQL URI) bound to tenant, applies migrations[0..nmig) not yet
 * applied (on PostgreSQL under an advisory lock, so replicas starting
 * together apply each once), and keeps sql[0..nq) as the statements db_prep
 * can use by index. pg (NULL, or nq entries, most NULL) holds PostgreSQL's
 * own text for the few statements that cannot be written once (claiming
 * with FOR UPDATE SKIP LOCKED, SQLite's in-place zeroblob); a NULL entry
 * means sql[i] serves both. opts NULL: DB_OPTS_DEFAULT. */
enum am_err db_open(const char *url, const char *tenant, const struct db_opts *opts,
		    const char *const *migrations, size_t nmig, const char *const *sql,
		    const char *const *pg, size_t nq, struct db **out, struct am_error *e) AM_WUR;
void db_close(struct db *db);
/* The highest migration applied, 0 when none or unreadable. */
int db_schema_version(struct db *db);
/* The virtual-machine steps SQLite has run for all of db's statements so
 * far (0 on PostgreSQL): how a test sees whether a query visited a few rows
 * through an index or walked a table. Costs nothing on the hot path. */
int64_t db_vm_steps(struct db *db);
/* Sorts (a temporary b-tree for ORDER BY) the cached statements ran. */
int64_t db_sorts(struct db *db);
/* True for a PostgreSQL connection. */
bool db_is_pg(const struct db *db);

/* Makes the writers of this process that share mu queue on it, in order,
 * for a write transaction, instead of in SQLite's busy handler (which
 * sleeps in growing steps and lets a waiter starve past any short bound).
 * Then only the holder of mu meets SQLITE_BUSY, and only from another
 * process. mu outlives db; NULL: no queue. Ignored on PostgreSQL, whose
 * writers lock rows, not the database. */
void db_set_writer_lock(struct db *db, pthread_mutex_t *mu);

/* BEGIN IMMEDIATE (SQLite, waiting DB_BUSY_WAIT_MS in all, queue then
 * lock) or BEGIN (PostgreSQL, read committed: flows re-check state with
 * conditional updates and unique keys); AM_E_UNAVAILABLE with retry_after
 * when the store is busy or unreachable. */
enum am_err db_begin(struct db *db, struct am_error *e) AM_WUR;
/* Commits; on failure (busy, full, a connection lost) the transaction is
 * rolled back whole. */
enum am_err db_commit(struct db *db, struct am_error *e) AM_WUR;
void db_rollback(struct db *db); /* no-op outside a transaction */

/* Group commit: db_batch_begin takes the write lock as db_begin does and
 * opens one transaction for many jobs. While it is open, db_begin,
 * db_commit and db_rollback work on a savepoint, so a job's own
 * transaction rolls back alone and its commit waits for the batch's.
 * db_batch_alive is false once the database rolled the whole batch back by
 * itself (SQLITE_FULL, I/O errors, a lost PostgreSQL connection): every job
 * in it is lost. db_batch_commit makes it all durable with one fsync or
 * fails it all (rolled back). */
enum am_err db_batch_begin(struct db *db, bool optimistic, struct am_error *e) AM_WUR;
bool db_batch_alive(struct db *db);
/* An optimistic batch (SQLite; PostgreSQL and a batch begun with
 * optimistic false keep their savepoints) runs its jobs without savepoints,
 * which cost SQLite a copy of every page a job touches. An undo that would
 * have undone nothing (a refusal before any write) is free; one that had
 * writes to undo cannot be done alone, and db_batch_must_redo becomes true:
 * the caller rolls the batch back and runs its jobs again in a batch with
 * savepoints. */
bool db_batch_must_redo(struct db *db);
enum am_err db_batch_commit(struct db *db, struct am_error *e) AM_WUR;
void db_batch_rollback(struct db *db); /* no-op outside a batch */
/* Pages this connection wrote to the database file or WAL since it opened
 * (SQLite); -1 on PostgreSQL. */
int64_t db_pages_written(struct db *db);
/* One job of a batch: a savepoint around it, kept or undone at its end
 * (undone as well when the job left its own transaction open). */
enum am_err db_batch_job_begin(struct db *db, struct am_error *e) AM_WUR;
void db_batch_job_end(struct db *db, bool keep);

/* Takes the process-independent lock named name without waiting: on
 * PostgreSQL a session advisory lock (pg_try_advisory_lock) held by this
 * connection until db_unlock or the connection ends, so one replica at a
 * time does what it guards; on SQLite always granted (one process).
 * *got says whether it is held. */
enum am_err db_try_lock(struct db *db, const char *name, bool *got, struct am_error *e) AM_WUR;
void db_unlock(struct db *db, const char *name);

/* Statement idx, reset and cleared, with the tenant bound as ?1. On
 * PostgreSQL a lost connection is re-made here (bounded by the connect
 * timeout) and the statement prepared on it when first used. */
enum am_err db_prep(struct db *db, size_t idx, struct db_stmt **out, struct am_error *e) AM_WUR;
/* Runs a statement that returns no rows; *changes (if not NULL) gets the
 * number of rows changed. A constraint violation is AM_E_INTERNAL. */
enum am_err db_run(struct db *db, struct db_stmt *s, const char *what, int *changes,
		   struct am_error *e) AM_WUR;
/* Runs a query of at most one row: AM_OK with the row ready (db_reset it
 * when done), or AM_E_NOT_FOUND. */
enum am_err db_one(struct db *db, struct db_stmt *s, const char *what, struct am_error *e) AM_WUR;
/* Steps through a query's rows: AM_OK with the next row ready, AM_E_NOT_FOUND
 * after the last one; db_reset when done. */
enum am_err db_next(struct db *db, struct db_stmt *s, const char *what, struct am_error *e) AM_WUR;
/* Ends the statement's run and drops its bindings and result. */
void db_reset(struct db_stmt *s);
/* Logs a database failure and maps it: busy, locked, full, timeouts, lost
 * connections and I/O errors to AM_E_UNAVAILABLE with e->retry_after set,
 * the rest to AM_E_INTERNAL. rc is the SQLite result code (unused on
 * PostgreSQL, whose error is on the connection). */
enum am_err db_fail(struct db *db, int rc, const char *what, struct am_error *e);

/* Bindings: i counts from 1 as in the SQL (?2 is 2); values are copied
 * unless said otherwise. */
void db_bind_text(struct db_stmt *s, int i, const char *v);	    /* NULL binds NULL */
void db_bind_text_or_null(struct db_stmt *s, int i, const char *v); /* "" binds NULL too */
void db_bind_int64(struct db_stmt *s, int i, int64_t v);
void db_bind_null(struct db_stmt *s, int i);
void db_bind_hash(struct db_stmt *s, int i, const uint8_t *h);
/* Not copied: p must stay unchanged until db_reset, so no copy of a secret
 * outlives the caller's wipe. */
void db_bind_blob_static(struct db_stmt *s, int i, const void *p, size_t n);

/* Columns of the current row, counted from 0. */
bool db_col_null(struct db_stmt *s, int i);
int64_t db_col_int64(struct db_stmt *s, int i); /* NULL: 0; PostgreSQL booleans 1/0 */
void db_col_text(struct db_stmt *s, int i, char *dst, size_t cap); /* NULL or too long: "" */
/* The text of a column, borrowed until db_reset or the next row; NULL for NULL. */
const char *db_col_str(struct db_stmt *s, int i);
/* A blob column: its bytes (valid until db_reset or the next row) and
 * length, or NULL with *len 0 for NULL. Read each blob once per row: on
 * PostgreSQL the result's copy is wiped as it is decoded (a blob may be a
 * mail holding a claim link), and the decoded copy is wiped at reset. */
const void *db_col_blob(struct db_stmt *s, int i, size_t *len);
bool db_col_hash(struct db_stmt *s, int i, uint8_t out[AM_HASH_LEN]);
/* The index of s in names[0..n), or -1. */
int db_name_index(const char *const *names, size_t n, const char *s);

#endif
