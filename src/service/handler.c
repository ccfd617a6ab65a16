/* What every handler uses: its worker thread's store, a JSON body, and the
 * RFC 6749 error envelope of the OAuth endpoints. */
#include "core/json.h"
#include "service/service.h"

enum am_err
app_store(struct app *a, struct store **st, struct am_error *e)
{
	return store_pool_get(a->pool, st, e);
}

enum am_err
svc_json_body(struct http_req *rq, json_t **out, struct am_error *e)
{
	if (!http_content_type_is(rq, "application/json"))
		return am_fail(e, AM_E_UNSUPPORTED_MEDIA_TYPE,
			       "send the body as Content-Type: application/json");
	return am_json_object(rq->body.data, rq->body.len, out, e);
}

enum am_err
svc_oauth_error(struct http_resp *rs, enum am_err rc, const struct am_error *e)
{
	if (rc == AM_E_RATE_LIMITED || rc == AM_E_UNAVAILABLE || rc == AM_E_INTERNAL)
		return rc;
	if (rc == AM_E_UNSUPPORTED_MEDIA_TYPE || rc == AM_E_PAYLOAD_TOO_LARGE)
		rc = AM_E_INVALID_REQUEST;
	http_reply_json(rs, am_err_status(rc) == 401 ? 401 : 400,
			json_pack("{s:s, s:s}", "error", am_err_name(rc), "error_description",
				  e->detail[0] != '\0' ? e->detail : am_err_message(rc)));
	http_add_header(rs, "Cache-Control", "no-store");
	http_add_header(rs, "Pragma", "no-cache");
	return AM_OK;
}
