/* The provider's signing key. The private key lives in one file,
 * keys_dir/signing.jwk, mode 0600, written atomically; only its public half
 * is ever in the database or on the wire. Rotation replaces the file and
 * keeps the old public key published for [keys] overlap. */
#include <errno.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/fs.h"
#include "core/log.h"
#include "core/str.h"
#include "provider/provider.h"

struct pkeys {
	const struct prov_config *cfg;
	pthread_mutex_t mu;
	struct jose_signer *signer;
};

static void
key_path(const struct prov_config *c, const char *suffix, char *out, size_t cap)
{
	snprintf(out, cap, "%.200s/signing.jwk%s", c->keys_dir, suffix);
}

/* Writes the private key with mode 0600 via a temporary file and rename. */
static enum am_err
save_private(const struct prov_config *c, const struct jose_signer *s, struct am_error *e)
{
	char path[256], tmp[256];
	char *text = jose_signer_export(s);
	size_t len;

	if (text == NULL)
		return am_fail(e, AM_E_INTERNAL, "cannot export the key");
	len = strlen(text);
	key_path(c, "", path, sizeof(path));
	key_path(c, ".tmp", tmp, sizeof(tmp));
	if (am_mkdir_p(c->keys_dir) != 0 || chmod(c->keys_dir, 0700) != 0)
		goto fail;
	if (am_write_private(path, tmp, text, len) != 0)
		goto fail;
	OPENSSL_cleanse(text, len);
	free(text);
	return AM_OK;
fail:
	log_error("cannot write the signing key dir=%s: %s", c->keys_dir, strerror(errno));
	OPENSSL_cleanse(text, len);
	free(text);
	return am_fail(e, AM_E_UNAVAILABLE, "cannot write the signing key");
}

static enum am_err
load_private(const struct prov_config *c, struct jose_signer **out, struct am_error *e)
{
	char path[256], buf[8192];
	struct stat sb;
	ssize_t n;
	int fd;
	enum am_err rc;

	key_path(c, "", path, sizeof(path));
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return am_fail(e, AM_E_NOT_FOUND, "no signing key yet");
	if (fstat(fd, &sb) != 0 || (sb.st_mode & 077) != 0) {
		close(fd);
		log_error("signing key file is readable by others path=%s; refusing it", path);
		return am_fail(e, AM_E_UNAVAILABLE, "the signing key file must be mode 0600");
	}
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return am_fail(e, AM_E_UNAVAILABLE, "cannot read the signing key");
	buf[n] = '\0';
	rc = jose_signer_load(buf, out, e);
	OPENSSL_cleanse(buf, sizeof(buf));
	return rc;
}

static enum am_err
publish(struct pstore *ps, const struct jose_signer *s, int64_t now, struct am_error *e)
{
	json_t *pub = jose_signer_public_jwk(s);
	char *text = pub != NULL ? json_dumps(pub, JSON_COMPACT) : NULL;
	enum am_err rc;

	json_decref(pub);
	if (text == NULL)
		return am_fail(e, AM_E_INTERNAL, "cannot export the public key");
	rc = pstore_key_add(ps, jose_signer_kid(s), jose_signer_alg(s), text, now, e);
	free(text);
	return rc;
}

enum am_err
pkeys_rotate(const struct prov_config *c, struct pstore *ps, char kid[64], struct am_error *e)
{
	struct jose_signer *fresh = NULL;
	int64_t now = am_clock_now(NULL);
	enum am_err rc;

	if ((rc = jose_signer_generate(c->keys_alg, &fresh, e)) != AM_OK)
		return rc;
	/* The public half is published (and the others retired) before the
	 * private file is replaced: a verifier may see the new kid before any
	 * token carries it, never the other way round. */
	if ((rc = pstore_begin(ps, e)) != AM_OK)
		goto out;
	if ((rc = publish(ps, fresh, now, e)) != AM_OK ||
	    (rc = pstore_key_retire_others(ps, jose_signer_kid(fresh), now, now + c->keys_overlap,
					   e)) != AM_OK ||
	    (rc = save_private(c, fresh, e)) != AM_OK || (rc = pstore_commit(ps, e)) != AM_OK) {
		pstore_rollback(ps);
		goto out;
	}
	am_copy(kid, 64, jose_signer_kid(fresh));
	log_info("signing key rotated kid=%s alg=%s previous keys published for %llds",
		 jose_signer_kid(fresh), c->keys_alg, (long long)c->keys_overlap);
out:
	jose_signer_free(fresh);
	return rc;
}

/* Makes the loaded key's public half the current published key when it is
 * not: the key folder survived but the database is new (or was restored
 * from before a rotation). Without this the JWKS would be empty, or name
 * another key, and every token signed would fail to verify, silently. The
 * public half is derived from the private key, so nothing has to be trusted
 * but the key file itself. */
static enum am_err
ensure_published(const struct prov_config *c, struct pstore *ps, const struct jose_signer *s,
		 struct am_error *e)
{
	char kid[64];
	int64_t now = am_clock_now(NULL);
	enum am_err rc = pstore_key_current(ps, kid, e);

	if (rc == AM_OK && strcmp(kid, jose_signer_kid(s)) == 0)
		return AM_OK;
	if (rc != AM_OK && rc != AM_E_NOT_FOUND)
		return rc;
	log_warn("signing key kid=%s from %s is not the published current key (%s): publishing "
		 "its public half again",
		 jose_signer_kid(s), c->keys_dir, rc == AM_OK ? kid : "the database has none");
	if ((rc = pstore_begin(ps, e)) != AM_OK)
		return rc;
	if ((rc = publish(ps, s, now, e)) != AM_OK ||
	    (rc = pstore_key_retire_others(ps, jose_signer_kid(s), now, now + c->keys_overlap,
					   e)) != AM_OK ||
	    (rc = pstore_commit(ps, e)) != AM_OK) {
		pstore_rollback(ps);
		return rc;
	}
	return AM_OK;
}

enum am_err
pkeys_open(const struct prov_config *c, struct pstore *ps, struct pkeys **out, struct am_error *e)
{
	struct pkeys *k = calloc(1, sizeof(*k));
	char kid[64];
	enum am_err rc;

	if (k == NULL)
		return am_fail(e, AM_E_INTERNAL, "out of memory");
	k->cfg = c;
	pthread_mutex_init(&k->mu, NULL);
	rc = load_private(c, &k->signer, e);
	if (rc == AM_E_NOT_FOUND) {
		log_info("no signing key yet: generating one alg=%s", c->keys_alg);
		if ((rc = pkeys_rotate(c, ps, kid, e)) == AM_OK)
			rc = load_private(c, &k->signer, e);
	}
	if (rc == AM_OK)
		rc = ensure_published(c, ps, k->signer, e);
	if (rc != AM_OK) {
		pkeys_free(k);
		return rc;
	}
	log_info("signing key kid=%s alg=%s", jose_signer_kid(k->signer),
		 jose_signer_alg(k->signer));
	*out = k;
	return AM_OK;
}

void
pkeys_free(struct pkeys *k)
{
	if (k == NULL)
		return;
	jose_signer_free(k->signer);
	pthread_mutex_destroy(&k->mu);
	free(k);
}

enum am_err
pkeys_sign(struct pkeys *k, struct pstore *ps, const char *typ, const json_t *claims, char **out,
	   struct am_error *e)
{
	char kid[64];
	enum am_err rc;

	/* `authmd-provider keys rotate` may have run in another process: sign
	 * with whatever key is current in the store. */
	if ((rc = pstore_key_current(ps, kid, e)) != AM_OK)
		return rc;
	pthread_mutex_lock(&k->mu);
	if (strcmp(kid, jose_signer_kid(k->signer)) != 0) {
		struct jose_signer *fresh = NULL;

		if (load_private(k->cfg, &fresh, e) == AM_OK) {
			jose_signer_free(k->signer);
			k->signer = fresh;
			log_info("signing key reloaded kid=%s", jose_signer_kid(fresh));
		}
	}
	rc = jose_sign(k->signer, typ, claims, out, e);
	pthread_mutex_unlock(&k->mu);
	return rc;
}
