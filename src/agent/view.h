/* What the agent shows of its state, as JSON, for the CLI's --json output
 * and the MCP server's tool results alike. One home, so that what may be
 * shown is decided once: never a credential, claim token or session. */
#ifndef AM_VIEW_H
#define AM_VIEW_H

#include <jansson.h>

#include "authmd/client.h"

/* A space-separated scope list as a JSON array (new reference). */
json_t *agent_scopes_json(const char *scopes);

/* A stored credential without its secrets: resource, method, registration
 * id, type, scopes, expiry, claim state, has_credential, provider (new
 * reference). */
json_t *agent_credential_json(const struct authmd_credential *c);

/* The consent grant a provider registration used (new reference). */
json_t *agent_grant_json(const struct authmd_grant *g);

/* An open user_code claim attempt, for the user to act on: user_code,
 * verification_uri(_complete), expires_at, expires_in, interval (new
 * reference). The code and page are meant to be shown; the claim token that
 * polls is not in it. */
json_t *agent_attempt_json(const struct authmd_claim_attempt *t);

/* What discovery found (new reference). */
json_t *agent_discovery_json(const struct authmd_discovery *d);

#endif
