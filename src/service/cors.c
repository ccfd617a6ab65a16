/* CORS for the agent-facing endpoints, so an agent running in a browser can
 * discover and register. Two classes of route (app.c marks them):
 *   - CORS_PUBLIC, the discovery documents and /auth.md: public and
 *     credential-free, so Access-Control-Allow-Origin is always "*";
 *   - CORS_AGENT, the /agent endpoints: only for the origins of [server] cors_origins
 *     (none by default; "*" for any), the Origin echoed with Vary: Origin.
 * Every other route (the claim page, the protected API, operator
 * endpoints) gets no CORS header, and neither does any HTML answer of a
 * marked route (the claim code page answers a form POST to a marked
 * path): those pages are never readable cross-origin. No answer carries
 * Access-Control-Allow-Credentials: nothing here is authorised by cookies,
 * so a browser never needs to send them.
 *
 * The marked handlers are reached through h_cors, which finds the real
 * handler in a->cors and decorates its answer, errors included (http/
 * keeps a handler's headers when it renders an error); OPTIONS on a marked
 * path goes to h_preflight. */
#include <string.h>

#include "core/config.h"
#include "core/str.h"
#include "service/service.h"

#define CORS_ALLOW_HEADERS "Authorization, Content-Type"
#define CORS_EXPOSE_HEADERS "WWW-Authenticate, Retry-After, X-Request-Id"
#define CORS_MAX_AGE "600"

static bool
method_matches(const char *route_method, const char *method)
{
	return strcmp(route_method, method) == 0 ||
	       (strcmp(method, "HEAD") == 0 && strcmp(route_method, "GET") == 0);
}

/* The class of path (CORS_NONE when it is not marked). */
static enum cors_class
class_of(const struct app *a, const char *path)
{
	for (size_t i = 0; i < a->ncors; i++) {
		if (strcmp(a->cors[i].path, path) == 0)
			return a->cors[i].cls;
	}
	return CORS_NONE;
}

/* The Access-Control-Allow-Origin value for a request from origin to a
 * route of class cls, or NULL when that origin may not read the answer. */
static const char *
allowed_origin(const struct app *a, enum cors_class cls, const char *origin)
{
	const char *list = a->cfg->cors_origins;

	if (cls == CORS_PUBLIC)
		return "*";
	if (cls != CORS_AGENT || origin == NULL || origin[0] == '\0')
		return NULL;
	if (strcmp(list, "*") == 0)
		return "*";
	/* Configured origins are canonical (config.c); browsers send the
	 * serialised origin, so a byte comparison is the origin comparison. */
	return am_word_in(list, origin) ? origin : NULL;
}

static void
add_origin(const struct app *a, enum cors_class cls, struct http_req *rq, struct http_resp *rs)
{
	const char *allow = allowed_origin(a, cls, http_header(rq, "Origin"));

	/* The answer differs by Origin whenever a list decides: caches must
	 * keep the answers apart. */
	if (cls == CORS_AGENT && strcmp(a->cfg->cors_origins, "*") != 0)
		http_add_header(rs, "Vary", "Origin");
	if (allow != NULL)
		http_add_header(rs, "Access-Control-Allow-Origin", allow);
}

enum am_err
h_cors(void *app, struct http_req *rq, struct http_resp *rs, struct am_error *e)
{
	struct app *a = app;
	const struct cors_route *r = NULL;
	enum am_err rc;

	for (size_t i = 0; i < a->ncors && r == NULL; i++) {
		if (strcmp(a->cors[i].path, rq->path) == 0 &&
		    method_matches(a->cors[i].method, rq->method))
			r = &a->cors[i];
	}
	if (r == NULL)
		return am_fail(e, AM_E_INTERNAL, "no handler for a marked route");
	rc = r->handler(app, rq, rs, e);
	if (rs->content_type != NULL && strncmp(rs->content_type, "text/html", 9) == 0)
		return rc;
	add_origin(a, r->cls, rq, rs);
	if (allowed_origin(a, r->cls, http_header(rq, "Origin")) != NULL)
		http_add_header(rs, "Access-Control-Expose-Headers", CORS_EXPOSE_HEADERS);
	return rc;
}

enum am_err
h_preflight(void *app, struct http_req *rq, struct http_resp *rs, struct am_error *e)
{
	struct app *a = app;
	enum cors_class cls = class_of(a, rq->path);
	struct am_buf methods = {0};

	(void)e;
	for (size_t i = 0; i < a->ncors; i++) {
		if (strcmp(a->cors[i].path, rq->path) != 0)
			continue;
		am_buf_printf(&methods, "%s%s", a->cors[i].method,
			      strcmp(a->cors[i].method, "GET") == 0 ? ", HEAD, " : ", ");
	}
	am_buf_puts(&methods, "OPTIONS");
	http_reply_text(rs, 204, "text/plain", "", 0);
	http_add_header(rs, "Allow", methods.data);
	add_origin(a, cls, rq, rs);
	if (allowed_origin(a, cls, http_header(rq, "Origin")) != NULL) {
		http_add_header(rs, "Access-Control-Allow-Methods", methods.data);
		http_add_header(rs, "Access-Control-Allow-Headers", CORS_ALLOW_HEADERS);
		http_add_header(rs, "Access-Control-Max-Age", CORS_MAX_AGE);
	}
	/* else: not for this origin, and the browser stops here */
	am_buf_free(&methods);
	return AM_OK;
}
