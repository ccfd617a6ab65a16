#include "core/config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <ini.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/fetch.h"
#include "core/cidr.h"
#include "core/crypto.h"
#include "core/limits.h"
#include "core/str.h"
#include "core/url.h"

#define AT(f) offsetof(struct am_config, f), sizeof(((struct am_config *)0)->f)
#define YEAR 31536000

static const struct cfg_key keys[] = {
	/* section  key                 type          field                  default */
	{"server", "listen", CFG_HOSTPORT, AT(listen), "127.0.0.1:8000", 0, 127, NULL},
	{"server", "public_url", CFG_URL, AT(public_url), "http://127.0.0.1:8000", 0, 255, NULL},
	{"server", "resource", CFG_URL, AT(resource), "", 0, 255, NULL},
	{"server", "resource_name", CFG_STRING, AT(resource_name), "authmd demo API", 1, 127, NULL},
	{"server", "resource_logo_uri", CFG_URL, AT(resource_logo_uri), "", 0, 255, NULL},
	{"server", "tenant", CFG_STRING, AT(tenant), "default", 1, 63, NULL},
	{"server", "threads", CFG_UINT, AT(threads), "4", 1, 256, NULL},
	{"server", "auth_md_file", CFG_STRING, AT(auth_md_file), "", 0, 255, NULL},
	{"server", "auth_md_template", CFG_STRING, AT(auth_md_template), "", 0, 255, NULL},
	/* connection limits: http/server.c, docs/operations.md#connection-limits */
	{"server", "max_connections", CFG_UINT, AT(max_connections), "0", 0, 1000000, NULL},
	{"server", "max_connections_per_ip", CFG_UINT, AT(max_connections_per_ip), "128", 1,
	 1000000, NULL},
	{"server", "header_timeout", CFG_SECONDS, AT(header_timeout), "10", 1, 600, NULL},
	{"server", "request_timeout", CFG_SECONDS, AT(request_timeout), "30", 1, 3600, NULL},
	{"server", "idle_timeout", CFG_SECONDS, AT(idle_timeout), "15", 1, 3600, NULL},
	{"server", "slow_log_interval", CFG_SECONDS, AT(slow_log_interval), "60", 1, 3600, NULL},
	/* issue 8 (perf): a connection's memory, zeroed by libmicrohttpd per request */
	{"server", "connection_memory", CFG_UINT, AT(connection_memory), "16384", 8192, 1048576,
	 NULL},
	{"store", "url", CFG_STRING, AT(store_url), "sqlite:var/authmd.db", 1, AM_CFG_STR - 1,
	 NULL},
	/* [store] on PostgreSQL (issue 11): docs/storage.md */
	{"store", "pool_size", CFG_UINT, AT(store_pool_size), "32", 2, 10000, NULL},
	{"store", "connect_timeout", CFG_SECONDS, AT(store_connect_timeout), "2", 2, 60, NULL},
	{"store", "statement_timeout", CFG_SECONDS, AT(store_statement_timeout), "5", 1, 600, NULL},
	/* issue 8: the serial stage first when the cores are busy */
	{"store", "writer_priority", CFG_UINT, AT(store_writer_priority), "5", 0, 19, NULL},
	{"mail", "outbox", CFG_STRING, AT(mail_outbox), "var/outbox", 1, 255, NULL},
	{"mail", "smtp_url", CFG_STRING, AT(mail_smtp_url), "", 0, 255, NULL},
	{"mail", "from", CFG_STRING, AT(mail_from), "noreply@authmd.localhost", 3, 254, NULL},
	{"mail", "smtp_user", CFG_STRING, AT(mail_smtp_user), "", 0, 127, NULL},
	{"mail", "smtp_password", CFG_STRING, AT(mail_smtp_password), "", 0, 127, NULL},
	{"mail", "starttls", CFG_STRING, AT(mail_starttls), "required", 0, 15, "required|try|off"},
	/* the mail queue's retries (issue 8) */
	{"mail", "retry_min", CFG_SECONDS, AT(mail_retry_min), "5", 1, 3600, NULL},
	{"mail", "retry_max", CFG_SECONDS, AT(mail_retry_max), "600", 1, 86400, NULL},
	{"mail", "stuck_after", CFG_SECONDS, AT(mail_stuck_after), "900", 0, 604800, NULL},
	{"scopes", "supported", CFG_SCOPES, AT(scopes_supported), "api.read api.write", 1, 0, NULL},
	{"scopes", "pre_claim", CFG_SCOPES, AT(scopes_pre_claim), "api.read", 0, 0, NULL},
	{"scopes", "post_claim", CFG_SCOPES, AT(scopes_post_claim), "api.read api.write", 1, 0,
	 NULL},
	{"ttl", "access_token", CFG_SECONDS, AT(ttl_access_token), "3600", 5, 2592000, NULL},
	{"ttl", "registration", CFG_SECONDS, AT(ttl_registration), "86400", 5, YEAR, NULL},
	{"ttl", "claim_attempt", CFG_SECONDS, AT(ttl_claim_attempt), "1800", 5, 2592000, NULL},
	{"ttl", "otp", CFG_SECONDS, AT(ttl_otp), "600", 5, 3600, NULL},
	{"ttl", "clock_skew", CFG_SECONDS, AT(clock_skew), "60", 0, 600, NULL},
	{"ttl", "sweep_interval", CFG_SECONDS, AT(sweep_interval), "30", 1, 3600, NULL},
	{"limits", "body_bytes", CFG_UINT, AT(body_bytes), "65536", 1024, AM_MAX_BODY_BYTES, NULL},
	{"limits", "otp_attempts", CFG_UINT, AT(otp_attempts), "5", 1, 100, NULL},
	{"limits", "rate_window", CFG_SECONDS, AT(rate_window), "3600", 1, 86400, NULL},
	{"limits", "anonymous_per_ip", CFG_UINT, AT(anonymous_per_ip), "5", 0, 1000000, NULL},
	{"limits", "anonymous_global", CFG_UINT, AT(anonymous_global), "100", 0, 100000000, NULL},
	{"limits", "identity_per_ip", CFG_UINT, AT(identity_per_ip), "60", 0, 1000000, NULL},
	{"limits", "identity_global", CFG_UINT, AT(identity_global), "1000", 0, 100000000, NULL},
	{"limits", "jwks_refetch_interval", CFG_SECONDS, AT(jwks_refetch), "30", 1, 3600, NULL},
	/* token lifetimes and stale keys (issue 10 findings 7 and 9) */
	{"limits", "id_jag_max_lifetime", CFG_SECONDS, AT(id_jag_max_lifetime), "3600", 60, 86400,
	 NULL},
	{"limits", "jwks_max_stale", CFG_SECONDS, AT(jwks_max_stale), "3600", 0, 604800, NULL},
	/* claim mail: per registration in all, per address and in all per window; 0: no limit */
	{"limits", "claim_mails_per_registration", CFG_UINT, AT(claim_mails_per_registration), "5",
	 0, 1000, NULL},
	{"limits", "claim_mail_window", CFG_SECONDS, AT(claim_mail_window), "3600", 1, 604800,
	 NULL},
	{"limits", "claim_mails_per_address", CFG_UINT, AT(claim_mails_per_address), "5", 0, 100000,
	 NULL},
	{"limits", "claim_mails_global", CFG_UINT, AT(claim_mails_global), "1000", 0, 100000000,
	 NULL},
	{"flows", "anonymous", CFG_BOOL, AT(flow_anonymous), "on", 0, 0, NULL},
	{"flows", "verified_email", CFG_BOOL, AT(flow_verified_email), "on", 0, 0, NULL},
	{"flows", "id_jag", CFG_BOOL, AT(flow_id_jag), "on", 0, 0, NULL},
	{"flows", "jit", CFG_BOOL, AT(flow_jit), "on", 0, 0, NULL},
	{"audit", "sink", CFG_STRING, AT(audit_sink), "stdout", 1, 255, NULL},
	{"log", "level", CFG_STRING, AT(log_level), "info", 0, 15, "debug|info|warn|error"},
	/* outbound requests (core/fetch.h): the JWKS fetch, later CIMD */
	{"outbound", "allow_private_targets", CFG_STRING, AT(outbound_allow), "", 0, 255, NULL},
	/* CORS and CIMD (issue 15): service/cors.c, trust/cimd.c */
	{"server", "cors_origins", CFG_STRING, AT(cors_origins), "", 0, AM_CFG_STR - 1, NULL},
	{"cimd", "cache_min", CFG_SECONDS, AT(cimd_cache_min), "300", 0, 86400, NULL},
	{"cimd", "cache_max", CFG_SECONDS, AT(cimd_cache_max), "86400", 1, 604800, NULL},
	{"cimd", "negative_cache", CFG_SECONDS, AT(cimd_negative_cache), "30", 1, 3600, NULL},
	{"cimd", "cache_entries", CFG_UINT, AT(cimd_cache_entries), "1024", 1, 10000, NULL},
	{"cimd", "fetch_timeout", CFG_SECONDS, AT(cimd_fetch_timeout), "3", 1, 30, NULL},
	/* gate (docs/gate.md) */
	{"server", "trusted_proxies", CFG_STRING, AT(trusted_proxies), "", 0, AM_CFG_STR - 1, NULL},
	{"server", "trusted_proxy_header", CFG_STRING, AT(trusted_proxy_header), "x-forwarded-for",
	 0, 23, "x-forwarded-for|forwarded"},
	{"gate", "default", CFG_STRING, AT(gate_default), "deny", 0, 15, "deny|authenticated"},
	{"gate", "introspection_per_minute", CFG_UINT, AT(introspection_per_minute), "600", 0,
	 1000000, NULL},
	{"gate", "revocation_per_minute", CFG_UINT, AT(revocation_per_minute), "60", 0, 1000000,
	 NULL},
	{"metrics", "allow", CFG_STRING, AT(metrics_allow), "127.0.0.0/8 ::1", 0, AM_CFG_STR - 1,
	 NULL},
	/* protocol v0.6 (issue 13): the service signing key, identity assertions, discovery */
	{"v06", "keys_dir", CFG_STRING, AT(v06_keys_dir), "var/keys", 1, 200, NULL},
	{"v06", "key_overlap", CFG_SECONDS, AT(v06_key_overlap), "86400", 0, 2592000, NULL},
	{"v06", "assertion_ttl", CFG_SECONDS, AT(v06_assertion_ttl), "86400", 60, 2592000, NULL},
	{"v06", "publish_issuers", CFG_BOOL, AT(v06_publish_issuers), "off", 0, 0, NULL},
	{"v06", "max_auth_age", CFG_SECONDS, AT(v06_max_auth_age), "3600", 0, 2592000, NULL},
	{"v06", "refresh_ttl", CFG_SECONDS, AT(v06_refresh_ttl), "2592000", 60, 31536000, NULL},
	/* operator surface (issue 12 item 6): docs/operations.md */
	{"log", "format", CFG_STRING, AT(log_format), "text", 0, 15, "text|json"},
	{"log", "file", CFG_STRING, AT(log_file), "", 0, 255, NULL},
	{"log", "requests", CFG_BOOL, AT(log_requests), "on", 0, 0, NULL},
	{"mail", "smtp_password_file", CFG_STRING, AT(mail_smtp_password_file), "", 0, 255, NULL},
	{"admin", "listen", CFG_STRING, AT(admin_listen), "", 0, 127, NULL},
	{"admin", "keys_file", CFG_STRING, AT(admin_keys_file), "", 0, 255, NULL},
	/* user sign-in at the service (issue 14): docs/configuration.md [login] */
	{"login", "enabled", CFG_BOOL, AT(login_enabled), "on", 0, 0, NULL},
	{"login", "code_ttl", CFG_SECONDS, AT(login_code_ttl), "600", 30, 3600, NULL},
	{"login", "session_ttl", CFG_SECONDS, AT(login_session_ttl), "86400", 60, 2592000, NULL},
	{"login", "session_idle", CFG_SECONDS, AT(login_session_idle), "3600", 60, 2592000, NULL},
	{"login", "max_attempts", CFG_UINT, AT(login_max_attempts), "5", 1, 100, NULL},
	{"login", "mail_window", CFG_SECONDS, AT(login_mail_window), "3600", 60, 604800, NULL},
	{"login", "mails_per_address", CFG_UINT, AT(login_mails_per_address), "5", 0, 100000,
	 NULL},
	{"login", "per_ip", CFG_UINT, AT(login_per_ip), "30", 0, 1000000, NULL},
	{"login", "verify_per_address", CFG_UINT, AT(login_verify_per_address), "20", 0, 1000000,
	 NULL},
	/* the v0.4-v0.6 user_code ceremony (issue 14): docs/protocol.md */
	{"flows", "service_auth", CFG_BOOL, AT(flow_service_auth), "on", 0, 0, NULL},
	{"ceremony", "user_code_ttl", CFG_SECONDS, AT(ceremony_code_ttl), "600", 60, 600, NULL},
	{"ceremony", "interval", CFG_SECONDS, AT(ceremony_interval), "5", 1, 60, NULL},
	{"ceremony", "user_code_attempts", CFG_UINT, AT(ceremony_code_tries), "5", 1, 20, NULL},
	{"ceremony", "readback_code_ttl", CFG_SECONDS, AT(ceremony_readback_ttl), "300", 60, 600,
	 NULL},
};

#define RAT(f) offsetof(struct am_route, f), sizeof(((struct am_route *)0)->f)

static const struct cfg_key route_keys[] = {
	{"route", "path", CFG_STRING, RAT(path), "", 0, 255, NULL},
	{"route", "methods", CFG_STRING, RAT(methods), "", 0, 127, NULL},
	{"route", "scope", CFG_SCOPES, RAT(scope), "", 0, 0, NULL},
};

#define IAT(f)                                                                                     \
	offsetof(struct am_introspection_client, f),                                               \
		sizeof(((struct am_introspection_client *)0)->f)

static const struct cfg_key introspection_client_keys[] = {
	{"introspection client", "secret_sha256", CFG_STRING, IAT(secret_sha256), "", 0, 64, NULL},
	{"introspection client", "secret_file", CFG_STRING, IAT(secret_file), "", 0, 255, NULL},
};

#define PAT(f) offsetof(struct am_provider, f), sizeof(((struct am_provider *)0)->f)

static const struct cfg_key provider_keys[] = {
	{"provider", "issuer", CFG_URL, PAT(issuer), "", 0, 255, NULL},
	{"provider", "jwks_uri", CFG_URL, PAT(jwks_uri), "", 0, 255, NULL},
	{"provider", "client_ids", CFG_STRING, PAT(client_ids), "", 0, AM_CFG_STR - 1, NULL},
	{"provider", "scopes", CFG_SCOPES, PAT(scopes), "", 0, 0, NULL},
	{"provider", "link_by_email", CFG_BOOL, PAT(link_by_email), "off", 0, 0, NULL},
	{"provider", "link_by_phone", CFG_BOOL, PAT(link_by_phone), "off", 0, 0, NULL},
	/* v0.5 auth_time freshness per provider (issue 14): -1 is [v06] max_auth_age */
	{"provider", "max_auth_age", CFG_SECONDS, PAT(max_auth_age), "-1", -1, 2592000, NULL},
	{"provider", "require_auth_time", CFG_BOOL, PAT(require_auth_time), "off", 0, 0, NULL},
	/* Client ID Metadata Documents (issue 15; trust/cimd.h) */
	{"provider", "cimd", CFG_BOOL, PAT(cimd), "on", 0, 0, NULL},
	{"provider", "cimd_origins", CFG_STRING, PAT(cimd_origins), "", 0, AM_CFG_STR - 1, NULL},
};

const struct cfg_key *
am_config_keys(size_t *n)
{
	*n = sizeof(keys) / sizeof(keys[0]);
	return keys;
}

const struct cfg_key *
am_config_provider_keys(size_t *n)
{
	*n = sizeof(provider_keys) / sizeof(provider_keys[0]);
	return provider_keys;
}

const struct cfg_key *
am_config_route_keys(size_t *n)
{
	*n = sizeof(route_keys) / sizeof(route_keys[0]);
	return route_keys;
}

const struct cfg_key *
am_config_introspection_client_keys(size_t *n)
{
	*n = sizeof(introspection_client_keys) / sizeof(introspection_client_keys[0]);
	return introspection_client_keys;
}

const struct am_provider *
am_config_provider(const struct am_config *cfg, const char *issuer)
{
	for (size_t i = 0; issuer != NULL && i < cfg->nproviders; i++) {
		if (strcmp(cfg->providers[i].issuer, issuer) == 0)
			return &cfg->providers[i];
	}
	return NULL;
}

int64_t
am_provider_max_auth_age(const struct am_config *cfg, const struct am_provider *p)
{
	return p != NULL && p->max_auth_age >= 0 ? p->max_auth_age : cfg->v06_max_auth_age;
}

bool
am_word_in(const char *list, const char *value)
{
	return am_scope_in(list, value);
}

static bool
choice_ok(const char *choices, const char *v)
{
	size_t vl = strlen(v);
	const char *p = choices;

	while (*p != '\0') {
		const char *bar = strchr(p, '|');
		size_t n = bar != NULL ? (size_t)(bar - p) : strlen(p);

		if (n == vl && strncmp(p, v, n) == 0)
			return true;
		if (bar == NULL)
			break;
		p = bar + 1;
	}
	return false;
}

/* RFC 6749 scope-token: %x21 / %x23-5B / %x5D-7E, separated by single spaces. */
static bool
scopes_ok(const char *v)
{
	size_t count = 0;
	bool in_token = false;

	for (const char *p = v; *p != '\0'; p++) {
		unsigned char c = (unsigned char)*p;

		if (c == ' ') {
			in_token = false;
			continue;
		}
		if (c < 0x21 || c == 0x22 || c == 0x5c || c > 0x7e)
			return false;
		if (!in_token)
			count++;
		in_token = true;
	}
	return count <= AM_MAX_SCOPES;
}

/* Published verbatim in JSON, HTML and a header: core/url.h refuses spaces,
 * controls, quotes, angle brackets, backslash and backtick besides anything
 * that is not an absolute http(s) URL. */
static bool
url_ok(const char *v)
{
	struct am_url u;

	return am_url_parse(v, &u) && !u.has_userinfo;
}

int
am_parse_hostport(const char *v, char *host, size_t cap, uint16_t *port)
{
	const char *colon = strrchr(v, ':');
	int64_t p;
	size_t hl;

	if (colon == NULL || colon == v)
		return -1;
	hl = (size_t)(colon - v);
	if (hl >= cap)
		return -1;
	if (am_parse_i64(colon + 1, 1, 65535, &p) != 0)
		return -1;
	memcpy(host, v, hl);
	host[hl] = '\0';
	*port = (uint16_t)p;
	return 0;
}

static bool
parse_bool(const char *v, bool *out)
{
	if (!strcmp(v, "on") || !strcmp(v, "true") || !strcmp(v, "yes") || !strcmp(v, "1"))
		*out = true;
	else if (!strcmp(v, "off") || !strcmp(v, "false") || !strcmp(v, "no") || !strcmp(v, "0"))
		*out = false;
	else
		return false;
	return true;
}

int
am_cfg_apply(void *base, const struct cfg_key *k, const char *v, char *err, size_t errcap)
{
	char *field = (char *)base + k->offset;
	size_t vl = strlen(v);
	char host[64];
	uint16_t port;

	switch (k->type) {
	case CFG_STRING:
	case CFG_URL:
	case CFG_HOSTPORT:
	case CFG_SCOPES:
		if (vl >= k->size || (k->max > 0 && (int64_t)vl > k->max)) {
			snprintf(err, errcap, "value is too long");
			return -1;
		}
		if (k->min > 0 && (int64_t)vl < k->min) {
			snprintf(err, errcap, "value is empty or too short");
			return -1;
		}
		if (k->choices != NULL && !choice_ok(k->choices, v)) {
			snprintf(err, errcap, "must be one of %s", k->choices);
			return -1;
		}
		if (k->type == CFG_URL && vl > 0 && !url_ok(v)) {
			snprintf(err, errcap, "must be an absolute http(s) URL");
			return -1;
		}
		if (k->type == CFG_SCOPES && !scopes_ok(v)) {
			snprintf(err, errcap, "must be space-separated scope tokens (at most %d)",
				 AM_MAX_SCOPES);
			return -1;
		}
		if (k->type == CFG_HOSTPORT &&
		    am_parse_hostport(v, host, sizeof(host), &port) != 0) {
			snprintf(err, errcap, "must be host:port with a port from 1 to 65535");
			return -1;
		}
		memcpy(field, v, vl + 1);
		return 0;
	case CFG_SECONDS:
	case CFG_UINT:
		if (am_parse_i64(v, k->min, k->max, (int64_t *)(void *)field) != 0) {
			snprintf(err, errcap, "must be a whole number from %lld to %lld",
				 (long long)k->min, (long long)k->max);
			return -1;
		}
		return 0;
	case CFG_BOOL:
		if (!parse_bool(v, (bool *)(void *)field)) {
			snprintf(err, errcap, "must be on or off");
			return -1;
		}
		return 0;
	}
	snprintf(err, errcap, "internal: unknown key type");
	return -1;
}

/* The provider named name, created with its defaults on first mention. */
static struct am_provider *
provider_named(struct am_config *cfg, const char *name, char *err, size_t errcap)
{
	struct am_provider *p;

	for (size_t i = 0; i < cfg->nproviders; i++) {
		if (strcmp(cfg->providers[i].name, name) == 0)
			return &cfg->providers[i];
	}
	if (cfg->nproviders >= AM_MAX_PROVIDERS) {
		snprintf(err, errcap, "at most %d providers", AM_MAX_PROVIDERS);
		return NULL;
	}
	if (name[0] == '\0' || strlen(name) >= sizeof(p->name) || strchr(name, ' ') != NULL) {
		snprintf(err, errcap, "a provider section is [provider NAME], NAME one word");
		return NULL;
	}
	p = &cfg->providers[cfg->nproviders++];
	memset(p, 0, sizeof(*p));
	snprintf(p->name, sizeof(p->name), "%s", name);
	am_cfg_defaults(p, provider_keys, sizeof(provider_keys) / sizeof(provider_keys[0]));
	return p;
}

static int gate_section_set(struct am_config *cfg, const char *section, const char *key,
			    const char *value, char *err, size_t errcap);
static int validate_ops(struct am_config *cfg, char *err, size_t errcap);
static int validate_gate(struct am_config *cfg, char *err, size_t errcap);

int
am_config_set(struct am_config *cfg, const char *section, const char *key, const char *value,
	      char *err, size_t errcap)
{
	size_t n;
	const struct cfg_key *k = am_config_keys(&n);

	if (strncmp(section, "provider ", 9) == 0) {
		struct am_provider *p = provider_named(cfg, section + 9, err, errcap);

		if (p == NULL)
			return -1;
		for (size_t i = 0; i < sizeof(provider_keys) / sizeof(provider_keys[0]); i++) {
			if (strcmp(provider_keys[i].key, key) == 0)
				return am_cfg_apply(p, &provider_keys[i], value, err, errcap);
		}
		snprintf(err, errcap, "unknown key");
		return -1;
	}

	if (strncmp(section, "route ", 6) == 0 ||
	    strncmp(section, "introspection client ", 21) == 0)
		return gate_section_set(cfg, section, key, value, err, errcap);
	return am_cfg_set_in(cfg, k, n, section, key, value, err, errcap);
}

void
am_cfg_defaults(void *base, const struct cfg_key *table, size_t n)
{
	char err[128];

	for (size_t i = 0; i < n; i++) {
		if (am_cfg_apply(base, &table[i], table[i].def, err, sizeof(err)) != 0)
			abort(); /* a bad default is a bug caught by the first test run */
	}
}

int
am_cfg_set_in(void *base, const struct cfg_key *table, size_t n, const char *section,
	      const char *key, const char *value, char *err, size_t errcap)
{
	for (size_t i = 0; i < n; i++) {
		if (strcmp(table[i].section, section) == 0 && strcmp(table[i].key, key) == 0)
			return am_cfg_apply(base, &table[i], value, err, errcap);
	}
	snprintf(err, errcap, "unknown key");
	return -1;
}

void
am_config_defaults(struct am_config *cfg)
{
	char err[128];

	memset(cfg, 0, sizeof(*cfg));
	am_cfg_defaults(cfg, keys, sizeof(keys) / sizeof(keys[0]));
	/* The derived defaults of an empty resource. */
	if (am_config_validate(cfg, err, sizeof(err)) != 0)
		abort();
}

static bool
scopes_subset(const char *sub, const char *super, char *bad, size_t badcap)
{
	char copy[AM_CFG_STR];
	char *save = NULL;

	snprintf(copy, sizeof(copy), "%s", sub);
	for (char *t = strtok_r(copy, " ", &save); t != NULL; t = strtok_r(NULL, " ", &save)) {
		if (!am_scope_in(super, t)) {
			snprintf(bad, badcap, "%s", t);
			return false;
		}
	}
	return true;
}

/* Fills each provider's derived defaults and checks the trust list. */
/* True when every space-separated word of list is an origin in canonical
 * form (core/url.h: "https://a.example", lower-case host, no default port,
 * no path), or "*" alone when star; else false with the word in bad. Kept
 * canonical because origins are compared byte for byte. */
static bool
origins_ok(const char *list, bool star, char *bad, size_t badcap)
{
	const char *p = list;

	while (*p != '\0') {
		size_t n = strcspn(p, " ");
		char word[AM_CFG_STR], canon[AM_CFG_STR];

		if (n == 0) {
			p++;
			continue;
		}
		snprintf(word, sizeof(word), "%.*s", (int)n, p);
		am_copy(bad, badcap, word); /* truncated when long: only shown */
		if (!(star && strcmp(word, "*") == 0 && strcmp(list, "*") == 0) &&
		    (!am_url_is_origin_text(word) ||
		     !am_url_origin_of(word, canon, sizeof(canon)) || strcmp(word, canon) != 0))
			return false;
		p += n;
	}
	return true;
}

static int
validate_providers(struct am_config *cfg, char *err, size_t errcap)
{
	char bad[128];

	for (size_t i = 0; i < cfg->nproviders; i++) {
		struct am_provider *p = &cfg->providers[i];
		size_t il = strlen(p->issuer);

		if (il == 0) {
			snprintf(err, errcap, "[provider %s] issuer is required", p->name);
			return -1;
		}
		for (size_t j = 0; j < i; j++) {
			if (strcmp(cfg->providers[j].issuer, p->issuer) == 0) {
				snprintf(err, errcap,
					 "[provider %s] has the issuer of [provider %s]", p->name,
					 cfg->providers[j].name);
				return -1;
			}
		}
		char iss[sizeof(p->issuer)];

		memcpy(iss, p->issuer, il + 1);
		if (p->jwks_uri[0] == '\0' &&
		    snprintf(p->jwks_uri, sizeof(p->jwks_uri), "%.*s/.well-known/jwks.json",
			     (int)(iss[il - 1] == '/' ? il - 1 : il),
			     iss) >= (int)sizeof(p->jwks_uri)) {
			snprintf(err, errcap, "[provider %s] issuer too long", p->name);
			return -1;
		}
		p->client_ids_pinned = p->client_ids[0] != '\0';
		if (!origins_ok(p->cimd_origins, false, bad, sizeof(bad))) {
			snprintf(err, errcap,
				 "[provider %s] cimd_origins: \"%s\" is not an origin (like "
				 "https://agents.example.com)",
				 p->name, bad);
			return -1;
		}
		if (p->client_ids[0] == '\0')
			am_copy(p->client_ids, sizeof(p->client_ids), iss);
		if (p->scopes[0] == '\0')
			am_copy(p->scopes, sizeof(p->scopes), cfg->scopes_post_claim);
		if (!scopes_subset(p->scopes, cfg->scopes_supported, bad, sizeof(bad))) {
			snprintf(err, errcap,
				 "[provider %s] scopes has %s, which is not in supported", p->name,
				 bad);
			return -1;
		}
	}
	return 0;
}

int
am_config_validate(struct am_config *cfg, char *err, size_t errcap)
{
	char bad[128], origin[sizeof(cfg->public_url)];
	size_t pl = strlen(cfg->public_url);

	if (am_parse_hostport(cfg->listen, cfg->listen_host, sizeof(cfg->listen_host),
			      &cfg->listen_port) != 0) {
		snprintf(err, errcap, "[server] listen must be host:port");
		return -1;
	}
	/* The public URL is an origin: the issuer and every published URL are
	 * built by appending a path, so a path or trailing slash would make the
	 * issuer differ from authorization_servers[0] or double a slash. */
	while (pl > 0 && cfg->public_url[pl - 1] == '/')
		cfg->public_url[--pl] = '\0';
	/* Kept in its canonical form (core/url.h: lower-cased host, no default
	 * port), since the issuer is compared byte for byte. */
	if (!am_url_is_origin_text(cfg->public_url) ||
	    !am_url_origin_of(cfg->public_url, origin, sizeof(origin)) ||
	    !am_copy(cfg->public_url, sizeof(cfg->public_url), origin)) {
		snprintf(err, errcap,
			 "[server] public_url must be an origin (scheme://host[:port])");
		return -1;
	}
	if (cfg->resource[0] == '\0' &&
	    snprintf(cfg->resource, sizeof(cfg->resource), "%.240s/api/", cfg->public_url) >=
		    (int)sizeof(cfg->resource)) {
		snprintf(err, errcap, "[server] public_url is too long to derive resource from");
		return -1;
	}
	if (strchr(cfg->resource, '#') != NULL || strchr(cfg->resource, '?') != NULL) {
		snprintf(err, errcap, "[server] resource must not have a query or fragment");
		return -1;
	}
	if (!scopes_subset(cfg->scopes_pre_claim, cfg->scopes_supported, bad, sizeof(bad))) {
		snprintf(err, errcap, "[scopes] pre_claim has %s, which is not in supported", bad);
		return -1;
	}
	if (!scopes_subset(cfg->scopes_post_claim, cfg->scopes_supported, bad, sizeof(bad))) {
		snprintf(err, errcap, "[scopes] post_claim has %s, which is not in supported", bad);
		return -1;
	}
	if (strcmp(cfg->audit_sink, "stdout") != 0 && strcmp(cfg->audit_sink, "stderr") != 0 &&
	    strcmp(cfg->audit_sink, "off") != 0 && strncmp(cfg->audit_sink, "file:", 5) != 0) {
		snprintf(err, errcap, "[audit] sink must be stdout, stderr, off or file:PATH");
		return -1;
	}
	if (validate_providers(cfg, err, errcap) != 0 || validate_gate(cfg, err, errcap) != 0 ||
	    validate_ops(cfg, err, errcap) != 0)
		return -1;
	if (!origins_ok(cfg->cors_origins, true, bad, sizeof(bad))) {
		snprintf(err, errcap,
			 "[server] cors_origins: \"%s\" is not an origin in canonical form (like "
			 "https://app.example.com), or * alone",
			 bad);
		return -1;
	}
	if (cfg->cimd_cache_min > cfg->cimd_cache_max) {
		snprintf(err, errcap, "[cimd] cache_min is more than cache_max");
		return -1;
	}
	if (am_fetch_allow_check(cfg->outbound_allow, bad, sizeof(bad)) != 0) {
		snprintf(err, errcap, "[outbound] allow_private_targets: %s", bad);
		return -1;
	}
	if (cfg->mail_smtp_url[0] != '\0' && strncmp(cfg->mail_smtp_url, "smtp://", 7) != 0 &&
	    strncmp(cfg->mail_smtp_url, "smtps://", 8) != 0) {
		snprintf(err, errcap, "[mail] smtp_url must start with smtp:// or smtps://");
		return -1;
	}
	return 0;
}

struct load_ctx {
	am_cfg_setter set;
	void *ctx;
	char *err;
	size_t errcap;
	int failed;
};

/* inih reports the line of the first key whose handler returned 0, so the
 * message is completed with the line once ini_parse returns. */
static int
on_key(void *user, const char *section, const char *key, const char *value)
{
	struct load_ctx *lc = user;
	char why[160];

	if (lc->failed)
		return 1;
	if (lc->set(lc->ctx, section, key, value, why, sizeof(why)) != 0) {
		snprintf(lc->err, lc->errcap, "[%s] %s: %s", section, key, why);
		lc->failed = 1;
		return 0;
	}
	return 1;
}

int
am_cfg_parse(const char *path, am_cfg_setter set, void *ctx, char *err, size_t errcap)
{
	struct load_ctx lc = {set, ctx, err, errcap, 0};
	int rc = ini_parse(path, on_key, &lc);

	if (rc == -1) {
		snprintf(err, errcap, "%s: cannot open: %s", path, strerror(errno));
		return -1;
	}
	if (lc.failed) {
		char msg[400];

		snprintf(msg, sizeof(msg), "%s", err);
		snprintf(err, errcap, "%s:%d: %s", path, rc, msg);
		return -1;
	}
	if (rc != 0) {
		snprintf(err, errcap, "%s:%d: syntax error", path, rc);
		return -1;
	}
	return 0;
}

static int
set_server_key(void *ctx, const char *section, const char *key, const char *value, char *err,
	       size_t errcap)
{
	return am_config_set(ctx, section, key, value, err, errcap);
}

int
am_config_load(const char *path, struct am_config *cfg, char *err, size_t errcap)
{
	char why[200];

	am_config_defaults(cfg);
	cfg->resource[0] = '\0'; /* re-derived after the file is read */
	if (am_cfg_parse(path, set_server_key, cfg, err, errcap) != 0)
		return -1;
	if (am_config_validate(cfg, why, sizeof(why)) != 0) {
		snprintf(err, errcap, "%s: %s", path, why);
		return -1;
	}
	return 0;
}

bool
am_scope_in(const char *list, const char *scope)
{
	size_t sl = strlen(scope);
	const char *p = list;

	if (sl == 0)
		return false;
	while ((p = strstr(p, scope)) != NULL) {
		bool start_ok = p == list || p[-1] == ' ';
		bool end_ok = p[sl] == '\0' || p[sl] == ' ';

		if (start_ok && end_ok)
			return true;
		p += sl;
	}
	return false;
}

/* ---- gate (docs/gate.md): [route NAME], [introspection client NAME], and the
 * checks of the gate's keys. ---- */

static bool
section_word_ok(const char *name, size_t cap)
{
	if (name[0] == '\0' || strlen(name) >= cap)
		return false;
	for (const char *p = name; *p != '\0'; p++) {
		if (!isalnum((unsigned char)*p) && strchr("-_.", *p) == NULL)
			return false;
	}
	return true;
}

static int
gate_section_set(struct am_config *cfg, const char *section, const char *key, const char *value,
		 char *err, size_t errcap)
{
	bool route = strncmp(section, "route ", 6) == 0;
	const char *name = section + (route ? 6 : 21);
	const struct cfg_key *table = route ? route_keys : introspection_client_keys;
	size_t ntable =
		route ? sizeof(route_keys) / sizeof(route_keys[0])
		      : sizeof(introspection_client_keys) / sizeof(introspection_client_keys[0]);
	void *base = NULL;

	if (!section_word_ok(name, 64)) {
		snprintf(err, errcap,
			 "the section is [%s NAME], NAME one word of letters, "
			 "digits, - _ .",
			 route ? "route" : "introspection client");
		return -1;
	}
	if (route) {
		if (cfg->routes_builtin) { /* the first [route] replaces the demo's */
			cfg->nroutes = 0;
			cfg->routes_builtin = false;
		}
		for (size_t i = 0; i < cfg->nroutes && base == NULL; i++) {
			if (strcmp(cfg->routes[i].name, name) == 0)
				base = &cfg->routes[i];
		}
		if (base == NULL) {
			if (cfg->nroutes == AM_MAX_ROUTES) {
				snprintf(err, errcap, "at most %d routes", AM_MAX_ROUTES);
				return -1;
			}
			struct am_route *r = &cfg->routes[cfg->nroutes++];

			memset(r, 0, sizeof(*r));
			am_cfg_defaults(r, route_keys, ntable);
			snprintf(r->name, sizeof(r->name), "%s", name);
			base = r;
		}
	} else {
		for (size_t i = 0; i < cfg->nintrospection_clients && base == NULL; i++) {
			if (strcmp(cfg->introspection_clients[i].name, name) == 0)
				base = &cfg->introspection_clients[i];
		}
		if (base == NULL) {
			if (cfg->nintrospection_clients == AM_MAX_INTROSPECTION_CLIENTS) {
				snprintf(err, errcap, "at most %d introspection clients",
					 AM_MAX_INTROSPECTION_CLIENTS);
				return -1;
			}
			struct am_introspection_client *c =
				&cfg->introspection_clients[cfg->nintrospection_clients++];

			memset(c, 0, sizeof(*c));
			am_cfg_defaults(c, introspection_client_keys, ntable);
			snprintf(c->name, sizeof(c->name), "%s", name);
			base = c;
		}
	}
	for (size_t i = 0; i < ntable; i++) {
		if (strcmp(table[i].key, key) == 0)
			return am_cfg_apply(base, &table[i], value, err, errcap);
	}
	snprintf(err, errcap, "unknown key");
	return -1;
}

/* Methods are upper-case tokens (GET, POST, PROPFIND ...). */
static bool
methods_ok(const char *v)
{
	for (const char *p = v; *p != '\0'; p++) {
		if (*p != ' ' && (*p < 'A' || *p > 'Z'))
			return false;
	}
	return true;
}

/* Two routes of one path must not both claim a method (or both claim all). */
static bool
routes_overlap(const struct am_route *a, const struct am_route *b)
{
	char copy[sizeof(a->methods)], *save = NULL;

	if (strcmp(a->path, b->path) != 0)
		return false;
	if (a->methods[0] == '\0' || b->methods[0] == '\0')
		return a->methods[0] == '\0' && b->methods[0] == '\0';
	snprintf(copy, sizeof(copy), "%s", a->methods);
	for (char *t = strtok_r(copy, " ", &save); t != NULL; t = strtok_r(NULL, " ", &save)) {
		if (am_word_in(b->methods, t))
			return true;
	}
	return false;
}

static int
validate_route(const struct am_config *cfg, size_t i, char *err, size_t errcap)
{
	const struct am_route *r = &cfg->routes[i];
	char bad[128];

	/* The path is compared with canonical request paths (no dot segments, no
	 * doubled slashes, no percent-encoding), so it must be canonical too or
	 * it could never match. */
	if (r->path[0] != '/' || strstr(r->path, "//") != NULL || strstr(r->path, "/./") != NULL ||
	    strstr(r->path, "/../") != NULL || strpbrk(r->path, "%?#;\\ ") != NULL ||
	    (strlen(r->path) >= 2 && strcmp(r->path + strlen(r->path) - 2, "/.") == 0) ||
	    (strlen(r->path) >= 3 && strcmp(r->path + strlen(r->path) - 3, "/..") == 0)) {
		snprintf(err, errcap,
			 "[route %s] path must be a plain absolute path (no //, dot segments, "
			 "%%, ?, #, ;, backslash or space)",
			 r->name);
		return -1;
	}
	for (const char *p = r->path; *p != '\0'; p++) {
		if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f) {
			snprintf(err, errcap, "[route %s] path must be visible ASCII", r->name);
			return -1;
		}
	}
	if (!methods_ok(r->methods)) {
		snprintf(err, errcap, "[route %s] methods must be upper-case method names",
			 r->name);
		return -1;
	}
	if (!scopes_subset(r->scope, cfg->scopes_supported, bad, sizeof(bad))) {
		snprintf(err, errcap, "[route %s] scope has %s, which is not in supported", r->name,
			 bad);
		return -1;
	}
	for (size_t j = 0; j < i; j++) {
		if (routes_overlap(&cfg->routes[j], r)) {
			snprintf(err, errcap,
				 "[route %s] and [route %s] have the same path and a method in "
				 "common",
				 cfg->routes[j].name, r->name);
			return -1;
		}
	}
	return 0;
}

/* Reads the first line of a secret file into its hash; the text is wiped. */
static int
hash_secret_file(struct am_introspection_client *c, char *err, size_t errcap)
{
	char buf[AM_MAX_TOKEN_BYTES + 2], why[200];
	size_t n;

	if (am_secret_file_read(c->secret_file, buf, sizeof(buf), why, sizeof(why)) != 0) {
		snprintf(err, errcap, "[introspection client %s] secret_file: %s", c->name, why);
		return -1;
	}
	n = strlen(buf);
	if (n < 16 || n > AM_MAX_TOKEN_BYTES) {
		OPENSSL_cleanse(buf, sizeof(buf));
		snprintf(err, errcap,
			 "[introspection client %s] secret_file must hold a secret of 16 to %d "
			 "characters",
			 c->name, AM_MAX_TOKEN_BYTES);
		return -1;
	}
	am_sha256(buf, n, c->secret_hash);
	OPENSSL_cleanse(buf, sizeof(buf));
	return 0;
}

static int
validate_client(struct am_introspection_client *c, char *err, size_t errcap)
{
	bool has_hash = c->secret_sha256[0] != '\0', has_file = c->secret_file[0] != '\0';

	if (has_hash == has_file) {
		snprintf(err, errcap,
			 "[introspection client %s] needs exactly one of secret_sha256 and "
			 "secret_file",
			 c->name);
		return -1;
	}
	if (has_file)
		return hash_secret_file(c, err, errcap);
	if (strlen(c->secret_sha256) != 64 ||
	    strspn(c->secret_sha256, "0123456789abcdefABCDEF") != 64) {
		snprintf(err, errcap,
			 "[introspection client %s] secret_sha256 must be 64 hex digits "
			 "(sha256sum of the secret)",
			 c->name);
		return -1;
	}
	for (size_t i = 0; i < 32; i++) {
		unsigned v;

		(void)sscanf(c->secret_sha256 + 2 * i, "%2x", &v);
		c->secret_hash[i] = (uint8_t)v;
	}
	return 0;
}

static int
validate_gate(struct am_config *cfg, char *err, size_t errcap)
{
	struct am_cidr_list list;
	char why[128];

	if (cfg->nroutes == 0) {
		/* The demo API as routes: reading needs a credential, anything else
		 * api.write (when the service has such a scope). */
		static const struct am_route demo[] = {
			{"demo-read", "/api/resource", "GET HEAD", ""},
			{"demo-write", "/api/resource", "", "api.write"},
		};

		for (size_t i = 0; i < 2; i++) {
			if (i == 1 && !am_scope_in(cfg->scopes_supported, "api.write"))
				break;
			cfg->routes[cfg->nroutes++] = demo[i];
		}
		cfg->routes_builtin = true;
	}
	for (size_t i = 0; i < cfg->nroutes; i++) {
		if (validate_route(cfg, i, err, errcap) != 0)
			return -1;
	}
	for (size_t i = 0; i < cfg->nintrospection_clients; i++) {
		if (validate_client(&cfg->introspection_clients[i], err, errcap) != 0)
			return -1;
	}
	if (am_cidr_parse(cfg->trusted_proxies, &list, why, sizeof(why)) != 0) {
		snprintf(err, errcap, "[server] trusted_proxies: %s", why);
		return -1;
	}
	if (am_cidr_parse(cfg->metrics_allow, &list, why, sizeof(why)) != 0) {
		snprintf(err, errcap, "[metrics] allow: %s", why);
		return -1;
	}
	return 0;
}

/* ---- operator surface (issue 12 item 6; docs/operations.md): secrets read
 * from files, the admin API's listen address and keys. ---- */

int
am_secret_file_read(const char *path, char *out, size_t cap, char *err, size_t errcap)
{
	struct stat sb;
	ssize_t n;
	size_t len;
	int fd;

	out[0] = '\0';
	/* The file is opened first and its descriptor checked, so what is
	 * checked is what is read (no swap between stat and open). */
	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK)) < 0) {
		snprintf(err, errcap, "%s: cannot open: %s", path, strerror(errno));
		return -1;
	}
	if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
		close(fd);
		snprintf(err, errcap, "%s is not a regular file", path);
		return -1;
	}
	if ((sb.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
		close(fd);
		snprintf(err, errcap,
			 "%s is open to group or others (mode %03o); a secret file must be "
			 "readable by its owner only: chmod 600 %s",
			 path, (unsigned)(sb.st_mode & 0777), path);
		return -1;
	}
	n = read(fd, out, cap - 1);
	close(fd);
	if (n < 0) {
		out[0] = '\0';
		snprintf(err, errcap, "%s: cannot read: %s", path, strerror(errno));
		return -1;
	}
	out[n] = '\0';
	len = strcspn(out, "\r\n");
	if (len == (size_t)n && (size_t)n == cap - 1) {
		OPENSSL_cleanse(out, cap);
		snprintf(err, errcap, "%s: the secret is longer than %zu bytes", path, cap - 2);
		return -1;
	}
	/* Only the first line is the secret: the rest is wiped too. */
	OPENSSL_cleanse(out + len, cap - len);
	if (len == 0) {
		snprintf(err, errcap, "%s holds no secret", path);
		return -1;
	}
	return 0;
}

static bool
hex32(const char *hex, uint8_t out[32])
{
	if (strlen(hex) != 64 || strspn(hex, "0123456789abcdefABCDEF") != 64)
		return false;
	for (size_t i = 0; i < 32; i++) {
		unsigned v;

		(void)sscanf(hex + 2 * i, "%2x", &v);
		out[i] = (uint8_t)v;
	}
	return true;
}

/* [admin] keys_file: a 0600 file of "NAME SHA256HEX" lines (# comments and
 * blank lines allowed), each the name of an operator and the hash of the
 * bearer token it presents. */
static int
load_admin_keys(struct am_config *cfg, char *err, size_t errcap)
{
	char buf[AM_MAX_ADMIN_KEYS * 160];
	struct stat sb;
	FILE *f;
	size_t n;
	int lineno = 0;

	/* Hashes are not secrets, but who may add a key is: the same checks
	 * as a secret file. */
	f = fopen(cfg->admin_keys_file, "re");
	if (f == NULL) {
		snprintf(err, errcap, "[admin] keys_file: %s: cannot open: %s",
			 cfg->admin_keys_file, strerror(errno));
		return -1;
	}
	if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode) ||
	    (sb.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
		fclose(f);
		snprintf(err, errcap,
			 "[admin] keys_file: %s must be a regular file that group and others "
			 "cannot access (chmod 600)",
			 cfg->admin_keys_file);
		return -1;
	}
	n = fread(buf, 1, sizeof(buf) - 1, f);
	if (!feof(f)) {
		fclose(f);
		snprintf(err, errcap, "[admin] keys_file: more than %d keys or too long",
			 AM_MAX_ADMIN_KEYS);
		return -1;
	}
	fclose(f);
	buf[n] = '\0';
	cfg->nadmin_keys = 0;
	for (char *line = buf, *next; line != NULL; line = next) {
		char name[64], hex[80], extra[2];
		struct am_admin_key *k;
		int got;

		/* Line by line, blank ones too, so the numbers in errors hold. */
		if ((next = strchr(line, '\n')) != NULL)
			*next++ = '\0';
		lineno++;
		line[strcspn(line, "\r#")] = '\0';
		got = sscanf(line, "%63s %79s %1s", name, hex, extra);
		if (got <= 0)
			continue;
		if (got != 2 || !section_word_ok(name, sizeof(name))) {
			snprintf(err, errcap,
				 "[admin] keys_file line %d: a line is NAME SHA256HEX (name: "
				 "letters, digits, - _ .)",
				 lineno);
			return -1;
		}
		if (cfg->nadmin_keys == AM_MAX_ADMIN_KEYS) {
			snprintf(err, errcap, "[admin] keys_file: at most %d keys",
				 AM_MAX_ADMIN_KEYS);
			return -1;
		}
		k = &cfg->admin_keys[cfg->nadmin_keys];
		if (!hex32(hex, k->hash)) {
			snprintf(err, errcap,
				 "[admin] keys_file line %d: the hash is 64 hex digits (printf %%s "
				 "TOKEN | sha256sum)",
				 lineno);
			return -1;
		}
		for (size_t i = 0; i < cfg->nadmin_keys; i++) {
			if (strcmp(cfg->admin_keys[i].name, name) == 0) {
				snprintf(err, errcap,
					 "[admin] keys_file: the name %s is there twice", name);
				return -1;
			}
		}
		snprintf(k->name, sizeof(k->name), "%s", name);
		cfg->nadmin_keys++;
	}
	if (cfg->nadmin_keys == 0) {
		snprintf(err, errcap, "[admin] keys_file: %s holds no key", cfg->admin_keys_file);
		return -1;
	}
	return 0;
}

static int
validate_ops(struct am_config *cfg, char *err, size_t errcap)
{
	char why[300];

	if (cfg->mail_smtp_password_file[0] != '\0') {
		if (cfg->mail_smtp_password[0] != '\0') {
			snprintf(err, errcap,
				 "[mail] set smtp_password or smtp_password_file, not both");
			return -1;
		}
		if (am_secret_file_read(cfg->mail_smtp_password_file, cfg->mail_smtp_password,
					sizeof(cfg->mail_smtp_password), why, sizeof(why)) != 0) {
			snprintf(err, errcap, "[mail] smtp_password_file: %s", why);
			return -1;
		}
	}
	cfg->admin_host[0] = '\0';
	cfg->admin_port = 0;
	cfg->nadmin_keys = 0;
	if (cfg->admin_listen[0] == '\0')
		return 0;
	if (am_parse_hostport(cfg->admin_listen, cfg->admin_host, sizeof(cfg->admin_host),
			      &cfg->admin_port) != 0) {
		snprintf(err, errcap, "[admin] listen must be host:port");
		return -1;
	}
	if (cfg->admin_keys_file[0] == '\0') {
		snprintf(err, errcap, "[admin] listen needs keys_file (the operators' keys)");
		return -1;
	}
	return load_admin_keys(cfg, err, errcap);
}
