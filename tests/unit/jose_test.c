/* jose/: signing and strict verification, with keys made here. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "jose/jose.h"

static struct jose_keyset *
keyset_of(struct jose_signer *const *signers, size_t n)
{
	json_t *keys = json_array(), *doc;
	struct jose_keyset *ks = NULL;
	struct am_error e = {0};
	char *text;

	for (size_t i = 0; i < n; i++)
		json_array_append_new(keys, jose_signer_public_jwk(signers[i]));
	doc = json_pack("{s:o}", "keys", keys);
	text = json_dumps(doc, 0);
	json_decref(doc);
	assert_int_equal(jose_keyset_parse(text, strlen(text), &ks, &e), AM_OK);
	free(text);
	return ks;
}

static char *
signed_token(struct jose_signer *s, const char *typ)
{
	json_t *claims = json_pack("{s:s, s:i}", "sub", "u", "iat", 1);
	struct am_error e = {0};
	char *tok = NULL;

	assert_int_equal(jose_sign(s, typ, claims, &tok, &e), AM_OK);
	json_decref(claims);
	return tok;
}

static void
tokens_signed_with_es256_rs256_and_ps256_verify(void **state)
{
	const char *algs[] = {"ES256", "RS256", "PS256"};

	(void)state;
	for (size_t i = 0; i < 3; i++) {
		struct jose_signer *s = NULL;
		struct jose_keyset *ks;
		struct jose_token t;
		struct am_error e = {0};
		char *tok;

		assert_int_equal(jose_signer_generate(algs[i], &s, &e), AM_OK);
		ks = keyset_of(&s, 1);
		tok = signed_token(s, "oauth-id-jag+jwt");
		assert_int_equal(jose_token_parse(tok, "oauth-id-jag+jwt", &t, &e), AM_OK);
		assert_string_equal(t.alg, algs[i]);
		assert_string_equal(json_string_value(json_object_get(t.claims, "sub")), "u");
		assert_int_equal(jose_token_verify(&t, ks, &e), AM_OK);
		jose_token_free(&t);
		free(tok);
		jose_keyset_release(ks);
		jose_signer_free(s);
	}
}

static void
a_token_of_another_typ_is_refused(void **state)
{
	struct jose_signer *s = NULL;
	struct jose_token t;
	struct am_error e = {0};
	char *tok;

	(void)state;
	assert_int_equal(jose_signer_generate("ES256", &s, &e), AM_OK);
	tok = signed_token(s, "logout+jwt");
	assert_int_equal(jose_token_parse(tok, "oauth-id-jag+jwt", &t, &e), AM_E_INVALID_REQUEST);
	assert_int_equal(jose_token_parse(tok, "logout+jwt", &t, &e), AM_OK);
	jose_token_free(&t);
	free(tok);
	jose_signer_free(s);
}

static void
the_key_decides_the_algorithm_family(void **state)
{
	struct jose_signer *es = NULL, *rs = NULL, *both[2];
	struct jose_keyset *ks;
	struct jose_token t;
	struct am_error e = {0};
	json_t *claims = json_pack("{s:s}", "sub", "u");
	char *tok = NULL;

	(void)state;
	assert_int_equal(jose_signer_generate("ES256", &es, &e), AM_OK);
	assert_int_equal(jose_signer_generate("RS256", &rs, &e), AM_OK);
	both[0] = es;
	both[1] = rs;
	ks = keyset_of(both, 2);
	/* Signed by the RSA key but naming the EC key's kid. */
	assert_int_equal(jose_sign_kid(rs, "x", jose_signer_kid(es), claims, &tok, &e), AM_OK);
	assert_int_equal(jose_token_parse(tok, "x", &t, &e), AM_OK);
	assert_int_equal(jose_token_verify(&t, ks, &e), AM_E_INVALID_SIGNATURE);
	jose_token_free(&t);
	free(tok);
	/* An unknown kid. */
	assert_int_equal(jose_sign_kid(es, "x", "nope", claims, &tok, &e), AM_OK);
	assert_int_equal(jose_token_parse(tok, "x", &t, &e), AM_OK);
	assert_int_equal(jose_token_verify(&t, ks, &e), AM_E_INVALID_SIGNATURE);
	jose_token_free(&t);
	free(tok);
	json_decref(claims);
	jose_keyset_release(ks);
	jose_signer_free(es);
	jose_signer_free(rs);
}

static void
malformed_and_forbidden_headers_are_refused(void **state)
{
	struct jose_token t;
	struct am_error e = {0};
	/* {"alg":"none","typ":"x","kid":"k"} . {"a":1} . */
	const char *none = "eyJhbGciOiJub25lIiwidHlwIjoieCIsImtpZCI6ImsifQ.eyJhIjoxfQ.";
	/* {"alg":"HS256","typ":"x","kid":"k"} */
	const char *hs = "eyJhbGciOiJIUzI1NiIsInR5cCI6IngiLCJraWQiOiJrIn0.eyJhIjoxfQ.c2ln";
	/* {"alg":"ES256","typ":"x","kid":"k","crit":["b64"]} */
	const char *crit = "eyJhbGciOiJFUzI1NiIsInR5cCI6IngiLCJraWQiOiJrIiwiY3JpdCI6WyJiNjQiXX0."
			   "eyJhIjoxfQ.c2ln";
	/* {"alg":"ES256","typ":"x","kid":"k","jku":"https://evil.test"} */
	const char *jku = "eyJhbGciOiJFUzI1NiIsInR5cCI6IngiLCJraWQiOiJrIiwiamt1IjoiaHR0cHM6Ly9l"
			  "dmlsLnRlc3QifQ.eyJhIjoxfQ.c2ln";
	/* {"alg":"ES256","typ":"x"} (no kid) */
	const char *nokid = "eyJhbGciOiJFUzI1NiIsInR5cCI6IngifQ.eyJhIjoxfQ.c2ln";
	char *big = malloc(JOSE_MAX_TOKEN_BYTES + 2);

	(void)state;
	assert_int_equal(jose_token_parse(none, "x", &t, &e), AM_E_INVALID_SIGNATURE);
	assert_int_equal(jose_token_parse(hs, "x", &t, &e), AM_E_INVALID_SIGNATURE);
	assert_int_equal(jose_token_parse(crit, "x", &t, &e), AM_E_INVALID_REQUEST);
	assert_int_equal(jose_token_parse(jku, "x", &t, &e), AM_E_INVALID_REQUEST);
	assert_int_equal(jose_token_parse(nokid, "x", &t, &e), AM_E_INVALID_REQUEST);
	assert_int_equal(jose_token_parse("a.b", "x", &t, &e), AM_E_INVALID_REQUEST);
	assert_int_equal(jose_token_parse("a.b.c.d.e", "x", &t, &e), AM_E_INVALID_REQUEST);
	assert_int_equal(jose_token_parse("", "x", &t, &e), AM_E_INVALID_REQUEST);
	memset(big, 'a', JOSE_MAX_TOKEN_BYTES + 1);
	big[10] = big[20] = '.';
	big[JOSE_MAX_TOKEN_BYTES + 1] = '\0';
	assert_int_equal(jose_token_parse(big, "x", &t, &e), AM_E_INVALID_REQUEST);
	free(big);
}

static void
keysets_keep_only_public_signing_keys(void **state)
{
	struct jose_signer *s = NULL;
	struct jose_keyset *ks = NULL;
	struct am_error e = {0};
	char *priv, *text;
	json_t *doc;

	(void)state;
	assert_int_equal(jose_signer_generate("ES256", &s, &e), AM_OK);
	priv = jose_signer_export(s);
	doc = json_pack("{s:[o, {s:s, s:s, s:s}, {s:s, s:s, s:s}]}", "keys",
			json_loads(priv, 0, NULL), "kty", "oct", "kid", "sym", "k", "c2VjcmV0",
			"kty", "EC", "kid", "enc", "use", "enc");
	text = json_dumps(doc, 0);
	assert_int_equal(jose_keyset_parse(text, strlen(text), &ks, &e), AM_OK);
	assert_int_equal(jose_keyset_count(ks), 1); /* the oct key and the enc key are gone */
	assert_true(jose_keyset_has(ks, jose_signer_kid(s)));
	assert_false(jose_keyset_has(ks, "sym"));
	jose_keyset_release(ks);
	free(text);
	json_decref(doc);
	free(priv);
	assert_int_equal(jose_keyset_parse("{\"keys\":[]}", 11, &ks, &e), AM_E_INVALID_SIGNATURE);
	assert_int_equal(jose_keyset_parse("nope", 4, &ks, &e), AM_E_INVALID_SIGNATURE);
	jose_signer_free(s);
}

static void
a_saved_private_key_loads_and_signs_the_same(void **state)
{
	struct jose_signer *s = NULL, *again = NULL;
	struct jose_keyset *ks;
	struct jose_token t;
	struct am_error e = {0};
	char *priv, *tok;
	json_t *pub;

	(void)state;
	assert_int_equal(jose_signer_generate("RS256", &s, &e), AM_OK);
	priv = jose_signer_export(s);
	assert_non_null(strstr(priv, "\"d\""));
	pub = jose_signer_public_jwk(s);
	assert_null(json_object_get(pub, "d"));
	assert_null(json_object_get(pub, "p"));
	assert_int_equal(jose_signer_load(priv, &again, &e), AM_OK);
	assert_string_equal(jose_signer_kid(again), jose_signer_kid(s));
	ks = keyset_of(&s, 1);
	tok = signed_token(again, "x");
	assert_int_equal(jose_token_parse(tok, "x", &t, &e), AM_OK);
	assert_int_equal(jose_token_verify(&t, ks, &e), AM_OK);
	jose_token_free(&t);
	free(tok);
	free(priv);
	json_decref(pub);
	jose_keyset_release(ks);
	jose_signer_free(s);
	jose_signer_free(again);
}

/* A JWKS of one key: the public JWK of s with member name set to value
 * (NULL removes it). */
static enum am_err
parse_one_altered(struct jose_signer *s, const char *name, json_t *value, struct jose_keyset **ks)
{
	json_t *jwk = jose_signer_public_jwk(s), *doc;
	struct am_error e = {0};
	enum am_err rc;
	char *text;

	if (value == NULL)
		json_object_del(jwk, name);
	else
		json_object_set_new(jwk, name, value);
	doc = json_pack("{s:[o]}", "keys", jwk);
	text = json_dumps(doc, 0);
	json_decref(doc);
	*ks = NULL;
	rc = jose_keyset_parse(text, strlen(text), ks, &e);
	free(text);
	return rc;
}

static void
rsa_keys_with_a_small_exponent_or_modulus_are_refused(void **state)
{
	struct jose_signer *s = NULL;
	struct jose_keyset *ks = NULL;
	struct am_error e = {0};
	json_t *jwk;
	char n_short[400];
	const char *n;

	(void)state;
	assert_int_equal(jose_signer_generate("RS256", &s, &e), AM_OK);
	/* e = 65537 ("AQAB") is the one in use and is kept. */
	assert_int_equal(parse_one_altered(s, "e", json_string("AQAB"), &ks), AM_OK);
	jose_keyset_release(ks);
	/* e = 3, e = 65535 (too small) and e = 65536 (even) are not. */
	assert_int_equal(parse_one_altered(s, "e", json_string("Aw"), &ks), AM_E_INVALID_SIGNATURE);
	assert_null(ks);
	assert_int_equal(parse_one_altered(s, "e", json_string("AP__"), &ks),
			 AM_E_INVALID_SIGNATURE);
	assert_int_equal(parse_one_altered(s, "e", json_string("AQAA"), &ks),
			 AM_E_INVALID_SIGNATURE);
	/* A modulus of 2040 bits: the first 8 bits dropped (2 base64url
	 * characters are 12 bits, so drop 4 and re-pad: 24 bits fewer). */
	jwk = jose_signer_public_jwk(s);
	n = json_string_value(json_object_get(jwk, "n"));
	snprintf(n_short, sizeof(n_short), "%s", n + 4);
	json_decref(jwk);
	assert_int_equal(parse_one_altered(s, "n", json_string(n_short), &ks),
			 AM_E_INVALID_SIGNATURE);
	jose_signer_free(s);
}

static void
a_jwk_that_names_its_alg_or_use_is_held_to_it(void **state)
{
	struct jose_signer *ps = NULL, *es = NULL;
	struct jose_keyset *ks = NULL;
	struct jose_token t;
	struct am_error e = {0};
	char *tok;

	(void)state;
	assert_int_equal(jose_signer_generate("PS256", &ps, &e), AM_OK);
	assert_int_equal(jose_signer_generate("ES256", &es, &e), AM_OK);
	tok = signed_token(ps, "x");
	/* The same RSA key published as an RS256 key: a PS256 token is refused
	 * although RSA fits PS256. */
	assert_int_equal(parse_one_altered(ps, "alg", json_string("RS256"), &ks), AM_OK);
	assert_int_equal(jose_token_parse(tok, "x", &t, &e), AM_OK);
	assert_int_equal(jose_token_verify(&t, ks, &e), AM_E_INVALID_SIGNATURE);
	assert_non_null(strstr(e.detail, "RS256"));
	jose_token_free(&t);
	jose_keyset_release(ks);
	/* Published as PS256, or with no alg: it verifies. */
	assert_int_equal(parse_one_altered(ps, "alg", NULL, &ks), AM_OK);
	assert_int_equal(jose_token_parse(tok, "x", &t, &e), AM_OK);
	assert_int_equal(jose_token_verify(&t, ks, &e), AM_OK);
	jose_token_free(&t);
	jose_keyset_release(ks);
	/* An alg off the allow-list or of another family, a use other than
	 * "sig" (or not a string): the key is not used at all. */
	assert_int_equal(parse_one_altered(ps, "alg", json_string("HS256"), &ks),
			 AM_E_INVALID_SIGNATURE);
	assert_int_equal(parse_one_altered(ps, "alg", json_string("ES256"), &ks),
			 AM_E_INVALID_SIGNATURE);
	assert_int_equal(parse_one_altered(es, "alg", json_string("ES384"), &ks),
			 AM_E_INVALID_SIGNATURE);
	assert_int_equal(parse_one_altered(ps, "alg", json_integer(1), &ks),
			 AM_E_INVALID_SIGNATURE);
	assert_int_equal(parse_one_altered(ps, "use", json_string("enc"), &ks),
			 AM_E_INVALID_SIGNATURE);
	assert_int_equal(parse_one_altered(ps, "use", json_integer(1), &ks),
			 AM_E_INVALID_SIGNATURE);
	free(tok);
	jose_signer_free(ps);
	jose_signer_free(es);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(tokens_signed_with_es256_rs256_and_ps256_verify),
		cmocka_unit_test(a_token_of_another_typ_is_refused),
		cmocka_unit_test(the_key_decides_the_algorithm_family),
		cmocka_unit_test(malformed_and_forbidden_headers_are_refused),
		cmocka_unit_test(keysets_keep_only_public_signing_keys),
		cmocka_unit_test(a_saved_private_key_loads_and_signs_the_same),
		cmocka_unit_test(rsa_keys_with_a_small_exponent_or_modulus_are_refused),
		cmocka_unit_test(a_jwk_that_names_its_alg_or_use_is_held_to_it),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
