/*
 * dotstuff - the DATA stream: undo dot-stuffing on the way in, redo it on the way out
 *
 * unstuff_feed() decodes what a client sends after DATA: it drops the stuffed
 * dot at the start of a line, stops after the CRLF.CRLF that ends the data, and
 * turns a bare LF into CRLF. A line that starts after a bare LF is *not* a line
 * start: ".\r\n" there is content, not the end. That closes the SMTP smuggling
 * hole (a downstream MTA that ends data at LF.CRLF would otherwise see two
 * messages where we saw one). Bare CR passes unchanged.
 *
 * lfnorm_feed() does the same LF normalisation for BDAT chunks (no dots there).
 * stuff_feed() encodes spool bytes for DATA downstream; stuff_end() finishes.
 * All three keep their state across calls, so input may be split anywhere.
 */
#ifndef POSTERN_DOTSTUFF_H
#define POSTERN_DOTSTUFF_H

#include <stdbool.h>
#include <stddef.h>

#include "util/buf.h"

struct unstuff {
	int	state;		/* where in a line the next byte falls */
};

struct lfnorm {
	bool	last_cr;	/* previous byte was CR */
};

struct stuff {
	bool	at_bol;		/* next byte starts a line */
};

void unstuff_init(struct unstuff *u);
size_t unstuff_feed(struct unstuff *u, const char *in, size_t len, struct buf *out, bool *done_r);
void lfnorm_init(struct lfnorm *n);
void lfnorm_feed(struct lfnorm *n, const char *in, size_t len, struct buf *out);
void stuff_init(struct stuff *s);
void stuff_feed(struct stuff *s, const char *in, size_t len, struct buf *out);
void stuff_end(struct stuff *s, struct buf *out);

#endif
