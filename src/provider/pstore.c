/* The provider's tables on SQLite, through store/db.c. */
#include <stdlib.h>
#include <string.h>

#include "core/str.h"
#include "provider/provider.h"
#include "store/db.h"

extern const char *const provider_migrations[];
extern const size_t provider_migrations_count;

enum q {
	Q_USER_ADD,
	Q_USER_BY_EMAIL,
	Q_USER_BY_ID,
	Q_USERS,
	Q_SESSION_ADD,
	Q_SESSION_USER,
	Q_SESSION_REVOKE,
	Q_GRANT_ADD,
	Q_GRANT_GET,
	Q_GRANT_LIVE,
	Q_GRANT_SET,
	Q_GRANTS,
	Q_DELIVERY_ADD,
	Q_DELIVERY_DUE,
	Q_DELIVERY_NEXT,
	Q_DELIVERY_UPDATE,
	Q_KEY_ADD,
	Q_KEY_RETIRE,
	Q_KEY_CURRENT,
	Q_JWKS,
	Q__COUNT
};

#define USER_COLS "id, sub, email, email_verified, phone, phone_verified, name, created_at"
#define GRANT_COLS                                                                                 \
	"id, user_id, audience, mode, revocation_uri, status, created_at, updated_at, delivery"
#define DELIVERY_COLS                                                                              \
	"id, grant_id, url, sub, aud, status, attempts, next_at, http_status, last_error, format"

static const char *const sql[Q__COUNT] = {
	[Q_USER_ADD] = "INSERT INTO users (tenant, " USER_COLS ") "
		       "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
	[Q_USER_BY_EMAIL] = "SELECT " USER_COLS " FROM users WHERE tenant = ?1 AND email = ?2",
	[Q_USER_BY_ID] = "SELECT " USER_COLS " FROM users WHERE tenant = ?1 AND id = ?2",
	[Q_USERS] = "SELECT " USER_COLS " FROM users WHERE tenant = ?1 ORDER BY created_at, id",
	[Q_SESSION_ADD] = "INSERT INTO sessions (tenant, id, token_hash, user_id, created_at) "
			  "VALUES (?1, ?2, ?3, ?4, ?5)",
	[Q_SESSION_USER] =
		"SELECT user_id, created_at FROM sessions WHERE tenant = ?1 AND token_hash = ?2 "
		"AND revoked_at IS NULL",
	[Q_SESSION_REVOKE] = "UPDATE sessions SET revoked_at = ?3 "
			     "WHERE tenant = ?1 AND id = ?2 AND revoked_at IS NULL",
	[Q_GRANT_ADD] = "INSERT INTO grants (tenant, " GRANT_COLS ") "
			"VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
	[Q_GRANT_GET] = "SELECT " GRANT_COLS " FROM grants WHERE tenant = ?1 AND user_id = ?2 "
			"AND id = ?3",
	[Q_GRANT_LIVE] = "SELECT " GRANT_COLS " FROM grants WHERE tenant = ?1 AND user_id = ?2 "
			 "AND audience = ?3 AND status = 'active' ORDER BY created_at DESC LIMIT 1",
	[Q_GRANT_SET] = "UPDATE grants SET status = ?4, updated_at = ?5 "
			"WHERE tenant = ?1 AND id = ?2 AND status = ?3",
	[Q_GRANTS] = "SELECT g.id, g.audience, g.mode, g.revocation_uri, g.status, g.created_at, "
		     "d.status, d.attempts, d.http_status, d.last_error, d.next_at, g.delivery "
		     "FROM grants g LEFT JOIN deliveries d ON d.tenant = g.tenant "
		     "AND d.grant_id = g.id WHERE g.tenant = ?1 AND g.user_id = ?2 "
		     "ORDER BY g.created_at DESC, g.id",
	[Q_DELIVERY_ADD] =
		"INSERT INTO deliveries (tenant, " DELIVERY_COLS ", created_at, updated_at) "
		"VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', 0, ?7, NULL, NULL, ?8, ?7, ?7)",
	[Q_DELIVERY_DUE] = "SELECT " DELIVERY_COLS " FROM deliveries WHERE tenant = ?1 "
			   "AND status = 'pending' AND next_at <= ?2 ORDER BY next_at LIMIT ?3",
	[Q_DELIVERY_NEXT] = "SELECT MIN(next_at) FROM deliveries WHERE tenant = ?1 "
			    "AND status = 'pending'",
	[Q_DELIVERY_UPDATE] = "UPDATE deliveries SET status = ?3, attempts = ?4, next_at = ?5, "
			      "http_status = ?6, last_error = ?7, updated_at = ?8 "
			      "WHERE tenant = ?1 AND id = ?2",
	/* An upsert: publishing a kid that is already known (a key file whose
	 * public half was retired, or lost with an older database) makes it the
	 * current key again. */
	[Q_KEY_ADD] = "INSERT INTO signing_keys (tenant, kid, alg, public_jwk, created_at) "
		      "VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (tenant, kid) DO UPDATE SET "
		      "alg = excluded.alg, public_jwk = excluded.public_jwk, "
		      "created_at = excluded.created_at, retired_at = NULL, publish_until = NULL",
	[Q_KEY_RETIRE] = "UPDATE signing_keys SET retired_at = ?3, publish_until = ?4 "
			 "WHERE tenant = ?1 AND kid != ?2 AND retired_at IS NULL",
	[Q_KEY_CURRENT] = "SELECT kid FROM signing_keys WHERE tenant = ?1 AND retired_at IS NULL "
			  "ORDER BY created_at DESC LIMIT 1",
	[Q_JWKS] = "SELECT public_jwk FROM signing_keys WHERE tenant = ?1 "
		   "AND (retired_at IS NULL OR publish_until > ?2) ORDER BY created_at DESC",
};

static const char *const grant_names[] = {"active", "consumed", "revoked"};
static const char *const delivery_names[] = {"pending", "delivered", "failed"};

struct pstore {
	struct db *db;
};

enum am_err
pstore_open(const char *url, struct pstore **out, struct am_error *e)
{
	struct pstore *ps = calloc(1, sizeof(*ps));
	enum am_err rc;

	if (ps == NULL)
		return am_fail(e, AM_E_INTERNAL, "out of memory");
	rc = db_open(url, "default", NULL, provider_migrations, provider_migrations_count, sql,
		     NULL, Q__COUNT, &ps->db, e);
	if (rc != AM_OK) {
		free(ps);
		return rc;
	}
	*out = ps;
	return AM_OK;
}

void
pstore_close(struct pstore *ps)
{
	if (ps == NULL)
		return;
	db_close(ps->db);
	free(ps);
}

enum am_err
pstore_begin(struct pstore *ps, struct am_error *e)
{
	return db_begin(ps->db, e);
}

enum am_err
pstore_commit(struct pstore *ps, struct am_error *e)
{
	return db_commit(ps->db, e);
}

void
pstore_rollback(struct pstore *ps)
{
	db_rollback(ps->db);
}

/* ---- users and sessions ---- */

static void
read_user(struct db_stmt *s, struct prov_user *u)
{
	memset(u, 0, sizeof(*u));
	db_col_text(s, 0, u->id, sizeof(u->id));
	db_col_text(s, 1, u->sub, sizeof(u->sub));
	db_col_text(s, 2, u->email, sizeof(u->email));
	u->email_verified = (int)db_col_int64(s, 3) != 0;
	db_col_text(s, 4, u->phone, sizeof(u->phone));
	u->phone_verified = (int)db_col_int64(s, 5) != 0;
	db_col_text(s, 6, u->name, sizeof(u->name));
	u->created_at = db_col_int64(s, 7);
}

enum am_err
pstore_user_add(struct pstore *ps, const struct prov_user *u, struct am_error *e)
{
	struct db_stmt *s;
	enum am_err rc;

	if ((rc = db_prep(ps->db, Q_USER_ADD, &s, e)) != AM_OK)
		return rc;
	db_bind_text(s, 2, u->id);
	db_bind_text(s, 3, u->sub);
	db_bind_text(s, 4, u->email);
	db_bind_int64(s, 5, u->email_verified);
	db_bind_text_or_null(s, 6, u->phone);
	db_bind_int64(s, 7, u->phone_verified);
	db_bind_text_or_null(s, 8, u->name);
	db_bind_int64(s, 9, u->created_at);
	return db_run(ps->db, s, "user add", NULL, e);
}

static enum am_err
user_query(struct pstore *ps, enum q q, const char *key, struct prov_user *out, struct am_error *e)
{
	struct db_stmt *s;
	enum am_err rc;

	if ((rc = db_prep(ps->db, q, &s, e)) != AM_OK)
		return rc;
	db_bind_text(s, 2, key);
	if ((rc = db_one(ps->db, s, "user lookup", e)) != AM_OK)
		return rc;
	read_user(s, out);
	db_reset(s);
	return AM_OK;
}

enum am_err
pstore_user_by_email(struct pstore *ps, const char *email, struct prov_user *out,
		     struct am_error *e)
{
	return user_query(ps, Q_USER_BY_EMAIL, email, out, e);
}

enum am_err
pstore_user_by_id(struct pstore *ps, const char *id, struct prov_user *out, struct am_error *e)
{
	return user_query(ps, Q_USER_BY_ID, id, out, e);
}

enum am_err
pstore_users(struct pstore *ps, void (*fn)(void *ctx, const struct prov_user *u), void *ctx,
	     struct am_error *e)
{
	struct db_stmt *s;
	struct prov_user u;
	enum am_err rc;
	enum am_err step;

	if ((rc = db_prep(ps->db, Q_USERS, &s, e)) != AM_OK)
		return rc;
	while ((step = db_next(ps->db, s, "users", e)) == AM_OK) {
		read_user(s, &u);
		fn(ctx, &u);
	}
	db_reset(s);
	return step == AM_E_NOT_FOUND ? AM_OK : step;
}

enum am_err
pstore_session_add(struct pstore *ps, const char *id, const uint8_t hash[AM_HASH_LEN],
		   const char *user_id, int64_t at, struct am_error *e)
{
	struct db_stmt *s;
	enum am_err rc;

	if ((rc = db_prep(ps->db, Q_SESSION_ADD, &s, e)) != AM_OK)
		return rc;
	db_bind_text(s, 2, id);
	db_bind_hash(s, 3, hash);
	db_bind_text(s, 4, user_id);
	db_bind_int64(s, 5, at);
	return db_run(ps->db, s, "session add", NULL, e);
}

enum am_err
pstore_session_user(struct pstore *ps, const uint8_t hash[AM_HASH_LEN], char user_id[40],
		    int64_t *created_at, struct am_error *e)
{
	struct db_stmt *s;
	enum am_err rc;

	if ((rc = db_prep(ps->db, Q_SESSION_USER, &s, e)) != AM_OK)
		return rc;
	db_bind_hash(s, 2, hash);
	if ((rc = db_one(ps->db, s, "session lookup", e)) != AM_OK)
		return rc;
	db_col_text(s, 0, user_id, 40);
	*created_at = db_col_int64(s, 1);
	db_reset(s);
	return AM_OK;
}

enum am_err
pstore_session_revoke(struct pstore *ps, const char *id, int64_t at, struct am_error *e)
{
	struct db_stmt *s;
	enum am_err rc;
	int n = 0;

	if ((rc = db_prep(ps->db, Q_SESSION_REVOKE, &s, e)) != AM_OK)
		return rc;
	db_bind_text(s, 2, id);
	db_bind_int64(s, 3, at);
	if ((rc = db_run(ps->db, s, "session revoke", &n, e)) != AM_OK)
		return rc;
	return n == 1 ? AM_OK : am_fail(e, AM_E_NOT_FOUND, "no live session with that id");
}

/* ---- grants ---- */

static void
read_grant(struct db_stmt *s, struct prov_grant *g)
{
	char buf[16];
	int k;

	memset(g, 0, sizeof(*g));
	db_col_text(s, 0, g->id, sizeof(g->id));
	db_col_text(s, 1, g->user_id, sizeof(g->user_id));
	db_col_text(s, 2, g->audience, sizeof(g->audience));
	db_col_text(s, 3, buf, sizeof(buf));
	g->once = strcmp(buf, "once") == 0;
	db_col_text(s, 4, g->revocation_uri, sizeof(g->revocation_uri));
	db_col_text(s, 5, buf, sizeof(buf));
	k = db_name_index(grant_names, 3, buf);
	g->status = k < 0 ? GRANT_REVOKED : (enum grant_status)k;
	g->created_at = db_col_int64(s, 6);
	g->updated_at = db_col_int64(s, 7);
	db_col_text(s, 8, buf, sizeof(buf));
	g->format = strcmp(buf, "set") == 0 ? FORMAT_SET : FORMAT_LOGOUT;
}

const char *
prov_format_name(enum delivery_format f)
{
	return f == FORMAT_SET ? "set" : "logout";
}

enum am_err
pstore_grant_add(struct pstore *ps, const struct prov_grant *g, struct am_error *e)
{
	struct db_stmt *s;
	enum am_err rc;

	if ((rc = db_prep(ps->db, Q_GRANT_ADD, &s, e)) != AM_OK)
		return rc;
	db_bind_text(s, 2, g->id);
	db_bind_text(s, 3, g->user_id);
	db_bind_text(s, 4, g->audience);
	db_bind_text(s, 5, g->once ? "once" : "always");
	db_bind_text_or_null(s, 6, g->revocation_uri);
	db_bind_text(s, 7, grant_names[g->status]);
	db_bind_int64(s, 8, g->created_at);
	db_bind_int64(s, 9, g->updated_at);
	db_bind_text(s, 10, prov_format_name(g->format));
	return db_run(ps->db, s, "grant add", NULL, e);
}

static enum am_err
grant_query(struct pstore *ps, enum q q, const char *user_id, const char *key,
	    struct prov_grant *out, struct am_error *e)
{
	struct db_stmt *s;
	enum am_err rc;

	if ((rc = db_prep(ps->db, q, &s, e)) != AM_OK)
		return rc;
	db_bind_text(s, 2, user_id);
	db_bind_text(s, 3, key);
	if ((rc = db_one(ps->db, s, "grant lookup", e)) != AM_OK)
		return rc;
	read_grant(s, out);
	db_reset(s);
	return AM_OK;
}

enum am_err
pstore_grant_get(struct pstore *ps, const char *user_id, const char *id, struct prov_grant *out,
		 struct am_error *e)
{
	return grant_query(ps, Q_GRANT_GET, user_id, id, out, e);
}

enum am_err
pstore_grant_live(struct pstore *ps, const char *user_id, const char *audience,
		  struct prov_grant *out, struct am_error *e)
{
	return grant_query(ps, Q_GRANT_LIVE, user_id, audience, out, e);
}

enum am_err
pstore_grant_set(struct pstore *ps, const char *id, enum grant_status from, enum grant_status to,
		 int64_t at, struct am_error *e)
{
	struct db_stmt *s;
	enum am_err rc;
	int n = 0;

	if ((rc = db_prep(ps->db, Q_GRANT_SET, &s, e)) != AM_OK)
		return rc;
	db_bind_text(s, 2, id);
	db_bind_text(s, 3, grant_names[from]);
	db_bind_text(s, 4, grant_names[to]);
	db_bind_int64(s, 5, at);
	if ((rc = db_run(ps->db, s, "grant set", &n, e)) != AM_OK)
		return rc;
	return n == 1 ? AM_OK : am_fail(e, AM_E_NOT_FOUND, "grant changed meanwhile");
}

enum am_err
pstore_grants_json(struct pstore *ps, const char *user_id, json_t **out, struct am_error *e)
{
	struct db_stmt *s;
	json_t *arr = json_array();
	enum am_err rc;
	enum am_err step;

	if ((rc = db_prep(ps->db, Q_GRANTS, &s, e)) != AM_OK) {
		json_decref(arr);
		return rc;
	}
	db_bind_text(s, 2, user_id);
	while ((step = db_next(ps->db, s, "grants", e)) == AM_OK) {
		const char *fmt = db_col_str(s, 11);
		bool set = fmt != NULL && strcmp(fmt, "set") == 0;
		json_t *g = json_pack("{s:s, s:s, s:s, s:s?, s:s, s:I}", "id", db_col_str(s, 0),
				      "audience", db_col_str(s, 1), "mode", db_col_str(s, 2),
				      set ? "events_endpoint" : "revocation_uri", db_col_str(s, 3),
				      "status", db_col_str(s, 4), "created_at",
				      (json_int_t)db_col_int64(s, 5));

		if (!db_col_null(s, 6))
			json_object_set_new(
				g, "revocation",
				json_pack("{s:s, s:I, s:o?, s:s?, s:I}", "status", db_col_str(s, 6),
					  "attempts", (json_int_t)db_col_int64(s, 7), "http_status",
					  db_col_null(s, 8) ? NULL
							    : json_integer(db_col_int64(s, 8)),
					  "last_error", db_col_str(s, 9), "next_at",
					  (json_int_t)db_col_int64(s, 10)));
		json_array_append_new(arr, g);
	}
	db_reset(s);
	if (step != AM_E_NOT_FOUND) {
		json_decref(arr);
		return step;
	}
	*out = arr;
	return AM_OK;
}

/* ---- deliveries ---- */

enum am_err
pstore_delivery_add(struct pstore *ps, const struct prov_delivery *d, int64_t at,
		    struct am_error *e)
{
	const char *const vals[] = {d->id, d->grant_id, d->url, d->sub, d->aud};
	struct db_stmt *s;
	enum am_err rc;

	if ((rc = db_prep(ps->db, Q_DELIVERY_ADD, &s, e)) != AM_OK)
		return rc;
	for (int i = 0; i < 5; i++)
		db_bind_text(s, 2 + i, vals[i]);
	db_bind_int64(s, 7, at);
	db_bind_text(s, 8, prov_format_name(d->format));
	return db_run(ps->db, s, "delivery add", NULL, e);
}

enum am_err
pstore_deliveries_due(struct pstore *ps, int64_t now, struct prov_delivery *out, size_t cap,
		      size_t *n, struct am_error *e)
{
	struct db_stmt *s;
	enum am_err rc;
	enum am_err step = AM_E_NOT_FOUND;
	char buf[16];

	*n = 0;
	if ((rc = db_prep(ps->db, Q_DELIVERY_DUE, &s, e)) != AM_OK)
		return rc;
	db_bind_int64(s, 2, now);
	db_bind_int64(s, 3, (int64_t)cap);
	while (*n < cap && (step = db_next(ps->db, s, "deliveries due", e)) == AM_OK) {
		struct prov_delivery *d = &out[(*n)++];
		int k;

		memset(d, 0, sizeof(*d));
		db_col_text(s, 0, d->id, sizeof(d->id));
		db_col_text(s, 1, d->grant_id, sizeof(d->grant_id));
		db_col_text(s, 2, d->url, sizeof(d->url));
		db_col_text(s, 3, d->sub, sizeof(d->sub));
		db_col_text(s, 4, d->aud, sizeof(d->aud));
		db_col_text(s, 5, buf, sizeof(buf));
		k = db_name_index(delivery_names, 3, buf);
		d->status = k < 0 ? DELIVERY_FAILED : (enum delivery_status)k;
		d->attempts = db_col_int64(s, 6);
		d->next_at = db_col_int64(s, 7);
		d->http_status = db_col_int64(s, 8);
		db_col_text(s, 9, d->last_error, sizeof(d->last_error));
		db_col_text(s, 10, buf, sizeof(buf));
		d->format = strcmp(buf, "set") == 0 ? FORMAT_SET : FORMAT_LOGOUT;
	}
	db_reset(s);
	if (*n < cap && step != AM_E_NOT_FOUND)
		return step;
	return AM_OK;
}

enum am_err
pstore_delivery_next(struct pstore *ps, int64_t *at, struct am_error *e)
{
	struct db_stmt *s;
	enum am_err rc;

	*at = 0;
	if ((rc = db_prep(ps->db, Q_DELIVERY_NEXT, &s, e)) != AM_OK)
		return rc;
	if ((rc = db_one(ps->db, s, "delivery next", e)) != AM_OK)
		return rc;
	*at = db_col_int64(s, 0);
	db_reset(s);
	return AM_OK;
}

enum am_err
pstore_delivery_update(struct pstore *ps, const struct prov_delivery *d, int64_t at,
		       struct am_error *e)
{
	struct db_stmt *s;
	enum am_err rc;

	if ((rc = db_prep(ps->db, Q_DELIVERY_UPDATE, &s, e)) != AM_OK)
		return rc;
	db_bind_text(s, 2, d->id);
	db_bind_text(s, 3, delivery_names[d->status]);
	db_bind_int64(s, 4, d->attempts);
	db_bind_int64(s, 5, d->next_at);
	if (d->http_status != 0)
		db_bind_int64(s, 6, d->http_status);
	db_bind_text_or_null(s, 7, d->last_error);
	db_bind_int64(s, 8, at);
	return db_run(ps->db, s, "delivery update", NULL, e);
}

/* ---- signing keys ---- */

enum am_err
pstore_key_add(struct pstore *ps, const char *kid, const char *alg, const char *public_jwk,
	       int64_t at, struct am_error *e)
{
	const char *const vals[] = {kid, alg, public_jwk};
	struct db_stmt *s;
	enum am_err rc;

	if ((rc = db_prep(ps->db, Q_KEY_ADD, &s, e)) != AM_OK)
		return rc;
	for (int i = 0; i < 3; i++)
		db_bind_text(s, 2 + i, vals[i]);
	db_bind_int64(s, 5, at);
	return db_run(ps->db, s, "key add", NULL, e);
}

enum am_err
pstore_key_retire_others(struct pstore *ps, const char *kid, int64_t at, int64_t until,
			 struct am_error *e)
{
	struct db_stmt *s;
	enum am_err rc;

	if ((rc = db_prep(ps->db, Q_KEY_RETIRE, &s, e)) != AM_OK)
		return rc;
	db_bind_text(s, 2, kid);
	db_bind_int64(s, 3, at);
	db_bind_int64(s, 4, until);
	return db_run(ps->db, s, "key retire", NULL, e);
}

enum am_err
pstore_key_current(struct pstore *ps, char kid[64], struct am_error *e)
{
	struct db_stmt *s;
	enum am_err rc;

	if ((rc = db_prep(ps->db, Q_KEY_CURRENT, &s, e)) != AM_OK)
		return rc;
	if ((rc = db_one(ps->db, s, "current key", e)) != AM_OK)
		return rc;
	db_col_text(s, 0, kid, 64);
	db_reset(s);
	return AM_OK;
}

enum am_err
pstore_jwks(struct pstore *ps, int64_t now, json_t **out, struct am_error *e)
{
	struct db_stmt *s;
	json_t *keys = json_array();
	enum am_err rc;
	enum am_err step;

	if ((rc = db_prep(ps->db, Q_JWKS, &s, e)) != AM_OK) {
		json_decref(keys);
		return rc;
	}
	db_bind_int64(s, 2, now);
	while ((step = db_next(ps->db, s, "jwks", e)) == AM_OK) {
		json_t *k = json_loads(db_col_str(s, 0), 0, NULL);

		if (k != NULL)
			json_array_append_new(keys, k);
	}
	db_reset(s);
	if (step != AM_E_NOT_FOUND) {
		json_decref(keys);
		return step;
	}
	*out = json_pack("{s:o}", "keys", keys);
	return AM_OK;
}
