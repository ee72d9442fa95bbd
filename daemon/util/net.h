/*
 * net - addresses, listening and connecting sockets, client networks
 *
 * net_parse_endpoint() reads "127.0.0.1:10024", "[::1]:10024" or
 * "host:port"; net_listen() binds a non-blocking listening socket;
 * net_connect() connects with a bound on the time it may take.
 * struct cidr holds one allow-list entry ("127.0.0.0/8", "::1").
 *
 * Errors: -1 with errno, or an error_r string; nothing here logs.
 */
#ifndef POSTERN_NET_H
#define POSTERN_NET_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

struct endpoint {
	struct sockaddr_storage ss;	/* the address */
	socklen_t len;			/* its length */
};

struct cidr {
	int	family;		/* AF_INET or AF_INET6 */
	uint8_t addr[16];	/* network address, masked */
	int	bits;		/* prefix length */
};

int net_parse_endpoint(const char *text, struct endpoint *ep, const char **error_r);
int net_listen(const struct endpoint *ep);
int net_connect(const struct endpoint *ep, int timeout_ms);
int net_set_nonblock(int fd);
void net_ntop(const struct sockaddr_storage *ss, char *out, size_t out_size);
int net_port(const struct sockaddr_storage *ss);
bool net_is_loopback(const struct sockaddr_storage *ss);
int cidr_parse(const char *text, struct cidr *c);
bool cidr_match(const struct cidr *c, const struct sockaddr_storage *ss);

#endif
