/* Compact JWS tokens (ID-JAGs, logout tokens) through jose_token_parse and
 * jose_token_verify against the fixed test JWKS (an EC key "fuzz-ec" and an
 * RSA key "fuzz-rsa"). Oracles: a parsed token has an allowed alg, a kid
 * and an object payload; a verified one names one of the two keys with an
 * alg of that key's type (no alg confusion, no "none"). The claim checks
 * behind the signature are fuzzed by the idjag target, which signs. */
#include <stdlib.h>
#include <string.h>

#include "common/fuzz.h"

static struct jose_keyset *keys;

static void
free_keys(void)
{
	jose_keyset_release(keys);
}

static void
check(const char *compact, const char *typ)
{
	struct jose_token t = {0};
	struct am_error e = {0};

	if (jose_token_parse(compact, typ, &t, &e) != AM_OK) {
		if (e.detail[0] == '\0')
			fz_die("a refused token carries no error");
		return;
	}
	if (t.alg == NULL || t.kid == NULL || t.kid[0] == '\0' || !json_is_object(t.claims))
		fz_die("a parsed token lacks alg, kid or an object payload");
	if (strcmp(t.alg, "none") == 0 || t.alg[0] == 'H')
		fz_die("a parsed token has a symmetric or no alg");
	if (jose_token_verify(&t, keys, &e) == AM_OK) {
		bool ec = strcmp(t.kid, "fuzz-ec") == 0 && strcmp(t.alg, "ES256") == 0;
		bool rsa = strcmp(t.kid, "fuzz-rsa") == 0 && (t.alg[0] == 'R' || t.alg[0] == 'P');

		if (!ec && !rsa)
			fz_die("a token verified with a key of another type or kid");
	}
	jose_token_free(&t);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct am_error e = {0};
	char *s;

	if (keys == NULL) {
		const char *doc = fz_jwks_json();

		if (jose_keyset_parse(doc, strlen(doc), &keys, &e) != AM_OK)
			fz_die("the test JWKS does not parse");
		atexit(free_keys);
	}
	if ((s = malloc(size + 1)) == NULL)
		abort();
	memcpy(s, data, size);
	s[size] = '\0';
	check(s, "oauth-id-jag+jwt");
	check(s, "logout+jwt");
	free(s);
	return 0;
}
