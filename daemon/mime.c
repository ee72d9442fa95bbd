/*
 * mime - the MIME structure of a spooled message, walked on demand
 *
 * See mime.h. mime_walk() reads the spool once, line by line, through one
 * 64 KiB window (struct reader). A line is copied only as far as the walk
 * needs it: a header line whole (up to what is left of max_header), a body
 * line only far enough to tell whether it is a boundary. So a 64 MiB message
 * costs the window and a few small buffers, whatever its shape.
 *
 * The parts not yet ended form an explicit stack (struct open_part): the
 * message, its multiparts, the part being read. Every line is first tested
 * against the boundaries of the open multiparts, innermost first. A match
 * ends every part above that multipart at the line end before the boundary
 * line (RFC 2046 5.1.1: that CRLF belongs to the boundary), then opens the
 * next child or, for "--boundary--", starts the epilogue. A multipart closed
 * by an outer boundary or by the end of the file never saw its own closing
 * line: that is damage, recorded, and the walk goes on. Otherwise a line is
 * a header line of the part on top (until its empty line) or body.
 *
 * Boundaries are matched exactly, "--" boundary with optional trailing
 * whitespace, as RFC 2046's grammar says; readers that follow its note and
 * match only a line's start would see more parts, so such a line (and a
 * delimiter after the closing one) is recorded as damage, as are fields
 * readers take in different ways (note_ambiguity). A boundary longer than
 * BOUNDARY_MAX is refused, so a line needs at most LINE_KEEP bytes copied to
 * be judged. Each part's header is parsed here (header.c); the values of
 * Content-Type and Content-Disposition and their parameters are taken apart
 * by mime_param.c. The part's body is decoded only when asked, by
 * mime_part_content() in mime_decode.c.
 *
 * Errors: -1 with errno only when the file cannot be read. Nothing here logs.
 * See also: mime_param.c (parameters), mime_decode.c (transfer decoding),
 * mime_int.h (what the three share).
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "header.h"
#include "mime.h"
#include "mime_int.h"
#include "util/xalloc.h"

#define BOUNDARY_MAX	200		/* longest boundary accepted: RFC 2046 says 70, some mailers exceed it */
#define LINE_KEEP	512		/* body-line bytes copied: "--" BOUNDARY_MAX "--" and some padding */
#define NO_PART		((size_t)-1)	/* a part the walk does not list */

enum {
	OPEN_LEAF,		/* a part whose body is just bytes */
	OPEN_MULTIPART,		/* a multipart being walked: its boundary is live */
	OPEN_MESSAGE,		/* message/rfc822: the part above it is the message inside */
};

enum {
	MP_PREAMBLE,		/* before the first boundary line */
	MP_CHILD,		/* inside a child (listed or not) */
	MP_EPILOGUE,		/* after the closing boundary line */
};

/* The spool, read line by line through one window. */
struct reader {
	int	fd;		/* the spool, borrowed */
	off_t	size;		/* bytes of the message */
	char   *win;		/* MIME_READ_SIZE bytes of the file, owned */
	off_t	win_off;	/* file offset of win[0] */
	size_t	win_len;	/* bytes valid in win */
	off_t	pos;		/* the next byte to read */
	struct buf line;	/* the current line's first bytes, owned */
	off_t	line_off;	/* the current line in the file */
	off_t	line_len;	/* its length, line end included */
	size_t	eol_len;	/* 2 for CRLF, 1 for a bare LF, 0 at the end of the file */
	bool	is_cut;		/* the line is longer than what line holds */
	bool	tail_is_wsp;	/* when cut and starting "--": the rest is only SP, HTAB, CR, LF */
	char	last;		/* the byte before pos, for a CRLF split between two reads */
};

/* A part not ended yet. */
struct open_part {
	size_t	part;		/* its index in tree->parts */
	off_t	start;		/* where its header begins */
	bool	in_header;	/* its header is still being read */
	bool	in_digest;	/* a child of multipart/digest: default type message/rfc822 */
	int	kind;		/* OPEN_LEAF, OPEN_MULTIPART or OPEN_MESSAGE */
	int	mp_state;	/* multipart: MP_PREAMBLE, MP_CHILD or MP_EPILOGUE */
	bool	is_digest;	/* multipart/digest */
	char   *boundary;	/* multipart: its boundary, owned */
	size_t	boundary_len;	/* its length */
};

/* One mime_walk(). */
struct walk {
	struct reader rd;		/* the spool, line by line */
	struct mime_tree *tree;		/* the result, borrowed */
	size_t	parts_size;		/* slots allocated in tree->parts */
	size_t	max_parts;		/* the limit, at least 1 (the message itself) */
	int	max_depth;		/* the limit, at least 0 */
	size_t	max_header;		/* the limit on one part's header */
	struct open_part *stack;	/* open parts, outermost first, owned */
	size_t	nopen;			/* entries in use */
	size_t	stack_size;		/* entries allocated */
	struct buf hdr;			/* the header being read, at most max_header bytes, owned */
	bool	hdr_is_full;		/* a line of it was dropped */
	char   *boundary;		/* boundary= of the header just parsed, owned until taken */
	size_t	boundary_len;		/* its length */
	size_t	prev_eol_len;		/* line end length of the line before the current one */
};

/* set_broken - record the first damage found */
static void
set_broken(struct walk *w, const char *reason)
{
	if (w->tree->broken_reason == NULL)
		w->tree->broken_reason = reason;
}

/*
 * read_line - the next line into r->line, at most cap bytes of it copied
 *
 * Returns 1 with a line, 0 at the end of the message, -1 with errno when the
 * file cannot be read. A file shorter than the size given ends early.
 */
static int
read_line(struct reader *r, size_t cap)
{
	buf_reset(&r->line);
	r->line_off = r->pos;
	r->is_cut = false;
	r->tail_is_wsp = true;
	r->eol_len = 0;
	while (r->pos < r->size) {
		const char *p, *nl;
		size_t at, avail, seg, keep;

		if (r->pos >= r->win_off + (off_t)r->win_len) {
			size_t want = MIME_READ_SIZE;
			ssize_t n;

			if ((off_t)want > r->size - r->pos)
				want = (size_t)(r->size - r->pos);
			n = pread(r->fd, r->win, want, r->pos);
			if (n < 0) {
				if (errno == EINTR)
					continue;
				return -1;
			}
			if (n == 0) {
				r->size = r->pos;
				break;
			}
			r->win_off = r->pos;
			r->win_len = (size_t)n;
		}
		at = (size_t)(r->pos - r->win_off);
		p = r->win + at;
		avail = r->win_len - at;
		nl = memchr(p, '\n', avail);
		seg = nl ? (size_t)(nl - p) + 1 : avail;
		keep = cap > r->line.len ? cap - r->line.len : 0;
		if (keep > seg)
			keep = seg;
		buf_append(&r->line, p, keep);
		if (keep < seg) {
			r->is_cut = true;
			if (r->tail_is_wsp && r->line.len >= 2 && r->line.ptr[0] == '-' && r->line.ptr[1] == '-') {
				for (size_t i = keep; i < seg; i++) {
					if (p[i] != ' ' && p[i] != '\t' && p[i] != '\r' && p[i] != '\n') {
						r->tail_is_wsp = false;
						break;
					}
				}
			}
		}
		r->pos += (off_t)seg;
		if (nl != NULL) {
			char before = seg >= 2 ? p[seg - 2] : r->last;

			r->eol_len = before == '\r' && r->pos - r->line_off >= 2 ? 2 : 1;
			r->last = '\n';
			break;
		}
		r->last = p[seg - 1];
	}
	r->line_len = r->pos - r->line_off;
	return r->line_len > 0 ? 1 : 0;
}

/* content_len - bytes of the current line held in r->line, line end excluded when known */
static size_t
content_len(const struct reader *r)
{
	return r->is_cut ? r->line.len : (size_t)r->line_len - r->eol_len;
}

/* match_boundary - whether the current line is e's delimiter; *is_close_r for "--b--" */
static bool
match_boundary(const struct reader *r, const struct open_part *e, bool *is_close_r)
{
	const char *p = r->line.ptr;
	size_t n = content_len(r), bl = e->boundary_len;

	if (r->is_cut && !r->tail_is_wsp)
		return false;
	while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t' || (r->is_cut && p[n - 1] == '\r')))
		n--;
	if (n < bl + 2 || memcmp(p + 2, e->boundary, bl) != 0)
		return false;
	if (n == bl + 2) {
		*is_close_r = false;
		return true;
	}
	if (n == bl + 4 && p[n - 2] == '-' && p[n - 1] == '-') {
		*is_close_r = true;
		return true;
	}
	return false;
}

/* add_part - list a new part; NO_PART (and damage recorded) past max_parts */
static size_t
add_part(struct walk *w, size_t parent, int depth)
{
	struct mime_tree *t = w->tree;
	struct mime_part *p;

	if (t->nparts >= w->max_parts) {
		set_broken(w, "too many MIME parts");
		return NO_PART;
	}
	if (t->nparts == w->parts_size) {
		w->parts_size = w->parts_size ? w->parts_size * 2 : 8;
		t->parts = xreallocarray(t->parts, w->parts_size, sizeof(*t->parts));
	}
	p = &t->parts[t->nparts];
	memset(p, 0, sizeof(*p));
	p->index = t->nparts;
	p->parent = parent;
	p->depth = depth;
	return t->nparts++;
}

/* push_open - a part whose header starts at start goes on top of the stack */
static void
push_open(struct walk *w, size_t part, off_t start, bool in_digest)
{
	struct open_part *e;

	if (w->nopen == w->stack_size) {
		w->stack_size = w->stack_size ? w->stack_size * 2 : 8;
		w->stack = xreallocarray(w->stack, w->stack_size, sizeof(*w->stack));
	}
	e = &w->stack[w->nopen++];
	memset(e, 0, sizeof(*e));
	e->part = part;
	e->start = start;
	e->in_header = true;
	e->in_digest = in_digest;
	e->kind = OPEN_LEAF;
	buf_reset(&w->hdr);
	w->hdr_is_full = false;
}

/* field_text - the unfolded value of the first field called name, or NULL */
static char *
field_text(const struct header_block *hb, const char *name)
{
	const struct header_field *f = header_find(hb, name, 0);

	return f ? header_unfold(f->value, f->value_len) : NULL;
}

/*
 * note_ambiguity - fields that readers take in different ways are damage
 *
 * Two Content-Type (or Content-Transfer-Encoding, Content-Disposition)
 * fields in one header: some readers take the first, some the last, so a
 * part could be text to us and an attachment to the recipient. Damage hands
 * the message to libclamav's own parser as a whole (clam.c), and policies
 * see msg.broken.
 */
static void
note_ambiguity(struct walk *w, const struct header_block *hb)
{
	static const char *const once[] = {
		"Content-Type", "Content-Transfer-Encoding", "Content-Disposition",
	};

	for (size_t i = 0; i < sizeof(once) / sizeof(once[0]); i++)
		if (header_find(hb, once[i], 1) != NULL)
			set_broken(w, "a MIME field given twice in one header");
}

/*
 * is_known_encoding - an RFC 2045 transfer encoding (the token, lower case)
 *
 * Any other value, or one that does not parse as a token ("\"base64\""),
 * is read differently by different readers: damage, as above.
 */
static bool
is_known_encoding(const char *token)
{
	return strcmp(token, "7bit") == 0 || strcmp(token, "8bit") == 0 ||
	       strcmp(token, "binary") == 0 || strcmp(token, "base64") == 0 ||
	       strcmp(token, "quoted-printable") == 0;
}

/*
 * finish_header - parse the header read for e and fill its part
 *
 * A multipart's boundary is left in w->boundary for descend(). Defaults per
 * RFC 2045 5.2 and RFC 2046 5.1.5: text/plain; charset=us-ascii, or
 * message/rfc822 inside multipart/digest; a Content-Type that cannot be
 * parsed counts as absent.
 */
static void
finish_header(struct walk *w, struct open_part *e, bool has_end)
{
	struct mime_part *p = &w->tree->parts[e->part];
	struct header_block hb;
	struct mime_field ct, cd;
	struct buf scratch;
	char *text;

	buf_init(&scratch, 0);
	header_parse(&hb, w->hdr.ptr, w->hdr.len, has_end);
	if (hb.broken_reason != NULL)
		set_broken(w, hb.broken_reason);
	memset(&ct, 0, sizeof(ct));
	memset(&cd, 0, sizeof(cd));

	note_ambiguity(w, &hb);
	if ((text = field_text(&hb, "Content-Type")) != NULL) {
		mime_param_parse(text, strlen(text), true, &ct);
		free(text);
	}
	if (ct.token != NULL) {
		p->content_type = xstrdup(ct.token);
		p->charset = mime_param_lower(&ct, "charset", &scratch);
	} else if (e->in_digest) {
		p->content_type = xstrdup("message/rfc822");
	} else {
		p->content_type = xstrdup("text/plain");
		p->charset = xstrdup("us-ascii");
	}
	free(w->boundary);
	w->boundary = NULL;
	if (strncmp(p->content_type, "multipart/", 10) == 0) {
		char *charset;
		bool is_plain;

		p->is_multipart = true;
		if (mime_param_get(&ct, "boundary", &scratch, &charset, &is_plain) && scratch.len > 0 &&
		    scratch.len <= BOUNDARY_MAX && memchr(scratch.ptr, '\0', scratch.len) == NULL &&
		    memchr(scratch.ptr, '\n', scratch.len) == NULL && memchr(scratch.ptr, '\r', scratch.len) == NULL) {
			w->boundary = xstrndup(scratch.ptr, scratch.len);
			w->boundary_len = scratch.len;
		}
		free(charset);
	}

	if ((text = field_text(&hb, "Content-Disposition")) != NULL) {
		mime_param_parse(text, strlen(text), false, &cd);
		free(text);
		if (cd.token != NULL)	/* RFC 2183 2.8: an unknown disposition is an attachment */
			p->disposition = xstrdup(strcmp(cd.token, "inline") == 0 ? "inline" : "attachment");
		p->filename = mime_param_text(&cd, "filename", &scratch);
	}
	if (p->filename == NULL)
		p->filename = mime_param_text(&ct, "name", &scratch);

	if ((text = field_text(&hb, "Content-Transfer-Encoding")) != NULL) {
		struct mime_field te;

		mime_param_parse(text, strlen(text), false, &te);
		free(text);
		if (te.token != NULL && is_known_encoding(te.token)) {
			p->encoding = te.token;
			te.token = NULL;
		} else
			set_broken(w, "unknown Content-Transfer-Encoding");
		mime_param_release(&te);
	}
	if (p->encoding == NULL)
		p->encoding = xstrdup("7bit");
	if (ct.overflow || cd.overflow)
		set_broken(w, "too many MIME parameters");

	mime_param_release(&ct);
	mime_param_release(&cd);
	header_release(&hb);
	buf_release(&scratch);
	buf_reset(&w->hdr);
	w->hdr_is_full = false;
	e->in_header = false;
}

/*
 * descend - after the header of the part on top: does its body hold parts?
 *
 * A multipart with a usable boundary becomes a live frame; message/rfc822
 * (not base64 or QP encoded, which RFC 2046 forbids and which we could not
 * read as a message) gets its inner message pushed as a child starting at
 * its body. Past max_depth, or without a boundary, the part stays a leaf.
 */
static void
descend(struct walk *w)
{
	struct open_part *e = &w->stack[w->nopen - 1];
	struct mime_part *p = &w->tree->parts[e->part];
	bool is_message = strcmp(p->content_type, "message/rfc822") == 0 ||
	    strcmp(p->content_type, "message/global") == 0;
	size_t child;

	if (p->is_multipart) {
		if (w->boundary == NULL) {
			set_broken(w, "multipart without boundary");
			return;
		}
		if (p->depth >= w->max_depth) {
			set_broken(w, "MIME nesting too deep");
			return;
		}
		e->kind = OPEN_MULTIPART;
		e->mp_state = MP_PREAMBLE;
		e->is_digest = strcmp(p->content_type, "multipart/digest") == 0;
		e->boundary = w->boundary;
		e->boundary_len = w->boundary_len;
		w->boundary = NULL;
		return;
	}
	if (!is_message || (strcmp(p->encoding, "7bit") != 0 && strcmp(p->encoding, "8bit") != 0 &&
	    strcmp(p->encoding, "binary") != 0))
		return;
	if (p->depth >= w->max_depth) {
		set_broken(w, "MIME nesting too deep");
		return;
	}
	child = add_part(w, e->part, p->depth + 1);
	if (child == NO_PART)
		return;
	e->kind = OPEN_MESSAGE;
	push_open(w, child, w->tree->parts[e->part].body_off, false);
}

/* close_top - the part on top ends at end (its body, or nothing if still in its header) */
static void
close_top(struct walk *w, off_t end)
{
	struct open_part *e = &w->stack[w->nopen - 1];
	struct mime_part *p;

	if (e->in_header) {
		finish_header(w, e, false);
		free(w->boundary);
		w->boundary = NULL;
		p = &w->tree->parts[e->part];
		p->body_off = end > e->start ? end : e->start;
		p->body_len = 0;
	} else {
		p = &w->tree->parts[e->part];
		p->body_len = end > p->body_off ? end - p->body_off : 0;
	}
	if (e->kind == OPEN_MULTIPART && e->mp_state != MP_EPILOGUE)
		set_broken(w, "MIME boundary never closed");
	free(e->boundary);
	w->nopen--;
}

/* on_boundary - the current line is a delimiter of the multipart at stack[k] */
static void
on_boundary(struct walk *w, size_t k, bool is_close)
{
	const struct reader *r = &w->rd;
	off_t end = r->line_off - (off_t)w->prev_eol_len;
	struct open_part *e;
	size_t child;

	while (w->nopen > k + 1)
		close_top(w, end);
	e = &w->stack[k];
	if (is_close) {
		e->mp_state = MP_EPILOGUE;
		return;
	}
	e->mp_state = MP_CHILD;
	child = add_part(w, e->part, w->tree->parts[e->part].depth + 1);
	if (child != NO_PART)
		push_open(w, child, r->line_off + r->line_len, e->is_digest);
}

/* header_line - the current line belongs to the header of the part on top */
static void
header_line(struct walk *w)
{
	const struct reader *r = &w->rd;
	struct open_part *e = &w->stack[w->nopen - 1];

	if (!r->is_cut && r->eol_len > 0 && content_len(r) == 0) {
		w->tree->parts[e->part].body_off = r->line_off + r->line_len;
		finish_header(w, e, true);
		descend(w);
		return;
	}
	if (w->hdr_is_full)
		return;
	if (r->is_cut || (size_t)r->line_len > w->max_header - w->hdr.len) {
		w->hdr_is_full = true;
		set_broken(w, "MIME part header too long");
		return;
	}
	buf_append(&w->hdr, r->line.ptr, r->line.len);
}

/*
 * looks_like_boundary - a line that is no delimiter here but starts with one
 *
 * RFC 2046 5.1.1 has readers compare only the start of a line with the
 * boundary, and many do, so "--Qjunk" ends a part for them though not for
 * this walk (exact, above); and a delimiter after the multipart's closing
 * one starts a new part for some readers. Either way the recipient may see
 * parts this walk does not list: damage (see note_ambiguity).
 */
static bool
looks_like_boundary(const struct walk *w)
{
	const struct reader *r = &w->rd;

	for (size_t k = w->nopen; k-- > 0;) {
		const struct open_part *e = &w->stack[k];

		if (e->kind == OPEN_MULTIPART && r->line.len >= e->boundary_len + 2 &&
		    memcmp(r->line.ptr + 2, e->boundary, e->boundary_len) == 0)
			return true;
	}
	return false;
}

/* walk_line - one line: a boundary, a header line, or body */
static void
walk_line(struct walk *w)
{
	const struct reader *r = &w->rd;

	if (r->line.len >= 2 && r->line.ptr[0] == '-' && r->line.ptr[1] == '-') {
		for (size_t k = w->nopen; k-- > 0;) {
			const struct open_part *e = &w->stack[k];
			bool is_close;

			if (e->kind == OPEN_MULTIPART && e->mp_state != MP_EPILOGUE &&
			    match_boundary(r, e, &is_close)) {
				on_boundary(w, k, is_close);
				return;
			}
		}
		if (looks_like_boundary(w))
			set_broken(w, "a line that some readers take for a MIME boundary");
	}
	if (w->stack[w->nopen - 1].in_header)
		header_line(w);
}

/*
 * only_body_left - nothing after this line can change the tree
 *
 * The part on top is in its body and no multipart is open around it: no
 * later line can be a header line or a boundary (or look like one), so the
 * part runs to the end of the message and the walk need not read the rest.
 * That is the whole body of most single-part mail.
 */
static bool
only_body_left(const struct walk *w)
{
	if (w->stack[w->nopen - 1].in_header)
		return false;
	for (size_t k = 0; k < w->nopen; k++)
		if (w->stack[k].kind == OPEN_MULTIPART)
			return false;
	return true;
}

/* line_cap - how much of the next line to copy */
static size_t
line_cap(const struct walk *w)
{
	size_t left;

	if (!w->stack[w->nopen - 1].in_header || w->hdr_is_full)
		return LINE_KEEP;
	left = w->max_header - w->hdr.len;
	if (left >= SIZE_MAX - 1)
		return left;
	return left + 1 > LINE_KEEP ? left + 1 : LINE_KEEP;
}

/*
 * mime_walk - list the parts of the message in fd (size bytes)
 *
 * On success tree owns its parts until mime_release(). On a read error it
 * is left empty and -1 is returned with errno set.
 */
int
mime_walk(int fd, off_t size, const struct mime_limits *lim, struct mime_tree *tree)
{
	struct walk w;
	int got, rc = -1, saved_errno;

	memset(tree, 0, sizeof(*tree));
	memset(&w, 0, sizeof(w));
	w.rd.fd = fd;
	w.rd.size = size > 0 ? size : 0;
	w.rd.win = xmalloc(MIME_READ_SIZE);
	buf_init(&w.rd.line, 0);
	buf_init(&w.hdr, 0);
	w.tree = tree;
	w.max_parts = lim->max_parts > 0 ? lim->max_parts : 1;
	w.max_depth = lim->max_depth > 0 ? lim->max_depth : 0;
	w.max_header = lim->max_header;

	push_open(&w, add_part(&w, 0, 0), 0, false);
	while ((got = read_line(&w.rd, line_cap(&w))) > 0) {
		walk_line(&w);
		w.prev_eol_len = w.rd.eol_len;
		if (only_body_left(&w)) {
			got = 0;
			break;
		}
	}
	if (got == 0) {
		while (w.nopen > 0)
			close_top(&w, w.rd.size);
		rc = 0;
	}
	saved_errno = errno;
	while (w.nopen > 0)
		free(w.stack[--w.nopen].boundary);
	free(w.stack);
	free(w.boundary);
	free(w.rd.win);
	buf_release(&w.rd.line);
	buf_release(&w.hdr);
	if (rc < 0)
		mime_release(tree);
	errno = saved_errno;
	return rc;
}

/* mime_release - free the parts and leave the tree empty */
void
mime_release(struct mime_tree *tree)
{
	for (size_t i = 0; i < tree->nparts; i++) {
		struct mime_part *p = &tree->parts[i];

		free(p->content_type);
		free(p->charset);
		free(p->filename);
		free(p->disposition);
		free(p->encoding);
	}
	free(tree->parts);
	memset(tree, 0, sizeof(*tree));
}
