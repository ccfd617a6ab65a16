/* The sweeper's step: registrations whose claim window closed become
 * expired, their keys are revoked, and registration.expired is recorded,
 * whether or not any request ever touches them again. */
#include "core/log.h"
#include "flows/internal.h"

#define SWEEP_BATCH 100

static enum am_err
expire_one(const struct flow_env *env, struct store *st, const char *id, int64_t now, bool *expired,
	   struct am_error *e)
{
	struct audit_batch batch = {0};
	struct store_reg reg;
	enum am_err rc;
	int revoked = 0;

	*expired = false;
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
	    (rc = audit_add(st, &batch, env->cfg->tenant, now, "registration.expired", id,
			    json_pack("{s:s, s:i}", "registration_type",
				      reg.kind == REG_EMAIL   ? "email-verification"
				      : reg.kind == REG_AGENT ? "agent-provider" /* a first link */
							      : "anonymous",
				      "credentials_revoked", revoked),
			    e)) != AM_OK ||
	    (rc = store_commit(st, e)) != AM_OK)
		goto fail;
	audit_flush(env->audit, &batch);
	log_info("registration expired id=%s credentials_revoked=%d", id, revoked);
	*expired = true;
	return AM_OK;
fail:
	store_rollback(st);
	audit_discard(&batch);
	return rc;
}

enum am_err
flow_sweep(const struct flow_env *env, struct store *st, int *count, struct am_error *e)
{
	char ids[SWEEP_BATCH][STORE_ID_LEN];
	int64_t now = flow_now(env);
	size_t n;
	enum am_err rc;

	*count = 0;
	/* Bounded: a sweep that cannot make progress must not spin forever. */
	for (int round = 0; round < 100; round++) {
		if ((rc = store_reg_due(st, now, ids, SWEEP_BATCH, &n, e)) != AM_OK)
			return rc;
		for (size_t i = 0; i < n; i++) {
			bool expired;

			if ((rc = expire_one(env, st, ids[i], now, &expired, e)) != AM_OK)
				return rc;
			*count += expired ? 1 : 0;
		}
		if (n < SWEEP_BATCH)
			break;
	}
	{
		/* Replay records outlive their tokens' windows by nothing. */
		int purged = 0;

		if ((rc = store_jti_purge(st, now, &purged, e)) != AM_OK)
			return rc;
		if (purged > 0)
			log_debug("jti records purged count=%d", purged);
	}
	return AM_OK;
}
