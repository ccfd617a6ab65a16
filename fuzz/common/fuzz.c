/* Shared fuzz helpers: see fuzz.h. Test-only code: failures abort, since a
 * broken fixture must never pass for a clean fuzz run. */
#include "fuzz.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/log.h"
#include "service/service.h"
#include "trust/trust.h"
#include "testkeys.h"

void
fz_die(const char *msg)
{
	fprintf(stderr, "fuzz: %s\n", msg);
	abort();
}

static char tmpdir[256];

static int
remove_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb, (void)flag, (void)ftw;
	remove(path);
	return 0;
}

static void
remove_tmpdir(void)
{
	nftw(tmpdir, remove_one, 8, FTW_DEPTH | FTW_PHYS);
}

const char *
fz_tmpdir(void)
{
	const char *base = getenv("TMPDIR");

	if (tmpdir[0] != '\0')
		return tmpdir;
	/* Mail files and the service's store are fsync'ed on every write: on
	 * tmpfs that costs nothing, on a disk it was most of each input. */
	if (base == NULL || base[0] == '\0')
		base = access("/dev/shm", W_OK | X_OK) == 0 ? "/dev/shm" : "/tmp";
	snprintf(tmpdir, sizeof(tmpdir), "%s/authmd-fuzz-XXXXXX", base);
	if (mkdtemp(tmpdir) == NULL)
		fz_die("cannot create a temporary folder");
	atexit(remove_tmpdir);
	/* The store pool puts sqlite::memory: in a file under TMPDIR: inside
	 * this folder it goes when the target exits. */
	setenv("TMPDIR", tmpdir, 1);
	return tmpdir;
}

uint16_t
fz_free_port(void)
{
	struct sockaddr_in sin = {.sin_family = AF_INET};
	socklen_t len = sizeof(sin);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	uint16_t port;

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sin, sizeof(sin)) != 0 ||
	    getsockname(fd, (struct sockaddr *)&sin, &len) != 0)
		fz_die("cannot find a free port on 127.0.0.1");
	port = ntohs(sin.sin_port);
	close(fd);
	return port;
}

uint16_t
fz_serve(const struct http_route *routes, size_t nroutes, void *app, unsigned threads)
{
	struct http_server *srv;
	struct am_error e = {0};

	(void)am_log_set_level("error"); /* one line per request would drown findings */
	/* The port is free a moment before MHD binds it; retry if another
	 * process took it in between. */
	for (int i = 0; i < 20; i++) {
		struct http_options opt = {.host = "127.0.0.1",
					   .port = fz_free_port(),
					   .threads = threads,
					   .max_body = 64 * 1024};

		if (http_server_start(&opt, routes, nroutes, app, &srv, &e) == AM_OK)
			return opt.port; /* runs until the process exits */
	}
	fz_die("cannot start the in-process HTTP server");
}

/* With FUZZ_HANG_GDB set, a hang prints every thread's stack (the
 * server's workers are where a hang lives, not the fuzzing thread). */
static void
dump_threads(void)
{
	char cmd[128];

	if (getenv("FUZZ_HANG_GDB") == NULL)
		return;
	snprintf(cmd, sizeof(cmd), "gdb -p %d -batch -ex 'thread apply all bt' 1>&2",
		 (int)getpid());
	if (system(cmd) != 0)
		fprintf(stderr, "fuzz: gdb failed\n");
}

static void
send_all(int fd, const char *p, size_t len)
{
	while (len > 0) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue; /* a libFuzzer timer, not the server */
		if (n <= 0)
			return; /* the server may answer and close before reading it all */
		p += n;
		len -= (size_t)n;
	}
}

int
fz_http(uint16_t port, const char *req, size_t len, char *resp, size_t cap)
{
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(port)};
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	size_t got = 0;
	int status = 0;

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0)
		fz_die("cannot make a socket");
	/* libFuzzer's timers (SIGALRM) interrupt blocking calls: an EINTR is
	 * neither a refusal nor a hang. An interrupted connect goes on in the
	 * background; wait for it and read its outcome. */
	if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) != 0) {
		struct pollfd w = {fd, POLLOUT, 0};
		int err = 0;
		socklen_t elen = sizeof(err);

		if (errno != EINTR && errno != EINPROGRESS)
			fz_die("cannot connect to the in-process server");
		while (poll(&w, 1, 30000) < 0 && errno == EINTR) {
		}
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) != 0 || err != 0)
			fz_die("cannot connect to the in-process server");
	}
	send_all(fd, req, len);
	for (;;) {
		struct pollfd p = {fd, POLLIN, 0};
		char sink[4096];
		char *dst = got + 1 < cap ? resp + got : sink;
		size_t room = got + 1 < cap ? cap - 1 - got : sizeof(sink);
		ssize_t n;

		int ready;

		/* 30 s without a byte is a hang, which is a finding; a signal
		 * that cuts the wait short is not (the wait starts again). */
		while ((ready = poll(&p, 1, 30000)) < 0 && errno == EINTR) {
		}
		if (ready != 1) {
			dump_threads();
			fz_die("the server did not answer within 30 s");
		}
		if ((n = recv(fd, dst, room, 0)) < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		if (dst != sink)
			got += (size_t)n;
	}
	/* Reset instead of a FIN, so no TIME_WAIT is left behind: thousands of
	 * connections a second would otherwise wrap the ephemeral ports onto
	 * 4-tuples the kernel still holds. */
	setsockopt(fd, SOL_SOCKET, SO_LINGER, &(struct linger){1, 0}, sizeof(struct linger));
	close(fd);
	resp[got] = '\0';
	if (sscanf(resp, "HTTP/1.%*1[01] %3d", &status) != 1)
		status = 0;
	return status;
}

static struct jose_signer *signer, *rsa_signer;
static char *jwks;

static void
free_signers(void)
{
	jose_signer_free(signer);
	jose_signer_free(rsa_signer);
	free(jwks);
}

static void
load_signers(void)
{
	struct am_error e = {0};
	json_t *doc;

	if (jose_signer_load(FZ_KEY_EC, &signer, &e) != AM_OK ||
	    jose_signer_load(FZ_KEY_RSA, &rsa_signer, &e) != AM_OK)
		fz_die("cannot load the test keys");
	doc = json_pack("{s:[o,o]}", "keys", jose_signer_public_jwk(signer),
			jose_signer_public_jwk(rsa_signer));
	if (doc == NULL || (jwks = json_dumps(doc, JSON_COMPACT)) == NULL)
		fz_die("cannot render the test JWKS");
	json_decref(doc);
	atexit(free_signers);
}

const struct jose_signer *
fz_signer(void)
{
	if (signer == NULL)
		load_signers();
	return signer;
}

const struct jose_signer *
fz_rsa_signer(void)
{
	if (signer == NULL)
		load_signers();
	return rsa_signer;
}

const char *
fz_jwks_json(void)
{
	if (signer == NULL)
		load_signers();
	return jwks;
}

static enum am_err
h_jwks(void *app, struct http_req *rq, struct http_resp *rs, struct am_error *e)
{
	const char *doc = fz_jwks_json();

	(void)app, (void)rq, (void)e;
	http_reply_text(rs, 200, "application/json", doc, strlen(doc));
	http_add_header(rs, "Cache-Control", "max-age=86400");
	return AM_OK;
}

const char *
fz_provider_issuer(void)
{
	static const struct http_route routes[] = {{"GET", "/jwks", HTTP_EXACT, h_jwks}};
	static char issuer[64];

	if (issuer[0] == '\0')
		snprintf(issuer, sizeof(issuer), "http://127.0.0.1:%u",
			 (unsigned)fz_serve(routes, 1, NULL, 1));
	return issuer;
}

static void
set(struct am_config *cfg, const char *section, const char *key, const char *value)
{
	char err[256];

	if (am_config_set(cfg, section, key, value, err, sizeof(err)) != 0) {
		fprintf(stderr, "fuzz: [%s] %s = %s: %s\n", section, key, value, err);
		fz_die("bad fixture config");
	}
}

void
fz_service_config(struct am_config *cfg)
{
	char jwks_uri[128], outbox[300], err[256];

	am_config_defaults(cfg);
	snprintf(jwks_uri, sizeof(jwks_uri), "%s/jwks", fz_provider_issuer());
	set(cfg, "store", "url", "sqlite::memory:");
	snprintf(outbox, sizeof(outbox), "%s/outbox", fz_tmpdir());
	set(cfg, "mail", "outbox", outbox);
	snprintf(outbox, sizeof(outbox), "%s/keys", fz_tmpdir()); /* v0.6 signing keys */
	set(cfg, "v06", "keys_dir", outbox);
	set(cfg, "audit", "sink", "off");
	set(cfg, "log", "level", "error");
	set(cfg, "provider fz", "issuer", fz_provider_issuer());
	set(cfg, "provider fz", "jwks_uri", jwks_uri);
	/* one store serves many inputs: the claim-mail budgets would run out */
	set(cfg, "limits", "claim_mails_per_address", "0");
	set(cfg, "limits", "claim_mails_global", "0");
	/* the fixture provider serves its keys on loopback */
	set(cfg, "outbound", "allow_private_targets", "127.0.0.0/8 ::1/128");
	if (am_config_validate(cfg, err, sizeof(err)) != 0) {
		fprintf(stderr, "fuzz: %s\n", err);
		fz_die("the fixture config does not validate");
	}
	(void)am_log_set_level("error");
}

void
fz_splice(struct am_buf *b, const uint8_t *data, size_t size, const char *const *names,
	  const char *const *values, size_t n)
{
	size_t i = 0;

	b->len = 0;
	while (i < size) {
		size_t k;

		for (k = 0; k < n; k++) {
			size_t nl = strlen(names[k]);

			if (size - i >= nl && memcmp(data + i, names[k], nl) == 0) {
				am_buf_puts(b, values[k]);
				i += nl;
				break;
			}
		}
		if (k == n)
			am_buf_add(b, (const char *)data + i++, 1);
	}
	am_buf_add(b, "", 0); /* data is never NULL and always terminated */
}

const struct flow_env *
fz_flow_env(void)
{
	static struct am_config cfg;
	static struct flow_env env;
	struct am_error e = {0};

	if (env.cfg != NULL)
		return &env;
	fz_service_config(&cfg);
	curl_global_init(CURL_GLOBAL_DEFAULT); /* the trust list fetches the test JWKS */
	env.clock.now = FZ_NOW;
	if (mailer_new(&cfg, &env.mail, &e) != AM_OK || trust_new(&cfg, &env.trust, &e) != AM_OK)
		fz_die("cannot set up the flow environment");
	env.cfg = &cfg;
	return &env;
}

char *
fz_sign(const char *typ, const json_t *claims)
{
	struct am_error e = {0};
	char *out = NULL;

	if (jose_sign(fz_signer(), typ, claims, &out, &e) != AM_OK)
		return NULL; /* e.g. claims jansson cannot serialise */
	return out;
}

json_t *
fz_idjag_claims(const char *jti)
{
	const struct flow_env *env = fz_flow_env();

	return json_pack("{s:s, s:s, s:s, s:s, s:I, s:I, s:s, s:s, s:b}", "iss",
			 fz_provider_issuer(), "sub", "user-1", "aud", env->cfg->public_url,
			 "client_id", fz_provider_issuer(), "iat", (json_int_t)FZ_NOW, "exp",
			 (json_int_t)FZ_NOW + 300, "jti", jti, "email", "owner@example.test",
			 "email_verified", 1);
}

bool
fz_outbox_token(char *out, size_t cap)
{
	const char *dir = fz_flow_env()->cfg->mail_outbox;
	DIR *d = opendir(dir);
	struct dirent *de;
	char path[600], best[256] = "", buf[16384];
	size_t n;
	FILE *f;
	char *p;

	while (d != NULL && (de = readdir(d)) != NULL) {
		if (de->d_name[0] != '.' && strcmp(de->d_name, best) > 0 &&
		    strlen(de->d_name) < sizeof(best))
			snprintf(best, sizeof(best), "%s", de->d_name);
	}
	if (d != NULL)
		closedir(d);
	if (best[0] == '\0')
		return false;
	snprintf(path, sizeof(path), "%s/%s", dir, best);
	if ((f = fopen(path, "r")) == NULL)
		return false;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	if ((p = strstr(buf, "token=")) == NULL)
		return false;
	p += 6;
	n = strspn(p, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-");
	if (n == 0 || n >= cap)
		return false;
	memcpy(out, p, n);
	out[n] = '\0';
	return true;
}

void
fz_outbox_clear(void)
{
	const char *dir = fz_flow_env()->cfg->mail_outbox;
	DIR *d = opendir(dir);
	struct dirent *de;
	char path[600];

	while (d != NULL && (de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		unlink(path);
	}
	if (d != NULL)
		closedir(d);
}

uint16_t
fz_service_port(void)
{
	static struct am_config cfg;
	static uint16_t port;
	struct am_error e = {0};
	struct app *a;

	if (port != 0)
		return port;
	fz_service_config(&cfg);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	if (app_new(&cfg, &a, &e) != AM_OK) {
		fprintf(stderr, "fuzz: app_new: %s\n", e.detail);
		fz_die("cannot build the service");
	}
	port = fz_serve(a->routes, a->nroutes, a, 2); /* the app lives until exit */
	return port;
}
