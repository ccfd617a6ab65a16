/* RFC 7662 token introspection (POST /oauth2/introspect) for resource
 * servers, and RFC 7009 revocation (POST /oauth2/revoke) for agents giving
 * up their own credential. The decisions are flows (access.c); this file
 * reads the form and HTTP Basic, applies the rate limits and renders. */
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "core/json.h"
#include "core/log.h"
#include "core/metrics.h"
#include "flows/ratelimit.h"
#include "jose/jose.h"
#include "service/service.h"

/* Counts one call on key against limit per minute (0: unlimited). */
static enum am_err
limit(struct app *a, const char *name, const char *key, int64_t per_minute, struct am_error *e)
{
	int64_t retry = 0;

	if (a->gate_limits == NULL ||
	    ratelimit_hit(a->gate_limits, key, per_minute, am_clock_now(&a->env.clock), &retry))
		return AM_OK;
	am_metrics_inc(AM_M_RATE_LIMITED, name, NULL);
	am_fail(e, AM_E_RATE_LIMITED, "too many %s requests; retry in %llds", name,
		(long long)retry);
	e->retry_after = (long)retry;
	return AM_E_RATE_LIMITED;
}

static enum am_err
form_token(struct http_req *rq, char *token, size_t cap, struct am_error *e)
{
	if (!http_content_type_is(rq, "application/x-www-form-urlencoded"))
		return am_fail(e, AM_E_UNSUPPORTED_MEDIA_TYPE,
			       "send the body as application/x-www-form-urlencoded");
	if (!http_form_field(rq, "token", token, cap) || token[0] == '\0')
		return am_fail(e, AM_E_INVALID_REQUEST, "the token form field is required");
	return AM_OK;
}

/* The introspection client of an "Authorization: Basic" header, or NULL. */
static const struct am_introspection_client *
basic_client(struct app *a, struct http_req *rq)
{
	const char *h = http_header(rq, "Authorization");
	unsigned char raw[3 * (AM_MAX_FIELD_BYTES / 4) + 4];
	const struct am_introspection_client *c;
	size_t in;
	int n;
	char *colon;

	if (h == NULL || strncasecmp(h, "Basic ", 6) != 0)
		return NULL;
	h += 6;
	in = strlen(h);
	if (in == 0 || in > AM_MAX_FIELD_BYTES || in % 4 != 0)
		return NULL;
	if ((n = EVP_DecodeBlock(raw, (const unsigned char *)h, (int)in)) < 0)
		return NULL;
	/* EVP_DecodeBlock counts the padding as zero bytes: drop them. */
	while (n > 0 && in > 0 && h[in - 1] == '=') {
		n--;
		in--;
	}
	raw[n] = '\0';
	if (memchr(raw, '\0', (size_t)n) != NULL || (colon = strchr((char *)raw, ':')) == NULL) {
		OPENSSL_cleanse(raw, sizeof(raw));
		return NULL;
	}
	*colon = '\0';
	c = flow_introspection_client(a->cfg, (const char *)raw, colon + 1);
	OPENSSL_cleanse(raw, sizeof(raw));
	return c;
}

static json_t *
introspection(const struct app *a, const struct store_auth *auth)
{
	const struct store_cred *c = &auth->cred;
	int64_t exp = c->expires_at;
	json_t *o;

	/* An unclaimed key stops at the registration's end. */
	if ((auth->reg_status == REG_UNCLAIMED || auth->reg_status == REG_PENDING_CLAIM) &&
	    (exp == 0 || auth->reg_expires_at < exp))
		exp = auth->reg_expires_at;
	o = json_pack("{s:b, s:s, s:s, s:s, s:s, s:I, s:s, s:s, s:s, s:s, s:s, s:o}", "active", 1,
		      "scope", c->scopes, "client_id", c->registration_id, "sub",
		      c->user_id[0] != '\0' ? c->user_id : c->registration_id, "token_type",
		      c->jkt[0] != '\0' ? "DPoP" : "Bearer", "iat", (json_int_t)c->created_at,
		      "aud", a->cfg->resource, "iss", a->cfg->public_url, "authmd_credential_id",
		      c->id, "authmd_credential_type", store_cred_type_name(c->type),
		      "authmd_source", c->source, "authmd_registration_status",
		      json_string(store_status_name(auth->reg_status)));
	if (exp != 0)
		json_object_set_new(o, "exp", json_integer(exp));
	/* RFC 9449 6.2: the resource server checks the proof against this key. */
	if (c->jkt[0] != '\0')
		json_object_set_new(o, "cnf", json_pack("{s:s}", "jkt", c->jkt));
	if (c->user_id[0] != '\0')
		json_object_set_new(o, "authmd_user_id", json_string(c->user_id));
	if (auth->user_email[0] != '\0')
		json_object_set_new(o, "email", json_string(auth->user_email));
	return o;
}

enum am_err
h_introspect(void *app, struct http_req *rq, struct http_resp *rs, struct am_error *e)
{
	struct app *a = app;
	const struct am_introspection_client *client;
	char token[AM_MAX_FIELD_BYTES + 1], key[128]; /* longer than any token: inactive */
	struct store_auth auth;
	struct store *st;
	bool active = false;
	enum am_err rc;

	http_add_header(rs, "Cache-Control", "no-store");
	snprintf(key, sizeof(key), "introspect|ip|%s", rq->ip);
	if ((rc = limit(a, "introspection", key, a->cfg->introspection_per_minute, e)) != AM_OK)
		return rc;
	if ((client = basic_client(a, rq)) == NULL) {
		http_add_header(rs, "WWW-Authenticate", "Basic realm=\"authmd introspection\"");
		return am_fail(e, AM_E_INVALID_CLIENT,
			       "authenticate as an [introspection client] with HTTP Basic");
	}
	snprintf(key, sizeof(key), "introspect|client|%s", client->name);
	if ((rc = limit(a, "introspection", key, a->cfg->introspection_per_minute, e)) != AM_OK)
		return rc;
	if ((rc = form_token(rq, token, sizeof(token), e)) != AM_OK)
		goto out;
	if ((rc = app_store(a, &st, e)) != AM_OK ||
	    (rc = flow_introspect(&a->env, st, token, &active, &auth, e)) != AM_OK)
		goto out;
	am_metrics_inc(AM_M_INTROSPECTIONS, active ? "true" : "false", NULL);
	log_info("introspection client=%s active=%s credential=%s", client->name,
		 active ? "true" : "false", active ? auth.cred.id : "-");
	http_reply_json(rs, 200,
			active ? introspection(a, &auth) : json_pack("{s:b}", "active", 0));
out:
	OPENSSL_cleanse(token, sizeof(token));
	return rc;
}

struct revoke_args {
	struct store *st;
	const char *token;
};

static enum am_err
revoke_submit(struct app *a, struct http_req *rq, struct flow_pending_op *p, void *arg,
	      bool *queued, void (*done)(void *arg), void *done_arg, struct am_error *e)
{
	const struct revoke_args *r = arg;

	(void)rq;
	return flow_revoke_token_submit(&a->env, r->st, r->token, p, queued, done, done_arg, e);
}

static enum am_err
revoke_render(struct app *a, struct http_req *rq, struct http_resp *rs, struct flow_pending_op *p,
	      enum am_err rc, struct am_error *e)
{
	(void)a;
	(void)rq;
	(void)p;
	(void)e;
	if (rc != AM_OK)
		return rc;
	/* The same answer whether or not anything was revoked (RFC 7009 2.2). */
	http_reply_json(rs, 200, json_object());
	return AM_OK;
}

enum am_err
h_oauth_revoke(void *app, struct http_req *rq, struct http_resp *rs, struct am_error *e)
{
	struct app *a = app;
	/* Room for any token we hand out, identity assertions included: one
	 * presented here is unknown (200), not a malformed body (RFC 7009 2.2). */
	char token[JOSE_MAX_TOKEN_BYTES + 1], hint[64], key[96];
	struct revoke_args args = {.token = token};
	enum am_err rc;

	http_add_header(rs, "Cache-Control", "no-store");
	snprintf(key, sizeof(key), "revoke|ip|%s", rq->ip);
	if ((rc = limit(a, "revocation", key, a->cfg->revocation_per_minute, e)) != AM_OK)
		return rc;
	if ((rc = form_token(rq, token, sizeof(token), e)) != AM_OK) {
		rc = svc_oauth_error(rs, rc, e); /* RFC 7009 2.2.1 */
		goto out;
	}
	/* RFC 7009 2.1: the hint only speeds the search; an unknown one is
	 * ignored, and every credential here is an access token or API key. */
	(void)http_form_field(rq, "token_type_hint", hint, sizeof(hint));
	/* Looked up here, revoked in the group commit (parked until durable). */
	if ((rc = app_store(a, &args.st, e)) != AM_OK)
		goto out;
	rc = svc_op_park(a, rq, revoke_submit, &args, revoke_render, rs, e);
out:
	OPENSSL_cleanse(token, sizeof(token));
	return rc;
}
