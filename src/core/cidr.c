#include "core/cidr.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "core/str.h"

/* addr in network order into out (16 bytes); 4 or 16 for its length, 0 when
 * it is not a numeric address. IPv4-mapped IPv6 becomes IPv4. */
static int
parse_addr(const char *s, uint8_t out[16])
{
	static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

	if (inet_pton(AF_INET, s, out) == 1)
		return 4;
	if (inet_pton(AF_INET6, s, out) == 1) {
		if (memcmp(out, mapped, sizeof(mapped)) == 0) {
			memmove(out, out + 12, 4);
			return 4;
		}
		return 16;
	}
	return 0;
}

static bool
prefix_equal(const uint8_t *a, const uint8_t *b, unsigned bits)
{
	unsigned whole = bits / 8, rest = bits % 8;

	if (memcmp(a, b, whole) != 0)
		return false;
	if (rest == 0)
		return true;
	return ((a[whole] ^ b[whole]) & (uint8_t)(0xff << (8 - rest))) == 0;
}

int
am_cidr_parse(const char *text, struct am_cidr_list *out, char *err, size_t errcap)
{
	char copy[1024], *save = NULL;

	memset(out, 0, sizeof(*out));
	if (!am_copy(copy, sizeof(copy), text)) {
		snprintf(err, errcap, "the list is too long");
		return -1;
	}
	for (char *w = strtok_r(copy, " ,", &save); w != NULL; w = strtok_r(NULL, " ,", &save)) {
		struct am_cidr *c;
		char *slash = strchr(w, '/');
		uint8_t zero[16] = {0}, host[16];
		int len;
		int64_t bits;

		if (out->n == AM_MAX_CIDRS) {
			snprintf(err, errcap, "at most %d networks", AM_MAX_CIDRS);
			return -1;
		}
		c = &out->net[out->n];
		if (slash != NULL)
			*slash = '\0';
		if ((len = parse_addr(w, c->addr)) == 0) {
			snprintf(err, errcap, "%.64s is not a numeric IP address", w);
			return -1;
		}
		c->family = len == 4 ? AF_INET : AF_INET6;
		bits = len * 8;
		if (slash != NULL && am_parse_i64(slash + 1, 0, len * 8, &bits) != 0) {
			snprintf(err, errcap, "%.64s/%.8s: the prefix length must be 0 to %d", w,
				 slash + 1, len * 8);
			return -1;
		}
		c->bits = (unsigned)bits;
		/* The bits after the prefix must be zero. */
		memcpy(host, c->addr, 16);
		for (unsigned i = 0; i < (unsigned)len * 8; i++) {
			if (i < c->bits)
				host[i / 8] &= (uint8_t) ~(0x80 >> (i % 8));
		}
		if (memcmp(host, zero, (size_t)len) != 0) {
			snprintf(err, errcap, "%.64s/%u has bits set past the prefix", w, c->bits);
			return -1;
		}
		out->n++;
	}
	return 0;
}

bool
am_cidr_match(const struct am_cidr_list *list, const char *ip)
{
	uint8_t a[16];
	int len;

	if (list == NULL || ip == NULL || (len = parse_addr(ip, a)) == 0)
		return false;
	for (size_t i = 0; i < list->n; i++) {
		const struct am_cidr *c = &list->net[i];

		if ((c->family == AF_INET) != (len == 4))
			continue;
		if (prefix_equal(a, c->addr, c->bits))
			return true;
	}
	return false;
}
