/* Prints validly signed seed tokens for the jwt and logout_form corpora,
 * one "name token" per line (the test keys are fixed, so the seeds stay
 * valid), and last the test JWKS as "jwks DOCUMENT": build/fuzz/fuzz_seeds | while read n t; do
 * ...; done. */
#include <stdio.h>
#include <stdlib.h>

#include "common/fuzz.h"

static void
emit(const char *name, const struct jose_signer *s, const char *typ, const char *kid,
     const char *claims_json)
{
	struct am_error e = {0};
	json_t *claims = json_loads(claims_json, 0, NULL);
	char *t = NULL;

	if (claims == NULL || jose_sign_kid(s, typ, kid, claims, &t, &e) != AM_OK)
		fz_die("cannot sign a seed");
	printf("%s %s\n", name, t);
	free(t);
	json_decref(claims);
}

int
main(void)
{
	const char *idjag = "{\"iss\":\"http://127.0.0.1:1\",\"sub\":\"user-1\",\"aud\":\"http://"
			    "127.0.0.1:8000\",\"client_id\":\"http://127.0.0.1:1\",\"iat\":"
			    "1700000000,\"exp\":1700000300,\"jti\":\"j1\",\"email\":\"owner@"
			    "example.test\",\"email_verified\":true}";
	const char *logout = "{\"iss\":\"http://127.0.0.1:1\",\"sub\":\"user-1\",\"aud\":\"http://"
			     "127.0.0.1:8000\",\"iat\":1700000000,\"jti\":\"l1\",\"events\":{"
			     "\"http://schemas.openid.net/event/backchannel-logout\":{}}}";

	emit("idjag-es256", fz_signer(), "oauth-id-jag+jwt", "fuzz-ec", idjag);
	emit("idjag-rs256", fz_rsa_signer(), "oauth-id-jag+jwt", "fuzz-rsa", idjag);
	emit("idjag-es256-under-rsa-kid", fz_signer(), "oauth-id-jag+jwt", "fuzz-rsa", idjag);
	emit("idjag-rs256-under-ec-kid", fz_rsa_signer(), "oauth-id-jag+jwt", "fuzz-ec", idjag);
	emit("idjag-unknown-kid", fz_signer(), "oauth-id-jag+jwt", "nobody", idjag);
	emit("idjag-payload-array", fz_signer(), "oauth-id-jag+jwt", "fuzz-ec", "[1,2]");
	emit("logout-es256", fz_signer(), "logout+jwt", "fuzz-ec", logout);
	emit("logout-wrong-typ", fz_signer(), "JWT", "fuzz-ec", logout);
	printf("jwks %s\n", fz_jwks_json());
	return 0;
}
