/* store.h on SQLite (through db.c: WAL, synchronous=FULL, one cached
 * prepared statement per query, every query bound to the tenant): the
 * queries of the server's tables. */
#include "store/store.h"

#include "store/db.h"

#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/crypto.h"
#include "core/limits.h"
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
	Q_CRED_AUTH_ID,
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
	Q_CRED_LIVE_SUBJECT,
	Q_CRED_LIVE_REG,
	Q_CRED_LIVE_USER,
	Q_CRED_REVOKE,
	Q_SETTING_GET,
	Q_SETTING_PUT,
	/* operator blocks */
	Q_BLOCK_PUT,
	Q_BLOCK_DELETE,
	Q_BLOCK_FIND,
	/* claim mail limits */
	Q_ATT_COUNT_REG,
	Q_ATT_COUNT_EMAIL,
	Q_ATT_COUNT_ALL,
	Q_ATT_DELETE,
	/* mail queue */
	Q_MAIL_INSERT,
	Q_MAIL_NEXT,
	Q_MAIL_ZERO,
	Q_MAIL_DELETE,
	Q_MAIL_RETRY,
	Q_MAIL_FAILED,
	Q_MAIL_STATS,
	/* protocol v0.6 (issue 13) */
	Q_REG_GEN_GET,
	Q_REG_GEN_BUMP,
	/* DPoP (issue 13 item 5) */
	Q_CRED_BIND_JKT,
	Q_CRED_SET_RESOURCE,
	/* registration clients (flow8) */
	Q_REGCLIENT_PUT,
	Q_REGCLIENT_GET,
	/* operator surface: the admin API's reads */
	Q_REG_SEARCH_USER,
	Q_REG_SEARCH_EMAIL,
	Q_REG_SEARCH_ISS,
	Q_REG_SEARCH_STATUS,
	Q_REG_SEARCH_ALL,
	Q_CRED_LIST,
	Q_AUDIT_LIST,
	/* scale-out: shared rate-limit counters */
	Q_RATE_GET,
	Q_RATE_HIT,
	Q_RATE_PURGE,
	/* user sign-in (issue 14) */
	Q_LOGIN_INSERT,
	Q_LOGIN_BY_ID,
	Q_LOGIN_BY_LINK,
	Q_LOGIN_COUNT,
	Q_LOGIN_FAIL,
	Q_LOGIN_USE,
	Q_LOGIN_PURGE,
	Q_SESSION_INSERT,
	Q_SESSION_GET,
	Q_SESSION_TOUCH,
	Q_SESSION_DELETE,
	Q_SESSION_PURGE,
	/* the v0.4-v0.6 claim ceremony (issue 14) */
	Q_CER_INSERT,
	Q_CER_BY_TOKEN,
	Q_CER_LATEST_FOR,
	Q_CER_EXPIRE_OPEN,
	Q_CER_SET_STATUS,
	Q_CER_FAIL,
	Q_CER_POLL,
	Q_CER_REDEEM,
	Q_CER_CONFIRM,
	Q_CRED_REVOKE_REG_TYPE,
	/* refresh tokens (issue 14 item 6) */
	Q_USER_BY_ID,
	Q_RTF_INSERT,
	Q_RT_INSERT,
	Q_RT_BY_HASH,
	Q_RT_SPEND,
	Q_RTF_REVOKE,
	Q_RTF_REVOKE_REG,
	Q__COUNT
};

#define REG_COLS                                                                                   \
	"id, kind, status, claim_token_hash, email, credential_type, user_id, created_at, "        \
	"expires_at, claimed_at, ip, iss, sub, agent_platform, agent_context_id"
#define LOGIN_COLS                                                                                 \
	"id, email, link_hash, code_hash, browser_hash, return_to, ip, status, failures, "         \
	"created_at, expires_at"
#define ATT_COLS                                                                                   \
	"id, registration_id, email, token_hash, status, created_at, expires_at, otp_hash, "       \
	"otp_expires_at, otp_failures, ip"

#define CER_COLS                                                                                   \
	"id, registration_id, token_hash, code_hash, email, attempts_left, status, created_at, "   \
	"expires_at, last_poll_at, poll_interval, user_id, redeemed_at, link_iss, link_sub, mode, "  \
	"confirmed_at, code_serial"

/* A live credential with its registration's state (store_cred_auth). */
#define CRED_AUTH_SELECT                                                                           \
	"SELECT c.id, c.hash, c.type, c.scopes, c.source, c.registration_id, c.user_id, c.iss, "   \
	"c.sub, c.aud, c.created_at, c.expires_at, r.status, r.expires_at, u.email, c.jkt, "       \
	"c.resource, c.by_id FROM credentials c "                                                  \
	"JOIN registrations r ON r.tenant = c.tenant AND r.id = c.registration_id "                \
	"LEFT JOIN users u ON u.tenant = c.tenant AND u.id = c.user_id WHERE c.tenant = ?1 AND "
#define CRED_AUTH_LIVE "c.revoked_at IS NULL AND (c.expires_at IS NULL OR c.expires_at > ?3)"

/* Live credentials matching every non-NULL filter (store_cred_live). */
#define CRED_LIVE_SELECT                                                                           \
	"SELECT id, registration_id FROM credentials WHERE tenant = ?1 AND revoked_at IS NULL AND "
#define CRED_LIVE_FILTER                                                                           \
	"(CAST(?2 AS TEXT) IS NULL OR iss = ?2) AND (CAST(?3 AS TEXT) IS NULL OR sub = ?3) AND "   \
	"(CAST(?4 AS TEXT) IS NULL OR aud = ?4) AND (CAST(?5 AS TEXT) IS NULL OR user_id = ?5) "   \
	"AND (CAST(?6 AS TEXT) IS NULL OR registration_id = ?6) "
/* Sorting by expressions keeps SQLite from walking credentials_reg for
 * the order (with LIMIT it prefers that to a sort) instead of taking the
 * index of the equality term; PostgreSQL plans by its statistics. */
#define CRED_LIVE_SORTED "ORDER BY registration_id || '', id || '' LIMIT ?7"

/* The narrowing filters and the cursor of an operator search. */
#define REG_SEARCH_COND                                                                            \
	"(CAST(?2 AS TEXT) IS NULL OR user_id = ?2) AND (CAST(?3 AS TEXT) IS NULL OR email = ?3 "  \
	"OR user_id = (SELECT id FROM users WHERE tenant = ?1 AND email = ?3)) AND "               \
	"(CAST(?4 AS TEXT) IS NULL OR iss = ?4) AND (CAST(?5 AS TEXT) IS NULL OR status = ?5) "    \
	"AND (CAST(?6 AS TEXT) IS NULL OR id > ?6)"
#define REG_SEARCH_REST REG_SEARCH_COND " ORDER BY id LIMIT ?7"

static const char *const sql[Q__COUNT] = {
	[Q_USER_BY_EMAIL] = "SELECT id, email, phone, created_at, created_by_agent FROM users "
			    "WHERE tenant = ?1 AND email = ?2",
	[Q_USER_INSERT] =
		"INSERT INTO users (tenant, id, email, phone, created_at, created_by_agent) "
		"VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
	[Q_REG_INSERT] =
		"INSERT INTO registrations (tenant, " REG_COLS ", claim_by_id) "
		"VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, "
		"?16, ?17)",
	/* An older claim token: only rows of that form are in the index. */
	[Q_REG_BY_CLAIM] = "SELECT " REG_COLS " FROM registrations "
			   "WHERE tenant = ?1 AND claim_token_hash = ?2 AND claim_by_id IS NULL",
	[Q_REG_BY_ID] = "SELECT " REG_COLS " FROM registrations WHERE tenant = ?1 AND id = ?2",
	[Q_REG_TRANSITION] = "UPDATE registrations SET status = ?4 "
			     "WHERE tenant = ?1 AND id = ?2 AND status = ?3",
	[Q_REG_CLAIM] =
		"UPDATE registrations SET status = 'claimed', user_id = ?3, claimed_at = ?4 "
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
			   "ORDER BY created_at DESC, id DESC LIMIT 1",
	[Q_ATT_CLOSE_ALL] = "UPDATE claim_attempts SET status = ?3, otp_hash = NULL "
			    "WHERE tenant = ?1 AND registration_id = ?2 AND status = 'open'",
	[Q_ATT_SET_OTP] = "UPDATE claim_attempts SET otp_hash = ?3, otp_expires_at = ?4, "
			  "otp_failures = 0 WHERE tenant = ?1 AND id = ?2",
	[Q_ATT_FAIL] = "UPDATE claim_attempts SET otp_failures = otp_failures + 1, "
		       "otp_hash = CASE WHEN otp_failures + 1 >= ?3 THEN NULL ELSE otp_hash END "
		       "WHERE tenant = ?1 AND id = ?2",
	[Q_CRED_INSERT] = "INSERT INTO credentials (tenant, id, hash, type, scopes, source, "
			  "registration_id, user_id, iss, sub, aud, created_at, expires_at, jkt, "
			  "by_id) "
			  "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
	/* An older token: found through the index over the rows of its form. */
	[Q_CRED_AUTH] = CRED_AUTH_SELECT "c.hash = ?2 AND c.by_id IS NULL AND " CRED_AUTH_LIVE,
	/* A token that names its row: the primary key, and its hash must match. */
	[Q_CRED_AUTH_ID] = CRED_AUTH_SELECT "c.id = ?4 AND c.hash = ?2 AND " CRED_AUTH_LIVE,
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
	[Q_JTI_PURGE] = "DELETE FROM seen_jti WHERE tenant = ?1 AND (iss, jti) IN "
			"(SELECT iss, jti FROM seen_jti WHERE tenant = ?1 AND expires_at < ?2 "
			"LIMIT ?3)",
	/* A term "x = ?" of its own lets the planner take that index: the
	 * optional terms alone ("?2 IS NULL OR ...") can use none, and a
	 * logout's revocation by subject scanned every credential of the
	 * tenant, on the store writer. */
	[Q_CRED_LIVE] = CRED_LIVE_SELECT CRED_LIVE_FILTER "ORDER BY registration_id, id LIMIT ?7",
	[Q_CRED_LIVE_SUBJECT] =
		CRED_LIVE_SELECT "iss = ?2 AND sub = ?3 AND " CRED_LIVE_FILTER CRED_LIVE_SORTED,
	[Q_CRED_LIVE_REG] = CRED_LIVE_SELECT "registration_id = ?6 AND " CRED_LIVE_FILTER
					     CRED_LIVE_SORTED,
	[Q_CRED_LIVE_USER] = CRED_LIVE_SELECT "user_id = ?5 AND " CRED_LIVE_FILTER CRED_LIVE_SORTED,
	[Q_CRED_REVOKE] = "UPDATE credentials SET revoked_at = ?3 "
			  "WHERE tenant = ?1 AND id = ?2 AND revoked_at IS NULL",
	[Q_SETTING_GET] = "SELECT value FROM settings WHERE tenant = ?1 AND key = ?2",
	[Q_SETTING_PUT] = "INSERT INTO settings (tenant, key, value, updated_at) "
			  "VALUES (?1, ?2, ?3, ?4) ON CONFLICT (tenant, key) "
			  "DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
	/* operator blocks */
	[Q_BLOCK_PUT] = "INSERT INTO blocks (tenant, kind, value, sub, reason, created_at) "
			"VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT DO NOTHING",
	[Q_BLOCK_DELETE] = "DELETE FROM blocks WHERE tenant = ?1 AND kind = ?2 AND value = ?3 "
			   "AND sub = ?4",
	/* Each arm is a primary-key lookup; a NULL parameter matches nothing.
	 * The tenant is in every arm: outside the OR, SQLite took only the
	 * tenant prefix and read every block of the tenant, once per ID-JAG
	 * registration, on the store writer. */
	[Q_BLOCK_FIND] = "SELECT kind FROM blocks WHERE "
			 "(tenant = ?1 AND kind = 'issuer' AND value = ?2 AND sub = '') OR "
			 "(tenant = ?1 AND kind = 'subject' AND value = ?2 AND sub = ?3) OR "
			 "(tenant = ?1 AND kind = 'user' AND value = ?4 AND sub = '') OR "
			 "(tenant = ?1 AND kind = 'registration' AND value = ?5 AND sub = '') "
			 "LIMIT 1",
	/* claim mail limits: each count stops at its cap (?3 or ?4). Every
	 * parameter bound appears (PostgreSQL types each one from its use). */
	[Q_ATT_COUNT_REG] = "SELECT COUNT(*), 0 FROM (SELECT 1 FROM claim_attempts "
			    "WHERE tenant = ?1 AND registration_id = ?2 "
			    "AND CAST(?3 AS BIGINT) IS NOT NULL LIMIT ?4) AS c",
	[Q_ATT_COUNT_EMAIL] =
		"SELECT COUNT(*), COALESCE(MIN(created_at), 0) FROM "
		"(SELECT created_at FROM claim_attempts WHERE tenant = ?1 "
		"AND email = ?2 AND created_at > ?3 ORDER BY created_at LIMIT ?4) AS c",
	[Q_ATT_COUNT_ALL] = "SELECT COUNT(*), COALESCE(MIN(created_at), 0) FROM "
			    "(SELECT created_at FROM claim_attempts WHERE tenant = ?1 "
			    "AND CAST(?2 AS TEXT) IS NULL AND created_at > ?3 ORDER BY created_at "
			    "LIMIT ?4) AS c",
	[Q_ATT_DELETE] = "DELETE FROM claim_attempts WHERE tenant = ?1 AND id = ?2 "
			 "AND status = 'open'",
	/* mail queue */
	[Q_MAIL_INSERT] = "INSERT INTO mail_queue (tenant, attempt_id, rcpt, message, status, "
			  "created_at, expires_at, next_at) "
			  "VALUES (?1, ?2, ?3, ?4, 'queued', ?5, ?6, ?5)",
	/* live: the attempt the mail belongs to still exists (it is counted) */
	[Q_MAIL_NEXT] = "SELECT q.id, q.attempt_id, q.rcpt, q.message, q.created_at, q.expires_at, "
			"q.tries, (a.id IS NOT NULL OR l.id IS NOT NULL), a.registration_id "
			"FROM mail_queue q LEFT JOIN claim_attempts a "
			"ON a.tenant = q.tenant AND a.id = q.attempt_id "
			"LEFT JOIN login_attempts l ON l.tenant = q.tenant AND l.id = q.attempt_id "
			"WHERE q.tenant = ?1 AND q.status = 'queued' AND q.next_at <= ?2 "
			"ORDER BY q.next_at, q.id LIMIT 1",
	/* Same size: SQLite overwrites the cell (and any overflow pages) in
	 * place, so the page image that reaches the file holds zeros where the
	 * claim link was, before the row is deleted or kept without it. */
	[Q_MAIL_ZERO] = "UPDATE mail_queue SET message = zeroblob(length(message)) "
			"WHERE tenant = ?1 AND id = ?2 AND message IS NOT NULL",
	[Q_MAIL_DELETE] = "DELETE FROM mail_queue WHERE tenant = ?1 AND id = ?2",
	[Q_MAIL_RETRY] = "UPDATE mail_queue SET tries = tries + 1, next_at = ?3, last_error = ?4 "
			 "WHERE tenant = ?1 AND id = ?2 AND status = 'queued'",
	[Q_MAIL_FAILED] = "UPDATE mail_queue SET tries = tries + 1, status = 'failed', "
			  "message = NULL, last_error = ?3 WHERE tenant = ?1 AND id = ?2",
	[Q_MAIL_STATS] = "SELECT COUNT(*), COALESCE(MIN(created_at), 0), "
			 "COALESCE(MIN(next_at), 0) FROM mail_queue "
			 "WHERE tenant = ?1 AND status = 'queued'",
	/* protocol v0.6 (issue 13) */
	[Q_REG_GEN_GET] = "SELECT gen FROM registration_generations "
			  "WHERE tenant = ?1 AND registration_id = ?2",
	[Q_REG_GEN_BUMP] = "INSERT INTO registration_generations (tenant, registration_id, gen) "
			   "VALUES (?1, ?2, 1) ON CONFLICT (tenant, registration_id) "
			   "DO UPDATE SET gen = registration_generations.gen + 1",
	[Q_CRED_BIND_JKT] = "UPDATE credentials SET jkt = ?3 WHERE tenant = ?1 AND id = ?2 "
			    "AND revoked_at IS NULL AND jkt IS NULL",
	[Q_CRED_SET_RESOURCE] = "UPDATE credentials SET resource = ?3 "
				"WHERE tenant = ?1 AND id = ?2 AND revoked_at IS NULL",
	/* registration clients (flow8) */
	[Q_REGCLIENT_PUT] = "INSERT INTO registration_clients (tenant, registration_id, "
			    "client_id, client_name, logo_uri, created_at) "
			    "VALUES (?1, ?2, ?3, ?4, ?5, ?6) "
			    "ON CONFLICT (tenant, registration_id) DO UPDATE SET "
			    "client_id = ?3, client_name = ?4, logo_uri = ?5",
	[Q_REGCLIENT_GET] = "SELECT client_id, client_name, logo_uri FROM registration_clients "
			    "WHERE tenant = ?1 AND registration_id = ?2",
	/* operator surface: each NULL parameter matches any (cast, so that
	 * PostgreSQL can type a parameter whose first use is IS NULL) */
	/* One query per leading filter, so that filter's index is used (an
	 * "?n IS NULL OR" arm hides an index from the planner); the others and
	 * the cursor narrow the rows it finds. */
	[Q_REG_SEARCH_USER] = "SELECT " REG_COLS " FROM registrations WHERE tenant = ?1 "
			      "AND user_id = ?2 AND " REG_SEARCH_REST,
	[Q_REG_SEARCH_EMAIL] = "SELECT " REG_COLS " FROM (SELECT " REG_COLS " FROM registrations "
			       "WHERE tenant = ?1 AND email = ?3 AND " REG_SEARCH_COND " UNION "
			       "SELECT " REG_COLS " FROM registrations WHERE tenant = ?1 "
			       "AND user_id = (SELECT id FROM users WHERE tenant = ?1 AND "
			       "email = ?3) AND " REG_SEARCH_COND ") AS r ORDER BY id LIMIT ?7",
	[Q_REG_SEARCH_ISS] = "SELECT " REG_COLS " FROM registrations WHERE tenant = ?1 "
			     "AND iss = ?4 AND " REG_SEARCH_REST,
	[Q_REG_SEARCH_STATUS] = "SELECT " REG_COLS " FROM registrations WHERE tenant = ?1 "
				"AND status = ?5 AND " REG_SEARCH_REST,
	[Q_REG_SEARCH_ALL] = "SELECT " REG_COLS " FROM registrations WHERE tenant = ?1 "
			     "AND " REG_SEARCH_REST,
	[Q_CRED_LIST] = "SELECT id, type, scopes, source, user_id, hash, created_at, "
			"expires_at, revoked_at FROM credentials "
			"WHERE tenant = ?1 AND registration_id = ?2 "
			"ORDER BY created_at, id LIMIT ?3",
	[Q_AUDIT_LIST] = "SELECT data FROM audit_events WHERE tenant = ?1 "
			 "AND registration_id = ?2 ORDER BY at, seq LIMIT ?3",
	/* scale-out: shared rate-limit counters. ?4 is the previous window's
	 * weight (count * (window - elapsed)), ?5 limit * window, ?6 window:
	 * the row is bumped only while the estimate stays under the limit, in
	 * one statement, so concurrent replicas cannot both take the last hit. */
	[Q_RATE_GET] = "SELECT count FROM rate_counters WHERE tenant = ?1 AND key = ?2 "
		       "AND window_start = ?3",
	[Q_RATE_HIT] = "INSERT INTO rate_counters (tenant, key, window_start, count) "
		       "SELECT ?1, ?2, ?3, 1 WHERE CAST(?4 AS BIGINT) <= CAST(?5 AS BIGINT) "
		       "ON CONFLICT (tenant, key, window_start) DO UPDATE "
		       "SET count = rate_counters.count + 1 "
		       "WHERE rate_counters.count * CAST(?6 AS BIGINT) + CAST(?4 AS BIGINT) "
		       "<= CAST(?5 AS BIGINT) RETURNING count",
	[Q_RATE_PURGE] = "DELETE FROM rate_counters WHERE tenant = ?1 AND (key, window_start) IN "
			 "(SELECT key, window_start FROM rate_counters WHERE tenant = ?1 "
			 "AND window_start < ?2 LIMIT ?3)",
	/* user sign-in (issue 14) */
	[Q_LOGIN_INSERT] = "INSERT INTO login_attempts (tenant, id, email, link_hash, code_hash, "
			   "browser_hash, return_to, ip, status, failures, created_at, expires_at) "
			   "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'open', 0, ?9, ?10)",
	[Q_LOGIN_BY_ID] = "SELECT " LOGIN_COLS " FROM login_attempts WHERE tenant = ?1 AND id = ?2",
	[Q_LOGIN_BY_LINK] = "SELECT " LOGIN_COLS " FROM login_attempts "
			    "WHERE tenant = ?1 AND link_hash = ?2",
	/* Stops at its cap (?4), as the claim-mail counts do. */
	[Q_LOGIN_COUNT] = "SELECT COUNT(*), COALESCE(MIN(created_at), 0) FROM "
			  "(SELECT created_at FROM login_attempts WHERE tenant = ?1 "
			  "AND email = ?2 AND created_at > ?3 ORDER BY created_at LIMIT ?4) AS c",
	[Q_LOGIN_FAIL] = "UPDATE login_attempts SET failures = failures + 1, "
			 "status = CASE WHEN failures + 1 >= ?3 THEN 'burned' ELSE status END "
			 "WHERE tenant = ?1 AND id = ?2 AND status = 'open'",
	[Q_LOGIN_USE] = "UPDATE login_attempts SET status = 'used' "
			"WHERE tenant = ?1 AND id = ?2 AND status = 'open'",
	[Q_LOGIN_PURGE] = "DELETE FROM login_attempts WHERE tenant = ?1 AND id IN "
			  "(SELECT id FROM login_attempts WHERE tenant = ?1 AND expires_at < ?2 "
			  "LIMIT ?3)",
	[Q_SESSION_INSERT] = "INSERT INTO web_sessions (tenant, hash, id, user_id, email, "
			     "auth_time, created_at, last_seen, expires_at) "
			     "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, ?8)",
	[Q_SESSION_GET] = "SELECT id, user_id, email, auth_time, created_at, last_seen, "
			  "expires_at FROM web_sessions WHERE tenant = ?1 AND hash = ?2",
	[Q_SESSION_TOUCH] = "UPDATE web_sessions SET last_seen = ?3 "
			    "WHERE tenant = ?1 AND hash = ?2 AND last_seen < ?3",
	[Q_SESSION_DELETE] = "DELETE FROM web_sessions WHERE tenant = ?1 AND hash = ?2",
	/* ?2: now (past the fixed lifetime), ?3: idle before this */
	[Q_SESSION_PURGE] = "DELETE FROM web_sessions WHERE tenant = ?1 AND hash IN "
			    "(SELECT hash FROM web_sessions WHERE tenant = ?1 AND "
			    "(expires_at <= ?2 OR last_seen < ?3) LIMIT ?4)",
	[Q_CER_INSERT] = "INSERT INTO ceremony_attempts (tenant, " CER_COLS ") VALUES (?1, ?2, ?3, "
			 "?4, ?5, ?6, ?7, ?8, ?9, ?10, NULL, ?11, NULL, NULL, ?12, ?13, ?14, NULL, 0)",
	[Q_CER_BY_TOKEN] = "SELECT " CER_COLS " FROM ceremony_attempts "
			   "WHERE tenant = ?1 AND token_hash = ?2",
	[Q_CER_LATEST_FOR] = "SELECT " CER_COLS " FROM ceremony_attempts WHERE tenant = ?1 "
			     "AND registration_id = ?2 ORDER BY created_at DESC, id DESC LIMIT 1",
	[Q_CER_EXPIRE_OPEN] = "UPDATE ceremony_attempts SET status = 'expired' "
			      "WHERE tenant = ?1 AND registration_id = ?2 AND status = 'initiated'",
	[Q_CER_SET_STATUS] = "UPDATE ceremony_attempts SET status = ?4, user_id = ?5 "
			     "WHERE tenant = ?1 AND id = ?2 AND status = ?3",
	[Q_CER_FAIL] = "UPDATE ceremony_attempts SET attempts_left = attempts_left - 1, "
		       "status = CASE WHEN attempts_left <= 1 THEN 'expired' ELSE status END "
		       "WHERE tenant = ?1 AND id = ?2 AND status = 'initiated'",
	[Q_CER_POLL] = "UPDATE ceremony_attempts SET last_poll_at = ?3, poll_interval = ?4 "
		       "WHERE tenant = ?1 AND id = ?2",
	[Q_CER_REDEEM] = "UPDATE ceremony_attempts SET redeemed_at = ?3 WHERE tenant = ?1 "
			 "AND id = ?2 AND status = 'completed' AND redeemed_at IS NULL",
	/* the read-back ceremony's confirmation: a new code, only from the
	 * serial the page showed (?8) */
	[Q_CER_CONFIRM] =
		"UPDATE ceremony_attempts SET code_hash = ?3, confirmed_at = ?4, "
		"expires_at = ?5, user_id = ?6, email = ?7, code_serial = code_serial + 1 "
		"WHERE tenant = ?1 AND id = ?2 AND status = 'initiated' "
		"AND mode = 'readback' AND code_serial = ?8",
	[Q_CRED_REVOKE_REG_TYPE] = "UPDATE credentials SET revoked_at = ?3 WHERE tenant = ?1 "
				   "AND registration_id = ?2 AND type = ?4 AND revoked_at IS NULL",
	[Q_USER_BY_ID] = "SELECT id, email, phone, created_at, created_by_agent FROM users "
			 "WHERE tenant = ?1 AND id = ?2",
	[Q_RTF_INSERT] = "INSERT INTO refresh_families (tenant, id, registration_id, gen, "
			 "created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
	[Q_RT_INSERT] = "INSERT INTO refresh_tokens (tenant, hash, id, family_id, created_at, "
			"expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
	[Q_RT_BY_HASH] = "SELECT t.id, t.family_id, f.registration_id, f.gen, t.created_at, "
			 "t.expires_at, t.spent_at, f.revoked_at FROM refresh_tokens t "
			 "JOIN refresh_families f ON f.tenant = t.tenant AND f.id = t.family_id "
			 "WHERE t.tenant = ?1 AND t.hash = ?2",
	/* the compare-and-set of a rotation: one spender per token */
	[Q_RT_SPEND] = "UPDATE refresh_tokens SET spent_at = ?3 "
		       "WHERE tenant = ?1 AND hash = ?2 AND spent_at IS NULL",
	[Q_RTF_REVOKE] = "UPDATE refresh_families SET revoked_at = ?3, revoked_reason = ?4 "
			 "WHERE tenant = ?1 AND id = ?2 AND revoked_at IS NULL",
	[Q_RTF_REVOKE_REG] = "UPDATE refresh_families SET revoked_at = ?3, revoked_reason = ?4 "
			     "WHERE tenant = ?1 AND registration_id = ?2 AND revoked_at IS NULL",
};

/* Seconds a replica's mail worker holds a claimed mail (PostgreSQL): twice
 * the bound on one SMTP transaction, so the send has been given up before
 * another replica (or this one restarted after a kill) may try it, and the
 * worker had time to record the outcome. */
#define MAIL_LEASE_S ((int64_t)AM_MAIL_TIMEOUT_MS * 2 / 1000)

/* PostgreSQL's own text for the few queries that cannot be written once
 * (NULL: the one above serves both). */
static const char *const sql_pg[Q__COUNT] = {
	/* Claims the next due mail for this replica: the row is locked (other
	 * replicas skip it) and its next_at moved past the send's lease in one
	 * statement, so each mail is taken by one worker; a replica killed
	 * mid-send leaves it to be retried when the lease ends (at least once,
	 * as on SQLite). */
	[Q_MAIL_NEXT] = "WITH c AS (SELECT id FROM mail_queue WHERE tenant = ?1 "
			"AND status = 'queued' AND next_at <= ?2 ORDER BY next_at, id LIMIT 1 "
			"FOR UPDATE SKIP LOCKED), "
			"u AS (UPDATE mail_queue q SET next_at = CAST(?2 AS BIGINT) + "
			"CAST(?3 AS BIGINT) FROM c WHERE q.tenant = ?1 AND q.id = c.id "
			"RETURNING q.id, q.tenant, q.attempt_id, q.rcpt, q.message, q.created_at, "
			"q.expires_at, q.tries) "
			"SELECT u.id, u.attempt_id, u.rcpt, u.message, u.created_at, u.expires_at, "
			"u.tries, (a.id IS NOT NULL OR l.id IS NOT NULL), a.registration_id FROM u "
			"LEFT JOIN claim_attempts a ON a.tenant = u.tenant AND a.id = u.attempt_id "
			"LEFT JOIN login_attempts l ON l.tenant = u.tenant AND l.id = u.attempt_id",
	/* MVCC writes a new row version whatever is set: dropping the message
	 * is what can be done (VACUUM reclaims the old version). */
	[Q_MAIL_ZERO] = "UPDATE mail_queue SET message = NULL "
			"WHERE tenant = ?1 AND id = ?2 AND message IS NOT NULL",
};

struct store {
	struct db *db;
};

/* Bumped by every write that can end or narrow what a credential allows
 * (see store_auth_generation). */
static uint64_t auth_generation;

static void
auth_changed(void)
{
	__atomic_add_fetch(&auth_generation, 1, __ATOMIC_RELEASE);
}

uint64_t
store_auth_generation(void)
{
	return __atomic_load_n(&auth_generation, __ATOMIC_ACQUIRE);
}

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

enum am_err
store_open(const char *url, const char *tenant, struct store **out, struct am_error *e)
{
	return store_open_opts(url, tenant, NULL, out, e);
}

enum am_err
store_open_opts(const char *url, const char *tenant, const struct db_opts *opts, struct store **out,
		struct am_error *e)
{
	struct store *st = calloc(1, sizeof(*st));
	enum am_err rc;

	if (st == NULL)
		return am_fail(e, AM_E_INTERNAL, "out of memory");
	rc = db_open(url, tenant, opts, store_migrations, store_migrations_count, sql, sql_pg,
		     Q__COUNT, &st->db, e);
	if (rc != AM_OK) {
		free(st);
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
	db_close(st->db);
	free(st);
}

void
store_set_writer_lock(struct store *st, pthread_mutex_t *mu)
{
	db_set_writer_lock(st->db, mu);
}

int64_t
store_vm_steps(struct store *st)
{
	return db_vm_steps(st->db);
}

int64_t
store_sorts(struct store *st)
{
	return db_sorts(st->db);
}

int
store_schema_version(struct store *st)
{
	return db_schema_version(st->db);
}

enum am_err
store_begin(struct store *st, struct am_error *e)
{
	return db_begin(st->db, e);
}

enum am_err
store_commit(struct store *st, struct am_error *e)
{
	return db_commit(st->db, e); /* timed for the histogram in db.c */
}

void
store_rollback(struct store *st)
{
	db_rollback(st->db);
}

int64_t
store_pages_written(struct store *st)
{
	return db_pages_written(st->db);
}

enum am_err
store_batch_begin(struct store *st, bool optimistic, struct am_error *e)
{
	return db_batch_begin(st->db, optimistic, e);
}

bool
store_batch_alive(struct store *st)
{
	return db_batch_alive(st->db);
}

bool
store_batch_must_redo(struct store *st)
{
	return db_batch_must_redo(st->db);
}

enum am_err
store_batch_commit(struct store *st, struct am_error *e)
{
	return db_batch_commit(st->db, e);
}

void
store_batch_rollback(struct store *st)
{
	db_batch_rollback(st->db);
}

enum am_err
store_batch_job_begin(struct store *st, struct am_error *e)
{
	return db_batch_job_begin(st->db, e);
}

void
store_batch_job_end(struct store *st, bool keep)
{
	db_batch_job_end(st->db, keep);
}

/* ---- users ---- */

/* Runs the lookup q with its key bound at ?2 (a hash, or a text); on AM_OK
 * *s stands on the row for the caller to read and then db_reset, else
 * AM_E_NOT_FOUND (what names the lookup in a store error). */
static enum am_err
lookup_row(struct store *st, enum q q, const void *key, bool key_is_hash, const char *what,
	   struct db_stmt **s, struct am_error *e)
{
	enum am_err rc;

	if ((rc = db_prep(st->db, q, s, e)) != AM_OK)
		return rc;
	if (key_is_hash)
		db_bind_hash(*s, 2, key);
	else
		db_bind_text(*s, 2, key);
	return db_one(st->db, *s, what, e);
}

static enum am_err
user_query(struct store *st, enum q q, const char *key, struct store_user *out, struct am_error *e)
{
	struct db_stmt *s;
	enum am_err rc;

	if ((rc = lookup_row(st, q, key, false, "user lookup", &s, e)) != AM_OK)
		return rc;
	db_col_text(s, 0, out->id, sizeof(out->id));
	db_col_text(s, 1, out->email, sizeof(out->email));
	db_col_text(s, 2, out->phone, sizeof(out->phone));
	out->created_at = db_col_int64(s, 3);
	out->created_by_agent = (int)db_col_int64(s, 4) != 0;
	db_reset(s);
	return AM_OK;
}

enum am_err
store_user_by_email(struct store *st, const char *email, struct store_user *out, struct am_error *e)
{
	return user_query(st, Q_USER_BY_EMAIL, email, out, e);
}

enum am_err
store_user_by_phone(struct store *st, const char *phone, struct store_user *out, struct am_error *e)
{
	return user_query(st, Q_USER_BY_PHONE, phone, out, e);
}

enum am_err
store_user_insert(struct store *st, const struct store_user *u, struct am_error *e)
{
	struct db_stmt *s;
	enum am_err rc;

	if ((rc = db_prep(st->db, Q_USER_INSERT, &s, e)) != AM_OK)
		return rc;
	db_bind_text(s, 2, u->id);
	db_bind_text_or_null(s, 3, u->email);
	db_bind_text_or_null(s, 4, u->phone);
	db_bind_int64(s, 5, u->created_at);
	db_bind_int64(s, 6, u->created_by_agent ? 1 : 0);
	return db_run(st->db, s, "user insert", NULL, e);
}

/* ---- registrations ---- */

static void
read_reg(struct db_stmt *s, struct store_reg *r)
{
	char buf[32];
	int k;

	memset(r, 0, sizeof(*r));
	db_col_text(s, 0, r->id, sizeof(r->id));
	db_col_text(s, 1, buf, sizeof(buf));
	k = db_name_index(kind_names, NAMES_COUNT(kind_names), buf);
	r->kind = k < 0 ? REG_ANONYMOUS : (enum reg_kind)k;
	db_col_text(s, 2, buf, sizeof(buf));
	k = db_name_index(status_names, NAMES_COUNT(status_names), buf);
	r->status = k < 0 ? REG_REVOKED : (enum reg_status)k; /* unknown: fail closed */
	(void)db_col_hash(s, 3, r->claim_hash);
	db_col_text(s, 4, r->email, sizeof(r->email));
	db_col_text(s, 5, buf, sizeof(buf));
	r->credential_type = strcmp(buf, "access_token") == 0 ? CRED_ACCESS_TOKEN : CRED_API_KEY;
	db_col_text(s, 6, r->user_id, sizeof(r->user_id));
	r->created_at = db_col_int64(s, 7);
	r->expires_at = db_col_int64(s, 8);
	r->claimed_at = db_col_int64(s, 9);
	db_col_text(s, 10, r->ip, sizeof(r->ip));
	db_col_text(s, 11, r->iss, sizeof(r->iss));
	db_col_text(s, 12, r->sub, sizeof(r->sub));
	db_col_text(s, 13, r->agent_platform, sizeof(r->agent_platform));
	db_col_text(s, 14, r->agent_context_id, sizeof(r->agent_context_id));
}

enum am_err
store_reg_insert(struct store *st, const struct store_reg *r, struct am_error *e)
{
	struct db_stmt *s;
	enum am_err rc;
	static const uint8_t zero[AM_HASH_LEN];

	if ((rc = db_prep(st->db, Q_REG_INSERT, &s, e)) != AM_OK)
		return rc;
	db_bind_text(s, 2, r->id);
	db_bind_text(s, 3, store_kind_name(r->kind));
	db_bind_text(s, 4, store_status_name(r->status));
	if (memcmp(r->claim_hash, zero, AM_HASH_LEN) != 0)
		db_bind_hash(s, 5, r->claim_hash);
	db_bind_text_or_null(s, 6, r->email);
	db_bind_text(s, 7, store_cred_type_name(r->credential_type));
	db_bind_text_or_null(s, 8, r->user_id);
	db_bind_int64(s, 9, r->created_at);
	db_bind_int64(s, 10, r->expires_at);
	if (r->claimed_at != 0)
		db_bind_int64(s, 11, r->claimed_at);
	db_bind_text_or_null(s, 12, r->ip);
	db_bind_text_or_null(s, 13, r->iss);
	db_bind_text_or_null(s, 14, r->sub);
	db_bind_text_or_null(s, 15, r->agent_platform);
	db_bind_text_or_null(s, 16, r->agent_context_id);
	if (r->claim_by_id)
		db_bind_int64(s, 17, 1);
	return db_run(st->db, s, "registration insert", NULL, e);
}

static enum am_err
reg_query(struct store *st, enum q q, const void *key, bool key_is_hash, struct store_reg *out,
	  struct am_error *e)
{
	struct db_stmt *s;
	enum am_err rc;

	if ((rc = lookup_row(st, q, key, key_is_hash, "registration lookup", &s, e)) != AM_OK)
		return rc;
	read_reg(s, out);
	db_reset(s);
	return AM_OK;
}

enum am_err
store_reg_by_claim(struct store *st, const struct store_secret *k, struct store_reg *out,
		   struct am_error *e)
{
	static const uint8_t none[AM_HASH_LEN];
	enum am_err rc;

	if (k->id[0] == '\0')
		return reg_query(st, Q_REG_BY_CLAIM, k->hash, true, out, e);
	/* The row the token names holds the token only if it holds its hash
	 * (a row without a claim token reads as all zeros). */
	if ((rc = reg_query(st, Q_REG_BY_ID, k->id, false, out, e)) != AM_OK)
		return rc;
	if (am_ct_equal(out->claim_hash, none, AM_HASH_LEN) ||
	    !am_ct_equal(out->claim_hash, k->hash, AM_HASH_LEN)) {
		memset(out, 0, sizeof(*out));
		return am_fail(e, AM_E_NOT_FOUND, "registration lookup: no row");
	}
	return AM_OK;
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
	struct db_stmt *s;
	enum am_err rc;
	int n = 0;

	if ((rc = db_prep(st->db, Q_REG_TRANSITION, &s, e)) != AM_OK)
		return rc;
	db_bind_text(s, 2, id);
	db_bind_text(s, 3, store_status_name(from));
	db_bind_text(s, 4, store_status_name(to));
	auth_changed();
	if ((rc = db_run(st->db, s, "registration transition", &n, e)) != AM_OK)
		return rc;
	return n == 1 ? AM_OK : am_fail(e, AM_E_NOT_FOUND, "registration changed meanwhile");
}

enum am_err
store_reg_claim(struct store *st, const char *id, const char *user_id, int64_t at,
		struct am_error *e)
{
	struct db_stmt *s;
	enum am_err rc;
	int n = 0;

	if ((rc = db_prep(st->db, Q_REG_CLAIM, &s, e)) != AM_OK)
		return rc;
	db_bind_text(s, 2, id);
	db_bind_text(s, 3, user_id);
	db_bind_int64(s, 4, at);
	auth_changed();
	if ((rc = db_run(st->db, s, "registration claim", &n, e)) != AM_OK)
		return rc;
	return n == 1 ? AM_OK : am_fail(e, AM_E_NOT_FOUND, "registration no longer claimable");
}

enum am_err
store_reg_due(struct store *st, int64_t now, char (*ids)[STORE_ID_LEN], size_t cap, size_t *n,
	      struct am_error *e)
{
	struct db_stmt *s;
	enum am_err rc;

	*n = 0;
	if ((rc = db_prep(st->db, Q_REG_DUE, &s, e)) != AM_OK)
		return rc;
	db_bind_int64(s, 2, now);
	db_bind_int64(s, 3, (int64_t)cap);
	while (*n < cap && (rc = db_next(st->db, s, "registrations due", e)) == AM_OK)
		db_col_text(s, 0, ids[(*n)++], STORE_ID_LEN);
	db_reset(s);
	return rc == AM_OK || rc == AM_E_NOT_FOUND ? AM_OK : rc;
}

/* ---- claim attempts ---- */

static void
read_attempt(struct db_stmt *s, struct store_attempt *a)
{
	char buf[32];
	int k;

	memset(a, 0, sizeof(*a));
	db_col_text(s, 0, a->id, sizeof(a->id));
	db_col_text(s, 1, a->registration_id, sizeof(a->registration_id));
	db_col_text(s, 2, a->email, sizeof(a->email));
	(void)db_col_hash(s, 3, a->token_hash);
	db_col_text(s, 4, buf, sizeof(buf));
	k = db_name_index(attempt_names, NAMES_COUNT(attempt_names), buf);
	a->status = k < 0 ? ATTEMPT_SUPERSEDED : (enum attempt_status)k;
	a->created_at = db_col_int64(s, 5);
	a->expires_at = db_col_int64(s, 6);
	a->has_otp = db_col_hash(s, 7, a->otp_hash);
	a->otp_expires_at = db_col_int64(s, 8);
	a->otp_failures = db_col_int64(s, 9);
	db_col_text(s, 10, a->ip, sizeof(a->ip));
}

enum am_err
store_attempt_insert(struct store *st, const struct store_attempt *a, struct am_error *e)
{
	struct db_stmt *s;
	enum am_err rc;

	if ((rc = db_prep(st->db, Q_ATT_INSERT, &s, e)) != AM_OK)
		return rc;
	db_bind_text(s, 2, a->id);
	db_bind_text(s, 3, a->registration_id);
	db_bind_text(s, 4, a->email);
	db_bind_hash(s, 5, a->token_hash);
	db_bind_text(s, 6, attempt_names[a->status]);
	db_bind_int64(s, 7, a->created_at);
	db_bind_int64(s, 8, a->expires_at);
	if (a->has_otp) {
		db_bind_hash(s, 9, a->otp_hash);
		db_bind_int64(s, 10, a->otp_expires_at);
	}
	db_bind_int64(s, 11, a->otp_failures);
	db_bind_text_or_null(s, 12, a->ip);
	return db_run(st->db, s, "attempt insert", NULL, e);
}

static enum am_err
attempt_query(struct store *st, enum q q, const void *key, bool key_is_hash,
	      struct store_attempt *out, struct am_error *e)
{
	struct db_stmt *s;
	enum am_err rc;

	if ((rc = lookup_row(st, q, key, key_is_hash, "attempt lookup", &s, e)) != AM_OK)
		return rc;
	read_attempt(s, out);
	db_reset(s);
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
	struct db_stmt *s;
	enum am_err rc;

	if ((rc = db_prep(st->db, Q_ATT_CLOSE_ALL, &s, e)) != AM_OK)
		return rc;
	db_bind_text(s, 2, registration_id);
	db_bind_text(s, 3, attempt_names[to]);
	return db_run(st->db, s, "attempt close", NULL, e);
}

enum am_err
store_attempt_set_otp(struct store *st, const char *id, bool has_otp,
		      const uint8_t hash[AM_HASH_LEN], int64_t expires_at, struct am_error *e)
{
	struct db_stmt *s;
	enum am_err rc;

	if ((rc = db_prep(st->db, Q_ATT_SET_OTP, &s, e)) != AM_OK)
		return rc;
	db_bind_text(s, 2, id);
	if (has_otp) {
		db_bind_hash(s, 3, hash);
		db_bind_int64(s, 4, expires_at);
	}
	return db_run(st->db, s, "attempt otp", NULL, e);
}

enum am_err
store_attempt_fail(struct store *st, const char *id, int64_t max, struct am_error *e)
{
	struct db_stmt *s;
	enum am_err rc;

	if ((rc = db_prep(st->db, Q_ATT_FAIL, &s, e)) != AM_OK)
		return rc;
	db_bind_text(s, 2, id);
	db_bind_int64(s, 3, max);
	return db_run(st->db, s, "attempt fail", NULL, e);
}

/* ---- credentials ---- */

enum am_err
store_cred_insert(struct store *st, const struct store_cred *c, struct am_error *e)
{
	struct db_stmt *s;
	enum am_err rc;

	if ((rc = db_prep(st->db, Q_CRED_INSERT, &s, e)) != AM_OK)
		return rc;
	db_bind_text(s, 2, c->id);
	db_bind_hash(s, 3, c->hash);
	db_bind_text(s, 4, store_cred_type_name(c->type));
	db_bind_text(s, 5, c->scopes);
	db_bind_text(s, 6, c->source);
	db_bind_text(s, 7, c->registration_id);
	db_bind_text_or_null(s, 8, c->user_id);
	db_bind_text_or_null(s, 9, c->iss);
	db_bind_text_or_null(s, 10, c->sub);
	db_bind_text_or_null(s, 11, c->aud);
	db_bind_int64(s, 12, c->created_at);
	if (c->expires_at != 0)
		db_bind_int64(s, 13, c->expires_at);
	db_bind_text_or_null(s, 14, c->jkt);
	if (c->by_id)
		db_bind_int64(s, 15, 1);
	return db_run(st->db, s, "credential insert", NULL, e);
}

enum am_err
store_cred_auth(struct store *st, const struct store_secret *key, int64_t now,
		struct store_auth *out, struct am_error *e)
{
	bool by_id = key->id[0] != '\0';
	struct db_stmt *s;
	enum am_err rc;
	struct store_cred *c = &out->cred;
	char buf[32];
	int k;

	if ((rc = db_prep(st->db, by_id ? Q_CRED_AUTH_ID : Q_CRED_AUTH, &s, e)) != AM_OK)
		return rc;
	db_bind_hash(s, 2, key->hash);
	db_bind_int64(s, 3, now);
	if (by_id)
		db_bind_text(s, 4, key->id);
	if ((rc = db_one(st->db, s, "credential auth", e)) != AM_OK)
		return rc;
	db_col_text(s, 0, c->id, sizeof(c->id));
	(void)db_col_hash(s, 1, c->hash);
	db_col_text(s, 2, buf, sizeof(buf));
	c->type = strcmp(buf, "access_token") == 0 ? CRED_ACCESS_TOKEN : CRED_API_KEY;
	db_col_text(s, 3, c->scopes, sizeof(c->scopes));
	db_col_text(s, 4, c->source, sizeof(c->source));
	db_col_text(s, 5, c->registration_id, sizeof(c->registration_id));
	db_col_text(s, 6, c->user_id, sizeof(c->user_id));
	db_col_text(s, 7, c->iss, sizeof(c->iss));
	db_col_text(s, 8, c->sub, sizeof(c->sub));
	db_col_text(s, 9, c->aud, sizeof(c->aud));
	c->created_at = db_col_int64(s, 10);
	c->expires_at = db_col_int64(s, 11);
	db_col_text(s, 12, buf, sizeof(buf));
	k = db_name_index(status_names, NAMES_COUNT(status_names), buf);
	out->reg_status = k < 0 ? REG_REVOKED : (enum reg_status)k;
	out->reg_expires_at = db_col_int64(s, 13);
	db_col_text(s, 14, out->user_email, sizeof(out->user_email));
	db_col_text(s, 15, c->jkt, sizeof(c->jkt));
	db_col_text(s, 16, c->resource, sizeof(c->resource)); /* v0.6: RFC 8707 */
	c->by_id = db_col_int64(s, 17) != 0;
	db_reset(s);
	return AM_OK;
}

enum am_err
store_cred_upgrade(struct store *st, const char *registration_id, const char *user_id,
		   const char *scopes, struct am_error *e)
{
	struct db_stmt *s;
	enum am_err rc;

	if ((rc = db_prep(st->db, Q_CRED_UPGRADE, &s, e)) != AM_OK)
		return rc;
	db_bind_text(s, 2, registration_id);
	db_bind_text(s, 3, user_id);
	db_bind_text(s, 4, scopes);
	auth_changed();
	return db_run(st->db, s, "credential upgrade", NULL, e);
}

enum am_err
store_cred_revoke_reg(struct store *st, const char *registration_id, int64_t at, int *n,
		      struct am_error *e)
{
	struct db_stmt *s;
	enum am_err rc;

	if ((rc = db_prep(st->db, Q_CRED_REVOKE_REG, &s, e)) != AM_OK)
		return rc;
	db_bind_text(s, 2, registration_id);
	db_bind_int64(s, 3, at);
	auth_changed();
	return db_run(st->db, s, "credential revoke", n, e);
}

/* ---- audit ---- */

enum am_err
store_audit_insert(struct store *st, int64_t at, const char *event, const char *registration_id,
		   const char *json, struct am_error *e)
{
	struct db_stmt *s;
	enum am_err rc;

	if ((rc = db_prep(st->db, Q_AUDIT_INSERT, &s, e)) != AM_OK)
		return rc;
	db_bind_int64(s, 2, at);
	db_bind_text(s, 3, event);
	db_bind_text_or_null(s, 4, registration_id);
	db_bind_text(s, 5, json);
	return db_run(st->db, s, "audit insert", NULL, e);
}

/* ---- delegations, replay, revocation, settings ---- */

static void
bind_texts(struct db_stmt *s, int first, const char *const *v, int n)
{
	for (int i = 0; i < n; i++)
		db_bind_text(s, first + i, v[i]);
}

enum am_err
store_delegation_get(struct store *st, const char *iss, const char *sub, const char *aud,
		     struct store_delegation *out, struct am_error *e)
{
	const char *const keys[] = {iss, sub, aud};
	struct db_stmt *s;
	enum am_err rc;

	if ((rc = db_prep(st->db, Q_DELEG_GET, &s, e)) != AM_OK)
		return rc;
	bind_texts(s, 2, keys, 3);
	if ((rc = db_one(st->db, s, "delegation lookup", e)) != AM_OK)
		return rc;
	db_col_text(s, 0, out->user_id, sizeof(out->user_id));
	db_col_text(s, 1, out->registration_id, sizeof(out->registration_id));
	db_reset(s);
	return AM_OK;
}

enum am_err
store_delegation_user(struct store *st, const char *iss, const char *sub,
		      char user_id[STORE_ID_LEN], struct am_error *e)
{
	const char *const keys[] = {iss, sub};
	struct db_stmt *s;
	enum am_err rc;

	if ((rc = db_prep(st->db, Q_DELEG_USER, &s, e)) != AM_OK)
		return rc;
	bind_texts(s, 2, keys, 2);
	if ((rc = db_one(st->db, s, "delegation user", e)) != AM_OK)
		return rc;
	db_col_text(s, 0, user_id, STORE_ID_LEN);
	db_reset(s);
	return AM_OK;
}

enum am_err
store_delegation_insert(struct store *st, const char *iss, const char *sub, const char *aud,
			const char *user_id, const char *registration_id, int64_t at,
			struct am_error *e)
{
	const char *const vals[] = {iss, sub, aud, user_id, registration_id};
	struct db_stmt *s;
	enum am_err rc;

	if ((rc = db_prep(st->db, Q_DELEG_INSERT, &s, e)) != AM_OK)
		return rc;
	bind_texts(s, 2, vals, 5);
	db_bind_int64(s, 7, at);
	return db_run(st->db, s, "delegation insert", NULL, e);
}

enum am_err
store_jti_record(struct store *st, const char *iss, const char *jti, int64_t expires_at,
		 bool *fresh, struct am_error *e)
{
	const char *const keys[] = {iss, jti};
	struct db_stmt *s;
	enum am_err rc;
	int n = 0;

	if ((rc = db_prep(st->db, Q_JTI_INSERT, &s, e)) != AM_OK)
		return rc;
	bind_texts(s, 2, keys, 2);
	db_bind_int64(s, 4, expires_at);
	if ((rc = db_run(st->db, s, "jti insert", &n, e)) != AM_OK)
		return rc;
	*fresh = n == 1;
	return AM_OK;
}

enum am_err
store_jti_purge(struct store *st, int64_t now, int *n, struct am_error *e)
{
	struct db_stmt *s;
	enum am_err rc;

	if ((rc = db_prep(st->db, Q_JTI_PURGE, &s, e)) != AM_OK)
		return rc;
	db_bind_int64(s, 2, now);
	db_bind_int64(s, 3, STORE_PURGE_MAX);
	return db_run(st->db, s, "jti purge", n, e);
}

enum am_err
store_cred_live(struct store *st, const struct store_cred_filter *f, struct store_cred_ref *out,
		size_t cap, size_t *n, struct am_error *e)
{
	const char *const keys[] = {f->iss, f->sub, f->aud, f->user_id, f->registration_id};
	struct db_stmt *s;
	enum am_err rc;

	enum q q = f->iss != NULL && f->sub != NULL ? Q_CRED_LIVE_SUBJECT
		   : f->registration_id != NULL	    ? Q_CRED_LIVE_REG
		   : f->user_id != NULL		    ? Q_CRED_LIVE_USER
						    : Q_CRED_LIVE;

	*n = 0;
	if ((rc = db_prep(st->db, q, &s, e)) != AM_OK)
		return rc;
	for (int i = 0; i < 5; i++)
		db_bind_text(s, 2 + i, keys[i]); /* NULL: no filter */
	db_bind_int64(s, 7, (int64_t)cap);
	while (*n < cap && (rc = db_next(st->db, s, "credentials live", e)) == AM_OK) {
		db_col_text(s, 0, out[*n].id, sizeof(out[*n].id));
		db_col_text(s, 1, out[*n].registration_id, sizeof(out[*n].registration_id));
		(*n)++;
	}
	db_reset(s);
	return rc == AM_OK || rc == AM_E_NOT_FOUND ? AM_OK : rc;
}

enum am_err
store_cred_revoke(struct store *st, const char *id, int64_t at, struct am_error *e)
{
	struct db_stmt *s;
	enum am_err rc;
	int n = 0;

	if ((rc = db_prep(st->db, Q_CRED_REVOKE, &s, e)) != AM_OK)
		return rc;
	db_bind_text(s, 2, id);
	db_bind_int64(s, 3, at);
	auth_changed();
	if ((rc = db_run(st->db, s, "credential revoke", &n, e)) != AM_OK)
		return rc;
	return n == 1 ? AM_OK : am_fail(e, AM_E_NOT_FOUND, "credential not live");
}

enum am_err
store_setting_get(struct store *st, const char *key, char **value, struct am_error *e)
{
	struct db_stmt *s;
	enum am_err rc;
	const char *v;

	if ((rc = db_prep(st->db, Q_SETTING_GET, &s, e)) != AM_OK)
		return rc;
	db_bind_text(s, 2, key);
	if ((rc = db_one(st->db, s, "setting get", e)) != AM_OK)
		return rc;
	v = db_col_str(s, 0);
	*value = am_xstrdup(v != NULL ? v : "");
	db_reset(s);
	return AM_OK;
}

enum am_err
store_setting_put(struct store *st, const char *key, const char *value, int64_t at,
		  struct am_error *e)
{
	struct db_stmt *s;
	enum am_err rc;

	if ((rc = db_prep(st->db, Q_SETTING_PUT, &s, e)) != AM_OK)
		return rc;
	db_bind_text(s, 2, key);
	db_bind_text(s, 3, value);
	db_bind_int64(s, 4, at);
	return db_run(st->db, s, "setting put", NULL, e);
}

/* ---- operator blocks ---- */

static const char *const block_names[] = {"issuer", "subject", "user", "registration"};

const char *
store_block_kind_name(enum block_kind k)
{
	return (size_t)k < sizeof(block_names) / sizeof(block_names[0]) ? block_names[k] : "?";
}

enum am_err
store_block_put(struct store *st, enum block_kind kind, const char *value, const char *sub,
		const char *reason, int64_t at, bool *created, struct am_error *e)
{
	struct db_stmt *s;
	enum am_err rc;
	int changes = 0;

	if ((rc = db_prep(st->db, Q_BLOCK_PUT, &s, e)) != AM_OK)
		return rc;
	db_bind_text(s, 2, store_block_kind_name(kind));
	db_bind_text(s, 3, value);
	db_bind_text(s, 4, sub != NULL ? sub : "");
	db_bind_text(s, 5, reason);
	db_bind_int64(s, 6, at);
	if ((rc = db_run(st->db, s, "block put", &changes, e)) != AM_OK)
		return rc;
	*created = changes > 0;
	return AM_OK;
}

enum am_err
store_block_delete(struct store *st, enum block_kind kind, const char *value, const char *sub,
		   struct am_error *e)
{
	struct db_stmt *s;
	enum am_err rc;
	int changes = 0;

	if ((rc = db_prep(st->db, Q_BLOCK_DELETE, &s, e)) != AM_OK)
		return rc;
	db_bind_text(s, 2, store_block_kind_name(kind));
	db_bind_text(s, 3, value);
	db_bind_text(s, 4, sub != NULL ? sub : "");
	if ((rc = db_run(st->db, s, "block delete", &changes, e)) != AM_OK)
		return rc;
	return changes > 0 ? AM_OK : AM_E_NOT_FOUND;
}

enum am_err
store_block_find(struct store *st, const char *iss, const char *sub, const char *user_id,
		 const char *registration_id, enum block_kind *kind, struct am_error *e)
{
	struct db_stmt *s;
	enum am_err rc;
	char name[16];
	int i;

	if ((rc = db_prep(st->db, Q_BLOCK_FIND, &s, e)) != AM_OK)
		return rc;
	db_bind_text_or_null(s, 2, iss != NULL ? iss : "");
	db_bind_text_or_null(s, 3, sub != NULL ? sub : "");
	db_bind_text_or_null(s, 4, user_id != NULL ? user_id : "");
	db_bind_text_or_null(s, 5, registration_id != NULL ? registration_id : "");
	if ((rc = db_one(st->db, s, "block find", e)) != AM_OK)
		return rc;
	db_col_text(s, 0, name, sizeof(name));
	db_reset(s);
	i = db_name_index(block_names, sizeof(block_names) / sizeof(block_names[0]), name);
	if (i < 0)
		return am_fail(e, AM_E_INTERNAL, "unknown block kind");
	*kind = (enum block_kind)i;
	return AM_OK;
}
/* claim mail limits */

enum am_err
store_attempt_count(struct store *st, enum store_mail_scope scope, const char *key, int64_t since,
		    int64_t cap, int64_t *count, int64_t *oldest, struct am_error *e)
{
	static const enum q by_scope[] = {
		[STORE_MAIL_REGISTRATION] = Q_ATT_COUNT_REG,
		[STORE_MAIL_ADDRESS] = Q_ATT_COUNT_EMAIL,
		[STORE_MAIL_ALL] = Q_ATT_COUNT_ALL,
	};
	struct db_stmt *s;
	enum am_err rc;

	if ((int)scope < 0 || (size_t)scope >= NAMES_COUNT(by_scope))
		return am_fail(e, AM_E_INTERNAL, "no such count");
	if ((rc = db_prep(st->db, by_scope[scope], &s, e)) != AM_OK)
		return rc;
	if (scope == STORE_MAIL_ALL)
		db_bind_null(s, 2);
	else
		db_bind_text(s, 2, key);
	db_bind_int64(s, 3, since);
	db_bind_int64(s, 4, cap);
	if ((rc = db_one(st->db, s, "attempt count", e)) != AM_OK)
		return rc == AM_E_NOT_FOUND ? am_fail(e, AM_E_INTERNAL, "count gave no row") : rc;
	*count = db_col_int64(s, 0);
	*oldest = db_col_int64(s, 1);
	db_reset(s);
	return AM_OK;
}

enum am_err
store_attempt_delete(struct store *st, const char *id, struct am_error *e)
{
	struct db_stmt *s;
	enum am_err rc;
	int n = 0;

	if ((rc = db_prep(st->db, Q_ATT_DELETE, &s, e)) != AM_OK)
		return rc;
	db_bind_text(s, 2, id);
	if ((rc = db_run(st->db, s, "attempt delete", &n, e)) != AM_OK)
		return rc;
	return n == 1 ? AM_OK : am_fail(e, AM_E_NOT_FOUND, "attempt not open");
}

/* ---- mail queue ---- */

enum am_err
store_mail_enqueue(struct store *st, const char *attempt_id, const char *rcpt, const char *message,
		   int64_t now, int64_t expires_at, struct am_error *e)
{
	struct db_stmt *s;
	enum am_err rc;

	if ((rc = db_prep(st->db, Q_MAIL_INSERT, &s, e)) != AM_OK)
		return rc;
	db_bind_text(s, 2, attempt_id);
	db_bind_text(s, 3, rcpt);
	/* Static: the caller's buffer outlives the step, so SQLite makes no
	 * copy of the claim link that would outlive the caller's wipe. */
	db_bind_blob_static(s, 4, message, strlen(message));
	db_bind_int64(s, 5, now);
	db_bind_int64(s, 6, expires_at);
	rc = db_run(st->db, s, "mail enqueue", NULL, e);
	db_reset(s);
	return rc;
}

void
store_mail_wipe(struct store_mail *m)
{
	if (m == NULL || m->message == NULL)
		return;
	OPENSSL_cleanse(m->message, strlen(m->message));
	free(m->message);
	m->message = NULL;
}

enum am_err
store_mail_next(struct store *st, int64_t now, struct store_mail *out, struct am_error *e)
{
	struct db_stmt *s;
	struct store_mail m = {0};
	const void *blob;
	size_t len;
	enum am_err rc;

	if ((rc = db_prep(st->db, Q_MAIL_NEXT, &s, e)) != AM_OK)
		return rc;
	db_bind_int64(s, 2, now);
	db_bind_int64(s, 3, MAIL_LEASE_S); /* PostgreSQL's claim only */
	if ((rc = db_one(st->db, s, "mail next", e)) != AM_OK)
		return rc;
	m.id = db_col_int64(s, 0);
	db_col_text(s, 1, m.attempt_id, sizeof(m.attempt_id));
	db_col_text(s, 2, m.rcpt, sizeof(m.rcpt));
	blob = db_col_blob(s, 3, &len);
	m.created_at = db_col_int64(s, 4);
	m.expires_at = db_col_int64(s, 5);
	m.tries = db_col_int64(s, 6);
	m.live = (int)db_col_int64(s, 7) == 1;
	db_col_text(s, 8, m.registration_id, sizeof(m.registration_id));
	if (blob != NULL && len > 0 && (m.message = malloc(len + 1)) != NULL) {
		memcpy(m.message, blob, len);
		m.message[len] = '\0';
	}
	db_reset(s);
	if (m.message == NULL && blob != NULL && len > 0)
		return am_fail(e, AM_E_INTERNAL, "out of memory");
	*out = m;
	return AM_OK;
}

static enum am_err
mail_zero(struct store *st, int64_t id, struct am_error *e)
{
	struct db_stmt *s;
	enum am_err rc;

	if ((rc = db_prep(st->db, Q_MAIL_ZERO, &s, e)) != AM_OK)
		return rc;
	db_bind_int64(s, 2, id);
	return db_run(st->db, s, "mail wipe", NULL, e);
}

enum am_err
store_mail_done(struct store *st, int64_t id, struct am_error *e)
{
	struct db_stmt *s;
	enum am_err rc;

	if ((rc = mail_zero(st, id, e)) != AM_OK ||
	    (rc = db_prep(st->db, Q_MAIL_DELETE, &s, e)) != AM_OK)
		return rc;
	db_bind_int64(s, 2, id);
	return db_run(st->db, s, "mail delete", NULL, e);
}

enum am_err
store_mail_retry(struct store *st, int64_t id, int64_t next_at, const char *why, struct am_error *e)
{
	struct db_stmt *s;
	enum am_err rc;

	if ((rc = db_prep(st->db, Q_MAIL_RETRY, &s, e)) != AM_OK)
		return rc;
	db_bind_int64(s, 2, id);
	db_bind_int64(s, 3, next_at);
	db_bind_text(s, 4, why);
	return db_run(st->db, s, "mail retry", NULL, e);
}

enum am_err
store_mail_failed(struct store *st, int64_t id, const char *why, struct am_error *e)
{
	struct db_stmt *s;
	enum am_err rc;

	if ((rc = mail_zero(st, id, e)) != AM_OK ||
	    (rc = db_prep(st->db, Q_MAIL_FAILED, &s, e)) != AM_OK)
		return rc;
	db_bind_int64(s, 2, id);
	db_bind_text(s, 3, why);
	return db_run(st->db, s, "mail failed", NULL, e);
}

enum am_err
store_mail_stats(struct store *st, struct store_mail_stats *out, struct am_error *e)
{
	struct db_stmt *s;
	enum am_err rc;

	if ((rc = db_prep(st->db, Q_MAIL_STATS, &s, e)) != AM_OK)
		return rc;
	if ((rc = db_one(st->db, s, "mail stats", e)) != AM_OK)
		return rc == AM_E_NOT_FOUND ? am_fail(e, AM_E_INTERNAL, "stats gave no row") : rc;
	out->queued = db_col_int64(s, 0);
	out->oldest_created_at = db_col_int64(s, 1);
	out->next_at = db_col_int64(s, 2);
	db_reset(s);
	return AM_OK;
}

/* ---- protocol v0.6 (issue 13) ---- */

enum am_err
store_reg_gen(struct store *st, const char *registration_id, int64_t *gen, struct am_error *e)
{
	struct db_stmt *s;
	enum am_err rc;

	if ((rc = db_prep(st->db, Q_REG_GEN_GET, &s, e)) != AM_OK)
		return rc;
	db_bind_text(s, 2, registration_id);
	rc = db_one(st->db, s, "generation lookup", e);
	if (rc == AM_E_NOT_FOUND) {
		*gen = 0;
		return AM_OK;
	}
	if (rc != AM_OK)
		return rc;
	*gen = db_col_int64(s, 0);
	db_reset(s);
	return AM_OK;
}

enum am_err
store_reg_gen_bump(struct store *st, const char *registration_id, struct am_error *e)
{
	struct db_stmt *s;
	enum am_err rc;

	if ((rc = db_prep(st->db, Q_REG_GEN_BUMP, &s, e)) != AM_OK)
		return rc;
	db_bind_text(s, 2, registration_id);
	return db_run(st->db, s, "generation bump", NULL, e);
}

enum am_err
store_cred_set_resource(struct store *st, const char *id, const char *resource,
			struct am_error *e)
{
	struct db_stmt *s;
	int changes = 0;
	enum am_err rc;

	if ((rc = db_prep(st->db, Q_CRED_SET_RESOURCE, &s, e)) != AM_OK)
		return rc;
	db_bind_text(s, 2, id);
	db_bind_text(s, 3, resource);
	if ((rc = db_run(st->db, s, "credential resource", &changes, e)) != AM_OK)
		return rc;
	return changes == 1 ? AM_OK : am_fail(e, AM_E_NOT_FOUND, "no such live credential");
}
/* ---- registration clients (flow8) ---- */

enum am_err
store_reg_client_put(struct store *st, const char *registration_id,
		     const struct store_reg_client *c, int64_t at, struct am_error *e)
{
	const char *const vals[] = {registration_id, c->client_id, c->client_name, c->logo_uri};
	struct db_stmt *s;
	enum am_err rc;

	if ((rc = db_prep(st->db, Q_REGCLIENT_PUT, &s, e)) != AM_OK)
		return rc;
	bind_texts(s, 2, vals, 4);
	db_bind_int64(s, 6, at);
	return db_run(st->db, s, "registration client put", NULL, e);
}

enum am_err
store_reg_client_get(struct store *st, const char *registration_id, struct store_reg_client *out,
		     struct am_error *e)
{
	const char *const keys[] = {registration_id};
	struct db_stmt *s;
	enum am_err rc;

	if ((rc = db_prep(st->db, Q_REGCLIENT_GET, &s, e)) != AM_OK)
		return rc;
	bind_texts(s, 2, keys, 1);
	if ((rc = db_one(st->db, s, "registration client lookup", e)) != AM_OK)
		return rc;
	db_col_text(s, 0, out->client_id, sizeof(out->client_id));
	db_col_text(s, 1, out->client_name, sizeof(out->client_name));
	db_col_text(s, 2, out->logo_uri, sizeof(out->logo_uri));
	db_reset(s);
	return AM_OK;
}

/* ---- operator surface (issue 12 item 6): the admin API's reads ---- */

enum am_err
store_reg_search(struct store *st, const struct store_reg_filter *f, struct store_reg *out,
		 size_t cap, size_t *n, struct am_error *e)
{
	const char *const keys[] = {f->user_id, f->email, f->iss, f->status, f->after};
	struct db_stmt *s;
	enum am_err rc;
	enum q q = f->user_id != NULL && f->user_id[0] != '\0' ? Q_REG_SEARCH_USER
		   : f->email != NULL && f->email[0] != '\0'   ? Q_REG_SEARCH_EMAIL
		   : f->iss != NULL && f->iss[0] != '\0'       ? Q_REG_SEARCH_ISS
		   : f->status != NULL && f->status[0] != '\0' ? Q_REG_SEARCH_STATUS
							       : Q_REG_SEARCH_ALL;

	*n = 0;
	if ((rc = db_prep(st->db, q, &s, e)) != AM_OK)
		return rc;
	for (int i = 0; i < 5; i++)
		db_bind_text_or_null(s, 2 + i, keys[i] != NULL ? keys[i] : "");
	db_bind_int64(s, 7, (int64_t)cap);
	while (*n < cap && (rc = db_next(st->db, s, "registration search", e)) == AM_OK)
		read_reg(s, &out[(*n)++]);
	db_reset(s);
	return rc == AM_OK || rc == AM_E_NOT_FOUND ? AM_OK : rc;
}

enum am_err
store_cred_list(struct store *st, const char *registration_id, struct store_cred_info *out,
		size_t cap, size_t *n, struct am_error *e)
{
	struct db_stmt *s;
	enum am_err rc;

	*n = 0;
	if ((rc = db_prep(st->db, Q_CRED_LIST, &s, e)) != AM_OK)
		return rc;
	db_bind_text(s, 2, registration_id);
	db_bind_int64(s, 3, (int64_t)cap);
	while (*n < cap && (rc = db_next(st->db, s, "credential list", e)) == AM_OK) {
		struct store_cred_info *c = &out[*n];
		uint8_t hash[AM_HASH_LEN];
		char buf[32];

		memset(c, 0, sizeof(*c));
		db_col_text(s, 0, c->id, sizeof(c->id));
		db_col_text(s, 1, buf, sizeof(buf));
		c->type = strcmp(buf, "access_token") == 0 ? CRED_ACCESS_TOKEN : CRED_API_KEY;
		db_col_text(s, 2, c->scopes, sizeof(c->scopes));
		db_col_text(s, 3, c->source, sizeof(c->source));
		db_col_text(s, 4, c->user_id, sizeof(c->user_id));
		if (db_col_hash(s, 5, hash))
			snprintf(c->hash_prefix, sizeof(c->hash_prefix), "%02x%02x%02x%02x",
				 hash[0], hash[1], hash[2], hash[3]);
		c->created_at = db_col_int64(s, 6);
		c->expires_at = db_col_int64(s, 7);
		c->revoked_at = db_col_int64(s, 8);
		(*n)++;
	}
	db_reset(s);
	return rc == AM_OK || rc == AM_E_NOT_FOUND ? AM_OK : rc;
}

enum am_err
store_audit_list(struct store *st, const char *registration_id, char **lines, size_t cap, size_t *n,
		 struct am_error *e)
{
	struct db_stmt *s;
	enum am_err rc = AM_OK;

	*n = 0;
	if ((rc = db_prep(st->db, Q_AUDIT_LIST, &s, e)) != AM_OK)
		return rc;
	db_bind_text(s, 2, registration_id);
	db_bind_int64(s, 3, (int64_t)cap);
	while (*n < cap && (rc = db_next(st->db, s, "audit list", e)) == AM_OK) {
		const char *t = db_col_str(s, 0);

		if ((lines[*n] = strdup(t != NULL ? t : "{}")) == NULL) {
			rc = am_fail(e, AM_E_INTERNAL, "out of memory");
			break;
		}
		(*n)++;
	}
	if (rc == AM_E_NOT_FOUND)
		rc = AM_OK;
	db_reset(s);
	if (rc != AM_OK) {
		for (size_t i = 0; i < *n; i++)
			free(lines[i]);
		*n = 0;
	}
	return rc;
}

/* ---- DPoP (issue 13 item 5) ---- */

enum am_err
store_cred_bind_jkt(struct store *st, const char *id, const char *jkt, struct am_error *e)
{
	struct db_stmt *s;
	enum am_err rc;
	int n = 0;

	if ((rc = db_prep(st->db, Q_CRED_BIND_JKT, &s, e)) != AM_OK)
		return rc;
	db_bind_text(s, 2, id);
	db_bind_text(s, 3, jkt);
	/* A cached bearer lookup of this credential must not outlive the bind. */
	auth_changed();
	if ((rc = db_run(st->db, s, "credential bind", &n, e)) != AM_OK)
		return rc;
	return n == 1 ? AM_OK : am_fail(e, AM_E_NOT_FOUND, "no unbound credential to bind");
}

/* ---- scale-out: N replicas on one PostgreSQL database ---- */

bool
store_is_shared(struct store *st)
{
	return db_is_pg(st->db);
}

enum am_err
store_try_lock(struct store *st, const char *name, bool *got, struct am_error *e)
{
	return db_try_lock(st->db, name, got, e);
}

void
store_unlock(struct store *st, const char *name)
{
	db_unlock(st->db, name);
}

static enum am_err
rate_get(struct store *st, const char *key, int64_t start, int64_t *count, struct am_error *e)
{
	struct db_stmt *s;
	enum am_err rc;

	*count = 0;
	if ((rc = db_prep(st->db, Q_RATE_GET, &s, e)) != AM_OK)
		return rc;
	db_bind_text(s, 2, key);
	db_bind_int64(s, 3, start);
	if ((rc = db_one(st->db, s, "rate get", e)) == AM_E_NOT_FOUND)
		return AM_OK;
	if (rc != AM_OK)
		return rc;
	*count = db_col_int64(s, 0);
	db_reset(s);
	return AM_OK;
}

enum am_err
store_rate_hit(struct store *st, const char *key, int64_t window, int64_t limit, int64_t now,
	       bool *allowed, int64_t *retry_after, struct am_error *e)
{
	char k[256];
	int64_t w = window > 0 ? window : 1, start = now - (now % w), elapsed = now - start;
	int64_t prev, cur;
	struct db_stmt *s;
	enum am_err rc;

	*allowed = true;
	*retry_after = 0;
	if (limit <= 0)
		return AM_OK;
	snprintf(k, sizeof(k), "%s", key); /* the first 255 bytes */
	if ((rc = rate_get(st, k, start - w, &prev, e)) != AM_OK ||
	    (rc = db_prep(st->db, Q_RATE_HIT, &s, e)) != AM_OK)
		return rc;
	db_bind_text(s, 2, k);
	db_bind_int64(s, 3, start);
	db_bind_int64(s, 4, prev * (w - elapsed));
	db_bind_int64(s, 5, limit * w - 1); /* estimate < limit, in integers */
	db_bind_int64(s, 6, w);
	rc = db_one(st->db, s, "rate hit", e);
	if (rc == AM_OK) {
		db_reset(s);
		return AM_OK;
	}
	if (rc != AM_E_NOT_FOUND)
		return rc;
	*allowed = false;
	if ((rc = rate_get(st, k, start, &cur, e)) != AM_OK)
		return rc;
	if (cur >= limit) {
		*retry_after = w - elapsed; /* the current window alone is full */
	} else {
		/* until enough of the previous window has slid out:
		 * prev * (w - t) + cur * w < limit * w */
		int64_t need = prev * w - (limit - cur) * w;
		int64_t t = prev > 0 ? need / prev + 1 : 1;

		*retry_after = t > elapsed ? t - elapsed : 1;
	}
	return AM_OK;
}

bool
store_url_check(const char *url, char *why, size_t cap)
{
	return db_url_check(url, why, cap);
}

void
store_url_redact(const char *url, char *out, size_t cap)
{
	db_url_redact(url, out, cap);
}

enum am_err
store_rate_purge(struct store *st, int64_t before, int *n, struct am_error *e)
{
	struct db_stmt *s;
	enum am_err rc;

	if ((rc = db_prep(st->db, Q_RATE_PURGE, &s, e)) != AM_OK)
		return rc;
	db_bind_int64(s, 2, before);
	db_bind_int64(s, 3, STORE_PURGE_MAX);
	return db_run(st->db, s, "rate purge", n, e);
}

/* ---- user sign-in (issue 14) ---- */

static const char *const login_names[] = {"open", "used", "burned"};

enum am_err
store_login_insert(struct store *st, const struct store_login *l, struct am_error *e)
{
	struct db_stmt *s;
	enum am_err rc;

	if ((rc = db_prep(st->db, Q_LOGIN_INSERT, &s, e)) != AM_OK)
		return rc;
	db_bind_text(s, 2, l->id);
	db_bind_text(s, 3, l->email);
	db_bind_hash(s, 4, l->link_hash);
	db_bind_hash(s, 5, l->code_hash);
	db_bind_hash(s, 6, l->browser_hash);
	db_bind_text(s, 7, l->return_to);
	db_bind_text(s, 8, l->ip);
	db_bind_int64(s, 9, l->created_at);
	db_bind_int64(s, 10, l->expires_at);
	return db_run(st->db, s, "login insert", NULL, e);
}

static enum am_err
login_query(struct store *st, enum q q, const void *key, bool key_is_hash, struct store_login *out,
	    struct am_error *e)
{
	struct db_stmt *s;
	char buf[16];
	enum am_err rc;
	int k;

	if ((rc = lookup_row(st, q, key, key_is_hash, "login lookup", &s, e)) != AM_OK)
		return rc;
	memset(out, 0, sizeof(*out));
	db_col_text(s, 0, out->id, sizeof(out->id));
	db_col_text(s, 1, out->email, sizeof(out->email));
	(void)db_col_hash(s, 2, out->link_hash);
	(void)db_col_hash(s, 3, out->code_hash);
	(void)db_col_hash(s, 4, out->browser_hash);
	db_col_text(s, 5, out->return_to, sizeof(out->return_to));
	db_col_text(s, 6, out->ip, sizeof(out->ip));
	db_col_text(s, 7, buf, sizeof(buf));
	k = db_name_index(login_names, NAMES_COUNT(login_names), buf);
	out->status = k < 0 ? LOGIN_BURNED : (enum login_status)k;
	out->failures = db_col_int64(s, 8);
	out->created_at = db_col_int64(s, 9);
	out->expires_at = db_col_int64(s, 10);
	db_reset(s);
	return AM_OK;
}

enum am_err
store_login_by_id(struct store *st, const char *id, struct store_login *out, struct am_error *e)
{
	return login_query(st, Q_LOGIN_BY_ID, id, false, out, e);
}

enum am_err
store_login_by_link(struct store *st, const uint8_t hash[AM_HASH_LEN], struct store_login *out,
		    struct am_error *e)
{
	return login_query(st, Q_LOGIN_BY_LINK, hash, true, out, e);
}

enum am_err
store_login_count(struct store *st, const char *email, int64_t since, int64_t cap, int64_t *count,
		  int64_t *oldest, struct am_error *e)
{
	struct db_stmt *s;
	enum am_err rc;

	if ((rc = db_prep(st->db, Q_LOGIN_COUNT, &s, e)) != AM_OK)
		return rc;
	db_bind_text(s, 2, email);
	db_bind_int64(s, 3, since);
	db_bind_int64(s, 4, cap);
	if ((rc = db_one(st->db, s, "login count", e)) != AM_OK)
		return rc == AM_E_NOT_FOUND ? am_fail(e, AM_E_INTERNAL, "count gave no row") : rc;
	*count = db_col_int64(s, 0);
	*oldest = db_col_int64(s, 1);
	db_reset(s);
	return AM_OK;
}

/* An UPDATE of one open attempt: AM_E_NOT_FOUND when it was not open. */
static enum am_err
login_update(struct store *st, enum q q, const char *id, int64_t arg, const char *what,
	     struct am_error *e)
{
	struct db_stmt *s;
	enum am_err rc;
	int n = 0;

	if ((rc = db_prep(st->db, q, &s, e)) != AM_OK)
		return rc;
	db_bind_text(s, 2, id);
	if (q == Q_LOGIN_FAIL)
		db_bind_int64(s, 3, arg);
	if ((rc = db_run(st->db, s, what, &n, e)) != AM_OK)
		return rc;
	return n == 1 ? AM_OK : am_fail(e, AM_E_NOT_FOUND, "login attempt not open");
}

enum am_err
store_login_fail(struct store *st, const char *id, int64_t max, struct am_error *e)
{
	return login_update(st, Q_LOGIN_FAIL, id, max, "login fail", e);
}

enum am_err
store_login_use(struct store *st, const char *id, struct am_error *e)
{
	return login_update(st, Q_LOGIN_USE, id, 0, "login use", e);
}

/* A bounded purge: ?2 .. ?(1 + nargs) the bounds, then STORE_PURGE_MAX. */
static enum am_err
purge(struct store *st, enum q q, const int64_t *args, int nargs, const char *what, int *n,
      struct am_error *e)
{
	struct db_stmt *s;
	enum am_err rc;

	if ((rc = db_prep(st->db, q, &s, e)) != AM_OK)
		return rc;
	for (int i = 0; i < nargs; i++)
		db_bind_int64(s, 2 + i, args[i]);
	db_bind_int64(s, 2 + nargs, STORE_PURGE_MAX);
	return db_run(st->db, s, what, n, e);
}

enum am_err
store_login_purge(struct store *st, int64_t now, int *n, struct am_error *e)
{
	return purge(st, Q_LOGIN_PURGE, &now, 1, "login purge", n, e);
}

enum am_err
store_session_insert(struct store *st, const struct store_session *w, struct am_error *e)
{
	struct db_stmt *s;
	enum am_err rc;

	if ((rc = db_prep(st->db, Q_SESSION_INSERT, &s, e)) != AM_OK)
		return rc;
	db_bind_hash(s, 2, w->hash);
	db_bind_text(s, 3, w->id);
	db_bind_text(s, 4, w->user_id);
	db_bind_text(s, 5, w->email);
	db_bind_int64(s, 6, w->auth_time);
	db_bind_int64(s, 7, w->created_at);
	db_bind_int64(s, 8, w->expires_at);
	return db_run(st->db, s, "session insert", NULL, e);
}

enum am_err
store_session_get(struct store *st, const uint8_t hash[AM_HASH_LEN], struct store_session *out,
		  struct am_error *e)
{
	struct db_stmt *s;
	enum am_err rc;

	if ((rc = db_prep(st->db, Q_SESSION_GET, &s, e)) != AM_OK)
		return rc;
	db_bind_hash(s, 2, hash);
	if ((rc = db_one(st->db, s, "session lookup", e)) != AM_OK)
		return rc;
	memset(out, 0, sizeof(*out));
	memcpy(out->hash, hash, AM_HASH_LEN);
	db_col_text(s, 0, out->id, sizeof(out->id));
	db_col_text(s, 1, out->user_id, sizeof(out->user_id));
	db_col_text(s, 2, out->email, sizeof(out->email));
	out->auth_time = db_col_int64(s, 3);
	out->created_at = db_col_int64(s, 4);
	out->last_seen = db_col_int64(s, 5);
	out->expires_at = db_col_int64(s, 6);
	db_reset(s);
	return AM_OK;
}

enum am_err
store_session_touch(struct store *st, const uint8_t hash[AM_HASH_LEN], int64_t now,
		    struct am_error *e)
{
	struct db_stmt *s;
	enum am_err rc;

	if ((rc = db_prep(st->db, Q_SESSION_TOUCH, &s, e)) != AM_OK)
		return rc;
	db_bind_hash(s, 2, hash);
	db_bind_int64(s, 3, now);
	return db_run(st->db, s, "session touch", NULL, e);
}

enum am_err
store_session_delete(struct store *st, const uint8_t hash[AM_HASH_LEN], struct am_error *e)
{
	struct db_stmt *s;
	enum am_err rc;

	if ((rc = db_prep(st->db, Q_SESSION_DELETE, &s, e)) != AM_OK)
		return rc;
	db_bind_hash(s, 2, hash);
	return db_run(st->db, s, "session delete", NULL, e);
}

enum am_err
store_session_purge(struct store *st, int64_t now, int64_t idle_before, int *n, struct am_error *e)
{
	const int64_t bounds[] = {now, idle_before};

	return purge(st, Q_SESSION_PURGE, bounds, 2, "session purge", n, e);
}

/* ---- the v0.4-v0.6 claim ceremony (issue 14) ---- */

static const char *const ceremony_names[] = {"initiated", "completed", "denied", "expired"};

const char *
store_ceremony_status_name(enum ceremony_status c)
{
	return (size_t)c < NAMES_COUNT(ceremony_names) ? ceremony_names[c] : "expired";
}

static void
read_ceremony(struct db_stmt *s, struct store_ceremony *c)
{
	char buf[32];
	int k;

	memset(c, 0, sizeof(*c));
	db_col_text(s, 0, c->id, sizeof(c->id));
	db_col_text(s, 1, c->registration_id, sizeof(c->registration_id));
	(void)db_col_hash(s, 2, c->token_hash);
	(void)db_col_hash(s, 3, c->code_hash);
	db_col_text(s, 4, c->email, sizeof(c->email));
	c->attempts_left = db_col_int64(s, 5);
	db_col_text(s, 6, buf, sizeof(buf));
	k = db_name_index(ceremony_names, NAMES_COUNT(ceremony_names), buf);
	c->status = k < 0 ? CEREMONY_EXPIRED : (enum ceremony_status)k;
	c->created_at = db_col_int64(s, 7);
	c->expires_at = db_col_int64(s, 8);
	c->last_poll_at = db_col_int64(s, 9);
	c->poll_interval = db_col_int64(s, 10);
	db_col_text(s, 11, c->user_id, sizeof(c->user_id));
	c->redeemed_at = db_col_int64(s, 12);
	db_col_text(s, 13, c->link_iss, sizeof(c->link_iss));
	db_col_text(s, 14, c->link_sub, sizeof(c->link_sub));
	db_col_text(s, 15, buf, sizeof(buf));
	c->mode = strcmp(buf, "readback") == 0 ? CEREMONY_READBACK : CEREMONY_USER_CODE;
	c->confirmed_at = db_col_int64(s, 16);
	c->code_serial = db_col_int64(s, 17);
}

enum am_err
store_ceremony_insert(struct store *st, const struct store_ceremony *c, struct am_error *e)
{
	struct db_stmt *s;
	enum am_err rc;

	if ((rc = db_prep(st->db, Q_CER_INSERT, &s, e)) != AM_OK)
		return rc;
	db_bind_text(s, 2, c->id);
	db_bind_text(s, 3, c->registration_id);
	db_bind_hash(s, 4, c->token_hash);
	db_bind_hash(s, 5, c->code_hash);
	db_bind_text(s, 6, c->email);
	db_bind_int64(s, 7, c->attempts_left);
	db_bind_text(s, 8, store_ceremony_status_name(c->status));
	db_bind_int64(s, 9, c->created_at);
	db_bind_int64(s, 10, c->expires_at);
	db_bind_int64(s, 11, c->poll_interval);
	db_bind_text_or_null(s, 12, c->link_iss);
	db_bind_text_or_null(s, 13, c->link_sub);
	db_bind_text(s, 14, c->mode == CEREMONY_READBACK ? "readback" : "user_code");
	return db_run(st->db, s, "ceremony insert", NULL, e);
}

static enum am_err
ceremony_query(struct store *st, enum q q, const void *key, bool key_is_hash,
	       struct store_ceremony *out, struct am_error *e)
{
	struct db_stmt *s;
	enum am_err rc;

	if ((rc = lookup_row(st, q, key, key_is_hash, "ceremony lookup", &s, e)) != AM_OK)
		return rc;
	read_ceremony(s, out);
	db_reset(s);
	return AM_OK;
}

enum am_err
store_ceremony_by_token_hash(struct store *st, const uint8_t hash[AM_HASH_LEN],
			     struct store_ceremony *out, struct am_error *e)
{
	return ceremony_query(st, Q_CER_BY_TOKEN, hash, true, out, e);
}

enum am_err
store_ceremony_latest_for(struct store *st, const char *registration_id, struct store_ceremony *out,
			  struct am_error *e)
{
	return ceremony_query(st, Q_CER_LATEST_FOR, registration_id, false, out, e);
}

/* Prepares a ceremony update with the attempt (or registration) id as ?2. */
static enum am_err
ceremony_update(struct store *st, enum q q, const char *id, struct db_stmt **sp, struct am_error *e)
{
	enum am_err rc;

	if ((rc = db_prep(st->db, q, sp, e)) != AM_OK)
		return rc;
	db_bind_text(*sp, 2, id);
	return AM_OK;
}

enum am_err
store_ceremony_expire_open(struct store *st, const char *registration_id, struct am_error *e)
{
	struct db_stmt *s;
	enum am_err rc;

	if ((rc = ceremony_update(st, Q_CER_EXPIRE_OPEN, registration_id, &s, e)) != AM_OK)
		return rc;
	return db_run(st->db, s, "ceremony expire", NULL, e);
}

enum am_err
store_ceremony_set_status(struct store *st, const char *id, enum ceremony_status from,
			  enum ceremony_status to, const char *user_id, struct am_error *e)
{
	struct db_stmt *s;
	enum am_err rc;
	int n = 0;

	if ((rc = ceremony_update(st, Q_CER_SET_STATUS, id, &s, e)) != AM_OK)
		return rc;
	db_bind_text(s, 3, store_ceremony_status_name(from));
	db_bind_text(s, 4, store_ceremony_status_name(to));
	db_bind_text_or_null(s, 5, user_id);
	if ((rc = db_run(st->db, s, "ceremony status", &n, e)) != AM_OK)
		return rc;
	return n == 1 ? AM_OK : am_fail(e, AM_E_NOT_FOUND, "the attempt changed meanwhile");
}

enum am_err
store_ceremony_fail(struct store *st, const char *id, struct am_error *e)
{
	struct db_stmt *s;
	enum am_err rc;

	if ((rc = ceremony_update(st, Q_CER_FAIL, id, &s, e)) != AM_OK)
		return rc;
	return db_run(st->db, s, "ceremony fail", NULL, e);
}

enum am_err
store_ceremony_poll(struct store *st, const char *id, int64_t now, int64_t interval,
		    struct am_error *e)
{
	struct db_stmt *s;
	enum am_err rc;

	if ((rc = ceremony_update(st, Q_CER_POLL, id, &s, e)) != AM_OK)
		return rc;
	db_bind_int64(s, 3, now);
	db_bind_int64(s, 4, interval);
	return db_run(st->db, s, "ceremony poll", NULL, e);
}

enum am_err
store_ceremony_redeem(struct store *st, const char *id, int64_t now, struct am_error *e)
{
	struct db_stmt *s;
	enum am_err rc;
	int n = 0;

	if ((rc = ceremony_update(st, Q_CER_REDEEM, id, &s, e)) != AM_OK)
		return rc;
	db_bind_int64(s, 3, now);
	if ((rc = db_run(st->db, s, "ceremony redeem", &n, e)) != AM_OK)
		return rc;
	return n == 1 ? AM_OK : am_fail(e, AM_E_NOT_FOUND, "the attempt was redeemed already");
}

enum am_err
store_ceremony_confirm(struct store *st, const struct store_ceremony *c, int64_t serial,
		       struct am_error *e)
{
	struct db_stmt *s;
	enum am_err rc;
	int n = 0;

	if ((rc = ceremony_update(st, Q_CER_CONFIRM, c->id, &s, e)) != AM_OK)
		return rc;
	db_bind_hash(s, 3, c->code_hash);
	db_bind_int64(s, 4, c->confirmed_at);
	db_bind_int64(s, 5, c->expires_at);
	db_bind_text(s, 6, c->user_id);
	db_bind_text(s, 7, c->email);
	db_bind_int64(s, 8, serial);
	if ((rc = db_run(st->db, s, "ceremony confirm", &n, e)) != AM_OK)
		return rc;
	return n == 1 ? AM_OK : am_fail(e, AM_E_NOT_FOUND, "the attempt changed meanwhile");
}

enum am_err
store_cred_revoke_reg_type(struct store *st, const char *registration_id, enum cred_type type,
			   int64_t at, int *n, struct am_error *e)
{
	struct db_stmt *s;
	enum am_err rc;

	if ((rc = db_prep(st->db, Q_CRED_REVOKE_REG_TYPE, &s, e)) != AM_OK)
		return rc;
	db_bind_text(s, 2, registration_id);
	db_bind_int64(s, 3, at);
	db_bind_text(s, 4, store_cred_type_name(type));
	auth_changed();
	return db_run(st->db, s, "credential revoke by type", n, e);
}

/* ---- refresh tokens (issue 14 item 6; migration 0014) ---- */

enum am_err
store_user_by_id(struct store *st, const char *id, struct store_user *out, struct am_error *e)
{
	return user_query(st, Q_USER_BY_ID, id, out, e);
}

enum am_err
store_refresh_family_insert(struct store *st, const char *id, const char *registration_id,
			    int64_t gen, int64_t at, struct am_error *e)
{
	struct db_stmt *s;
	enum am_err rc;

	if ((rc = db_prep(st->db, Q_RTF_INSERT, &s, e)) != AM_OK)
		return rc;
	db_bind_text(s, 2, id);
	db_bind_text(s, 3, registration_id);
	db_bind_int64(s, 4, gen);
	db_bind_int64(s, 5, at);
	return db_run(st->db, s, "refresh family insert", NULL, e);
}

enum am_err
store_refresh_insert(struct store *st, const uint8_t hash[AM_HASH_LEN], const char *id,
		     const char *family_id, int64_t at, int64_t expires_at, struct am_error *e)
{
	struct db_stmt *s;
	enum am_err rc;

	if ((rc = db_prep(st->db, Q_RT_INSERT, &s, e)) != AM_OK)
		return rc;
	db_bind_hash(s, 2, hash);
	db_bind_text(s, 3, id);
	db_bind_text(s, 4, family_id);
	db_bind_int64(s, 5, at);
	db_bind_int64(s, 6, expires_at);
	return db_run(st->db, s, "refresh insert", NULL, e);
}

enum am_err
store_refresh_by_hash(struct store *st, const uint8_t hash[AM_HASH_LEN], struct store_refresh *out,
		      struct am_error *e)
{
	struct db_stmt *s;
	enum am_err rc;

	if ((rc = db_prep(st->db, Q_RT_BY_HASH, &s, e)) != AM_OK)
		return rc;
	db_bind_hash(s, 2, hash);
	if ((rc = db_one(st->db, s, "refresh lookup", e)) != AM_OK)
		return rc;
	memset(out, 0, sizeof(*out));
	db_col_text(s, 0, out->id, sizeof(out->id));
	db_col_text(s, 1, out->family_id, sizeof(out->family_id));
	db_col_text(s, 2, out->registration_id, sizeof(out->registration_id));
	out->gen = db_col_int64(s, 3);
	out->created_at = db_col_int64(s, 4);
	out->expires_at = db_col_int64(s, 5);
	out->spent_at = db_col_int64(s, 6);
	out->family_revoked_at = db_col_int64(s, 7);
	db_reset(s);
	return AM_OK;
}

enum am_err
store_refresh_spend(struct store *st, const uint8_t hash[AM_HASH_LEN], int64_t at,
		    struct am_error *e)
{
	struct db_stmt *s;
	enum am_err rc;
	int n = 0;

	if ((rc = db_prep(st->db, Q_RT_SPEND, &s, e)) != AM_OK)
		return rc;
	db_bind_hash(s, 2, hash);
	db_bind_int64(s, 3, at);
	if ((rc = db_run(st->db, s, "refresh spend", &n, e)) != AM_OK)
		return rc;
	return n == 1 ? AM_OK : am_fail(e, AM_E_NOT_FOUND, "the refresh token was spent already");
}

/* The two family revocations: by family id (?2 the id) or by registration. */
static enum am_err
refresh_revoke(struct store *st, enum q q, const char *key, int64_t at, const char *reason, int *n,
	       struct am_error *e)
{
	struct db_stmt *s;
	enum am_err rc;

	if ((rc = db_prep(st->db, q, &s, e)) != AM_OK)
		return rc;
	db_bind_text(s, 2, key);
	db_bind_int64(s, 3, at);
	db_bind_text(s, 4, reason);
	return db_run(st->db, s, "refresh family revoke", n, e);
}

enum am_err
store_refresh_family_revoke(struct store *st, const char *family_id, int64_t at, const char *reason,
			    struct am_error *e)
{
	return refresh_revoke(st, Q_RTF_REVOKE, family_id, at, reason, NULL, e);
}

enum am_err
store_refresh_revoke_reg(struct store *st, const char *registration_id, int64_t at,
			 const char *reason, int *n, struct am_error *e)
{
	return refresh_revoke(st, Q_RTF_REVOKE_REG, registration_id, at, reason, n, e);
}
