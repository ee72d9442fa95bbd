/*
 * zip_spec - zip members from the central directory (ZIP64 included) or,
 * without one, from the local headers; what libclamav would pass over is
 * told apart; members unpack exactly, within their bounds
 *
 * The archives are built here, record by record, from APPNOTE's layouts
 * (CRCs left zero: zip.c does not check them; deflate data from zlib).
 * Every prefix of each archive is walked too, so that a cut record can only
 * shorten the list (under the sanitizer build, any read past the buffer is
 * a failure).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "zip.h"
#include "util/buf.h"
#include "put_le.h"
#include "tap.h"

#define MAX_LISTED 8

struct listing {
	char	names[MAX_LISTED][64];
	unsigned long long csizes[MAX_LISTED], usizes[MAX_LISTED];
	unsigned methods[MAX_LISTED];
	bool	encrypted[MAX_LISTED], dirs[MAX_LISTED];
	char	content[MAX_LISTED][256];	/* zip_inflate's output, or "<N>" for its answer */
	int	n;
};

static bool
collect(const struct zip_member *m, void *arg)
{
	struct listing *l = arg;
	struct buf out;
	int rc;

	if (l->n < MAX_LISTED) {
		snprintf(l->names[l->n], sizeof(l->names[0]), "%.*s", (int)m->name_len, m->name);
		l->csizes[l->n] = m->csize;
		l->usizes[l->n] = m->usize;
		l->methods[l->n] = m->method;
		l->encrypted[l->n] = m->encrypted;
		l->dirs[l->n] = m->is_dir;
		buf_init(&out, 0);
		rc = zip_inflate(m, 200, &out);
		if (rc == ZIP_INFLATE_OK)
			snprintf(l->content[l->n], sizeof(l->content[0]), "%.*s", (int)out.len,
				 out.ptr ? out.ptr : "");
		else
			snprintf(l->content[l->n], sizeof(l->content[0]), "<%d>%.*s", rc,
				 (int)out.len, out.ptr ? out.ptr : "");
		buf_release(&out);
	}
	l->n++;
	return true;
}

static int
list(const struct buf *b, struct listing *l)
{
	memset(l, 0, sizeof(*l));
	return zip_list((const unsigned char *)b->ptr, b->len, collect, l);
}

/* deflated - text compressed as a raw deflate stream, into out */
static void
deflated(const char *text, struct buf *out)
{
	unsigned char tmp[1024];
	z_stream zs;

	memset(&zs, 0, sizeof(zs));
	deflateInit2(&zs, 9, Z_DEFLATED, -MAX_WBITS, 8, Z_DEFAULT_STRATEGY);
	zs.next_in = (unsigned char *)text;
	zs.avail_in = (uInt)strlen(text);
	zs.next_out = tmp;
	zs.avail_out = sizeof(tmp);
	deflate(&zs, Z_FINISH);
	buf_append(out, tmp, sizeof(tmp) - zs.avail_out);
	deflateEnd(&zs);
}

/* how one member is written */
struct spec {
	const char *name, *text;
	unsigned method, flags;
	bool	zip64;		/* sizes and offset all ones, the values in a ZIP64 extra field */
	bool	descriptor;	/* local sizes zero, a data descriptor after the data */
	bool	local_only;	/* ... ZIP64 in the local header only, as Python's zipfile streams */
};

/*
 * build - an archive of the members, its central directory and end record
 * (with a ZIP64 end record and locator when end64); stub bytes first
 */
static void
build(struct buf *b, const struct spec *m, int n, bool end64, const char *stub)
{
	unsigned long offsets[8];
	unsigned long cd_start, cd_size;
	struct buf data[8];

	buf_init(b, 0);
	buf_appends(b, stub);
	for (int i = 0; i < n; i++) {
		buf_init(&data[i], 0);
		if (m[i].method == 8)
			deflated(m[i].text, &data[i]);
		else
			buf_appends(&data[i], m[i].text);
		offsets[i] = b->len - strlen(stub);
		buf_append(b, "PK\x03\x04", 4);
		put16(b, 20);
		put16(b, m[i].flags | (m[i].descriptor ? 8 : 0));
		put16(b, m[i].method);
		put32(b, 0);		/* time, date */
		put32(b, 0);		/* crc */
		put32(b, m[i].descriptor ? 0 : m[i].zip64 ? 0xffffffffUL : data[i].len);
		put32(b, m[i].descriptor ? 0 : m[i].zip64 ? 0xffffffffUL : strlen(m[i].text));
		put16(b, strlen(m[i].name));
		put16(b, m[i].zip64 ? 20 : 0);
		buf_appends(b, m[i].name);
		if (m[i].zip64) {
			put16(b, 1);
			put16(b, 16);
			put64(b, strlen(m[i].text));
			put64(b, data[i].len);
		}
		buf_append(b, data[i].ptr ? data[i].ptr : "", data[i].len);
		if (m[i].descriptor) {
			buf_append(b, "PK\x07\x08", 4);
			put32(b, 0);
			put32(b, data[i].len);
			put32(b, strlen(m[i].text));
		}
	}
	cd_start = b->len - strlen(stub);
	for (int i = 0; i < n; i++) {
		bool cd64 = m[i].zip64 && !m[i].local_only;

		buf_append(b, "PK\x01\x02", 4);
		put16(b, 20);
		put16(b, 20);
		put16(b, m[i].flags | (m[i].descriptor ? 8 : 0));
		put16(b, m[i].method);
		put32(b, 0);
		put32(b, 0);
		put32(b, cd64 ? 0xffffffffUL : data[i].len);
		put32(b, cd64 ? 0xffffffffUL : strlen(m[i].text));
		put16(b, strlen(m[i].name));
		put16(b, cd64 ? 28 : 0);
		put16(b, 0);		/* comment */
		put16(b, 0);		/* disk */
		put16(b, 0);		/* internal attributes */
		put32(b, 0);		/* external attributes */
		put32(b, cd64 ? 0xffffffffUL : offsets[i]);
		buf_appends(b, m[i].name);
		if (cd64) {
			put16(b, 1);
			put16(b, 24);
			put64(b, strlen(m[i].text));
			put64(b, data[i].len);
			put64(b, offsets[i]);
		}
		buf_release(&data[i]);
	}
	cd_size = b->len - strlen(stub) - cd_start;
	if (end64) {
		unsigned long rec = b->len - strlen(stub);

		buf_append(b, "PK\x06\x06", 4);
		put64(b, 44);
		put16(b, 45);
		put16(b, 45);
		put32(b, 0);
		put32(b, 0);
		put64(b, n);
		put64(b, n);
		put64(b, cd_size);
		put64(b, cd_start);
		buf_append(b, "PK\x06\x07", 4);
		put32(b, 0);
		put64(b, rec);
		put32(b, 1);
	}
	buf_append(b, "PK\x05\x06", 4);
	put16(b, 0);
	put16(b, 0);
	put16(b, end64 ? 0xffff : n);
	put16(b, end64 ? 0xffff : n);
	put32(b, end64 ? 0xffffffffUL : cd_size);
	put32(b, end64 ? 0xffffffffUL : cd_start);
	put16(b, 0);
}

/* cut_directory - the archive up to its central directory */
static void
cut_directory(struct buf *b)
{
	for (size_t i = 0; i + 4 <= b->len; i++)
		if (memcmp(b->ptr + i, "PK\x01\x02", 4) == 0) {
			b->len = i;
			return;
		}
}

/* every_prefix - each shorter archive walks without harm and lists no more members */
static void
every_prefix(const struct buf *b, int whole, const char *what)
{
	bool fine = true;

	for (size_t len = 0; len < b->len; len++) {
		unsigned char *copy = malloc(len ? len : 1);
		struct listing l;

		memcpy(copy, b->ptr, len);
		memset(&l, 0, sizeof(l));
		zip_list(copy, len, collect, &l);
		zip_inspect(copy, len);
		if (l.n > whole)
			fine = false;
		free(copy);
	}
	ok(fine, "%s: every prefix walks and lists at most the %d members", what, whole);
}

static const struct spec two[] = {
	{ "readme.txt", "plain words", 0, 0, false, false, false },
	{ "bin/setup.exe", "MZ and a deflated body, a deflated body", 8, 0, false, false, false },
};

int
main(void)
{
	struct listing l;
	struct buf b;
	int flags;

	build(&b, two, 2, false, "");
	flags = list(&b, &l);
	is_int(flags, 0, "plain zip: nothing libclamav would pass over");
	is_int(zip_inspect((const unsigned char *)b.ptr, b.len), 0, "plain zip: zip_inspect agrees");
	is_int(l.n, 2, "plain zip: two members");
	is_str(l.names[0], "readme.txt", "plain zip: first name");
	is_str(l.content[0], "plain words", "plain zip: a stored member unpacks as it is");
	is_str(l.names[1], "bin/setup.exe", "plain zip: second name");
	is_int(l.methods[1], 8, "plain zip: the second is deflated");
	is_str(l.content[1], "MZ and a deflated body, a deflated body", "plain zip: and inflates whole");
	ok(zip_is_archive((const unsigned char *)b.ptr, b.len), "plain zip: zip_is_archive");
	every_prefix(&b, 2, "plain zip");

	{
		struct spec z64[] = { { "e.txt", "zip64 member text", 8, 0, true, false, false } };

		buf_release(&b);
		build(&b, z64, 1, false, "");
		flags = list(&b, &l);
		is_int(flags, ZIP_USES_ZIP64, "ZIP64 extra field: told apart");
		is_int(l.n, 1, "ZIP64 extra field: one member");
		is_int((long long)l.usizes[0], 17, "ZIP64 extra field: the size comes from it");
		is_str(l.content[0], "zip64 member text", "ZIP64 extra field: the member unpacks");
		every_prefix(&b, 1, "ZIP64 member");
		z64[0].local_only = true;
		buf_release(&b);
		build(&b, z64, 1, false, "");
		flags = list(&b, &l);
		is_int(flags, ZIP_USES_ZIP64, "ZIP64 in the local header only (a streamed member): told apart");
		is_str(l.content[0], "zip64 member text", "... the directory's sizes unpack it");
	}

	buf_release(&b);
	build(&b, two, 2, true, "");
	flags = list(&b, &l);
	is_int(flags, ZIP_USES_ZIP64, "ZIP64 end record: told apart");
	ok(l.n == 2 && strcmp(l.content[1], two[1].text) == 0,
	   "ZIP64 end record: the directory it points to is walked");
	every_prefix(&b, 2, "ZIP64 end record");

	cut_directory(&b);
	flags = list(&b, &l);
	is_int(flags, ZIP_NO_DIRECTORY, "no central directory: told apart");
	ok(l.n == 2 && strcmp(l.names[1], "bin/setup.exe") == 0 &&
	   strcmp(l.content[0], "plain words") == 0 && strcmp(l.content[1], two[1].text) == 0,
	   "no central directory: the local headers give both members, whole");

	buf_release(&b);
	build(&b, two, 2, false, "");
	memcpy(b.ptr + b.len - 6, "\xff\xff\xff\x7f", 4);	/* the directory's offset, far out */
	flags = list(&b, &l);
	ok(flags & ZIP_NO_DIRECTORY, "end record pointing outside: no usable directory");
	is_int(l.n, 2, "end record pointing outside: the local headers give both members");

	buf_release(&b);
	build(&b, two, 2, false, "");
	memcpy(b.ptr + b.len - 12, "\0\0\0\0", 4);	/* both counts zero */
	flags = list(&b, &l);
	ok(flags & ZIP_NO_DIRECTORY, "end record announcing no member before members: told apart");
	is_int(l.n, 2, "... and the members are still found");

	{
		struct spec dd[] = {
			{ "a.js", "streamed, deflated, size after the data", 8, 0, false, true, false },
			{ "b.txt", "second", 0, 0, false, false, false },
		};

		buf_release(&b);
		build(&b, dd, 2, false, "");
		cut_directory(&b);
		flags = list(&b, &l);
		ok(l.n == 2 && strcmp(l.names[0], "a.js") == 0 && strcmp(l.names[1], "b.txt") == 0,
		   "data descriptor, no directory: the walk finds the member after it");
		is_str(l.content[0], dd[0].text, "data descriptor: the member inflates whole");
		is_str(l.content[1], "second", "data descriptor: the next member is read right");
		every_prefix(&b, 2, "data descriptor");
	}

	buf_release(&b);
	build(&b, two, 2, false, "#!/bin/sh\nexit 0\n");
	flags = list(&b, &l);
	ok(!(flags & ZIP_NO_DIRECTORY) && l.n == 2 && strcmp(l.content[1], two[1].text) == 0,
	   "a stub before the archive: the directory is found past it, the members unpack");

	{
		struct spec odd[] = {
			{ "secret.doc", "xxxxxxxx", 0, 1, false, false, false },
			{ "x.bz", "bzip2-ish bytes", 12, 0, false, false, false },
			{ "dir/", "", 0, 0, false, false, false },
		};

		buf_release(&b);
		build(&b, odd, 3, false, "");
		list(&b, &l);
		ok(l.encrypted[0] && !l.encrypted[1], "the encryption flag is read");
		is_str(l.content[1], "<3>", "a method other than stored or deflate: unsupported");
		ok(l.dirs[2] && !l.dirs[0], "a name ending in / is a directory");
	}

	{
		struct spec big[] = {
			{ "big.txt", "this text is longer than the limit of the walk's callback: "
			  "two hundred bytes are allowed, and this line goes on and on past them, "
			  "word after word, until it is well over that limit, which is two "
			  "hundred bytes exactly", 8, 0, false, false, false },
		};
		struct buf cut;

		buf_release(&b);
		build(&b, big, 1, false, "");
		list(&b, &l);
		is_str(l.content[0], "<1>", "a member over the bound: too big, not unpacked past it");
		/* the deflate data cut in half: what came before is given, marked damaged */
		buf_init(&cut, 0);
		deflated(big[0].text, &cut);
		{
			struct zip_member m = { "big.txt", 7, 8, false, false, cut.len, 250,
						(const unsigned char *)cut.ptr, cut.len / 2 };
			struct buf out;

			buf_init(&out, 0);
			is_int(zip_inflate(&m, 1000, &out), ZIP_INFLATE_DAMAGED,
			       "deflate data cut short: damaged");
			ok(out.len > 0 && out.len < strlen(big[0].text) &&
			   memcmp(out.ptr, big[0].text, out.len) == 0,
			   "deflate data cut short: the bytes before the cut are given");
			buf_release(&out);
			m.data = (const unsigned char *)"\xff\xff\xff\xff";
			m.data_len = 4;
			is_int(zip_inflate(&m, 1000, &out), ZIP_INFLATE_DAMAGED,
			       "bytes that are not deflate: damaged");
			buf_release(&out);
		}
		buf_release(&cut);
	}

	{
		/* a hostile directory entry: name and extra lengths past the end */
		struct buf h;

		buf_release(&b);
		build(&b, two, 1, false, "");
		buf_init(&h, 0);
		buf_append(&h, b.ptr, b.len);
		for (size_t i = 0; i + 4 <= h.len; i++)
			if (memcmp(h.ptr + i, "PK\x01\x02", 4) == 0) {
				memcpy(h.ptr + i + 28, "\xff\xff\xff\xff", 4);
				break;
			}
		flags = list(&h, &l);
		ok(flags & ZIP_NO_DIRECTORY, "a directory entry longer than the file: no directory");
		is_int(l.n, 1, "... and the local header still gives the member");
		every_prefix(&h, 1, "hostile directory entry");
		buf_release(&h);
	}

	buf_release(&b);
	buf_init(&b, 0);
	buf_appends(&b, "not a zip at all, PK but nothing more");
	flags = list(&b, &l);
	ok(l.n == 0 && (flags & ZIP_NO_DIRECTORY) && !zip_is_archive((const unsigned char *)b.ptr, b.len),
	   "text is no archive and lists nothing");
	buf_release(&b);
	return done_testing();
}
