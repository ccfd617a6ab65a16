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

static json_t *
whoami(const struct store_auth *auth)
{
	const struct store_cred *c = &auth->cred;

	return json_pack("{s:s?, s:s?, s:s, s:s, s:o, s:s, s:s, s:s}", "user_id",
			 c->user_id[0] != '\0' ? c->user_id : NULL, "email",
			 auth->user_email[0] != '\0' ? auth->user_email : NULL, "credential_id",
			 c->id, "credential_type", store_cred_type_name(c->type), "scopes",
			 am_json_scopes(c->scopes), "source", c->source, "registration_id",
			 c->registration_id, "registration_status",
			 store_status_name(auth->reg_status));
}

enum am_err
h_resource_get(void *app, struct http_req *rq, struct http_resp *rs, struct am_error *e)
{
	struct store_auth auth;
	enum am_err rc;

	if ((rc = gate(app, rq, rs, &auth, e)) != AM_OK)
		return rc;
	http_reply_json(rs, 200, whoami(&auth));
	return AM_OK;
}

enum am_err
h_resource_post(void *app, struct http_req *rq, struct http_resp *rs, struct am_error *e)
{
	struct store_auth auth;
	json_t *body;
	enum am_err rc;

	if ((rc = gate(app, rq, rs, &auth, e)) != AM_OK)
		return rc;
	body = whoami(&auth);
	json_object_set_new(body, "written", json_true());
	http_reply_json(rs, 200, body);
	return AM_OK;
}
