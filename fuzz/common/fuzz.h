/* Helpers shared by the fuzz targets: fixed test keys, an in-process HTTP
 * server on 127.0.0.1 (the project's own http/ code), a raw HTTP/1.1 client
 * for it, placeholders that splice real secrets into fuzzer input, and a
 * temporary folder removed at exit. Everything here is for fuzz/ only. */
#ifndef AM_FUZZ_H
#define AM_FUZZ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/config.h"
#include "flows/flows.h"
#include "core/str.h"
#include "http/http.h"
#include "jose/jose.h"

/* Every target defines this (libFuzzer's entry point); replay.c calls it
 * for each corpus file when the target is built without libFuzzer. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Aborts with msg: an invariant of the code under test was broken, which
 * libFuzzer records as a crash. */
void fz_die(const char *msg) __attribute__((noreturn));

/* A new folder under $TMPDIR (unset: /dev/shm when writable, else /tmp),
 * removed with its files at exit; TMPDIR then names it. */
const char *fz_tmpdir(void);

/* A port on 127.0.0.1 nobody was listening on a moment ago. */
uint16_t fz_free_port(void);

/* Starts the project's HTTP server on 127.0.0.1 with routes and app;
 * returns the port. Aborts on failure. The server runs until exit. */
uint16_t fz_serve(const struct http_route *routes, size_t nroutes, void *app, unsigned threads);

/* Sends req (len bytes) to 127.0.0.1:port on a new connection and reads the
 * answer until the server closes it (at most cap-1 bytes kept, NUL added).
 * Returns the HTTP status, or 0 when no status line came back. */
int fz_http(uint16_t port, const char *req, size_t len, char *resp, size_t cap);

/* The fixed test signers (ES256 kid fuzz-ec, RS256 kid fuzz-rsa; see
 * testkeys.h) and the JWKS document of both, loaded on first use. */
const struct jose_signer *fz_signer(void);
const struct jose_signer *fz_rsa_signer(void);
const char *fz_jwks_json(void);

/* Starts (once) a JWKS endpoint at http://127.0.0.1:PORT/jwks serving
 * fz_jwks_json(); returns the issuer URL "http://127.0.0.1:PORT". */
const char *fz_provider_issuer(void);

/* Config defaults for an in-process service trusting fz_provider_issuer()
 * (as provider "fz"), with mail in fz_tmpdir() and quiet logs. */
void fz_service_config(struct am_config *cfg);

/* The fixed time of the flow fixtures (fz_flow_env). */
#define FZ_NOW 1700000000

/* A flow environment on fz_service_config: fixed clock FZ_NOW, mail to the
 * outbox in fz_tmpdir(), the trust list with the test provider, no rate
 * limits. Made once; the caller opens its own store per input. */
const struct flow_env *fz_flow_env(void);

/* Signs claims (borrowed) with the test EC key under typ; caller frees. */
char *fz_sign(const char *typ, const json_t *claims);

/* Valid ID-JAG claims for fz_flow_env with this jti (new reference). */
json_t *fz_idjag_claims(const char *jti);

/* The link token of the newest mail in the outbox into out; false if none.
 * fz_outbox_clear deletes every mail. */
bool fz_outbox_token(char *out, size_t cap);
void fz_outbox_clear(void);

/* Starts (once) the whole service (app_new on fz_service_config, the real
 * route table) on 127.0.0.1 and returns its port. Its clock is real. */
uint16_t fz_service_port(void);

/* Copies data into b (NUL-terminated), replacing each placeholder
 * names[i] with values[i]. */
void fz_splice(struct am_buf *b, const uint8_t *data, size_t size, const char *const *names,
	       const char *const *values, size_t n);

#endif
