/*
 * message - one mail transaction: envelope, client facts, spool, outcome
 *
 * See message.h. Mail ids are 12 characters of [0-9A-Za-z] drawn from the
 * kernel's random source: unique enough to name a quarantined message and
 * unguessable, so an id in a bounce cannot be used to probe the quarantine.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <unistd.h>

#include "clam.h"
#include "header.h"
#include "message.h"
#include "mime.h"
#include "spool.h"
#include "util/digits.h"
#include "util/xalloc.h"

const char *const xforward_names[XF_COUNT] = {
	"NAME", "ADDR", "PORT", "PROTO", "HELO", "IDENT", "SOURCE", "LOGIN",
};

/* new_mail_id - 12 random characters from [0-9A-Za-z] */
static void
new_mail_id(char *out)
{
	static const char alphabet[] =
	    "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
	unsigned char rnd[12];
	struct timespec ts;

	if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd)) {
		/* no entropy pool: still unique per process and time */
		clock_gettime(CLOCK_REALTIME, &ts);
		for (size_t i = 0; i < sizeof(rnd); i++)
			rnd[i] = (unsigned char)((ts.tv_nsec >> (i % 4 * 8)) ^ (getpid() >> (i % 3)) ^
						 (i * 37));
	}
	for (size_t i = 0; i < sizeof(rnd); i++)
		out[i] = alphabet[rnd[i] % 62];
	out[sizeof(rnd)] = '\0';
}

/* message_new - an empty transaction with a fresh mail id */
struct message *
message_new(void)
{
	struct message *m = xcalloc(1, sizeof(*m));

	new_mail_id(m->id);
	clock_gettime(CLOCK_MONOTONIC, &m->started);
	return m;
}

/* message_free - free the transaction and everything it owns; returns NULL */
struct message *
message_free(struct message *m)
{
	if (m == NULL)
		return NULL;
	for (size_t i = 0; i < m->nrcpts; i++) {
		free(m->rcpts[i].addr);
		free(m->rcpts[i].notify);
		free(m->rcpts[i].orcpt);
		free(m->rcpts[i].reply);
		free(m->rcpts[i].policy_reply);
		free(m->rcpts[i].forward_to);
		edit_list_release(&m->rcpts[i].edits);
	}
	for (size_t i = 0; i < m->nhits; i++)
		free(m->hits[i].rule);
	free(m->hits);
	edit_list_release(&m->edits);
	free(m->quarantined);
	if (m->hdr != NULL) {
		header_release(m->hdr);
		free(m->hdr);
	}
	if (m->mime != NULL) {
		mime_release(m->mime);
		free(m->mime);
	}
	if (m->clam != NULL) {
		clam_result_release(m->clam);
		free(m->clam);
	}
	free(m->rcpts);
	free(m->sender);
	free(m->ret);
	free(m->envid);
	free(m->queued_as);
	spool_close(m->spool);
	free(m);
	return NULL;
}

/* message_add_rcpt - append a recipient; the returned pointer dies at the next add */
struct recipient *
message_add_rcpt(struct message *m, const char *addr)
{
	struct recipient *r;

	m->rcpts = xreallocarray(m->rcpts, m->nrcpts + 1, sizeof(*m->rcpts));
	r = &m->rcpts[m->nrcpts++];
	memset(r, 0, sizeof(*r));
	r->addr = xstrdup(addr);
	r->verdict = VERDICT_PASS;
	return r;
}

/* message_set_reply - record the final reply for one recipient */
void
message_set_reply(struct recipient *r, int code, const char *reply)
{
	free(r->reply);
	r->code = code;
	r->reply = xstrdup(reply);
	r->own_reply = false;
}

/* message_set_own_reply - record a reply of postern's own (policy, quarantine) */
void
message_set_own_reply(struct recipient *r, int code, const char *reply)
{
	message_set_reply(r, code, reply);
	r->own_reply = true;
}

/* edit_list_add - append one header edit (copies name and value) */
void
edit_list_add(struct edit_list *l, enum edit_op op, const char *name, const char *value)
{
	struct header_edit *e;

	l->v = xreallocarray(l->v, l->n + 1, sizeof(*l->v));
	e = &l->v[l->n++];
	e->op = op;
	e->name = xstrdup(name);
	e->value = value ? xstrdup(value) : NULL;
}

/* edit_list_release - free the edits */
void
edit_list_release(struct edit_list *l)
{
	for (size_t i = 0; i < l->n; i++) {
		free(l->v[i].name);
		free(l->v[i].value);
	}
	free(l->v);
	l->v = NULL;
	l->n = 0;
}

/* message_add_hit - record that a rule fired, and add its score */
void
message_add_hit(struct message *m, const char *rule, double score)
{
	m->hits = xreallocarray(m->hits, m->nhits + 1, sizeof(*m->hits));
	m->hits[m->nhits].rule = xstrdup(rule);
	m->hits[m->nhits].score = score;
	m->nhits++;
	m->score += score;
}

/* message_elapsed_ms - milliseconds since MAIL */
long
message_elapsed_ms(const struct message *m)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (long)((now.tv_sec - m->started.tv_sec) * 1000 +
		      (now.tv_nsec - m->started.tv_nsec) / 1000000);
}

/* client_reset_xforward - forget XFORWARD attributes (end of a transaction) */
void
client_reset_xforward(struct client *c)
{
	for (int i = 0; i < XF_COUNT; i++) {
		free(c->xforward[i]);
		c->xforward[i] = NULL;
	}
}

/* client_release - free what a client record owns */
void
client_release(struct client *c)
{
	client_reset_xforward(c);
	free(c->helo);
	c->helo = NULL;
}

/* xtext_decode - RFC 3461 xtext ("+2B" for '+') into a fresh string; -1 if malformed */
int
xtext_decode(const char *in, char **out_r)
{
	char *out = xmalloc(strlen(in) + 1), *o = out;

	for (const char *p = in; *p; p++) {
		if (*p == '+') {
			int hi = digit_hex((unsigned char)p[1]), lo = hi < 0 ? -1 : digit_hex((unsigned char)p[2]);

			if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
				free(out);
				return -1;
			}
			*o++ = (char)(hi * 16 + lo);
			p += 2;
		} else
			*o++ = *p;
	}
	*o = '\0';
	*out_r = out;
	return 0;
}

/* header_safe - text fit for a header: printable, no CR/LF, bounded */
static void
append_header_safe(struct buf *out, const char *s, size_t max)
{
	for (size_t i = 0; s[i] != '\0' && i < max; i++) {
		unsigned char c = (unsigned char)s[i];

		buf_append(out, (c < 0x20 || c == 0x7f || c == '(' || c == ')') ? "_" : (const char *)&s[i], 1);
	}
}

/*
 * message_received_header - postern's own Received: line (RFC 5321 4.4)
 *
 * "Received: from HELO (NAME [ADDR]) by HOST (postern, port P) with ESMTP
 * id MAILID for <rcpt>; DATE", the client being XFORWARD's when the MTA sent
 * it, else our peer. Like amavisd-new's, it lets a message be traced to its
 * filter log line by the mail id.
 */
void
message_received_header(const struct message *m, const struct client *c, const char *hostname,
			int port, bool is_lmtp, struct buf *out)
{
	const char *helo = c->xforward[XF_HELO] ? c->xforward[XF_HELO] : c->helo;
	const char *addr = c->xforward[XF_ADDR] ? c->xforward[XF_ADDR] : c->ip;
	const char *name = c->xforward[XF_NAME];
	char date[64];
	time_t now = time(NULL);
	struct tm tm;

	localtime_r(&now, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S %z", &tm);
	buf_appends(out, "Received: from ");
	append_header_safe(out, helo && *helo ? helo : "unknown", 255);
	buf_appends(out, " (");
	if (name && strcmp(name, "[UNAVAILABLE]") != 0 && strcmp(name, "[TEMPUNAVAIL]") != 0) {
		append_header_safe(out, name, 255);
		buf_appends(out, " ");
	}
	buf_appends(out, "[");
	append_header_safe(out, addr, 64);
	/* RFC 6531 section 3.7.3: UTF8SMTP/UTF8LMTP when the transaction used SMTPUTF8 */
	buf_appendf(out, "])\r\n\tby %s (postern, port %d)\r\n\twith %s%s id %s", hostname, port,
		    m->smtputf8 ? "UTF8" : is_lmtp ? "" : "E", is_lmtp ? "LMTP" : "SMTP", m->id);
	if (m->nrcpts == 1 && strpbrk(m->rcpts[0].addr, "\r\n") == NULL) {
		buf_appends(out, "\r\n\tfor <");
		append_header_safe(out, m->rcpts[0].addr, 512);
		buf_appends(out, ">");
	}
	buf_appendf(out, "; %s\r\n", date);
}

/* edit_key - append a serialisation of l to key (copies with equal keys are equal) */
static void
edit_key(const struct edit_list *l, struct buf *key)
{
	for (size_t i = 0; i < l->n; i++)
		buf_appendf(key, "%d:%s:%s\n", (int)l->v[i].op, l->v[i].name,
			    l->v[i].value ? l->v[i].value : "");
}

/* message_copy_key - what makes recipient r's copy differ from others' */
void
message_copy_key(const struct message *m, const struct recipient *r, struct buf *key)
{
	buf_reset(key);
	edit_key(&m->edits, key);
	buf_appends(key, "--\n");
	edit_key(&r->edits, key);
}

/* only_additions - true when no edit touches the original header */
static bool
only_additions(const struct edit_list *a, const struct edit_list *b)
{
	for (size_t i = 0; i < a->n; i++)
		if (a->v[i].op != EDIT_ADD)
			return false;
	for (size_t i = 0; i < b->n; i++)
		if (b->v[i].op != EDIT_ADD)
			return false;
	return true;
}

/* edit_for - the last edit of op for name in a, then b (b wins), or NULL */
static const struct header_edit *
edit_for(const struct edit_list *a, const struct edit_list *b, enum edit_op op, const char *name,
	 size_t name_len)
{
	const struct header_edit *found = NULL;
	const struct edit_list *lists[2] = { a, b };

	for (int l = 0; l < 2; l++)
		for (size_t i = 0; i < lists[l]->n; i++) {
			const struct header_edit *e = &lists[l]->v[i];

			if (e->op == op && strlen(e->name) == name_len &&
			    strncasecmp(e->name, name, name_len) == 0)
				found = e;
		}
	return found;
}

/* removed - is a field of this name removed or replaced by an edit */
static bool
removed(const struct edit_list *a, const struct edit_list *b, const char *name, size_t len)
{
	return edit_for(a, b, EDIT_REMOVE, name, len) != NULL ||
	       edit_for(a, b, EDIT_REPLACE, name, len) != NULL;
}

/* tagged_value - " tag + value", without tagging twice */
static void
append_tagged(struct buf *out, const char *tag, const char *value, size_t len)
{
	size_t tlen = strlen(tag);

	while (len > 0 && (*value == ' ' || *value == '\t')) {
		value++;
		len--;
	}
	buf_appends(out, " ");
	if (len < tlen || memcmp(value, tag, tlen) != 0)
		buf_appends(out, tag);
	buf_append(out, value, len);
}

/* append_additions - the EDIT_ADD fields of a then b, and the tops of replace/tag */
static void
append_additions(const struct edit_list *a, const struct edit_list *b, const struct header_block *hb,
		 struct buf *out)
{
	const struct edit_list *lists[2] = { a, b };

	for (int l = 0; l < 2; l++)
		for (size_t i = 0; i < lists[l]->n; i++) {
			const struct header_edit *e = &lists[l]->v[i];

			if (e->op == EDIT_ADD)
				buf_appendf(out, "%s: %s\r\n", e->name, e->value);
		}
	if (hb == NULL)
		return;
	/* a replaced or tagged field the message does not have goes on top */
	for (int l = 0; l < 2; l++)
		for (size_t i = 0; i < lists[l]->n; i++) {
			const struct header_edit *e = &lists[l]->v[i];
			size_t len = strlen(e->name);

			if ((e->op != EDIT_REPLACE && e->op != EDIT_SUBJECT_TAG) ||
			    header_find(hb, e->name, 0) != NULL ||
			    edit_for(a, b, e->op, e->name, len) != e)
				continue;
			if (e->op == EDIT_REPLACE && !edit_for(a, b, EDIT_REMOVE, e->name, len))
				buf_appendf(out, "%s: %s\r\n", e->name, e->value);
			else if (e->op == EDIT_SUBJECT_TAG && !removed(a, b, "Subject", 7)) {
				size_t tlen = strlen(e->value);

				while (tlen > 0 && e->value[tlen - 1] == ' ')
					tlen--;
				buf_appends(out, "Subject: ");
				buf_append(out, e->value, tlen);
				buf_appends(out, "\r\n");
			}
		}
}

/*
 * message_render_copy - the bytes that go before the spool for recipient r
 *
 * With header additions only, the copy is our lines followed by the message
 * as received, untouched: *spool_off_r is 0. When an edit removes, replaces
 * or tags a field, the original header is written anew with the edits
 * applied and the copy goes on with the spool from the body: *spool_off_r
 * is the header block's body_off. hb must be parsed in that case (the caller
 * ensures it); Received: (ours) is added by the caller first.
 */
void
message_render_copy(const struct message *m, const struct recipient *r, const struct header_block *hb,
		    struct buf *out, off_t *spool_off_r)
{
	const struct edit_list *a = &m->edits, *b = r ? &r->edits : &(struct edit_list){ 0 };
	*spool_off_r = 0;
	/*
	 * A header cut at max_header_size cannot be written anew without losing
	 * the fields past the cut: such a copy gets the additions only.
	 * XXX its removals (a pre-marked X-Spam-Flag) are not applied then.
	 */
	if (only_additions(a, b) || hb == NULL || hb->truncated) {
		append_additions(a, b, NULL, out);
		return;
	}
	append_additions(a, b, hb, out);
	for (size_t i = 0; i < hb->nfields; i++) {
		const struct header_field *f = &hb->fields[i];
		const struct header_edit *rep = edit_for(a, b, EDIT_REPLACE, f->name, f->name_len);
		const struct header_edit *tag = edit_for(a, b, EDIT_SUBJECT_TAG, f->name, f->name_len);

		if (rep != NULL && edit_for(a, b, EDIT_REMOVE, f->name, f->name_len) == NULL) {
			/* the replacement stands where the first such field stood */
			if (header_find(hb, rep->name, 0) == f)
				buf_appendf(out, "%s: %s\r\n", rep->name, rep->value);
			continue;
		}
		if (removed(a, b, f->name, f->name_len))
			continue;
		if (tag != NULL && header_find(hb, "Subject", 0) == f) {
			buf_append(out, f->name, f->name_len);
			buf_appends(out, ":");
			append_tagged(out, tag->value, f->value, f->value_len);
			buf_appends(out, "\r\n");
			continue;
		}
		buf_append(out, hb->raw + f->raw_off, f->raw_len);
	}
	/* lines of the header that were not fields (broken) are dropped with it */
	if (hb->body_off > 0)
		buf_appends(out, "\r\n");
	*spool_off_r = hb->body_off;
}
