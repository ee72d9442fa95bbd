/*
 * postfix_config - `postern postfix-config`: the main.cf and master.cf lines for postern
 *
 * See postfix_config.h for what is printed and doc/postfix.md for why each
 * line is there. The listeners are sorted into Postfix instances first: the
 * primary one holds the inbound listener (main.cf content_filter), the
 * submission listener (-o content_filter on the submission service) and
 * every other listener that forwards to one of their reinjection addresses;
 * any other forward address is the reinjection service of another instance
 * (postmulti), whose content_filter is the first listener forwarding there.
 * Output is deterministic: configuration order, no dates.
 */
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "postfix_config.h"
#include "util/net.h"
#include "util/xalloc.h"

#define MAX_USE			20	/* deliveries per scan process before it is replaced */
#define DATA_DONE_TIMEOUT	1200	/* seconds Postfix waits for postern's reply to "." */
#define HOST_MAX		64	/* a numeric address, IPv6 included */
#define NETS_MAX		1024	/* mynetworks value of one reinjection service */

/* one Postfix instance: the listeners it delivers to, the services that take mail back */
struct instance {
	const struct listener_cfg *lead;	/* main.cf content_filter */
	const struct listener_cfg *submission;	/* -o content_filter of submission, or NULL */
	const struct listener_cfg **members;	/* a transport each, lead (and submission) first */
	size_t	nmembers;
	const struct listener_cfg **forwards;	/* first listener of each distinct forward */
	size_t	nforwards;
};

/* is_wildcard - 0.0.0.0 or :: */
static bool
is_wildcard(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET)
		return ((const struct sockaddr_in *)(const void *)ss)->sin_addr.s_addr == INADDR_ANY;
	if (ss->ss_family == AF_INET6)
		return IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *)(const void *)ss)->sin6_addr);
	return false;
}

/* host_of - numeric address of ep; a wildcard is reached on the loopback address of its family */
static void
host_of(const struct endpoint *ep, char *out, size_t size)
{
	if (is_wildcard(&ep->ss))
		snprintf(out, size, "%s", ep->ss.ss_family == AF_INET6 ? "::1" : "127.0.0.1");
	else
		net_ntop(&ep->ss, out, size);
}

/* is_v6 - a numeric address from host_of() is IPv6 */
static bool
is_v6(const char *host)
{
	return strchr(host, ':') != NULL;
}

/* nexthop - content_filter's destination for lc: "[127.0.0.1]:10024", "inet:[::1]:20024" (LMTP) */
static void
nexthop(const struct listener_cfg *lc, char *out, size_t size)
{
	char host[HOST_MAX];

	host_of(&lc->listen_ep, host, sizeof(host));
	snprintf(out, size, "%s[%s]:%d", lc->is_lmtp ? "inet:" : "", host,
		 net_port(&lc->listen_ep.ss));
}

/* service_name - master.cf name of the inet service on ep: "127.0.0.1:10025", "[::1]:10025" */
static void
service_name(const struct endpoint *ep, char *out, size_t size)
{
	char host[HOST_MAX];

	net_ntop(&ep->ss, host, sizeof(host));
	if (is_wildcard(&ep->ss))
		snprintf(out, size, "%d", net_port(&ep->ss));	/* every inet_interfaces address */
	else
		snprintf(out, size, is_v6(host) ? "[%s]:%d" : "%s:%d", host, net_port(&ep->ss));
}

/* same_forward - a and b reinject to the same address and port */
static bool
same_forward(const struct listener_cfg *a, const struct listener_cfg *b)
{
	char ha[HOST_MAX], hb[HOST_MAX];

	host_of(&a->forward_ep, ha, sizeof(ha));
	host_of(&b->forward_ep, hb, sizeof(hb));
	return strcmp(ha, hb) == 0 && net_port(&a->forward_ep.ss) == net_port(&b->forward_ep.ss);
}

/* add_member - lc gets a transport in in; a forward address new to in, a reinjection service */
static void
add_member(struct instance *in, const struct listener_cfg *lc)
{
	bool known = false;

	in->members = xreallocarray(in->members, in->nmembers + 1, sizeof(*in->members));
	in->members[in->nmembers++] = lc;
	for (size_t i = 0; i < in->nforwards && !known; i++)
		known = same_forward(in->forwards[i], lc);
	if (!known) {
		in->forwards = xreallocarray(in->forwards, in->nforwards + 1, sizeof(*in->forwards));
		in->forwards[in->nforwards++] = lc;
	}
}

/* serves - in has a reinjection service on lc's forward address */
static bool
serves(const struct instance *in, const struct listener_cfg *lc)
{
	for (size_t i = 0; i < in->nforwards; i++)
		if (same_forward(in->forwards[i], lc))
			return true;
	return false;
}

/*
 * sort_instances - the primary instance (index 0), then one per other forward address
 *
 * Returns the count; *out_r is owned by the caller (instances_free).
 */
static size_t
sort_instances(const struct config *cfg, const struct listener_cfg *in_lc,
	       const struct listener_cfg *sub_lc, struct instance **out_r)
{
	struct instance *v = xcalloc(1, sizeof(*v));
	size_t n = 1;

	v[0].lead = in_lc;
	add_member(&v[0], in_lc);
	if (sub_lc != NULL && sub_lc != in_lc) {
		v[0].submission = sub_lc;
		add_member(&v[0], sub_lc);
	}
	for (size_t i = 0; i < cfg->nlisteners; i++) {
		const struct listener_cfg *lc = &cfg->listeners[i];
		size_t k;

		if (lc == in_lc || lc == sub_lc)
			continue;
		for (k = 0; k < n && !serves(&v[k], lc); k++)
			;
		if (k == n) {
			v = xreallocarray(v, n + 1, sizeof(*v));
			memset(&v[n], 0, sizeof(v[n]));
			v[n++].lead = lc;
		}
		add_member(&v[k], lc);
	}
	*out_r = v;
	return n;
}

static void
instances_free(struct instance *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(v[i].members);
		free(v[i].forwards);
	}
	free(v);
}

/* role - what a listener is for, in the header */
static const char *
role(const struct instance *v, size_t n, const struct listener_cfg *lc)
{
	if (lc == v[0].lead)
		return "inbound mail: main.cf content_filter";
	if (lc == v[0].submission)
		return "your users' mail: -o content_filter of submission";
	for (size_t i = 1; i < n; i++)
		if (lc == v[i].lead)
			return "content_filter of another Postfix instance";
	return "a transport only, unused by these lines";
}

/* print_header - where this came from, the listeners and their roles, how to use it */
static void
print_header(FILE *out, const struct config *cfg, const struct instance *v, size_t n,
	     bool no_submission, bool same_submission, const char *submission_name)
{
	char *path = realpath(cfg->path, NULL);
	int width = 0;

	fprintf(out, "# Postfix settings for postern, printed by \"postern postfix-config\" from\n"
		"# %s (postern %s).\n#\n", path ? path : cfg->path, PACKAGE_VERSION);
	free(path);
	for (size_t i = 0; i < cfg->nlisteners; i++)
		if ((int)strlen(cfg->listeners[i].name) > width)
			width = (int)strlen(cfg->listeners[i].name);
	for (size_t i = 0; i < cfg->nlisteners; i++) {
		const struct listener_cfg *lc = &cfg->listeners[i];

		fprintf(out, "#   %-*s %s %s -> %s: %s\n", width, lc->name,
			lc->is_lmtp ? "lmtp" : "smtp", lc->listen, lc->forward, role(v, n, lc));
	}
	if (same_submission)
		fprintf(out, "# Listener \"%s\" takes the submission service's mail too: that service\n"
			"# needs no content_filter of its own.\n", v[0].lead->name);
	else if (no_submission)
		fprintf(out, "# No listener \"%s\": mail of the submission service goes through\n"
			"# scan-%s like the rest (--submission NAME picks a listener for it).\n",
			submission_name, v[0].lead->name);
	fprintf(out, "#\n"
		"# Put each part where its heading says, then run \"postfix check\" and\n"
		"# \"postfix reload\".%s doc/postfix.md explains every line.\n",
		v[0].submission == NULL ? "" : " Do not append this output to master.cf as it is:\n"
		"# the submission part is an -o line for your existing submission service.\n#");
}

/* print_main - the main.cf lines of one instance */
static void
print_main(FILE *out, const struct instance *in, bool primary)
{
	char hop[HOST_MAX + 32];

	nexthop(in->lead, hop, sizeof(hop));
	if (primary)
		fprintf(out, "\n# main.cf\n");
	else
		fprintf(out, "\n# main.cf of the Postfix instance for listener \"%s\" "
			"(postmulti -i NAME -x postconf -e ...)\n", in->lead->name);
	fprintf(out, "# mail received by smtpd (and pickup) goes to postern listener \"%s\";\n"
		"# address mappings happen once, after postern, on the reinjection service\n"
		"content_filter = scan-%s:%s\n"
		"receive_override_options = no_address_mappings\n", in->lead->name, in->lead->name, hop);
}

/* print_submission - the -o line for the existing submission service */
static void
print_submission(FILE *out, const struct listener_cfg *lc)
{
	char hop[HOST_MAX + 32];

	nexthop(lc, hop, sizeof(hop));
	fprintf(out, "\n# master.cf: add this -o line to your submission service (and to\n"
		"# submissions, port 465, if you run it), replacing any content_filter it has\n"
		"#submission inet n - y - - smtpd\n"
		"  -o content_filter=scan-%s:%s\n", lc->name, hop);
}

/* print_transport - the Postfix client that delivers to listener lc */
static void
print_transport(FILE *out, const struct instance *in, const struct listener_cfg *lc)
{
	const char *p = lc->is_lmtp ? "lmtp" : "smtp";	/* client and parameter prefix */
	char hop[HOST_MAX + 32];

	nexthop(lc, hop, sizeof(hop));
	fprintf(out, "# scan-%s: Postfix's %s client, delivering to postern listener \"%s\"\n",
		lc->name, p, lc->name);
	if (lc != in->lead && lc != in->submission)
		fprintf(out, "# (not used by these lines: content_filter=scan-%s:%s would use it)\n",
			lc->name, hop);
	fprintf(out, "scan-%s unix - - n - %ld %s\n"
		"  -o %s_send_xforward_command=yes\n"
		"  -o %s_data_done_timeout=%d\n"
		"  -o %s_dns_support_level=disabled\n"
		"  -o %s_generic_maps=\n"
		"  -o %s_tls_security_level=none\n"
		"  -o disable_mime_output_conversion=yes\n"
		"  -o max_use=%d\n",
		lc->name, lc->workers, p, p, p, DATA_DONE_TIMEOUT, p, p, p, MAX_USE);
}

/* add_net - append net to the comma-separated list nets unless it is there */
static void
add_net(char *nets, size_t size, const char *net)
{
	size_t len = strlen(net);

	for (const char *s = nets; *s != '\0';) {
		size_t l = strcspn(s, ",");

		if (l == len && strncmp(s, net, len) == 0)
			return;
		s += l + (s[l] == ',');
	}
	if (strlen(nets) + len + 2 > size)
		return;		/* NETS_MAX holds dozens of networks: not reached in practice */
	if (*nets != '\0')
		strcat(nets, ",");
	strcat(nets, net);
}

/* add_host_net - ep's address as a one-host network, unless loopback or a wildcard */
static void
add_host_net(char *nets, size_t size, const struct endpoint *ep)
{
	char host[HOST_MAX], net[HOST_MAX + 8];

	if (net_is_loopback(&ep->ss) || is_wildcard(&ep->ss))
		return;
	net_ntop(&ep->ss, host, sizeof(host));
	snprintf(net, sizeof(net), is_v6(host) ? "[%s]/128" : "%s/32", host);
	add_net(nets, size, net);
}

/*
 * print_reinjection - the smtpd postern reinjects to, for the listeners of in forwarding to fwd
 *
 * postern connects from a loopback address (forward on loopback), from the
 * forward address itself (forward on another address of this host), or from
 * the address it listens on (postern on another host): those are the
 * networks trusted for relaying and XFORWARD here.
 */
static void
print_reinjection(FILE *out, const struct instance *in, const struct listener_cfg *fwd)
{
	char svc[HOST_MAX + 16], nets[NETS_MAX] = "127.0.0.0/8", *names = NULL;
	size_t shown = 0;

	for (size_t i = 0; i < in->nmembers; i++) {	/* loopback first, IPv6's if need be */
		const struct listener_cfg *lc = in->members[i];
		char fhost[HOST_MAX], lhost[HOST_MAX];

		host_of(&lc->forward_ep, fhost, sizeof(fhost));
		host_of(&lc->listen_ep, lhost, sizeof(lhost));
		if (same_forward(lc, fwd) && (is_v6(fhost) || is_v6(lhost)))
			add_net(nets, sizeof(nets), "[::1]/128");
	}
	service_name(&fwd->forward_ep, svc, sizeof(svc));
	for (size_t i = 0; i < in->nmembers; i++) {
		const struct listener_cfg *lc = in->members[i];

		if (!same_forward(lc, fwd))
			continue;
		add_host_net(nets, sizeof(nets), &lc->forward_ep);
		add_host_net(nets, sizeof(nets), &lc->listen_ep);
		names = xrealloc(names, strlen(names ? names : "") + strlen(lc->name) + 3);
		if (shown++ == 0)
			strcpy(names, lc->name);
		else
			strcat(strcat(names, ", "), lc->name);
	}
	fprintf(out, "# %s: reinjection service of listener%s %s;\n"
		"# content_filter stays empty here, or mail loops through postern\n",
		svc, shown > 1 ? "s" : "", names);
	free(names);
	fprintf(out, "%s inet n - n - - smtpd\n"
		"  -o content_filter=\n"
		"  -o receive_override_options=no_unknown_recipient_checks,no_header_body_checks,no_milters\n"
		"  -o smtpd_helo_restrictions=\n"
		"  -o smtpd_client_restrictions=\n"
		"  -o smtpd_sender_restrictions=\n"
		"  -o smtpd_recipient_restrictions=permit_mynetworks,reject\n"
		"  -o smtpd_relay_restrictions=permit_mynetworks,reject\n"
		"  -o smtpd_data_restrictions=\n"
		"  -o smtpd_end_of_data_restrictions=\n"
		"  -o mynetworks=%s\n"
		"  -o smtpd_authorized_xforward_hosts=%s\n"
		"  -o smtpd_error_sleep_time=0\n"
		"  -o smtpd_soft_error_limit=1001\n"
		"  -o smtpd_hard_error_limit=1000\n"
		"  -o smtpd_client_connection_count_limit=0\n"
		"  -o smtpd_client_connection_rate_limit=0\n"
		"  -o smtpd_tls_security_level=none\n",
		svc, nets, nets);
}

/* print_master - the services of one instance (the submission -o line comes before, apart) */
static void
print_master(FILE *out, const struct instance *in, bool primary)
{
	if (primary)
		fprintf(out, "\n# master.cf: new services\n");
	else
		fprintf(out, "\n# master.cf of the Postfix instance for listener \"%s\"\n", in->lead->name);
	for (size_t i = 0; i < in->nmembers; i++)
		print_transport(out, in, in->members[i]);
	for (size_t i = 0; i < in->nforwards; i++)
		print_reinjection(out, in, in->forwards[i]);
}

/* postfix_config_print - see postfix_config.h */
int
postfix_config_print(const struct config *cfg, FILE *out, const struct postfix_config_opts *o)
{
	const char *in_name = o->inbound ? o->inbound : POSTFIX_CONFIG_INBOUND;
	const char *sub_name = o->submission ? o->submission : POSTFIX_CONFIG_SUBMISSION;
	const struct listener_cfg *in_lc = config_listener(cfg, in_name),
				 *sub_lc = config_listener(cfg, sub_name);
	bool main_cf = o->main || !o->master, master_cf = o->master || !o->main;
	struct instance *v;
	size_t n;

	if (in_lc == NULL) {
		fprintf(stderr, "postern: %s: no listener \"%s\"%s\n", cfg->path, in_name,
			o->inbound ? "" : " (name the listener for inbound mail with --inbound NAME)");
		return -1;
	}
	if (sub_lc == NULL && o->submission != NULL) {
		fprintf(stderr, "postern: %s: no listener \"%s\"\n", cfg->path, sub_name);
		return -1;
	}
	n = sort_instances(cfg, in_lc, sub_lc, &v);
	print_header(out, cfg, v, n, sub_lc == NULL, sub_lc == in_lc, sub_name);
	for (size_t i = 0; i < n; i++) {
		if (main_cf)
			print_main(out, &v[i], i == 0);
		if (master_cf && v[i].submission != NULL)
			print_submission(out, v[i].submission);
		if (master_cf)
			print_master(out, &v[i], i == 0);
	}
	instances_free(v, n);
	if (fflush(out) != 0 || ferror(out)) {
		fprintf(stderr, "postern: cannot write the Postfix settings: %s\n", strerror(errno));
		return -1;
	}
	return 0;
}
