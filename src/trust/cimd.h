/* Client ID Metadata Documents (draft-ietf-oauth-client-id-metadata-document):
 * an ID-JAG's client_id may be a URL whose document describes the agent
 * client. The server fetches it through the outbound policy (core/fetch.h:
 * no redirects, AM_MAX_CIMD_BYTES, special addresses only as [outbound]
 * allow_private_targets allows, [cimd] fetch_timeout), and checks that it
 * is one JSON object whose client_id is the URL itself.
 *
 * Results are cached per URL in a bounded table ([cimd] cache_entries):
 * documents per Cache-Control max-age clamped to [cimd] cache_min ..
 * cache_max, refusals and failed fetches for [cimd] negative_cache. At most
 * one fetch per URL is in flight: other requests for that URL wait for it,
 * and the table's lock is never held across a fetch, so a host that hangs
 * costs the requests naming it and nobody else. The server resolves with
 * cimd_resolve_nowait: the fetch runs on a thread of its own and the
 * request is parked, holding no worker. cimd_resolve (blocking, for the
 * synchronous flows) waits at most the fetch timeout and a second, and its
 * fetching and waiting callers together hold at most one worker thread
 * less than [server] threads; past that it answers 503 at once. */
#ifndef AM_CIMD_H
#define AM_CIMD_H

#include <stdbool.h>
#include <stdint.h>

#include "core/config.h"
#include "core/errors.h"
#include "core/limits.h"

#define CIMD_URL_BYTES 256 /* a client_id claim is at most 255 bytes */

/* What a resolved document says, for pages and audit events. Strings are
 * checked: client_name has no control characters, logo_uri is an https (or
 * loopback http) URL that core/url.h accepts; either may be empty. */
struct cimd_client {
	char client_id[CIMD_URL_BYTES];
	char client_name[AM_MAX_CIMD_NAME_BYTES + 1];
	char logo_uri[CIMD_URL_BYTES];
};

struct cimd;

/* A cache for cfg ([cimd] keys, [outbound] allow_private_targets); cfg is
 * borrowed for the cache's life. */
enum am_err cimd_new(const struct am_config *cfg, struct cimd **out, struct am_error *e) AM_WUR;
void cimd_free(struct cimd *c); /* NULL is fine; no resolve may be running */

/* Whether url may name a document for provider p, without fetching: p's
 * cimd switch is on; url is https, or http to a loopback host; it has a
 * path below "/", no query, fragment, userinfo or dot segments; and its
 * origin is the issuer's or one of p->cimd_origins. AM_OK, or
 * AM_E_INVALID_CLIENT_ID saying which rule failed. */
enum am_err cimd_check_url(const struct am_provider *p, const char *url, struct am_error *e) AM_WUR;

/* The document at url (which cimd_check_url has accepted), from the cache
 * or fetched now (at time now, in seconds). AM_OK with *out filled;
 * AM_E_INVALID_CLIENT_ID for a document that is not acceptable (a redirect,
 * not 200, too large, not a JSON object, a client_id other than url, a bad
 * client_name or logo_uri, a client_secret); AM_E_UNAVAILABLE with
 * e->retry_after when it could not be had (no answer, timeout, a 5xx, the
 * wait for another request's fetch of it ran out, every cache slot busy
 * fetching, as many requests as allowed already fetching or waiting). */
enum am_err cimd_resolve(struct cimd *c, const char *url, int64_t now, struct cimd_client *out,
			 struct am_error *e) AM_WUR;

/* ---- resolving without holding the caller's thread ---- */

/* A request waiting for a document fetch. The fields are cimd's once
 * handed over. */
struct cimd_waiter {
	void (*ready)(void *arg);
	void *arg;
	struct cimd_waiter *next;
};

/* Document fetches running at once at most (each on a thread of its own,
 * none on a request's); past it a request needing one gets 503 at once. */
#define CIMD_MAX_FETCHING 16

/* cimd_resolve that never waits. From the cache (or a refusal): as
 * cimd_resolve, with *pending false. When the document must be fetched (or
 * another request's fetch of it is running) and w is not NULL: AM_OK with
 * *pending true; the fetch runs on its own thread, bounded by [cimd]
 * fetch_timeout, and when it ends (fetched, refused or failed)
 * w->ready(w->arg) is called once, from that thread, with no lock held;
 * then the caller calls again (the answer is cached by then). With w NULL
 * a fetch needed is AM_E_UNAVAILABLE with retry_after (a second round
 * never waits again). 503 too when CIMD_MAX_FETCHING are running, every
 * cache slot is being fetched, or cimd_stop has run. */
enum am_err cimd_resolve_nowait(struct cimd *c, const char *url, int64_t now,
				struct cimd_client *out, struct cimd_waiter *w, bool *pending,
				struct am_error *e) AM_WUR;

/* For shutdown: from now on every resolve that needs a fetch is refused,
 * and every waiter still waiting is called now (its second round is then
 * refused with 503); returns once no ready callback is running any more.
 * Fetches in flight finish on their own (cimd_free waits for them). */
void cimd_stop(struct cimd *c);

/* How many documents were fetched (for tests and metrics). */
unsigned long cimd_fetch_count(struct cimd *c);

#endif
