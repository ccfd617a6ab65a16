/* The user's rejection of a claim from the claim page (flows.h,
 * flow_claim_reject_submit): the v0.1 service guide asks services to make
 * rejecting an unrecognised request easy. */
#include <string.h>

#include "core/str.h"
#include "flows/internal.h"

static enum am_err
reject_step(struct store *st, struct flow_pending_op *p, struct am_error *e)
{
	const struct flow_env *env = p->env;
	struct store_attempt att;
	int64_t now = flow_now(env);
	enum am_err rc;

	if ((rc = store_begin(st, e)) != AM_OK)
		return rc;
	/* The same checks as the page that showed the button, inside the
	 * transaction: a claim completed meanwhile is not undone. */
	if ((rc = flow_claim_peek(env, st, p->token, &att, e)) != AM_OK)
		goto fail;
	if ((rc = store_attempt_close_all(st, att.registration_id, ATTEMPT_SUPERSEDED, e)) !=
		    AM_OK ||
	    (rc = audit_add(st, &p->batch, env->cfg->tenant, now, "claim.rejected",
			    att.registration_id,
			    json_pack("{s:s, s:s}", "claim_attempt_id", att.id, "email", att.email),
			    e)) != AM_OK ||
	    (rc = store_commit(st, e)) != AM_OK)
		goto fail;
	am_copy(p->start.registration_id, sizeof(p->start.registration_id), att.registration_id);
	am_copy(p->attempt_id, sizeof(p->attempt_id), att.id);
	return AM_OK;
fail:
	store_rollback(st);
	audit_discard(&p->batch);
	return rc;
}

enum am_err
flow_claim_reject_submit(const struct flow_env *env, const char *attempt_token,
			 struct flow_pending_op *p, void (*done)(void *arg), void *done_arg,
			 struct am_error *e)
{
	memset(p, 0, sizeof(*p));
	p->env = env;
	p->kind = FLOW_OP_CLAIM_REJECT;
	p->step = reject_step;
	if (!am_copy(p->token, sizeof(p->token), attempt_token)) {
		flow_pending_op_wipe(p);
		return am_fail(e, AM_E_CLAIM_SUPERSEDED,
			       "this link is not valid; ask your agent to start the claim again");
	}
	return flow_op_submit(p, done, done_arg, e);
}
