/* POST /agent/identity/claim: one endpoint for the claim ceremonies at the
 * service (issue 14), told apart by the body's `type` (v0.7 makes the body
 * a union on it): none is the v0.6 body {claim_token, email}, a user_code
 * attempt (ceremony.c); "login_hint" a read-back attempt (readback_api.c);
 * "identity_assertion" v0.7's ID-JAG claim (ceremony.c).
 * Any other type is 400 invalid_request. */
#include <string.h>

#include "core/json.h"
#include "service/service.h"

enum claim_type { CLAIM_V06, CLAIM_LOGIN_HINT, CLAIM_IDENTITY_ASSERTION, CLAIM_UNKNOWN };

static enum claim_type
claim_type(const char *type)
{
	if (type == NULL)
		return CLAIM_V06;
	if (strcmp(type, "login_hint") == 0)
		return CLAIM_LOGIN_HINT;
	if (strcmp(type, "identity_assertion") == 0)
		return CLAIM_IDENTITY_ASSERTION;
	return CLAIM_UNKNOWN;
}

/* Each branch parks the request on the group commit: the attempt is all
 * store work, answered once its batch is durable. */
enum am_err
h_identity_claim(void *app, struct http_req *rq, struct http_resp *rs, struct am_error *e)
{
	struct app *a = app;
	const char *type;
	json_t *req = NULL;
	enum am_err rc;

	if ((rc = svc_json_body(rq, &req, e)) != AM_OK)
		return rc;
	if ((rc = am_json_string(req, "type", false, 64, &type, e)) != AM_OK)
		goto out;
	switch (claim_type(type)) {
	case CLAIM_V06:
		rc = svc_ceremony_claim(a, rq, rs, req, e);
		break;
	case CLAIM_LOGIN_HINT:
		rc = svc_readback_claim(a, rq, rs, req, e);
		break;
	case CLAIM_IDENTITY_ASSERTION:
		rc = svc_idjag_claim(a, rq, rs, req, e);
		break;
	case CLAIM_UNKNOWN:
		rc = am_fail(e, AM_E_INVALID_REQUEST,
			     "unknown type; this endpoint takes type login_hint or "
			     "identity_assertion, or the v0.6 body without a type");
		break;
	}
out:
	json_decref(req);
	return rc;
}
