/* The provider's HTTP API (its API layer, papi.h): the JWKS and CIMD for
 * services, and for agents (bearer session): consent grants and ID-JAG
 * minting. The handlers get the flow layer's struct prov_app as context. */
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/clock.h"
#include "core/json.h"
#include "core/limits.h"
#include "core/log.h"
#include "core/protocol.h"
#include "core/str.h"
#include "core/url.h"
#include "provider/papi.h"
#include "provider/provider.h"

/* A URL we will put in a token or POST to: absolute http(s), printable, no
 * userinfo (core/url.h decides). */
static bool
url_ok(const char *u, struct am_url *out)
{
	return u != NULL && strlen(u) <= 255 && am_url_parse(u, out) && !out->has_userinfo;
}

/* Where a grant's logout tokens may go: the audience's own origin, or one
 * the operator listed in [revocation] allowed_origins. Anything else would
 * let a user make the provider POST to a host of their choosing. */
static bool
revocation_target_ok(const struct prov_config *c, const struct am_url *aud,
		     const struct am_url *uri)
{
	char origin[300];

	if (am_url_same_origin(aud, uri))
		return true;
	return am_url_origin(uri, origin, sizeof(origin)) &&
	       am_word_in(c->revocation_origins, origin);
}

/* The user of the request's bearer session. */
static enum am_err
session_user(struct prov_app *a, struct http_req *rq, struct http_resp *rs, struct pstore **ps,
	     struct prov_user *u, struct am_error *e)
{
	const char *h = http_header(rq, "Authorization");
	uint8_t hash[AM_HASH_LEN];
	char user_id[40];
	int64_t session_at = 0;
	enum am_err rc;

	if (h == NULL || strncasecmp(h, "Bearer ", 7) != 0 || strlen(h + 7) > AM_MAX_TOKEN_BYTES) {
		http_add_header(rs, "WWW-Authenticate", "Bearer");
		return am_fail(e, AM_E_INVALID_TOKEN,
			       "send the session token as Authorization: "
			       "Bearer <token>");
	}
	if ((rc = prov_store(a, ps, e)) != AM_OK)
		return rc;
	am_sha256_str(h + 7, hash);
	rc = pstore_session_user(*ps, hash, user_id, &session_at, e);
	if (rc == AM_OK && (rc = pstore_user_by_id(*ps, user_id, u, e)) == AM_OK)
		u->session_at = session_at;
	if (rc == AM_E_NOT_FOUND) {
		http_add_header(rs, "WWW-Authenticate", "Bearer error=\"invalid_token\"");
		return am_fail(e, AM_E_INVALID_TOKEN, "the session is not valid");
	}
	return rc;
}

static enum am_err
json_body(struct http_req *rq, json_t **out, struct am_error *e)
{
	if (!http_content_type_is(rq, "application/json"))
		return am_fail(e, AM_E_UNSUPPORTED_MEDIA_TYPE,
			       "send the body as Content-Type: application/json");
	return am_json_object(rq->body.data, rq->body.len, out, e);
}

static enum am_err
h_jwks(void *app, struct http_req *rq, struct http_resp *rs, struct am_error *e)
{
	struct prov_app *a = app;
	struct pstore *ps;
	json_t *jwks;
	char cc[64];
	enum am_err rc;

	(void)rq;
	if ((rc = prov_store(a, &ps, e)) != AM_OK ||
	    (rc = pstore_jwks(ps, am_clock_now(NULL), &jwks, e)) != AM_OK)
		return rc;
	http_reply_json(rs, 200, jwks);
	snprintf(cc, sizeof(cc), "public, max-age=%lld", (long long)a->cfg->jwks_max_age);
	http_add_header(rs, "Cache-Control", cc);
	return AM_OK;
}

static enum am_err
h_cimd(void *app, struct http_req *rq, struct http_resp *rs, struct am_error *e)
{
	const struct prov_config *c = ((struct prov_app *)app)->cfg;
	char jwks_uri[300];

	(void)rq, (void)e;
	snprintf(jwks_uri, sizeof(jwks_uri), "%s/.well-known/jwks.json", c->issuer);
	http_reply_json(rs, 200,
			json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "client_id", c->client_id,
				  "client_name", c->client_name, "client_uri", c->issuer,
				  "jwks_uri", jwks_uri, "token_endpoint_auth_method",
				  "private_key_jwt", "scope", "openid email profile"));
	http_add_header(rs, "Cache-Control", "public, max-age=3600");
	return AM_OK;
}

static json_t *
grant_json(const struct prov_grant *g)
{
	static const char *const names[] = {"active", "consumed", "revoked"};

	return json_pack("{s:s, s:s, s:s, s:s?, s:s, s:I}", "id", g->id, "audience", g->audience,
			 "mode", g->once ? "once" : "always",
			 g->format == FORMAT_SET ? "events_endpoint" : "revocation_uri",
			 g->revocation_uri[0] != '\0' ? g->revocation_uri : NULL, "status",
			 names[g->status], "created_at", (json_int_t)g->created_at);
}

/* Where the grant's revocation goes: revocation_uri (v0.1, a logout
 * token), events_endpoint (v0.6, a SET), or, with "revocation": "discover",
 * whichever the audience's metadata names. Either URL must be on the
 * audience's origin (or an allowed one). */
static enum am_err
grant_target(struct prov_app *a, const json_t *req, const char *audience,
	     const struct am_url *aud_url, struct prov_grant *g, struct am_error *e)
{
	const char *rev = NULL, *events = NULL, *how = NULL, *url;
	struct am_url u;
	enum am_err rc;

	if ((rc = am_json_string(req, "revocation_uri", false, 255, &rev, e)) != AM_OK ||
	    (rc = am_json_string(req, "events_endpoint", false, 255, &events, e)) != AM_OK ||
	    (rc = am_json_string(req, "revocation", false, 16, &how, e)) != AM_OK)
		return rc;
	if ((rev != NULL) + (events != NULL) + (how != NULL) > 1)
		return am_fail(e, AM_E_INVALID_REQUEST,
			       "give at most one of revocation_uri, events_endpoint and "
			       "revocation");
	if (how != NULL) {
		if (strcmp(how, "discover") != 0)
			return am_fail(e, AM_E_INVALID_REQUEST, "revocation must be \"discover\"");
		rc = prov_discover_revocation(a->cfg, audience, g->revocation_uri,
					      sizeof(g->revocation_uri), &g->format, e);
		if (rc == AM_E_NOT_FOUND)
			return am_fail(e, AM_E_INVALID_REQUEST,
				       "the audience's metadata names no events_endpoint or "
				       "revocation_uri");
		if (rc != AM_OK)
			return rc;
		url = g->revocation_uri;
	} else {
		url = events != NULL ? events : rev;
		g->format = events != NULL ? FORMAT_SET : FORMAT_LOGOUT;
		if (url == NULL)
			return AM_OK;
		am_copy(g->revocation_uri, sizeof(g->revocation_uri), url);
	}
	if (!url_ok(url, &u))
		return am_fail(e, AM_E_INVALID_REQUEST,
			       "revocation_uri and events_endpoint must be absolute http(s) URLs");
	if (!revocation_target_ok(a->cfg, aud_url, &u))
		return am_fail(e, AM_E_INVALID_REQUEST,
			       "the revocation target must be on the audience's origin");
	return AM_OK;
}

static enum am_err
h_grant_create(void *app, struct http_req *rq, struct http_resp *rs, struct am_error *e)
{
	struct prov_app *a = app;
	struct prov_grant g = {0};
	struct prov_user u;
	struct pstore *ps;
	json_t *req = NULL;
	const char *audience, *mode;
	struct am_url aud_url;
	enum am_err rc;

	if ((rc = session_user(a, rq, rs, &ps, &u, e)) != AM_OK ||
	    (rc = json_body(rq, &req, e)) != AM_OK)
		return rc;
	if ((rc = am_json_string(req, "audience", true, 255, &audience, e)) != AM_OK ||
	    (rc = am_json_string(req, "mode", false, 16, &mode, e)) != AM_OK)
		goto out;
	if (!url_ok(audience, &aud_url)) {
		rc = am_fail(e, AM_E_INVALID_REQUEST, "audience must be an absolute http(s) URL");
		goto out;
	}
	if (mode != NULL && strcmp(mode, "once") != 0 && strcmp(mode, "always") != 0) {
		rc = am_fail(e, AM_E_INVALID_REQUEST, "mode must be once or always");
		goto out;
	}
	if ((rc = grant_target(a, req, audience, &aud_url, &g, e)) != AM_OK)
		goto out;
	if ((rc = am_rand_id("gr_", g.id, sizeof(g.id), e)) != AM_OK)
		goto out;
	am_copy(g.user_id, sizeof(g.user_id), u.id);
	am_copy(g.audience, sizeof(g.audience), audience);
	g.once = mode != NULL && strcmp(mode, "once") == 0;
	g.status = GRANT_ACTIVE;
	g.created_at = g.updated_at = am_clock_now(NULL);
	if ((rc = pstore_grant_add(ps, &g, e)) != AM_OK)
		goto out;
	log_info("grant created id=%s user=%s audience=%s mode=%s revocation=%s", g.id, u.id,
		 g.audience, g.once ? "once" : "always",
		 g.revocation_uri[0] != '\0' ? prov_format_name(g.format) : "none");
	http_reply_json(rs, 201, grant_json(&g));
out:
	json_decref(req);
	return rc;
}

static enum am_err
h_grant_list(void *app, struct http_req *rq, struct http_resp *rs, struct am_error *e)
{
	struct prov_app *a = app;
	struct prov_user u;
	struct pstore *ps;
	json_t *grants;
	enum am_err rc;

	if ((rc = session_user(a, rq, rs, &ps, &u, e)) != AM_OK ||
	    (rc = pstore_grants_json(ps, u.id, &grants, e)) != AM_OK)
		return rc;
	http_reply_json(rs, 200, json_pack("{s:o}", "grants", grants));
	return AM_OK;
}

static enum am_err
h_grant_delete(void *app, struct http_req *rq, struct http_resp *rs, struct am_error *e)
{
	struct prov_app *a = app;
	const char *id = rq->path + strlen("/grants/");
	struct prov_grant g;
	struct prov_delivery d = {0};
	struct prov_user u;
	struct pstore *ps;
	int64_t now = am_clock_now(NULL);
	enum am_err rc;

	if ((rc = session_user(a, rq, rs, &ps, &u, e)) != AM_OK)
		return rc;
	if ((rc = pstore_begin(ps, e)) != AM_OK)
		return rc;
	rc = pstore_grant_get(ps, u.id, id, &g, e);
	if (rc == AM_OK && g.status == GRANT_REVOKED)
		rc = am_fail(e, AM_E_NOT_FOUND, "this grant is already revoked");
	else if (rc == AM_E_NOT_FOUND)
		rc = am_fail(e, AM_E_NOT_FOUND, "no such grant");
	if (rc != AM_OK ||
	    (rc = pstore_grant_set(ps, g.id, g.status, GRANT_REVOKED, now, e)) != AM_OK)
		goto fail;
	/* The logout token is queued in the same transaction that revokes the
	 * grant: once this answers, the revocation will be delivered, across
	 * restarts of either side. */
	if (g.revocation_uri[0] != '\0') {
		if ((rc = am_rand_id("dl_", d.id, sizeof(d.id), e)) != AM_OK)
			goto fail;
		am_copy(d.grant_id, sizeof(d.grant_id), g.id);
		am_copy(d.url, sizeof(d.url), g.revocation_uri);
		am_copy(d.sub, sizeof(d.sub), u.sub);
		am_copy(d.aud, sizeof(d.aud), g.audience);
		d.format = g.format;
		if ((rc = pstore_delivery_add(ps, &d, now, e)) != AM_OK)
			goto fail;
	}
	if ((rc = pstore_commit(ps, e)) != AM_OK)
		goto fail;
	g.status = GRANT_REVOKED;
	log_info("grant revoked id=%s user=%s delivery=%s", g.id, u.id,
		 d.id[0] != '\0' ? d.id : "none");
	if (d.id[0] != '\0')
		prov_delivery_kick(a);
	{
		json_t *body = grant_json(&g);

		if (d.id[0] != '\0')
			json_object_set_new(
				body, "revocation",
				json_pack("{s:s, s:i}", "status", "pending", "attempts", 0));
		http_reply_json(rs, 200, body);
	}
	return AM_OK;
fail:
	pstore_rollback(ps);
	return rc;
}

static enum am_err
h_mint(void *app, struct http_req *rq, struct http_resp *rs, struct am_error *e)
{
	struct prov_app *a = app;
	const struct prov_config *c = a->cfg;
	struct prov_user u;
	struct prov_grant g;
	struct pstore *ps;
	json_t *req = NULL, *claims = NULL;
	const char *audience, *resource, *platform, *context;
	char jti[64], *token = NULL;
	int64_t now = am_clock_now(NULL);
	enum am_err rc;

	if ((rc = session_user(a, rq, rs, &ps, &u, e)) != AM_OK ||
	    (rc = json_body(rq, &req, e)) != AM_OK)
		return rc;
	if ((rc = am_json_string(req, "audience", true, 255, &audience, e)) != AM_OK ||
	    (rc = am_json_string(req, "resource", false, 255, &resource, e)) != AM_OK ||
	    (rc = am_json_string(req, "agent_platform", false, 128, &platform, e)) != AM_OK ||
	    (rc = am_json_string(req, "agent_context_id", false, 128, &context, e)) != AM_OK)
		goto out;
	if (!u.email_verified && !u.phone_verified) {
		rc = am_fail(e, AM_E_MISSING_VERIFIED_EMAIL,
			     "this user has neither a verified email nor a verified phone");
		goto out;
	}
	if ((rc = pstore_begin(ps, e)) != AM_OK)
		goto out;
	rc = pstore_grant_live(ps, u.id, audience, &g, e);
	if (rc == AM_E_NOT_FOUND)
		rc = am_fail(e, AM_E_CONSENT_REQUIRED,
			     "the user has not consented to %.200s: create a grant first",
			     audience);
	/* A once grant is spent by this mint, in the same transaction, so two
	 * concurrent mints cannot both use it. */
	if (rc == AM_OK && g.once)
		rc = pstore_grant_set(ps, g.id, GRANT_ACTIVE, GRANT_CONSUMED, now, e);
	if (rc != AM_OK || (rc = am_rand_token("", jti, sizeof(jti), e)) != AM_OK) {
		pstore_rollback(ps);
		goto out;
	}
	claims = json_pack("{s:s, s:s, s:s, s:s, s:s, s:I, s:I, s:s, s:b}", "iss", c->issuer, "sub",
			   u.sub, "aud", audience, "client_id", c->client_id, "jti", jti, "iat",
			   (json_int_t)now, "exp", (json_int_t)(now + c->idjag_ttl), "email",
			   u.email, "email_verified", u.email_verified);
	/* v0.5: the service wants the user's last authentication here, which
	 * for this provider is the making of the agent's session. */
	if (claims != NULL && u.session_at > 0)
		json_object_set_new(claims, "auth_time", json_integer(u.session_at));
	if (u.phone[0] != '\0') {
		json_object_set_new(claims, "phone_number", json_string(u.phone));
		json_object_set_new(claims, "phone_number_verified",
				    json_boolean(u.phone_verified));
	}
	if (u.name[0] != '\0')
		json_object_set_new(claims, "name", json_string(u.name));
	if (resource != NULL)
		json_object_set_new(claims, "resource", json_string(resource));
	if (platform != NULL)
		json_object_set_new(claims, "agent_platform", json_string(platform));
	if (context != NULL)
		json_object_set_new(claims, "agent_context_id", json_string(context));
	if ((rc = pkeys_sign(a->keys, ps, AM_TYP_ID_JAG, claims, &token, e)) != AM_OK ||
	    (rc = pstore_commit(ps, e)) != AM_OK) {
		pstore_rollback(ps);
		goto out;
	}
	log_info("id-jag minted user=%s audience=%s grant=%s", u.id, audience, g.id);
	http_reply_json(rs, 200,
			json_pack("{s:s, s:s, s:I}", "assertion_type", AM_ID_JAG_URN, "assertion",
				  token, "expires_in", (json_int_t)c->idjag_ttl));
	http_add_header(rs, "Cache-Control", "no-store");
out:
	if (token != NULL) {
		OPENSSL_cleanse(token, strlen(token));
		free(token);
	}
	json_decref(claims);
	json_decref(req);
	return rc;
}

static void
route(struct prov_http *h, const char *method, const char *path, enum http_match m, http_handler fn)
{
	if (h->nroutes < sizeof(h->routes) / sizeof(h->routes[0]))
		h->routes[h->nroutes++] = (struct http_route){method, path, m, fn};
}

enum am_err
prov_http_new(struct prov_app *a, struct prov_http **out, struct am_error *e)
{
	const struct prov_config *c = a->cfg;
	struct prov_http *h = calloc(1, sizeof(*h));
	struct am_url iss, cid;

	if (h == NULL)
		return am_fail(e, AM_E_INTERNAL, "out of memory");
	h->app = a;
	route(h, "GET", "/.well-known/jwks.json", HTTP_EXACT, h_jwks);
	route(h, "POST", "/grants", HTTP_EXACT, h_grant_create);
	route(h, "GET", "/grants", HTTP_EXACT, h_grant_list);
	route(h, "DELETE", "/grants/", HTTP_PREFIX, h_grant_delete);
	route(h, "POST", "/id-jag", HTTP_EXACT, h_mint);
	/* A client_id that is a URL under our issuer is served as its Client ID
	 * Metadata Document. */
	if (am_url_parse(c->issuer, &iss) && am_url_parse(c->client_id, &cid) &&
	    am_url_under(&iss, &cid) && !cid.has_query && !cid.has_fragment) {
		const char *rel = cid.path + (strcmp(iss.path, "/") == 0 ? 0 : strlen(iss.path));

		if (rel[0] == '/' && rel[1] != '\0' &&
		    am_copy(h->cimd_path, sizeof(h->cimd_path), rel))
			route(h, "GET", h->cimd_path, HTTP_EXACT, h_cimd);
	}
	*out = h;
	return AM_OK;
}

void
prov_http_free(struct prov_http *h)
{
	free(h);
}
