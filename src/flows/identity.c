/* Protocol v0.6 (issue 13): /agent/identity registrations answered with a
 * service-signed identity assertion, and the /oauth2/token exchange of that
 * assertion (or of a provider's ID-JAG) for an access token. The rows are
 * the v0.1 rows: one registration, one delegation, one credential table.
 * Every write goes through the group commit (struct flow_pending_v06):
 * signatures and key fetches on the request's thread, the transaction as a
 * job of the writer, the answer once it is durable. */
#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/str.h"
#include "flows/dpop.h"
#include "flows/internal.h"
#include "jose/jose.h"
#include "jose/skey.h"

#define GEN_CLAIM "authmd_gen" /* the registration generation (migration 0007) */

enum am_err
flow_v06_mint(const struct flow_env *env, struct skey *keys, const char *registration_id,
	      const char *registration_type, int64_t gen, const char *email, char **out,
	      int64_t *expires, struct am_error *e)
{
	int64_t now = flow_now(env), exp = am_time_add(now, env->cfg->v06_assertion_ttl);
	char jti[STORE_ID_LEN];
	json_t *claims;
	enum am_err rc;

	if ((rc = am_rand_id("ia_", jti, sizeof(jti), e)) != AM_OK)
		return rc;
	claims = json_pack("{s:s, s:s, s:s, s:I, s:I, s:s, s:s, s:I}", "iss", env->cfg->public_url,
			   "aud", env->cfg->public_url, "sub", registration_id, "iat",
			   (json_int_t)now, "exp", (json_int_t)exp, "jti", jti, "registration_type",
			   registration_type, GEN_CLAIM, (json_int_t)gen);
	if (claims == NULL)
		return am_fail(e, AM_E_INTERNAL, "out of memory");
	/* v0.4: the assertion of a claimed registration names its user */
	if (email != NULL && (json_object_set_new(claims, "email", json_string(email)) != 0 ||
			      json_object_set_new(claims, "email_verified", json_true()) != 0)) {
		json_decref(claims);
		return am_fail(e, AM_E_INTERNAL, "out of memory");
	}
	rc = skey_sign(keys, FLOW_ASSERTION_TYP, claims, now, out, e);
	json_decref(claims);
	if (rc == AM_OK)
		*expires = exp;
	return rc;
}

static enum am_err v06_job(struct store *st, void *arg, struct am_error *e);
static enum am_err job_submit(struct flow_pending_v06 *p, void (*done)(void *arg), void *done_arg,
			      struct am_error *e);

void
flow_v06_reg_wipe(struct v06_reg_result *r)
{
	flow_result_wipe(&r->reg, sizeof(r->reg));
	flow_result_wipe(&r->claim, sizeof(r->claim));
	OPENSSL_cleanse(r->refresh_token, sizeof(r->refresh_token));
	free(r->assertion);
	r->assertion = NULL;
}

void
flow_pending_v06_wipe(struct flow_pending_v06 *p)
{
	if (p->via_idjag)
		flow_pending_idjag_wipe(&p->idjag);
	audit_discard(&p->batch);
	flow_v06_reg_wipe(&p->res);
	flow_result_wipe(&p->token, sizeof(p->token));
}

static void
v06_done(struct store_job *job)
{
	struct flow_pending_v06 *p = job->arg;

	p->done(p->done_arg);
}

/* The anonymous registration's transaction (a savepoint of the batch). */
static enum am_err
anonymous_write(struct store *st, struct flow_pending_v06 *p, struct am_error *e)
{
	const struct flow_env *env = p->env;
	const struct store_reg *reg = &p->reg;
	enum am_err rc;

	if ((rc = store_begin(st, e)) != AM_OK)
		return rc;
	if ((rc = store_reg_insert(st, reg, e)) != AM_OK ||
	    (rc = audit_add(st, &p->batch, env->cfg->tenant, reg->created_at,
			    "registration.created", reg->id,
			    json_pack("{s:s, s:s, s:s?}", "registration_type", "anonymous",
				      "protocol", "v0.6", "ip",
				      reg->ip[0] != '\0' ? reg->ip : NULL),
			    e)) != AM_OK ||
	    (rc = audit_add(st, &p->batch, env->cfg->tenant, reg->created_at, "assertion.issued",
			    reg->id, json_object(), e)) != AM_OK ||
	    (rc = flow_refresh_family_start_in_tx(env, st, reg->id, p->res.refresh_token,
						  &p->res.refresh_expires, e)) != AM_OK ||
	    (rc = store_commit(st, e)) != AM_OK) {
		store_rollback(st);
		return rc;
	}
	return AM_OK;
}

enum am_err
flow_v06_register_anonymous_submit(const struct flow_env *env, struct skey *keys, const char *ip,
				   struct flow_pending_v06 *p, void (*done)(void *arg),
				   void *done_arg, struct am_error *e)
{
	struct store_reg *reg = &p->reg;
	int64_t now = flow_now(env), retry_after;
	enum am_err rc;

	memset(p, 0, sizeof(*p));
	p->env = env;
	p->keys = keys;
	p->kind = FLOW_V06_ANONYMOUS;
	if (!env->cfg->flow_anonymous)
		return am_fail(e, AM_E_ANONYMOUS_NOT_ENABLED,
			       "this service does not accept anonymous registration");
	if ((rc = flow_rate_check(env, "anonymous", FLOW_RATE_PER_IP, ip, &retry_after, e)) !=
		    AM_OK ||
	    (rc = flow_rate_check(env, "anonymous", FLOW_RATE_GLOBAL, ip, &retry_after, e)) !=
		    AM_OK)
		return rc;
	if ((rc = flow_ordered_id("reg_", reg->id, sizeof(reg->id), e)) != AM_OK ||
	    (rc = flow_mint_claim_token(reg, p->res.reg.claim_token,
					sizeof(p->res.reg.claim_token), e)) != AM_OK)
		goto fail;
	reg->kind = REG_ANONYMOUS;
	reg->status = REG_UNCLAIMED;
	reg->credential_type = CRED_ACCESS_TOKEN; /* what /oauth2/token hands out */
	reg->created_at = now;
	reg->expires_at = am_time_add(now, env->cfg->ttl_registration);
	am_copy(reg->ip, sizeof(reg->ip), ip != NULL ? ip : "");
	am_copy(p->res.reg.registration_id, sizeof(p->res.reg.registration_id), reg->id);
	p->res.reg.kind = REG_ANONYMOUS;
	p->res.reg.claim_token_expires = reg->expires_at;
	am_copy(p->res.reg.scopes, sizeof(p->res.reg.scopes), env->cfg->scopes_pre_claim);
	am_copy(p->res.reg.post_claim_scopes, sizeof(p->res.reg.post_claim_scopes),
		env->cfg->scopes_post_claim);
	/* Signing is CPU work only: done here, so the writer's batch holds
	 * the writes alone. */
	if ((rc = flow_v06_mint(env, keys, reg->id, "anonymous", 0, NULL, &p->res.assertion,
				&p->res.assertion_expires, e)) != AM_OK)
		goto fail;
	if ((rc = job_submit(p, done, done_arg, e)) != AM_OK)
		goto fail;
	return AM_OK;
fail:
	flow_pending_v06_wipe(p);
	return rc;
}

/* FLOW_V06_IDJAG, in the registration's job: the generation the assertion
 * will carry, and its event. */
static enum am_err
assertion_issued(struct store *st, struct flow_pending_v06 *p, const char *reg_id,
		 struct am_error *e)
{
	enum am_err rc;

	if ((rc = store_begin(st, e)) != AM_OK)
		return rc;
	if ((rc = store_reg_gen(st, reg_id, &p->assertion_gen, e)) != AM_OK ||
	    (rc = audit_add(st, &p->batch, p->env->cfg->tenant, flow_now(p->env),
			    "assertion.issued", reg_id, json_object(), e)) != AM_OK ||
	    (rc = flow_refresh_family_start_in_tx(p->env, st, reg_id, p->res.refresh_token,
						  &p->res.refresh_expires, e)) != AM_OK ||
	    (rc = store_commit(st, e)) != AM_OK) {
		store_rollback(st);
		return rc;
	}
	return AM_OK;
}

/* The one-element-array or string aud of our own assertion must be us. */
static bool
aud_is(const json_t *claims, const char *want)
{
	json_t *aud = json_object_get(claims, "aud");

	if (json_is_array(aud) && json_array_size(aud) == 1)
		aud = json_array_get(aud, 0);
	return json_is_string(aud) && strcmp(json_string_value(aud), want) == 0;
}

/* Verifies this service's own assertion; every failure is invalid_grant
 * (RFC 7523 3.1), the detail says which check. */
static enum am_err
verify_own(const struct flow_env *env, struct skey *keys, const char *assertion,
	   char reg_id[STORE_ID_LEN], int64_t *gen, struct am_error *e)
{
	const struct am_config *cfg = env->cfg;
	struct jose_token t;
	struct am_error why = {0};
	int64_t now = flow_now(env);
	json_t *c;
	const char *sub;
	enum am_err rc;

	if (skey_verify(keys, assertion, FLOW_ASSERTION_TYP, now, &t, &why) != AM_OK)
		return am_fail(e, AM_E_INVALID_GRANT, "the assertion does not verify: %s",
			       why.detail);
	c = t.claims;
	sub = json_string_value(json_object_get(c, "sub"));
	if (!json_is_string(json_object_get(c, "iss")) ||
	    strcmp(json_string_value(json_object_get(c, "iss")), cfg->public_url) != 0)
		rc = am_fail(e, AM_E_INVALID_GRANT, "the assertion's iss must be %s",
			     cfg->public_url);
	else if (!aud_is(c, cfg->public_url))
		rc = am_fail(e, AM_E_INVALID_GRANT, "the assertion's aud must be %s",
			     cfg->public_url);
	else if (!json_is_integer(json_object_get(c, "exp")) ||
		 now >= am_time_add(json_integer_value(json_object_get(c, "exp")), cfg->clock_skew))
		rc = am_fail(e, AM_E_INVALID_GRANT,
			     "the assertion expired; register again at /agent/identity");
	else if (!json_is_integer(json_object_get(c, "iat")) ||
		 json_integer_value(json_object_get(c, "iat")) > am_time_add(now, cfg->clock_skew))
		rc = am_fail(e, AM_E_INVALID_GRANT, "the assertion's iat is in the future");
	else if (sub == NULL || strlen(sub) >= STORE_ID_LEN ||
		 !json_is_integer(json_object_get(c, GEN_CLAIM)))
		rc = am_fail(e, AM_E_INVALID_GRANT, "the assertion names no registration");
	else {
		am_copy(reg_id, STORE_ID_LEN, sub);
		*gen = json_integer_value(json_object_get(c, GEN_CLAIM));
		rc = AM_OK;
	}
	jose_token_free(&t);
	return rc;
}

const char *
flow_v06_type_name(enum reg_kind kind)
{
	switch (kind) {
	case REG_ANONYMOUS:
		return "anonymous";
	case REG_EMAIL:
		return "service_auth";
	case REG_AGENT:
		break;
	}
	return "identity_assertion";
}

enum am_err
flow_v06_issue_in_tx(const struct flow_env *env, struct store *st, const struct store_reg *reg,
		     const char *scopes, const char *grant, const char *jkt,
		     struct audit_batch *batch, struct v06_token_result *out, struct am_error *e)
{
	struct reg_result cred = {0};
	enum am_err rc;

	if ((rc = flow_v06_unblocked(st, reg, e)) != AM_OK)
		return rc;
	if (reg->kind == REG_AGENT)
		rc = flow_issue_credential_for(env, st, reg->id, CRED_ACCESS_TOKEN, scopes,
					       reg->user_id, reg->iss, reg->sub, true, &cred, e);
	else
		rc = flow_issue_credential(env, st, reg->id, CRED_ACCESS_TOKEN, scopes,
					   reg->user_id[0] != '\0' ? reg->user_id : NULL,
					   store_kind_name(reg->kind), &cred, e);
	if (rc == AM_OK) {
		/* RFC 8707: the token is for this service's resource alone. */
		rc = store_cred_set_resource(st, cred.credential_id, env->cfg->resource, e);
	}
	/* RFC 9449: bound in the transaction that issues it, never handed
	 * out unbound. */
	if (rc == AM_OK && jkt != NULL && jkt[0] != '\0')
		rc = flow_dpop_bind(env, st, cred.credential_id, jkt, e);
	if (rc == AM_OK)
		rc = audit_add(st, batch, env->cfg->tenant, flow_now(env), "token.issued", reg->id,
			       json_pack("{s:s, s:s}", "scope", scopes, "grant", grant), e);
	if (rc == AM_OK) {
		am_copy(out->access_token, sizeof(out->access_token), cred.credential);
		am_copy(out->scopes, sizeof(out->scopes), scopes);
		am_copy(out->registration_id, sizeof(out->registration_id), reg->id);
		out->expires_in = cred.credential_expires - flow_now(env);
	}
	flow_result_wipe(&cred, sizeof(cred));
	return rc;
}

/* Issues the access token of registration reg_id (generation gen, or -1:
 * the registration was made by this very job), bound to p->jkt when set;
 * one savepoint of the batch, its events in p->batch. */
static enum am_err
exchange(struct store *st, struct flow_pending_v06 *p, const char *reg_id, int64_t gen,
	 const char *grant, struct am_error *e)
{
	const struct flow_env *env = p->env;
	struct v06_token_result *out = &p->token;
	struct store_reg reg;
	const char *scopes = NULL;
	int64_t cur;
	enum am_err rc;

	if ((rc = store_begin(st, e)) != AM_OK)
		return rc;
	rc = store_reg_by_id(st, reg_id, &reg, e);
	if (rc == AM_E_NOT_FOUND)
		rc = am_fail(e, AM_E_INVALID_GRANT, "the assertion's registration does not exist");
	if (rc != AM_OK)
		goto fail;
	if ((rc = store_reg_gen(st, reg.id, &cur, e)) != AM_OK)
		goto fail;
	if (gen >= 0 && gen != cur) {
		rc = am_fail(e, AM_E_INVALID_GRANT,
			     "the registration was revoked after this assertion was minted; "
			     "register again at /agent/identity");
		goto fail;
	}
	if ((rc = flow_v06_scopes(env, &reg, &scopes, e)) != AM_OK ||
	    (rc = flow_v06_issue_in_tx(env, st, &reg, scopes, grant, p->jkt, &p->batch, out, e)) !=
		    AM_OK ||
	    (rc = store_commit(st, e)) != AM_OK)
		goto fail;
	return AM_OK;
fail:
	store_rollback(st);
	flow_result_wipe(out, sizeof(*out));
	return rc;
}

/* Before a step runs: its refusal is its answer, not a failure of the
 * batch, and a retried job starts clean. */
static void
step_reset(struct flow_pending_v06 *p)
{
	audit_discard(&p->batch);
	memset(&p->err, 0, sizeof(p->err));
	flow_result_wipe(&p->token, sizeof(p->token));
	OPENSSL_cleanse(p->res.refresh_token, sizeof(p->res.refresh_token));
	p->keep_events = false;
}

/* The job of the kinds that need no ID-JAG registration first. */
static enum am_err
v06_job(struct store *st, void *arg, struct am_error *e)
{
	struct flow_pending_v06 *p = arg;

	(void)e;
	step_reset(p);
	switch (p->kind) {
	case FLOW_V06_ANONYMOUS:
		p->rc = anonymous_write(st, p, &p->err);
		break;
	case FLOW_V06_REFRESH: /* never: its own job, flows/refresh.c */
		p->rc = am_fail(&p->err, AM_E_INTERNAL, "a refresh in the wrong job");
		break;
	case FLOW_V06_IDJAG:
	case FLOW_V06_TOKEN:
		p->rc = exchange(st, p, p->reg_id, p->gen, "identity_assertion", &p->err);
		break;
	}
	if (p->rc != AM_OK && !p->keep_events)
		audit_discard(&p->batch);
	return AM_OK;
}

/* Queues p (env, kind and inputs set) as a writer job of the kinds above;
 * the contract of store_writer_submit. */
static enum am_err
job_submit(struct flow_pending_v06 *p, void (*done)(void *arg), void *done_arg, struct am_error *e)
{
	p->done = done;
	p->done_arg = done_arg;
	p->job = (struct store_job){.run = v06_job, .done = v06_done, .arg = p, .rerun = true};
	return store_writer_submit(p->env->writer, &p->job, e);
}

/* Run in the ID-JAG registration's job once it is written. */
static void
idjag_then(struct store *st, const struct reg_result *res, void *arg)
{
	struct flow_pending_v06 *p = arg;

	step_reset(p);
	p->rc = p->kind == FLOW_V06_IDJAG
			? assertion_issued(st, p, res->registration_id, &p->err)
			: exchange(st, p, res->registration_id, -1, "id_jag", &p->err);
	if (p->rc != AM_OK)
		audit_discard(&p->batch);
}

enum am_err
flow_v06_register_idjag_submit(const struct flow_env *env, struct skey *keys, const char *ip,
			       const char *idjag, struct flow_pending_v06 *p,
			       void (*done)(void *arg), void *done_arg, struct am_error *e)
{
	enum am_err rc;

	memset(p, 0, sizeof(*p));
	p->env = env;
	p->keys = keys;
	p->kind = FLOW_V06_IDJAG;
	if ((rc = flow_register_idjag_identity_submit(env, ip, idjag, idjag_then, p, &p->idjag,
						      done, done_arg, e)) == AM_OK)
		p->via_idjag = true;
	return rc;
}

/* A provider's ID-JAG refused at the token endpoint: invalid_grant, its
 * own code leading the detail; the server's own trouble stays itself. */
static enum am_err
as_grant_error(enum am_err rc, const struct am_error *why, struct am_error *e)
{
	if (rc == AM_E_RATE_LIMITED || rc == AM_E_UNAVAILABLE || rc == AM_E_INTERNAL) {
		*e = *why;
		return rc;
	}
	return am_fail(e, AM_E_INVALID_GRANT, "%s: %s", am_err_name(rc), why->detail);
}

/* The unverified iss of a compact JWS of the assertion typ: only to choose
 * the verifier. Every refusal is invalid_grant, naming the header check. */
static enum am_err
peek_iss(const char *compact, char *out, size_t cap, struct am_error *e)
{
	struct jose_token t;
	struct am_error why = {0};
	const char *iss;
	enum am_err rc;

	if ((rc = jose_token_parse(compact, FLOW_ASSERTION_TYP, &t, &why)) != AM_OK)
		return am_fail(e, AM_E_INVALID_GRANT, "%s: %s", am_err_name(rc), why.detail);
	iss = json_string_value(json_object_get(t.claims, "iss"));
	rc = iss != NULL && am_copy(out, cap, iss)
		     ? AM_OK
		     : am_fail(e, AM_E_INVALID_GRANT, "invalid_request: the assertion has no iss");
	jose_token_free(&t);
	return rc;
}

enum am_err
flow_v06_token_submit(const struct flow_env *env, struct skey *keys, const char *ip,
		      const char *assertion, const char *resource, const char *jkt,
		      struct flow_pending_v06 *p, void (*done)(void *arg), void *done_arg,
		      struct am_error *e)
{
	char iss[STORE_TEXT_LEN];
	struct am_error why = {0};
	enum am_err rc;

	memset(p, 0, sizeof(*p));
	p->env = env;
	p->keys = keys;
	p->kind = FLOW_V06_TOKEN;
	if (jkt != NULL && !am_copy(p->jkt, sizeof(p->jkt), jkt))
		return am_fail(e, AM_E_INVALID_DPOP_PROOF, "the DPoP key's thumbprint is too long");
	/* RFC 8707: one resource here; the token is for it alone. */
	if (resource != NULL && strcmp(resource, env->cfg->resource) != 0)
		return am_fail(e, AM_E_INVALID_TARGET, "resource must be %s", env->cfg->resource);
	if ((rc = peek_iss(assertion, iss, sizeof(iss), e)) != AM_OK)
		return rc;
	if (strcmp(iss, env->cfg->public_url) == 0) {
		if ((rc = verify_own(env, keys, assertion, p->reg_id, &p->gen, e)) != AM_OK)
			return rc;
		return job_submit(p, done, done_arg, e);
	}
	/* A provider's ID-JAG presented directly (draft -04): the whole
	 * /agent/identity verification, then the exchange in its job. */
	rc = flow_register_idjag_identity_submit(env, ip, assertion, idjag_then, p, &p->idjag, done,
						 done_arg, &why);
	if (rc != AM_OK)
		return as_grant_error(rc, &why, e);
	p->via_idjag = true;
	return AM_OK;
}

enum am_err
flow_pending_v06_result(struct flow_pending_v06 *p, struct am_error *e)
{
	const struct flow_env *env = p->env;
	struct am_error why = {0};
	enum am_err rc;

	if (p->via_idjag) {
		/* the registration's own answer: its events, log and mail */
		rc = flow_pending_idjag_result(&p->idjag, &p->res.reg, &why);
		if (rc != AM_OK) {
			if (p->kind == FLOW_V06_TOKEN)
				return as_grant_error(rc, &why, e);
			*e = why;
			return rc;
		}
		if (p->res.reg.claim_token[0] != '\0') { /* a first link: nothing more */
			const struct ceremony_block *c = flow_pending_idjag_claim(&p->idjag);

			if (p->kind == FLOW_V06_IDJAG && c != NULL) {
				p->res.claim = *c;
				return AM_OK;
			}
			if (p->kind == FLOW_V06_IDJAG)
				return am_fail(e, AM_E_INTERNAL,
					       "a first link without its attempt");
			return am_fail(e, AM_E_INVALID_GRANT,
				       "this identity must first be linked to an existing account; "
				       "present the ID-JAG at /agent/identity");
		}
	} else if (p->job.rc != AM_OK) {
		*e = p->job.err;
		return p->job.rc;
	}
	if (p->rc != AM_OK) {
		if (p->keep_events) /* committed though refused: a reuse */
			audit_flush(env->audit, &p->batch);
		*e = p->err;
		return p->rc;
	}
	audit_flush(env->audit, &p->batch);
	switch (p->kind) {
	case FLOW_V06_ANONYMOUS:
		log_info("registration created id=%s kind=anonymous protocol=v0.6", p->reg.id);
		return AM_OK;
	case FLOW_V06_IDJAG:
		/* CPU work only, on the request's thread once durable */
		return flow_v06_mint(env, p->keys, p->res.reg.registration_id, "identity_assertion",
				     p->assertion_gen, NULL, &p->res.assertion,
				     &p->res.assertion_expires, e);
	case FLOW_V06_REFRESH:
		log_info("refresh token rotated registration=%s", p->res.reg.registration_id);
		return flow_v06_mint(env, p->keys, p->res.reg.registration_id,
				     flow_v06_type_name(p->res.reg.kind), p->assertion_gen,
				     p->email[0] != '\0' ? p->email : NULL, &p->res.assertion,
				     &p->res.assertion_expires, e);
	case FLOW_V06_TOKEN:
		break;
	}
	return AM_OK;
}

enum am_err
flow_pending_idclaim_result(struct flow_pending_idclaim *p, struct am_error *e)
{
	enum am_err rc;

	if ((rc = flow_pending_idclaim_outcome(p, e)) != AM_OK || p->step_up)
		return rc;
	/* CPU work only, on the request's thread once durable */
	return flow_v06_mint(p->env, p->keys, p->registration_id, "anonymous", p->gen,
			     p->email[0] != '\0' ? p->email : NULL, &p->assertion,
			     &p->assertion_expires, e);
}
