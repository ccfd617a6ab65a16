/* The operator's operations as flows (admin.c): search, show, revoke,
 * unblock. The admin API (service/admin_api.c) and the authmd-server revoke
 * and unblock commands both call these, so one code path changes state and
 * every change is an audit event naming the operator ("actor"). */
#ifndef AM_FLOWS_ADMIN_H
#define AM_FLOWS_ADMIN_H

#include <jansson.h>

#include "flows/flows.h"

/* What a revoke or unblock names: everything (revoke only), or one block
 * target as flow_revoke_block takes it. */
struct admin_target {
	bool all;
	enum block_kind kind;
	const char *value;
	const char *sub; /* BLOCK_SUBJECT only */
};

/* Up to limit (1..AM_ADMIN_PAGE_MAX) registrations matching f, as
 * {"registrations": [...], "next": cursor or null}; *out is the caller's.
 * A registration shows its fields but never a hash of a secret. */
enum am_err flow_admin_search(const struct flow_env *env, struct store *st,
			      const struct store_reg_filter *f, size_t limit, json_t **out,
			      struct am_error *e) AM_WUR;

/* Registration id with its credentials (ids and 8-hex hash prefixes, never
 * a secret) and its audit trail, as {"registration", "credentials",
 * "audit", "blocked"}; AM_E_NOT_FOUND when there is no such one. */
enum am_err flow_admin_show(const struct flow_env *env, struct store *st, const char *id,
			    json_t **out, struct am_error *e) AM_WUR;

/* Revokes what t names for actor (flow_revoke_block, or flow_revoke_bulk
 * for all followed by an operator.revoked_all event naming actor): *out is
 * {"revoked": N, "block": "created"|"existed"|null}. */
enum am_err flow_admin_revoke(const struct flow_env *env, struct store *st, const char *actor,
			      const struct admin_target *t, json_t **out,
			      struct am_error *e) AM_WUR;

/* Lifts the block t names (flow_unblock) for actor; AM_E_NOT_FOUND when
 * there was none. t->all is refused. */
enum am_err flow_admin_unblock(const struct flow_env *env, struct store *st, const char *actor,
			       const struct admin_target *t, struct am_error *e) AM_WUR;

#endif
