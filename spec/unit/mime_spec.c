/*
 * mime_spec - the MIME walk and transfer decoding, whatever the message's shape
 *
 * Each walk case is written to a nameless temp file and walked: once as it
 * is, then behind a filler header field sized so that the 64 KiB read window
 * of mime_walk() ends at every byte of the case in turn (the file form of
 * Dovecot's test_istream_set_size). Content cases are decoded the same way,
 * with the window ending at every byte of the encoded text. Then the limits:
 * 10,000 nested multiparts and message/rfc822s, 10,000 siblings, and random
 * damage to the cases, where only the tree's invariants are checked.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mime.h"
#include "util/buf.h"
#include "tap.h"
#include "fixture.h"

#define READ_WINDOW	(64 * 1024)	/* mime_int.h's MIME_READ_SIZE */

static const struct mime_limits def_limits = { 20, 1000, 65536 };

/* has_children - whether some part names i as its parent */
static int
has_children(const struct mime_tree *t, size_t i)
{
	for (size_t j = i + 1; j < t->nparts; j++)
		if (t->parts[j].parent == i)
			return 1;
	return 0;
}

/*
 * render - one line per part: depth, type, the fields set, and the raw body
 *
 * The body is shown for parts without children; containers would repeat
 * their children's bytes.
 */
static const char *
render(struct buf *out, int fd, const struct mime_tree *t)
{
	buf_reset(out);
	for (size_t i = 0; i < t->nparts; i++) {
		const struct mime_part *p = &t->parts[i];

		buf_appendf(out, "%d %s", p->depth, p->content_type ? p->content_type : "(null)");
		if (p->charset)
			buf_appendf(out, " charset=%s", p->charset);
		if (p->disposition)
			buf_appendf(out, " disp=%s", p->disposition);
		if (p->filename) {
			buf_appends(out, " file=");
			escape(out, p->filename, strlen(p->filename));
		}
		buf_appendf(out, " enc=%s", p->encoding ? p->encoding : "(null)");
		if (!p->is_multipart && !has_children(t, i)) {
			char *body = malloc((size_t)p->body_len + 1);

			if (pread(fd, body, (size_t)p->body_len, p->body_off) != (ssize_t)p->body_len)
				buf_appends(out, " <short read>");
			buf_appends(out, " \"");
			escape(out, body, (size_t)p->body_len);
			buf_appends(out, "\"");
			free(body);
		}
		buf_appends(out, "\n");
	}
	return buf_cstr(out);
}

/* invariants - what every walk must give, whatever the input; NULL when it holds */
static const char *
invariants(const struct mime_tree *t, off_t size, const struct mime_limits *lim)
{
	if (t->nparts < 1)
		return "no part 0";
	if (t->nparts > (lim->max_parts ? lim->max_parts : 1))
		return "more parts than max_parts";
	for (size_t i = 0; i < t->nparts; i++) {
		const struct mime_part *p = &t->parts[i];

		if (p->index != i)
			return "index";
		if (i > 0 && (p->parent >= i || t->parts[p->parent].depth != p->depth - 1))
			return "parent";
		if (p->depth > lim->max_depth)
			return "deeper than max_depth";
		if (p->content_type == NULL || p->encoding == NULL)
			return "no type or encoding";
		if (p->body_off < 0 || p->body_len < 0 || p->body_off + p->body_len > size)
			return "body outside the file";
		if (i > 0 && (p->body_off < t->parts[p->parent].body_off ||
		    p->body_off + p->body_len > t->parts[p->parent].body_off + t->parts[p->parent].body_len))
			return "body outside its parent's";
	}
	return NULL;
}

struct wcase {
	const char *name;
	const char *in;			/* the message */
	const struct mime_limits *lim;	/* NULL: def_limits */
	const char *want;		/* the parts, rendered */
	const char *broken;		/* broken_reason, or NULL */
	int	no_split;		/* the case depends on where the top header starts */
	size_t	in_len;			/* the message's length when it holds NUL; 0: strlen(in) */
};

static const struct mime_limits small_header = { 20, 1000, 64 };
static const struct mime_limits depth_2 = { 2, 1000, 65536 };
static const struct mime_limits parts_3 = { 20, 3, 65536 };

static const struct wcase wcases[] = {
	{ "single part: text/plain us-ascii 7bit by default",
	  "Subject: hi\r\n\r\nhello\r\n", NULL,
	  "0 text/plain charset=us-ascii enc=7bit \"hello\\r\\n\"\n", NULL, 0, 0 },
	{ "empty file", "", NULL, "0 text/plain charset=us-ascii enc=7bit \"\"\n", NULL, 0, 0 },
	{ "all header", "Subject: x\r\n", NULL, "0 text/plain charset=us-ascii enc=7bit \"\"\n", NULL, 0, 0 },
	{ "names and values without case",
	  "content-type: Text/HTML; CharSet=\"UTF-8\"\r\nCONTENT-TRANSFER-ENCODING: Quoted-Printable\r\n\r\n<p>x</p>",
	  NULL, "0 text/html charset=utf-8 enc=quoted-printable \"<p>x</p>\"\n", NULL, 0, 0 },
	{ "RFC 2045 example: a comment after the charset",
	  "Content-type: text/plain; charset=us-ascii (Plain text)\r\n\r\nx", NULL,
	  "0 text/plain charset=us-ascii enc=7bit \"x\"\n", NULL, 0, 0 },
	{ "comments and spaces everywhere",
	  "Content-Type: (c1) text (c2) / plain (c(nested)3) ; charset = \"ISO-8859-1\" ; format=flowed\r\n"
	  "Content-Transfer-Encoding: (why) 8BIT\r\n\r\nx", NULL,
	  "0 text/plain charset=iso-8859-1 enc=8bit \"x\"\n", NULL, 0, 0 },
	{ "a Content-Type that does not parse counts as absent",
	  "Content-Type: garbage\r\n\r\nx", NULL, "0 text/plain charset=us-ascii enc=7bit \"x\"\n", NULL, 0, 0 },
	{ "multipart/mixed: text and a base64 attachment",
	  "From: a\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"XYZ\"\r\n\r\n"
	  "This is the preamble.\r\n"
	  "--XYZ\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nHello\r\n"
	  "--XYZ\r\nContent-Type: application/pdf; name=\"ct-name.pdf\"\r\n"
	  "Content-Disposition: attachment; filename=\"report.pdf\"\r\n"
	  "Content-Transfer-Encoding: base64\r\n\r\naGVsbG8=\r\n"
	  "--XYZ--\r\nepilogue\r\n", NULL,
	  "0 multipart/mixed enc=7bit\n"
	  "1 text/plain charset=utf-8 enc=7bit \"Hello\"\n"
	  "1 application/pdf disp=attachment file=report.pdf enc=base64 \"aGVsbG8=\"\n", NULL, 0, 0 },
	{ "filename from Content-Type name=",
	  "Content-Type: multipart/mixed; boundary=b\r\n\r\n"
	  "--b\r\nContent-Type: image/png; name=pic.png\r\n\r\nPNG\r\n--b--\r\n", NULL,
	  "0 multipart/mixed enc=7bit\n1 image/png file=pic.png enc=7bit \"PNG\"\n", NULL, 0, 0 },
	{ "RFC 2231: sections joined in order, charset and %XX decoded",
	  "Content-Type: multipart/mixed; boundary=b\r\n\r\n"
	  "--b\r\nContent-Disposition: attachment;\r\n filename*1=ort.pdf;\r\n"
	  " filename*0*=utf-8''%E2%82%AC%20rep\r\n\r\nx\r\n"
	  "--b\r\nContent-Disposition: inline; filename*=iso-8859-1'en'caf%E9.txt; filename=\"plain.txt\"\r\n\r\ny\r\n"
	  "--b\r\nContent-Type: text/plain; name*0=\"a b\"; name*1=c; name*3=lost\r\n\r\nz\r\n"
	  "--b--\r\n", NULL,
	  "0 multipart/mixed enc=7bit\n"
	  "1 text/plain charset=us-ascii disp=attachment file=\\xe2\\x82\\xac report.pdf enc=7bit \"x\"\n"
	  "1 text/plain charset=us-ascii disp=inline file=caf\\xc3\\xa9.txt enc=7bit \"y\"\n"
	  "1 text/plain file=a bc enc=7bit \"z\"\n", NULL, 0, 0 },
	{ "RFC 2047 in a quoted filename, raw 8-bit filenames",
	  "Content-Type: multipart/mixed; boundary=b\r\n\r\n"
	  "--b\r\nContent-Disposition: attachment; filename=\"=?utf-8?B?w6l0w6kucGRm?=\"\r\n\r\nx\r\n"
	  "--b\r\nContent-Disposition: attachment; filename=\"r\xe9sum\xe9.pdf\"\r\n\r\ny\r\n"
	  "--b\r\nContent-Disposition: attachment; filename=\"\xc3\xa9t\xc3\xa9.doc\"\r\n\r\nz\r\n"
	  "--b\r\nContent-Disposition: weird; filename=\"a\\\"b\\\\c.txt\"\r\n\r\nw\r\n"
	  "--b--\r\n", NULL,
	  "0 multipart/mixed enc=7bit\n"
	  "1 text/plain charset=us-ascii disp=attachment file=\\xc3\\xa9t\\xc3\\xa9.pdf enc=7bit \"x\"\n"
	  "1 text/plain charset=us-ascii disp=attachment file=r\\xc3\\xa9sum\\xc3\\xa9.pdf enc=7bit \"y\"\n"
	  "1 text/plain charset=us-ascii disp=attachment file=\\xc3\\xa9t\\xc3\\xa9.doc enc=7bit \"z\"\n"
	  "1 text/plain charset=us-ascii disp=attachment file=a\"b\\c.txt enc=7bit \"w\"\n", NULL, 0, 0 },
	{ "multipart/alternative nested in multipart/mixed",
	  "Content-Type: multipart/mixed; boundary=outer\r\n\r\n"
	  "--outer\r\nContent-Type: multipart/alternative; boundary=inner\r\n\r\n"
	  "--inner\r\nContent-Type: text/plain\r\n\r\nplain\r\n"
	  "--inner\r\nContent-Type: text/html\r\n\r\n<b>html</b>\r\n"
	  "--inner--\r\n"
	  "--outer\r\nContent-Type: application/octet-stream\r\n"
	  "Content-Disposition: attachment; filename=a.bin\r\n\r\nBIN\r\n"
	  "--outer--\r\n", NULL,
	  "0 multipart/mixed enc=7bit\n"
	  "1 multipart/alternative enc=7bit\n"
	  "2 text/plain enc=7bit \"plain\"\n"
	  "2 text/html enc=7bit \"<b>html</b>\"\n"
	  "1 application/octet-stream disp=attachment file=a.bin enc=7bit \"BIN\"\n", NULL, 0, 0 },
	{ "message/rfc822 attachment with its own parts",
	  "Content-Type: multipart/mixed; boundary=b1\r\n\r\n"
	  "--b1\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n"
	  "--b1\r\nContent-Type: message/rfc822\r\n\r\n"
	  "Subject: inner\r\nContent-Type: multipart/mixed; boundary=b2\r\n\r\n"
	  "--b2\r\n\r\ninner text\r\n"
	  "--b2\r\nContent-Type: application/zip; name=x.zip\r\nContent-Transfer-Encoding: base64\r\n\r\nUEsDBA==\r\n"
	  "--b2--\r\n"
	  "--b1--\r\n", NULL,
	  "0 multipart/mixed enc=7bit\n"
	  "1 text/plain enc=7bit \"see attached\"\n"
	  "1 message/rfc822 enc=7bit\n"
	  "2 multipart/mixed enc=7bit\n"
	  "3 text/plain charset=us-ascii enc=7bit \"inner text\"\n"
	  "3 application/zip file=x.zip enc=base64 \"UEsDBA==\"\n", NULL, 0, 0 },
	{ "message/rfc822 at the top of a part, single-part inside",
	  "Content-Type: message/rfc822\r\n\r\nSubject: in\r\nContent-Type: text/html\r\n\r\n<i>x</i>\r\n", NULL,
	  "0 message/rfc822 enc=7bit\n1 text/html enc=7bit \"<i>x</i>\\r\\n\"\n", NULL, 0, 0 },
	{ "base64 message/rfc822 is not walked",
	  "Content-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\nU3ViamVjdDogeA0KDQp4\r\n", NULL,
	  "0 message/rfc822 enc=base64 \"U3ViamVjdDogeA0KDQp4\\r\\n\"\n", NULL, 0, 0 },
	{ "multipart/digest children default to message/rfc822",
	  "Content-Type: multipart/digest; boundary=d\r\n\r\n"
	  "--d\r\n\r\nSubject: m1\r\n\r\nbody1\r\n"
	  "--d\r\nContent-Type: text/plain\r\n\r\nnote\r\n"
	  "--d--\r\n", NULL,
	  "0 multipart/digest enc=7bit\n"
	  "1 message/rfc822 enc=7bit\n"
	  "2 text/plain charset=us-ascii enc=7bit \"body1\"\n"
	  "1 text/plain enc=7bit \"note\"\n", NULL, 0, 0 },
	{ "preamble and epilogue: look-alike lines are not boundaries",
	  "Content-Type: multipart/mixed; boundary=b\r\n\r\n"
	  "preamble --b\r\n-- b\r\n"
	  "--b\r\n\r\ntext\r\n---b\r\n"
	  "--b--\r\nepilogue\r\n", NULL,
	  "0 multipart/mixed enc=7bit\n"
	  "1 text/plain charset=us-ascii enc=7bit \"text\\r\\n---b\"\n", NULL, 0, 0 },
	/* RFC 2046 5.1.1 lets readers match a line's start only: they would see parts here */
	{ "a line that starts with the delimiter is not one, but it is damage",
	  "Content-Type: multipart/mixed; boundary=b\r\n\r\n"
	  "--bx\r\n"
	  "--b\r\n\r\ntext\r\n--b-\r\n"
	  "--b--\r\n", NULL,
	  "0 multipart/mixed enc=7bit\n"
	  "1 text/plain charset=us-ascii enc=7bit \"text\\r\\n--b-\"\n",
	  "a line that some readers take for a MIME boundary", 0, 0 },
	{ "a delimiter after the closing one is damage",
	  "Content-Type: multipart/mixed; boundary=b\r\n\r\n"
	  "--b--\r\n"
	  "--b\r\nContent-Type: application/octet-stream\r\n\r\nhidden\r\n--b--\r\n", NULL,
	  "0 multipart/mixed enc=7bit\n",
	  "a line that some readers take for a MIME boundary", 0, 0 },
	{ "two Content-Type fields: damage, the first one read",
	  "Content-Type: text/plain\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
	  "--b\r\n\r\nx\r\n--b--\r\n", NULL,
	  "0 text/plain enc=7bit \"--b\\r\\n\\r\\nx\\r\\n--b--\\r\\n\"\n",
	  "a MIME field given twice in one header", 0, 0 },
	{ "two Content-Transfer-Encoding fields in a part: damage",
	  "Content-Type: multipart/mixed; boundary=b\r\n\r\n"
	  "--b\r\nContent-Transfer-Encoding: 7bit\r\nContent-Transfer-Encoding: base64\r\n\r\n"
	  "eA==\r\n--b--\r\n", NULL,
	  "0 multipart/mixed enc=7bit\n"
	  "1 text/plain charset=us-ascii enc=7bit \"eA==\"\n",
	  "a MIME field given twice in one header", 0, 0 },
	{ "a quoted Content-Transfer-Encoding is no token: damage",
	  "Content-Transfer-Encoding: \"base64\"\r\n\r\neA==\r\n", NULL,
	  "0 text/plain charset=us-ascii enc=7bit \"eA==\\r\\n\"\n",
	  "unknown Content-Transfer-Encoding", 0, 0 },
	{ "an unknown Content-Transfer-Encoding: damage",
	  "Content-Transfer-Encoding: x-whatever\r\n\r\nabc\r\n", NULL,
	  "0 text/plain charset=us-ascii enc=7bit \"abc\\r\\n\"\n",
	  "unknown Content-Transfer-Encoding", 0, 0 },
	{ "CRLF before a boundary belongs to it; empty parts; padding after boundaries",
	  "Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n"
	  "--b\r\n\r\na\r\n\r\n"
	  "--b \t\r\n"
	  "--b\r\nContent-Type: text/html\r\n"
	  "--b\r\n\r\n\r\n"
	  "--b--  ", NULL,
	  "0 multipart/mixed enc=7bit\n"
	  "1 text/plain charset=us-ascii enc=7bit \"a\\r\\n\"\n"
	  "1 text/plain charset=us-ascii enc=7bit \"\"\n"
	  "1 text/html enc=7bit \"\"\n"
	  "1 text/plain charset=us-ascii enc=7bit \"\"\n", NULL, 0, 0 },
	{ "a boundary that never closes: parts end at the end",
	  "Content-Type: multipart/mixed; boundary=b\r\n\r\n"
	  "--b\r\nContent-Type: text/plain\r\n\r\none\r\n"
	  "--b\r\n\r\ntwo\r\n", NULL,
	  "0 multipart/mixed enc=7bit\n"
	  "1 text/plain enc=7bit \"one\"\n"
	  "1 text/plain charset=us-ascii enc=7bit \"two\\r\\n\"\n", "MIME boundary never closed", 0, 0 },
	{ "an inner boundary closed by the outer one",
	  "Content-Type: multipart/mixed; boundary=o\r\n\r\n"
	  "--o\r\nContent-Type: multipart/alternative; boundary=i\r\n\r\n"
	  "--i\r\n\r\nlost end\r\n"
	  "--o\r\n\r\nafter\r\n--o--\r\n", NULL,
	  "0 multipart/mixed enc=7bit\n"
	  "1 multipart/alternative enc=7bit\n"
	  "2 text/plain charset=us-ascii enc=7bit \"lost end\"\n"
	  "1 text/plain charset=us-ascii enc=7bit \"after\"\n", "MIME boundary never closed", 0, 0 },
	{ "multipart without a boundary parameter",
	  "Content-Type: multipart/mixed\r\n\r\n--x\r\n\r\nbody\r\n--x--\r\n", NULL,
	  "0 multipart/mixed enc=7bit\n", "multipart without boundary", 0, 0 },
	{ "multipart with a boundary too long",
	  "Content-Type: multipart/mixed; boundary="
	  "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
	  "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
	  "x\r\n\r\nbody\r\n", NULL,
	  "0 multipart/mixed enc=7bit\n", "multipart without boundary", 0, 0 },
	{ "missing ';' before the boundary is forgiven",
	  "Content-Type: multipart/mixed boundary=b\r\n\r\n--b\r\n\r\nx\r\n--b--\r\n", NULL,
	  "0 multipart/mixed enc=7bit\n1 text/plain charset=us-ascii enc=7bit \"x\"\n", NULL, 0, 0 },
	{ "a part header line that is not a field",
	  "Content-Type: multipart/mixed; boundary=b\r\n\r\n"
	  "--b\r\nnot a field\r\nContent-Type: text/html\r\n\r\nx\r\n--b--\r\n", NULL,
	  "0 multipart/mixed enc=7bit\n1 text/html enc=7bit \"x\"\n", "header line is not a field", 0, 0 },
	{ "a part header over max_header: the walk goes on",
	  "Content-Type: multipart/mixed; boundary=b\r\n\r\n"
	  "--b\r\nContent-Type: text/html\r\nX-Long: 0123456789012345678901234567890123456789\r\n"
	  "Content-Transfer-Encoding: base64\r\n\r\nx\r\n"
	  "--b\r\nContent-Type: image/gif\r\n\r\ny\r\n--b--\r\n", &small_header,
	  "0 multipart/mixed enc=7bit\n1 text/html enc=7bit \"x\"\n1 image/gif enc=7bit \"y\"\n",
	  "MIME part header too long", 1, 0 },
	{ "max_depth: parts deeper are body",
	  "Content-Type: multipart/mixed; boundary=a\r\n\r\n"
	  "--a\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
	  "--b\r\nContent-Type: multipart/mixed; boundary=c\r\n\r\n"
	  "--c\r\n\r\ndeep\r\n--c--\r\n"
	  "--b--\r\n--a--\r\n", &depth_2,
	  "0 multipart/mixed enc=7bit\n1 multipart/mixed enc=7bit\n2 multipart/mixed enc=7bit\n",
	  "MIME nesting too deep", 0, 0 },
	{ "max_parts: the rest is not listed, listed parts still end right",
	  "Content-Type: multipart/mixed; boundary=b\r\n\r\n"
	  "--b\r\n\r\none\r\n--b\r\n\r\ntwo\r\n--b\r\n\r\nthree\r\n--b\r\n\r\nfour\r\n--b--\r\n", &parts_3,
	  "0 multipart/mixed enc=7bit\n"
	  "1 text/plain charset=us-ascii enc=7bit \"one\"\n"
	  "1 text/plain charset=us-ascii enc=7bit \"two\"\n", "too many MIME parts", 0, 0 },
	{ "same boundary inside: the innermost wins",
	  "Content-Type: multipart/mixed; boundary=b\r\n\r\n"
	  "--b\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\nx\r\n--b--\r\n--b--\r\n", NULL,
	  "0 multipart/mixed enc=7bit\n1 multipart/mixed enc=7bit\n"
	  "2 text/plain charset=us-ascii enc=7bit \"x\"\n", NULL, 0, 0 },
	{ "boundary lines with a bare LF and NUL bytes in a body",
	  "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\n\nbin\0ary\xff\n--b--\n", NULL,
	  "0 multipart/mixed enc=7bit\n1 text/plain charset=us-ascii enc=7bit \"bin\\0ary\\xff\"\n", NULL, 0, 65 },
};

/* walk_bytes - write bytes to a temp file and walk it; the fd stays open for render() */
static int
walk_bytes(const char *bytes, size_t len, const struct mime_limits *lim, struct mime_tree *t)
{
	int fd = temp_file(bytes, len);

	if (mime_walk(fd, (off_t)len, lim, t) != 0) {
		perror("mime_walk");
		exit(2);
	}
	return fd;
}

/* check_walk_case - one mime_walk() case, whole and at every read split */
static void
check_walk_case(const struct wcase *c)
{
	const struct mime_limits *lim = c->lim ? c->lim : &def_limits;
	size_t len = c->in_len ? c->in_len : strlen(c->in);
	struct mime_tree t;
	struct buf out, file;
	const char *problem;
	int fd, bad = 0;

	buf_init(&out, 0);
	buf_init(&file, 0);
	fd = walk_bytes(c->in, len, lim, &t);
	is_str(render(&out, fd, &t), c->want, "%s: parts", c->name);
	if (c->broken)
		is_str(t.broken_reason, c->broken, "%s: broken_reason", c->name);
	else
		ok(t.broken_reason == NULL, "%s: well formed (got %s)", c->name,
		   t.broken_reason ? t.broken_reason : "NULL");
	problem = invariants(&t, (off_t)len, lim);
	ok(problem == NULL, "%s: invariants hold (%s)", c->name, problem ? problem : "yes");
	close(fd);
	mime_release(&t);
	if (c->no_split)
		goto done;

	/* the read window ends at every byte of the case, and in the filler's CRLF */
	for (size_t j = 0; j <= len + 2; j++) {
		size_t filler_len = READ_WINDOW + 2 - j;
		struct mime_limits big = *lim;

		big.max_header += filler_len;
		buf_reset(&file);
		buf_appends(&file, "X-Fill: ");
		while (file.len < filler_len - 2)
			buf_append(&file, "f", 1);
		buf_appends(&file, "\r\n");
		buf_append(&file, c->in, len);
		fd = walk_bytes(file.ptr, file.len, &big, &t);
		if (strcmp(render(&out, fd, &t), c->want) != 0 ||
		    (c->broken ? t.broken_reason == NULL || strcmp(t.broken_reason, c->broken) != 0
			       : t.broken_reason != NULL)) {
			if (bad++ == 0)
				printf("# window ends %zu bytes into the case: got\n%s# broken %s\n", j,
				       buf_cstr(&out), t.broken_reason ? t.broken_reason : "NULL");
		}
		close(fd);
		mime_release(&t);
	}
	is_int(bad, 0, "%s: same parts wherever a read ends", c->name);
done:
	buf_release(&out);
	buf_release(&file);
}

struct ccase {
	const char *name;
	const char *encoding;	/* Content-Transfer-Encoding, lower case as mime_walk gives it */
	const char *in;		/* the body */
	size_t	in_len;		/* its length; 0: strlen(in) */
	size_t	limit;		/* mime_part_content()'s limit */
	const char *want;	/* the decoded bytes */
	size_t	want_len;	/* their length; 0: strlen(want) */
	int	truncated;	/* *truncated_r */
	char	filler;		/* a byte the encoding passes through ('x') or skips (' '), for the split test */
};

static const struct ccase ccases[] = {
	{ "QP soft line break", "quoted-printable", "soft=\r\nbreak", 0, 1000, "softbreak", 0, 0, 'x' },
	{ "QP hex escapes, both cases", "quoted-printable", "a=3Db=3dc=E9", 0, 1000, "a=b=c\xe9", 0, 0, 'x' },
	{ "QP invalid escape kept", "quoted-printable", "bad=XYz and=4x", 0, 1000, "bad=XYz and=4x", 0, 0, 'x' },
	{ "QP '=' then space then text kept", "quoted-printable", "a = b", 0, 1000, "a = b", 0, 0, 'x' },
	{ "QP trailing whitespace dropped", "quoted-printable", "trail \t\r\nnext  ", 0, 1000,
	  "trail\r\nnext", 0, 0, 'x' },
	{ "QP padding after a soft break", "quoted-printable", "pad= \t\r\nx", 0, 1000, "padx", 0, 0, 'x' },
	{ "QP final '=' is a soft break", "quoted-printable", "end=", 0, 1000, "end", 0, 0, 'x' },
	{ "QP final '=' and one digit", "quoted-printable", "end=4", 0, 1000, "end=4", 0, 0, 'x' },
	{ "QP '=' CR without LF kept", "quoted-printable", "eq=\rx", 0, 1000, "eq=\rx", 0, 0, 'x' },
	{ "QP hard line breaks kept", "quoted-printable", "l1\r\nl2\r\n", 0, 1000, "l1\r\nl2\r\n", 0, 0, 'x' },
	{ "QP bare CR kept", "quoted-printable", "a\rb \r", 0, 1000, "a\rb \r", 0, 0, 'x' },
	{ "QP NUL and 8-bit pass", "quoted-printable", "a\0\xff", 3, 1000, "a\0\xff", 3, 0, 'x' },
	{ "QP truncated at the limit", "quoted-printable", "abc=3Ddef", 0, 4, "abc=", 0, 1, 'x' },
	{ "QP exactly the limit is not truncated", "quoted-printable", "abc=\r\n  ", 0, 3, "abc", 0, 0, 'x' },
	{ "QP limit 0", "quoted-printable", "a", 0, 0, "", 0, 1, 'x' },
	{ "base64 across lines", "base64", "aGVs\r\nbG8=", 0, 1000, "hello", 0, 0, ' ' },
	{ "base64 without padding", "base64", "aGVsbG8", 0, 1000, "hello", 0, 0, ' ' },
	{ "base64 stops at '='", "base64", "aGVsbG8=\r\nIGdhcmJhZ2U=", 0, 1000, "hello", 0, 0, ' ' },
	{ "base64 skips garbage", "base64", "a*G!V~s\0", 8, 1000, "hel", 0, 0, ' ' },
	{ "base64 binary", "base64", "AP8A", 0, 1000, "\0\xff\0", 3, 0, ' ' },
	{ "base64 truncated at the limit", "base64", "aGVsbG8=", 0, 4, "hell", 0, 1, ' ' },
	{ "base64 exactly the limit, whitespace after", "base64", "aGVsbG8=\r\n\r\n", 0, 5, "hello", 0, 0, ' ' },
	{ "7bit raw", "7bit", "raw\r\nbytes", 0, 1000, "raw\r\nbytes", 0, 0, 'x' },
	{ "unknown encoding is raw", "x-uuencode", "begin 644 x", 0, 1000, "begin 644 x", 0, 0, 'x' },
	{ "raw truncated", "binary", "abcdef", 0, 5, "abcde", 0, 1, 'x' },
	{ "raw exactly the limit", "8bit", "abcdef", 0, 6, "abcdef", 0, 0, 'x' },
};

/* decode_body - put body in a file as one part and decode it */
static int
decode_body(const char *body, size_t len, const char *encoding, int is_multipart, size_t limit,
	    struct buf *out, bool *truncated)
{
	struct mime_part p;
	int fd = temp_file(body, len), rc;

	memset(&p, 0, sizeof(p));
	p.encoding = (char *)encoding;
	p.is_multipart = is_multipart;
	p.body_off = 0;
	p.body_len = (off_t)len;
	buf_reset(out);
	rc = mime_part_content(fd, &p, limit, out, truncated);
	close(fd);
	return rc;
}

/* check_content_case - one decoding case, whole and at every read split */
static void
check_content_case(const struct ccase *c)
{
	size_t len = c->in_len ? c->in_len : strlen(c->in);
	size_t want_len = c->want_len ? c->want_len : strlen(c->want);
	struct buf out, body, want;
	bool truncated;
	int bad = 0;

	buf_init(&out, 0);
	buf_init(&body, 0);
	buf_init(&want, 0);
	is_int(decode_body(c->in, len, c->encoding, 0, c->limit, &out, &truncated), 0, "%s: decodes", c->name);
	if (!ok(out.len == want_len && memcmp(out.ptr, c->want, want_len) == 0, "%s: bytes", c->name)) {
		buf_reset(&body);
		escape(&body, out.ptr, out.len);
		printf("# got \"%s\"\n", buf_cstr(&body));
	}
	is_int(truncated, c->truncated, "%s: truncated", c->name);

	/* the read ends at every byte of the encoded text */
	for (size_t j = 0; j <= len; j++) {
		size_t filler_len = READ_WINDOW - j;

		buf_reset(&body);
		buf_reset(&want);
		for (size_t i = 0; i < filler_len; i++)
			buf_append(&body, &c->filler, 1);
		buf_append(&body, c->in, len);
		if (c->filler != ' ')
			buf_append(&want, body.ptr, filler_len);
		buf_append(&want, c->want, want_len);
		decode_body(body.ptr, body.len, c->encoding, 0, c->limit + (c->filler != ' ' ? filler_len : 0),
			    &out, &truncated);
		if (out.len != want.len || memcmp(out.ptr, want.ptr, want.len) != 0 ||
		    truncated != (bool)c->truncated)
			bad++;
	}
	is_int(bad, 0, "%s: same bytes wherever a read ends", c->name);
	buf_release(&out);
	buf_release(&body);
	buf_release(&want);
}

/* check_content_misc - multiparts give raw bytes; a walked attachment decodes */
static void
check_content_misc(void)
{
	static const char msg[] =
	    "Content-Type: multipart/mixed; boundary=b\r\n\r\n"
	    "--b\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\ncaf=C3=A9=\r\n\r\n"
	    "--b\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: BASE64\r\n\r\n"
	    "aGVs\r\nbG8=\r\n--b--\r\n";
	struct mime_tree t;
	struct buf out, lim;
	bool truncated;
	int fd;

	buf_init(&out, 0);
	is_int(decode_body("aGVsbG8=", 8, "base64", 1, 100, &out, &truncated), 0, "multipart: decodes");
	is_str(buf_cstr(&out), "aGVsbG8=", "multipart: raw body whatever the encoding");

	fd = walk_bytes(msg, sizeof(msg) - 1, &def_limits, &t);
	if (ok(t.nparts == 3, "walked attachment: three parts")) {
		buf_reset(&out);
		is_int(mime_part_content(fd, &t.parts[1], 100, &out, &truncated), 0, "QP part decodes");
		is_str(buf_cstr(&out), "caf\xc3\xa9", "QP part: soft break before the boundary's CRLF");
		buf_reset(&out);
		is_int(mime_part_content(fd, &t.parts[2], 100, &out, &truncated), 0, "base64 part decodes");
		is_str(buf_cstr(&out), "hello", "base64 part");
		ok(!truncated, "base64 part: not truncated");
	}
	/* out's own limit refuses: an error, not a silent cut */
	buf_init(&lim, 3);
	is_int(mime_part_content(fd, &t.parts[2], 100, &lim, &truncated), -1, "out's limit refuses: -1");
	buf_release(&lim);
	close(fd);
	mime_release(&t);
	buf_release(&out);
}

/* elapsed_s - seconds since start */
static double
elapsed_s(const struct timespec *start)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(now.tv_sec - start->tv_sec) + (double)(now.tv_nsec - start->tv_nsec) / 1e9;
}

/* nested - n multiparts each inside the last, closed or not */
static void
nested(struct buf *b, int n, int closed)
{
	buf_reset(b);
	for (int i = 0; i < n; i++)
		buf_appendf(b, "Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n", i, i);
	buf_appends(b, "\r\ninnermost\r\n");
	for (int i = n - 1; closed && i >= 0; i--)
		buf_appendf(b, "--b%d--\r\n", i);
}

/* check_limits - 10,000 of everything: no crash, bounded time, the limits hold */
static void
check_limits(void)
{
	struct mime_limits lim = { 50, 100000, 65536 }, deep = { 100000, 100000, 65536 };
	struct mime_tree t;
	struct timespec start;
	struct buf b;
	int fd;

	buf_init(&b, 0);
	nested(&b, 10000, 1);
	clock_gettime(CLOCK_MONOTONIC, &start);
	fd = walk_bytes(b.ptr, b.len, &lim, &t);
	is_int(t.nparts, 51, "10,000 nested multiparts, max_depth 50: parts to depth 50 listed");
	is_str(t.broken_reason, "MIME nesting too deep", "10,000 nested multiparts: nesting too deep");
	ok(invariants(&t, (off_t)b.len, &lim) == NULL, "10,000 nested multiparts: invariants");
	close(fd);
	mime_release(&t);

	fd = walk_bytes(b.ptr, b.len, &deep, &t);
	is_int(t.nparts, 10001, "10,000 nested multiparts, no depth limit: all walked without recursion");
	ok(t.broken_reason == NULL, "10,000 nested multiparts, all closed: well formed");
	ok(t.nparts == 10001 && t.parts[10000].depth == 10000 && t.parts[10000].body_len == 9,
	   "10,000 nested multiparts: the innermost body found");
	close(fd);
	mime_release(&t);

	nested(&b, 10000, 0);
	fd = walk_bytes(b.ptr, b.len, &deep, &t);
	is_int(t.nparts, 10001, "10,000 nested multiparts never closed: all listed");
	is_str(t.broken_reason, "MIME boundary never closed", "10,000 never closed: damage recorded");
	close(fd);
	mime_release(&t);

	buf_reset(&b);
	for (int i = 0; i < 10000; i++)
		buf_appends(&b, "Content-Type: message/rfc822\r\n\r\n");
	buf_appends(&b, "Subject: last\r\n\r\nbody\r\n");
	fd = walk_bytes(b.ptr, b.len, &deep, &t);
	is_int(t.nparts, 10001, "10,000 nested message/rfc822: all walked");
	ok(invariants(&t, (off_t)b.len, &deep) == NULL, "10,000 nested message/rfc822: invariants");
	close(fd);
	mime_release(&t);
	fd = walk_bytes(b.ptr, b.len, &lim, &t);
	is_int(t.nparts, 51, "10,000 nested message/rfc822, max_depth 50");
	is_str(t.broken_reason, "MIME nesting too deep", "10,000 nested message/rfc822: nesting too deep");
	close(fd);
	mime_release(&t);

	buf_reset(&b);
	buf_appends(&b, "Content-Type: multipart/mixed; boundary=s\r\n\r\n");
	for (int i = 0; i < 10000; i++)
		buf_appendf(&b, "--s\r\nContent-Type: text/plain; name=f%d.txt\r\n\r\n%d\r\n", i, i);
	buf_appends(&b, "--s--\r\n");
	lim.max_parts = 1000;
	fd = walk_bytes(b.ptr, b.len, &lim, &t);
	is_int(t.nparts, 1000, "10,000 siblings, max_parts 1000: 1000 listed");
	is_str(t.broken_reason, "too many MIME parts", "10,000 siblings: too many parts");
	ok(t.nparts == 1000 && strcmp(t.parts[999].filename, "f998.txt") == 0 && t.parts[999].body_len == 3,
	   "10,000 siblings: the last listed part is right");
	ok(invariants(&t, (off_t)b.len, &lim) == NULL, "10,000 siblings: invariants");
	close(fd);
	mime_release(&t);
	ok(elapsed_s(&start) < 20.0, "the walks above took %.2f s", elapsed_s(&start));
	buf_release(&b);
}

/* lcg - a fixed sequence of pseudo-random numbers */
static uint32_t
lcg(uint32_t *state)
{
	*state = *state * 1103515245u + 12345u;
	return *state >> 8;
}

/* check_damage - random cuts, insertions and swaps in every case: invariants and content hold */
/*
 * check_padded_params - more parameters than are kept: the file's name stays,
 * and the field is damage
 */
static void
check_padded_params(void)
{
	static const char *const fields[] = {
		"Content-Disposition: attachment",
		"Content-Type: application/octet-stream",
	};
	static const char *const attrs[] = { "filename", "name" };

	for (size_t f = 0; f < 2; f++) {
		struct buf in, want;
		char name[200];

		buf_init(&in, 0);
		buf_init(&want, 0);
		buf_appends(&in, "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n");
		buf_appends(&in, fields[f]);
		for (int i = 0; i < 1100; i++)
			buf_appendf(&in, ";\r\n x%d=1", i);
		buf_appendf(&in, ";\r\n %s=\"evil.js\"\r\n\r\nalert(1)\r\n--b--\r\n", attrs[f]);
		buf_appendf(&want, "0 multipart/mixed enc=7bit\n1 %s%s file=evil.js enc=7bit "
			    "\"alert(1)\"\n", f == 0 ? "text/plain charset=us-ascii" :
			    "application/octet-stream", f == 0 ? " disp=attachment" : "");
		snprintf(name, sizeof(name), "%s=evil.js after 1100 other parameters", attrs[f]);
		check_walk_case(&(struct wcase){ name, buf_cstr(&in), NULL, buf_cstr(&want),
						 "too many MIME parameters", 1, 0 });
		buf_release(&in);
		buf_release(&want);
	}
	{
		struct buf in;
		struct mime_tree t;
		int fd;

		buf_init(&in, 0);
		buf_appends(&in, "Content-Disposition: attachment");
		for (int i = 0; i < 70; i++)
			buf_appendf(&in, ";\r\n filename*%d=\"%s\"", i, i == 69 ? ".exe" : "a");
		buf_appends(&in, "\r\n\r\nMZ\r\n");
		fd = walk_bytes(buf_cstr(&in), in.len, &def_limits, &t);
		ok(t.nparts == 1 &&
		   t.parts[0].filename != NULL && strlen(t.parts[0].filename) == 73 &&
		   strcmp(t.parts[0].filename + 69, ".exe") == 0 && t.broken_reason == NULL,
		   "an RFC 2231 filename in 70 sections is joined whole (got %s)",
		   t.nparts ? t.parts[0].filename : "nothing");
		mime_release(&t);
		close(fd);
		buf_release(&in);
	}
}

static void
check_damage(void)
{
	static const char *inserts[] = {
		"\r\n", "\r\n\r\n", "--", "--b", "--b--", "--XYZ\r\n", "--outer--\r\n", "=", "=\r\n", "\"", "(",
		"\\", ";", "*0*=", "*1=", "'", "%", "\0", "\xff", " ", "Content-Type: multipart/mixed; boundary=b\r\n",
		"Content-Type: message/rfc822\r\n\r\n", "Content-Transfer-Encoding: base64\r\n",
	};
	struct mime_limits lim = { 6, 40, 512 };
	size_t ncases = sizeof(wcases) / sizeof(wcases[0]);
	uint32_t seed = 4242;
	struct buf b, out;
	int broken_invariants = 0, content_errors = 0;

	buf_init(&b, 0);
	buf_init(&out, 1 << 20);
	for (int round = 0; round < 4000; round++) {
		const char *src = wcases[lcg(&seed) % ncases].in;
		size_t len = strlen(src), edits = 1 + lcg(&seed) % 6;
		struct mime_tree t;
		int fd;

		buf_reset(&b);
		buf_append(&b, src, len);
		for (size_t e = 0; e < edits && b.len > 0; e++) {
			size_t at = lcg(&seed) % b.len;
			const char *ins = inserts[lcg(&seed) % (sizeof(inserts) / sizeof(inserts[0]))];
			struct buf tmp;

			buf_init(&tmp, 0);
			switch (lcg(&seed) % 3) {
			case 0:	/* cut */
				buf_append(&tmp, b.ptr, at);
				buf_append(&tmp, b.ptr + at + 1, b.len - at - 1);
				break;
			case 1:	/* insert */
				buf_append(&tmp, b.ptr, at);
				buf_append(&tmp, ins, ins[0] ? strlen(ins) : 1);
				buf_append(&tmp, b.ptr + at, b.len - at);
				break;
			default: /* truncate */
				buf_append(&tmp, b.ptr, at);
				break;
			}
			buf_release(&b);
			b = tmp;
		}
		fd = temp_file(b.ptr, b.len);
		if (mime_walk(fd, (off_t)b.len, &lim, &t) != 0 || invariants(&t, (off_t)b.len, &lim) != NULL)
			broken_invariants++;
		for (size_t i = 0; i < t.nparts; i++) {
			bool truncated;

			buf_reset(&out);
			if (mime_part_content(fd, &t.parts[i], 4096, &out, &truncated) != 0)
				content_errors++;
		}
		close(fd);
		mime_release(&t);
	}
	is_int(broken_invariants, 0, "random damage: every walk keeps the invariants");
	is_int(content_errors, 0, "random damage: every part decodes");
	buf_release(&b);
	buf_release(&out);
}

/* uu_blocks - every block mime_uu_next finds in text, as "NAME=BYTES;" (BYTES as given) */
static const char *
uu_blocks(const char *text, size_t limit, struct buf *all)
{
	struct buf file;
	size_t pos = 0;
	char *name;

	buf_reset(all);
	buf_init(&file, limit);
	while (mime_uu_next(text, strlen(text), &pos, &file, &name)) {
		buf_appendf(all, "%s=", name);
		buf_append(all, file.ptr ? file.ptr : "", file.len);
		buf_appends(all, ";");
		buf_reset(&file);
		free(name);
	}
	buf_release(&file);
	return buf_cstr(all);
}

/* check_uuencode - files uuencoded inside text, as mail clients decode them */
static void
check_uuencode(void)
{
	struct buf all;

	buf_init(&all, 0);
	/* "Cat" is "#0V%T" ("#" = 3 bytes); "hello world" takes one line */
	is_str(uu_blocks("Hi,\r\nbegin 644 cat.txt\r\n#0V%T\r\n`\r\nend\r\nBye\r\n", 0, &all),
	       "cat.txt=Cat;", "uuencode: one block, CRLF lines");
	is_str(uu_blocks("begin 0755 a b.exe\n+:&5L;&\\@=V]R;&0`\nend\n", 0, &all),
	       "a b.exe=hello world;", "uuencode: LF lines, four-digit mode, a name with a space");
	is_str(uu_blocks("begin 644 one\n#0V%T\nend\ntext\nbegin 600 two\n#0V%T\nend\n", 0, &all),
	       "one=Cat;two=Cat;", "uuencode: two blocks, text between them");
	is_str(uu_blocks("begin 644 cut\n#0V%T\n#0V%T\n", 0, &all), "cut=CatCat;",
	       "uuencode: no end line: what was there");
	is_str(uu_blocks("begin 644 bad\n#0V%T\n#0V\x7f%T\n#0V%T\nend\n", 0, &all), "bad=Cat;",
	       "uuencode: a damaged line ends the block with what came before it");
	is_str(uu_blocks("begin 644 big\n#0V%T\n#0V%T\nend\n", 4, &all), "big=Cat;",
	       "uuencode: the output buffer's limit ends the block");
	is_str(uu_blocks("begin to end\nbegin 64 x\nbegin 644\nbegin 644 \n begin 644 y\n", 0, &all), "",
	       "uuencode: lines that only look like begin lines are text");
	is_str(uu_blocks("", 0, &all), "", "uuencode: empty text");
	{
		/* a name padded past 255 bytes keeps its last 255: the extension stays */
		char text[600], want[300];

		snprintf(text, sizeof(text), "begin 644 %0300d.exe\n#0V%%T\nend\n", 7);
		snprintf(want, sizeof(want), "%0251d.exe=Cat;", 7);
		is_str(uu_blocks(text, 0, &all), want,
		       "uuencode: a name over 255 bytes keeps its end, extension and all");
	}
	buf_release(&all);
}

int
main(void)
{
	for (size_t i = 0; i < sizeof(wcases) / sizeof(wcases[0]); i++)
		check_walk_case(&wcases[i]);
	check_padded_params();
	for (size_t i = 0; i < sizeof(ccases) / sizeof(ccases[0]); i++)
		check_content_case(&ccases[i]);
	check_content_misc();
	check_limits();
	check_damage();
	check_uuencode();
	return done_testing();
}
