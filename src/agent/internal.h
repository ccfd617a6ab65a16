/* The client library's insides shared by its files, in the order they may
 * call each other (never back up): wire.c (HTTP, JSON, advice), attempt.c
 * (the kept user_code attempt), client.c (discovery, the store,
 * registration, requests), claims.c (both claim ceremonies). Not part of
 * include/authmd/client.h and not exported from the .so. */
#ifndef AGENT_INTERNAL_H
#define AGENT_INTERNAL_H

#include <jansson.h>
#include <stdbool.h>

#include "authmd/client.h"
#include "core/str.h"

struct proofkey;

struct authmd_client {
	char store_path[AUTHMD_URL_MAX];
	long timeout_ms;
	int max_retries;
	long max_retry_after_s;
	bool allow_missing_issuer;
	enum authmd_protocol protocol;
	bool dpop;
	struct proofkey *key; /* loaded on first use */
};

/* One HTTP answer: status, body (capped at 1 MiB), a few headers. */
struct agent_result {
	long status;
	struct am_buf body;
	char www_auth[1024];
	long retry_after;
	char content_type[128];
};

/* ---- wire.c ---- */

/* One HTTP exchange; AUTHMD_OK for any answer (see r->status), which the
 * caller clears with agent_result_clear. bearer and headers may be NULL. */
enum authmd_status agent_fetch(struct authmd_client *c, const char *method, const char *url,
			       const char *bearer, const char *const *headers,
			       const char *content_type, const char *body, struct agent_result *r,
			       struct authmd_error *err) __attribute__((warn_unused_result));
/* Wipes and frees the body. */
void agent_result_clear(struct agent_result *r);
/* The service's {"error", "message" | "error_description"} as err, with
 * AUTH.md's advice; AUTHMD_ERR_NETWORK for a 5xx, else AUTHMD_ERR_REFUSED. */
enum authmd_status agent_service_error(const struct agent_result *r, const char *what,
				       struct authmd_error *err);
/* The JSON object of a 2xx answer into *out (new reference); a service error
 * otherwise. Clears r either way. */
enum authmd_status agent_json_answer(struct agent_result *r, const char *what, json_t **out,
				     struct authmd_error *err) __attribute__((warn_unused_result));
/* POSTs req (stolen) as JSON; the 2xx answer's object into *out. */
enum authmd_status agent_post_json(struct authmd_client *c, const char *url, const char *bearer,
				   json_t *req, const char *what, json_t **out,
				   struct authmd_error *err) __attribute__((warn_unused_result));
/* Appends "&name=value" (value percent-encoded); false without memory. */
bool agent_form_add(struct am_buf *b, const char *name, const char *value);
/* obj[key] as a string into out, "" when absent, not a string or too long. */
void agent_copy_str(const json_t *obj, const char *key, char *out, size_t cap);
/* A JSON array of scope strings as one space-separated string. */
void agent_scopes_of(const json_t *arr, char *out, size_t cap);
/* "now + seconds" as RFC 3339 UTC. */
void agent_utc_after(long long seconds, char *out, size_t cap);
void agent_sleep_ms(long ms);

/* ---- attempt.c ---- */

/* The claim block of a 401 interaction_required (v0.5 first
 * link) or of a claim start, {user_code, verification_uri,
 * verification_uri_complete, expires_in, interval}, kept on cred as its open
 * attempt (claim_state "pending"). False when block lacks a user_code or a
 * verification_uri, or when either holds what a terminal should not print
 * (anything but printable ASCII; a page that is not an http(s) URL). */
bool agent_keep_attempt(struct authmd_credential *cred, const json_t *block,
			const char *attempt_id);
/* Forgets cred's open attempt (the claim token stays). */
void agent_clear_attempt(struct authmd_credential *cred);

/* ---- client.c ---- */

/* Writes cred into the credentials file (one load-change-save). */
enum authmd_status agent_store_put(struct authmd_client *c, const struct authmd_credential *cred,
				   struct authmd_error *err);
/* cred's identity_assertion for an access token at its token_endpoint (RFC
 * 7523, with the RFC 8707 resource; DPoP-bound when the client binds).
 * Fills cred->credential and its type, expiry and scopes; does not store. */
enum authmd_status agent_token_exchange(struct authmd_client *c, struct authmd_credential *cred,
					struct authmd_error *err)
	__attribute__((warn_unused_result));

#endif
