/* The sweeper's step: registrations whose claim window closed become
 * expired, their keys are revoked, and registration.expired is recorded,
 * whether or not any request ever touches them again. */
#include "core/log.h"
#include "flows/internal.h"
#include "flows/login.h"

#define SWEEP_BATCH 100 /* due ids read at once */
#define SWEEP_CHUNK 16	/* registrations expired per writer job */

/* Expires registration id in a transaction of its own (a savepoint of the
 * writer's batch); its event goes into batch, for the caller to flush once
 * that is durable. */
static enum am_err
expire_one(const struct flow_env *env, struct store *st, const char *id, int64_t now, bool *expired,
	   int *revoked_out, struct audit_batch *batch, struct am_error *e)
{
	size_t kept = batch->n;
	struct store_reg reg;
	enum am_err rc;
	int revoked = 0;

	*expired = false;
	*revoked_out = 0;
	if ((rc = store_begin(st, e)) != AM_OK)
		return rc;
	if ((rc = store_reg_by_id(st, id, &reg, e)) != AM_OK)
		goto fail;
	/* Re-checked inside the transaction: a claim may have won the race. */
	if ((reg.status != REG_UNCLAIMED && reg.status != REG_PENDING_CLAIM) ||
	    reg.expires_at > now) {
		store_rollback(st);
		return AM_OK;
	}
	if ((rc = store_reg_transition(st, id, reg.status, REG_EXPIRED, e)) != AM_OK ||
	    (rc = store_attempt_close_all(st, id, ATTEMPT_SUPERSEDED, e)) != AM_OK ||
	    (rc = store_cred_revoke_reg(st, id, now, &revoked, e)) != AM_OK ||
	    (rc = audit_add(st, batch, env->cfg->tenant, now, "registration.expired", id,
			    json_pack("{s:s, s:i}", "registration_type",
				      reg.kind == REG_EMAIL   ? "email-verification"
				      : reg.kind == REG_AGENT ? "agent-provider" /* a first link */
							      : "anonymous",
				      "credentials_revoked", revoked),
			    e)) != AM_OK ||
	    (rc = store_commit(st, e)) != AM_OK)
		goto fail;
	*expired = true; /* logged by run_chunk once durable, off the writer */
	*revoked_out = revoked;
	return AM_OK;
fail:
	store_rollback(st);
	flow_audit_truncate(batch, kept);
	return rc;
}

/* One writer job: up to SWEEP_CHUNK registrations expired, each in its own
 * savepoint (expire_one's transaction), then the jti records. */
struct sweep_job {
	const struct flow_env *env;
	char (*ids)[STORE_ID_LEN];
	size_t n;
	int64_t now;
	int expired;
	int purged;
	bool purge;
	bool gone[SWEEP_CHUNK];	  /* ids[i] was expired */
	int revoked[SWEEP_CHUNK]; /* and this many of its keys revoked */
	struct audit_batch batch; /* the chunk's events, flushed once durable */
};

static enum am_err
sweep_chunk(struct store *st, void *arg, struct am_error *e)
{
	struct sweep_job *j = arg;
	enum am_err rc;

	/* A run after the batch's rollback (store_job.rerun) starts afresh:
	 * the events of a run that was undone are not the chunk's. */
	audit_discard(&j->batch);
	j->expired = 0;
	j->purged = 0;
	for (size_t i = 0; i < j->n; i++) {
		if ((rc = expire_one(j->env, st, j->ids[i], j->now, &j->gone[i], &j->revoked[i],
				     &j->batch, e)) != AM_OK)
			return rc;
		j->expired += j->gone[i] ? 1 : 0;
	}
	if (j->purge)
		return store_jti_purge(st, j->now, &j->purged, e);
	return AM_OK;
}

/* Runs a chunk through the store writer (group commit, shared with the
 * requests' writes), or on st itself when there is no writer. */
static enum am_err
run_chunk(const struct flow_env *env, struct store *st, struct sweep_job *j, struct am_error *e)
{
	struct store_job job = {.run = sweep_chunk, .arg = j, .rerun = true};
	enum am_err rc;

	if (env->writer != NULL)
		rc = store_writer_run(env->writer, &job, e);
	else if (!j->purge)
		rc = sweep_chunk(st, j, e); /* expire_one has its own transactions */
	else if ((rc = store_begin(st, e)) == AM_OK &&
		 ((rc = sweep_chunk(st, j, e)) != AM_OK || (rc = store_commit(st, e)) != AM_OK))
		store_rollback(st);
	/* The events reach the sink only once their batch is durable. Without
	 * a writer each expiry committed alone: what was kept is flushed. */
	if (rc == AM_OK || env->writer == NULL) {
		audit_flush(env->audit, &j->batch);
		for (size_t i = 0; i < j->n; i++) {
			if (j->gone[i])
				log_info("registration expired id=%s credentials_revoked=%d",
					 j->ids[i], j->revoked[i]);
		}
	} else {
		audit_discard(&j->batch);
	}
	return rc;
}

static enum am_err sweep(const struct flow_env *env, struct store *st, int *count,
			 struct am_error *e);

/* One replica sweeps at a time (an advisory lock on PostgreSQL, always
 * granted on SQLite): the others skip the round, so N replicas do not race
 * each other over the same due rows. */
enum am_err
flow_sweep(const struct flow_env *env, struct store *st, int *count, struct am_error *e)
{
	bool mine = false;
	enum am_err rc;

	*count = 0;
	if ((rc = store_try_lock(st, "sweep", &mine, e)) != AM_OK)
		return rc;
	if (!mine) {
		log_debug("sweep skipped: another replica holds the sweep lock");
		return AM_OK;
	}
	rc = sweep(env, st, count, e);
	store_unlock(st, "sweep");
	return rc;
}

static enum am_err
sweep(const struct flow_env *env, struct store *st, int *count, struct am_error *e)
{
	char ids[SWEEP_BATCH][STORE_ID_LEN];
	int64_t now = flow_now(env);
	size_t n;
	enum am_err rc;

	/* Bounded: a sweep that cannot make progress must not spin forever. */
	for (int round = 0; round < 100; round++) {
		if ((rc = store_reg_due(st, now, ids, SWEEP_BATCH, &n, e)) != AM_OK)
			return rc;
		/* Small jobs: each holds the writer for a few registrations only,
		 * so the requests' writes queued behind it wait milliseconds. */
		for (size_t i = 0; i < n; i += SWEEP_CHUNK) {
			struct sweep_job j = {.env = env, .ids = ids + i, .now = now};

			j.n = n - i < SWEEP_CHUNK ? n - i : SWEEP_CHUNK;
			if ((rc = run_chunk(env, st, &j, e)) != AM_OK)
				return rc;
			*count += j.expired;
		}
		if (n < SWEEP_BATCH)
			break;
	}
	/* Replay records outlive their tokens' windows by nothing; purged in
	 * bounded steps for the same reason. */
	for (int round = 0; round < 1000; round++) {
		struct sweep_job j = {.env = env, .now = now, .purge = true};

		if ((rc = run_chunk(env, st, &j, e)) != AM_OK)
			return rc;
		if (j.purged > 0)
			log_debug("jti records purged count=%d", j.purged);
		if (j.purged < STORE_PURGE_MAX)
			break;
	}
	/* Shared rate-limit counters (PostgreSQL) of windows no limit reads
	 * any more: the current and the previous one are kept. */
	for (int round = 0; store_is_shared(st) && round < 1000; round++) {
		int purged = 0;

		if ((rc = store_rate_purge(st, now - 2 * env->cfg->rate_window, &purged, e)) !=
		    AM_OK)
			return rc;
		if (purged < STORE_PURGE_MAX)
			break;
	}
	/* User sign-in (issue 14): ended sessions and login attempts. */
	return flow_login_sweep(env, st, e);
}
