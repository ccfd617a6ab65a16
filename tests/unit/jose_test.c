/* jose/: signing and strict verification, with keys made here. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http/http.h"
#include "jose/jose.h"
#include "trust/trust.h"

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

/* ---- trust/: the JWKS cache against a real loopback JWKS server ---- */

static char *served_jwks; /* what the JWKS server below answers */

static enum am_err
h_jwks(void *app, struct http_req *rq, struct http_resp *rs, struct am_error *e)
{
	(void)app, (void)rq, (void)e;
	http_reply_text(rs, 200, "application/json", served_jwks, strlen(served_jwks));
	http_add_header(rs, "Cache-Control", "max-age=600");
	return AM_OK;
}

static const struct http_route jwks_routes[] = {
	{"GET", "/.well-known/jwks.json", HTTP_EXACT, h_jwks},
};

/* A loopback port nothing listens on right now. */
static uint16_t
free_port(void)
{
	struct sockaddr_in a = {0};
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	assert_true(fd >= 0);
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	close(fd);
	return ntohs(a.sin_port);
}

static void
trust_config(struct am_config *cfg, uint16_t port)
{
	am_config_defaults(cfg);
	/* the test's JWKS server is on loopback, which outbound fetches refuse by default */
	snprintf(cfg->outbound_allow, sizeof(cfg->outbound_allow), "127.0.0.0/8");
	snprintf(cfg->providers[0].name, sizeof(cfg->providers[0].name), "p");
	snprintf(cfg->providers[0].issuer, sizeof(cfg->providers[0].issuer), "http://127.0.0.1:%u",
		 (unsigned)port);
	snprintf(cfg->providers[0].jwks_uri, sizeof(cfg->providers[0].jwks_uri),
		 "http://127.0.0.1:%u/.well-known/jwks.json", (unsigned)port);
	cfg->nproviders = 1;
	cfg->jwks_refetch = 30;
	cfg->jwks_max_stale = 100;
}

static void
an_unreachable_jwks_is_unavailable_not_a_bad_signature(void **state)
{
	struct am_config cfg;
	struct trust *t = NULL;
	struct jose_keyset *ks = NULL;
	struct am_error e = {0};

	(void)state;
	trust_config(&cfg, free_port());
	assert_int_equal(trust_new(&cfg, &t, &e), AM_OK);
	assert_int_equal(trust_keys(t, &cfg.providers[0], "k", 1000, &ks, &e), AM_E_UNAVAILABLE);
	assert_null(ks);
	assert_true(e.retry_after >= 1 && e.retry_after <= 30);
	assert_non_null(strstr(e.detail, "could not be fetched"));
	/* Inside the refetch window nothing is fetched; the answer holds. */
	assert_int_equal(trust_keys(t, &cfg.providers[0], "k", 1010, &ks, &e), AM_E_UNAVAILABLE);
	assert_int_equal(e.retry_after, 20);
	assert_int_equal(trust_fetch_count(t, &cfg.providers[0]), 1);
	trust_free(t);
}

static void
cached_keys_are_dropped_once_refreshes_fail_past_jwks_max_stale(void **state)
{
	struct jose_signer *s = NULL;
	struct jose_keyset *ks = NULL;
	struct http_server *srv = NULL;
	uint16_t port = free_port();
	struct http_options opt = {.host = "127.0.0.1", .port = port, .threads = 1, .max_body = 4096};
	struct am_config cfg;
	struct trust *t = NULL;
	struct am_error e = {0};
	json_t *doc;
	const int64_t t0 = 1000000;

	(void)state;
	assert_int_equal(jose_signer_generate("ES256", &s, &e), AM_OK);
	doc = json_pack("{s:[o]}", "keys", jose_signer_public_jwk(s));
	served_jwks = json_dumps(doc, 0);
	json_decref(doc);
	trust_config(&cfg, port);
	assert_int_equal(http_server_start(&opt, jwks_routes, 1, NULL, &srv, &e), AM_OK);
	assert_int_equal(trust_new(&cfg, &t, &e), AM_OK);
	assert_int_equal(trust_keys(t, &cfg.providers[0], jose_signer_kid(s), t0, &ks, &e), AM_OK);
	jose_keyset_release(ks);
	http_server_stop(srv); /* the provider goes away */

	/* Past max-age (600 s) the refresh fails; within jwks_max_stale the
	 * cached keys still serve. */
	ks = NULL;
	assert_int_equal(
		trust_keys(t, &cfg.providers[0], jose_signer_kid(s), t0 + 600 + 99, &ks, &e),
		AM_OK);
	assert_true(jose_keyset_has(ks, jose_signer_kid(s)));
	jose_keyset_release(ks);
	assert_int_equal(trust_fetch_count(t, &cfg.providers[0]), 2);
	/* Past it they are no longer trusted, fetch allowed or not. */
	ks = NULL;
	assert_int_equal(
		trust_keys(t, &cfg.providers[0], jose_signer_kid(s), t0 + 600 + 100, &ks, &e),
		AM_E_UNAVAILABLE);
	assert_null(ks);
	assert_true(e.retry_after >= 1);
	trust_free(t);
	free(served_jwks);
	jose_signer_free(s);
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
		cmocka_unit_test(an_unreachable_jwks_is_unavailable_not_a_bad_signature),
		cmocka_unit_test(cached_keys_are_dropped_once_refreshes_fail_past_jwks_max_stale),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
