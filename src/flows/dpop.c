/* DPoP (RFC 9449) proof checks for the token endpoint and the gate. The
 * signature and the key are jose/'s; the request binding (htm, htu, ath),
 * the time window and the jti replay check are here. */
#include "flows/dpop.h"

#include <openssl/crypto.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "core/clock.h"
#include "core/crypto.h"
#include "core/limits.h"
#include "core/log.h"
#include "flows/internal.h"

json_t *
flow_dpop_algs_json(void)
{
	json_t *a = json_array();

	for (const char *p = FLOW_DPOP_ALGS; *p != '\0';) {
		size_t n = strcspn(p, " ");

		json_array_append_new(a, json_stringn(p, n));
		p += n;
		p += strspn(p, " ");
	}
	return a;
}

/* True when the proof's htu names url: the part before any query or
 * fragment equal, scheme and authority without regard to case (RFC 3986
 * 6.2.2.1), the path exactly. */
static bool
htu_matches(const char *htu, const char *url)
{
	size_t n = strcspn(htu, "?#"), m = strcspn(url, "?#");
	const char *hp, *up;
	size_t ho, uo;

	if (n != m)
		return false;
	if ((hp = strstr(htu, "://")) == NULL || (up = strstr(url, "://")) == NULL)
		return false;
	/* The origin ends at the first "/" after "://" (or at the end). */
	ho = (size_t)(hp - htu) + 3 + strcspn(hp + 3, "/?#");
	uo = (size_t)(up - url) + 3 + strcspn(up + 3, "/?#");
	if (ho != uo || ho > n)
		return false;
	return strncasecmp(htu, url, ho) == 0 && strncmp(htu + ho, url + uo, n - ho) == 0;
}

struct jti_job {
	struct store_job job;
	const char *iss, *jti;
	int64_t until;
	bool fresh;
};

static enum am_err
jti_write(struct store *st, void *arg, struct am_error *e)
{
	struct jti_job *j = arg;

	return store_jti_record(st, j->iss, j->jti, j->until, &j->fresh, e);
}

/* Records the proof's jti, durably (the writer's group commit) when the
 * env has a writer: a proof accepted by one replica is refused by all. */
static enum am_err
record_jti(const struct flow_env *env, struct store *st, const char *jkt, const char *jti,
	   int64_t until, struct am_error *e)
{
	char iss[JOSE_JKT_LEN + 8];
	struct jti_job j = {.jti = jti, .until = until};
	enum am_err rc;

	snprintf(iss, sizeof(iss), "dpop:%s", jkt);
	j.iss = iss;
	if (env->writer != NULL) {
		j.job = (struct store_job){.run = jti_write, .arg = &j, .rerun = true};
		rc = store_writer_run(env->writer, &j.job, e);
	} else {
		rc = store_jti_record(st, iss, jti, until, &j.fresh, e);
	}
	if (rc != AM_OK)
		return rc;
	return j.fresh ? AM_OK
		       : am_fail(e, AM_E_INVALID_DPOP_PROOF,
				 "this DPoP proof was already used; make a fresh proof for every "
				 "request");
}

enum am_err
flow_dpop_check(const struct flow_env *env, struct store *st, const char *proof,
		const struct dpop_expect *want, char jkt_out[JOSE_JKT_LEN], struct am_error *e)
{
	struct jose_dpop d;
	const char *htm, *htu, *jti, *ath;
	json_t *iatv;
	int64_t iat, now = flow_now(env), skew = env->cfg->clock_skew;
	char want_ath[JOSE_JKT_LEN];
	enum am_err rc;

	if (proof == NULL || proof[0] == '\0')
		return am_fail(e, AM_E_INVALID_DPOP_PROOF, "send a DPoP proof in the DPoP header");
	if ((rc = jose_dpop_verify(proof, &d, e)) != AM_OK)
		return rc;
	htm = json_string_value(json_object_get(d.claims, "htm"));
	htu = json_string_value(json_object_get(d.claims, "htu"));
	jti = json_string_value(json_object_get(d.claims, "jti"));
	ath = json_string_value(json_object_get(d.claims, "ath"));
	iatv = json_object_get(d.claims, "iat");
	if (htm == NULL || htu == NULL || jti == NULL || !json_is_integer(iatv)) {
		rc = am_fail(e, AM_E_INVALID_DPOP_PROOF,
			     "the DPoP proof must carry htm, htu, jti and a numeric iat");
		goto out;
	}
	iat = json_integer_value(iatv);
	if (jti[0] == '\0' || strlen(jti) > AM_MAX_DPOP_JTI_BYTES) {
		rc = am_fail(e, AM_E_INVALID_DPOP_PROOF,
			     "the DPoP proof's jti is empty or longer "
			     "than %d bytes",
			     AM_MAX_DPOP_JTI_BYTES);
		goto out;
	}
	if (strcmp(htm, want->method) != 0) {
		rc = am_fail(e, AM_E_INVALID_DPOP_PROOF, "the DPoP proof is for another method");
		goto out;
	}
	if (!htu_matches(htu, want->url)) {
		rc = am_fail(e, AM_E_INVALID_DPOP_PROOF, "the DPoP proof is for another URL");
		goto out;
	}
	if (iat > am_time_add(now, skew) || iat < now - skew - AM_DPOP_PROOF_MAX_AGE) {
		rc = am_fail(e, AM_E_INVALID_DPOP_PROOF,
			     "the DPoP proof's iat is outside the accepted window (%d s)",
			     AM_DPOP_PROOF_MAX_AGE);
		goto out;
	}
	if (want->access_token != NULL) {
		jose_b64url_sha256(want->access_token, want_ath);
		if (ath == NULL || strlen(ath) != strlen(want_ath) ||
		    !am_ct_equal(ath, want_ath, strlen(want_ath))) {
			rc = am_fail(e, AM_E_INVALID_DPOP_PROOF,
				     "the DPoP proof's ath is not the hash of this access token");
			goto out;
		}
	}
	if (want->jkt != NULL &&
	    (strlen(want->jkt) != strlen(d.jkt) || !am_ct_equal(want->jkt, d.jkt, strlen(d.jkt)))) {
		rc = am_fail(e, AM_E_INVALID_DPOP_PROOF,
			     "the DPoP proof is signed by another key than the token is bound to");
		goto out;
	}
	if ((rc = record_jti(env, st, d.jkt, jti,
			     am_time_add(iat, AM_DPOP_PROOF_MAX_AGE + 2 * skew), e)) != AM_OK)
		goto out;
	if (jkt_out != NULL)
		memcpy(jkt_out, d.jkt, JOSE_JKT_LEN);
out:
	jose_dpop_free(&d);
	return rc;
}

enum am_err
flow_dpop_token_request(const struct flow_env *env, struct store *st, const char *proof,
			const char *method, const char *url, const char *grant_jkt,
			char jkt_out[JOSE_JKT_LEN], struct am_error *e)
{
	struct dpop_expect want = {.method = method, .url = url};
	char jkt[JOSE_JKT_LEN];
	enum am_err rc;

	if (grant_jkt != NULL && grant_jkt[0] != '\0')
		want.jkt = grant_jkt;
	if (proof == NULL || proof[0] == '\0') {
		if (want.jkt != NULL)
			return am_fail(e, AM_E_INVALID_DPOP_PROOF,
				       "the grant is bound to a key (cnf.jkt): send a DPoP proof "
				       "signed with it");
		jkt_out[0] = '\0';
		return AM_OK;
	}
	if ((rc = flow_dpop_check(env, st, proof, &want, jkt, e)) != AM_OK)
		return rc;
	memcpy(jkt_out, jkt, JOSE_JKT_LEN);
	return AM_OK;
}

enum am_err
flow_dpop_gate(const struct flow_env *env, struct store *st, const char *cred_jkt, bool dpop_scheme,
	       const char *proof, const char *method, const char *url, const char *token,
	       struct am_error *e)
{
	struct dpop_expect want = {
		.method = method, .url = url, .access_token = token, .jkt = cred_jkt};
	enum am_err rc;

	if (cred_jkt == NULL || cred_jkt[0] == '\0') {
		if (dpop_scheme)
			return am_fail(e, AM_E_INVALID_TOKEN,
				       "this access token is not DPoP-bound: send it as "
				       "Authorization: Bearer");
		return AM_OK;
	}
	/* RFC 9449 7.2: a bound token presented as a bearer token is refused,
	 * or a stolen token would work without the key. */
	if (!dpop_scheme)
		return am_fail(e, AM_E_DPOP_PROOF_REFUSED,
			       "this access token is DPoP-bound: send it as Authorization: DPoP "
			       "with a DPoP proof");
	if ((rc = flow_dpop_check(env, st, proof, &want, NULL, e)) == AM_E_INVALID_DPOP_PROOF)
		e->code = rc = AM_E_DPOP_PROOF_REFUSED;
	return rc;
}

enum am_err
flow_dpop_grant_jkt(const char *grant, char out[JOSE_JKT_LEN], struct am_error *e)
{
	json_t *claims = jose_unverified_claims(grant);
	const char *jkt = json_string_value(json_object_get(json_object_get(claims, "cnf"), "jkt"));
	enum am_err rc = AM_OK;

	out[0] = '\0';
	if (json_object_get(json_object_get(claims, "cnf"), "jkt") != NULL &&
	    (jkt == NULL || strlen(jkt) != JOSE_JKT_LEN - 1 ||
	     strspn(jkt, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") !=
		     JOSE_JKT_LEN - 1))
		rc = am_fail(e, AM_E_INVALID_GRANT, "the grant's cnf.jkt is not a JWK thumbprint");
	else if (jkt != NULL)
		memcpy(out, jkt, JOSE_JKT_LEN);
	json_decref(claims);
	return rc;
}

enum am_err
flow_dpop_bind(const struct flow_env *env, struct store *st, const char *credential_id,
	       const char *jkt, struct am_error *e)
{
	(void)env;
	return store_cred_bind_jkt(st, credential_id, jkt, e);
}
