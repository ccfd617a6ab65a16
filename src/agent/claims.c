/* Claims, by the ceremony of the registration's generation. v0.6: the
 * v0.4-v0.6 user_code ceremony: start an attempt at claim_endpoint, show the
 * user its code and page, poll the token endpoint with the claim grant at
 * the service's interval (docs/agent.md, docs/protocol.md "The user_code
 * claim ceremony"). v0.1: the claim by the mailed 6-digit code. Above
 * client.c (the store, the token exchange), which never calls in here. */
#include <ctype.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agent/credstore.h"
#include "agent/internal.h"
#include "authmd/client.h"
#include "core/protocol.h"
#include "core/str.h"

#define DEFAULT_INTERVAL 5	 /* RFC 8628 3.2: when the service names none */
#define SLOW_DOWN_STEP 5	 /* RFC 8628 3.5 */
#define MAX_INTERVAL 300	 /* a larger interval from a service is capped */
#define MAX_ATTEMPT_SECONDS 3600 /* an expires_in past this is taken as this */
#define MAX_NETWORK_FAILURES 3	 /* consecutive, before a wait gives up */
#define SLICE_MS 250		 /* how often a wait asks its callback */

static void
attempt_of(const struct authmd_credential *cred, struct authmd_claim_attempt *out)
{
	time_t until = cs_parse_utc(cred->claim_attempt_expires), now = time(NULL);

	memset(out, 0, sizeof(*out));
	am_copy(out->resource, sizeof(out->resource), cred->resource);
	am_copy(out->attempt_id, sizeof(out->attempt_id), cred->claim_attempt_id);
	am_copy(out->user_code, sizeof(out->user_code), cred->user_code);
	am_copy(out->verification_uri, sizeof(out->verification_uri), cred->verification_uri);
	am_copy(out->verification_uri_complete, sizeof(out->verification_uri_complete),
		cred->verification_uri_complete);
	am_copy(out->expires_at, sizeof(out->expires_at), cred->claim_attempt_expires);
	out->expires_in = until > now ? (long)(until - now) : 0;
	out->interval = cred->claim_interval > 0 ? cred->claim_interval : DEFAULT_INTERVAL;
}

/* The stored v0.6 registration for resource that still has a claim token. */
static enum authmd_status
claimable(struct authmd_client *c, const char *resource, struct authmd_credential *cred,
	  struct authmd_error *err)
{
	enum authmd_status st;

	if ((st = authmd_credential_for(c, resource, cred, err)) != AUTHMD_OK)
		return st;
	if (strcmp(cred->protocol, "v0.6") != 0)
		return cs_fail(err, AUTHMD_ERR_REFUSED,
			       "Claim it with --email and the mailed code.",
			       "the registration for %s is v0.1: its claim is the mailed code",
			       cred->resource);
	if (cred->claim_token[0] == '\0' || cred->token_endpoint[0] == '\0')
		return cs_fail(err, AUTHMD_ERR_REFUSED, NULL,
			       "there is no claim to make for %s (state: %s)", cred->resource,
			       cred->claim_state);
	return AUTHMD_OK;
}

enum authmd_status
authmd_claim_code_start(struct authmd_client *c, const char *resource, const char *email,
			struct authmd_claim_attempt *out, struct authmd_error *err)
{
	struct authmd_credential cred;
	char attempt_id[64] = "";
	json_t *ans = NULL;
	enum authmd_status st;

	if ((st = claimable(c, resource, &cred, err)) != AUTHMD_OK)
		goto out;
	if (cred.claim_uri[0] == '\0') {
		st = cs_fail(err, AUTHMD_ERR_PROTOCOL, NULL,
			     "the service published no claim_endpoint");
		goto out;
	}
	if ((st = agent_post_json(
		     c, cred.claim_uri, NULL,
		     json_pack("{s:s, s:s?}", "claim_token", cred.claim_token, "email", email),
		     "the claim", &ans, err)) != AUTHMD_OK)
		goto out;
	agent_copy_str(ans, "claim_attempt_id", attempt_id, sizeof(attempt_id));
	if (!agent_keep_attempt(&cred, json_object_get(ans, "claim_attempt"), attempt_id)) {
		st = cs_fail(err, AUTHMD_ERR_PROTOCOL, NULL,
			     "the claim answer has no (usable) claim_attempt with a user_code and "
			     "a verification_uri");
		goto out;
	}
	if (email != NULL)
		am_copy(cred.claim_email, sizeof(cred.claim_email), email);
	if ((st = agent_store_put(c, &cred, err)) == AUTHMD_OK && out != NULL)
		attempt_of(&cred, out);
out:
	json_decref(ans);
	OPENSSL_cleanse(&cred, sizeof(cred));
	return st;
}

enum authmd_status
authmd_claim_code_attempt(struct authmd_client *c, const char *resource,
			  struct authmd_claim_attempt *out, struct authmd_error *err)
{
	struct authmd_credential cred;
	enum authmd_status st;

	if ((st = claimable(c, resource, &cred, err)) == AUTHMD_OK) {
		if (cred.user_code[0] == '\0')
			st = cs_fail(err, AUTHMD_ERR_ACTION_NEEDED,
				     "Start one: authmd claim URL --email ADDR",
				     "no claim attempt is open for %s", cred.resource);
		else
			attempt_of(&cred, out);
	}
	OPENSSL_cleanse(&cred, sizeof(cred));
	return st;
}

/* The largest number in s (the seconds a slow_down description names), or 0. */
static long
seconds_named(const char *s)
{
	long best = 0;

	while (s != NULL && *s != '\0') {
		if (isdigit((unsigned char)*s)) {
			char *end;
			long v = strtol(s, &end, 10);

			if (v > best && v <= MAX_INTERVAL)
				best = v;
			s = end;
		} else {
			s++;
		}
	}
	return best;
}

/* The 200 of the claim grant: the post-claim access token and the new
 * identity assertion replace the pre-claim ones; the claim is over. */
static enum authmd_status
keep_tokens(struct authmd_credential *cred, const json_t *ans, struct authmd_error *err)
{
	const json_t *expires_in = json_object_get(ans, "expires_in");
	const char *scope = json_string_value(json_object_get(ans, "scope"));

	if (!json_is_string(json_object_get(ans, "access_token")) ||
	    !json_is_string(json_object_get(ans, "identity_assertion")))
		return cs_fail(err, AUTHMD_ERR_PROTOCOL, NULL,
			       "the claim grant answered no access_token and identity_assertion");
	agent_copy_str(ans, "access_token", cred->credential, sizeof(cred->credential));
	agent_copy_str(ans, "identity_assertion", cred->identity_assertion,
		       sizeof(cred->identity_assertion));
	if (cred->credential[0] == '\0' || cred->identity_assertion[0] == '\0')
		return cs_fail(err, AUTHMD_ERR_PROTOCOL, NULL,
			       "the claim grant's tokens are too long to keep");
	agent_copy_str(ans, "assertion_expires", cred->assertion_expires,
		       sizeof(cred->assertion_expires));
	agent_copy_str(ans, "token_type", cred->token_type, sizeof(cred->token_type));
	/* the new assertion's refresh token (proposal (b)), when one comes */
	if (json_is_string(json_object_get(ans, "refresh_token"))) {
		agent_copy_str(ans, "refresh_token", cred->refresh_token,
			       sizeof(cred->refresh_token));
		agent_copy_str(ans, "refresh_token_expires_at", cred->refresh_expires,
			       sizeof(cred->refresh_expires));
	}
	am_copy(cred->credential_type, sizeof(cred->credential_type), "access_token");
	cred->credential_expires[0] = '\0';
	if (json_is_integer(expires_in) && json_integer_value(expires_in) > 0)
		agent_utc_after(json_integer_value(expires_in), cred->credential_expires,
				sizeof(cred->credential_expires));
	if (scope != NULL)
		am_copy(cred->scopes, sizeof(cred->scopes), scope);
	else if (cred->post_claim_scopes[0] != '\0')
		am_copy(cred->scopes, sizeof(cred->scopes), cred->post_claim_scopes);
	/* The claim token has done its work: it is not kept. */
	OPENSSL_cleanse(cred->claim_token, sizeof(cred->claim_token));
	cred->claim_token_expires[0] = '\0';
	agent_clear_attempt(cred);
	am_copy(cred->claim_state, sizeof(cred->claim_state), "claimed");
	cred->worked = false;
	return AUTHMD_OK;
}

/* One poll's refusal: its status, and what the stored registration
 * becomes. */
static enum authmd_status
refusal(struct authmd_credential *cred, const char *code, const char *desc,
	enum authmd_claim_status *status, struct authmd_error *err)
{
	if (strcmp(code, "authorization_pending") == 0) {
		*status = AUTHMD_CLAIM_PENDING;
		return AUTHMD_OK;
	}
	if (strcmp(code, "slow_down") == 0) {
		long named = seconds_named(desc);

		*status = AUTHMD_CLAIM_SLOW_DOWN;
		cred->claim_interval = named > cred->claim_interval
					       ? named
					       : cred->claim_interval + SLOW_DOWN_STEP;
		if (cred->claim_interval > MAX_INTERVAL)
			cred->claim_interval = MAX_INTERVAL;
		return AUTHMD_OK;
	}
	if (strcmp(code, "expired_token") == 0) {
		*status = AUTHMD_CLAIM_EXPIRED;
		agent_clear_attempt(cred);
		am_copy(cred->claim_state, sizeof(cred->claim_state), "unclaimed");
		cs_fail(err, AUTHMD_ERR_ACTION_NEEDED,
			"Start again for a new code: authmd claim URL --email ADDR",
			"the code expired before the user entered it (expired_token)");
	} else if (strcmp(code, "access_denied") == 0) {
		*status = AUTHMD_CLAIM_DENIED;
		agent_clear_attempt(cred);
		am_copy(cred->claim_state, sizeof(cred->claim_state), "unclaimed");
		cs_fail(err, AUTHMD_ERR_REFUSED,
			"The registration is unchanged. If that was a mistake, start again: "
			"authmd claim URL --email ADDR",
			"the user rejected this claim (access_denied)");
	} else if (strcmp(code, "invalid_grant") == 0) {
		*status = AUTHMD_CLAIM_INVALID;
		agent_clear_attempt(cred);
		OPENSSL_cleanse(cred->claim_token, sizeof(cred->claim_token));
		cred->claim_token_expires[0] = '\0';
		am_copy(cred->claim_state, sizeof(cred->claim_state), "expired");
		cs_fail(err, AUTHMD_ERR_REFUSED, "Register again: authmd register URL",
			"the claim token is no longer valid (invalid_grant: %.300s)",
			desc != NULL ? desc : "no reason given");
	} else {
		return AUTHMD_ERR_FAILED; /* not the ceremony's: the caller reports it */
	}
	if (err != NULL) {
		err->http_status = 400;
		am_copy(err->code, sizeof(err->code), code);
	}
	return AUTHMD_OK;
}

/* One poll for cred (updated in place, not stored). */
static enum authmd_status
poll_once(struct authmd_client *c, struct authmd_credential *cred, enum authmd_claim_status *status,
	  struct authmd_error *err)
{
	struct am_buf form = {.secret = true};
	struct agent_result r;
	json_t *ans = NULL;
	enum authmd_status st;

	if (!agent_form_add(&form, "grant_type", AM_GRANT_CLAIM) ||
	    !agent_form_add(&form, "claim_token", cred->claim_token)) {
		am_buf_free(&form);
		return cs_fail(err, AUTHMD_ERR_FAILED, NULL, "out of memory");
	}
	st = agent_fetch(c, "POST", cred->token_endpoint, NULL, NULL,
			 "application/x-www-form-urlencoded", form.data, &r, err);
	am_buf_free(&form);
	if (st != AUTHMD_OK)
		return st;
	if (r.status == 400 || r.status == 401) {
		json_t *doc = json_loadb(r.body.data, r.body.len, 0, NULL);
		const char *code = json_string_value(json_object_get(doc, "error"));
		const char *desc = json_string_value(json_object_get(doc, "error_description"));

		st = code != NULL ? refusal(cred, code, desc, status, err) : AUTHMD_ERR_FAILED;
		json_decref(doc);
		if (st == AUTHMD_OK) {
			agent_result_clear(&r);
			return AUTHMD_OK;
		}
	}
	if ((st = agent_json_answer(&r, "the claim poll", &ans, err)) != AUTHMD_OK)
		return st;
	st = keep_tokens(cred, ans, err);
	json_decref(ans);
	if (st == AUTHMD_OK)
		*status = AUTHMD_CLAIM_CLAIMED;
	return st;
}

enum authmd_status
authmd_claim_code_poll(struct authmd_client *c, const char *resource,
		       enum authmd_claim_status *status, long *interval,
		       struct authmd_credential *out, struct authmd_error *err)
{
	struct authmd_credential cred;
	enum authmd_claim_status got = AUTHMD_CLAIM_PENDING;
	enum authmd_status st;

	if (err != NULL)
		memset(err, 0, sizeof(*err));
	if ((st = claimable(c, resource, &cred, err)) != AUTHMD_OK)
		goto out;
	if (cred.claim_interval <= 0)
		cred.claim_interval = DEFAULT_INTERVAL;
	if ((st = poll_once(c, &cred, &got, err)) != AUTHMD_OK)
		goto out;
	/* Every answer changes what is stored: the interval, the attempt, or
	 * the tokens. A failure to store is reported instead of the outcome;
	 * otherwise err keeps what the poll said (a refusal's code). */
	{
		struct authmd_error saved = {0};

		if (err != NULL)
			saved = *err;
		if ((st = agent_store_put(c, &cred, err)) != AUTHMD_OK)
			goto out;
		if (err != NULL)
			*err = saved;
	}
	/* The claim grant mints bearer tokens; a DPoP client exchanges the new
	 * assertion for a bound one now, after the claim's tokens are safe. */
	if (got == AUTHMD_CLAIM_CLAIMED && c->dpop &&
	    ((st = agent_token_exchange(c, &cred, err)) != AUTHMD_OK ||
	     (st = agent_store_put(c, &cred, err)) != AUTHMD_OK))
		goto out;
	*status = got;
	if (interval != NULL)
		*interval = cred.claim_interval;
	if (got == AUTHMD_CLAIM_CLAIMED && out != NULL)
		*out = cred;
out:
	OPENSSL_cleanse(&cred, sizeof(cred));
	return st;
}

/* Sleeps ms in slices, asking cb between them; false when cb said stop. */
static bool
wait_ms(long ms, authmd_claim_cb cb, void *arg, long interval, time_t deadline)
{
	while (ms > 0) {
		long slice = ms < SLICE_MS ? ms : SLICE_MS;
		time_t now;

		agent_sleep_ms(slice);
		ms -= slice;
		now = time(NULL);
		if (cb != NULL &&
		    !cb(arg, AUTHMD_CLAIM_WAITING, interval, deadline > now ? deadline - now : 0))
			return false;
	}
	return true;
}

static enum authmd_status
interrupted(const struct authmd_claim_attempt *att, struct authmd_error *err)
{
	enum authmd_status st = cs_fail(err, AUTHMD_ERR_ACTION_NEEDED,
					"The code stays valid until it expires: authmd claim URL "
					"--wait resumes.",
					"stopped waiting for the claim of %s", att->resource);

	if (err != NULL)
		am_copy(err->code, sizeof(err->code), "interrupted");
	return st;
}

enum authmd_status
authmd_claim_code_wait(struct authmd_client *c, const char *resource, authmd_claim_cb cb, void *arg,
		       struct authmd_credential *out, struct authmd_error *err)
{
	struct authmd_claim_attempt att;
	enum authmd_claim_status got;
	long interval;
	time_t deadline;
	int failures = 0;
	enum authmd_status st;

	if ((st = authmd_claim_code_attempt(c, resource, &att, err)) != AUTHMD_OK)
		return st;
	interval = att.interval;
	deadline = time(NULL) + att.expires_in;
	for (;;) {
		time_t now;

		/* RFC 8628 3.5: wait the interval before each request, the first
		 * too (a resumed wait does not know when the last poll was). */
		if (!wait_ms(interval * 1000L, cb, arg, interval, deadline))
			return interrupted(&att, err);
		st = authmd_claim_code_poll(c, resource, &got, &interval, out, err);
		now = time(NULL);
		if (st == AUTHMD_ERR_NETWORK && ++failures < MAX_NETWORK_FAILURES && now < deadline)
			continue; /* a blip: the attempt is still open on the service */
		if (st != AUTHMD_OK)
			return st;
		failures = 0;
		switch (got) {
		case AUTHMD_CLAIM_CLAIMED:
			return AUTHMD_OK;
		case AUTHMD_CLAIM_DENIED:
		case AUTHMD_CLAIM_INVALID:
			return AUTHMD_ERR_REFUSED;
		case AUTHMD_CLAIM_EXPIRED:
			return AUTHMD_ERR_ACTION_NEEDED;
		default:
			break;
		}
		if (cb != NULL && !cb(arg, got, interval, deadline > now ? deadline - now : 0))
			return interrupted(&att, err);
		/* The service would answer expired_token past the attempt's
		 * expiry; this bounds the wait even if it never does. */
		if (now >= deadline + interval) {
			st = cs_fail(err, AUTHMD_ERR_ACTION_NEEDED,
				     "Start again for a new code: authmd claim URL --email ADDR",
				     "the code expired before the user entered it");
			if (err != NULL)
				am_copy(err->code, sizeof(err->code), "expired_token");
			return st;
		}
	}
}

/* ---- v0.1: the mailed code; the entry points of both ceremonies ---- */

enum authmd_status
authmd_claim_start(struct authmd_client *c, const char *resource, const char *email,
		   struct authmd_error *err)
{
	struct authmd_credential cred;
	json_t *ans = NULL;
	enum authmd_status st;

	if ((st = authmd_credential_for(c, resource, &cred, err)) != AUTHMD_OK)
		return st;
	/* The stored generation picks the ceremony: v0.6 shows a user_code. */
	if (strcmp(cred.protocol, "v0.6") == 0) {
		OPENSSL_cleanse(&cred, sizeof(cred));
		return authmd_claim_code_start(c, resource, email, NULL, err);
	}
	if (cred.claim_token[0] == '\0')
		return cs_fail(err, AUTHMD_ERR_REFUSED, NULL,
			       "there is no claim to make for %s (state: %s)", cred.resource,
			       cred.claim_state);
	st = agent_post_json(
		c, cred.claim_uri, NULL,
		json_pack("{s:s, s:s}", "claim_token", cred.claim_token, "email", email),
		"the claim", &ans, err);
	json_decref(ans);
	if (st != AUTHMD_OK)
		return st;
	am_copy(cred.claim_state, sizeof(cred.claim_state), "pending");
	am_copy(cred.claim_email, sizeof(cred.claim_email), email);
	return agent_store_put(c, &cred, err);
}

enum authmd_status
authmd_claim_complete(struct authmd_client *c, const char *resource, const char *otp,
		      struct authmd_credential *out, struct authmd_error *err)
{
	struct authmd_credential cred;
	char url[AUTHMD_URL_MAX + 16];
	json_t *ans = NULL;
	enum authmd_status st;

	if ((st = authmd_credential_for(c, resource, &cred, err)) != AUTHMD_OK)
		return st;
	if (strcmp(cred.protocol, "v0.6") == 0)
		return cs_fail(err, AUTHMD_ERR_USAGE,
			       "The user types the code shown by authmd claim on the service's "
			       "page; then poll (authmd claim URL --wait).",
			       "a v0.6 claim has no mailed code to send");
	if (cred.claim_token[0] == '\0')
		return cs_fail(err, AUTHMD_ERR_REFUSED, NULL,
			       "there is no claim to complete for %s", cred.resource);
	snprintf(url, sizeof(url), "%s/complete", cred.claim_uri);
	st = agent_post_json(c, url, NULL,
			     json_pack("{s:s, s:s}", "claim_token", cred.claim_token, "otp", otp),
			     "the claim", &ans, err);
	if (st != AUTHMD_OK) {
		/* A dead claim token is dropped; a wrong code keeps it. */
		if (err != NULL && (strcmp(err->code, "claim_expired") == 0 ||
				    strcmp(err->code, "invalid_claim_token") == 0 ||
				    strcmp(err->code, "previously_claimed") == 0)) {
			cred.claim_token[0] = '\0';
			am_copy(cred.claim_state, sizeof(cred.claim_state),
				strcmp(err->code, "previously_claimed") == 0 ? "claimed"
									     : "expired");
			(void)agent_store_put(c, &cred, NULL);
		}
		return st;
	}
	if (json_is_string(json_object_get(ans, "credential"))) {
		agent_copy_str(ans, "credential", cred.credential, sizeof(cred.credential));
		agent_copy_str(ans, "credential_type", cred.credential_type,
			       sizeof(cred.credential_type));
		agent_copy_str(ans, "credential_expires", cred.credential_expires,
			       sizeof(cred.credential_expires));
		agent_scopes_of(json_object_get(ans, "scopes"), cred.scopes, sizeof(cred.scopes));
	} else if (cred.post_claim_scopes[0] != '\0') {
		am_copy(cred.scopes, sizeof(cred.scopes), cred.post_claim_scopes);
	}
	json_decref(ans);
	/* The claim token has done its work: it is not kept. */
	OPENSSL_cleanse(cred.claim_token, sizeof(cred.claim_token));
	cred.claim_token_expires[0] = '\0';
	am_copy(cred.claim_state, sizeof(cred.claim_state), "claimed");
	if ((st = agent_store_put(c, &cred, err)) == AUTHMD_OK && out != NULL)
		*out = cred;
	return st;
}
