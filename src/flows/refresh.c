/* Refresh tokens (issue 14 item 6, proposal (b), WorkOS production): every
 * identity assertion handed out at /agent/identity and by the claim grant
 * comes with one, and POST /agent/identity {type: refresh} rotates it. A
 * family is the chain of rotations from one issue (migration 0014); each
 * rotation spends its token with a compare-and-set, so of two concurrent
 * refreshes exactly one wins and the other is a reuse. A reuse of a spent
 * token is what a thief (or the victim, after the thief) does: the whole
 * family is revoked, its newest token included. v0.1 credentials never get
 * one (v0.1 forbids it). Every write is one writer job: nothing is
 * answered before it is durable. */
#include <openssl/crypto.h>
#include <string.h>

#include "core/log.h"
#include "core/str.h"
#include "flows/internal.h"

enum am_err
flow_refresh_family_start_in_tx(const struct flow_env *env, struct store *st,
				const char *registration_id, char token[FLOW_SECRET_LEN],
				int64_t *expires, struct am_error *e)
{
	char family[STORE_ID_LEN], id[STORE_ID_LEN];
	uint8_t hash[AM_HASH_LEN];
	int64_t now = flow_now(env), exp = am_time_add(now, env->cfg->v06_refresh_ttl), gen;
	enum am_err rc;

	if ((rc = flow_ordered_id("rtf_", family, sizeof(family), e)) != AM_OK ||
	    (rc = flow_ordered_id("rt_", id, sizeof(id), e)) != AM_OK ||
	    (rc = am_rand_token(PREFIX_REFRESH_TOKEN, token, FLOW_SECRET_LEN, e)) != AM_OK)
		return rc;
	am_sha256_str(token, hash);
	/* The family remembers the generation: a revival (a fresh ID-JAG after
	 * a revocation) moves the registration on and leaves it behind. */
	if ((rc = store_reg_gen(st, registration_id, &gen, e)) != AM_OK ||
	    (rc = store_refresh_family_insert(st, family, registration_id, gen, now, e)) != AM_OK ||
	    (rc = store_refresh_insert(st, hash, id, family, now, exp, e)) != AM_OK) {
		OPENSSL_cleanse(token, FLOW_SECRET_LEN);
		return rc;
	}
	*expires = exp;
	return AM_OK;
}

/* A spent token came back: the family ends, durably, before the refusal is
 * answered (committed in the job's savepoint though the step fails). */
static enum am_err
reused(struct store *st, struct flow_pending_v06 *p, const struct store_refresh *rt,
       struct am_error *e)
{
	const struct flow_env *env = p->env;
	int64_t now = flow_now(env);
	enum am_err rc;

	if ((rc = store_refresh_family_revoke(st, rt->family_id, now, "reuse", e)) != AM_OK ||
	    (rc = audit_add(st, &p->batch, env->cfg->tenant, now, "refresh.reused",
			    rt->registration_id,
			    json_pack("{s:s, s:s}", "family_id", rt->family_id, "token_id", rt->id),
			    e)) != AM_OK ||
	    (rc = store_commit(st, e)) != AM_OK) {
		store_rollback(st);
		return rc;
	}
	p->keep_events = true;
	log_warn("refresh token reused registration=%s family=%s token=%s; family revoked",
		 rt->registration_id, rt->family_id, rt->id);
	return am_fail(e, AM_E_INVALID_GRANT,
		       "this refresh token was used already; every token of its family is "
		       "revoked: register again at /agent/identity");
}

/* The checks of the token's registration, inside the job's transaction:
 * same generation, live, not blocked; fills what the assertion needs. */
static enum am_err
registration_live(struct store *st, struct flow_pending_v06 *p, const struct store_refresh *rt,
		  struct store_reg *reg, struct am_error *e)
{
	const char *scopes;
	int64_t gen;
	enum am_err rc;

	rc = store_reg_by_id(st, rt->registration_id, reg, e);
	if (rc == AM_E_NOT_FOUND)
		return am_fail(e, AM_E_INVALID_GRANT, "the refresh token's registration is gone");
	if (rc != AM_OK || (rc = store_reg_gen(st, reg->id, &gen, e)) != AM_OK)
		return rc;
	if (gen != rt->gen)
		return am_fail(e, AM_E_INVALID_GRANT,
			       "the registration was revoked after this refresh token was issued; "
			       "register again at /agent/identity");
	if ((rc = flow_v06_scopes(p->env, reg, &scopes, e)) != AM_OK ||
	    (rc = flow_v06_unblocked(st, reg, e)) != AM_OK)
		return rc;
	p->assertion_gen = gen;
	am_copy(p->res.reg.scopes, sizeof(p->res.reg.scopes), scopes);
	p->email[0] = '\0';
	if (reg->kind != REG_AGENT && reg->status == REG_CLAIMED && reg->user_id[0] != '\0') {
		/* v0.4: the assertion of a claimed registration names its user */
		struct store_user u;

		if ((rc = store_user_by_id(st, reg->user_id, &u, e)) == AM_OK)
			am_copy(p->email, sizeof(p->email), u.email);
		else if (rc != AM_E_NOT_FOUND)
			return rc;
	}
	return AM_OK;
}

static enum am_err
rotate(struct store *st, struct flow_pending_v06 *p, struct am_error *e)
{
	const struct flow_env *env = p->env;
	struct v06_reg_result *res = &p->res;
	struct store_refresh rt;
	struct store_reg reg;
	char id[STORE_ID_LEN];
	uint8_t hash[AM_HASH_LEN];
	int64_t now = flow_now(env), exp = am_time_add(now, env->cfg->v06_refresh_ttl);
	enum am_err rc;

	p->keep_events = false;
	if ((rc = store_begin(st, e)) != AM_OK)
		return rc;
	rc = store_refresh_by_hash(st, p->refresh_hash, &rt, e);
	if (rc == AM_E_NOT_FOUND)
		rc = am_fail(e, AM_E_INVALID_GRANT, "the refresh token is unknown");
	if (rc != AM_OK)
		goto fail;
	if (rt.family_revoked_at != 0) {
		rc = am_fail(e, AM_E_INVALID_GRANT,
			     "the refresh token's family was revoked; register again at "
			     "/agent/identity");
		goto fail;
	}
	/* A spent token is a reuse whatever its age: only a copy can bring it. */
	if (rt.spent_at != 0)
		return reused(st, p, &rt, e);
	if (now >= rt.expires_at) {
		rc = am_fail(e, AM_E_INVALID_GRANT,
			     "the refresh token expired; register again at /agent/identity");
		goto fail;
	}
	if ((rc = registration_live(st, p, &rt, &reg, e)) != AM_OK)
		goto fail;
	/* The compare-and-set: a concurrent rotation (another replica's
	 * writer) that spent it first makes this one the reuse. */
	rc = store_refresh_spend(st, p->refresh_hash, now, e);
	if (rc == AM_E_NOT_FOUND)
		return reused(st, p, &rt, e);
	if (rc != AM_OK)
		goto fail;
	if ((rc = flow_ordered_id("rt_", id, sizeof(id), e)) != AM_OK ||
	    (rc = am_rand_token(PREFIX_REFRESH_TOKEN, res->refresh_token,
				sizeof(res->refresh_token), e)) != AM_OK)
		goto fail;
	am_sha256_str(res->refresh_token, hash);
	if ((rc = store_refresh_insert(st, hash, id, rt.family_id, now, exp, e)) != AM_OK ||
	    (rc = audit_add(st, &p->batch, env->cfg->tenant, now, "assertion.issued", reg.id,
			    json_pack("{s:s, s:s}", "grant", "refresh", "family_id", rt.family_id),
			    e)) != AM_OK ||
	    (rc = store_commit(st, e)) != AM_OK)
		goto fail;
	res->refresh_expires = exp;
	am_copy(res->reg.registration_id, sizeof(res->reg.registration_id), reg.id);
	res->reg.kind = reg.kind;
	return AM_OK;
fail:
	store_rollback(st);
	OPENSSL_cleanse(res->refresh_token, sizeof(res->refresh_token));
	return rc;
}

/* FLOW_V06_REFRESH's writer job: the rotation's own outcome in p->rc (a
 * refusal is its answer, not a failure of the batch); a retried job starts
 * clean. flow_pending_v06_result gives the answer. */
static enum am_err
refresh_job(struct store *st, void *arg, struct am_error *e)
{
	struct flow_pending_v06 *p = arg;

	(void)e;
	audit_discard(&p->batch);
	memset(&p->err, 0, sizeof(p->err));
	OPENSSL_cleanse(p->res.refresh_token, sizeof(p->res.refresh_token));
	p->rc = rotate(st, p, &p->err);
	if (p->rc != AM_OK && !p->keep_events)
		audit_discard(&p->batch);
	return AM_OK;
}

static void
refresh_done(struct store_job *job)
{
	struct flow_pending_v06 *p = job->arg;

	p->done(p->done_arg);
}

enum am_err
flow_v06_refresh_submit(const struct flow_env *env, struct store *st, struct skey *keys,
			const char *refresh_token, struct flow_pending_v06 *p,
			void (*done)(void *arg), void *done_arg, struct am_error *e)
{
	struct store_refresh rt;
	enum am_err rc;

	memset(p, 0, sizeof(*p));
	p->env = env;
	p->keys = keys;
	p->kind = FLOW_V06_REFRESH;
	if (strncmp(refresh_token, PREFIX_REFRESH_TOKEN, strlen(PREFIX_REFRESH_TOKEN)) != 0 ||
	    strlen(refresh_token) >= FLOW_SECRET_LEN)
		return am_fail(e, AM_E_INVALID_GRANT, "the refresh token is unknown");
	am_sha256_str(refresh_token, p->refresh_hash);
	/* A read on the caller's connection first: an unknown token (a guess,
	 * a flood) costs the writer nothing. The job decides the rest. */
	rc = store_refresh_by_hash(st, p->refresh_hash, &rt, e);
	if (rc == AM_E_NOT_FOUND)
		return am_fail(e, AM_E_INVALID_GRANT, "the refresh token is unknown");
	if (rc != AM_OK)
		return rc;
	p->done = done;
	p->done_arg = done_arg;
	p->job = (struct store_job){.run = refresh_job, .done = refresh_done, .arg = p};
	return store_writer_submit(env->writer, &p->job, e);
}
