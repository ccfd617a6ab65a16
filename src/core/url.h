/* The one URL parser of the tree, on libcurl's URL API (curl_url). Every
 * check of a URL's scheme, host, port, origin or path goes through here, so
 * that no two places disagree on what "the host" of a URL is: a hand-written
 * prefix test let "http://127.evil.com" and "http://localhost.evil" pass as
 * loopback. Only absolute http and https URLs are accepted. */
#ifndef AM_URL_H
#define AM_URL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/compiler.h"

struct am_url {
	char scheme[8];	   /* "http" or "https" */
	char host[256];	   /* lower-cased; an IPv6 address without brackets */
	bool ipv6;	   /* host is an IPv6 literal */
	uint16_t port;	   /* as written, else the scheme's default */
	bool default_port; /* port is the scheme's default (written or not) */
	char path[1024];   /* at least "/" */
	bool has_query;	   /* a '?' part */
	bool has_fragment; /* a '#' part */
	bool has_userinfo; /* user[:password]@ before the host */
};

/* Parses text as an absolute http(s) URL into *out. False (out untouched)
 * for anything else: another scheme, no host, a bad port, a space or
 * control byte, or a quote, angle bracket, backslash or backtick (URLs we
 * accept are published verbatim in JSON, HTML and headers), longer than
 * AM_MAX_URL_BYTES (core/limits.h), or with a path of 1024 bytes or more. */
bool am_url_parse(const char *text, struct am_url *out) AM_WUR;

/* The origin "scheme://host[:port]" (port only when not the default, IPv6
 * in brackets) into out; false when it does not fit in cap. */
bool am_url_origin(const struct am_url *u, char *out, size_t cap) AM_WUR;

/* The origin of text (as am_url_origin); false when text does not parse. */
bool am_url_origin_of(const char *text, char *out, size_t cap) AM_WUR;

/* True when a and b have the same scheme, host and port (RFC 6454). */
bool am_url_same_origin(const struct am_url *a, const struct am_url *b);

/* True when the two texts parse and have the same origin. */
bool am_url_texts_same_origin(const char *a, const char *b);

/* True when u's host is on loopback by its parsed value: an IPv4 address in
 * 127.0.0.0/8, ::1 (or ::ffff:127.x.y.z), or exactly "localhost". */
bool am_url_is_loopback(const struct am_url *u);

/* True when text parses and am_url_is_loopback holds. */
bool am_url_text_is_loopback(const char *text);

/* True when text is an origin: it parses, and has no userinfo, no path
 * beyond "/", no query and no fragment. */
bool am_url_is_origin_text(const char *text);

/* True when u is at or under base: the same origin, and u's path equals
 * base's path or continues it past a '/' boundary ("/api" covers "/api",
 * "/api/" and "/api/x", never "/apix"; "/api/" covers "/api/x" but not
 * "/api"). Query and fragment are ignored. */
bool am_url_under(const struct am_url *base, const struct am_url *u);

/* Splits an absolute http(s) URL into its origin (as am_url_origin) and
 * the rest of the text as written: path, query and fragment, "" when there
 * is none. *rest points into text. False when text does not parse or the
 * origin does not fit in ocap. */
bool am_url_split(const char *text, char *origin, size_t ocap, const char **rest) AM_WUR;

#endif
