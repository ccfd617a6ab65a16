/* Credentials and public ids, for every flow that makes a registration or
 * completes one (registration.c, claim.c, agent.c). */
#include <openssl/crypto.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "core/log.h"
#include "core/str.h"
#include "flows/internal.h"

static enum am_err issue(const struct flow_env *env, struct store *st, const char *registration_id,
			 enum cred_type type, const char *scopes, const char *user_id,
			 const char *source, const char *iss, const char *sub, bool announce,
			 struct reg_result *out, struct am_error *e);

enum am_err
flow_cred_type(const char *name, enum cred_type dflt, enum cred_type *out, struct am_error *e)
{
	if (name == NULL)
		*out = dflt;
	else if (strcmp(name, "api_key") == 0)
		*out = CRED_API_KEY;
	else if (strcmp(name, "access_token") == 0)
		*out = CRED_ACCESS_TOKEN;
	else
		return am_fail(e, AM_E_UNSUPPORTED_CREDENTIAL_TYPE,
			       "requested_credential_type must be api_key or access_token");
	return AM_OK;
}

enum am_err
flow_issue_credential(const struct flow_env *env, struct store *st, const char *registration_id,
		      enum cred_type type, const char *scopes, const char *user_id,
		      const char *source, struct reg_result *out, struct am_error *e)
{
	return issue(env, st, registration_id, type, scopes, user_id, source, NULL, NULL, true, out,
		     e);
}

enum am_err
flow_issue_credential_for(const struct flow_env *env, struct store *st, const char *registration_id,
			  enum cred_type type, const char *scopes, const char *user_id,
			  const char *iss, const char *sub, bool announce, struct reg_result *out,
			  struct am_error *e)
{
	return issue(env, st, registration_id, type, scopes, user_id, "id_jag", iss, sub, announce,
		     out, e);
}

/* The hex digits of an ordered id after its prefix: the time, then the
 * random part. */
#define ORDERED_TIME_DIGITS 11
#define ORDERED_BODY_CHARS (ORDERED_TIME_DIGITS + AM_ID_CHARS)

enum am_err
flow_ordered_id(const char *prefix, char *out, size_t cap, struct am_error *e)
{
	char rnd[STORE_ID_LEN];
	struct timespec ts;
	uint64_t ms;
	enum am_err rc;
	int n;

	/* The time first (milliseconds, 11 hex digits, good to the year 2527),
	 * then the 96 random bits of any public id: ids made close together
	 * sort together, so the primary keys and every index on them grow at
	 * their right edge, and a batch of registrations dirties a few pages
	 * instead of one random page per index per registration. */
	if ((rc = am_rand_id("", rnd, sizeof(rnd), e)) != AM_OK)
		return rc;
	clock_gettime(CLOCK_REALTIME, &ts);
	ms = (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
	n = snprintf(out, cap, "%s%0*llx%s", prefix, ORDERED_TIME_DIGITS,
		     (unsigned long long)(ms & 0xfffffffffffULL), rnd);
	if (n < 0 || (size_t)n >= cap)
		return am_fail(e, AM_E_INTERNAL, "id too long");
	return AM_OK;
}

enum am_err
flow_mint_secret(const char *token_prefix, const char *row_id, char *out, size_t cap,
		 uint8_t hash[AM_HASH_LEN], struct am_error *e)
{
	const char *body = strchr(row_id, '_');
	char head[32 + STORE_ID_LEN];
	enum am_err rc;
	int n;

	if (body == NULL || strlen(body + 1) != ORDERED_BODY_CHARS)
		return am_fail(e, AM_E_INTERNAL, "not an ordered id");
	n = snprintf(head, sizeof(head), "%s%s_", token_prefix, body + 1);
	if (n < 0 || (size_t)n >= sizeof(head))
		return am_fail(e, AM_E_INTERNAL, "token prefix too long");
	if ((rc = am_rand_token(head, out, cap, e)) != AM_OK)
		return rc;
	am_sha256_str(out, hash);
	return AM_OK;
}

void
flow_secret_key(const char *token, const char *id_prefix, struct store_secret *out)
{
	const char *body = strchr(token, '_');
	size_t n = 0;
	int w;

	out->id[0] = '\0';
	am_sha256_str(token, out->hash);
	if (body == NULL)
		return;
	body++;
	while (n < ORDERED_BODY_CHARS &&
	       ((body[n] >= '0' && body[n] <= '9') || (body[n] >= 'a' && body[n] <= 'f')))
		n++;
	if (n != ORDERED_BODY_CHARS || body[n] != '_')
		return; /* the older form, or no token of ours: found by hash or not at all */
	w = snprintf(out->id, sizeof(out->id), "%s%.*s", id_prefix, (int)n, body);
	if (w < 0 || (size_t)w >= sizeof(out->id))
		out->id[0] = '\0';
}

enum am_err
flow_reg_by_claim_token(struct store *st, const char *token, struct store_reg *reg,
			struct am_error *e)
{
	struct store_secret k;
	enum am_err rc;

	flow_secret_key(token, "reg_", &k);
	rc = store_reg_by_claim(st, &k, reg, e);
	OPENSSL_cleanse(&k, sizeof(k));
	return rc;
}

enum am_err
flow_mint_claim_token(struct store_reg *reg, char *out, size_t cap, struct am_error *e)
{
	reg->claim_by_id = true;
	return flow_mint_secret(PREFIX_CLAIM_TOKEN, reg->id, out, cap, reg->claim_hash, e);
}

enum am_err
flow_new_credential(const struct flow_env *env, const char *registration_id, enum cred_type type,
		    const char *scopes, const char *user_id, const char *source, const char *iss,
		    const char *sub, struct store_cred *c, struct reg_result *out,
		    struct am_error *e)
{
	int64_t now = flow_now(env);
	enum am_err rc;

	memset(c, 0, sizeof(*c));
	if ((rc = flow_ordered_id("crd_", c->id, sizeof(c->id), e)) != AM_OK ||
	    (rc = flow_mint_secret(type == CRED_API_KEY ? PREFIX_API_KEY : PREFIX_ACCESS_TOKEN,
				   c->id, out->credential, sizeof(out->credential), c->hash, e)) !=
		    AM_OK)
		return rc;
	c->by_id = true;
	am_copy(out->credential_id, sizeof(out->credential_id), c->id);
	c->type = type;
	if (!am_copy(c->scopes, sizeof(c->scopes), scopes) ||
	    !am_copy(c->source, sizeof(c->source), source) ||
	    !am_copy(c->registration_id, sizeof(c->registration_id), registration_id) ||
	    !am_copy(c->user_id, sizeof(c->user_id), user_id != NULL ? user_id : ""))
		return am_fail(e, AM_E_INTERNAL, "credential field too long");
	if (iss != NULL) {
		/* The audience is recorded in its canonical form (our issuer),
		 * whichever of the two accepted values the token named, so a
		 * logout token with either value finds it. */
		am_copy(c->iss, sizeof(c->iss), iss);
		am_copy(c->sub, sizeof(c->sub), sub);
		am_copy(c->aud, sizeof(c->aud), env->cfg->public_url);
	}
	c->created_at = now;
	c->expires_at =
		type == CRED_ACCESS_TOKEN ? am_time_add(now, env->cfg->ttl_access_token) : 0;
	out->has_credential = true;
	out->credential_type = type;
	out->credential_expires = c->expires_at;
	am_copy(out->scopes, sizeof(out->scopes), scopes);
	return AM_OK;
}

static enum am_err
issue(const struct flow_env *env, struct store *st, const char *registration_id,
      enum cred_type type, const char *scopes, const char *user_id, const char *source,
      const char *iss, const char *sub, bool announce, struct reg_result *out, struct am_error *e)
{
	struct store_cred c;
	enum am_err rc;

	if ((rc = flow_new_credential(env, registration_id, type, scopes, user_id, source, iss, sub,
				      &c, out, e)) != AM_OK ||
	    (rc = store_cred_insert(st, &c, e)) != AM_OK)
		return rc;
	if (announce)
		log_info("credential issued id=%s type=%s registration=%s", c.id,
			 store_cred_type_name(type), registration_id);
	return AM_OK;
}

void
flow_result_wipe(void *result, size_t size)
{
	OPENSSL_cleanse(result, size);
}
