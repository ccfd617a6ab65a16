/* jose/skey.c: the service's signing keys (protocol v0.6, issue 13). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "jose/jose.h"
#include "jose/skey.h"

#define TYP "oauth-id-jag+jwt"

struct fixture {
	char dir[64];
	char path[128];
};

static int
setup(void **state)
{
	struct fixture *fx = calloc(1, sizeof(*fx));

	snprintf(fx->dir, sizeof(fx->dir), "/tmp/authmd-skey-XXXXXX");
	assert_non_null(mkdtemp(fx->dir));
	snprintf(fx->path, sizeof(fx->path), "%s/keys/service-keys.json", fx->dir);
	*state = fx;
	return 0;
}

static int
teardown(void **state)
{
	struct fixture *fx = *state;
	char cmd[160];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", fx->dir);
	assert_int_equal(system(cmd), 0);
	free(fx);
	return 0;
}

static void
keydir(const struct fixture *fx, char *out, size_t cap)
{
	snprintf(out, cap, "%s/keys", fx->dir);
}

static json_t *
jwks_of(struct skey *k, int64_t now)
{
	struct am_error e = {0};
	char *text = NULL;
	json_t *doc;

	assert_int_equal(skey_jwks(k, now, &text, &e), AM_OK);
	doc = json_loads(text, 0, NULL);
	free(text);
	assert_non_null(doc);
	return doc;
}

static char *
sign(struct skey *k, int64_t now)
{
	json_t *claims = json_pack("{s:s, s:I}", "sub", "reg_1", "iat", (json_int_t)now);
	struct am_error e = {0};
	char *jwt = NULL;

	assert_int_equal(skey_sign(k, TYP, claims, now, &jwt, &e), AM_OK);
	json_decref(claims);
	return jwt;
}

static enum am_err
verify(struct skey *k, const char *jwt, int64_t now)
{
	struct jose_token t;
	struct am_error e = {0};
	enum am_err rc = skey_verify(k, jwt, TYP, now, &t, &e);

	if (rc == AM_OK)
		jose_token_free(&t);
	return rc;
}

/* base64url without padding, for the independent thumbprint */
static void
b64url(const unsigned char *in, size_t n, char *out)
{
	static const char al[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	size_t o = 0, i;

	for (i = 0; i + 2 < n; i += 3) {
		unsigned v = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8 | in[i + 2];

		out[o++] = al[v >> 18 & 63], out[o++] = al[v >> 12 & 63];
		out[o++] = al[v >> 6 & 63], out[o++] = al[v & 63];
	}
	if (n - i == 1) {
		unsigned v = (unsigned)in[i] << 16;

		out[o++] = al[v >> 18 & 63], out[o++] = al[v >> 12 & 63];
	} else if (n - i == 2) {
		unsigned v = (unsigned)in[i] << 16 | (unsigned)in[i + 1] << 8;

		out[o++] = al[v >> 18 & 63], out[o++] = al[v >> 12 & 63];
		out[o++] = al[v >> 6 & 63];
	}
	out[o] = '\0';
}

static void
the_first_open_makes_a_private_es256_key_named_by_its_thumbprint(void **state)
{
	struct fixture *fx = *state;
	struct am_error e = {0};
	struct skey *k = NULL;
	struct stat sb;
	char dir[96], canon[512], want[64];
	unsigned char hash[SHA256_DIGEST_LENGTH];
	json_t *doc, *key;

	keydir(fx, dir, sizeof(dir));
	assert_int_equal(skey_open(dir, 3600, 1000, &k, &e), AM_OK);
	assert_int_equal(stat(fx->path, &sb), 0);
	assert_int_equal(sb.st_mode & 0777, 0600);
	doc = jwks_of(k, 1000);
	assert_int_equal(json_array_size(json_object_get(doc, "keys")), 1);
	key = json_array_get(json_object_get(doc, "keys"), 0);
	assert_string_equal(json_string_value(json_object_get(key, "alg")), "ES256");
	assert_null(json_object_get(key, "d"));
	/* RFC 7638 3.2, written out by hand here */
	snprintf(canon, sizeof(canon), "{\"crv\":\"%s\",\"kty\":\"%s\",\"x\":\"%s\",\"y\":\"%s\"}",
		 json_string_value(json_object_get(key, "crv")),
		 json_string_value(json_object_get(key, "kty")),
		 json_string_value(json_object_get(key, "x")),
		 json_string_value(json_object_get(key, "y")));
	SHA256((const unsigned char *)canon, strlen(canon), hash);
	b64url(hash, sizeof(hash), want);
	assert_string_equal(json_string_value(json_object_get(key, "kid")), want);
	json_decref(doc);
	skey_free(k);
}

static void
a_key_file_readable_by_others_is_refused(void **state)
{
	struct fixture *fx = *state;
	struct am_error e = {0};
	struct skey *k = NULL;
	char dir[96];

	keydir(fx, dir, sizeof(dir));
	assert_int_equal(skey_open(dir, 3600, 1000, &k, &e), AM_OK);
	skey_free(k);
	k = NULL;
	assert_int_equal(chmod(fx->path, 0644), 0);
	assert_int_equal(skey_open(dir, 3600, 1000, &k, &e), AM_E_UNAVAILABLE);
	assert_null(k);
}

static void
rotation_keeps_the_old_key_for_the_overlap_then_drops_it(void **state)
{
	struct fixture *fx = *state;
	struct am_error e = {0};
	struct skey *k = NULL;
	char dir[96], kid[64];
	char *old, *fresh;
	json_t *doc;

	keydir(fx, dir, sizeof(dir));
	assert_int_equal(skey_open(dir, 100, 1000, &k, &e), AM_OK);
	old = sign(k, 1000);
	assert_int_equal(verify(k, old, 1000), AM_OK);
	/* another process (authmd-server rotate-key) rotates at 2000 */
	assert_int_equal(skey_rotate(dir, 100, 2000, kid, &e), AM_OK);
	fresh = sign(k, 2000);
	assert_non_null(strstr(fresh, "."));
	doc = jwks_of(k, 2000);
	assert_int_equal(json_array_size(json_object_get(doc, "keys")), 2);
	json_decref(doc);
	assert_int_equal(verify(k, old, 2050), AM_OK);			/* within the overlap */
	assert_int_equal(verify(k, fresh, 2050), AM_OK);		/* the new kid signs */
	assert_int_equal(verify(k, old, 2100), AM_E_INVALID_SIGNATURE); /* overlap over */
	doc = jwks_of(k, 2100);
	assert_int_equal(json_array_size(json_object_get(doc, "keys")), 1);
	assert_string_equal(json_string_value(json_object_get(
				    json_array_get(json_object_get(doc, "keys"), 0), "kid")),
			    kid);
	json_decref(doc);
	free(old);
	free(fresh);
	skey_free(k);
}

static void
a_tampered_or_foreign_token_does_not_verify(void **state)
{
	struct fixture *fx = *state;
	struct am_error e = {0};
	struct skey *k = NULL;
	struct jose_signer *other = NULL;
	json_t *claims = json_pack("{s:s}", "sub", "reg_1");
	char dir[96], *jwt, *foreign = NULL, *dot;

	keydir(fx, dir, sizeof(dir));
	assert_int_equal(skey_open(dir, 100, 1000, &k, &e), AM_OK);
	jwt = sign(k, 1000);
	dot = strrchr(jwt, '.');
	dot[1] = dot[1] == 'A' ? 'B' : 'A';
	assert_int_equal(verify(k, jwt, 1000), AM_E_INVALID_SIGNATURE);
	/* a key that is not ours, even under our kid */
	assert_int_equal(jose_signer_generate("ES256", &other, &e), AM_OK);
	assert_int_equal(jose_signer_thumbprint_kid(other, &e), AM_OK);
	assert_int_equal(jose_sign(other, TYP, claims, &foreign, &e), AM_OK);
	assert_int_equal(verify(k, foreign, 1000), AM_E_INVALID_SIGNATURE);
	free(foreign);
	foreign = NULL;
	{
		json_t *doc = jwks_of(k, 1000);
		const char *kid = json_string_value(
			json_object_get(json_array_get(json_object_get(doc, "keys"), 0), "kid"));

		assert_int_equal(jose_sign_kid(other, TYP, kid, claims, &foreign, &e), AM_OK);
		json_decref(doc);
	}
	assert_int_equal(verify(k, foreign, 1000), AM_E_INVALID_SIGNATURE);
	free(foreign);
	free(jwt);
	json_decref(claims);
	jose_signer_free(other);
	skey_free(k);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(
			the_first_open_makes_a_private_es256_key_named_by_its_thumbprint, setup,
			teardown),
		cmocka_unit_test_setup_teardown(a_key_file_readable_by_others_is_refused, setup,
						teardown),
		cmocka_unit_test_setup_teardown(
			rotation_keeps_the_old_key_for_the_overlap_then_drops_it, setup, teardown),
		cmocka_unit_test_setup_teardown(a_tampered_or_foreign_token_does_not_verify, setup,
						teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
