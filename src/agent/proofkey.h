/* The agent's DPoP key (RFC 9449) for authmd --dpop: one P-256 key in the
 * credential store's folder (dpop-key.pem, mode 0600, written atomically),
 * made on first use, and the proofs signed with it. OpenSSL only: the
 * client library does not link cjose (jose/ is the server side's). */
#ifndef AM_AGENT_PROOFKEY_H
#define AM_AGENT_PROOFKEY_H

#include <stddef.h>

#include "authmd/client.h"

struct proofkey;

/* Loads the key beside store_path (the credentials file), or makes and
 * saves one. A key file others can read is refused (AUTHMD_ERR_STORE). */
enum authmd_status proofkey_load(const char *store_path, struct proofkey **out,
				 struct authmd_error *err);
void proofkey_free(struct proofkey *k); /* NULL is fine */

/* A DPoP proof for (htm, htu) — htu without query or fragment, which are
 * cut here — with ath for access_token when not NULL; *out is the compact
 * JWS (caller frees). */
enum authmd_status proofkey_proof(const struct proofkey *k, const char *htm, const char *htu,
				  const char *access_token, char **out, struct authmd_error *err);

#endif
