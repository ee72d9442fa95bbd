/*
 * header - the header block of a spooled message, parsed once
 *
 * See header.h. header_read() scans the spool with pread() for the first
 * empty line, keeping at most `limit` bytes of fields; parse_fields() then
 * cuts what was kept into lines. A line ends at LF and a CR just before the
 * LF belongs to the line end: the spool always holds CRLF, and a bare LF in a
 * buffer given to header_parse() is taken as a line end rather than as data.
 *
 * A line that is not a field (no colon, an empty name, a name with a space or
 * a byte outside 33..126) is skipped together with the continuation lines
 * under it, and the block records a broken_reason. Attaching it to the field
 * above would be the other choice; it would let junk pose as part of, say,
 * the Subject a rule matches, so we drop it instead.
 *
 * header_decode() makes the whole result valid UTF-8. Bytes of an
 * encoded-word are converted from the word's charset with iconv(3) (or, in
 * a charset iconv does not know, taken as raw bytes are); bytes that do not
 * convert become U+FFFD. Raw bytes outside encoded-words that do
 * not form UTF-8 are read as ISO-8859-1 (each becomes U+0080..U+00FF), the
 * charset a raw 8-bit header most often turns out to be in; valid UTF-8 (RFC
 * 6532 headers) stays as it is. Line breaks and NUL become spaces, so the
 * result is one line. The output is bounded by 4x the input plus a little:
 * past that it is cut, always between two characters.
 *
 * XXX: iconv_open() runs once per charset per call; a per-process cache of
 * converters would save it for the common charsets, at the price of state
 * that must not cross fork().
 */
#include <errno.h>
#include <iconv.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "header.h"
#include "util/buf.h"
#include "util/digits.h"
#include "util/xalloc.h"

#define HEADER_READ_SIZE (64 * 1024)	/* bytes per pread() while looking for the empty line */
#define FIELDS_INITIAL	32		/* field slots at first; a typical header has 10-40 */
#define CHARSET_NAME_MAX 64		/* longest charset name handed to iconv_open(); real ones are < 20 */
#define DECODE_SLACK	64		/* output room past 4x the input, for very short inputs */

static const char utf8_replacement[] = "\xef\xbf\xbd";	/* U+FFFD */

/* is_wsp - SP or HTAB, the only folding whitespace */
static int
is_wsp(unsigned char c)
{
	return c == ' ' || c == '\t';
}

/* set_broken - record the first damage found; later ones add nothing */
static void
set_broken(struct header_block *hb, const char *reason)
{
	if (hb->broken_reason == NULL)
		hb->broken_reason = reason;
}

/* name_is_valid - a field name: at least one byte, all printable ASCII but ':' */
static int
name_is_valid(const char *p, size_t len)
{
	if (len == 0)
		return 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)p[i];

		if (c < 33 || c > 126 || c == ':')
			return 0;
	}
	return 1;
}

/* add_field - append one field slot, growing the array by doubling */
static struct header_field *
add_field(struct header_block *hb, size_t *slots)
{
	if (hb->nfields == *slots) {
		*slots = *slots ? *slots * 2 : FIELDS_INITIAL;
		hb->fields = xreallocarray(hb->fields, *slots, sizeof(*hb->fields));
	}
	return &hb->fields[hb->nfields++];
}

/*
 * parse_fields - cut hb->raw into fields
 *
 * has_end is false when the bytes simply stopped (no empty line): a last line
 * without its line end then means the message was cut inside the header.
 */
static void
parse_fields(struct header_block *hb, bool has_end)
{
	const char *p = hb->raw;
	size_t len = hb->raw_len, off = 0, slots = 0;
	struct header_field *cur = NULL;
	bool orphan = false;	/* continuation lines of a skipped line are skipped too */

	while (off < len) {
		const char *nl = memchr(p + off, '\n', len - off);
		size_t line_end = nl ? (size_t)(nl - p) + 1 : len;
		size_t content_end = nl ? (size_t)(nl - p) : len;

		if (nl != NULL && content_end > off && p[content_end - 1] == '\r')
			content_end--;
		if (is_wsp((unsigned char)p[off])) {
			if (cur != NULL) {
				cur->value_len = content_end - (size_t)(cur->value - p);
				cur->raw_len = line_end - cur->raw_off;
			} else if (!orphan) {
				set_broken(hb, "header continuation line without a field");
			}
		} else {
			const char *colon = memchr(p + off, ':', content_end - off);

			if (colon != NULL && name_is_valid(p + off, (size_t)(colon - (p + off)))) {
				cur = add_field(hb, &slots);
				cur->name = p + off;
				cur->name_len = (size_t)(colon - (p + off));
				cur->value = colon + 1;
				cur->value_len = content_end - (size_t)(colon + 1 - p);
				cur->raw_off = off;
				cur->raw_len = line_end - off;
				orphan = false;
			} else {
				set_broken(hb, "header line is not a field");
				cur = NULL;
				orphan = true;
			}
		}
		off = line_end;
	}
	if (!has_end && len > 0 && p[len - 1] != '\n')
		set_broken(hb, "header ends inside a line");
}

/*
 * header_read - read and parse the header of the spool file fd
 *
 * Reads from offset 0 until the first empty line (CRLF CRLF, or CRLF at the
 * very start) or the end of the file. At most `limit` bytes of fields are
 * kept (the empty line not counted); past that the header is cut after its
 * last whole line, broken_reason says "header too long", and the scan goes on
 * without keeping bytes so that body_off still points after the real empty
 * line. Without an empty line the whole file is header and body_off is its
 * size. On success the block owns its memory until header_release(); on
 * failure (-1, errno set) it is left empty.
 */
int
header_read(struct header_block *hb, int fd, size_t limit)
{
	struct buf raw;
	char *win;
	uint64_t off = 0, raw_end = 0, body_off = 0;
	bool found = false, bol = true, bol_cr = false, too_long = false;
	int rc = -1;

	memset(hb, 0, sizeof(*hb));
	buf_init(&raw, 0);
	win = xmalloc(HEADER_READ_SIZE);
	while (!found) {
		ssize_t n = pread(fd, win, HEADER_READ_SIZE, (off_t)off);
		size_t i = 0, keep;

		if (n < 0) {
			if (errno == EINTR)
				continue;
			goto out;
		}
		if (n == 0)
			break;
		while (i < (size_t)n) {
			unsigned char c = (unsigned char)win[i];
			const char *nl;

			if (bol_cr) {
				bol_cr = false;
				if (c == '\n') {
					raw_end = off + i - 1;
					body_off = off + i + 1;
					found = true;
					break;
				}
				bol = false;	/* a CR that starts a line with more in it */
			} else if (bol) {
				if (c == '\n') {
					raw_end = off + i;
					body_off = off + i + 1;
					found = true;
					break;
				}
				if (c == '\r') {
					bol_cr = true;
					i++;
					continue;
				}
				bol = false;
			}
			nl = memchr(win + i, '\n', (size_t)n - i);
			if (nl == NULL) {
				i = (size_t)n;
				break;
			}
			i = (size_t)(nl - win) + 1;
			bol = true;
		}
		/* keep this window's bytes up to the limit; the cut comes after */
		keep = off < limit ? (size_t)(limit - off) : 0;
		if (keep > (size_t)n)
			keep = (size_t)n;
		buf_append(&raw, win, keep);
		off += (uint64_t)n;
	}
	if (!found) {
		raw_end = off;
		body_off = off;
	}
	if (raw_end > limit) {
		const char *nl;

		too_long = true;
		raw.len = limit;	/* raw holds exactly `limit` bytes here */
		nl = raw.len > 0 ? memrchr(raw.ptr, '\n', raw.len) : NULL;
		raw.len = nl ? (size_t)(nl - raw.ptr) + 1 : 0;
	} else {
		raw.len = (size_t)raw_end;
	}
	buf_cstr(&raw);
	hb->raw = raw.ptr;
	hb->raw_len = raw.len;
	raw.ptr = NULL;
	hb->body_off = (off_t)body_off;
	if (too_long) {
		set_broken(hb, "header too long");
		hb->truncated = true;
	}
	parse_fields(hb, found || too_long);
	rc = 0;
out:
	free(win);
	buf_release(&raw);
	return rc;
}

/*
 * header_parse - parse a header block held in memory
 *
 * raw[0..len) are the bytes before the empty line; has_end says whether the
 * empty line was seen. The block keeps its own copy. body_off is set as
 * header_read() would for a spool holding these bytes: len plus the CRLF of
 * the empty line when there was one.
 */
void
header_parse(struct header_block *hb, const char *raw, size_t len, bool has_end)
{
	memset(hb, 0, sizeof(*hb));
	hb->raw = xmalloc(len + 1);
	if (len > 0)
		memcpy(hb->raw, raw, len);
	hb->raw[len] = '\0';
	hb->raw_len = len;
	hb->body_off = (off_t)(has_end ? len + 2 : len);
	parse_fields(hb, has_end);
}

/* header_release - free what the block owns and leave it empty */
void
header_release(struct header_block *hb)
{
	free(hb->raw);
	free(hb->fields);
	memset(hb, 0, sizeof(*hb));
}

/* header_name_is - whether the field's name is `name`, ignoring ASCII case */
bool
header_name_is(const struct header_field *f, const char *name)
{
	return strlen(name) == f->name_len && strncasecmp(f->name, name, f->name_len) == 0;
}

/* header_find - the nth (from 0) field called name, ignoring case, or NULL */
const struct header_field *
header_find(const struct header_block *hb, const char *name, size_t nth)
{
	for (size_t i = 0; i < hb->nfields; i++) {
		if (header_name_is(&hb->fields[i], name) && nth-- == 0)
			return &hb->fields[i];
	}
	return NULL;
}

/*
 * header_unfold - the value as one line: folds removed, trimmed, NUL as space
 *
 * Every line break is removed, not only those before WSP: inside a parsed
 * field a line break is always followed by WSP, and a value from elsewhere
 * should not smuggle one through. Returns a string the caller frees.
 */
char *
header_unfold(const char *value, size_t len)
{
	char *out = xmalloc(len + 1);
	size_t o = 0, start = 0;

	for (size_t i = 0; i < len; i++) {
		char c = value[i];

		if (c == '\n' || (c == '\r' && i + 1 < len && value[i + 1] == '\n'))
			continue;
		out[o++] = c == '\0' ? ' ' : c;
	}
	while (o > 0 && is_wsp((unsigned char)out[o - 1]))
		o--;
	while (start < o && is_wsp((unsigned char)out[start]))
		start++;
	memmove(out, out + start, o - start);
	out[o - start] = '\0';
	return out;
}

/* The state of one header_decode() or header_to_utf8() call. */
struct decoder {
	struct buf out;		/* the UTF-8 result, owned until handed to the caller */
	size_t	cap;		/* most bytes out may hold */
	bool	is_full;	/* cap reached: the rest is dropped */
	char   *cd_charset;	/* charset cd converts from, owned, or NULL */
	iconv_t	cd;		/* converter to UTF-8, or (iconv_t)-1 when cd_charset is unknown */
	struct buf pend;	/* bytes of adjacent encoded-words not converted yet, owned */
	char   *pend_charset;	/* their charset, owned, or NULL */
	struct buf word;	/* bytes of the encoded-word being decoded, owned */
};

/* decoder_init - ready for an input of in_len bytes */
static void
decoder_init(struct decoder *d, size_t in_len)
{
	memset(d, 0, sizeof(*d));
	buf_init(&d->out, 0);
	buf_init(&d->pend, 0);
	buf_init(&d->word, 0);
	d->cap = in_len > (SIZE_MAX - DECODE_SLACK) / 4 ? SIZE_MAX - 1 : in_len * 4 + DECODE_SLACK;
	d->cd = (iconv_t)-1;
}

/* decoder_finish - free the work state and hand the result to the caller */
static char *
decoder_finish(struct decoder *d)
{
	char *result;

	if (d->cd != (iconv_t)-1)
		iconv_close(d->cd);
	free(d->cd_charset);
	free(d->pend_charset);
	buf_release(&d->pend);
	buf_release(&d->word);
	buf_cstr(&d->out);
	result = d->out.ptr;
	d->out.ptr = NULL;
	return result;
}

/* put - append whole characters, or nothing and stop once the cap is reached */
static void
put(struct decoder *d, const char *p, size_t n)
{
	if (d->is_full)
		return;
	if (n > d->cap - d->out.len) {
		d->is_full = true;
		return;
	}
	buf_append(&d->out, p, n);
}

/* utf8_len - length of the valid UTF-8 sequence at p, or 0 (overlong, surrogate, > U+10FFFF) */
static size_t
utf8_len(const unsigned char *p, size_t n)
{
	unsigned char c = p[0], lo = 0x80, hi = 0xbf;
	size_t need;

	if (c < 0x80)
		return 1;
	if (c < 0xc2)
		return 0;
	if (c < 0xe0)
		need = 2;
	else if (c < 0xf0) {
		need = 3;
		if (c == 0xe0)
			lo = 0xa0;
		else if (c == 0xed)
			hi = 0x9f;
	} else if (c < 0xf5) {
		need = 4;
		if (c == 0xf0)
			lo = 0x90;
		else if (c == 0xf4)
			hi = 0x8f;
	} else
		return 0;
	if (n < need || p[1] < lo || p[1] > hi)
		return 0;
	for (size_t i = 2; i < need; i++)
		if (p[i] < 0x80 || p[i] > 0xbf)
			return 0;
	return need;
}

/*
 * emit - append bytes that should be UTF-8, repairing what is not
 *
 * A byte that does not start a valid sequence becomes its ISO-8859-1
 * character when as_latin1 (raw header text) or U+FFFD otherwise (converted
 * text). NUL, CR and LF become spaces.
 */
static void
emit(struct decoder *d, const char *s, size_t n, bool as_latin1)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0;

	while (i < n && !d->is_full) {
		size_t j = i, k;

		while (j < n && p[j] < 0x80 && p[j] != '\0' && p[j] != '\r' && p[j] != '\n')
			j++;
		if (j > i) {
			size_t room = d->cap - d->out.len;

			if (j - i > room) {	/* ASCII: any cut falls between characters */
				buf_append(&d->out, s + i, room);
				d->is_full = true;
				return;
			}
			buf_append(&d->out, s + i, j - i);
			i = j;
			continue;
		}
		if (p[i] < 0x80) {
			put(d, " ", 1);
			i++;
		} else if ((k = utf8_len(p + i, n - i)) > 0) {
			put(d, s + i, k);
			i += k;
		} else if (as_latin1) {
			char two[2] = { (char)(0xc0 | (p[i] >> 6)), (char)(0x80 | (p[i] & 0x3f)) };

			put(d, two, 2);
			i++;
		} else {
			put(d, utf8_replacement, 3);
			i++;
		}
	}
}

/*
 * charset_name - the charset of an encoded-word or RFC 2231 value, normalised
 *
 * Lower case, RFC 2231 language suffix ("utf-8*en") removed. NULL when the
 * name is empty, too long, or has a byte no charset name has: iconv_open()
 * never sees arbitrary text. The caller frees the result.
 */
static char *
charset_name(const char *s, size_t n)
{
	const char *star = memchr(s, '*', n);
	char *name;

	if (star != NULL)
		n = (size_t)(star - s);
	if (n == 0 || n > CHARSET_NAME_MAX)
		return NULL;
	name = xstrndup(s, n);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)name[i];

		if (c >= 'A' && c <= 'Z')
			name[i] = (char)(c - 'A' + 'a');
		else if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		    c == '-' || c == '_' || c == '.' || c == ':' || c == '+')) {
			free(name);
			return NULL;
		}
	}
	return name;
}

/* is_utf8_charset - charsets taken as UTF-8 without iconv (ASCII is a subset) */
static bool
is_utf8_charset(const char *cs)
{
	return strcmp(cs, "utf-8") == 0 || strcmp(cs, "utf8") == 0 ||
	    strcmp(cs, "us-ascii") == 0 || strcmp(cs, "ascii") == 0;
}

/* converter - a converter from cs to UTF-8, reusing the last one; (iconv_t)-1 if unknown */
static iconv_t
converter(struct decoder *d, const char *cs)
{
	if (d->cd_charset != NULL && strcmp(d->cd_charset, cs) == 0)
		return d->cd;
	if (d->cd != (iconv_t)-1)
		iconv_close(d->cd);
	free(d->cd_charset);
	d->cd_charset = xstrdup(cs);
	d->cd = iconv_open("UTF-8", cs);
	return d->cd;
}

/* charset_is_known - whether convert() can handle cs */
static bool
charset_is_known(struct decoder *d, const char *cs)
{
	return is_utf8_charset(cs) || converter(d, cs) != (iconv_t)-1;
}

/* grow_scratch - double the conversion scratch; false when the result could not take more */
static bool
grow_scratch(const struct decoder *d, char **scratch, char **op, size_t *size, size_t *outleft)
{
	size_t used = (size_t)(*op - *scratch);

	if (used >= d->cap - d->out.len || *size > SIZE_MAX / 2)
		return false;
	*size *= 2;
	*scratch = xrealloc(*scratch, *size);
	*op = *scratch + used;
	*outleft = *size - used;
	return true;
}

/*
 * convert - append bytes in charset cs (known) as UTF-8
 *
 * A byte iconv() refuses (EILSEQ, or an incomplete sequence at the end)
 * becomes U+FFFD and conversion goes on after it. The scratch output grows
 * only while the result can still take it.
 */
static void
convert(struct decoder *d, const char *cs, const char *in, size_t n)
{
	iconv_t cd;
	char *scratch, *ip = (char *)in, *op;
	size_t size, inleft = n, outleft;

	if (is_utf8_charset(cs)) {
		emit(d, in, n, false);
		return;
	}
	cd = converter(d, cs);
	if (cd == (iconv_t)-1 || n == 0)
		return;
	size = outleft = n > (SIZE_MAX - 16) / 4 ? n : n * 4 + 16;
	scratch = op = xmalloc(size);
	iconv(cd, NULL, NULL, NULL, NULL);
	for (;;) {
		if (inleft == 0) {
			/* the input is done: write out a stateful charset's pending shift */
			if (iconv(cd, NULL, NULL, &op, &outleft) != (size_t)-1)
				break;
			if (errno == E2BIG && grow_scratch(d, &scratch, &op, &size, &outleft))
				continue;
			break;
		}
		if (iconv(cd, &ip, &inleft, &op, &outleft) != (size_t)-1)
			continue;
		if (errno == E2BIG) {
			if (grow_scratch(d, &scratch, &op, &size, &outleft))
				continue;
			break;
		}
		if (outleft < 3 && !grow_scratch(d, &scratch, &op, &size, &outleft))
			break;
		memcpy(op, utf8_replacement, 3);	/* EILSEQ or EINVAL: skip one byte */
		op += 3;
		outleft -= 3;
		ip++;
		inleft--;
	}
	emit(d, scratch, (size_t)(op - scratch), false);
	free(scratch);
}

/*
 * flush_pending - convert the bytes of the adjacent encoded-words gathered
 * so far; in a charset iconv does not know they are taken as raw header
 * text is (UTF-8 kept, other bytes as ISO-8859-1), as header_to_utf8 takes
 * an RFC 2231 value in one
 */
static void
flush_pending(struct decoder *d)
{
	if (d->pend.len > 0) {
		if (charset_is_known(d, d->pend_charset))
			convert(d, d->pend_charset, d->pend.ptr, d->pend.len);
		else
			emit(d, d->pend.ptr, d->pend.len, true);
	}
	buf_reset(&d->pend);
}

/* An encoded-word, =?charset?encoding?text?=, as found in the input. */
struct word {
	const char *charset;	/* its charset name, language suffix included */
	size_t	charset_len;	/* its length */
	char	encoding;	/* 'b' or 'q' */
	const char *text;	/* the encoded text */
	size_t	text_len;	/* its length */
};

/* parse_word - the encoded-word starting at s ("=?"): its length, or 0 if malformed */
static size_t
parse_word(const char *s, size_t n, struct word *w)
{
	size_t i = 2;

	while (i < n && s[i] != '?' && (unsigned char)s[i] > 32 && (unsigned char)s[i] < 127)
		i++;
	if (i == 2 || i + 2 >= n || s[i] != '?')
		return 0;
	w->charset = s + 2;
	w->charset_len = i - 2;
	i++;
	if (s[i] != 'b' && s[i] != 'B' && s[i] != 'q' && s[i] != 'Q')
		return 0;
	w->encoding = (char)(s[i] | 0x20);
	if (s[++i] != '?')
		return 0;
	w->text = s + ++i;
	while (i < n && s[i] != '?') {
		if ((unsigned char)s[i] <= 32 || (unsigned char)s[i] >= 127)
			return 0;	/* no space, control or 8-bit byte inside a word */
		i++;
	}
	if (i + 1 >= n || s[i + 1] != '=')
		return 0;
	w->text_len = (size_t)(s + i - w->text);
	return i + 2;
}

/*
 * word_bytes - decode the word's text into d->word; false if malformed
 *
 * B: base64 digits, then only '=' padding; unpadded text is accepted, a
 * single digit left over is not. Q: '_' is a space, =XX a byte; a '=' not
 * followed by two hex digits stays a '='.
 */
static bool
word_bytes(struct decoder *d, const struct word *w)
{
	const unsigned char *t = (const unsigned char *)w->text;

	buf_reset(&d->word);
	if (w->encoding == 'q') {
		for (size_t i = 0; i < w->text_len; i++) {
			char c = (char)t[i];
			int hi, lo;

			if (c == '_')
				c = ' ';
			else if (c == '=' && i + 2 < w->text_len &&
			    (hi = digit_hex(t[i + 1])) >= 0 && (lo = digit_hex(t[i + 2])) >= 0) {
				c = (char)(hi << 4 | lo);
				i += 2;
			}
			buf_append(&d->word, &c, 1);
		}
		return true;
	} else {
		uint32_t acc = 0;
		size_t nsext = 0;
		bool padding = false;

		for (size_t i = 0; i < w->text_len; i++) {
			int v = digit_b64(t[i]);

			if (t[i] == '=') {
				padding = true;
				continue;
			}
			if (v < 0 || padding)
				return false;
			acc = acc << 6 | (uint32_t)v;
			if (++nsext % 4 == 0) {
				char three[3] = { (char)(acc >> 16), (char)(acc >> 8), (char)acc };

				buf_append(&d->word, three, 3);
				acc = 0;
			}
		}
		if (nsext % 4 == 1)
			return false;
		if (nsext % 4 == 2) {
			char one = (char)(acc >> 4);

			buf_append(&d->word, &one, 1);
		} else if (nsext % 4 == 3) {
			char two[2] = { (char)(acc >> 10), (char)(acc >> 2) };

			buf_append(&d->word, two, 2);
		}
		return true;
	}
}

/* all_wsp - whether s[0..n) is only SP and HTAB (true when empty) */
static bool
all_wsp(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!is_wsp((unsigned char)s[i]))
			return false;
	return true;
}

/*
 * header_decode - the value unfolded, RFC 2047 words decoded, as valid UTF-8
 *
 * An encoded-word is decoded wherever it stands, even against other text
 * ("x=?utf-8?q?y?=" gives "xy"), as most mail readers do. Whitespace between
 * two decoded words disappears (RFC 2047 6.2), and the bytes of adjacent
 * words in one charset are converted together, so a character split across
 * two words survives. A word in a charset iconv does not know is decoded
 * all the same and its bytes taken as raw header text is: mail readers and
 * amavisd-new do show "=?x-unknown?b?ZXZpbC5leGU=?=" as "evil.exe", and a
 * banned-name rule must see what they show. A malformed word stays as it
 * is. Never fails; the caller frees the result.
 */
char *
header_decode(const char *value, size_t len)
{
	char *s = header_unfold(value, len);
	size_t n = strlen(s), i = 0, raw_start = 0, last_word_end = SIZE_MAX;
	struct decoder d;

	decoder_init(&d, n);
	while (i + 1 < n && !d.is_full) {
		const char *at = memchr(s + i, '=', n - i - 1);
		struct word w;
		size_t wlen;
		char *cs;

		if (at == NULL)
			break;
		i = (size_t)(at - s);
		if (s[i + 1] != '?' || (wlen = parse_word(s + i, n - i, &w)) == 0 ||
		    (cs = charset_name(w.charset, w.charset_len)) == NULL) {
			i++;
			continue;
		}
		if (d.pend.len > 0 && strcmp(cs, d.pend_charset) != 0)
			flush_pending(&d);	/* it comes first whatever happens to this word */
		if (!word_bytes(&d, &w)) {
			free(cs);
			i++;
			continue;
		}
		if (last_word_end != raw_start || !all_wsp(s + raw_start, i - raw_start)) {
			flush_pending(&d);
			emit(&d, s + raw_start, i - raw_start, true);
		}
		free(d.pend_charset);
		d.pend_charset = cs;
		buf_append(&d.pend, d.word.ptr, d.word.len);
		i += wlen;
		raw_start = last_word_end = i;
	}
	flush_pending(&d);
	emit(&d, s + raw_start, n - raw_start, true);
	free(s);
	return decoder_finish(&d);
}

/*
 * header_to_utf8 - bytes in a named charset as valid UTF-8 (RFC 2231 values)
 *
 * charset may be NULL or unknown: the bytes are then taken as header text
 * is (UTF-8 kept, other bytes as ISO-8859-1). Same bound and repairs as
 * header_decode(); never fails; the caller frees the result.
 */
char *
header_to_utf8(const char *charset, const char *bytes, size_t len)
{
	struct decoder d;
	char *cs = charset ? charset_name(charset, strlen(charset)) : NULL;

	decoder_init(&d, len);
	if (cs != NULL && charset_is_known(&d, cs))
		convert(&d, cs, bytes, len);
	else
		emit(&d, bytes, len, true);
	free(cs);
	return decoder_finish(&d);
}
