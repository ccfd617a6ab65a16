/* The client address behind trusted reverse proxies. Only when the socket's
 * peer is in [server] trusted_proxies is X-Forwarded-For (or, if so
 * configured, RFC 7239 Forwarded) read, and then right to left: each hop that is itself a
 * trusted proxy is skipped, and the first one that is not is the client.
 * Anything left of that hop was written by the client and is ignored, so a
 * client cannot choose the address its rate limits count against. */
#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "core/limits.h"
#include "core/str.h"
#include "http/http.h"

#define MAX_HOPS 32

struct gather {
	const char *name;
	char buf[AM_MAX_FORWARDED_BYTES + 1];
	size_t len;
	bool overflow;
};

/* Every header of that name, in order, joined by commas (RFC 9110 5.3). */
static enum MHD_Result
gather_one(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
	struct gather *g = cls;
	size_t vl = strlen(value);

	(void)kind;
	if (strcasecmp(key, g->name) != 0)
		return MHD_YES;
	if (g->len + vl + 1 > AM_MAX_FORWARDED_BYTES) {
		g->overflow = true;
		return MHD_NO;
	}
	if (g->len > 0)
		g->buf[g->len++] = ',';
	memcpy(g->buf + g->len, value, vl);
	g->len += vl;
	g->buf[g->len] = '\0';
	return MHD_YES;
}

static bool
gather(struct http_req *rq, const char *name, struct gather *g)
{
	memset(g, 0, sizeof(*g));
	g->name = name;
	(void)MHD_get_connection_values(rq->conn, MHD_HEADER_KIND, gather_one, g);
	return g->len > 0;
}

static char *
trim(char *s)
{
	char *end;

	while (*s == ' ' || *s == '\t')
		s++;
	end = s + strlen(s);
	while (end > s && (end[-1] == ' ' || end[-1] == '\t'))
		*--end = '\0';
	return s;
}

/* A node as written in either header: "1.2.3.4", "1.2.3.4:80",
 * "[2001:db8::1]:80", "2001:db8::1", quoted or not. Into out as a bare
 * address; false when it is not one ("unknown", "_hidden", garbage). */
static bool
node_addr(char *v, char *out, size_t cap)
{
	unsigned char bin[sizeof(struct in6_addr)];
	size_t n;

	v = trim(v);
	n = strlen(v);
	if (n >= 2 && v[0] == '"' && v[n - 1] == '"') {
		v[n - 1] = '\0';
		v++;
	}
	if (v[0] == '[') {
		char *close = strchr(v, ']');

		if (close == NULL)
			return false;
		*close = '\0';
		v++;
	} else if (strchr(v, '.') != NULL && strchr(v, ':') != NULL) {
		*strchr(v, ':') = '\0'; /* IPv4 with a port */
	}
	if (!am_copy(out, cap, v))
		return false;
	return inet_pton(AF_INET, out, bin) == 1 || inet_pton(AF_INET6, out, bin) == 1;
}

/* The for= value of one Forwarded element, or NULL. */
static char *
forwarded_for(char *element)
{
	char *save = NULL;

	for (char *pair = strtok_r(element, ";", &save); pair != NULL;
	     pair = strtok_r(NULL, ";", &save)) {
		pair = trim(pair);
		if (strncasecmp(pair, "for=", 4) == 0)
			return pair + 4;
	}
	return NULL;
}

void
http_proxy_client_ip(const struct am_cidr_list *trusted, bool rfc7239, struct http_req *rq)
{
	struct gather g;
	char *hops[MAX_HOPS], *save = NULL;
	size_t n = 0;

	snprintf(rq->ip, sizeof(rq->ip), "%s", rq->peer);
	if (trusted == NULL || trusted->n == 0 || !am_cidr_match(trusted, rq->peer))
		return;
	/* Only the header the proxy writes: it passes the other one on from the
	 * client untouched, so reading both would let the client choose. */
	if (!gather(rq, rfc7239 ? "Forwarded" : "X-Forwarded-For", &g))
		return;
	if (g.overflow)
		return; /* too long to trust any of it: the proxy's own address */
	for (char *t = strtok_r(g.buf, ",", &save); t != NULL; t = strtok_r(NULL, ",", &save)) {
		if (n == MAX_HOPS)
			memmove(hops, hops + 1, (--n) * sizeof(hops[0])); /* keep the rightmost */
		hops[n++] = t;
	}
	/* Right to left; stop at the first hop we do not trust (the client) or at
	 * one we cannot read (nothing left of it can be believed). */
	while (n > 0) {
		char addr[64], *v = hops[--n];

		if (rfc7239 && (v = forwarded_for(v)) == NULL)
			return;
		if (!node_addr(v, addr, sizeof(addr)))
			return;
		snprintf(rq->ip, sizeof(rq->ip), "%s", addr);
		if (!am_cidr_match(trusted, addr))
			return;
	}
}
