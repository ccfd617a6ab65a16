#include "core/crypto.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* SHA-256 fetched from the default provider once: EVP_sha256() in
 * EVP_Digest fetches the implementation again on every call, a third of
 * the cost of hashing a bearer credential. Each thread keeps one digest
 * context too (EVP_Digest allocates, sets up and frees one per call); the
 * digest's final step wipes the state, so no credential stays in it. */
static EVP_MD *sha256_md;
static pthread_key_t sha256_ctx_key;
static bool sha256_ctx_keyed;
static pthread_once_t sha256_once = PTHREAD_ONCE_INIT;

static void
sha256_ctx_free(void *ctx)
{
	EVP_MD_CTX_free(ctx);
}

static void
sha256_fetch(void)
{
	sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
	sha256_ctx_keyed = pthread_key_create(&sha256_ctx_key, sha256_ctx_free) == 0;
}

static EVP_MD_CTX *
sha256_ctx(void)
{
	EVP_MD_CTX *ctx;

	if (!sha256_ctx_keyed || sha256_md == NULL)
		return NULL;
	if ((ctx = pthread_getspecific(sha256_ctx_key)) == NULL &&
	    (ctx = EVP_MD_CTX_new()) != NULL && pthread_setspecific(sha256_ctx_key, ctx) != 0) {
		EVP_MD_CTX_free(ctx);
		ctx = NULL;
	}
	return ctx;
}

void
am_sha256(const void *data, size_t len, uint8_t out[AM_HASH_LEN])
{
	unsigned int n = AM_HASH_LEN;
	EVP_MD_CTX *ctx;

	pthread_once(&sha256_once, sha256_fetch);
	if ((ctx = sha256_ctx()) != NULL && EVP_DigestInit_ex2(ctx, sha256_md, NULL) == 1 &&
	    EVP_DigestUpdate(ctx, data, len) == 1 && EVP_DigestFinal_ex(ctx, out, &n) == 1)
		return;
	/* EVP_Digest cannot fail for SHA-256 short of memory exhaustion; on
	 * failure the output is zeroed so a failed hash can never equal a
	 * stored one by accident of old stack. */
	n = AM_HASH_LEN;
	if (EVP_Digest(data, len, out, &n, sha256_md != NULL ? sha256_md : EVP_sha256(), NULL) != 1)
		memset(out, 0, AM_HASH_LEN);
}

void
am_sha256_str(const char *s, uint8_t out[AM_HASH_LEN])
{
	am_sha256(s, strlen(s), out);
}

bool
am_ct_equal(const void *a, const void *b, size_t len)
{
	return CRYPTO_memcmp(a, b, len) == 0;
}

static const char base62[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
static const char hexdig[] = "0123456789abcdef";

/* Random bytes are drawn from OpenSSL a pool at a time: one RAND_bytes
 * call has a fixed cost (provider dispatch, the per-thread DRBG's checks)
 * of thousands of instructions, and a registration needs four secrets and
 * ids. The pool is per thread (no lock), every byte is used once and wiped
 * as it is taken, and a fork empties it, so parent and child never hand out
 * the same bytes. Holding unread DRBG output is no weaker than holding the
 * DRBG's own state, which sits in the same memory. */
#define RAND_POOL_BYTES 512

static _Thread_local struct {
	unsigned char b[RAND_POOL_BYTES];
	size_t left; /* unread bytes, at the end of b */
	bool keyed;  /* pool_key set on this thread: its exit wipes the pool */
} pool;
static pthread_once_t pool_once = PTHREAD_ONCE_INIT;
static pthread_key_t pool_key;
static bool pool_key_ok;

static void
pool_forget(void)
{
	OPENSSL_cleanse(pool.b, sizeof(pool.b));
	pool.left = 0;
}

static void
pool_at_exit(void *unused)
{
	(void)unused;
	pool_forget();
}

static void
pool_setup(void)
{
	/* In the child the pool of the forking thread is a copy of the
	 * parent's: it must never be read there. */
	(void)pthread_atfork(NULL, NULL, pool_forget);
	pool_key_ok = pthread_key_create(&pool_key, pool_at_exit) == 0;
}

/* Copies n (<= RAND_POOL_BYTES) fresh random bytes to out. */
static bool
pool_take(unsigned char *out, size_t n)
{
	unsigned char *from;

	pthread_once(&pool_once, pool_setup);
	if (pool.left < n) {
		if (RAND_bytes(pool.b, sizeof(pool.b)) != 1) {
			pool_forget();
			return false;
		}
		pool.left = sizeof(pool.b);
		if (!pool.keyed && pool_key_ok)
			pool.keyed = pthread_setspecific(pool_key, &pool) == 0;
	}
	from = pool.b + sizeof(pool.b) - pool.left;
	memcpy(out, from, n);
	OPENSSL_cleanse(from, n);
	pool.left -= n;
	return true;
}

/* Fills out[0..n) with characters of alphabet (size k, k <= 256) chosen
 * uniformly: bytes at or above the largest multiple of k are rejected. */
static enum am_err
rand_chars(const char *alphabet, unsigned k, char *out, size_t n, struct am_error *e)
{
	unsigned char buf[64];
	unsigned limit = 256 - (256 % k);
	size_t got = 0;

	while (got < n) {
		/* Enough for what is missing, plus a little for rejections. */
		size_t want = n - got + (n - got) / 8 + 2;

		if (want > sizeof(buf))
			want = sizeof(buf);
		if (!pool_take(buf, want))
			return am_fail(e, AM_E_INTERNAL, "random source failed");
		for (size_t i = 0; i < want && got < n; i++) {
			if (buf[i] < limit)
				out[got++] = alphabet[buf[i] % k];
		}
	}
	OPENSSL_cleanse(buf, sizeof(buf));
	return AM_OK;
}

static enum am_err
prefixed(const char *prefix, const char *alphabet, unsigned k, size_t n, char *out, size_t cap,
	 struct am_error *e)
{
	size_t plen = strlen(prefix);
	enum am_err rc;

	if (cap < plen + n + 1)
		return am_fail(e, AM_E_INTERNAL, "token buffer too small");
	memcpy(out, prefix, plen);
	if ((rc = rand_chars(alphabet, k, out + plen, n, e)) != AM_OK)
		return rc;
	out[plen + n] = '\0';
	return AM_OK;
}

enum am_err
am_rand_token(const char *prefix, char *out, size_t cap, struct am_error *e)
{
	return prefixed(prefix, base62, 62, AM_TOKEN_CHARS, out, cap, e);
}

enum am_err
am_rand_id(const char *prefix, char *out, size_t cap, struct am_error *e)
{
	return prefixed(prefix, hexdig, 16, AM_ID_CHARS, out, cap, e);
}

enum am_err
am_rand_otp(char out[AM_OTP_DIGITS + 1], struct am_error *e)
{
	enum am_err rc = rand_chars("0123456789", 10, out, AM_OTP_DIGITS, e);

	out[AM_OTP_DIGITS] = '\0';
	return rc;
}

enum am_err
am_rand_user_code(char out[AM_USER_CODE_CHARS + 1], struct am_error *e)
{
	enum am_err rc = rand_chars(AM_USER_CODE_ALPHABET, sizeof(AM_USER_CODE_ALPHABET) - 1, out,
				    AM_USER_CODE_CHARS, e);

	out[AM_USER_CODE_CHARS] = '\0';
	return rc;
}

void
am_hex(const uint8_t *in, size_t len, char *out)
{
	for (size_t i = 0; i < len; i++) {
		out[2 * i] = hexdig[in[i] >> 4];
		out[2 * i + 1] = hexdig[in[i] & 15];
	}
	out[2 * len] = '\0';
}

void
am_request_id(char out[17])
{
	static _Thread_local uint32_t prefix, counter;
	static _Thread_local bool seeded;

	if (!seeded) {
		if (RAND_bytes((unsigned char *)&prefix, sizeof(prefix)) != 1)
			prefix = (uint32_t)time(NULL) ^ (uint32_t)(uintptr_t)&prefix;
		seeded = true;
	}
	counter++;
	for (int i = 0; i < 8; i++) { /* "%08x%08x", by hand: once per request */
		out[i] = hexdig[(prefix >> (28 - 4 * i)) & 0xf];
		out[8 + i] = hexdig[(counter >> (28 - 4 * i)) & 0xf];
	}
	out[16] = '\0';
}
