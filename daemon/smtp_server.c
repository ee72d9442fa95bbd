/*
 * smtp_server - the server side of one SMTP or LMTP session with the MTA
 *
 * Shaped after OpenSMTPD's smtp_session.c: a state enum, a command table that
 * pairs each verb with its handler and the states it may run in, one place
 * where state changes (enter_state) and one where replies are written
 * (reply/client_error). Replies are buffered and leave when we would
 * otherwise wait for the client, so a pipelined group is answered in one
 * packet (RFC 2920).
 */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "decide.h"
#include "dotstuff.h"
#include "log.h"
#include "message.h"
#include "policy.h"
#include "smtp_server.h"
#include "spool.h"
#include "stats.h"
#include "verdict.h"
#include "util/buf.h"
#include "util/esc.h"
#include "util/io.h"
#include "util/net.h"
#include "util/xalloc.h"

#define PATH_MAX_LEN	512	/* RFC 5321 says 256; be lenient, stay bounded */
#define ENVID_MAX_LEN	100	/* RFC 3461 4.4 */
#define BDAT_MAX_CHUNK	(1L << 40)	/* a syntactic bound; size limits apply first */

enum smtp_state {
	STATE_CONNECTED,	/* greeted, waiting for HELO/EHLO/LHLO */
	STATE_READY,		/* may start a transaction */
	STATE_MAIL,		/* MAIL accepted, waiting for RCPT */
	STATE_RCPT,		/* at least one RCPT: more RCPT, DATA or BDAT */
	STATE_BDAT,		/* inside a BDAT sequence, waiting for the next chunk */
	STATE_QUIT,		/* the session ends */
};

static const char *const state_names[] = {
	"CONNECTED", "READY", "MAIL", "RCPT", "BDAT", "QUIT",
};

struct session {
	const struct config *cfg;	/* borrowed */
	const struct listener_cfg *lc;	/* borrowed */
	struct downstream *ds;		/* borrowed from the worker */
	struct policy *policy;		/* the listener's policy or NULL, borrowed */
	const struct clam_engine *clam;	/* the ClamAV engine or NULL, borrowed */
	int	fd;			/* the client connection, owned */
	struct io io;			/* its buffers */
	struct client client;		/* who is talking, owned */
	enum smtp_state state;		/* see enter_state */
	int	errors;			/* client errors so far */
	struct buf line;		/* the current command line */
	const char *last_cmd;		/* verb of the current command, for logs */
	char   *line_for_log;		/* escaped copy of the command line (debug only), owned */
	struct message *msg;		/* the transaction, owned; NULL outside */
	struct lfnorm bdat_norm;	/* BDAT: bare-LF state across chunks */
};

/* enter_state - the one place the state changes */
static void
enter_state(struct session *s, enum smtp_state st)
{
	if (log_debug_enabled() && s->state != st)
		log_debug("%s: session %s -> %s", s->client.ip, state_names[s->state],
			  state_names[st]);
	s->state = st;
}

/*
 * make_printable - replace what RFC 5321 4.2 does not allow in reply text
 *
 * Client bytes echoed in an error reply (a bad parameter name) must not carry
 * control or 8-bit bytes to the MTA's log; Postfix's printable() does the same.
 */
static void
make_printable(char *text)
{
	for (unsigned char *p = (unsigned char *)text; *p; p++)
		if (*p < 0x20 || *p >= 0x7f)
			*p = '?';
}

/* reply - queue one reply line "CODE ENH text" */
static void __attribute__((format(printf, 4, 5)))
reply(struct session *s, int code, const char *enh, const char *fmt, ...)
{
	char text[1024], line[1200];
	va_list ap;
	int n;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	make_printable(text);
	n = snprintf(line, sizeof(line), "%d %s %s\r\n", code, enh, text);
	if (n < 0 || (size_t)n >= sizeof(line))
		n = (int)sizeof(line) - 1;
	io_write(&s->io, line, (size_t)n);
}

/*
 * client_error - reply to a client mistake and count it
 *
 * Past max_errors the session ends with 421 (Postfix's smtpd_hard_error_limit):
 * a confused or hostile client must not hold a worker forever.
 */
static void __attribute__((format(printf, 4, 5)))
client_error(struct session *s, int code, const char *enh, const char *fmt, ...)
{
	char text[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	make_printable(text);
	reply(s, code, enh, "%s", text);
	log_debug("%s: %d %s %s (command: %s)", s->client.ip, code, enh, text,
		  s->line_for_log ? s->line_for_log : "");
	if (++s->errors >= s->lc->max_errors) {
		log_warnx("%s: too many errors (%d) in session on listener %s, disconnecting",
			  s->client.ip, s->errors, s->lc->name);
		reply(s, 421, "4.7.0", "%s Error: too many errors", s->cfg->hostname);
		enter_state(s, STATE_QUIT);
	}
}

/* end_transaction - forget the transaction (RSET, EHLO, end of data, errors) */
static void
end_transaction(struct session *s)
{
	s->msg = message_free(s->msg);
	client_reset_xforward(&s->client);
	if (s->state != STATE_CONNECTED && s->state != STATE_QUIT)
		enter_state(s, STATE_READY);
}

/* skip_spaces - past blanks */
static char *
skip_spaces(char *p)
{
	while (*p == ' ' || *p == '\t')
		p++;
	return p;
}

/*
 * parse_path - "FROM:<addr> params" into addr and the parameter text
 *
 * Quoted local parts may hold '>' and spaces; a source route (<@a,@b:u@d>)
 * is accepted and ignored (RFC 5321 4.1.2). Returns 0, or -1 when the
 * syntax is wrong. *addr_r points into args (which is modified).
 */
static int
parse_path(char *args, const char *keyword, char **addr_r, char **params_r)
{
	size_t klen = strlen(keyword);
	bool quoted = false;
	char *p, *start;

	if (strncasecmp(args, keyword, klen) != 0)
		return -1;
	p = skip_spaces(args + klen);
	if (*p != '<')
		return -1;
	start = ++p;
	for (; *p != '\0'; p++) {
		if (*p == '\\' && p[1] != '\0') {
			/* RFC 5321 4.1.2: quoted-pairSMTP escapes printable ASCII only */
			if ((unsigned char)p[1] < 0x20 || p[1] == 0x7f)
				return -1;
			p++;
			continue;
		}
		if (*p == '"')
			quoted = !quoted;
		else if (*p == '>' && !quoted)
			break;
		else if ((unsigned char)*p < 0x20 || *p == 0x7f)
			return -1;
	}
	if (*p != '>' || (size_t)(p - start) > PATH_MAX_LEN)
		return -1;
	*p = '\0';
	if (*start == '@') {		/* source route */
		char *colon = strchr(start, ':');

		if (colon == NULL)
			return -1;
		start = colon + 1;
	}
	*addr_r = start;
	p = skip_spaces(p + 1);
	if (*p != '\0' && p[-1] != ' ' && p[-1] != '\t')
		return -1;
	*params_r = p;
	return 0;
}

/* next_param - split off one "KEY[=VALUE]" from *cursor; NULL at the end */
static char *
next_param(char **cursor, char **value_r)
{
	char *p = skip_spaces(*cursor), *start = p, *eq;

	if (*p == '\0')
		return NULL;
	while (*p != '\0' && *p != ' ' && *p != '\t')
		p++;
	if (*p != '\0')
		*p++ = '\0';
	*cursor = p;
	eq = strchr(start, '=');
	if (eq != NULL)
		*eq++ = '\0';
	*value_r = eq;
	return start;
}

/* has_control - does s hold a control byte (C0 or DEL) */
static bool
has_control(const char *s)
{
	for (const unsigned char *p = (const unsigned char *)s; *p; p++)
		if (*p < 0x20 || *p == 0x7f)
			return true;
	return false;
}

/* is_xtext - plausible RFC 3461 xtext (what we pass on untouched) */
static bool
is_xtext(const char *v)
{
	char *decoded;

	if (v == NULL || *v == '\0' || xtext_decode(v, &decoded) < 0)
		return false;
	free(decoded);
	for (const unsigned char *p = (const unsigned char *)v; *p; p++)
		if (*p < 33 || *p > 126)
			return false;
	return true;
}

/* greeting_name - HELO/EHLO/LHLO argument or an error */
static bool
take_helo(struct session *s, char *args, const char *verb)
{
	args = skip_spaces(args);
	if (*args == '\0') {
		client_error(s, 501, "5.5.4", "Syntax: %s hostname", verb);
		return false;
	}
	free(s->client.helo);
	s->client.helo = xstrndup(args, 255);
	end_transaction(s);
	enter_state(s, STATE_READY);
	return true;
}

/* ehlo_reply - the greeting reply with our extensions */
static void
ehlo_reply(struct session *s)
{
	struct buf r;

	buf_init(&r, 0);
	buf_appendf(&r, "250-%s\r\n"
		    "250-PIPELINING\r\n"
		    "250-SIZE %ld\r\n"
		    "250-8BITMIME\r\n"
		    "250-ENHANCEDSTATUSCODES\r\n"
		    "250-XFORWARD NAME ADDR PORT PROTO HELO IDENT SOURCE LOGIN\r\n"
		    "250-SMTPUTF8\r\n"
		    "250-CHUNKING\r\n"
		    "250 DSN\r\n", s->cfg->hostname, s->lc->max_message_size);
	io_write(&s->io, r.ptr, r.len);
	buf_release(&r);
}

/* cmd_ehlo - EHLO (SMTP listeners) */
static void
cmd_ehlo(struct session *s, char *args)
{
	if (take_helo(s, args, "EHLO"))
		ehlo_reply(s);
}

/* cmd_lhlo - LHLO (LMTP listeners) */
static void
cmd_lhlo(struct session *s, char *args)
{
	if (take_helo(s, args, "LHLO"))
		ehlo_reply(s);
}

/* cmd_helo - HELO: no extensions */
static void
cmd_helo(struct session *s, char *args)
{
	if (take_helo(s, args, "HELO"))
		reply(s, 250, "2.0.0", "%s", s->cfg->hostname);
}

/* cmd_xforward - remember attributes of the MTA's own client (XFORWARD_README) */
static void
cmd_xforward(struct session *s, char *args)
{
	char *cursor = args, *name, *value;
	char *decoded[XF_COUNT] = { 0 };
	int seen = 0;

	while ((name = next_param(&cursor, &value)) != NULL) {
		char *one = NULL;
		int i;

		for (i = 0; i < XF_COUNT; i++)
			if (strcasecmp(name, xforward_names[i]) == 0)
				break;
		if (i == XF_COUNT || value == NULL) {
			client_error(s, 501, "5.5.4", "Bad XFORWARD attribute name: %.64s", name);
			goto out;
		}
		if (xtext_decode(value, &one) < 0 || strlen(one) > 255 || has_control(one)) {
			if (one != NULL)
				free(one);
			client_error(s, 501, "5.5.4", "Bad XFORWARD attribute value for %s", name);
			goto out;
		}
		free(decoded[i]);
		decoded[i] = one;
		seen++;
	}
	if (seen == 0) {
		client_error(s, 501, "5.5.4", "Syntax: XFORWARD attribute=value...");
		goto out;
	}
	for (int i = 0; i < XF_COUNT; i++)
		if (decoded[i] != NULL) {
			free(s->client.xforward[i]);
			s->client.xforward[i] = decoded[i];
			decoded[i] = NULL;
		}
	reply(s, 250, "2.0.0", "Ok");
out:
	for (int i = 0; i < XF_COUNT; i++)
		free(decoded[i]);
}

/* mail_param - one MAIL FROM parameter; false after replying with an error */
static bool
mail_param(struct session *s, struct message *m, const char *key, const char *value)
{
	if (strcasecmp(key, "SIZE") == 0) {
		char *end;
		unsigned long long v;

		errno = 0;
		v = value ? strtoull(value, &end, 10) : 0;
		if (value == NULL || !isdigit((unsigned char)*value) || *end != '\0' || errno != 0) {
			client_error(s, 501, "5.5.4", "Bad SIZE parameter");
			return false;
		}
		if (v > (unsigned long long)s->lc->max_message_size) {
			client_error(s, 552, "5.3.4", "Message size exceeds fixed limit");
			return false;
		}
	} else if (strcasecmp(key, "BODY") == 0) {
		if (value && strcasecmp(value, "8BITMIME") == 0)
			m->body = BODY_8BITMIME;
		else if (value && strcasecmp(value, "7BIT") == 0)
			m->body = BODY_7BIT;
		else {
			client_error(s, 501, "5.5.4", "Unsupported BODY parameter");
			return false;
		}
	} else if (strcasecmp(key, "SMTPUTF8") == 0 && value == NULL) {
		m->smtputf8 = true;
	} else if (strcasecmp(key, "RET") == 0) {
		if (value == NULL || (strcasecmp(value, "FULL") != 0 && strcasecmp(value, "HDRS") != 0)) {
			client_error(s, 501, "5.5.4", "Bad RET parameter");
			return false;
		}
		free(m->ret);
		m->ret = xstrdup(value);
	} else if (strcasecmp(key, "ENVID") == 0) {
		if (!is_xtext(value) || strlen(value) > ENVID_MAX_LEN) {
			client_error(s, 501, "5.5.4", "Bad ENVID parameter");
			return false;
		}
		free(m->envid);
		m->envid = xstrdup(value);
	} else if (strcasecmp(key, "AUTH") == 0 && value != NULL) {
		/* RFC 4954 5: the MTA's view of the submitter; XFORWARD LOGIN carries it */
	} else {
		client_error(s, 555, "5.5.4", "Unsupported option: %.64s", key);
		return false;
	}
	return true;
}

/* cmd_mail - MAIL FROM:<sender> [params] */
static void
cmd_mail(struct session *s, char *args)
{
	char *addr, *params, *key, *value;
	struct message *m;

	if (s->state == STATE_CONNECTED) {
		client_error(s, 503, "5.5.1", "Error: send %s first", s->lc->is_lmtp ? "LHLO" : "HELO/EHLO");
		return;
	}
	if (s->state != STATE_READY) {
		client_error(s, 503, "5.5.1", "Error: nested MAIL command");
		return;
	}
	if (parse_path(args, "FROM:", &addr, &params) < 0) {
		client_error(s, 501, "5.5.4", "Syntax: MAIL FROM:<address>");
		return;
	}
	m = message_new();
	while ((key = next_param(&params, &value)) != NULL)
		if (!mail_param(s, m, key, value)) {
			message_free(m);
			return;
		}
	m->sender = xstrdup(addr);
	s->msg = m;
	enter_state(s, STATE_MAIL);
	reply(s, 250, "2.1.0", "Ok");
}

/* valid_notify - NEVER, or a list of SUCCESS, FAILURE, DELAY */
static bool
valid_notify(const char *v)
{
	char copy[64], *tok, *save;

	if (v == NULL || *v == '\0' || strlen(v) >= sizeof(copy))
		return false;
	if (strcasecmp(v, "NEVER") == 0)
		return true;
	/* strtok_r skips empty elements; RFC 3461 4.1 has none */
	if (*v == ',' || v[strlen(v) - 1] == ',' || strstr(v, ",,") != NULL)
		return false;
	strcpy(copy, v);
	for (tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
		if (strcasecmp(tok, "SUCCESS") && strcasecmp(tok, "FAILURE") && strcasecmp(tok, "DELAY"))
			return false;
	return true;
}

/* cmd_rcpt - RCPT TO:<recipient> [NOTIFY=...] [ORCPT=...] */
static void
cmd_rcpt(struct session *s, char *args)
{
	char *addr, *params, *key, *value, *notify = NULL, *orcpt = NULL;
	struct recipient *r;

	if (s->state != STATE_MAIL && s->state != STATE_RCPT) {
		client_error(s, 503, "5.5.1", "Error: need MAIL command");
		return;
	}
	if (parse_path(args, "TO:", &addr, &params) < 0 || *addr == '\0') {
		client_error(s, 501, "5.5.4", "Syntax: RCPT TO:<address>");
		return;
	}
	while ((key = next_param(&params, &value)) != NULL) {
		if (strcasecmp(key, "NOTIFY") == 0 && valid_notify(value))
			notify = value;
		else if (strcasecmp(key, "ORCPT") == 0 && is_xtext(value) && strchr(value, ';'))
			orcpt = value;
		else {
			client_error(s, 555, "5.5.4", "Unsupported option or bad value: %.64s", key);
			return;
		}
	}
	if (s->msg->nrcpts >= (size_t)s->lc->max_recipients) {
		/* not a client mistake: the MTA sends the rest in another transaction */
		reply(s, 452, "4.5.3", "Error: too many recipients");
		return;
	}
	r = message_add_rcpt(s->msg, addr);
	r->notify = notify ? xstrdup(notify) : NULL;
	r->orcpt = orcpt ? xstrdup(orcpt) : NULL;
	enter_state(s, STATE_RCPT);
	reply(s, 250, "2.1.5", "Ok");
}

/* store - append received bytes to the spool, minding the size limit */
static void
store(struct session *s, const char *p, size_t len)
{
	struct message *m = s->msg;

	if (m == NULL || m->spool == NULL || len == 0)
		return;
	if (m->data_started_us == 0)
		m->data_started_us = stats_now_us();
	/* counted whatever happens to them: the log gives a refused message's size too */
	m->size = len > (size_t)(LONG_MAX - m->size) ? LONG_MAX : m->size + (long)len;
	if (m->too_big || m->spool_errno != 0)
		return;
	if (m->size > s->lc->max_message_size) {
		m->too_big = true;
		return;
	}
	if (spool_write(m->spool, p, len) < 0)
		m->spool_errno = errno;
}

/* open_spool - the transaction's spool file; false after replying 451 */
static bool
open_spool(struct session *s)
{
	if (s->msg->spool != NULL)
		return true;
	s->msg->spool = spool_open(s->cfg->spool_dir);
	if (s->msg->spool == NULL) {
		log_warn("%s: cannot create a spool file in %s", s->msg->id, s->cfg->spool_dir);
		s->msg->spool_errno = errno ? errno : EIO;
		return false;
	}
	return true;
}

/* lost_connection - log a session that ended without QUIT */
static void
lost_connection(struct session *s, int rc)
{
	char *e = esc_logs(s->last_cmd);

	if (rc == IO_TIMEOUT) {
		log_warnx("%s: timeout after %s on listener %s%s%s", s->client.ip, e, s->lc->name,
			  s->msg ? ", transaction aborted: " : "", s->msg ? s->msg->id : "");
		reply(s, 421, "4.4.2", "%s Error: timeout exceeded", s->cfg->hostname);
		io_flush(&s->io);
	} else if (rc == IO_STOPPED) {
		reply(s, 421, "4.3.2", "%s Service shutting down, try again later", s->cfg->hostname);
		io_flush(&s->io);
	} else
		log_warnx("%s: lost connection after %s on listener %s%s%s", s->client.ip, e,
			  s->lc->name, s->msg ? ", transaction aborted: " : "",
			  s->msg ? s->msg->id : "");
	free(e);
	enter_state(s, STATE_QUIT);
}

/*
 * data_phase_begin, data_phase_progress - the deadline of a DATA or BDAT read
 *
 * Each wait is bounded by data_timeout; the whole phase by data_timeout plus
 * the time min_data_rate allows for the bytes received so far (Postfix's
 * smtpd_min_data_rate), so a client trickling a byte at a time is cut off.
 */
static void
data_phase_begin(struct session *s, long long *start_r)
{
	*start_r = io_now_ms();
	s->io.timeout_ms = (int)s->lc->data_timeout_ms;
	if (s->lc->min_data_rate > 0)
		io_set_deadline(&s->io, *start_r + s->lc->data_timeout_ms);
}

static void
data_phase_progress(struct session *s, long long start, unsigned long long bytes)
{
	if (s->lc->min_data_rate > 0)
		io_set_deadline(&s->io, start + s->lc->data_timeout_ms +
				(long long)(bytes * 1000 / (unsigned long long)s->lc->min_data_rate));
}

/* data_phase_end - back to command timeouts */
static void
data_phase_end(struct session *s)
{
	io_set_deadline(&s->io, 0);
	s->io.timeout_ms = (int)s->lc->command_timeout_ms;
}

/* read_dot_data - DATA content up to CRLF.CRLF into the spool; IO_OK or an error */
static int
read_dot_data(struct session *s)
{
	unsigned long long received = 0;
	struct unstuff u;
	struct buf out;
	bool done = false;
	long long start;
	int rc = IO_OK;

	unstuff_init(&u);
	buf_init(&out, 0);
	data_phase_begin(s, &start);
	while (!done) {
		size_t used;

		if (io_avail(&s->io) == 0 && (rc = io_fill(&s->io)) < 0)
			break;
		used = unstuff_feed(&u, io_rptr(&s->io), io_avail(&s->io), &out, &done);
		io_rconsume(&s->io, used);
		received += used;
		data_phase_progress(s, start, received);
		store(s, out.ptr, out.len);
		buf_reset(&out);
		rc = IO_OK;
	}
	data_phase_end(s);
	buf_release(&out);
	return rc;
}

/* read_chunk - exactly n BDAT bytes; stored when a transaction wants them */
static int
read_chunk(struct session *s, unsigned long long n)
{
	unsigned long long received = 0;
	struct buf out;
	long long start;
	int rc = IO_OK;

	buf_init(&out, 0);
	data_phase_begin(s, &start);
	while (n > 0) {
		size_t take;

		if (io_avail(&s->io) == 0 && (rc = io_fill(&s->io)) < 0)
			break;
		take = io_avail(&s->io) < n ? io_avail(&s->io) : (size_t)n;
		if (s->msg != NULL && s->state != STATE_QUIT) {
			lfnorm_feed(&s->bdat_norm, io_rptr(&s->io), take, &out);
			store(s, out.ptr, out.len);
			buf_reset(&out);
		}
		io_rconsume(&s->io, take);
		n -= take;
		received += take;
		data_phase_progress(s, start, received);
		rc = IO_OK;
	}
	data_phase_end(s);
	buf_release(&out);
	return rc;
}

/* fail_all - every recipient gets the same reply (our own refusal) */
static void
fail_all(struct message *m, int code, const char *text)
{
	for (size_t i = 0; i < m->nrcpts; i++)
		message_set_reply(&m->rcpts[i], code, text);
}

/*
 * The session's last words, should the policy watchdog end the worker while a
 * message is decided (policy.c): a policy stuck for hours inside one C call
 * cannot be stopped any other way. The client is owed the replies queued so
 * far (pipelined commands), then one for its message: "421", once, or in LMTP
 * once per recipient (RFC 2033), after which the connection closes. So the MTA
 * defers the message with a reason instead of seeing a lost connection. The
 * reply is written before the policy runs; the signal handler only calls
 * write() and poll(), and the queued output does not change while it runs.
 */
static struct {
	int		fd;		/* the client, -1 when no message is being decided */
	const struct buf *queued;	/* replies not yet written */
	char		reply[320];
	size_t		len;
	size_t		count;		/* how many times to say it */
} last_words = { .fd = -1 };

/* write_in_handler - all of p to fd, from a signal handler: bounded, best effort */
static void
write_in_handler(int fd, const char *p, size_t len)
{
	for (int stalls = 0; len > 0 && stalls < 10;) {
		ssize_t n = write(fd, p, len);

		if (n > 0) {
			p += n;
			len -= (size_t)n;
		} else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
			struct pollfd pfd = { .fd = fd, .events = POLLOUT };

			stalls++;
			(void)poll(&pfd, 1, 100);
		} else
			return;
	}
}

/* say_last_words - the watchdog's hook (async-signal-safe) */
static void
say_last_words(void)
{
	int saved = errno;

	if (last_words.fd >= 0) {
		write_in_handler(last_words.fd, last_words.queued->ptr, last_words.queued->len);
		for (size_t i = 0; i < last_words.count; i++)
			write_in_handler(last_words.fd, last_words.reply, last_words.len);
	}
	errno = saved;
}

/*
 * prepare_last_words - what say_last_words() says while m is decided; the text
 * is made once per configuration (a worker keeps its own until it is replaced),
 * not once per message
 */
static void
prepare_last_words(struct session *s, const struct message *m)
{
	static const struct config *made_for;

	if (made_for != s->cfg) {
		int n = snprintf(last_words.reply, sizeof(last_words.reply),
				 "421 4.3.0 %.200s Error: the policy ran far past its time limit; "
				 "try again later\r\n", s->cfg->hostname);

		last_words.len = n > 0 && (size_t)n < sizeof(last_words.reply) ? (size_t)n : 0;
		made_for = s->cfg;
	}
	last_words.queued = &s->io.wbuf;
	last_words.count = s->lc->is_lmtp ? m->nrcpts : 1;
	last_words.fd = s->fd;
	policy_set_last_words(say_last_words);
}

/*
 * finish_transaction - the data is in: decide, hand on, answer, log
 */
static void
finish_transaction(struct session *s)
{
	struct message *m = s->msg;
	struct buf out;

	buf_init(&out, 0);
	if (m->data_started_us != 0)
		stats_observe(s->lc->name, STAGE_RECEIVE, stats_now_us() - m->data_started_us);
	if (m->too_big) {
		fail_all(m, 552, "552 5.3.4 Error: message file too big");
	} else if (m->spool_errno != 0 || spool_finish(m->spool) < 0) {
		if (m->spool_errno == 0)
			m->spool_errno = errno;
		log_warnx("%s: cannot write spool file in %s: %s", m->id, s->cfg->spool_dir,
			  strerror(m->spool_errno));
		fail_all(m, 452, "452 4.3.1 Insufficient system storage");
	} else {
		struct decide_ctx ctx = { s->cfg, s->lc, &s->client, s->ds, s->policy, s->clam };

		prepare_last_words(s, m);
		decide_message(&ctx, m);
		last_words.fd = -1;
	}
	if (s->lc->is_lmtp) {
		for (size_t i = 0; i < m->nrcpts; i++)
			if (!m->rcpts[i].added)
				verdict_reply_for(m, &m->rcpts[i], &out);
	}
	else
		verdict_smtp_reply(m, &out);
	io_write(&s->io, out.ptr, out.len);
	/* the log shows the first reply line, without its CRLF */
	{
		char *nl = memchr(out.ptr, '\r', out.len);

		if (nl != NULL)
			out.len = (size_t)(nl - out.ptr);
		verdict_log(s->lc, &s->client, m, buf_cstr(&out));
	}
	buf_release(&out);
	end_transaction(s);
}

/* cmd_data - DATA: 354, then the message up to the lone dot */
static void
cmd_data(struct session *s, char *args)
{
	int rc;

	if (*skip_spaces(args) != '\0') {
		client_error(s, 501, "5.5.4", "Syntax: DATA");
		return;
	}
	if (s->state == STATE_BDAT) {
		client_error(s, 503, "5.5.1", "Error: DATA within a BDAT transaction");
		return;
	}
	if (s->state != STATE_RCPT) {
		client_error(s, 503, "5.5.1", "Error: need %s command",
			     s->state == STATE_MAIL ? "RCPT" : "MAIL");
		return;
	}
	if (!open_spool(s)) {
		reply(s, 451, "4.3.0", "Error: cannot spool the message, try again later");
		end_transaction(s);
		return;
	}
	/* no enhanced code on 354: RFC 2034 gives them to 2xx, 4xx and 5xx only */
	io_puts(&s->io, "354 End data with <CR><LF>.<CR><LF>\r\n");
	if ((rc = read_dot_data(s)) != IO_OK) {
		lost_connection(s, rc);
		return;
	}
	finish_transaction(s);
}

/* cmd_bdat - BDAT size [LAST] (RFC 3030): the chunk is read even when refused */
static void
cmd_bdat(struct session *s, char *args)
{
	char *p = skip_spaces(args), *end;
	unsigned long long n;
	bool last = false;
	int rc;

	errno = 0;
	n = strtoull(p, &end, 10);
	if (end == p || errno != 0 || n > (unsigned long long)BDAT_MAX_CHUNK ||
	    !isdigit((unsigned char)*p) || (*end != '\0' && *end != ' ' && *end != '\t')) {
		/* without a size we cannot know where the chunk ends: stop here */
		client_error(s, 501, "5.5.4", "Syntax: BDAT size [LAST]");
		reply(s, 421, "4.5.0", "%s Error: lost synchronisation with BDAT", s->cfg->hostname);
		enter_state(s, STATE_QUIT);
		return;
	}
	p = skip_spaces(end);
	if (strcasecmp(p, "LAST") == 0)
		last = true;
	else if (*p != '\0') {
		struct message *keep = s->msg;

		s->msg = NULL;		/* read and throw away */
		rc = read_chunk(s, n);
		s->msg = keep;
		client_error(s, 501, "5.5.4", "Syntax: BDAT size [LAST]");
		end_transaction(s);
		if (rc != IO_OK)
			lost_connection(s, rc);
		return;
	}
	if (s->state != STATE_RCPT && s->state != STATE_BDAT) {
		struct message *keep = s->msg;

		s->msg = NULL;		/* read and throw away */
		rc = read_chunk(s, n);
		s->msg = keep;
		if (rc != IO_OK) {
			lost_connection(s, rc);
			return;
		}
		client_error(s, 503, "5.5.1", "Error: need %s command",
			     s->state == STATE_MAIL ? "RCPT" : "MAIL");
		return;
	}
	if (s->state == STATE_RCPT) {
		lfnorm_init(&s->bdat_norm);
		if (!open_spool(s)) {
			struct message *keep = s->msg;

			s->msg = NULL;
			rc = read_chunk(s, n);
			s->msg = keep;
			reply(s, 451, "4.3.0", "Error: cannot spool the message, try again later");
			end_transaction(s);
			if (rc != IO_OK)
				lost_connection(s, rc);
			return;
		}
		enter_state(s, STATE_BDAT);
	}
	if ((rc = read_chunk(s, n)) != IO_OK) {
		lost_connection(s, rc);
		return;
	}
	if (last)
		finish_transaction(s);
	else if (s->msg->too_big) {
		reply(s, 552, "5.3.4", "Error: message file too big");
		end_transaction(s);
	} else
		reply(s, 250, "2.0.0", "Ok: %llu octets", n);
}

/* cmd_rset - RSET */
static void
cmd_rset(struct session *s, char *args)
{
	(void)args;
	end_transaction(s);
	reply(s, 250, "2.0.0", "Ok");
}

/* cmd_noop - NOOP */
static void
cmd_noop(struct session *s, char *args)
{
	(void)args;
	reply(s, 250, "2.0.0", "Ok");
}

/* cmd_quit - QUIT */
static void
cmd_quit(struct session *s, char *args)
{
	(void)args;
	reply(s, 221, "2.0.0", "Bye");
	enter_state(s, STATE_QUIT);
}

/* cmd_vrfy - VRFY: we cannot know, the MTA can (RFC 5321 3.5.3) */
static void
cmd_vrfy(struct session *s, char *args)
{
	if (*skip_spaces(args) == '\0') {
		client_error(s, 501, "5.5.4", "Syntax: VRFY address");
		return;
	}
	reply(s, 252, "2.0.0", "Cannot VRFY user, but will accept message");
}

/* cmd_help - HELP */
static void
cmd_help(struct session *s, char *args)
{
	(void)args;
	reply(s, 214, "2.0.0", "Commands: %s MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP XFORWARD",
	      s->lc->is_lmtp ? "LHLO" : "EHLO HELO");
}

/* cmd_not_implemented - verbs we know and do not offer */
static void
cmd_not_implemented(struct session *s, char *args)
{
	(void)args;
	client_error(s, 502, "5.5.1", "Error: command not implemented");
}

/* cmd_wrong_protocol - HELO/EHLO on LMTP, LHLO on SMTP */
static void
cmd_wrong_protocol(struct session *s, char *args)
{
	(void)args;
	client_error(s, 500, "5.5.1", "Error: this listener speaks %s; use %s",
		     s->lc->is_lmtp ? "LMTP" : "SMTP", s->lc->is_lmtp ? "LHLO" : "EHLO");
}

enum {
	CMD_SMTP = 1,		/* only on SMTP listeners */
	CMD_LMTP = 2,		/* only on LMTP listeners */
	CMD_NO_TX = 4,		/* not inside a transaction */
};

static const struct command {
	const char *verb;
	void	(*run)(struct session *, char *);
	int	flags;
} commands[] = {
	{ "EHLO", cmd_ehlo, CMD_SMTP },
	{ "HELO", cmd_helo, CMD_SMTP },
	{ "LHLO", cmd_lhlo, CMD_LMTP },
	{ "XFORWARD", cmd_xforward, CMD_NO_TX },
	{ "MAIL", cmd_mail, 0 },
	{ "RCPT", cmd_rcpt, 0 },
	{ "DATA", cmd_data, 0 },
	{ "BDAT", cmd_bdat, 0 },
	{ "RSET", cmd_rset, 0 },
	{ "NOOP", cmd_noop, 0 },
	{ "QUIT", cmd_quit, 0 },
	{ "VRFY", cmd_vrfy, 0 },
	{ "HELP", cmd_help, 0 },
	{ "EXPN", cmd_not_implemented, 0 },
	{ "ETRN", cmd_not_implemented, 0 },
	{ "TURN", cmd_not_implemented, 0 },
	{ "STARTTLS", cmd_not_implemented, 0 },
	{ "AUTH", cmd_not_implemented, 0 },
	{ "XCLIENT", cmd_not_implemented, 0 },
	{ NULL, NULL, 0 },
};

/* dispatch - run one command line */
static void
dispatch(struct session *s)
{
	char *line = (char *)buf_cstr(&s->line), *args;
	size_t vlen;

	/* checked before the verb is split off, which writes a NUL of its own */
	if (memchr(line, '\0', s->line.len) != NULL) {
		s->last_cmd = "garbage";
		client_error(s, 500, "5.5.2", "Error: NUL byte in command");
		return;
	}
	vlen = strcspn(line, " \t");
	args = line + vlen;
	if (*args != '\0')
		*args++ = '\0';
	for (const struct command *c = commands; c->verb != NULL; c++) {
		if (strcasecmp(line, c->verb) != 0)
			continue;
		s->last_cmd = c->verb;
		if ((c->flags & CMD_SMTP && s->lc->is_lmtp) || (c->flags & CMD_LMTP && !s->lc->is_lmtp)) {
			if (c->flags & CMD_LMTP)
				break;	/* LHLO on SMTP: unknown, as for any SMTP server */
			cmd_wrong_protocol(s, args);
			return;
		}
		if (c->flags & CMD_NO_TX && s->state != STATE_READY && s->state != STATE_CONNECTED) {
			client_error(s, 503, "5.5.1", "Error: %s not allowed within a transaction", c->verb);
			return;
		}
		if (s->state == STATE_BDAT && c->run != cmd_bdat && c->run != cmd_rset &&
		    c->run != cmd_quit && c->run != cmd_noop) {
			client_error(s, 503, "5.5.1", "Error: only BDAT, RSET, NOOP or QUIT within BDAT");
			return;
		}
		c->run(s, args);
		return;
	}
	s->last_cmd = "unknown command";
	client_error(s, 502, "5.5.2", "Error: command not recognized");
}

/* allowed - is the peer on the listener's allow list */
static bool
allowed(const struct listener_cfg *lc, const struct sockaddr_storage *peer)
{
	for (size_t i = 0; i < lc->allow_count; i++)
		if (cidr_match(&lc->allow[i], peer))
			return true;
	return false;
}

/* command_loop - read and run commands until QUIT, error or stop */
static void
command_loop(struct session *s)
{
	bool too_long;
	int rc;

	while (s->state != STATE_QUIT) {
		/* between transactions a stop request ends the session politely */
		s->io.interruptible = s->state == STATE_READY || s->state == STATE_CONNECTED;
		rc = io_getline(&s->io, &s->line, (size_t)s->lc->smtp_line_limit, &too_long);
		s->io.interruptible = false;
		if (rc != IO_OK) {
			lost_connection(s, rc);
			break;
		}
		if (too_long) {
			s->last_cmd = "overlong line";
			buf_reset(&s->line);
			client_error(s, 500, "5.5.2", "Error: line too long");
			continue;
		}
		if (log_debug_enabled())	/* copied before the parsers cut it up */
			s->line_for_log = esc_log(s->line.ptr ? s->line.ptr : "",
						  s->line.len > 200 ? 200 : s->line.len);
		dispatch(s);
		free(s->line_for_log);
		s->line_for_log = NULL;
	}
}

/* smtp_session_run - one session, from accept() to close(); see smtp_server.h */
void
smtp_session_run(const struct config *cfg, const struct listener_cfg *lc, struct downstream *ds,
		 const struct scanners *sc, int fd, const struct sockaddr_storage *peer)
{
	struct session s;

	memset(&s, 0, sizeof(s));
	s.cfg = cfg;
	s.lc = lc;
	s.ds = ds;
	s.policy = sc->policy;
	s.clam = sc->clam;
	s.fd = fd;
	s.last_cmd = "CONNECT";
	net_ntop(peer, s.client.ip, sizeof(s.client.ip));
	s.client.port = net_port(peer);
	io_init(&s.io, fd, (int)lc->command_timeout_ms);
	buf_init(&s.line, 0);
	if (!allowed(lc, peer)) {
		log_warnx("%s: client not in the allow list of listener %s: refused", s.client.ip,
			  lc->name);
		reply(&s, 554, "5.7.1", "%s: client %s not allowed", cfg->hostname, s.client.ip);
		io_flush(&s.io);
		goto out;
	}
	log_debug("%s: connect on listener %s", s.client.ip, lc->name);
	{
		char greet[400];

		snprintf(greet, sizeof(greet), "220 %s %s postern\r\n", cfg->hostname,
			 lc->is_lmtp ? "LMTP" : "ESMTP");
		io_puts(&s.io, greet);
	}
	command_loop(&s);
	io_flush(&s.io);
out:
	s.msg = message_free(s.msg);
	client_release(&s.client);
	buf_release(&s.line);
	io_release(&s.io);
	close(fd);
}
