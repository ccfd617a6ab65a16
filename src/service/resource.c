/* The protected-resource gate and the demo API behind it. */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "core/config.h"
#include "core/json.h"
#include "service/service.h"

void
resource_challenge(struct app *a, struct http_resp *rs, const char *error, const char *scope)
{
	char v[SVC_URL_MAX + 128];

	if (error == NULL)
		snprintf(v, sizeof(v), "Bearer resource_metadata=\"%s\"", a->prm_url);
	else if (scope == NULL)
		snprintf(v, sizeof(v), "Bearer resource_metadata=\"%s\", error=\"%s\"", a->prm_url,
			 error);
	else
		snprintf(v, sizeof(v),
			 "Bearer error=\"%s\", scope=\"%s\", resource_metadata=\"%s\"", error,
			 scope, a->prm_url);
	http_add_header(rs, "WWW-Authenticate", v);
}

/* The demo API is one more route of the access policy ([route NAME] or
 * the built-in demo-read/demo-write), checked like a forward-auth call. */
static enum am_err
gate(struct app *a, struct http_req *rq, struct http_resp *rs, struct store_auth *auth,
     struct am_error *e)
{
	return svc_gate(a, rq, rs, rq->method, a->cfg->public_url, rq->path, auth, e);
}

/* Who the credential is, written straight into b: the answer of every
 * gated demo call, so no jansson tree is built for it. */
static void
whoami(const struct store_auth *auth, struct am_buf *b)
{
	const struct store_cred *c = &auth->cred;

	am_jw_begin(b);
	am_jw_str(b, "user_id", c->user_id[0] != '\0' ? c->user_id : NULL);
	am_jw_str(b, "email", auth->user_email[0] != '\0' ? auth->user_email : NULL);
	am_jw_str(b, "credential_id", c->id);
	am_jw_str(b, "credential_type", store_cred_type_name(c->type));
	am_jw_scopes(b, "scopes", c->scopes);
	am_jw_str(b, "source", c->source);
	am_jw_str(b, "registration_id", c->registration_id);
	am_jw_str(b, "registration_status", store_status_name(auth->reg_status));
}

static enum am_err
answer(void *app, struct http_req *rq, struct http_resp *rs, bool written, struct am_error *e)
{
	struct am_buf b = {0}; /* ids and names only: nothing secret */
	struct store_auth auth;
	enum am_err rc;

	if ((rc = gate(app, rq, rs, &auth, e)) != AM_OK)
		return rc;
	b.data = am_xmalloc(512);
	b.cap = 512;
	b.data[0] = '\0';
	whoami(&auth, &b);
	if (written)
		am_jw_bool(&b, "written", true);
	am_jw_end(&b);
	http_reply_json_buf(rs, 200, &b);
	return AM_OK;
}

enum am_err
h_resource_get(void *app, struct http_req *rq, struct http_resp *rs, struct am_error *e)
{
	return answer(app, rq, rs, false, e);
}

enum am_err
h_resource_post(void *app, struct http_req *rq, struct http_resp *rs, struct am_error *e)
{
	return answer(app, rq, rs, true, e);
}
