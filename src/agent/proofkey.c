/* See proofkey.h. */
#include "agent/proofkey.h"

#include <errno.h>
#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "agent/credstore.h"
#include "core/fs.h"
#include "core/str.h"

struct proofkey {
	EVP_PKEY *pkey;
	char x[48], y[48]; /* the public point, base64url */
};

/* Unpadded base64url of in into out (cap bytes); false when it does not fit. */
static bool
b64url(const unsigned char *in, size_t len, char *out, size_t cap)
{
	size_t need = 4 * ((len + 2) / 3) + 1;
	unsigned char *tmp;
	size_t n;

	if (need > cap + 2 || (tmp = malloc(need)) == NULL)
		return false;
	n = (size_t)EVP_EncodeBlock(tmp, in, (int)len);
	while (n > 0 && tmp[n - 1] == '=')
		n--;
	if (n + 1 > cap) {
		free(tmp);
		return false;
	}
	for (size_t i = 0; i < n; i++)
		out[i] = tmp[i] == '+' ? '-' : tmp[i] == '/' ? '_' : (char)tmp[i];
	out[n] = '\0';
	OPENSSL_cleanse(tmp, need);
	free(tmp);
	return true;
}

static char *
b64url_new(const unsigned char *in, size_t len)
{
	size_t cap = 4 * ((len + 2) / 3) + 1;
	char *out = malloc(cap);

	if (out != NULL && !b64url(in, len, out, cap)) {
		free(out);
		out = NULL;
	}
	return out;
}

static bool
public_point(struct proofkey *k)
{
	unsigned char pt[65];
	size_t n = 0;

	if (EVP_PKEY_get_octet_string_param(k->pkey, OSSL_PKEY_PARAM_PUB_KEY, pt, sizeof(pt), &n) !=
		    1 ||
	    n != 65 || pt[0] != 0x04)
		return false;
	return b64url(pt + 1, 32, k->x, sizeof(k->x)) && b64url(pt + 33, 32, k->y, sizeof(k->y));
}

static void
key_path(const char *store_path, char *out, size_t cap)
{
	const char *slash = strrchr(store_path, '/');
	int dir = slash != NULL ? (int)(slash - store_path) : 0;

	if (slash != NULL)
		snprintf(out, cap, "%.*s/dpop-key.pem", dir, store_path);
	else
		snprintf(out, cap, "dpop-key.pem");
}

enum authmd_status
proofkey_load(const char *store_path, struct proofkey **out, struct authmd_error *err)
{
	char path[AUTHMD_URL_MAX + 32], tmp[AUTHMD_URL_MAX + 40];
	struct proofkey *k = calloc(1, sizeof(*k));
	struct stat sb;
	FILE *f;

	if (k == NULL)
		return cs_fail(err, AUTHMD_ERR_FAILED, NULL, "out of memory");
	key_path(store_path, path, sizeof(path));
	if ((f = fopen(path, "r")) != NULL) {
		if (fstat(fileno(f), &sb) != 0 || (sb.st_mode & 077) != 0) {
			fclose(f);
			proofkey_free(k);
			return cs_fail(err, AUTHMD_ERR_STORE, "chmod 600 it, or remove it.",
				       "%s can be read by others: not used", path);
		}
		k->pkey = PEM_read_PrivateKey(f, NULL, NULL, NULL);
		fclose(f);
	} else if (errno == ENOENT) {
		BIO *mem = BIO_new(BIO_s_mem());
		char *pem = NULL;
		long n;
		int rc = -1;

		k->pkey = EVP_EC_gen("P-256");
		if (k->pkey != NULL && mem != NULL &&
		    PEM_write_bio_PrivateKey(mem, k->pkey, NULL, NULL, 0, NULL, NULL) == 1 &&
		    (n = BIO_get_mem_data(mem, &pem)) > 0 && am_mkdir_parent(path) == 0) {
			snprintf(tmp, sizeof(tmp), "%s.tmp", path);
			rc = am_write_private(path, tmp, pem, (size_t)n);
		}
		BIO_free(mem); /* BIO_s_mem wipes nothing: the key is also in k */
		if (rc != 0) {
			proofkey_free(k);
			return cs_fail(err, AUTHMD_ERR_STORE, NULL, "cannot write the DPoP key %s",
				       path);
		}
	}
	if (k->pkey == NULL || EVP_PKEY_get_base_id(k->pkey) != EVP_PKEY_EC || !public_point(k)) {
		proofkey_free(k);
		return cs_fail(err, AUTHMD_ERR_STORE,
			       "Remove it; a new key is made at the next use.",
			       "%s is not a P-256 key", path);
	}
	*out = k;
	return AUTHMD_OK;
}

void
proofkey_free(struct proofkey *k)
{
	if (k == NULL)
		return;
	EVP_PKEY_free(k->pkey);
	free(k);
}

/* ES256 over input: the raw r || s of RFC 7518 3.4, base64url. */
static char *
es256(EVP_PKEY *pkey, const char *input)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned char der[80], raw[64];
	const unsigned char *p = der;
	size_t n = sizeof(der);
	ECDSA_SIG *sig = NULL;
	char *out = NULL;

	if (ctx != NULL && EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, pkey) == 1 &&
	    EVP_DigestSign(ctx, der, &n, (const unsigned char *)input, strlen(input)) == 1 &&
	    (sig = d2i_ECDSA_SIG(NULL, &p, (long)n)) != NULL &&
	    BN_bn2binpad(ECDSA_SIG_get0_r(sig), raw, 32) == 32 &&
	    BN_bn2binpad(ECDSA_SIG_get0_s(sig), raw + 32, 32) == 32)
		out = b64url_new(raw, sizeof(raw));
	ECDSA_SIG_free(sig);
	EVP_MD_CTX_free(ctx);
	return out;
}

enum authmd_status
proofkey_proof(const struct proofkey *k, const char *htm, const char *htu, const char *access_token,
	       char **out, struct authmd_error *err)
{
	unsigned char jti[16], ath[32];
	char jti_text[32], ath_text[48], *h = NULL, *c = NULL, *hb = NULL, *cb = NULL, *sig = NULL;
	json_t *header, *claims;
	struct am_buf b = {0};

	if (RAND_bytes(jti, sizeof(jti)) != 1 ||
	    !b64url(jti, sizeof(jti), jti_text, sizeof(jti_text)))
		return cs_fail(err, AUTHMD_ERR_FAILED, NULL, "random source failed");
	header = json_pack("{s:s, s:s, s:{s:s, s:s, s:s, s:s}}", "typ", "dpop+jwt", "alg", "ES256",
			   "jwk", "kty", "EC", "crv", "P-256", "x", k->x, "y", k->y);
	claims = json_pack("{s:s, s:s, s:s%, s:I}", "jti", jti_text, "htm", htm, "htu", htu,
			   strcspn(htu, "?#"), "iat", (json_int_t)time(NULL));
	if (claims != NULL && access_token != NULL) {
		EVP_Digest(access_token, strlen(access_token), ath, NULL, EVP_sha256(), NULL);
		if (b64url(ath, sizeof(ath), ath_text, sizeof(ath_text)))
			json_object_set_new(claims, "ath", json_string(ath_text));
	}
	if (header != NULL && claims != NULL && (h = json_dumps(header, JSON_COMPACT)) != NULL &&
	    (c = json_dumps(claims, JSON_COMPACT)) != NULL &&
	    (hb = b64url_new((unsigned char *)h, strlen(h))) != NULL &&
	    (cb = b64url_new((unsigned char *)c, strlen(c))) != NULL) {
		am_buf_printf(&b, "%s.%s", hb, cb);
		if ((sig = es256(k->pkey, b.data)) != NULL) {
			am_buf_printf(&b, ".%s", sig);
			*out = am_buf_take(&b);
		}
	}
	json_decref(header);
	json_decref(claims);
	free(h);
	free(c);
	free(hb);
	free(cb);
	am_buf_free(&b);
	if (sig == NULL)
		return cs_fail(err, AUTHMD_ERR_FAILED, NULL, "signing the DPoP proof failed");
	free(sig);
	return AUTHMD_OK;
}
