/* The claim checks behind the signature: a fuzzer cannot forge one, so the
 * target signs the fuzzer's claim set with the test provider's key and
 * hands the token to flow_register_idjag (typ oauth-id-jag+jwt) or
 * flow_revoke_logout (typ logout+jwt) on a fresh in-memory store.
 *
 * Input: a first line "idjag" or "logout", then the claims as JSON, where
 * $ISS, $AUD and $NOW stand for the trusted issuer, this service's issuer
 * and the fixture's clock (a number). Oracles: refusals are 4xx with a
 * message, never 5xx; an accepted ID-JAG issues a working credential; the
 * same token presented again is refused (jti replay); a logout token
 * revokes what its subject held. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/fuzz.h"
#include "core/limits.h"

#define IP "192.0.2.9"

static void
refused_cleanly(enum am_err rc, const struct am_error *e)
{
	int status = am_err_status(rc);

	if (rc != AM_OK && (status < 400 || status > 499))
		fz_die("a signed claim set led to a 5xx (or non-4xx) refusal");
	if (rc != AM_OK && e->detail[0] == '\0')
		fz_die("a refusal carries no message");
}

static void
run_idjag(const struct flow_env *env, struct store *st, const char *token)
{
	struct reg_result res = {0}, again = {0};
	struct am_error e = {0}, e2 = {0};
	struct store_auth auth;
	enum am_err rc = flow_register_idjag(env, st, IP, token, NULL, &res, &e);

	if (getenv("FUZZ_VERBOSE") != NULL)
		fprintf(stderr, "idjag: %s %s\n", am_err_name(rc), e.detail);
	refused_cleanly(rc, &e);
	if (rc != AM_OK)
		return;
	if (!res.has_credential || !res.agent_verified ||
	    flow_authenticate(env, st, res.credential, &auth, &e) != AM_OK)
		fz_die("an accepted ID-JAG did not issue a working credential");
	if ((rc = flow_register_idjag(env, st, IP, token, NULL, &again, &e2)) == AM_OK)
		fz_die("the same ID-JAG was accepted twice (jti replay)");
	refused_cleanly(rc, &e2);
	flow_result_wipe(&res, sizeof(res));
	flow_result_wipe(&again, sizeof(again));
}

static void
run_logout(const struct flow_env *env, struct store *st, const char *token)
{
	struct reg_result res = {0};
	struct am_error e = {0};
	int count = -1;
	enum am_err rc;
	json_t *claims = fz_idjag_claims("jti-before-logout");
	char *idjag = fz_sign("oauth-id-jag+jwt", claims);

	/* A live credential for (issuer, user-1) for the logout to revoke. */
	if (idjag == NULL || flow_register_idjag(env, st, IP, idjag, NULL, &res, &e) != AM_OK)
		fz_die("cannot register the fixture's ID-JAG");
	free(idjag);
	json_decref(claims);
	rc = flow_revoke_logout(env, st, token, &count, &e);
	if (getenv("FUZZ_VERBOSE") != NULL)
		fprintf(stderr, "logout: %s %s count=%d\n", am_err_name(rc), e.detail, count);
	refused_cleanly(rc, &e);
	if (rc == AM_OK) {
		struct store_auth auth;
		struct am_error e2 = {0};

		if (count < 0)
			fz_die("an accepted logout token reports no count");
		if (count > 0 && flow_authenticate(env, st, res.credential, &auth, &e2) == AM_OK)
			fz_die("a credential works after its logout token revoked it");
	}
	flow_result_wipe(&res, sizeof(res));
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const names[] = {"$ISS", "$AUD", "$NOW"};
	const struct flow_env *env = fz_flow_env();
	const uint8_t *nl = memchr(data, '\n', size);
	bool logout = nl != NULL && (size_t)(nl - data) == 6 && memcmp(data, "logout", 6) == 0;
	const char *values[3];
	char now[24];
	struct am_buf text = {0};
	struct store *st = NULL;
	struct am_error e = {0};
	json_t *claims;
	char *token;

	if (size > JOSE_MAX_TOKEN_BYTES)
		return 0; /* too long to sign into an acceptable token anyway */
	if (nl != NULL && (size_t)(nl - data) < 16)
		size -= (size_t)(nl - data) + 1, data = nl + 1;
	snprintf(now, sizeof(now), "%d", FZ_NOW);
	values[0] = fz_provider_issuer(), values[1] = env->cfg->public_url, values[2] = now;
	fz_splice(&text, data, size, names, values, 3);
	claims = json_loadb(text.data, text.len, 0, NULL);
	am_buf_free(&text);
	if (!json_is_object(claims)) {
		json_decref(claims);
		return 0; /* a provider signs objects; other payloads are the jwt target's */
	}
	token = fz_sign(logout ? "logout+jwt" : "oauth-id-jag+jwt", claims);
	json_decref(claims);
	if (token == NULL)
		return 0;
	if (store_open("sqlite::memory:", "default", &st, &e) != AM_OK)
		fz_die("cannot open the store");
	if (strlen(token) <= JOSE_MAX_TOKEN_BYTES) {
		if (logout)
			run_logout(env, st, token);
		else
			run_idjag(env, st, token);
	}
	store_close(st);
	free(token);
	fz_outbox_clear();
	return 0;
}
