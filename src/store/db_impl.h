/* The inside of struct db and struct db_stmt, shared by the SQLite backend
 * (db.c) and the PostgreSQL one (pq.c) only. */
#ifndef AM_DB_IMPL_H
#define AM_DB_IMPL_H

#include <libpq-fe.h>
#include <sqlite3.h>

#include "store/db.h"

/* Savepoint statements run for every job of a batch: prepared once. */
enum { SP_JOB, SP_JOB_RELEASE, SP_FLOW, SP_FLOW_RELEASE, SP_BEGIN, SP_COMMIT, SP_COUNT };

struct db_stmt {
	struct db *db;
	size_t idx;
	sqlite3_stmt *lite; /* SQLite: the prepared statement */
	/* PostgreSQL: parameters (text, or binary for blobs), the result and
	 * the row the columns read */
	int nparams;
	const char *val[DB_MAX_PARAMS];
	int len[DB_MAX_PARAMS];
	int fmt[DB_MAX_PARAMS];
	char *own[DB_MAX_PARAMS]; /* copies made by the bindings, freed at reset */
	unsigned char *blob;	  /* the last blob column read, unescaped */
	size_t blob_len;
	PGresult *res;
	int row, nrows;
	unsigned long prepared_gen; /* the connection generation it is prepared on */
	char *text;		    /* the SQL rewritten with $N */
};

struct db {
	char tenant[64];
	const char *const *sql;
	const char *const *sql_pg; /* NULL, or PostgreSQL's own texts */
	size_t nq;
	struct db_stmt *stmt; /* nq of them */
	bool in_tx;
	bool in_batch; /* a group-commit batch is open: begin/commit are savepoints */
	bool sp_in_memory; /* SQLite: temp_store = MEMORY set, see db_batch_begin */
	/* SQLite, an optimistic batch (db_batch_begin): no savepoints; the
	 * connection's change count when the job and the flow's transaction
	 * began tells whether an undo would have had anything to undo */
	bool optimistic;
	bool redo; /* an optimistic batch met an undo it cannot do */
	int64_t job_changes, flow_changes;
	/* SQLite */
	sqlite3 *h;
	sqlite3_stmt *sp[SP_COUNT]; /* the savepoint statements, prepared once */
	pthread_mutex_t *writer;    /* NULL: none; held from begin to commit/rollback */
	bool holds_writer;
	/* PostgreSQL */
	PGconn *pg;
	struct db_opts opts;
	unsigned long gen; /* bumped at every (re)connection: statements re-prepare */
	bool lost;	   /* the connection broke inside the open transaction */
};

/* pq.c: the PostgreSQL side of each db.c function. */
enum am_err pq_open(struct db *db, const char *url, const char *const *migrations, size_t nmig,
		    struct am_error *e) AM_WUR;
void pq_close(struct db *db);
/* Whether url names a PostgreSQL database (postgresql:// or postgres://):
 * db_url_is_pg, kept here so that pq.c needs nothing back from db.c. */
bool pq_url_is(const char *url);
int pq_schema_version(struct db *db);
enum am_err pq_prep(struct db *db, struct db_stmt *s, struct am_error *e) AM_WUR;
enum am_err pq_exec_stmt(struct db *db, struct db_stmt *s, const char *what,
			 struct am_error *e) AM_WUR;
int pq_changes(struct db_stmt *s);
void pq_reset(struct db_stmt *s);
enum am_err pq_exec(struct db *db, const char *sql, struct am_error *e);
bool pq_in_tx(struct db *db);
enum am_err pq_try_lock(struct db *db, const char *name, bool *got, struct am_error *e) AM_WUR;
void pq_unlock(struct db *db, const char *name);
enum am_err pq_fail(struct db *db, const PGresult *res, const char *what, struct am_error *e);
/* The text of column i of the current row, or NULL. */
const char *pq_col(struct db_stmt *s, int i);

#endif
