/* The outbound-request policy: every HTTP request the server or the provider
 * makes to a URL that came from configuration or from a user (the server's
 * JWKS fetch, the provider's logout-token delivery, later CIMD) goes through
 * am_fetch_run, which
 *   - accepts only absolute http(s) URLs without userinfo (core/url.h),
 *   - never follows a redirect and ignores proxy environment variables,
 *   - caps the answer's size and the whole exchange's time,
 *   - refuses to connect to a private, loopback, link-local, unspecified,
 *     multicast or otherwise special address (IPv4 and IPv6, v4-mapped and
 *     other v4-embedding forms included) unless it is inside an allowed CIDR
 *     block, and decides this on the address actually being connected
 *     (libcurl's open-socket hook), after name resolution, so a name that
 *     resolves (or re-resolves) to 10.0.0.1 is refused like 10.0.0.1 itself.
 * It reports what went wrong in a few words that are safe to show to a user:
 * never the answer's body. */
#ifndef AM_FETCH_H
#define AM_FETCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "core/compiler.h"
#include "core/errors.h"
#include "core/str.h"

struct am_fetch {
	const char *method;	    /* "GET" (NULL means GET) or "POST" */
	const char *url;	    /* absolute http(s) */
	const char *const *headers; /* NULL-terminated "Name: value" lines, or NULL */
	const char *body;	    /* the POST body (NUL-terminated), or NULL */
	size_t max_bytes;	    /* the most answer body we read; past it the fetch fails */
	bool keep_body;		    /* false: the body is read (up to max_bytes) and dropped */
	long timeout_ms;	    /* the whole exchange; 0: AM_FETCH_TIMEOUT_MS */
	const char *allow;	    /* CIDR blocks that may be reached though special, or NULL */
	const char *user_agent;	    /* NULL: "authmd" */
	/* Called with each header line of the answer, when set (libcurl's
	 * header-callback contract: return the size to go on). */
	size_t (*on_header)(char *data, size_t size, size_t nmemb, void *ctx);
	void *header_ctx;
};

struct am_fetch_result {
	long status;	    /* the HTTP status; 0 when no answer came */
	struct am_buf body; /* the answer, when keep_body; free with am_buf_free */
	char why[96];	    /* when not AM_OK: what went wrong, safe to show */
	bool too_large;	    /* not AM_OK because the answer passed max_bytes */
};

/* Performs the request under the policy above. AM_OK when an HTTP answer
 * arrived, whatever its status (r->status; r->body when keep_body).
 * AM_E_INVALID_REQUEST for a URL that is not absolute http(s) or carries
 * userinfo; AM_E_UNAVAILABLE when no answer could be had: refused address
 * ("connect refused: private address"), no connection, timeout, an answer
 * larger than max_bytes. r->why says which; the refused address itself goes
 * to the log only. r is always initialised; free r->body in every case. */
enum am_err am_fetch_run(const struct am_fetch *f, struct am_fetch_result *r) AM_WUR;

/* Reads one answer header line (as an on_header callback sees it, n bytes,
 * not NUL-terminated): when it is Cache-Control, sets *max_age to its
 * max-age in seconds, or to 0 for no-store or no-cache, and returns true;
 * otherwise leaves *max_age alone and returns false. */
bool am_fetch_max_age(const char *line, size_t n, int64_t *max_age);

/* True when a connection to addr may be made: the address is not special,
 * or it is inside one of allow's space-separated CIDR blocks ("10.0.0.0/8",
 * "::1/128"; a bare address is a single host). allow may be NULL. */
bool am_fetch_address_allowed(const struct sockaddr *addr, socklen_t len, const char *allow);

/* Checks an allow list as a configuration value: 0, or -1 with the first
 * bad block named in err. */
int am_fetch_allow_check(const char *allow, char *err, size_t errcap) AM_WUR;

#endif
