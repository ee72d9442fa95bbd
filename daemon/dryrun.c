/*
 * dryrun - `postern test`: run a policy on a message file without the daemon
 *
 * postern [-c FILE] test [--policy FILE | --listener NAME] [--from ADDR]
 *     [--rcpt ADDR]... [--client-ip IP] [--client-name NAME] [--helo NAME]
 *     [--login NAME] MSG.eml
 *
 * The postmaster's dry run: the message is spooled as posternd would spool
 * it (bare LF made CRLF), the policy runs with the same sandbox, limits and
 * library as in the daemon, and the outcome is printed: the verdict of each
 * recipient, the score and the rules that fired, and the header edits each
 * recipient's copy would get. Nothing is delivered, quarantined or logged.
 *
 * Without --rcpt the recipients are the To: and Cc: addresses (else
 * postmaster@localhost); without --from the sender is the From: address.
 * The client defaults to 192.0.2.1 (TEST-NET-1), so that a policy's bypass
 * of local clients does not hide what it would do to mail from outside.
 *
 * Exit status: the most severe verdict: 0 pass, 10 discard, 11 quarantine,
 * 12 reject, 13 tempfail; 1 when the policy fails to load or to run (the
 * daemon would tempfail the message), 2 for usage errors.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "clam.h"
#include "config.h"
#include "dotstuff.h"
#include "dryrun.h"
#include "header.h"
#include "message.h"
#include "policy.h"
#include "spool.h"
#include "verdict.h"
#include "util/buf.h"
#include "util/esc.h"
#include "util/xalloc.h"

#define MESSAGE_MAX	(256L * 1024 * 1024)	/* a dry run on a bigger file is a mistake */

struct dryrun_opts {
	const char *policy;		/* --policy FILE */
	const char *listener;		/* --listener NAME */
	const char *from;		/* --from */
	char  **rcpts;			/* --rcpt, borrowed from argv */
	size_t	nrcpts;
	const char *client_ip, *client_name, *helo, *login;
	const char *file;		/* MSG.eml */
};

/* usage_error - say what is wrong and how it is used; returns 2 */
static int
usage_error(const char *what)
{
	fprintf(stderr, "postern test: %s\n"
		"usage: postern [-c FILE] test [--policy FILE | --listener NAME] [--from ADDR]\n"
		"           [--rcpt ADDR]... [--client-ip IP] [--client-name NAME] [--helo NAME]\n"
		"           [--login NAME] MSG.eml\n", what);
	return 2;
}

/* has_control - does s hold a control byte (C0 or DEL), which no SMTP value may */
static bool
has_control(const char *s)
{
	for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++)
		if (*p < 0x20 || *p == 0x7f)
			return true;
	return false;
}

/* is_ip - an IPv4 or IPv6 address, as the daemon gives msg.client.ip */
static bool
is_ip(const char *s)
{
	unsigned char addr[sizeof(struct in6_addr)];

	return inet_pton(AF_INET, s, addr) == 1 || inet_pton(AF_INET6, s, addr) == 1;
}

/*
 * opts_are_sane - values the daemon could give a policy; false after a usage error
 *
 * A policy tried on what no session can produce (a client IP "banana", an
 * empty recipient) shows nothing about what it does in the daemon.
 */
static bool
opts_are_sane(const struct dryrun_opts *o)
{
	const char *named[] = { o->from, o->client_name, o->helo, o->login };

	for (size_t i = 0; i < o->nrcpts; i++)
		if (o->rcpts[i][0] == '\0' || has_control(o->rcpts[i]))
			return usage_error("--rcpt: expected an address"), false;
	for (size_t i = 0; i < sizeof(named) / sizeof(named[0]); i++)
		if (named[i] != NULL && has_control(named[i]))
			return usage_error("--from, --client-name, --helo and --login take no control "
					   "characters"), false;
	if (o->client_ip != NULL && !is_ip(o->client_ip))
		return usage_error("--client-ip: expected an IPv4 or IPv6 address"), false;
	return true;
}

/* parse_opts - the command's options; -1 after a usage error was printed */
static int
parse_opts(int argc, char **argv, struct dryrun_opts *o)
{
	static const struct option longs[] = {
		{ "policy", required_argument, NULL, 'p' },
		{ "listener", required_argument, NULL, 'l' },
		{ "from", required_argument, NULL, 'f' },
		{ "rcpt", required_argument, NULL, 'r' },
		{ "client-ip", required_argument, NULL, 'i' },
		{ "client-name", required_argument, NULL, 'n' },
		{ "helo", required_argument, NULL, 'h' },
		{ "login", required_argument, NULL, 'L' },
		{ NULL, 0, NULL, 0 },
	};
	int ch;

	o->rcpts = xreallocarray(NULL, (size_t)argc + 1, sizeof(*o->rcpts));
	optind = 1;
	while ((ch = getopt_long(argc, argv, "", longs, NULL)) != -1) {
		switch (ch) {
		case 'p': o->policy = optarg; break;
		case 'l': o->listener = optarg; break;
		case 'f': o->from = optarg; break;
		case 'r': o->rcpts[o->nrcpts++] = optarg; break;
		case 'i': o->client_ip = optarg; break;
		case 'n': o->client_name = optarg; break;
		case 'h': o->helo = optarg; break;
		case 'L': o->login = optarg; break;
		default: return usage_error("unknown option"), -1;
		}
	}
	if (optind != argc - 1)
		return usage_error("give exactly one message file"), -1;
	if (o->policy != NULL && o->listener != NULL)
		return usage_error("--policy and --listener exclude each other"), -1;
	if (!opts_are_sane(o))
		return -1;
	o->file = argv[optind];
	return 0;
}

/* spool_file - the message file into a spool, as the server would store it */
static struct spool *
spool_file(const struct config *cfg, const char *path, long *size_r)
{
	FILE *f = fopen(path, "rb");
	struct spool *sp = NULL;
	struct lfnorm norm;
	struct buf out;
	char chunk[65536];
	size_t n;
	const char *tmp = getenv("TMPDIR");

	if (f == NULL) {
		fprintf(stderr, "postern test: %s: %s\n", path, strerror(errno));
		return NULL;
	}
	if ((sp = spool_open(cfg->spool_dir)) == NULL &&
	    (sp = spool_open(tmp && *tmp ? tmp : "/tmp")) == NULL) {
		fprintf(stderr, "postern test: cannot create a spool file: %s\n", strerror(errno));
		fclose(f);
		return NULL;
	}
	lfnorm_init(&norm);
	buf_init(&out, 0);
	*size_r = 0;
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
		lfnorm_feed(&norm, chunk, n, &out);
		*size_r += (long)out.len;
		if (*size_r > MESSAGE_MAX || spool_write(sp, out.ptr, out.len) < 0) {
			fprintf(stderr, "postern test: %s: too big or cannot be spooled\n", path);
			sp = spool_close(sp);
			break;
		}
		buf_reset(&out);
	}
	buf_release(&out);
	if (sp != NULL && (ferror(f) || spool_finish(sp) < 0)) {
		fprintf(stderr, "postern test: %s: %s\n", path, strerror(errno));
		sp = spool_close(sp);
	}
	fclose(f);
	return sp;
}

/* first_address - the first <addr> or bare addr in a header value, or NULL */
static char *
first_address(const char *value, size_t *used_r)
{
	const char *lt = strchr(value, '<'), *start, *end;

	if (lt != NULL && (end = strchr(lt, '>')) != NULL) {
		start = lt + 1;
		*used_r = (size_t)(end + 1 - value);
	} else {
		start = value + strspn(value, " \t,");
		end = start + strcspn(start, " \t,");
		*used_r = (size_t)(end - value);
	}
	if (end <= start || memchr(start, '@', (size_t)(end - start)) == NULL)
		return NULL;
	return xstrndup(start, (size_t)(end - start));
}

/* add_header_addresses - every address of the fields called name as recipients */
static void
add_header_addresses(struct message *m, const struct header_block *hb, const char *name)
{
	for (size_t nth = 0;; nth++) {
		const struct header_field *f = header_find(hb, name, nth);
		char *value, *p;

		if (f == NULL)
			return;
		value = header_decode(f->value, f->value_len);
		for (p = value; *p != '\0';) {
			char *next = strchr(p, ',');
			size_t used;
			char *a;

			if (next != NULL)
				*next = '\0';
			if ((a = first_address(p, &used)) != NULL) {
				message_add_rcpt(m, a);
				free(a);
			}
			if (next == NULL)
				break;
			p = next + 1;
		}
		free(value);
	}
}

/* envelope - sender and recipients from the options, else from the header */
static void
envelope(struct message *m, const struct dryrun_opts *o, const struct header_block *hb)
{
	const struct header_field *from = header_find(hb, "From", 0);

	if (o->from != NULL)
		m->sender = xstrdup(o->from);
	else if (from != NULL) {
		char *value = header_decode(from->value, from->value_len);
		size_t used;

		m->sender = first_address(value, &used);
		free(value);
	}
	if (m->sender == NULL)
		m->sender = xstrdup("");
	for (size_t i = 0; i < o->nrcpts; i++)
		message_add_rcpt(m, o->rcpts[i]);
	if (m->nrcpts == 0) {
		add_header_addresses(m, hb, "To");
		add_header_addresses(m, hb, "Cc");
	}
	if (m->nrcpts == 0)
		message_add_rcpt(m, "postmaster@localhost");
}

/* print_edits - one line per header edit */
static void
print_edits(const struct edit_list *l, const char *indent)
{
	static const char *const ops[] = { "add", "remove", "replace", "tag subject" };

	for (size_t i = 0; i < l->n; i++) {
		char *e = esc_logs(l->v[i].value);

		if (l->v[i].op == EDIT_SUBJECT_TAG)
			printf("%s%-12s \"%s\"\n", indent, ops[l->v[i].op], e);
		else if (l->v[i].op == EDIT_REMOVE)
			printf("%s%-12s %s\n", indent, ops[l->v[i].op], l->v[i].name);
		else
			printf("%s%-12s %s: %s\n", indent, ops[l->v[i].op], l->v[i].name, e);
		free(e);
	}
}

/* severity - the exit status of a verdict */
static int
severity(enum verdict v)
{
	switch (v) {
	case VERDICT_PASS: return 0;
	case VERDICT_DISCARD: return 10;
	case VERDICT_QUARANTINE: return 11;
	case VERDICT_REJECT: return 12;
	case VERDICT_TEMPFAIL: return 13;
	}
	return 1;
}

/* report - what the policy decided, and the exit status */
static int
report(const struct message *m, const char *policy_path)
{
	int status = 0;

	printf("policy:    %s\n", policy_path);
	printf("message:   id %s, %ld bytes\n", m->id, m->size);
	printf("score:     %.3f\n", m->score);
	printf("rules:    ");
	for (size_t i = 0; i < m->nhits; i++)
		printf(" %s%s", m->hits[i].rule, i + 1 < m->nhits ? "," : "");
	if (m->nhits == 0)
		printf(" (none fired)");
	printf("\n");
	for (size_t i = 0; i < m->nhits; i++)
		if (m->hits[i].score != 0)
			printf("           %+.3f  %s\n", m->hits[i].score, m->hits[i].rule);
	if (m->edits.n > 0) {
		printf("headers (every copy):\n");
		print_edits(&m->edits, "  ");
	}
	printf("recipients:\n");
	for (size_t i = 0; i < m->nrcpts; i++) {
		const struct recipient *r = &m->rcpts[i];
		char *e = esc_logs(r->addr);

		printf("  <%s>%s: %s", e, r->added ? " (added by the policy)" : "",
		       verdict_name(r->verdict));
		if (r->policy_reply != NULL) {
			char *why = esc_logs(r->policy_reply);

			printf(r->verdict == VERDICT_QUARANTINE ? " (%s)" : ": %s", why);
			free(why);
		}
		if (r->forward_to != NULL)
			printf(", delivered to <%s>", r->forward_to);
		printf("\n");
		print_edits(&r->edits, "      ");
		free(e);
		if (!r->added && severity(r->verdict) > status)
			status = severity(r->verdict);
	}
	return status;
}

/* load - the policy asked for: --policy, --listener, or the first listener's */
static struct policy *
load(const struct config *cfg, const struct dryrun_opts *o, const char **listener_r)
{
	char *error = NULL;
	struct policy *p = NULL;

	*listener_r = "test";
	policy_set_watchdog_line("postern test: policy watchdog: the policy ran far past "
				 "policy_timeout inside one C call (a pathological Lua pattern?); "
				 "stopped\n");
	policy_guard_load(cfg, true);	/* a policy stuck in one C call at load: exit 3 */
	if (o->policy != NULL)
		p = policy_load_file(cfg, o->policy, &error);
	else {
		for (size_t i = 0; i < cfg->nlisteners && p == NULL && error == NULL; i++) {
			const struct listener_cfg *lc = &cfg->listeners[i];

			if (o->listener != NULL ? strcmp(lc->name, o->listener) != 0 : lc->policy == NULL)
				continue;
			*listener_r = lc->name;
			if ((p = policy_load(cfg, lc, &error)) == NULL && error == NULL)
				error = xasprintf("listener %s has no policy: every message passes",
						  lc->name);
		}
		if (p == NULL && error == NULL)
			error = o->listener ? xasprintf("no listener \"%s\" in %s", o->listener, cfg->path)
					    : xasprintf("no listener of %s has a policy (use --policy FILE)",
							cfg->path);
	}
	policy_guard_load(cfg, false);
	if (p == NULL) {
		fprintf(stderr, "postern test: %s\n", error);
		free(error);
	}
	return p;
}

/* dryrun_main - see dryrun.h */
int
dryrun_main(const char *config_path, bool config_given, int argc, char **argv)
{
	struct dryrun_opts o = { 0 };
	struct config *cfg = NULL;
	struct policy *p = NULL;
	struct clam_engine *clam = NULL;
	struct message *m = NULL;
	struct client c = { 0 };
	struct policy_input in;
	char *error = NULL;
	const char *listener;
	int status = 1;

	if (parse_opts(argc, argv, &o) < 0) {
		free(o.rcpts);
		return 2;
	}
	if ((config_given || access(config_path, R_OK) == 0 || o.policy == NULL) &&
	    (cfg = config_load(config_path, NULL, 0, &error)) == NULL) {
		fprintf(stderr, "postern test: %s\n", error);
		free(error);
		goto out;
	}
	if (cfg == NULL)
		cfg = config_defaults();	/* --policy without a configuration file */
	if ((p = load(cfg, &o, &listener)) == NULL)
		goto out;
	if (cfg->clamav.database != NULL &&
	    (clam = clam_engine_load(&cfg->clamav, NULL, &error)) == NULL) {
		fprintf(stderr, "postern test: %s\n", error);
		free(error);
		goto out;
	}
	m = message_new();
	if ((m->spool = spool_file(cfg, o.file, &m->size)) == NULL)
		goto out;
	m->hdr = xcalloc(1, sizeof(*m->hdr));
	if (header_read(m->hdr, spool_fd(m->spool), (size_t)cfg->max_header_size) < 0) {
		fprintf(stderr, "postern test: cannot read the spooled message back: %s\n",
			strerror(errno));
		goto out;
	}
	envelope(m, &o, m->hdr);
	snprintf(c.ip, sizeof(c.ip), "%s", "127.0.0.1");
	c.helo = xstrdup(o.helo ? o.helo : "client.test");
	c.xforward[XF_ADDR] = xstrdup(o.client_ip ? o.client_ip : "192.0.2.1");
	if (o.client_name)
		c.xforward[XF_NAME] = xstrdup(o.client_name);
	if (o.helo)
		c.xforward[XF_HELO] = xstrdup(o.helo);
	if (o.login)
		c.xforward[XF_LOGIN] = xstrdup(o.login);
	in = (struct policy_input){ m, &c, listener, cfg, clam };
	if (policy_run(p, &in, &error) < 0) {
		printf("policy:    %s\nerror:     %s\nverdict:   the daemon would tempfail this message "
		       "(451 4.3.0)\n", policy_path(p), error);
		free(error);
		status = 1;
		goto out;
	}
	status = report(m, policy_path(p));
out:
	client_release(&c);
	message_free(m);
	policy_free(p);
	clam_engine_free(clam);
	config_free(cfg);
	free(o.rcpts);
	return status;
}
