#include <arpa/inet.h>
#include <assert.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>

#include "core/crypto.h"
#include "core/json.h"
#include "core/limits.h"
#include "core/log.h"
#include "core/metrics.h"
#include "http/http.h"

/* One open connection, from libmicrohttpd's connection-start notice to its
 * close notice. The reaper closes it when its deadline passes. */
struct conn_track {
	struct conn_track *prev, *next; /* under srv->mu */
	struct ip_count *ip;		/* counted against per_ip; NULL: not */
	char peer[64];			/* the client address as text; set before any request */
	int fd;
	_Atomic int64_t start;	  /* monotonic ms: the current request's start */
	_Atomic int64_t deadline; /* monotonic ms; 0 once the request is in */
	bool reaped;		  /* under srv->mu */
};

#define WARN_KINDS 16
#define IP_BUCKETS 256

/* Open connections of one client address (max_connections_per_ip). */
struct ip_count {
	struct ip_count *next; /* under srv->mu */
	uint8_t addr[16];      /* IPv4 as its IPv4-mapped IPv6 form */
	unsigned n;
};

/* libmicrohttpd warnings, keyed by their format string: the first of each
 * kind per interval is logged, the rest counted into one summary line. */
struct warn_kind {
	const char *fmt;
	char first[200];
	uint64_t more;
};

struct http_server {
	struct MHD_Daemon *daemon;
	const struct http_route *routes;
	size_t nroutes;
	void *app;
	size_t max_body;
	int64_t header_ms, request_ms;
	unsigned log_interval_s;

	pthread_mutex_t mu; /* conns, and shutdown() of their sockets */
	struct conn_track *conns;
	uint64_t slow_closed;		  /* under mu; since the last summary */
	struct ip_count *ips[IP_BUCKETS]; /* under mu */
	unsigned per_ip;
	uint64_t per_ip_refused; /* under mu; since the last summary */

	pthread_mutex_t log_mu;
	struct warn_kind warn[WARN_KINDS];
	size_t nwarn;
	uint64_t warn_other;

	pthread_mutex_t park_mu; /* http_req.park_state of parked requests */

	pthread_t reaper;
	bool reaper_started;
	bool quiesced;
	pthread_mutex_t stop_mu;
	pthread_cond_t stop_cv;
	bool stopping;
	struct am_cidr_list trusted; /* gate: proxies whose forwarding headers count */
	bool forwarded_rfc7239;
};

static int64_t
mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static struct conn_track *
track_of(struct MHD_Connection *conn)
{
	const union MHD_ConnectionInfo *ci =
		MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);

	return ci != NULL ? ci->socket_context : NULL;
}

/* The request on conn has delivered its headers: the rest of the request
 * must arrive within request_ms of its start. */
static void
track_headers_done(struct http_server *srv, struct MHD_Connection *conn)
{
	struct conn_track *ct = track_of(conn);

	if (ct != NULL)
		atomic_store(&ct->deadline, atomic_load(&ct->start) + srv->request_ms);
}

/* The request has arrived or a reply is queued: only the idle timeout
 * applies while the handler works and the reply goes out. */
static void
track_replying(struct MHD_Connection *conn)
{
	struct conn_track *ct = track_of(conn);

	if (ct != NULL)
		atomic_store(&ct->deadline, 0);
}

/* The request ended; a kept-alive connection's next one starts now. */
static void
track_next_request(struct http_server *srv, struct MHD_Connection *conn)
{
	struct conn_track *ct = track_of(conn);
	int64_t now = mono_ms();

	if (ct == NULL)
		return;
	atomic_store(&ct->start, now);
	atomic_store(&ct->deadline, now + srv->header_ms);
}

/* The connection's client address as 16 bytes (IPv4 mapped into IPv6), and
 * whether it is a trusted proxy. False when there is no address. */
static bool
peer_key(struct http_server *srv, struct MHD_Connection *conn, uint8_t key[16], bool *trusted,
	 char text[64])
{
	const union MHD_ConnectionInfo *ci =
		MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	const struct sockaddr *sa = ci != NULL ? ci->client_addr : NULL;

	if (sa == NULL)
		return false;
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)sa;

		memset(key, 0, 10);
		key[10] = key[11] = 0xff;
		memcpy(key + 12, &in->sin_addr, 4);
		inet_ntop(AF_INET, &in->sin_addr, text, 64);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)sa;

		memcpy(key, &in6->sin6_addr, 16);
		inet_ntop(AF_INET6, &in6->sin6_addr, text, 64);
	} else {
		return false;
	}
	*trusted = srv->trusted.n > 0 && am_cidr_match(&srv->trusted, text);
	return true;
}

static unsigned
ip_bucket(const uint8_t key[16])
{
	uint32_t h = 2166136261u; /* FNV-1a */

	for (int i = 0; i < 16; i++)
		h = (h ^ key[i]) * 16777619u;
	return h % IP_BUCKETS;
}

/* Counts one more connection of key; NULL when that address is at its
 * limit (or out of memory). Called with srv->mu held. */
static struct ip_count *
ip_add(struct http_server *srv, const uint8_t key[16])
{
	unsigned h = ip_bucket(key);
	struct ip_count *c;

	for (c = srv->ips[h]; c != NULL; c = c->next)
		if (memcmp(c->addr, key, 16) == 0)
			break;
	if (c == NULL) {
		if ((c = calloc(1, sizeof(*c))) == NULL)
			return NULL;
		memcpy(c->addr, key, 16);
		c->next = srv->ips[h];
		srv->ips[h] = c;
	}
	if (c->n >= srv->per_ip)
		return NULL;
	c->n++;
	return c;
}

/* Called with srv->mu held. */
static void
ip_del(struct http_server *srv, struct ip_count *c)
{
	unsigned h = ip_bucket(c->addr);

	if (--c->n > 0)
		return;
	for (struct ip_count **pp = &srv->ips[h]; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == c) {
			*pp = c->next;
			free(c);
			return;
		}
	}
}

static void
on_connection(void *cls, struct MHD_Connection *conn, void **socket_context,
	      enum MHD_ConnectionNotificationCode toe)
{
	struct http_server *srv = cls;
	struct conn_track *ct = *socket_context;

	if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
		const union MHD_ConnectionInfo *ci =
			MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CONNECTION_FD);
		int64_t now = mono_ms();
		uint8_t key[16];
		bool trusted = false, keyed;

		if (ci == NULL || (ct = calloc(1, sizeof(*ct))) == NULL)
			return; /* untracked: only the idle timeout applies to it */
		ct->fd = ci->connect_fd;
		atomic_init(&ct->start, now);
		atomic_init(&ct->deadline, now + srv->header_ms);
		/* The address text is kept for the connection's requests. */
		keyed = peer_key(srv, conn, key, &trusted, ct->peer);
		pthread_mutex_lock(&srv->mu);
		/* Every connection of a reverse proxy comes from its address: a
		 * trusted proxy is bounded by max_connections only, or the
		 * gate would refuse the proxy's upstream connections under load
		 * (issue 8: 502s through nginx auth_request). */
		if (keyed && !trusted && (ct->ip = ip_add(srv, key)) == NULL) {
			srv->per_ip_refused++;
			ct->reaped = true; /* refused: shut down below, not reaped again */
			(void)shutdown(ct->fd, SHUT_RDWR);
		}
		ct->next = srv->conns;
		if (srv->conns != NULL)
			srv->conns->prev = ct;
		srv->conns = ct;
		pthread_mutex_unlock(&srv->mu);
		*socket_context = ct;
		return;
	}
	if (ct == NULL)
		return;
	/* libmicrohttpd closes the socket after this notice, so holding mu
	 * here keeps the reaper from shutting down a reused descriptor. */
	pthread_mutex_lock(&srv->mu);
	if (ct->ip != NULL)
		ip_del(srv, ct->ip);
	if (ct->prev != NULL)
		ct->prev->next = ct->next;
	else
		srv->conns = ct->next;
	if (ct->next != NULL)
		ct->next->prev = ct->prev;
	pthread_mutex_unlock(&srv->mu);
	free(ct);
	*socket_context = NULL;
}

/* Closes every connection past its deadline; returns how many. The socket
 * is shut down, not closed: libmicrohttpd sees the end of the stream and
 * closes the connection on its own thread. */
static uint64_t
reap(struct http_server *srv, int64_t now)
{
	uint64_t n = 0;

	pthread_mutex_lock(&srv->mu);
	for (struct conn_track *ct = srv->conns; ct != NULL; ct = ct->next) {
		int64_t d = atomic_load(&ct->deadline);

		if (d == 0 || now < d || ct->reaped)
			continue;
		(void)shutdown(ct->fd, SHUT_RDWR);
		ct->reaped = true;
		n++;
	}
	srv->slow_closed += n;
	pthread_mutex_unlock(&srv->mu);
	return n;
}

static void
log_summaries(struct http_server *srv, unsigned secs)
{
	uint64_t slow, refused;

	pthread_mutex_lock(&srv->mu);
	slow = srv->slow_closed;
	srv->slow_closed = 0;
	refused = srv->per_ip_refused;
	srv->per_ip_refused = 0;
	pthread_mutex_unlock(&srv->mu);
	if (refused > 0)
		log_warn("refused %llu connections over max_connections_per_ip=%u in the last %us",
			 (unsigned long long)refused, srv->per_ip, secs);
	if (slow > 0)
		log_warn("closed %llu slow connections in the last %us (header_timeout=%llds "
			 "request_timeout=%llds)",
			 (unsigned long long)slow, secs, (long long)(srv->header_ms / 1000),
			 (long long)(srv->request_ms / 1000));
	pthread_mutex_lock(&srv->log_mu);
	for (size_t i = 0; i < srv->nwarn; i++) {
		if (srv->warn[i].more > 0)
			log_warn("mhd: %llu more like \"%s\" in the last %us",
				 (unsigned long long)srv->warn[i].more, srv->warn[i].first, secs);
	}
	if (srv->warn_other > 0)
		log_warn("mhd: %llu other warnings in the last %us",
			 (unsigned long long)srv->warn_other, secs);
	srv->nwarn = 0;
	srv->warn_other = 0;
	pthread_mutex_unlock(&srv->log_mu);
}

static void *
reaper_loop(void *arg)
{
	struct http_server *srv = arg;
	int64_t last_log = mono_ms();
	struct timespec until;

	pthread_mutex_lock(&srv->stop_mu);
	while (!srv->stopping) {
		int64_t now;

		clock_gettime(CLOCK_MONOTONIC, &until);
		until.tv_nsec += 250 * 1000000L; /* deadlines are kept to a quarter second */
		if (until.tv_nsec >= 1000000000L) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000L;
		}
		(void)pthread_cond_timedwait(&srv->stop_cv, &srv->stop_mu, &until);
		if (srv->stopping)
			break;
		pthread_mutex_unlock(&srv->stop_mu);
		now = mono_ms();
		(void)reap(srv, now);
		if (now - last_log >= (int64_t)srv->log_interval_s * 1000) {
			log_summaries(srv, srv->log_interval_s);
			last_log = now;
		}
		pthread_mutex_lock(&srv->stop_mu);
	}
	pthread_mutex_unlock(&srv->stop_mu);
	return NULL;
}

const char *
http_header(struct http_req *rq, const char *name)
{
	return MHD_lookup_connection_value(rq->conn, MHD_HEADER_KIND, name);
}

const char *
http_cookie(struct http_req *rq, const char *name)
{
	return MHD_lookup_connection_value(rq->conn, MHD_COOKIE_KIND, name);
}

const char *
http_query(struct http_req *rq, const char *name)
{
	return MHD_lookup_connection_value(rq->conn, MHD_GET_ARGUMENT_KIND, name);
}

bool
http_content_type_is(struct http_req *rq, const char *mime)
{
	const char *ct = http_header(rq, MHD_HTTP_HEADER_CONTENT_TYPE);
	size_t n = strlen(mime);

	if (ct == NULL || strncasecmp(ct, mime, n) != 0)
		return false;
	return ct[n] == '\0' || ct[n] == ';' || ct[n] == ' ';
}

struct form_ctx {
	const char *name;
	char *out;
	size_t cap;
	size_t len;
	bool found, overflow;
};

static enum MHD_Result
form_iter(void *cls, enum MHD_ValueKind kind, const char *key, const char *filename,
	  const char *content_type, const char *encoding, const char *data, uint64_t off,
	  size_t size)
{
	struct form_ctx *f = cls;

	(void)kind, (void)filename, (void)content_type, (void)encoding;
	if (strcmp(key, f->name) != 0)
		return MHD_YES;
	if (off != f->len || f->len + size >= f->cap) {
		f->overflow = true;
		return MHD_NO;
	}
	memcpy(f->out + f->len, data, size);
	f->len += size;
	f->out[f->len] = '\0';
	f->found = true;
	return MHD_YES;
}

bool
http_form_field(struct http_req *rq, const char *name, char *out, size_t cap)
{
	struct form_ctx f = {name, out, cap, 0, false, false};
	struct MHD_PostProcessor *pp;

	if (cap == 0 || rq->body.len == 0)
		return false;
	out[0] = '\0';
	pp = MHD_create_post_processor(rq->conn, 1024, form_iter, &f);
	if (pp == NULL)
		return false; /* not a form encoding MHD knows */
	(void)MHD_post_process(pp, rq->body.data, rq->body.len);
	MHD_destroy_post_processor(pp);
	if (f.overflow) {
		out[0] = '\0';
		return false;
	}
	return f.found;
}

void
http_add_header(struct http_resp *rs, const char *name, const char *value)
{
	if (rs->nheaders >= HTTP_MAX_HEADERS)
		return;
	rs->headers[rs->nheaders].name = name;
	rs->headers[rs->nheaders].value = am_xstrdup(value);
	rs->nheaders++;
}

void
http_reply_text(struct http_resp *rs, int status, const char *content_type, const char *text,
		size_t len)
{
	free(rs->body);
	rs->body = am_xmalloc(len + 1);
	memcpy(rs->body, text, len);
	rs->body[len] = '\0';
	rs->len = len;
	rs->status = status;
	rs->content_type = content_type;
}

void
http_reply_json_buf(struct http_resp *rs, int status, struct am_buf *b)
{
	am_buf_add(b, "\n", 1); /* the newline send_resp would otherwise add by copying */
	free(rs->body);
	rs->len = b->len;
	rs->body = am_buf_take(b);
	rs->status = status;
	rs->content_type = "application/json";
}

void
http_reply_json(struct http_resp *rs, int status, json_t *json)
{
	/* A secret buffer (an answer may carry a credential): growing it wipes
	 * the old block. 1 KiB holds most answers without growing. */
	struct am_buf b = {.data = am_xmalloc(1024), .cap = 1024, .secret = true};
	bool ok;

	b.data[0] = '\0';
	ok = json != NULL && am_json_dump(&b, json, false);
	json_decref(json);
	if (!ok) {
		am_buf_free(&b);
		http_reply_text(rs, 500, "application/json",
				"{\"error\":\"server_error\",\"message\":\"internal error\"}", 52);
		return;
	}
	http_reply_json_buf(rs, status, &b);
}

static void
resp_clear(struct http_resp *rs)
{
	if (rs->body != NULL)
		OPENSSL_cleanse(rs->body, rs->len); /* bodies may carry credentials */
	free(rs->body);
	for (int i = 0; i < rs->nheaders; i++)
		free(rs->headers[i].value);
	memset(rs, 0, sizeof(*rs));
}

static void
render_error(struct http_resp *rs, enum am_err code, const struct am_error *e)
{
	const char *msg = am_err_message(code);

	if (code != AM_E_INTERNAL && e->code == code && e->detail[0] != '\0')
		msg = e->detail;
	http_reply_json(rs, am_err_status(code),
			json_pack("{s:s, s:s}", "error", am_err_name(code), "message", msg));
}

static enum MHD_Result
send_resp(struct MHD_Connection *conn, struct http_req *rq, struct http_resp *rs)
{
	const char *ct = rs->content_type != NULL ? rs->content_type : "application/json";
	struct MHD_Response *r;
	enum MHD_Result ret;

	/* Every JSON reply ends with a newline, so consecutive curl outputs do
	 * not run together; documents rendered elsewhere get it here too. */
	if (strncmp(ct, "application/json", 16) == 0 && rs->len > 0 &&
	    rs->body[rs->len - 1] != '\n') {
		char *nl = am_xmalloc(rs->len + 2);

		memcpy(nl, rs->body, rs->len);
		nl[rs->len++] = '\n';
		nl[rs->len] = '\0';
		OPENSSL_cleanse(rs->body, rs->len - 1);
		free(rs->body);
		rs->body = nl;
	}
	r = MHD_create_response_from_buffer(rs->len, rs->body, MHD_RESPMEM_MUST_COPY);
	if (r == NULL)
		return MHD_NO;
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ct);
	MHD_add_response_header(r, "X-Request-Id", rq->id);
	MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
	for (int i = 0; i < rs->nheaders; i++)
		MHD_add_response_header(r, rs->headers[i].name, rs->headers[i].value);
	ret = MHD_queue_response(conn, (unsigned)rs->status, r);
	MHD_destroy_response(r);
	rq->responded = true;
	track_replying(conn);
	return ret;
}

static enum MHD_Result
send_error(struct MHD_Connection *conn, struct http_req *rq, enum am_err code, const char *detail)
{
	struct http_resp rs = {0};
	struct am_error e = {0};
	enum MHD_Result ret;

	am_fail(&e, code, "%s", detail);
	render_error(&rs, code, &e);
	ret = send_resp(conn, rq, &rs);
	resp_clear(&rs);
	return ret;
}

static void
client_ip(struct MHD_Connection *conn, char *out, size_t cap)
{
	const union MHD_ConnectionInfo *ci =
		MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	const struct sockaddr *sa = ci != NULL ? ci->client_addr : NULL;

	out[0] = '\0';
	if (sa == NULL)
		return;
	if (sa->sa_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, out,
			  (socklen_t)cap);
	else if (sa->sa_family == AF_INET6)
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr,
			  out, (socklen_t)cap);
}

enum { PARK_NONE, PARK_PARKING, PARK_WAITING, PARK_DONE, PARK_RESUMED, PARK_FINISHED };

/* Turns a handler's error code into the reply, with Retry-After where the
 * error carries one. */
static void
render_result(struct http_req *rq, struct http_resp *rs, enum am_err rc, struct am_error *e)
{
	if (rc == AM_OK)
		return;
	if ((rc == AM_E_RATE_LIMITED || rc == AM_E_UNAVAILABLE) && e->retry_after > 0) {
		char secs[24];

		snprintf(secs, sizeof(secs), "%ld", e->retry_after);
		http_add_header(rs, "Retry-After", secs);
	}
	if (rc == AM_E_INTERNAL || rc == AM_E_UNAVAILABLE)
		log_error("request failed path=%s code=%s detail=\"%s\"", rq->path, am_err_name(rc),
			  e->detail);
	render_error(rs, rc, e);
}

static enum MHD_Result
reply(struct MHD_Connection *conn, struct http_req *rq, struct http_resp *rs)
{
	enum MHD_Result ret;

	char status[8];
	const char *route = rq->route != NULL ? rq->route : "unmatched";

	if (am_log_requests())
		log_info("http method=%s path=%s status=%d ip=%s", rq->method, rq->path,
			 rs->status, rq->ip);
	ret = send_resp(conn, rq, rs);
	/* gate: metrics, labelled by route pattern (bounded), never by raw path */
	status[0] = (char)('0' + rs->status / 100 % 10); /* statuses are 100-599 */
	status[1] = (char)('0' + rs->status / 10 % 10);
	status[2] = (char)('0' + rs->status % 10);
	status[3] = '\0';
	am_metrics_inc(AM_M_HTTP_REQUESTS, route, status);
	am_metrics_observe(AM_M_HTTP_DURATION, route, am_metrics_now() - rq->started);
	resp_clear(rs);
	return ret;
}

void
http_park(struct http_req *rq,
	  enum am_err (*finish)(void *app, struct http_req *rq, struct http_resp *rs,
				struct am_error *e),
	  void *ctx, void (*ctx_free)(void *ctx))
{
	struct http_server *srv = rq->srv;

	assert(rq->finish == NULL && finish != NULL);
	rq->finish = finish;
	rq->park_ctx = ctx;
	rq->park_free = ctx_free;
	/* The wait may have ended already (http_resume made it PARK_DONE). */
	pthread_mutex_lock(&srv->park_mu);
	if (rq->park_state == PARK_NONE)
		rq->park_state = PARK_PARKING;
	pthread_mutex_unlock(&srv->park_mu);
}

/* The handler parked rq: suspend its connection, unless the wait already
 * ended while the handler was returning, then resume it at once. */
static enum MHD_Result
park(struct http_server *srv, struct MHD_Connection *conn, struct http_req *rq)
{
	bool now;

	MHD_suspend_connection(conn);
	pthread_mutex_lock(&srv->park_mu);
	now = rq->park_state == PARK_DONE;
	rq->park_state = now ? PARK_RESUMED : PARK_WAITING;
	pthread_mutex_unlock(&srv->park_mu);
	if (now)
		MHD_resume_connection(conn);
	return MHD_YES;
}

void
http_resume(struct http_req *rq)
{
	struct http_server *srv = rq->srv;
	struct MHD_Connection *conn = rq->conn;
	bool now;

	pthread_mutex_lock(&srv->park_mu);
	now = rq->park_state == PARK_WAITING;
	rq->park_state = now ? PARK_RESUMED : PARK_DONE;
	pthread_mutex_unlock(&srv->park_mu);
	/* rq may be finished and freed by a worker as soon as the connection
	 * is resumed: it is not touched after this. */
	if (now)
		MHD_resume_connection(conn);
}

static enum MHD_Result
dispatch(struct http_server *srv, struct MHD_Connection *conn, struct http_req *rq)
{
	const struct http_route *hit = NULL;
	bool path_known = false;
	struct http_resp rs = {0};
	struct am_error e = {0};
	enum am_err rc;
	char allow[64] = "";

	for (size_t i = 0; i < srv->nroutes; i++) {
		const struct http_route *r = &srv->routes[i];
		bool match = r->match == HTTP_EXACT
				     ? strcmp(rq->path, r->path) == 0
				     : strncmp(rq->path, r->path, strlen(r->path)) == 0;

		if (!match)
			continue;
		path_known = true;
		if (strcmp(rq->method, r->method) == 0 || strcmp(r->method, "*") == 0 ||
		    (strcmp(rq->method, "HEAD") == 0 && strcmp(r->method, "GET") == 0)) {
			hit = r;
			rq->route = r->path;
			break;
		}
		if (strlen(allow) + strlen(r->method) + 3 < sizeof(allow)) {
			if (allow[0] != '\0')
				strcat(allow, ", ");
			strcat(allow, r->method);
		}
	}
	if (hit == NULL && !path_known) {
		am_fail(&e, AM_E_NOT_FOUND, "no such resource");
		render_error(&rs, AM_E_NOT_FOUND, &e);
	} else if (hit == NULL) {
		http_add_header(&rs, "Allow", allow);
		am_fail(&e, AM_E_METHOD_NOT_ALLOWED, "use %s on this resource", allow);
		render_error(&rs, AM_E_METHOD_NOT_ALLOWED, &e);
	} else {
		rc = hit->handler(srv->app, rq, &rs, &e);
		if (rc == AM_OK && rq->finish != NULL && !rq->responded) {
			struct http_resp *keep = malloc(sizeof(*keep));

			/* Headers set around the handler (CORS) belong to the
			 * answer that finish renders; anything else is dropped. */
			if (keep != NULL) {
				*keep = rs;
				if (keep->body != NULL)
					OPENSSL_cleanse(keep->body, keep->len);
				free(keep->body);
				keep->body = NULL;
				keep->len = 0;
				rq->park_resp = keep;
			} else {
				resp_clear(&rs);
			}
			return park(srv, conn, rq);
		}
		render_result(rq, &rs, rc, &e);
	}
	return reply(conn, rq, &rs);
}

/* The answer of a resumed request: its handler's second half. */
static enum MHD_Result
finish_parked(struct http_server *srv, struct MHD_Connection *conn, struct http_req *rq)
{
	struct http_resp rs = {0};
	struct am_error e = {0};
	enum am_err rc;

	rq->park_state = PARK_FINISHED;
	if (rq->park_resp != NULL) {
		rs = *(struct http_resp *)rq->park_resp;
		free(rq->park_resp);
		rq->park_resp = NULL;
	}
	rc = rq->finish(srv->app, rq, &rs, &e);
	render_result(rq, &rs, rc, &e);
	return reply(conn, rq, &rs);
}

static enum MHD_Result
on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
	   const char *version, const char *upload_data, size_t *upload_data_size, void **con_cls)
{
	struct http_server *srv = cls;
	struct http_req *rq = *con_cls;
	enum MHD_Result ret;

	(void)version;
	if (rq == NULL) {
		const char *cl;

		rq = calloc(1, sizeof(*rq));
		if (rq == NULL)
			return MHD_NO;
		rq->conn = conn;
		rq->srv = srv;
		rq->started = am_metrics_now(); /* gate: the latency histogram */
		rq->method = method;
		rq->path = url;
		{
			const struct conn_track *ct = track_of(conn);

			if (ct != NULL && ct->peer[0] != '\0')
				memcpy(rq->peer, ct->peer, sizeof(rq->peer));
			else
				client_ip(conn, rq->peer, sizeof(rq->peer));
		}
		http_proxy_client_ip(&srv->trusted, srv->forwarded_rfc7239, rq); /* gate */
		{
			char id[17];

			am_request_id(id); /* per-thread counter: no CSPRNG per request */
			(void)am_copy(rq->id, sizeof(rq->id), id);
		}
		*con_cls = rq;
		am_log_set_request(rq->id);
		track_headers_done(srv, conn);
		cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
						 MHD_HTTP_HEADER_CONTENT_LENGTH);
		if (strlen(url) > AM_MAX_URL_BYTES)
			return send_error(conn, rq, AM_E_INVALID_REQUEST, "the URL is too long");
		if (cl != NULL && strtoull(cl, NULL, 10) > srv->max_body) {
			const char *expect = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
									 MHD_HTTP_HEADER_EXPECT);

			rq->too_large = true;
			/* A client waiting for 100-continue sends nothing more, and
			 * one announcing more than we would drain is not worth
			 * reading: both are answered now and the connection closed.
			 * Any other is read to the end and answered there, because
			 * a client that writes its whole body before reading would
			 * otherwise meet a reset and never see the 413. */
			if ((expect != NULL && strcasecmp(expect, "100-continue") == 0) ||
			    strtoull(cl, NULL, 10) > AM_MAX_DRAIN_BYTES)
				return send_error(conn, rq, AM_E_PAYLOAD_TOO_LARGE,
						  "the request body is over the size limit");
		}
		return MHD_YES;
	}
	am_log_set_request(rq->id);
	if (rq->park_state == PARK_RESUMED) {
		ret = finish_parked(srv, conn, rq);
		am_log_set_request(NULL);
		return ret;
	}
	if (rq->finish != NULL)
		return MHD_YES; /* parked: nothing to do until it is resumed */
	if (*upload_data_size > 0) {
		/* libmicrohttpd 0.9.75 cannot queue a reply while the body is
		 * still arriving, so an over-limit body is read and dropped, and
		 * answered 413 at its end (within the request deadline). Past
		 * AM_MAX_DRAIN_BYTES the client is not worth waiting for and the
		 * connection is closed. */
		size_t n = *upload_data_size;

		*upload_data_size = 0;
		if (rq->responded)
			return MHD_YES; /* answered at the headers; MHD closes */
		if (rq->too_large) {
			rq->discarded += n;
			return rq->discarded > AM_MAX_DRAIN_BYTES ? MHD_NO : MHD_YES;
		}
		if (rq->body.len + n > srv->max_body) {
			rq->too_large = true;
			rq->discarded = rq->body.len + n;
			OPENSSL_cleanse(rq->body.data, rq->body.len);
			am_buf_free(&rq->body);
			return MHD_YES;
		}
		am_buf_add(&rq->body, upload_data, n);
		return MHD_YES;
	}
	/* The request is all here: from now on only the server is working,
	 * and the deadlines, which bound the client, no longer apply. */
	track_replying(conn);
	if (rq->too_large && !rq->responded)
		return send_error(conn, rq, AM_E_PAYLOAD_TOO_LARGE,
				  "the request body is over the size limit");
	if (rq->responded)
		return MHD_YES;
	ret = dispatch(srv, conn, rq);
	am_log_set_request(NULL);
	return ret;
}

static void
on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
	     enum MHD_RequestTerminationCode toe)
{
	struct http_req *rq = *con_cls;

	(void)toe;
	track_next_request(cls, conn);
	if (rq == NULL)
		return;
	if (rq->body.data != NULL)
		OPENSSL_cleanse(rq->body.data, rq->body.len); /* bodies carry tokens and OTPs */
	am_buf_free(&rq->body);
	if (rq->park_free != NULL)
		rq->park_free(rq->park_ctx);
	if (rq->park_resp != NULL) { /* parked, never finished */
		resp_clear(rq->park_resp);
		free(rq->park_resp);
	}
	free(rq);
	*con_cls = NULL;
	am_log_set_request(NULL);
}

static void
mhd_log(void *cls, const char *fmt, va_list ap)
{
	struct http_server *srv = cls;
	struct warn_kind *k = NULL;
	char line[512];

	vsnprintf(line, sizeof(line), fmt, ap);
	line[strcspn(line, "\n")] = '\0';
	/* A flood of refused or dropped connections must not flood the log:
	 * the first of each kind per interval is written, the rest counted. */
	pthread_mutex_lock(&srv->log_mu);
	for (size_t i = 0; i < srv->nwarn; i++) {
		if (srv->warn[i].fmt == fmt) {
			k = &srv->warn[i];
			break;
		}
	}
	if (k != NULL || srv->nwarn == WARN_KINDS) {
		if (k != NULL)
			k->more++;
		else
			srv->warn_other++;
		pthread_mutex_unlock(&srv->log_mu);
		return;
	}
	k = &srv->warn[srv->nwarn++];
	k->fmt = fmt;
	k->more = 0;
	snprintf(k->first, sizeof(k->first), "%.199s", line);
	pthread_mutex_unlock(&srv->log_mu);
	log_warn("mhd: %s", line);
}

/* Raises the open-file soft limit to the hard one and returns how many
 * connections fit beside the descriptors the rest of the process needs. */
static unsigned
connection_cap(unsigned want, unsigned threads)
{
	struct rlimit rl;
	unsigned long long soft, reserve = AM_CONN_FD_RESERVE + 8ULL * threads, fit;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return want != 0 ? want : 1024;
	if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < rl.rlim_max) {
		rlim_t was = rl.rlim_cur;

		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) == 0)
			log_info("open-file limit raised from %llu to %llu",
				 (unsigned long long)was, (unsigned long long)rl.rlim_cur);
		else
			rl.rlim_cur = was;
	}
	soft = rl.rlim_cur == RLIM_INFINITY ? 1000000ULL : (unsigned long long)rl.rlim_cur;
	fit = soft > reserve + 16 ? soft - reserve : 16;
	if (fit > 1000000ULL)
		fit = 1000000ULL;
	if (want == 0)
		return fit < AM_MAX_CONNECTIONS_AUTO ? (unsigned)fit : AM_MAX_CONNECTIONS_AUTO;
	if (want > fit) {
		log_warn("max_connections=%u does not fit the open-file limit %llu; using %llu",
			 want, soft, fit);
		return (unsigned)fit;
	}
	return want;
}

static void
server_free(struct http_server *srv)
{
	for (size_t i = 0; i < IP_BUCKETS; i++) {
		while (srv->ips[i] != NULL) {
			struct ip_count *c = srv->ips[i];

			srv->ips[i] = c->next;
			free(c);
		}
	}
	pthread_mutex_destroy(&srv->mu);
	pthread_mutex_destroy(&srv->log_mu);
	pthread_mutex_destroy(&srv->park_mu);
	pthread_mutex_destroy(&srv->stop_mu);
	pthread_cond_destroy(&srv->stop_cv);
	free(srv);
}

static unsigned
or_default(unsigned v, unsigned def)
{
	return v != 0 ? v : def;
}

enum am_err
http_server_start(const struct http_options *opt, const struct http_route *routes, size_t nroutes,
		  void *app, struct http_server **out, struct am_error *e)
{
	struct http_server *srv = calloc(1, sizeof(*srv));
	struct sockaddr_storage ss = {0};
	/* poll(), not epoll: with an epoll thread pool libmicrohttpd 0.9.75's
	 * MHD_quiesce_daemon removes the listening socket from each worker's
	 * epoll set while the worker may be removing it too, and the loser
	 * aborts ("Failed to remove listen FD from epoll set"). With poll() the
	 * quiesce only wakes each worker through its ITC, which then leaves the
	 * socket out of the set it rebuilds each turn. */
	unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL | MHD_USE_ITC |
			 MHD_USE_ERROR_LOG | MHD_ALLOW_SUSPEND_RESUME;
	unsigned header_s, request_s, idle_s, per_ip, max_conns;
	pthread_condattr_t ca;

	if (srv == NULL)
		return am_fail(e, AM_E_INTERNAL, "out of memory");
	pthread_mutex_init(&srv->mu, NULL);
	pthread_mutex_init(&srv->log_mu, NULL);
	pthread_mutex_init(&srv->park_mu, NULL);
	pthread_mutex_init(&srv->stop_mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&srv->stop_cv, &ca);
	pthread_condattr_destroy(&ca);
	if (inet_pton(AF_INET, opt->host, &((struct sockaddr_in *)(void *)&ss)->sin_addr) == 1) {
		struct sockaddr_in *sin = (struct sockaddr_in *)(void *)&ss;

		sin->sin_family = AF_INET;
		sin->sin_port = htons(opt->port);
	} else if (inet_pton(AF_INET6, opt->host,
			     &((struct sockaddr_in6 *)(void *)&ss)->sin6_addr) == 1) {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)(void *)&ss;

		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(opt->port);
		flags |= MHD_USE_IPv6;
	} else {
		server_free(srv);
		return am_fail(e, AM_E_INVALID_REQUEST, "listen host must be a numeric IP address");
	}
	srv->routes = routes;
	srv->nroutes = nroutes;
	srv->app = app;
	srv->max_body = opt->max_body;
	header_s = or_default(opt->header_timeout_s, AM_HEADER_TIMEOUT_S);
	request_s = or_default(opt->request_timeout_s, AM_REQUEST_TIMEOUT_S);
	if (request_s < header_s)
		request_s = header_s; /* the headers are part of the request */
	idle_s = or_default(opt->idle_timeout_s, AM_IDLE_TIMEOUT_S);
	per_ip = or_default(opt->per_ip_connections, AM_CONN_PER_IP);
	srv->per_ip = per_ip; /* counted here (on_connection), so trusted proxies are exempt */
	srv->header_ms = (int64_t)header_s * 1000;
	srv->request_ms = (int64_t)request_s * 1000;
	srv->log_interval_s = or_default(opt->log_interval_s, 60);
	max_conns = connection_cap(opt->max_connections, opt->threads);
	if (max_conns < opt->threads)
		max_conns = opt->threads; /* the pool splits the cap among its threads */
	srv->forwarded_rfc7239 = opt->forwarded_rfc7239;
	if (opt->trusted_proxies != NULL) { /* gate: validated by the config already */
		char why[128];

		if (am_cidr_parse(opt->trusted_proxies, &srv->trusted, why, sizeof(why)) != 0) {
			server_free(srv);
			return am_fail(e, AM_E_INVALID_REQUEST, "trusted_proxies: %s", why);
		}
	}
	srv->daemon = MHD_start_daemon(
		flags, opt->port, NULL, NULL, on_request, srv, MHD_OPTION_EXTERNAL_LOGGER, mhd_log,
		srv, MHD_OPTION_SOCK_ADDR, &ss, MHD_OPTION_THREAD_POOL_SIZE, (unsigned)opt->threads,
		MHD_OPTION_CONNECTION_TIMEOUT, idle_s, MHD_OPTION_CONNECTION_LIMIT, max_conns,
		MHD_OPTION_CONNECTION_MEMORY_LIMIT,
		opt->connection_memory != 0 ? opt->connection_memory : (size_t)AM_CONN_MEMORY_BYTES,
		MHD_OPTION_NOTIFY_CONNECTION, on_connection, srv, MHD_OPTION_NOTIFY_COMPLETED,
		on_completed, srv, MHD_OPTION_END);
	if (srv->daemon == NULL) {
		server_free(srv);
		return am_fail(e, AM_E_UNAVAILABLE, "cannot listen on %s:%u", opt->host,
			       (unsigned)opt->port);
	}
	if (pthread_create(&srv->reaper, NULL, reaper_loop, srv) != 0) {
		MHD_stop_daemon(srv->daemon);
		server_free(srv);
		return am_fail(e, AM_E_INTERNAL, "cannot start the connection reaper");
	}
	srv->reaper_started = true;
	log_info("http connections max=%u per_ip=%u header_timeout=%us request_timeout=%us "
		 "idle_timeout=%us",
		 max_conns, per_ip, header_s, request_s, idle_s);
	*out = srv;
	return AM_OK;
}

void
http_server_quiesce(struct http_server *srv)
{
	if (srv == NULL || srv->quiesced)
		return;
	(void)MHD_quiesce_daemon(srv->daemon);
	srv->quiesced = true;
}

void
http_server_stop(struct http_server *srv)
{
	if (srv == NULL)
		return;
	/* Stop accepting first; MHD_stop_daemon then joins the workers, each
	 * finishing the request it is in. The reaper goes first so that no
	 * socket is shut down while the daemon tears its connections down. */
	http_server_quiesce(srv);
	if (srv->reaper_started) {
		pthread_mutex_lock(&srv->stop_mu);
		srv->stopping = true;
		pthread_cond_signal(&srv->stop_cv);
		pthread_mutex_unlock(&srv->stop_mu);
		pthread_join(srv->reaper, NULL);
	}
	MHD_stop_daemon(srv->daemon);
	log_summaries(srv, srv->log_interval_s);
	server_free(srv);
}
