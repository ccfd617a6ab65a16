/* The PostgreSQL backend of the statement layer (db.h), on libpq. The
 * queries and migrations are the SQLite ones: ?N becomes $N when a query is
 * first prepared on a connection, and migrations get PostgreSQL's names for
 * the same types (BLOB -> BYTEA, INTEGER -> BIGINT, a rowid key -> an
 * identity column). Parameters go as text, blobs as binary; results come
 * as text (bytea in hex, decoded by libpq).
 *
 * Every wait is bounded: connect_timeout for a (re)connection, the
 * session's statement_timeout and lock_timeout for a statement, TCP keep-
 * alives and tcp_user_timeout for a server that went silent. A lost
 * connection fails the statement (and its transaction) with 503 and is
 * re-made by the next statement outside a transaction. See docs/storage.md. */
#include "store/db_impl.h"

#include <openssl/crypto.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/log.h"
#include "core/str.h"

/* The statements' names on a connection: "am<index>". */
#define STMT_NAME_LEN 16
/* What follows a redacted URI password parameter, at most. */
#define AM_URL_TAIL 512
/* How long a replica waits for another one's migrations at start-up. */
#define MIGRATE_WAIT_MS 60000

static enum am_err
unavailable(struct am_error *e, const char *why)
{
	if (e != NULL)
		e->retry_after = DB_RETRY_AFTER_S;
	return am_fail(e, AM_E_UNAVAILABLE, "%s", why);
}

/* SQLSTATE classes and codes that pass: the request gets 503 with
 * Retry-After. 08 connection, 53 resources, 57 operator intervention
 * (statement timeout 57014, shutdown 57P01..), 40 serialization and
 * deadlock, 55P03 lock timeout, 58 system I/O. */
static bool
transient_state(const char *st)
{
	if (st == NULL)
		return true; /* no result at all: the connection failed */
	return strncmp(st, "08", 2) == 0 || strncmp(st, "53", 2) == 0 ||
	       strncmp(st, "57", 2) == 0 || strncmp(st, "40", 2) == 0 || strcmp(st, "55P03") == 0 ||
	       strncmp(st, "58", 2) == 0;
}

enum am_err
pq_fail(struct db *db, const PGresult *res, const char *what, struct am_error *e)
{
	const char *state = res != NULL ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	/* The primary message only: DETAIL can quote a key's value (a hash). */
	const char *msg = res != NULL ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
	bool down = PQstatus(db->pg) != CONNECTION_OK;

	if (msg == NULL)
		msg = down ? "connection lost" : "no result";
	log_error("postgresql %s failed sqlstate=%s: %s", what, state != NULL ? state : "-", msg);
	if (down)
		db->lost = true;
	if (state != NULL && strncmp(state, "23", 2) == 0)
		return am_fail(e, AM_E_INTERNAL, "storage constraint");
	if (down || transient_state(state))
		return unavailable(e, down ? "the store is unreachable; retry"
					   : "the store is busy; retry");
	return am_fail(e, AM_E_INTERNAL, "storage error");
}

/* The session settings every (re)connection gets: the bounds on a
 * statement and on a lock wait, and UTC. */
static bool
configure(struct db *db)
{
	char set[256];
	PGresult *r;
	bool ok;

	snprintf(set, sizeof(set),
		 "SET statement_timeout = %d; SET lock_timeout = %d; "
		 "SET idle_in_transaction_session_timeout = %d; SET TIME ZONE 'UTC'",
		 db->opts.statement_timeout_ms, db->opts.statement_timeout_ms,
		 db->opts.statement_timeout_ms * 4);
	r = PQexec(db->pg, set);
	ok = PQresultStatus(r) == PGRES_COMMAND_OK;
	if (!ok)
		log_error("postgresql session settings failed: %s",
			  PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) != NULL
				  ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY)
				  : "?");
	PQclear(r);
	return ok;
}

/* Outside a transaction, a lost connection is made again here: one attempt,
 * bounded by connect_timeout. Inside one, the transaction is gone with the
 * connection and the caller's statement fails. */
static enum am_err
ensure(struct db *db, struct am_error *e)
{
	/* An idle connection has nothing to read unless the server closed it
	 * (a restart sends FATAL, then EOF): libpq learns of it only here, so
	 * the first statement after a restart does not fail for nothing. */
	if (PQstatus(db->pg) == CONNECTION_OK && !db->lost && !db->in_tx && !db->in_batch) {
		struct pollfd p = {.fd = PQsocket(db->pg), .events = POLLIN};

		if (p.fd >= 0 && poll(&p, 1, 0) > 0 &&
		    (!PQconsumeInput(db->pg) || PQstatus(db->pg) != CONNECTION_OK))
			db->lost = true;
	}
	if (PQstatus(db->pg) == CONNECTION_OK && !db->lost)
		return AM_OK;
	if (db->in_tx || db->in_batch)
		return unavailable(e, "the store connection was lost; retry");
	PQreset(db->pg);
	if (PQstatus(db->pg) != CONNECTION_OK || !configure(db)) {
		log_warn("postgresql reconnect failed: %s", PQerrorMessage(db->pg));
		return unavailable(e, "the store is unreachable; retry");
	}
	db->lost = false;
	db->gen++;
	log_info("postgresql reconnected");
	return AM_OK;
}

/* ?N -> $N outside quotes; *max gets the highest N. */
static char *
rewrite(const char *sql, int *max)
{
	struct am_buf b = {0};
	char quote = 0;

	*max = 0;
	for (const char *p = sql; *p != '\0'; p++) {
		if (quote != 0) {
			if (*p == quote)
				quote = 0;
		} else if (*p == '\'' || *p == '"') {
			quote = *p;
		} else if (*p == '?' && p[1] >= '0' && p[1] <= '9') {
			int n = 0;

			am_buf_add(&b, "$", 1);
			while (p[1] >= '0' && p[1] <= '9') {
				n = n * 10 + (p[1] - '0');
				am_buf_add(&b, p + 1, 1);
				p++;
			}
			if (n > *max)
				*max = n;
			continue;
		}
		am_buf_add(&b, p, 1);
	}
	return am_buf_take(&b);
}

static bool
word_at(const char *p, const char *start, const char *w)
{
	size_t n = strlen(w);
	char after = p[n];
	bool before_ok = p == start || !(p[-1] == '_' || (p[-1] >= '0' && p[-1] <= '9') ||
					 ((p[-1] | 0x20) >= 'a' && (p[-1] | 0x20) <= 'z'));

	return before_ok && strncasecmp(p, w, n) == 0 &&
	       !(after == '_' || (after >= '0' && after <= '9') ||
		 ((after | 0x20) >= 'a' && (after | 0x20) <= 'z'));
}

/* A migration in PostgreSQL's type names. The phrases are matched as whole
 * words, longest first, outside quotes. */
static char *
translate(const char *sql)
{
	static const char *const from[] = {"INTEGER PRIMARY KEY AUTOINCREMENT",
					   "INTEGER PRIMARY KEY", "INTEGER", "BLOB"};
	static const char *const to[] = {"BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
					 "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY",
					 "BIGINT", "BYTEA"};
	struct am_buf b = {0};
	char quote = 0;

	for (const char *p = sql; *p != '\0';) {
		size_t i;

		if (quote != 0 || *p == '\'') {
			/* inside a string literal, or its opening quote */
			quote = quote == 0 ? *p : (*p == quote ? 0 : quote);
			am_buf_add(&b, p++, 1);
			continue;
		}
		if (p[0] == '-' && p[1] == '-') { /* a comment, to its line's end */
			size_t n = strcspn(p, "\n");

			am_buf_add(&b, p, n);
			p += n;
			continue;
		}
		for (i = 0; i < sizeof(from) / sizeof(from[0]); i++) {
			if (word_at(p, sql, from[i]))
				break;
		}
		if (i < sizeof(from) / sizeof(from[0])) {
			am_buf_puts(&b, to[i]);
			p += strlen(from[i]);
		} else {
			am_buf_add(&b, p++, 1);
		}
	}
	return am_buf_take(&b);
}

enum am_err
pq_exec(struct db *db, const char *sql, struct am_error *e)
{
	PGresult *r;
	ExecStatusType st;
	enum am_err rc = AM_OK;
	bool commit = strcmp(sql, "COMMIT") == 0;

	/* BEGIN is where a lost connection is made again. */
	if ((rc = ensure(db, e)) != AM_OK)
		return rc;
	r = PQexec(db->pg, sql);
	st = PQresultStatus(r);
	if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
		rc = pq_fail(db, r, sql, e);
	else if (commit && strcmp(PQcmdStatus(r), "COMMIT") != 0)
		/* An aborted transaction answers COMMIT with ROLLBACK. */
		rc = unavailable(e, "the store rolled the transaction back; retry");
	PQclear(r);
	return rc;
}

bool
pq_in_tx(struct db *db)
{
	PGTransactionStatusType t = PQtransactionStatus(db->pg);

	return t == PQTRANS_INTRANS || t == PQTRANS_INERROR || t == PQTRANS_ACTIVE;
}

enum am_err
pq_prep(struct db *db, struct db_stmt *s, struct am_error *e)
{
	char name[STMT_NAME_LEN];
	PGresult *r;
	enum am_err rc;

	if ((rc = ensure(db, e)) != AM_OK)
		return rc;
	if (s->text == NULL) {
		const char *sql = db->sql_pg != NULL && db->sql_pg[s->idx] != NULL
					  ? db->sql_pg[s->idx]
					  : db->sql[s->idx];

		s->text = rewrite(sql, &s->nparams);
		if (s->nparams > DB_MAX_PARAMS)
			return am_fail(e, AM_E_INTERNAL, "query has too many parameters");
	}
	if (s->prepared_gen == db->gen + 1)
		return AM_OK;
	snprintf(name, sizeof(name), "am%zu", s->idx);
	r = PQprepare(db->pg, name, s->text, 0, NULL);
	if (PQresultStatus(r) != PGRES_COMMAND_OK) {
		log_error("postgresql cannot prepare statement=%zu: %.120s", s->idx, s->text);
		rc = pq_fail(db, r, "prepare", e);
		PQclear(r);
		return rc;
	}
	PQclear(r);
	s->prepared_gen = db->gen + 1; /* 0 stays "never prepared" */
	return AM_OK;
}

enum am_err
pq_exec_stmt(struct db *db, struct db_stmt *s, const char *what, struct am_error *e)
{
	char name[STMT_NAME_LEN];
	PGresult *r;
	ExecStatusType st;
	enum am_err rc;

	snprintf(name, sizeof(name), "am%zu", s->idx);
	r = PQexecPrepared(db->pg, name, s->nparams, s->val, s->len, s->fmt, 0);
	st = PQresultStatus(r);
	if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK) {
		PQclear(s->res);
		s->res = r;
		s->nrows = st == PGRES_TUPLES_OK ? PQntuples(r) : 0;
		return AM_OK;
	}
	rc = pq_fail(db, r, what, e);
	PQclear(r);
	return rc;
}

int
pq_changes(struct db_stmt *s)
{
	int64_t n = 0;
	const char *t = s->res != NULL ? PQcmdTuples(s->res) : "";

	if (t[0] == '\0' || am_parse_i64(t, 0, INT32_MAX, &n) != 0)
		return 0;
	return (int)n;
}

void
pq_reset(struct db_stmt *s)
{
	PQclear(s->res);
	s->res = NULL;
	s->nrows = 0;
	s->row = -1;
	for (int i = 0; i < DB_MAX_PARAMS; i++) {
		free(s->own[i]);
		s->own[i] = NULL;
		s->val[i] = NULL;
		s->len[i] = 0;
		s->fmt[i] = 0;
	}
	if (s->blob != NULL) {
		OPENSSL_cleanse(s->blob, s->blob_len);
		PQfreemem(s->blob);
		s->blob = NULL;
		s->blob_len = 0;
	}
}

const char *
pq_col(struct db_stmt *s, int i)
{
	if (s->res == NULL || s->row < 0 || s->row >= s->nrows || i < 0 || i >= PQnfields(s->res) ||
	    PQgetisnull(s->res, s->row, i))
		return NULL;
	return PQgetvalue(s->res, s->row, i);
}

/* A one-value query with text parameters, outside the statement table. */
static enum am_err
scalar(struct db *db, const char *sql, const char *p1, char *out, size_t cap, struct am_error *e)
{
	const char *params[1] = {p1};
	PGresult *r;
	enum am_err rc = AM_OK;

	if ((rc = ensure(db, e)) != AM_OK)
		return rc;
	r = PQexecParams(db->pg, sql, p1 != NULL ? 1 : 0, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1)
		rc = pq_fail(db, r, sql, e);
	else if (out != NULL && !am_copy(out, cap, PQgetvalue(r, 0, 0)))
		rc = am_fail(e, AM_E_INTERNAL, "value too long");
	PQclear(r);
	return rc;
}

int
pq_schema_version(struct db *db)
{
	char v[24];
	int64_t n = 0;

	if (scalar(db, "SELECT to_regclass('schema_migrations') IS NOT NULL", NULL, v, sizeof(v),
		   NULL) != AM_OK ||
	    strcmp(v, "t") != 0 ||
	    scalar(db, "SELECT COALESCE(MAX(version), 0) FROM schema_migrations", NULL, v,
		   sizeof(v), NULL) != AM_OK ||
	    am_parse_i64(v, 0, INT32_MAX, &n) != 0)
		return 0;
	return (int)n;
}

/* An advisory lock's key: the tenant and the name, hashed by the server. */
static void
lock_key(struct db *db, const char *name, char *out, size_t cap)
{
	snprintf(out, cap, "authmd:%s:%s", db->tenant, name);
}

enum am_err
pq_try_lock(struct db *db, const char *name, bool *got, struct am_error *e)
{
	char key[128], v[8];
	enum am_err rc;

	*got = false;
	lock_key(db, name, key, sizeof(key));
	if ((rc = scalar(db, "SELECT pg_try_advisory_lock(hashtext($1))", key, v, sizeof(v), e)) !=
	    AM_OK)
		return rc;
	*got = strcmp(v, "t") == 0;
	return AM_OK;
}

void
pq_unlock(struct db *db, const char *name)
{
	char key[128];

	lock_key(db, name, key, sizeof(key));
	(void)scalar(db, "SELECT pg_advisory_unlock(hashtext($1))", key, NULL, 0, NULL);
}

/* Applies what is missing of migrations[0..nmig) in one transaction, under
 * an advisory lock that makes replicas starting together take turns: the
 * first applies, the others then find the schema current. */
static enum am_err
migrate(struct db *db, const char *const *migrations, size_t nmig, struct am_error *e)
{
	char wait[64];
	enum am_err rc;
	int version;

	if (pq_schema_version(db) == (int)nmig)
		return AM_OK;
	snprintf(wait, sizeof(wait), "SET statement_timeout = %d", MIGRATE_WAIT_MS);
	if ((rc = pq_exec(db, wait, e)) != AM_OK ||
	    (rc = scalar(db, "SELECT pg_advisory_lock(hashtext('authmd:migrate'))::text", NULL,
			 NULL, 0, e)) != AM_OK)
		return rc;
	if ((rc = pq_exec(db, "BEGIN", e)) != AM_OK)
		goto out;
	if ((rc = pq_exec(db,
			  "CREATE TABLE IF NOT EXISTS schema_migrations "
			  "(version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
			  e)) != AM_OK)
		goto fail;
	version = pq_schema_version(db);
	for (size_t i = (size_t)version; i < nmig; i++) {
		char mark[128], *text = translate(migrations[i]);

		rc = pq_exec(db, text, e);
		free(text);
		if (rc != AM_OK)
			goto fail;
		snprintf(mark, sizeof(mark),
			 "INSERT INTO schema_migrations VALUES (%zu, "
			 "CAST(EXTRACT(EPOCH FROM now()) AS BIGINT))",
			 i + 1);
		if ((rc = pq_exec(db, mark, e)) != AM_OK)
			goto fail;
		log_info("store migrated to version=%zu", i + 1);
	}
	rc = pq_exec(db, "COMMIT", e);
	goto out;
fail:
	(void)pq_exec(db, "ROLLBACK", NULL);
out:
	(void)scalar(db, "SELECT pg_advisory_unlock(hashtext('authmd:migrate'))::text", NULL, NULL,
		     0, NULL);
	(void)pq_exec(db, "RESET statement_timeout", NULL);
	return rc;
}

enum am_err
pq_open(struct db *db, const char *url, const char *const *migrations, size_t nmig,
	struct am_error *e)
{
	char connect_timeout[16], user_timeout[16];
	/* Defaults first, the URL last: what the URL sets wins. */
	const char *keys[] = {"connect_timeout",     "keepalives",	 "keepalives_idle",
			      "keepalives_interval", "keepalives_count", "tcp_user_timeout",
			      "application_name",    "dbname",		 NULL};
	const char *vals[] = {connect_timeout, "1", "5", "2", "2", user_timeout,
			      "authmd-server", url, NULL};

	snprintf(connect_timeout, sizeof(connect_timeout), "%d",
		 db->opts.connect_timeout_s < 2 ? 2 : db->opts.connect_timeout_s);
	snprintf(user_timeout, sizeof(user_timeout), "%d", db->opts.statement_timeout_ms + 1000);
	db->pg = PQconnectdbParams(keys, vals, 1);
	if (db->pg == NULL)
		return am_fail(e, AM_E_INTERNAL, "out of memory");
	if (PQstatus(db->pg) != CONNECTION_OK) {
		/* The message names host and port, never the password. */
		log_error("postgresql connect failed: %s", PQerrorMessage(db->pg));
		return unavailable(e, "the store is unreachable; retry");
	}
	if (!configure(db))
		return unavailable(e, "the store refused the session settings");
	return migrate(db, migrations, nmig, e);
}

void
pq_close(struct db *db)
{
	PQfinish(db->pg);
	db->pg = NULL;
}

bool
pq_url_is(const char *url)
{
	return strncmp(url, "postgresql://", 13) == 0 || strncmp(url, "postgres://", 11) == 0;
}

bool
db_url_check(const char *url, char *why, size_t cap)
{
	PQconninfoOption *o;
	char *err = NULL;

	if (!pq_url_is(url)) {
		if (strncmp(url, "sqlite:", 7) == 0 && url[7] != '\0')
			return true;
		snprintf(why, cap, "want sqlite:PATH, postgresql:// or postgres://");
		return false;
	}
	if ((o = PQconninfoParse(url, &err)) == NULL) {
		snprintf(why, cap, "not a PostgreSQL connection URI: %s",
			 err != NULL ? err : "out of memory");
		PQfreemem(err);
		return false;
	}
	PQconninfoFree(o);
	return true;
}

void
db_url_redact(const char *url, char *out, size_t cap)
{
	const char *auth = strstr(url, "://"), *at, *colon, *pw;

	snprintf(out, cap, "%s", url);
	if (!pq_url_is(url) || auth == NULL)
		return;
	auth += 3;
	at = strchr(auth, '@');
	colon = strchr(auth, ':');
	if (at != NULL && colon != NULL && colon < at &&
	    (strchr(auth, '/') == NULL || strchr(auth, '/') > at))
		snprintf(out, cap, "%.*s:***%s", (int)(colon - url), url, at);
	/* a password given as a URI parameter */
	if ((pw = strstr(out, "password=")) != NULL) {
		size_t end = strcspn(pw + 9, "&");
		char tail[AM_URL_TAIL];

		snprintf(tail, sizeof(tail), "%s", pw + 9 + end);
		snprintf((char *)pw + 9, cap - (size_t)(pw + 9 - out), "***%s", tail);
	}
}
