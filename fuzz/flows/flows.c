/* The JSON bodies of POST /agent/auth, /agent/auth/claim,
 * /agent/auth/claim/complete and the challenge, read field by field as the
 * service reads them (am_json_object, am_json_string with the same caps),
 * through the flow layer on a fresh in-memory store with a fixed clock.
 *
 * Input: a first line naming the endpoint (register, claim, complete,
 * challenge, auth), then the body. Placeholders splice in real values, made
 * by an anonymous registration (and a started claim, when asked for) on the
 * same store: $CLAIM_TOKEN, $CREDENTIAL, $ATTEMPT_TOKEN, $OTP, and $IDJAG (a
 * valid ID-JAG of the test provider). One store serves STORE_INPUTS inputs
 * in a row (each input registers afresh). Oracles: every refusal is a 4xx code
 * with a message (never 500/503); an accepted registration or claim yields
 * a credential that authenticates; a claim token cannot be completed twice. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/fuzz.h"
#include "core/json.h"
#include "core/limits.h"
#include "core/protocol.h"

#define IP "192.0.2.7"

struct fixture {
	struct store *st;
	struct reg_result reg;
	char attempt[128];
	char otp[AM_OTP_DIGITS + 1];
	char idjag[JOSE_MAX_TOKEN_BYTES];
};

static void
refused_cleanly(enum am_err rc, const struct am_error *e)
{
	int status = am_err_status(rc);

	if (rc == AM_OK)
		return;
	if (status < 400 || status > 499)
		fz_die("a request body led to a 5xx (or non-4xx) refusal");
	if (e->detail[0] == '\0')
		fz_die("a refusal carries no message");
}

/* Opening a migrated store costs milliseconds, so one store serves
 * STORE_INPUTS inputs in a row; every input still makes its own
 * registration, so no input depends on another's rows. */
#define STORE_INPUTS 256

static struct store *
shared_store(void)
{
	static struct store *st;
	static unsigned uses;
	struct am_error e = {0};

	if (st != NULL && ++uses < STORE_INPUTS)
		return st;
	store_close(st);
	uses = 0;
	if (store_open("sqlite::memory:", "default", &st, &e) != AM_OK)
		fz_die("cannot open the store");
	return st;
}

static void
fixture_open(struct fixture *fx, const uint8_t *data, size_t size)
{
	static unsigned long n;
	const struct flow_env *env = fz_flow_env();
	struct am_error e = {0};

	memset(fx, 0, sizeof(*fx));
	fx->st = shared_store();
	if (flow_register_anonymous(env, fx->st, IP, NULL, &fx->reg, &e) != AM_OK)
		fz_die("cannot register the fixture's agent");
	if (memmem(data, size, "$ATTEMPT_TOKEN", 14) != NULL || memmem(data, size, "$OTP", 4)) {
		struct claim_start_result started;
		struct challenge_result ch;

		if (flow_claim_start(env, fx->st, IP, fx->reg.claim_token, "owner@example.test",
				     &started, &e) != AM_OK ||
		    !fz_outbox_token(fx->attempt, sizeof(fx->attempt)) ||
		    flow_claim_challenge(env, fx->st, fx->attempt, &ch, &e) != AM_OK)
			fz_die("cannot start the fixture's claim");
		memcpy(fx->otp, ch.otp, sizeof(fx->otp));
		fz_outbox_clear();
	}
	if (memmem(data, size, "$IDJAG", 6) != NULL) {
		char jti[32];
		json_t *claims;
		char *t;

		snprintf(jti, sizeof(jti), "jti-fixture-%lu", ++n); /* unused on this store */
		claims = fz_idjag_claims(jti);
		t = fz_sign("oauth-id-jag+jwt", claims);

		if (t == NULL || !am_copy(fx->idjag, sizeof(fx->idjag), t))
			fz_die("cannot sign the fixture's ID-JAG");
		free(t);
		json_decref(claims);
	}
}

static void
credential_works(const struct flow_env *env, struct store *st, const char *cred)
{
	struct store_auth auth;
	struct am_error e = {0};

	if (flow_authenticate(env, st, cred, &auth, &e) != AM_OK)
		fz_die("a credential just issued does not authenticate");
}

static enum am_err
do_register(struct fixture *fx, const json_t *req, struct am_error *e)
{
	const struct flow_env *env = fz_flow_env();
	const char *type, *cred_type, *atype, *assertion;
	struct reg_result res = {0};
	enum am_err rc;

	if ((rc = am_json_string(req, "type", true, AM_MAX_FIELD_BYTES, &type, e)) != AM_OK ||
	    (rc = am_json_string(req, "requested_credential_type", false, AM_MAX_FIELD_BYTES,
				 &cred_type, e)) != AM_OK)
		return rc;
	if (strcmp(type, "anonymous") == 0) {
		rc = flow_register_anonymous(env, fx->st, IP, cred_type, &res, e);
	} else if (strcmp(type, "identity_assertion") == 0) {
		if ((rc = am_json_string(req, "assertion_type", true, AM_MAX_FIELD_BYTES, &atype,
					 e)) != AM_OK)
			return rc;
		if (strcmp(atype, "verified_email") == 0) {
			if ((rc = am_json_string(req, "assertion", true, AM_MAX_EMAIL_BYTES,
						 &assertion, e)) == AM_OK)
				rc = flow_register_email(env, fx->st, IP, assertion, cred_type,
							 &res, e);
		} else if (strcmp(atype, AM_ID_JAG_URN) == 0) {
			if ((rc = am_json_string(req, "assertion", true, JOSE_MAX_TOKEN_BYTES,
						 &assertion, e)) == AM_OK)
				rc = flow_register_idjag(env, fx->st, IP, assertion, cred_type,
							 &res, e);
		} else {
			rc = am_fail(e, AM_E_UNSUPPORTED_ASSERTION_TYPE, "assertion_type");
		}
	} else {
		rc = am_fail(e, AM_E_INVALID_REQUEST, "type");
	}
	if (rc == AM_OK) {
		if (res.registration_id[0] == '\0')
			fz_die("an accepted registration has no id");
		if (res.has_credential)
			credential_works(env, fx->st, res.credential);
	}
	flow_result_wipe(&res, sizeof(res));
	return rc;
}

static enum am_err
do_claim(struct fixture *fx, const json_t *req, struct am_error *e)
{
	struct claim_start_result res;
	const char *token, *email;
	enum am_err rc;

	if ((rc = am_json_string(req, "claim_token", true, AM_MAX_TOKEN_BYTES, &token, e)) !=
		    AM_OK ||
	    (rc = am_json_string(req, "email", false, AM_MAX_EMAIL_BYTES, &email, e)) != AM_OK)
		return rc;
	rc = flow_claim_start(fz_flow_env(), fx->st, IP, token, email, &res, e);
	if (rc == AM_OK && res.attempt_id[0] == '\0')
		fz_die("a started claim has no attempt id");
	return rc;
}

static enum am_err
do_complete(struct fixture *fx, const json_t *req, struct am_error *e)
{
	const struct flow_env *env = fz_flow_env();
	struct reg_result res = {0};
	char who[STORE_ID_LEN];
	const char *token, *otp;
	enum am_err rc;

	if ((rc = am_json_string(req, "claim_token", true, AM_MAX_TOKEN_BYTES, &token, e)) !=
		    AM_OK ||
	    (rc = am_json_string(req, "otp", true, 32, &otp, e)) != AM_OK)
		return rc;
	rc = flow_claim_complete(env, fx->st, IP, token, otp, &res, who, e);
	if (rc == AM_OK) {
		struct reg_result again = {0};
		struct am_error e2 = {0};

		credential_works(env, fx->st,
				 res.has_credential ? res.credential : fx->reg.credential);
		if (flow_claim_complete(env, fx->st, IP, token, otp, &again, who, &e2) == AM_OK)
			fz_die("a claim completed twice");
		flow_result_wipe(&again, sizeof(again));
	}
	flow_result_wipe(&res, sizeof(res));
	return rc;
}

static enum am_err
do_challenge(struct fixture *fx, const json_t *req, struct am_error *e)
{
	struct challenge_result res;
	const char *token;
	enum am_err rc;

	if ((rc = am_json_string(req, "claim_attempt_token", true, AM_MAX_TOKEN_BYTES, &token,
				 e)) != AM_OK)
		return rc;
	rc = flow_claim_challenge(fz_flow_env(), fx->st, token, &res, e);
	flow_result_wipe(&res, sizeof(res));
	return rc;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const names[] = {"$CLAIM_TOKEN", "$CREDENTIAL", "$ATTEMPT_TOKEN", "$OTP",
					    "$IDJAG"};
	const char *values[5];
	const uint8_t *nl = memchr(data, '\n', size);
	size_t cmdlen = nl != NULL ? (size_t)(nl - data) : 0;
	struct fixture fx;
	struct am_buf body = {0};
	struct am_error e = {0};
	json_t *req = NULL;
	enum am_err rc;
	char cmd[16] = "";

	if (size > AM_MAX_BODY_BYTES)
		return 0; /* the HTTP layer refuses it with 413 first */
	if (nl != NULL && cmdlen < sizeof(cmd)) {
		memcpy(cmd, data, cmdlen);
		cmd[cmdlen] = '\0';
		data += cmdlen + 1, size -= cmdlen + 1;
	}
	fixture_open(&fx, data, size);
	values[0] = fx.reg.claim_token, values[1] = fx.reg.credential, values[2] = fx.attempt;
	values[3] = fx.otp, values[4] = fx.idjag;
	fz_splice(&body, data, size, names, values, 5);
	if (strcmp(cmd, "auth") == 0) {
		struct store_auth auth;

		rc = strlen(body.data) == body.len
			     ? flow_authenticate(fz_flow_env(), fx.st, body.data, &auth, &e)
			     : AM_OK;
	} else if ((rc = am_json_object(body.data, body.len, &req, &e)) == AM_OK) {
		if (strcmp(cmd, "claim") == 0)
			rc = do_claim(&fx, req, &e);
		else if (strcmp(cmd, "complete") == 0)
			rc = do_complete(&fx, req, &e);
		else if (strcmp(cmd, "challenge") == 0)
			rc = do_challenge(&fx, req, &e);
		else
			rc = do_register(&fx, req, &e);
	}
	if (getenv("FUZZ_VERBOSE") != NULL)
		fprintf(stderr, "flows: %s -> %s %s\n", cmd, am_err_name(rc), e.detail);
	refused_cleanly(rc, &e);
	json_decref(req);
	am_buf_free(&body);
	flow_result_wipe(&fx.reg, sizeof(fx.reg));
	fz_outbox_clear();
	return 0;
}
