/*
 * policy_bench - what the policy engine costs per message
 *
 * Loads each policy file with policy_load_file() and runs it on one 4 KiB
 * message the way a worker does: per message a fresh struct message
 * (message_new(), envelope sender, two recipients), the spooled message
 * attached, policy_run(), message_free(). The header block hangs off struct
 * message and is parsed on the first msg:header()/msg:headers() of each
 * message, so every message a rule looks at pays the parse, as in the
 * daemon. Prints, per policy: messages, seconds, microseconds per message
 * (mean over the run, median and minimum of batches) and what the policy
 * holds on the malloc heap.
 *
 * Usage: policy_bench [-n COUNT] [-p POLICY]... [--lua-dir DIR]
 *
 * Defaults: 20000 messages; bench/policies/empty.lua, policies/external.lua
 * and bench/policies/twenty_rules.lua; the Lua library from --lua-dir, else
 * $POSTERN_LUA_DIR, else lua/ of the source tree. The source tree is
 * $SRCDIR (what `make check` exports), else BENCH_SRCDIR when the build
 * defines it, else found from this file's path as the compiler saw it (a
 * hand build from the top of the tree runs from there: `bench/..`).
 *
 * The spool is written once, into a nameless file in $TMPDIR (else /tmp),
 * and lent to every message: m->spool is set before policy_run() and taken
 * back before message_free() (which would close it). What this leaves out
 * of the timing is receiving and spooling, which bench/run measures; what
 * it keeps is everything from MAIL's struct message to its release,
 * including the pread() of the header from the spool.
 *
 * The client is not local: XFORWARD ADDR 192.0.2.1 from peer 127.0.0.1, so
 * external.lua's "bypass:local" rule does not let the message through.
 *
 * Not part of the daemon, not a test: built on demand only (never by `make`
 * or `make check`), run by hand. Results and their reading are in
 * bench/README.md, "Policy engine cost".
 */
#include <errno.h>
#include <getopt.h>
#include <libgen.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "config.h"
#include "message.h"
#include "policy.h"
#include "spool.h"
#include "util/buf.h"
#include "util/xalloc.h"

#define DEFAULT_COUNT	20000	/* messages per policy */
#define MESSAGE_SIZE	4096	/* the message size, bytes */
#define BATCH_MSGS	500	/* messages per timed batch (the median is over batches) */
#define WARMUP_MSGS	1000	/* untimed messages first: caches, Lua's GC in its stride */
#define MAX_POLICIES	16	/* -p given this often at most */

/* one policy's run */
struct result {
	const char *path;	/* the policy file, borrowed from argv or defaults */
	long	count;		/* messages timed */
	double	total_s;	/* seconds for all of them */
	double	mean_us;	/* total_s / count, in microseconds */
	double	median_us;	/* median over batches of a batch's microseconds per message */
	double	min_us;		/* the fastest batch, microseconds per message */
	double	load_ms;	/* policy_load_file() time */
	size_t	heap_load;	/* malloc'ed bytes the loaded policy holds */
	size_t	heap_end;	/* ... after the run (Lua garbage not yet collected included) */
	double	score;		/* the last message's score */
	size_t	nhits;		/* ... and rules that fired */
	char	hits[256];	/* ... their names, for the reader to check */
	bool	header_parsed;	/* the last message's header was parsed by the policy */
};

/*
 * The message's header: 16 fields as a mail from a dial-up submitter looks
 * after two relays (Postfix Received: lines, a folded DKIM signature, an
 * RFC 2047 display name in UTF-8). The body is filled up to MESSAGE_SIZE.
 */
static const char *const header_lines[] = {
	"Received: from mail-relay.example.net (mail-relay.example.net [198.51.100.25])",
	"\tby mx1.example.com (Postfix) with ESMTPS id 4Xb7Kq2Lm9z9sWc",
	"\tfor <alice@example.com>; Tue, 24 Nov 2026 09:14:07 +0100 (CET)",
	"Received: from smtp-out.example.net (localhost [127.0.0.1])",
	"\tby mail-relay.example.net (Postfix) with ESMTP id 7C1A2B40E3",
	"\tfor <alice@example.com>; Tue, 24 Nov 2026 09:14:06 +0100 (CET)",
	"Received: from [192.168.1.23] (p5b0d3a1c.dip0.t-ipconnect.de [91.13.58.28])",
	"\t(Authenticated sender: joerg.mueller@example.org)",
	"\tby smtp-out.example.net (Postfix) with ESMTPSA id 0F3E2C01A7;",
	"\tTue, 24 Nov 2026 09:14:05 +0100 (CET)",
	"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.org;",
	"\ts=mail2026; t=1795508045;",
	"\tbh=Xq3nT0o2mJ9d8bVw5k1sYp7cR4uFz6hLa0eGiN2xQ8M=;",
	"\th=Date:From:To:Cc:Subject:Message-ID:MIME-Version:Content-Type;",
	"\tb=kP2vR8sQ1mW7zT4nY6xC0bH3jL9fD5gA2eU8iO1pS7vK4wN6qZ3tB0yM5rX9cJ2h",
	"\t G7fE1dL4kA8sW3nV6bT0uQ9mR2pY5zC7xH1jK4gF8eD0aS3vN6wB9tM2qL5rU7yP",
	"\t iO4cZ1xE8hJ3fG6dA0kW9sT2nV5bR7mQ1pL4yU8eC3zH6jX0gF9dK2wS5tN8vB1q=",
	"Message-ID: <3f9c1e2a-7b4d-4e0a-9c61-2d5f8e7a1b30@example.org>",
	"Date: Tue, 24 Nov 2026 09:14:03 +0100",
	"MIME-Version: 1.0",
	"User-Agent: Mozilla Thunderbird",
	"X-Mailer: Mozilla Thunderbird 128.5.0",
	"From: =?UTF-8?Q?J=C3=B6rg_M=C3=BCller?= <joerg.mueller@example.org>",
	"Reply-To: Projektbuero <projekt@example.org>",
	"To: Alice Schmidt <alice@example.com>, Bob Meyer <bob@example.com>",
	"Cc: Carol Weber <carol@example.org>",
	"Subject: Re: Quarterly review - agenda and the figures for Thursday",
	"Content-Type: text/plain; charset=UTF-8; format=flowed",
	"Content-Transfer-Encoding: 8bit",
	NULL
};

/* prose for the body, repeated until the message is MESSAGE_SIZE bytes */
static const char *const body_lines[] = {
	"Hi Alice, hi Bob,",
	"",
	"thanks for the quick replies. Here is the agenda for Thursday's review;",
	"the figures are in the shared folder, in the spreadsheet we used last",
	"quarter, so that the columns line up with the earlier ones.",
	"",
	"1. Revenue and margins by region (Carol, 15 minutes)",
	"2. The delayed shipments to the warehouse in Hamburg, and what the",
	"   carrier has offered us for the next quarter",
	"3. Hiring: two positions are open, one of them since September",
	"4. Anything else",
	"",
	"On 23.11.2026 at 17:02, Alice Schmidt wrote:",
	"> Could we move the review to 10:00? I have a call at 9:00 that usually",
	"> runs over, and I would rather not join the first item late.",
	">",
	"> Also, please send the numbers a day early if you can, so that we have",
	"> time to read them before the meeting rather than during it.",
	"",
	"10:00 works for me; Bob, please say if it does not for you. The room is",
	"booked until noon, so we are not in a hurry.",
	"",
	"Gr\xc3\xbc\xc3\x9f" "e,",
	"J\xc3\xb6rg",
	"",
	"-- ",
	"J\xc3\xb6rg M\xc3\xbcller, Projektb\xc3\xbcro Nord",
	"Example Org GmbH, Hafenstra\xc3\x9f" "e 12, 20457 Hamburg",
	"",
	NULL
};

/* now_s - monotonic seconds */
static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* heap_in_use - bytes malloc has handed out and not had back (glibc) */
static size_t
heap_in_use(void)
{
	struct mallinfo2 mi = mallinfo2();

	return mi.uordblks + mi.hblkhd;
}

/* heap_since - growth of heap_in_use() since before; 0 when it shrank */
static size_t
heap_since(size_t before)
{
	size_t now = heap_in_use();

	return now > before ? now - before : 0;
}

/*
 * build_message - the message bytes, exactly MESSAGE_SIZE long
 *
 * Body lines are repeated until the next would not fit; the last line is a
 * cut of the next one so that the size comes out exact.
 */
static void
build_message(struct buf *out)
{
	size_t i = 0, left, n;

	for (const char *const *l = header_lines; *l != NULL; l++)
		buf_appendf(out, "%s\r\n", *l);
	buf_appends(out, "\r\n");
	for (;;) {
		const char *line = body_lines[i];

		left = MESSAGE_SIZE - out->len;
		n = strlen(line);
		if (left < n + 2 + 8)
			break;
		buf_appendf(out, "%s\r\n", line);
		i = body_lines[i + 1] != NULL ? i + 1 : 0;
	}
	left = MESSAGE_SIZE - out->len;
	for (n = 0; n + 2 < left; n++)		/* ASCII filler: no UTF-8 cut in two */
		buf_append(out, &"Thanks again, see you on Thursday. "[n % 35], 1);
	buf_appends(out, "\r\n");
}

/* spool_message - a spool holding bytes, flushed; exits on failure */
static struct spool *
spool_message(const char *dir, const struct buf *msg)
{
	struct spool *sp = spool_open(dir);

	if (sp == NULL || spool_write(sp, msg->ptr, msg->len) < 0 || spool_finish(sp) < 0) {
		fprintf(stderr, "policy_bench: cannot write a spool file in %s: %s\n", dir,
			strerror(errno));
		exit(2);
	}
	return sp;
}

/*
 * one_message - one transaction through the policy, as a worker runs it
 *
 * The spool is lent: message_free() must not close it. With keep, the
 * outcome is copied to res before the message is freed.
 */
static void
one_message(struct policy *p, const struct config *cfg, const struct client *c,
	    struct spool *sp, struct result *res, bool keep)
{
	struct message *m = message_new();
	struct policy_input in = { m, c, "bench", cfg, NULL };	/* no scanners: the engine alone */
	char *error = NULL;

	m->sender = xstrdup("joerg.mueller@example.org");
	message_add_rcpt(m, "alice@example.com");
	message_add_rcpt(m, "bob@example.com");
	m->spool = sp;
	m->size = (long)spool_size(sp);
	if (policy_run(p, &in, &error) < 0) {
		fprintf(stderr, "policy_bench: %s: %s\n", policy_path(p), error);
		exit(1);
	}
	if (keep) {
		size_t len = 0;

		res->score = m->score;
		res->nhits = m->nhits;
		res->header_parsed = m->hdr != NULL;
		res->hits[0] = '\0';
		for (size_t i = 0; i < m->nhits && len < sizeof(res->hits); i++)
			len += (size_t)snprintf(res->hits + len, sizeof(res->hits) - len, "%s%s",
						i ? "," : "", m->hits[i].rule);
	}
	m->spool = NULL;
	message_free(m);
}

/* cmp_double - qsort order for doubles */
static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* bench_policy - load path, warm up, time count messages in batches */
static int
bench_policy(struct config *cfg, const char *path, long count, const struct client *c,
	     struct spool *sp, struct result *res)
{
	char *dir = xstrdup(path), *error = NULL;
	size_t nbatches = (size_t)((count + BATCH_MSGS - 1) / BATCH_MSGS), b = 0;
	double *batch_us = xreallocarray(NULL, nbatches, sizeof(*batch_us));
	struct policy *p;
	size_t heap0;
	double t0, t;

	memset(res, 0, sizeof(*res));
	res->path = path;
	res->count = count;
	free(cfg->policy_dir);			/* its own modules, if it has any */
	cfg->policy_dir = xstrdup(dirname(dir));
	free(dir);
	heap0 = heap_in_use();
	t0 = now_s();
	p = policy_load_file(cfg, path, &error);
	res->load_ms = (now_s() - t0) * 1e3;
	if (p == NULL) {
		fprintf(stderr, "policy_bench: %s\n", error);
		free(error);
		free(batch_us);
		return -1;
	}
	res->heap_load = heap_since(heap0);
	for (long i = 0; i < WARMUP_MSGS && i < count; i++)
		one_message(p, cfg, c, sp, res, false);
	t0 = now_s();
	for (long done = 0; done < count; b++) {
		long n = count - done < BATCH_MSGS ? count - done : BATCH_MSGS;
		double tb = now_s();

		for (long i = 0; i < n; i++)
			one_message(p, cfg, c, sp, res, done + i == count - 1);
		t = now_s();
		batch_us[b] = (t - tb) * 1e6 / (double)n;
		done += n;
	}
	res->total_s = now_s() - t0;
	res->mean_us = res->total_s * 1e6 / (double)count;
	qsort(batch_us, nbatches, sizeof(*batch_us), cmp_double);
	res->median_us = nbatches % 2 ? batch_us[nbatches / 2] :
	    (batch_us[nbatches / 2 - 1] + batch_us[nbatches / 2]) / 2;
	res->min_us = batch_us[0];
	res->heap_end = heap_since(heap0);
	policy_free(p);
	free(batch_us);
	return 0;
}

/*
 * source_dir - the source tree: $SRCDIR, else BENCH_SRCDIR (the Makefile's
 * $(abs_top_srcdir)), else two levels above this file as the compiler was
 * given it (relative when built by hand from the top of the tree).
 */
static char *
source_dir(void)
{
	const char *env = getenv("SRCDIR");
#ifndef BENCH_SRCDIR
	char *file, *top;
#endif

	if (env != NULL && *env != '\0')
		return xstrdup(env);
#ifdef BENCH_SRCDIR
	return xstrdup(BENCH_SRCDIR);
#else
	file = xstrdup(__FILE__);		/* ".../bench/policy_bench.c" */
	top = xasprintf("%s/..", dirname(file));
	free(file);
	return top;
#endif
}

/* usage - the synopsis, exit 2 */
static void __attribute__((noreturn))
usage(void)
{
	fprintf(stderr, "usage: policy_bench [-n COUNT] [-p POLICY]... [--lua-dir DIR]\n");
	exit(2);
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "lua-dir", required_argument, NULL, 'L' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *paths[MAX_POLICIES], *lua_dir = getenv("POSTERN_LUA_DIR");
	const char *tmp = getenv("TMPDIR");
	char *defaults[3] = { NULL }, *top = source_dir(), *end;
	struct result res[MAX_POLICIES];
	struct client c = { .port = 10025 };
	struct config *cfg;
	struct spool *sp;
	struct buf msg;
	size_t npaths = 0;
	long count = DEFAULT_COUNT;
	int ch, status = 0;

	while ((ch = getopt_long(argc, argv, "n:p:h", longopts, NULL)) != -1) {
		switch (ch) {
		case 'n':
			errno = 0;
			count = strtol(optarg, &end, 10);
			if (errno != 0 || *end != '\0' || count < 1)
				usage();
			break;
		case 'p':
			if (npaths == MAX_POLICIES)
				usage();
			paths[npaths++] = optarg;
			break;
		case 'L':
			lua_dir = optarg;
			break;
		default:
			usage();
		}
	}
	if (optind != argc)
		usage();
	if (npaths == 0) {
		defaults[0] = xasprintf("%s/bench/policies/empty.lua", top);
		defaults[1] = xasprintf("%s/policies/external.lua", top);
		defaults[2] = xasprintf("%s/bench/policies/twenty_rules.lua", top);
		for (int i = 0; i < 3; i++)
			paths[npaths++] = defaults[i];
	}

	cfg = config_defaults();
	free(cfg->lua_dir);
	cfg->lua_dir = lua_dir != NULL && *lua_dir != '\0' ? xstrdup(lua_dir) :
	    xasprintf("%s/lua", top);
	free(cfg->spool_dir);
	cfg->spool_dir = xstrdup(tmp != NULL && *tmp != '\0' ? tmp : "/tmp");

	/* the MTA on 127.0.0.1 relays for an Internet client (not in a bypass network) */
	snprintf(c.ip, sizeof(c.ip), "127.0.0.1");
	c.helo = xstrdup("mx1.example.com");
	c.xforward[XF_ADDR] = xstrdup("192.0.2.1");
	c.xforward[XF_NAME] = xstrdup("mail-relay.example.net");
	c.xforward[XF_HELO] = xstrdup("mail-relay.example.net");
	c.xforward[XF_PROTO] = xstrdup("ESMTP");

	buf_init(&msg, 0);
	build_message(&msg);
	sp = spool_message(cfg->spool_dir, &msg);

	printf("policy_bench: %ld messages of %lld bytes per policy (+%ld warm-up), "
	       "batches of %d, 2 recipients; lua_dir %s; spool in %s\n",
	       count, (long long)spool_size(sp), count < WARMUP_MSGS ? count : WARMUP_MSGS,
	       BATCH_MSGS, cfg->lua_dir,
	       cfg->spool_dir);
	fflush(stdout);
	for (size_t i = 0; i < npaths; i++)
		if (bench_policy(cfg, paths[i], count, &c, sp, &res[i]) < 0)
			status = 1;
	if (status != 0)
		goto out;

	printf("\n%-20s %8s %8s %9s %9s %9s %10s %8s %9s %9s\n", "policy", "messages", "total_s",
	       "mean_us", "median_us", "min_us", "+median_us", "load_ms", "heap_KiB", "heap_end");
	for (size_t i = 0; i < npaths; i++) {
		char *copy = xstrdup(res[i].path);

		printf("%-20s %8ld %8.3f %9.2f %9.2f %9.2f %10.2f %8.2f %9.1f %9.1f\n",
		       basename(copy), res[i].count, res[i].total_s, res[i].mean_us, res[i].median_us,
		       res[i].min_us, res[i].median_us - res[0].median_us, res[i].load_ms,
		       (double)res[i].heap_load / 1024, (double)res[i].heap_end / 1024);
		free(copy);
	}
	printf("\n+median_us: median minus the first policy's median (the rules' own cost when "
	       "the first is empty.lua)\nheap: malloc'ed bytes held after load / after the run "
	       "(Lua state, compiled patterns; approximate)\n\nlast message of each run:\n");
	for (size_t i = 0; i < npaths; i++)
		printf("  %s: header parsed %s, score %.2f, %zu hit(s)%s%s\n", res[i].path,
		       res[i].header_parsed ? "yes" : "no", res[i].score, res[i].nhits,
		       res[i].nhits ? ": " : "", res[i].hits);
out:
	spool_close(sp);
	buf_release(&msg);
	client_release(&c);
	config_free(cfg);
	for (int i = 0; i < 3; i++)
		free(defaults[i]);
	free(top);
	return status;
}
