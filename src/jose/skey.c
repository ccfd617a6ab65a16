/* The service's signing keys (skey.h): one private file, atomic writes, a
 * rotation that keeps the previous key published for an overlap. */
#include "jose/skey.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/fs.h"
#include "core/log.h"
#include "core/str.h"

#define SKEY_ALG "ES256"
#define SKEY_FILE_MAX (64 * 1024) /* the key file, read whole */

struct skey {
	char dir[200];
	int64_t overlap;
	pthread_mutex_t mu;
	/* what was loaded, and from which version of the file */
	dev_t dev;
	ino_t ino;
	struct timespec mtime;
	off_t size;
	json_t *doc;
	struct jose_signer *cur;
	char *jwks;		 /* the published set, as served */
	struct jose_keyset *pub; /* the same keys, for verification */
	int64_t pub_until;	 /* the set must be rebuilt at this time (0: never) */
};

static void
paths(const char *dir, char path[256], char tmp[256])
{
	snprintf(path, 256, "%.200s/service-keys.json", dir);
	snprintf(tmp, 256, "%.200s/service-keys.json.tmp", dir);
}

static int64_t
entry_int(const json_t *entry, const char *name)
{
	return (int64_t)json_integer_value(json_object_get(entry, name));
}

/* Reads the key file; AM_E_NOT_FOUND when there is none. */
static enum am_err
read_doc(const char *dir, json_t **out, struct stat *sb, struct am_error *e)
{
	char path[256], tmp[256];
	char *buf = NULL;
	ssize_t n;
	int fd;

	paths(dir, path, tmp);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
		if (errno == ENOENT)
			return am_fail(e, AM_E_NOT_FOUND, "no service key yet");
		log_error("cannot open the service key file path=%s: %s", path, strerror(errno));
		return am_fail(e, AM_E_UNAVAILABLE, "cannot read the service key file");
	}
	if (fstat(fd, sb) != 0 || (sb->st_mode & 077) != 0 || sb->st_size <= 0 ||
	    sb->st_size > SKEY_FILE_MAX || (buf = malloc((size_t)sb->st_size + 1)) == NULL) {
		close(fd);
		log_error("service key file refused path=%s (mode must be 0600, size at most %d)",
			  path, SKEY_FILE_MAX);
		return am_fail(e, AM_E_UNAVAILABLE, "the service key file must be mode 0600");
	}
	n = read(fd, buf, (size_t)sb->st_size);
	close(fd);
	if (n == sb->st_size) {
		buf[n] = '\0';
		*out = json_loads(buf, 0, NULL);
	}
	OPENSSL_cleanse(buf, (size_t)sb->st_size + 1);
	free(buf);
	if (n != sb->st_size || *out == NULL || !json_is_array(json_object_get(*out, "keys"))) {
		json_decref(n == sb->st_size ? *out : NULL);
		*out = NULL;
		return am_fail(e, AM_E_UNAVAILABLE, "the service key file does not parse");
	}
	return AM_OK;
}

static enum am_err
write_doc(const char *dir, const json_t *doc, struct am_error *e)
{
	char path[256], tmp[256];
	char *text = json_dumps(doc, JSON_COMPACT);
	int rc = -1;

	paths(dir, path, tmp);
	if (text != NULL && am_mkdir_p(dir) == 0 && chmod(dir, 0700) == 0)
		rc = am_write_private(path, tmp, text, strlen(text));
	if (rc != 0)
		log_error("cannot write the service key file dir=%s: %s", dir, strerror(errno));
	if (text != NULL) {
		OPENSSL_cleanse(text, strlen(text));
		free(text);
	}
	return rc == 0 ? AM_OK : am_fail(e, AM_E_UNAVAILABLE, "cannot write the service key file");
}

static enum am_err
entry_signer(const json_t *entry, struct jose_signer **out, struct am_error *e)
{
	char *text = json_dumps(json_object_get(entry, "jwk"), JSON_COMPACT);
	enum am_err rc;

	if (text == NULL)
		return am_fail(e, AM_E_UNAVAILABLE, "a service key entry has no jwk");
	rc = jose_signer_load(text, out, e);
	OPENSSL_cleanse(text, strlen(text));
	free(text);
	return rc;
}

/* True while a retired entry is still published. */
static bool
published(const json_t *entry, int64_t overlap, int64_t now)
{
	int64_t retired = entry_int(entry, "retired_at");

	return retired == 0 || retired + overlap > now;
}

enum am_err
skey_rotate(const char *dir, int64_t overlap, int64_t now, char kid[64], struct am_error *e)
{
	struct jose_signer *fresh = NULL;
	json_t *doc = NULL, *keys, *kept = json_array(), *entry, *jwk = NULL;
	struct stat sb;
	char *priv = NULL;
	size_t i;
	enum am_err rc = read_doc(dir, &doc, &sb, e);

	if (rc == AM_E_NOT_FOUND) {
		doc = json_pack("{s:[]}", "keys");
		rc = AM_OK;
	}
	if (rc != AM_OK)
		goto out;
	if ((rc = jose_signer_generate(SKEY_ALG, &fresh, e)) != AM_OK ||
	    (rc = jose_signer_thumbprint_kid(fresh, e)) != AM_OK)
		goto out;
	if ((priv = jose_signer_export(fresh)) == NULL ||
	    (jwk = json_loads(priv, 0, NULL)) == NULL) {
		rc = am_fail(e, AM_E_INTERNAL, "cannot export the new key");
		goto out;
	}
	keys = json_object_get(doc, "keys");
	json_array_foreach(keys, i, entry)
	{
		if (entry_int(entry, "retired_at") == 0)
			json_object_set_new(entry, "retired_at", json_integer(now));
		if (published(entry, overlap, now))
			json_array_append(kept, entry);
	}
	json_array_append_new(kept, json_pack("{s:O, s:I, s:I}", "jwk", jwk, "created_at",
					      (json_int_t)now, "retired_at", (json_int_t)0));
	json_object_set(doc, "keys", kept);
	if ((rc = write_doc(dir, doc, e)) != AM_OK)
		goto out;
	am_copy(kid, 64, jose_signer_kid(fresh));
	log_info("service signing key added kid=%s alg=%s; previous key published for %llds",
		 jose_signer_kid(fresh), SKEY_ALG, (long long)overlap);
out:
	if (priv != NULL) {
		OPENSSL_cleanse(priv, strlen(priv));
		free(priv);
	}
	json_decref(jwk);
	json_decref(kept);
	json_decref(doc);
	jose_signer_free(fresh);
	return rc;
}

/* Rebuilds the published set for now. Called with mu held. */
static enum am_err
build_public(struct skey *k, int64_t now, struct am_error *e)
{
	json_t *set = json_array(), *entry;
	struct jose_keyset *ks = NULL;
	char *text = NULL;
	int64_t until = 0;
	size_t i;
	enum am_err rc = AM_OK;

	json_array_foreach(json_object_get(k->doc, "keys"), i, entry)
	{
		struct jose_signer *s = NULL;
		int64_t retired = entry_int(entry, "retired_at");

		if (!published(entry, k->overlap, now))
			continue;
		if (retired != 0 && (until == 0 || retired + k->overlap < until))
			until = retired + k->overlap;
		if ((rc = entry_signer(entry, &s, e)) != AM_OK)
			goto out;
		json_array_append_new(set, jose_signer_public_jwk(s));
		jose_signer_free(s);
	}
	{
		json_t *doc = json_pack("{s:O}", "keys", set);

		text = json_dumps(doc, JSON_COMPACT);
		json_decref(doc);
	}
	if (text == NULL) {
		rc = am_fail(e, AM_E_INTERNAL, "out of memory");
		goto out;
	}
	if ((rc = jose_keyset_parse(text, strlen(text), &ks, e)) != AM_OK)
		goto out;
	free(k->jwks);
	jose_keyset_release(k->pub);
	k->jwks = text;
	k->pub = ks;
	k->pub_until = until;
	text = NULL;
out:
	free(text);
	json_decref(set);
	return rc;
}

/* (Re)loads the file when it changed since the last load. mu held. */
static enum am_err
refresh(struct skey *k, int64_t now, struct am_error *e)
{
	char path[256], tmp[256];
	struct stat sb;
	json_t *doc = NULL, *entry, *cur = NULL;
	struct jose_signer *s = NULL;
	size_t i;
	enum am_err rc;

	paths(k->dir, path, tmp);
	if (k->doc != NULL && stat(path, &sb) == 0 && sb.st_dev == k->dev && sb.st_ino == k->ino &&
	    sb.st_size == k->size && sb.st_mtim.tv_sec == k->mtime.tv_sec &&
	    sb.st_mtim.tv_nsec == k->mtime.tv_nsec) {
		if (k->pub_until != 0 && now >= k->pub_until)
			return build_public(k, now, e);
		return AM_OK;
	}
	if ((rc = read_doc(k->dir, &doc, &sb, e)) != AM_OK)
		return rc;
	json_array_foreach(json_object_get(doc, "keys"), i, entry)
	{
		if (entry_int(entry, "retired_at") == 0)
			cur = entry;
	}
	if (cur == NULL) {
		json_decref(doc);
		return am_fail(e, AM_E_UNAVAILABLE, "the service key file has no current key");
	}
	if ((rc = entry_signer(cur, &s, e)) != AM_OK) {
		json_decref(doc);
		return rc;
	}
	json_decref(k->doc);
	jose_signer_free(k->cur);
	k->doc = doc;
	k->cur = s;
	k->dev = sb.st_dev;
	k->ino = sb.st_ino;
	k->size = sb.st_size;
	k->mtime = sb.st_mtim;
	log_info("service signing key kid=%s alg=%s", jose_signer_kid(s), jose_signer_alg(s));
	return build_public(k, now, e);
}

enum am_err
skey_open(const char *dir, int64_t overlap, int64_t now, struct skey **out, struct am_error *e)
{
	struct skey *k = calloc(1, sizeof(*k));
	json_t *doc = NULL;
	struct stat sb;
	char kid[64];
	enum am_err rc;

	if (k == NULL)
		return am_fail(e, AM_E_INTERNAL, "out of memory");
	am_copy(k->dir, sizeof(k->dir), dir);
	k->overlap = overlap;
	pthread_mutex_init(&k->mu, NULL);
	rc = read_doc(dir, &doc, &sb, e);
	json_decref(doc);
	if (rc == AM_E_NOT_FOUND) {
		log_info("no service signing key yet: generating one alg=%s dir=%s", SKEY_ALG, dir);
		rc = skey_rotate(dir, overlap, now, kid, e);
	}
	if (rc == AM_OK)
		rc = refresh(k, now, e);
	if (rc != AM_OK) {
		skey_free(k);
		return rc;
	}
	*out = k;
	return AM_OK;
}

void
skey_free(struct skey *k)
{
	if (k == NULL)
		return;
	json_decref(k->doc);
	jose_signer_free(k->cur);
	free(k->jwks);
	jose_keyset_release(k->pub);
	pthread_mutex_destroy(&k->mu);
	free(k);
}

enum am_err
skey_sign(struct skey *k, const char *typ, const json_t *claims, int64_t now, char **out,
	  struct am_error *e)
{
	enum am_err rc;

	pthread_mutex_lock(&k->mu);
	if ((rc = refresh(k, now, e)) == AM_OK)
		rc = jose_sign(k->cur, typ, claims, out, e);
	pthread_mutex_unlock(&k->mu);
	return rc;
}

enum am_err
skey_jwks(struct skey *k, int64_t now, char **out, struct am_error *e)
{
	enum am_err rc;

	pthread_mutex_lock(&k->mu);
	if ((rc = refresh(k, now, e)) == AM_OK) {
		if ((*out = strdup(k->jwks)) == NULL)
			rc = am_fail(e, AM_E_INTERNAL, "out of memory");
	}
	pthread_mutex_unlock(&k->mu);
	return rc;
}

enum am_err
skey_verify(struct skey *k, const char *compact, const char *want_typ, int64_t now,
	    struct jose_token *t, struct am_error *e)
{
	struct jose_keyset *ks = NULL;
	enum am_err rc;

	memset(t, 0, sizeof(*t));
	pthread_mutex_lock(&k->mu);
	if ((rc = refresh(k, now, e)) == AM_OK)
		ks = jose_keyset_retain(k->pub);
	pthread_mutex_unlock(&k->mu);
	if (rc != AM_OK)
		return rc;
	if ((rc = jose_token_parse(compact, want_typ, t, e)) == AM_OK) {
		if (!jose_keyset_has(ks, t->kid))
			rc = am_fail(e, AM_E_INVALID_SIGNATURE,
				     "the assertion's kid is not a key of this service");
		else
			rc = jose_token_verify(t, ks, e);
	}
	jose_keyset_release(ks);
	if (rc != AM_OK)
		jose_token_free(t);
	return rc;
}
