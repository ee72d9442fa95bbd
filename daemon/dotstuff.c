/*
 * dotstuff - the DATA stream: undo dot-stuffing on the way in, redo it on the way out
 *
 * See dotstuff.h. The decoder is a byte state machine with a fast path: inside
 * a line it copies the run up to the next CR or LF in one append.
 */
#include <string.h>

#include "dotstuff.h"

enum {
	US_BOL,		/* at the start of a line (after CRLF, or at the start) */
	US_BOL_DOT,	/* line started with '.' */
	US_BOL_DOT_CR,	/* line started with ".\r" */
	US_MID,		/* inside a line */
	US_CR,		/* inside a line, after '\r' */
};

/* unstuff_init - ready for the first byte after "354" */
void
unstuff_init(struct unstuff *u)
{
	u->state = US_BOL;
}

/*
 * span_plain - length of the run before the next CR or LF
 *
 * Two memchr() calls, the second bounded by the first: a byte loop here was
 * most of what receiving a message cost in user time.
 */
static size_t
span_plain(const char *p, size_t len)
{
	const char *cr = memchr(p, '\r', len);
	const char *lf = memchr(p, '\n', cr != NULL ? (size_t)(cr - p) : len);

	if (lf != NULL)
		return (size_t)(lf - p);
	return cr != NULL ? (size_t)(cr - p) : len;
}

/*
 * unstuff_feed - decode in[0..len), appending to out
 *
 * Returns the bytes consumed: all of them, or fewer when the end of data was
 * reached (*done_r set; what follows belongs to the next command).
 */
size_t
unstuff_feed(struct unstuff *u, const char *in, size_t len, struct buf *out, bool *done_r)
{
	size_t i = 0;

	*done_r = false;
	while (i < len) {
		char c = in[i];

		switch (u->state) {
		case US_BOL:
			if (c == '.') {
				u->state = US_BOL_DOT;
				i++;
				continue;
			}
			u->state = US_MID;
			continue;
		case US_BOL_DOT:
			if (c == '\r') {
				u->state = US_BOL_DOT_CR;
				i++;
				continue;
			}
			u->state = US_MID;	/* the stuffed dot is dropped */
			continue;
		case US_BOL_DOT_CR:
			if (c == '\n') {
				*done_r = true;
				return i + 1;
			}
			buf_append(out, "\r", 1);
			u->state = US_MID;
			continue;
		case US_CR:
			if (c == '\n') {
				buf_append(out, "\r\n", 2);
				u->state = US_BOL;
				i++;
				continue;
			}
			buf_append(out, "\r", 1);	/* bare CR: kept */
			u->state = US_MID;
			continue;
		default: {		/* US_MID */
			size_t n = span_plain(in + i, len - i);

			buf_append(out, in + i, n);
			i += n;
			if (i == len)
				break;
			if (in[i] == '\r')
				u->state = US_CR;
			else
				buf_append(out, "\r\n", 2);	/* bare LF: no line start */
			i++;
		}
		}
	}
	return i;
}

/* lfnorm_init - ready for the first BDAT byte */
void
lfnorm_init(struct lfnorm *n)
{
	n->last_cr = false;
}

/* lfnorm_feed - copy in to out, turning a bare LF into CRLF */
void
lfnorm_feed(struct lfnorm *n, const char *in, size_t len, struct buf *out)
{
	size_t start = 0;

	for (size_t i = 0; i < len; i++) {
		if (in[i] == '\n' && !n->last_cr) {
			buf_append(out, in + start, i - start);
			buf_append(out, "\r\n", 2);
			start = i + 1;
		}
		n->last_cr = in[i] == '\r';
	}
	buf_append(out, in + start, len - start);
}

/* stuff_init - ready for the first byte of the message */
void
stuff_init(struct stuff *s)
{
	s->at_bol = true;
}

/*
 * stuff_feed - copy spool bytes (CRLF lines) to out, doubling a leading dot
 *
 * Goes from line start to line start with memchr(); only the first byte of
 * each line is looked at.
 */
void
stuff_feed(struct stuff *s, const char *in, size_t len, struct buf *out)
{
	size_t start = 0, i = 0;

	while (i < len) {
		const char *lf;

		if (s->at_bol && in[i] == '.') {
			buf_append(out, in + start, i - start);
			buf_append(out, ".", 1);
			start = i;
		}
		lf = memchr(in + i, '\n', len - i);
		if (lf == NULL) {
			s->at_bol = false;
			break;
		}
		i = (size_t)(lf - in) + 1;
		s->at_bol = true;
	}
	buf_append(out, in + start, len - start);
}

/* stuff_end - the end-of-data line, after a CRLF if the message lacked one */
void
stuff_end(struct stuff *s, struct buf *out)
{
	if (!s->at_bol)
		buf_append(out, "\r\n", 2);
	buf_append(out, ".\r\n", 3);
	s->at_bol = true;
}
