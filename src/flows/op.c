/* The durable steps of struct flow_pending_op (flows.h): an email
 * registration, a claim start, an OTP challenge or a revocation handed to
 * the group-commit writer, run inline without one, and what follows the
 * commit (events, log line, mail). Shared by registration.c, claim.c and
 * agent.c, and calling none of them, so the flows have no cycle through
 * it. */
#include <string.h>

#include "core/log.h"
#include "flows/audit.h"
#include "flows/internal.h"

static enum am_err
op_job(struct store *st, void *arg, struct am_error *e)
{
	struct flow_pending_op *p = arg;

	(void)e;
	/* The step opens and ends its own transaction (a savepoint of the
	 * batch): its refusal is its answer, not a failure of the batch. */
	audit_discard(&p->batch); /* a retried job starts clean */
	memset(&p->err, 0, sizeof(p->err));
	p->mail_due = false;
	p->rc = p->step(st, p, &p->err);
	if (p->rc != AM_OK)
		audit_discard(&p->batch);
	return AM_OK;
}

static void
op_done(struct store_job *job)
{
	struct flow_pending_op *p = job->arg;

	p->done(p->done_arg);
}

enum am_err
flow_op_submit(struct flow_pending_op *p, void (*done)(void *arg), void *done_arg,
	       struct am_error *e)
{
	enum am_err rc;

	p->done = done;
	p->done_arg = done_arg;
	p->job = (struct store_job){.run = op_job, .done = op_done, .arg = p};
	if ((rc = store_writer_submit(p->env->writer, &p->job, e)) != AM_OK)
		flow_pending_op_wipe(p);
	return rc;
}

/* What follows the commit of a step: its events, its log line, its mail. */
static enum am_err
op_after(struct flow_pending_op *p, struct am_error *e)
{
	const struct flow_env *env = p->env;
	enum am_err rc = AM_OK;

	audit_flush(env->audit, &p->batch);
	switch (p->kind) {
	case FLOW_OP_REGISTER_EMAIL:
		log_info("registration created id=%s kind=email", p->reg.id);
		break;
	case FLOW_OP_CLAIM_START:
		if (p->mail_due)
			log_info("claim requested registration=%s attempt=%s",
				 p->start.registration_id, p->attempt_id);
		break;
	case FLOW_OP_CHALLENGE:
		log_info("otp generated registration=%s attempt=%s", p->challenge.registration_id,
			 p->attempt_id);
		break;
	case FLOW_OP_CLAIM_REJECT:
		log_info("claim rejected by the user registration=%s attempt=%s",
			 p->start.registration_id, p->attempt_id);
		break;
	case FLOW_OP_CEREMONY_START:
		log_info("claim requested registration=%s attempt=%s ceremony=user_code",
			 p->ceremony.registration_id, p->ceremony.attempt_id);
		break;
	case FLOW_OP_CEREMONY_COMPLETE:
	case FLOW_OP_CEREMONY_DENY:
	case FLOW_OP_READBACK_CONFIRM:
	case FLOW_OP_READBACK_COMPLETE:
		break; /* logged by the step: its ids are not kept past it */
	case FLOW_OP_REVOKE:
		if (p->set_event && !p->set_handled)
			log_info("SET accepted provider=%s events=%zu none handled", p->provider,
				 p->set_events);
		else if (p->set_event)
			log_info("SET processed provider=%s revoked=%d", p->provider, p->count);
		else if (p->provider != NULL)
			log_info("logout token processed provider=%s revoked=%d", p->provider,
				 p->count);
		else
			log_info("credentials revoked by their holder registration=%s count=%d",
				 p->registration_id, p->count);
		break;
	}
	/* With a mail worker the mail is a committed queue row by now: this
	 * only wakes the worker. Without one (tests, tools) it is sent here;
	 * if that fails the agent is told to retry. */
	if (p->mail_due)
		rc = flow_send_claim_mail(env, p->mail_to, p->mail_token, p->mail_expires, e);
	p->mail_due = false;
	flow_result_wipe(p->mail_token, sizeof(p->mail_token));
	return rc;
}

enum am_err
flow_op_run_here(struct store *st, struct flow_pending_op *p, struct am_error *e)
{
	audit_discard(&p->batch);
	p->mail_due = false;
	if ((p->rc = p->step(st, p, e)) != AM_OK) {
		audit_discard(&p->batch);
		return p->rc;
	}
	p->job.rc = AM_OK;
	return op_after(p, e);
}

enum am_err
flow_pending_op_result(struct flow_pending_op *p, struct am_error *e)
{
	if (p->job.rc != AM_OK) {
		*e = p->job.err;
		return p->job.rc;
	}
	if (p->rc != AM_OK) {
		*e = p->err;
		return p->rc;
	}
	return op_after(p, e);
}

void
flow_pending_op_wipe(struct flow_pending_op *p)
{
	audit_discard(&p->batch);
	flow_result_wipe(&p->reg_res, sizeof(p->reg_res));
	flow_result_wipe(&p->challenge, sizeof(p->challenge));
	flow_result_wipe(&p->ceremony, sizeof(p->ceremony));
	flow_result_wipe(p->user_code, sizeof(p->user_code));
	flow_result_wipe(p->mail_token, sizeof(p->mail_token));
	flow_result_wipe(p->token, sizeof(p->token));
	flow_result_wipe(p->refresh_token, sizeof(p->refresh_token));
}
