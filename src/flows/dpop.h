/* DPoP (RFC 9449): checking a proof for a request, binding an access token
 * to the proof's key at the token endpoint, and the gate's check of a bound
 * token. No HTTP types: the caller says which method and URL the request
 * had. See docs/protocol.md, "DPoP". */
#ifndef AM_FLOWS_DPOP_H
#define AM_FLOWS_DPOP_H

#include "flows/flows.h"
#include "jose/jose.h"

/* The algs a proof may use, as published in dpop_signing_alg_values_supported. */
#define FLOW_DPOP_ALGS "ES256 ES384 ES512 RS256 RS384 RS512 PS256 PS384 PS512"

/* dpop_signing_alg_values_supported for the AS metadata (new reference). */
json_t *flow_dpop_algs_json(void);

/* What the proof must say about the request it came with. */
struct dpop_expect {
	const char *method;	  /* htm, exactly (case-sensitive, RFC 9110) */
	const char *url;	  /* htu: scheme://host[:port]/path, no query or fragment */
	const char *access_token; /* ath = base64url(SHA-256); NULL at the token endpoint */
	const char *jkt;	  /* the key the token is bound to; NULL: any key */
};

/* Checks the DPoP proof sent with a request (RFC 9449 4.3): signature with
 * the header's own key (jose_dpop_verify), htm and htu equal to want's (htu
 * compared without query and fragment, scheme and host case-insensitively),
 * iat at most AM_DPOP_PROOF_MAX_AGE + clock skew in the past and at most the
 * skew in the future, a jti (at most AM_MAX_DPOP_JTI_BYTES), ath equal to
 * the hash of want->access_token when that is set (and absent otherwise is
 * fine), and the key's thumbprint equal to want->jkt when that is set
 * (constant time). Only when all of that holds is the jti recorded (in the
 * store's seen_jti, under the issuer "dpop:<jkt>", through the writer when
 * env has one, so every replica sees it) until the proof is too old to
 * pass; a jti seen before is refused. Every refusal is
 * AM_E_INVALID_DPOP_PROOF with a detail naming the check; a store failure
 * is AM_E_UNAVAILABLE. On AM_OK jkt_out (may be NULL) holds the key's
 * thumbprint. proof NULL or empty is refused too. */
enum am_err flow_dpop_check(const struct flow_env *env, struct store *st, const char *proof,
			    const struct dpop_expect *want, char jkt_out[JOSE_JKT_LEN],
			    struct am_error *e) AM_WUR;

/* The token endpoint's DPoP step (RFC 9449 5, 10): with a proof, checks it
 * for (method, url) and puts its key's thumbprint in jkt_out (the access
 * token is then bound: store it as the credential's jkt and answer
 * token_type "DPoP"); without one, jkt_out is "" (a Bearer token). When the
 * grant (an ID-JAG or identity assertion) carries cnf.jkt, a proof from
 * exactly that key is required. Refusals are AM_E_INVALID_DPOP_PROOF. */
enum am_err flow_dpop_token_request(const struct flow_env *env, struct store *st, const char *proof,
				    const char *method, const char *url, const char *grant_jkt,
				    char jkt_out[JOSE_JKT_LEN], struct am_error *e) AM_WUR;

/* The cnf.jkt a grant (an ID-JAG or the service's identity assertion)
 * asks for, read without verifying it (the grant's own verification comes
 * after and refuses a forged one): into out, "" when there is none.
 * AM_E_INVALID_GRANT when cnf.jkt is there but not a thumbprint. */
enum am_err flow_dpop_grant_jkt(const char *grant, char out[JOSE_JKT_LEN],
				struct am_error *e) AM_WUR;

/* Binds the access token just issued (not yet handed out), the credential
 * credential_id, to jkt. */
enum am_err flow_dpop_bind(const struct flow_env *env, struct store *st, const char *credential_id,
			   const char *jkt, struct am_error *e) AM_WUR;

/* The gate's DPoP step for a live credential: a credential bound to a key
 * (cred_jkt not empty) must come with the DPoP scheme (dpop_scheme true) and
 * a valid proof for (method, url) from that key with ath of token; an
 * unbound one must come with the Bearer scheme and no proof is looked at.
 * Refusals: AM_E_DPOP_PROOF_REFUSED (401 invalid_dpop_proof) for a bound
 * token without a proof, with one from another key, replayed, for another
 * method or URL, too old, or sent as Bearer; AM_E_INVALID_TOKEN for an
 * unbound token sent with the DPoP scheme. */
enum am_err flow_dpop_gate(const struct flow_env *env, struct store *st, const char *cred_jkt,
			   bool dpop_scheme, const char *proof, const char *method, const char *url,
			   const char *token, struct am_error *e) AM_WUR;

#endif
