/* The agent's side of auth.md over libcurl and jansson. */
#include <ctype.h>
#include <curl/curl.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "agent/credstore.h"
#include "agent/internal.h"
#include "agent/proofkey.h"
#include "authmd/client.h"
#include "core/protocol.h"
#include "core/str.h"

static enum authmd_status
get_json(struct authmd_client *c, const char *url, const char *bearer, const char *what,
	 json_t **out, struct authmd_error *err)
{
	struct agent_result r;
	enum authmd_status st = agent_fetch(c, "GET", url, bearer, NULL, NULL, NULL, &r, err);

	if (st != AUTHMD_OK)
		return st;
	return agent_json_answer(&r, what, out, err);
}

/* ---- client ---- */

enum authmd_status
authmd_client_new(const struct authmd_options *opt, struct authmd_client **out,
		  struct authmd_error *err)
{
	struct authmd_client *c = calloc(1, sizeof(*c));

	if (c == NULL)
		return cs_fail(err, AUTHMD_ERR_FAILED, NULL, "out of memory");
	if (opt != NULL && opt->store_path != NULL) {
		if (!am_copy(c->store_path, sizeof(c->store_path), opt->store_path)) {
			free(c);
			return cs_fail(err, AUTHMD_ERR_USAGE, NULL, "store path too long");
		}
	} else if (!cs_default_path(c->store_path, sizeof(c->store_path))) {
		free(c);
		return cs_fail(err, AUTHMD_ERR_STORE, "Set HOME or XDG_CONFIG_HOME.",
			       "no place for the credentials file");
	}
	c->timeout_ms = opt != NULL && opt->timeout_ms > 0 ? opt->timeout_ms : 10000;
	c->max_retries = opt != NULL && opt->max_retries >= 0 ? opt->max_retries : 3;
	c->max_retry_after_s =
		opt != NULL && opt->max_retry_after_s > 0 ? opt->max_retry_after_s : 60;
	c->allow_missing_issuer = opt != NULL && opt->allow_missing_issuer;
	c->protocol = opt != NULL ? opt->protocol : AUTHMD_PROTOCOL_AUTO;
	c->dpop = opt != NULL && opt->dpop;
	if (c->protocol != AUTHMD_PROTOCOL_AUTO && c->protocol != AUTHMD_PROTOCOL_V01 &&
	    c->protocol != AUTHMD_PROTOCOL_V06) {
		free(c);
		return cs_fail(err, AUTHMD_ERR_USAGE, NULL, "protocol must be auto, v0.1 or v0.6");
	}
	*out = c;
	return AUTHMD_OK;
}

void
authmd_client_free(struct authmd_client *c)
{
	if (c != NULL)
		proofkey_free(c->key);
	free(c);
}

/* ---- discovery ---- */

/* The quoted resource_metadata parameter of a Bearer challenge. */
static bool
resource_metadata(const char *www_auth, char *out, size_t cap)
{
	const char *p = strstr(www_auth, "resource_metadata=\"");
	const char *end;

	if (strncasecmp(www_auth, "Bearer", 6) != 0 || p == NULL)
		return false;
	p += strlen("resource_metadata=\"");
	end = strchr(p, '"');
	if (end == NULL || (size_t)(end - p) >= cap)
		return false;
	memcpy(out, p, (size_t)(end - p));
	out[end - p] = '\0';
	return true;
}

static bool
array_has(const json_t *arr, const char *value)
{
	size_t i;
	json_t *v;

	json_array_foreach(arr, i, v)
	{
		if (json_is_string(v) && strcmp(json_string_value(v), value) == 0)
			return true;
	}
	return false;
}

static enum authmd_status
check_issuer(const struct authmd_client *c, const json_t *as, const char *as_url,
	     struct authmd_discovery *d, struct authmd_error *err)
{
	const json_t *v = json_object_get(as, "issuer");

	if (v == NULL || json_is_null(v)) {
		if (c->allow_missing_issuer) {
			d->issuer_missing = true;
			return AUTHMD_OK;
		}
		return cs_fail(err, AUTHMD_ERR_PROTOCOL,
			       "Do not send credentials there. If this is an old service that "
			       "publishes no issuer and you trust it, use --allow-missing-issuer.",
			       "the authorization server metadata at %s has no issuer, so it "
			       "cannot be shown to belong to %s",
			       as_url, d->issuer);
	}
	if (!json_is_string(v) || strcmp(json_string_value(v), d->issuer) != 0)
		return cs_fail(err, AUTHMD_ERR_PROTOCOL,
			       "Do not send credentials there: the metadata may be forged.",
			       "the authorization server metadata at %s names issuer \"%.200s\", "
			       "not %s",
			       as_url, json_is_string(v) ? json_string_value(v) : "(not a string)",
			       d->issuer);
	return AUTHMD_OK;
}

/* v0.6 when offered (or forced), v0.1 otherwise (or when forced); the
 * generation picked must have its endpoints, on the issuer's origin like
 * every endpoint the agent sends a secret to. */
static enum authmd_status
pick_protocol(const struct authmd_client *c, struct authmd_discovery *d, struct authmd_error *err)
{
	bool v06 = c->protocol == AUTHMD_PROTOCOL_V06 ||
		   (c->protocol == AUTHMD_PROTOCOL_AUTO && d->v06_offered);

	am_copy(d->protocol, sizeof(d->protocol), v06 ? "v0.6" : "v0.1");
	if (v06 && !d->v06_offered)
		return cs_fail(err, AUTHMD_ERR_PROTOCOL, "Run with --protocol v0.1 or auto.",
			       "the service does not offer v0.6 (no identity_endpoint and "
			       "token_endpoint)");
	if (!v06 && d->register_uri[0] == '\0')
		return cs_fail(err, AUTHMD_ERR_PROTOCOL,
			       d->v06_offered ? "Run with --protocol v0.6 or auto." : NULL,
			       "agent_auth has no register_uri (v0.1)");
	return AUTHMD_OK;
}

enum authmd_status
authmd_discover(struct authmd_client *c, const char *url, struct authmd_discovery *out,
		struct authmd_error *err)
{
	struct authmd_discovery d;
	char origin[AUTHMD_URL_MAX], res_origin[AUTHMD_URL_MAX], as_url[AUTHMD_URL_MAX + 64];
	struct agent_result r;
	json_t *prm = NULL, *as = NULL, *aa, *ia;
	size_t i;
	json_t *v;
	enum authmd_status st;

	memset(&d, 0, sizeof(d));
	if (!am_copy(d.url, sizeof(d.url), url) || !cs_origin(url, origin, sizeof(origin)))
		return cs_fail(err, AUTHMD_ERR_USAGE, NULL, "not an absolute http(s) URL: %s", url);
	/* 1. Probe: a 401 names the metadata. */
	if ((st = agent_fetch(c, "GET", url, NULL, NULL, NULL, NULL, &r, err)) != AUTHMD_OK)
		return st;
	d.header_found =
		r.status == 401 && resource_metadata(r.www_auth, d.prm_url, sizeof(d.prm_url));
	agent_result_clear(&r);
	if (!d.header_found)
		snprintf(d.prm_url, sizeof(d.prm_url),
			 "%.400s/.well-known/oauth-protected-resource", origin);
	/* 2. The protected-resource metadata, whose resource must be on the
	 *    origin we asked (RFC 9728 section 3.3). */
	if ((st = get_json(c, d.prm_url, NULL, "the protected resource metadata", &prm, err)) !=
	    AUTHMD_OK)
		return st;
	agent_copy_str(prm, "resource", d.resource, sizeof(d.resource));
	if (d.resource[0] == '\0' || !cs_origin(d.resource, res_origin, sizeof(res_origin)) ||
	    strcmp(res_origin, origin) != 0) {
		st = cs_fail(err, AUTHMD_ERR_PROTOCOL,
			     "Do not send credentials there: the metadata may be forged.",
			     "the metadata at %s names resource \"%s\", which is not on %s",
			     d.prm_url, d.resource, origin);
		goto out;
	}
	agent_copy_str(prm, "resource_name", d.resource_name, sizeof(d.resource_name));
	agent_copy_str(prm, "resource_logo_uri", d.resource_logo_uri, sizeof(d.resource_logo_uri));
	json_array_foreach(json_object_get(prm, "scopes_supported"), i, v)
	{
		if (json_is_string(v) &&
		    strlen(d.scopes) + json_string_length(v) + 2 < sizeof(d.scopes)) {
			if (d.scopes[0] != '\0')
				strcat(d.scopes, " ");
			strcat(d.scopes, json_string_value(v));
		}
	}
	v = json_array_get(json_object_get(prm, "authorization_servers"), 0);
	if (!json_is_string(v) || !am_copy(d.issuer, sizeof(d.issuer), json_string_value(v))) {
		st = cs_fail(err, AUTHMD_ERR_PROTOCOL, NULL,
			     "the metadata names no authorization "
			     "server");
		goto out;
	}
	/* 3. The authorization server's metadata and its agent_auth block. */
	snprintf(as_url, sizeof(as_url), "%.*s/.well-known/oauth-authorization-server",
		 (int)(strlen(d.issuer) - (d.issuer[strlen(d.issuer) - 1] == '/')), d.issuer);
	if ((st = get_json(c, as_url, NULL, "the authorization server metadata", &as, err)) !=
	    AUTHMD_OK)
		goto out;
	/* RFC 8414 section 3.3: the issuer must be the identifier the
	 * metadata URL was formed from. A document without one cannot be
	 * told from one served by someone else, so it is refused unless the
	 * caller accepts that for an old service. */
	if ((st = check_issuer(c, as, as_url, &d, err)) != AUTHMD_OK)
		goto out;
	if (!json_is_object(aa = json_object_get(as, "agent_auth"))) {
		st = cs_fail(err, AUTHMD_ERR_PROTOCOL, "This service does not support auth.md.",
			     "the authorization server metadata has no agent_auth block");
		goto out;
	}
	agent_copy_str(aa, "skill", d.skill, sizeof(d.skill));
	agent_copy_str(aa, "register_uri", d.register_uri, sizeof(d.register_uri));
	agent_copy_str(aa, "claim_uri", d.claim_uri, sizeof(d.claim_uri));
	agent_copy_str(aa, "revocation_uri", d.revocation_uri, sizeof(d.revocation_uri));
	d.anonymous = array_has(json_object_get(aa, "identity_types_supported"), "anonymous");
	ia = json_object_get(aa, "identity_assertion");
	if (array_has(json_object_get(aa, "identity_types_supported"), "identity_assertion")) {
		d.verified_email = array_has(json_object_get(ia, "assertion_types_supported"),
					     "verified_email");
		d.id_jag =
			array_has(json_object_get(ia, "assertion_types_supported"), AM_ID_JAG_URN);
	}
	agent_copy_str(as, "token_endpoint", d.token_endpoint, sizeof(d.token_endpoint));
	agent_copy_str(aa, "identity_endpoint", d.identity_endpoint, sizeof(d.identity_endpoint));
	agent_copy_str(aa, "claim_endpoint", d.claim_endpoint, sizeof(d.claim_endpoint));
	agent_copy_str(aa, "events_endpoint", d.events_endpoint, sizeof(d.events_endpoint));
	d.v06_offered = d.identity_endpoint[0] != '\0' && d.token_endpoint[0] != '\0';
	if ((st = pick_protocol(c, &d, err)) != AUTHMD_OK)
		goto out;
	*out = d;
	st = AUTHMD_OK;
out:
	json_decref(prm);
	json_decref(as);
	return st;
}

/* ---- the store, one transaction per call ---- */

/* Loads the store, forgetting claim tokens that have expired (they are
 * kept only while they can still be used). */
static enum authmd_status
load(struct authmd_client *c, json_t **doc, struct authmd_error *err)
{
	enum authmd_status st = cs_load(c->store_path, doc, err);

	if (st == AUTHMD_OK && cs_prune(*doc, time(NULL)) &&
	    (st = cs_save(c->store_path, *doc, err)) != AUTHMD_OK)
		json_decref(*doc);
	return st;
}

enum authmd_status
agent_store_put(struct authmd_client *c, const struct authmd_credential *cred,
		struct authmd_error *err)
{
	json_t *doc;
	enum authmd_status st;

	if ((st = load(c, &doc, err)) != AUTHMD_OK)
		return st;
	cs_put(doc, cred);
	st = cs_save(c->store_path, doc, err);
	json_decref(doc);
	return st;
}

enum authmd_status
authmd_credential_for(struct authmd_client *c, const char *url, struct authmd_credential *out,
		      struct authmd_error *err)
{
	json_t *doc;
	const char *key;
	enum authmd_status st;

	if ((st = load(c, &doc, err)) != AUTHMD_OK)
		return st;
	key = cs_match(doc, url);
	if (key == NULL || !cs_get(doc, key, out))
		st = cs_fail(err, AUTHMD_ERR_ACTION_NEEDED, "Run: authmd register URL",
			     "no credential is stored for %s", url);
	json_decref(doc);
	return st;
}

enum authmd_status
authmd_credentials(struct authmd_client *c, struct authmd_credential **out, size_t *n,
		   struct authmd_error *err)
{
	json_t *doc, *v;
	const char *key;
	enum authmd_status st;
	size_t i = 0;

	if ((st = load(c, &doc, err)) != AUTHMD_OK)
		return st;
	*n = json_object_size(json_object_get(doc, "credentials"));
	if ((*out = calloc(*n + 1, sizeof(**out))) == NULL) {
		json_decref(doc);
		return cs_fail(err, AUTHMD_ERR_FAILED, NULL, "out of memory");
	}
	json_object_foreach(json_object_get(doc, "credentials"), key, v)
	{
		if (cs_get(doc, key, &(*out)[i]))
			i++;
	}
	*n = i;
	json_decref(doc);
	return AUTHMD_OK;
}

enum authmd_status
authmd_forget(struct authmd_client *c, const char *resource, struct authmd_error *err)
{
	json_t *doc;
	const char *key;
	enum authmd_status st;

	if ((st = load(c, &doc, err)) != AUTHMD_OK)
		return st;
	key = cs_match(doc, resource);
	if (key == NULL) {
		json_decref(doc);
		return cs_fail(err, AUTHMD_ERR_ACTION_NEEDED, NULL, "nothing is stored for %s",
			       resource);
	}
	cs_del(doc, key);
	st = cs_save(c->store_path, doc, err);
	json_decref(doc);
	return st;
}

/* ---- registration ---- */

/* Fills cred from a registration answer and stores it. */
static enum authmd_status
keep_registration(struct authmd_client *c, const struct authmd_discovery *d, const char *method,
		  json_t *ans, struct authmd_credential *cred, struct authmd_error *err)
{
	memset(cred, 0, sizeof(*cred));
	am_copy(cred->protocol, sizeof(cred->protocol), "v0.1");
	am_copy(cred->resource, sizeof(cred->resource), d->resource);
	am_copy(cred->issuer, sizeof(cred->issuer), d->issuer);
	am_copy(cred->register_uri, sizeof(cred->register_uri), d->register_uri);
	am_copy(cred->method, sizeof(cred->method), method);
	agent_copy_str(ans, "registration_id", cred->registration_id,
		       sizeof(cred->registration_id));
	agent_copy_str(ans, "credential_type", cred->credential_type,
		       sizeof(cred->credential_type));
	agent_copy_str(ans, "credential", cred->credential, sizeof(cred->credential));
	agent_copy_str(ans, "credential_expires", cred->credential_expires,
		       sizeof(cred->credential_expires));
	agent_scopes_of(json_object_get(ans, "scopes"), cred->scopes, sizeof(cred->scopes));
	agent_scopes_of(json_object_get(ans, "post_claim_scopes"), cred->post_claim_scopes,
			sizeof(cred->post_claim_scopes));
	agent_copy_str(ans, "claim_token", cred->claim_token, sizeof(cred->claim_token));
	agent_copy_str(ans, "claim_token_expires", cred->claim_token_expires,
		       sizeof(cred->claim_token_expires));
	agent_copy_str(ans, "claim_url", cred->claim_uri, sizeof(cred->claim_uri));
	if (cred->claim_uri[0] == '\0')
		am_copy(cred->claim_uri, sizeof(cred->claim_uri), d->claim_uri);
	am_copy(cred->claim_state, sizeof(cred->claim_state),
		cred->claim_token[0] == '\0'   ? "none"
		: strcmp(method, "email") == 0 ? "pending"
					       : "unclaimed");
	if (cred->registration_id[0] == '\0' ||
	    (cred->credential[0] == '\0' && cred->claim_token[0] == '\0'))
		return cs_fail(
			err, AUTHMD_ERR_PROTOCOL, NULL,
			"the registration answer has neither a credential nor a claim token");
	return agent_store_put(c, cred, err);
}

/* "DPoP: <proof>" for (htm, htu, access_token) with the client's key
 * (loaded or made on first use); caller frees. */
static enum authmd_status
dpop_header(struct authmd_client *c, const char *htm, const char *htu, const char *access_token,
	    char **out, struct authmd_error *err)
{
	char *proof = NULL;
	struct am_buf b = {0};
	enum authmd_status st;

	if (c->key == NULL && (st = proofkey_load(c->store_path, &c->key, err)) != AUTHMD_OK)
		return st;
	if ((st = proofkey_proof(c->key, htm, htu, access_token, &proof, err)) != AUTHMD_OK)
		return st;
	am_buf_printf(&b, "DPoP: %s", proof);
	free(proof);
	*out = am_buf_take(&b);
	return AUTHMD_OK;
}

/* Step 5 of the v0.6 AUTH.md: the identity_assertion for an access token at
 * token_endpoint (RFC 7523 jwt-bearer, RFC 8707 resource). Fills
 * cred->credential and its type, expiry and scopes; does not store. */
enum authmd_status
agent_token_exchange(struct authmd_client *c, struct authmd_credential *cred,
		     struct authmd_error *err)
{
	struct am_buf form = {.secret = true};
	struct agent_result r;
	json_t *ans = NULL;
	const char *scope;
	json_t *expires_in;
	enum authmd_status st;

	if (cred->identity_assertion[0] == '\0' || cred->token_endpoint[0] == '\0')
		return cs_fail(err, AUTHMD_ERR_PROTOCOL, "Run: authmd register URL",
			       "the v0.6 registration for %s has no identity assertion to exchange",
			       cred->resource);
	if (!agent_form_add(&form, "grant_type", AM_GRANT_JWT_BEARER) ||
	    !agent_form_add(&form, "assertion", cred->identity_assertion) ||
	    !agent_form_add(&form, "resource", cred->resource)) {
		am_buf_free(&form);
		return cs_fail(err, AUTHMD_ERR_FAILED, NULL, "out of memory");
	}
	{
		char *dpop = NULL;
		const char *hdrs[2] = {NULL, NULL};

		if (c->dpop && (st = dpop_header(c, "POST", cred->token_endpoint, NULL, &dpop,
						 err)) != AUTHMD_OK) {
			am_buf_free(&form);
			return st;
		}
		hdrs[0] = dpop;
		st = agent_fetch(c, "POST", cred->token_endpoint, NULL, hdrs,
				 "application/x-www-form-urlencoded", form.data, &r, err);
		free(dpop);
	}
	OPENSSL_cleanse(form.data, form.len);
	am_buf_free(&form);
	if (st != AUTHMD_OK ||
	    (st = agent_json_answer(&r, "the token exchange", &ans, err)) != AUTHMD_OK)
		return st;
	if (!json_is_string(json_object_get(ans, "access_token")) ||
	    !am_copy(cred->credential, sizeof(cred->credential),
		     json_string_value(json_object_get(ans, "access_token")))) {
		json_decref(ans);
		return cs_fail(err, AUTHMD_ERR_PROTOCOL, NULL,
			       "the token endpoint answered no (usable) access_token");
	}
	am_copy(cred->credential_type, sizeof(cred->credential_type), "access_token");
	agent_copy_str(ans, "token_type", cred->token_type, sizeof(cred->token_type));
	if (c->dpop && strcasecmp(cred->token_type, "DPoP") != 0) {
		OPENSSL_cleanse(cred->credential, sizeof(cred->credential));
		json_decref(ans);
		return cs_fail(
			err, AUTHMD_ERR_PROTOCOL, "Run without --dpop.",
			"--dpop: the token endpoint did not bind the access token (token_type "
			"\"%s\")",
			cred->token_type);
	}
	expires_in = json_object_get(ans, "expires_in");
	cred->credential_expires[0] = '\0';
	if (json_is_integer(expires_in) && json_integer_value(expires_in) > 0)
		agent_utc_after(json_integer_value(expires_in), cred->credential_expires,
				sizeof(cred->credential_expires));
	if ((scope = json_string_value(json_object_get(ans, "scope"))) != NULL)
		am_copy(cred->scopes, sizeof(cred->scopes), scope);
	json_decref(ans);
	return AUTHMD_OK;
}

/* Proposal (b)'s identity.refresh_token of an /agent/identity (or
 * claim/complete) answer, kept with the credential ("" when the service
 * hands none out). */
static void
keep_refresh(const json_t *ans, struct authmd_credential *cred)
{
	const json_t *ident = json_object_get(ans, "identity");

	agent_copy_str(ident, "refresh_token", cred->refresh_token, sizeof(cred->refresh_token));
	agent_copy_str(ident, "refresh_token_expires_at", cred->refresh_expires,
		 sizeof(cred->refresh_expires));
}

/* The refresh token for a new assertion (type: refresh at the identity
 * endpoint). The old token is spent once the service answered, so the new
 * one is stored before anything else can fail. */
static enum authmd_status
identity_refresh(struct authmd_client *c, struct authmd_credential *cred, struct authmd_error *err)
{
	json_t *ans = NULL, *req;
	enum authmd_status st;

	if (strcmp(cred->protocol, "v0.6") != 0 || cred->refresh_token[0] == '\0' ||
	    cred->register_uri[0] == '\0')
		return cs_fail(err, AUTHMD_ERR_REFUSED, "Run: authmd register URL",
			       "the registration for %s has no refresh token", cred->resource);
	req = json_pack("{s:s, s:s}", "type", "refresh", "refresh_token", cred->refresh_token);
	if (req == NULL)
		return cs_fail(err, AUTHMD_ERR_FAILED, NULL, "out of memory");
	st = agent_post_json(c, cred->register_uri, NULL, req, "refresh", &ans, err);
	if (st != AUTHMD_OK) {
		if (err != NULL && strcmp(err->code, "invalid_grant") == 0) {
			err->status = st = AUTHMD_ERR_ACTION_NEEDED;
			err->advice = "The refresh token expired or was revoked: run authmd "
				      "register URL again.";
		}
		return st;
	}
	OPENSSL_cleanse(cred->refresh_token, sizeof(cred->refresh_token));
	agent_copy_str(ans, "identity_assertion", cred->identity_assertion,
		 sizeof(cred->identity_assertion));
	agent_copy_str(ans, "assertion_expires", cred->assertion_expires,
		 sizeof(cred->assertion_expires));
	keep_refresh(ans, cred);
	json_decref(ans);
	if (cred->identity_assertion[0] == '\0')
		return cs_fail(err, AUTHMD_ERR_PROTOCOL, NULL,
			       "the refresh answer has no identity_assertion");
	return agent_store_put(c, cred, err);
}

/* The exchange, after a rotation when the assertion has expired (or is
 * about to) and a refresh token exists. */
static enum authmd_status
exchange_fresh(struct authmd_client *c, struct authmd_credential *cred, struct authmd_error *err)
{
	time_t until = cs_parse_utc(cred->assertion_expires);
	enum authmd_status st;

	if (cred->refresh_token[0] != '\0' && until != 0 && until <= time(NULL) + 5 &&
	    (st = identity_refresh(c, cred, err)) != AUTHMD_OK)
		return st;
	return agent_token_exchange(c, cred, err);
}

enum authmd_status
authmd_identity_refresh(struct authmd_client *c, const char *resource,
			struct authmd_credential *out, struct authmd_error *err)
{
	struct authmd_credential cred;
	enum authmd_status st;

	if ((st = authmd_credential_for(c, resource, &cred, err)) != AUTHMD_OK)
		return st;
	if ((st = identity_refresh(c, &cred, err)) == AUTHMD_OK &&
	    (st = agent_token_exchange(c, &cred, err)) == AUTHMD_OK &&
	    (st = agent_store_put(c, &cred, err)) == AUTHMD_OK && out != NULL)
		*out = cred;
	OPENSSL_cleanse(&cred, sizeof(cred));
	return st;
}

/* The registration fields every v0.6 answer carries (200, or the 401 of a
 * first link), into a fresh cred. */
static void
v06_fields(const struct authmd_discovery *d, const char *method, const json_t *ans,
	   struct authmd_credential *cred)
{
	memset(cred, 0, sizeof(*cred));
	am_copy(cred->resource, sizeof(cred->resource), d->resource);
	am_copy(cred->issuer, sizeof(cred->issuer), d->issuer);
	am_copy(cred->register_uri, sizeof(cred->register_uri), d->identity_endpoint);
	am_copy(cred->token_endpoint, sizeof(cred->token_endpoint), d->token_endpoint);
	am_copy(cred->protocol, sizeof(cred->protocol), "v0.6");
	am_copy(cred->method, sizeof(cred->method), method);
	agent_copy_str(ans, "registration_id", cred->registration_id,
		       sizeof(cred->registration_id));
	agent_copy_str(ans, "identity_assertion", cred->identity_assertion,
		       sizeof(cred->identity_assertion));
	agent_copy_str(ans, "assertion_expires", cred->assertion_expires,
		       sizeof(cred->assertion_expires));
	keep_refresh(ans, cred);
	agent_scopes_of(json_object_get(ans, json_object_get(ans, "pre_claim_scopes") != NULL
						     ? "pre_claim_scopes"
						     : "scopes"),
			cred->scopes, sizeof(cred->scopes));
	agent_scopes_of(json_object_get(ans, "post_claim_scopes"), cred->post_claim_scopes,
			sizeof(cred->post_claim_scopes));
	/* The claim token is kept for the user_code ceremony (claims.c). */
	agent_copy_str(ans, "claim_token", cred->claim_token, sizeof(cred->claim_token));
	agent_copy_str(ans, "claim_token_expires", cred->claim_token_expires,
		       sizeof(cred->claim_token_expires));
	agent_copy_str(ans, "claim_url", cred->claim_uri, sizeof(cred->claim_uri));
	if (cred->claim_uri[0] == '\0')
		am_copy(cred->claim_uri, sizeof(cred->claim_uri), d->claim_endpoint);
	am_copy(cred->claim_state, sizeof(cred->claim_state),
		cred->claim_token[0] != '\0' ? "unclaimed" : "none");
}

/* The 401s of /agent/identity (v0.5): login_required (the provider must
 * sign the user in again) and interaction_required (a first link the
 * account owner must confirm; with a claim block, by the user_code
 * ceremony, whose attempt is stored for the caller to poll). Anything else
 * is the service's error. Clears r. */
static enum authmd_status
v06_refused(struct authmd_client *c, const struct authmd_discovery *d, const char *method,
	    struct agent_result *r, struct authmd_error *err)
{
	json_t *doc = json_loadb(r->body.data, r->body.len, 0, NULL);
	const char *code = json_string_value(json_object_get(doc, "error"));
	struct authmd_credential cred;
	enum authmd_status st = agent_service_error(r, "registration", err);

	if (r->status == 401 && code != NULL && strcmp(code, "login_required") == 0) {
		const json_t *max_age = json_object_get(doc, "max_age");

		st = cs_fail(err, AUTHMD_ERR_ACTION_NEEDED,
			     "The provider must sign the user in again (a fresh authentication), "
			     "then run authmd register again.",
			     "the service wants the user's sign-in at the provider to be at most "
			     "%lld s old (login_required)",
			     json_is_integer(max_age) ? (long long)json_integer_value(max_age)
						      : 0LL);
	} else if (r->status == 401 && code != NULL && strcmp(code, "interaction_required") == 0) {
		v06_fields(d, method, doc, &cred);
		if (cred.registration_id[0] != '\0' && cred.claim_token[0] != '\0' &&
		    agent_keep_attempt(&cred, json_object_get(doc, "claim"),
				       json_string_value(json_object_get(doc, "claim_attempt_id"))))
			st = agent_store_put(c, &cred, err) == AUTHMD_OK
				     ? cs_fail(err, AUTHMD_ERR_ACTION_NEEDED,
					       "Show the user the code and the page; the claim "
					       "is then polled to its end.",
					       "the account owner must confirm linking this "
					       "identity with the code %s",
					       cred.user_code)
				     : AUTHMD_ERR_STORE;
		else
			st = cs_fail(err, AUTHMD_ERR_ACTION_NEEDED,
				     "The service mailed the existing account's owner a link; once "
				     "they confirm, run authmd register again.",
				     "the account owner must confirm linking this identity to "
				     "their existing account (interaction_required)");
		OPENSSL_cleanse(&cred, sizeof(cred));
	}
	if (err != NULL && code != NULL && st != AUTHMD_ERR_STORE) {
		err->http_status = (int)r->status;
		am_copy(err->code, sizeof(err->code), code);
	}
	json_decref(doc);
	agent_result_clear(r);
	return st;
}

/* A v0.6 registration at identity_endpoint (req stolen), then the first
 * token exchange; the identity_assertion is kept for the next ones. */
static enum authmd_status
do_register_v06(struct authmd_client *c, const struct authmd_discovery *d, const char *method,
		json_t *req, struct authmd_credential *out, struct authmd_error *err)
{
	struct authmd_credential cred;
	struct agent_result r;
	json_t *ans = NULL;
	char *text = json_dumps(req, JSON_COMPACT);
	enum authmd_status st;

	json_decref(req);
	if (text == NULL)
		return cs_fail(err, AUTHMD_ERR_FAILED, NULL, "out of memory");
	st = agent_fetch(c, "POST", d->identity_endpoint, NULL, NULL, "application/json", text, &r,
			 err);
	OPENSSL_cleanse(text, strlen(text));
	free(text);
	if (st != AUTHMD_OK)
		return st;
	if (r.status == 401)
		return v06_refused(c, d, method, &r, err);
	if ((st = agent_json_answer(&r, "registration", &ans, err)) != AUTHMD_OK)
		return st;
	v06_fields(d, method, ans, &cred);
	json_decref(ans);
	if (cred.registration_id[0] == '\0' || cred.identity_assertion[0] == '\0') {
		OPENSSL_cleanse(&cred, sizeof(cred));
		return cs_fail(err, AUTHMD_ERR_PROTOCOL, NULL,
			       "the v0.6 registration answer has no registration_id and "
			       "identity_assertion");
	}
	if ((st = agent_token_exchange(c, &cred, err)) == AUTHMD_OK &&
	    (st = agent_store_put(c, &cred, err)) == AUTHMD_OK && out != NULL)
		*out = cred;
	OPENSSL_cleanse(&cred, sizeof(cred));
	return st;
}

enum authmd_status
authmd_token_refresh(struct authmd_client *c, const char *resource, struct authmd_credential *out,
		     struct authmd_error *err)
{
	struct authmd_credential cred;
	enum authmd_status st;

	if ((st = authmd_credential_for(c, resource, &cred, err)) != AUTHMD_OK)
		return st;
	if (strcmp(cred.protocol, "v0.6") != 0)
		return cs_fail(err, AUTHMD_ERR_REFUSED, NULL,
			       "the registration for %s is v0.1: its credential is not exchanged",
			       cred.resource);
	if ((st = exchange_fresh(c, &cred, err)) == AUTHMD_OK &&
	    (st = agent_store_put(c, &cred, err)) == AUTHMD_OK && out != NULL)
		*out = cred;
	OPENSSL_cleanse(&cred, sizeof(cred));
	return st;
}

static enum authmd_status
do_register(struct authmd_client *c, const struct authmd_discovery *d, const char *method,
	    json_t *req, struct authmd_credential *out, struct authmd_error *err)
{
	json_t *ans = NULL;
	enum authmd_status st;
	struct authmd_credential cred;

	if (strcmp(d->protocol, "v0.6") == 0) {
		/* v0.2 dropped requested_credential_type: the token endpoint mints. */
		json_object_del(req, "requested_credential_type");
		return do_register_v06(c, d, method, req, out, err);
	}
	if ((st = agent_post_json(c, d->register_uri, NULL, req, "registration", &ans, err)) !=
	    AUTHMD_OK)
		return st;
	st = keep_registration(c, d, method, ans, &cred, err);
	json_decref(ans);
	if (st == AUTHMD_OK && out != NULL)
		*out = cred;
	OPENSSL_cleanse(&cred, sizeof(cred));
	return st;
}

/* Under --protocol auto, a method this client speaks only in v0.1
 * (registration by email: v0.6 calls it service_auth) goes to v0.1 when the
 * service offers it too. Anonymous registration is v0.6 whenever offered. */
static const struct authmd_discovery *
v01_for_email(const struct authmd_client *c, const struct authmd_discovery *d,
	      struct authmd_discovery *copy)
{
	if (c->protocol != AUTHMD_PROTOCOL_AUTO || strcmp(d->protocol, "v0.6") != 0 ||
	    d->register_uri[0] == '\0')
		return d;
	*copy = *d;
	am_copy(copy->protocol, sizeof(copy->protocol), "v0.1");
	return copy;
}

enum authmd_status
authmd_register_anonymous(struct authmd_client *c, const struct authmd_discovery *d,
			  struct authmd_credential *out, struct authmd_error *err)
{
	if (!d->anonymous)
		return cs_fail(err, AUTHMD_ERR_REFUSED,
			       "Pick another method: --email or --provider.",
			       "this service does not offer anonymous registration");
	return do_register(c, d, "anonymous",
			   json_pack("{s:s, s:s}", "type", "anonymous", "requested_credential_type",
				     "api_key"),
			   out, err);
}

enum authmd_status
authmd_register_email(struct authmd_client *c, const struct authmd_discovery *d, const char *email,
		      const char *cred_type, struct authmd_credential *out,
		      struct authmd_error *err)
{
	struct authmd_discovery copy;
	enum authmd_status st;
	struct authmd_credential cred;

	d = v01_for_email(c, d, &copy);
	if (strcmp(d->protocol, "v0.6") == 0)
		return cs_fail(err, AUTHMD_ERR_REFUSED,
			       "Use --anonymous or --provider, or --protocol v0.1.",
			       "registration by email (v0.6 service_auth) is not supported yet");
	if (!d->verified_email)
		return cs_fail(err, AUTHMD_ERR_REFUSED, "Pick another method.",
			       "this service does not offer registration by email");
	st = do_register(c, d, "email",
			 json_pack("{s:s, s:s, s:s, s:s}", "type", "identity_assertion",
				   "assertion_type", "verified_email", "assertion", email,
				   "requested_credential_type",
				   cred_type != NULL ? cred_type : "api_key"),
			 &cred, err);
	if (st != AUTHMD_OK)
		return st;
	am_copy(cred.claim_email, sizeof(cred.claim_email), email);
	st = agent_store_put(c, &cred, err);
	if (st == AUTHMD_OK && out != NULL)
		*out = cred;
	return st;
}

/* Whether a grant object from the provider is live. "status" decides when
 * present; a grant without one is live unless another field says it is not
 * (providers differ: the reference one sends no status at all). */
static bool
grant_live(const json_t *g)
{
	const json_t *status = json_object_get(g, "status"), *exp;
	static const char *const dead_when_set[] = {"revoked_at", "consumed_at", "used_at",
						    "deleted_at"};

	if (json_is_string(status))
		return strcmp(json_string_value(status), "active") == 0;
	if (status != NULL && !json_is_null(status))
		return false; /* a status we cannot read is not proof of consent */
	if (json_is_false(json_object_get(g, "active")) ||
	    json_is_true(json_object_get(g, "revoked")) ||
	    json_is_true(json_object_get(g, "consumed")) ||
	    json_is_true(json_object_get(g, "used")))
		return false;
	for (size_t i = 0; i < sizeof(dead_when_set) / sizeof(dead_when_set[0]); i++) {
		const json_t *v = json_object_get(g, dead_when_set[i]);

		if (v != NULL && !json_is_null(v) && !json_is_false(v))
			return false;
	}
	exp = json_object_get(g, "expires_at");
	if (json_is_integer(exp) && json_integer_value(exp) <= (json_int_t)time(NULL))
		return false;
	return true;
}

static const char *
consent_mode(enum authmd_consent consent)
{
	return consent == AUTHMD_CONSENT_ALWAYS ? "always" : "once";
}

static void
grant_from(const json_t *g, bool created, struct authmd_grant *out)
{
	const char *status = json_string_value(json_object_get(g, "status"));

	memset(out, 0, sizeof(*out));
	agent_copy_str(g, "id", out->id, sizeof(out->id));
	agent_copy_str(g, "mode", out->mode, sizeof(out->mode));
	am_copy(out->status, sizeof(out->status), status != NULL ? status : "");
	out->created = created;
}

/* Makes the grant the caller asked for (consent is ONCE or ALWAYS). */
static enum authmd_status
create_grant(struct authmd_client *c, const char *url, const char *session,
	     const struct authmd_discovery *d, enum authmd_consent consent,
	     struct authmd_grant *out, struct authmd_error *err)
{
	json_t *made = NULL;
	enum authmd_status st;

	bool set = strcmp(d->protocol, "v0.6") == 0 && d->events_endpoint[0] != '\0';
	const char *target = set ? d->events_endpoint : d->revocation_uri;

	/* The provider revokes through the channel of the generation we
	 * register with: a SET to a v0.6 events_endpoint, a logout token to a
	 * v0.1 revocation_uri. */
	st = agent_post_json(c, url, session,
			     json_pack("{s:s, s:s, s:s?}", "audience", d->issuer, "mode",
				       consent_mode(consent),
				       set ? "events_endpoint" : "revocation_uri",
				       target[0] != '\0' ? target : NULL),
			     "the consent grant", &made, err);
	if (st != AUTHMD_OK)
		return st;
	grant_from(made, true, out);
	/* What we asked for is what we record, whatever the answer omits. */
	if (out->mode[0] == '\0')
		am_copy(out->mode, sizeof(out->mode), consent_mode(consent));
	json_decref(made);
	return AUTHMD_OK;
}

/* The user's consent for the service at the provider, into *out. A live
 * grant is used as it is: never replaced, never widened, whatever consent
 * asks. Only when there is none, and only when the caller passes the user's
 * explicit ONCE or ALWAYS, is one made; with NONE the answer is
 * AUTHMD_ERR_ACTION_NEEDED and nothing is written at the provider. */
static enum authmd_status
find_or_make_grant(struct authmd_client *c, const char *provider, const char *session,
		   const struct authmd_discovery *d, enum authmd_consent consent,
		   struct authmd_grant *out, struct authmd_error *err)
{
	char url[AUTHMD_URL_MAX + 16];
	json_t *list = NULL, *g;
	size_t i;
	enum authmd_status st;

	snprintf(url, sizeof(url), "%s/grants", provider);
	if ((st = get_json(c, url, session, "the provider's grants", &list, err)) != AUTHMD_OK)
		return st;
	json_array_foreach(json_object_get(list, "grants"), i, g)
	{
		const char *aud = json_string_value(json_object_get(g, "audience"));

		if (aud != NULL && strcmp(aud, d->issuer) == 0 && grant_live(g)) {
			grant_from(g, false, out);
			out->kept_as_is = consent != AUTHMD_CONSENT_NONE &&
					  strcmp(out->mode, consent_mode(consent)) != 0;
			json_decref(list);
			return AUTHMD_OK;
		}
	}
	json_decref(list);
	if (consent == AUTHMD_CONSENT_NONE) {
		st = cs_fail(err, AUTHMD_ERR_ACTION_NEEDED,
			     "Ask the user. If they agree, run again with --consent once (this "
			     "registration only) or --consent always (until they withdraw it).",
			     "the user has given no consent for %.200s at %.200s, and none was "
			     "created",
			     d->issuer, provider);
		if (err != NULL)
			am_copy(err->code, sizeof(err->code), "consent_required");
		return st;
	}
	return create_grant(c, url, session, d, consent, out, err);
}

static enum authmd_status
mint(struct authmd_client *c, const char *provider, const char *session,
     const struct authmd_discovery *d, json_t **minted, struct authmd_error *err)
{
	char url[AUTHMD_URL_MAX + 16];

	snprintf(url, sizeof(url), "%s/id-jag", provider);
	return agent_post_json(c, url, session,
			       json_pack("{s:s, s:s, s:s}", "audience", d->issuer, "resource",
					 d->resource, "agent_platform", "authmd-cli"),
			       "the ID-JAG", minted, err);
}

/* Registers with an ID-JAG from the provider. check_consent: look for the
 * user's grant first (an explicit register); the re-registration after a
 * revoked credential does not, and passes AUTHMD_CONSENT_NONE, so it
 * rides only on consent the provider still holds. */
static enum authmd_status
register_provider(struct authmd_client *c, const struct authmd_discovery *d,
		  const char *provider_url, const char *session, const char *cred_type,
		  bool check_consent, enum authmd_consent consent, struct authmd_grant *grant_out,
		  struct authmd_credential *out, struct authmd_error *err)
{
	char provider[AUTHMD_URL_MAX], url[AUTHMD_URL_MAX + 16];
	json_t *minted = NULL;
	const char *assertion;
	struct authmd_credential cred;
	struct authmd_grant grant;
	enum authmd_status st;
	size_t n;

	memset(&grant, 0, sizeof(grant));
	if (!d->id_jag)
		return cs_fail(err, AUTHMD_ERR_REFUSED,
			       "Pick another method: --email or --anonymous.",
			       "this service does not accept ID-JAG assertions");
	if (!am_copy(provider, sizeof(provider), provider_url))
		return cs_fail(err, AUTHMD_ERR_USAGE, NULL, "provider URL too long");
	n = strlen(provider);
	while (n > 0 && provider[n - 1] == '/')
		provider[--n] = '\0';
	if (check_consent &&
	    (st = find_or_make_grant(c, provider, session, d, consent, &grant, err)) != AUTHMD_OK)
		return st;
	st = mint(c, provider, session, d, &minted, err);
	/* The grant we took as live was not (its provider gave no status, and
	 * it was spent or withdrawn): the user asked for consent in this
	 * command, so the grant they asked for is made, once. */
	if (st != AUTHMD_OK && check_consent && consent != AUTHMD_CONSENT_NONE && !grant.created &&
	    err != NULL && strcmp(err->code, "consent_required") == 0) {
		snprintf(url, sizeof(url), "%s/grants", provider);
		if ((st = create_grant(c, url, session, d, consent, &grant, err)) != AUTHMD_OK)
			return st;
		st = mint(c, provider, session, d, &minted, err);
	}
	if (st != AUTHMD_OK) {
		/* Only the user can give consent: a person must act. */
		if (err != NULL && strcmp(err->code, "consent_required") == 0) {
			st = err->status = AUTHMD_ERR_ACTION_NEEDED;
			err->advice = "The provider holds no live consent for this service. Ask "
				      "the user; if they agree, run again with --consent once or "
				      "--consent always.";
		}
		return st;
	}
	assertion = json_string_value(json_object_get(minted, "assertion"));
	if (assertion == NULL) {
		json_decref(minted);
		return cs_fail(err, AUTHMD_ERR_PROTOCOL, NULL,
			       "the provider returned no assertion");
	}
	st = do_register(c, d, "id_jag",
			 json_pack("{s:s, s:s, s:s, s:s}", "type", "identity_assertion",
				   "assertion_type", AM_ID_JAG_URN, "assertion", assertion,
				   "requested_credential_type",
				   cred_type != NULL ? cred_type : "access_token"),
			 &cred, err);
	json_decref(minted);
	if (st == AUTHMD_ERR_ACTION_NEEDED && err != NULL &&
	    strcmp(err->code, "interaction_required") == 0 &&
	    authmd_credential_for(c, d->resource, &cred, NULL) == AUTHMD_OK &&
	    strcmp(cred.method, "id_jag") == 0 && cred.user_code[0] != '\0') {
		/* A first link held for the owner's code: the stored attempt
		 * keeps the provider, to register again alone later. */
		am_copy(cred.provider, sizeof(cred.provider), provider);
		am_copy(cred.session, sizeof(cred.session), session);
		if (agent_store_put(c, &cred, NULL) == AUTHMD_OK && grant_out != NULL)
			*grant_out = grant;
		OPENSSL_cleanse(&cred, sizeof(cred));
	}
	if (st != AUTHMD_OK)
		return st;
	am_copy(cred.provider, sizeof(cred.provider), provider);
	am_copy(cred.session, sizeof(cred.session), session);
	st = agent_store_put(c, &cred, err);
	if (st == AUTHMD_OK && out != NULL)
		*out = cred;
	if (st == AUTHMD_OK && grant_out != NULL)
		*grant_out = grant;
	OPENSSL_cleanse(&cred, sizeof(cred));
	return st;
}

enum authmd_status
authmd_register_provider(struct authmd_client *c, const struct authmd_discovery *d,
			 const char *provider_url, const char *session, const char *cred_type,
			 enum authmd_consent consent, struct authmd_grant *grant,
			 struct authmd_credential *out, struct authmd_error *err)
{
	if (consent != AUTHMD_CONSENT_NONE && consent != AUTHMD_CONSENT_ONCE &&
	    consent != AUTHMD_CONSENT_ALWAYS)
		return cs_fail(err, AUTHMD_ERR_USAGE, NULL, "consent must be none, once or always");
	return register_provider(c, d, provider_url, session, cred_type, true, consent, grant, out,
				 err);
}

/* ---- the read-back claim (issue 14, proposal (b)) ---- */

/* The stored v0.6 credential for resource that has a claim to make. */
static enum authmd_status
readback_cred(struct authmd_client *c, const char *resource, struct authmd_credential *cred,
	      struct authmd_error *err)
{
	enum authmd_status st;

	if ((st = authmd_credential_for(c, resource, cred, err)) != AUTHMD_OK)
		return st;
	if (strcmp(cred->protocol, "v0.6") != 0)
		return cs_fail(err, AUTHMD_ERR_REFUSED, "Claim it without --readback.",
			       "the read-back claim is for v0.6 registrations; %s is %s",
			       cred->resource, cred->protocol);
	if (cred->claim_token[0] == '\0' || cred->claim_uri[0] == '\0')
		return cs_fail(err, AUTHMD_ERR_REFUSED, NULL,
			       "there is no claim to make for %s (state: %s)", cred->resource,
			       cred->claim_state);
	return AUTHMD_OK;
}

enum authmd_status
authmd_claim_readback_start(struct authmd_client *c, const char *resource, const char *login_hint,
			    char *verification_uri, size_t cap, struct authmd_error *err)
{
	struct authmd_credential cred;
	json_t *ans = NULL, *req;
	const char *uri;
	enum authmd_status st;

	if ((st = readback_cred(c, resource, &cred, err)) != AUTHMD_OK)
		goto out;
	req = json_pack("{s:s, s:s}", "type", "login_hint", "claim_token", cred.claim_token);
	if (login_hint != NULL)
		json_object_set_new(req, "login_hint", json_string(login_hint));
	if ((st = agent_post_json(c, cred.claim_uri, NULL, req, "the claim", &ans, err)) != AUTHMD_OK)
		goto out;
	uri = json_string_value(json_object_get(
		json_object_get(json_object_get(ans, "claim"), "attempt"), "verification_uri"));
	if (uri == NULL || (strncmp(uri, "https://", 8) != 0 && strncmp(uri, "http://", 7) != 0)) {
		st = cs_fail(err, AUTHMD_ERR_PROTOCOL, NULL,
			     "the claim answer has no claim.attempt.verification_uri");
		goto out;
	}
	am_copy(verification_uri, cap, uri);
	am_copy(cred.claim_state, sizeof(cred.claim_state), "pending");
	if (login_hint != NULL)
		am_copy(cred.claim_email, sizeof(cred.claim_email), login_hint);
	st = agent_store_put(c, &cred, err);
out:
	json_decref(ans);
	OPENSSL_cleanse(&cred, sizeof(cred));
	return st;
}

enum authmd_status
authmd_claim_readback_complete(struct authmd_client *c, const char *resource, const char *code,
			       struct authmd_credential *out, struct authmd_error *err)
{
	struct authmd_credential cred;
	char url[AUTHMD_URL_MAX + 16];
	json_t *ans = NULL;
	const json_t *identity;
	enum authmd_status st;

	if ((st = readback_cred(c, resource, &cred, err)) != AUTHMD_OK)
		goto out;
	snprintf(url, sizeof(url), "%s/complete", cred.claim_uri);
	st = agent_post_json(c, url, NULL,
		       json_pack("{s:s, s:s}", "claim_token", cred.claim_token, "user_code", code),
		       "the claim", &ans, err);
	if (st != AUTHMD_OK) {
		/* A dead claim token is dropped; a wrong or unconfirmed code keeps it. */
		if (err != NULL && strcmp(err->code, "invalid_grant") == 0) {
			OPENSSL_cleanse(cred.claim_token, sizeof(cred.claim_token));
			am_copy(cred.claim_state, sizeof(cred.claim_state), "expired");
			(void)agent_store_put(c, &cred, NULL);
		}
		goto out;
	}
	identity = json_object_get(ans, "identity");
	agent_copy_str(identity, "assertion", cred.identity_assertion, sizeof(cred.identity_assertion));
	agent_copy_str(identity, "expires_at", cred.assertion_expires, sizeof(cred.assertion_expires));
	if (cred.identity_assertion[0] == '\0') {
		st = cs_fail(err, AUTHMD_ERR_PROTOCOL, NULL,
			     "the claim answer has no identity.assertion");
		goto out;
	}
	keep_refresh(ans, &cred);
	OPENSSL_cleanse(cred.claim_token, sizeof(cred.claim_token));
	cred.claim_token_expires[0] = '\0';
	am_copy(cred.claim_state, sizeof(cred.claim_state), "claimed");
	/* the pre-claim token was revoked: the new assertion gets a new one */
	if ((st = agent_token_exchange(c, &cred, err)) == AUTHMD_OK &&
	    (st = agent_store_put(c, &cred, err)) == AUTHMD_OK && out != NULL)
		*out = cred;
out:
	json_decref(ans);
	OPENSSL_cleanse(&cred, sizeof(cred));
	return st;
}

/* ---- requests ---- */

void
authmd_response_clear(struct authmd_response *r)
{
	if (r == NULL)
		return;
	free(r->body);
	memset(r, 0, sizeof(*r));
}

/* 500 ms * 2^attempt, times a jitter from 0.5 to 1.5. */
static long
backoff_ms(int attempt)
{
	unsigned char r = 128;
	long ms = 500L << (attempt < 6 ? attempt : 6);

	if (RAND_bytes(&r, 1) != 1)
		r = 128;
	return ms * (128 + r) / 256;
}

/* RFC 9110 section 9.2.2: the methods whose repetition has no further
 * effect. POST and PATCH are not among them. */
static bool
idempotent(const char *method)
{
	static const char *const ok[] = {"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"};

	for (size_t i = 0; method != NULL && i < sizeof(ok) / sizeof(ok[0]); i++) {
		if (strcmp(method, ok[i]) == 0)
			return true;
	}
	return false;
}

static bool
can_reregister(const struct authmd_credential *cred)
{
	return strcmp(cred->method, "id_jag") == 0 && cred->provider[0] != '\0' &&
	       cred->session[0] != '\0';
}

/* A request with a DPoP-bound access token: "Authorization: DPoP" and a
 * fresh proof for this method and URL (RFC 9449 7.1). */
static enum authmd_status
fetch_bound(struct authmd_client *c, const char *method, const char *url, const char *token,
	    const char *const *headers, const char *body, struct agent_result *r,
	    struct authmd_error *err)
{
	const char *all[36];
	char *proof = NULL;
	struct am_buf auth = {.secret = true};
	size_t n = 0;
	enum authmd_status st;

	if ((st = dpop_header(c, method, url, token, &proof, err)) != AUTHMD_OK)
		return st;
	am_buf_printf(&auth, "Authorization: DPoP %s", token);
	all[n++] = auth.data;
	all[n++] = proof;
	for (size_t i = 0; headers != NULL && headers[i] != NULL && n < 35; i++)
		all[n++] = headers[i];
	all[n] = NULL;
	st = agent_fetch(c, method, url, NULL, all, body != NULL ? "application/json" : NULL, body,
			 r, err);
	am_buf_free(&auth);
	free(proof);
	return st;
}

enum authmd_status
authmd_request(struct authmd_client *c, const char *method, const char *url,
	       const char *const *headers, const char *body, struct authmd_response *resp,
	       struct authmd_error *err)
{
	struct authmd_credential cred;
	struct agent_result r;
	bool reregistered = false, reexchanged = false, v06;
	time_t until;
	int retries = 0;
	enum authmd_status st;

	memset(resp, 0, sizeof(*resp));
	if (err != NULL)
		memset(err, 0, sizeof(*err));
	if ((st = authmd_credential_for(c, url, &cred, err)) != AUTHMD_OK)
		return st;
	if (cred.credential[0] == '\0')
		return cs_fail(err, AUTHMD_ERR_ACTION_NEEDED, "Run: authmd claim URL",
			       "the registration for %s has no credential until its claim is "
			       "completed",
			       cred.resource);
	/* A v0.6 access token past its expiry is exchanged again first (the
	 * assertion stands in for a refresh token). */
	v06 = strcmp(cred.protocol, "v0.6") == 0;
	/* A bound token is exchanged again bound to the same key. */
	if (strcasecmp(cred.token_type, "DPoP") == 0)
		c->dpop = true;
	until = cs_parse_utc(cred.credential_expires);
	if (v06 && until != 0 && until <= time(NULL) + 5) {
		if ((st = exchange_fresh(c, &cred, err)) != AUTHMD_OK ||
		    (st = agent_store_put(c, &cred, err)) != AUTHMD_OK) {
			OPENSSL_cleanse(&cred, sizeof(cred));
			if (err != NULL && strcmp(err->code, "invalid_grant") == 0) {
				err->status = st = AUTHMD_ERR_ACTION_NEEDED;
				err->advice = "The identity assertion expired or was revoked: run "
					      "authmd register URL again.";
			}
			return st;
		}
		reexchanged = true;
	}
	for (;;) {
		if (strcasecmp(cred.token_type, "DPoP") == 0)
			st = fetch_bound(c, method, url, cred.credential, headers, body, &r, err);
		else
			st = agent_fetch(c, method, url, cred.credential, headers,
					 body != NULL ? "application/json" : NULL, body, &r, err);
		if (st != AUTHMD_OK)
			return st;
		/* A 5xx may come after the service acted: only a request that may
		 * be repeated without a second effect is sent again. */
		if (r.status >= 500 && idempotent(method) && retries < c->max_retries) {
			agent_result_clear(&r);
			agent_sleep_ms(backoff_ms(retries++));
			continue;
		}
		if (r.status == 429 && retries < c->max_retries) {
			long wait = r.retry_after > 0 ? r.retry_after : 1;

			agent_result_clear(&r);
			if (wait > c->max_retry_after_s)
				return cs_fail(err, AUTHMD_ERR_NETWORK, "Back off and retry later.",
					       "rate limited for %lds", wait);
			agent_sleep_ms(wait * 1000);
			retries++;
			continue;
		}
		/* AUTH.md (v0.6): on a 401, exchange the assertion once; only
		 * invalid_grant there means the registration itself is gone. */
		if (r.status == 401 && v06 && !reexchanged) {
			struct authmd_error ignored;

			reexchanged = true;
			if (exchange_fresh(c, &cred, &ignored) == AUTHMD_OK &&
			    agent_store_put(c, &cred, &ignored) == AUTHMD_OK) {
				agent_result_clear(&r);
				continue;
			}
		}
		if (r.status == 401 && cred.worked) {
			/* A credential that worked before and now does not: drop it
			 * and start again at discovery (AUTH.md, step 5). */
			struct authmd_discovery d;
			struct authmd_error ignored;
			bool again = can_reregister(&cred) && !reregistered;
			char provider[AUTHMD_URL_MAX], session[AUTHMD_TEXT_MAX];

			am_copy(provider, sizeof(provider), cred.provider);
			am_copy(session, sizeof(session), cred.session);
			(void)authmd_forget(c, cred.resource, &ignored);
			if (again && authmd_discover(c, url, &d, &ignored) == AUTHMD_OK &&
			    register_provider(c, &d, provider, session,
					      cred.credential_type[0] != '\0' ? cred.credential_type
									      : NULL,
					      false, AUTHMD_CONSENT_NONE, NULL, &cred,
					      &ignored) == AUTHMD_OK) {
				reregistered = true;
				agent_result_clear(&r);
				continue;
			}
			OPENSSL_cleanse(session, sizeof(session));
			agent_service_error(&r, "the request", err);
			if (err != NULL) {
				err->status = AUTHMD_ERR_ACTION_NEEDED;
				err->advice =
					again ? "The credential was revoked and the provider "
						"gives no new one without the user's consent: "
						"ask the user, then authmd register URL."
					      : "The credential was revoked or expired and has "
						"been dropped: run authmd register URL again.";
			}
		} else if (r.status >= 200 && r.status < 300 && !cred.worked) {
			cred.worked = true;
			(void)agent_store_put(c, &cred, NULL);
		} else if (r.status >= 400) {
			agent_service_error(&r, "the request", err);
		}
		break;
	}
	resp->status = (int)r.status;
	resp->len = r.body.len;
	resp->body = am_buf_take(&r.body);
	am_copy(resp->content_type, sizeof(resp->content_type), r.content_type);
	agent_result_clear(&r);
	OPENSSL_cleanse(&cred, sizeof(cred));
	return AUTHMD_OK;
}
