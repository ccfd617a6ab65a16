/* flows/dpop.c and the DPoP parts of jose/: a DPoP-bound token is refused
 * without a proof, with a proof from another key, with a replayed proof, for
 * another URL or method, with another token's ath, or out of the time
 * window; the token endpoint's step binds to the proof's key and honours a
 * grant's cnf.jkt. Real keys, real signatures, a real SQLite store. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/config.h"
#include "core/crypto.h"
#include "flows/dpop.h"

#define URL "https://api.example.test/api/resource"
#define TOKEN "at_the-access-token"

struct fixture {
	struct am_config cfg;
	struct flow_env env;
	char dir[64], url[128];
	struct store *st;
	struct jose_signer *key, *other;
	char jkt[JOSE_JKT_LEN];
};

static int
setup(void **state)
{
	struct fixture *fx = calloc(1, sizeof(*fx));
	struct am_error e = {0};

	am_config_defaults(&fx->cfg);
	fx->env.cfg = &fx->cfg;
	fx->env.clock.now = 1000000;
	snprintf(fx->dir, sizeof(fx->dir), "/tmp/authmd-dpop-XXXXXX");
	assert_non_null(mkdtemp(fx->dir));
	snprintf(fx->url, sizeof(fx->url), "sqlite:%s/d.db", fx->dir);
	assert_int_equal(store_open(fx->url, "default", &fx->st, &e), AM_OK);
	assert_int_equal(jose_signer_generate("ES256", &fx->key, &e), AM_OK);
	assert_int_equal(jose_signer_generate("ES256", &fx->other, &e), AM_OK);
	assert_int_equal(jose_signer_jkt(fx->key, fx->jkt, &e), AM_OK);
	*state = fx;
	return 0;
}

static int
teardown(void **state)
{
	struct fixture *fx = *state;
	char path[128];

	store_close(fx->st);
	jose_signer_free(fx->key);
	jose_signer_free(fx->other);
	for (size_t i = 0; i < 3; i++) {
		static const char *const suffix[] = {"", "-wal", "-shm"};

		snprintf(path, sizeof(path), "%s/d.db%s", fx->dir, suffix[i]);
		unlink(path);
	}
	rmdir(fx->dir);
	free(fx);
	return 0;
}

static char *
proof(struct fixture *fx, const struct jose_signer *k, const char *htm, const char *htu,
      const char *token, int64_t iat)
{
	struct am_error e = {0};
	char *p = NULL;

	assert_int_equal(jose_dpop_proof(k, htm, htu, token, iat, &p, &e), AM_OK);
	(void)fx;
	return p;
}

/* The gate's DPoP step for a token bound to fx->key. */
static enum am_err
gate(struct fixture *fx, bool dpop_scheme, const char *p, const char *method, const char *url,
     struct am_error *e)
{
	return flow_dpop_gate(&fx->env, fx->st, fx->jkt, dpop_scheme, p, method, url, TOKEN, e);
}

static void
a_proof_from_the_bound_key_for_this_request_passes(void **state)
{
	struct fixture *fx = *state;
	struct am_error e = {0};
	char *p = proof(fx, fx->key, "GET", URL, TOKEN, fx->env.clock.now);

	assert_int_equal(gate(fx, true, p, "GET", URL, &e), AM_OK);
	free(p);
	/* the query is not part of htu (RFC 9449 4.3 step 9) */
	p = proof(fx, fx->key, "GET", URL, TOKEN, fx->env.clock.now);
	assert_int_equal(gate(fx, true, p, "GET", URL "?page=2", &e), AM_OK);
	free(p);
}

static void
a_bound_token_without_a_proof_is_refused(void **state)
{
	struct fixture *fx = *state;
	struct am_error e = {0};

	assert_int_equal(gate(fx, true, NULL, "GET", URL, &e), AM_E_DPOP_PROOF_REFUSED);
	assert_string_equal(am_err_name(e.code), "invalid_dpop_proof");
	assert_int_equal(am_err_status(e.code), 401);
	assert_int_equal(gate(fx, true, "", "GET", URL, &e), AM_E_DPOP_PROOF_REFUSED);
}

static void
a_bound_token_sent_as_bearer_is_refused_even_with_a_good_proof(void **state)
{
	struct fixture *fx = *state;
	struct am_error e = {0};
	char *p = proof(fx, fx->key, "GET", URL, TOKEN, fx->env.clock.now);

	assert_int_equal(gate(fx, false, p, "GET", URL, &e), AM_E_DPOP_PROOF_REFUSED);
	free(p);
}

static void
a_proof_from_another_key_is_refused(void **state)
{
	struct fixture *fx = *state;
	struct am_error e = {0};
	char *p = proof(fx, fx->other, "GET", URL, TOKEN, fx->env.clock.now);

	assert_int_equal(gate(fx, true, p, "GET", URL, &e), AM_E_DPOP_PROOF_REFUSED);
	assert_non_null(strstr(e.detail, "another key"));
	free(p);
}

static void
a_replayed_proof_is_refused(void **state)
{
	struct fixture *fx = *state;
	struct am_error e = {0};
	char *p = proof(fx, fx->key, "GET", URL, TOKEN, fx->env.clock.now);

	assert_int_equal(gate(fx, true, p, "GET", URL, &e), AM_OK);
	fx->env.clock.now += 5;
	assert_int_equal(gate(fx, true, p, "GET", URL, &e), AM_E_DPOP_PROOF_REFUSED);
	assert_non_null(strstr(e.detail, "already used"));
	free(p);
}

static void
a_proof_for_another_url_or_method_is_refused(void **state)
{
	struct fixture *fx = *state;
	struct am_error e = {0};
	char *p = proof(fx, fx->key, "GET", "https://api.example.test/api/other", TOKEN,
			fx->env.clock.now);

	assert_int_equal(gate(fx, true, p, "GET", URL, &e), AM_E_DPOP_PROOF_REFUSED);
	assert_non_null(strstr(e.detail, "another URL"));
	free(p);
	p = proof(fx, fx->key, "GET", "https://evil.example.test/api/resource", TOKEN,
		  fx->env.clock.now);
	assert_int_equal(gate(fx, true, p, "GET", URL, &e), AM_E_DPOP_PROOF_REFUSED);
	free(p);
	p = proof(fx, fx->key, "POST", URL, TOKEN, fx->env.clock.now);
	assert_int_equal(gate(fx, true, p, "GET", URL, &e), AM_E_DPOP_PROOF_REFUSED);
	assert_non_null(strstr(e.detail, "another method"));
	free(p);
	/* a refused proof left no jti behind: the right request still passes */
	p = proof(fx, fx->key, "GET", URL, TOKEN, fx->env.clock.now);
	assert_int_equal(gate(fx, true, p, "GET", URL, &e), AM_OK);
	free(p);
}

static void
a_proof_for_another_token_or_without_ath_is_refused(void **state)
{
	struct fixture *fx = *state;
	struct am_error e = {0};
	char *p = proof(fx, fx->key, "GET", URL, "at_another-token", fx->env.clock.now);

	assert_int_equal(gate(fx, true, p, "GET", URL, &e), AM_E_DPOP_PROOF_REFUSED);
	assert_non_null(strstr(e.detail, "ath"));
	free(p);
	p = proof(fx, fx->key, "GET", URL, NULL, fx->env.clock.now);
	assert_int_equal(gate(fx, true, p, "GET", URL, &e), AM_E_DPOP_PROOF_REFUSED);
	free(p);
}

static void
a_stale_or_future_proof_is_refused(void **state)
{
	struct fixture *fx = *state;
	struct am_error e = {0};
	int64_t now = fx->env.clock.now, skew = fx->cfg.clock_skew;
	char *p = proof(fx, fx->key, "GET", URL, TOKEN, now - AM_DPOP_PROOF_MAX_AGE - skew - 1);

	assert_int_equal(gate(fx, true, p, "GET", URL, &e), AM_E_DPOP_PROOF_REFUSED);
	assert_non_null(strstr(e.detail, "iat"));
	free(p);
	p = proof(fx, fx->key, "GET", URL, TOKEN, now + skew + 1);
	assert_int_equal(gate(fx, true, p, "GET", URL, &e), AM_E_DPOP_PROOF_REFUSED);
	free(p);
}

static void
an_unbound_token_sent_with_the_dpop_scheme_is_an_invalid_token(void **state)
{
	struct fixture *fx = *state;
	struct am_error e = {0};

	assert_int_equal(flow_dpop_gate(&fx->env, fx->st, "", true, NULL, "GET", URL, TOKEN, &e),
			 AM_E_INVALID_TOKEN);
	assert_int_equal(flow_dpop_gate(&fx->env, fx->st, "", false, NULL, "GET", URL, TOKEN, &e),
			 AM_OK);
}

static void
a_signed_jwt_that_is_not_a_dpop_proof_is_refused(void **state)
{
	struct fixture *fx = *state;
	struct am_error e = {0};
	json_t *claims = json_pack("{s:s, s:s, s:s, s:I}", "jti", "j1", "htm", "GET", "htu", URL,
				   "iat", (json_int_t)fx->env.clock.now);
	char *jwt = NULL;

	/* typ JWT, and a kid header without the jwk */
	assert_int_equal(jose_sign(fx->key, "JWT", claims, &jwt, &e), AM_OK);
	assert_int_equal(gate(fx, true, jwt, "GET", URL, &e), AM_E_DPOP_PROOF_REFUSED);
	assert_non_null(strstr(e.detail, "typ"));
	free(jwt);
	assert_int_equal(jose_sign(fx->key, JOSE_DPOP_TYP, claims, &jwt, &e), AM_OK);
	assert_int_equal(gate(fx, true, jwt, "GET", URL, &e), AM_E_DPOP_PROOF_REFUSED);
	free(jwt);
	json_decref(claims);
	assert_int_equal(gate(fx, true, "not.a.jws", "GET", URL, &e), AM_E_DPOP_PROOF_REFUSED);
	assert_int_equal(gate(fx, true, "e30.e30.", "GET", URL, &e), AM_E_DPOP_PROOF_REFUSED);
}

static void
a_tampered_proof_does_not_verify(void **state)
{
	struct fixture *fx = *state;
	struct am_error e = {0};
	char *p = proof(fx, fx->key, "GET", URL, TOKEN, fx->env.clock.now);
	size_t i = strlen(p) - 5; /* inside the signature */

	p[i] = p[i] == 'A' ? 'B' : 'A';
	assert_int_equal(gate(fx, true, p, "GET", URL, &e), AM_E_DPOP_PROOF_REFUSED);
	free(p);
}

static void
the_token_endpoint_binds_to_the_proofs_key_and_honours_cnf_jkt(void **state)
{
	struct fixture *fx = *state;
	struct am_error e = {0};
	const char *tok = "https://as.example.test/oauth2/token";
	char jkt[JOSE_JKT_LEN], other[JOSE_JKT_LEN];
	char *p = proof(fx, fx->key, "POST", tok, NULL, fx->env.clock.now);

	assert_int_equal(
		flow_dpop_token_request(&fx->env, fx->st, NULL, "POST", tok, NULL, jkt, &e), AM_OK);
	assert_string_equal(jkt, ""); /* no proof: a bearer token */
	assert_int_equal(flow_dpop_token_request(&fx->env, fx->st, p, "POST", tok, NULL, jkt, &e),
			 AM_OK);
	assert_string_equal(jkt, fx->jkt);
	free(p);
	/* a grant bound to fx->key: no proof, or one from another key, is refused */
	assert_int_equal(
		flow_dpop_token_request(&fx->env, fx->st, NULL, "POST", tok, fx->jkt, jkt, &e),
		AM_E_INVALID_DPOP_PROOF);
	assert_int_equal(am_err_status(e.code), 400);
	assert_int_equal(jose_signer_jkt(fx->other, other, &e), AM_OK);
	p = proof(fx, fx->other, "POST", tok, NULL, fx->env.clock.now);
	assert_int_equal(
		flow_dpop_token_request(&fx->env, fx->st, p, "POST", tok, fx->jkt, jkt, &e),
		AM_E_INVALID_DPOP_PROOF);
	free(p);
	p = proof(fx, fx->key, "POST", tok, NULL, fx->env.clock.now);
	assert_int_equal(
		flow_dpop_token_request(&fx->env, fx->st, p, "POST", tok, fx->jkt, jkt, &e), AM_OK);
	free(p);
}

static void
a_credentials_key_binding_survives_the_store(void **state)
{
	struct fixture *fx = *state;
	struct store_reg r = {0};
	struct store_cred c = {0};
	struct store_auth auth;
	struct am_error e = {0};

	snprintf(r.id, sizeof(r.id), "reg_dpop");
	r.kind = REG_ANONYMOUS;
	r.status = REG_CLAIMED;
	r.created_at = fx->env.clock.now;
	r.expires_at = fx->env.clock.now + 3600;
	assert_int_equal(store_reg_insert(fx->st, &r, &e), AM_OK);
	snprintf(c.id, sizeof(c.id), "cred_dpop");
	am_sha256_str(TOKEN, c.hash);
	c.type = CRED_ACCESS_TOKEN;
	snprintf(c.scopes, sizeof(c.scopes), "api.read");
	snprintf(c.source, sizeof(c.source), "anonymous");
	snprintf(c.registration_id, sizeof(c.registration_id), "%s", r.id);
	snprintf(c.jkt, sizeof(c.jkt), "%s", fx->jkt);
	c.created_at = fx->env.clock.now;
	c.expires_at = fx->env.clock.now + 600;
	assert_int_equal(store_cred_insert(fx->st, &c, &e), AM_OK);
	assert_int_equal(flow_authenticate(&fx->env, fx->st, TOKEN, &auth, &e), AM_OK);
	assert_string_equal(auth.cred.jkt, fx->jkt);
}

static void
the_thumbprint_is_rfc_7638s(void **state)
{
	/* RFC 7638 3.1 */
	json_t *jwk = json_pack(
		"{s:s, s:s, s:s, s:s}", "kty", "RSA", "e", "AQAB", "alg", "RS256", "n",
		"0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6"
		"tS"
		"oc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-"
		"6"
		"5YGjQR0_"
		"FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNL"
		"yrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-"
		"kEgU8awap"
		"JzKnqDKgw");
	char jkt[JOSE_JKT_LEN];
	struct am_error e = {0};

	(void)state;
	assert_int_equal(jose_jwk_thumbprint(jwk, jkt, &e), AM_OK);
	assert_string_equal(jkt, "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
	json_decref(jwk);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(a_proof_from_the_bound_key_for_this_request_passes,
						setup, teardown),
		cmocka_unit_test_setup_teardown(a_bound_token_without_a_proof_is_refused, setup,
						teardown),
		cmocka_unit_test_setup_teardown(
			a_bound_token_sent_as_bearer_is_refused_even_with_a_good_proof, setup,
			teardown),
		cmocka_unit_test_setup_teardown(a_proof_from_another_key_is_refused, setup,
						teardown),
		cmocka_unit_test_setup_teardown(a_replayed_proof_is_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(a_proof_for_another_url_or_method_is_refused, setup,
						teardown),
		cmocka_unit_test_setup_teardown(a_proof_for_another_token_or_without_ath_is_refused,
						setup, teardown),
		cmocka_unit_test_setup_teardown(a_stale_or_future_proof_is_refused, setup,
						teardown),
		cmocka_unit_test_setup_teardown(
			an_unbound_token_sent_with_the_dpop_scheme_is_an_invalid_token, setup,
			teardown),
		cmocka_unit_test_setup_teardown(a_signed_jwt_that_is_not_a_dpop_proof_is_refused,
						setup, teardown),
		cmocka_unit_test_setup_teardown(a_tampered_proof_does_not_verify, setup, teardown),
		cmocka_unit_test_setup_teardown(
			the_token_endpoint_binds_to_the_proofs_key_and_honours_cnf_jkt, setup,
			teardown),
		cmocka_unit_test_setup_teardown(a_credentials_key_binding_survives_the_store, setup,
						teardown),
		cmocka_unit_test(the_thumbprint_is_rfc_7638s),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
