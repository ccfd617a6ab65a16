/* CIDR lists ("127.0.0.1/32 10.0.0.0/8 ::1/128"): parsed once, matched
 * against numeric addresses. Used for trusted proxies, metrics access and
 * the outbound allow list (core/fetch.h). */
#ifndef AM_CIDR_H
#define AM_CIDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/compiler.h"

#define AM_MAX_CIDRS 32

struct am_cidr {
	int family; /* AF_INET or AF_INET6 */
	uint8_t addr[16];
	unsigned bits;
};

struct am_cidr_list {
	struct am_cidr net[AM_MAX_CIDRS];
	size_t n;
};

/* Parses a space-separated list of address/bits (a bare address is /32 or
 * /128). 0, or -1 with the offending word in err; host bits set past the
 * prefix are refused, as they usually mean a typo. */
int am_cidr_parse(const char *text, struct am_cidr_list *out, char *err, size_t errcap) AM_WUR;

/* True when ip (numeric IPv4 or IPv6; an IPv4-mapped IPv6 address counts as
 * its IPv4 form) is inside some net of list. False for anything else. */
bool am_cidr_match(const struct am_cidr_list *list, const char *ip);

#endif
