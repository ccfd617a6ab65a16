/* The agent side's parsing of server answers: libauthmd-client talks over
 * libcurl to a scripted service on 127.0.0.1 that answers each request
 * with the next answer of the input, so the real code parses the 401's
 * WWW-Authenticate, the protected-resource and authorization-server
 * metadata, the registration, claim and error JSON, and stores what it
 * accepted.
 *
 * Input: answers separated by a line "%%". Each answer is a first line
 * "STATUS[ WWW-Authenticate value]" and then its JSON body; $ORIGIN stands
 * for http://127.0.0.1:PORT. The client runs discovery, an anonymous
 * registration, a claim start (for v0.6 then one poll of the claim grant),
 * a request with the stored credential and a claim completion, each as far
 * as the answers let it. Oracles: no crash,
 * leak or hang; accepted metadata names a resource on the probed origin. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "authmd/client.h"
#include "common/fuzz.h"

#define MAX_ANSWERS 12

struct answer {
	int status;
	char www_auth[1024];
	const char *body; /* into script */
	size_t len;
};

static struct {
	struct am_buf script;
	struct answer a[MAX_ANSWERS];
	size_t n, next;
} sc;

static char origin[64];

static enum am_err
h_script(void *app, struct http_req *rq, struct http_resp *rs, struct am_error *e)
{
	(void)app, (void)rq, (void)e;
	if (sc.next >= sc.n) {
		static const char nf[] =
			"{\"error\":\"not_found\",\"message\":\"no more answers\"}";

		http_reply_text(rs, 404, "application/json", nf, sizeof(nf) - 1);
		return AM_OK;
	}
	struct answer *a = &sc.a[sc.next++];

	http_reply_text(rs, a->status, "application/json", a->body, a->len);
	if (a->www_auth[0] != '\0')
		http_add_header(rs, "WWW-Authenticate", a->www_auth);
	return AM_OK;
}

/* Splits the spliced script into answers. */
static void
parse_script(void)
{
	char *p = sc.script.data, *end = p + sc.script.len;

	sc.n = sc.next = 0;
	while (p < end && sc.n < MAX_ANSWERS) {
		struct answer *a = &sc.a[sc.n++];
		char *sep = memmem(p, (size_t)(end - p), "\n%%\n", 4);
		char *stop = sep != NULL ? sep : end;
		char *nl = memchr(p, '\n', (size_t)(stop - p));
		char *line_end = nl != NULL ? nl : stop;
		size_t wl;

		a->status = (int)strtol(p, NULL, 10);
		if (a->status < 200 || a->status > 599)
			a->status = 200; /* 1xx and odd codes are curl's and MHD's business */
		a->www_auth[0] = '\0';
		for (char *q = p; q < line_end; q++) {
			if (*q == ' ') {
				wl = (size_t)(line_end - q - 1);
				if (wl >= sizeof(a->www_auth))
					wl = sizeof(a->www_auth) - 1;
				memcpy(a->www_auth, q + 1, wl);
				a->www_auth[wl] = '\0';
				break;
			}
		}
		for (char *q = a->www_auth; *q != '\0'; q++) {
			if ((unsigned char)*q < 0x20)
				*q = ' '; /* a header value holds no control bytes */
		}
		a->body = nl != NULL ? nl + 1 : stop;
		a->len = (size_t)(stop - a->body);
		p = sep != NULL ? sep + 4 : end;
	}
}

static bool
same_origin(const char *url)
{
	size_t n = strlen(origin);

	/* Scheme and host compare without case; the origin ends at the path,
	 * query or fragment. */
	return strncasecmp(url, origin, n) == 0 &&
	       (url[n] == '/' || url[n] == '\0' || url[n] == '?' || url[n] == '#');
}

static enum authmd_status
say(const char *what, enum authmd_status st, const struct authmd_error *err)
{
	if (getenv("FUZZ_VERBOSE") != NULL)
		fprintf(stderr, "client: %s -> %d %s\n", what, (int)st,
			st != AUTHMD_OK ? err->message : "");
	return st;
}

static void
run_client(const char *store)
{
	struct authmd_options opt = {
		.store_path = store, .timeout_ms = 5000, .max_retries = 0, .max_retry_after_s = 1};
	struct authmd_client *c = NULL;
	struct authmd_discovery d;
	struct authmd_credential cred;
	struct authmd_response resp;
	struct authmd_error err;
	char url[128];

	snprintf(url, sizeof(url), "%s/api/resource", origin);
	if (authmd_client_new(&opt, &c, &err) != AUTHMD_OK)
		fz_die("cannot make the client");
	if (say("discover", authmd_discover(c, url, &d, &err), &err) == AUTHMD_OK) {
		if (!same_origin(d.resource))
			fz_die("discovery accepted a resource on another origin");
		if (say("register", authmd_register_anonymous(c, &d, &cred, &err), &err) ==
		    AUTHMD_OK) {
			enum authmd_claim_status cst;
			long interval;

			(void)say("claim",
				  authmd_claim_start(c, d.resource, "owner@example.test", &err),
				  &err);
			/* a v0.6 registration: one poll of the user_code attempt */
			if (strcmp(cred.protocol, "v0.6") == 0)
				(void)say("poll",
					  authmd_claim_code_poll(c, d.resource, &cst, &interval,
								 &cred, &err),
					  &err);
			if (say("request", authmd_request(c, "GET", url, NULL, NULL, &resp, &err),
				&err) == AUTHMD_OK)
				authmd_response_clear(&resp);
			(void)say("complete",
				  authmd_claim_complete(c, d.resource, "123456", &cred, &err),
				  &err);
		}
	}
	authmd_client_free(c);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const struct http_route routes[] = {{"GET", "/", HTTP_PREFIX, h_script},
						   {"POST", "/", HTTP_PREFIX, h_script}};
	static const char *const names[] = {"$ORIGIN"};
	static char store[400];
	const char *values[1];

	if (origin[0] == '\0') {
		snprintf(origin, sizeof(origin), "http://127.0.0.1:%u",
			 (unsigned)fz_serve(routes, 2, NULL, 1));
		snprintf(store, sizeof(store), "%s/credentials.json", fz_tmpdir());
	}
	if (size > 64 * 1024)
		return 0;
	values[0] = origin;
	fz_splice(&sc.script, data, size, names, values, 1);
	parse_script();
	run_client(store);
	unlink(store);
	am_buf_free(&sc.script);
	return 0;
}
