/*
 * esc - make network bytes safe to log; see esc.h
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/buf.h"
#include "util/esc.h"
#include "util/xalloc.h"

static size_t utf8_len(const unsigned char *p);

/* is_c1 - U+0080..U+009F as UTF-8: controls (NEL, CSI...) some viewers act on */
static bool
is_c1(const unsigned char *p, size_t n)
{
	return n == 2 && p[0] == 0xc2 && p[1] < 0xa0;
}

/*
 * utf8_char - length of the valid, printable UTF-8 character at p, within
 * left bytes; 0 when the bytes are not one (invalid, cut, or a C1 control)
 */
static size_t
utf8_char(const unsigned char *p, size_t left)
{
	unsigned char c[4] = { 0, 0, 0, 0 };
	size_t n;

	memcpy(c, p, left < 4 ? left : 4);	/* utf8_len reads up to 4 bytes */
	n = utf8_len(c);
	return n > 0 && n <= left && !is_c1(p, n) ? n : 0;
}

/*
 * esc_log - escaped copy of (p, len); the caller frees it
 *
 * Control bytes, backslash and double quote become \xHH, and so does every
 * byte that is not part of valid UTF-8 or is a C1 control (U+0080..U+009F),
 * so a log line stays one line of text whatever a peer sent.
 */
char *
esc_log(const char *p, size_t len)
{
	const unsigned char *u = (const unsigned char *)p;
	char *out, *o;

	if (len > ((size_t)-1) / 4 - 1)
		len = ((size_t)-1) / 4 - 1;
	o = out = xmalloc(len * 4 + 1);
	for (size_t i = 0; i < len;) {
		unsigned char c = u[i];
		size_t n = c >= 0x80 ? utf8_char(u + i, len - i) : 0;

		if (n > 0) {
			memcpy(o, u + i, n);
			o += n;
			i += n;
			continue;
		}
		if (c < 0x20 || c >= 0x7f || c == '\\' || c == '"') {
			snprintf(o, 5, "\\x%02x", c);
			o += 4;
		} else
			*o++ = (char)c;
		i++;
	}
	*o = '\0';
	return out;
}

/* esc_logs - esc_log of a C string; NULL reads as "" */
char *
esc_logs(const char *s)
{
	return esc_log(s ? s : "", s ? strlen(s) : 0);
}

/* esc_fputs - s onto f, escaped as esc_log does: text from mail for a terminal */
void
esc_fputs(const char *s, FILE *f)
{
	char *e = esc_logs(s);

	fputs(e, f);
	free(e);
}

/*
 * utf8_len - length of the valid UTF-8 character at p (RFC 3629 section 4), or 0
 *
 * Overlong forms, surrogates and code points past U+10FFFF are not valid.
 */
static size_t
utf8_len(const unsigned char *p)
{
	unsigned char lo = 0x80, hi = 0xbf;
	size_t n;

	if (*p >= 0xc2 && *p <= 0xdf)
		n = 2;
	else if (*p >= 0xe0 && *p <= 0xef) {
		n = 3;
		if (*p == 0xe0)
			lo = 0xa0;	/* overlong */
		else if (*p == 0xed)
			hi = 0x9f;	/* surrogates */
	} else if (*p >= 0xf0 && *p <= 0xf4) {
		n = 4;
		if (*p == 0xf0)
			lo = 0x90;	/* overlong */
		else if (*p == 0xf4)
			hi = 0x8f;	/* past U+10FFFF */
	} else
		return 0;
	if (p[1] < lo || p[1] > hi)
		return 0;
	for (size_t i = 2; i < n; i++)
		if ((p[i] & 0xc0) != 0x80)
			return 0;
	return n;
}

/*
 * esc_json - append s as the body of a JSON string (without the quotes)
 *
 * Quote, backslash and control bytes (C1 too) are escaped; a byte that is not part
 * of valid UTF-8 becomes the code point of the same value (U+0080..U+00FF),
 * so the line stays valid JSON whatever a peer sent.
 */
void
esc_json(struct buf *out, const char *s)
{
	const unsigned char *p = (const unsigned char *)s;

	while (*p) {
		size_t n = 0;

		if (*p == '"' || *p == '\\')
			buf_appendf(out, "\\%c", *p);
		else if (*p < 0x20 || *p == 0x7f)
			buf_appendf(out, "\\u%04x", *p);
		else if (*p < 0x80)
			buf_append(out, p, 1);
		else {
			n = utf8_len(p);
			if (is_c1(p, n)) {	/* a control: its code point, escaped */
				buf_appendf(out, "\\u%04x", p[1]);
				p += n;
				continue;
			}
			if (n > 0) {
				buf_append(out, p, n);
				p += n;
				continue;
			}
			buf_appendf(out, "\\u%04x", *p);
		}
		p++;
	}
}
