/*
 * rar_spec - member names from RAR 1.5-4.x and RAR 5 headers, and nothing else
 *
 * The archives are built here, block by block, from the published layouts
 * (CRCs left zero: rar_list does not check them). Every prefix of each
 * archive is listed too, so that a truncated header can only shorten the
 * list (under the sanitizer build, any read past the buffer is a failure).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rar.h"
#include "util/buf.h"
#include "put_le.h"
#include "tap.h"

struct listing {
	char	names[8][64];
	unsigned long long sizes[8];
	bool	encrypted[8];
	int	n;
};

static void
collect(const char *name, size_t len, uint64_t size, bool encrypted, void *arg)
{
	struct listing *l = arg;

	if (l->n < 8) {
		snprintf(l->names[l->n], sizeof(l->names[0]), "%.*s", (int)len, name);
		l->sizes[l->n] = size;
		l->encrypted[l->n] = encrypted;
	}
	l->n++;
}

static int
list(const struct buf *b, struct listing *l)
{
	memset(l, 0, sizeof(*l));
	return rar_list((const unsigned char *)b->ptr, b->len, collect, l);
}

/* ---------------------------------------------------------------- RAR 1.5-4.x */

static void
r4_start(struct buf *b, unsigned main_flags)
{
	buf_append(b, "Rar!\x1a\x07\x00", 7);
	put16(b, 0);			/* HEAD_CRC */
	buf_append(b, "\x73", 1);	/* main header */
	put16(b, main_flags);
	put16(b, 13);			/* 7 + RESERVED1 (2) + RESERVED2 (4) */
	put16(b, 0);
	put32(b, 0);
}

/* a file block: flags beyond LONG_BLOCK as given, the data stored after it */
static void
r4_file(struct buf *b, unsigned flags, const char *name, size_t name_len, const char *data,
	size_t data_len, bool large)
{
	size_t hsize = 32 + (large ? 8 : 0) + name_len;

	put16(b, 0);
	buf_append(b, "\x74", 1);
	put16(b, flags | 0x8000 | (large ? 0x100 : 0));
	put16(b, (unsigned)hsize);
	put32(b, (unsigned long)data_len);	/* PACK_SIZE */
	put32(b, (unsigned long)data_len);	/* UNP_SIZE */
	buf_append(b, "\x02", 1);		/* HOST_OS */
	put32(b, 0);				/* FILE_CRC */
	put32(b, 0);				/* FTIME */
	buf_append(b, "\x1d\x30", 2);		/* UNP_VER 2.9, METHOD store */
	put16(b, (unsigned)name_len);
	put32(b, 0x20);				/* ATTR */
	if (large) {
		put32(b, 0);
		put32(b, 1);			/* HIGH_UNP_SIZE: 4 GiB more */
	}
	buf_append(b, name, name_len);
	buf_append(b, data, data_len);
}

static void
r4_end(struct buf *b)
{
	put16(b, 0);
	buf_append(b, "\x7b", 1);
	put16(b, 0x4000);
	put16(b, 7);
}

/* ---------------------------------------------------------------- RAR 5 */

static void
vint(struct buf *b, unsigned long long v)
{
	do {
		unsigned char c = v & 0x7f;

		v >>= 7;
		if (v)
			c |= 0x80;
		buf_append(b, (const char *)&c, 1);
	} while (v);
}

/* a header: CRC32, size, then the fields in body */
static void
r5_header(struct buf *b, const struct buf *body)
{
	put32(b, 0);
	vint(b, body->len);
	buf_append(b, body->ptr, body->len);
}

static void
r5_start(struct buf *b)
{
	struct buf h;

	buf_init(&h, 0);
	buf_append(b, "Rar!\x1a\x07\x01\x00", 8);
	vint(&h, 1);		/* main archive header */
	vint(&h, 0);		/* header flags */
	vint(&h, 0);		/* archive flags */
	r5_header(b, &h);
	buf_release(&h);
}

static void
r5_file(struct buf *b, unsigned file_flags, const char *name, const char *data, bool encrypted)
{
	struct buf h, extra;

	buf_init(&h, 0);
	buf_init(&extra, 0);
	if (encrypted) {		/* one extra record: size, type 1 (encryption), a few bytes */
		vint(&extra, 3);
		vint(&extra, 1);
		buf_append(&extra, "\x00\x00", 2);
	}
	vint(&h, 2);			/* file header */
	vint(&h, 0x0002 | (encrypted ? 0x0001 : 0));	/* data area, extra area */
	if (encrypted)
		vint(&h, extra.len);
	vint(&h, strlen(data));		/* data size */
	vint(&h, file_flags);
	vint(&h, strlen(data));		/* unpacked size */
	vint(&h, 0x20);			/* attributes */
	if (file_flags & 0x0002)
		buf_append(&h, "\x00\x5e\x9e\x65", 4);	/* mtime */
	if (file_flags & 0x0004)
		buf_append(&h, "\x12\x34\x56\x78", 4);	/* CRC32 of the data */
	vint(&h, 0);			/* compression: stored */
	vint(&h, 0);			/* host OS */
	vint(&h, strlen(name));
	buf_appends(&h, name);
	buf_append(&h, extra.ptr, extra.len);
	r5_header(b, &h);
	buf_appends(b, data);
	buf_release(&h);
	buf_release(&extra);
}

static void
r5_simple(struct buf *b, unsigned type)
{
	struct buf h;

	buf_init(&h, 0);
	vint(&h, type);
	vint(&h, 0);
	vint(&h, 0);
	r5_header(b, &h);
	buf_release(&h);
}

/* every_prefix - each shorter buffer lists no more than the whole, and no other names */
static void
every_prefix(const char *what, const struct buf *b, int whole)
{
	bool fine = true;

	for (size_t len = 0; len < b->len; len++) {
		/* a copy of exactly len bytes: the sanitizer sees any read past it */
		unsigned char *part = malloc(len ? len : 1);
		struct listing l;
		int n;

		memcpy(part, b->ptr, len);
		memset(&l, 0, sizeof(l));
		n = rar_list(part, len, collect, &l);
		free(part);

		if (n > whole || (n < 0 && n != RAR_NOT_RAR)) {
			printf("# prefix of %zu bytes: %d\n", len, n);
			fine = false;
		}
	}
	ok(fine, "%s: every prefix lists at most the %d names, nothing else", what, whole);
}

int
main(void)
{
	struct buf b;
	struct listing l;
	int n;

	buf_init(&b, 0);
	r4_start(&b, 0);
	r4_file(&b, 0, "readme.txt", 10, "read me\r\n", 9, false);
	r4_file(&b, 0x00e0, "tools", 5, "", 0, false);			/* a directory */
	r4_file(&b, 0x0200, "tools\\setup.exe\0\x01\x02", 18, "MZ fake", 7, false);	/* Unicode name */
	r4_file(&b, 0x0004, "secret.doc", 10, "xxxxxxxx", 8, false);	/* encrypted */
	r4_file(&b, 0, "big.iso", 7, "", 0, true);			/* 64-bit sizes */
	r4_end(&b);
	n = list(&b, &l);
	is_int(n, 4, "RAR 4: four files, the directory left out");
	is_str(l.names[0], "readme.txt", "RAR 4: first name");
	is_int((long long)l.sizes[0], 9, "RAR 4: its unpacked size");
	is_str(l.names[1], "tools\\setup.exe", "RAR 4: a Unicode-flagged name up to its NUL");
	ok(!l.encrypted[1] && l.encrypted[2], "RAR 4: the encrypted file is marked, the others not");
	is_str(l.names[3], "big.iso", "RAR 4: a file with 64-bit sizes");
	is_int((long long)l.sizes[3], (long long)(1ULL << 32), "RAR 4: its high size word counts");
	every_prefix("RAR 4", &b, 4);

	buf_reset(&b);
	r4_start(&b, 0x0080);
	r4_file(&b, 0, "hidden.exe", 10, "x", 1, false);
	is_int(list(&b, &l), RAR_HEADERS_ENCRYPTED, "RAR 4 with encrypted headers: says so");

	buf_reset(&b);
	r4_start(&b, 0);
	r4_file(&b, 0, "ok.txt", 6, "fine", 4, false);
	put16(&b, 0);					/* a file block claiming a huge name */
	buf_append(&b, "\x74", 1);
	put16(&b, 0x8000);
	put16(&b, 40);
	buf_append(&b, "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\xff\xff\0\0\0\0\0\0\0\0\0\0\0\0", 33);
	n = list(&b, &l);
	ok(n == 1 && strcmp(l.names[0], "ok.txt") == 0,
	   "RAR 4: a header whose name would run past it ends the walk (got %d)", n);

	buf_reset(&b);
	r5_start(&b);
	r5_file(&b, 0, "docs/readme.txt", "read me\n", false);
	r5_file(&b, 0x0001, "docs", "", false);			/* a directory */
	r5_file(&b, 0x0004 | 0x0002, "docs/run.js", "", false);	/* CRC32 and mtime present */
	r5_file(&b, 0, "vault.kdbx", "xx", true);
	r5_simple(&b, 5);					/* end of archive */
	n = list(&b, &l);
	is_int(n, 3, "RAR 5: three files, the directory left out");
	is_str(l.names[0], "docs/readme.txt", "RAR 5: first name");
	is_int((long long)l.sizes[0], 8, "RAR 5: its unpacked size");
	is_str(l.names[1], "docs/run.js", "RAR 5: a name after the optional mtime and CRC32");
	ok(l.encrypted[2] && !l.encrypted[0], "RAR 5: a file with an encryption record is marked");
	every_prefix("RAR 5", &b, 3);

	buf_reset(&b);
	r5_start(&b);
	r5_simple(&b, 4);					/* archive encryption header */
	r5_file(&b, 0, "hidden.exe", "x", false);
	is_int(list(&b, &l), RAR_HEADERS_ENCRYPTED, "RAR 5 with encrypted headers: says so");

	buf_reset(&b);
	r5_start(&b);
	buf_append(&b, "\0\0\0\0\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", 15);	/* runaway vint */
	is_int(list(&b, &l), 0, "RAR 5: a malformed size ends the walk with nothing");

	buf_reset(&b);
	buf_appends(&b, "PK\x03\x04 not a rar");
	is_int(list(&b, &l), RAR_NOT_RAR, "a zip is not a RAR archive");
	ok(!rar_is_archive((const unsigned char *)b.ptr, b.len) &&
	   rar_is_archive((const unsigned char *)"Rar!\x1a\x07\x01\x00", 8) &&
	   rar_is_archive((const unsigned char *)"Rar!\x1a\x07\x00", 7),
	   "rar_is_archive knows both signatures");
	buf_release(&b);
	return done_testing();
}
