/*
 * dotstuff_spec - DATA decoding and encoding, fed split at every byte boundary
 *
 * Each case is sent whole, then in two pieces at every possible split, then
 * one byte at a time: the decoder must give the same bytes and stop at the
 * same place whatever the split (Dovecot's test-message-parser habit).
 */
#include <stdlib.h>
#include <string.h>

#include "dotstuff.h"
#include "tap.h"

struct ucase {
	const char *name;
	const char *in;		/* what the client sends after 354 */
	const char *want;	/* what the spool must hold */
	long	consumed;	/* bytes up to and including the end line; -1: not ended */
};

static const struct ucase ucases[] = {
	{ "plain lines", "a\r\nb\r\n.\r\n", "a\r\nb\r\n", 9 },
	{ "empty message", ".\r\n", "", 3 },
	{ "stuffed dot is removed", "..x\r\n.\r\n", ".x\r\n", 8 },
	{ "line of two dots is one dot", "..\r\n.\r\n", ".\r\n", 7 },
	{ "dot inside a line stays", "a.b\r\n.\r\n", "a.b\r\n", 8 },
	{ "bare LF becomes CRLF", "a\nb\r\n.\r\n", "a\r\nb\r\n", 8 },
	{ "LF.CRLF after bare LF is not the end", "a\n.\r\nb\r\n.\r\n", "a\r\n.\r\nb\r\n", 11 },
	{ "LF.LF is not the end", "a\r\nx\n.\nb\r\n.\r\n", "a\r\nx\r\n.\r\nb\r\n", 13 },
	{ "bare CR is kept", "a\rb\r\n.\r\n", "a\rb\r\n", 8 },
	{ "CR CR LF", "a\r\r\n.\r\n", "a\r\r\n", 7 },
	{ "dot CR x at line start", ".\rx\r\n.\r\n", "\rx\r\n", 8 },
	{ "bytes after the end are not consumed", "a\r\n.\r\nQUIT\r\n", "a\r\n", 6 },
	{ "no end yet", "a\r\nb", "a\r\nb", -1 },
	{ "NUL and 8-bit bytes pass", "\x01\xc3\xa9\r\n.\r\n", "\x01\xc3\xa9\r\n", 8 },
};

/* decode - feed in as pieces of at most step bytes, split first at split */
static void
decode(const struct ucase *c, size_t split, size_t step, struct buf *out, long *consumed_r)
{
	struct unstuff u;
	size_t len = strlen(c->in), pos = 0;
	bool done = false;

	unstuff_init(&u);
	buf_reset(out);
	*consumed_r = -1;
	while (pos < len && !done) {
		size_t n = pos < split ? split - pos : step;

		if (n > len - pos)
			n = len - pos;
		pos += unstuff_feed(&u, c->in + pos, n, out, &done);
	}
	if (done)
		*consumed_r = (long)pos;
}

static void
check_case(const struct ucase *c)
{
	struct buf out;
	size_t len = strlen(c->in);
	long consumed;
	int bad = 0;

	buf_init(&out, 0);
	decode(c, len, len, &out, &consumed);
	is_str(buf_cstr(&out), c->want, "%s: whole", c->name);
	is_int(consumed, c->consumed, "%s: consumed", c->name);
	for (size_t split = 1; split < len; split++) {
		decode(c, split, len, &out, &consumed);
		if (strcmp(buf_cstr(&out), c->want) != 0 || consumed != c->consumed)
			bad++;
	}
	decode(c, 1, 1, &out, &consumed);
	if (strcmp(buf_cstr(&out), c->want) != 0 || consumed != c->consumed)
		bad++;
	is_int(bad, 0, "%s: same result at every split and byte by byte", c->name);
	buf_release(&out);
}

/* round_trip - stuff then unstuff gives back the spool bytes */
static void
round_trip(const char *name, const char *spool, const char *want_wire)
{
	struct stuff st;
	struct unstuff u;
	struct buf wire, back;
	bool done;
	size_t used;

	buf_init(&wire, 0);
	buf_init(&back, 0);
	stuff_init(&st);
	for (size_t i = 0; spool[i]; i++)	/* one byte at a time */
		stuff_feed(&st, spool + i, 1, &wire);
	stuff_end(&st, &wire);
	is_str(buf_cstr(&wire), want_wire, "stuff: %s", name);
	unstuff_init(&u);
	used = unstuff_feed(&u, wire.ptr, wire.len, &back, &done);
	ok(done && used == wire.len, "%s: unstuff reads to the end line", name);
	if (spool[0] && spool[strlen(spool) - 1] == '\n')
		is_str(buf_cstr(&back), spool, "%s: round trip gives the spool bytes back", name);
	buf_release(&wire);
	buf_release(&back);
}

static void
check_lfnorm(void)
{
	struct lfnorm n;
	struct buf out;
	const char *in = "a\nb\r\nc\r";

	buf_init(&out, 0);
	lfnorm_init(&n);
	for (size_t i = 0; in[i]; i++)
		lfnorm_feed(&n, in + i, 1, &out);
	lfnorm_feed(&n, "\n", 1, &out);
	is_str(buf_cstr(&out), "a\r\nb\r\nc\r\n", "BDAT: bare LF normalised, CRLF split across chunks kept");
	buf_release(&out);
}

int
main(void)
{
	for (size_t i = 0; i < sizeof(ucases) / sizeof(ucases[0]); i++)
		check_case(&ucases[i]);
	round_trip("leading dots doubled", "a\r\n.b\r\n..\r\n", "a\r\n..b\r\n...\r\n.\r\n");
	round_trip("missing final CRLF added", "no final newline", "no final newline\r\n.\r\n");
	round_trip("a lone dot line", ".\r\n", "..\r\n.\r\n");
	check_lfnorm();
	return done_testing();
}
