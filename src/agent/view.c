/* The agent's state as JSON, without its secrets (see view.h). */
#include <string.h>

#include "agent/view.h"
#include "core/str.h"

json_t *
agent_scopes_json(const char *scopes)
{
	json_t *arr = json_array();
	char copy[AUTHMD_TEXT_MAX], *save = NULL;

	if (!am_copy(copy, sizeof(copy), scopes))
		return arr;
	for (char *t = strtok_r(copy, " ", &save); t != NULL; t = strtok_r(NULL, " ", &save))
		json_array_append_new(arr, json_string(t));
	return arr;
}

json_t *
agent_credential_json(const struct authmd_credential *c)
{
	json_t *o = json_pack(
		"{s:s, s:s, s:s, s:s, s:o, s:s?, s:s, s:b, s:s?, s:s?}", "resource", c->resource,
		"method", c->method, "registration_id", c->registration_id, "credential_type",
		c->credential_type, "scopes", agent_scopes_json(c->scopes), "credential_expires",
		c->credential_expires[0] != '\0' ? c->credential_expires : NULL, "claim_state",
		c->claim_state, "has_credential", c->credential[0] != '\0', "claim_token_expires",
		c->claim_token_expires[0] != '\0' ? c->claim_token_expires : NULL, "provider",
		c->provider[0] != '\0' ? c->provider : NULL);

	/* The identity assertion is a secret: only whether there is one. */
	json_object_set_new(o, "protocol",
			    json_string(c->protocol[0] != '\0' ? c->protocol : "v0.1"));
	if (strcmp(c->protocol, "v0.6") == 0) {
		if (c->claim_attempt_expires[0] != '\0')
			json_object_set_new(o, "claim_attempt_expires",
					    json_string(c->claim_attempt_expires));
		if (c->token_type[0] != '\0')
			json_object_set_new(o, "token_type", json_string(c->token_type));
		json_object_set_new(o, "has_identity_assertion",
				    json_boolean(c->identity_assertion[0] != '\0'));
		if (c->assertion_expires[0] != '\0')
			json_object_set_new(o, "assertion_expires",
					    json_string(c->assertion_expires));
		/* The refresh token is a secret too: whether there is one, and until when. */
		json_object_set_new(o, "has_refresh_token",
				    json_boolean(c->refresh_token[0] != '\0'));
		if (c->refresh_expires[0] != '\0')
			json_object_set_new(o, "refresh_expires", json_string(c->refresh_expires));
	}
	return o;
}

json_t *
agent_attempt_json(const struct authmd_claim_attempt *t)
{
	return json_pack(
		"{s:s, s:s?, s:s, s:s, s:s?, s:s, s:I, s:I}", "resource", t->resource,
		"claim_attempt_id", t->attempt_id[0] != '\0' ? t->attempt_id : NULL, "user_code",
		t->user_code, "verification_uri", t->verification_uri, "verification_uri_complete",
		t->verification_uri_complete[0] != '\0' ? t->verification_uri_complete : NULL,
		"expires_at", t->expires_at, "expires_in", (json_int_t)t->expires_in, "interval",
		(json_int_t)t->interval);
}

json_t *
agent_grant_json(const struct authmd_grant *g)
{
	return json_pack("{s:s, s:s?, s:s?, s:b, s:b}", "grant_id", g->id, "mode",
			 g->mode[0] != '\0' ? g->mode : NULL, "status",
			 g->status[0] != '\0' ? g->status : NULL, "created", g->created,
			 "kept_as_is", g->kept_as_is);
}

json_t *
agent_discovery_json(const struct authmd_discovery *d)
{
	json_t *o = json_pack(
		"{s:s, s:s, s:b, s:s, s:s, s:s, s:b, s:o, s:s, s:s, s:s?, s:{s:b, s:b, s:b}}",
		"url", d->url, "resource_metadata", d->prm_url, "from_www_authenticate",
		d->header_found, "resource", d->resource, "resource_name", d->resource_name,
		"authorization_server", d->issuer, "issuer_missing", d->issuer_missing, "scopes",
		agent_scopes_json(d->scopes), "register_uri", d->register_uri, "claim_uri",
		d->claim_uri, "revocation_uri",
		d->revocation_uri[0] != '\0' ? d->revocation_uri : NULL, "methods", "anonymous",
		d->anonymous, "verified_email", d->verified_email, "id_jag", d->id_jag);

	json_object_set_new(o, "protocol", json_string(d->protocol));
	json_object_set_new(o, "v06_offered", json_boolean(d->v06_offered));
	if (d->token_endpoint[0] != '\0')
		json_object_set_new(o, "token_endpoint", json_string(d->token_endpoint));
	if (d->identity_endpoint[0] != '\0')
		json_object_set_new(o, "identity_endpoint", json_string(d->identity_endpoint));
	return o;
}
