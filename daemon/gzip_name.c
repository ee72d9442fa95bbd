/*
 * gzip_name - the original file name a gzip header may carry (see gzip_name.h)
 *
 * The header (RFC 1952 2.3): ID1 ID2 CM FLG, MTIME (4), XFL, OS; then, as
 * FLG says, FEXTRA (a 2-byte length and that many bytes), FNAME and
 * FCOMMENT (zero-terminated), FHCRC. Only what comes before FNAME is
 * walked; every read is bounded by the buffer, not by what the header says.
 */
#include "gzip_name.h"

#define GZ_FIXED	10	/* ID1 ID2 CM FLG MTIME XFL OS */
#define GZ_DEFLATE	8
#define GZ_FEXTRA	0x04
#define GZ_FNAME	0x08
#define GZ_RESERVED	0xe0	/* set: not a gzip file gzip itself would read */

/* latin1_to_utf8 - append one ISO 8859-1 byte as UTF-8; false when out is full */
static bool
latin1_to_utf8(unsigned char c, char *out, size_t outsize, size_t *used)
{
	size_t need = c < 0x80 ? 1 : 2;

	if (*used + need >= outsize)	/* keep room for the NUL */
		return false;
	if (c < 0x80)
		out[(*used)++] = (char)c;
	else {
		out[(*used)++] = (char)(0xc0 | c >> 6);
		out[(*used)++] = (char)(0x80 | (c & 0x3f));
	}
	return true;
}

bool
gzip_stored_name(const unsigned char *p, size_t len, char *out, size_t outsize)
{
	size_t pos = GZ_FIXED, end, used = 0;

	if (outsize == 0 || len < GZ_FIXED || p[0] != 0x1f || p[1] != 0x8b || p[2] != GZ_DEFLATE ||
	    (p[3] & GZ_RESERVED) != 0 || (p[3] & GZ_FNAME) == 0)
		return false;
	if (p[3] & GZ_FEXTRA) {
		if (len - pos < 2)
			return false;
		pos += 2 + ((size_t)p[pos] | (size_t)p[pos + 1] << 8);
		if (pos >= len)
			return false;
	}
	for (end = pos; end < len && p[end] != 0; end++)
		;
	if (end == len || end == pos)	/* cut short, or an empty name */
		return false;
	for (size_t i = pos; i < end && latin1_to_utf8(p[i], out, outsize, &used); i++)
		;
	out[used] = '\0';
	return used > 0;
}
