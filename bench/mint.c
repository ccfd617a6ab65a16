/* authmd-bench-mint: the local agent provider of `make bench`.
 *
 * It makes one ES256 key with the project's own JOSE code and pre-mints
 * ID-JAGs with it, so the benchmark's registration rows measure the server
 * and not a provider. The public key is written as a JWKS file that nginx
 * serves as the provider's jwks_uri.
 *
 *   authmd-bench-mint keygen DIR
 *       DIR/key.json (the private key, mode 0600) and DIR/jwks.json
 *   authmd-bench-mint mint KEY ISS AUD COUNT FILES PREFIX same|distinct TAG
 *       COUNT tokens, one compact JWS per line, dealt round-robin into
 *       PREFIX.0 .. PREFIX.(FILES-1) (one file per wrk thread). Every token
 *       has its own jti and lives ten minutes. `same`: one subject and email
 *       for all; `distinct`: subject and email TAG-i, a new user each.
 *
 * A bench tool only: nothing here is part of the server or the provider.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <openssl/crypto.h>

#include "core/crypto.h"
#include "core/fs.h"
#include "core/str.h"
#include "jose/jose.h"

#define ID_JAG_TYP "oauth-id-jag+jwt"
#define TOKEN_TTL 600	      /* seconds; a bench row is far shorter */
#define MAX_FILES 64	      /* wrk threads */
#define MAX_COUNT 100000000LL /* tokens in one call */

static int
usage(void)
{
	fprintf(stderr, "usage: authmd-bench-mint keygen DIR\n"
			"       authmd-bench-mint mint KEY ISS AUD COUNT FILES PREFIX "
			"same|distinct TAG\n");
	return 2;
}

static char *
read_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	struct am_buf b = {0};
	char chunk[4096];
	size_t n;

	if (f == NULL)
		return NULL;
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		am_buf_add(&b, chunk, n);
	fclose(f);
	return am_buf_take(&b);
}

static int
keygen(const char *dir)
{
	struct jose_signer *s = NULL;
	struct am_error e = {0};
	char path[4096], tmp[4096];
	char *priv = NULL, *jwks = NULL;
	json_t *doc = NULL;
	int rc = 1;

	if (jose_signer_generate("ES256", &s, &e) != AM_OK) {
		fprintf(stderr, "authmd-bench-mint: %s\n", e.detail);
		return 1;
	}
	priv = jose_signer_export(s);
	doc = json_pack("{s:[o]}", "keys", jose_signer_public_jwk(s));
	jwks = doc != NULL ? json_dumps(doc, JSON_COMPACT) : NULL;
	if (priv == NULL || jwks == NULL) {
		fprintf(stderr, "authmd-bench-mint: cannot encode the key\n");
		goto out;
	}
	snprintf(path, sizeof(path), "%s/key.json", dir);
	snprintf(tmp, sizeof(tmp), "%s/.key.json.tmp", dir);
	if (am_write_private(path, tmp, priv, strlen(priv)) != 0) {
		fprintf(stderr, "authmd-bench-mint: %s: %s\n", path, strerror(errno));
		goto out;
	}
	snprintf(path, sizeof(path), "%s/jwks.json", dir);
	snprintf(tmp, sizeof(tmp), "%s/.jwks.json.tmp", dir);
	if (am_write_private(path, tmp, jwks, strlen(jwks)) != 0) {
		fprintf(stderr, "authmd-bench-mint: %s: %s\n", path, strerror(errno));
		goto out;
	}
	rc = 0;
out:
	if (priv != NULL)
		OPENSSL_cleanse(priv, strlen(priv));
	free(priv);
	free(jwks);
	json_decref(doc);
	jose_signer_free(s);
	return rc;
}

/* One ID-JAG claim set, as a trusted provider would send it. */
static json_t *
claims_for(const char *iss, const char *aud, const char *sub, const char *email, const char *jti,
	   time_t now)
{
	return json_pack("{s:s, s:s, s:s, s:s, s:s, s:I, s:I, s:s, s:b, s:s, s:s}", "iss", iss,
			 "sub", sub, "aud", aud, "client_id", iss, "jti", jti, "iat",
			 (json_int_t)now, "exp", (json_int_t)(now + TOKEN_TTL), "email", email,
			 "email_verified", 1, "agent_platform", "authmd-bench", "agent_context_id",
			 "bench");
}

static int
mint(char **argv)
{
	const char *keyfile = argv[0], *iss = argv[1], *aud = argv[2], *prefix = argv[5],
		   *mode = argv[6], *tag = argv[7];
	int64_t count, files;
	struct jose_signer *s = NULL;
	struct am_error e = {0};
	FILE *out[MAX_FILES] = {0};
	char *priv = NULL, *token;
	char path[4096], sub[256], email[300], jti[64];
	time_t now = time(NULL);
	bool distinct;
	int rc = 1;

	if (am_parse_i64(argv[3], 1, MAX_COUNT, &count) != 0 ||
	    am_parse_i64(argv[4], 1, MAX_FILES, &files) != 0 ||
	    (strcmp(mode, "same") != 0 && strcmp(mode, "distinct") != 0) || strlen(tag) > 64)
		return usage();
	distinct = strcmp(mode, "distinct") == 0;
	if ((priv = read_file(keyfile)) == NULL) {
		fprintf(stderr, "authmd-bench-mint: %s: %s\n", keyfile, strerror(errno));
		return 1;
	}
	if (jose_signer_load(priv, &s, &e) != AM_OK) {
		fprintf(stderr, "authmd-bench-mint: %s: %s\n", keyfile, e.detail);
		goto out;
	}
	for (int64_t i = 0; i < files; i++) {
		snprintf(path, sizeof(path), "%s.%lld", prefix, (long long)i);
		if ((out[i] = fopen(path, "w")) == NULL) {
			fprintf(stderr, "authmd-bench-mint: %s: %s\n", path, strerror(errno));
			goto out;
		}
	}
	snprintf(sub, sizeof(sub), "%s-user", tag);
	snprintf(email, sizeof(email), "%s@bench.example", sub);
	for (int64_t i = 0; i < count; i++) {
		json_t *c;

		if (distinct) {
			snprintf(sub, sizeof(sub), "%s-%lld", tag, (long long)i);
			snprintf(email, sizeof(email), "%s@bench.example", sub);
		}
		if (am_rand_id("jti_", jti, sizeof(jti), &e) != AM_OK ||
		    (c = claims_for(iss, aud, sub, email, jti, now)) == NULL) {
			fprintf(stderr, "authmd-bench-mint: cannot build claims\n");
			goto out;
		}
		if (jose_sign(s, ID_JAG_TYP, c, &token, &e) != AM_OK) {
			json_decref(c);
			fprintf(stderr, "authmd-bench-mint: %s\n", e.detail);
			goto out;
		}
		json_decref(c);
		fprintf(out[i % files], "%s\n", token);
		free(token);
	}
	rc = 0;
out:
	for (int64_t i = 0; i < MAX_FILES; i++)
		if (out[i] != NULL && fclose(out[i]) != 0 && rc == 0) {
			fprintf(stderr, "authmd-bench-mint: write failed: %s\n", strerror(errno));
			rc = 1;
		}
	if (priv != NULL)
		OPENSSL_cleanse(priv, strlen(priv));
	free(priv);
	jose_signer_free(s);
	return rc;
}

int
main(int argc, char **argv)
{
	if (argc == 3 && strcmp(argv[1], "keygen") == 0)
		return keygen(argv[2]);
	if (argc == 10 && strcmp(argv[1], "mint") == 0)
		return mint(argv + 2);
	return usage();
}
