/* A test double of an agent provider, built on the project's own HTTP and
 * JOSE code: it serves a JWKS with an ES256 and an RS256 key and signs what
 * the test asks for, so integration tests can present real ID-JAGs and
 * logout tokens (and faulty ones) to the real server.
 *
 *   testprovider PORT
 *   GET  /.well-known/jwks.json          the public keys (fetches are counted)
 *   POST /sign {key, typ, claims, kid?}  a compact JWS signed by key "es"|"rs"
 *   POST /rotate {key, drop_old?}        a new key in that slot
 *   POST /config {max_age}               Cache-Control max-age of the JWKS
 *   GET  /stats                          {"jwks_fetches": N, "cimd_fetches": N, ...}
 *   GET  /agent-auth.json                its Client ID Metadata Document
 *   GET  /cimd/wrong-id, /cimd/redirect, /cimd/big, /cimd/not-json
 *   GET  /cimd/script                    a document whose client_name holds <script>
 *                                        faulty documents: another client_id, a 302
 *                                        to the good one, 300 KiB, not JSON
 *   GET  /cimd/hang                      waits until POST /release (30 s at most),
 *                                        then answers a good document for its URL
 *   POST /release                        lets every /cimd/hang answer
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/json.h"
#include "core/limits.h"
#include "http/http.h"
#include "jose/jose.h"

#define MAX_RETIRED 8

static struct {
	pthread_mutex_t mu;
	struct jose_signer *es, *rs;
	json_t *retired; /* public JWKs of replaced keys, still published */
	unsigned long fetches;
	long max_age;
	unsigned port;
	pthread_cond_t released_cv;
	bool released;
	unsigned long cimd_fetches, hangs;
} P = {PTHREAD_MUTEX_INITIALIZER, NULL,	 NULL, NULL, 0, 600, 0,
       PTHREAD_COND_INITIALIZER,  false, 0,    0};

/* A metadata document whose client_id is this provider's URL for path. */
static json_t *
cimd_doc(const char *path)
{
	char id[128];

	snprintf(id, sizeof(id), "http://127.0.0.1:%u%s", P.port, path);
	/* /cimd/script: a name a page must escape */
	return json_pack("{s:s, s:s, s:s, s:[s], s:s}", "client_id", id, "client_name",
			 strcmp(path, "/cimd/script") == 0 ? "<script>alert(1)</script> Agent"
							   : "Test Agent <b>&</b>",
			 "logo_uri", "https://agent.example.test/logo.png", "redirect_uris",
			 "https://agent.example.test/cb", "token_endpoint_auth_method", "none");
}

static enum am_err
h_cimd(void *app, struct http_req *rq, struct http_resp *rs, struct am_error *e)
{
	char cc[64];

	(void)app, (void)e;
	pthread_mutex_lock(&P.mu);
	P.cimd_fetches++;
	if (strcmp(rq->path, "/cimd/hang") == 0) {
		struct timespec until;

		P.hangs++;
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += 30;
		while (!P.released && pthread_cond_timedwait(&P.released_cv, &P.mu, &until) == 0)
			;
	}
	snprintf(cc, sizeof(cc), "public, max-age=%ld", P.max_age);
	pthread_mutex_unlock(&P.mu);
	if (strcmp(rq->path, "/cimd/wrong-id") == 0) {
		http_reply_json(rs, 200, cimd_doc("/agent-auth.json"));
	} else if (strcmp(rq->path, "/cimd/redirect") == 0) {
		char to[96];

		snprintf(to, sizeof(to), "http://127.0.0.1:%u/agent-auth.json", P.port);
		http_reply_json(rs, 302, json_pack("{s:s}", "location", to));
		http_add_header(rs, "Location", to);
	} else if (strcmp(rq->path, "/cimd/not-json") == 0) {
		http_reply_text(rs, 200, "application/json", "<html>", 6);
	} else if (strcmp(rq->path, "/cimd/big") == 0) {
		json_t *doc = cimd_doc(rq->path);
		char *pad = malloc(300 * 1024 + 1);

		memset(pad, 'x', 300 * 1024);
		pad[300 * 1024] = '\0';
		json_object_set_new(doc, "padding", json_string(pad));
		free(pad);
		http_reply_json(rs, 200, doc);
	} else {
		http_reply_json(rs, 200, cimd_doc(rq->path));
		http_add_header(rs, "Cache-Control", cc);
	}
	return AM_OK;
}

static enum am_err
h_release(void *app, struct http_req *rq, struct http_resp *rs, struct am_error *e)
{
	(void)app, (void)rq, (void)e;
	pthread_mutex_lock(&P.mu);
	P.released = true;
	pthread_cond_broadcast(&P.released_cv);
	pthread_mutex_unlock(&P.mu);
	http_reply_json(rs, 200, json_pack("{s:b}", "ok", 1));
	return AM_OK;
}

static enum am_err
h_jwks(void *app, struct http_req *rq, struct http_resp *rs, struct am_error *e)
{
	json_t *keys;
	char cc[64];

	(void)app, (void)rq, (void)e;
	pthread_mutex_lock(&P.mu);
	P.fetches++;
	keys = json_deep_copy(P.retired);
	json_array_append_new(keys, jose_signer_public_jwk(P.es));
	json_array_append_new(keys, jose_signer_public_jwk(P.rs));
	snprintf(cc, sizeof(cc), "public, max-age=%ld", P.max_age);
	pthread_mutex_unlock(&P.mu);
	http_reply_json(rs, 200, json_pack("{s:o}", "keys", keys));
	http_add_header(rs, "Cache-Control", cc);
	return AM_OK;
}

static enum am_err
h_sign(void *app, struct http_req *rq, struct http_resp *rs, struct am_error *e)
{
	json_t *req;
	const char *key, *typ, *kid;
	char *token = NULL;
	enum am_err rc;

	(void)app;
	if ((rc = am_json_object(rq->body.data, rq->body.len, &req, e)) != AM_OK)
		return rc;
	key = json_string_value(json_object_get(req, "key"));
	typ = json_string_value(json_object_get(req, "typ"));
	kid = json_string_value(json_object_get(req, "kid"));
	if (key == NULL || typ == NULL || !json_is_object(json_object_get(req, "claims"))) {
		json_decref(req);
		return am_fail(e, AM_E_INVALID_REQUEST, "need key, typ and claims");
	}
	pthread_mutex_lock(&P.mu);
	rc = jose_sign_kid(strcmp(key, "rs") == 0 ? P.rs : P.es, typ, kid,
			   json_object_get(req, "claims"), &token, e);
	pthread_mutex_unlock(&P.mu);
	json_decref(req);
	if (rc != AM_OK)
		return rc;
	http_reply_json(rs, 200, json_pack("{s:s}", "token", token));
	free(token);
	return AM_OK;
}

static enum am_err
h_rotate(void *app, struct http_req *rq, struct http_resp *rs, struct am_error *e)
{
	json_t *req;
	struct jose_signer *fresh = NULL, **slot;
	enum am_err rc;

	(void)app;
	if ((rc = am_json_object(rq->body.data, rq->body.len, &req, e)) != AM_OK)
		return rc;
	pthread_mutex_lock(&P.mu);
	slot = strcmp(json_string_value(json_object_get(req, "key")) != NULL
			      ? json_string_value(json_object_get(req, "key"))
			      : "es",
		      "rs") == 0
		       ? &P.rs
		       : &P.es;
	rc = jose_signer_generate(jose_signer_alg(*slot), &fresh, e);
	if (rc == AM_OK) {
		if (!json_is_true(json_object_get(req, "drop_old")) &&
		    json_array_size(P.retired) < MAX_RETIRED)
			json_array_append_new(P.retired, jose_signer_public_jwk(*slot));
		jose_signer_free(*slot);
		*slot = fresh;
		http_reply_json(rs, 200, json_pack("{s:s}", "kid", jose_signer_kid(fresh)));
	}
	pthread_mutex_unlock(&P.mu);
	json_decref(req);
	return rc;
}

static enum am_err
h_config(void *app, struct http_req *rq, struct http_resp *rs, struct am_error *e)
{
	json_t *req;
	enum am_err rc;

	(void)app;
	if ((rc = am_json_object(rq->body.data, rq->body.len, &req, e)) != AM_OK)
		return rc;
	pthread_mutex_lock(&P.mu);
	if (json_is_integer(json_object_get(req, "max_age")))
		P.max_age = (long)json_integer_value(json_object_get(req, "max_age"));
	pthread_mutex_unlock(&P.mu);
	json_decref(req);
	http_reply_json(rs, 200, json_pack("{s:b}", "ok", 1));
	return AM_OK;
}

static enum am_err
h_stats(void *app, struct http_req *rq, struct http_resp *rs, struct am_error *e)
{
	unsigned long n, cimd, hangs;

	(void)app, (void)rq, (void)e;
	pthread_mutex_lock(&P.mu);
	n = P.fetches;
	cimd = P.cimd_fetches;
	hangs = P.hangs;
	pthread_mutex_unlock(&P.mu);
	http_reply_json(rs, 200,
			json_pack("{s:I, s:s, s:s, s:I, s:I}", "jwks_fetches", (json_int_t)n,
				  "es_kid", jose_signer_kid(P.es), "rs_kid", jose_signer_kid(P.rs),
				  "cimd_fetches", (json_int_t)cimd, "cimd_hangs",
				  (json_int_t)hangs));
	return AM_OK;
}

static const struct http_route routes[] = {
	{"GET", "/.well-known/jwks.json", HTTP_EXACT, h_jwks},
	{"POST", "/sign", HTTP_EXACT, h_sign},
	{"POST", "/rotate", HTTP_EXACT, h_rotate},
	{"POST", "/config", HTTP_EXACT, h_config},
	{"GET", "/stats", HTTP_EXACT, h_stats},
	{"GET", "/agent-auth.json", HTTP_EXACT, h_cimd},
	{"GET", "/cimd/", HTTP_PREFIX, h_cimd},
	{"POST", "/release", HTTP_EXACT, h_release},
};

int
main(int argc, char **argv)
{
	struct http_options opt = {
		.host = "127.0.0.1", .port = 0, .threads = 6, .max_body = AM_DEFAULT_BODY_BYTES};
	struct http_server *srv = NULL;
	struct am_error e = {0};
	sigset_t sigs;
	int sig;

	if (argc != 2 || (opt.port = (uint16_t)atoi(argv[1])) == 0) {
		fprintf(stderr, "usage: testprovider PORT\n");
		return 2;
	}
	P.port = opt.port;
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	P.retired = json_array();
	if (jose_signer_generate("ES256", &P.es, &e) != AM_OK ||
	    jose_signer_generate("RS256", &P.rs, &e) != AM_OK ||
	    http_server_start(&opt, routes, sizeof(routes) / sizeof(routes[0]), NULL, &srv, &e) !=
		    AM_OK) {
		fprintf(stderr, "testprovider: %s\n", e.detail);
		return 1;
	}
	fprintf(stderr, "testprovider listening on 127.0.0.1:%u\n", (unsigned)opt.port);
	sigwait(&sigs, &sig);
	http_server_stop(srv);
	jose_signer_free(P.es);
	jose_signer_free(P.rs);
	json_decref(P.retired);
	return 0;
}
