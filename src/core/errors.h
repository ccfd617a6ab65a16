/* The one table of protocol errors: each code maps to an HTTP status and the
 * protocol's error string. Handlers return a code; http/ renders the JSON. */
#ifndef AM_ERRORS_H
#define AM_ERRORS_H

#include "core/compiler.h"

enum am_err {
	AM_OK = 0,
	/* generic request errors */
	AM_E_INVALID_REQUEST,	     /* 400 invalid_request */
	AM_E_UNSUPPORTED_MEDIA_TYPE, /* 415 unsupported_media_type */
	AM_E_PAYLOAD_TOO_LARGE,	     /* 413 payload_too_large */
	AM_E_NOT_FOUND,		     /* 404 not_found; also a store lookup with no row */
	AM_E_METHOD_NOT_ALLOWED,     /* 405 method_not_allowed */
	AM_E_RATE_LIMITED,	     /* 429 rate_limited */
	/* /agent/auth */
	AM_E_ANONYMOUS_NOT_ENABLED,	  /* 400 anonymous_not_enabled */
	AM_E_VERIFIED_EMAIL_NOT_ENABLED,  /* 400 verified_email_not_enabled */
	AM_E_ID_JAG_NOT_ENABLED,	  /* 400 id_jag_not_enabled */
	AM_E_UNSUPPORTED_ASSERTION_TYPE,  /* 400 unsupported_assertion_type */
	AM_E_UNSUPPORTED_CREDENTIAL_TYPE, /* 400 unsupported_credential_type */
	/* ID-JAG and logout tokens (the service guide's names) */
	AM_E_INVALID_ISSUER,	     /* 400 invalid_issuer */
	AM_E_INVALID_SIGNATURE,	     /* 400 invalid_signature */
	AM_E_EXPIRED,		     /* 400 expired */
	AM_E_REPLAY_DETECTED,	     /* 400 replay_detected */
	AM_E_INVALID_AUDIENCE,	     /* 400 invalid_audience */
	AM_E_INVALID_CLIENT_ID,	     /* 400 invalid_client_id */
	AM_E_MISSING_VERIFIED_EMAIL, /* 400 missing_verified_email */
	AM_E_CONSENT_REQUIRED,	     /* 403 consent_required (provider: no live grant) */
	AM_E_INVALID_GRANT,	     /* 400 invalid_grant: an operator block (issue 10 #5) */
	/* claim ceremony */
	AM_E_INVALID_CLAIM_TOKEN,  /* 400 invalid_claim_token */
	AM_E_CLAIMED_OR_IN_FLIGHT, /* 409 claimed_or_in_flight */
	AM_E_CLAIM_EXPIRED,	   /* 410 claim_expired */
	AM_E_CLAIM_SUPERSEDED,	   /* 410 claim_superseded */
	AM_E_CLAIM_COMPLETED,	   /* 409 claim_completed */
	AM_E_OTP_INVALID,	   /* 401 otp_invalid */
	AM_E_OTP_EXPIRED,	   /* 410 otp_expired */
	AM_E_PREVIOUSLY_CLAIMED,   /* 409 previously_claimed */
	/* the v0.4-v0.6 user_code ceremony (issue 14): RFC 8628 3.5 at the token endpoint */
	AM_E_AUTHORIZATION_PENDING, /* 400 authorization_pending: the user has not finished */
	AM_E_SLOW_DOWN,		    /* 400 slow_down: polled faster than the interval */
	AM_E_EXPIRED_TOKEN,	    /* 400 expired_token: the attempt or the claim window closed */
	AM_E_INVALID_LOGIN_HINT,    /* 400 invalid_login_hint: service_auth without an email */
	AM_E_WRONG_ACCOUNT,	    /* 403 wrong_account: signed in as another address */
	AM_E_INVALID_USER_CODE,	    /* 400 invalid_user_code: the typed code does not match */
	/* the read-back ceremony (issue 14, proposal (b)) */
	AM_E_CLAIM_NOT_CONFIRMED, /* 400 claim_not_confirmed: the user has not confirmed yet */
	AM_E_USER_CODE_EXPIRED,	  /* 400 user_code_expired: the attempt's window closed */
	/* protected resource (RFC 6750) */
	AM_E_INVALID_TOKEN,	 /* 401 invalid_token */
	AM_E_INSUFFICIENT_SCOPE, /* 403 insufficient_scope */
	/* the gate (forward-auth policy, RFC 7662 client authentication) */
	AM_E_ACCESS_DENIED,  /* 403 access_denied: no route allows this request */
	AM_E_INVALID_CLIENT, /* 401 invalid_client: introspection client authentication */
	/* DPoP (RFC 9449; flows/dpop.c) */
	AM_E_INVALID_DPOP_PROOF, /* 400 invalid_dpop_proof: at the token endpoint */
	AM_E_DPOP_PROOF_REFUSED, /* 401 invalid_dpop_proof: at the gate, for a bound token */
	/* server side */
	/* protocol v0.6 token endpoint (issue 13): RFC 6749 5.2, RFC 8707 */
	AM_E_UNSUPPORTED_GRANT_TYPE,   /* 400 unsupported_grant_type */
	AM_E_INVALID_TARGET,	       /* 400 invalid_target */
	AM_E_SERVICE_AUTH_NOT_ENABLED, /* 400 service_auth_not_enabled (v0.6 /agent/identity) */
	AM_E_LOGIN_REQUIRED,	       /* 401 login_required: auth_time missing or stale (v0.5) */
	/* user sign-in pages (issue 14) */
	AM_E_CSRF_REFUSED, /* 403 csrf_refused: a page POST without its form token or from elsewhere */

	AM_E_UNAVAILABLE, /* 503 temporarily_unavailable: store, mail or upstream down */
	AM_E_INTERNAL,	  /* 500 server_error: a bug or no memory; detail to the log */
	AM_E__COUNT
};

struct am_error {
	enum am_err code;
	char detail[192]; /* shown to the client: no secrets, no SQL, no paths */
	long retry_after; /* seconds, for AM_E_RATE_LIMITED or AM_E_UNAVAILABLE: Retry-After */
};

/* Fills *e (when not NULL) with code and the formatted detail, and returns code,
 * so that a failure reads: return am_fail(e, AM_E_..., "what was wrong"). */
enum am_err am_fail(struct am_error *e, enum am_err code, const char *fmt, ...) AM_PRINTF(3, 4);

/* The HTTP status for a code (500 for an unknown one). */
int am_err_status(enum am_err code);

/* The protocol error string for a code, e.g. "otp_invalid". Never NULL. */
const char *am_err_name(enum am_err code);

/* The default human message for a code, used when no detail was given. */
const char *am_err_message(enum am_err code);

#endif
