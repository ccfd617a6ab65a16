/* Hashing, constant-time comparison and CSPRNG-backed tokens, all on OpenSSL.
 * Every secret the server hands out is made here and stored only as the
 * SHA-256 this module computes. */
#ifndef AM_CRYPTO_H
#define AM_CRYPTO_H

#include <stddef.h>
#include <stdint.h>
#include <stdbool.h>

#include "core/compiler.h"
#include "core/errors.h"

#define AM_HASH_LEN 32
#define AM_TOKEN_CHARS 32 /* base62 characters of a secret token: ~190 bits */
#define AM_ID_CHARS 24	  /* hex characters of a public id: 96 bits */
#define AM_OTP_DIGITS 6	  /* = AUTHMD_OTP_DIGITS of include/authmd/client.h */

/* SHA-256 of len bytes at data into out. */
void am_sha256(const void *data, size_t len, uint8_t out[AM_HASH_LEN]);

/* SHA-256 of a NUL-terminated string. */
void am_sha256_str(const char *s, uint8_t out[AM_HASH_LEN]);

/* Constant-time equality of two equal-length byte strings. */
bool am_ct_equal(const void *a, const void *b, size_t len);

/* Writes prefix followed by AM_TOKEN_CHARS base62 characters from the CSPRNG
 * into out (NUL-terminated). Fails with AM_E_INTERNAL if the CSPRNG fails or
 * the buffer is too small. */
enum am_err am_rand_token(const char *prefix, char *out, size_t cap, struct am_error *e) AM_WUR;

/* Like am_rand_token but hex, AM_ID_CHARS long: for public identifiers. */
enum am_err am_rand_id(const char *prefix, char *out, size_t cap, struct am_error *e) AM_WUR;

/* A request id for logs (16 hex characters into out[17]): a random prefix
 * drawn once per thread, then a per-thread counter, so a request costs no
 * CSPRNG call. Unique enough to follow one request through a log; not a
 * secret and not unguessable. */
void am_request_id(char out[17]);

/* A uniformly distributed AM_OTP_DIGITS-digit decimal code (leading zeros
 * kept) from the CSPRNG, in out[AM_OTP_DIGITS + 1]. */
enum am_err am_rand_otp(char out[AM_OTP_DIGITS + 1], struct am_error *e) AM_WUR;

/* RFC 8628 6.1: consonants only, so no word is spelt and no look-alike
 * (0/O, 1/I) exists; 20^8 codes, about 34.6 bits. */
#define AM_USER_CODE_ALPHABET "BCDFGHJKLMNPQRSTVWXZ"
#define AM_USER_CODE_CHARS 8
/* A uniformly distributed user_code of AM_USER_CODE_CHARS characters of
 * AM_USER_CODE_ALPHABET from the CSPRNG, in out[AM_USER_CODE_CHARS + 1]. */
enum am_err am_rand_user_code(char out[AM_USER_CODE_CHARS + 1], struct am_error *e) AM_WUR;

/* Lower-case hex of len bytes into out (2*len+1 bytes). */
void am_hex(const uint8_t *in, size_t len, char *out);

#endif
