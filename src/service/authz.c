/* The gate: forward-auth for reverse proxies (GET /authz, any method) and
 * the check the demo API runs. The decision is flow_gate_check; this file
 * reads the proxy's headers and renders the answer: 200 with X-Authmd-*
 * identity headers, or 401/403 with the RFC 6750 / RFC 9728 challenge and
 * never an identity header. See docs/gate.md. */
#include <openssl/crypto.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "core/log.h"
#include "core/metrics.h"
#include "flows/dpop.h"
#include "service/service.h"

/* True when v can go into a header and a log line as it is: visible ASCII
 * and spaces, nothing that could end a header or start another. */
static bool
header_safe(const char *v)
{
	if (v == NULL || v[0] == '\0' || strlen(v) > AM_MAX_FIELD_BYTES)
		return false;
	for (const char *p = v; *p != '\0'; p++) {
		if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e)
			return false;
	}
	return true;
}

static void
identity_header(struct http_resp *rs, const char *name, const char *value)
{
	if (value == NULL || value[0] == '\0')
		return;
	if (!header_safe(value)) {
		log_warn("gate identity header %s left out: unsafe characters", name);
		return;
	}
	http_add_header(rs, name, value);
}

static const char *
decision_name(enum am_err rc, bool had_credential)
{
	switch (rc) {
	case AM_OK:
		return "allow";
	case AM_E_INVALID_TOKEN:
		return had_credential ? "invalid_token" : "no_credential";
	case AM_E_INSUFFICIENT_SCOPE:
		return "insufficient_scope";
	case AM_E_ACCESS_DENIED:
		return "denied";
	case AM_E_INVALID_REQUEST:
		return "bad_request";
	default:
		return "error";
	}
}

/* The RFC 9449 7.1 challenge, beside the discovery one. */
static void
dpop_challenge(struct app *a, struct http_resp *rs, const char *detail)
{
	char d[256], v[512];
	size_t i;

	/* The detail is our own text; keep the quoted-string closed anyway. */
	for (i = 0; detail[i] != '\0' && i + 1 < sizeof(d); i++)
		d[i] = detail[i] == '"' || detail[i] == '\\' ? '\'' : detail[i];
	d[i] = '\0';
	snprintf(v, sizeof(v),
		 "DPoP error=\"invalid_dpop_proof\", algs=\"%s\", "
		 "error_description=\"%s\"",
		 FLOW_DPOP_ALGS, d);
	http_add_header(rs, "WWW-Authenticate", v);
	resource_challenge(a, rs, NULL, NULL);
}

/* scheme is the length of "Bearer " or "DPoP " when h starts with it. */
static size_t
auth_scheme(const char *h, bool *dpop)
{
	*dpop = strncasecmp(h, "DPoP ", 5) == 0;
	if (*dpop)
		return 5;
	return strncasecmp(h, "Bearer ", 7) == 0 ? 7 : 0;
}

enum am_err
svc_gate(struct app *a, struct http_req *rq, struct http_resp *rs, const char *method,
	 const char *origin, const char *target, struct store_auth *auth, struct am_error *e)
{
	const char *h = http_header(rq, "Authorization");
	const char *bearer = NULL;
	struct gate_result res;
	struct store *st;
	char url[AM_MAX_URL_BYTES + 300];
	bool dpop = false;
	size_t skip = 0;
	enum am_err rc;

	if (h != NULL) {
		skip = auth_scheme(h, &dpop);
		if (skip == 0 || h[skip] == '\0' || strchr(h + skip, ' ') != NULL) {
			am_metrics_inc(AM_M_GATE_DECISIONS, "bad_request", NULL);
			resource_challenge(a, rs, "invalid_request", NULL);
			return am_fail(e, AM_E_INVALID_TOKEN,
				       "the Authorization header must be \"Bearer <credential>\" "
				       "(or \"DPoP <access token>\" for a DPoP-bound one)");
		}
		bearer = h + skip;
	}
	if ((rc = app_store(a, &st, e)) != AM_OK)
		return rc;
	rc = flow_gate_check(&a->env, st, method, target, bearer, &res, e);
	if (rc == AM_OK) {
		snprintf(url, sizeof(url), "%.255s%s", origin, target);
		rc = flow_dpop_gate(&a->env, st, res.auth.cred.jkt, dpop, http_header(rq, "DPoP"),
				    method, url, bearer, e);
		if (rc == AM_E_DPOP_PROOF_REFUSED) {
			am_metrics_inc(AM_M_GATE_DECISIONS, "invalid_dpop_proof", NULL);
			dpop_challenge(a, rs, e->detail);
			OPENSSL_cleanse(&res.auth, sizeof(res.auth));
			return rc;
		}
		if (rc != AM_OK)
			OPENSSL_cleanse(&res.auth, sizeof(res.auth));
	}
	am_metrics_inc(AM_M_GATE_DECISIONS, decision_name(rc, bearer != NULL), NULL);
	switch (rc) {
	case AM_OK:
		*auth = res.auth;
		break;
	case AM_E_INVALID_TOKEN:
		resource_challenge(a, rs, bearer != NULL ? "invalid_token" : NULL, NULL);
		break;
	case AM_E_INSUFFICIENT_SCOPE:
		resource_challenge(a, rs, "insufficient_scope", res.route->scope);
		break;
	default:
		break;
	}
	return rc;
}

/* True when header says what fallback does; fallback (Envoy's path, or
 * our own method) carries no query, so a header's query is not compared. */
static bool
same(const char *header, const char *fallback)
{
	size_t n = strcspn(header, "?#");

	return strlen(fallback) == n && strncmp(header, fallback, n) == 0;
}

/* The first of the headers present; *conflict when another one present
 * says something else. */
static const char *
agreed(struct http_req *rq, const char *h1, const char *h2, const char *fallback, bool *conflict)
{
	const char *a = http_header(rq, h1), *b = http_header(rq, h2), *v;

	v = a != NULL ? a : b != NULL ? b : fallback;
	if ((a != NULL && strcmp(a, v) != 0) || (b != NULL && strcmp(b, v) != 0) ||
	    (fallback != NULL && v != fallback && !same(v, fallback)))
		*conflict = true;
	return v;
}

/* The original request as the proxy describes it: nginx's X-Original-*,
 * Traefik's and Caddy's X-Forwarded-*, or Envoy's ext_authz form (the
 * original method, the path after /authz). Proxies pass the client's own
 * headers along to the auth call, so a client could add the header another
 * proxy uses: every form present must agree, or the request is refused. */
static enum am_err
original_request(struct http_req *rq, const char **method, const char **target, struct am_error *e)
{
	bool envoy = strncmp(rq->path, "/authz/", 7) == 0, conflict = false;

	*target = agreed(rq, "X-Original-URI", "X-Forwarded-Uri", envoy ? rq->path + 6 : NULL,
			 &conflict);
	*method = agreed(rq, "X-Original-Method", "X-Forwarded-Method",
			 envoy || (http_header(rq, "X-Original-Method") == NULL &&
				   http_header(rq, "X-Forwarded-Method") == NULL)
				 ? rq->method
				 : NULL,
			 &conflict);
	if (conflict)
		return am_fail(e, AM_E_INVALID_REQUEST,
			       "the forwarding headers disagree about the original request");
	/* The path we see after /authz is already percent-decoded by the HTTP
	 * layer, so on its own it cannot tell /a%2F..%2Fb from /a/../b: Envoy
	 * must also send the raw one (headers_to_add x-original-uri), which
	 * must then match it. */
	if (*target == NULL || (envoy && http_header(rq, "X-Original-URI") == NULL &&
				http_header(rq, "X-Forwarded-Uri") == NULL))
		return am_fail(e, AM_E_INVALID_REQUEST,
			       "send the original request as X-Original-URI (nginx, Envoy) or "
			       "X-Forwarded-Uri (Traefik, Caddy)");
	return AM_OK;
}

/* The scheme://host[:port] of the protected resource identifier: the
 * origin a proxied request was made to, for a DPoP proof's htu. The
 * configured value, never the request's Host or X-Forwarded-Host, which a
 * client could set. */
static const char *
resource_origin(const char *resource, char *out, size_t cap)
{
	const char *p = strstr(resource, "://");
	size_t n = p == NULL ? strlen(resource) : (size_t)(p - resource) + 3 + strcspn(p + 3, "/");

	snprintf(out, cap, "%.*s", (int)n, resource);
	return out;
}

enum am_err
h_authz(void *app, struct http_req *rq, struct http_resp *rs, struct am_error *e)
{
	struct app *a = app;
	const char *method, *target, *host = http_header(rq, "X-Forwarded-Host");
	char origin[300];
	struct store_auth auth;
	enum am_err rc;

	http_add_header(rs, "Cache-Control", "no-store");
	if ((rc = original_request(rq, &method, &target, e)) != AM_OK) {
		am_metrics_inc(AM_M_GATE_DECISIONS, "bad_request", NULL);
		return rc;
	}
	rc = svc_gate(a, rq, rs, method, resource_origin(a->cfg->resource, origin, sizeof(origin)),
		      target, &auth, e);
	log_info("gate decision=%s method=%.16s host=%.100s ip=%s credential=%s",
		 rc == AM_OK ? "allow" : am_err_name(rc), header_safe(method) ? method : "?",
		 header_safe(host) ? host : "-", rq->ip, rc == AM_OK ? auth.cred.id : "-");
	if (rc != AM_OK)
		return rc;
	identity_header(rs, "X-Authmd-User", auth.cred.user_id);
	identity_header(rs, "X-Authmd-Email", auth.user_email);
	identity_header(rs, "X-Authmd-Scopes", auth.cred.scopes);
	identity_header(rs, "X-Authmd-Registration", auth.cred.registration_id);
	identity_header(rs, "X-Authmd-Credential-Type", store_cred_type_name(auth.cred.type));
	identity_header(rs, "X-Authmd-Source", auth.cred.source);
	http_reply_json(rs, 200, json_pack("{s:b}", "allowed", 1));
	return AM_OK;
}
