/* RFC 9728 protected-resource metadata and RFC 8414 authorization-server
 * metadata with the auth.md v0.1 agent_auth block. Both are rendered once at
 * start-up from the configuration and served as fixed bytes. */
#include <stdio.h>
#include <string.h>

#include "core/json.h"
#include "core/protocol.h"
#include "core/str.h"
#include "core/url.h"
#include "flows/dpop.h"
#include "service/service.h"

bool
app_id_jag_enabled(const struct am_config *cfg)
{
	return cfg->flow_id_jag && cfg->nproviders > 0;
}

/* The fields the PRM and the AS metadata share. */
static json_t *
resource_fields(const struct am_config *cfg)
{
	json_t *doc = json_object();

	json_object_set_new(doc, "resource", json_string(cfg->resource));
	json_object_set_new(doc, "resource_name", json_string(cfg->resource_name));
	if (cfg->resource_logo_uri[0] != '\0')
		json_object_set_new(doc, "resource_logo_uri", json_string(cfg->resource_logo_uri));
	json_object_set_new(doc, "authorization_servers", json_pack("[s]", cfg->public_url));
	json_object_set_new(doc, "scopes_supported", am_json_scopes(cfg->scopes_supported));
	json_object_set_new(doc, "bearer_methods_supported", json_pack("[s]", "header"));
	return doc;
}

static json_t *
agent_auth_block(const struct am_config *cfg)
{
	json_t *b = json_object(), *types = json_array();
	bool id_jag = app_id_jag_enabled(cfg);
	bool assertions = cfg->flow_verified_email || id_jag;
	char url[SVC_URL_MAX];

#define URL(path) (snprintf(url, sizeof(url), "%s%s", cfg->public_url, path), url)
	json_object_set_new(b, "skill", json_string(URL("/auth.md")));
	json_object_set_new(b, "register_uri", json_string(URL("/agent/auth")));
	if (cfg->flow_anonymous || cfg->flow_verified_email)
		json_object_set_new(b, "claim_uri", json_string(URL("/agent/auth/claim")));
	if (id_jag)
		json_object_set_new(b, "revocation_uri", json_string(URL("/agent/auth/revoke")));
	/* v0.6 names (issue 13), beside the v0.1 ones: each points at its
	 * generation's endpoint. */
	json_object_set_new(b, "identity_endpoint", json_string(URL("/agent/identity")));
	if (cfg->flow_anonymous || cfg->flow_service_auth)
		json_object_set_new(b, "claim_endpoint", json_string(URL("/agent/identity/claim")));
	if (id_jag)
		json_object_set_new(b, "events_endpoint", json_string(URL("/agent/event/notify")));
#undef URL
	if (cfg->flow_anonymous)
		json_array_append_new(types, json_string("anonymous"));
	if (assertions)
		json_array_append_new(types, json_string("identity_assertion"));
	/* v0.6's type beside v0.1's verified_email (still listed under
	 * identity_assertion for /agent/auth): one list serves both */
	if (cfg->flow_service_auth)
		json_array_append_new(types, json_string("service_auth"));
	json_object_set_new(b, "identity_types_supported", types);
	if (cfg->flow_anonymous)
		json_object_set_new(b, "anonymous",
				    json_pack("{s:[s]}", "credential_types_supported", "api_key"));
	if (assertions) {
		json_t *at = json_array();

		if (id_jag)
			json_array_append_new(at, json_string(AM_ID_JAG_URN));
		if (cfg->flow_verified_email)
			json_array_append_new(at, json_string("verified_email"));
		json_object_set_new(b, "identity_assertion",
				    json_pack("{s:o, s:[s, s]}", "assertion_types_supported", at,
					      "credential_types_supported", "access_token",
					      "api_key"));
		if (id_jag && cfg->v06_publish_issuers) {
			json_t *iss = json_array();

			for (size_t i = 0; i < cfg->nproviders; i++)
				json_array_append_new(iss, json_string(cfg->providers[i].issuer));
			json_object_set_new(json_object_get(b, "identity_assertion"),
					    "issuers_supported", iss);
		}
	}
	if (id_jag)
		json_object_set_new(b, "events_supported", json_pack("[s]", AM_EVENT_REVOKED));
	return b;
}

enum am_err
discovery_build(struct app *a, struct am_error *e)
{
	const struct am_config *cfg = a->cfg;
	char origin[256];
	const char *path;
	json_t *prm, *as;

	/* RFC 9728 section 3.1: the well-known segment goes between the host
	 * and the resource's path. A resource at the root has only the root
	 * location; one with a path also gets the path-inserted one, which is
	 * where 401s point so RFC-strict agents find a matching `resource`. */
	if (!am_url_split(cfg->resource, origin, sizeof(origin), &path))
		return am_fail(e, AM_E_INTERNAL, "[server] resource is not an absolute URL");
	if (strcmp(path, "") == 0 || strcmp(path, "/") == 0) {
		snprintf(a->prm_url, sizeof(a->prm_url),
			 "%.255s/.well-known/oauth-protected-resource", origin);
	} else {
		snprintf(a->prm_path_inserted, sizeof(a->prm_path_inserted),
			 "/.well-known/oauth-protected-resource%.255s", path);
		snprintf(a->prm_url, sizeof(a->prm_url), "%.255s%.300s", origin,
			 a->prm_path_inserted);
	}
	prm = resource_fields(cfg);
	a->prm_json = json_dumps(prm, JSON_INDENT(2));
	json_decref(prm);
	/* RFC 8414 requires issuer; it equals authorization_servers[0] to the
	 * byte, as public_url was normalised to carry no trailing slash. */
	as = json_pack("{s:s}", "issuer", cfg->public_url);
	json_object_update_new(as, resource_fields(cfg));
	json_object_set_new(as, "agent_auth", agent_auth_block(cfg));
	/* gate: RFC 7009 always (agents revoke their own credential), RFC 7662
	 * when some resource server may call it */
	json_object_set_new(as, "revocation_endpoint",
			    json_sprintf("%s/oauth2/revoke", cfg->public_url));
	json_object_set_new(as, "revocation_endpoint_auth_methods_supported",
			    json_pack("[s]", "none"));
	/* v0.6 (issue 13): RFC 8414 token endpoint and keys; the ID-JAG
	 * draft's grant profile, which needs jwt-bearer listed. */
	json_object_set_new(as, "token_endpoint", json_sprintf("%s/oauth2/token", cfg->public_url));
	json_object_set_new(as, "token_endpoint_auth_methods_supported", json_pack("[s]", "none"));
	json_object_set_new(as, "jwks_uri",
			    json_sprintf("%s/.well-known/jwks.json", cfg->public_url));
	json_object_set_new(as, "grant_types_supported",
			    json_pack("[s, s]", AM_GRANT_JWT_BEARER, AM_GRANT_CLAIM));
	if (app_id_jag_enabled(cfg))
		json_object_set_new(as, "authorization_grant_profiles_supported",
				    json_pack("[s]", AM_ID_JAG_PROFILE));
	if (cfg->nintrospection_clients > 0) {
		json_object_set_new(as, "introspection_endpoint",
				    json_sprintf("%s/oauth2/introspect", cfg->public_url));
		json_object_set_new(as, "introspection_endpoint_auth_methods_supported",
				    json_pack("[s]", "client_secret_basic"));
	}
	/* RFC 9449 5.1: DPoP proofs accepted at the token endpoint (flows/dpop.c) */
	json_object_set_new(as, "dpop_signing_alg_values_supported", flow_dpop_algs_json());
	a->as_json = json_dumps(as, JSON_INDENT(2));
	json_decref(as);
	if (a->prm_json == NULL || a->as_json == NULL)
		return am_fail(e, AM_E_INTERNAL, "out of memory");
	return AM_OK;
}

static enum am_err
serve(struct http_resp *rs, const char *doc)
{
	http_reply_text(rs, 200, "application/json", doc, strlen(doc));
	http_add_header(rs, "Cache-Control", "public, max-age=300");
	http_add_header(rs, "Access-Control-Allow-Origin", "*");
	return AM_OK;
}

enum am_err
h_prm(void *app, struct http_req *rq, struct http_resp *rs, struct am_error *e)
{
	(void)rq, (void)e;
	return serve(rs, ((struct app *)app)->prm_json);
}

enum am_err
h_as_metadata(void *app, struct http_req *rq, struct http_resp *rs, struct am_error *e)
{
	(void)rq, (void)e;
	return serve(rs, ((struct app *)app)->as_json);
}
