/* POST /agent/auth for the user-claimed flows: anonymous and verified_email. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "core/log.h"
#include "core/str.h"
#include "flows/internal.h"

/* The registration row and claim token common to both user-claimed kinds. */
static enum am_err
new_registration(const struct flow_env *env, enum reg_kind kind, enum reg_status status,
		 enum cred_type type, const char *ip, struct store_reg *reg, struct reg_result *out,
		 struct am_error *e)
{
	int64_t now = flow_now(env);
	enum am_err rc;

	memset(reg, 0, sizeof(*reg));
	if ((rc = flow_ordered_id("reg_", reg->id, sizeof(reg->id), e)) != AM_OK ||
	    (rc = flow_mint_claim_token(reg, out->claim_token, sizeof(out->claim_token), e)) !=
		    AM_OK)
		return rc;
	reg->kind = kind;
	reg->status = status;
	reg->credential_type = type;
	reg->created_at = now;
	reg->expires_at = am_time_add(now, env->cfg->ttl_registration);
	am_copy(reg->ip, sizeof(reg->ip), ip != NULL ? ip : "");
	am_copy(out->registration_id, sizeof(out->registration_id), reg->id);
	out->kind = kind;
	out->claim_token_expires = reg->expires_at;
	am_copy(out->post_claim_scopes, sizeof(out->post_claim_scopes),
		env->cfg->scopes_post_claim);
	return AM_OK;
}

static json_t *
created_fields(const char *type, const char *ip)
{
	return json_pack("{s:s, s:s?}", "registration_type", type, "ip", ip);
}

/* The checks and secrets of an anonymous registration, before any write. */
static enum am_err
anonymous_prepare(const struct flow_env *env, const char *ip, const char *requested_type,
		  struct flow_pending_reg *p, struct am_error *e)
{
	int64_t retry_after;
	enum cred_type type;
	enum am_err rc;

	memset(p, 0, sizeof(*p));
	p->env = env;
	if (!env->cfg->flow_anonymous)
		return am_fail(e, AM_E_ANONYMOUS_NOT_ENABLED,
			       "this service does not accept anonymous registration");
	if ((rc = flow_cred_type(requested_type, CRED_API_KEY, &type, e)) != AM_OK)
		return rc;
	if (type != CRED_API_KEY)
		return am_fail(e, AM_E_UNSUPPORTED_CREDENTIAL_TYPE,
			       "anonymous registration issues api_key credentials only");
	if ((rc = flow_rate_check(env, "anonymous", FLOW_RATE_PER_IP, ip, &retry_after, e)) !=
		    AM_OK ||
	    (rc = flow_rate_check(env, "anonymous", FLOW_RATE_GLOBAL, ip, &retry_after, e)) !=
		    AM_OK)
		return rc;
	if ((rc = new_registration(env, REG_ANONYMOUS, REG_UNCLAIMED, type, ip, &p->reg, &p->res,
				   e)) != AM_OK ||
	    (rc = flow_new_credential(env, p->reg.id, type, env->cfg->scopes_pre_claim, NULL,
				      "anonymous", NULL, NULL, &p->cred, &p->res, e)) != AM_OK ||
	    (rc = audit_prepare(&p->batch, env->cfg->tenant, p->reg.created_at,
				"registration.created", p->reg.id,
				created_fields("anonymous", p->reg.ip[0] != '\0' ? p->reg.ip : NULL),
				e)) != AM_OK) {
		audit_discard(&p->batch);
		flow_result_wipe(&p->res, sizeof(p->res));
	}
	return rc;
}

/* The writes of an anonymous registration: one job of a batch (or one
 * transaction of its own, through flow_register_anonymous). Its audit line
 * stays prepared in p->batch whatever happens; the wipe discards it. */
static enum am_err
anonymous_write(struct store *st, void *arg, struct am_error *e)
{
	struct flow_pending_reg *p = arg;
	enum am_err rc;

	/* The event's line was made in anonymous_prepare, on the worker; a
	 * run after a rollback writes its row again. */
	if ((rc = store_reg_insert(st, &p->reg, e)) != AM_OK ||
	    (rc = store_cred_insert(st, &p->cred, e)) != AM_OK ||
	    (rc = audit_store_prepared(st, &p->batch, e)) != AM_OK)
		return rc;
	return AM_OK;
}

static void
pending_done(struct store_job *job)
{
	struct flow_pending_reg *p = job->arg;

	p->done(p->done_arg);
}

enum am_err
flow_register_anonymous_submit(const struct flow_env *env, const char *ip,
			       const char *requested_type, struct flow_pending_reg *p,
			       void (*done)(void *arg), void *done_arg, struct am_error *e)
{
	enum am_err rc;

	if ((rc = anonymous_prepare(env, ip, requested_type, p, e)) != AM_OK)
		return rc;
	p->done = done;
	p->done_arg = done_arg;
	p->job = (struct store_job){
		.run = anonymous_write, .done = pending_done, .arg = p, .rerun = true};
	if ((rc = store_writer_submit(env->writer, &p->job, e)) != AM_OK)
		flow_pending_reg_wipe(p);
	return rc;
}

enum am_err
flow_pending_reg_result(struct flow_pending_reg *p, struct reg_result *out, struct am_error *e)
{
	if (p->job.rc != AM_OK) {
		*e = p->job.err;
		return p->job.rc;
	}
	audit_flush(p->env->audit, &p->batch);
	/* One line for both (a log line is a write(2) per request). */
	log_info("registration created id=%s kind=anonymous scopes=\"%s\" credential=%s type=%s",
		 p->reg.id, p->res.scopes, p->cred.id, store_cred_type_name(p->cred.type));
	*out = p->res;
	return AM_OK;
}

void
flow_pending_reg_wipe(struct flow_pending_reg *p)
{
	audit_discard(&p->batch);
	flow_result_wipe(&p->res, sizeof(p->res));
}

enum am_err
flow_register_anonymous(const struct flow_env *env, struct store *st, const char *ip,
			const char *requested_type, struct reg_result *out, struct am_error *e)
{
	struct flow_pending_reg p;
	enum am_err rc;

	if ((rc = anonymous_prepare(env, ip, requested_type, &p, e)) != AM_OK)
		return rc;
	if ((rc = store_begin(st, e)) != AM_OK)
		goto wipe;
	if ((rc = anonymous_write(st, &p, e)) != AM_OK || (rc = store_commit(st, e)) != AM_OK) {
		store_rollback(st);
		goto wipe;
	}
	p.job.rc = AM_OK;
	rc = flow_pending_reg_result(&p, out, e);
wipe:
	flow_pending_reg_wipe(&p);
	return rc;
}

/* The checks and secrets of an email registration, before any write. */
static enum am_err
email_prepare(const struct flow_env *env, const char *ip, const char *email,
	      const char *requested_type, struct flow_pending_op *p, struct am_error *e)
{
	int64_t retry_after;
	enum cred_type type;
	enum am_err rc;

	memset(p, 0, sizeof(*p));
	p->env = env;
	p->kind = FLOW_OP_REGISTER_EMAIL;
	if (!env->cfg->flow_verified_email)
		return am_fail(e, AM_E_VERIFIED_EMAIL_NOT_ENABLED,
			       "this service does not accept verified_email assertions");
	if ((rc = flow_cred_type(requested_type, CRED_API_KEY, &type, e)) != AM_OK)
		return rc;
	if (!mail_address_ok(email))
		return am_fail(e, AM_E_INVALID_REQUEST,
			       "assertion must be a plain email address (user@example.com)");
	/* The address was checked above: only a well-formed request spends the
	 * global budget. */
	if ((rc = flow_rate_check(env, "identity", FLOW_RATE_PER_IP, ip, &retry_after, e)) !=
		    AM_OK ||
	    (rc = flow_rate_check(env, "identity", FLOW_RATE_GLOBAL, ip, &retry_after, e)) != AM_OK)
		return rc;
	am_copy(p->ip, sizeof(p->ip), ip != NULL ? ip : "");
	if ((rc = new_registration(env, REG_EMAIL, REG_PENDING_CLAIM, type, ip, &p->reg,
				   &p->reg_res, e)) != AM_OK)
		goto wipe;
	if (!mail_address_normalize(email, p->reg.email, sizeof(p->reg.email))) {
		rc = am_fail(e, AM_E_INVALID_REQUEST,
			     "assertion must be a plain email address (user@example.com)");
		goto wipe;
	}
	return AM_OK;
wipe:
	flow_pending_op_wipe(p);
	return rc;
}

/* The transaction of an email registration: the row, its first claim
 * attempt (with its mail as a queue row) and both events. */
static enum am_err
email_step(struct store *st, struct flow_pending_op *p, struct am_error *e)
{
	const struct flow_env *env = p->env;
	const char *ip = p->ip[0] != '\0' ? p->ip : NULL;
	struct store_attempt att;
	enum am_err rc;

	if ((rc = store_begin(st, e)) != AM_OK)
		return rc;
	if ((rc = store_reg_insert(st, &p->reg, e)) != AM_OK ||
	    (rc = audit_add(st, &p->batch, env->cfg->tenant, p->reg.created_at,
			    "registration.created", p->reg.id,
			    created_fields("email-verification", ip), e)) != AM_OK ||
	    (rc = flow_new_attempt(env, st, &p->reg, p->reg.email, ip, &att, p->mail_token, e)) !=
		    AM_OK ||
	    (rc = audit_add(
		     st, &p->batch, env->cfg->tenant, p->reg.created_at, "claim.requested",
		     p->reg.id,
		     json_pack("{s:s, s:s}", "email", p->reg.email, "claim_attempt_id", att.id),
		     e)) != AM_OK ||
	    (rc = store_commit(st, e)) != AM_OK) {
		store_rollback(st);
		flow_result_wipe(p->mail_token, sizeof(p->mail_token));
		return rc;
	}
	p->mail_due = true;
	am_copy(p->mail_to, sizeof(p->mail_to), p->reg.email);
	am_copy(p->attempt_id, sizeof(p->attempt_id), att.id);
	p->mail_expires = att.expires_at;
	return AM_OK;
}

enum am_err
flow_register_email_submit(const struct flow_env *env, const char *ip, const char *email,
			   const char *requested_type, struct flow_pending_op *p,
			   void (*done)(void *arg), void *done_arg, struct am_error *e)
{
	enum am_err rc;

	if ((rc = email_prepare(env, ip, email, requested_type, p, e)) != AM_OK)
		return rc;
	p->step = email_step;
	return flow_op_submit(p, done, done_arg, e);
}

enum am_err
flow_register_email(const struct flow_env *env, struct store *st, const char *ip, const char *email,
		    const char *requested_type, struct reg_result *out, struct am_error *e)
{
	struct flow_pending_op p;
	enum am_err rc;

	if ((rc = email_prepare(env, ip, email, requested_type, &p, e)) != AM_OK)
		return rc;
	p.step = email_step;
	/* If the mail (sent here only without a mail worker) fails, the agent
	 * is told to retry; this registration then simply expires unclaimed. */
	if ((rc = flow_op_run_here(st, &p, e)) == AM_OK)
		*out = p.reg_res;
	flow_pending_op_wipe(&p);
	return rc;
}
