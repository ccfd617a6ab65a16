/* Every cap on outside input, with its unit. Values an operator may tune are
 * the defaults of config keys (docs/configuration.md); the rest are fixed. */
#ifndef AM_LIMITS_H
#define AM_LIMITS_H

#define AM_DEFAULT_BODY_BYTES (64 * 1024)    /* any request body; 413 past it */
#define AM_MAX_BODY_BYTES (1024 * 1024)	     /* the most [limits] body_bytes may be */
#define AM_MAX_DRAIN_BYTES (8 * 1024 * 1024) /* over-limit body read and dropped before the 413 */
#define AM_MAX_URL_BYTES 2048		     /* request line target; any URL core/url parses */
#define AM_MAX_EMAIL_BYTES 254		     /* RFC 5321 path limit */
#define AM_MAX_TOKEN_BYTES 128		     /* a claim, attempt or bearer token */
#define AM_MAX_FIELD_BYTES 512		     /* any other string field we accept */
#define AM_MAX_JSON_DEPTH 16		     /* nesting of a request document */
#define AM_CONN_PER_IP 128		     /* simultaneous connections from one address */
#define AM_HEADER_TIMEOUT_S 10		     /* request line and headers, in total */
#define AM_REQUEST_TIMEOUT_S 30		     /* a whole request with its body, in total */
#define AM_IDLE_TIMEOUT_S 15		     /* a connection moving no bytes */
#define AM_MAX_CONNECTIONS_AUTO 16384	     /* simultaneous connections when not configured */
#define AM_CONN_FD_RESERVE 256		     /* descriptors kept back from connections */
#define AM_MAIL_TIMEOUT_MS 10000	     /* one SMTP transaction, in total */
#define AM_FETCH_TIMEOUT_MS 3000	     /* any outbound HTTP call */
#define AM_MAX_SCOPES 32		     /* scopes in one credential */
#define AM_MAX_DELIVERY_ANSWER_BYTES (64 * 1024) /* a logout-token receiver's answer, dropped */
#define AM_MAX_FORWARDED_BYTES 4096		 /* X-Forwarded-For or Forwarded, all lines */
#define AM_MAX_MCP_MESSAGE_BYTES (1024 * 1024)	 /* one JSON-RPC line on authmd mcp's stdin */
#define AM_MAX_CIMD_BYTES (64 * 1024)		 /* a fetched Client ID Metadata Document */
#define AM_MAX_CIMD_NAME_BYTES 127 /* its client_name, as shown on pages and in audit */
/* the bearer check's cache of recent credential lookups (flows/access.c) */
#define AM_AUTH_CACHE_ENTRIES 1024 /* fixed: entries in all, whatever is presented */
#define AM_AUTH_CACHE_TTL_MS 1000  /* an entry's life: the staleness bound of a change */
/* a request waiting for its provider's key fetch (trust/trust.c) */
#define AM_JWKS_WAIT_MS 2000
/* http/server.c (issue 8): libmicrohttpd zeroes a connection's whole memory
 * pool between the requests of a kept-alive connection, so its size is paid
 * on every request. The request line and headers must fit in it (past that,
 * 431); bodies stream through it in pieces. The default of [server]
 * connection_memory. */
#define AM_CONN_MEMORY_BYTES (16 * 1024)

/* the admin API (issue 12 item 6; docs/operations.md) */
#define AM_ADMIN_PAGE_MAX 100	 /* registrations in one search answer */
#define AM_ADMIN_CREDS_MAX 100	 /* credentials shown with one registration */
#define AM_ADMIN_AUDIT_MAX 200	 /* audit events shown with one registration */
#define AM_ADMIN_BODY_BYTES 4096 /* a revoke or unblock request body */
/* different configurations SIGHUP may load before a restart is needed
 * (each stays alive, about 110 KB, since a request may still read it) */
#define AM_RELOAD_MAX_CONFIGS 64
/* DPoP proofs (RFC 9449; flows/dpop.c) */
#define AM_DPOP_PROOF_MAX_AGE 60  /* seconds a proof's iat may lie in the past (plus skew) */
#define AM_MAX_DPOP_JTI_BYTES 128 /* a proof's jti */

#endif
