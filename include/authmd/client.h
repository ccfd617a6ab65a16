/* authmd client library: the agent's side of the auth.md protocol, v0.1
 * (/agent/auth answers a credential) and v0.6 (/agent/identity answers a
 * service-signed identity_assertion, exchanged at token_endpoint for a
 * short-lived access token, re-exchanged when it expires).
 *
 * It follows the recipe of AUTH.md: discover (a 401's resource_metadata,
 * the protected-resource metadata, the authorization server's agent_auth
 * block), pick a method, register, claim when needed, call the API with
 * the credential, and recover from a 401. Credentials are kept in a JSON
 * file (mode 0600, written atomically) keyed by the protected resource.
 *
 * Conventions: functions return AUTHMD_OK or an error status and fill
 * *err (when not NULL) with what went wrong and what to do about it.
 * Strings in result structs are owned by the struct; out-params are
 * written only on success. The library is not thread-safe per client.
 */
#ifndef AUTHMD_CLIENT_H
#define AUTHMD_CLIENT_H

#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Results, also the CLI's exit codes. */
enum authmd_status {
	AUTHMD_OK = 0,
	AUTHMD_ERR_FAILED = 1,	      /* anything not below */
	AUTHMD_ERR_USAGE = 2,	      /* bad arguments */
	AUTHMD_ERR_NETWORK = 3,	      /* unreachable, timed out, or 5xx after retries */
	AUTHMD_ERR_REFUSED = 4,	      /* the service answered a 4xx error */
	AUTHMD_ERR_ACTION_NEEDED = 5, /* a person must act: consent, a code, registering */
	AUTHMD_ERR_STORE = 6,	      /* the credentials file is unreadable or unsafe */
	AUTHMD_ERR_PROTOCOL = 7,      /* the service's documents break the protocol */
};

#define AUTHMD_URL_MAX 512
#define AUTHMD_TEXT_MAX 256
#define AUTHMD_ASSERTION_MAX 8192 /* a service-signed identity assertion (a JWT) */
/* The claim code a user reads from the email: this many decimal digits
 * (the protocol's six; the server side names it AM_OTP_DIGITS). */
#define AUTHMD_OTP_DIGITS 6

struct authmd_error {
	enum authmd_status status;
	int http_status;    /* 0 when no HTTP answer */
	char code[64];	    /* the protocol error code, e.g. "otp_invalid" */
	char message[512];  /* what went wrong */
	const char *advice; /* what to do (static text), or NULL */
};

/* The advice of AUTH.md's error table for a protocol error code, or NULL. */
const char *authmd_advice(const char *code);

/* What discovery found. */
struct authmd_discovery {
	char url[AUTHMD_URL_MAX];     /* the URL probed */
	char prm_url[AUTHMD_URL_MAX]; /* where the metadata was found */
	char resource[AUTHMD_URL_MAX];
	char resource_name[AUTHMD_TEXT_MAX];
	char resource_logo_uri[AUTHMD_URL_MAX];
	char issuer[AUTHMD_URL_MAX];  /* authorization_servers[0] */
	char scopes[AUTHMD_TEXT_MAX]; /* space-separated scopes_supported */
	char skill[AUTHMD_URL_MAX];
	char register_uri[AUTHMD_URL_MAX];
	char claim_uri[AUTHMD_URL_MAX];
	char revocation_uri[AUTHMD_URL_MAX];
	bool anonymous; /* identity types and assertion types offered */
	bool verified_email;
	bool id_jag;
	bool header_found;   /* the 401 carried resource_metadata */
	bool issuer_missing; /* the AS metadata had no issuer, accepted only because
				authmd_options.allow_missing_issuer was set */
	/* v0.6 (RFC 8414 token_endpoint, agent_auth.identity_endpoint, ...) */
	char token_endpoint[AUTHMD_URL_MAX];
	char identity_endpoint[AUTHMD_URL_MAX];
	char claim_endpoint[AUTHMD_URL_MAX];
	char events_endpoint[AUTHMD_URL_MAX];
	bool v06_offered; /* identity_endpoint and token_endpoint are published */
	char protocol[8]; /* what registration will speak: "v0.1" or "v0.6" */
};

/* A stored credential (and its registration's state). */
struct authmd_credential {
	char resource[AUTHMD_URL_MAX]; /* the key in the store */
	char issuer[AUTHMD_URL_MAX];
	char register_uri[AUTHMD_URL_MAX];
	char claim_uri[AUTHMD_URL_MAX];
	char method[16]; /* anonymous | email | id_jag */
	char registration_id[64];
	char credential_type[16];	  /* api_key | access_token; "" before a claim */
	char credential[AUTHMD_TEXT_MAX]; /* "" while an email claim is pending */
	char credential_expires[40];	  /* RFC 3339, "" for none */
	char scopes[AUTHMD_TEXT_MAX];
	char post_claim_scopes[AUTHMD_TEXT_MAX];
	char claim_state[16];		   /* unclaimed | pending | claimed | none */
	char claim_token[AUTHMD_TEXT_MAX]; /* kept only until the claim ends */
	char claim_token_expires[40];
	char claim_email[AUTHMD_TEXT_MAX];
	char provider[AUTHMD_URL_MAX]; /* ID-JAG: the provider and the agent's */
	char session[AUTHMD_TEXT_MAX]; /*   session there, to re-register alone */
	bool worked;		       /* a request with it has succeeded */
	/* v0.6: the access token (credential) is minted from the stored
	 * identity_assertion at token_endpoint, again whenever it expires. The
	 * assertion is a secret like the credential: never printed. */
	char protocol[8]; /* "v0.1" ("" in stores written before v0.6) or "v0.6" */
	char token_endpoint[AUTHMD_URL_MAX];
	char identity_assertion[AUTHMD_ASSERTION_MAX];
	char assertion_expires[40]; /* RFC 3339 */
	char token_type[16];	    /* "Bearer" or "DPoP" (bound to the key of --dpop) */
	/* proposal (b): the assertion's refresh token, rotated by
	 * authmd_identity_refresh (a secret: never printed); "" for v0.1 and
	 * for services that hand none out. register_uri is the identity
	 * endpoint it goes to. */
	char refresh_token[AUTHMD_TEXT_MAX];
	char refresh_expires[40]; /* RFC 3339 */
	/* v0.6 claim ceremony (user_code): the open attempt, kept until it
	 * ends (claimed, denied, expired). Not secrets the user must not see:
	 * the user is shown the code and the page. */
	char claim_attempt_id[64];
	char user_code[32];
	char verification_uri[AUTHMD_URL_MAX];
	char verification_uri_complete[AUTHMD_URL_MAX];
	char claim_attempt_expires[40]; /* RFC 3339 */
	long claim_interval;		/* seconds between polls, as the service last said */
};

/* Which protocol generation to speak to a service. */
enum authmd_protocol {
	AUTHMD_PROTOCOL_AUTO = 0, /* v0.6 when the metadata offers it, v0.1 otherwise */
	AUTHMD_PROTOCOL_V01,	  /* /agent/auth only */
	AUTHMD_PROTOCOL_V06,	  /* /agent/identity + token_endpoint only */
};

struct authmd_options {
	const char *store_path; /* NULL: $XDG_CONFIG_HOME/authmd/credentials.json */
	long timeout_ms;	/* per request; 0: 10 s */
	int max_retries;	/* 5xx and 429 retries; <0: 3 */
	long max_retry_after_s; /* longest Retry-After honoured; 0: 60 */
	/* Accept AS metadata that has no issuer at all (old services only: such
	 * a document cannot be tied to the server it claims to describe). An
	 * issuer that is present must still match. Default false. */
	bool allow_missing_issuer;
	enum authmd_protocol protocol; /* default AUTO */
	/* DPoP (RFC 9449): bind v0.6 access tokens to a key kept beside the
	 * credentials file (dpop-key.pem, 0600, made on first use) and send a
	 * proof with every use. Default false. */
	bool dpop;
};

struct authmd_client;

enum authmd_status authmd_client_new(const struct authmd_options *opt, struct authmd_client **out,
				     struct authmd_error *err);
void authmd_client_free(struct authmd_client *c); /* NULL is fine */

/* Discovery from any URL of the API. Refuses (AUTHMD_ERR_PROTOCOL) metadata
 * whose resource is not on the URL's origin (RFC 9728), and AS metadata whose
 * issuer is missing or is not exactly authorization_servers[0], the URL the
 * metadata was fetched from (RFC 8414 section 3.3); a missing issuer is let
 * through only with authmd_options.allow_missing_issuer, and then
 * out->issuer_missing says so. */
enum authmd_status authmd_discover(struct authmd_client *c, const char *url,
				   struct authmd_discovery *out, struct authmd_error *err);

/* Registration; each cross-checks the method against the agent_auth
 * block first, and stores the result. cred_type may be NULL. With
 * d->protocol "v0.6" the registration goes to identity_endpoint and the
 * identity_assertion it answers is exchanged at token_endpoint (RFC 7523
 * jwt-bearer, with the RFC 8707 resource) for the access token;
 * registration by email is v0.1 only for now (AUTHMD_ERR_REFUSED on v0.6).
 * A v0.6 ID-JAG registration the service holds for the account owner's
 * confirmation (v0.5 first link) is AUTHMD_ERR_ACTION_NEEDED with code
 * "interaction_required": when the answer carried a claim block, its
 * attempt is stored (authmd_claim_code_attempt, then poll or wait as for a
 * claim); without one the owner confirms by the service's mail and the
 * registration is made again afterwards. A provider sign-in older than the
 * service allows is AUTHMD_ERR_ACTION_NEEDED with code "login_required"
 * (the message names max_age): the provider must re-authenticate the user. */
enum authmd_status authmd_register_anonymous(struct authmd_client *c,
					     const struct authmd_discovery *d,
					     struct authmd_credential *out,
					     struct authmd_error *err);
enum authmd_status authmd_register_email(struct authmd_client *c, const struct authmd_discovery *d,
					 const char *email, const char *cred_type,
					 struct authmd_credential *out, struct authmd_error *err);
/* What the user said about consent at the provider, in this very command.
 * Nothing else (a --yes, a default, an earlier run) counts as asking. */
enum authmd_consent {
	AUTHMD_CONSENT_NONE = 0, /* use a live grant the user made; create none */
	AUTHMD_CONSENT_ONCE,	 /* the user asked for one-time consent */
	AUTHMD_CONSENT_ALWAYS,	 /* the user asked for standing consent */
};

/* The consent grant a provider registration rode on. */
struct authmd_grant {
	char id[64];
	char mode[16];	 /* once | always, as the provider said; "" if it did not say */
	char status[16]; /* as the provider said; "" when it gave none (taken as live) */
	bool created;	 /* this call made it, because the caller asked */
	bool kept_as_is; /* an existing grant of another mode than asked was used
			    unchanged: it was neither widened nor replaced */
};

/* Registers with an ID-JAG from an authmd-provider (or one speaking its
 * API) under the user's consent. A live grant for the service is used as it
 * is, never replaced or widened; a grant without "status" is live unless a
 * field says otherwise. A grant is created only when there is no live one
 * and consent is ONCE or ALWAYS (the user asked in this command); with NONE
 * and no live grant the answer is AUTHMD_ERR_ACTION_NEEDED, code
 * "consent_required", and nothing was written at the provider. *grant
 * (may be NULL) says which grant was used and whether it was made. The
 * provider and session are kept so that a revoked credential can be
 * replaced without a person, under consent that still stands. */
enum authmd_status
authmd_register_provider(struct authmd_client *c, const struct authmd_discovery *d,
			 const char *provider_url, const char *session, const char *cred_type,
			 enum authmd_consent consent, struct authmd_grant *grant,
			 struct authmd_credential *out, struct authmd_error *err);

/* A fresh access token for the v0.6 credential stored for resource, from
 * its identity_assertion (rotated first with the refresh token when the
 * assertion has expired and there is one); stored, and in *out when out
 * is not NULL.
 * AUTHMD_ERR_REFUSED with code "invalid_grant" when the assertion is
 * expired or revoked (register again). */
enum authmd_status authmd_token_refresh(struct authmd_client *c, const char *resource,
					struct authmd_credential *out, struct authmd_error *err);

/* A new identity assertion for the v0.6 credential stored for resource
 * from its refresh token (POST identity endpoint {type: refresh}), then a
 * fresh access token from it; both stored (the rotated refresh token at
 * once, before the exchange, since the old one is spent), and in *out when
 * out is not NULL. AUTHMD_ERR_REFUSED for a v0.1 credential or one without
 * a refresh token; AUTHMD_ERR_ACTION_NEEDED (code "invalid_grant") when the
 * service refuses the token (expired, revoked, reused): register again.
 * authmd_request and authmd_token_refresh do this by themselves when the
 * stored assertion has expired. */
enum authmd_status authmd_identity_refresh(struct authmd_client *c, const char *resource,
					   struct authmd_credential *out, struct authmd_error *err);

/* The claim of the registration stored for resource, by its stored
 * generation. v0.1: authmd_claim_start sends the claim (the service mails
 * the user a 6-digit code) and authmd_claim_complete sends the code. v0.6:
 * authmd_claim_start starts a user_code attempt as authmd_claim_code_start
 * does (read it back with authmd_claim_code_attempt), and
 * authmd_claim_complete is refused (AUTHMD_ERR_USAGE: there is no mailed
 * code; poll or wait instead). The read-back ceremony (proposal (b)) has
 * calls of its own, authmd_claim_readback_start and _complete. */
enum authmd_status authmd_claim_start(struct authmd_client *c, const char *resource,
				      const char *email, struct authmd_error *err);
enum authmd_status authmd_claim_complete(struct authmd_client *c, const char *resource,
					 const char *otp, struct authmd_credential *out,
					 struct authmd_error *err);

/* The read-back claim (issue 14, proposal (b)) of the v0.6 credential
 * stored for resource: _start asks the service for an attempt bound to
 * login_hint (NULL: to whoever signs in) and copies the URL the user must
 * open into verification_uri (cap bytes); there the user signs in, confirms
 * and is shown a 6-digit code. _complete sends the code the user read back;
 * on success the new identity assertion is stored and exchanged for a
 * post-claim access token (in *out when not NULL). Refusals carry the
 * service's code: claim_not_confirmed, invalid_user_code (try again),
 * user_code_expired (start again), access_denied, invalid_grant (the claim
 * token is dropped). */
enum authmd_status authmd_claim_readback_start(struct authmd_client *c, const char *resource,
					       const char *login_hint, char *verification_uri,
					       size_t cap, struct authmd_error *err);
enum authmd_status authmd_claim_readback_complete(struct authmd_client *c, const char *resource,
						  const char *code, struct authmd_credential *out,
						  struct authmd_error *err);

/* The v0.4-v0.6 user_code ceremony (a v0.6 registration): the service gives
 * a short code and a page; the user signs in there and types the code; the
 * agent polls the token endpoint (grant urn:workos:agent-auth:grant-type:
 * claim) at the interval the service sets, and gets the post-claim access
 * token and a new identity_assertion, which are stored. */
struct authmd_claim_attempt {
	char resource[AUTHMD_URL_MAX];
	char attempt_id[64];
	char user_code[32];				/* show it to the user */
	char verification_uri[AUTHMD_URL_MAX];		/* where the user signs in and types it */
	char verification_uri_complete[AUTHMD_URL_MAX]; /* the same page, code filled in */
	char expires_at[40];				/* RFC 3339 */
	long expires_in;				/* seconds left when filled */
	long interval;					/* seconds between polls */
};

/* What one poll found. */
enum authmd_claim_status {
	AUTHMD_CLAIM_PENDING = 0, /* authorization_pending: poll again after interval */
	AUTHMD_CLAIM_SLOW_DOWN,	  /* slow_down: polled too soon; the interval has grown */
	AUTHMD_CLAIM_WAITING,	  /* (callback only) between polls: a chance to stop */
	AUTHMD_CLAIM_CLAIMED,	  /* the user confirmed: the post-claim credential is stored */
	AUTHMD_CLAIM_DENIED,	  /* access_denied: the user rejected; the registration stays
				     unclaimed and a new attempt may be started */
	AUTHMD_CLAIM_EXPIRED,	  /* expired_token: the code ran out (time, wrong tries, a
				     newer attempt): start again */
	AUTHMD_CLAIM_INVALID,	  /* invalid_grant: the claim token is dead: register again */
};

/* Starts an attempt for the v0.6 registration stored for resource: POST
 * claim_endpoint {claim_token, email}; email is the address the user will
 * sign in with (the service refuses another). Every start makes a new
 * attempt and ends the previous one. The attempt is stored (so a later
 * authmd_claim_code_wait resumes it) and copied to *out (may be NULL).
 * AUTHMD_ERR_REFUSED for a v0.1 registration or one with no claim left. */
enum authmd_status authmd_claim_code_start(struct authmd_client *c, const char *resource,
					   const char *email, struct authmd_claim_attempt *out,
					   struct authmd_error *err);
/* The open attempt stored for resource (a start, or the claim block of a
 * first-link registration); AUTHMD_ERR_ACTION_NEEDED when there is none. */
enum authmd_status authmd_claim_code_attempt(struct authmd_client *c, const char *resource,
					     struct authmd_claim_attempt *out,
					     struct authmd_error *err);
/* One poll of the open attempt. AUTHMD_OK whenever the service answered
 * the ceremony: *status says what (PENDING, SLOW_DOWN with the grown
 * interval, CLAIMED with the new credential stored and in *out when not
 * NULL, DENIED, EXPIRED, INVALID; err then names the code and what to do)
 * and *interval the seconds to wait before the next poll. Another error
 * (the network, a 5xx) is returned as such. */
enum authmd_status authmd_claim_code_poll(struct authmd_client *c, const char *resource,
					  enum authmd_claim_status *status, long *interval,
					  struct authmd_credential *out, struct authmd_error *err);
/* Called by authmd_claim_code_wait after each PENDING or SLOW_DOWN poll, and
 * about every 250 ms in between with AUTHMD_CLAIM_WAITING; remaining_s is
 * the time left on the attempt. Returning false stops the wait. */
typedef bool (*authmd_claim_cb)(void *arg, enum authmd_claim_status status, long interval_s,
				long remaining_s);
/* Polls the open attempt until it ends: waits the interval before each
 * poll, grows it on slow_down (+5 s, or the larger value the service names),
 * and gives up at the attempt's expiry. AUTHMD_OK once claimed (*out as for
 * a poll); AUTHMD_ERR_REFUSED with code "access_denied" or "invalid_grant";
 * AUTHMD_ERR_ACTION_NEEDED with code "expired_token" (start again) or
 * "interrupted" (cb returned false: the attempt stays open and stored, and
 * a later wait resumes it). cb may be NULL. */
enum authmd_status authmd_claim_code_wait(struct authmd_client *c, const char *resource,
					  authmd_claim_cb cb, void *arg,
					  struct authmd_credential *out, struct authmd_error *err);

/* The stored credential whose resource is the longest prefix of url (or,
 * failing that, on url's origin). */
enum authmd_status authmd_credential_for(struct authmd_client *c, const char *url,
					 struct authmd_credential *out, struct authmd_error *err);
/* Every stored credential; *n of them in a new array (free()). */
enum authmd_status authmd_credentials(struct authmd_client *c, struct authmd_credential **out,
				      size_t *n, struct authmd_error *err);
/* Removes the credential stored for resource. */
enum authmd_status authmd_forget(struct authmd_client *c, const char *resource,
				 struct authmd_error *err);

struct authmd_response {
	int status;
	char *body; /* NUL-terminated; free with authmd_response_clear */
	size_t len;
	char content_type[128];
};
void authmd_response_clear(struct authmd_response *r);

/* A request with the stored credential for url (a v0.6 access token that
 * has expired, or that a 401 refuses after it worked, is first exchanged
 * again from the stored identity_assertion), following AUTH.md's retry
 * policy: 5xx is retried with exponential backoff and jitter for the
 * idempotent methods only (GET, HEAD, OPTIONS, TRACE, PUT, DELETE: a POST or
 * PATCH that got a 5xx may have taken effect, so it is returned, not sent
 * again), 429 after
 * Retry-After; a 401 on a credential that worked before drops it,
 * rediscovers and re-registers once when no person is needed: an ID-JAG
 * from the stored provider session under consent that still stands (a
 * withdrawn consent is never renewed automatically). headers is NULL-terminated ("Name: value");
 * body may be NULL. Any HTTP answer is AUTHMD_OK with *resp filled; err then carries the advice for
 * a 4xx. */
enum authmd_status authmd_request(struct authmd_client *c, const char *method, const char *url,
				  const char *const *headers, const char *body,
				  struct authmd_response *resp, struct authmd_error *err);

#ifdef __cplusplus
}
#endif

#endif
