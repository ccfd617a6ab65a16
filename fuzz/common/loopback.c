/* Keeps every fuzz target on loopback: the fuzzer writes URLs the client
 * follows (register_uri, resource_metadata, issuers) and hosts the service
 * might fetch, and no input may ever make a test reach another machine.
 * These definitions in the executable take precedence over libc's for
 * every library (libcurl, MHD): connect() refuses any address outside
 * 127.0.0.0/8 and ::1, and getaddrinfo() resolves only numeric loopback
 * literals, so no name ever reaches a DNS server. */
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

static bool
loopback(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_UNIX)
		return true;
	if (sa->sa_family == AF_INET)
		return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
	if (sa->sa_family == AF_INET6) {
		const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;

		return IN6_IS_ADDR_LOOPBACK(a) ||
		       (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
	}
	return false;
}

int
connect(int fd, const struct sockaddr *sa, socklen_t len)
{
	static int (*real)(int, const struct sockaddr *, socklen_t);

	if (sa == NULL || len < sizeof(sa_family_t) || !loopback(sa)) {
		errno = ENETUNREACH;
		return -1;
	}
	if (real == NULL)
		*(void **)&real = dlsym(RTLD_NEXT, "connect");
	return real(fd, sa, len);
}

int
getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
	    struct addrinfo **res)
{
	static int (*real)(const char *, const char *, const struct addrinfo *, struct addrinfo **);
	struct addrinfo h = {0};
	struct in6_addr a6;
	struct in_addr a4;

	if (node != NULL &&
	    !(inet_pton(AF_INET, node, &a4) == 1 && (ntohl(a4.s_addr) >> 24) == 127) &&
	    !(inet_pton(AF_INET6, node, &a6) == 1 && IN6_IS_ADDR_LOOPBACK(&a6)))
		return EAI_NONAME;
	if (hints != NULL)
		h = *hints;
	h.ai_flags |= AI_NUMERICHOST;
	if (real == NULL)
		*(void **)&real = dlsym(RTLD_NEXT, "getaddrinfo");
	return real(node, service, &h, res);
}
