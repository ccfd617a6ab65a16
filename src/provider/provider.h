/* authmd-provider: an agent provider. Users and their agents' sessions,
 * per-audience consent grants, ID-JAG minting, a published JWKS with key
 * rotation, and durable delivery of logout tokens when a grant is revoked.
 * Files: pconfig.c (configuration), pstore.c (storage), pkeys.c (signing
 * keys), pflow.c (the running app), delivery.c (the logout-token queue):
 * the flow layer, which sees no HTTP type; papi.h/papi.c (HTTP API) is the
 * API layer on top of it. */
#ifndef AM_PROVIDER_H
#define AM_PROVIDER_H

#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/config.h"
#include "core/crypto.h"
#include "core/errors.h"
#include "jose/jose.h"

struct prov_config {
	/* [provider] */
	char listen[128];
	char listen_host[64];
	uint16_t listen_port;
	char issuer[256];      /* its public URL, no trailing slash */
	char client_id[256];   /* default: issuer; or the CIMD URL */
	char client_name[128]; /* shown in the CIMD document */
	int64_t threads;
	/* [store] */
	char store_url[AM_CFG_STR];
	/* [keys] */
	char keys_alg[8];
	char keys_dir[256];
	int64_t keys_overlap; /* how long a retired public key stays published */
	int64_t jwks_max_age;
	/* [idjag] */
	int64_t idjag_ttl;
	/* [revocation] */
	int64_t retry_max_attempts;
	int64_t retry_base; /* first backoff, seconds */
	int64_t retry_max;  /* backoff ceiling, seconds */
	/* [log] */
	char log_level[16];
	/* [outbound] allow_private_targets: CIDR blocks deliveries may reach
	 * though private or loopback (core/fetch.h); empty: none */
	char outbound_allow[256];
	/* [revocation] allowed_origins: origins a grant's revocation_uri may
	 * be on besides its audience's own */
	char revocation_origins[512];
};

const struct cfg_key *prov_config_keys(size_t *n);
void prov_config_defaults(struct prov_config *c);
/* Defaults, then path (NULL: defaults only), then the cross-key checks. */
int prov_config_load(const char *path, struct prov_config *c, char *err, size_t errcap) AM_WUR;

/* ---- storage (pstore.c) ---- */

struct pstore;

struct prov_user {
	char id[40], sub[40];
	char email[256];
	bool email_verified;
	char phone[64];
	bool phone_verified;
	char name[128];
	int64_t created_at;
	int64_t session_at; /* set by a session lookup: when that session was made */
};

enum grant_status { GRANT_ACTIVE, GRANT_CONSUMED, GRANT_REVOKED };

/* How a revocation reaches the audience: a logout token to a v0.1
 * revocation_uri, or a SET (RFC 8417) to a v0.6 events_endpoint. */
enum delivery_format { FORMAT_LOGOUT, FORMAT_SET };
const char *prov_format_name(enum delivery_format f); /* "logout" | "set" */

struct prov_grant {
	char id[40], user_id[40];
	char audience[256];
	bool once;
	char revocation_uri[256]; /* the target URL of either format; empty: none */
	enum delivery_format format;
	enum grant_status status;
	int64_t created_at, updated_at;
};

enum delivery_status { DELIVERY_PENDING, DELIVERY_DELIVERED, DELIVERY_FAILED };

struct prov_delivery {
	char id[40], grant_id[40];
	char url[256], sub[40], aud[256];
	enum delivery_format format;
	enum delivery_status status;
	int64_t attempts, next_at, http_status;
	char last_error[256];
};

enum am_err pstore_open(const char *url, struct pstore **out, struct am_error *e) AM_WUR;
void pstore_close(struct pstore *ps);
enum am_err pstore_begin(struct pstore *ps, struct am_error *e) AM_WUR;
enum am_err pstore_commit(struct pstore *ps, struct am_error *e) AM_WUR;
void pstore_rollback(struct pstore *ps);

enum am_err pstore_user_add(struct pstore *ps, const struct prov_user *u,
			    struct am_error *e) AM_WUR;
enum am_err pstore_user_by_email(struct pstore *ps, const char *email, struct prov_user *out,
				 struct am_error *e) AM_WUR;
enum am_err pstore_user_by_id(struct pstore *ps, const char *id, struct prov_user *out,
			      struct am_error *e) AM_WUR;
/* Calls fn for every user, oldest first. */
enum am_err pstore_users(struct pstore *ps, void (*fn)(void *ctx, const struct prov_user *u),
			 void *ctx, struct am_error *e) AM_WUR;

enum am_err pstore_session_add(struct pstore *ps, const char *id, const uint8_t hash[AM_HASH_LEN],
			       const char *user_id, int64_t at, struct am_error *e) AM_WUR;
/* The user of a live session with this token hash, and when the session
 * was made (the user's authentication here: an ID-JAG's auth_time). */
enum am_err pstore_session_user(struct pstore *ps, const uint8_t hash[AM_HASH_LEN],
				char user_id[40], int64_t *created_at, struct am_error *e) AM_WUR;
enum am_err pstore_session_revoke(struct pstore *ps, const char *id, int64_t at,
				  struct am_error *e) AM_WUR;

enum am_err pstore_grant_add(struct pstore *ps, const struct prov_grant *g,
			     struct am_error *e) AM_WUR;
enum am_err pstore_grant_get(struct pstore *ps, const char *user_id, const char *id,
			     struct prov_grant *out, struct am_error *e) AM_WUR;
/* The newest active grant of user for audience. */
enum am_err pstore_grant_live(struct pstore *ps, const char *user_id, const char *audience,
			      struct prov_grant *out, struct am_error *e) AM_WUR;
/* Moves a grant from `from` to `to`; AM_E_NOT_FOUND if it was not in `from`. */
enum am_err pstore_grant_set(struct pstore *ps, const char *id, enum grant_status from,
			     enum grant_status to, int64_t at, struct am_error *e) AM_WUR;
/* Every grant of user (newest first) with its latest delivery, as JSON. */
enum am_err pstore_grants_json(struct pstore *ps, const char *user_id, json_t **out,
			       struct am_error *e) AM_WUR;

enum am_err pstore_delivery_add(struct pstore *ps, const struct prov_delivery *d, int64_t at,
				struct am_error *e) AM_WUR;
/* Up to cap pending deliveries due at now. */
enum am_err pstore_deliveries_due(struct pstore *ps, int64_t now, struct prov_delivery *out,
				  size_t cap, size_t *n, struct am_error *e) AM_WUR;
/* The earliest next_at of pending deliveries, or 0 if none. */
enum am_err pstore_delivery_next(struct pstore *ps, int64_t *at, struct am_error *e) AM_WUR;
enum am_err pstore_delivery_update(struct pstore *ps, const struct prov_delivery *d, int64_t at,
				   struct am_error *e) AM_WUR;

enum am_err pstore_key_add(struct pstore *ps, const char *kid, const char *alg,
			   const char *public_jwk, int64_t at, struct am_error *e) AM_WUR;
/* Retires every current key but kid, to be published until `until`. */
enum am_err pstore_key_retire_others(struct pstore *ps, const char *kid, int64_t at, int64_t until,
				     struct am_error *e) AM_WUR;
/* The current key's kid. */
enum am_err pstore_key_current(struct pstore *ps, char kid[64], struct am_error *e) AM_WUR;
/* The JWKS: the current key and retired ones still published at now. */
enum am_err pstore_jwks(struct pstore *ps, int64_t now, json_t **out, struct am_error *e) AM_WUR;

/* ---- signing keys (pkeys.c) ---- */

/* The current signing key: loaded from keys_dir/signing.jwk (mode 0600),
 * or generated on first start. Re-read when another process rotated it. */
struct pkeys;
enum am_err pkeys_open(const struct prov_config *c, struct pstore *ps, struct pkeys **out,
		       struct am_error *e) AM_WUR;
void pkeys_free(struct pkeys *k);
/* Signs claims with the current key (reloading it if it was rotated). */
enum am_err pkeys_sign(struct pkeys *k, struct pstore *ps, const char *typ, const json_t *claims,
		       char **out, struct am_error *e) AM_WUR;
/* Makes a new signing key; the old public key stays published for
 * [keys] overlap. *kid gets the new kid. */
enum am_err pkeys_rotate(const struct prov_config *c, struct pstore *ps, char kid[64],
			 struct am_error *e) AM_WUR;

/* ---- the running provider's flow layer (pflow.c: the app, prov_store,
 * the tokens) and the delivery worker (delivery.c); no HTTP types here,
 * the routes are the API layer's (papi.h) ---- */

struct prov_app {
	const struct prov_config *cfg;
	struct pkeys *keys;
	char store_url[AM_CFG_STR];
	pthread_key_t store_key; /* one store handle per worker thread */
	/* the delivery worker */
	pthread_t worker;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool stop, wake;
};

/* Opens the store and the signing keys for c (which must outlive the app). */
enum am_err prov_app_new(const struct prov_config *c, struct prov_app **out,
			 struct am_error *e) AM_WUR;
void prov_app_free(struct prov_app *a);
/* The calling thread's store handle, opened on first use. */
enum am_err prov_store(struct prov_app *a, struct pstore **out, struct am_error *e) AM_WUR;

/* Mints a logout token for (sub, aud). */
enum am_err prov_logout_token(struct prov_app *a, struct pstore *ps, const char *sub,
			      const char *aud, char **out, struct am_error *e) AM_WUR;

/* Mints a Security Event Token (RFC 8417, typ secevent+jwt) for (sub, aud)
 * carrying the identity-assertion-revoked event: iss, sub, aud, jti, iat
 * and events, as the v0.6 provider guide shows (no exp: RFC 8417 2.2). */
enum am_err prov_set_token(struct prov_app *a, struct pstore *ps, const char *sub, const char *aud,
			   char **out, struct am_error *e) AM_WUR;

/* Learns from the audience's authorization-server metadata (RFC 8414,
 * fetched under the outbound policy) where its revocations go: the v0.6
 * agent_auth.events_endpoint (format SET) when published, else the v0.1
 * agent_auth.revocation_uri (format logout). url gets the target (cap
 * bytes). AM_E_NOT_FOUND when the metadata names neither; AM_E_UNAVAILABLE
 * when it cannot be fetched or is not a JSON object. (pdiscover.c) */
enum am_err prov_discover_revocation(const struct prov_config *c, const char *audience, char *url,
				     size_t cap, enum delivery_format *format,
				     struct am_error *e) AM_WUR;

/* Starts and stops the delivery worker; prov_delivery_kick wakes it. */
enum am_err prov_delivery_start(struct prov_app *a, struct am_error *e) AM_WUR;
void prov_delivery_stop(struct prov_app *a);
void prov_delivery_kick(struct prov_app *a);

#endif
