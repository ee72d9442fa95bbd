/*
 * rar - the names of the files in a RAR archive, read from its headers (see rar.h)
 *
 * Only what the layouts fix is read: for RAR 1.5-4.x a chain of blocks
 * (CRC16, type, flags, header size, then for a file block its packed size,
 * sizes, name length and name), for RAR 5 a chain of headers with
 * variable-length integers (CRC32, header size, type, flags, optional extra
 * and data sizes; a file header's flags, size, name). CRCs are not checked:
 * a damaged archive is still worth listing, and every read is bounded by
 * the buffer, never by what a header claims.
 */
#include <string.h>

#include "rar.h"
#include "util/le.h"

#define RAR4_SIG	"Rar!\x1a\x07\x00"
#define RAR4_SIG_LEN	7
#define RAR5_SIG	"Rar!\x1a\x07\x01\x00"
#define RAR5_SIG_LEN	8
#define RAR_MAX_MEMBERS	100000	/* a bound on the walk, far above libclamav's max_files */

/* RAR 1.5-4.x */
#define R4_BASE		7	/* CRC16, type, flags, header size */
#define R4_MAIN		0x73
#define R4_FILE		0x74
#define R4_END		0x7b
#define R4_MAIN_PASSWORD 0x0080	/* headers encrypted */
#define R4_FILE_ENCRYPTED 0x0004
#define R4_FILE_LARGE	0x0100	/* 64-bit sizes follow the attributes */
#define R4_FILE_UNICODE	0x0200	/* name: ASCII, NUL, encoded Unicode */
#define R4_FILE_DIR_MASK 0x00e0	/* dictionary bits all set: a directory */
#define R4_LONG_BLOCK	0x8000	/* a 32-bit ADD_SIZE follows the base header */
#define R4_FILE_NAME_OFF 32	/* PACK_SIZE UNP_SIZE HOST_OS FILE_CRC FTIME UNP_VER METHOD NAME_SIZE ATTR */

/* RAR 5 */
#define R5_FILE		2
#define R5_ENCRYPTION	4	/* archive encryption header: the rest is encrypted */
#define R5_END		5
#define R5_HAS_EXTRA	0x0001
#define R5_HAS_DATA	0x0002
#define R5_FILE_DIR	0x0001
#define R5_FILE_MTIME	0x0002
#define R5_FILE_CRC	0x0004
#define R5_EXTRA_CRYPT	1	/* extra record: file encryption */

/* rar_is_archive - does the buffer start with a RAR signature */
bool
rar_is_archive(const unsigned char *p, size_t len)
{
	return (len >= RAR4_SIG_LEN && memcmp(p, RAR4_SIG, RAR4_SIG_LEN) == 0) ||
	       (len >= RAR5_SIG_LEN && memcmp(p, RAR5_SIG, RAR5_SIG_LEN) == 0);
}

/* list4 - the file blocks of a RAR 1.5-4.x archive */
static int
list4(const unsigned char *p, size_t len, rar_member_fn *each, void *arg)
{
	size_t pos = RAR4_SIG_LEN;
	int found = 0;

	while (pos <= len && len - pos >= R4_BASE && found < RAR_MAX_MEMBERS) {
		const unsigned char *b = p + pos;
		unsigned type = b[2];
		uint32_t flags = le16(b + 3), hsize = le16(b + 5);
		uint64_t skip = 0;

		if (hsize < R4_BASE || hsize > len - pos)
			break;
		if (type == R4_MAIN && (flags & R4_MAIN_PASSWORD))
			return RAR_HEADERS_ENCRYPTED;
		if (type == R4_FILE) {
			uint64_t packed, unpacked;
			size_t name_off = R4_FILE_NAME_OFF, name_len;

			if (hsize < R4_FILE_NAME_OFF)
				break;
			packed = le32(b + 7);
			unpacked = le32(b + 11);
			name_len = le16(b + 26);
			if (flags & R4_FILE_LARGE) {
				if (hsize < R4_FILE_NAME_OFF + 8)
					break;
				packed |= (uint64_t)le32(b + 32) << 32;
				unpacked |= (uint64_t)le32(b + 36) << 32;
				name_off += 8;
			}
			if (name_len > hsize - name_off)
				break;
			if ((flags & R4_FILE_UNICODE) && memchr(b + name_off, '\0', name_len) != NULL)
				name_len = (size_t)((const unsigned char *)memchr(b + name_off, '\0', name_len) -
						    (b + name_off));
			if ((flags & R4_FILE_DIR_MASK) != R4_FILE_DIR_MASK && name_len > 0) {
				each((const char *)b + name_off, name_len, unpacked,
				     (flags & R4_FILE_ENCRYPTED) != 0, arg);
				found++;
			}
			skip = packed;
		} else if (flags & R4_LONG_BLOCK) {
			if (hsize < R4_BASE + 4)
				break;
			skip = le32(b + 7);
		}
		if (type == R4_END)
			break;
		if (skip > len - pos - hsize)
			break;		/* truncated: what was listed stays listed */
		pos += hsize + (size_t)skip;
	}
	return found;
}

/* vint - a RAR 5 variable-length integer at *q (before end); false when malformed */
static bool
vint(const unsigned char **q, const unsigned char *end, uint64_t *v)
{
	*v = 0;
	for (unsigned shift = 0; shift < 64 && *q < end; shift += 7) {
		unsigned char c = *(*q)++;

		*v |= (uint64_t)(c & 0x7f) << shift;
		if (!(c & 0x80))
			return true;
	}
	return false;
}

/* extra_says_encrypted - a file header's extra area holds a file encryption record */
static bool
extra_says_encrypted(const unsigned char *q, const unsigned char *end)
{
	while (q < end) {
		const unsigned char *rec;
		uint64_t size, type;

		if (!vint(&q, end, &size) || size > (uint64_t)(end - q))
			return false;
		rec = q;
		if (!vint(&rec, q + size, &type))
			return false;
		if (type == R5_EXTRA_CRYPT)
			return true;
		q += size;
	}
	return false;
}

/* file5 - one RAR 5 file header, from after its flags (q) to its end */
static int
file5(const unsigned char *q, const unsigned char *end, uint64_t extra_size, rar_member_fn *each,
      void *arg)
{
	uint64_t fflags, size, attrs, comp, host, name_len;
	size_t fixed;	/* mtime and CRC32, when the flags say they are there */

	if (!vint(&q, end, &fflags) || !vint(&q, end, &size) || !vint(&q, end, &attrs))
		return -1;
	fixed = ((fflags & R5_FILE_MTIME) ? 4 : 0) + ((fflags & R5_FILE_CRC) ? 4 : 0);
	if (fixed > (size_t)(end - q))
		return -1;
	q += fixed;
	if (!vint(&q, end, &comp) || !vint(&q, end, &host) || !vint(&q, end, &name_len) ||
	    name_len > (uint64_t)(end - q) || extra_size > (uint64_t)(end - q))
		return -1;
	if ((fflags & R5_FILE_DIR) || name_len == 0)
		return 0;
	each((const char *)q, (size_t)name_len, size,
	     extra_says_encrypted(end - extra_size, end), arg);
	return 1;
}

/* list5 - the file headers of a RAR 5 archive */
static int
list5(const unsigned char *p, size_t len, rar_member_fn *each, void *arg)
{
	const unsigned char *pos = p + RAR5_SIG_LEN, *end = p + len;
	int found = 0;

	while (end - pos > 4 && found < RAR_MAX_MEMBERS) {
		const unsigned char *q = pos + 4, *hend;	/* after the CRC32 */
		uint64_t hsize, type, hflags, extra = 0, data = 0;
		int n;

		if (!vint(&q, end, &hsize) || hsize > (uint64_t)(end - q) || hsize == 0)
			break;
		hend = q + hsize;
		if (!vint(&q, hend, &type) || !vint(&q, hend, &hflags) ||
		    ((hflags & R5_HAS_EXTRA) && !vint(&q, hend, &extra)) ||
		    ((hflags & R5_HAS_DATA) && !vint(&q, hend, &data)))
			break;
		if (type == R5_ENCRYPTION)
			return RAR_HEADERS_ENCRYPTED;
		if (type == R5_FILE) {
			if ((n = file5(q, hend, extra, each, arg)) < 0)
				break;
			found += n;
		}
		if (type == R5_END || data > (uint64_t)(end - hend))
			break;
		pos = hend + data;
	}
	return found;
}

/*
 * rar_list - call each() for every file the archive's headers name
 *
 * Returns how many, RAR_NOT_RAR, or RAR_HEADERS_ENCRYPTED (then each() may
 * have been called for nothing: the names are not readable).
 */
int
rar_list(const unsigned char *p, size_t len, rar_member_fn *each, void *arg)
{
	if (len >= RAR5_SIG_LEN && memcmp(p, RAR5_SIG, RAR5_SIG_LEN) == 0)
		return list5(p, len, each, arg);
	if (len >= RAR4_SIG_LEN && memcmp(p, RAR4_SIG, RAR4_SIG_LEN) == 0)
		return list4(p, len, each, arg);
	return RAR_NOT_RAR;
}
