#include "core/fetch.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "core/cidr.h"
#include "core/limits.h"
#include "core/log.h"
#include "core/url.h"

/* ---- the address policy ---- */

struct block {
	uint8_t net[16];
	unsigned bits;
};

static bool
in_block(const uint8_t *addr, const uint8_t *net, unsigned bits)
{
	unsigned whole = bits / 8, rest = bits % 8;

	if (memcmp(addr, net, whole) != 0)
		return false;
	if (rest == 0)
		return true;
	return ((addr[whole] ^ net[whole]) & (uint8_t)(0xff << (8 - rest))) == 0;
}

/* Special-purpose IPv4 blocks (RFC 6890 and later): never a public service. */
static const struct block special4[] = {
	{{0}, 8},	      /* "this network", 0.0.0.0 */
	{{10}, 8},	      /* private */
	{{100, 64}, 10},      /* carrier-grade NAT */
	{{127}, 8},	      /* loopback */
	{{169, 254}, 16},     /* link-local, cloud metadata */
	{{172, 16}, 12},      /* private */
	{{192, 0, 0}, 24},    /* IETF protocol assignments */
	{{192, 0, 2}, 24},    /* documentation */
	{{192, 88, 99}, 24},  /* 6to4 relay anycast */
	{{192, 168}, 16},     /* private */
	{{198, 18}, 15},      /* benchmarking */
	{{198, 51, 100}, 24}, /* documentation */
	{{203, 0, 113}, 24},  /* documentation */
	{{224}, 4},	      /* multicast */
	{{240}, 4},	      /* reserved, broadcast */
};

static const struct block special6[] = {
	{{0xfc}, 7},			/* unique local */
	{{0xfe, 0x80}, 10},		/* link-local */
	{{0xfe, 0xc0}, 10},		/* site-local (deprecated) */
	{{0xff}, 8},			/* multicast */
	{{0x01, 0x00}, 64},		/* discard-only */
	{{0x20, 0x01, 0x0d, 0xb8}, 32}, /* documentation */
};

/* The IPv4 address an IPv6 one carries, for the forms that reach an IPv4
 * host: v4-mapped ::ffff:a.b.c.d, v4-compatible ::a.b.c.d (which covers ::
 * and ::1 as 0.0.0.0 and 0.0.0.1), NAT64 64:ff9b::a.b.c.d and 6to4
 * 2002:AABB:CCDD::. */
static bool
embedded_v4(const uint8_t a[16], uint8_t v4[4])
{
	static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
	static const uint8_t compat[12] = {0};
	static const uint8_t nat64[12] = {0, 0x64, 0xff, 0x9b};

	if (memcmp(a, mapped, 12) == 0 || memcmp(a, compat, 12) == 0 || memcmp(a, nat64, 12) == 0) {
		memcpy(v4, a + 12, 4);
		return true;
	}
	if (a[0] == 0x20 && a[1] == 0x02) {
		memcpy(v4, a + 2, 4);
		return true;
	}
	return false;
}

static bool
special(int family, const uint8_t *a)
{
	uint8_t v4[4];

	if (family == AF_INET) {
		for (size_t i = 0; i < sizeof(special4) / sizeof(special4[0]); i++) {
			if (in_block(a, special4[i].net, special4[i].bits))
				return true;
		}
		return false;
	}
	if (embedded_v4(a, v4))
		return special(AF_INET, v4);
	for (size_t i = 0; i < sizeof(special6) / sizeof(special6[0]); i++) {
		if (in_block(a, special6[i].net, special6[i].bits))
			return true;
	}
	return false;
}

bool
am_fetch_address_allowed(const struct sockaddr *addr, socklen_t len, const char *allow)
{
	struct am_cidr_list list;
	char text[INET6_ADDRSTRLEN], err[128];
	const uint8_t *a;
	int family;

	if (addr->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
		family = AF_INET;
		a = (const uint8_t *)&((const struct sockaddr_in *)(const void *)addr)->sin_addr;
	} else if (addr->sa_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
		family = AF_INET6;
		a = (const uint8_t *)&((const struct sockaddr_in6 *)(const void *)addr)->sin6_addr;
	} else {
		return false; /* a Unix socket or anything else: never */
	}
	if (!special(family, a))
		return true;
	/* The allow list is the one CIDR syntax of the tree (core/cidr.h),
	 * checked at configuration time; a list that no longer parses opens
	 * nothing. A v4-mapped address matches its IPv4 block; the other
	 * v4-embedding forms (NAT64, 6to4, v4-compatible) match only blocks
	 * written in IPv6. */
	if (allow == NULL || am_cidr_parse(allow, &list, err, sizeof(err)) != 0 ||
	    inet_ntop(family, a, text, sizeof(text)) == NULL)
		return false;
	return am_cidr_match(&list, text);
}

int
am_fetch_allow_check(const char *allow, char *err, size_t errcap)
{
	struct am_cidr_list list;

	return am_cidr_parse(allow != NULL ? allow : "", &list, err, errcap);
}

/* ---- the request ---- */

struct ctx {
	const struct am_fetch *f;
	struct am_fetch_result *r;
	size_t seen;
	bool too_big;
	bool refused;
	char refused_addr[INET6_ADDRSTRLEN];
};

static size_t
on_body(char *data, size_t size, size_t nmemb, void *user)
{
	struct ctx *c = user;
	size_t n = size * nmemb;

	if (c->seen + n > c->f->max_bytes) {
		c->too_big = true;
		return 0; /* aborts the transfer */
	}
	c->seen += n;
	if (c->f->keep_body)
		am_buf_add(&c->r->body, data, n);
	return n;
}

/* libcurl asks for every socket it would connect, after resolving: the
 * one place that sees the address really used. */
static curl_socket_t
open_socket(void *user, curlsocktype purpose, struct curl_sockaddr *a)
{
	struct ctx *c = user;
	const void *in = NULL;

	if (purpose == CURLSOCKTYPE_IPCXN &&
	    am_fetch_address_allowed(&a->addr, a->addrlen, c->f->allow))
		return socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
	c->refused = true;
	if (a->family == AF_INET)
		in = &((struct sockaddr_in *)(void *)&a->addr)->sin_addr;
	else if (a->family == AF_INET6)
		in = &((struct sockaddr_in6 *)(void *)&a->addr)->sin6_addr;
	if (in == NULL ||
	    inet_ntop(a->family, in, c->refused_addr, sizeof(c->refused_addr)) == NULL)
		am_copy(c->refused_addr, sizeof(c->refused_addr), "?");
	return CURL_SOCKET_BAD;
}

enum am_err
am_fetch_run(const struct am_fetch *f, struct am_fetch_result *r)
{
	struct ctx c = {f, r, 0, false, false, ""};
	struct curl_slist *h = NULL;
	long timeout = f->timeout_ms > 0 ? f->timeout_ms : AM_FETCH_TIMEOUT_MS;
	struct am_url u;
	CURL *k;
	CURLcode res;

	memset(r, 0, sizeof(*r));
	if (!am_url_parse(f->url, &u) || u.has_userinfo) {
		snprintf(r->why, sizeof(r->why), "not an absolute http(s) URL without userinfo");
		return AM_E_INVALID_REQUEST;
	}
	if ((k = curl_easy_init()) == NULL) {
		snprintf(r->why, sizeof(r->why), "out of memory");
		return AM_E_UNAVAILABLE;
	}
	for (size_t i = 0; f->headers != NULL && f->headers[i] != NULL; i++)
		h = curl_slist_append(h, f->headers[i]);
	curl_easy_setopt(k, CURLOPT_URL, f->url);
	curl_easy_setopt(k, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(k, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(k, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(k, CURLOPT_MAXREDIRS, 0L);
	curl_easy_setopt(k, CURLOPT_PROXY, ""); /* no proxy from the environment */
	curl_easy_setopt(k, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(k, CURLOPT_CONNECTTIMEOUT_MS, timeout);
	curl_easy_setopt(k, CURLOPT_TIMEOUT_MS, timeout);
	curl_easy_setopt(k, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)f->max_bytes);
	curl_easy_setopt(k, CURLOPT_OPENSOCKETFUNCTION, open_socket);
	curl_easy_setopt(k, CURLOPT_OPENSOCKETDATA, &c);
	curl_easy_setopt(k, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(k, CURLOPT_WRITEDATA, &c);
	if (f->on_header != NULL) {
		curl_easy_setopt(k, CURLOPT_HEADERFUNCTION, f->on_header);
		curl_easy_setopt(k, CURLOPT_HEADERDATA, f->header_ctx);
	}
	curl_easy_setopt(k, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(k, CURLOPT_USERAGENT, f->user_agent != NULL ? f->user_agent : "authmd");
	if (f->body != NULL)
		curl_easy_setopt(k, CURLOPT_POSTFIELDS, f->body);
	else if (f->method != NULL && strcmp(f->method, "POST") == 0)
		curl_easy_setopt(k, CURLOPT_POSTFIELDS, "");
	res = curl_easy_perform(k);
	curl_easy_getinfo(k, CURLINFO_RESPONSE_CODE, &r->status);
	curl_easy_cleanup(k);
	curl_slist_free_all(h);
	if (res == CURLE_OK)
		return AM_OK;
	if (c.refused) {
		log_warn("outbound request refused host=%s addr=%s: a special-purpose address not "
			 "in the allowed blocks",
			 u.host, c.refused_addr);
		snprintf(r->why, sizeof(r->why), "connect refused: private address");
	} else if (c.too_big || res == CURLE_FILESIZE_EXCEEDED) {
		r->too_large = true;
		snprintf(r->why, sizeof(r->why), "answer larger than %zu bytes", f->max_bytes);
	} else if (res == CURLE_OPERATION_TIMEDOUT) {
		snprintf(r->why, sizeof(r->why), "timed out");
	} else if (res == CURLE_COULDNT_RESOLVE_HOST) {
		snprintf(r->why, sizeof(r->why), "cannot resolve the host");
	} else if (res == CURLE_COULDNT_CONNECT) {
		snprintf(r->why, sizeof(r->why), "cannot connect");
	} else {
		snprintf(r->why, sizeof(r->why), "%.90s", curl_easy_strerror(res));
	}
	r->status = 0;
	return AM_E_UNAVAILABLE;
}

bool
am_fetch_max_age(const char *data, size_t n, int64_t *max_age)
{
	char line[512];
	char *p;

	if (n >= sizeof(line) || n < 14 || strncasecmp(data, "cache-control:", 14) != 0)
		return false;
	memcpy(line, data, n);
	line[n] = '\0';
	for (p = line; *p != '\0'; p++)
		*p = (char)((*p >= 'A' && *p <= 'Z') ? *p + 32 : *p);
	if (strstr(line, "no-store") != NULL || strstr(line, "no-cache") != NULL)
		*max_age = 0;
	else if ((p = strstr(line, "max-age=")) != NULL)
		*max_age = strtoll(p + 8, NULL, 10);
	else
		return false;
	if (*max_age < 0)
		*max_age = 0;
	return true;
}
