/* The running provider's flow layer, without HTTP: the store handle of
 * each worker thread and the logout tokens the delivery worker posts. */
#include <jansson.h>

#include "core/clock.h"
#include "core/protocol.h"
#include "core/str.h"
#include "provider/provider.h"

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
