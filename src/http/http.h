/* The HTTP edge on libmicrohttpd: a worker thread pool, size-capped bodies,
 * a route table, and replies rendered from handler results. Handlers see
 * only struct http_req and struct http_resp, never MHD types. A handler
 * returns AM_OK after filling the response, or an error code which is
 * rendered as {"error": name, "message": detail} with the table's status,
 * keeping any headers the handler set (WWW-Authenticate, Retry-After). */
#ifndef AM_HTTP_H
#define AM_HTTP_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/cidr.h"
#include "core/errors.h"
#include "core/str.h"

struct http_resp;

struct http_req {
	void *conn; /* the MHD connection; http/ only */
	const char *method;
	const char *path; /* without the query */
	char ip[64];	  /* client address (behind trusted proxies: see proxy.c) */
	char peer[64];	  /* the socket's peer address; empty if unknown */
	char id[24];	  /* request id, also in logs and X-Request-Id */
	struct am_buf body;
	bool too_large;
	size_t discarded; /* bytes of an over-limit body dropped */
	bool responded;	  /* a reply was queued before the body ended */
	/* A parked request (http_park); http/ only. */
	void *srv;
	int park_state;
	enum am_err (*finish)(void *app, struct http_req *rq, struct http_resp *rs,
			      struct am_error *e);
	void *park_ctx;
	void (*park_free)(void *ctx);
	void *park_resp; /* the headers set before parking (CORS), for finish */
	/* gate metrics: the matched route's pattern (NULL: none) and the
	 * request's start (am_metrics_now); http/ only */
	const char *route;
	double started;
};

#define HTTP_MAX_HEADERS 12

struct http_resp {
	int status;
	char *body; /* owned */
	size_t len;
	const char *content_type; /* static */
	int nheaders;
	struct {
		const char *name; /* static */
		char *value;	  /* owned */
	} headers[HTTP_MAX_HEADERS];
};

typedef enum am_err (*http_handler)(void *app, struct http_req *rq, struct http_resp *rs,
				    struct am_error *e);

enum http_match { HTTP_EXACT, HTTP_PREFIX };

struct http_route {
	const char *method; /* "*": any method (the gate's forward-auth) */
	const char *path;
	enum http_match match;
	http_handler handler;
};

struct http_server;

/* The connection limits default (when 0) to core/limits.h's AM_* values. */
struct http_options {
	const char *host; /* numeric IPv4 or IPv6 address */
	uint16_t port;
	unsigned threads;
	size_t max_body;
	unsigned max_connections;    /* 0: the open-file limit less a reserve, at most
				      * AM_MAX_CONNECTIONS_AUTO; clamped to that limit */
	unsigned per_ip_connections; /* simultaneous connections from one address */
	size_t connection_memory;    /* bytes per connection (0: AM_CONN_MEMORY_BYTES) */
	unsigned header_timeout_s;   /* request line and headers within this, in total */
	unsigned request_timeout_s;  /* the whole request within this, in total */
	unsigned idle_timeout_s;     /* a connection moving no bytes is closed */
	unsigned log_interval_s;     /* 0: 60; one summary line of closes per interval */
	const char *trusted_proxies; /* CIDR list ([server] trusted_proxies); NULL: none */
	bool forwarded_rfc7239;	     /* read Forwarded, not X-Forwarded-For */
};

/* Starts listening and serving routes with app passed to every handler.
 * Raises the process's open-file soft limit to its hard limit (logged) and
 * sizes the connection cap to it. A connection that has not delivered its
 * request line and headers within header_timeout_s, or its whole request
 * within request_timeout_s, of the request's start is closed even while it
 * trickles bytes (a kept-alive connection's next request starts when the
 * previous one ends); such closes, and libmicrohttpd's warnings, are logged
 * as one summary line per log_interval_s. */
enum am_err http_server_start(const struct http_options *opt, const struct http_route *routes,
			      size_t nroutes, void *app, struct http_server **out,
			      struct am_error *e) AM_WUR;
/* Stops accepting new connections (the listening socket is closed); the
 * open ones are still served. */
void http_server_quiesce(struct http_server *srv);
/* Stops accepting, lets in-flight requests finish, and frees the server.
 * Every parked request must have been resumed before. */
void http_server_stop(struct http_server *srv);

/* Request accessors (borrowed strings, valid during the handler). */
const char *http_header(struct http_req *rq, const char *name);
const char *http_query(struct http_req *rq, const char *name);
/* The value of the request's cookie name (libmicrohttpd parses the Cookie
 * header); NULL when absent. */
const char *http_cookie(struct http_req *rq, const char *name);
/* True when the Content-Type's media type is mime (parameters ignored). */
bool http_content_type_is(struct http_req *rq, const char *mime);
/* The value of an application/x-www-form-urlencoded body field, decoded,
 * into out (cap bytes); false if absent or too long. */
bool http_form_field(struct http_req *rq, const char *name, char *out, size_t cap);

/* Sets rq->ip from rq->peer and, when the peer is in trusted, from the one
 * forwarding header the proxy writes (X-Forwarded-For, or Forwarded when
 * rfc7239), read right to left (proxy.c). */
void http_proxy_client_ip(const struct am_cidr_list *trusted, bool rfc7239, struct http_req *rq);

/* Two-phase handlers: a handler that must wait (for a durable commit)
 * calls http_park and returns AM_OK without a reply. Its connection is
 * suspended and the worker thread serves other connections. When the wait
 * is over, whoever ended it calls http_resume(rq) (any thread, exactly
 * once); then finish runs on a worker, fills rs or returns an error code
 * as a handler does. ctx is kept for finish as rq->park_ctx and released
 * with ctx_free (may be NULL) when the request ends, whatever happened to
 * the connection. A handler parks at most once per request. */
void http_park(struct http_req *rq,
	       enum am_err (*finish)(void *app, struct http_req *rq, struct http_resp *rs,
				     struct am_error *e),
	       void *ctx, void (*ctx_free)(void *ctx));
void http_resume(struct http_req *rq);

/* Response builders. json is stolen; text is copied. */
void http_reply_json(struct http_resp *rs, int status, json_t *json);
/* A JSON answer already written (am_jw_*): the text is taken from b, which
 * is left empty. b should be secret when the text may hold a credential. */
void http_reply_json_buf(struct http_resp *rs, int status, struct am_buf *b);
void http_reply_text(struct http_resp *rs, int status, const char *content_type, const char *text,
		     size_t len);
/* Adds a header (name must be static; value is copied). */
void http_add_header(struct http_resp *rs, const char *name, const char *value);

#endif
