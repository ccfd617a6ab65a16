/* Server configuration: one INI file resolved through a table of keys, each
 * with a type, default and range (config.c). Code receives a
 * `const struct am_config *`, never a global. */
#ifndef AM_CONFIG_H
#define AM_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/compiler.h"

#define AM_CFG_STR 512
#define AM_MAX_PROVIDERS 16

/* The gate (docs/gate.md): one [route NAME] section of the access policy. */
#define AM_MAX_ROUTES 64
struct am_route {
	char name[64];
	char path[256];		/* canonical path prefix, matched segment-wise */
	char methods[128];	/* space-separated; empty: every method */
	char scope[AM_CFG_STR]; /* every one of these is required; empty: authenticated */
};

/* One [introspection client NAME] section: a resource server allowed to
 * call POST /oauth2/introspect with HTTP Basic. */
#define AM_MAX_INTROSPECTION_CLIENTS 16
struct am_introspection_client {
	char name[64];		 /* the Basic user name (client_id) */
	char secret_sha256[65];	 /* hex SHA-256 of the secret, or */
	char secret_file[256];	 /* a file holding the secret (read at start) */
	uint8_t secret_hash[32]; /* derived: SHA-256 of the secret */
};

/* One operator key of the admin API: a line "NAME SHA256HEX" of [admin]
 * keys_file. Only the hash of the bearer token is ever held. */
#define AM_MAX_ADMIN_KEYS 32
struct am_admin_key {
	char name[64];
	uint8_t hash[32];
};

/* Reads the secret in path (its first line, without the line end) into
 * out (cap bytes, NUL-terminated). Refuses, with the reason in err, a file
 * that is not a regular file, is readable or writable by group or others,
 * cannot be read, or holds no secret or one of cap bytes or more. The
 * caller wipes out when done (OPENSSL_cleanse). 0 or -1. */
int am_secret_file_read(const char *path, char *out, size_t cap, char *err, size_t errcap) AM_WUR;

/* One trusted agent provider: a [provider NAME] section. */
struct am_provider {
	char name[64];
	char issuer[256];	     /* required; exact match of the token's iss */
	char jwks_uri[256];	     /* default: issuer + /.well-known/jwks.json */
	char client_ids[AM_CFG_STR]; /* accepted client_id values; default: issuer */
	char scopes[AM_CFG_STR];     /* granted to its users; default: post_claim */
	bool link_by_email;	     /* offer a first-link ceremony by verified email */
	bool link_by_phone;	     /* ... by verified phone number */
	int64_t max_auth_age;	     /* auth_time at most this old; 0: optional; -1: [v06]'s */
	bool require_auth_time;	     /* v0.1's /agent/auth checks auth_time too */
	/* Client ID Metadata Documents (issue 15; trust/cimd.h) */
	bool client_ids_pinned;	       /* client_ids was written: only those values */
	bool cimd;		       /* resolve URL client_ids on the allowed origins */
	char cimd_origins[AM_CFG_STR]; /* origins besides the issuer's; space-separated */
};

struct am_config {
	/* [server] */
	char listen[128];     /* host:port as written */
	char listen_host[64]; /* parsed from listen */
	uint16_t listen_port;
	char public_url[256]; /* origin, no trailing slash; also the issuer */
	char resource[256];   /* protected resource identifier (absolute URL) */
	char resource_name[128];
	char resource_logo_uri[256]; /* empty: not published */
	char tenant[64];
	int64_t threads;
	char auth_md_file[256];	    /* served verbatim when set */
	char auth_md_template[256]; /* empty: the built-in template */
	/* [server] connection limits */
	int64_t max_connections; /* 0: from the open-file limit */
	int64_t max_connections_per_ip;
	int64_t header_timeout;	   /* request line and headers, in total */
	int64_t request_timeout;   /* the whole request, body included */
	int64_t idle_timeout;	   /* no bytes either way */
	int64_t slow_log_interval; /* one summary line per interval */
	/* [server] issue 8 (perf) */
	int64_t connection_memory; /* bytes; request line and headers must fit */
	/* [store] */
	char store_url[AM_CFG_STR];
	/* [store] on PostgreSQL (issue 11): docs/storage.md */
	int64_t store_pool_size;	 /* connections this replica opens at most */
	int64_t store_connect_timeout;	 /* seconds, per (re)connection */
	int64_t store_statement_timeout; /* seconds, per statement or lock wait */
	int64_t store_writer_priority;	 /* nice steps the store writer runs above the rest */
	/* [mail] */
	char mail_outbox[256];
	char mail_smtp_url[256]; /* set: mail goes over SMTP instead */
	char mail_from[256];
	char mail_smtp_user[128];
	char mail_smtp_password[128];
	char mail_starttls[16]; /* required | try | off */
	/* the mail queue's retries: first delay, and the cap of its doubling */
	int64_t mail_retry_min;
	int64_t mail_retry_max;
	int64_t mail_stuck_after; /* /readyz: not ready past this age of the oldest queued mail */
	/* [scopes] space-separated */
	char scopes_supported[AM_CFG_STR];
	char scopes_pre_claim[AM_CFG_STR];
	char scopes_post_claim[AM_CFG_STR];
	/* [ttl] seconds */
	int64_t ttl_access_token;
	int64_t ttl_registration;
	int64_t ttl_claim_attempt;
	int64_t ttl_otp;
	int64_t clock_skew;
	int64_t sweep_interval;
	/* [limits] */
	int64_t body_bytes;
	int64_t otp_attempts;
	int64_t rate_window;
	int64_t anonymous_per_ip;
	int64_t anonymous_global;
	int64_t identity_per_ip;
	int64_t identity_global;
	int64_t jwks_refetch; /* seconds between fetches of one JWKS, at least */
	/* token lifetimes and stale keys (issue 10 findings 7 and 9) */
	int64_t id_jag_max_lifetime; /* [limits]: exp - iat of an ID-JAG or logout token, at most */
	int64_t jwks_max_stale;	     /* [limits]: a key set's use past its max-age, at most */
	/* claim mail flood limits (0: no limit) */
	int64_t claim_mails_per_registration; /* in a registration's whole life */
	int64_t claim_mail_window;	      /* seconds, for the two below */
	int64_t claim_mails_per_address;      /* to one address per window */
	int64_t claim_mails_global;	      /* in all per window */
	/* [flows] */
	bool flow_anonymous;
	bool flow_verified_email;
	bool flow_id_jag;
	bool flow_jit;
	/* [audit] [log] */
	char audit_sink[256]; /* stdout | stderr | off | file:PATH */
	char log_level[16];
	/* [outbound] allow_private_targets: CIDR blocks outbound fetches may
	 * reach though private or loopback (core/fetch.h); empty: none */
	char outbound_allow[256];
	/* gate (issue 9): [server] trusted_proxies, [gate], [metrics], [route NAME],
	 * [introspection client NAME] */
	char trusted_proxies[AM_CFG_STR]; /* CIDR list; empty: trust no proxy */
	char trusted_proxy_header[24];	  /* x-forwarded-for | forwarded */
	char gate_default[16];		  /* deny | authenticated */
	int64_t introspection_per_minute; /* per client (and per IP for bad logins) */
	int64_t revocation_per_minute;	  /* RFC 7009 calls per client IP */
	char metrics_allow[AM_CFG_STR];	  /* CIDR list of peers allowed /metrics */
	struct am_route routes[AM_MAX_ROUTES];
	size_t nroutes;
	bool routes_builtin; /* no [route] section: the demo API's two routes */
	struct am_introspection_client introspection_clients[AM_MAX_INTROSPECTION_CLIENTS];
	size_t nintrospection_clients;
	/* CORS and CIMD (issue 15): service/cors.c, trust/cimd.c */
	char cors_origins[AM_CFG_STR]; /* [server]: origins allowed on the /agent endpoints; "*":
					  any */
	int64_t cimd_cache_min;	       /* [cimd]: a document's cache life, at least */
	int64_t cimd_cache_max;	       /* ... at most */
	int64_t cimd_negative_cache;   /* ... of a refusal or a failed fetch */
	int64_t cimd_cache_entries;    /* documents (and failures) cached, at most */
	int64_t cimd_fetch_timeout;    /* one fetch, in total */
	/* [v06] (issue 13): protocol v0.6 beside v0.1 */
	char v06_keys_dir[256];	   /* the service signing keys' folder (mode 0700) */
	int64_t v06_key_overlap;   /* a rotated-out key stays published this long */
	int64_t v06_assertion_ttl; /* life of a service-signed identity_assertion */
	bool v06_publish_issuers;  /* identity_assertion.issuers_supported in the metadata */
	int64_t v06_max_auth_age;  /* an ID-JAG's auth_time at most this old (0: optional) */
	int64_t v06_refresh_ttl;   /* life of each refresh token (rolling: from its issue) */
	/* operator surface (issue 12 item 6): docs/operations.md */
	char log_format[16];		   /* [log] text | json */
	char log_file[256];		   /* [log] empty: stderr as it is */
	bool log_requests;		   /* [log] one line per answered request */
	char mail_smtp_password_file[256]; /* [mail] read into mail_smtp_password */
	char admin_listen[128];		   /* [admin] host:port; empty: no admin API */
	char admin_host[64];		   /* parsed from admin_listen */
	uint16_t admin_port;
	char admin_keys_file[256]; /* [admin] "NAME SHA256HEX" lines */
	struct am_admin_key admin_keys[AM_MAX_ADMIN_KEYS];
	size_t nadmin_keys;
	/* [login] user sign-in at the service (issue 14; flows/login.c) */
	bool login_enabled;
	int64_t login_code_ttl;		  /* a mailed code and link, at most */
	int64_t login_session_ttl;	  /* a session's fixed lifetime */
	int64_t login_session_idle;	  /* a session unused this long ends */
	int64_t login_max_attempts;	  /* wrong codes or links per mail */
	int64_t login_mail_window;	  /* for mails_per_address */
	int64_t login_mails_per_address;  /* login mails to one address per window; 0: no limit */
	int64_t login_per_ip;		  /* login POSTs from one IP per [limits] rate_window */
	int64_t login_verify_per_address; /* code/link checks for one address per rate_window */
	/* the v0.4-v0.6 user_code ceremony (issue 14) */
	bool flow_service_auth;	       /* [flows] service_auth: v0.6 type service_auth */
	int64_t ceremony_code_ttl;     /* [ceremony] user_code_ttl */
	int64_t ceremony_interval;     /* [ceremony] interval: the claim grant's poll interval */
	int64_t ceremony_code_tries;   /* [ceremony] user_code_attempts: wrong entries per code */
	int64_t ceremony_readback_ttl; /* [ceremony] readback_code_ttl: a shown read-back code */
	/* [provider NAME] sections: the trust list */
	struct am_provider providers[AM_MAX_PROVIDERS];
	size_t nproviders;
};

enum cfg_type { CFG_STRING, CFG_URL, CFG_HOSTPORT, CFG_SECONDS, CFG_UINT, CFG_BOOL, CFG_SCOPES };

struct cfg_key {
	const char *section;
	const char *key;
	enum cfg_type type;
	size_t offset;
	size_t size;	     /* of the field, for strings */
	const char *def;     /* default, as it would be written in the file */
	int64_t min, max;    /* for numbers; for strings, max is the length cap */
	const char *choices; /* "a|b|c" when only these values are allowed */
};

/* The key tables, for documentation checks: the fixed sections, and the
 * keys of a [provider NAME] section. */
const struct cfg_key *am_config_keys(size_t *n);
const struct cfg_key *am_config_provider_keys(size_t *n);

/* The keys of a [route NAME] and an [introspection client NAME] section. */
const struct cfg_key *am_config_route_keys(size_t *n);
const struct cfg_key *am_config_introspection_client_keys(size_t *n);

/* The trusted provider with exactly this issuer, or NULL. */
const struct am_provider *am_config_provider(const struct am_config *cfg, const char *issuer);
/* The auth_time window of p's ID-JAGs (v0.5): its max_auth_age, or [v06]
 * max_auth_age when that is unset; 0 makes auth_time optional. */
int64_t am_provider_max_auth_age(const struct am_config *cfg, const struct am_provider *p);

/* True when value is one of the space-separated words of list. */
bool am_word_in(const char *list, const char *value);

/* Fills cfg with every default. Cannot fail: the defaults are valid. */
void am_config_defaults(struct am_config *cfg);

/* Loads defaults, then path over them, then checks the whole. On failure
 * returns -1 with a message naming the file, line and key in err. */
int am_config_load(const char *path, struct am_config *cfg, char *err, size_t errcap) AM_WUR;

/* Applies one key as if read from a file (for defaults and tests); 0 on
 * success, else -1 with the reason in err. */
int am_config_set(struct am_config *cfg, const char *section, const char *key, const char *value,
		  char *err, size_t errcap) AM_WUR;

/* Checks the cross-key rules (scopes subsets, URLs); 0 or -1 with err. */
int am_config_validate(struct am_config *cfg, char *err, size_t errcap) AM_WUR;

/* The generic machinery, for other programs' configuration tables. */

/* Sets field k of base from text v (checked per the key's type and range);
 * 0, or -1 with the reason in err. */
int am_cfg_apply(void *base, const struct cfg_key *k, const char *v, char *err,
		 size_t errcap) AM_WUR;
/* Sets every key of the table to its default. */
void am_cfg_defaults(void *base, const struct cfg_key *keys, size_t n);
/* Reads path, calling set for each key; on the first refusal fails with
 * "path:line: [section] key: reason" in err. */
typedef int (*am_cfg_setter)(void *ctx, const char *section, const char *key, const char *value,
			     char *err, size_t errcap);
int am_cfg_parse(const char *path, am_cfg_setter set, void *ctx, char *err, size_t errcap) AM_WUR;
/* Looks key up in a table for section and applies it; 0 or -1 with err. */
int am_cfg_set_in(void *base, const struct cfg_key *keys, size_t n, const char *section,
		  const char *key, const char *value, char *err, size_t errcap) AM_WUR;
/* Splits "host:port" (IPv6 as "::1:8000"); 0 or -1. */
int am_parse_hostport(const char *v, char *host, size_t cap, uint16_t *port) AM_WUR;

/* True when scope (a single token) is in the space-separated list. */
bool am_scope_in(const char *list, const char *scope);

#endif
