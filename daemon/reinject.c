/*
 * reinject - the SMTP client that hands accepted mail to the listener's `forward`
 *
 * See reinject.h for the contract. One transaction is: XFORWARD (when
 * offered), MAIL, RCPT..., DATA (one pipelined group when PIPELINING is
 * offered), then the message: our added header lines, then the spool bytes
 * dot-stuffed. Replies are read with forward_timeout each; any failure of the
 * connection after the first reply of a transaction makes every recipient
 * still open a temporary failure, since the message is still safe with our
 * client.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include <poll.h>

#include "dotstuff.h"
#include "dsn.h"
#include "log.h"
#include "reinject.h"
#include "spool.h"
#include "util/esc.h"
#include "util/io.h"
#include "util/net.h"
#include "util/xalloc.h"

#define REPLY_LINE_MAX	2048	/* longest reply line we keep */
#define REPLY_LINES_MAX	200	/* a multi-line reply longer than this is broken */
#define XFORWARD_LINE_MAX 480	/* Postfix caps a command line at 512 bytes with CRLF */
#define STREAM_CHUNK	(64 * 1024)

struct downstream {
	int	fd;			/* the connection, owned; -1 when none */
	struct io io;			/* its buffers */
	bool	pipelining;		/* what EHLO advertised */
	bool	xforward;
	bool	smtputf8;
	bool	eightbit;
	bool	dsn;
	bool	size;
	char	xforward_attrs[192];	/* attribute names after "XFORWARD" */
	struct timespec last_used;	/* end of the last transaction (monotonic) */
	bool	reused;			/* this transaction runs on a cached connection */
};

/* the outcome of one reply */
struct reply {
	int	code;			/* 3-digit code; 0 when the connection failed */
	struct buf text;		/* last line, "250 2.0.0 Ok: ...", NUL-terminated */
};

enum tx_status {
	TX_DONE,		/* every recipient has its outcome */
	TX_DEAD_CACHED,		/* the cached connection had died: try a fresh one */
	TX_MIXED,		/* SMTP mode: some recipients refused for good, others accepted */
};

struct tx {
	const char *sender;		/* reverse path for MAIL */
	struct recipient **rcpts;	/* recipients of this transaction, borrowed */
	size_t	nrcpts;
	const char *prefix;		/* bytes sent before the spool (added headers) */
	size_t	prefix_len;
	int	spool_fd;		/* the message, or -1 when prefix is all of it */
	off_t	spool_off;		/* where in the spool the copy goes on after prefix */
	off_t	spool_len;		/* how many spool bytes it takes from there */
	bool	stop_on_mixed;		/* return TX_MIXED instead of sending DATA */
	bool	mail_refused;		/* set by envelope_replies: forward refused MAIL */
};

/* mono_ms - monotonic milliseconds between two points */
static long
elapsed_ms(const struct timespec *since)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (long)((now.tv_sec - since->tv_sec) * 1000 + (now.tv_nsec - since->tv_nsec) / 1000000);
}

/* downstream_new - no connection yet */
struct downstream *
downstream_new(void)
{
	struct downstream *ds = xcalloc(1, sizeof(*ds));

	ds->fd = -1;
	return ds;
}

/* hang_up - close the connection without ceremony (it is broken or unwanted) */
static void
hang_up(struct downstream *ds)
{
	if (ds->fd < 0)
		return;
	io_release(&ds->io);
	close(ds->fd);
	ds->fd = -1;
}

/* say_quit - polite close of a healthy connection */
static void
say_quit(struct downstream *ds)
{
	if (ds->fd < 0)
		return;
	ds->io.timeout_ms = 1000;
	io_puts(&ds->io, "QUIT\r\n");
	io_flush(&ds->io);
	hang_up(ds);
}

/* downstream_free - QUIT and free; returns NULL */
struct downstream *
downstream_free(struct downstream *ds)
{
	if (ds != NULL) {
		say_quit(ds);
		free(ds);
	}
	return NULL;
}

/* downstream_idle_left_ms - ms until the cached connection expires; -1 if none */
long
downstream_idle_left_ms(const struct downstream *ds, long idle_limit_ms)
{
	long left;

	if (ds->fd < 0)
		return -1;
	left = idle_limit_ms - elapsed_ms(&ds->last_used);
	return left < 0 ? 0 : left;
}

/* downstream_expire - close the cached connection when idle too long */
void
downstream_expire(struct downstream *ds, long idle_limit_ms)
{
	if (ds->fd >= 0 && downstream_idle_left_ms(ds, idle_limit_ms) == 0)
		say_quit(ds);
}

/*
 * read_reply - one (possibly multi-line) reply; every line goes to lines_r if given
 *
 * Returns the code (200..599), or 0 when the connection failed or spoke
 * nonsense; r->text then says what happened.
 */
static int
read_reply(struct downstream *ds, struct reply *r, struct buf *lines_r)
{
	struct buf line;
	bool too_long;
	int rc, code = 0;

	buf_init(&line, 0);
	buf_reset(&r->text);
	for (int n = 0; n < REPLY_LINES_MAX; n++) {
		rc = io_getline(&ds->io, &line, REPLY_LINE_MAX, &too_long);
		if (rc != IO_OK) {
			buf_appendf(&r->text, "%s", io_strerror(rc));
			code = 0;
			goto out;
		}
		if (too_long || line.len < 3 || line.ptr[0] < '2' || line.ptr[0] > '5' ||
		    line.ptr[1] < '0' || line.ptr[1] > '9' || line.ptr[2] < '0' || line.ptr[2] > '9' ||
		    (line.len > 3 && line.ptr[3] != ' ' && line.ptr[3] != '-')) {
			buf_appends(&r->text, "malformed reply");
			code = 0;
			goto out;
		}
		code = (line.ptr[0] - '0') * 100 + (line.ptr[1] - '0') * 10 + (line.ptr[2] - '0');
		if (lines_r != NULL) {
			buf_append(lines_r, line.ptr, line.len);
			buf_append(lines_r, "\n", 1);
		}
		if (line.len == 3 || line.ptr[3] == ' ') {
			buf_append(&r->text, line.ptr, line.len);
			goto out;
		}
	}
	buf_appends(&r->text, "reply has too many lines");
	code = 0;
out:
	buf_release(&line);
	buf_cstr(&r->text);
	r->code = code;
	return code;
}

/* parse_ehlo - remember the extensions forward offers */
static void
parse_ehlo(struct downstream *ds, const char *lines)
{
	const char *p = lines;

	ds->pipelining = ds->xforward = ds->smtputf8 = ds->eightbit = ds->dsn = ds->size = false;
	ds->xforward_attrs[0] = '\0';
	while (*p) {
		const char *nl = strchr(p, '\n'), *kw = p + 4;
		size_t len = nl ? (size_t)(nl - kw) : strlen(kw);
		char word[160];

		if (strlen(p) < 4)
			break;
		if (len >= sizeof(word))
			len = sizeof(word) - 1;
		memcpy(word, kw, len);
		word[len] = '\0';
		if (strcasecmp(word, "PIPELINING") == 0)
			ds->pipelining = true;
		else if (strcasecmp(word, "SMTPUTF8") == 0)
			ds->smtputf8 = true;
		else if (strcasecmp(word, "8BITMIME") == 0)
			ds->eightbit = true;
		else if (strcasecmp(word, "DSN") == 0)
			ds->dsn = true;
		else if (strncasecmp(word, "SIZE", 4) == 0 && (word[4] == '\0' || word[4] == ' '))
			ds->size = true;
		else if (strncasecmp(word, "XFORWARD", 8) == 0 && (word[8] == ' ' || word[8] == '\0')) {
			ds->xforward = true;
			snprintf(ds->xforward_attrs, sizeof(ds->xforward_attrs), " %s ", word + 8);
		}
		p = nl ? nl + 1 : p + strlen(p);
	}
}

/*
 * open_connection - connect, read the greeting, say EHLO (HELO if refused)
 *
 * Returns 0, or -1 with a temporary-failure reason in why.
 */
static int
open_connection(struct downstream *ds, const struct config *cfg, const struct listener_cfg *lc,
		struct buf *why)
{
	struct reply r;
	struct buf lines;
	int rc = -1;

	ds->fd = net_connect(&lc->forward_ep, (int)lc->forward_connect_timeout_ms);
	if (ds->fd < 0) {
		buf_appendf(why, "cannot connect to forward %s: %s", lc->forward, strerror(errno));
		return -1;
	}
	io_init(&ds->io, ds->fd, (int)lc->forward_connect_timeout_ms);
	buf_init(&r.text, 0);
	buf_init(&lines, 0);
	if (read_reply(ds, &r, NULL) != 220) {
		buf_appendf(why, "forward %s greeted with: %s", lc->forward, r.text.ptr);
		goto out;
	}
	ds->io.timeout_ms = (int)lc->forward_timeout_ms;
	io_puts(&ds->io, "EHLO ");
	io_puts(&ds->io, cfg->hostname);
	io_puts(&ds->io, "\r\n");
	if (read_reply(ds, &r, &lines) == 250) {
		parse_ehlo(ds, lines.ptr ? buf_cstr(&lines) : "");
		rc = 0;
		goto out;
	}
	if (r.code < 500 || r.code > 599) {
		buf_appendf(why, "forward %s answered EHLO with: %s", lc->forward, r.text.ptr);
		goto out;
	}
	io_puts(&ds->io, "HELO ");
	io_puts(&ds->io, cfg->hostname);
	io_puts(&ds->io, "\r\n");
	if (read_reply(ds, &r, NULL) == 250) {
		parse_ehlo(ds, "");
		rc = 0;
	} else
		buf_appendf(why, "forward %s answered HELO with: %s", lc->forward, r.text.ptr);
out:
	buf_release(&r.text);
	buf_release(&lines);
	if (rc < 0)
		hang_up(ds);
	return rc;
}

/*
 * get_connection - the cached connection if it is still alive, else a new one
 *
 * A cached connection that has something to read while idle was closed or
 * told 421 by the other side: drop it without trying it.
 */
static int
get_connection(struct downstream *ds, const struct config *cfg, const struct listener_cfg *lc,
	       struct buf *why)
{
	ds->reused = false;
	if (ds->fd >= 0) {
		struct pollfd pfd = { .fd = ds->fd, .events = POLLIN };

		if (elapsed_ms(&ds->last_used) > lc->forward_cache_ms || poll(&pfd, 1, 0) != 0)
			hang_up(ds);
		else {
			ds->reused = true;
			ds->io.timeout_ms = (int)lc->forward_timeout_ms;
			return 0;
		}
	}
	return open_connection(ds, cfg, lc, why);
}

/* xtext_append - RFC 3461 xtext encoding of s */
static void
xtext_append(struct buf *out, const char *s)
{
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		if (*p < 33 || *p > 126 || *p == '+' || *p == '=')
			buf_appendf(out, "+%02X", *p);
		else
			buf_append(out, p, 1);
	}
}

/* queue_xforward - XFORWARD commands for the attributes forward takes; returns their count */
static int
queue_xforward(struct downstream *ds, const struct client *c)
{
	struct buf cmd;
	int commands = 0;

	if (!ds->xforward)
		return 0;
	buf_init(&cmd, 0);
	for (int i = 0; i < XF_COUNT; i++) {
		char probe[24];
		size_t before = cmd.len;

		if (c->xforward[i] == NULL)
			continue;
		snprintf(probe, sizeof(probe), " %s ", xforward_names[i]);
		if (strcasestr(ds->xforward_attrs, probe) == NULL)
			continue;
		if (cmd.len == 0)
			buf_appends(&cmd, "XFORWARD");
		buf_appendf(&cmd, " %s=", xforward_names[i]);
		xtext_append(&cmd, c->xforward[i]);
		if (cmd.len > XFORWARD_LINE_MAX && before > 0) {
			/* this attribute goes on a line of its own */
			char *rest = xstrndup(cmd.ptr + before, cmd.len - before);

			cmd.len = before;
			buf_appends(&cmd, "\r\n");
			io_write(&ds->io, cmd.ptr, cmd.len);
			commands++;
			buf_reset(&cmd);
			buf_appendf(&cmd, "XFORWARD%s", rest);
			free(rest);
		}
	}
	if (cmd.len > 0) {
		buf_appends(&cmd, "\r\n");
		io_write(&ds->io, cmd.ptr, cmd.len);
		commands++;
	}
	buf_release(&cmd);
	return commands;
}

/* queue_mail - MAIL FROM with the parameters forward understands */
static void
queue_mail(struct downstream *ds, const struct message *m, const struct tx *t)
{
	struct buf cmd;

	buf_init(&cmd, 0);
	buf_appendf(&cmd, "MAIL FROM:<%s>", t->sender);
	if (ds->size)
		buf_appendf(&cmd, " SIZE=%lld", (long long)(t->prefix_len + (size_t)t->spool_len));
	if (t->spool_fd >= 0) {		/* the message itself, not a notification */
		if (m->body == BODY_8BITMIME && ds->eightbit)
			buf_appends(&cmd, " BODY=8BITMIME");
		else if (m->body == BODY_7BIT && ds->eightbit)
			buf_appends(&cmd, " BODY=7BIT");
		if (m->smtputf8 && ds->smtputf8)
			buf_appends(&cmd, " SMTPUTF8");
		if (ds->dsn && m->ret != NULL)
			buf_appendf(&cmd, " RET=%s", m->ret);
		if (ds->dsn && m->envid != NULL)
			buf_appendf(&cmd, " ENVID=%s", m->envid);
	}
	buf_appends(&cmd, "\r\n");
	io_write(&ds->io, cmd.ptr, cmd.len);
	buf_release(&cmd);
}

/* queue_rcpt - RCPT TO with DSN parameters when forward offers DSN */
static void
queue_rcpt(struct downstream *ds, const struct recipient *r)
{
	struct buf cmd;

	buf_init(&cmd, 0);
	buf_appendf(&cmd, "RCPT TO:<%s>", r->forward_to ? r->forward_to : r->addr);
	if (ds->dsn && r->notify != NULL)
		buf_appendf(&cmd, " NOTIFY=%s", r->notify);
	if (ds->dsn && r->orcpt != NULL)
		buf_appendf(&cmd, " ORCPT=%s", r->orcpt);
	buf_appends(&cmd, "\r\n");
	io_write(&ds->io, cmd.ptr, cmd.len);
	buf_release(&cmd);
}

/* fail_open - give every recipient without an outcome this one */
static void
fail_open(struct tx *t, int code, const char *reply)
{
	for (size_t i = 0; i < t->nrcpts; i++)
		if (t->rcpts[i]->code == 0 || t->rcpts[i]->code / 100 == 2)
			message_set_reply(t->rcpts[i], code, reply);
}

/* lost - the connection failed mid-transaction: temporary failure for all open recipients */
static void
lost(struct downstream *ds, struct tx *t, const struct listener_cfg *lc, const char *stage,
     const char *what)
{
	char *text = xasprintf("451 4.4.2 lost connection with forward %s %s: %s", lc->forward,
			       stage, what);

	for (size_t i = 0; i < t->nrcpts; i++)
		message_set_reply(t->rcpts[i], 451, text);
	free(text);
	hang_up(ds);
}

/* reset_downstream - RSET so that nothing of this transaction is delivered */
static void
reset_downstream(struct downstream *ds)
{
	struct reply r;

	buf_init(&r.text, 0);
	io_puts(&ds->io, "RSET\r\n");
	if (read_reply(ds, &r, NULL) != 250)
		hang_up(ds);	/* closing the connection also aborts the transaction */
	buf_release(&r.text);
}

/* send_body - DATA's payload: prefix, spool bytes dot-stuffed, end line */
static int
send_body(struct downstream *ds, const struct tx *t)
{
	struct stuff st;
	struct buf out;
	char *chunk = NULL;
	off_t off = 0;
	int rc = IO_OK;

	stuff_init(&st);
	buf_init(&out, 0);
	stuff_feed(&st, t->prefix, t->prefix_len, &out);
	if (t->spool_fd >= 0) {
		chunk = xmalloc(STREAM_CHUNK);
		while (rc == IO_OK && off < t->spool_len) {
			size_t want = t->spool_len - off < STREAM_CHUNK ? (size_t)(t->spool_len - off) :
				      STREAM_CHUNK;
			ssize_t n = pread(t->spool_fd, chunk, want, t->spool_off + off);

			if (n <= 0) {
				rc = IO_ERROR;
				break;
			}
			off += n;
			stuff_feed(&st, chunk, (size_t)n, &out);
			rc = io_write(&ds->io, out.ptr, out.len);
			buf_reset(&out);
		}
	}
	if (rc == IO_OK) {
		stuff_end(&st, &out);
		rc = io_write(&ds->io, out.ptr, out.len);
	}
	free(chunk);
	buf_release(&out);
	return rc;
}

/* queued_as - the queue id in "250 2.0.0 Ok: queued as 4XyZ" */
static char *
queued_as(const char *reply)
{
	const char *p = strcasestr(reply, "queued as ");
	size_t n;

	if (p == NULL)
		return NULL;
	p += strlen("queued as ");
	n = strspn(p, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789.-_");
	return n > 0 && n < 64 ? xstrndup(p, n) : NULL;
}

/*
 * envelope_replies - read the XFORWARD, MAIL and RCPT replies
 *
 * Without PIPELINING, MAIL and each RCPT are sent here one at a time.
 * Returns the number of accepted recipients, or -1 when the connection
 * failed (*first_failed_r: at the very first reply, which on a cached
 * connection means it had died while idle).
 */
static int
envelope_replies(struct downstream *ds, struct tx *t, const struct message *m, int xforwards,
		 struct reply *r, int *first_failed_r)
{
	int accepted = 0;

	*first_failed_r = 0;
	/* an XFORWARD refusal is not fatal: the message goes on without it */
	for (int i = 0; i < xforwards; i++)
		if (read_reply(ds, r, NULL) == 0) {
			*first_failed_r = i == 0;
			return -1;
		}
	if (!ds->pipelining)
		queue_mail(ds, m, t);
	if (read_reply(ds, r, NULL) == 0) {
		*first_failed_r = xforwards == 0;
		return -1;
	}
	if (r->code / 100 != 2) {
		fail_open(t, r->code, r->text.ptr);
		t->mail_refused = true;
		return 0;
	}
	for (size_t i = 0; i < t->nrcpts; i++) {
		if (!ds->pipelining)
			queue_rcpt(ds, t->rcpts[i]);
		if (read_reply(ds, r, NULL) == 0)
			return -1;
		message_set_reply(t->rcpts[i], r->code, r->text.ptr);
		if (r->code / 100 == 2)
			accepted++;
	}
	return accepted;
}

/* read_data_reply - the pipelined DATA's reply into *r; false when the connection failed */
static bool
read_data_reply(struct downstream *ds, struct tx *t, const struct listener_cfg *lc,
		struct reply *r)
{
	if (read_reply(ds, r, NULL) != 0)
		return true;
	lost(ds, t, lc, "after DATA", r->text.ptr);
	return false;
}

/*
 * abort_tx - end a transaction that must not deliver
 *
 * data_code is the reply to a pipelined DATA (0: none was sent). After a
 * 354 the server waits for the message: the only way out that delivers
 * nothing is to close the connection before the final dot (RFC 5321
 * 4.1.1.4), so it is hung up; otherwise RSET.
 */
static void
abort_tx(struct downstream *ds, int data_code)
{
	if (data_code == 354)
		hang_up(ds);
	else
		reset_downstream(ds);
}

/* added_deferred - a copy the policy added (bcc) among t's recipients has no success */
static bool
added_deferred(const struct tx *t)
{
	for (size_t i = 0; i < t->nrcpts; i++)
		if (t->rcpts[i]->added && (t->rcpts[i]->code == 0 || t->rcpts[i]->code / 100 == 4))
			return true;
	return false;
}

/*
 * run_tx - one downstream transaction; see reinject.h for the rules
 *
 * Recipients end with code/reply set. queued_as_r gets the queue id.
 */
static enum tx_status
run_tx(struct downstream *ds, const struct config *cfg, const struct listener_cfg *lc,
       const struct client *c, const struct message *m, struct tx *t, char **queued_as_r)
{
	struct reply r;
	struct buf why;
	int xforwards, accepted, first_failed, rc;
	size_t temp = 0, perm = 0;
	enum tx_status status = TX_DONE;

	buf_init(&r.text, 0);
	buf_init(&why, 0);
	t->mail_refused = false;
	for (size_t i = 0; i < t->nrcpts; i++)
		message_set_reply(t->rcpts[i], 0, "");
	if (get_connection(ds, cfg, lc, &why) < 0) {
		char *text = xasprintf("451 4.4.1 %s", buf_cstr(&why));

		fail_open(t, 451, text);
		free(text);
		goto out;
	}
	if (m->smtputf8 && !ds->smtputf8 && t->spool_fd >= 0) {
		fail_open(t, 554, "554 5.6.7 SMTPUTF8 is required, but forward does not offer it");
		goto out;
	}
	xforwards = queue_xforward(ds, c);
	if (ds->pipelining) {
		/* DATA may end the group (RFC 2920 3.1): one round trip less per message */
		queue_mail(ds, m, t);
		for (size_t i = 0; i < t->nrcpts; i++)
			queue_rcpt(ds, t->rcpts[i]);
		io_puts(&ds->io, "DATA\r\n");
	}
	accepted = envelope_replies(ds, t, m, xforwards, &r, &first_failed);
	if (accepted < 0) {
		if (first_failed && ds->reused) {
			hang_up(ds);
			status = TX_DEAD_CACHED;
			goto out;
		}
		lost(ds, t, lc, "after MAIL/RCPT", r.text.ptr);
		goto out;
	}
	if (t->mail_refused) {
		/*
		 * Every recipient has MAIL's reply. Pipelined, the RCPT and DATA
		 * replies are still on their way and RSET's would come after
		 * them: the connection is not worth untangling.
		 */
		if (ds->pipelining)
			hang_up(ds);
		else
			reset_downstream(ds);
		goto out;
	}
	if (ds->pipelining && !read_data_reply(ds, t, lc, &r))
		goto out;	/* the connection is gone; lost() said so */
	for (size_t i = 0; i < t->nrcpts; i++) {
		temp += t->rcpts[i]->code / 100 == 4;
		perm += t->rcpts[i]->code / 100 == 5;
	}
	if (accepted == 0) {
		abort_tx(ds, ds->pipelining ? r.code : 0);
		goto out;
	}
	if (temp > 0 && (!lc->is_lmtp || added_deferred(t))) {
		/*
		 * One reply for all (SMTP), or a copy the policy added that has no
		 * reply to carry its deferral (LMTP; see defer_for_lost_copy in
		 * decide.c): nobody may get a copy now, all are retried.
		 */
		abort_tx(ds, ds->pipelining ? r.code : 0);
		for (size_t i = 0; i < t->nrcpts; i++)
			if (t->rcpts[i]->code / 100 == 2) {
				char *text = xasprintf("450 4.5.0 deferred with another recipient of "
						       "the message that forward deferred");

				message_set_reply(t->rcpts[i], 450, text);
				free(text);
			}
		goto out;
	}
	if (!lc->is_lmtp && perm > 0 && t->stop_on_mixed) {
		abort_tx(ds, ds->pipelining ? r.code : 0);
		status = TX_MIXED;
		goto out;
	}
	if (!ds->pipelining) {
		io_puts(&ds->io, "DATA\r\n");
		if (read_reply(ds, &r, NULL) == 0) {
			lost(ds, t, lc, "after DATA", r.text.ptr);
			goto out;
		}
	}
	if (r.code != 354) {
		fail_open(t, r.code, r.text.ptr);
		reset_downstream(ds);
		goto out;
	}
	if ((rc = send_body(ds, t)) != IO_OK || read_reply(ds, &r, NULL) == 0) {
		lost(ds, t, lc, "while sending the message",
		     rc != IO_OK ? io_strerror(rc) : r.text.ptr);
		goto out;
	}
	fail_open(t, r.code, r.text.ptr);
	if (r.code / 100 == 2 && queued_as_r != NULL) {
		free(*queued_as_r);
		*queued_as_r = queued_as(r.text.ptr);
	}
out:
	if (ds->fd >= 0)
		clock_gettime(CLOCK_MONOTONIC, &ds->last_used);
	buf_release(&r.text);
	buf_release(&why);
	return status;
}

/* run_tx_retrying - run_tx, once more on a fresh connection if the cached one was dead */
static enum tx_status
run_tx_retrying(struct downstream *ds, const struct config *cfg, const struct listener_cfg *lc,
		const struct client *c, const struct message *m, struct tx *t, char **queued_as_r)
{
	enum tx_status st = run_tx(ds, cfg, lc, c, m, t, queued_as_r);

	if (st == TX_DEAD_CACHED) {
		log_debug("%s: cached connection to forward %s had closed; reconnecting", m->id,
			  lc->forward);
		st = run_tx(ds, cfg, lc, c, m, t, queued_as_r);
		if (st == TX_DEAD_CACHED) {	/* cannot happen on a fresh connection */
			fail_open(t, 451, "451 4.4.2 forward closed the connection");
			st = TX_DONE;
		}
	}
	return st;
}

/*
 * send_notification - a delivery status notification to the sender for failed[]
 *
 * Returns 0 when it was sent or none is due (null sender, NOTIFY without
 * FAILURE), -1 when forward did not take it (*why_r: its reply, caller frees).
 */
static int
send_notification(struct downstream *ds, const struct config *cfg, const struct listener_cfg *lc,
		  const struct client *c, const struct message *m, struct recipient *const *failed,
		  size_t nfailed, char **why_r)
{
	struct recipient bounce_to = { 0 };
	struct recipient *bounce_list[1] = { &bounce_to };
	struct tx nt = { .sender = "", .rcpts = bounce_list, .nrcpts = 1, .spool_fd = -1 };
	size_t nnotify = 0;
	char *e_to, *e_reply;
	struct buf dsn;
	int rc = 0;

	*why_r = NULL;
	for (size_t i = 0; i < nfailed; i++)
		nnotify += dsn_wanted(m, failed[i]);
	if (nnotify == 0) {
		for (size_t i = 0; i < nfailed; i++)
			failed[i]->notified = true;	/* none is due: the sender asked for none */
		return 0;
	}
	buf_init(&dsn, 0);
	dsn_build(m, failed, nfailed, cfg->hostname, lc->forward, &dsn);
	nt.prefix = dsn.ptr;
	nt.prefix_len = dsn.len;
	bounce_to.addr = m->sender;
	run_tx_retrying(ds, cfg, lc, c, m, &nt, NULL);
	e_to = esc_logs(m->sender);
	e_reply = esc_logs(bounce_to.reply);
	if (bounce_to.code / 100 != 2) {
		log_warnx("%s: delivery status notification to <%s> failed: %s", m->id, e_to, e_reply);
		*why_r = xstrdup(bounce_to.reply ? bounce_to.reply : "no reply");
		rc = -1;
	} else {
		log_info("%s: delivery status notification for %zu refused recipient(s) sent to <%s>: %s",
			 m->id, nfailed, e_to, e_reply);
		for (size_t i = 0; i < nfailed; i++)
			failed[i]->notified = true;
	}
	free(e_to);
	free(e_reply);
	free(bounce_to.reply);
	buf_release(&dsn);
	return rc;
}

/*
 * notify_then_deliver - SMTP mode, some recipients refused for good
 *
 * The notification goes first: if it cannot be sent, nothing has been
 * delivered yet and the whole message can still be deferred.
 */
static void
notify_then_deliver(struct downstream *ds, const struct config *cfg, const struct listener_cfg *lc,
		    const struct client *c, struct message *m, struct tx *t)
{
	struct recipient **failed = xreallocarray(NULL, t->nrcpts, sizeof(*failed));
	struct recipient **ok = xreallocarray(NULL, t->nrcpts, sizeof(*ok));
	size_t nfailed = 0, nok = 0;
	char *why;

	for (size_t i = 0; i < t->nrcpts; i++) {
		if (t->rcpts[i]->code / 100 == 5)
			failed[nfailed++] = t->rcpts[i];
		else
			ok[nok++] = t->rcpts[i];
	}
	if (send_notification(ds, cfg, lc, c, m, failed, nfailed, &why) < 0) {
		char *text = xasprintf("451 4.3.0 some recipients were refused by forward and "
				       "the notification to the sender failed: %s", why);

		for (size_t i = 0; i < t->nrcpts; i++)
			message_set_reply(t->rcpts[i], 451, text);
		free(text);
		free(why);
		goto out;
	}
	{
		struct tx again = *t;

		again.rcpts = ok;
		again.nrcpts = nok;
		again.stop_on_mixed = false;
		run_tx_retrying(ds, cfg, lc, c, m, &again, &m->queued_as);
		/* a refusal now, after the notification went out, is retried whole */
		for (size_t i = 0; i < nok; i++)
			if (ok[i]->code / 100 == 5) {
				char *text = xasprintf("451 4.3.0 forward changed its mind: %s", ok[i]->reply);

				for (size_t j = 0; j < nok; j++)
					if (ok[j]->code / 100 != 4)
						message_set_reply(ok[j], 451, text);
				free(text);
				break;
			}
	}
out:
	free(failed);
	free(ok);
}

/*
 * reinject_notify - SMTP mode: tell the sender about recipients the policy refused
 *
 * Used when others of the same message are accepted, so our client cannot
 * hear a 5xx for them (amavisd-new does the same). Returns 0 when sent or
 * not due, -1 when it failed (the caller defers the whole message).
 */
int
reinject_notify(struct downstream *ds, const struct config *cfg, const struct listener_cfg *lc,
		const struct client *c, const struct message *m, struct recipient *const *refused,
		size_t nrefused)
{
	char *why;
	int rc = send_notification(ds, cfg, lc, c, m, refused, nrefused, &why);

	free(why);
	return rc;
}

/* same_copy - do recipients a and b get the same bytes */
static bool
same_copy(const struct message *m, const struct recipient *a, const struct recipient *b,
	  struct buf *ka, struct buf *kb)
{
	message_copy_key(m, a, ka);
	message_copy_key(m, b, kb);
	return ka->len == kb->len && memcmp(buf_cstr(ka), buf_cstr(kb), ka->len) == 0;
}

/*
 * deliver_copy - one downstream transaction for the recipients of one copy
 *
 * Returns false when, in SMTP mode, a recipient was deferred, or in LMTP mode
 * a copy the policy added was: the caller defers the copies not sent yet
 * too, since the whole message will come again.
 */
static bool
deliver_copy(struct downstream *ds, const struct config *cfg, const struct listener_cfg *lc,
	     const struct client *c, struct message *m, struct recipient **rcpts, size_t n)
{
	struct buf prefix;
	struct tx t = { 0 };
	off_t off;
	bool deferred = false;

	buf_init(&prefix, 0);
	message_received_header(m, c, cfg->hostname, net_port(&lc->listen_ep.ss), lc->is_lmtp,
				&prefix);
	message_render_copy(m, rcpts[0], m->hdr, &prefix, &off);
	t.sender = m->sender;
	t.rcpts = rcpts;
	t.nrcpts = n;
	t.prefix = prefix.ptr;
	t.prefix_len = prefix.len;
	t.spool_fd = spool_fd(m->spool);
	t.spool_off = off;
	t.spool_len = spool_size(m->spool) - off;
	t.stop_on_mixed = true;
	if (run_tx_retrying(ds, cfg, lc, c, m, &t, &m->queued_as) == TX_MIXED)
		notify_then_deliver(ds, cfg, lc, c, m, &t);
	for (size_t i = 0; i < n; i++)
		deferred |= rcpts[i]->code == 0 || rcpts[i]->code / 100 == 4;
	buf_release(&prefix);
	return lc->is_lmtp ? !added_deferred(&t) : !deferred;
}

/*
 * reinject_message - deliver the passed recipients of m, one transaction per copy
 *
 * Recipients whose header edits differ get copies of their own. In SMTP
 * mode a deferred copy defers the copies after it as well (our client hears
 * one reply and will send the whole message again).
 * XXX copies delivered before a deferred one are delivered again on the
 * retry: a duplicate beats a loss, and it needs a per-recipient policy that
 * edits differently and a forward that defers in the same second.
 */
void
reinject_message(struct downstream *ds, const struct config *cfg, const struct listener_cfg *lc,
		 const struct client *c, struct message *m)
{
	struct recipient **copy = xreallocarray(NULL, m->nrcpts ? m->nrcpts : 1, sizeof(*copy));
	bool *sent = xcalloc(m->nrcpts ? m->nrcpts : 1, sizeof(*sent));
	struct buf ka, kb;
	bool go_on = true;

	buf_init(&ka, 0);
	buf_init(&kb, 0);
	for (size_t i = 0; i < m->nrcpts; i++) {
		size_t n = 0;

		if (sent[i] || m->rcpts[i].verdict != VERDICT_PASS)
			continue;
		for (size_t j = i; j < m->nrcpts; j++)
			if (!sent[j] && m->rcpts[j].verdict == VERDICT_PASS &&
			    (j == i || same_copy(m, &m->rcpts[i], &m->rcpts[j], &ka, &kb))) {
				copy[n++] = &m->rcpts[j];
				sent[j] = true;
			}
		if (!go_on) {
			for (size_t k = 0; k < n; k++)
				message_set_reply(copy[k], 450, "450 4.5.0 deferred with another copy "
						  "of the message that forward deferred");
			continue;
		}
		go_on = deliver_copy(ds, cfg, lc, c, m, copy, n);
	}
	buf_release(&ka);
	buf_release(&kb);
	free(sent);
	free(copy);
}
