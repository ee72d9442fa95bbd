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
#include <sys/random.h>
#include <unistd.h>

#include "message.h"
#include "spool.h"
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

/* hexval - value of a hex digit, -1 if none */
static int
hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* xtext_decode - RFC 3461 xtext ("+2B" for '+') into a fresh string; -1 if malformed */
int
xtext_decode(const char *in, char **out_r)
{
	char *out = xmalloc(strlen(in) + 1), *o = out;

	for (const char *p = in; *p; p++) {
		if (*p == '+') {
			int hi = hexval((unsigned char)p[1]), lo = hi < 0 ? -1 : hexval((unsigned char)p[2]);

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
