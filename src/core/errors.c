#include "core/errors.h"

#include <stdarg.h>
#include <stdio.h>

struct err_row {
	int status;
	const char *name;
	const char *message;
};

/* Protocol names follow NOTES.md: the service guide's for ID-JAG and logout
 * tokens, AUTH.md's for *_not_enabled, rate_limited and the claim errors. */
static const struct err_row table[AM_E__COUNT] = {
	[AM_OK] = {200, "ok", "ok"},
	[AM_E_INVALID_REQUEST] = {400, "invalid_request", "the request is malformed"},
	[AM_E_UNSUPPORTED_MEDIA_TYPE] = {415, "unsupported_media_type",
					 "send the body as application/json"},
	[AM_E_PAYLOAD_TOO_LARGE] = {413, "payload_too_large", "the request body is too large"},
	[AM_E_NOT_FOUND] = {404, "not_found", "no such resource"},
	[AM_E_METHOD_NOT_ALLOWED] = {405, "method_not_allowed",
				     "this method is not allowed on this resource"},
	[AM_E_RATE_LIMITED] = {429, "rate_limited", "too many requests; back off and retry"},
	[AM_E_ANONYMOUS_NOT_ENABLED] = {400, "anonymous_not_enabled",
					"this service does not accept anonymous registration"},
	[AM_E_VERIFIED_EMAIL_NOT_ENABLED] =
		{400, "verified_email_not_enabled",
		 "this service does not accept verified_email assertions"},
	[AM_E_ID_JAG_NOT_ENABLED] = {400, "id_jag_not_enabled",
				     "this service does not accept ID-JAG assertions"},
	[AM_E_UNSUPPORTED_ASSERTION_TYPE] = {400, "unsupported_assertion_type",
					     "this assertion type is not supported"},
	[AM_E_UNSUPPORTED_CREDENTIAL_TYPE] = {400, "unsupported_credential_type",
					      "the requested credential type is not offered"},
	[AM_E_INVALID_ISSUER] = {400, "invalid_issuer",
				 "the token's issuer is not a trusted provider here"},
	[AM_E_INVALID_SIGNATURE] = {400, "invalid_signature",
				    "the token's signature could not be verified"},
	[AM_E_EXPIRED] = {400, "expired", "the token has expired"},
	[AM_E_REPLAY_DETECTED] = {400, "replay_detected", "this token was already used"},
	[AM_E_INVALID_AUDIENCE] = {400, "invalid_audience", "the token is not for this service"},
	[AM_E_INVALID_CLIENT_ID] = {400, "invalid_client_id",
				    "the token's client_id is not accepted for its issuer"},
	[AM_E_MISSING_VERIFIED_EMAIL] = {400, "missing_verified_email",
					 "the token has neither a verified email nor a verified "
					 "phone number"},
	[AM_E_CONSENT_REQUIRED] = {403, "consent_required",
				   "the user has not consented to this audience"},
	[AM_E_INVALID_GRANT] =
		{400, "invalid_grant",
		 "this service's operator revoked this grant; a fresh token does not help"},
	[AM_E_INVALID_CLAIM_TOKEN] = {400, "invalid_claim_token",
				      "the claim token is unknown or no longer valid"},
	[AM_E_CLAIMED_OR_IN_FLIGHT] = {409, "claimed_or_in_flight",
				       "this registration is already claimed"},
	[AM_E_CLAIM_EXPIRED] = {410, "claim_expired", "the registration has expired"},
	[AM_E_CLAIM_SUPERSEDED] = {410, "claim_superseded",
				   "this claim link is invalid or was replaced by a newer one"},
	[AM_E_CLAIM_COMPLETED] = {409, "claim_completed", "the registration is already claimed"},
	[AM_E_OTP_INVALID] = {401, "otp_invalid", "the code does not match"},
	[AM_E_OTP_EXPIRED] = {410, "otp_expired", "the code has expired"},
	[AM_E_PREVIOUSLY_CLAIMED] = {409, "previously_claimed",
				     "this registration was already claimed"},
	[AM_E_AUTHORIZATION_PENDING] = {400, "authorization_pending",
					"the user has not completed the claim yet"},
	[AM_E_SLOW_DOWN] = {400, "slow_down", "polled faster than the interval"},
	[AM_E_EXPIRED_TOKEN] = {400, "expired_token", "the claim ceremony window has closed"},
	[AM_E_INVALID_LOGIN_HINT] = {400, "invalid_login_hint",
				     "login_hint must be an email address"},
	[AM_E_WRONG_ACCOUNT] = {403, "wrong_account",
				"this claim is bound to another account than the signed-in one"},
	[AM_E_INVALID_USER_CODE] = {400, "invalid_user_code", "the code does not match"},
	[AM_E_CLAIM_NOT_CONFIRMED] = {400, "claim_not_confirmed",
				      "the user has not confirmed this claim yet"},
	[AM_E_USER_CODE_EXPIRED] = {400, "user_code_expired",
				    "the claim attempt is over; start a new one"},
	[AM_E_INVALID_TOKEN] = {401, "invalid_token", "a valid bearer credential is required"},
	[AM_E_INSUFFICIENT_SCOPE] = {403, "insufficient_scope",
				     "the credential lacks the scope this request needs"},
	[AM_E_ACCESS_DENIED] = {403, "access_denied",
				"the access policy allows no credential this request"},
	[AM_E_INVALID_CLIENT] = {401, "invalid_client", "client authentication failed"},
	[AM_E_INVALID_DPOP_PROOF] = {400, "invalid_dpop_proof", "the DPoP proof is not valid"},
	[AM_E_DPOP_PROOF_REFUSED] = {401, "invalid_dpop_proof",
				     "this access token is DPoP-bound: send it as Authorization: "
				     "DPoP with a valid DPoP proof"},
	[AM_E_UNSUPPORTED_GRANT_TYPE] = {400, "unsupported_grant_type",
					 "this grant_type is not supported here"},
	[AM_E_INVALID_TARGET] = {400, "invalid_target",
				 "the resource is not one this service issues tokens for"},
	[AM_E_SERVICE_AUTH_NOT_ENABLED] = {400, "service_auth_not_enabled",
					   "this service does not offer service_auth registration"},
	[AM_E_LOGIN_REQUIRED] = {401, "login_required",
				 "the user's sign-in at the provider is too old; re-authenticate"},
	[AM_E_CSRF_REFUSED] = {403, "csrf_refused",
			       "this form was not sent from this site's own page; reload the page "
			       "and try again"},
	[AM_E_UNAVAILABLE] = {503, "temporarily_unavailable",
			      "the service is temporarily unavailable; retry with backoff"},
	[AM_E_INTERNAL] = {500, "server_error", "internal error"},
};

enum am_err
am_fail(struct am_error *e, enum am_err code, const char *fmt, ...)
{
	va_list ap;

	if (e == NULL)
		return code;
	e->code = code;
	va_start(ap, fmt);
	vsnprintf(e->detail, sizeof(e->detail), fmt, ap);
	va_end(ap);
	return code;
}

static const struct err_row *
row(enum am_err code)
{
	if ((int)code < 0 || code >= AM_E__COUNT || table[code].name == NULL)
		return &table[AM_E_INTERNAL];
	return &table[code];
}

int
am_err_status(enum am_err code)
{
	return row(code)->status;
}

const char *
am_err_name(enum am_err code)
{
	return row(code)->name;
}

const char *
am_err_message(enum am_err code)
{
	return row(code)->message;
}
