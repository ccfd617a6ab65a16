#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "core/crypto.h"
#include "core/limits.h"
#include "core/log.h"
#include "core/metrics.h"
#include "http/http.h"

struct http_server {
	struct MHD_Daemon *daemon;
	const struct http_route *routes;
	size_t nroutes;
	void *app;
	size_t max_body;
	struct am_cidr_list trusted; /* gate: proxies whose forwarding headers count */
	bool forwarded_rfc7239;
};

const char *
http_header(struct http_req *rq, const char *name)
{
	return MHD_lookup_connection_value(rq->conn, MHD_HEADER_KIND, name);
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
http_reply_json(struct http_resp *rs, int status, json_t *json)
{
	char *text = json_dumps(json, JSON_COMPACT);

	json_decref(json);
	if (text == NULL) {
		http_reply_text(rs, 500, "application/json",
				"{\"error\":\"server_error\",\"message\":\"internal error\"}", 52);
		return;
	}
	free(rs->body);
	rs->body = text;
	rs->len = strlen(text);
	rs->status = status;
	rs->content_type = "application/json";
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
	struct MHD_Response *r;
	enum MHD_Result ret;

	r = MHD_create_response_from_buffer(rs->len, rs->body, MHD_RESPMEM_MUST_COPY);
	if (r == NULL)
		return MHD_NO;
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
				rs->content_type != NULL ? rs->content_type : "application/json");
	MHD_add_response_header(r, "X-Request-Id", rq->id);
	MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
	for (int i = 0; i < rs->nheaders; i++)
		MHD_add_response_header(r, rs->headers[i].name, rs->headers[i].value);
	ret = MHD_queue_response(conn, (unsigned)rs->status, r);
	MHD_destroy_response(r);
	rq->responded = true;
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

static enum MHD_Result
dispatch(struct http_server *srv, struct MHD_Connection *conn, struct http_req *rq)
{
	const struct http_route *hit = NULL;
	bool path_known = false;
	struct http_resp rs = {0};
	struct am_error e = {0};
	enum am_err rc;
	enum MHD_Result ret;
	char allow[64] = "";
	double started = am_metrics_now(); /* gate: metrics */
	char status[8];

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
		if (rc != AM_OK) {
			if (rc == AM_E_RATE_LIMITED && e.retry_after > 0) {
				char secs[24];

				snprintf(secs, sizeof(secs), "%ld", e.retry_after);
				http_add_header(&rs, "Retry-After", secs);
			}
			if (rc == AM_E_INTERNAL || rc == AM_E_UNAVAILABLE)
				log_error("request failed path=%s code=%s detail=\"%s\"", rq->path,
					  am_err_name(rc), e.detail);
			render_error(&rs, rc, &e);
		}
	}
	log_info("http method=%s path=%s status=%d ip=%s", rq->method, rq->path, rs.status, rq->ip);
	ret = send_resp(conn, rq, &rs);
	/* gate: metrics, labelled by route pattern (bounded), never by raw path */
	snprintf(status, sizeof(status), "%d", rs.status);
	am_metrics_inc(AM_M_HTTP_REQUESTS, hit != NULL ? hit->path : "unmatched", status);
	am_metrics_observe(AM_M_HTTP_DURATION, hit != NULL ? hit->path : "unmatched",
			   am_metrics_now() - started);
	resp_clear(&rs);
	return ret;
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
		struct am_error ignored;

		rq = calloc(1, sizeof(*rq));
		if (rq == NULL)
			return MHD_NO;
		rq->conn = conn;
		rq->method = method;
		rq->path = url;
		client_ip(conn, rq->peer, sizeof(rq->peer));
		http_proxy_client_ip(&srv->trusted, srv->forwarded_rfc7239, rq); /* gate */
		{
			char id[32];

			if (am_rand_id("", id, sizeof(id), &ignored) != AM_OK)
				snprintf(id, sizeof(id), "-");
			id[16] = '\0';
			snprintf(rq->id, sizeof(rq->id), "%.16s", id);
		}
		*con_cls = rq;
		am_log_set_request(rq->id);
		cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
						 MHD_HTTP_HEADER_CONTENT_LENGTH);
		if (strlen(url) > AM_MAX_URL_BYTES)
			return send_error(conn, rq, AM_E_INVALID_REQUEST, "the URL is too long");
		if (cl != NULL && strtoull(cl, NULL, 10) > srv->max_body) {
			rq->too_large = true;
			return send_error(conn, rq, AM_E_PAYLOAD_TOO_LARGE,
					  "the request body is over the size limit");
		}
		return MHD_YES;
	}
	am_log_set_request(rq->id);
	if (*upload_data_size > 0) {
		/* libmicrohttpd 0.9.75 cannot queue a reply while the body is
		 * still arriving, so an over-limit body is read and dropped, and
		 * answered 413 at its end. Past 16 times the limit the client is
		 * not worth waiting for and the connection is closed. */
		size_t n = *upload_data_size;

		*upload_data_size = 0;
		if (rq->too_large) {
			rq->discarded += n;
			return rq->discarded > 16 * srv->max_body ? MHD_NO : MHD_YES;
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

	(void)cls, (void)conn, (void)toe;
	if (rq == NULL)
		return;
	if (rq->body.data != NULL)
		OPENSSL_cleanse(rq->body.data, rq->body.len); /* bodies carry tokens and OTPs */
	am_buf_free(&rq->body);
	free(rq);
	*con_cls = NULL;
	am_log_set_request(NULL);
}

static void
mhd_log(void *cls, const char *fmt, va_list ap)
{
	char line[512];

	(void)cls;
	vsnprintf(line, sizeof(line), fmt, ap);
	line[strcspn(line, "\n")] = '\0';
	log_warn("mhd: %s", line);
}

enum am_err
http_server_start(const struct http_options *opt, const struct http_route *routes, size_t nroutes,
		  void *app, struct http_server **out, struct am_error *e)
{
	struct http_server *srv = calloc(1, sizeof(*srv));
	struct sockaddr_storage ss = {0};
	unsigned flags =
		MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_USE_ITC | MHD_USE_ERROR_LOG;

	if (srv == NULL)
		return am_fail(e, AM_E_INTERNAL, "out of memory");
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
		free(srv);
		return am_fail(e, AM_E_INVALID_REQUEST, "listen host must be a numeric IP address");
	}
	srv->routes = routes;
	srv->nroutes = nroutes;
	srv->app = app;
	srv->max_body = opt->max_body;
	srv->forwarded_rfc7239 = opt->forwarded_rfc7239;
	if (opt->trusted_proxies != NULL) { /* gate: validated by the config already */
		char why[128];

		if (am_cidr_parse(opt->trusted_proxies, &srv->trusted, why, sizeof(why)) != 0) {
			free(srv);
			return am_fail(e, AM_E_INVALID_REQUEST, "trusted_proxies: %s", why);
		}
	}
	srv->daemon = MHD_start_daemon(
		flags, opt->port, NULL, NULL, on_request, srv, MHD_OPTION_EXTERNAL_LOGGER, mhd_log,
		NULL, MHD_OPTION_SOCK_ADDR, &ss, MHD_OPTION_THREAD_POOL_SIZE,
		(unsigned)opt->threads, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)AM_CONN_TIMEOUT_S,
		MHD_OPTION_CONNECTION_LIMIT, (unsigned)AM_MAX_CONNECTIONS,
		MHD_OPTION_NOTIFY_COMPLETED, on_completed, srv, MHD_OPTION_END);
	if (srv->daemon == NULL) {
		free(srv);
		return am_fail(e, AM_E_UNAVAILABLE, "cannot listen on %s:%u", opt->host,
			       (unsigned)opt->port);
	}
	*out = srv;
	return AM_OK;
}

void
http_server_stop(struct http_server *srv)
{
	if (srv == NULL)
		return;
	/* Stop accepting first; MHD_stop_daemon then joins the workers, each
	 * finishing the request it is in. */
	(void)MHD_quiesce_daemon(srv->daemon);
	MHD_stop_daemon(srv->daemon);
	free(srv);
}
