/* The trust list at run time: for each configured provider, its JWKS,
 * fetched on first use over libcurl by the provider's refresher thread
 * (never while a request holds the lock it reads the set under) and cached
 * per Cache-Control max-age (clamped to 10 minutes .. 24 hours). A set
 * holding the wanted kid answers at once, past max-age too while its
 * refresh runs; a request it cannot answer waits for that one fetch at most
 * AM_JWKS_WAIT_MS. An unknown kid triggers one refetch,
 * and fetches of one provider are at least [limits] jwks_refetch_interval
 * apart, so forged kids cannot make the server a request amplifier and an
 * unreachable provider costs one timeout per interval, not one per request.
 * A set whose refreshes keep failing is used at most [limits]
 * jwks_max_stale past its max-age. */
#ifndef AM_TRUST_H
#define AM_TRUST_H

#include <stdint.h>

#include "core/config.h"
#include "core/errors.h"
#include "jose/jose.h"

#define TRUST_MAX_AGE_FLOOR 600
#define TRUST_MAX_AGE_CEILING 86400
#define TRUST_MAX_JWKS_BYTES (256 * 1024)

struct trust;

enum am_err trust_new(const struct am_config *cfg, struct trust **out, struct am_error *e) AM_WUR;
/* Makes cfg's providers the trust list (SIGHUP): a provider whose name,
 * issuer and jwks_uri are unchanged keeps its cached keys; one no longer
 * listed gets AM_E_INVALID_ISSUER from trust_keys from then on. A request
 * already inside trust_keys finishes with the keys of its own provider.
 * Only the providers of cfg are read, and only during the call. Refused
 * with AM_E_UNAVAILABLE (nothing changed) when the lists since start would
 * need more than 4 * AM_MAX_PROVIDERS key caches. */
enum am_err trust_reload(struct trust *t, const struct am_config *cfg, struct am_error *e) AM_WUR;

/* Stops and joins the refresher threads (a fetch in flight ends within its
 * timeout) and frees t; NULL is fine. */
void trust_free(struct trust *t);

/* The key set of provider p (one of the providers of the last trust_new or
 * trust_reload, matched by name, issuer and jwks_uri) that holds kid, fetched
 * or refetched as the rules above allow (thread-safe; waits at most
 * AM_JWKS_WAIT_MS). On AM_OK the caller holds a
 * reference (jose_keyset_release). When no set can be had (never fetched,
 * the fetch or the document failed, or the cached set is more than
 * [limits] jwks_max_stale past its max-age while refreshes fail), or kid is
 * unknown and the last fetch failed: AM_E_UNAVAILABLE with e->retry_after
 * the seconds until the next fetch is allowed. The set returned may still
 * lack kid when a refetch was not allowed. */
enum am_err trust_keys(struct trust *t, const struct am_provider *p, const char *kid, int64_t now,
		       struct jose_keyset **out, struct am_error *e) AM_WUR;

/* How many JWKS fetches were made for provider p (for tests and metrics). */
unsigned long trust_fetch_count(struct trust *t, const struct am_provider *p);

#endif
