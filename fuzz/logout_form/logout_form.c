/* POST /agent/auth/revoke, end to end on the in-process service: the
 * input is the body, sent as application/x-www-form-urlencoded (the OIDC
 * Back-Channel Logout form, parsed by MHD's post processor through
 * http_form_field) or, after a first line "jwt", as application/logout+jwt.
 * $LOGOUT stands for a freshly signed, valid logout token of the trusted
 * test provider (a new jti each time).
 *
 * Oracles: the answer is 200 with {"revoked": N} or a 4xx JSON error;
 * never a 5xx, a dropped connection or a hang. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/fuzz.h"

static char *
logout_token(void)
{
	static unsigned long n;
	char jti[32];
	json_t *claims;
	char *t;

	snprintf(jti, sizeof(jti), "logout-%lu", ++n);
	claims = json_pack("{s:s, s:s, s:s, s:I, s:s, s:{s:{}}}", "iss", fz_provider_issuer(),
			   "sub", "user-1", "aud", "http://127.0.0.1:8000", "iat",
			   (json_int_t)time(NULL), "jti", jti, "events",
			   "http://schemas.openid.net/event/backchannel-logout");
	if (claims == NULL || (t = fz_sign("logout+jwt", claims)) == NULL)
		fz_die("cannot sign the logout token");
	json_decref(claims);
	return t;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const names[] = {"$LOGOUT"};
	static uint16_t port;
	const char *ctype = "application/x-www-form-urlencoded";
	const char *values[1];
	struct am_buf body = {0}, req = {0};
	char resp[16384], *token = NULL;
	int status;

	if (port == 0)
		port = fz_service_port();
	if (size > 60 * 1024)
		return 0; /* past [limits] body_bytes the HTTP layer answers 413 */
	if (size >= 4 && memcmp(data, "jwt\n", 4) == 0)
		ctype = "application/logout+jwt", data += 4, size -= 4;
	if (memmem(data, size, "$LOGOUT", 7) != NULL)
		token = logout_token();
	values[0] = token != NULL ? token : "";
	fz_splice(&body, data, size, names, values, 1);
	am_buf_printf(&req,
		      "POST /agent/auth/revoke HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
		      "Content-Type: %s\r\nContent-Length: %zu\r\n\r\n",
		      ctype, body.len);
	am_buf_add(&req, body.data, body.len);
	status = fz_http(port, req.data, req.len, resp, sizeof(resp));
	if (getenv("FUZZ_VERBOSE") != NULL)
		fprintf(stderr, "logout_form: %d %s\n", status,
			strstr(resp, "\r\n\r\n") ? strstr(resp, "\r\n\r\n") + 4 : "");
	if (status == 200 ? strstr(resp, "{\"revoked\":") == NULL
			  : (status < 400 || status > 499 || strstr(resp, "\"error\"") == NULL))
		fz_die("the revocation endpoint answered neither 200 {revoked} nor a 4xx error");
	free(token);
	am_buf_free(&body);
	am_buf_free(&req);
	return 0;
}
