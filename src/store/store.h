/* The storage interface. One `struct store` is one connection bound to one
 * tenant: every statement it runs matches that tenant, so a row of another
 * tenant is never seen even if a hash collides. A store is used by one
 * thread at a time (the pool hands each worker its own).
 *
 * Lookups return AM_E_NOT_FOUND when no row matches; out-params are written
 * only on AM_OK. Failures of the database give AM_E_UNAVAILABLE (busy,
 * I/O) or AM_E_INTERNAL, with the SQLite detail in the log only. */
#ifndef AM_STORE_H
#define AM_STORE_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/crypto.h"
#include "core/errors.h"
#include "core/limits.h"

#define STORE_ID_LEN 40
#define STORE_TEXT_LEN 256

struct store;

enum reg_kind { REG_ANONYMOUS, REG_EMAIL, REG_AGENT };
enum reg_status { REG_UNCLAIMED, REG_PENDING_CLAIM, REG_CLAIMED, REG_EXPIRED, REG_REVOKED };
enum attempt_status { ATTEMPT_OPEN, ATTEMPT_SUPERSEDED, ATTEMPT_COMPLETED };
enum cred_type { CRED_API_KEY, CRED_ACCESS_TOKEN };

struct store_user {
	char id[STORE_ID_LEN];
	char email[AM_MAX_EMAIL_BYTES + 1]; /* empty: none */
	char phone[64];			    /* empty: none */
	int64_t created_at;
	bool created_by_agent;
};

/* How a presented secret (a credential or a claim token) finds its row.
 * Tokens issued since migration 0018 name their row (flows/credential.c):
 * it is read by primary key and must carry the token's hash. Older tokens
 * carry no id and are found by their hash alone. */
struct store_secret {
	char id[STORE_ID_LEN];	   /* "": a token of the older form */
	uint8_t hash[AM_HASH_LEN]; /* SHA-256 of the whole token */
};

struct store_reg {
	char id[STORE_ID_LEN];
	enum reg_kind kind;
	enum reg_status status;
	uint8_t claim_hash[AM_HASH_LEN];
	bool claim_by_id; /* the claim token names this row (struct store_secret) */
	char email[AM_MAX_EMAIL_BYTES + 1]; /* the asserted address (email kind) */
	enum cred_type credential_type;	    /* requested at registration */
	char user_id[STORE_ID_LEN];	    /* empty until claimed */
	int64_t created_at;
	int64_t expires_at;
	int64_t claimed_at; /* 0: not claimed */
	char ip[64];
	/* agent-verified registrations: who vouched, and from where */
	char iss[STORE_TEXT_LEN], sub[STORE_TEXT_LEN];
	char agent_platform[128], agent_context_id[128];
};

struct store_attempt {
	char id[STORE_ID_LEN];
	char registration_id[STORE_ID_LEN];
	char email[AM_MAX_EMAIL_BYTES + 1];
	uint8_t token_hash[AM_HASH_LEN];
	enum attempt_status status;
	int64_t created_at;
	int64_t expires_at;
	bool has_otp;
	uint8_t otp_hash[AM_HASH_LEN];
	int64_t otp_expires_at;
	int64_t otp_failures;
	char ip[64];
};

struct store_cred {
	char id[STORE_ID_LEN];
	uint8_t hash[AM_HASH_LEN];
	bool by_id; /* the token names this row (struct store_secret) */
	enum cred_type type;
	char scopes[512];
	char source[16]; /* anonymous | email | id_jag */
	char registration_id[STORE_ID_LEN];
	char user_id[STORE_ID_LEN]; /* empty: not bound to a user yet */
	char iss[STORE_TEXT_LEN], sub[STORE_TEXT_LEN], aud[STORE_TEXT_LEN];
	int64_t created_at;
	int64_t expires_at;	       /* 0: never */
	char jkt[48];		       /* DPoP key thumbprint (RFC 7638); empty: a bearer token */
	char resource[STORE_TEXT_LEN]; /* v0.6 RFC 8707 audience; empty: not restricted */
};

/* What the resource gate needs to know about a presented credential. */
struct store_auth {
	struct store_cred cred;
	enum reg_status reg_status;
	int64_t reg_expires_at;
	char user_email[AM_MAX_EMAIL_BYTES + 1];
};

/* Names as stored and as shown in the API ("anonymous", "pending_claim", ...). */
const char *store_kind_name(enum reg_kind k);
const char *store_status_name(enum reg_status s);
const char *store_cred_type_name(enum cred_type t);

/* Opens url ("sqlite:PATH" or "sqlite::memory:") for tenant, applies every
 * pending migration, and sets *out (caller frees with store_close). */
enum am_err store_open(const char *url, const char *tenant, struct store **out,
		       struct am_error *e) AM_WUR;
/* The same, with the PostgreSQL connection bounds ([store] keys);
 * store_open uses DB_OPTS_DEFAULT. */
struct db_opts;
enum am_err store_open_opts(const char *url, const char *tenant, const struct db_opts *opts,
			    struct store **out, struct am_error *e) AM_WUR;
void store_close(struct store *st);

/* The schema version after migration (the number of the last migration). */
int store_schema_version(struct store *st);
/* db_vm_steps of the store's connection (for tests). */
int64_t store_vm_steps(struct store *st);
/* db_sorts of the store's connection (for tests). */
int64_t store_sorts(struct store *st);

/* For the pool: this process's connections to one database queue on mu for
 * write transactions (see db_set_writer_lock). NULL: no queue. */
void store_set_writer_lock(struct store *st, pthread_mutex_t *mu);

/* A write transaction: begin takes the write lock at once, so the checks a
 * flow makes inside it cannot be raced by another connection. It waits a
 * short bounded time for the lock (queue and database together), then
 * fails with AM_E_UNAVAILABLE and e->retry_after: 503 with Retry-After. */
enum am_err store_begin(struct store *st, struct am_error *e) AM_WUR;
enum am_err store_commit(struct store *st, struct am_error *e) AM_WUR;
void store_rollback(struct store *st); /* no-op outside a transaction */

/* Group commit, the backend's side (used by store_writer, not by flows):
 * one transaction around many jobs, each job inside a savepoint of its own
 * (store_batch_job_begin / _end keep or undo it alone). While a batch is
 * open, store_begin / store_commit / store_rollback on that store act on a
 * nested savepoint, so flow code written for one transaction runs
 * unchanged as a job. store_batch_alive is false once the backend lost the
 * whole transaction (SQLite rolls back on SQLITE_FULL and I/O errors):
 * every job so far in it is lost. store_batch_commit makes every kept job
 * durable at once (one fsync) or none; on failure the batch is rolled
 * back. A PostgreSQL backend maps these to BEGIN / SAVEPOINT / RELEASE /
 * ROLLBACK TO / COMMIT on one connection.
 *
 * An optimistic batch (store_batch_begin with optimistic true) may do
 * without the savepoints, where the backend can tell whether an undo had
 * anything to undo (SQLite, by its change count; PostgreSQL keeps its
 * savepoints). A refusal before any write costs nothing; an undo of
 * writes cannot be done alone there, so store_batch_must_redo turns true:
 * the caller rolls the batch back and runs its jobs again in a batch with
 * savepoints (store_batch_commit refuses such a batch). */
enum am_err store_batch_begin(struct store *st, bool optimistic, struct am_error *e) AM_WUR;
bool store_batch_alive(struct store *st);
bool store_batch_must_redo(struct store *st);
enum am_err store_batch_commit(struct store *st, struct am_error *e) AM_WUR;
void store_batch_rollback(struct store *st);
enum am_err store_batch_job_begin(struct store *st, struct am_error *e) AM_WUR;
void store_batch_job_end(struct store *st, bool keep);

/* users */
enum am_err store_user_by_email(struct store *st, const char *email, struct store_user *out,
				struct am_error *e) AM_WUR;
enum am_err store_user_insert(struct store *st, const struct store_user *u,
			      struct am_error *e) AM_WUR;

/* registrations */
enum am_err store_reg_insert(struct store *st, const struct store_reg *r,
			     struct am_error *e) AM_WUR;
/* The registration whose claim token k is; AM_E_NOT_FOUND when none. */
enum am_err store_reg_by_claim(struct store *st, const struct store_secret *k,
			       struct store_reg *out, struct am_error *e) AM_WUR;
enum am_err store_reg_by_id(struct store *st, const char *id, struct store_reg *out,
			    struct am_error *e) AM_WUR;
/* Moves registration id from status `from` to `to`; AM_E_NOT_FOUND when it
 * was not in `from` (someone else moved it first). */
enum am_err store_reg_transition(struct store *st, const char *id, enum reg_status from,
				 enum reg_status to, struct am_error *e) AM_WUR;
/* Marks an unclaimed or pending registration claimed by user_id at `at`;
 * AM_E_NOT_FOUND when it was no longer claimable. */
enum am_err store_reg_claim(struct store *st, const char *id, const char *user_id, int64_t at,
			    struct am_error *e) AM_WUR;
/* Up to cap ids of unclaimed or pending registrations whose window closed
 * at or before now, into ids; *n is how many. */
enum am_err store_reg_due(struct store *st, int64_t now, char (*ids)[STORE_ID_LEN], size_t cap,
			  size_t *n, struct am_error *e) AM_WUR;

/* claim attempts */
enum am_err store_attempt_insert(struct store *st, const struct store_attempt *a,
				 struct am_error *e) AM_WUR;
enum am_err store_attempt_by_token_hash(struct store *st, const uint8_t hash[AM_HASH_LEN],
					struct store_attempt *out, struct am_error *e) AM_WUR;
/* The newest open attempt of a registration. */
enum am_err store_attempt_open_for(struct store *st, const char *registration_id,
				   struct store_attempt *out, struct am_error *e) AM_WUR;
/* Every open attempt of the registration becomes `to` (superseded/completed). */
enum am_err store_attempt_close_all(struct store *st, const char *registration_id,
				    enum attempt_status to, struct am_error *e) AM_WUR;
/* Sets (has_otp) or burns (!has_otp) the attempt's code and resets failures. */
enum am_err store_attempt_set_otp(struct store *st, const char *id, bool has_otp,
				  const uint8_t hash[AM_HASH_LEN], int64_t expires_at,
				  struct am_error *e) AM_WUR;
/* Adds one wrong code; the code is burned when failures reach max. */
enum am_err store_attempt_fail(struct store *st, const char *id, int64_t max,
			       struct am_error *e) AM_WUR;

/* credentials */
enum am_err store_cred_insert(struct store *st, const struct store_cred *c,
			      struct am_error *e) AM_WUR;
/* The live credential k, with its registration's state. Unknown, revoked
 * and expired are all AM_E_NOT_FOUND, so callers cannot tell which. */
enum am_err store_cred_auth(struct store *st, const struct store_secret *k, int64_t now,
			    struct store_auth *out, struct am_error *e) AM_WUR;
/* Binds every credential of a registration to user_id with new scopes. */
enum am_err store_cred_upgrade(struct store *st, const char *registration_id, const char *user_id,
			       const char *scopes, struct am_error *e) AM_WUR;
/* A counter this process bumps with every write that revokes, expires,
 * claims or re-scopes a credential or its registration (whether or not it
 * commits): a cache of store_cred_auth results made at generation g is
 * stale once this differs from g. Changes made by other processes (the
 * revoke command, another replica) do not move it. */
uint64_t store_auth_generation(void);
/* Revokes every live credential of a registration at `at`; *n revoked. */
enum am_err store_cred_revoke_reg(struct store *st, const char *registration_id, int64_t at, int *n,
				  struct am_error *e) AM_WUR;

/* users, by phone */
enum am_err store_user_by_phone(struct store *st, const char *phone, struct store_user *out,
				struct am_error *e) AM_WUR;

/* delegations: who a provider's subject is here */
struct store_delegation {
	char user_id[STORE_ID_LEN];
	char registration_id[STORE_ID_LEN];
};
/* The delegation of (iss, sub, aud). */
enum am_err store_delegation_get(struct store *st, const char *iss, const char *sub,
				 const char *aud, struct store_delegation *out,
				 struct am_error *e) AM_WUR;
/* The user of any delegation of (iss, sub), whatever the audience. */
enum am_err store_delegation_user(struct store *st, const char *iss, const char *sub,
				  char user_id[STORE_ID_LEN], struct am_error *e) AM_WUR;
enum am_err store_delegation_insert(struct store *st, const char *iss, const char *sub,
				    const char *aud, const char *user_id,
				    const char *registration_id, int64_t at,
				    struct am_error *e) AM_WUR;

/* Records (iss, jti) as used until expires_at. *fresh is false when it was
 * already recorded: the UNIQUE key is the replay check, so two concurrent
 * requests carrying one token cannot both pass. */
enum am_err store_jti_record(struct store *st, const char *iss, const char *jti, int64_t expires_at,
			     bool *fresh, struct am_error *e) AM_WUR;
/* Forgets up to STORE_PURGE_MAX jtis whose window has passed; *n how many
 * (STORE_PURGE_MAX: there may be more). Bounded, so one call holds the
 * write lock a short time however many fell due. */
#define STORE_PURGE_MAX 500
enum am_err store_jti_purge(struct store *st, int64_t now, int *n, struct am_error *e) AM_WUR;

/* Live credentials matching every non-NULL field of a filter (all NULL:
 * every live credential of the tenant). */
struct store_cred_filter {
	const char *iss, *sub, *aud, *user_id, *registration_id;
};
struct store_cred_ref {
	char id[STORE_ID_LEN];
	char registration_id[STORE_ID_LEN];
};
enum am_err store_cred_live(struct store *st, const struct store_cred_filter *f,
			    struct store_cred_ref *out, size_t cap, size_t *n,
			    struct am_error *e) AM_WUR;
/* Revokes one credential at `at`; AM_E_NOT_FOUND if it was not live. */
enum am_err store_cred_revoke(struct store *st, const char *id, int64_t at,
			      struct am_error *e) AM_WUR;

/* settings: small named values kept across restarts */
enum am_err store_setting_get(struct store *st, const char *key, char **value,
			      struct am_error *e) AM_WUR;
enum am_err store_setting_put(struct store *st, const char *key, const char *value, int64_t at,
			      struct am_error *e) AM_WUR;

/* operator blocks: a revoked issuer, subject, user or registration stays
 * refused until an operator lifts the block */
enum block_kind { BLOCK_ISSUER, BLOCK_SUBJECT, BLOCK_USER, BLOCK_REGISTRATION };
/* "issuer", "subject", "user", "registration". */
const char *store_block_kind_name(enum block_kind k);
/* Records a block on value (the issuer, user id or registration id; for
 * BLOCK_SUBJECT the issuer, with sub the subject, else sub is NULL) at
 * `at`. *created is false when the same block was already there (it is
 * left as it was). */
enum am_err store_block_put(struct store *st, enum block_kind kind, const char *value,
			    const char *sub, const char *reason, int64_t at, bool *created,
			    struct am_error *e) AM_WUR;
/* Lifts a block; AM_E_NOT_FOUND when there was none. */
enum am_err store_block_delete(struct store *st, enum block_kind kind, const char *value,
			       const char *sub, struct am_error *e) AM_WUR;
/* Whether any block covers what is given (each may be NULL: not checked):
 * the issuer iss, the subject (iss, sub), the user, the registration.
 * AM_OK with *kind the block found, AM_E_NOT_FOUND when none does. */
enum am_err store_block_find(struct store *st, const char *iss, const char *sub,
			     const char *user_id, const char *registration_id,
			     enum block_kind *kind, struct am_error *e) AM_WUR;

/* audit */
enum am_err store_audit_insert(struct store *st, int64_t at, const char *event,
			       const char *registration_id, const char *json,
			       struct am_error *e) AM_WUR;

/* claim mail limits: every claim attempt is one mail, so counting attempts
 * counts mails, durably and across replicas sharing the store. */
enum store_mail_scope {
	STORE_MAIL_REGISTRATION, /* key: a registration id; every attempt it ever had */
	STORE_MAIL_ADDRESS,	 /* key: a normalized address; attempts after `since` */
	STORE_MAIL_ALL,		 /* key unused (NULL); attempts after `since` */
};
/* Counts the attempts of scope, stopping at cap (the work is bounded by the
 * limit, not by the table): *count in [0, cap], and *oldest the created_at
 * of the oldest counted (0 for STORE_MAIL_REGISTRATION or when none). */
enum am_err store_attempt_count(struct store *st, enum store_mail_scope scope, const char *key,
				int64_t since, int64_t cap, int64_t *count, int64_t *oldest,
				struct am_error *e) AM_WUR;

/* Deletes an open attempt whose mail was never sent, so that it counts
 * against no limit; AM_E_NOT_FOUND when it is not open. */
enum am_err store_attempt_delete(struct store *st, const char *id, struct am_error *e) AM_WUR;

/* The durable mail queue: a claim mail is a row written inside the
 * transaction that creates its attempt, and sent later by the mail worker
 * (mail/queue.c). The rendered message carries the claim link: it is kept
 * only until the mail is sent or given up, and is overwritten with zeros
 * before the row is deleted or kept as a failure record. */
struct store_mail {
	int64_t id;
	char attempt_id[STORE_ID_LEN];
	char registration_id[STORE_ID_LEN]; /* of the attempt; "" once it is gone */
	char rcpt[AM_MAX_EMAIL_BYTES + 1];
	char *message; /* NUL-terminated; owned, free with store_mail_wipe */
	int64_t created_at, expires_at;
	int64_t tries;
	bool live; /* its attempt still exists (and so counts against the limits) */
};
struct store_mail_stats {
	int64_t queued;		   /* rows waiting to be sent */
	int64_t oldest_created_at; /* of those; 0: none */
	int64_t next_at;	   /* earliest next try; 0: none */
};
/* Queues message (the rendered mail, borrowed) to rcpt for attempt_id,
 * due at once; inside the caller's transaction. The mail is pointless
 * after expires_at (the attempt's). */
enum am_err store_mail_enqueue(struct store *st, const char *attempt_id, const char *rcpt,
			       const char *message, int64_t now, int64_t expires_at,
			       struct am_error *e) AM_WUR;
/* The queued mail due first at `now` (next_at <= now), with a copy of its
 * message the caller wipes with store_mail_wipe; AM_E_NOT_FOUND: none due. */
enum am_err store_mail_next(struct store *st, int64_t now, struct store_mail *out,
			    struct am_error *e) AM_WUR;
/* Wipes and frees m->message (NULL is fine). */
void store_mail_wipe(struct store_mail *m);
/* The mail was sent (or dropped): its message is zeroed and the row
 * deleted (two statements: call it inside a transaction). */
enum am_err store_mail_done(struct store *st, int64_t id, struct am_error *e) AM_WUR;
/* A temporary failure: one more try, next at next_at, why recorded (no
 * secrets in why). */
enum am_err store_mail_retry(struct store *st, int64_t id, int64_t next_at, const char *why,
			     struct am_error *e) AM_WUR;
/* A permanent failure: the message is zeroed and dropped, the row kept as
 * status failed with why (two statements: inside a transaction). */
enum am_err store_mail_failed(struct store *st, int64_t id, const char *why,
			      struct am_error *e) AM_WUR;
/* Queue depth and age, for readiness and operators. */
enum am_err store_mail_stats(struct store *st, struct store_mail_stats *out,
			     struct am_error *e) AM_WUR;

/* ---- protocol v0.6 (issue 13) ---- */

/* The registration's generation (0 when it was never revived). */
enum am_err store_reg_gen(struct store *st, const char *registration_id, int64_t *gen,
			  struct am_error *e) AM_WUR;
/* Moves the registration to its next generation (inside the caller's
 * transaction). */
enum am_err store_reg_gen_bump(struct store *st, const char *registration_id,
			       struct am_error *e) AM_WUR;
/* Restricts the live credential id to resource (RFC 8707); read back by
 * store_cred_auth into cred.resource. AM_E_NOT_FOUND: no such row.
 * store_cred_insert leaves it empty. */
enum am_err store_cred_set_resource(struct store *st, const char *id, const char *resource,
				    struct am_error *e) AM_WUR;

/* ---- DPoP (RFC 9449; issue 13 item 5) ---- */

/* Binds the live credential id to the DPoP key thumbprint jkt (an access
 * token just issued, before it is handed out). AM_E_NOT_FOUND when it is
 * not live or already bound. */
enum am_err store_cred_bind_jkt(struct store *st, const char *id, const char *jkt,
				struct am_error *e) AM_WUR;

/* A per-thread handle source over one URL: each worker thread gets its own
 * connection, opened on first use and closed when the thread ends. */
struct store_pool;

/* Opens (and migrates) once on the calling thread to fail early. For
 * "sqlite::memory:" the pool keeps a private temporary file instead, so all
 * threads see one database; it is deleted by store_pool_free. */
enum am_err store_pool_new(const char *url, const char *tenant, struct store_pool **out,
			   struct am_error *e) AM_WUR;
/* This thread's store (borrowed; valid until the thread exits). */
enum am_err store_pool_get(struct store_pool *p, struct store **out, struct am_error *e) AM_WUR;
void store_pool_free(struct store_pool *p);
/* A new handle on the pool's database that is nobody's thread handle (the
 * caller owns it: store_close), queueing on the pool's writer lock. */
enum am_err store_pool_open(struct store_pool *p, struct store **out, struct am_error *e) AM_WUR;

/* The store writer: durable writes with group commit.
 *
 * A request whose write must be durable before it is answered hands a job
 * to the writer and returns; it is told through job->done. The writer
 * thread takes every job pending (up to STORE_BATCH_MAX), runs them one
 * after another in one transaction, each in a savepoint of its own (none
 * when every job is marked rerun: an optimistic batch, store_batch_begin),
 * and commits once: one fsync for the batch. Then it calls done for each job,
 * in submission order, with job->rc:
 *   - AM_OK: the job's writes are durable (committed and synced);
 *   - the job's own error: its writes were undone, the others' kept;
 *   - AM_E_UNAVAILABLE (job->err.retry_after set): the batch could not
 *     begin or commit (busy from another process, disk full, I/O): none of
 *     its writes exist.
 * Nothing is acknowledged before its commit: done for AM_OK runs only after
 * the commit returned. run executes on the writer thread with the writer's
 * store, so it must not wait on anything but the store (no network, no
 * mail, no locks a request holds) and should be short: every job of the
 * batch waits for the slowest. done runs on the writer thread too, and must
 * only hand the result over (wake or resume the waiting request).
 *
 * The contract does not depend on SQLite: a PostgreSQL backend implements
 * the same queue over one connection (BEGIN, SAVEPOINT per job, COMMIT). */
struct store_job {
	enum am_err (*run)(struct store *st, void *arg, struct am_error *e);
	void (*done)(struct store_job *job);
	void *arg;
	/* run may be called again for this job after its first run was rolled
	 * back with the batch: it sets every result afresh at its start and
	 * acts on nothing outside the store before done. A batch of such jobs
	 * only runs without savepoints (the rare undo of a job's writes makes
	 * the writer roll back and run them all again, each in a savepoint). */
	bool rerun;
	enum am_err rc;		/* set before done */
	struct am_error err;	/* set before done when rc != AM_OK */
	struct store_job *next; /* the writer's */
};

struct store_writer;

/* Jobs in one batch: bounds how long the batch holds the write lock (each
 * job is a few statements, so well under the busy bound of DB_BUSY_WAIT_MS). */
#define STORE_BATCH_MAX 256
/* Jobs waiting at most; past it a submit is refused with 503 at once. */
#define STORE_QUEUE_MAX 8192

/* Starts the writer thread with its own handle on the pool's database.
 * priority: nice steps the thread asks to run above the process (0: none);
 * refused (no CAP_SYS_NICE, RLIMIT_NICE too low), it runs at the process's
 * and says so once in the log. */
enum am_err store_writer_new(struct store_pool *p, int priority, struct store_writer **out,
			     struct am_error *e) AM_WUR;
/* Queues job (borrowed until done has been called). Refuses, without
 * calling done, with AM_E_UNAVAILABLE and e->retry_after when the queue
 * holds STORE_QUEUE_MAX jobs, the writer is stopping, or w is NULL. */
enum am_err store_writer_submit(struct store_writer *w, struct store_job *job,
				struct am_error *e) AM_WUR;
/* Submits job and waits for it: for callers that may block (the sweeper,
 * the command line). Returns job->rc, with *e set from job->err. */
enum am_err store_writer_run(struct store_writer *w, struct store_job *job,
			     struct am_error *e) AM_WUR;
/* Batches committed (or failed) and jobs run since start, for the log and
 * the tests: jobs / batches is the group-commit factor. */
void store_writer_stats(struct store_writer *w, uint64_t *batches, uint64_t *jobs);

/* Database pages this handle has written (to the WAL) since it was opened:
 * the measure of write amplification (pages per job). */
int64_t store_pages_written(struct store *st);
/* Refuses new jobs, finishes every queued one (each gets its done), stops
 * the thread and frees the writer. NULL is fine. */
void store_writer_free(struct store_writer *w);

/* ---- registration clients (flow8) ----
 * What a registration's Client ID Metadata Document said when it was made:
 * the name and logo its claim pages show (flows check and cap them before
 * they get here; each is stored as given, truncated to the field). */
struct store_reg_client {
	char client_id[256];
	char client_name[AM_MAX_CIMD_NAME_BYTES + 1]; /* "" : none */
	char logo_uri[256];			      /* "" : none */
};
/* Records c for registration_id at `at` (inside the registration's
 * transaction); a second call for the same registration replaces it. */
enum am_err store_reg_client_put(struct store *st, const char *registration_id,
				 const struct store_reg_client *c, int64_t at,
				 struct am_error *e) AM_WUR;
/* The client of registration_id; AM_E_NOT_FOUND when none was recorded. */
enum am_err store_reg_client_get(struct store *st, const char *registration_id,
				 struct store_reg_client *out, struct am_error *e) AM_WUR;
/* ---- operator surface (issue 12 item 6): the admin API's reads ---- */

/* Which registrations an operator search returns; NULL or "": any. email
 * matches the address asserted at registration or the claimed user's. */
struct store_reg_filter {
	const char *user_id;
	const char *email;
	const char *iss;
	const char *status; /* a store_status_name */
	const char *after;  /* the cursor: registrations with a greater id */
};
/* Up to cap registrations matching f, by id ascending, into out; *n gets
 * how many. Each status and the email go through an index. */
enum am_err store_reg_search(struct store *st, const struct store_reg_filter *f,
			     struct store_reg *out, size_t cap, size_t *n,
			     struct am_error *e) AM_WUR;

/* A credential as an operator sees it: never its hash beyond a prefix. */
struct store_cred_info {
	char id[STORE_ID_LEN];
	enum cred_type type;
	char scopes[512];
	char source[16];
	char user_id[STORE_ID_LEN];
	char hash_prefix[9]; /* the first 8 hex digits of the SHA-256 */
	int64_t created_at;
	int64_t expires_at; /* 0: never */
	int64_t revoked_at; /* 0: live */
};
/* Up to cap credentials of registration id, oldest first; *n how many. */
enum am_err store_cred_list(struct store *st, const char *registration_id,
			    struct store_cred_info *out, size_t cap, size_t *n,
			    struct am_error *e) AM_WUR;
/* The audit events of registration id, oldest first, at most cap: each
 * line is the event's JSON text, malloc'd, for the caller to free. */
enum am_err store_audit_list(struct store *st, const char *registration_id, char **lines,
			     size_t cap, size_t *n, struct am_error *e) AM_WUR;
/* ---- scale-out: N replicas on one PostgreSQL database (issue 11) ---- */

/* True when the store is shared by processes (PostgreSQL): what must hold
 * across replicas (rate limits) lives in it. False on SQLite. */
bool store_is_shared(struct store *st);
/* Takes the cross-replica lock name without waiting (pg_try_advisory_lock;
 * always granted on SQLite): *got says whether this handle holds it, until
 * store_unlock or the connection ends. */
enum am_err store_try_lock(struct store *st, const char *name, bool *got,
			   struct am_error *e) AM_WUR;
void store_unlock(struct store *st, const char *name);
/* One hit on the shared counter key (at most 255 bytes are kept) in the
 * fixed window of window seconds holding now, allowed when the sliding
 * estimate (previous window weighted by its overlap, plus the current) is
 * below limit. One atomic upsert: concurrent hits from every replica are
 * all counted. A refused hit is not counted; *retry_after gets the seconds
 * until one would be allowed. */
enum am_err store_rate_hit(struct store *st, const char *key, int64_t window, int64_t limit,
			   int64_t now, bool *allowed, int64_t *retry_after,
			   struct am_error *e) AM_WUR;
/* Deletes up to STORE_PURGE_MAX counters of windows that ended before
 * before; *n gets how many. */
enum am_err store_rate_purge(struct store *st, int64_t before, int *n, struct am_error *e) AM_WUR;
/* Checks url without connecting (db_url_check); why gets the reason. */
bool store_url_check(const char *url, char *why, size_t cap);
/* url without its password, for logs (db_url_redact). */
void store_url_redact(const char *url, char *out, size_t cap);
/* The pool's settings beyond the URL: PostgreSQL bounds, and how many
 * thread handles (connections) it opens at most; 0: no bound. */
struct store_pool_opts {
	int connect_timeout_s;
	int statement_timeout_ms;
	int max_handles;
};
enum am_err store_pool_new_opts(const char *url, const char *tenant,
				const struct store_pool_opts *o, struct store_pool **out,
				struct am_error *e) AM_WUR;
/* True when the pool's database is shared by processes (PostgreSQL). */
bool store_pool_is_shared(const struct store_pool *p);

/* ---- user sign-in at the service (issue 14; flows/login.c) ---- */

enum login_status { LOGIN_OPEN, LOGIN_USED, LOGIN_BURNED };

/* A login attempt: one mail with a code and a link. Only hashes of its
 * secrets are kept: the link token, the code (SHA-256 of id ":" code) and
 * the pre-session cookie of the browser that asked (the code is accepted
 * only from that browser). */
struct store_login {
	char id[STORE_ID_LEN];
	char email[AM_MAX_EMAIL_BYTES + 1]; /* normalized */
	uint8_t link_hash[AM_HASH_LEN];
	uint8_t code_hash[AM_HASH_LEN];
	uint8_t browser_hash[AM_HASH_LEN];
	char return_to[AM_MAX_FIELD_BYTES + 1]; /* a checked same-origin path */
	char ip[64];
	enum login_status status;
	int64_t failures;
	int64_t created_at, expires_at;
};
enum am_err store_login_insert(struct store *st, const struct store_login *l,
			       struct am_error *e) AM_WUR;
enum am_err store_login_by_id(struct store *st, const char *id, struct store_login *out,
			      struct am_error *e) AM_WUR;
enum am_err store_login_by_link(struct store *st, const uint8_t hash[AM_HASH_LEN],
				struct store_login *out, struct am_error *e) AM_WUR;
/* Counts the attempts for email created after since, stopping at cap;
 * *oldest the created_at of the oldest counted (0: none). */
enum am_err store_login_count(struct store *st, const char *email, int64_t since, int64_t cap,
			      int64_t *count, int64_t *oldest, struct am_error *e) AM_WUR;
/* One wrong code on an open attempt; burned once failures reach max.
 * AM_E_NOT_FOUND when it was not open. */
enum am_err store_login_fail(struct store *st, const char *id, int64_t max,
			     struct am_error *e) AM_WUR;
/* Open -> used; AM_E_NOT_FOUND when it was not open (used or burned by a
 * concurrent request: only one sign-in per attempt). */
enum am_err store_login_use(struct store *st, const char *id, struct am_error *e) AM_WUR;
/* Deletes up to STORE_PURGE_MAX attempts that expired before now. */
enum am_err store_login_purge(struct store *st, int64_t now, int *n, struct am_error *e) AM_WUR;

/* A signed-in browser: the row is found by the SHA-256 of the cookie. */
struct store_session {
	uint8_t hash[AM_HASH_LEN];
	char id[STORE_ID_LEN]; /* public, for logs */
	char user_id[STORE_ID_LEN];
	char email[AM_MAX_EMAIL_BYTES + 1];
	int64_t auth_time; /* when the user last proved the address */
	int64_t created_at, last_seen, expires_at;
};
/* Inserts w (last_seen = created_at). */
enum am_err store_session_insert(struct store *st, const struct store_session *w,
				 struct am_error *e) AM_WUR;
/* The row of hash, whatever its age (the caller checks expiry and idle). */
enum am_err store_session_get(struct store *st, const uint8_t hash[AM_HASH_LEN],
			      struct store_session *out, struct am_error *e) AM_WUR;
/* Moves last_seen forward to now (never back). */
enum am_err store_session_touch(struct store *st, const uint8_t hash[AM_HASH_LEN], int64_t now,
				struct am_error *e) AM_WUR;
/* Ends a session (no row is no error). */
enum am_err store_session_delete(struct store *st, const uint8_t hash[AM_HASH_LEN],
				 struct am_error *e) AM_WUR;
/* Deletes up to STORE_PURGE_MAX sessions past expires_at at now or last
 * seen before idle_before; *n how many. */
enum am_err store_session_purge(struct store *st, int64_t now, int64_t idle_before, int *n,
				struct am_error *e) AM_WUR;
/* ---- the v0.4-v0.6 claim ceremony (issue 14; flows/ceremony.c) ---- */

enum ceremony_status { CEREMONY_INITIATED, CEREMONY_COMPLETED, CEREMONY_DENIED, CEREMONY_EXPIRED };
/* user_code: v0.4-v0.6, the user types the agent's code; readback: issue
 * 14's proposal (b), the page shows a code the user reads back to the agent
 * (migration 0015). */
enum ceremony_mode { CEREMONY_USER_CODE, CEREMONY_READBACK };

/* One claim attempt of the user_code ceremony (migration 0013). Only the
 * SHA-256 of the claim_attempt_token and of id ":" user_code are kept. */
struct store_ceremony {
	char id[STORE_ID_LEN]; /* cla_... */
	char registration_id[STORE_ID_LEN];
	uint8_t token_hash[AM_HASH_LEN];
	uint8_t code_hash[AM_HASH_LEN];
	char email[AM_MAX_EMAIL_BYTES + 1]; /* the bound claim_email */
	int64_t attempts_left;
	enum ceremony_status status;
	int64_t created_at, expires_at;
	int64_t last_poll_at;	    /* 0: not polled yet */
	int64_t poll_interval;	    /* seconds */
	char user_id[STORE_ID_LEN]; /* who completed or denied it; empty: nobody yet */
	int64_t redeemed_at;	    /* 0: the claim grant has not answered its tokens */
	/* migration 0016: the provider subject the attempt's confirmation links
	 * (v0.7's ID-JAG claim met the first-link gate); empty: none */
	char link_iss[STORE_TEXT_LEN], link_sub[STORE_TEXT_LEN];
	enum ceremony_mode mode;
	int64_t confirmed_at; /* readback: when the user last confirmed; 0: not yet */
	int64_t code_serial;  /* readback: codes shown so far */
};
const char *store_ceremony_status_name(enum ceremony_status c);
/* Inserts c (not polled, nobody, not redeemed). */
enum am_err store_ceremony_insert(struct store *st, const struct store_ceremony *c,
				  struct am_error *e) AM_WUR;
enum am_err store_ceremony_by_token_hash(struct store *st, const uint8_t hash[AM_HASH_LEN],
					 struct store_ceremony *out, struct am_error *e) AM_WUR;
/* The newest attempt of a registration, whatever its status. */
enum am_err store_ceremony_latest_for(struct store *st, const char *registration_id,
				      struct store_ceremony *out, struct am_error *e) AM_WUR;
/* Every initiated attempt of the registration becomes expired. */
enum am_err store_ceremony_expire_open(struct store *st, const char *registration_id,
				       struct am_error *e) AM_WUR;
/* from -> to, recording user_id (NULL: none); AM_E_NOT_FOUND when the
 * attempt was no longer `from` (a concurrent request won). */
enum am_err store_ceremony_set_status(struct store *st, const char *id, enum ceremony_status from,
				      enum ceremony_status to, const char *user_id,
				      struct am_error *e) AM_WUR;
/* One wrong user_code on an initiated attempt; the last allowed one
 * expires it. */
enum am_err store_ceremony_fail(struct store *st, const char *id, struct am_error *e) AM_WUR;
/* Records a poll at now and the interval the next one must wait. */
enum am_err store_ceremony_poll(struct store *st, const char *id, int64_t now, int64_t interval,
				struct am_error *e) AM_WUR;
/* Marks a completed attempt redeemed; AM_E_NOT_FOUND when it was already
 * (only one poll gets the tokens). */
enum am_err store_ceremony_redeem(struct store *st, const char *id, int64_t now,
				  struct am_error *e) AM_WUR;
/* The read-back confirmation: an initiated readback attempt whose
 * code_serial is still serial gets c's code_hash, confirmed_at, expires_at
 * (the code's window), user_id and email (the confirming user's), and its
 * serial moves on by one. AM_E_NOT_FOUND when the attempt is not that
 * (another confirm won, or it ended). */
enum am_err store_ceremony_confirm(struct store *st, const struct store_ceremony *c, int64_t serial,
				   struct am_error *e) AM_WUR;
/* Revokes the live credentials of one type of a registration; *n how many. */
enum am_err store_cred_revoke_reg_type(struct store *st, const char *registration_id,
				       enum cred_type type, int64_t at, int *n,
				       struct am_error *e) AM_WUR;

/* ---- refresh tokens (issue 14 item 6, proposal (b); flows/refresh.c) ----
 *
 * A family is one chain of rotations (migration 0014), started with an
 * identity assertion and bound to the registration's generation then;
 * each token is kept only as its SHA-256. */
struct store_refresh {
	char id[STORE_ID_LEN];		    /* the token's public id (rt_...) */
	char family_id[STORE_ID_LEN];	    /* rtf_... */
	char registration_id[STORE_ID_LEN]; /* the family's */
	int64_t gen;			    /* the registration's generation at the start */
	int64_t created_at, expires_at;
	int64_t spent_at;	   /* 0: the family's current token */
	int64_t family_revoked_at; /* 0: the family is live */
};
/* The user of id. */
enum am_err store_user_by_id(struct store *st, const char *id, struct store_user *out,
			     struct am_error *e) AM_WUR;
/* Starts family id of registration_id at generation gen (no token yet). */
enum am_err store_refresh_family_insert(struct store *st, const char *id,
					const char *registration_id, int64_t gen, int64_t at,
					struct am_error *e) AM_WUR;
/* Adds the token of hash (public id id) to family_id, unspent. */
enum am_err store_refresh_insert(struct store *st, const uint8_t hash[AM_HASH_LEN], const char *id,
				 const char *family_id, int64_t at, int64_t expires_at,
				 struct am_error *e) AM_WUR;
/* The token of hash with its family's state, whatever both are (the caller
 * tells spent, expired and revoked apart: a spent one is a reuse). */
enum am_err store_refresh_by_hash(struct store *st, const uint8_t hash[AM_HASH_LEN],
				  struct store_refresh *out, struct am_error *e) AM_WUR;
/* Spends the token of hash at `at` if it is unspent: the compare-and-set
 * of a rotation. AM_E_NOT_FOUND when it was spent already (a concurrent
 * rotation won: the caller treats it as a reuse). */
enum am_err store_refresh_spend(struct store *st, const uint8_t hash[AM_HASH_LEN], int64_t at,
				struct am_error *e) AM_WUR;
/* Revokes a live family (every token of it) with reason ("reuse",
 * "registration"); no live family is no error. */
enum am_err store_refresh_family_revoke(struct store *st, const char *family_id, int64_t at,
					const char *reason, struct am_error *e) AM_WUR;
/* Revokes every live family of a registration; *n (may be NULL) how many. */
enum am_err store_refresh_revoke_reg(struct store *st, const char *registration_id, int64_t at,
				     const char *reason, int *n, struct am_error *e) AM_WUR;

#endif
