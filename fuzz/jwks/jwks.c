/* JWKS documents (a provider's jwks_uri answer) through jose_keyset_parse,
 * then a token signed by the test key under kid "k1" verified against
 * whatever keys the document yielded: a fuzzed key must never verify it
 * unless it is the test key itself, and must never crash the key checks. */
#include <stdlib.h>
#include <string.h>

#include "common/fuzz.h"

static char *token; /* ES256 by the test key, header kid "k1" */
static char x[128]; /* the test key's public x coordinate */

static void
free_token(void)
{
	free(token);
}

static void
init(void)
{
	struct am_error e = {0};
	json_t *claims = json_pack("{s:s, s:i}", "iss", "https://fuzz.test", "iat", 1);

	json_t *jwk = jose_signer_public_jwk(fz_signer());

	if (jose_sign_kid(fz_signer(), "logout+jwt", "k1", claims, &token, &e) != AM_OK ||
	    !am_copy(x, sizeof(x), json_string_value(json_object_get(jwk, "x"))))
		fz_die("cannot sign the probe token");
	json_decref(claims);
	json_decref(jwk);
	atexit(free_token);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct jose_keyset *ks = NULL;
	struct jose_token t = {0};
	struct am_error e = {0};
	size_t n;

	if (token == NULL)
		init();
	if (jose_keyset_parse((const char *)data, size, &ks, &e) != AM_OK) {
		if (e.code == AM_OK || e.detail[0] == '\0')
			fz_die("a refused JWKS carries no error");
		return 0;
	}
	n = jose_keyset_count(ks);
	if (n == 0 || n > JOSE_MAX_KEYS)
		fz_die("an accepted JWKS has no key or more than JOSE_MAX_KEYS");
	if (jose_token_parse(token, "logout+jwt", &t, &e) != AM_OK)
		fz_die("the probe token does not parse");
	/* Only the test key's own public half can verify its signature. */
	if (jose_token_verify(&t, ks, &e) == AM_OK && memmem(data, size, x, strlen(x)) == NULL)
		fz_die("a key that is not the test key verified its signature");
	jose_token_free(&t);
	(void)jose_keyset_has(ks, "k1");
	jose_keyset_release(ks);
	return 0;
}
