/* The operator's operations (flows/admin.h). Reads go straight to the
 * store; changes go through the operator flows of agent.c, which write
 * each state change and its audit event in one transaction. */
#include "flows/admin.h"

#include <stdlib.h>
#include <string.h>

#include "core/json.h"
#include "core/limits.h"
#include "core/log.h"

static json_t *
reg_json(const struct store_reg *r)
{
	json_t *o = json_object();

	json_object_set_new(o, "id", json_string(r->id));
	json_object_set_new(o, "kind", json_string(store_kind_name(r->kind)));
	json_object_set_new(o, "status", json_string(store_status_name(r->status)));
	json_object_set_new(o, "credential_type",
			    json_string(store_cred_type_name(r->credential_type)));
	json_object_set_new(o, "email", r->email[0] != '\0' ? json_string(r->email) : json_null());
	json_object_set_new(o, "user_id",
			    r->user_id[0] != '\0' ? json_string(r->user_id) : json_null());
	json_object_set_new(o, "iss", r->iss[0] != '\0' ? json_string(r->iss) : json_null());
	json_object_set_new(o, "sub", r->sub[0] != '\0' ? json_string(r->sub) : json_null());
	json_object_set_new(o, "agent_platform",
			    r->agent_platform[0] != '\0' ? json_string(r->agent_platform)
							 : json_null());
	json_object_set_new(o, "ip", r->ip[0] != '\0' ? json_string(r->ip) : json_null());
	json_object_set_new(o, "created_at", am_json_time(r->created_at));
	json_object_set_new(o, "expires_at", am_json_time(r->expires_at));
	json_object_set_new(o, "claimed_at", am_json_time(r->claimed_at));
	return o;
}

static json_t *
cred_json(const struct store_cred_info *c)
{
	json_t *o = json_object();

	json_object_set_new(o, "id", json_string(c->id));
	json_object_set_new(o, "type", json_string(store_cred_type_name(c->type)));
	json_object_set_new(o, "hash_prefix", json_string(c->hash_prefix));
	json_object_set_new(o, "scopes", am_json_scopes(c->scopes));
	json_object_set_new(o, "source", json_string(c->source));
	json_object_set_new(o, "user_id",
			    c->user_id[0] != '\0' ? json_string(c->user_id) : json_null());
	json_object_set_new(o, "created_at", am_json_time(c->created_at));
	json_object_set_new(o, "expires_at", am_json_time(c->expires_at));
	json_object_set_new(o, "revoked_at", am_json_time(c->revoked_at));
	return o;
}

enum am_err
flow_admin_search(const struct flow_env *env, struct store *st, const struct store_reg_filter *f,
		  size_t limit, json_t **out, struct am_error *e)
{
	struct store_reg *regs;
	json_t *list, *res;
	size_t n = 0;
	enum am_err rc;

	(void)env;
	if (limit == 0 || limit > AM_ADMIN_PAGE_MAX)
		return am_fail(e, AM_E_INVALID_REQUEST, "limit is 1 to %d", AM_ADMIN_PAGE_MAX);
	if ((regs = calloc(limit, sizeof(*regs))) == NULL)
		return am_fail(e, AM_E_INTERNAL, "out of memory");
	if ((rc = store_reg_search(st, f, regs, limit, &n, e)) != AM_OK) {
		free(regs);
		return rc;
	}
	list = json_array();
	for (size_t i = 0; i < n; i++)
		json_array_append_new(list, reg_json(&regs[i]));
	/* A full page may have a next one: its cursor is the last id. */
	res = json_pack("{s:o, s:o}", "registrations", list, "next",
			n == limit ? json_string(regs[n - 1].id) : json_null());
	free(regs);
	if (res == NULL)
		return am_fail(e, AM_E_INTERNAL, "out of memory");
	*out = res;
	return AM_OK;
}

enum am_err
flow_admin_show(const struct flow_env *env, struct store *st, const char *id, json_t **out,
		struct am_error *e)
{
	struct store_reg reg;
	struct store_cred_info *creds = NULL;
	char *lines[AM_ADMIN_AUDIT_MAX];
	size_t ncreds = 0, nlines = 0;
	json_t *res = NULL, *cj, *aj;
	enum block_kind kind;
	enum am_err rc;

	(void)env;
	if ((rc = store_reg_by_id(st, id, &reg, e)) != AM_OK)
		return rc == AM_E_NOT_FOUND ? am_fail(e, AM_E_NOT_FOUND, "no such registration")
					    : rc;
	if ((creds = calloc(AM_ADMIN_CREDS_MAX, sizeof(*creds))) == NULL)
		return am_fail(e, AM_E_INTERNAL, "out of memory");
	if ((rc = store_cred_list(st, id, creds, AM_ADMIN_CREDS_MAX, &ncreds, e)) != AM_OK ||
	    (rc = store_audit_list(st, id, lines, AM_ADMIN_AUDIT_MAX, &nlines, e)) != AM_OK)
		goto out;
	rc = store_block_find(st, reg.iss[0] != '\0' ? reg.iss : NULL,
			      reg.sub[0] != '\0' ? reg.sub : NULL,
			      reg.user_id[0] != '\0' ? reg.user_id : NULL, reg.id, &kind, e);
	if (rc != AM_OK && rc != AM_E_NOT_FOUND)
		goto out;
	cj = json_array();
	for (size_t i = 0; i < ncreds; i++)
		json_array_append_new(cj, cred_json(&creds[i]));
	aj = json_array();
	for (size_t i = 0; i < nlines; i++) {
		/* The rows are our own JSON lines; one that no longer parses is
		 * shown as its text rather than dropped. */
		json_t *ev = json_loads(lines[i], 0, NULL);

		json_array_append_new(aj, ev != NULL ? ev : json_string(lines[i]));
	}
	res = json_pack("{s:o, s:o, s:o, s:o}", "registration", reg_json(&reg), "credentials", cj,
			"audit", aj, "blocked",
			rc == AM_OK ? json_string(store_block_kind_name(kind)) : json_null());
	rc = res != NULL ? AM_OK : am_fail(e, AM_E_INTERNAL, "out of memory");
	if (rc == AM_OK)
		*out = res;
out:
	for (size_t i = 0; i < nlines; i++)
		free(lines[i]);
	free(creds);
	return rc;
}

/* The operator.revoked_all event: --all names no block, so this is what
 * records who revoked everything. */
static enum am_err
record_revoke_all(const struct flow_env *env, struct store *st, const char *actor, int count,
		  struct am_error *e)
{
	struct audit_batch batch = {0};
	int64_t now = am_clock_now(&env->clock);
	enum am_err rc;

	if ((rc = store_begin(st, e)) != AM_OK)
		return rc;
	if ((rc = audit_add(st, &batch, env->cfg->tenant, now, "operator.revoked_all", NULL,
			    json_pack("{s:s, s:i}", "actor", actor, "credentials", count), e)) !=
		    AM_OK ||
	    (rc = store_commit(st, e)) != AM_OK) {
		store_rollback(st);
		audit_discard(&batch);
		return rc;
	}
	audit_flush(env->audit, &batch);
	return AM_OK;
}

enum am_err
flow_admin_revoke(const struct flow_env *env, struct store *st, const char *actor,
		  const struct admin_target *t, json_t **out, struct am_error *e)
{
	struct store_cred_filter all = {0};
	bool created = false;
	int count = 0;
	enum am_err rc;

	if (t->all) {
		if ((rc = flow_revoke_bulk(env, st, &all, "operator", &count, e)) != AM_OK ||
		    (rc = record_revoke_all(env, st, actor, count, e)) != AM_OK)
			return rc;
	} else if ((rc = flow_revoke_block(env, st, t->kind, t->value, t->sub, actor, &count,
					   &created, e)) != AM_OK) {
		return rc;
	}
	log_info("operator revoke actor=%s target=%s revoked=%d", actor,
		 t->all ? "all" : store_block_kind_name(t->kind), count);
	*out = json_pack("{s:i, s:o}", "revoked", count, "block",
			 t->all ? json_null() : json_string(created ? "created" : "existed"));
	return *out != NULL ? AM_OK : am_fail(e, AM_E_INTERNAL, "out of memory");
}

enum am_err
flow_admin_unblock(const struct flow_env *env, struct store *st, const char *actor,
		   const struct admin_target *t, struct am_error *e)
{
	if (t->all)
		return am_fail(e, AM_E_INVALID_REQUEST, "unblock names one block, not all");
	return flow_unblock(env, st, t->kind, t->value, t->sub, actor, e);
}
