/* The SQLite machinery shared by the server's store (sqlite.c) and the
 * provider's (provider/pstore.c): opening with WAL and synchronous=FULL,
 * numbered migrations, one cached prepared statement per query with the
 * tenant bound as ?1, transactions, and checked column access. A db is used
 * by one thread at a time. */
#ifndef AM_DB_H
#define AM_DB_H

#include <pthread.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/crypto.h"
#include "core/errors.h"

struct db;

/* How long a statement waits for another connection's write lock before it
 * gives up with SQLITE_BUSY, and the Retry-After sent with the 503 that
 * follows. Short, so that a locked database answers well within a second
 * instead of holding the request (and its worker) for seconds. */
#define DB_BUSY_WAIT_MS 500
#define DB_RETRY_AFTER_S 1

/* Opens url ("sqlite:PATH", creating PATH's folder, or "sqlite::memory:")
 * bound to tenant, applies migrations[0..nmig) not yet applied, and keeps
 * sql[0..nsql) as the statements db_prep can use by index. */
enum am_err db_open(const char *url, const char *tenant, const char *const *migrations, size_t nmig,
		    const char *const *sql, size_t nsql, struct db **out,
		    struct am_error *e) AM_WUR;
void db_close(struct db *db);
int db_schema_version(struct db *db);

/* Makes the writers of this process that share mu queue on it, in order,
 * for a write transaction, instead of in SQLite's busy handler (which
 * sleeps in growing steps and lets a waiter starve past any short bound).
 * Then only the holder of mu meets SQLITE_BUSY, and only from another
 * process. mu outlives db; NULL: no queue. */
void db_set_writer_lock(struct db *db, pthread_mutex_t *mu);

/* BEGIN IMMEDIATE, waiting DB_BUSY_WAIT_MS in all (queue, then lock) before
 * AM_E_UNAVAILABLE with retry_after. */
enum am_err db_begin(struct db *db, struct am_error *e) AM_WUR;
/* Commits; on failure (busy, full) the transaction is rolled back whole. */
enum am_err db_commit(struct db *db, struct am_error *e) AM_WUR;
void db_rollback(struct db *db); /* no-op outside a transaction */

/* Group commit: db_batch_begin takes the write lock as db_begin does and
 * opens one transaction for many jobs. While it is open, db_begin,
 * db_commit and db_rollback work on a savepoint, so a job's own
 * transaction rolls back alone and its commit waits for the batch's.
 * db_batch_alive is false once SQLite rolled the whole batch back by itself
 * (SQLITE_FULL, I/O errors): every job in it is lost. db_batch_commit
 * makes it all durable with one fsync or fails it all (rolled back). */
enum am_err db_batch_begin(struct db *db, struct am_error *e) AM_WUR;
bool db_batch_alive(struct db *db);
enum am_err db_batch_commit(struct db *db, struct am_error *e) AM_WUR;
void db_batch_rollback(struct db *db); /* no-op outside a batch */
/* Pages this connection wrote to the database file or WAL since it opened. */
int64_t db_pages_written(struct db *db);
/* One job of a batch: a savepoint around it, kept or undone at its end
 * (undone as well when the job left its own transaction open). */
enum am_err db_batch_job_begin(struct db *db, struct am_error *e) AM_WUR;
void db_batch_job_end(struct db *db, bool keep);

/* Statement idx, reset and cleared, with the tenant bound as ?1. */
enum am_err db_prep(struct db *db, size_t idx, sqlite3_stmt **out, struct am_error *e) AM_WUR;
/* Steps a statement that returns no rows; *changes (if not NULL) gets the
 * number of rows changed. */
enum am_err db_run(struct db *db, sqlite3_stmt *s, const char *what, int *changes,
		   struct am_error *e) AM_WUR;
/* Steps a query of at most one row: AM_OK with the row ready (reset it when
 * done), or AM_E_NOT_FOUND. */
enum am_err db_one(struct db *db, sqlite3_stmt *s, const char *what, struct am_error *e) AM_WUR;
/* Logs a SQLite failure and maps it: busy, locked, full and I/O errors to
 * AM_E_UNAVAILABLE with e->retry_after set, the rest to AM_E_INTERNAL. */
enum am_err db_fail(struct db *db, int rc, const char *what, struct am_error *e);

void db_bind_text_or_null(sqlite3_stmt *s, int i, const char *v); /* "" binds NULL */
void db_bind_hash(sqlite3_stmt *s, int i, const uint8_t *h);
void db_col_text(sqlite3_stmt *s, int i, char *dst, size_t cap); /* NULL or too long: "" */
bool db_col_hash(sqlite3_stmt *s, int i, uint8_t out[AM_HASH_LEN]);
/* The index of s in names[0..n), or -1. */
int db_name_index(const char *const *names, size_t n, const char *s);

#endif
