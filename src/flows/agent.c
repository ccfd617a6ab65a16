/* The agent-verified flow: ID-JAG registration, user matching, delegations,
 * and revocation by logout token or by the operator. */
#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/protocol.h"
#include "core/str.h"
#include "flows/internal.h"
#include "jose/jose.h"
#include "trust/cimd.h"
#include "trust/trust.h"

#define LOGOUT_MAX_AGE 300  /* a logout token without exp is good this long after iat */
#define MAX_CLAIM_BYTES 255 /* iss, sub, jti, client_id, ... */

/* What a verified token says, borrowed from its claims. */
struct verified {
	const struct am_provider *provider;
	const char *iss, *sub, *jti;
	int64_t iat, exp; /* exp 0: none (logout tokens only) */
};

static enum am_err
claim_string(const json_t *claims, const char *name, bool required, const char **out,
	     struct am_error *e)
{
	json_t *v = json_object_get(claims, name);

	*out = NULL;
	if (v == NULL && !required)
		return AM_OK;
	if (!json_is_string(v) || json_string_length(v) == 0 ||
	    json_string_length(v) > MAX_CLAIM_BYTES ||
	    strlen(json_string_value(v)) != json_string_length(v))
		return am_fail(e, AM_E_INVALID_REQUEST,
			       "the token's %s claim must be a string of 1 to %d bytes", name,
			       MAX_CLAIM_BYTES);
	*out = json_string_value(v);
	return AM_OK;
}

static enum am_err
claim_time(const json_t *claims, const char *name, bool required, int64_t *out, struct am_error *e)
{
	json_t *v = json_object_get(claims, name);

	*out = 0;
	if (v == NULL && !required)
		return AM_OK;
	if (!json_is_integer(v) || json_integer_value(v) <= 0)
		return am_fail(e, name[0] == 'e' ? AM_E_EXPIRED : AM_E_INVALID_REQUEST,
			       "the token's %s claim must be a positive whole number of seconds",
			       name);
	*out = (int64_t)json_integer_value(v);
	return AM_OK;
}

/* aud must be this service's issuer or its resource identifier, exactly;
 * an array only with exactly one element. */
static enum am_err
check_audience(const struct am_config *cfg, const json_t *claims, struct am_error *e)
{
	json_t *aud = json_object_get(claims, "aud");
	const char *v;

	if (json_is_array(aud) && json_array_size(aud) == 1)
		aud = json_array_get(aud, 0);
	v = json_string_value(aud);
	if (v == NULL || (strcmp(v, cfg->public_url) != 0 && strcmp(v, cfg->resource) != 0))
		return am_fail(e, AM_E_INVALID_AUDIENCE, "aud must be %s or %s", cfg->public_url,
			       cfg->resource);
	return AM_OK;
}

/* The checks an ID-JAG and a logout token share, in the docs' order:
 * header (typ, alg), issuer on the trust list, signature by the kid's key,
 * audience, times, jti and sub present. */
static enum am_err
verify_token(const struct flow_env *env, const char *compact, const char *typ, struct jose_token *t,
	     struct verified *v, struct am_error *e)
{
	const struct am_config *cfg = env->cfg;
	struct jose_keyset *keys = NULL;
	int64_t now = flow_now(env);
	enum am_err rc;

	memset(v, 0, sizeof(*v));
	if ((rc = jose_token_parse(compact, typ, t, e)) != AM_OK)
		return rc;
	if ((rc = claim_string(t->claims, "iss", true, &v->iss, e)) != AM_OK)
		return rc;
	if ((v->provider = am_config_provider(cfg, v->iss)) == NULL)
		return am_fail(e, AM_E_INVALID_ISSUER,
			       "issuer %.100s is not a trusted provider here", v->iss);
	if ((rc = trust_keys(env->trust, v->provider, t->kid, now, &keys, e)) != AM_OK)
		return rc;
	rc = jose_token_verify(t, keys, e);
	jose_keyset_release(keys);
	if (rc != AM_OK)
		return rc;
	/* From here on the claims are the provider's own words. */
	if ((rc = check_audience(cfg, t->claims, e)) != AM_OK ||
	    (rc = claim_time(t->claims, "exp", strcmp(typ, AM_TYP_ID_JAG) == 0, &v->exp, e)) !=
		    AM_OK ||
	    (rc = claim_time(t->claims, "iat", true, &v->iat, e)) != AM_OK)
		return rc;
	/* exp, iat and nbf are the token's numbers, anything up to 2^63-1:
	 * every sum below saturates instead of overflowing, and differences
	 * are of two positive values (claim_time refuses <= 0). */
	if (v->exp != 0 && now >= am_time_add(v->exp, cfg->clock_skew))
		return am_fail(e, AM_E_EXPIRED, "the token expired; mint a fresh one");
	if (v->exp != 0 && v->exp - v->iat > cfg->id_jag_max_lifetime)
		return am_fail(e, AM_E_INVALID_REQUEST,
			       "the token's lifetime (exp - iat) is more than the %lld s accepted "
			       "here; mint a shorter-lived one",
			       (long long)cfg->id_jag_max_lifetime);
	if (v->exp == 0 && now - v->iat > LOGOUT_MAX_AGE + cfg->clock_skew)
		return am_fail(e, AM_E_EXPIRED,
			       "a token without exp is accepted for %d s after iat",
			       LOGOUT_MAX_AGE);
	if (v->iat > am_time_add(now, cfg->clock_skew))
		return am_fail(e, AM_E_INVALID_REQUEST,
			       "the token's iat is more than %lld s in the future",
			       (long long)cfg->clock_skew);
	{
		int64_t nbf;

		if ((rc = claim_time(t->claims, "nbf", false, &nbf, e)) != AM_OK)
			return rc;
		if (nbf > am_time_add(now, cfg->clock_skew))
			return am_fail(e, AM_E_INVALID_REQUEST, "the token is not valid yet (nbf)");
	}
	if ((rc = claim_string(t->claims, "jti", true, &v->jti, e)) != AM_OK ||
	    (rc = claim_string(t->claims, "sub", true, &v->sub, e)) != AM_OK)
		return rc;
	return AM_OK;
}

/* Whether the token's client_id is accepted for its provider: the exact
 * values of client_ids when the operator pinned them; else the issuer
 * itself, or a Client ID Metadata Document URL on an allowed origin that
 * resolves (trust/cimd.h), whose client_name and logo_uri go into *client
 * (left empty otherwise). */
/* With pending NULL a document is fetched here if need be (blocking, for
 * the synchronous flow); else cimd_resolve_nowait with w: *pending true
 * means w is called when the fetch ends, and the check is to be made again
 * (then with w NULL). */
static enum am_err
check_client_id(const struct flow_env *env, const struct verified *v, const char *client_id,
		struct cimd_client *client, struct cimd_waiter *w, bool *pending,
		struct am_error *e)
{
	const struct am_provider *p = v->provider;
	enum am_err rc;

	memset(client, 0, sizeof(*client));
	if (p->client_ids_pinned) {
		if (am_word_in(p->client_ids, client_id))
			return AM_OK;
		return am_fail(e, AM_E_INVALID_CLIENT_ID,
			       "client_id %.100s is not one of the client_ids this service accepts "
			       "for this issuer",
			       client_id);
	}
	if (strcmp(client_id, p->issuer) == 0)
		return AM_OK;
	if (env->cimd == NULL)
		return am_fail(e, AM_E_INVALID_CLIENT_ID,
			       "client_id %.100s is not accepted for this issuer", client_id);
	if ((rc = cimd_check_url(p, client_id, e)) == AM_OK)
		rc = pending == NULL ? cimd_resolve(env->cimd, client_id, flow_now(env), client, e)
				     : cimd_resolve_nowait(env->cimd, client_id, flow_now(env),
							   client, w, pending, e);
	if (rc != AM_OK) {
		log_info("id-jag refused: client_id provider=%s code=%s", p->name, am_err_name(rc));
		return rc;
	}
	return AM_OK;
}

/* The replay window of a token: until exp (or iat + the logout grace) plus
 * skew. Tokens of the two kinds are kept apart by a prefix, so each kind
 * has its own replay check. */
static enum am_err
record_jti(const struct flow_env *env, struct store *st, const struct verified *v, const char *kind,
	   struct am_error *e)
{
	char key[MAX_CLAIM_BYTES + 16];
	int64_t until = am_time_add(v->exp != 0 ? v->exp : am_time_add(v->iat, LOGOUT_MAX_AGE),
				    env->cfg->clock_skew);
	bool fresh = false;
	enum am_err rc;

	snprintf(key, sizeof(key), "%s:%s", kind, v->jti);
	if ((rc = store_jti_record(st, v->iss, key, until, &fresh, e)) != AM_OK)
		return rc;
	return fresh ? AM_OK
		     : am_fail(e, AM_E_REPLAY_DETECTED,
			       "this token's jti was already used; mint "
			       "a fresh token");
}

static bool
claim_true(const json_t *claims, const char *name)
{
	return json_is_true(json_object_get(claims, name));
}

/* The identity an ID-JAG vouches for: a verified email and/or phone. */
struct identity {
	char email[AM_MAX_EMAIL_BYTES + 1]; /* empty unless verified */
	char phone[64];			    /* empty unless verified */
	const char *agent_platform, *agent_context_id;
	/* the token's client_id, and what its metadata document says (empty
	 * strings when it is not a document's URL) */
	const char *client_id;
	const struct cimd_client *client;
};

/* A non-empty string, or NULL (json_pack's "s?" then writes JSON null). */
static const char *
nonempty(const char *s)
{
	return s != NULL && s[0] != '\0' ? s : NULL;
}

static enum am_err
read_identity(const json_t *claims, struct identity *id, struct am_error *e)
{
	const char *email = json_string_value(json_object_get(claims, "email"));
	const char *phone = json_string_value(json_object_get(claims, "phone_number"));
	enum am_err rc;

	memset(id, 0, sizeof(*id));
	if (claim_true(claims, "email_verified") && email != NULL &&
	    !mail_address_normalize(email, id->email, sizeof(id->email)))
		return am_fail(e, AM_E_INVALID_REQUEST, "the token's email is not a valid address");
	if (claim_true(claims, "phone_number_verified") && phone != NULL) {
		size_t n = strlen(phone);

		if (n < 4 || n >= sizeof(id->phone) || strspn(phone, "+0123456789") != n)
			return am_fail(e, AM_E_INVALID_REQUEST,
				       "the token's phone_number must be in E.164 form");
		am_copy(id->phone, sizeof(id->phone), phone);
	}
	if (id->email[0] == '\0' && id->phone[0] == '\0')
		return am_fail(e, AM_E_MISSING_VERIFIED_EMAIL,
			       "the token needs email_verified or phone_number_verified true, with "
			       "the email or phone_number");
	if ((rc = claim_string(claims, "agent_platform", false, &id->agent_platform, e)) != AM_OK ||
	    (rc = claim_string(claims, "agent_context_id", false, &id->agent_context_id, e)) !=
		    AM_OK)
		return rc;
	return AM_OK;
}

/* Refuses what an operator blocked: the issuer, the subject (iss, sub), the
 * user or the registration (any may be NULL or empty: not checked). */
static enum am_err
check_blocks(struct store *st, const char *iss, const char *sub, const char *user_id,
	     const char *reg_id, struct am_error *e)
{
	enum block_kind kind;
	enum am_err rc = store_block_find(st, iss, sub, user_id, reg_id, &kind, e);

	if (rc == AM_E_NOT_FOUND)
		return AM_OK;
	if (rc != AM_OK)
		return rc;
	log_info("id-jag refused: operator block kind=%s iss=%s", store_block_kind_name(kind),
		 iss != NULL ? iss : "");
	return am_fail(e, AM_E_INVALID_GRANT,
		       "this service's operator revoked access for this %s; a fresh token does "
		       "not help until the operator lifts the block",
		       kind == BLOCK_ISSUER    ? "provider"
		       : kind == BLOCK_SUBJECT ? "provider subject"
		       : kind == BLOCK_USER    ? "user"
					       : "registration");
}

/* The docs' order: a delegation of (iss, sub); else, where the provider
 * entry allows linking, an existing user with the verified email or phone:
 * never attached silently, but *link_to is set and the caller runs the
 * first-link ceremony against that account's own email (v0.5's
 * interaction_required); else a new user, when JIT provisioning is on. */
static enum am_err
match_user(const struct flow_env *env, struct store *st, const struct verified *v,
	   const struct identity *id, char user_id[STORE_ID_LEN], bool *link,
	   struct store_user *link_to, bool *provisioned, struct am_error *e)
{
	struct store_user u = {0};
	enum am_err rc;

	*link = false;
	*provisioned = false;
	rc = store_delegation_user(st, v->iss, v->sub, user_id, e);
	if (rc != AM_E_NOT_FOUND)
		return rc;
	if (v->provider->link_by_email && id->email[0] != '\0') {
		rc = store_user_by_email(st, id->email, &u, e);
		if (rc == AM_OK) {
			*link = true;
			*link_to = u;
			return AM_OK;
		}
		if (rc != AM_E_NOT_FOUND)
			return rc;
	}
	if (v->provider->link_by_phone && id->phone[0] != '\0') {
		rc = store_user_by_phone(st, id->phone, &u, e);
		/* The confirmation goes to the account's email: an account with
		 * only a phone cannot confirm, so it is not linked. */
		if (rc == AM_OK && u.email[0] != '\0') {
			*link = true;
			*link_to = u;
			return AM_OK;
		}
		if (rc != AM_OK && rc != AM_E_NOT_FOUND)
			return rc;
	}
	if (!env->cfg->flow_jit)
		return am_fail(e, AM_E_INVALID_REQUEST,
			       "no account matches this identity and this service does not create "
			       "accounts for agents");
	memset(&u, 0, sizeof(u));
	if ((rc = flow_ordered_id("usr_", u.id, sizeof(u.id), e)) != AM_OK)
		return rc;
	/* Linking by email is off, or no user has it: the address is kept
	 * unless another account already owns it. */
	if (id->email[0] != '\0') {
		struct store_user other;

		rc = store_user_by_email(st, id->email, &other, e);
		if (rc == AM_E_NOT_FOUND)
			am_copy(u.email, sizeof(u.email), id->email);
		else if (rc != AM_OK)
			return rc;
	}
	am_copy(u.phone, sizeof(u.phone), id->phone);
	u.created_at = flow_now(env);
	u.created_by_agent = true;
	if ((rc = store_user_insert(st, &u, e)) != AM_OK)
		return rc;
	*provisioned = true; /* logged after the commit, off the writer */
	am_copy(user_id, STORE_ID_LEN, u.id);
	return AM_OK;
}

/* Keeps what the client's metadata document said with the registration
 * (inside its transaction), for its claim pages; nothing when client_id
 * was not a resolved document. */
static enum am_err
record_client(struct store *st, const char *registration_id, const struct cimd_client *c,
	      int64_t now, struct am_error *e)
{
	struct store_reg_client rc = {0};

	if (c == NULL || c->client_id[0] == '\0')
		return AM_OK;
	am_copy(rc.client_id, sizeof(rc.client_id), c->client_id);
	am_copy(rc.client_name, sizeof(rc.client_name), c->client_name);
	am_copy(rc.logo_uri, sizeof(rc.logo_uri), c->logo_uri);
	return store_reg_client_put(st, registration_id, &rc, now, e);
}

/* The first-link ceremony's start, inside the caller's transaction: a
 * pending agent registration for (iss, sub) bound to the existing
 * account's address, with a claim token (in out) and either (v0.1, cer
 * NULL) a claim attempt whose link goes to that address (token, mailed
 * after the commit) or (v0.6) a user_code ceremony attempt bound to it
 * (cer), which the account's owner completes signed in at /claim. No
 * delegation and no credential until then (see flow_first_link_complete
 * and flow_first_link_delegate). */
static enum am_err
first_link_start(const struct flow_env *env, struct store *st, const struct verified *v,
		 const struct identity *id, const struct store_user *to, enum cred_type type,
		 const char *ip, struct audit_batch *batch, struct store_attempt *att,
		 char token[FLOW_SECRET_LEN], struct ceremony_block *cer, struct reg_result *out,
		 struct am_error *e)
{
	struct store_reg reg = {0};
	int64_t now = flow_now(env);
	enum am_err rc;

	if ((rc = check_blocks(st, v->iss, v->sub, to->id, NULL, e)) != AM_OK ||
	    (rc = flow_ordered_id("reg_", reg.id, sizeof(reg.id), e)) != AM_OK ||
	    (rc = flow_mint_claim_token(&reg, out->claim_token, sizeof(out->claim_token), e)) !=
		    AM_OK)
		return rc;
	reg.kind = REG_AGENT;
	reg.status = REG_PENDING_CLAIM;
	reg.credential_type = type;
	reg.created_at = now;
	reg.expires_at = am_time_add(now, env->cfg->ttl_registration);
	am_copy(reg.ip, sizeof(reg.ip), ip != NULL ? ip : "");
	am_copy(reg.email, sizeof(reg.email), to->email); /* the account's, not the token's */
	am_copy(reg.iss, sizeof(reg.iss), v->iss);
	am_copy(reg.sub, sizeof(reg.sub), v->sub);
	am_copy(reg.agent_platform, sizeof(reg.agent_platform),
		id->agent_platform != NULL ? id->agent_platform : "");
	am_copy(reg.agent_context_id, sizeof(reg.agent_context_id),
		id->agent_context_id != NULL ? id->agent_context_id : "");
	if ((rc = store_reg_insert(st, &reg, e)) != AM_OK ||
	    (rc = record_client(st, reg.id, id->client, now, e)) != AM_OK ||
	    (rc = cer != NULL
			  ? flow_ceremony_new_attempt(env, st, &reg, reg.email, CEREMONY_USER_CODE,
						      NULL, NULL, batch, cer, e)
			  : flow_new_attempt(env, st, &reg, reg.email, ip, att, token, e)) !=
		    AM_OK ||
	    (rc = audit_add(st, batch, env->cfg->tenant, now, "registration.created", reg.id,
			    json_pack("{s:s, s:s, s:s, s:s, s:s?, s:s?, s:b, s:s, s:s?, s:s, "
				      "s:s?, s:s?}",
				      "registration_type", "agent-provider", "iss", v->iss, "sub",
				      v->sub, "provider", v->provider->name, "agent_platform",
				      id->agent_platform, "agent_context_id", id->agent_context_id,
				      "first_link", 1, "link_user_id", to->id, "ip", ip,
				      "client_id", id->client_id, "client_name",
				      nonempty(id->client->client_name), "client_logo_uri",
				      nonempty(id->client->logo_uri)),
			    e)) != AM_OK ||
	    (rc = audit_add(st, batch, env->cfg->tenant, now, "claim.requested", reg.id,
			    json_pack("{s:s, s:s, s:s?, s:s}", "email", reg.email,
				      "claim_attempt_id", cer != NULL ? cer->attempt_id : att->id,
				      "ip", ip, "ceremony", cer != NULL ? "user_code" : "mail"),
			    e)) != AM_OK)
		return rc;
	am_copy(out->registration_id, sizeof(out->registration_id), reg.id);
	out->kind = REG_AGENT;
	out->agent_verified = true;
	out->has_credential = false;
	out->claim_token_expires = reg.expires_at;
	am_copy(out->post_claim_scopes, sizeof(out->post_claim_scopes), v->provider->scopes);
	return AM_OK;
}

enum am_err
flow_first_link_delegate(const struct flow_env *env, struct store *st, const struct store_reg *reg,
			 const char *user_id, struct audit_batch *batch, struct am_error *e)
{
	const struct am_provider *p = am_config_provider(env->cfg, reg->iss);
	const char *aud = env->cfg->public_url;
	struct store_delegation d;
	int64_t now = flow_now(env);
	enum am_err rc;

	if (p == NULL)
		return am_fail(e, AM_E_INVALID_ISSUER,
			       "the provider of this registration is no longer trusted here");
	if ((rc = check_blocks(st, reg->iss, reg->sub, user_id, reg->id, e)) != AM_OK)
		return rc;
	rc = store_delegation_get(st, reg->iss, reg->sub, aud, &d, e);
	if (rc == AM_OK)
		return am_fail(e, AM_E_PREVIOUSLY_CLAIMED,
			       "this provider identity was linked by another confirmation; present "
			       "a fresh ID-JAG");
	if (rc != AM_E_NOT_FOUND)
		return rc;
	if ((rc = store_delegation_insert(st, reg->iss, reg->sub, aud, user_id, reg->id, now, e)) !=
		    AM_OK ||
	    (rc = audit_add(st, batch, env->cfg->tenant, now, "delegation.created", reg->id,
			    json_pack("{s:s, s:s, s:s, s:s, s:s}", "iss", reg->iss, "sub", reg->sub,
				      "provider", p->name, "user_id", user_id, "via", "first_link"),
			    e)) != AM_OK)
		return rc;
	log_info("delegation created registration=%s provider=%s user=%s via=first_link", reg->id,
		 p->name, user_id);
	return AM_OK;
}

enum am_err
flow_first_link_complete(const struct flow_env *env, struct store *st, const struct store_reg *reg,
			 const char *user_id, struct audit_batch *batch, struct reg_result *out,
			 struct am_error *e)
{
	const struct am_provider *p;
	enum am_err rc;

	if ((rc = flow_first_link_delegate(env, st, reg, user_id, batch, e)) != AM_OK)
		return rc;
	p = am_config_provider(env->cfg, reg->iss);
	if ((rc = flow_issue_credential_for(env, st, reg->id, reg->credential_type, p->scopes,
					    user_id, reg->iss, reg->sub, true, out, e)) != AM_OK)
		return rc;
	out->agent_verified = true;
	return AM_OK;
}

/* The registration of (iss, sub, aud): the existing one (made live again if
 * it was revoked: the provider vouches anew), or a new one. */
static enum am_err
registration_for(const struct flow_env *env, struct store *st, const struct verified *v,
		 const struct identity *id, const char *user_id, const char *ip, bool *created,
		 char reg_id[STORE_ID_LEN], struct am_error *e)
{
	const char *aud = env->cfg->public_url;
	struct store_delegation d;
	struct store_reg reg;
	int64_t now = flow_now(env);
	enum am_err rc;

	*created = false;
	rc = store_delegation_get(st, v->iss, v->sub, aud, &d, e);
	if (rc == AM_OK) {
		am_copy(reg_id, STORE_ID_LEN, d.registration_id);
		rc = store_reg_transition(st, reg_id, REG_REVOKED, REG_CLAIMED, e);
		/* A revival starts a new generation: the v0.6 identity
		 * assertions minted before the revocation stay dead. */
		if (rc == AM_OK)
			rc = store_reg_gen_bump(st, reg_id, e);
		return rc == AM_E_NOT_FOUND ? AM_OK : rc;
	}
	if (rc != AM_E_NOT_FOUND)
		return rc;
	memset(&reg, 0, sizeof(reg));
	if ((rc = flow_ordered_id("reg_", reg.id, sizeof(reg.id), e)) != AM_OK)
		return rc;
	reg.kind = REG_AGENT;
	reg.status = REG_CLAIMED;
	reg.credential_type = CRED_ACCESS_TOKEN;
	am_copy(reg.user_id, sizeof(reg.user_id), user_id);
	reg.created_at = reg.claimed_at = reg.expires_at = now;
	am_copy(reg.ip, sizeof(reg.ip), ip != NULL ? ip : "");
	am_copy(reg.email, sizeof(reg.email), id->email);
	am_copy(reg.iss, sizeof(reg.iss), v->iss);
	am_copy(reg.sub, sizeof(reg.sub), v->sub);
	am_copy(reg.agent_platform, sizeof(reg.agent_platform),
		id->agent_platform != NULL ? id->agent_platform : "");
	am_copy(reg.agent_context_id, sizeof(reg.agent_context_id),
		id->agent_context_id != NULL ? id->agent_context_id : "");
	if ((rc = store_reg_insert(st, &reg, e)) != AM_OK ||
	    (rc = record_client(st, reg.id, id->client, now, e)) != AM_OK ||
	    (rc = store_delegation_insert(st, v->iss, v->sub, aud, user_id, reg.id, now, e)) !=
		    AM_OK)
		return rc;
	*created = true;
	am_copy(reg_id, STORE_ID_LEN, reg.id);
	return AM_OK;
}

/* An ID-JAG registration across its phases: verified on the request's
 * thread, written in one transaction (the group commit's job, or the
 * caller's own), then answered. */
struct idjag_state {
	const struct flow_env *env;
	struct jose_token t;
	struct verified v;
	struct identity id;
	const char *client_id;	   /* the token's (in t.claims) */
	struct cimd_client client; /* what its metadata document says */
	struct cimd_waiter wait;   /* parked on its document's fetch */
	enum cred_type type;
	char ip[64];
	/* written by the transaction */
	struct audit_batch batch;
	/* event_fields: registration.created's line, before the job, with
	 * holes for what the transaction decides */
	struct audit_batch event;
	struct reg_result res;
	char user_id[STORE_ID_LEN], reg_id[STORE_ID_LEN];
	char token[FLOW_SECRET_LEN];
	struct store_user link_to;
	struct store_attempt att;
	struct ceremony_block ceremony; /* v0.6 first link: its user_code attempt */
	bool link, created;
	bool provisioned;		    /* a new user was made for the subject */
	bool identity_only;		    /* v0.6: the registration without a credential */
	struct flow_pending_idclaim *claim; /* v0.7: a claim of an anonymous registration */
	/* v0.6: store work of the caller's, run in the same group-commit job
	 * once the registration is written (not for a first link) */
	void (*then)(struct store *st, const struct reg_result *res, void *arg);
	void *then_arg;
	enum am_err rc; /* the transaction's outcome */
	struct am_error err;
};

static void
idjag_free(struct idjag_state *s)
{
	if (s == NULL)
		return;
	audit_discard(&s->batch);
	audit_discard(&s->event);
	jose_token_free(&s->t);
	flow_result_wipe(&s->res, sizeof(s->res));
	flow_result_wipe(s->token, sizeof(s->token));
	flow_result_wipe(&s->ceremony, sizeof(s->ceremony));
	free(s);
}

/* The checks that come before the client's: the token, its provider, the
 * per-IP rate limit. */
static enum am_err
idjag_verify(const struct flow_env *env, const char *ip, const char *assertion,
	     const char *requested_type, struct idjag_state **out, struct am_error *e)
{
	struct idjag_state *s;
	int64_t retry_after;
	enum am_err rc;

	if (!env->cfg->flow_id_jag || env->trust == NULL || env->cfg->nproviders == 0)
		return am_fail(e, AM_E_ID_JAG_NOT_ENABLED,
			       "this service does not accept ID-JAG assertions; use another "
			       "method from the agent_auth metadata");
	if ((s = calloc(1, sizeof(*s))) == NULL)
		return am_fail(e, AM_E_INTERNAL, "out of memory");
	s->env = env;
	am_copy(s->ip, sizeof(s->ip), ip != NULL ? ip : "");
	if ((rc = flow_cred_type(requested_type, CRED_ACCESS_TOKEN, &s->type, e)) != AM_OK ||
	    (rc = flow_rate_check(env, "identity", FLOW_RATE_PER_IP, ip, &retry_after, e)) !=
		    AM_OK ||
	    (rc = verify_token(env, assertion, AM_TYP_ID_JAG, &s->t, &s->v, e)) != AM_OK ||
	    (rc = claim_string(s->t.claims, "client_id", true, &s->client_id, e)) != AM_OK) {
		idjag_free(s);
		return rc;
	}
	*out = s;
	return AM_OK;
}

/* The rest of the checks that need no store: the client (a metadata
 * document when client_id names one: see check_client_id for w and
 * pending), the identity, the global rate limit. With *pending true
 * nothing else was checked yet. */
static enum am_err
idjag_client(struct idjag_state *s, struct cimd_waiter *w, bool *pending, struct am_error *e)
{
	const struct flow_env *env = s->env;
	int64_t retry_after;
	enum am_err rc;

	if ((rc = check_client_id(env, &s->v, s->client_id, &s->client, w, pending, e)) != AM_OK ||
	    (pending != NULL && *pending))
		return rc;
	if ((rc = read_identity(s->t.claims, &s->id, e)) != AM_OK)
		return rc;
	s->id.client_id = s->client_id; /* borrowed from s->t, which lives as long as s */
	s->id.client = &s->client;
	/* Only a token that verified spends the global budget: forged or
	 * stale ones from many addresses cannot lock real agents out. */
	return flow_rate_check(env, "identity", FLOW_RATE_GLOBAL, s->ip[0] != '\0' ? s->ip : NULL,
			       &retry_after, e);
}

static enum am_err v01_auth_time(struct idjag_state *s, struct am_error *e);

/* Every check that needs no store, fetching a document here if need be. */
static enum am_err
idjag_prepare(const struct flow_env *env, const char *ip, const char *assertion,
	      const char *requested_type, struct idjag_state **out, struct am_error *e)
{
	struct idjag_state *s;
	enum am_err rc;

	if ((rc = idjag_verify(env, ip, assertion, requested_type, &s, e)) != AM_OK)
		return rc;
	if ((rc = v01_auth_time(s, e)) != AM_OK || (rc = idjag_client(s, NULL, NULL, e)) != AM_OK) {
		idjag_free(s);
		return rc;
	}
	*out = s;
	return AM_OK;
}

/* The registration.created event that the token and its client already
 * decide, built on the request's thread before the job is queued: the
 * store writer is the one serial stage of the pipeline, and packing,
 * sorting and writing the event there was a sixth of an ID-JAG job's
 * instructions. What only the transaction knows is left as holes that
 * created_event fills. */
static void
event_fields(struct idjag_state *s)
{
	const char *ip = s->ip[0] != '\0' ? s->ip : NULL;
	struct am_error e = {0};
	json_t *f;

	if (s->event.n > 0 || s->claim != NULL) /* a claim writes other events */
		return;
	f = json_pack("{s:s, s:s, s:s, s:s, s:s?, s:s?, s:s, s:s?, s:s, s:s?, s:s?, s:o, s:o, s:o}",
		      "registration_type", "agent-provider", "iss", s->v.iss, "sub", s->v.sub,
		      "provider", s->v.provider->name, "agent_platform", s->id.agent_platform,
		      "agent_context_id", s->id.agent_context_id, "credential_type",
		      store_cred_type_name(s->type), "ip", ip, "client_id", s->client_id,
		      "client_name", nonempty(s->client.client_name), "client_logo_uri",
		      nonempty(s->client.logo_uri), "user_id", audit_hole(), "new_registration",
		      audit_hole(), "registration_id", audit_hole());
	if (f != NULL && audit_prepare(&s->event, s->env->cfg->tenant, flow_now(s->env),
				       "registration.created", NULL, f, &e) != AM_OK)
		audit_discard(&s->event); /* out of memory: created_event fails the job */
}

/* The event with what the transaction decided: the user, whether the
 * registration is new, which one it is. */
static enum am_err
created_event(struct store *st, struct idjag_state *s, struct am_error *e)
{
	const struct audit_value v[] = {
		{.key = "user_id", .text = s->user_id},
		{.key = "new_registration", .flag = s->created},
		{.key = "registration_id", .text = s->reg_id},
	};

	event_fields(s); /* the synchronous flow */
	return audit_add_filled(st, &s->batch, &s->event, 0, s->reg_id, v, sizeof(v) / sizeof(v[0]),
				e);
}

/* The transaction: replay record, user, registration or first link,
 * credential, event. Store work only. */
static enum am_err
idjag_write(struct store *st, struct idjag_state *s, struct am_error *e)
{
	const struct flow_env *env = s->env;
	const char *ip = s->ip[0] != '\0' ? s->ip : NULL;
	enum am_err rc;

	audit_discard(&s->batch);
	/* Every check passed: the jti is recorded in the same transaction that
	 * issues the credential, so a refused token never burns its jti and
	 * two requests with one token cannot both succeed. */
	if ((rc = store_begin(st, e)) != AM_OK)
		return rc;
	if ((rc = record_jti(env, st, &s->v, "idjag", e)) != AM_OK ||
	    (rc = match_user(env, st, &s->v, &s->id, s->user_id, &s->link, &s->link_to,
			     &s->provisioned, e)) != AM_OK)
		goto fail;
	if (s->link) {
		if ((rc = first_link_start(env, st, &s->v, &s->id, &s->link_to, s->type, ip,
					   &s->batch, &s->att, s->token,
					   s->identity_only ? &s->ceremony : NULL, &s->res, e)) !=
			    AM_OK ||
		    (rc = store_commit(st, e)) != AM_OK)
			goto fail;
		return AM_OK;
	}
	if ((rc = registration_for(env, st, &s->v, &s->id, s->user_id, ip, &s->created, s->reg_id,
				   e)) != AM_OK ||
	    (rc = check_blocks(st, s->v.iss, s->v.sub, s->user_id, s->reg_id, e)) != AM_OK ||
	    (!s->identity_only &&
	     (rc = flow_issue_credential_for(env, st, s->reg_id, s->type, s->v.provider->scopes,
					     s->user_id, s->v.iss, s->v.sub, false, &s->res, e)) !=
		     AM_OK) ||
	    (rc = created_event(st, s, e)) != AM_OK ||
	    (rc = store_commit(st, e)) != AM_OK)
		goto fail;
	am_copy(s->res.registration_id, sizeof(s->res.registration_id), s->reg_id);
	if (s->identity_only)
		am_copy(s->res.scopes, sizeof(s->res.scopes), s->v.provider->scopes);
	s->res.kind = REG_AGENT;
	s->res.agent_verified = true;
	return AM_OK;
fail:
	store_rollback(st);
	audit_discard(&s->batch);
	return rc;
}

/* After the commit: the events, the log, and for a first link its mail. */
static void
log_provisioned(const struct idjag_state *s)
{
	if (s->provisioned)
		log_info("user provisioned id=%s via=id_jag provider=%s", s->user_id,
			 s->v.provider->name);
}

static enum am_err
idjag_answer(struct idjag_state *s, struct reg_result *out, struct am_error *e)
{
	const struct flow_env *env = s->env;
	enum am_err rc;

	audit_flush(env->audit, &s->batch);
	log_provisioned(s);
	if (s->link && s->identity_only) {
		/* v0.6: the agent shows the user_code; nothing is mailed (the
		 * owner signs in at the service, docs/protocol.md) */
		log_info("first link requested registration=%s provider=%s ceremony=user_code "
			 "attempt=%s",
			 s->res.registration_id, s->v.provider->name, s->ceremony.attempt_id);
	} else if (s->link) {
		log_info("first link requested registration=%s provider=%s", s->res.registration_id,
			 s->v.provider->name);
		/* After the commit, as for email registrations: no write lock
		 * across SMTP; a failed send leaves a registration that expires. */
		if ((rc = flow_send_claim_mail(env, s->link_to.email, s->token, s->att.expires_at,
					       e)) != AM_OK)
			return rc;
	} else {
		log_info("registration created id=%s kind=agent provider=%s user=%s credential=%s "
			 "type=%s",
			 s->reg_id, s->v.provider->name, s->user_id,
			 s->res.has_credential ? s->res.credential_id : "none",
			 s->res.has_credential ? store_cred_type_name(s->res.credential_type)
					       : "none");
	}
	*out = s->res;
	return AM_OK;
}

enum am_err
flow_register_idjag(const struct flow_env *env, struct store *st, const char *ip,
		    const char *assertion, const char *requested_type, struct reg_result *out,
		    struct am_error *e)
{
	struct idjag_state *s = NULL;
	enum am_err rc;

	if ((rc = idjag_prepare(env, ip, assertion, requested_type, &s, e)) != AM_OK)
		return rc;
	if ((rc = idjag_write(st, s, e)) == AM_OK)
		rc = idjag_answer(s, out, e);
	idjag_free(s);
	return rc;
}

/* v0.5's auth_time rule, with the provider's window (max, 0: auth_time
 * optional): present unless the window is 0, not in the future beyond the
 * skew, at most max old. */
static enum am_err
check_auth_time(const struct flow_env *env, int64_t max, const json_t *claims, struct am_error *e)
{
	const struct am_config *cfg = env->cfg;
	int64_t now = flow_now(env), at;
	json_t *v = json_object_get(claims, "auth_time");

	if (v == NULL)
		return max == 0 ? AM_OK
				: am_fail(e, AM_E_LOGIN_REQUIRED,
					  "the ID-JAG has no auth_time; sign the user in again at "
					  "the provider and mint a fresh one");
	if (!json_is_integer(v) || json_integer_value(v) <= 0)
		return am_fail(e, AM_E_INVALID_REQUEST,
			       "the token's auth_time claim must be a positive whole number of "
			       "seconds");
	at = (int64_t)json_integer_value(v);
	if (at > am_time_add(now, cfg->clock_skew))
		return am_fail(e, AM_E_LOGIN_REQUIRED, "the ID-JAG's auth_time is in the future");
	if (max > 0 && now - at > max)
		return am_fail(e, AM_E_LOGIN_REQUIRED,
			       "the user signed in at the provider more than %lld s ago; sign in "
			       "again (prompt=login) and mint a fresh ID-JAG",
			       (long long)max);
	return AM_OK;
}

/* The v0.6 endpoints' auth_time check of a verified token (before its jti
 * is spent), the window used going to *max_out for the 401's max_age. */
static enum am_err
fresh_enough(struct idjag_state *s, int64_t *max_out, struct am_error *e)
{
	*max_out = am_provider_max_auth_age(s->env->cfg, s->v.provider);
	return check_auth_time(s->env, *max_out, s->t.claims, e);
}

/* v0.1 does not require auth_time; a provider entry may
 * ([provider] require_auth_time), with its window. */
static enum am_err
v01_auth_time(struct idjag_state *s, struct am_error *e)
{
	int64_t max;

	if (!s->v.provider->require_auth_time)
		return AM_OK;
	if ((max = am_provider_max_auth_age(s->env->cfg, s->v.provider)) == 0)
		max = -1; /* required, of any age */
	return check_auth_time(s->env, max, s->t.claims, e);
}

static enum am_err claim_write(struct store *st, struct idjag_state *s, struct am_error *e);

static enum am_err
idjag_job(struct store *st, void *arg, struct am_error *e)
{
	struct flow_pending_idjag *p = arg;

	(void)e;
	/* The registration opens and ends its own transaction (a savepoint of
	 * the batch); its refusal (a replayed jti, a block) is the answer, not
	 * a failure of the batch. */
	memset(&p->s->err, 0, sizeof(p->s->err));
	/* A run after the batch's rollback (store_job.rerun) starts from
	 * nothing: the writes decide every result again. */
	flow_result_wipe(&p->s->res, sizeof(p->s->res));
	flow_result_wipe(p->s->token, sizeof(p->s->token));
	flow_result_wipe(&p->s->ceremony, sizeof(p->s->ceremony));
	memset(&p->s->att, 0, sizeof(p->s->att));
	p->s->rc = p->s->claim != NULL ? claim_write(st, p->s, &p->s->err)
				       : idjag_write(st, p->s, &p->s->err);
	if (p->s->rc == AM_OK && !p->s->link && p->s->then != NULL)
		p->s->then(st, &p->s->res, p->s->then_arg);
	return AM_OK;
}

static void
idjag_done(struct store_job *job)
{
	struct flow_pending_idjag *p = job->arg;

	p->done(p->done_arg);
}

/* The document's fetch ended (on its thread): the client is checked again,
 * from the cache now, and the registration goes to the group commit; a
 * refusal is answered through done as a failed job would be. */
static void
idjag_cimd_ready(void *arg)
{
	struct flow_pending_idjag *p = arg;
	struct am_error e = {0};
	bool pending = false;
	enum am_err rc;

	if ((rc = idjag_client(p->s, NULL, &pending, &e)) == AM_OK) {
		event_fields(p->s);
		rc = store_writer_submit(p->s->env->writer, &p->job, &e);
	}
	if (rc != AM_OK) {
		p->job.rc = rc;
		p->job.err = e;
		p->done(p->done_arg);
	}
}

/* The rest of a submit once p->s is verified: the client (a document to
 * fetch parks the request), then the job. p->s is freed on a refusal. */
static enum am_err
idjag_submit(const struct flow_env *env, struct flow_pending_idjag *p, void (*done)(void *arg),
	     void *done_arg, struct am_error *e)
{
	bool pending = false;
	enum am_err rc;

	p->done = done;
	p->done_arg = done_arg;
	p->job = (struct store_job){.run = idjag_job, .done = idjag_done, .arg = p, .rerun = true};
	p->s->wait = (struct cimd_waiter){.ready = idjag_cimd_ready, .arg = p};
	/* A document to fetch: its fetch runs on a thread of its own, and the
	 * request stays parked (no worker held) until idjag_cimd_ready. */
	if ((rc = idjag_client(p->s, &p->s->wait, &pending, e)) == AM_OK && pending)
		return AM_OK;
	if (rc == AM_OK) {
		event_fields(p->s);
		rc = store_writer_submit(env->writer, &p->job, e);
	}
	if (rc != AM_OK) {
		idjag_free(p->s);
		p->s = NULL;
	}
	return rc;
}

enum am_err
flow_register_idjag_submit(const struct flow_env *env, const char *ip, const char *assertion,
			   const char *requested_type, struct flow_pending_idjag *p,
			   void (*done)(void *arg), void *done_arg, struct am_error *e)
{
	enum am_err rc;

	memset(p, 0, sizeof(*p));
	if ((rc = idjag_verify(env, ip, assertion, requested_type, &p->s, e)) != AM_OK)
		return rc;
	if ((rc = v01_auth_time(p->s, e)) != AM_OK) {
		idjag_free(p->s);
		p->s = NULL;
		return rc;
	}
	return idjag_submit(env, p, done, done_arg, e);
}

enum am_err
flow_register_idjag_identity_submit(
	const struct flow_env *env, const char *ip, const char *assertion,
	void (*then)(struct store *st, const struct reg_result *res, void *arg), void *then_arg,
	struct flow_pending_idjag *p, void (*done)(void *arg), void *done_arg, struct am_error *e)
{
	enum am_err rc;

	memset(p, 0, sizeof(*p));
	if ((rc = idjag_verify(env, ip, assertion, NULL, &p->s, e)) != AM_OK)
		return rc;
	/* v0.5: the user's sign-in must be fresh, checked on the verified
	 * claims and before the jti is spent. */
	if ((rc = fresh_enough(p->s, &p->max_auth_age, e)) != AM_OK) {
		idjag_free(p->s);
		p->s = NULL;
		return rc;
	}
	p->s->identity_only = true;
	p->s->then = then;
	p->s->then_arg = then_arg;
	return idjag_submit(env, p, done, done_arg, e);
}

enum am_err
flow_pending_idjag_result(struct flow_pending_idjag *p, struct reg_result *out, struct am_error *e)
{
	if (p->job.rc != AM_OK) {
		*e = p->job.err;
		return p->job.rc;
	}
	if (p->s->rc != AM_OK) {
		*e = p->s->err;
		return p->s->rc;
	}
	return idjag_answer(p->s, out, e);
}

const struct ceremony_block *
flow_pending_idjag_claim(const struct flow_pending_idjag *p)
{
	return p->s != NULL && p->s->link && p->s->identity_only ? &p->s->ceremony : NULL;
}

void
flow_pending_idjag_wipe(struct flow_pending_idjag *p)
{
	idjag_free(p->s);
	p->s = NULL;
}

/* True when the events claim holds the revocation event. */
static bool
has_revocation_event(const json_t *claims)
{
	json_t *ev = json_object_get(claims, "events");

	return json_is_object(ev) && (json_is_object(json_object_get(ev, AM_EVENT_REVOKED)) ||
				      json_is_object(json_object_get(ev, AM_EVENT_OIDC_LOGOUT)));
}

/* Revokes the credentials of refs (n of them, sorted by registration) at
 * now, marking each registration revoked once; events go into batch. */
static enum am_err
revoke_refs(const struct flow_env *env, struct store *st, const struct store_cred_ref *refs,
	    size_t n, const char *reason, struct audit_batch *batch, struct am_error *e)
{
	int64_t now = flow_now(env);
	enum am_err rc;

	for (size_t i = 0; i < n; i++) {
		struct store_reg reg;

		if ((rc = store_cred_revoke(st, refs[i].id, now, e)) != AM_OK ||
		    (rc = audit_add(
			     st, batch, env->cfg->tenant, now, "credential.revoked",
			     refs[i].registration_id,
			     json_pack("{s:s, s:s}", "credential_id", refs[i].id, "reason", reason),
			     e)) != AM_OK)
			return rc;
		if (i > 0 && strcmp(refs[i].registration_id, refs[i - 1].registration_id) == 0)
			continue;
		if ((rc = store_reg_by_id(st, refs[i].registration_id, &reg, e)) != AM_OK)
			return rc;
		if (reg.status == REG_REVOKED)
			continue; /* already, by an earlier batch */
		if ((rc = store_reg_transition(st, reg.id, reg.status, REG_REVOKED, e)) != AM_OK ||
		    (rc = store_refresh_revoke_reg(st, reg.id, now, "registration", NULL, e)) !=
			    AM_OK ||
		    (rc = audit_add(
			     st, batch, env->cfg->tenant, now, "registration.revoked", reg.id,
			     json_pack("{s:s, s:s?, s:s?, s:s?, s:s?}", "reason", reason, "iss",
				       reg.iss[0] != '\0' ? reg.iss : NULL, "sub",
				       reg.sub[0] != '\0' ? reg.sub : NULL, "agent_platform",
				       reg.agent_platform[0] != '\0' ? reg.agent_platform : NULL,
				       "agent_context_id",
				       reg.agent_context_id[0] != '\0' ? reg.agent_context_id
								       : NULL),
			     e)) != AM_OK)
			return rc;
	}
	return AM_OK;
}

#define REVOKE_BATCH 256

/* Revokes everything f matches, REVOKE_BATCH credentials per transaction.
 * When first_tx_open, the caller has begun the first transaction (the
 * logout token's jti is in it). With keep, the events of each committed
 * transaction are kept there for the caller to flush (a group-commit job,
 * whose transactions are durable only with its batch); else they are
 * flushed after each commit. */
static enum am_err
revoke_matching(const struct flow_env *env, struct store *st, const struct store_cred_filter *f,
		const char *reason, bool first_tx_open, struct audit_batch *keep, int *count,
		struct am_error *e)
{
	struct store_cred_ref refs[REVOKE_BATCH];
	bool open = first_tx_open;
	enum am_err rc;
	size_t n;

	*count = 0;
	do {
		struct audit_batch own = {0};
		struct audit_batch *batch = keep != NULL ? keep : &own;
		size_t kept = batch->n;

		if (!open && (rc = store_begin(st, e)) != AM_OK)
			return rc;
		open = false;
		if ((rc = store_cred_live(st, f, refs, REVOKE_BATCH, &n, e)) != AM_OK ||
		    (rc = revoke_refs(env, st, refs, n, reason, batch, e)) != AM_OK ||
		    (rc = store_commit(st, e)) != AM_OK) {
			store_rollback(st);
			flow_audit_truncate(batch, kept);
			audit_discard(&own);
			return rc;
		}
		audit_flush(env->audit, &own);
		*count += (int)n;
	} while (n == REVOKE_BATCH);
	return AM_OK;
}

/* The checks of a logout token that need no store: its signature (a key
 * fetch when due), its event, no nonce. On AM_OK t holds its claims and v
 * borrows from them. */
static enum am_err
logout_verify(const struct flow_env *env, const char *token, struct jose_token *t,
	      struct verified *v, struct am_error *e)
{
	enum am_err rc;

	if (env->trust == NULL || env->cfg->nproviders == 0)
		return am_fail(e, AM_E_INVALID_ISSUER, "this service trusts no provider");
	if ((rc = verify_token(env, token, AM_TYP_LOGOUT, t, v, e)) != AM_OK)
		return rc;
	if (!has_revocation_event(t->claims))
		return am_fail(e, AM_E_INVALID_REQUEST,
			       "a logout token's events must hold " AM_EVENT_REVOKED);
	if (json_object_get(t->claims, "nonce") != NULL)
		return am_fail(e, AM_E_INVALID_REQUEST, "a logout token must not carry a nonce");
	return AM_OK;
}

enum am_err
flow_revoke_logout(const struct flow_env *env, struct store *st, const char *token, int *count,
		   struct am_error *e)
{
	struct jose_token t = {0};
	struct verified v;
	struct store_cred_filter f = {0};
	enum am_err rc;

	if ((rc = logout_verify(env, token, &t, &v, e)) != AM_OK)
		goto out;
	if ((rc = store_begin(st, e)) != AM_OK)
		goto out;
	if ((rc = record_jti(env, st, &v, "logout", e)) != AM_OK) {
		store_rollback(st);
		goto out;
	}
	f.iss = v.iss;
	f.sub = v.sub;
	f.aud = env->cfg->public_url;
	rc = revoke_matching(env, st, &f, "provider_logout", true, NULL, count, e);
	if (rc == AM_OK)
		log_info("logout token processed provider=%s revoked=%d", v.provider->name, *count);
out:
	jose_token_free(&t);
	return rc;
}

/* A SET's revocation (the 2026-07-23 change): the registration of (iss,
 * sub, aud) is revoked even when it holds no live credential (a v0.6
 * registration that never exchanged its assertion); its credentials follow
 * in revoke_step. In the caller's transaction; nothing for an unhandled
 * SET. */
static enum am_err
set_revoke_registration(const struct flow_env *env, struct store *st, struct flow_pending_op *p,
			struct am_error *e)
{
	struct store_delegation d;
	enum am_err rc;

	if (!p->set_handled)
		return AM_OK;
	rc = store_delegation_get(st, p->iss, p->sub, p->aud, &d, e);
	if (rc == AM_OK) {
		rc = store_reg_transition(st, d.registration_id, REG_CLAIMED, REG_REVOKED, e);
		if (rc == AM_OK)
			rc = store_refresh_revoke_reg(st, d.registration_id, flow_now(env),
						      "registration", NULL, e);
		if (rc == AM_OK)
			rc = audit_add(st, &p->batch, env->cfg->tenant, flow_now(env),
				       "registration.revoked", d.registration_id,
				       json_pack("{s:s, s:s, s:s}", "reason", "provider_set", "iss",
						 p->iss, "sub", p->sub),
				       e);
	}
	return rc == AM_E_NOT_FOUND ? AM_OK : rc; /* not live: only its credentials */
}

/* RFC 7009 for an access token from /oauth2/token: that token alone; its
 * registration stays live and its identity assertion exchanges again. */
static enum am_err
revoke_one(const struct flow_env *env, struct store *st, struct flow_pending_op *p,
	   struct am_error *e)
{
	int64_t now = flow_now(env);
	enum am_err rc;

	if ((rc = store_begin(st, e)) != AM_OK)
		return rc;
	rc = store_cred_revoke(st, p->credential_id, now, e);
	if (rc == AM_OK) {
		p->count = 1;
		/* the v0.6 guide's event for it */
		rc = audit_add(st, &p->batch, env->cfg->tenant, now, "token.revoked",
			       p->registration_id,
			       json_pack("{s:s, s:s}", "credential_id", p->credential_id, "reason",
					 p->reason),
			       e);
	} else if (rc == AM_E_NOT_FOUND) {
		rc = AM_OK; /* revoked meanwhile: the same answer (RFC 7009 2.2) */
	}
	if (rc == AM_OK)
		rc = store_commit(st, e);
	if (rc != AM_OK) {
		store_rollback(st);
		p->count = 0;
	}
	return rc;
}

/* RFC 7009 2.1 for a refresh token: its family, every token of it; the
 * registration and its access tokens stay (as for one access token). */
static enum am_err
revoke_family(const struct flow_env *env, struct store *st, struct flow_pending_op *p,
	      struct am_error *e)
{
	int64_t now = flow_now(env);
	enum am_err rc;

	if ((rc = store_begin(st, e)) != AM_OK)
		return rc;
	if ((rc = store_refresh_family_revoke(st, p->family_id, now, "agent", e)) != AM_OK ||
	    (rc = audit_add(st, &p->batch, env->cfg->tenant, now, "refresh.revoked",
			    p->registration_id,
			    json_pack("{s:s, s:s}", "family_id", p->family_id, "reason", p->reason),
			    e)) != AM_OK ||
	    (rc = store_commit(st, e)) != AM_OK) {
		store_rollback(st);
		return rc;
	}
	p->count = 1;
	return AM_OK;
}

/* The revocation job of struct flow_pending_op: one access token
 * (revoke_one); or a logout token's or SET's replay record (when there is
 * one), a SET's registration, and every live credential its filter names. */
static enum am_err
revoke_step(struct store *st, struct flow_pending_op *p, struct am_error *e)
{
	struct store_cred_filter f = {0};
	bool fresh = false;
	enum am_err rc;

	p->count = 0;
	if (p->credential_id[0] != '\0')
		return revoke_one(p->env, st, p, e);
	if (p->family_id[0] != '\0')
		return revoke_family(p->env, st, p, e);
	if (p->jti_key[0] != '\0') {
		if ((rc = store_begin(st, e)) != AM_OK)
			return rc;
		if ((rc = store_jti_record(st, p->iss, p->jti_key, p->jti_until, &fresh, e)) !=
			    AM_OK ||
		    (!fresh && (rc = am_fail(e, AM_E_REPLAY_DETECTED,
					     "this token's jti was already used; mint a fresh "
					     "token")) != AM_OK)) {
			store_rollback(st);
			return rc;
		}
		if (p->set_event && (rc = set_revoke_registration(p->env, st, p, e)) != AM_OK) {
			store_rollback(st);
			return rc;
		}
		if (p->set_event && !p->set_handled) { /* only its jti to record */
			if ((rc = store_commit(st, e)) != AM_OK)
				store_rollback(st);
			return rc;
		}
		f.iss = p->iss;
		f.sub = p->sub;
		f.aud = p->aud;
	} else {
		f.registration_id = p->registration_id;
	}
	return revoke_matching(p->env, st, &f, p->reason, p->jti_key[0] != '\0', &p->batch,
			       &p->count, e);
}

enum am_err
flow_revoke_logout_submit(const struct flow_env *env, const char *token, struct flow_pending_op *p,
			  void (*done)(void *arg), void *done_arg, struct am_error *e)
{
	struct jose_token t = {0};
	struct verified v;
	enum am_err rc;

	memset(p, 0, sizeof(*p));
	p->env = env;
	p->kind = FLOW_OP_REVOKE;
	p->step = revoke_step;
	p->reason = "provider_logout";
	if ((rc = logout_verify(env, token, &t, &v, e)) != AM_OK)
		goto out;
	/* The replay key and window of record_jti, copied: the job outlives t. */
	if (!am_copy(p->iss, sizeof(p->iss), v.iss) || !am_copy(p->sub, sizeof(p->sub), v.sub) ||
	    !am_copy(p->aud, sizeof(p->aud), env->cfg->public_url) ||
	    snprintf(p->jti_key, sizeof(p->jti_key), "logout:%s", v.jti) >=
		    (int)sizeof(p->jti_key)) {
		rc = am_fail(e, AM_E_INVALID_REQUEST, "the logout token's claims are too long");
		goto out;
	}
	p->jti_until = am_time_add(v.exp != 0 ? v.exp : am_time_add(v.iat, LOGOUT_MAX_AGE),
				   env->cfg->clock_skew);
	p->provider = v.provider->name;
	rc = flow_op_submit(p, done, done_arg, e);
out:
	jose_token_free(&t);
	return rc;
}

/* The lookup of an RFC 7009 revocation, on the caller's connection: *live
 * false when token is not a live credential (nothing to do); else p is set
 * up to revoke it (alone, or with its registration: flow_revoke_token). */
static enum am_err
revoke_token_prepare(const struct flow_env *env, struct store *st, const char *token,
		     struct flow_pending_op *p, bool *live, struct am_error *e)
{
	struct store_auth a;
	enum am_err rc;

	memset(p, 0, sizeof(*p));
	*live = false;
	p->env = env;
	p->kind = FLOW_OP_REVOKE;
	p->step = revoke_step;
	p->reason = "agent";
	if (strncmp(token, PREFIX_REFRESH_TOKEN, strlen(PREFIX_REFRESH_TOKEN)) == 0) {
		/* RFC 7009 2.1: a server with refresh tokens revokes them here. */
		struct store_refresh rt;
		uint8_t hash[AM_HASH_LEN];

		am_sha256_str(token, hash);
		rc = store_refresh_by_hash(st, hash, &rt, e);
		if (rc == AM_E_NOT_FOUND || (rc == AM_OK && rt.family_revoked_at != 0))
			return AM_OK;
		if (rc != AM_OK)
			return rc;
		am_copy(p->family_id, sizeof(p->family_id), rt.family_id);
		am_copy(p->registration_id, sizeof(p->registration_id), rt.registration_id);
		*live = true;
		return AM_OK;
	}
	/* A read on the caller's connection: a token that is not live costs
	 * the writer nothing, and the answer is the same (RFC 7009 2.2). */
	rc = flow_authenticate(env, st, token, &a, e);
	if (rc == AM_E_INVALID_TOKEN)
		return AM_OK;
	if (rc != AM_OK)
		return rc;
	am_copy(p->registration_id, sizeof(p->registration_id), a.cred.registration_id);
	/* Only /oauth2/token sets a resource (RFC 8707): that marks the v0.6
	 * access token, revoked alone; a v0.1 credential takes its
	 * registration with it (docs/protocol.md). */
	if (a.cred.resource[0] != '\0')
		am_copy(p->credential_id, sizeof(p->credential_id), a.cred.id);
	*live = true;
	return AM_OK;
}

enum am_err
flow_revoke_token_submit(const struct flow_env *env, struct store *st, const char *token,
			 struct flow_pending_op *p, bool *queued, void (*done)(void *arg),
			 void *done_arg, struct am_error *e)
{
	enum am_err rc;
	bool live;

	*queued = false;
	if ((rc = revoke_token_prepare(env, st, token, p, &live, e)) != AM_OK || !live)
		return rc;
	if ((rc = flow_op_submit(p, done, done_arg, e)) == AM_OK)
		*queued = true;
	return rc;
}

enum am_err
flow_revoke_token(const struct flow_env *env, struct store *st, const char *token, int *count,
		  struct am_error *e)
{
	struct flow_pending_op *p = calloc(1, sizeof(*p));
	enum am_err rc;
	bool live;

	*count = 0;
	if (p == NULL)
		return am_fail(e, AM_E_INTERNAL, "out of memory");
	if ((rc = revoke_token_prepare(env, st, token, p, &live, e)) == AM_OK && live &&
	    (rc = flow_op_run_here(st, p, e)) == AM_OK)
		*count = p->count;
	flow_pending_op_wipe(p);
	free(p);
	return rc;
}

enum am_err
flow_revoke_set_submit(const struct flow_env *env, const char *token, struct flow_pending_op *p,
		       void (*done)(void *arg), void *done_arg, struct am_error *e)
{
	struct jose_token t = {0};
	struct verified v;
	json_t *events;
	enum am_err rc;

	memset(p, 0, sizeof(*p));
	p->env = env;
	p->kind = FLOW_OP_REVOKE;
	p->step = revoke_step;
	p->reason = "provider_set";
	p->set_event = true;
	if (env->trust == NULL || env->cfg->nproviders == 0)
		return am_fail(e, AM_E_INVALID_ISSUER, "this service trusts no provider");
	if ((rc = verify_token(env, token, AM_TYP_SET, &t, &v, e)) != AM_OK)
		goto out;
	events = json_object_get(t.claims, "events");
	if (!json_is_object(events) || json_object_size(events) == 0) {
		rc = am_fail(e, AM_E_INVALID_REQUEST,
			     "a SET's events claim must be an object naming at least one event");
		goto out;
	}
	/* RFC 8417 2.2: events this service does not know are ignored; only
	 * the revocation event acts (the jti is recorded either way). */
	p->set_handled = json_is_object(json_object_get(events, AM_EVENT_REVOKED));
	p->set_events = json_object_size(events);
	/* The replay key and window of record_jti, copied: the job outlives t. */
	if (!am_copy(p->iss, sizeof(p->iss), v.iss) || !am_copy(p->sub, sizeof(p->sub), v.sub) ||
	    !am_copy(p->aud, sizeof(p->aud), env->cfg->public_url) ||
	    snprintf(p->jti_key, sizeof(p->jti_key), "set:%s", v.jti) >= (int)sizeof(p->jti_key)) {
		rc = am_fail(e, AM_E_INVALID_REQUEST, "the SET's claims are too long");
		goto out;
	}
	p->jti_until = am_time_add(v.exp != 0 ? v.exp : am_time_add(v.iat, LOGOUT_MAX_AGE),
				   env->cfg->clock_skew);
	p->provider = v.provider->name;
	rc = flow_op_submit(p, done, done_arg, e);
out:
	jose_token_free(&t);
	return rc;
}

enum am_err
flow_revoke_block(const struct flow_env *env, struct store *st, enum block_kind kind,
		  const char *value, const char *sub, const char *actor, int *count, bool *created,
		  struct am_error *e)
{
	struct audit_batch batch = {0};
	struct store_cred_filter f = {0};
	int64_t now = flow_now(env);
	enum am_err rc;

	if (value == NULL || value[0] == '\0' || (kind == BLOCK_SUBJECT) != (sub != NULL) ||
	    (sub != NULL && sub[0] == '\0'))
		return am_fail(e, AM_E_INVALID_REQUEST,
			       "a block needs its value (and, for a "
			       "subject, the issuer and the sub)");
	/* The block commits before the credentials are revoked: from then on
	 * no ID-JAG (whose check runs in its own write transaction) revives
	 * what is being revoked. */
	if ((rc = store_begin(st, e)) != AM_OK)
		return rc;
	if ((rc = store_block_put(st, kind, value, sub, "operator", now, created, e)) != AM_OK ||
	    (*created && (rc = audit_add(st, &batch, env->cfg->tenant, now, "block.created",
					 kind == BLOCK_REGISTRATION ? value : NULL,
					 json_pack("{s:s, s:s, s:s?, s:s, s:s}", "kind",
						   store_block_kind_name(kind), "value", value,
						   "sub", sub, "reason", "operator", "actor",
						   actor != NULL ? actor : "operator"),
					 e)) != AM_OK) ||
	    (rc = store_commit(st, e)) != AM_OK) {
		store_rollback(st);
		audit_discard(&batch);
		return rc;
	}
	audit_flush(env->audit, &batch);
	log_info("operator block kind=%s created=%s", store_block_kind_name(kind),
		 *created ? "yes" : "already");
	switch (kind) {
	case BLOCK_ISSUER:
		f.iss = value;
		break;
	case BLOCK_SUBJECT:
		f.iss = value;
		f.sub = sub;
		break;
	case BLOCK_USER:
		f.user_id = value;
		break;
	case BLOCK_REGISTRATION:
		f.registration_id = value;
		break;
	}
	return revoke_matching(env, st, &f, "operator", false, NULL, count, e);
}

enum am_err
flow_unblock(const struct flow_env *env, struct store *st, enum block_kind kind, const char *value,
	     const char *sub, const char *actor, struct am_error *e)
{
	struct audit_batch batch = {0};
	int64_t now = flow_now(env);
	enum am_err rc;

	if ((rc = store_begin(st, e)) != AM_OK)
		return rc;
	rc = store_block_delete(st, kind, value, sub, e);
	if (rc == AM_E_NOT_FOUND)
		rc = am_fail(e, AM_E_NOT_FOUND, "there is no such block");
	if (rc != AM_OK ||
	    (rc = audit_add(st, &batch, env->cfg->tenant, now, "block.lifted",
			    kind == BLOCK_REGISTRATION ? value : NULL,
			    json_pack("{s:s, s:s, s:s?, s:s, s:s}", "kind",
				      store_block_kind_name(kind), "value", value, "sub", sub,
				      "reason", "operator", "actor",
				      actor != NULL ? actor : "operator"),
			    e)) != AM_OK ||
	    (rc = store_commit(st, e)) != AM_OK) {
		store_rollback(st);
		audit_discard(&batch);
		return rc;
	}
	audit_flush(env->audit, &batch);
	log_info("operator block lifted kind=%s", store_block_kind_name(kind));
	return AM_OK;
}

enum am_err
flow_revoke_bulk(const struct flow_env *env, struct store *st, const struct store_cred_filter *f,
		 const char *reason, int *count, struct am_error *e)
{
	return revoke_matching(env, st, f, reason, false, NULL, count, e);
}

/* ---- v0.7: the ID-JAG claim of an anonymous registration ---- */

/* The first-link gate of the claim: an attempt bound to the existing
 * account's address and naming the subject; its owner completes it at
 * /claim, which links the subject too (flows/ceremony.c). */
static enum am_err
claim_step_up(struct store *st, struct idjag_state *s, const struct store_reg *reg,
	      struct am_error *e)
{
	const struct flow_env *env = s->env;
	struct flow_pending_idclaim *c = s->claim;
	enum am_err rc;

	if ((rc = check_blocks(st, s->v.iss, s->v.sub, s->link_to.id, reg->id, e)) != AM_OK ||
	    (rc = flow_ceremony_new_attempt(env, st, reg, s->link_to.email, CEREMONY_USER_CODE,
					    s->v.iss, s->v.sub, &s->batch, &c->ceremony, e)) !=
		    AM_OK)
		return rc;
	if (reg->status == REG_UNCLAIMED &&
	    (rc = store_reg_transition(st, reg->id, REG_UNCLAIMED, REG_PENDING_CLAIM, e)) != AM_OK)
		return rc;
	c->step_up = true;
	return audit_add(st, &s->batch, env->cfg->tenant, flow_now(env), "claim.requested", reg->id,
			 json_pack("{s:s, s:s, s:s?, s:s, s:s, s:s, s:s, s:s}", "email",
				   s->link_to.email, "claim_attempt_id", c->ceremony.attempt_id,
				   "ip", nonempty(s->ip), "ceremony", "user_code", "via",
				   "identity_assertion", "iss", s->v.iss, "sub", s->v.sub,
				   "provider", s->v.provider->name),
			 e);
}

/* A clean match: the registration is the user's now. */
static enum am_err
claim_now(struct store *st, struct idjag_state *s, const struct store_reg *reg, struct am_error *e)
{
	const struct flow_env *env = s->env;
	const struct am_config *cfg = env->cfg;
	struct flow_pending_idclaim *c = s->claim;
	struct store_delegation d;
	struct store_user u;
	int64_t now = flow_now(env);
	int revoked = 0;
	enum am_err rc;

	if ((rc = check_blocks(st, s->v.iss, s->v.sub, s->user_id, reg->id, e)) != AM_OK)
		return rc;
	rc = store_delegation_get(st, s->v.iss, s->v.sub, cfg->public_url, &d, e);
	if (rc == AM_E_NOT_FOUND) {
		/* the subject's first registration here is this one */
		if ((rc = store_delegation_insert(st, s->v.iss, s->v.sub, cfg->public_url,
						  s->user_id, reg->id, now, e)) != AM_OK ||
		    (rc = audit_add(st, &s->batch, cfg->tenant, now, "delegation.created", reg->id,
				    json_pack("{s:s, s:s, s:s, s:s, s:s}", "iss", s->v.iss, "sub",
					      s->v.sub, "provider", s->v.provider->name, "user_id",
					      s->user_id, "via", "identity_claim"),
				    e)) != AM_OK)
			return rc;
	} else if (rc != AM_OK) {
		return rc;
	}
	rc = store_reg_claim(st, reg->id, s->user_id, now, e);
	if (rc == AM_E_NOT_FOUND)
		rc = am_fail(e, AM_E_CLAIMED_OR_IN_FLIGHT,
			     "this registration was claimed meanwhile");
	/* as at the user_code ceremony's completion (v0.4): the pre-claim
	 * access tokens end, a v0.1 API key gets the post-claim scopes, and
	 * an open attempt stops working */
	if (rc != AM_OK ||
	    (rc = store_cred_revoke_reg_type(st, reg->id, CRED_ACCESS_TOKEN, now, &revoked, e)) !=
		    AM_OK ||
	    (rc = store_cred_upgrade(st, reg->id, s->user_id, cfg->scopes_post_claim, e)) !=
		    AM_OK ||
	    (rc = store_ceremony_expire_open(st, reg->id, e)) != AM_OK ||
	    (rc = store_reg_gen(st, reg->id, &c->gen, e)) != AM_OK ||
	    (rc = flow_refresh_family_start_in_tx(env, st, reg->id, c->refresh_token,
						  &c->refresh_expires, e)) != AM_OK)
		return rc;
	/* the assertion names the user's address only when the user holds it */
	c->email[0] = '\0';
	if (s->id.email[0] != '\0') {
		rc = store_user_by_email(st, s->id.email, &u, e);
		if (rc == AM_OK && strcmp(u.id, s->user_id) == 0)
			am_copy(c->email, sizeof(c->email), u.email);
		else if (rc != AM_OK && rc != AM_E_NOT_FOUND)
			return rc;
	}
	am_copy(c->user_id, sizeof(c->user_id), s->user_id);
	return audit_add(st, &s->batch, cfg->tenant, now, "claim.confirmed", reg->id,
			 json_pack("{s:s, s:s?, s:s, s:s, s:s, s:s, s:i}", "claimed_by_user_id",
				   s->user_id, "ip", nonempty(s->ip), "ceremony",
				   "identity_assertion", "iss", s->v.iss, "sub", s->v.sub,
				   "provider", s->v.provider->name, "credentials_revoked", revoked),
			 e);
}

/* The claim's transaction: the replay record, the registration, the user,
 * then the claim or the step-up. */
static enum am_err
claim_write(struct store *st, struct idjag_state *s, struct am_error *e)
{
	const struct flow_env *env = s->env;
	struct flow_pending_idclaim *c = s->claim;
	struct store_reg reg;
	enum am_err rc;

	audit_discard(&s->batch);
	c->step_up = false;
	if ((rc = store_begin(st, e)) != AM_OK)
		return rc;
	if ((rc = record_jti(env, st, &s->v, "idjag", e)) != AM_OK ||
	    (rc = flow_claimable(st, c->claim_token, flow_now(env), AM_E_CLAIMED_OR_IN_FLIGHT, &reg,
				 e)) != AM_OK)
		goto fail;
	if (reg.kind != REG_ANONYMOUS) {
		rc = am_fail(e, AM_E_CLAIMED_OR_IN_FLIGHT,
			     "only an anonymous registration is claimed with an identity "
			     "assertion; this one is %s",
			     reg.kind == REG_AGENT ? "a provider identity's"
						   : "bound to an address");
		goto fail;
	}
	am_copy(c->registration_id, sizeof(c->registration_id), reg.id);
	if ((rc = match_user(env, st, &s->v, &s->id, s->user_id, &s->link, &s->link_to,
			     &s->provisioned, e)) != AM_OK ||
	    (rc = s->link ? claim_step_up(st, s, &reg, e) : claim_now(st, s, &reg, e)) != AM_OK ||
	    (rc = store_commit(st, e)) != AM_OK)
		goto fail;
	return AM_OK;
fail:
	store_rollback(st);
	audit_discard(&s->batch);
	flow_result_wipe(&c->ceremony, sizeof(c->ceremony));
	flow_result_wipe(c->refresh_token, sizeof(c->refresh_token));
	return rc;
}

enum am_err
flow_identity_claim_submit(const struct flow_env *env, struct skey *keys, const char *ip,
			   const char *claim_token, const char *assertion,
			   struct flow_pending_idclaim *p, void (*done)(void *arg), void *done_arg,
			   struct am_error *e)
{
	struct flow_pending_idjag *j = &p->idjag;
	enum am_err rc;

	memset(p, 0, sizeof(*p));
	p->env = env;
	p->keys = keys;
	if (!am_copy(p->claim_token, sizeof(p->claim_token), claim_token))
		return am_fail(e, AM_E_INVALID_REQUEST, "claim_token is too long");
	if ((rc = idjag_verify(env, ip, assertion, NULL, &j->s, e)) != AM_OK)
		return rc;
	/* v0.5's freshness, before the jti is spent */
	if ((rc = fresh_enough(j->s, &j->max_auth_age, e)) != AM_OK) {
		idjag_free(j->s);
		j->s = NULL;
		return rc;
	}
	j->s->identity_only = true;
	j->s->claim = p;
	return idjag_submit(env, j, done, done_arg, e);
}

enum am_err
flow_pending_idclaim_outcome(struct flow_pending_idclaim *p, struct am_error *e)
{
	struct flow_pending_idjag *j = &p->idjag;
	const struct flow_env *env = p->env;

	if (j->job.rc != AM_OK) {
		*e = j->job.err;
		return j->job.rc;
	}
	if (j->s->rc != AM_OK) {
		*e = j->s->err;
		return j->s->rc;
	}
	audit_flush(env->audit, &j->s->batch);
	log_provisioned(j->s);
	if (p->step_up) {
		log_info("claim requested registration=%s provider=%s ceremony=user_code "
			 "via=identity_assertion attempt=%s",
			 p->registration_id, j->s->v.provider->name, p->ceremony.attempt_id);
		return AM_OK;
	}
	log_info("claim confirmed registration=%s user=%s via=identity_assertion provider=%s",
		 p->registration_id, p->user_id, j->s->v.provider->name);
	return AM_OK;
}

void
flow_pending_idclaim_wipe(struct flow_pending_idclaim *p)
{
	flow_pending_idjag_wipe(&p->idjag);
	free(p->assertion);
	OPENSSL_cleanse(p, sizeof(*p));
}
