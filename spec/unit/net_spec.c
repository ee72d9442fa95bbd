/*
 * net_spec - endpoints and allow-list networks
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include "util/net.h"
#include "tap.h"

/* addr - a sockaddr_storage for a numeric address */
static struct sockaddr_storage
addr(const char *text)
{
	struct sockaddr_storage ss;

	memset(&ss, 0, sizeof(ss));
	if (strchr(text, ':')) {
		struct sockaddr_in6 *s6 = (void *)&ss;

		s6->sin6_family = AF_INET6;
		inet_pton(AF_INET6, text, &s6->sin6_addr);
	} else {
		struct sockaddr_in *s4 = (void *)&ss;

		s4->sin_family = AF_INET;
		inet_pton(AF_INET, text, &s4->sin_addr);
	}
	return ss;
}

static const struct {
	const char *net, *ip;
	int	match;
} cases[] = {
	{ "127.0.0.0/8", "127.0.0.1", 1 },
	{ "127.0.0.0/8", "127.255.1.2", 1 },
	{ "127.0.0.0/8", "128.0.0.1", 0 },
	{ "10.1.2.0/23", "10.1.3.200", 1 },
	{ "10.1.2.0/23", "10.1.4.1", 0 },
	{ "192.0.2.7", "192.0.2.7", 1 },
	{ "192.0.2.7", "192.0.2.8", 0 },
	{ "0.0.0.0/0", "203.0.113.9", 1 },
	{ "::1", "::1", 1 },
	{ "::1", "::2", 0 },
	{ "2001:db8::/32", "2001:db8:1::5", 1 },
	{ "2001:db8::/32", "2001:db9::5", 0 },
	{ "127.0.0.0/8", "::ffff:127.0.0.1", 1 },	/* IPv4-mapped seen as IPv4 */
	{ "127.0.0.0/8", "::1", 0 },
};

int
main(void)
{
	static const char *bad[] = { "", "/8", "127.0.0.1/33", "::1/129", "1.2.3.4/x",
				     "host.example", "1.2.3.4/", NULL };
	struct endpoint ep;
	const char *why;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct cidr c;
		struct sockaddr_storage ss = addr(cases[i].ip);

		ok(cidr_parse(cases[i].net, &c) == 0, "parse %s", cases[i].net);
		is_int(cidr_match(&c, &ss), cases[i].match, "%s %s %s", cases[i].ip,
		       cases[i].match ? "in" : "not in", cases[i].net);
	}
	for (int i = 0; bad[i]; i++) {
		struct cidr c;

		is_int(cidr_parse(bad[i], &c), -1, "'%s' is not a network", bad[i]);
	}
	ok(net_parse_endpoint("127.0.0.1:10024", &ep, &why) == 0 && net_port(&ep.ss) == 10024,
	   "127.0.0.1:10024");
	ok(net_parse_endpoint("[::1]:25", &ep, &why) == 0 && net_port(&ep.ss) == 25, "[::1]:25");
	ok(net_parse_endpoint("127.0.0.1", &ep, &why) < 0, "no port is an error");
	ok(net_parse_endpoint("127.0.0.1:0", &ep, &why) < 0, "port 0 is an error");
	ok(net_parse_endpoint("127.0.0.1:65536", &ep, &why) < 0, "port 65536 is an error");
	ok(net_parse_endpoint("127.0.0.1:25x", &ep, &why) < 0, "port with junk is an error");
	{
		struct sockaddr_storage a = addr("127.0.0.2"), b = addr("::1"), c = addr("10.0.0.1");

		ok(net_is_loopback(&a) && net_is_loopback(&b) && !net_is_loopback(&c),
		   "loopback: 127.0.0.2 and ::1 are, 10.0.0.1 is not");
	}
	return done_testing();
}
