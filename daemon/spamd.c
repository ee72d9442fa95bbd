/*
 * spamd - a client for SpamAssassin's spamd, protocol SPAMC/1.5; see spamd.h
 *
 * One connection per request, as spamc does: spamd answers and closes. The
 * request goes out in pieces as the spool is read (no copy of the message in
 * memory); the answer is read into a bounded buffer up to spamd's close.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "spamd.h"
#include "util/buf.h"
#include "util/net.h"
#include "util/xalloc.h"

#define ANSWER_MAX	(1024 * 1024)	/* a REPORT of a huge rule set still fits */
#define SEND_CHUNK	(64 * 1024)

/* now_ms - monotonic milliseconds */
static long long
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* wait_for - poll fd for events until deadline; 1 ready, 0 timeout, -1 error */
static int
wait_for(int fd, short events, long long deadline)
{
	for (;;) {
		struct pollfd pfd = { .fd = fd, .events = events };
		long long left = deadline - now_ms();
		int n;

		if (left <= 0)
			return 0;
		n = poll(&pfd, 1, (int)(left > 60000 ? 60000 : left));
		if (n > 0)
			return 1;
		if (n < 0 && errno != EINTR)
			return -1;
	}
}

/* connect_unix - a non-blocking connection to a unix socket; -1 with errno */
static int
connect_unix(const char *path, long long deadline)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	int fd, err = 0;
	socklen_t len = sizeof(err);

	if (strlen(path) >= sizeof(sun.sun_path)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	strcpy(sun.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0)
		return fd;
	if (errno != EINPROGRESS && errno != EAGAIN)
		goto fail;
	if (wait_for(fd, POLLOUT, deadline) <= 0) {
		errno = ETIMEDOUT;
		goto fail;
	}
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err != 0) {
		errno = err ? err : errno;
		goto fail;
	}
	return fd;
fail:
	err = errno;
	close(fd);
	errno = err;
	return -1;
}

/* open_connection - TCP host:port, or a unix socket path; -1 with *error_r */
static int
open_connection(const struct spamd_cfg *sc, long long deadline, char **error_r)
{
	struct endpoint ep;
	const char *why;
	int fd;

	if (sc->address[0] == '/')
		fd = connect_unix(sc->address, deadline);
	else if (net_parse_endpoint(sc->address, &ep, &why) < 0) {
		*error_r = xasprintf("spamd: address %s: %s", sc->address, why);
		return -1;
	} else {
		long long left = deadline - now_ms();

		fd = net_connect(&ep, (int)(left > 0 ? left : 1));
		/* every later wait is ours to bound: never block on this socket */
		if (fd >= 0 && net_set_nonblock(fd) < 0) {
			close(fd);
			fd = -1;
		}
	}
	if (fd < 0)
		*error_r = xasprintf("spamd: cannot connect to %s: %s", sc->address,
				     errno == ETIMEDOUT ? "timeout" : strerror(errno));
	return fd;
}

/* send_all - write len bytes before deadline; -1 with errno */
static int
send_all(int fd, const char *p, size_t len, long long deadline)
{
	while (len > 0) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);

		if (n > 0) {
			p += n;
			len -= (size_t)n;
			continue;
		}
		if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
			return -1;
		if (wait_for(fd, POLLOUT, deadline) <= 0) {
			errno = ETIMEDOUT;
			return -1;
		}
	}
	return 0;
}

/* send_request - the request line, headers and the spooled message */
static int
send_request(int fd, int spool, off_t size, const char *user, bool report, long long deadline)
{
	char *chunk, head[512];
	off_t off = 0;
	int n, rc = 0;

	n = snprintf(head, sizeof(head), "%s SPAMC/1.5\r\nContent-length: %lld\r\n%s%s%s\r\n",
		     report ? "REPORT" : "SYMBOLS", (long long)size, user ? "User: " : "",
		     user ? user : "", user ? "\r\n" : "");
	if (n < 0 || (size_t)n >= sizeof(head) || send_all(fd, head, (size_t)n, deadline) < 0)
		return -1;
	chunk = xmalloc(SEND_CHUNK);
	while (rc == 0 && off < size) {
		ssize_t got = pread(spool, chunk, size - off < SEND_CHUNK ? (size_t)(size - off) :
				    SEND_CHUNK, off);

		if (got <= 0) {
			errno = got < 0 ? errno : EIO;
			rc = -1;
			break;
		}
		rc = send_all(fd, chunk, (size_t)got, deadline);
		off += got;
	}
	free(chunk);
	/* the request is whole: let spamd see the end (it reads Content-length bytes anyway) */
	if (rc == 0)
		shutdown(fd, SHUT_WR);
	return rc;
}

/* read_answer - everything spamd says until it closes, bounded */
static int
read_answer(int fd, struct buf *ans, long long deadline)
{
	char chunk[16384];

	for (;;) {
		ssize_t n = recv(fd, chunk, sizeof(chunk), 0);

		if (n > 0) {
			if (buf_append(ans, chunk, (size_t)n) < 0) {
				errno = EMSGSIZE;
				return -1;
			}
			continue;
		}
		if (n == 0)
			return 0;
		if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
			return -1;
		if (wait_for(fd, POLLIN, deadline) <= 0) {
			errno = ETIMEDOUT;
			return -1;
		}
	}
}

/*
 * parse_answer - "SPAMD/1.1 0 EX_OK", "Spam: True ; 15.3 / 5.0", body
 *
 * Returns 0, or -1 with *error_r.
 */
static int
parse_answer(const char *a, bool report, struct spamd_result *r, char **error_r)
{
	const char *eol = strstr(a, "\r\n"), *body, *p;
	int code = -1;
	char verdict[8] = "";

	if (eol == NULL || strncmp(a, "SPAMD/", 6) != 0 || sscanf(a, "SPAMD/%*s %d", &code) != 1) {
		*error_r = xstrdup("spamd: malformed answer");
		return -1;
	}
	if (code != 0) {
		*error_r = xasprintf("spamd: error: %.*s", (int)(eol - a > 200 ? 200 : eol - a), a);
		return -1;
	}
	body = strstr(a, "\r\n\r\n");
	body = body ? body + 4 : "";
	for (p = eol + 2; p < body && *p; p = strstr(p, "\r\n") ? strstr(p, "\r\n") + 2 : body) {
		if (strncasecmp(p, "Spam:", 5) == 0 &&
		    sscanf(p + 5, " %7s ; %lf / %lf", verdict, &r->score, &r->threshold) == 3) {
			r->is_spam = strcasecmp(verdict, "True") == 0 || strcasecmp(verdict, "Yes") == 0;
			code = 1;
		}
	}
	if (code != 1) {
		*error_r = xstrdup("spamd: answer without a Spam: header");
		return -1;
	}
	if (report) {
		r->report = xstrdup(body);
		r->symbols = xstrdup("");
	} else {
		size_t len = strcspn(body, "\r\n");

		r->symbols = xstrndup(body, len);
	}
	return 0;
}

/* spamd_check - see spamd.h */
int
spamd_check(const struct spamd_cfg *sc, int spool, off_t size, const char *user, bool report,
	    struct spamd_result *r, char **error_r)
{
	long long start = now_ms(), deadline = start + sc->timeout_ms;
	struct buf ans;
	int fd, rc = -1;

	memset(r, 0, sizeof(*r));
	*error_r = NULL;
	if (size > sc->max_size) {
		*error_r = xasprintf("spamd: message too big to check (%lld bytes, spamd.max_size %ld)",
				     (long long)size, sc->max_size);
		return -1;
	}
	if ((fd = open_connection(sc, deadline, error_r)) < 0)
		return -1;
	buf_init(&ans, ANSWER_MAX);
	if (send_request(fd, spool, size, user, report, deadline) < 0 ||
	    read_answer(fd, &ans, deadline) < 0)
		*error_r = xasprintf("spamd: %s", errno == ETIMEDOUT ? "timeout" :
				     errno == EMSGSIZE ? "answer too long" : strerror(errno));
	else
		rc = parse_answer(buf_cstr(&ans), report, r, error_r);
	close(fd);
	buf_release(&ans);
	r->elapsed_ms = (long)(now_ms() - start);
	if (rc < 0)
		spamd_result_release(r);
	return rc;
}

/* spamd_result_release - free what a result owns */
void
spamd_result_release(struct spamd_result *r)
{
	free(r->symbols);
	free(r->report);
	r->symbols = r->report = NULL;
}
