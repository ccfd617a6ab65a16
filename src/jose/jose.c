#include "jose/jose.h"

#include <cjose/cjose.h>
#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "core/crypto.h"
#include "core/log.h"
#include "core/str.h"

/* The allow-list, with what each alg needs of the key. */
static const struct alg_rule {
	const char *alg;
	cjose_jwk_kty_t kty;
	cjose_jwk_ec_curve crv; /* for EC only */
} algs[] = {
	{"ES256", CJOSE_JWK_KTY_EC, CJOSE_JWK_EC_P_256},
	{"ES384", CJOSE_JWK_KTY_EC, CJOSE_JWK_EC_P_384},
	{"ES512", CJOSE_JWK_KTY_EC, CJOSE_JWK_EC_P_521},
	{"RS256", CJOSE_JWK_KTY_RSA, 0},
	{"RS384", CJOSE_JWK_KTY_RSA, 0},
	{"RS512", CJOSE_JWK_KTY_RSA, 0},
	{"PS256", CJOSE_JWK_KTY_RSA, 0},
	{"PS384", CJOSE_JWK_KTY_RSA, 0},
	{"PS512", CJOSE_JWK_KTY_RSA, 0},
};

static const struct alg_rule *
alg_rule(const char *alg)
{
	for (size_t i = 0; alg != NULL && i < sizeof(algs) / sizeof(algs[0]); i++) {
		if (strcmp(algs[i].alg, alg) == 0)
			return &algs[i];
	}
	return NULL;
}

/* ---- key sets ---- */

struct jose_key {
	cjose_jwk_t *jwk;
	char kid[128];
	char alg[8]; /* the JWK's own alg; empty when it names none */
	cjose_jwk_kty_t kty;
	cjose_jwk_ec_curve crv;
};

#define RSA_MIN_BITS 2048
#define RSA_MIN_EXPONENT 65537

/* The base64url member name of k as a positive big number (caller frees),
 * or NULL when it is missing or not base64url. */
static BIGNUM *
jwk_bignum(const json_t *k, const char *name)
{
	const char *text = json_string_value(json_object_get(k, name));
	uint8_t *raw = NULL;
	size_t len = 0;
	cjose_err err;
	BIGNUM *bn;

	if (text == NULL || !cjose_base64url_decode(text, strlen(text), &raw, &len, &err))
		return NULL;
	bn = len > 0 ? BN_bin2bn(raw, (int)len, NULL) : NULL;
	cjose_get_dealloc()(raw);
	return bn;
}

/* An RSA public key we verify with: a modulus of RSA_MIN_BITS or more
 * (counted from the number itself, so leading zero bytes do not pad it up)
 * and an odd public exponent of at least 65537. Small exponents (e = 3)
 * are what Bleichenbacher-style signature forgeries against lax PKCS#1
 * v1.5 verifiers need; no provider has a reason to publish one. */
static bool
rsa_strong(const json_t *k)
{
	BIGNUM *n = jwk_bignum(k, "n"), *e = jwk_bignum(k, "e");
	bool ok = n != NULL && e != NULL && BN_num_bits(n) >= RSA_MIN_BITS && BN_is_odd(e) &&
		  (BN_num_bits(e) > 17 || BN_get_word(e) >= RSA_MIN_EXPONENT);

	BN_free(n);
	BN_free(e);
	return ok;
}

struct jose_keyset {
	atomic_int refs;
	size_t n;
	struct jose_key keys[JOSE_MAX_KEYS];
};

static bool
usable(json_t *k, cjose_jwk_t *jwk, struct jose_key *out)
{
	cjose_err err;
	const char *use = json_string_value(json_object_get(k, "use"));
	const char *kid = json_string_value(json_object_get(k, "kid"));
	const char *alg = json_string_value(json_object_get(k, "alg"));
	const struct alg_rule *rule = NULL;

	if (json_object_get(k, "use") != NULL && (use == NULL || strcmp(use, "sig") != 0))
		return false;
	if (kid == NULL || kid[0] == '\0' || !am_copy(out->kid, sizeof(out->kid), kid))
		return false;
	/* A key that names its alg is for that alg only (RFC 7517 4.4); one
	 * naming an alg we never accept, or a non-string, is no key of ours. */
	out->alg[0] = '\0';
	if (json_object_get(k, "alg") != NULL &&
	    ((rule = alg_rule(alg)) == NULL || !am_copy(out->alg, sizeof(out->alg), alg)))
		return false;
	out->kty = cjose_jwk_get_kty(jwk, &err);
	if (rule != NULL && rule->kty != out->kty)
		return false;
	if (out->kty == CJOSE_JWK_KTY_RSA)
		return cjose_jwk_get_keysize(jwk, &err) >= RSA_MIN_BITS && rsa_strong(k);
	if (out->kty == CJOSE_JWK_KTY_EC) {
		out->crv = cjose_jwk_EC_get_curve(jwk, &err);
		if (rule != NULL && rule->crv != out->crv)
			return false;
		return out->crv == CJOSE_JWK_EC_P_256 || out->crv == CJOSE_JWK_EC_P_384 ||
		       out->crv == CJOSE_JWK_EC_P_521;
	}
	return false; /* oct and anything else: never a verification key here */
}

/* True when s[0..n) is unpadded base64url that decodes cleanly. cjose 0.6's
 * decoder asserts (and so aborts the process) on some malformed input, such
 * as "=" after a lone character, so nothing reaches it unchecked: only the
 * URL-safe alphabet, no padding, and never a length that leaves one
 * character over (n % 4 == 1 encodes no whole byte). */
static bool
b64url_ok(const char *s, size_t n)
{
	if (n % 4 == 1)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];

		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		      c == '-' || c == '_'))
			return false;
	}
	return true;
}

/* True when every base64url member a JWK may carry is a string cjose can
 * decode safely (b64url_ok); absent members are fine. */
static bool
jwk_members_ok(const json_t *k)
{
	static const char *const members[] = {"n", "e", "x",  "y",  "k", "d",
					      "p", "q", "dp", "dq", "qi"};

	for (size_t i = 0; i < sizeof(members) / sizeof(members[0]); i++) {
		const json_t *v = json_object_get(k, members[i]);

		if (v == NULL)
			continue;
		if (!json_is_string(v) || !b64url_ok(json_string_value(v), json_string_length(v)))
			return false;
	}
	return true;
}

enum am_err
jose_keyset_parse(const char *json, size_t len, struct jose_keyset **out, struct am_error *e)
{
	json_error_t jerr;
	json_t *doc = json_loadb(json, len, 0, &jerr), *keys;
	struct jose_keyset *ks;
	size_t i;
	json_t *k;

	if (doc == NULL || !json_is_array(keys = json_object_get(doc, "keys"))) {
		json_decref(doc);
		return am_fail(e, AM_E_INVALID_SIGNATURE,
			       "the provider's JWKS is not valid JSON "
			       "with a keys array");
	}
	if ((ks = calloc(1, sizeof(*ks))) == NULL) {
		json_decref(doc);
		return am_fail(e, AM_E_INTERNAL, "out of memory");
	}
	atomic_init(&ks->refs, 1);
	json_array_foreach(keys, i, k)
	{
		cjose_err err;
		cjose_jwk_t *jwk;
		char *text;

		if (ks->n >= JOSE_MAX_KEYS || !json_is_object(k) || !jwk_members_ok(k))
			continue;
		/* Import from the public members only: a JWKS that (wrongly)
		 * carries private parts must not make us hold them. */
		json_t *pub = json_deep_copy(k);
		json_object_del(pub, "d");
		json_object_del(pub, "p");
		json_object_del(pub, "q");
		json_object_del(pub, "dp");
		json_object_del(pub, "dq");
		json_object_del(pub, "qi");
		text = json_dumps(pub, JSON_COMPACT);
		json_decref(pub);
		jwk = text != NULL ? cjose_jwk_import(text, strlen(text), &err) : NULL;
		free(text);
		if (jwk == NULL)
			continue;
		if (!usable(k, jwk, &ks->keys[ks->n])) {
			cjose_jwk_release(jwk);
			continue;
		}
		ks->keys[ks->n++].jwk = jwk;
	}
	json_decref(doc);
	if (ks->n == 0) {
		jose_keyset_release(ks);
		return am_fail(e, AM_E_INVALID_SIGNATURE,
			       "the provider's JWKS has no usable signing key");
	}
	*out = ks;
	return AM_OK;
}

struct jose_keyset *
jose_keyset_retain(struct jose_keyset *ks)
{
	if (ks != NULL)
		atomic_fetch_add(&ks->refs, 1);
	return ks;
}

void
jose_keyset_release(struct jose_keyset *ks)
{
	if (ks == NULL || atomic_fetch_sub(&ks->refs, 1) != 1)
		return;
	for (size_t i = 0; i < ks->n; i++)
		cjose_jwk_release(ks->keys[i].jwk);
	free(ks);
}

size_t
jose_keyset_count(const struct jose_keyset *ks)
{
	return ks != NULL ? ks->n : 0;
}

static const struct jose_key *
find_key(const struct jose_keyset *ks, const char *kid)
{
	for (size_t i = 0; ks != NULL && kid != NULL && i < ks->n; i++) {
		if (strcmp(ks->keys[i].kid, kid) == 0)
			return &ks->keys[i];
	}
	return NULL;
}

bool
jose_keyset_has(const struct jose_keyset *ks, const char *kid)
{
	return find_key(ks, kid) != NULL;
}

/* ---- tokens ---- */

static enum am_err
parse_claims(cjose_jws_t *jws, json_t **out, struct am_error *e)
{
	uint8_t *plain = NULL;
	size_t len = 0;
	cjose_err err;
	json_error_t jerr;
	json_t *claims;

	if (!cjose_jws_get_plaintext(jws, &plain, &len, &err))
		return am_fail(e, AM_E_INVALID_REQUEST, "the token has no payload");
	claims = json_loadb((const char *)plain, len, JSON_REJECT_DUPLICATES, &jerr);
	if (claims == NULL || !json_is_object(claims)) {
		json_decref(claims);
		return am_fail(e, AM_E_INVALID_REQUEST, "the token's payload is not a JSON object");
	}
	*out = claims;
	return AM_OK;
}

static enum am_err
check_header(json_t *h, const char *want_typ, struct am_error *e)
{
	static const char *const refused[] = {"crit", "jku", "x5u", "jwk", "x5c"};
	const char *typ = json_string_value(json_object_get(h, "typ"));
	const char *alg = json_string_value(json_object_get(h, "alg"));
	const char *kid = json_string_value(json_object_get(h, "kid"));

	if (typ == NULL || strcmp(typ, want_typ) != 0)
		return am_fail(e, AM_E_INVALID_REQUEST, "the token's typ must be %s", want_typ);
	if (alg_rule(alg) == NULL)
		return am_fail(e, AM_E_INVALID_SIGNATURE,
			       "alg %.16s is not accepted; use ES256/384/512, RS256/384/512 or "
			       "PS256/384/512",
			       alg != NULL ? alg : "(none)");
	if (kid == NULL || kid[0] == '\0')
		return am_fail(e, AM_E_INVALID_REQUEST, "the token's header has no kid");
	for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
		if (json_object_get(h, refused[i]) != NULL)
			return am_fail(e, AM_E_INVALID_REQUEST,
				       "the token's header carries %s, which is not accepted",
				       refused[i]);
	}
	return AM_OK;
}

enum am_err
jose_token_parse(const char *compact, const char *want_typ, struct jose_token *out,
		 struct am_error *e)
{
	size_t len = strlen(compact), dots = 0;
	struct jose_token t = {0};
	cjose_err err;
	enum am_err rc;

	memset(out, 0, sizeof(*out));
	if (len > JOSE_MAX_TOKEN_BYTES)
		return am_fail(e, AM_E_INVALID_REQUEST, "the token is longer than %d bytes",
			       JOSE_MAX_TOKEN_BYTES);
	for (const char *p = compact, *seg = compact;; p++) {
		if (*p != '.' && *p != '\0')
			continue;
		if (!b64url_ok(seg, (size_t)(p - seg)))
			return am_fail(e, AM_E_INVALID_REQUEST,
				       "the token is not a compact JWS (bad base64url)");
		if (*p == '\0')
			break;
		dots++;
		seg = p + 1;
	}
	if (dots != 2)
		return am_fail(e, AM_E_INVALID_REQUEST, "the token is not a compact JWS");
	if ((t.jws = cjose_jws_import(compact, len, &err)) == NULL)
		return am_fail(e, AM_E_INVALID_REQUEST, "the token is not a compact JWS");
	t.header = cjose_jws_get_protected(t.jws);
	if (t.header == NULL || !json_is_object(t.header)) {
		rc = am_fail(e, AM_E_INVALID_REQUEST, "the token's header is not a JSON object");
		goto fail;
	}
	if ((rc = check_header(t.header, want_typ, e)) != AM_OK ||
	    (rc = parse_claims(t.jws, &t.claims, e)) != AM_OK)
		goto fail;
	t.alg = json_string_value(json_object_get(t.header, "alg"));
	t.kid = json_string_value(json_object_get(t.header, "kid"));
	*out = t;
	return AM_OK;
fail:
	jose_token_free(&t);
	return rc;
}

enum am_err
jose_token_verify(const struct jose_token *t, const struct jose_keyset *ks, struct am_error *e)
{
	const struct alg_rule *rule = alg_rule(t->alg);
	const struct jose_key *k = find_key(ks, t->kid);
	cjose_err err;

	if (rule == NULL)
		return am_fail(e, AM_E_INVALID_SIGNATURE, "alg is not accepted");
	if (k == NULL)
		return am_fail(e, AM_E_INVALID_SIGNATURE,
			       "no key with this kid in the provider's JWKS");
	/* The key decides the algorithm family, never the token: an RSA or EC
	 * public key can never be taken as an HMAC secret this way. */
	if (k->kty != rule->kty || (rule->kty == CJOSE_JWK_KTY_EC && k->crv != rule->crv))
		return am_fail(e, AM_E_INVALID_SIGNATURE, "alg %s does not fit the key %s", t->alg,
			       k->kid);
	if (k->alg[0] != '\0' && strcmp(k->alg, t->alg) != 0)
		return am_fail(e, AM_E_INVALID_SIGNATURE, "the key %s is for %s, not %s", k->kid,
			       k->alg, t->alg);
	if (!cjose_jws_verify(t->jws, k->jwk, &err))
		return am_fail(e, AM_E_INVALID_SIGNATURE, "the signature does not verify");
	return AM_OK;
}

void
jose_token_free(struct jose_token *t)
{
	if (t == NULL)
		return;
	json_decref(t->claims);
	if (t->jws != NULL)
		cjose_jws_release(t->jws);
	memset(t, 0, sizeof(*t));
}

/* ---- signing ---- */

struct jose_signer {
	cjose_jwk_t *jwk;
	char kid[64];
	char alg[8];
};

enum am_err
jose_signer_generate(const char *alg, struct jose_signer **out, struct am_error *e)
{
	static const uint8_t e65537[] = {0x01, 0x00, 0x01};
	struct jose_signer *s;
	cjose_err err;
	enum am_err rc;

	if (alg == NULL ||
	    (strcmp(alg, "ES256") != 0 && strcmp(alg, "RS256") != 0 && strcmp(alg, "PS256") != 0))
		return am_fail(e, AM_E_INVALID_REQUEST,
			       "signing alg must be ES256, RS256 or PS256");
	if ((s = calloc(1, sizeof(*s))) == NULL)
		return am_fail(e, AM_E_INTERNAL, "out of memory");
	snprintf(s->alg, sizeof(s->alg), "%s", alg);
	if ((rc = am_rand_id("k", s->kid, sizeof(s->kid), e)) != AM_OK) {
		free(s);
		return rc;
	}
	s->jwk = alg[0] == 'E' ? cjose_jwk_create_EC_random(CJOSE_JWK_EC_P_256, &err)
			       : cjose_jwk_create_RSA_random(2048, e65537, sizeof(e65537), &err);
	if (s->jwk == NULL || !cjose_jwk_set_kid(s->jwk, s->kid, strlen(s->kid), &err)) {
		jose_signer_free(s);
		return am_fail(e, AM_E_INTERNAL, "key generation failed");
	}
	*out = s;
	return AM_OK;
}

enum am_err
jose_signer_load(const char *json, struct jose_signer **out, struct am_error *e)
{
	json_error_t jerr;
	json_t *doc = json_loads(json, 0, &jerr);
	const char *alg = json_string_value(json_object_get(doc, "alg"));
	const char *kid = json_string_value(json_object_get(doc, "kid"));
	struct jose_signer *s;
	cjose_err err;

	if (doc == NULL || alg == NULL || kid == NULL || alg_rule(alg) == NULL ||
	    json_object_get(doc, "d") == NULL || !jwk_members_ok(doc)) {
		json_decref(doc);
		return am_fail(e, AM_E_INVALID_REQUEST, "not a private key saved by authmd");
	}
	if ((s = calloc(1, sizeof(*s))) == NULL) {
		json_decref(doc);
		return am_fail(e, AM_E_INTERNAL, "out of memory");
	}
	snprintf(s->alg, sizeof(s->alg), "%s", alg);
	snprintf(s->kid, sizeof(s->kid), "%s", kid);
	s->jwk = cjose_jwk_import(json, strlen(json), &err);
	json_decref(doc);
	if (s->jwk == NULL) {
		jose_signer_free(s);
		return am_fail(e, AM_E_INVALID_REQUEST, "the private key does not load");
	}
	*out = s;
	return AM_OK;
}

char *
jose_signer_export(const struct jose_signer *s)
{
	cjose_err err;
	char *text = cjose_jwk_to_json(s->jwk, true, &err);
	json_t *doc = text != NULL ? json_loads(text, 0, NULL) : NULL;
	char *out;

	if (text != NULL) {
		OPENSSL_cleanse(text, strlen(text));
		free(text);
	}
	if (doc == NULL)
		return NULL;
	json_object_set_new(doc, "alg", json_string(s->alg));
	json_object_set_new(doc, "kid", json_string(s->kid));
	out = json_dumps(doc, JSON_COMPACT);
	json_decref(doc);
	return out;
}

json_t *
jose_signer_public_jwk(const struct jose_signer *s)
{
	cjose_err err;
	char *text = cjose_jwk_to_json(s->jwk, false, &err);
	json_t *doc = text != NULL ? json_loads(text, 0, NULL) : NULL;

	free(text);
	if (doc == NULL)
		return NULL;
	json_object_set_new(doc, "kid", json_string(s->kid));
	json_object_set_new(doc, "alg", json_string(s->alg));
	json_object_set_new(doc, "use", json_string("sig"));
	return doc;
}

const char *
jose_signer_kid(const struct jose_signer *s)
{
	return s->kid;
}

const char *
jose_signer_alg(const struct jose_signer *s)
{
	return s->alg;
}

enum am_err
jose_sign(const struct jose_signer *s, const char *typ, const json_t *claims, char **out,
	  struct am_error *e)
{
	return jose_sign_kid(s, typ, NULL, claims, out, e);
}

enum am_err
jose_sign_kid(const struct jose_signer *s, const char *typ, const char *kid, const json_t *claims,
	      char **out, struct am_error *e)
{
	cjose_header_t *h = NULL;
	cjose_jws_t *jws = NULL;
	const char *compact = NULL;
	char *payload = json_dumps(claims, JSON_COMPACT);
	cjose_err err;
	enum am_err rc = AM_OK;

	if (payload == NULL || (h = cjose_header_new(&err)) == NULL ||
	    !cjose_header_set(h, CJOSE_HDR_ALG, s->alg, &err) ||
	    !cjose_header_set(h, "typ", typ, &err) ||
	    !cjose_header_set(h, CJOSE_HDR_KID, kid != NULL ? kid : s->kid, &err) ||
	    (jws = cjose_jws_sign(s->jwk, h, (const uint8_t *)payload, strlen(payload), &err)) ==
		    NULL ||
	    !cjose_jws_export(jws, &compact, &err))
		rc = am_fail(e, AM_E_INTERNAL, "signing failed");
	else
		*out = am_xstrdup(compact);
	if (jws != NULL)
		cjose_jws_release(jws);
	cjose_header_release(h);
	free(payload);
	return rc;
}

void
jose_signer_free(struct jose_signer *s)
{
	if (s == NULL)
		return;
	cjose_jwk_release(s->jwk);
	free(s);
}

/* ---- DPoP (RFC 9449) ---- */

static bool
b64url_encode(const uint8_t *in, size_t len, char *out, size_t cap)
{
	char *text = NULL;
	size_t n = 0;
	cjose_err err;
	bool ok;

	if (!cjose_base64url_encode(in, len, &text, &n, &err))
		return false;
	ok = n < cap;
	if (ok) {
		memcpy(out, text, n);
		out[n] = '\0';
	}
	cjose_get_dealloc()(text);
	return ok;
}

void
jose_b64url_sha256(const char *text, char out[JOSE_JKT_LEN])
{
	uint8_t h[AM_HASH_LEN];

	am_sha256_str(text, h);
	if (!b64url_encode(h, sizeof(h), out, JOSE_JKT_LEN))
		out[0] = '\0';
}

enum am_err
jose_jwk_thumbprint(const json_t *jwk, char out[JOSE_JKT_LEN], struct am_error *e)
{
	/* RFC 7638 3.2: the required members only, in lexicographic order,
	 * no whitespace; jansson's compact sorted dump is exactly that. */
	static const char *const ec[] = {"crv", "kty", "x", "y"}, *const rsa[] = {"e", "kty", "n"};
	const char *kty = json_string_value(json_object_get(jwk, "kty"));
	const char *const *names;
	size_t n;
	json_t *req = json_object();
	char *text;
	uint8_t h[AM_HASH_LEN];
	bool ok;

	if (kty != NULL && strcmp(kty, "EC") == 0)
		names = ec, n = 4;
	else if (kty != NULL && strcmp(kty, "RSA") == 0)
		names = rsa, n = 3;
	else {
		json_decref(req);
		return am_fail(e, AM_E_INVALID_REQUEST, "the jwk is neither EC nor RSA");
	}
	for (size_t i = 0; i < n; i++) {
		const json_t *v = json_object_get(jwk, names[i]);

		if (!json_is_string(v)) {
			json_decref(req);
			return am_fail(e, AM_E_INVALID_REQUEST, "the jwk has no %s", names[i]);
		}
		json_object_set_new(req, names[i], json_string(json_string_value(v)));
	}
	text = json_dumps(req, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(req);
	if (text == NULL)
		return am_fail(e, AM_E_INTERNAL, "out of memory");
	am_sha256_str(text, h);
	free(text);
	ok = b64url_encode(h, sizeof(h), out, JOSE_JKT_LEN);
	return ok ? AM_OK : am_fail(e, AM_E_INTERNAL, "thumbprint encoding failed");
}

/* The public JWK of s without kid, alg or use: what a DPoP header carries. */
static json_t *
bare_public_jwk(const struct jose_signer *s)
{
	cjose_err err;
	char *text = cjose_jwk_to_json(s->jwk, false, &err);
	json_t *doc = text != NULL ? json_loads(text, 0, NULL) : NULL;

	free(text);
	if (doc != NULL)
		json_object_del(doc, "kid");
	return doc;
}

enum am_err
jose_signer_jkt(const struct jose_signer *s, char out[JOSE_JKT_LEN], struct am_error *e)
{
	json_t *jwk = bare_public_jwk(s);
	enum am_err rc;

	if (jwk == NULL)
		return am_fail(e, AM_E_INTERNAL, "the public key does not export");
	rc = jose_jwk_thumbprint(jwk, out, e);
	json_decref(jwk);
	return rc;
}

enum am_err
jose_dpop_proof(const struct jose_signer *s, const char *htm, const char *htu,
		const char *access_token, int64_t iat, char **out, struct am_error *e)
{
	json_t *jwk = bare_public_jwk(s), *claims = NULL;
	char *jwk_text = NULL, *payload = NULL, jti[48], ath[JOSE_JKT_LEN];
	cjose_header_t *h = NULL;
	cjose_jws_t *jws = NULL;
	const char *compact = NULL;
	cjose_err err;
	enum am_err rc;

	if (jwk == NULL || (jwk_text = json_dumps(jwk, JSON_COMPACT)) == NULL) {
		rc = am_fail(e, AM_E_INTERNAL, "the public key does not export");
		goto out;
	}
	if ((rc = am_rand_id("dpop", jti, sizeof(jti), e)) != AM_OK)
		goto out;
	claims = json_pack("{s:s, s:s, s:s, s:I}", "jti", jti, "htm", htm, "htu", htu, "iat",
			   (json_int_t)iat);
	if (claims != NULL && access_token != NULL) {
		jose_b64url_sha256(access_token, ath);
		json_object_set_new(claims, "ath", json_string(ath));
	}
	if (claims == NULL || (payload = json_dumps(claims, JSON_COMPACT)) == NULL ||
	    (h = cjose_header_new(&err)) == NULL ||
	    !cjose_header_set(h, CJOSE_HDR_ALG, s->alg, &err) ||
	    !cjose_header_set(h, "typ", JOSE_DPOP_TYP, &err) ||
	    !cjose_header_set_raw(h, "jwk", jwk_text, &err) ||
	    (jws = cjose_jws_sign(s->jwk, h, (const uint8_t *)payload, strlen(payload), &err)) ==
		    NULL ||
	    !cjose_jws_export(jws, &compact, &err)) {
		rc = am_fail(e, AM_E_INTERNAL, "signing the DPoP proof failed");
		goto out;
	}
	*out = am_xstrdup(compact);
	rc = AM_OK;
out:
	if (jws != NULL)
		cjose_jws_release(jws);
	cjose_header_release(h);
	free(payload);
	free(jwk_text);
	json_decref(claims);
	json_decref(jwk);
	return rc;
}

/* The header's jwk as a verification key: public members only, a key type
 * and size we accept, and the alg fitting it. */
static enum am_err
dpop_key(json_t *h, const struct alg_rule *rule, cjose_jwk_t **out, struct am_error *e)
{
	static const char *const private_members[] = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"};
	json_t *jwk = json_object_get(h, "jwk");
	struct jose_key k = {0};
	cjose_jwk_t *key;
	char *text;
	cjose_err err;

	if (!json_is_object(jwk))
		return am_fail(e, AM_E_INVALID_DPOP_PROOF, "the DPoP proof's header has no jwk");
	for (size_t i = 0; i < sizeof(private_members) / sizeof(private_members[0]); i++) {
		if (json_object_get(jwk, private_members[i]) != NULL)
			return am_fail(e, AM_E_INVALID_DPOP_PROOF,
				       "the DPoP proof's jwk carries a private key member");
	}
	if (!jwk_members_ok(jwk) || (text = json_dumps(jwk, JSON_COMPACT)) == NULL)
		return am_fail(e, AM_E_INVALID_DPOP_PROOF, "the DPoP proof's jwk is malformed");
	key = cjose_jwk_import(text, strlen(text), &err);
	free(text);
	if (key == NULL)
		return am_fail(e, AM_E_INVALID_DPOP_PROOF, "the DPoP proof's jwk does not load");
	/* usable() wants a kid; the DPoP jwk needs none, so lend it one. */
	json_t *copy = json_deep_copy(jwk);
	json_object_set_new(copy, "kid", json_string("dpop"));
	bool ok = usable(copy, key, &k) && k.kty == rule->kty &&
		  (rule->kty != CJOSE_JWK_KTY_EC || k.crv == rule->crv) &&
		  (k.alg[0] == '\0' || strcmp(k.alg, rule->alg) == 0);
	json_decref(copy);
	if (!ok) {
		cjose_jwk_release(key);
		return am_fail(e, AM_E_INVALID_DPOP_PROOF,
			       "the DPoP proof's jwk is not a key for alg %s (EC P-256/384/521 "
			       "or RSA of 2048 bits or more)",
			       rule->alg);
	}
	*out = key;
	return AM_OK;
}

enum am_err
jose_dpop_verify(const char *compact, struct jose_dpop *out, struct am_error *e)
{
	static const char *const refused[] = {"crit", "jku", "x5u", "x5c", "kid"};
	size_t len = strlen(compact), dots = 0;
	cjose_jws_t *jws = NULL;
	cjose_jwk_t *key = NULL;
	json_t *h, *claims = NULL;
	const struct alg_rule *rule;
	const char *typ;
	char jkt[JOSE_JKT_LEN];
	cjose_err err;
	enum am_err rc;

	memset(out, 0, sizeof(*out));
	if (len > JOSE_MAX_TOKEN_BYTES)
		return am_fail(e, AM_E_INVALID_DPOP_PROOF, "the DPoP proof is longer than %d bytes",
			       JOSE_MAX_TOKEN_BYTES);
	for (const char *p = compact, *seg = compact;; p++) {
		if (*p != '.' && *p != '\0')
			continue;
		if (!b64url_ok(seg, (size_t)(p - seg)))
			return am_fail(e, AM_E_INVALID_DPOP_PROOF,
				       "the DPoP proof is not a compact JWS");
		if (*p == '\0')
			break;
		dots++;
		seg = p + 1;
	}
	if (dots != 2 || (jws = cjose_jws_import(compact, len, &err)) == NULL)
		return am_fail(e, AM_E_INVALID_DPOP_PROOF, "the DPoP proof is not a compact JWS");
	h = cjose_jws_get_protected(jws);
	typ = json_string_value(json_object_get(h, "typ"));
	if (!json_is_object(h) || typ == NULL || strcmp(typ, JOSE_DPOP_TYP) != 0) {
		rc = am_fail(e, AM_E_INVALID_DPOP_PROOF, "the DPoP proof's typ must be dpop+jwt");
		goto out;
	}
	if ((rule = alg_rule(json_string_value(json_object_get(h, "alg")))) == NULL) {
		rc = am_fail(e, AM_E_INVALID_DPOP_PROOF,
			     "the DPoP proof's alg is not accepted; use ES256/384/512, "
			     "RS256/384/512 or PS256/384/512");
		goto out;
	}
	for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
		if (json_object_get(h, refused[i]) != NULL) {
			rc = am_fail(e, AM_E_INVALID_DPOP_PROOF,
				     "the DPoP proof's header carries %s, which is not accepted",
				     refused[i]);
			goto out;
		}
	}
	if ((rc = dpop_key(h, rule, &key, e)) != AM_OK)
		goto out;
	if (!cjose_jws_verify(jws, key, &err)) {
		rc = am_fail(e, AM_E_INVALID_DPOP_PROOF,
			     "the DPoP proof's signature does not verify");
		goto out;
	}
	if ((rc = parse_claims(jws, &claims, e)) != AM_OK) {
		rc = am_fail(e, AM_E_INVALID_DPOP_PROOF,
			     "the DPoP proof's payload is not an object");
		goto out;
	}
	if ((rc = jose_jwk_thumbprint(json_object_get(h, "jwk"), jkt, e)) != AM_OK) {
		rc = am_fail(e, AM_E_INVALID_DPOP_PROOF, "the DPoP proof's jwk has no thumbprint");
		goto out;
	}
	memcpy(out->jkt, jkt, sizeof(jkt));
	out->claims = claims;
	claims = NULL;
out:
	json_decref(claims);
	cjose_jwk_release(key);
	if (jws != NULL)
		cjose_jws_release(jws);
	return rc;
}

void
jose_dpop_free(struct jose_dpop *d)
{
	if (d == NULL)
		return;
	json_decref(d->claims);
	memset(d, 0, sizeof(*d));
}

/* ---- protocol v0.6 (issue 13) ---- */

enum am_err
jose_signer_thumbprint_kid(struct jose_signer *s, struct am_error *e)
{
	/* One RFC 7638 function (jose_jwk_thumbprint) serves the kid, the
	 * DPoP jkt and the agent's proof key alike. */
	json_t *pub = jose_signer_public_jwk(s);
	char kid[JOSE_JKT_LEN];
	cjose_err err;
	enum am_err rc;

	if (pub == NULL)
		return am_fail(e, AM_E_INTERNAL, "cannot read the public key");
	rc = jose_jwk_thumbprint(pub, kid, e);
	json_decref(pub);
	if (rc != AM_OK)
		return am_fail(e, AM_E_INTERNAL, "the public key has no thumbprint");
	if (!cjose_jwk_set_kid(s->jwk, kid, strlen(kid), &err) ||
	    !am_copy(s->kid, sizeof(s->kid), kid))
		return am_fail(e, AM_E_INTERNAL, "cannot set the thumbprint kid");
	return AM_OK;
}

json_t *
jose_unverified_claims(const char *compact)
{
	struct jose_token t;
	cjose_jws_t *jws;
	json_t *claims = NULL;
	cjose_err err;
	size_t len = strlen(compact);

	memset(&t, 0, sizeof(t));
	if (len > JOSE_MAX_TOKEN_BYTES)
		return NULL;
	for (const char *p = compact, *seg = compact;; p++) {
		if (*p != '.' && *p != '\0')
			continue;
		if (!b64url_ok(seg, (size_t)(p - seg)))
			return NULL;
		if (*p == '\0')
			break;
		seg = p + 1;
	}
	if ((jws = cjose_jws_import(compact, len, &err)) == NULL)
		return NULL;
	if (parse_claims(jws, &claims, NULL) != AM_OK)
		claims = NULL;
	cjose_jws_release(jws);
	return claims;
}
