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
 * whitespace, as RFC 2046 says and most readers do; a boundary longer than
 * BOUNDARY_MAX is refused, so a line needs at most LINE_KEEP bytes copied to
 * be judged. Content-Type and Content-Disposition parameters follow RFC 2045
 * (quoted strings, comments) and RFC 2231 (sections, charset'lang'%XX), with
 * the common leniencies: no ';' needed before the first parameter, an
 * unquoted value runs to ';' or '(', RFC 2047 words inside a quoted filename
 * are decoded.
 *
 * mime_part_content() decodes one part's body in MIME_READ_SIZE reads with
 * streaming base64 and quoted-printable decoders that keep their state
 * across reads.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "header.h"
#include "mime.h"
#include "util/xalloc.h"

#define MIME_READ_SIZE	(64 * 1024)	/* bytes per pread(), for the walk and for content */
#define BOUNDARY_MAX	200		/* longest boundary accepted: RFC 2046 says 70, some mailers exceed it */
#define LINE_KEEP	512		/* body-line bytes copied: "--" BOUNDARY_MAX "--" and some padding */
#define PARAMS_MAX	64		/* parameters of one field looked at; real fields have a handful */
#define SECTION_MAX	999		/* highest RFC 2231 section assembled */
#define QP_WSP_MAX	1024		/* whitespace held back by the QP decoder in case a line end follows */
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

/* Parameters of one structured field, as parsed. */
struct param {
	char   *name;		/* attribute, lower case, RFC 2231 suffix removed, owned */
	int	section;	/* RFC 2231 section number, -1 for none */
	bool	is_ext;		/* RFC 2231 extended value (charset'lang'%XX) */
	char   *value;		/* the value, unquoted, owned */
	size_t	value_len;	/* its length */
};

/* One Content-Type or Content-Disposition value. */
struct field_value {
	char   *token;			/* "type/subtype" or the disposition, lower case, owned; NULL if malformed */
	struct param params[PARAMS_MAX];	/* the first PARAMS_MAX parameters */
	size_t	nparams;		/* entries used */
};

/* is_token_char - allowed in an RFC 2045 token: not a space, control or tspecial */
static bool
is_token_char(unsigned char c)
{
	return c > 32 && c < 127 && strchr("()<>@,;:\\\"/[]?=", c) == NULL;
}

/* lower - ASCII lower case in place */
static void
lower(char *s)
{
	for (; *s; s++)
		if (*s >= 'A' && *s <= 'Z')
			*s = (char)(*s - 'A' + 'a');
}

/* skip_cfws - past whitespace and (nested (comments)) */
static size_t
skip_cfws(const char *s, size_t n, size_t i)
{
	while (i < n) {
		if (s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\n') {
			i++;
		} else if (s[i] == '(') {
			size_t depth = 1;

			for (i++; i < n && depth > 0; i++) {
				if (s[i] == '\\')
					i++;
				else if (s[i] == '(')
					depth++;
				else if (s[i] == ')')
					depth--;
			}
		} else
			break;
	}
	return i < n ? i : n;
}

/* skip_token - past a run of token characters */
static size_t
skip_token(const char *s, size_t n, size_t i)
{
	while (i < n && is_token_char((unsigned char)s[i]))
		i++;
	return i;
}

/* add_param - record attr = value, splitting off an RFC 2231 "*n" / "*" suffix */
static void
add_param(struct field_value *fv, const char *attr, size_t alen, struct buf *value)
{
	const char *star = memchr(attr, '*', alen);
	struct param *pm;
	int section = -1;
	bool is_ext = false;

	if (fv->nparams == PARAMS_MAX)
		return;
	if (star != NULL) {
		const char *q = star + 1, *end = attr + alen;

		if (q == end) {
			is_ext = true;	/* "name*": one extended value */
		} else {
			if (*q < '0' || *q > '9')
				return;	/* "name*x": no form we know */
			section = 0;
			while (q < end && *q >= '0' && *q <= '9') {
				section = section * 10 + (*q++ - '0');
				if (section > SECTION_MAX)
					return;
			}
			if (q < end && *q == '*') {
				is_ext = true;	/* "name*0*" */
				q++;
			}
			if (q != end)
				return;
		}
		alen = (size_t)(star - attr);
	}
	if (alen == 0)
		return;
	pm = &fv->params[fv->nparams++];
	pm->name = xstrndup(attr, alen);
	lower(pm->name);
	pm->section = section;
	pm->is_ext = is_ext;
	pm->value_len = value->len;
	pm->value = xmalloc(value->len + 1);
	if (value->len > 0)
		memcpy(pm->value, value->ptr, value->len);
	pm->value[value->len] = '\0';
}

/*
 * parse_field_value - "token[/token] *(; attribute=value)" from an unfolded value
 *
 * Damage is stepped over: junk before a parameter is skipped, an attribute
 * without '=' is dropped, an unterminated quoted string or comment ends at
 * the end of the value.
 */
static void
parse_field_value(const char *s, size_t n, bool has_subtype, struct field_value *fv)
{
	struct buf value;
	size_t i, a;

	memset(fv, 0, sizeof(*fv));
	buf_init(&value, 0);
	i = skip_cfws(s, n, 0);
	a = i;
	i = skip_token(s, n, i);
	if (i > a) {
		size_t type_end = i, b;

		if (has_subtype) {
			i = skip_cfws(s, n, i);
			if (i < n && s[i] == '/') {
				i = skip_cfws(s, n, i + 1);
				b = i;
				i = skip_token(s, n, i);
				if (i > b)
					fv->token = xasprintf("%.*s/%.*s", (int)(type_end - a), s + a,
							      (int)(i - b), s + b);
			}
		} else
			fv->token = xstrndup(s + a, i - a);
		if (fv->token != NULL)
			lower(fv->token);
	}
	while (i < n) {
		size_t attr, attr_end;

		i = skip_cfws(s, n, i);
		if (i >= n)
			break;
		if (!is_token_char((unsigned char)s[i]) || s[i] == '*') {
			i++;
			continue;
		}
		attr = i;
		attr_end = i = skip_token(s, n, i);
		i = skip_cfws(s, n, i);
		if (i >= n || s[i] != '=') {
			while (i < n && s[i] != ';')
				i++;
			continue;
		}
		i = skip_cfws(s, n, i + 1);
		buf_reset(&value);
		if (i < n && s[i] == '"') {
			for (i++; i < n && s[i] != '"'; i++) {
				if (s[i] == '\\' && i + 1 < n)
					i++;
				buf_append(&value, &s[i], 1);
			}
			i++;
		} else {
			size_t v = i, end;

			while (i < n && s[i] != ';' && s[i] != '(')
				i++;
			end = i;
			while (end > v && (s[end - 1] == ' ' || s[end - 1] == '\t'))
				end--;
			buf_append(&value, s + v, end - v);
		}
		add_param(fv, s + attr, attr_end - attr, &value);
		while (i < n && s[i] != ';')
			i++;
	}
	buf_release(&value);
}

/* field_value_release - free what parse_field_value() made */
static void
field_value_release(struct field_value *fv)
{
	free(fv->token);
	for (size_t i = 0; i < fv->nparams; i++) {
		free(fv->params[i].name);
		free(fv->params[i].value);
	}
	memset(fv, 0, sizeof(*fv));
}

/* find_param - the first parameter name with this section and form, or NULL */
static const struct param *
find_param(const struct field_value *fv, const char *name, int section, int is_ext)
{
	for (size_t i = 0; i < fv->nparams; i++) {
		const struct param *pm = &fv->params[i];

		if (pm->section == section && strcmp(pm->name, name) == 0 &&
		    (is_ext < 0 || pm->is_ext == (bool)is_ext))
			return pm;
	}
	return NULL;
}

/* hex_value - value of one hex digit, or -1 */
static int
hex_value(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* percent_decode - append s[0..n) with %XX decoded (a bad escape stays as it is) */
static void
percent_decode(struct buf *out, const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		int hi, lo;
		char c = s[i];

		if (c == '%' && i + 2 < n && (hi = hex_value((unsigned char)s[i + 1])) >= 0 &&
		    (lo = hex_value((unsigned char)s[i + 2])) >= 0) {
			c = (char)(hi << 4 | lo);
			i += 2;
		}
		buf_append(out, &c, 1);
	}
}

/* decode_ext_first - "charset'lang'%XX..." : the bytes into out, the charset into *charset_r */
static void
decode_ext_first(const struct param *pm, struct buf *out, char **charset_r)
{
	const char *q1 = memchr(pm->value, '\'', pm->value_len), *q2 = NULL, *rest = pm->value;

	if (q1 != NULL)
		q2 = memchr(q1 + 1, '\'', pm->value_len - (size_t)(q1 + 1 - pm->value));
	if (q2 != NULL) {
		free(*charset_r);
		*charset_r = xstrndup(pm->value, (size_t)(q1 - pm->value));
		rest = q2 + 1;
	}
	percent_decode(out, rest, pm->value_len - (size_t)(rest - pm->value));
}

/*
 * get_param - the value of parameter name, RFC 2231 forms first
 *
 * Fills out with the value's bytes. *charset_r gets the RFC 2231 charset
 * (or NULL); *is_plain_r says the value was an ordinary one, where RFC 2047
 * words may hide. Sections are joined in number order up to the first
 * missing one. Returns false when the parameter is absent.
 */
static bool
get_param(const struct field_value *fv, const char *name, struct buf *out, char **charset_r,
	  bool *is_plain_r)
{
	const struct param *pm;
	int section;

	buf_reset(out);
	*charset_r = NULL;
	*is_plain_r = false;
	if ((pm = find_param(fv, name, -1, 1)) != NULL) {
		decode_ext_first(pm, out, charset_r);
		return true;
	}
	for (section = 0; section <= SECTION_MAX; section++) {
		if ((pm = find_param(fv, name, section, -1)) == NULL)
			break;
		if (pm->is_ext && section == 0)
			decode_ext_first(pm, out, charset_r);
		else if (pm->is_ext)
			percent_decode(out, pm->value, pm->value_len);
		else
			buf_append(out, pm->value, pm->value_len);
	}
	if (section > 0)
		return true;
	if ((pm = find_param(fv, name, -1, 0)) != NULL) {
		buf_append(out, pm->value, pm->value_len);
		*is_plain_r = true;
		return true;
	}
	return false;
}

/* param_text - a parameter as UTF-8 text for the policy (filename, name), or NULL */
static char *
param_text(const struct field_value *fv, const char *name, struct buf *scratch)
{
	char *charset, *text;
	bool is_plain;

	if (!get_param(fv, name, scratch, &charset, &is_plain))
		return NULL;
	text = is_plain ? header_decode(scratch->ptr ? scratch->ptr : "", scratch->len)
			: header_to_utf8(charset, scratch->ptr ? scratch->ptr : "", scratch->len);
	free(charset);
	if (text[0] == '\0') {
		free(text);
		return NULL;
	}
	return text;
}

/* param_lower - a parameter's bytes as a lower-case C string (charset=), or NULL */
static char *
param_lower(const struct field_value *fv, const char *name, struct buf *scratch)
{
	char *charset, *s;
	bool is_plain;

	if (!get_param(fv, name, scratch, &charset, &is_plain))
		return NULL;
	free(charset);
	if (scratch->len == 0 || memchr(scratch->ptr, '\0', scratch->len) != NULL)
		return NULL;
	s = xstrndup(scratch->ptr, scratch->len);
	lower(s);
	return s;
}

/* field_text - the unfolded value of the first field called name, or NULL */
static char *
field_text(const struct header_block *hb, const char *name)
{
	const struct header_field *f = header_find(hb, name, 0);

	return f ? header_unfold(f->value, f->value_len) : NULL;
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
	struct field_value ct, cd;
	struct buf scratch;
	char *text;

	buf_init(&scratch, 0);
	header_parse(&hb, w->hdr.ptr, w->hdr.len, has_end);
	if (hb.broken_reason != NULL)
		set_broken(w, hb.broken_reason);
	memset(&ct, 0, sizeof(ct));
	memset(&cd, 0, sizeof(cd));

	if ((text = field_text(&hb, "Content-Type")) != NULL) {
		parse_field_value(text, strlen(text), true, &ct);
		free(text);
	}
	if (ct.token != NULL) {
		p->content_type = xstrdup(ct.token);
		p->charset = param_lower(&ct, "charset", &scratch);
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
		if (get_param(&ct, "boundary", &scratch, &charset, &is_plain) && scratch.len > 0 &&
		    scratch.len <= BOUNDARY_MAX && memchr(scratch.ptr, '\0', scratch.len) == NULL &&
		    memchr(scratch.ptr, '\n', scratch.len) == NULL && memchr(scratch.ptr, '\r', scratch.len) == NULL) {
			w->boundary = xstrndup(scratch.ptr, scratch.len);
			w->boundary_len = scratch.len;
		}
		free(charset);
	}

	if ((text = field_text(&hb, "Content-Disposition")) != NULL) {
		parse_field_value(text, strlen(text), false, &cd);
		free(text);
		if (cd.token != NULL)	/* RFC 2183 2.8: an unknown disposition is an attachment */
			p->disposition = xstrdup(strcmp(cd.token, "inline") == 0 ? "inline" : "attachment");
		p->filename = param_text(&cd, "filename", &scratch);
	}
	if (p->filename == NULL)
		p->filename = param_text(&ct, "name", &scratch);

	if ((text = field_text(&hb, "Content-Transfer-Encoding")) != NULL) {
		struct field_value te;

		parse_field_value(text, strlen(text), false, &te);
		free(text);
		if (te.token != NULL) {
			p->encoding = te.token;
			te.token = NULL;
		}
		field_value_release(&te);
	}
	if (p->encoding == NULL)
		p->encoding = xstrdup("7bit");

	field_value_release(&ct);
	field_value_release(&cd);
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
	}
	if (w->stack[w->nopen - 1].in_header)
		header_line(w);
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

/* b64_value - value of one base64 digit, or -1 */
static int
b64_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
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
		int v = b64_value((unsigned char)p[i]);

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
			if ((h = hex_value(ch)) >= 0) {
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
			if ((h = hex_value(ch)) >= 0) {
				char byte = (char)(hex_value((unsigned char)c->qp_hex) << 4 | h);

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
