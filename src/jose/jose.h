/* JWS on cjose, strictly: compact serialisation only, an asymmetric alg
 * allow-list, the expected typ, alg matched to the key's type and curve,
 * and no header a verifier must not ignore (crit) or must not follow (jku,
 * x5u, jwk). Only jose/ includes <cjose/cjose.h>. */
#ifndef AM_JOSE_H
#define AM_JOSE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/errors.h"

#define JOSE_MAX_TOKEN_BYTES (16 * 1024) /* a compact JWS we accept */
#define JOSE_MAX_KEYS 32		 /* keys kept from one JWKS */

/* A parsed JWKS: public verification keys, shared between threads and
 * freed when the last holder releases it. */
struct jose_keyset;

/* Parses a JWKS document. Keys that are not RSA (a modulus of 2048 bits or
 * more and an odd public exponent of at least 65537) or EC on
 * P-256/384/521, that lack a kid, that carry a "use" other than "sig", or
 * an "alg" that is off the allow-list or does not fit the key, are
 * skipped; a document with no usable key is refused (AM_E_INVALID_SIGNATURE).
 * The new set holds one reference. */
enum am_err jose_keyset_parse(const char *json, size_t len, struct jose_keyset **out,
			      struct am_error *e) AM_WUR;
struct jose_keyset *jose_keyset_retain(struct jose_keyset *ks);
void jose_keyset_release(struct jose_keyset *ks); /* NULL is fine */
size_t jose_keyset_count(const struct jose_keyset *ks);
bool jose_keyset_has(const struct jose_keyset *ks, const char *kid);

/* A compact JWS whose header passed the checks, with its claims parsed but
 * not yet trusted: only jose_token_verify makes them trustworthy. */
struct jose_token {
	void *jws;	       /* cjose_jws_t */
	json_t *header;	       /* borrowed from jws */
	json_t *claims;	       /* owned */
	const char *alg, *kid; /* borrowed from header */
};

/* Parses compact and checks the header: typ equal to want_typ (exactly),
 * alg on the allow-list, kid present, no crit/jku/x5u/jwk/x5c; the payload
 * must be a JSON object. AM_E_INVALID_REQUEST for a malformed token or
 * wrong typ, AM_E_INVALID_SIGNATURE for an alg outside the list. */
enum am_err jose_token_parse(const char *compact, const char *want_typ, struct jose_token *out,
			     struct am_error *e) AM_WUR;

/* Verifies the signature with the key of the token's kid in ks, after
 * checking that the alg fits the key (RS and PS need RSA; ES256, ES384 and
 * ES512 need P-256, P-384 and P-521) and, when the JWK names an alg, that
 * it is the header's alg exactly. AM_E_INVALID_SIGNATURE otherwise. */
enum am_err jose_token_verify(const struct jose_token *t, const struct jose_keyset *ks,
			      struct am_error *e) AM_WUR;

void jose_token_free(struct jose_token *t);

/* A private signing key, for the provider side and the test provider. */
struct jose_signer;

/* A new key for alg (ES256, RS256 or PS256) with a random kid. */
enum am_err jose_signer_generate(const char *alg, struct jose_signer **out,
				 struct am_error *e) AM_WUR;
/* Loads a private key saved by jose_signer_export (JSON with alg). */
enum am_err jose_signer_load(const char *json, struct jose_signer **out, struct am_error *e) AM_WUR;
/* The private key as JSON (caller frees; write it with mode 0600). */
char *jose_signer_export(const struct jose_signer *s);
/* The public JWK (new reference) with kid, alg and use=sig. */
json_t *jose_signer_public_jwk(const struct jose_signer *s);
const char *jose_signer_kid(const struct jose_signer *s);
const char *jose_signer_alg(const struct jose_signer *s);
/* Signs claims with header {typ, alg, kid}; *out is the compact JWS
 * (caller frees). */
enum am_err jose_sign(const struct jose_signer *s, const char *typ, const json_t *claims,
		      char **out, struct am_error *e) AM_WUR;
/* The same with the header kid set to kid instead of the key's own (the
 * test provider uses it to present unknown kids). */
enum am_err jose_sign_kid(const struct jose_signer *s, const char *typ, const char *kid,
			  const json_t *claims, char **out, struct am_error *e) AM_WUR;
void jose_signer_free(struct jose_signer *s);

/* ---- DPoP (RFC 9449) ---- */

#define JOSE_DPOP_TYP "dpop+jwt"
#define JOSE_JKT_LEN 44 /* an RFC 7638 SHA-256 thumbprint, base64url (43) + NUL */

/* The RFC 7638 SHA-256 thumbprint of the public part of jwk (an EC or RSA
 * JWK object), base64url without padding. AM_E_INVALID_REQUEST when a
 * required member is missing or not a string. */
enum am_err jose_jwk_thumbprint(const json_t *jwk, char out[JOSE_JKT_LEN],
				struct am_error *e) AM_WUR;
/* The thumbprint of the signer's public key. */
enum am_err jose_signer_jkt(const struct jose_signer *s, char out[JOSE_JKT_LEN],
			    struct am_error *e) AM_WUR;
/* base64url(SHA-256(text)), unpadded: a DPoP proof's ath for an access
 * token (RFC 9449 4.2). */
void jose_b64url_sha256(const char *text, char out[JOSE_JKT_LEN]);

/* A DPoP proof signed by s: header {typ dpop+jwt, alg, jwk: the public key,
 * no kid}; claims jti (random), htm, htu, iat, and ath when access_token is
 * not NULL. *out is the compact JWS (caller frees). */
enum am_err jose_dpop_proof(const struct jose_signer *s, const char *htm, const char *htu,
			    const char *access_token, int64_t iat, char **out,
			    struct am_error *e) AM_WUR;

/* A DPoP proof whose signature verified with the key in its own header. */
struct jose_dpop {
	char jkt[JOSE_JKT_LEN]; /* the thumbprint of that key */
	json_t *claims;		/* owned; checked by the caller (flows/dpop.c) */
};

/* Parses and verifies a DPoP proof: a compact JWS of at most
 * JOSE_MAX_TOKEN_BYTES, typ exactly dpop+jwt, alg on the allow-list and
 * fitting the header's jwk (EC P-256/384/521 or RSA of 2048 bits or more,
 * public members only: a jwk with "d" or any private member is refused),
 * no kid/jku/x5u/x5c/crit, a JSON-object payload, and a signature that
 * verifies with that jwk. AM_E_INVALID_DPOP_PROOF for every refusal. out
 * is filled only on AM_OK (release with jose_dpop_free). */
enum am_err jose_dpop_verify(const char *compact, struct jose_dpop *out, struct am_error *e) AM_WUR;
void jose_dpop_free(struct jose_dpop *d); /* NULL is fine */

/* The payload of a compact JWS as a JSON object (new reference), NOT
 * verified: only to learn what a later verification will be asked to hold
 * (a grant's cnf.jkt). NULL when it is not a compact JWS with an object
 * payload. */
json_t *jose_unverified_claims(const char *compact);
/* ---- protocol v0.6 (issue 13) ---- */

/* Sets s's kid (and the key's) to the RFC 7638 thumbprint of its public
 * key: base64url(SHA-256) of the required members (EC: crv, kty, x, y;
 * RSA: e, kty, n) in lexicographic order, no whitespace. */
enum am_err jose_signer_thumbprint_kid(struct jose_signer *s, struct am_error *e) AM_WUR;

#endif
