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
	n = snprintf(out, cap, "%s%011llx%s", prefix, (unsigned long long)(ms & 0xfffffffffffULL),
		     rnd);
	if (n < 0 || (size_t)n >= cap)
		return am_fail(e, AM_E_INTERNAL, "id too long");
	return AM_OK;
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
	    (rc = am_rand_token(type == CRED_API_KEY ? PREFIX_API_KEY : PREFIX_ACCESS_TOKEN,
				out->credential, sizeof(out->credential), e)) != AM_OK)
		return rc;
	am_sha256_str(out->credential, c->hash);
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
