/*
 * zip - the members of a zip archive, read from its own records (see zip.h)
 *
 * The layouts are APPNOTE's: an end of central directory record (and, for
 * ZIP64, its locator and the ZIP64 end record), the central directory's
 * file headers, and a local header before each member's data. The central
 * directory is the index unzip uses; when it is missing or cannot be walked
 * the local headers are followed one after the other, as 7-Zip does. An
 * archive with bytes before it (a self-extractor's stub) is found the way
 * unzip finds it: the directory ends where the end record begins.
 */
#include <string.h>
#include <zlib.h>

#include "zip.h"
#include "util/buf.h"
#include "util/le.h"

#define SIG_LOCAL	"PK\x03\x04"
#define SIG_CENTRAL	"PK\x01\x02"
#define SIG_END		"PK\x05\x06"
#define SIG_END64	"PK\x06\x06"
#define SIG_LOCATOR64	"PK\x06\x07"
#define SIG_DESCRIPTOR	"PK\x07\x08"

#define LOCAL_LEN	30
#define CENTRAL_LEN	46
#define END_LEN		22
#define END64_LEN	56
#define LOCATOR64_LEN	20
#define COMMENT_MAX	0xffff

#define FLAG_ENCRYPTED	0x0001
#define FLAG_DESCRIPTOR	0x0008	/* sizes follow the data, local header has zeros */
#define EXTRA_ZIP64	0x0001
#define FIELD32_MAX	0xffffffffu
#define ZIP_MAX_MEMBERS	100000	/* a bound on the walk, far above libclamav's max_files */

struct directory {
	size_t	pos;		/* of the first central file header */
	uint64_t count;		/* entries the end record announces */
	uint64_t shift;		/* bytes before the archive: added to every offset */
	unsigned flags;		/* ZIP_USES_ZIP64 / ZIP_NO_DIRECTORY */
};

/* fits - do n bytes from off lie inside a buffer of len */
static bool
fits(uint64_t off, uint64_t n, size_t len)
{
	return off <= len && n <= len - off;
}

static bool
sig_at(const unsigned char *p, size_t len, uint64_t off, const char *sig)
{
	return fits(off, 4, len) && memcmp(p + off, sig, 4) == 0;
}

/* zip_is_archive - does the buffer start as a zip (a local header, or an empty archive) */
bool
zip_is_archive(const unsigned char *p, size_t len)
{
	return sig_at(p, len, 0, SIG_LOCAL) || sig_at(p, len, 0, SIG_END);
}

/*
 * zip64_sizes - the ZIP64 extra field's values for the 32-bit fields that
 * say "see ZIP64" (all ones), in APPNOTE's order; true when one was used
 */
static bool
zip64_sizes(const unsigned char *extra, size_t xlen, uint64_t *usize, uint64_t *csize,
	    uint64_t *offset)
{
	size_t at = 0;

	while (at + 4 <= xlen) {
		size_t id = le16(extra + at), dlen = le16(extra + at + 2), used = 0;
		const unsigned char *d = extra + at + 4;

		if (dlen > xlen - at - 4)
			return false;
		if (id == EXTRA_ZIP64) {
			uint64_t *want[3] = { usize, csize, offset };

			for (int i = 0; i < 3; i++)
				if (want[i] != NULL && *want[i] == FIELD32_MAX && used + 8 <= dlen) {
					*want[i] = le64(d + used);
					used += 8;
				}
			return true;
		}
		at += 4 + dlen;
	}
	return false;
}

/* find_end - the last end of central directory record whose comment fits; false if none */
static bool
find_end(const unsigned char *p, size_t len, size_t *pos)
{
	size_t lowest = len > END_LEN + COMMENT_MAX ? len - END_LEN - COMMENT_MAX : 0;

	if (len < END_LEN)
		return false;
	for (size_t at = len - END_LEN + 1; at-- > lowest;)
		if (memcmp(p + at, SIG_END, 4) == 0 && at + END_LEN + le16(p + at + 20) <= len) {
			*pos = at;
			return true;
		}
	return false;
}

/*
 * find_directory - where the central directory is, and how many entries
 * the end record announces; ZIP_NO_DIRECTORY in dir->flags when there is
 * no end record or its directory is not where it says
 */
static void
find_directory(const unsigned char *p, size_t len, struct directory *dir)
{
	uint64_t size, offset, end;
	size_t eocd;

	memset(dir, 0, sizeof(*dir));
	if (!find_end(p, len, &eocd)) {
		dir->flags |= ZIP_NO_DIRECTORY;
		return;
	}
	dir->count = le16(p + eocd + 10);
	size = le32(p + eocd + 12);
	offset = le32(p + eocd + 16);
	end = eocd;
	if (eocd >= LOCATOR64_LEN && sig_at(p, len, eocd - LOCATOR64_LEN, SIG_LOCATOR64)) {
		uint64_t rec = le64(p + eocd - LOCATOR64_LEN + 8);

		dir->flags |= ZIP_USES_ZIP64;
		/* the record usually sits right before its locator; an SFX stub moves it */
		if (!sig_at(p, len, rec, SIG_END64) || !fits(rec, END64_LEN, len))
			rec = eocd - LOCATOR64_LEN >= END64_LEN ? eocd - LOCATOR64_LEN - END64_LEN : len;
		if (sig_at(p, len, rec, SIG_END64) && fits(rec, END64_LEN, len)) {
			dir->count = le64(p + rec + 32);
			size = le64(p + rec + 40);
			offset = le64(p + rec + 48);
			end = rec;
		}
	} else if (dir->count == 0xffff || size == FIELD32_MAX || offset == FIELD32_MAX)
		dir->flags |= ZIP_USES_ZIP64;	/* says ZIP64 but has no locator: damaged */
	/* the directory ends where the end record begins: any surplus is a stub before the archive */
	if (size <= end && offset <= end - size)
		dir->shift = end - size - offset;
	/* an end record that announces no member, before a member: not the archive's index */
	if (dir->count == 0 && sig_at(p, len, 0, SIG_LOCAL))
		dir->flags |= ZIP_NO_DIRECTORY;
	else if (dir->count > 0 && !sig_at(p, len, offset + dir->shift, SIG_CENTRAL)) {
		if (dir->shift > 0 && sig_at(p, len, offset, SIG_CENTRAL))
			dir->shift = 0;
		else
			dir->flags |= ZIP_NO_DIRECTORY;
	}
	dir->pos = (size_t)(offset + dir->shift);
}

/*
 * member_data - the data of the member whose local header is at off: where
 * it starts and how much of it the buffer holds (the directory's csize).
 * A local header with ZIP64 sizes sets ZIP_USES_ZIP64 even when the
 * directory's are plain (Python's zipfile writes such streamed members):
 * libclamav reads the local header's.
 */
static void
member_data(const unsigned char *p, size_t len, uint64_t off, struct zip_member *m,
	    unsigned *flags)
{
	uint64_t start, usize, csize;
	size_t nlen, xlen;

	m->data = NULL;
	m->data_len = 0;
	if (!sig_at(p, len, off, SIG_LOCAL) || !fits(off, LOCAL_LEN, len))
		return;
	nlen = le16(p + off + 26);
	xlen = le16(p + off + 28);
	start = off + LOCAL_LEN + nlen + xlen;
	if (start > len)
		return;
	csize = le32(p + off + 18);
	usize = le32(p + off + 22);
	if (csize == FIELD32_MAX || usize == FIELD32_MAX ||
	    zip64_sizes(p + off + LOCAL_LEN + nlen, xlen, &usize, &csize, NULL))
		*flags |= ZIP_USES_ZIP64;
	m->data = p + start;
	m->data_len = (size_t)(m->csize < len - start ? m->csize : len - start);
}

/* central_walk - the members as the central directory lists them; -1 when it breaks off */
static int
central_walk(const unsigned char *p, size_t len, const struct directory *dir,
	     zip_member_fn *each, void *arg, unsigned *flags)
{
	uint64_t at = dir->pos;
	uint64_t n;

	for (n = 0; n < dir->count && n < ZIP_MAX_MEMBERS; n++) {
		struct zip_member m;
		uint64_t local;
		size_t nlen, xlen;

		if (!sig_at(p, len, at, SIG_CENTRAL) || !fits(at, CENTRAL_LEN, len))
			return -1;
		nlen = le16(p + at + 28);
		xlen = le16(p + at + 30);
		if (!fits(at + CENTRAL_LEN, (uint64_t)nlen + xlen, len))
			return -1;
		memset(&m, 0, sizeof(m));
		m.name = (const char *)p + at + CENTRAL_LEN;
		m.name_len = nlen;
		m.method = le16(p + at + 10);
		m.encrypted = (le16(p + at + 8) & FLAG_ENCRYPTED) != 0;
		m.is_dir = nlen > 0 && m.name[nlen - 1] == '/';
		m.csize = le32(p + at + 20);
		m.usize = le32(p + at + 24);
		local = le32(p + at + 42);
		if (zip64_sizes(p + at + CENTRAL_LEN + nlen, xlen, &m.usize, &m.csize, &local) ||
		    m.csize == FIELD32_MAX || m.usize == FIELD32_MAX || local == FIELD32_MAX)
			*flags |= ZIP_USES_ZIP64;
		member_data(p, len, local + dir->shift, &m, flags);
		if (each != NULL && !each(&m, arg))
			return 0;
		at += CENTRAL_LEN + nlen + xlen + le16(p + at + 32);
	}
	return 0;
}

/*
 * next_record - the next "PK" record signature at or after from that starts
 * a member, a descriptor or the directory; len when there is none
 */
static size_t
next_record(const unsigned char *p, size_t len, size_t from)
{
	while (from + 4 <= len) {
		const unsigned char *k = memchr(p + from, 'P', len - from - 3);

		if (k == NULL)
			break;
		from = (size_t)(k - p);
		if (k[1] == 'K' && ((k[2] == 3 && k[3] == 4) || (k[2] == 1 && k[3] == 2) ||
				    (k[2] == 5 && k[3] == 6) || (k[2] == 6 && k[3] == 6) ||
				    (k[2] == 7 && k[3] == 8)))
			return from;
		from++;
	}
	return len;
}

/*
 * local_walk - the members as their local headers chain them, for an
 * archive without a usable directory; stops at the directory or at damage
 */
static int
local_walk(const unsigned char *p, size_t len, zip_member_fn *each, void *arg, unsigned *flags)
{
	size_t at = next_record(p, len, 0);

	for (unsigned n = 0; n < ZIP_MAX_MEMBERS && sig_at(p, len, at, SIG_LOCAL); n++) {
		struct zip_member m;
		unsigned gp;
		size_t nlen, xlen;
		uint64_t start, end;

		if (!fits(at, LOCAL_LEN, len))
			break;
		gp = le16(p + at + 6);
		nlen = le16(p + at + 26);
		xlen = le16(p + at + 28);
		start = (uint64_t)at + LOCAL_LEN + nlen + xlen;
		if (start > len)
			break;
		memset(&m, 0, sizeof(m));
		m.name = (const char *)p + at + LOCAL_LEN;
		m.name_len = nlen;
		m.method = le16(p + at + 8);
		m.encrypted = (gp & FLAG_ENCRYPTED) != 0;
		m.is_dir = nlen > 0 && m.name[nlen - 1] == '/';
		m.csize = le32(p + at + 18);
		m.usize = le32(p + at + 22);
		if (zip64_sizes(p + at + LOCAL_LEN + nlen, xlen, &m.usize, &m.csize, NULL) ||
		    m.csize == FIELD32_MAX || m.usize == FIELD32_MAX)
			*flags |= ZIP_USES_ZIP64;
		if ((gp & FLAG_DESCRIPTOR) && m.csize == 0) {
			/* the size is known only after the data: it runs to the next record */
			end = next_record(p, len, (size_t)start);
			m.csize = end - start;
		} else
			end = m.csize < len - start ? start + m.csize : len;
		m.data = p + start;
		m.data_len = (size_t)(end - start);
		if (each != NULL && !each(&m, arg))
			return 0;
		at = next_record(p, len, (size_t)end);
		while (sig_at(p, len, at, SIG_DESCRIPTOR))
			at = next_record(p, len, at + 4);
	}
	return 0;
}

/* inspect - find the directory and walk it once, for its flags (zip_inspect's) */
static unsigned
inspect(const unsigned char *p, size_t len, struct directory *dir)
{
	unsigned flags;

	find_directory(p, len, dir);
	flags = dir->flags;
	if (!(flags & ZIP_NO_DIRECTORY) && central_walk(p, len, dir, NULL, NULL, &flags) < 0)
		flags |= ZIP_NO_DIRECTORY;
	return flags;
}

/*
 * zip_inspect - what in this archive libclamav would not read: a ZIP64
 * field (ZIP_USES_ZIP64), a missing or broken central directory
 * (ZIP_NO_DIRECTORY); 0 for a plain zip
 */
unsigned
zip_inspect(const unsigned char *p, size_t len)
{
	struct directory dir;

	return inspect(p, len, &dir);
}

/*
 * zip_list - call each for every member: from the central directory, or
 * from the local headers when the directory is missing or cannot be walked
 * to its end. Returns zip_inspect's flags.
 */
int
zip_list(const unsigned char *p, size_t len, zip_member_fn *each, void *arg)
{
	struct directory dir;
	unsigned flags = inspect(p, len, &dir);

	if (flags & ZIP_NO_DIRECTORY)
		local_walk(p, len, each, arg, &flags);
	else
		central_walk(p, len, &dir, each, arg, &flags);
	return (int)flags;
}

/* inflate_raw - a deflate stream appended to out, up to max bytes of it */
static int
inflate_raw(const struct zip_member *m, size_t max, struct buf *out)
{
	unsigned char chunk[16384];
	z_stream zs;
	size_t total = 0;
	int zrc, answer = ZIP_INFLATE_DAMAGED;

	memset(&zs, 0, sizeof(zs));
	if (inflateInit2(&zs, -MAX_WBITS) != Z_OK)
		return ZIP_INFLATE_DAMAGED;
	/* zlib counts in uInt: feed a huge member in slices */
	zs.next_in = (unsigned char *)m->data;
	for (size_t left = m->data_len;;) {
		size_t produced;

		if (zs.avail_in == 0 && left > 0) {
			zs.avail_in = left > 0x40000000 ? 0x40000000 : (uInt)left;
			left -= zs.avail_in;
		}
		zs.next_out = chunk;
		zs.avail_out = sizeof(chunk);
		zrc = inflate(&zs, Z_NO_FLUSH);
		produced = sizeof(chunk) - zs.avail_out;
		if ((total += produced) > max) {
			answer = ZIP_INFLATE_TOO_BIG;
			break;
		}
		if (produced > 0 && buf_append(out, chunk, produced) < 0)
			break;
		if (zrc == Z_STREAM_END) {
			answer = ZIP_INFLATE_OK;
			break;
		}
		if (zrc != Z_OK || (produced == 0 && zs.avail_in == 0 && left == 0))
			break;	/* damaged, or the data ends before the stream does */
	}
	inflateEnd(&zs);
	return answer;
}

/*
 * zip_inflate - the member's content appended to out: stored or deflated,
 * at most max bytes (ZIP_INFLATE_TOO_BIG past them, out then holds an
 * unspecified prefix); damaged or cut data gives what came before the
 * damage (ZIP_INFLATE_DAMAGED)
 */
int
zip_inflate(const struct zip_member *m, size_t max, struct buf *out)
{
	if (m->data == NULL)
		return ZIP_INFLATE_DAMAGED;
	if (m->method == ZIP_METHOD_DEFLATE)
		return inflate_raw(m, max, out);
	if (m->method != ZIP_METHOD_STORED)
		return ZIP_INFLATE_UNSUPPORTED;
	if (m->data_len > max)
		return ZIP_INFLATE_TOO_BIG;
	if (buf_append(out, m->data, m->data_len) < 0)
		return ZIP_INFLATE_DAMAGED;
	return m->data_len < m->csize ? ZIP_INFLATE_DAMAGED : ZIP_INFLATE_OK;
}
