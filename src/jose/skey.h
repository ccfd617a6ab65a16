/* The service's own signing keys (protocol v0.6, issue 13): ES256 keys that
 * sign the identity assertions /agent/identity hands out, published at
 * /.well-known/jwks.json with kid = RFC 7638 thumbprint.
 *
 * All keys live in one file, DIR/service-keys.json (folder mode 0700, file
 * mode 0600, replaced atomically): {"keys": [{"jwk": <private JWK>,
 * "created_at": N, "retired_at": N}]}. Exactly one entry has retired_at 0:
 * the current key, which signs. A retired key stays published (and accepted
 * for what it signed) for `overlap` seconds after retired_at; later it is
 * dropped from the JWKS at once and from the file at the next write. Only
 * the public halves ever leave the file. */
#ifndef AM_SKEY_H
#define AM_SKEY_H

#include <jansson.h>
#include <stdint.h>

#include "core/compiler.h"
#include "core/errors.h"
#include "jose/jose.h"

struct skey;

/* Loads DIR's keys, generating the file with one ES256 key when there is
 * none. A file readable by others, or one that does not parse, is refused
 * (AM_E_UNAVAILABLE): the server must not start with a key it cannot
 * trust. The handle notices a rotation made by another process (the file
 * changed) at its next sign, verify or JWKS call. */
enum am_err skey_open(const char *dir, int64_t overlap, int64_t now, struct skey **out,
		      struct am_error *e) AM_WUR;
void skey_free(struct skey *k); /* NULL is fine */

/* `authmd-server rotate-key`: adds a new ES256 key as the current one, the
 * previous current key retired at now, keys retired more than overlap ago
 * dropped. kid gets the new key's kid. Creates the file if there is none. */
enum am_err skey_rotate(const char *dir, int64_t overlap, int64_t now, char kid[64],
			struct am_error *e) AM_WUR;

/* Signs claims with the current key, header {typ, alg ES256, kid}; *out is
 * the compact JWS (caller frees). */
enum am_err skey_sign(struct skey *k, const char *typ, const json_t *claims, int64_t now,
		      char **out, struct am_error *e) AM_WUR;

/* The JWKS document ({"keys": [...]}, public halves of the current key and
 * of retired keys still within their overlap), as a new JSON text (caller
 * frees). */
enum am_err skey_jwks(struct skey *k, int64_t now, char **out, struct am_error *e) AM_WUR;

/* Parses compact (header checks as jose_token_parse, with want_typ) and
 * verifies its signature with one of the published keys at now. On AM_OK
 * *t holds the token (free with jose_token_free); its claims are then the
 * service's own words, but exp/iss/aud are the caller's to check. */
enum am_err skey_verify(struct skey *k, const char *compact, const char *want_typ, int64_t now,
			struct jose_token *t, struct am_error *e) AM_WUR;

#endif
