/* libauthmd-client's plumbing: one HTTP exchange over libcurl, the
 * service's JSON answers and errors with AUTH.md's advice, form bodies, and
 * small JSON and time helpers. Below client.c (registration, the store,
 * requests) and claims.c (claims); it calls neither. */
#include <curl/curl.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "agent/credstore.h"
#include "agent/internal.h"
#include "authmd/client.h"
#include "core/str.h"

#define MAX_BODY (1024 * 1024)

/* ---- advice: AUTH.md's error table ---- */

static const struct {
	const char *code, *advice;
} advice_table[] = {
	{"invalid_signature", "Signature didn't verify. Mint a fresh ID-JAG."},
	{"replay_detected", "The jti was already used. Mint a fresh ID-JAG with a new jti."},
	{"invalid_audience", "aud is wrong. Mint with the aud the service's metadata names."},
	{"expired", "The ID-JAG's exp is past. Mint a fresh one."},
	{"invalid_issuer",
	 "Your provider is not on this service's trust list. Pick another method."},
	{"anonymous_not_enabled", "This service doesn't accept anonymous. Pick another method."},
	{"verified_email_not_enabled", "Email verification is disabled here. Pick another method."},
	{"id_jag_not_enabled", "This service doesn't accept ID-JAGs. Pick another method."},
	{"unsupported_credential_type",
	 "The credential type is not offered for this method. Re-read the metadata and adjust."},
	{"rate_limited", "Back off and retry."},
	{"invalid_claim_token", "The claim token is wrong or expired. Register again."},
	{"otp_invalid", "That code didn't work: re-read it carefully, or open the email link again "
			"for a fresh one."},
	{"otp_expired", "The code's window passed. Open the email link again for a fresh code, or "
			"start the claim again."},
	{"claim_expired", "The whole registration expired. Register again."},
	{"previously_claimed", "Someone already finished this claim. Register again if you need a "
			       "fresh credential."},
	{"claimed_or_in_flight", "This registration is already claimed."},
	{"invalid_token", "Drop the credential and start again at discovery."},
	{"insufficient_scope", "The credential lacks a scope this request needs; claiming the "
			       "registration may grant it."},
	{"consent_required", "The user has not consented to this service at the provider."},
	{"missing_verified_email", "The identity needs a verified email or phone."},
	{"authorization_pending", "The user has not entered the code yet: poll again after the "
				  "interval."},
	{"slow_down", "Polled too soon: wait the (now longer) interval before the next poll."},
	{"expired_token", "The code expired: start the claim again for a new one."},
	{"access_denied", "The user rejected the claim. Start again only if they ask."},
	{"login_required", "The provider must sign the user in again, then register again."},
	{"interaction_required", "The account's owner must confirm the link first."},
};

const char *
authmd_advice(const char *code)
{
	for (size_t i = 0; code != NULL && i < sizeof(advice_table) / sizeof(advice_table[0]);
	     i++) {
		if (strcmp(advice_table[i].code, code) == 0)
			return advice_table[i].advice;
	}
	return NULL;
}

/* ---- HTTP ---- */

static size_t
on_body(char *data, size_t size, size_t nmemb, void *user)
{
	struct agent_result *r = user;
	size_t n = size * nmemb;

	if (r->body.len + n > MAX_BODY)
		return 0;
	am_buf_add(&r->body, data, n);
	return n;
}

static void
header_value(const char *line, size_t n, const char *name, char *out, size_t cap)
{
	size_t nl = strlen(name), vl;
	const char *v;

	if (n <= nl || strncasecmp(line, name, nl) != 0)
		return;
	v = line + nl;
	while (v < line + n && (*v == ' ' || *v == '\t'))
		v++;
	vl = (size_t)(line + n - v);
	while (vl > 0 && (v[vl - 1] == '\r' || v[vl - 1] == '\n' || v[vl - 1] == ' '))
		vl--;
	if (vl >= cap)
		vl = cap - 1;
	memcpy(out, v, vl);
	out[vl] = '\0';
}

static size_t
on_header(char *data, size_t size, size_t nmemb, void *user)
{
	struct agent_result *r = user;
	size_t n = size * nmemb;
	char ra[32] = "";

	header_value(data, n, "www-authenticate:", r->www_auth, sizeof(r->www_auth));
	header_value(data, n, "content-type:", r->content_type, sizeof(r->content_type));
	header_value(data, n, "retry-after:", ra, sizeof(ra));
	if (ra[0] != '\0')
		r->retry_after = strtol(ra, NULL, 10);
	return n;
}

void
agent_result_clear(struct agent_result *r)
{
	if (r->body.data != NULL)
		OPENSSL_cleanse(r->body.data, r->body.len);
	am_buf_free(&r->body);
	memset(r, 0, sizeof(*r));
}

/* One HTTP exchange. AUTHMD_OK for any answer (see r->status). */
enum authmd_status
agent_fetch(struct authmd_client *c, const char *method, const char *url, const char *bearer,
	    const char *const *headers, const char *content_type, const char *body,
	    struct agent_result *r, struct authmd_error *err)
{
	struct curl_slist *h = NULL;
	char line[AUTHMD_TEXT_MAX + 64];
	CURL *k = curl_easy_init();
	CURLcode res;

	memset(r, 0, sizeof(*r));
	if (k == NULL)
		return cs_fail(err, AUTHMD_ERR_FAILED, NULL, "out of memory");
	if (bearer != NULL) {
		snprintf(line, sizeof(line), "Authorization: Bearer %s", bearer);
		h = curl_slist_append(h, line);
		OPENSSL_cleanse(line, sizeof(line));
	}
	if (content_type != NULL) {
		snprintf(line, sizeof(line), "Content-Type: %s", content_type);
		h = curl_slist_append(h, line);
	}
	for (size_t i = 0; headers != NULL && headers[i] != NULL; i++)
		h = curl_slist_append(h, headers[i]);
	curl_easy_setopt(k, CURLOPT_URL, url);
	curl_easy_setopt(k, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(k, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(k, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(k, CURLOPT_TIMEOUT_MS, c->timeout_ms);
	curl_easy_setopt(k, CURLOPT_CONNECTTIMEOUT_MS, c->timeout_ms);
	curl_easy_setopt(k, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(k, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(k, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(k, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(k, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(k, CURLOPT_HEADERDATA, r);
	curl_easy_setopt(k, CURLOPT_USERAGENT,
			 "authmd/"
			 "0.1");
	if (body != NULL)
		curl_easy_setopt(k, CURLOPT_POSTFIELDS, body);
	res = curl_easy_perform(k);
	curl_easy_getinfo(k, CURLINFO_RESPONSE_CODE, &r->status);
	curl_slist_free_all(h);
	curl_easy_cleanup(k);
	if (res != CURLE_OK) {
		agent_result_clear(r);
		return cs_fail(err, AUTHMD_ERR_NETWORK, "Check the URL and that the service is up.",
			       "%s: %s", url, curl_easy_strerror(res));
	}
	if (r->body.data == NULL)
		am_buf_add(&r->body, "", 0);
	return AUTHMD_OK;
}

/* The service's {"error", "message"} as err, with AUTH.md's advice. */
enum authmd_status
agent_service_error(const struct agent_result *r, const char *what, struct authmd_error *err)
{
	json_t *doc = json_loadb(r->body.data, r->body.len, 0, NULL);
	const char *code = json_string_value(json_object_get(doc, "error"));
	const char *msg = json_string_value(json_object_get(doc, "message"));

	/* v0.6's token endpoint answers RFC 6749 5.2's error_description. */
	if (msg == NULL)
		msg = json_string_value(json_object_get(doc, "error_description"));
	enum authmd_status st = r->status >= 500 ? AUTHMD_ERR_NETWORK : AUTHMD_ERR_REFUSED;

	cs_fail(err, st, authmd_advice(code), "%s: HTTP %ld%s%s%s%s", what, r->status,
		code != NULL ? " " : "", code != NULL ? code : "", msg != NULL ? ": " : "",
		msg != NULL ? msg : "");
	if (err != NULL) {
		err->http_status = (int)r->status;
		am_copy(err->code, sizeof(err->code), code != NULL ? code : "");
	}
	json_decref(doc);
	return st;
}

/* The JSON object of a 2xx answer into *out (new reference); a service
 * error otherwise. Clears r either way. */
enum authmd_status
agent_json_answer(struct agent_result *r, const char *what, json_t **out, struct authmd_error *err)
{
	enum authmd_status st;

	if (r->status < 200 || r->status >= 300) {
		st = agent_service_error(r, what, err);
		agent_result_clear(r);
		return st;
	}
	*out = json_loadb(r->body.data, r->body.len, 0, NULL);
	agent_result_clear(r);
	if (!json_is_object(*out)) {
		json_decref(*out);
		return cs_fail(err, AUTHMD_ERR_PROTOCOL, NULL,
			       "%s: the answer is not a JSON object", what);
	}
	return AUTHMD_OK;
}

/* POSTs a JSON document (stolen) and parses a JSON answer into *out on 2xx. */
enum authmd_status
agent_post_json(struct authmd_client *c, const char *url, const char *bearer, json_t *req,
		const char *what, json_t **out, struct authmd_error *err)
{
	char *text = json_dumps(req, JSON_COMPACT);
	struct agent_result r;
	enum authmd_status st;

	json_decref(req);
	if (text == NULL)
		return cs_fail(err, AUTHMD_ERR_FAILED, NULL, "out of memory");
	st = agent_fetch(c, "POST", url, bearer, NULL, "application/json", text, &r, err);
	OPENSSL_cleanse(text, strlen(text));
	free(text);
	if (st != AUTHMD_OK)
		return st;
	return agent_json_answer(&r, what, out, err);
}

void
agent_copy_str(const json_t *obj, const char *key, char *out, size_t cap)
{
	const char *v = json_string_value(json_object_get(obj, key));

	if (v == NULL || !am_copy(out, cap, v))
		out[0] = '\0';
}

void
agent_scopes_of(const json_t *arr, char *out, size_t cap)
{
	size_t i;
	json_t *v;

	out[0] = '\0';
	json_array_foreach(arr, i, v)
	{
		if (json_is_string(v) && strlen(out) + json_string_length(v) + 2 < cap) {
			if (out[0] != '\0')
				strcat(out, " ");
			strcat(out, json_string_value(v));
		}
	}
}

/* "now + seconds" as RFC 3339 UTC. */
void
agent_utc_after(long long seconds, char *out, size_t cap)
{
	time_t t = time(NULL) + (time_t)seconds;
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(out, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* Appends "&name=value" (value percent-encoded) to a form body. */
bool
agent_form_add(struct am_buf *b, const char *name, const char *value)
{
	char *esc = curl_easy_escape(NULL, value, 0);
	bool ok = esc != NULL;

	if (ok) {
		if (b->len > 0)
			am_buf_add(b, "&", 1);
		am_buf_add(b, name, strlen(name));
		am_buf_add(b, "=", 1);
		am_buf_add(b, esc, strlen(esc));
		OPENSSL_cleanse(esc, strlen(esc));
	}
	curl_free(esc);
	return ok;
}

void
agent_sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

	while (nanosleep(&ts, &ts) != 0) {
	}
}
