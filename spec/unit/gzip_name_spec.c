/*
 * gzip_name_spec - the FNAME of a gzip header (RFC 1952), and nothing else
 *
 * Headers are built here from the RFC's layout. Every prefix of each is
 * read from a heap copy of exactly that size, so that a cut header can only
 * lose the name (under the sanitizer build, any read past it is a failure).
 */
#include <stdlib.h>
#include <string.h>

#include "gzip_name.h"
#include "util/buf.h"
#include "tap.h"

#define FEXTRA	0x04
#define FNAME	0x08
#define FCOMMENT 0x10

/* a member: the fixed part with flags, then extra, name (with its NUL) and a body */
static void
gz_header(struct buf *b, unsigned flags, const char *extra, size_t extra_len, const char *name)
{
	unsigned char fixed[10] = { 0x1f, 0x8b, 8, (unsigned char)flags, 0, 0, 0, 0, 0, 3 };

	buf_init(b, 0);
	buf_append(b, (const char *)fixed, sizeof(fixed));
	if (flags & FEXTRA) {
		unsigned char xlen[2] = { extra_len & 0xff, extra_len >> 8 & 0xff };

		buf_append(b, (const char *)xlen, 2);
		buf_append(b, extra, extra_len);
	}
	if (name != NULL)
		buf_append(b, name, strlen(name) + 1);
	if (flags & FCOMMENT)
		buf_append(b, "a comment", 10);
	buf_append(b, "\x03\x00\x00\x00\x00\x00\x00\x00\x00\x00", 10);	/* empty deflate, CRC, ISIZE */
}

/* read_name - gzip_stored_name over an exact heap copy of p[0..len) */
static bool
read_name(const char *p, size_t len, char *out, size_t outsize)
{
	unsigned char *copy = malloc(len ? len : 1);
	bool found;

	memcpy(copy, p, len);
	found = gzip_stored_name(copy, len, out, outsize);
	free(copy);
	return found;
}

/* every_prefix - no cut of b yields anything but nothing, or the whole name */
static void
every_prefix(const struct buf *b, const char *want, const char *label)
{
	char out[256];
	size_t wrong = 0;

	for (size_t len = 0; len < b->len; len++)
		if (read_name(b->ptr, len, out, sizeof(out)) && strcmp(out, want) != 0)
			wrong++;
	is_int(wrong, 0, "%s: every prefix gives no name or the whole one", label);
}

int
main(void)
{
	struct buf b;
	char out[256];

	gz_header(&b, FNAME, NULL, 0, "invoice.exe");
	ok(read_name(b.ptr, b.len, out, sizeof(out)), "FNAME: found");
	is_str(out, "invoice.exe", "FNAME: the name as stored");
	every_prefix(&b, "invoice.exe", "FNAME");
	buf_release(&b);

	gz_header(&b, FEXTRA | FNAME | FCOMMENT, "AP\x04\x00wxyz", 8, "setup.scr");
	ok(read_name(b.ptr, b.len, out, sizeof(out)), "FEXTRA before FNAME: found");
	is_str(out, "setup.scr", "FEXTRA before FNAME: skipped by its length");
	every_prefix(&b, "setup.scr", "FEXTRA");
	buf_release(&b);

	gz_header(&b, FNAME, NULL, 0, "caf\xe9 \xbd.exe");
	ok(read_name(b.ptr, b.len, out, sizeof(out)), "ISO 8859-1 name: found");
	is_str(out, "caf\xc3\xa9 \xc2\xbd.exe", "ISO 8859-1 name: given as UTF-8");
	buf_release(&b);

	gz_header(&b, FNAME, NULL, 0, "long-name.exe");
	ok(read_name(b.ptr, b.len, out, 5), "a name longer than the room: found");
	is_str(out, "long", "... and cut to fit, NUL included");
	buf_release(&b);
	gz_header(&b, FNAME, NULL, 0, "a\xe9");
	ok(read_name(b.ptr, b.len, out, 3), "a cut never splits a character: found");
	is_str(out, "a", "... the two bytes of U+00E9 did not fit beside the NUL");
	ok(!read_name(b.ptr, b.len, out, 1), "no room for one character: nothing");
	buf_release(&b);

	gz_header(&b, 0, NULL, 0, NULL);
	ok(!read_name(b.ptr, b.len, out, sizeof(out)), "no FNAME flag: nothing");
	buf_release(&b);
	gz_header(&b, FNAME, NULL, 0, "");
	ok(!read_name(b.ptr, b.len, out, sizeof(out)), "an empty name: nothing");
	buf_release(&b);
	gz_header(&b, FNAME | 0x20, NULL, 0, "x.exe");
	ok(!read_name(b.ptr, b.len, out, sizeof(out)), "a reserved flag bit set (gzip refuses it): nothing");
	buf_release(&b);

	gz_header(&b, FNAME, NULL, 0, "x.exe");
	b.ptr[2] = 7;
	ok(!read_name(b.ptr, b.len, out, sizeof(out)), "a method other than deflate: nothing");
	b.ptr[2] = 8;
	b.ptr[1] = 0x8c;
	ok(!read_name(b.ptr, b.len, out, sizeof(out)), "no gzip magic: nothing");
	buf_release(&b);

	gz_header(&b, FEXTRA | FNAME, "abc", 3, "x.exe");
	b.ptr[10] = (char)0xff;	/* XLEN 65283: past the end */
	b.ptr[11] = (char)0xfe;
	ok(!read_name(b.ptr, b.len, out, sizeof(out)), "FEXTRA longer than the data: nothing");
	buf_release(&b);

	buf_init(&b, 0);	/* the flag, but the name's bytes never end */
	buf_append(&b, "\x1f\x8b\x08\x08\0\0\0\0\0\x03unterminated", 22);
	ok(!read_name(b.ptr, b.len, out, sizeof(out)), "a name without its NUL: nothing");
	buf_release(&b);
	return done_testing();
}
