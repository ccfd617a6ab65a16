#include "core/url.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/limits.h"
#include "core/str.h"

/* One part of h into out; false when absent or too long. */
static bool
part(CURLU *h, CURLUPart what, unsigned flags, char *out, size_t cap)
{
	char *v = NULL;
	bool ok;

	if (curl_url_get(h, what, &v, flags) != CURLUE_OK || v == NULL)
		return false;
	ok = am_copy(out, cap, v);
	curl_free(v);
	return ok;
}

static bool
present(CURLU *h, CURLUPart what)
{
	char *v = NULL;
	bool yes = curl_url_get(h, what, &v, 0) == CURLUE_OK && v != NULL;

	curl_free(v);
	return yes;
}

/* Bytes we never accept in a URL: controls, space, DEL and non-ASCII, and
 * the characters that would break out of JSON, HTML or a header. */
static bool
printable(const char *text)
{
	for (const char *p = text; *p != '\0'; p++) {
		unsigned char c = (unsigned char)*p;

		if (c <= 0x20 || c >= 0x7f || strchr("\"<>\\`", c) != NULL)
			return false;
	}
	return true;
}

bool
am_url_parse(const char *text, struct am_url *out)
{
	struct am_url u;
	char port[8], host[sizeof(u.host) + 2];
	CURLU *h;
	bool ok = false;
	size_t n;

	if (text == NULL || strlen(text) > AM_MAX_URL_BYTES || !printable(text))
		return false;
	/* libcurl is lenient with the slashes ("http:/h", "http:///h"); an
	 * absolute URL has exactly "scheme://" and then the authority. */
	n = strcspn(text, ":/?#");
	if (strncmp(text + n, "://", 3) != 0 || text[n + 3] == '/' || text[n + 3] == '\\')
		return false;
	if ((h = curl_url()) == NULL)
		return false;
	memset(&u, 0, sizeof(u));
	if (curl_url_set(h, CURLUPART_URL, text, 0) != CURLUE_OK ||
	    !part(h, CURLUPART_SCHEME, 0, u.scheme, sizeof(u.scheme)) ||
	    (strcmp(u.scheme, "http") != 0 && strcmp(u.scheme, "https") != 0) ||
	    !part(h, CURLUPART_HOST, 0, host, sizeof(host)) || host[0] == '\0' ||
	    present(h, CURLUPART_ZONEID) ||
	    !part(h, CURLUPART_PORT, CURLU_DEFAULT_PORT, port, sizeof(port)) ||
	    !part(h, CURLUPART_PATH, 0, u.path, sizeof(u.path)))
		goto out;
	/* An IPv6 literal comes back in brackets: keep the address alone. */
	n = strlen(host);
	if (host[0] == '[') {
		if (n < 3 || host[n - 1] != ']')
			goto out;
		host[n - 1] = '\0';
		memmove(host, host + 1, n - 1);
		u.ipv6 = true;
	}
	/* A percent-encoded host is not one we publish or connect to. */
	if (strchr(host, '%') != NULL || !am_copy(u.host, sizeof(u.host), host))
		goto out;
	for (char *p = u.host; *p != '\0'; p++)
		*p = (char)tolower((unsigned char)*p);
	{
		int64_t p;

		if (am_parse_i64(port, 1, 65535, &p) != 0)
			goto out;
		u.port = (uint16_t)p;
	}
	u.default_port = u.port == (strcmp(u.scheme, "https") == 0 ? 443 : 80);
	if (u.path[0] != '/')
		goto out;
	u.has_query = present(h, CURLUPART_QUERY) || strchr(text, '?') != NULL;
	u.has_fragment = present(h, CURLUPART_FRAGMENT) || strchr(text, '#') != NULL;
	u.has_userinfo = present(h, CURLUPART_USER) || present(h, CURLUPART_PASSWORD);
	*out = u;
	ok = true;
out:
	curl_url_cleanup(h);
	return ok;
}

bool
am_url_origin(const struct am_url *u, char *out, size_t cap)
{
	int n;

	if (u->default_port)
		n = snprintf(out, cap, "%s://%s%s%s", u->scheme, u->ipv6 ? "[" : "", u->host,
			     u->ipv6 ? "]" : "");
	else
		n = snprintf(out, cap, "%s://%s%s%s:%u", u->scheme, u->ipv6 ? "[" : "", u->host,
			     u->ipv6 ? "]" : "", (unsigned)u->port);
	if (n < 0 || (size_t)n >= cap) {
		if (cap > 0)
			out[0] = '\0';
		return false;
	}
	return true;
}

bool
am_url_origin_of(const char *text, char *out, size_t cap)
{
	struct am_url u;

	return am_url_parse(text, &u) && am_url_origin(&u, out, cap);
}

bool
am_url_same_origin(const struct am_url *a, const struct am_url *b)
{
	return strcmp(a->scheme, b->scheme) == 0 && strcmp(a->host, b->host) == 0 &&
	       a->port == b->port;
}

bool
am_url_texts_same_origin(const char *a, const char *b)
{
	struct am_url ua, ub;

	return am_url_parse(a, &ua) && am_url_parse(b, &ub) && am_url_same_origin(&ua, &ub);
}

bool
am_url_is_loopback(const struct am_url *u)
{
	unsigned char a[16];

	if (!u->ipv6)
		return strcmp(u->host, "localhost") == 0 ||
		       (inet_pton(AF_INET, u->host, a) == 1 && a[0] == 127);
	if (inet_pton(AF_INET6, u->host, a) != 1)
		return false;
	if (memcmp(a, "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\1", 16) == 0)
		return true;
	/* ::ffff:127.0.0.0/104, the v4-mapped loopback block */
	return memcmp(a, "\0\0\0\0\0\0\0\0\0\0\xff\xff", 12) == 0 && a[12] == 127;
}

bool
am_url_text_is_loopback(const char *text)
{
	struct am_url u;

	return am_url_parse(text, &u) && am_url_is_loopback(&u);
}

bool
am_url_is_origin_text(const char *text)
{
	struct am_url u;

	return am_url_parse(text, &u) && !u.has_userinfo && !u.has_query && !u.has_fragment &&
	       strcmp(u.path, "/") == 0;
}

bool
am_url_under(const struct am_url *base, const struct am_url *u)
{
	size_t n = strlen(base->path);

	if (!am_url_same_origin(base, u) || strncmp(u->path, base->path, n) != 0)
		return false;
	/* strncmp matched n bytes, so u->path is at least n long: u->path[n]
	 * is in bounds. */
	return u->path[n] == '\0' || base->path[n - 1] == '/' || u->path[n] == '/';
}

bool
am_url_split(const char *text, char *origin, size_t ocap, const char **rest)
{
	struct am_url u;
	const char *authority;

	if (!am_url_parse(text, &u) || !am_url_origin(&u, origin, ocap))
		return false;
	/* am_url_parse checked that text is "scheme://authority..." and the
	 * authority cannot hold '/', '?' or '#' unescaped, so the rest starts
	 * at the first of them. */
	authority = strstr(text, "://") + 3;
	*rest = authority + strcspn(authority, "/?#");
	return true;
}
