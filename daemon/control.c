/*
 * control - the control socket: `postern status` and `postern reload` talk to the master here
 *
 * A unix stream socket at control_socket, mode 0660, owned by the user and
 * group posternd runs as, so root and that group may use it and nobody
 * else. One command per connection, one line ("status", "reload", "ping"),
 * answered with text and a close. The master serves it from its poll loop
 * with short bounds, like metrics.c: a client that never writes costs the
 * master CONTROL_IO_MS, never a worker anything.
 *
 * control_request() is the client side, for the postern command.
 */
#include <errno.h>
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
#include "verdict.h"
#include "util/xalloc.h"

#define CONTROL_IO_MS		500	/* per command read and per answer write */
#define CONTROL_ANSWER_MAX	(1024 * 1024)

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

/* send_bounded - write it all, or give up after CONTROL_IO_MS without progress */
static void
send_bounded(int fd, const char *p, size_t len)
{
	while (len > 0) {
		struct pollfd pfd = { .fd = fd, .events = POLLOUT };
		ssize_t n;

		if (poll(&pfd, 1, CONTROL_IO_MS) != 1)
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

/*
 * control_serve - answer one client of listening socket lfd
 *
 * Returns CONTROL_RELOAD when the client asked for a reload (the master
 * does it and the client has heard "ok"), else CONTROL_NONE.
 */
enum control_action
control_serve(int lfd, const struct stats *st)
{
	enum control_action action = CONTROL_NONE;
	char cmd[128];
	size_t have = 0;
	struct buf out;
	int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

	if (fd < 0)
		return CONTROL_NONE;
	while (have < sizeof(cmd) - 1) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		ssize_t n;

		if (poll(&pfd, 1, CONTROL_IO_MS) != 1 ||
		    (n = recv(fd, cmd + have, sizeof(cmd) - 1 - have, 0)) <= 0)
			break;
		have += (size_t)n;
		if (memchr(cmd, '\n', have) != NULL)
			break;
	}
	cmd[have] = '\0';
	cmd[strcspn(cmd, "\r\n")] = '\0';
	buf_init(&out, 0);
	if (strcmp(cmd, "status") == 0)
		control_render_status(st, &out);
	else if (strcmp(cmd, "reload") == 0) {
		buf_appends(&out, "ok: reloading (the log says how it went; postern status shows it)\n");
		action = CONTROL_RELOAD;
	} else if (strcmp(cmd, "ping") == 0)
		buf_appends(&out, "pong\n");
	else
		buf_appends(&out, "error: unknown command (status, reload, ping)\n");
	send_bounded(fd, out.ptr, out.len);
	buf_release(&out);
	close(fd);
	return action;
}

/*
 * control_request - the client side: send cmd to the socket at path
 *
 * Appends the answer to out. Returns 0, or -1 with *error_r.
 */
int
control_request(const char *path, const char *cmd, int timeout_ms, struct buf *out, char **error_r)
{
	struct sockaddr_un sun;
	char chunk[4096];
	int fd, rc = 0;

	if (fill_sun(&sun, path) < 0 ||
	    (fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0) {
		*error_r = xasprintf("control socket %s: %s", path, strerror(errno));
		return -1;
	}
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		*error_r = xasprintf("cannot reach posternd at %s: %s (is it running, with this "
				     "control_socket?)", path, strerror(errno));
		close(fd);
		return -1;
	}
	{
		struct timeval tv = { timeout_ms / 1000, (timeout_ms % 1000) * 1000 };

		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	}
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
