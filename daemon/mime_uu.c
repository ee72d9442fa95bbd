/*
 * mime_uu - uuencoded files inside a text part (mime_uu_next())
 *
 * Before MIME, attachments travelled uuencoded inside the text: a line
 * "begin MODE NAME", lines of encoded data whose first character gives
 * their length, then "end". Mail clients still decode them, so a virus
 * scanner must too (amavisd-new has MIME-tools extract them; libclamav's
 * mail parser does the same). mime_uu_next() finds the next such block in
 * a decoded text part and decodes it. A damaged data line ends the block
 * with what was decoded before it: a scanner wants every byte it can get,
 * not an error.
 *
 * Nothing here reads files or logs. See also: clam.c (which scans the
 * decoded blocks), mime_decode.c (the part's own transfer decoding).
 */
#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#include "mime.h"
#include "util/xalloc.h"

#define UU_NAME_MAX	255	/* a longer name keeps its end: a label, not a path, whose extension counts */

/* line_end - the end of the line starting at p (its LF, or end) */
static const char *
line_end(const char *p, const char *end)
{
	const char *lf = memchr(p, '\n', (size_t)(end - p));

	return lf != NULL ? lf : end;
}

/* trim_cr - a line's length without its CR */
static size_t
trim_cr(const char *p, const char *e)
{
	return (size_t)(e - p) - (e > p && e[-1] == '\r');
}

/*
 * begin_name - is the line "begin MODE NAME" (MODE three or four octal digits)
 *
 * Returns the name's start with *name_len, or NULL.
 */
static const char *
begin_name(const char *p, size_t len, size_t *name_len)
{
	size_t i = 6, digits = 0;

	if (len < 6 || memcmp(p, "begin ", 6) != 0)
		return NULL;
	while (i < len && p[i] >= '0' && p[i] <= '7' && digits < 5) {
		i++;
		digits++;
	}
	if (digits < 3 || digits > 4 || i >= len || p[i] != ' ' || i + 1 >= len)
		return NULL;
	*name_len = len - i - 1;
	return p + i + 1;
}

/* uu_value - the 6 bits of an encoded character; -1 outside the alphabet (space to '`') */
static int
uu_value(char ch)
{
	unsigned char c = (unsigned char)ch;

	return c >= 0x20 && c <= 0x60 ? (c - 0x20) & 0x3f : -1;
}

/*
 * decode_line - one data line into out; its declared length, or -1 when damaged
 *
 * A line of length 0 ("`" or a space) is the last before "end".
 */
static int
decode_line(const char *p, size_t len, struct buf *out)
{
	int n, have;
	unsigned char bytes[64];
	size_t i;

	if (len == 0 || (n = uu_value(p[0])) < 0)
		return -1;
	have = 0;
	for (i = 1; have < n; i += 4) {
		int v[4];

		for (int k = 0; k < 4; k++) {
			/* some encoders drop trailing spaces: a missing character is a zero */
			v[k] = i + (size_t)k < len ? uu_value(p[i + (size_t)k]) : 0;
			if (v[k] < 0)
				return -1;
		}
		bytes[have++] = (unsigned char)(v[0] << 2 | v[1] >> 4);
		if (have < n)
			bytes[have++] = (unsigned char)(v[1] << 4 | v[2] >> 2);
		if (have < n)
			bytes[have++] = (unsigned char)(v[2] << 6 | v[3]);
	}
	if (buf_append(out, bytes, (size_t)n) < 0)
		return -1;
	return n;
}

/*
 * mime_uu_next - the next uuencoded block in text[*pos..len)
 *
 * Decodes it onto out (whose own limit bounds it) and returns true with
 * *name_r (owned by the caller) and *pos just past the block; returns false
 * when no "begin" line is left. A block without "end", or with a damaged
 * line, gives what was decoded up to there.
 */
bool
mime_uu_next(const char *text, size_t len, size_t *pos, struct buf *out, char **name_r)
{
	const char *end = text + len, *p = text + *pos;

	while (p < end) {
		const char *e = line_end(p, end), *name;
		size_t name_len;

		name = begin_name(p, trim_cr(p, e), &name_len);
		p = e < end ? e + 1 : end;
		if (name == NULL)
			continue;
		/* P.banned looks at the extension: padding in front must not push it out */
		if (name_len > UU_NAME_MAX) {
			name += name_len - UU_NAME_MAX;
			name_len = UU_NAME_MAX;
		}
		*name_r = xstrndup(name, name_len);
		while (p < end) {
			const char *le = line_end(p, end);
			size_t ll = trim_cr(p, le);
			const char *line = p;

			p = le < end ? le + 1 : end;
			if (ll == 3 && memcmp(line, "end", 3) == 0)
				break;
			if (decode_line(line, ll, out) < 0)
				break;
		}
		*pos = (size_t)(p - text);
		return true;
	}
	*pos = len;
	return false;
}
