/* Whether a registration may have v0.6 tokens now: its status and scopes
 * (flow_v06_scopes) and the operator's blocks (flow_v06_unblocked). One
 * home for the rule, shared by the token exchange (identity.c) and the
 * refresh rotation (refresh.c). */
#include "core/config.h"
#include "flows/internal.h"

enum am_err
flow_v06_scopes(const struct flow_env *env, const struct store_reg *reg, const char **scopes,
		struct am_error *e)
{
	const struct am_config *cfg = env->cfg;
	int64_t now = flow_now(env);

	if (reg->kind == REG_AGENT) {
		const struct am_provider *p = am_config_provider(cfg, reg->iss);

		/* The reference's later fix: a non-anonymous registration
		 * exchanges only while claimed (not revoked, not pending). */
		if (reg->status != REG_CLAIMED)
			return am_fail(e, AM_E_INVALID_GRANT, "the registration is %s",
				       store_status_name(reg->status));
		if (p == NULL)
			return am_fail(e, AM_E_INVALID_GRANT,
				       "the registration's provider is no longer trusted here");
		*scopes = p->scopes;
		return AM_OK;
	}
	if (reg->status == REG_CLAIMED) {
		*scopes = cfg->scopes_post_claim;
		return AM_OK;
	}
	if (reg->kind == REG_ANONYMOUS &&
	    (reg->status == REG_UNCLAIMED || reg->status == REG_PENDING_CLAIM) &&
	    now < reg->expires_at) {
		/* v0.2's fix: pre-claim scopes for the whole ceremony */
		*scopes = cfg->scopes_pre_claim;
		return AM_OK;
	}
	return am_fail(e, AM_E_INVALID_GRANT, "the registration is %s",
		       reg->status == REG_UNCLAIMED || reg->status == REG_PENDING_CLAIM
			       ? "expired"
			       : store_status_name(reg->status));
}

enum am_err
flow_v06_unblocked(struct store *st, const struct store_reg *reg, struct am_error *e)
{
	enum block_kind kind;
	enum am_err rc;

	rc = store_block_find(st, reg->iss[0] != '\0' ? reg->iss : NULL,
			      reg->sub[0] != '\0' ? reg->sub : NULL,
			      reg->user_id[0] != '\0' ? reg->user_id : NULL, reg->id, &kind, e);
	if (rc == AM_OK)
		return am_fail(e, AM_E_INVALID_GRANT,
			       "this service's operator revoked access for this %s",
			       store_block_kind_name(kind));
	return rc == AM_E_NOT_FOUND ? AM_OK : rc;
}
