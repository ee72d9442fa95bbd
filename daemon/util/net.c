/*
 * net - addresses, listening and connecting sockets, client networks
 *
 * See net.h. IPv4-mapped IPv6 peers (::ffff:1.2.3.4) are matched against
 * IPv4 networks, so an allow list reads the same whatever the socket family.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/io.h"
#include "util/net.h"

#define NET_LISTEN_BACKLOG	256	/* bursts from the MTA's parallel deliveries */

/*
 * net_parse_endpoint - "host:port" or "[v6]:port" into a socket address
 *
 * A host name is resolved once, here (at config load), so a slow resolver
 * never delays a message. Returns 0, or -1 with *error_r set.
 */
int
net_parse_endpoint(const char *text, struct endpoint *ep, const char **error_r)
{
	static char err[400];
	char host[256];
	const char *port, *colon;
	struct addrinfo hints, *res = NULL;
	size_t hlen;
	int rc;

	if (text[0] == '[') {
		const char *end = strchr(text, ']');

		if (end == NULL || end[1] != ':') {
			*error_r = "expected [address]:port";
			return -1;
		}
		hlen = (size_t)(end - text - 1);
		if (hlen >= sizeof(host)) {
			*error_r = "address too long";
			return -1;
		}
		memcpy(host, text + 1, hlen);
		port = end + 2;
	} else {
		colon = strrchr(text, ':');
		if (colon == NULL || colon == text) {
			*error_r = "expected address:port";
			return -1;
		}
		hlen = (size_t)(colon - text);
		if (hlen >= sizeof(host)) {
			*error_r = "address too long";
			return -1;
		}
		memcpy(host, text, hlen);
		port = colon + 1;
	}
	host[hlen] = '\0';
	if (*port == '\0' || strspn(port, "0123456789") != strlen(port) || atoi(port) <= 0 ||
	    atoi(port) > 65535) {
		*error_r = "port must be a number from 1 to 65535";
		return -1;
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV;
	if ((rc = getaddrinfo(host, port, &hints, &res)) != 0) {
		snprintf(err, sizeof(err), "cannot resolve '%s': %s", host, gai_strerror(rc));
		*error_r = err;
		return -1;
	}
	memcpy(&ep->ss, res->ai_addr, res->ai_addrlen);
	ep->len = res->ai_addrlen;
	freeaddrinfo(res);
	return 0;
}

/* net_set_nonblock - make fd non-blocking and close-on-exec */
int
net_set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return -1;
	return fcntl(fd, F_SETFD, FD_CLOEXEC);
}

/* net_listen - bind and listen; the socket is non-blocking (workers poll it) */
int
net_listen(const struct endpoint *ep)
{
	int fd, one = 1, saved;

	fd = socket(ep->ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -1;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    (ep->ss.ss_family == AF_INET6 &&
	     setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) < 0) ||
	    bind(fd, (const struct sockaddr *)&ep->ss, ep->len) < 0 ||
	    listen(fd, NET_LISTEN_BACKLOG) < 0) {
		saved = errno;
		close(fd);
		errno = saved;
		return -1;
	}
	return fd;
}

/* net_connect - connect within timeout_ms; returns a non-blocking socket or -1 */
int
net_connect(const struct endpoint *ep, int timeout_ms)
{
	int fd, err = 0, rc, one = 1;
	socklen_t len = sizeof(err);

	fd = socket(ep->ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -1;
	/* replies and pipelined command groups are small: send them now */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, (const struct sockaddr *)&ep->ss, ep->len) == 0)
		return fd;
	if (errno != EINPROGRESS)
		goto fail;
	rc = io_wait_fd(fd, POLLOUT, timeout_ms);
	if (rc == 0) {
		errno = ETIMEDOUT;
		goto fail;
	}
	if (rc < 0)
		goto fail;
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		goto fail;
	if (err != 0) {
		errno = err;
		goto fail;
	}
	return fd;
fail:
	err = errno;
	close(fd);
	errno = err;
	return -1;
}

/* net_ntop - the numeric address of ss, without port */
void
net_ntop(const struct sockaddr_storage *ss, char *out, size_t out_size)
{
	const void *a;

	if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const void *)ss;

		if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
			inet_ntop(AF_INET, &s6->sin6_addr.s6_addr[12], out, out_size);
			return;
		}
		a = &s6->sin6_addr;
	} else if (ss->ss_family == AF_INET)
		a = &((const struct sockaddr_in *)(const void *)ss)->sin_addr;
	else {
		snprintf(out, out_size, "unknown");
		return;
	}
	if (inet_ntop(ss->ss_family, a, out, out_size) == NULL)
		snprintf(out, out_size, "unknown");
}

/* net_port - the port of ss in host order */
int
net_port(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET6)
		return ntohs(((const struct sockaddr_in6 *)(const void *)ss)->sin6_port);
	if (ss->ss_family == AF_INET)
		return ntohs(((const struct sockaddr_in *)(const void *)ss)->sin_port);
	return 0;
}

/* addr_bytes - the address bytes and family of ss, IPv4-mapped seen as IPv4 */
static const uint8_t *
addr_bytes(const struct sockaddr_storage *ss, int *family_r)
{
	if (ss->ss_family == AF_INET) {
		*family_r = AF_INET;
		return (const uint8_t *)&((const struct sockaddr_in *)(const void *)ss)->sin_addr;
	}
	if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const void *)ss;

		if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
			*family_r = AF_INET;
			return &s6->sin6_addr.s6_addr[12];
		}
		*family_r = AF_INET6;
		return s6->sin6_addr.s6_addr;
	}
	*family_r = AF_UNSPEC;
	return NULL;
}

/* net_is_loopback - is ss 127.0.0.0/8 or ::1 */
bool
net_is_loopback(const struct sockaddr_storage *ss)
{
	static const uint8_t v6_loop[16] = { [15] = 1 };
	int family;
	const uint8_t *a = addr_bytes(ss, &family);

	if (family == AF_INET)
		return a[0] == 127;
	if (family == AF_INET6)
		return memcmp(a, v6_loop, 16) == 0;
	return false;
}

/* mask_bits - clear every bit past the prefix */
static void
mask_bits(uint8_t *addr, int bytes, int bits)
{
	for (int i = 0; i < bytes; i++) {
		int keep = bits - i * 8;

		if (keep >= 8)
			continue;
		addr[i] &= keep <= 0 ? 0 : (uint8_t)(0xff << (8 - keep));
	}
}

/* cidr_parse - "a.b.c.d[/n]" or "v6[/n]"; returns 0 or -1 */
int
cidr_parse(const char *text, struct cidr *c)
{
	char host[INET6_ADDRSTRLEN + 1];
	const char *slash = strchr(text, '/');
	size_t hlen = slash ? (size_t)(slash - text) : strlen(text);
	int max;

	if (hlen == 0 || hlen >= sizeof(host))
		return -1;
	memcpy(host, text, hlen);
	host[hlen] = '\0';
	memset(c, 0, sizeof(*c));
	if (inet_pton(AF_INET, host, c->addr) == 1) {
		c->family = AF_INET;
		max = 32;
	} else if (inet_pton(AF_INET6, host, c->addr) == 1) {
		c->family = AF_INET6;
		max = 128;
	} else
		return -1;
	c->bits = max;
	if (slash != NULL) {
		char *end;
		long bits = strtol(slash + 1, &end, 10);

		if (slash[1] == '\0' || *end != '\0' || bits < 0 || bits > max)
			return -1;
		c->bits = (int)bits;
	}
	mask_bits(c->addr, max / 8, c->bits);
	return 0;
}

/* cidr_match - is the address of ss inside network c */
bool
cidr_match(const struct cidr *c, const struct sockaddr_storage *ss)
{
	uint8_t a[16];
	int family, bytes;
	const uint8_t *src = addr_bytes(ss, &family);

	if (src == NULL || family != c->family)
		return false;
	bytes = family == AF_INET ? 4 : 16;
	memcpy(a, src, (size_t)bytes);
	mask_bits(a, bytes, c->bits);
	return memcmp(a, c->addr, (size_t)bytes) == 0;
}
