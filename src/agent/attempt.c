/* The user_code attempt an agent keeps while its claim runs: read from the
 * claim block of a claim start or of a v0.5 first link (client.c and
 * claims.c both keep one), checked for what a terminal may print. */
#include <jansson.h>
#include <string.h>

#include "agent/internal.h"
#include "authmd/client.h"
#include "core/str.h"

#define DEFAULT_INTERVAL 5	 /* RFC 8628 3.2: when the service names none */
#define MAX_INTERVAL 300	 /* a larger interval from a service is capped */
#define MAX_ATTEMPT_SECONDS 3600 /* an expires_in past this is taken as this */

void
agent_clear_attempt(struct authmd_credential *cred)
{
	cred->claim_attempt_id[0] = '\0';
	cred->user_code[0] = '\0';
	cred->verification_uri[0] = '\0';
	cred->verification_uri_complete[0] = '\0';
	cred->claim_attempt_expires[0] = '\0';
	cred->claim_interval = 0;
}

/* What the service gives the user to read or open is printed at a
 * terminal: printable ASCII only, so it cannot carry escape sequences, and
 * the pages must be http(s) URLs. */
static bool
printable(const char *s, bool space_ok)
{
	for (; *s != '\0'; s++) {
		if (*s < (space_ok ? 0x20 : 0x21) || *s > 0x7e)
			return false;
	}
	return true;
}

static bool
web_page(const char *url)
{
	return (strncmp(url, "https://", 8) == 0 || strncmp(url, "http://", 7) == 0) &&
	       printable(url, false);
}

bool
agent_keep_attempt(struct authmd_credential *cred, const json_t *block, const char *attempt_id)
{
	const json_t *in = json_object_get(block, "interval");
	const json_t *exp = json_object_get(block, "expires_in");
	long long expires_in = json_is_integer(exp) ? json_integer_value(exp) : 0;

	agent_clear_attempt(cred);
	agent_copy_str(block, "user_code", cred->user_code, sizeof(cred->user_code));
	agent_copy_str(block, "verification_uri", cred->verification_uri,
		       sizeof(cred->verification_uri));
	agent_copy_str(block, "verification_uri_complete", cred->verification_uri_complete,
		       sizeof(cred->verification_uri_complete));
	if (attempt_id != NULL)
		am_copy(cred->claim_attempt_id, sizeof(cred->claim_attempt_id), attempt_id);
	if (cred->user_code[0] == '\0' || !printable(cred->user_code, true) ||
	    !web_page(cred->verification_uri) ||
	    (cred->verification_uri_complete[0] != '\0' &&
	     !web_page(cred->verification_uri_complete)) ||
	    !printable(cred->claim_attempt_id, false)) {
		agent_clear_attempt(cred);
		return false;
	}
	/* The attempt's own clock, relative, so a skewed local clock does not
	 * cut it short; bounded so a wait always ends. */
	if (expires_in <= 0 || expires_in > MAX_ATTEMPT_SECONDS)
		expires_in = expires_in <= 0 ? 600 : MAX_ATTEMPT_SECONDS;
	agent_utc_after(expires_in, cred->claim_attempt_expires,
			sizeof(cred->claim_attempt_expires));
	cred->claim_interval = json_is_integer(in) && json_integer_value(in) > 0
				       ? (long)json_integer_value(in)
				       : DEFAULT_INTERVAL;
	if (cred->claim_interval > MAX_INTERVAL)
		cred->claim_interval = MAX_INTERVAL;
	am_copy(cred->claim_state, sizeof(cred->claim_state), "pending");
	return true;
}
