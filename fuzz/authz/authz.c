/* The Authorization header at the resource gate, end to end: the whole
 * service runs in-process on 127.0.0.1 and each input is sent as the
 * header value of GET (or, with a first line "POST", POST) /api/resource.
 * $CREDENTIAL stands for a live API key registered at start-up.
 *
 * Oracles: the answer is 200 (only when the real credential is present),
 * 400 from the HTTP layer, or 401/403 JSON carrying the discovery
 * challenge; never a 5xx, a dropped connection or a hang. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/fuzz.h"

static char credential[256];

static void
register_once(uint16_t port)
{
	static const char body[] = "{\"type\":\"anonymous\"}";
	char req[512], resp[8192];
	json_t *doc;
	const char *p;
	int n = snprintf(req, sizeof(req),
			 "POST /agent/auth HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
			 "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
			 sizeof(body) - 1, body);

	if (fz_http(port, req, (size_t)n, resp, sizeof(resp)) != 200 ||
	    (p = strstr(resp, "\r\n\r\n")) == NULL || (doc = json_loads(p + 4, 0, NULL)) == NULL ||
	    !am_copy(credential, sizeof(credential),
		     json_string_value(json_object_get(doc, "credential"))))
		fz_die("cannot register the fixture's agent");
	json_decref(doc);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const names[] = {"$CREDENTIAL"};
	static uint16_t port;
	const char *values[1];
	const char *method = "GET";
	struct am_buf v = {0}, req = {0};
	char resp[16384];
	int status;

	if (port == 0) {
		port = fz_service_port();
		register_once(port);
	}
	if (size > 4096)
		return 0; /* MHD's header memory is the cap past this; not ours */
	if (size >= 5 && memcmp(data, "POST\n", 5) == 0)
		method = "POST", data += 5, size -= 5;
	values[0] = credential;
	fz_splice(&v, data, size, names, values, 1);
	/* CR, LF and NUL would end the header (MHD's framing, not the gate). */
	for (size_t i = 0; i < v.len; i++) {
		if (v.data[i] == '\r' || v.data[i] == '\n' || v.data[i] == '\0')
			v.data[i] = ' ';
	}
	am_buf_printf(&req,
		      "%s /api/resource HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
		      "Content-Length: 0\r\nAuthorization: %s\r\n\r\n",
		      method, v.data);
	status = fz_http(port, req.data, req.len, resp, sizeof(resp));
	if (getenv("FUZZ_VERBOSE") != NULL)
		fprintf(stderr, "authz: %d\n", status);
	if (status == 200 && strstr(v.data, credential) == NULL)
		fz_die("the gate let a request through without the credential");
	if (status != 200 && status != 400 && status != 401 && status != 403)
		fz_die("the gate answered something other than 200/400/401/403");
	if ((status == 401 || status == 403) &&
	    (strstr(resp, "WWW-Authenticate: Bearer") == NULL ||
	     strstr(resp, "resource_metadata=\"") == NULL || strstr(resp, "\"error\"") == NULL))
		fz_die("a 401/403 of the gate lacks the discovery challenge or a JSON error");
	am_buf_free(&v);
	am_buf_free(&req);
	return 0;
}
