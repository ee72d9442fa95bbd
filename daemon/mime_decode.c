/*
 * mime_decode - one part's body, transfer-decoded (mime_part_content())
 *
 * See mime.h. mime_part_content() reads the part's body from the spool with
 * pread() in MIME_READ_SIZE chunks and decodes each chunk as it comes:
 * base64 and quoted-printable (RFC 2045 6.7, 6.8) through streaming decoders
 * that keep their state across reads, anything else (7bit, 8bit, binary,
 * unknown encodings, multiparts) raw. At most the caller's limit of decoded
 * bytes is handed over; reading stops there.
 *
 * Errors: -1 with errno when the file cannot be read, ENOBUFS when the
 * output buffer refuses to grow. Nothing here logs.
 * See also: mime.c (where the body lies and its encoding).
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mime.h"
#include "mime_int.h"
#include "util/digits.h"
#include "util/xalloc.h"

#define QP_WSP_MAX	1024		/* whitespace held back by the QP decoder in case a line end follows */

enum {
	CTE_RAW,		/* 7bit, 8bit, binary, unknown, and multiparts */
	CTE_BASE64,
	CTE_QP,
};

enum {
	QP_TEXT,		/* ordinary text */
	QP_CR,			/* after a CR in text: a line end if LF follows */
	QP_EQ,			/* after '=' */
	QP_EQ_HEX,		/* after '=' and one hex digit */
	QP_EQ_WSP,		/* after '=' and whitespace: a soft line break if a line end follows */
	QP_EQ_CR,		/* after '=', maybe whitespace, and CR */
};

/* One mime_part_content(): the decoder state carried from one read to the next. */
struct content {
	struct buf *out;	/* where decoded bytes go, borrowed */
	size_t	limit;		/* most bytes to give */
	size_t	given;		/* bytes given so far */
	bool	is_done;	/* the limit was passed or out refused: stop reading */
	bool	is_truncated;	/* more decoded bytes existed than the limit */
	int	error;		/* errno when out refused to grow, else 0 */
	struct buf dec;		/* bytes decoded from the current read, owned */
	uint32_t b64_acc;	/* base64: bits gathered */
	int	b64_count;	/* base64: digits in b64_acc */
	bool	b64_ended;	/* base64: '=' seen */
	int	qp_state;	/* quoted-printable: QP_* */
	int	qp_hex;		/* quoted-printable: the first hex digit after '=' */
	struct buf qp_wsp;	/* quoted-printable: whitespace held back, owned */
};

/* give - hand decoded bytes to out, up to the limit */
static void
give(struct content *c, const char *p, size_t n)
{
	size_t room = c->limit - c->given;

	if (c->is_done || n == 0)
		return;
	if (n > room) {
		c->is_truncated = true;
		c->is_done = true;
		n = room;
	}
	if (buf_append(c->out, p, n) < 0) {
		c->error = ENOBUFS;
		c->is_done = true;
		return;
	}
	c->given += n;
}

/* b64_flush - the bytes of an incomplete last quantum */
static void
b64_flush(struct content *c)
{
	char two[2];

	if (c->b64_count == 2) {
		two[0] = (char)(c->b64_acc >> 4);
		buf_append(&c->dec, two, 1);
	} else if (c->b64_count == 3) {
		two[0] = (char)(c->b64_acc >> 10);
		two[1] = (char)(c->b64_acc >> 2);
		buf_append(&c->dec, two, 2);
	}
	c->b64_count = 0;
	c->b64_acc = 0;
}

/* b64_feed - decode base64, skipping what is not a digit, ending at '=' */
static void
b64_feed(struct content *c, const char *p, size_t n)
{
	for (size_t i = 0; i < n && !c->b64_ended; i++) {
		int v = digit_b64((unsigned char)p[i]);

		if (p[i] == '=') {
			b64_flush(c);
			c->b64_ended = true;
			break;
		}
		if (v < 0)
			continue;
		c->b64_acc = c->b64_acc << 6 | (uint32_t)v;
		if (++c->b64_count == 4) {
			char three[3] = { (char)(c->b64_acc >> 16), (char)(c->b64_acc >> 8), (char)c->b64_acc };

			buf_append(&c->dec, three, 3);
			c->b64_count = 0;
			c->b64_acc = 0;
		}
	}
}

/* qp_flush_wsp - held-back whitespace turns out to be text */
static void
qp_flush_wsp(struct content *c)
{
	buf_append(&c->dec, c->qp_wsp.ptr, c->qp_wsp.len);
	buf_reset(&c->qp_wsp);
}

/* qp_literal - a '=' sequence that is not an escape is kept as it was */
static void
qp_literal(struct content *c)
{
	buf_append(&c->dec, "=", 1);
	if (c->qp_state == QP_EQ_HEX) {
		char h = (char)c->qp_hex;

		buf_append(&c->dec, &h, 1);
	}
	if (c->qp_state == QP_EQ_WSP || c->qp_state == QP_EQ_CR)
		qp_flush_wsp(c);
	if (c->qp_state == QP_EQ_CR)
		buf_append(&c->dec, "\r", 1);
	c->qp_state = QP_TEXT;
}

/*
 * qp_feed - decode quoted-printable (RFC 2045 6.7)
 *
 * Soft line breaks ("=" CRLF, with transport padding allowed before the
 * CRLF) vanish, =XX is a byte, a '=' sequence that is neither stays as it
 * is, and whitespace at the end of a line is dropped (rule 3). Runs of plain
 * text are copied in one append.
 */
static void
qp_feed(struct content *c, const char *p, size_t n)
{
	size_t i = 0;

	while (i < n) {
		unsigned char ch = (unsigned char)p[i];
		size_t j;
		int h;

		switch (c->qp_state) {
		case QP_TEXT:
			if (ch == ' ' || ch == '\t') {
				if (c->qp_wsp.len == QP_WSP_MAX)
					qp_flush_wsp(c);
				buf_append(&c->qp_wsp, &p[i], 1);
				i++;
				continue;
			}
			if (ch == '\r') {
				c->qp_state = QP_CR;
				i++;
				continue;
			}
			if (ch == '\n') {	/* a bare LF ends a line too */
				buf_reset(&c->qp_wsp);
				buf_append(&c->dec, "\n", 1);
				i++;
				continue;
			}
			qp_flush_wsp(c);
			if (ch == '=') {
				c->qp_state = QP_EQ;
				i++;
				continue;
			}
			for (j = i; j < n && p[j] != ' ' && p[j] != '\t' && p[j] != '\r' && p[j] != '\n' &&
			     p[j] != '='; j++)
				;
			buf_append(&c->dec, p + i, j - i);
			i = j;
			continue;
		case QP_CR:
			c->qp_state = QP_TEXT;
			if (ch == '\n') {
				buf_reset(&c->qp_wsp);
				buf_append(&c->dec, "\r\n", 2);
				i++;
			} else {
				qp_flush_wsp(c);
				buf_append(&c->dec, "\r", 1);
			}
			continue;
		case QP_EQ:
			if ((h = mime_hex_value(ch)) >= 0) {
				c->qp_hex = (int)ch;
				c->qp_state = QP_EQ_HEX;
			} else if (ch == ' ' || ch == '\t') {
				buf_append(&c->qp_wsp, &p[i], 1);
				c->qp_state = QP_EQ_WSP;
			} else if (ch == '\r') {
				c->qp_state = QP_EQ_CR;
			} else if (ch == '\n') {
				c->qp_state = QP_TEXT;	/* soft line break with a bare LF */
			} else {
				qp_literal(c);
				continue;
			}
			i++;
			continue;
		case QP_EQ_HEX:
			if ((h = mime_hex_value(ch)) >= 0) {
				char byte = (char)(mime_hex_value((unsigned char)c->qp_hex) << 4 | h);

				buf_append(&c->dec, &byte, 1);
				c->qp_state = QP_TEXT;
				i++;
			} else
				qp_literal(c);
			continue;
		case QP_EQ_WSP:
			if ((ch == ' ' || ch == '\t') && c->qp_wsp.len < QP_WSP_MAX) {
				buf_append(&c->qp_wsp, &p[i], 1);
			} else if (ch == '\r') {
				c->qp_state = QP_EQ_CR;
			} else if (ch == '\n') {
				buf_reset(&c->qp_wsp);
				c->qp_state = QP_TEXT;
			} else {
				qp_literal(c);
				continue;
			}
			i++;
			continue;
		case QP_EQ_CR:
			if (ch == '\n') {
				buf_reset(&c->qp_wsp);
				c->qp_state = QP_TEXT;
				i++;
			} else
				qp_literal(c);
			continue;
		}
	}
}

/*
 * qp_end - the body ended in the middle of something
 *
 * The last line of a part has no line end of its own (it went to the
 * boundary), so trailing whitespace and a final '=' are dropped as they
 * would be before a CRLF.
 */
static void
qp_end(struct content *c)
{
	switch (c->qp_state) {
	case QP_CR:
		qp_flush_wsp(c);
		buf_append(&c->dec, "\r", 1);
		break;
	case QP_EQ_HEX:
		qp_literal(c);
		break;
	default:
		break;
	}
	buf_reset(&c->qp_wsp);
	c->qp_state = QP_TEXT;
}

/*
 * mime_part_content - append the part's body, transfer-decoded, to out
 *
 * At most limit decoded bytes are appended; *truncated_r says more existed.
 * Multiparts and unknown encodings give their raw bytes. Returns 0, or -1
 * with errno when the file cannot be read (or ENOBUFS when out's own limit
 * refuses the bytes); out then holds what was decoded before.
 */
int
mime_part_content(int fd, const struct mime_part *p, size_t limit, struct buf *out,
		  bool *truncated_r)
{
	struct content c;
	char *chunk;
	off_t off = p->body_off, left = p->body_len;
	int cte = CTE_RAW, rc = 0;

	if (!p->is_multipart && p->encoding != NULL) {
		if (strcmp(p->encoding, "base64") == 0)
			cte = CTE_BASE64;
		else if (strcmp(p->encoding, "quoted-printable") == 0)
			cte = CTE_QP;
	}
	memset(&c, 0, sizeof(c));
	c.out = out;
	c.limit = limit;
	buf_init(&c.dec, 0);
	buf_init(&c.qp_wsp, 0);
	chunk = xmalloc(MIME_READ_SIZE);
	while (left > 0 && !c.is_done && !(cte == CTE_BASE64 && c.b64_ended)) {
		size_t want = left > MIME_READ_SIZE ? MIME_READ_SIZE : (size_t)left;
		ssize_t n = pread(fd, chunk, want, off);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			rc = -1;
			break;
		}
		if (n == 0)
			break;
		off += n;
		left -= n;
		if (cte == CTE_RAW) {
			give(&c, chunk, (size_t)n);
			continue;
		}
		buf_reset(&c.dec);
		if (cte == CTE_BASE64)
			b64_feed(&c, chunk, (size_t)n);
		else
			qp_feed(&c, chunk, (size_t)n);
		give(&c, c.dec.ptr, c.dec.len);
	}
	if (rc == 0 && !c.is_done && cte != CTE_RAW) {
		buf_reset(&c.dec);
		if (cte == CTE_BASE64)
			b64_flush(&c);
		else
			qp_end(&c);
		give(&c, c.dec.ptr, c.dec.len);
	}
	if (rc == 0 && c.error != 0) {
		errno = c.error;
		rc = -1;
	}
	*truncated_r = c.is_truncated;
	free(chunk);
	buf_release(&c.dec);
	buf_release(&c.qp_wsp);
	return rc;
}
