/* store.h on SQLite: WAL, synchronous=FULL (an acknowledged write survives a
 * crash of the process or the machine), one cached prepared statement per
 * query, every query bound to the connection's tenant. */
#include "store/store.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/fs.h"
#include "core/log.h"
#include "core/str.h"

extern const char *const store_migrations[];
extern const size_t store_migrations_count;

enum q {
	Q_USER_BY_EMAIL,
	Q_USER_INSERT,
	Q_REG_INSERT,
	Q_REG_BY_CLAIM,
	Q_REG_BY_ID,
	Q_REG_TRANSITION,
	Q_REG_CLAIM,
	Q_REG_DUE,
	Q_ATT_INSERT,
	Q_ATT_BY_TOKEN,
	Q_ATT_OPEN_FOR,
	Q_ATT_CLOSE_ALL,
	Q_ATT_SET_OTP,
	Q_ATT_FAIL,
	Q_CRED_INSERT,
	Q_CRED_AUTH,
	Q_CRED_UPGRADE,
	Q_CRED_REVOKE_REG,
	Q_AUDIT_INSERT,
	Q_USER_BY_PHONE,
	Q_DELEG_GET,
	Q_DELEG_USER,
	Q_DELEG_INSERT,
	Q_JTI_INSERT,
	Q_JTI_PURGE,
	Q_CRED_LIVE,
	Q_CRED_REVOKE,
	Q_SETTING_GET,
	Q_SETTING_PUT,
	Q__COUNT
};

#define REG_COLS                                                                                  \
	"id, kind, status, claim_token_hash, email, credential_type, user_id, created_at, "      \
	"expires_at, claimed_at, ip, iss, sub, agent_platform, agent_context_id"
#define ATT_COLS                                                                                  \
	"id, registration_id, email, token_hash, status, created_at, expires_at, otp_hash, "     \
	"otp_expires_at, otp_failures, ip"

static const char *const sql[Q__COUNT] = {
	[Q_USER_BY_EMAIL] = "SELECT id, email, phone, created_at, created_by_agent FROM users "
			    "WHERE tenant = ?1 AND email = ?2",
	[Q_USER_INSERT] = "INSERT INTO users (tenant, id, email, phone, created_at, created_by_agent) "
			  "VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
	[Q_REG_INSERT] = "INSERT INTO registrations (tenant, " REG_COLS ") "
			 "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, "
			 "?16)",
	[Q_REG_BY_CLAIM] = "SELECT " REG_COLS " FROM registrations "
			   "WHERE tenant = ?1 AND claim_token_hash = ?2",
	[Q_REG_BY_ID] = "SELECT " REG_COLS " FROM registrations WHERE tenant = ?1 AND id = ?2",
	[Q_REG_TRANSITION] = "UPDATE registrations SET status = ?4 "
			     "WHERE tenant = ?1 AND id = ?2 AND status = ?3",
	[Q_REG_CLAIM] = "UPDATE registrations SET status = 'claimed', user_id = ?3, claimed_at = ?4 "
			"WHERE tenant = ?1 AND id = ?2 AND status IN ('unclaimed', 'pending_claim')",
	[Q_REG_DUE] = "SELECT id FROM registrations WHERE tenant = ?1 "
		      "AND status IN ('unclaimed', 'pending_claim') AND expires_at <= ?2 "
		      "ORDER BY expires_at LIMIT ?3",
	[Q_ATT_INSERT] = "INSERT INTO claim_attempts (tenant, " ATT_COLS ") "
			 "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
	[Q_ATT_BY_TOKEN] = "SELECT " ATT_COLS " FROM claim_attempts "
			   "WHERE tenant = ?1 AND token_hash = ?2",
	[Q_ATT_OPEN_FOR] = "SELECT " ATT_COLS " FROM claim_attempts WHERE tenant = ?1 "
			   "AND registration_id = ?2 AND status = 'open' "
			   "ORDER BY created_at DESC, rowid DESC LIMIT 1",
	[Q_ATT_CLOSE_ALL] = "UPDATE claim_attempts SET status = ?3, otp_hash = NULL "
			    "WHERE tenant = ?1 AND registration_id = ?2 AND status = 'open'",
	[Q_ATT_SET_OTP] = "UPDATE claim_attempts SET otp_hash = ?3, otp_expires_at = ?4, "
			  "otp_failures = 0 WHERE tenant = ?1 AND id = ?2",
	[Q_ATT_FAIL] = "UPDATE claim_attempts SET otp_failures = otp_failures + 1, "
		       "otp_hash = CASE WHEN otp_failures + 1 >= ?3 THEN NULL ELSE otp_hash END "
		       "WHERE tenant = ?1 AND id = ?2",
	[Q_CRED_INSERT] = "INSERT INTO credentials (tenant, id, hash, type, scopes, source, "
			  "registration_id, user_id, iss, sub, aud, created_at, expires_at) "
			  "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
	[Q_CRED_AUTH] = "SELECT c.id, c.hash, c.type, c.scopes, c.source, c.registration_id, "
			"c.user_id, c.iss, c.sub, c.aud, c.created_at, c.expires_at, "
			"r.status, r.expires_at, u.email "
			"FROM credentials c "
			"JOIN registrations r ON r.tenant = c.tenant AND r.id = c.registration_id "
			"LEFT JOIN users u ON u.tenant = c.tenant AND u.id = c.user_id "
			"WHERE c.tenant = ?1 AND c.hash = ?2 AND c.revoked_at IS NULL "
			"AND (c.expires_at IS NULL OR c.expires_at > ?3)",
	[Q_CRED_UPGRADE] = "UPDATE credentials SET user_id = ?3, scopes = ?4 "
			   "WHERE tenant = ?1 AND registration_id = ?2 AND revoked_at IS NULL",
	[Q_CRED_REVOKE_REG] = "UPDATE credentials SET revoked_at = ?3 "
			      "WHERE tenant = ?1 AND registration_id = ?2 AND revoked_at IS NULL",
	[Q_AUDIT_INSERT] = "INSERT INTO audit_events (tenant, at, event, registration_id, data) "
			   "VALUES (?1, ?2, ?3, ?4, ?5)",
	[Q_USER_BY_PHONE] = "SELECT id, email, phone, created_at, created_by_agent FROM users "
			    "WHERE tenant = ?1 AND phone = ?2 ORDER BY created_at LIMIT 1",
	[Q_DELEG_GET] = "SELECT user_id, registration_id FROM delegations "
			"WHERE tenant = ?1 AND iss = ?2 AND sub = ?3 AND aud = ?4",
	[Q_DELEG_USER] = "SELECT user_id FROM delegations WHERE tenant = ?1 AND iss = ?2 "
			 "AND sub = ?3 ORDER BY created_at LIMIT 1",
	[Q_DELEG_INSERT] = "INSERT INTO delegations (tenant, iss, sub, aud, user_id, "
			   "registration_id, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
	[Q_JTI_INSERT] = "INSERT INTO seen_jti (tenant, iss, jti, expires_at) "
			 "VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
	[Q_JTI_PURGE] = "DELETE FROM seen_jti WHERE tenant = ?1 AND expires_at < ?2",
	[Q_CRED_LIVE] = "SELECT id, registration_id FROM credentials WHERE tenant = ?1 "
			"AND revoked_at IS NULL AND (?2 IS NULL OR iss = ?2) "
			"AND (?3 IS NULL OR sub = ?3) AND (?4 IS NULL OR aud = ?4) "
			"AND (?5 IS NULL OR user_id = ?5) AND (?6 IS NULL OR registration_id = ?6) "
			"ORDER BY registration_id, id LIMIT ?7",
	[Q_CRED_REVOKE] = "UPDATE credentials SET revoked_at = ?3 "
			  "WHERE tenant = ?1 AND id = ?2 AND revoked_at IS NULL",
	[Q_SETTING_GET] = "SELECT value FROM settings WHERE tenant = ?1 AND key = ?2",
	[Q_SETTING_PUT] = "INSERT INTO settings (tenant, key, value, updated_at) "
			  "VALUES (?1, ?2, ?3, ?4) ON CONFLICT (tenant, key) "
			  "DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
};

struct store {
	sqlite3 *db;
	char tenant[64];
	sqlite3_stmt *stmt[Q__COUNT];
	bool in_tx;
};

static const char *const kind_names[] = {"anonymous", "email", "agent"};
static const char *const status_names[] = {"unclaimed", "pending_claim", "claimed", "expired",
					   "revoked"};
static const char *const attempt_names[] = {"open", "superseded", "completed"};
static const char *const cred_names[] = {"api_key", "access_token"};

#define NAMES_COUNT(a) (sizeof(a) / sizeof((a)[0]))

const char *
store_kind_name(enum reg_kind k)
{
	return (size_t)k < NAMES_COUNT(kind_names) ? kind_names[k] : "?";
}

const char *
store_status_name(enum reg_status s)
{
	return (size_t)s < NAMES_COUNT(status_names) ? status_names[s] : "?";
}

const char *
store_cred_type_name(enum cred_type t)
{
	return (size_t)t < NAMES_COUNT(cred_names) ? cred_names[t] : "?";
}

static int
name_index(const char *const *names, size_t n, const char *s)
{
	for (size_t i = 0; s != NULL && i < n; i++) {
		if (strcmp(names[i], s) == 0)
			return (int)i;
	}
	return -1;
}

static enum am_err
db_fail(struct store *st, int rc, const char *what, struct am_error *e)
{
	log_error("sqlite %s failed rc=%d: %s", what, rc, sqlite3_errmsg(st->db));
	if (rc == SQLITE_BUSY || rc == SQLITE_LOCKED || rc == SQLITE_IOERR || rc == SQLITE_FULL)
		return am_fail(e, AM_E_UNAVAILABLE, "the store is busy; retry");
	return am_fail(e, AM_E_INTERNAL, "storage error");
}

/* The cached statement for q, reset, with the tenant bound as ?1. */
static enum am_err
prep(struct store *st, enum q q, sqlite3_stmt **out, struct am_error *e)
{
	sqlite3_stmt *s = st->stmt[q];
	int rc;

	if (s == NULL) {
		rc = sqlite3_prepare_v3(st->db, sql[q], -1, SQLITE_PREPARE_PERSISTENT, &s, NULL);
		if (rc != SQLITE_OK)
			return db_fail(st, rc, "prepare", e);
		st->stmt[q] = s;
	}
	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
	sqlite3_bind_text(s, 1, st->tenant, -1, SQLITE_STATIC);
	*out = s;
	return AM_OK;
}

static void
bind_text_or_null(sqlite3_stmt *s, int i, const char *v)
{
	if (v == NULL || v[0] == '\0')
		sqlite3_bind_null(s, i);
	else
		sqlite3_bind_text(s, i, v, -1, SQLITE_TRANSIENT);
}

static void
bind_hash(sqlite3_stmt *s, int i, const uint8_t *h)
{
	sqlite3_bind_blob(s, i, h, AM_HASH_LEN, SQLITE_TRANSIENT);
}

static void
col_text(sqlite3_stmt *s, int i, char *dst, size_t cap)
{
	const unsigned char *v = sqlite3_column_text(s, i);

	if (v == NULL || !am_copy(dst, cap, (const char *)v))
		dst[0] = '\0';
}

static bool
col_hash(sqlite3_stmt *s, int i, uint8_t out[AM_HASH_LEN])
{
	if (sqlite3_column_type(s, i) != SQLITE_BLOB || sqlite3_column_bytes(s, i) != AM_HASH_LEN) {
		memset(out, 0, AM_HASH_LEN);
		return false;
	}
	memcpy(out, sqlite3_column_blob(s, i), AM_HASH_LEN);
	return true;
}

/* Steps a statement that returns no rows; *changes gets the row count. */
static enum am_err
run(struct store *st, sqlite3_stmt *s, const char *what, int *changes, struct am_error *e)
{
	int rc = sqlite3_step(s);

	sqlite3_reset(s);
	if (rc != SQLITE_DONE) {
		if (rc == SQLITE_CONSTRAINT)
			return am_fail(e, AM_E_INTERNAL, "storage constraint");
		return db_fail(st, rc, what, e);
	}
	if (changes != NULL)
		*changes = sqlite3_changes(st->db);
	return AM_OK;
}

/* Steps a query expected to give at most one row: AM_OK with the row ready,
 * or AM_E_NOT_FOUND. */
static enum am_err
one(struct store *st, sqlite3_stmt *s, const char *what, struct am_error *e)
{
	int rc = sqlite3_step(s);

	if (rc == SQLITE_ROW)
		return AM_OK;
	sqlite3_reset(s);
	if (rc == SQLITE_DONE)
		return am_fail(e, AM_E_NOT_FOUND, "not found");
	return db_fail(st, rc, what, e);
}

static enum am_err
exec(struct store *st, const char *text, struct am_error *e)
{
	char *msg = NULL;
	int rc = sqlite3_exec(st->db, text, NULL, NULL, &msg);

	if (rc != SQLITE_OK) {
		log_error("sqlite exec failed rc=%d: %s", rc, msg != NULL ? msg : "?");
		sqlite3_free(msg);
		if (rc == SQLITE_BUSY || rc == SQLITE_LOCKED)
			return am_fail(e, AM_E_UNAVAILABLE, "the store is busy; retry");
		return am_fail(e, AM_E_INTERNAL, "storage error");
	}
	return AM_OK;
}

static enum am_err
migrate(struct store *st, struct am_error *e)
{
	enum am_err rc;
	int version;

	if ((rc = exec(st, "BEGIN IMMEDIATE", e)) != AM_OK)
		return rc;
	if ((rc = exec(st, "CREATE TABLE IF NOT EXISTS schema_migrations "
			   "(version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)",
		       e)) != AM_OK)
		goto fail;
	version = store_schema_version(st);
	for (size_t i = (size_t)version; i < store_migrations_count; i++) {
		char mark[128];

		if ((rc = exec(st, store_migrations[i], e)) != AM_OK)
			goto fail;
		snprintf(mark, sizeof(mark),
			 "INSERT INTO schema_migrations VALUES (%zu, strftime('%%s','now'))", i + 1);
		if ((rc = exec(st, mark, e)) != AM_OK)
			goto fail;
		log_info("store migrated to version=%zu", i + 1);
	}
	return exec(st, "COMMIT", e);
fail:
	(void)exec(st, "ROLLBACK", NULL);
	return rc;
}

int
store_schema_version(struct store *st)
{
	sqlite3_stmt *s = NULL;
	int v = 0;

	if (sqlite3_prepare_v2(st->db, "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
			       -1, &s, NULL) == SQLITE_OK &&
	    sqlite3_step(s) == SQLITE_ROW)
		v = sqlite3_column_int(s, 0);
	sqlite3_finalize(s);
	return v;
}

enum am_err
store_open(const char *url, const char *tenant, struct store **out, struct am_error *e)
{
	struct store *st;
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
	st = calloc(1, sizeof(*st));
	if (st == NULL)
		return am_fail(e, AM_E_INTERNAL, "out of memory");
	if (!am_copy(st->tenant, sizeof(st->tenant), tenant)) {
		free(st);
		return am_fail(e, AM_E_INTERNAL, "tenant name too long");
	}
	if (!memory && am_mkdir_parent(path) != 0) {
		log_error("store folder cannot be created path=%s", path);
		store_close(st);
		return am_fail(e, AM_E_UNAVAILABLE, "cannot create the store's folder");
	}
	if (sqlite3_open_v2(path, &st->db, flags, NULL) != SQLITE_OK) {
		log_error("store open failed path=%s: %s", path, sqlite3_errmsg(st->db));
		store_close(st);
		return am_fail(e, AM_E_UNAVAILABLE, "cannot open the store");
	}
	sqlite3_busy_timeout(st->db, 5000);
	sqlite3_extended_result_codes(st->db, 0);
	if ((rc = exec(st, memory ? "PRAGMA foreign_keys = ON"
				  : "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; "
				    "PRAGMA foreign_keys = ON",
		       e)) != AM_OK ||
	    (rc = migrate(st, e)) != AM_OK) {
		store_close(st);
		return rc;
	}
	*out = st;
	return AM_OK;
}

void
store_close(struct store *st)
{
	if (st == NULL)
		return;
	for (int i = 0; i < Q__COUNT; i++)
		sqlite3_finalize(st->stmt[i]);
	sqlite3_close(st->db);
	free(st);
}

enum am_err
store_begin(struct store *st, struct am_error *e)
{
	enum am_err rc = exec(st, "BEGIN IMMEDIATE", e);

	if (rc == AM_OK)
		st->in_tx = true;
	return rc;
}

enum am_err
store_commit(struct store *st, struct am_error *e)
{
	enum am_err rc = exec(st, "COMMIT", e);

	if (rc != AM_OK) {
		store_rollback(st);
		return rc;
	}
	st->in_tx = false;
	return AM_OK;
}

void
store_rollback(struct store *st)
{
	if (!st->in_tx)
		return;
	(void)exec(st, "ROLLBACK", NULL);
	st->in_tx = false;
}

/* ---- users ---- */

static enum am_err
user_query(struct store *st, enum q q, const char *key, struct store_user *out, struct am_error *e)
{
	sqlite3_stmt *s;
	enum am_err rc;

	if ((rc = prep(st, q, &s, e)) != AM_OK)
		return rc;
	sqlite3_bind_text(s, 2, key, -1, SQLITE_TRANSIENT);
	if ((rc = one(st, s, "user lookup", e)) != AM_OK)
		return rc;
	col_text(s, 0, out->id, sizeof(out->id));
	col_text(s, 1, out->email, sizeof(out->email));
	col_text(s, 2, out->phone, sizeof(out->phone));
	out->created_at = sqlite3_column_int64(s, 3);
	out->created_by_agent = sqlite3_column_int(s, 4) != 0;
	sqlite3_reset(s);
	return AM_OK;
}

enum am_err
store_user_by_email(struct store *st, const char *email, struct store_user *out,
		    struct am_error *e)
{
	return user_query(st, Q_USER_BY_EMAIL, email, out, e);
}

enum am_err
store_user_by_phone(struct store *st, const char *phone, struct store_user *out,
		    struct am_error *e)
{
	return user_query(st, Q_USER_BY_PHONE, phone, out, e);
}

enum am_err
store_user_insert(struct store *st, const struct store_user *u, struct am_error *e)
{
	sqlite3_stmt *s;
	enum am_err rc;

	if ((rc = prep(st, Q_USER_INSERT, &s, e)) != AM_OK)
		return rc;
	sqlite3_bind_text(s, 2, u->id, -1, SQLITE_TRANSIENT);
	bind_text_or_null(s, 3, u->email);
	bind_text_or_null(s, 4, u->phone);
	sqlite3_bind_int64(s, 5, u->created_at);
	sqlite3_bind_int(s, 6, u->created_by_agent ? 1 : 0);
	return run(st, s, "user insert", NULL, e);
}

/* ---- registrations ---- */

static void
read_reg(sqlite3_stmt *s, struct store_reg *r)
{
	char buf[32];
	int k;

	memset(r, 0, sizeof(*r));
	col_text(s, 0, r->id, sizeof(r->id));
	col_text(s, 1, buf, sizeof(buf));
	k = name_index(kind_names, NAMES_COUNT(kind_names), buf);
	r->kind = k < 0 ? REG_ANONYMOUS : (enum reg_kind)k;
	col_text(s, 2, buf, sizeof(buf));
	k = name_index(status_names, NAMES_COUNT(status_names), buf);
	r->status = k < 0 ? REG_REVOKED : (enum reg_status)k; /* unknown: fail closed */
	(void)col_hash(s, 3, r->claim_hash);
	col_text(s, 4, r->email, sizeof(r->email));
	col_text(s, 5, buf, sizeof(buf));
	r->credential_type = strcmp(buf, "access_token") == 0 ? CRED_ACCESS_TOKEN : CRED_API_KEY;
	col_text(s, 6, r->user_id, sizeof(r->user_id));
	r->created_at = sqlite3_column_int64(s, 7);
	r->expires_at = sqlite3_column_int64(s, 8);
	r->claimed_at = sqlite3_column_int64(s, 9);
	col_text(s, 10, r->ip, sizeof(r->ip));
	col_text(s, 11, r->iss, sizeof(r->iss));
	col_text(s, 12, r->sub, sizeof(r->sub));
	col_text(s, 13, r->agent_platform, sizeof(r->agent_platform));
	col_text(s, 14, r->agent_context_id, sizeof(r->agent_context_id));
}

enum am_err
store_reg_insert(struct store *st, const struct store_reg *r, struct am_error *e)
{
	sqlite3_stmt *s;
	enum am_err rc;
	static const uint8_t zero[AM_HASH_LEN];

	if ((rc = prep(st, Q_REG_INSERT, &s, e)) != AM_OK)
		return rc;
	sqlite3_bind_text(s, 2, r->id, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(s, 3, store_kind_name(r->kind), -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 4, store_status_name(r->status), -1, SQLITE_STATIC);
	if (memcmp(r->claim_hash, zero, AM_HASH_LEN) != 0)
		bind_hash(s, 5, r->claim_hash);
	bind_text_or_null(s, 6, r->email);
	sqlite3_bind_text(s, 7, store_cred_type_name(r->credential_type), -1, SQLITE_STATIC);
	bind_text_or_null(s, 8, r->user_id);
	sqlite3_bind_int64(s, 9, r->created_at);
	sqlite3_bind_int64(s, 10, r->expires_at);
	if (r->claimed_at != 0)
		sqlite3_bind_int64(s, 11, r->claimed_at);
	bind_text_or_null(s, 12, r->ip);
	bind_text_or_null(s, 13, r->iss);
	bind_text_or_null(s, 14, r->sub);
	bind_text_or_null(s, 15, r->agent_platform);
	bind_text_or_null(s, 16, r->agent_context_id);
	return run(st, s, "registration insert", NULL, e);
}

static enum am_err
reg_query(struct store *st, enum q q, const void *key, bool key_is_hash, struct store_reg *out,
	  struct am_error *e)
{
	sqlite3_stmt *s;
	enum am_err rc;

	if ((rc = prep(st, q, &s, e)) != AM_OK)
		return rc;
	if (key_is_hash)
		bind_hash(s, 2, key);
	else
		sqlite3_bind_text(s, 2, key, -1, SQLITE_TRANSIENT);
	if ((rc = one(st, s, "registration lookup", e)) != AM_OK)
		return rc;
	read_reg(s, out);
	sqlite3_reset(s);
	return AM_OK;
}

enum am_err
store_reg_by_claim_hash(struct store *st, const uint8_t hash[AM_HASH_LEN], struct store_reg *out,
			struct am_error *e)
{
	return reg_query(st, Q_REG_BY_CLAIM, hash, true, out, e);
}

enum am_err
store_reg_by_id(struct store *st, const char *id, struct store_reg *out, struct am_error *e)
{
	return reg_query(st, Q_REG_BY_ID, id, false, out, e);
}

enum am_err
store_reg_transition(struct store *st, const char *id, enum reg_status from, enum reg_status to,
		     struct am_error *e)
{
	sqlite3_stmt *s;
	enum am_err rc;
	int n = 0;

	if ((rc = prep(st, Q_REG_TRANSITION, &s, e)) != AM_OK)
		return rc;
	sqlite3_bind_text(s, 2, id, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(s, 3, store_status_name(from), -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 4, store_status_name(to), -1, SQLITE_STATIC);
	if ((rc = run(st, s, "registration transition", &n, e)) != AM_OK)
		return rc;
	return n == 1 ? AM_OK : am_fail(e, AM_E_NOT_FOUND, "registration changed meanwhile");
}

enum am_err
store_reg_claim(struct store *st, const char *id, const char *user_id, int64_t at,
		struct am_error *e)
{
	sqlite3_stmt *s;
	enum am_err rc;
	int n = 0;

	if ((rc = prep(st, Q_REG_CLAIM, &s, e)) != AM_OK)
		return rc;
	sqlite3_bind_text(s, 2, id, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(s, 3, user_id, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(s, 4, at);
	if ((rc = run(st, s, "registration claim", &n, e)) != AM_OK)
		return rc;
	return n == 1 ? AM_OK : am_fail(e, AM_E_NOT_FOUND, "registration no longer claimable");
}

enum am_err
store_reg_due(struct store *st, int64_t now, char (*ids)[STORE_ID_LEN], size_t cap, size_t *n,
	      struct am_error *e)
{
	sqlite3_stmt *s;
	enum am_err rc;
	int step;

	*n = 0;
	if ((rc = prep(st, Q_REG_DUE, &s, e)) != AM_OK)
		return rc;
	sqlite3_bind_int64(s, 2, now);
	sqlite3_bind_int64(s, 3, (sqlite3_int64)cap);
	while ((step = sqlite3_step(s)) == SQLITE_ROW && *n < cap)
		col_text(s, 0, ids[(*n)++], STORE_ID_LEN);
	sqlite3_reset(s);
	if (step != SQLITE_DONE && step != SQLITE_ROW)
		return db_fail(st, step, "registrations due", e);
	return AM_OK;
}

/* ---- claim attempts ---- */

static void
read_attempt(sqlite3_stmt *s, struct store_attempt *a)
{
	char buf[32];
	int k;

	memset(a, 0, sizeof(*a));
	col_text(s, 0, a->id, sizeof(a->id));
	col_text(s, 1, a->registration_id, sizeof(a->registration_id));
	col_text(s, 2, a->email, sizeof(a->email));
	(void)col_hash(s, 3, a->token_hash);
	col_text(s, 4, buf, sizeof(buf));
	k = name_index(attempt_names, NAMES_COUNT(attempt_names), buf);
	a->status = k < 0 ? ATTEMPT_SUPERSEDED : (enum attempt_status)k;
	a->created_at = sqlite3_column_int64(s, 5);
	a->expires_at = sqlite3_column_int64(s, 6);
	a->has_otp = col_hash(s, 7, a->otp_hash);
	a->otp_expires_at = sqlite3_column_int64(s, 8);
	a->otp_failures = sqlite3_column_int64(s, 9);
	col_text(s, 10, a->ip, sizeof(a->ip));
}

enum am_err
store_attempt_insert(struct store *st, const struct store_attempt *a, struct am_error *e)
{
	sqlite3_stmt *s;
	enum am_err rc;

	if ((rc = prep(st, Q_ATT_INSERT, &s, e)) != AM_OK)
		return rc;
	sqlite3_bind_text(s, 2, a->id, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(s, 3, a->registration_id, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(s, 4, a->email, -1, SQLITE_TRANSIENT);
	bind_hash(s, 5, a->token_hash);
	sqlite3_bind_text(s, 6, attempt_names[a->status], -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 7, a->created_at);
	sqlite3_bind_int64(s, 8, a->expires_at);
	if (a->has_otp) {
		bind_hash(s, 9, a->otp_hash);
		sqlite3_bind_int64(s, 10, a->otp_expires_at);
	}
	sqlite3_bind_int64(s, 11, a->otp_failures);
	bind_text_or_null(s, 12, a->ip);
	return run(st, s, "attempt insert", NULL, e);
}

static enum am_err
attempt_query(struct store *st, enum q q, const void *key, bool key_is_hash,
	      struct store_attempt *out, struct am_error *e)
{
	sqlite3_stmt *s;
	enum am_err rc;

	if ((rc = prep(st, q, &s, e)) != AM_OK)
		return rc;
	if (key_is_hash)
		bind_hash(s, 2, key);
	else
		sqlite3_bind_text(s, 2, key, -1, SQLITE_TRANSIENT);
	if ((rc = one(st, s, "attempt lookup", e)) != AM_OK)
		return rc;
	read_attempt(s, out);
	sqlite3_reset(s);
	return AM_OK;
}

enum am_err
store_attempt_by_token_hash(struct store *st, const uint8_t hash[AM_HASH_LEN],
			    struct store_attempt *out, struct am_error *e)
{
	return attempt_query(st, Q_ATT_BY_TOKEN, hash, true, out, e);
}

enum am_err
store_attempt_open_for(struct store *st, const char *registration_id, struct store_attempt *out,
		       struct am_error *e)
{
	return attempt_query(st, Q_ATT_OPEN_FOR, registration_id, false, out, e);
}

enum am_err
store_attempt_close_all(struct store *st, const char *registration_id, enum attempt_status to,
			struct am_error *e)
{
	sqlite3_stmt *s;
	enum am_err rc;

	if ((rc = prep(st, Q_ATT_CLOSE_ALL, &s, e)) != AM_OK)
		return rc;
	sqlite3_bind_text(s, 2, registration_id, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(s, 3, attempt_names[to], -1, SQLITE_STATIC);
	return run(st, s, "attempt close", NULL, e);
}

enum am_err
store_attempt_set_otp(struct store *st, const char *id, bool has_otp,
		      const uint8_t hash[AM_HASH_LEN], int64_t expires_at, struct am_error *e)
{
	sqlite3_stmt *s;
	enum am_err rc;

	if ((rc = prep(st, Q_ATT_SET_OTP, &s, e)) != AM_OK)
		return rc;
	sqlite3_bind_text(s, 2, id, -1, SQLITE_TRANSIENT);
	if (has_otp) {
		bind_hash(s, 3, hash);
		sqlite3_bind_int64(s, 4, expires_at);
	}
	return run(st, s, "attempt otp", NULL, e);
}

enum am_err
store_attempt_fail(struct store *st, const char *id, int64_t max, struct am_error *e)
{
	sqlite3_stmt *s;
	enum am_err rc;

	if ((rc = prep(st, Q_ATT_FAIL, &s, e)) != AM_OK)
		return rc;
	sqlite3_bind_text(s, 2, id, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(s, 3, max);
	return run(st, s, "attempt fail", NULL, e);
}

/* ---- credentials ---- */

enum am_err
store_cred_insert(struct store *st, const struct store_cred *c, struct am_error *e)
{
	sqlite3_stmt *s;
	enum am_err rc;

	if ((rc = prep(st, Q_CRED_INSERT, &s, e)) != AM_OK)
		return rc;
	sqlite3_bind_text(s, 2, c->id, -1, SQLITE_TRANSIENT);
	bind_hash(s, 3, c->hash);
	sqlite3_bind_text(s, 4, store_cred_type_name(c->type), -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 5, c->scopes, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(s, 6, c->source, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(s, 7, c->registration_id, -1, SQLITE_TRANSIENT);
	bind_text_or_null(s, 8, c->user_id);
	bind_text_or_null(s, 9, c->iss);
	bind_text_or_null(s, 10, c->sub);
	bind_text_or_null(s, 11, c->aud);
	sqlite3_bind_int64(s, 12, c->created_at);
	if (c->expires_at != 0)
		sqlite3_bind_int64(s, 13, c->expires_at);
	return run(st, s, "credential insert", NULL, e);
}

enum am_err
store_cred_auth(struct store *st, const uint8_t hash[AM_HASH_LEN], int64_t now,
		struct store_auth *out, struct am_error *e)
{
	sqlite3_stmt *s;
	enum am_err rc;
	struct store_cred *c = &out->cred;
	char buf[32];
	int k;

	if ((rc = prep(st, Q_CRED_AUTH, &s, e)) != AM_OK)
		return rc;
	/* Static binding: hash outlives the step, and the hot path copies nothing. */
	sqlite3_bind_blob(s, 2, hash, AM_HASH_LEN, SQLITE_STATIC);
	sqlite3_bind_int64(s, 3, now);
	if ((rc = one(st, s, "credential auth", e)) != AM_OK)
		return rc;
	col_text(s, 0, c->id, sizeof(c->id));
	(void)col_hash(s, 1, c->hash);
	col_text(s, 2, buf, sizeof(buf));
	c->type = strcmp(buf, "access_token") == 0 ? CRED_ACCESS_TOKEN : CRED_API_KEY;
	col_text(s, 3, c->scopes, sizeof(c->scopes));
	col_text(s, 4, c->source, sizeof(c->source));
	col_text(s, 5, c->registration_id, sizeof(c->registration_id));
	col_text(s, 6, c->user_id, sizeof(c->user_id));
	col_text(s, 7, c->iss, sizeof(c->iss));
	col_text(s, 8, c->sub, sizeof(c->sub));
	col_text(s, 9, c->aud, sizeof(c->aud));
	c->created_at = sqlite3_column_int64(s, 10);
	c->expires_at = sqlite3_column_int64(s, 11);
	col_text(s, 12, buf, sizeof(buf));
	k = name_index(status_names, NAMES_COUNT(status_names), buf);
	out->reg_status = k < 0 ? REG_REVOKED : (enum reg_status)k;
	out->reg_expires_at = sqlite3_column_int64(s, 13);
	col_text(s, 14, out->user_email, sizeof(out->user_email));
	sqlite3_reset(s);
	return AM_OK;
}

enum am_err
store_cred_upgrade(struct store *st, const char *registration_id, const char *user_id,
		   const char *scopes, struct am_error *e)
{
	sqlite3_stmt *s;
	enum am_err rc;

	if ((rc = prep(st, Q_CRED_UPGRADE, &s, e)) != AM_OK)
		return rc;
	sqlite3_bind_text(s, 2, registration_id, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(s, 3, user_id, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(s, 4, scopes, -1, SQLITE_TRANSIENT);
	return run(st, s, "credential upgrade", NULL, e);
}

enum am_err
store_cred_revoke_reg(struct store *st, const char *registration_id, int64_t at, int *n,
		      struct am_error *e)
{
	sqlite3_stmt *s;
	enum am_err rc;

	if ((rc = prep(st, Q_CRED_REVOKE_REG, &s, e)) != AM_OK)
		return rc;
	sqlite3_bind_text(s, 2, registration_id, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(s, 3, at);
	return run(st, s, "credential revoke", n, e);
}

/* ---- audit ---- */

enum am_err
store_audit_insert(struct store *st, int64_t at, const char *event, const char *registration_id,
		   const char *json, struct am_error *e)
{
	sqlite3_stmt *s;
	enum am_err rc;

	if ((rc = prep(st, Q_AUDIT_INSERT, &s, e)) != AM_OK)
		return rc;
	sqlite3_bind_int64(s, 2, at);
	sqlite3_bind_text(s, 3, event, -1, SQLITE_TRANSIENT);
	bind_text_or_null(s, 4, registration_id);
	sqlite3_bind_text(s, 5, json, -1, SQLITE_TRANSIENT);
	return run(st, s, "audit insert", NULL, e);
}

/* ---- delegations, replay, revocation, settings ---- */

static void
bind_texts(sqlite3_stmt *s, int first, const char *const *v, int n)
{
	for (int i = 0; i < n; i++)
		sqlite3_bind_text(s, first + i, v[i], -1, SQLITE_TRANSIENT);
}

enum am_err
store_delegation_get(struct store *st, const char *iss, const char *sub, const char *aud,
		     struct store_delegation *out, struct am_error *e)
{
	const char *const keys[] = {iss, sub, aud};
	sqlite3_stmt *s;
	enum am_err rc;

	if ((rc = prep(st, Q_DELEG_GET, &s, e)) != AM_OK)
		return rc;
	bind_texts(s, 2, keys, 3);
	if ((rc = one(st, s, "delegation lookup", e)) != AM_OK)
		return rc;
	col_text(s, 0, out->user_id, sizeof(out->user_id));
	col_text(s, 1, out->registration_id, sizeof(out->registration_id));
	sqlite3_reset(s);
	return AM_OK;
}

enum am_err
store_delegation_user(struct store *st, const char *iss, const char *sub,
		      char user_id[STORE_ID_LEN], struct am_error *e)
{
	const char *const keys[] = {iss, sub};
	sqlite3_stmt *s;
	enum am_err rc;

	if ((rc = prep(st, Q_DELEG_USER, &s, e)) != AM_OK)
		return rc;
	bind_texts(s, 2, keys, 2);
	if ((rc = one(st, s, "delegation user", e)) != AM_OK)
		return rc;
	col_text(s, 0, user_id, STORE_ID_LEN);
	sqlite3_reset(s);
	return AM_OK;
}

enum am_err
store_delegation_insert(struct store *st, const char *iss, const char *sub, const char *aud,
			const char *user_id, const char *registration_id, int64_t at,
			struct am_error *e)
{
	const char *const vals[] = {iss, sub, aud, user_id, registration_id};
	sqlite3_stmt *s;
	enum am_err rc;

	if ((rc = prep(st, Q_DELEG_INSERT, &s, e)) != AM_OK)
		return rc;
	bind_texts(s, 2, vals, 5);
	sqlite3_bind_int64(s, 7, at);
	return run(st, s, "delegation insert", NULL, e);
}

enum am_err
store_jti_record(struct store *st, const char *iss, const char *jti, int64_t expires_at,
		 bool *fresh, struct am_error *e)
{
	const char *const keys[] = {iss, jti};
	sqlite3_stmt *s;
	enum am_err rc;
	int n = 0;

	if ((rc = prep(st, Q_JTI_INSERT, &s, e)) != AM_OK)
		return rc;
	bind_texts(s, 2, keys, 2);
	sqlite3_bind_int64(s, 4, expires_at);
	if ((rc = run(st, s, "jti insert", &n, e)) != AM_OK)
		return rc;
	*fresh = n == 1;
	return AM_OK;
}

enum am_err
store_jti_purge(struct store *st, int64_t now, int *n, struct am_error *e)
{
	sqlite3_stmt *s;
	enum am_err rc;

	if ((rc = prep(st, Q_JTI_PURGE, &s, e)) != AM_OK)
		return rc;
	sqlite3_bind_int64(s, 2, now);
	return run(st, s, "jti purge", n, e);
}

enum am_err
store_cred_live(struct store *st, const struct store_cred_filter *f, struct store_cred_ref *out,
		size_t cap, size_t *n, struct am_error *e)
{
	const char *const keys[] = {f->iss, f->sub, f->aud, f->user_id, f->registration_id};
	sqlite3_stmt *s;
	enum am_err rc;
	int step = SQLITE_DONE;

	*n = 0;
	if ((rc = prep(st, Q_CRED_LIVE, &s, e)) != AM_OK)
		return rc;
	for (int i = 0; i < 5; i++) {
		if (keys[i] != NULL)
			sqlite3_bind_text(s, 2 + i, keys[i], -1, SQLITE_TRANSIENT);
	}
	sqlite3_bind_int64(s, 7, (sqlite3_int64)cap);
	while (*n < cap && (step = sqlite3_step(s)) == SQLITE_ROW) {
		col_text(s, 0, out[*n].id, sizeof(out[*n].id));
		col_text(s, 1, out[*n].registration_id, sizeof(out[*n].registration_id));
		(*n)++;
	}
	if (*n < cap && step != SQLITE_DONE) {
		sqlite3_reset(s);
		return db_fail(st, step, "credentials live", e);
	}
	sqlite3_reset(s);
	return AM_OK;
}

enum am_err
store_cred_revoke(struct store *st, const char *id, int64_t at, struct am_error *e)
{
	sqlite3_stmt *s;
	enum am_err rc;
	int n = 0;

	if ((rc = prep(st, Q_CRED_REVOKE, &s, e)) != AM_OK)
		return rc;
	sqlite3_bind_text(s, 2, id, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(s, 3, at);
	if ((rc = run(st, s, "credential revoke", &n, e)) != AM_OK)
		return rc;
	return n == 1 ? AM_OK : am_fail(e, AM_E_NOT_FOUND, "credential not live");
}

enum am_err
store_setting_get(struct store *st, const char *key, char **value, struct am_error *e)
{
	sqlite3_stmt *s;
	enum am_err rc;
	const unsigned char *v;

	if ((rc = prep(st, Q_SETTING_GET, &s, e)) != AM_OK)
		return rc;
	sqlite3_bind_text(s, 2, key, -1, SQLITE_TRANSIENT);
	if ((rc = one(st, s, "setting get", e)) != AM_OK)
		return rc;
	v = sqlite3_column_text(s, 0);
	*value = am_xstrdup(v != NULL ? (const char *)v : "");
	sqlite3_reset(s);
	return AM_OK;
}

enum am_err
store_setting_put(struct store *st, const char *key, const char *value, int64_t at,
		  struct am_error *e)
{
	sqlite3_stmt *s;
	enum am_err rc;

	if ((rc = prep(st, Q_SETTING_PUT, &s, e)) != AM_OK)
		return rc;
	sqlite3_bind_text(s, 2, key, -1, SQLITE_TRANSIENT);
	sqlite3_bind_text(s, 3, value, -1, SQLITE_TRANSIENT);
	sqlite3_bind_int64(s, 4, at);
	return run(st, s, "setting put", NULL, e);
}
