/*
 * control - the control socket: the postern command talks to the master here
 *
 * A unix stream socket at control_socket, mode 0660, owned by the user and
 * group posternd runs as, so root and that group may use it and nobody
 * else. One request per connection: one line of words separated by TABs
 * (so an address with a space stays one word), then the answer and a close.
 *
 * "status", "reload" and "ping" are answered by the master itself, with
 * text, from its poll loop: the master polls each client's connection with
 * its other descriptors (control_server_*), so a client that is slow to send
 * its line, or never does, costs a slot for CONTROL_REQUEST_MS, never a
 * stall of the master's loop, nor a worker anything.
 *
 * "release ..." and "quarantine list|show|delete ..." take longer (a
 * release talks to forward, a show streams a whole message), so the master
 * hands the connection to a child it forks (control_admin_child), which
 * runs quarantine_admin.c as the daemon's user with the daemon's
 * configuration. Its answer is framed, because the client must tell the
 * command's output from its error messages and learn its exit status:
 *
 *	"1 LEN\n" then LEN bytes for standard output,
 *	"2 LEN\n" then LEN bytes for standard error,
 *	"x STATUS\n" last: the exit status (0 done, 1 failed, 2 usage).
 *
 * A framed answer without its "x" line was cut short, and the client says so.
 *
 * control_request() and control_request_framed() are the client side, for
 * the postern command.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "control.h"
#include "log.h"
#include "quarantine_admin.h"
#include "util/io.h"
#include "verdict.h"
#include "util/xalloc.h"

#define CONTROL_IO_MS		500	/* per answer write, without progress */
/*
 * How long a client has to send its request line. The master never waits on
 * it (control_server_work looks at each poll), so this can be long: it only
 * frees the slot of a client that connected and never wrote.
 */
#define CONTROL_REQUEST_MS	10000
#define CONTROL_ANSWER_MAX	(1024 * 1024)
#define CONTROL_WORDS_MAX	512	/* words in it */
#define ADMIN_SEND_MS		30000	/* a child's write to a client that stopped reading */
/*
 * A child's whole life, then SIGALRM ends it: a backstop only, since every
 * step of a release already has its forward_timeout. An hour is longer than
 * any release the defaults allow in practice, and the client waits as long.
 */
#define ADMIN_MAX_S		3600
#define FRAME_MAX		(16 * 1024 * 1024) /* the client's bound on one record */

/* fill_sun - a unix address for path; -1 with errno when too long */
static int
fill_sun(struct sockaddr_un *sun, const char *path)
{
	memset(sun, 0, sizeof(*sun));
	sun->sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sun->sun_path)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	strcpy(sun->sun_path, path);
	return 0;
}

/*
 * control_listen - bind the control socket at path, for uid/gid (when root)
 *
 * A socket file left by an earlier posternd is replaced; anything else at
 * that path is an error. Returns the listening socket, or -1 with *error_r.
 */
int
control_listen(const char *path, bool as_root, uid_t uid, gid_t gid, char **error_r)
{
	struct sockaddr_un sun;
	struct stat st;
	int fd;

	if (fill_sun(&sun, path) < 0) {
		*error_r = xasprintf("control_socket %s: path too long", path);
		return -1;
	}
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			*error_r = xasprintf("control_socket %s: exists and is not a socket", path);
			return -1;
		}
		unlink(path);
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0 || listen(fd, 16) < 0 ||
	    chmod(path, 0660) < 0 || (as_root && chown(path, uid, gid) < 0)) {
		*error_r = xasprintf("control_socket %s: %s", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	return fd;
}

/* duration - "3d4h", "2h5m", "7m12s", "40s" */
static void
duration(struct buf *out, long long s)
{
	if (s < 0)
		s = 0;
	if (s >= 86400)
		buf_appendf(out, "%lldd%lldh", s / 86400, s % 86400 / 3600);
	else if (s >= 3600)
		buf_appendf(out, "%lldh%lldm", s / 3600, s % 3600 / 60);
	else if (s >= 60)
		buf_appendf(out, "%lldm%llds", s / 60, s % 60);
	else
		buf_appendf(out, "%llds", s);
}

/* control_render_status - the text of `postern status` */
void
control_render_status(const struct stats *st, struct buf *out)
{
	time_t now = time(NULL);

	buf_appendf(out, "posternd %s, up ", PACKAGE_VERSION);
	duration(out, now - st->started);
	buf_appendf(out, "\nreloads: %llu done, %llu refused; last: %s", (unsigned long long)st->reloads,
		    (unsigned long long)st->reload_failures,
		    st->last_reload_ok < 0 ? "none" : st->last_reload_ok ? "ok" : "FAILED (see the log)");
	if (st->last_reload_ok >= 0) {
		buf_appends(out, ", ");
		duration(out, now - st->last_reload);
		buf_appends(out, " ago");
	}
	if (st->signatures_loaded) {
		buf_appendf(out, "\nclamav: %u signatures, loaded ", st->signatures);
		duration(out, now - st->signatures_loaded);
		buf_appends(out, " ago");
	} else
		buf_appends(out, "\nclamav: not configured");
	buf_appendf(out, "\n\n%-16s %5s %5s %9s %8s %8s %8s %8s %8s %8s %8s\n", "listener", "busy",
		    "idle", "messages", "pass", "discard", "quarant", "reject", "tempfail", "deferred",
		    "errors");
	for (int i = 0; i < STATS_LISTENERS_MAX; i++) {
		const struct stats_listener *l = &st->listeners[i];
		unsigned busy = 0, idle = 0;

		if (!l->name[0])
			continue;
		for (int w = 0; w < STATS_WORKERS_MAX; w++)
			if (st->workers[w].pid != 0 && st->workers[w].listener == i) {
				busy += st->workers[w].busy != 0;
				idle += st->workers[w].busy == 0;
			}
		if (busy + idle == 0 && l->messages == 0)
			continue;	/* a listener a reload removed, never used */
		buf_appendf(out, "%-16s %5u %5u %9llu %8llu %8llu %8llu %8llu %8llu %8llu %8llu\n",
			    l->name, busy, idle, (unsigned long long)l->messages,
			    (unsigned long long)l->verdicts[VERDICT_PASS],
			    (unsigned long long)l->verdicts[VERDICT_DISCARD],
			    (unsigned long long)l->verdicts[VERDICT_QUARANTINE],
			    (unsigned long long)l->verdicts[VERDICT_REJECT],
			    (unsigned long long)l->verdicts[VERDICT_TEMPFAIL],
			    (unsigned long long)l->results[RESULT_DEFERRED],
			    (unsigned long long)(l->errors[ERR_POLICY] + l->errors[ERR_CLAMAV] +
						 l->errors[ERR_SPAMD]));
	}
	buf_appends(out, "(verdicts count recipients; deferred counts messages answered 4xx)\n");
}

/*
 * send_bounded - write it all, or give up CONTROL_IO_MS after the start: a
 * bound on the whole answer, not on each write, so that a client reading a
 * byte at a time cannot hold the master's loop
 */
static void
send_bounded(int fd, const char *p, size_t len)
{
	long long deadline = io_now_ms() + CONTROL_IO_MS;

	while (len > 0) {
		struct pollfd pfd = { .fd = fd, .events = POLLOUT };
		long long left = deadline - io_now_ms();
		ssize_t n;

		if (left <= 0 || poll(&pfd, 1, (int)left) != 1)
			return;
		n = send(fd, p, len, MSG_NOSIGNAL);
		if (n <= 0 && errno != EAGAIN && errno != EINTR)
			return;
		if (n > 0) {
			p += n;
			len -= (size_t)n;
		}
	}
}

/* peer_uid - the client's user id, or -1 */
static long
peer_uid(int fd)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
		return -1;
	return (long)cred.uid;
}

/* is_admin_word - are the first len bytes of line a quarantine command's name */
static bool
is_admin_word(const char *line, size_t len)
{
	char word[16];

	if (len >= sizeof(word))
		return false;
	memcpy(word, line, len);
	word[len] = '\0';
	return qadmin_is_command(word);
}

/*
 * answer_line - act on a client's request line; the connection is answered and
 * closed here, except for a quarantine command, whose connection and line move to
 * *req (the master forks a child for it); so *line is either freed or moved
 */
static enum control_action
answer_line(int fd, char **line, const struct stats *st, struct control_request *req)
{
	enum control_action action = CONTROL_NONE;
	size_t first = strcspn(*line, "\t");
	struct buf out;

	buf_init(&out, 0);
	if (strcmp(*line, "status") == 0)
		control_render_status(st, &out);
	else if (strcmp(*line, "reload") == 0) {
		buf_appends(&out, "ok: reloading (the log says how it went; postern status shows it)\n");
		action = CONTROL_RELOAD;
	} else if (strcmp(*line, "ping") == 0)
		buf_appends(&out, "pong\n");
	else if ((*line)[first] == '\t' && is_admin_word(*line, first)) {
		req->fd = fd;
		req->line = *line;
		req->uid = peer_uid(fd);
		*line = NULL;
		buf_release(&out);
		return CONTROL_ADMIN;
	} else
		buf_appends(&out, "error: unknown command (status, reload, ping, release, quarantine)\n");
	send_bounded(fd, out.ptr, out.len);
	buf_release(&out);
	close(fd);
	free(*line);
	*line = NULL;
	return action;
}

/* refuse_incomplete - answer a client whose request line never came whole, and close */
static void
refuse_incomplete(struct control_client *c)
{
	static const char msg[] =
		"error: no complete request line (one line, at most 8191 bytes)\n";

	send_bounded(c->fd, msg, sizeof(msg) - 1);
	close(c->fd);
	free(c->line);
	c->fd = -1;
	c->line = NULL;
}

/*
 * read_some - what client c has sent so far, without waiting: true when its
 * request is complete (a whole line, its end cut off) or can never be (the
 * client closed, or sent CONTROL_LINE_MAX bytes without a newline: then
 * c->have is 0 and the caller refuses it)
 */
static bool
read_some(struct control_client *c)
{
	while (c->have < CONTROL_LINE_MAX - 1) {
		ssize_t n = recv(c->fd, c->line + c->have, CONTROL_LINE_MAX - 1 - c->have,
				 MSG_DONTWAIT);
		char *nl;

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return false;
		if (n <= 0)
			break;
		nl = memchr(c->line + c->have, '\n', (size_t)n);
		c->have += (size_t)n;
		if (nl != NULL) {
			*nl = '\0';
			c->line[strcspn(c->line, "\r")] = '\0';
			return true;
		}
	}
	c->have = 0;	/* closed, failed or too long: no line */
	return true;
}

/* finish - act on client c, whose request is complete; its slot is free again after */
static enum control_action
finish(struct control_client *c, const struct stats *st, struct control_request *req)
{
	enum control_action action;

	if (c->have == 0) {
		refuse_incomplete(c);
		return CONTROL_NONE;
	}
	action = answer_line(c->fd, &c->line, st, req);
	c->fd = -1;
	return action;
}

/* control_server_init - a server for listening socket lfd (-1: no control socket) */
void
control_server_init(struct control_server *cs, int lfd)
{
	cs->lfd = lfd;
	memset(&cs->backoff, 0, sizeof(cs->backoff));
	for (size_t i = 0; i < CONTROL_CLIENTS_MAX; i++) {
		cs->clients[i].fd = -1;
		cs->clients[i].line = NULL;
	}
}

/* free_slot - an unused client slot, or NULL when all are taken */
static struct control_client *
free_slot(struct control_server *cs)
{
	for (size_t i = 0; i < CONTROL_CLIENTS_MAX; i++)
		if (cs->clients[i].fd < 0)
			return &cs->clients[i];
	return NULL;
}

/*
 * control_server_pollfds - the descriptors the master's poll() watches for cs:
 * each client that has not sent its whole line, and the listening socket while
 * a slot is free (with none free, new clients wait in its backlog). Fills at
 * most room entries of pfd; returns how many.
 */
size_t
control_server_pollfds(const struct control_server *cs, struct pollfd *pfd, size_t room)
{
	size_t n = 0;
	bool slot = false;

	if (cs->lfd < 0)
		return 0;
	for (size_t i = 0; i < CONTROL_CLIENTS_MAX && n < room; i++) {
		if (cs->clients[i].fd < 0) {
			slot = true;
			continue;
		}
		pfd[n].fd = cs->clients[i].fd;
		pfd[n].events = POLLIN;
		pfd[n++].revents = 0;
	}
	if (slot && n < room && !accept_backoff_paused(&cs->backoff, io_now_ms())) {
		pfd[n].fd = cs->lfd;
		pfd[n].events = POLLIN;
		pfd[n++].revents = 0;
	}
	return n;
}

/* control_server_timeout - wait_ms, or less when a client's time is up sooner */
int
control_server_timeout(const struct control_server *cs, int wait_ms)
{
	long long now = io_now_ms();

	for (size_t i = 0; i < CONTROL_CLIENTS_MAX; i++) {
		long long left;

		if (cs->clients[i].fd < 0)
			continue;
		left = cs->clients[i].deadline_ms - now;
		if (left < 0)
			left = 0;
		if (wait_ms < 0 || left < wait_ms)
			wait_ms = (int)left;
	}
	return accept_backoff_timeout(&cs->backoff, now, wait_ms);
}

/* accept_clients - take new connections while there is a slot */
static void
accept_clients(struct control_server *cs)
{
	struct control_client *c;

	while ((c = free_slot(cs)) != NULL) {
		int fd = accept_backoff_accept(cs->lfd, &cs->backoff, "control socket", io_now_ms());

		if (fd < 0)
			return;
		c->fd = fd;
		c->line = xmalloc(CONTROL_LINE_MAX);
		c->have = 0;
		c->deadline_ms = io_now_ms() + CONTROL_REQUEST_MS;
	}
}

/*
 * control_server_work - after the master's poll(): take new clients, read what
 * the others sent, answer every whole request line, refuse those whose time is
 * up. A client's request line may come slowly (the postern command on a busy
 * machine): the master never waits for it, it only looks again at the next poll,
 * for up to CONTROL_REQUEST_MS.
 *
 * Returns at the first request that asks the master for more than an answer:
 * CONTROL_RELOAD (the client has heard "ok"), or CONTROL_ADMIN with the
 * connection and its line in *req. The master calls it again until it returns
 * CONTROL_NONE, so that several clients in one poll are all served.
 */
enum control_action
control_server_work(struct control_server *cs, const struct stats *st,
		    struct control_request *req)
{
	long long now;

	if (cs->lfd < 0)
		return CONTROL_NONE;
	accept_clients(cs);
	now = io_now_ms();
	for (size_t i = 0; i < CONTROL_CLIENTS_MAX; i++) {
		struct control_client *c = &cs->clients[i];
		enum control_action action;

		if (c->fd < 0)
			continue;
		if (read_some(c)) {
			if ((action = finish(c, st, req)) != CONTROL_NONE)
				return action;
		} else if (now >= c->deadline_ms)
			refuse_incomplete(c);
	}
	return CONTROL_NONE;
}

/* control_server_close - in a child of the master, or at the end: drop every client */
void
control_server_close(struct control_server *cs, bool and_listener)
{
	for (size_t i = 0; i < CONTROL_CLIENTS_MAX; i++) {
		if (cs->clients[i].fd >= 0)
			close(cs->clients[i].fd);
		free(cs->clients[i].line);
		cs->clients[i].fd = -1;
		cs->clients[i].line = NULL;
	}
	if (and_listener && cs->lfd >= 0) {
		close(cs->lfd);
		cs->lfd = -1;
	}
}

/* write_all - all of p to blocking fd; -1 with errno (the send timeout included) */
static int
write_all(int fd, const char *p, size_t len)
{
	while (len > 0) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* a framed stream: which record type its bytes go out as, on which socket */
struct frame_stream {
	int	fd;
	int	channel;		/* 1 standard output, 2 standard error */
};

/* frame_write - fopencookie's write: one record per buffer the stream flushes */
static ssize_t
frame_write(void *cookie, const char *p, size_t len)
{
	struct frame_stream *f = cookie;
	char head[32];
	int n = snprintf(head, sizeof(head), "%d %zu\n", f->channel, len);

	if (len == 0)
		return 0;
	if (write_all(f->fd, head, (size_t)n) < 0 || write_all(f->fd, p, len) < 0)
		return -1;
	return (ssize_t)len;
}

/* frame_close - fopencookie's close */
static int
frame_close(void *cookie)
{
	free(cookie);
	return 0;
}

/* frame_open - a stdio stream whose bytes go to fd as records of channel */
static FILE *
frame_open(int fd, int channel)
{
	cookie_io_functions_t io = { .write = frame_write, .close = frame_close };
	struct frame_stream *f = xmalloc(sizeof(*f));
	FILE *stream;

	f->fd = fd;
	f->channel = channel;
	if ((stream = fopencookie(f, "w", io)) == NULL) {
		free(f);
		return NULL;
	}
	setvbuf(stream, NULL, _IOFBF, 64 * 1024);
	return stream;
}

/* send_status - the "x STATUS" line that ends a framed answer */
static void
send_status(int fd, int status)
{
	char line[32];
	int n = snprintf(line, sizeof(line), "x %d\n", status);

	(void)write_all(fd, line, (size_t)n);
}

/* make_blocking - the accepted socket was non-blocking; the child waits on it, bounded */
static void
make_blocking(int fd)
{
	struct timeval tv = { ADMIN_SEND_MS / 1000, 0 };
	int flags = fcntl(fd, F_GETFL);

	if (flags >= 0)
		fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

/* control_admin_refuse - a framed "cannot" for a request the master will not run */
void
control_admin_refuse(struct control_request *req, const char *why)
{
	char head[32];
	size_t len = strlen(why);
	int n = snprintf(head, sizeof(head), "2 %zu\n", len + 10);

	make_blocking(req->fd);
	if (write_all(req->fd, head, (size_t)n) == 0 && write_all(req->fd, "postern: ", 9) == 0 &&
	    write_all(req->fd, why, len) == 0 && write_all(req->fd, "\n", 1) == 0)
		send_status(req->fd, 1);
	control_request_release(req);
}

/* control_request_release - close the connection and free the line */
void
control_request_release(struct control_request *req)
{
	if (req->fd >= 0)
		close(req->fd);
	req->fd = -1;
	free(req->line);
	req->line = NULL;
}

/* split_words - the TAB-separated words of line, in place; returns their count */
static int
split_words(char *line, char **words, int max)
{
	int n = 0;

	for (char *p = line; n < max;) {
		words[n++] = p;
		if ((p = strchr(p, '\t')) == NULL)
			break;
		*p++ = '\0';
	}
	return n;
}

/*
 * control_admin_child - in the child the master forked: run the request, answer, _exit
 *
 * The master has closed its own descriptors in this process already; what
 * is left is the client's connection and the log. Signals are the
 * defaults again (the master's handlers write to its self-pipe), and
 * SIGALRM bounds the whole request.
 */
void
control_admin_child(const struct config *cfg, struct control_request *req)
{
	char **words = xreallocarray(NULL, CONTROL_WORDS_MAX, sizeof(*words));
	struct qadmin_req r;
	struct qadmin_io io;
	char who[32];
	int nwords, status;

	signal(SIGHUP, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	signal(SIGINT, SIG_DFL);
	signal(SIGCHLD, SIG_DFL);
	signal(SIGALRM, SIG_DFL);
	alarm(ADMIN_MAX_S);
	make_blocking(req->fd);
	nwords = split_words(req->line, words, CONTROL_WORDS_MAX);
	snprintf(who, sizeof(who), req->uid >= 0 ? "uid %ld" : "an unknown user", req->uid);
	io.out = frame_open(req->fd, 1);
	io.err = frame_open(req->fd, 2);
	io.who = who;
	if (io.out == NULL || io.err == NULL) {
		log_warn("control: cannot set up the answer to a quarantine command");
		_exit(1);	/* the client says the answer ended early */
	}
	status = qadmin_parse(nwords, words, &r, io.err);
	if (status == 0)
		status = qadmin_run(cfg, &r, &io);
	fflush(io.out);
	fflush(io.err);
	send_status(req->fd, status);
	_exit(0);
}

/*
 * connect_to - a connected socket to the daemon at path with timeout_ms on each read
 *
 * Returns the socket, or -1 with *error_r and errno kept from connect(2):
 * ENOENT or ECONNREFUSED mean no daemon is there.
 */
static int
connect_to(const char *path, int timeout_ms, char **error_r)
{
	struct sockaddr_un sun;
	struct timeval tv = { timeout_ms / 1000, (timeout_ms % 1000) * 1000 };
	int fd, saved;

	if (fill_sun(&sun, path) < 0 ||
	    (fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0) {
		saved = errno;
		*error_r = xasprintf("control socket %s: %s", path, strerror(errno));
		errno = saved;
		return -1;
	}
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		saved = errno;
		*error_r = xasprintf("cannot reach posternd at %s: %s (is it running, with this "
				     "control_socket?)", path, strerror(errno));
		close(fd);
		errno = saved;
		return -1;
	}
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	return fd;
}

/*
 * control_request - the client side of status/reload/ping: send cmd to the socket at path
 *
 * Appends the answer to out. Returns 0, or -1 with *error_r.
 */
int
control_request(const char *path, const char *cmd, int timeout_ms, struct buf *out, char **error_r)
{
	char chunk[4096];
	int fd, rc = 0;

	if ((fd = connect_to(path, timeout_ms, error_r)) < 0)
		return -1;
	if (send(fd, cmd, strlen(cmd), MSG_NOSIGNAL) < 0 || send(fd, "\n", 1, MSG_NOSIGNAL) < 0) {
		*error_r = xasprintf("control socket %s: %s", path, strerror(errno));
		close(fd);
		return -1;
	}
	for (;;) {
		ssize_t n = recv(fd, chunk, sizeof(chunk), 0);

		if (n == 0)
			break;
		if (n < 0) {
			*error_r = xasprintf("control socket %s: %s", path,
					     errno == EAGAIN ? "no answer in time" : strerror(errno));
			rc = -1;
			break;
		}
		if (out->len + (size_t)n > CONTROL_ANSWER_MAX)
			break;
		buf_append(out, chunk, (size_t)n);
	}
	close(fd);
	return rc;
}

/* a buffered reader of a framed answer */
struct reader {
	int	fd;
	char	buf[64 * 1024];
	size_t	start, end;		/* unread bytes are buf[start..end) */
};

/* reader_fill - more bytes; 1, 0 at the end, -1 with errno */
static int
reader_fill(struct reader *r)
{
	ssize_t n;

	if (r->start == r->end)
		r->start = r->end = 0;
	do
		n = recv(r->fd, r->buf + r->end, sizeof(r->buf) - r->end, 0);
	while (n < 0 && errno == EINTR);
	if (n <= 0)
		return n == 0 ? 0 : -1;
	r->end += (size_t)n;
	return 1;
}

/* reader_line - the next line (at most size - 1 bytes) without its LF; 1, 0 at the end, -1 */
static int
reader_line(struct reader *r, char *line, size_t size)
{
	size_t have = 0;

	for (;;) {
		int rc;

		while (r->start < r->end) {
			char c = r->buf[r->start++];

			if (c == '\n') {
				line[have] = '\0';
				return 1;
			}
			if (have == size - 1) {
				errno = EPROTO;
				return -1;
			}
			line[have++] = c;
		}
		if ((rc = reader_fill(r)) <= 0)
			return rc;
	}
}

/* reader_copy - len bytes onto to; 0, or -1 (errno EPROTO when the answer ended early) */
static int
reader_copy(struct reader *r, size_t len, FILE *to)
{
	while (len > 0) {
		size_t n = r->end - r->start;
		int rc;

		if (n == 0) {
			if ((rc = reader_fill(r)) <= 0) {
				if (rc == 0)
					errno = EPROTO;
				return -1;
			}
			continue;
		}
		if (n > len)
			n = len;
		fwrite(r->buf + r->start, 1, n, to);	/* a full disk is the caller's fflush */
		r->start += n;
		len -= n;
	}
	return 0;
}

/* read_framed - copy a framed answer's records to out and err; its status, or -1 with errno */
static int
read_framed(int fd, FILE *out, FILE *err)
{
	struct reader *r = xmalloc(sizeof(*r));
	char line[64];
	int status = -1;

	r->fd = fd;
	r->start = r->end = 0;
	for (;;) {
		unsigned long long len;
		char *end;
		int rc = reader_line(r, line, sizeof(line));

		if (rc <= 0) {
			if (rc == 0)
				errno = EPROTO;	/* no "x" line: the child ended early */
			break;
		}
		if (line[0] == 'x' && line[1] == ' ') {
			status = atoi(line + 2);
			break;
		}
		errno = EPROTO;
		if ((line[0] != '1' && line[0] != '2') || line[1] != ' ')
			break;
		len = strtoull(line + 2, &end, 10);
		if (*end != '\0' || end == line + 2 || len > FRAME_MAX)
			break;
		if (reader_copy(r, (size_t)len, line[0] == '1' ? out : err) < 0)
			break;
	}
	free(r);
	return status;
}

/*
 * control_request_framed - the client side of a quarantine command
 *
 * Sends words as one TAB-separated line (none may hold a TAB, CR or LF),
 * copies the answer's output records to out and its error records to err,
 * and stores the command's exit status in *status_r. Returns 0; or -1 with
 * *error_r, and errno ENOENT or ECONNREFUSED when no daemon listens at path.
 */
int
control_request_framed(const char *path, char *const *words, int nwords, FILE *out, FILE *err,
		       int *status_r, char **error_r)
{
	struct buf line;
	int fd, rc = 0;

	for (int i = 0; i < nwords; i++)
		if (strpbrk(words[i], "\t\r\n") != NULL) {
			*error_r = xasprintf("a TAB, CR or LF cannot travel in a control request");
			errno = EINVAL;
			return -1;
		}
	if ((fd = connect_to(path, (ADMIN_MAX_S + 60) * 1000, error_r)) < 0)
		return -1;
	buf_init(&line, 0);
	for (int i = 0; i < nwords; i++) {
		if (i > 0)
			buf_appends(&line, "\t");
		buf_appends(&line, words[i]);
	}
	buf_appends(&line, "\n");
	if (line.len > CONTROL_LINE_MAX - 1) {
		*error_r = xasprintf("request too long for the control socket (%zu bytes, at most %d)",
				     line.len, CONTROL_LINE_MAX - 1);
		rc = -1;
	} else if (write_all(fd, line.ptr, line.len) < 0) {
		*error_r = xasprintf("control socket %s: %s", path, strerror(errno));
		rc = -1;
	} else if ((*status_r = read_framed(fd, out, err)) < 0) {
		*error_r = xasprintf("control socket %s: %s", path,
				     errno == EAGAIN ? "no answer in time" :
				     errno == EPROTO ? "the answer ended early or is garbled (see "
				     "posternd's log)" : strerror(errno));
		errno = EPROTO;	/* not "no daemon": the request may have been carried out */
		rc = -1;
	}
	buf_release(&line);
	close(fd);
	return rc;
}
