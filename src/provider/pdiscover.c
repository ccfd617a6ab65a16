/* Which revocation channel an audience speaks, from its authorization-
 * server metadata: a v0.6 service publishes agent_auth.events_endpoint
 * (RFC 8935 SET push), a v0.1 one agent_auth.revocation_uri (logout token).
 * A service that publishes both (authmd-server serves both generations)
 * gets the SET: the newer channel, and one revocation reaches every
 * registration of the subject there. */
#include <stdio.h>
#include <string.h>

#include "core/fetch.h"
#include "core/limits.h"
#include "core/log.h"
#include "core/str.h"
#include "core/url.h"
#include "provider/provider.h"

#define METADATA_MAX_BYTES (64 * 1024)

/* RFC 8414 3.1: the well-known path goes between the issuer's origin and
 * its path ("https://as.example/t1" -> "https://as.example/.well-known/
 * oauth-authorization-server/t1"). */
static bool
metadata_url(const char *audience, char *out, size_t cap)
{
	struct am_url u;
	char origin[300];
	const char *path;
	int n;

	if (!am_url_parse(audience, &u) || u.has_query || u.has_fragment ||
	    !am_url_origin(&u, origin, sizeof(origin)))
		return false;
	path = strcmp(u.path, "/") == 0 ? "" : u.path;
	n = snprintf(out, cap, "%s/.well-known/oauth-authorization-server%s", origin, path);
	return n > 0 && (size_t)n < cap;
}

enum am_err
prov_discover_revocation(const struct prov_config *c, const char *audience, char *url, size_t cap,
			 enum delivery_format *format, struct am_error *e)
{
	static const char *const headers[] = {"Accept: application/json", NULL};
	char where[1400];
	struct am_fetch f = {
		.url = where,
		.headers = headers,
		.max_bytes = METADATA_MAX_BYTES,
		.keep_body = true,
		.allow = c->outbound_allow,
		.user_agent = "authmd-provider",
	};
	struct am_fetch_result r = {0};
	json_t *doc, *block;
	const char *events, *rev;
	enum am_err rc = AM_OK;

	if (!metadata_url(audience, where, sizeof(where)))
		return am_fail(e, AM_E_INVALID_REQUEST, "the audience is not a URL to discover");
	if (am_fetch_run(&f, &r) != AM_OK || r.status != 200) {
		log_warn("audience metadata fetch failed aud=%s status=%ld: %s", audience, r.status,
			 r.why);
		am_buf_free(&r.body);
		return am_fail(e, AM_E_UNAVAILABLE, "the audience's metadata could not be fetched");
	}
	doc = json_loadb(r.body.data, r.body.len, JSON_REJECT_DUPLICATES, NULL);
	am_buf_free(&r.body);
	block = json_object_get(doc, "agent_auth");
	events = json_string_value(json_object_get(block, "events_endpoint"));
	rev = json_string_value(json_object_get(block, "revocation_uri"));
	if (!json_is_object(doc))
		rc = am_fail(e, AM_E_UNAVAILABLE, "the audience's metadata is not a JSON object");
	else if (events == NULL && rev == NULL)
		rc = am_fail(e, AM_E_NOT_FOUND, "no revocation channel in the audience's metadata");
	else if (!am_copy(url, cap, events != NULL ? events : rev))
		rc = am_fail(e, AM_E_INVALID_REQUEST, "the revocation target is too long");
	else
		*format = events != NULL ? FORMAT_SET : FORMAT_LOGOUT;
	json_decref(doc);
	return rc;
}
