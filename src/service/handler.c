/* What every handler uses: its worker thread's store and a JSON body. */
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
