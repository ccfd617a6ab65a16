/* The protocol's fixed strings, each defined once for the server, the
 * provider and the client (issue 12). */
#ifndef AUTHMD_CORE_PROTOCOL_H
#define AUTHMD_CORE_PROTOCOL_H

/* The assertion_type (and token type) of an Identity Assertion JWT grant. */
#define AM_ID_JAG_URN "urn:ietf:params:oauth:token-type:id-jag"
/* The JWT typ of an ID-JAG. */
#define AM_TYP_ID_JAG "oauth-id-jag+jwt"
/* The JWT typ and media type of a logout token. */
#define AM_TYP_LOGOUT "logout+jwt"
#define AM_MEDIA_LOGOUT_JWT "application/logout+jwt"
/* The logout token's event: the auth.md revocation event, and the OpenID
 * back-channel logout event that the server also accepts. */
#define AM_EVENT_REVOKED "https://schemas.workos.com/events/agent/auth/identity/assertion/revoked"
#define AM_EVENT_OIDC_LOGOUT "http://schemas.openid.net/event/backchannel-logout"
/* v0.6: RFC 8417 SETs pushed per RFC 8935, and the RFC 7523 grant. */
#define AM_TYP_SET "secevent+jwt"
#define AM_MEDIA_SET_JWT "application/secevent+jwt"
#define AM_GRANT_JWT_BEARER "urn:ietf:params:oauth:grant-type:jwt-bearer"
/* v0.4+: the agent's poll of the user_code claim ceremony */
#define AM_GRANT_CLAIM "urn:workos:agent-auth:grant-type:claim"
#define AM_ID_JAG_PROFILE "urn:ietf:params:oauth:grant-profile:id-jag"

#endif
