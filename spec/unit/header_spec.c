/*
 * header_spec - the header block: fields, folds, damage, lookup and RFC 2047 decoding
 *
 * header_read() cases are written to a nameless temp file and read back:
 * once as they are, then behind a filler field sized so that the 64 KiB
 * read window of header_read() ends at every byte of the case in turn (the
 * file-reading form of Dovecot's test_istream_set_size). The result must not
 * depend on where a read ends. header_decode() results are checked to be
 * valid UTF-8, and random inputs are thrown at both parsers.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "header.h"
#include "util/buf.h"
#include "util/xalloc.h"
#include "tap.h"
#include "fixture.h"

#define READ_WINDOW	(64 * 1024)	/* header.c's HEADER_READ_SIZE */

/* render - fields from index `from` as "Name=value|Name=value" */
static const char *
render(struct buf *out, const struct header_block *hb, size_t from)
{
	buf_reset(out);
	for (size_t i = from; i < hb->nfields; i++) {
		const struct header_field *f = &hb->fields[i];

		if (i > from)
			buf_appends(out, "|");
		escape(out, f->name, f->name_len);
		buf_appends(out, "=");
		escape(out, f->value, f->value_len);
		/* the raw span must be the field itself */
		if (hb->raw + f->raw_off != f->name ||
		    f->value + f->value_len > hb->raw + f->raw_off + f->raw_len)
			buf_appends(out, "<bad span>");
	}
	return buf_cstr(out);
}

struct rcase {
	const char *name;
	const char *in;		/* the spool file */
	size_t	in_len;		/* its length; 0: strlen(in) */
	size_t	limit;		/* header_read()'s limit */
	const char *want;	/* the fields, rendered */
	const char *body;	/* what follows body_off */
	const char *broken;	/* broken_reason, or NULL */
};

static const struct rcase rcases[] = {
	{ "two fields and a body", "From: a\r\nTo: b\r\n\r\nbody\r\n", 0, 4096,
	  "From= a|To= b", "body\r\n", NULL },
	{ "folded field", "Subject: a\r\n b\r\n\tc\r\nX: y\r\n\r\n", 0, 4096,
	  "Subject= a\\r\\n b\\r\\n\tc|X= y", "", NULL },
	{ "empty header: the file starts with CRLF", "\r\nbody", 0, 4096, "", "body", NULL },
	{ "empty file", "", 0, 4096, "", "", NULL },
	{ "no empty line: all header", "A: 1\r\nB: 2\r\n", 0, 4096, "A= 1|B= 2", "", NULL },
	{ "no empty line, cut inside a line", "A: 1\r\nB: 2", 0, 4096, "A= 1|B= 2", "",
	  "header ends inside a line" },
	{ "a line that is not a field is skipped with its continuation",
	  "A: 1\r\nthis is junk\r\n  more junk\r\nB: 2\r\n\r\n", 0, 4096, "A= 1|B= 2", "",
	  "header line is not a field" },
	{ "space before the colon is not a field", "Subject : x\r\nA: 1\r\n\r\n", 0, 4096,
	  "A= 1", "", "header line is not a field" },
	{ "empty name is not a field", ": x\r\nA: 1\r\n\r\n", 0, 4096, "A= 1", "",
	  "header line is not a field" },
	{ "mbox From_ line is not a field", "From a@b Mon Jan  1 00:00:00 2024\r\nA: 1\r\n\r\nb", 0, 4096,
	  "A= 1", "b", "header line is not a field" },
	{ "continuation line before any field", " x\r\nA: 1\r\n\r\n", 0, 4096, "A= 1", "",
	  "header continuation line without a field" },
	{ "header over the limit keeps whole lines, finds the body",
	  "A: 1\r\nB: 2222222222\r\nC: 3\r\n\r\nbody", 0, 12, "A= 1", "body", "header too long" },
	{ "one line over the limit keeps nothing", "Subject: 0123456789\r\n\r\nbody", 0, 8, "", "body",
	  "header too long" },
	{ "header of exactly the limit", "A: 1\r\n\r\nX", 0, 6, "A= 1", "X", NULL },
	{ "over the limit without an empty line", "A: 1\r\nB: 2\r\n", 0, 7, "A= 1", "",
	  "header too long" },
	{ "colon inside the value", "A: b:c\r\n\r\n", 0, 4096, "A= b:c", "", NULL },
	{ "empty value", "A:\r\nB:x\r\n\r\n", 0, 4096, "A=|B=x", "", NULL },
	{ "NUL and 8-bit bytes in a value", "A: x\0y\xe9\r\n\r\nbody", 15, 4096,
	  "A= x\\0y\\xe9", "body", NULL },
	{ "bare CR inside a line", "A: x\ry\r\n\r\nb", 0, 4096, "A= x\\ry", "b", NULL },
	{ "CR line that is not empty", "A: 1\r\n\rB\r\n\r\nb", 0, 4096, "A= 1", "b",
	  "header line is not a field" },
	{ "only the first empty line ends the header", "A: 1\r\n\r\n\r\nB: 2\r\n", 0, 4096, "A= 1",
	  "\r\nB: 2\r\n", NULL },
	{ "duplicate fields kept in order", "Received: a\r\nReceived: b\r\n\r\n", 0, 4096,
	  "Received= a|Received= b", "", NULL },
};

/* read_case - write the filler and the case, header_read() it */
static int
read_case(const struct rcase *c, size_t filler_len, struct header_block *hb, struct buf *file)
{
	size_t len = c->in_len ? c->in_len : strlen(c->in);
	int fd, rc;

	buf_reset(file);
	if (filler_len > 0) {
		buf_appends(file, "X-Fill: ");
		while (file->len < filler_len - 2)
			buf_append(file, "f", 1);
		buf_appends(file, "\r\n");
	}
	buf_append(file, c->in, len);
	fd = temp_file(file->ptr, file->len);
	rc = header_read(hb, fd, c->limit + filler_len);
	close(fd);
	return rc;
}

/* check_read_case - one header_read() case, whole and at every read split */
static void
check_read_case(const struct rcase *c)
{
	struct header_block hb;
	struct buf out, file;
	size_t len = c->in_len ? c->in_len : strlen(c->in);
	int bad = 0;
	const char *body;

	buf_init(&out, 0);
	buf_init(&file, 0);
	is_int(read_case(c, 0, &hb, &file), 0, "%s: header_read succeeds", c->name);
	is_str(render(&out, &hb, 0), c->want, "%s: fields", c->name);
	body = file.ptr + hb.body_off;
	if (!ok((size_t)hb.body_off <= file.len &&
		file.len - (size_t)hb.body_off == strlen(c->body) &&
		memcmp(body, c->body, strlen(c->body)) == 0, "%s: body_off", c->name))
		printf("# got body at %lld of %zu, want \"%s\"\n", (long long)hb.body_off, file.len, c->body);
	if (c->broken)
		is_str(hb.broken_reason, c->broken, "%s: broken_reason", c->name);
	else
		ok(hb.broken_reason == NULL, "%s: well formed (got %s)", c->name,
		   hb.broken_reason ? hb.broken_reason : "NULL");
	header_release(&hb);

	if (c->in[0] == ' ' || c->in[0] == '\t')
		goto done;	/* a filler field would take the continuation line */
	/* the read window ends at every byte of the case, and in the filler's CRLF */
	for (size_t j = 0; j <= len + 2; j++) {
		size_t filler_len = READ_WINDOW + 2 - j;

		read_case(c, filler_len, &hb, &file);
		if (hb.nfields < 1 || strcmp(render(&out, &hb, 1), c->want) != 0 ||
		    file.len - (size_t)hb.body_off != strlen(c->body) ||
		    (c->broken ? hb.broken_reason == NULL || strcmp(hb.broken_reason, c->broken) != 0
			       : hb.broken_reason != NULL)) {
			if (bad++ == 0)
				printf("# window ends %zu bytes before the case: got \"%s\"\n", filler_len - READ_WINDOW,
				       buf_cstr(&out));
		}
		header_release(&hb);
	}
	is_int(bad, 0, "%s: same result wherever a read ends", c->name);
done:
	buf_release(&out);
	buf_release(&file);
}

/* check_parse - header_parse() on memory agrees with header_read() */
static void
check_parse(void)
{
	struct header_block hb;
	struct buf out;

	buf_init(&out, 0);
	header_parse(&hb, "Subject: a\r\n b\r\nX: y\r\n", 22, true);
	is_str(render(&out, &hb, 0), "Subject= a\\r\\n b|X= y", "header_parse: fields");
	is_int(hb.body_off, 24, "header_parse: body_off after the empty line");
	ok(hb.broken_reason == NULL, "header_parse: well formed");
	header_release(&hb);
	header_parse(&hb, "A: 1\nB: 2", 9, false);
	is_str(render(&out, &hb, 0), "A= 1|B= 2", "header_parse: bare LF ends a line");
	is_str(hb.broken_reason, "header ends inside a line", "header_parse: cut inside a line");
	header_release(&hb);
	header_parse(&hb, NULL, 0, false);
	is_int(hb.nfields, 0, "header_parse: nothing");
	ok(hb.raw != NULL && hb.raw[0] == '\0', "header_parse: raw is a string even when empty");
	header_release(&hb);
	header_release(&hb);	/* twice is harmless */
	buf_release(&out);
}

/* check_find - duplicate fields, nth lookup, names without case */
static void
check_find(void)
{
	static const char text[] = "Received: a\r\nSUBJECT: s\r\nreceived: b\r\nX: c\r\nReceived: d\r\n";
	struct header_block hb;
	const struct header_field *f;
	const char *want[] = { " a", " b", " d" };

	header_parse(&hb, text, sizeof(text) - 1, true);
	for (size_t i = 0; i < 3; i++) {
		char *v;

		f = header_find(&hb, "Received", i);
		if (!ok(f != NULL, "Received #%zu found", i))
			continue;
		v = xstrndup(f->value, f->value_len);
		is_str(v, want[i], "Received #%zu value", i);
		free(v);
	}
	ok(header_find(&hb, "Received", 3) == NULL, "no fourth Received");
	f = header_find(&hb, "subject", 0);
	ok(f != NULL && f->value_len == 2 && memcmp(f->value, " s", 2) == 0, "subject finds SUBJECT");
	ok(header_find(&hb, "Subj", 0) == NULL, "a prefix is not the name");
	ok(header_find(&hb, "Subjectx", 0) == NULL, "a longer name is not the name");
	ok(f != NULL && header_name_is(f, "SuBjEcT") && !header_name_is(f, "Subject:"),
	   "header_name_is ignores case only");
	header_release(&hb);
}

struct scase {
	const char *name;
	const char *in;		/* a raw value */
	size_t	in_len;		/* its length; 0: strlen(in) */
	const char *want;	/* the result */
};

static const struct scase unfold_cases[] = {
	{ "fold and trim", " a\r\n b ", 0, "a b" },
	{ "tabs kept inside, trimmed outside", "\t x\r\n\ty\r\n z\t", 0, "x\ty z" },
	{ "NUL becomes a space", "a\0b", 3, "a b" },
	{ "empty", "", 0, "" },
	{ "only whitespace", " \t \r\n ", 0, "" },
	{ "bare CR kept", " a\rb", 0, "a\rb" },
};

static const struct scase decode_cases[] = {
	{ "plain text", " Hello world ", 0, "Hello world" },
	{ "B in utf-8", " =?utf-8?B?w6k=?=", 0, "\xc3\xa9" },
	{ "Q in UTF-8, upper case q", " =?UTF-8?q?caf=C3=A9?=", 0, "caf\xc3\xa9" },
	{ "Q underscore is a space", " =?utf-8?Q?a_b?=", 0, "a b" },
	{ "Q in iso-8859-1", " =?iso-8859-1?q?caf=E9?=", 0, "caf\xc3\xa9" },
	{ "B in ISO-8859-1", " =?ISO-8859-1?B?Y2Fm6Q==?=", 0, "caf\xc3\xa9" },
	{ "Q in windows-1252: the euro sign", " =?windows-1252?Q?=80_5?=", 0, "\xe2\x82\xac 5" },
	{ "space inside a B word", " =?Windows-1252?b?k2hpk w==?=", 0, "=?Windows-1252?b?k2hpk w==?=" },
	{ "B in windows-1252, curly quotes", " =?windows-1252?b?k2hplA==?=", 0,
	  "\xe2\x80\x9chi\xe2\x80\x9d" },
	{ "adjacent words joined without the space", " =?utf-8?q?a?= =?utf-8?q?b?=", 0, "ab" },
	{ "adjacent words across a fold", " =?utf-8?q?a?=\r\n =?utf-8?q?b?=", 0, "ab" },
	{ "adjacent words with no space at all", " =?utf-8?q?a?==?utf-8?q?b?=", 0, "ab" },
	{ "text between words keeps its spaces", " =?utf-8?q?a?= x =?utf-8?q?b?=", 0, "a x b" },
	{ "text before and after", " Re: =?utf-8?q?caf=C3=A9?= ok", 0, "Re: caf\xc3\xa9 ok" },
	{ "a character split across two B words", " =?utf-8?B?ww==?= =?utf-8?B?qQ==?=", 0, "\xc3\xa9" },
	{ "adjacent words in two charsets", " =?iso-8859-1?q?=E9?= =?utf-8?q?=C3=A9?=", 0,
	  "\xc3\xa9\xc3\xa9" },
	{ "RFC 2231 language suffix", " =?utf-8*en?q?hi?=", 0, "hi" },
	{ "unpadded B", " =?utf-8?b?aGk?=", 0, "hi" },
	{ "word inside text is decoded", " x=?utf-8?q?y?=z", 0, "xyz" },
	{ "unknown charset: decoded, its bytes taken as raw text", " =?x-nonsense?q?abc?=", 0, "abc" },
	{ "unknown charset: a hidden file name shows", " =?X-NOPE?B?ZXZpbC5leGU=?=", 0, "evil.exe" },
	{ "unknown charset: 8-bit bytes as ISO-8859-1", " =?x-nonsense?q?caf=E9?=", 0, "caf\xc3\xa9" },
	{ "unknown charset: UTF-8 bytes kept", " =?x-nonsense?q?caf=C3=A9?=", 0, "caf\xc3\xa9" },
	{ "unknown charset after a known one: no space between words", " =?utf-8?q?a?= =?x-nonsense?q?b?=",
	  0, "ab" },
	{ "unterminated word", " =?utf-8?q?abc", 0, "=?utf-8?q?abc" },
	{ "unknown encoding letter", " =?utf-8?x?abc?=", 0, "=?utf-8?x?abc?=" },
	{ "B with bad digits", " =?utf-8?b?@@@@?=", 0, "=?utf-8?b?@@@@?=" },
	{ "B with one digit left over", " =?utf-8?b?aGlha?=", 0, "=?utf-8?b?aGlha?=" },
	{ "space inside a word", " =?utf-8?q?a b?=", 0, "=?utf-8?q?a b?=" },
	{ "empty charset", " =??q?a?=", 0, "=??q?a?=" },
	{ "charset with a slash", " =?utf-8//x?q?a?=", 0, "=?utf-8//x?q?a?=" },
	{ "Q with a bad escape keeps the '='", " =?utf-8?q?a=ZZb=?=", 0, "a=ZZb=" },
	{ "empty encoded text", " a =?utf-8?q?" "?= b", 0, "a  b" },
	{ "invalid UTF-8 from a word becomes U+FFFD", " =?utf-8?q?a=FFb?=", 0, "a\xef\xbf\xbd" "b" },
	{ "surrogate from a word becomes U+FFFD", " =?utf-8?q?=ED=A0=80?=", 0,
	  "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd" },
	{ "8-bit in us-ascii word becomes U+FFFD", " =?us-ascii?q?=E9?=", 0, "\xef\xbf\xbd" },
	{ "NUL from a word becomes a space", " =?us-ascii?q?a=00b?=", 0, "a b" },
	{ "CRLF from a word becomes spaces", " =?utf-8?b?YQ0KYg==?=", 0, "a  b" },
	{ "raw UTF-8 kept", " caf\xc3\xa9", 0, "caf\xc3\xa9" },
	{ "raw 8-bit read as latin-1", " caf\xe9", 0, "caf\xc3\xa9" },
	{ "raw 0xff read as latin-1", " \xff", 0, "\xc3\xbf" },
	{ "raw truncated UTF-8 read as latin-1", " \xc3", 0, "\xc3\x83" },
	{ "raw NUL becomes a space", " a\0b", 4, "a b" },
	{ "iso-2022-jp (stateful)", " =?iso-2022-jp?B?GyRCJDMkcyRLJEEkTxsoQg==?=", 0,
	  "\xe3\x81\x93\xe3\x82\x93\xe3\x81\xab\xe3\x81\xa1\xe3\x81\xaf" },
	{ "incomplete sequence in a multibyte charset", " =?utf-16be?b?AGEA?=", 0, "a\xef\xbf\xbd" },
};

/* utf8_is_valid - the spec's own validator, written apart from header.c's */
static int
utf8_is_valid(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;

	while (*p) {
		uint32_t cp;
		int n;

		if (*p < 0x80) {
			p++;
			continue;
		} else if ((*p & 0xe0) == 0xc0) {
			cp = *p & 0x1f;
			n = 1;
		} else if ((*p & 0xf0) == 0xe0) {
			cp = *p & 0x0f;
			n = 2;
		} else if ((*p & 0xf8) == 0xf0) {
			cp = *p & 0x07;
			n = 3;
		} else
			return 0;
		p++;
		for (int i = 0; i < n; i++, p++) {
			if ((*p & 0xc0) != 0x80)
				return 0;
			cp = cp << 6 | (*p & 0x3f);
		}
		if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
		    cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return 0;
	}
	return 1;
}

/* check_strings - the unfold and decode tables, every result valid UTF-8 */
static void
check_strings(void)
{
	for (size_t i = 0; i < sizeof(unfold_cases) / sizeof(unfold_cases[0]); i++) {
		const struct scase *c = &unfold_cases[i];
		char *got = header_unfold(c->in, c->in_len ? c->in_len : strlen(c->in));

		is_str(got, c->want, "unfold: %s", c->name);
		free(got);
	}
	for (size_t i = 0; i < sizeof(decode_cases) / sizeof(decode_cases[0]); i++) {
		const struct scase *c = &decode_cases[i];
		char *got = header_decode(c->in, c->in_len ? c->in_len : strlen(c->in));

		is_str(got, c->want, "decode: %s", c->name);
		ok(utf8_is_valid(got), "decode: %s: valid UTF-8", c->name);
		free(got);
	}
}

/* check_to_utf8 - the RFC 2231 helper */
static void
check_to_utf8(void)
{
	char *got;

	got = header_to_utf8("ISO-8859-1", "caf\xe9", 4);
	is_str(got, "caf\xc3\xa9", "to_utf8: latin-1");
	free(got);
	got = header_to_utf8("utf-8", "a\xff", 2);
	is_str(got, "a\xef\xbf\xbd", "to_utf8: bad UTF-8 replaced");
	free(got);
	got = header_to_utf8(NULL, "caf\xe9 \xc3\xa9", 7);
	is_str(got, "caf\xc3\xa9 \xc3\xa9", "to_utf8: no charset: UTF-8 kept, the rest latin-1");
	free(got);
	got = header_to_utf8("x-nonsense", "a\0b", 3);
	is_str(got, "a b", "to_utf8: unknown charset, NUL as space");
	free(got);
}

/* lcg - a fixed sequence of pseudo-random numbers, the same on every run */
static uint32_t
lcg(uint32_t *state)
{
	*state = *state * 1103515245u + 12345u;
	return *state >> 8;
}

/*
 * check_random - hostile noise: no crash, valid UTF-8, bounded output
 *
 * The inputs are drawn from pieces that make encoded-words, folds and
 * 8-bit bytes likely, so most of them reach deep into the decoder.
 */
static void
check_random(void)
{
	static const char *pieces[] = {
		"=?", "?=", "?", "=", "utf-8", "iso-8859-1", "windows-1252", "utf-16", "iso-2022-jp",
		"x-bad", "*en", "?q?", "?B?", "?b?", "_", "=E9", "=C3", "=A9", "=ZZ", "w6k", "==", "AGE",
		"GyRC", " ", "\t", "\r\n ", "\r\n", "\n", "\0", "\x80", "\xc3", "\xa9", "\xff", "\xed\xa0",
		"abc", ":", "Subject: ", "\r\n\r\n",
	};
	uint32_t seed = 20240601;
	struct buf in;
	int bad_utf8 = 0, too_long = 0;
	size_t npieces = sizeof(pieces) / sizeof(pieces[0]);

	buf_init(&in, 0);
	for (int round = 0; round < 20000; round++) {
		size_t n = lcg(&seed) % 40;
		struct header_block hb;
		char *got;

		buf_reset(&in);
		for (size_t i = 0; i < n; i++) {
			const char *p = pieces[lcg(&seed) % npieces];

			buf_append(&in, p, p[0] ? strlen(p) : 1);
		}
		got = header_decode(in.ptr ? in.ptr : "", in.len);
		if (!utf8_is_valid(got))
			bad_utf8++;
		if (strlen(got) > 4 * in.len + 64)
			too_long++;
		free(got);
		header_parse(&hb, in.ptr, in.len, round & 1);
		for (size_t i = 0; i < hb.nfields; i++) {
			char *v = header_decode(hb.fields[i].value, hb.fields[i].value_len);

			if (!utf8_is_valid(v))
				bad_utf8++;
			free(v);
		}
		header_release(&hb);
	}
	is_int(bad_utf8, 0, "random input: every decode is valid UTF-8");
	is_int(too_long, 0, "random input: every decode within 4x + 64 bytes");
	buf_release(&in);
}

/* check_bound - a long value of expanding words is cut at a character */
static void
check_bound(void)
{
	struct buf in;
	char *got;

	buf_init(&in, 0);
	for (int i = 0; i < 2000; i++)
		buf_appends(&in, "=?windows-1252?q?=80=80=80=80=80=80?=");
	got = header_decode(in.ptr, in.len);
	ok(strlen(got) == 2000 * 6 * 3, "many words: all decoded (got %zu bytes)", strlen(got));
	ok(utf8_is_valid(got), "many words: valid UTF-8");
	free(got);
	buf_release(&in);
}

int
main(void)
{
	for (size_t i = 0; i < sizeof(rcases) / sizeof(rcases[0]); i++)
		check_read_case(&rcases[i]);
	check_parse();
	check_find();
	check_strings();
	check_to_utf8();
	check_bound();
	check_random();
	return done_testing();
}
