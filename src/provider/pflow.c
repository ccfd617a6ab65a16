/* The running provider's flow layer, without HTTP: the app itself, the
 * store handle of each worker thread and the logout tokens the delivery
 * worker posts. */
#include <jansson.h>
#include <stdlib.h>

#include "core/clock.h"
#include "core/protocol.h"
#include "core/str.h"
#include "provider/provider.h"

static void
close_store(void *p)
{
	pstore_close(p);
}

enum am_err
prov_app_new(const struct prov_config *c, struct prov_app **out, struct am_error *e)
{
	struct prov_app *a = calloc(1, sizeof(*a));
	struct pstore *ps;
	enum am_err rc;

	if (a == NULL)
		return am_fail(e, AM_E_INTERNAL, "out of memory");
	a->cfg = c;
	am_copy(a->store_url, sizeof(a->store_url), c->store_url);
	pthread_key_create(&a->store_key, close_store);
	pthread_mutex_init(&a->mu, NULL);
	pthread_cond_init(&a->cv, NULL);
	if ((rc = prov_store(a, &ps, e)) != AM_OK ||
	    (rc = pkeys_open(c, ps, &a->keys, e)) != AM_OK) {
		prov_app_free(a);
		return rc;
	}
	*out = a;
	return AM_OK;
}

void
prov_app_free(struct prov_app *a)
{
	if (a == NULL)
		return;
	pkeys_free(a->keys);
	pstore_close(pthread_getspecific(a->store_key));
	pthread_setspecific(a->store_key, NULL);
	pthread_key_delete(a->store_key);
	pthread_mutex_destroy(&a->mu);
	pthread_cond_destroy(&a->cv);
	free(a);
}

enum am_err
prov_store(struct prov_app *a, struct pstore **out, struct am_error *e)
{
	struct pstore *ps = pthread_getspecific(a->store_key);
	enum am_err rc;

	if (ps == NULL) {
		if ((rc = pstore_open(a->store_url, &ps, e)) != AM_OK)
			return rc;
		pthread_setspecific(a->store_key, ps);
	}
	*out = ps;
	return AM_OK;
}

enum am_err
prov_logout_token(struct prov_app *a, struct pstore *ps, const char *sub, const char *aud,
		  char **out, struct am_error *e)
{
	char jti[64];
	int64_t now = am_clock_now(NULL);
	json_t *claims;
	enum am_err rc;

	if ((rc = am_rand_token("", jti, sizeof(jti), e)) != AM_OK)
		return rc;
	/* Minted fresh at each delivery attempt (new jti, iat and exp), so a
	 * retry hours later is as fresh as the first try. */
	claims = json_pack("{s:s, s:s, s:s, s:s, s:I, s:I, s:{s:{}}}", "iss", a->cfg->issuer, "sub",
			   sub, "aud", aud, "jti", jti, "iat", (json_int_t)now, "exp",
			   (json_int_t)(now + 120), "events", AM_EVENT_REVOKED);
	rc = pkeys_sign(a->keys, ps, AM_TYP_LOGOUT, claims, out, e);
	json_decref(claims);
	return rc;
}

enum am_err
prov_set_token(struct prov_app *a, struct pstore *ps, const char *sub, const char *aud, char **out,
	       struct am_error *e)
{
	char jti[64];
	json_t *claims;
	enum am_err rc;

	if ((rc = am_rand_token("", jti, sizeof(jti), e)) != AM_OK)
		return rc;
	/* Minted at each attempt, as the logout token is: a retry is fresh. */
	claims = json_pack("{s:s, s:s, s:s, s:s, s:I, s:{s:{}}}", "iss", a->cfg->issuer, "sub", sub,
			   "aud", aud, "jti", jti, "iat", (json_int_t)am_clock_now(NULL), "events",
			   AM_EVENT_REVOKED);
	rc = pkeys_sign(a->keys, ps, AM_TYP_SET, claims, out, e);
	json_decref(claims);
	return rc;
}
