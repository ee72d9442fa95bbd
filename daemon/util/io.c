/*
 * io - buffered socket I/O where every read and write has a deadline
 *
 * See io.h. timeout_ms bounds each wait; deadline_ms, when set, bounds the
 * sum of the waits of a phase, so silence and a slow trickle both end.
 */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "util/io.h"
#include "util/xalloc.h"

#define IO_RBUF_SIZE	(64 * 1024)	/* one read gets a whole TCP window's worth */
#define IO_WBUF_HIGH	(64 * 1024)	/* flush once this much output is pending */

volatile int io_stop_requested;
int io_stop_fd = -1;

/* io_now_ms - monotonic milliseconds */
long long
io_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* io_init - wrap a connected socket */
void
io_init(struct io *io, int fd, int timeout_ms)
{
	io->fd = fd;
	io->rsize = IO_RBUF_SIZE;
	io->rbuf = xmalloc(io->rsize);
	io->rstart = io->rend = 0;
	buf_init(&io->wbuf, 0);
	io->timeout_ms = timeout_ms;
	io->deadline_ms = 0;
	io->error_errno = 0;
	io->interruptible = false;
}

/* io_release - free the buffers; the descriptor stays open (its owner closes it) */
void
io_release(struct io *io)
{
	free(io->rbuf);
	io->rbuf = NULL;
	buf_release(&io->wbuf);
}

/*
 * io_wait_fd - wait until fd is ready for events, at most timeout_ms
 *
 * Returns 1 when ready, 0 on timeout, -1 on error. EINTR resumes with the
 * remaining time: a signal (SIGTERM asking a worker to drain) must not cut a
 * session short.
 */
int
io_wait_fd(int fd, short events, int timeout_ms)
{
	return io_wait_fd_stoppable(fd, events, timeout_ms, false);
}

/* io_wait_fd_stoppable - io_wait_fd that returns -2 once io_stop_requested is set */
int
io_wait_fd_stoppable(int fd, short events, int timeout_ms, bool stoppable)
{
	long long deadline = io_now_ms() + timeout_ms;
	struct pollfd pfd[2];
	nfds_t nfds = stoppable && io_stop_fd >= 0 ? 2 : 1;
	int n;

	for (;;) {
		long long left = deadline - io_now_ms();

		if (left < 0)
			left = 0;
		pfd[0].fd = fd;
		pfd[0].events = events;
		pfd[0].revents = 0;
		pfd[1].fd = io_stop_fd;
		pfd[1].events = POLLIN;
		pfd[1].revents = 0;
		n = poll(pfd, nfds, (int)left);
		if (n > 0 && nfds == 2 && pfd[1].revents != 0)
			return -2;	/* the pipe is never drained: a stop stays requested */
		if (n > 0)
			return 1;
		if (n == 0)
			return 0;
		if (errno != EINTR)
			return -1;
		if (stoppable && io_stop_requested)
			return -2;
	}
}

/*
 * io_fill - read more bytes into the buffer
 *
 * Pending output is flushed first: whoever reads is waiting for the peer,
 * and the peer may be waiting for our replies. When there was a reply to
 * flush, the peer's next bytes cannot be here yet (it has not seen the
 * reply), so the wait comes before the read: a read that can only fail
 * with EAGAIN is a system call per SMTP command for nothing. Returns the
 * number of new bytes (> 0) or IO_EOF/IO_TIMEOUT/IO_ERROR.
 */
int
io_fill(struct io *io)
{
	ssize_t n;
	int rc, wait_ms;
	bool wait_first = io->wbuf.len > 0;

	if ((rc = io_flush(io)) != IO_OK)
		return rc;
	if (io->rstart == io->rend)
		io->rstart = io->rend = 0;
	else if (io->rend == io->rsize) {
		memmove(io->rbuf, io->rbuf + io->rstart, io->rend - io->rstart);
		io->rend -= io->rstart;
		io->rstart = 0;
	}
	if (io->rend == io->rsize)
		return IO_ERROR;	/* caller let the buffer fill up: a bug */
	for (;;) {
		if (!wait_first) {
			n = read(io->fd, io->rbuf + io->rend, io->rsize - io->rend);
			if (n > 0) {
				io->rend += (size_t)n;
				return (int)n;
			}
			if (n == 0)
				return IO_EOF;
			if (errno == EINTR)
				continue;
			if (errno != EAGAIN && errno != EWOULDBLOCK) {
				io->error_errno = errno;
				return IO_ERROR;
			}
		}
		wait_first = false;
		if (io->interruptible && io_stop_requested)
			return IO_STOPPED;
		wait_ms = io->timeout_ms;
		if (io->deadline_ms != 0) {
			long long left = io->deadline_ms - io_now_ms();

			if (left <= 0)
				return IO_TIMEOUT;
			if (left < wait_ms)
				wait_ms = (int)left;
		}
		rc = io_wait_fd_stoppable(io->fd, POLLIN, wait_ms, io->interruptible);
		if (rc == 0)
			return IO_TIMEOUT;
		if (rc == -2)
			return IO_STOPPED;
		if (rc < 0) {
			io->error_errno = errno;
			return IO_ERROR;
		}
	}
}

/*
 * io_getline - read one line, without its CRLF or LF, into line
 *
 * limit counts the line with its CRLF, as RFC 5321's 512 octets do.
 * A line longer than limit is read to its end and thrown away, *too_long_r
 * is set, and IO_OK is returned: the session survives and the caller answers
 * "500 5.5.2". Returns IO_OK or a negative status.
 */
int
io_getline(struct io *io, struct buf *line, size_t limit, bool *too_long_r)
{
	long long outer = io->deadline_ms, mine = io_now_ms() + io->timeout_ms;
	bool too_long = false;
	int rc = IO_OK;

	/* the whole line within timeout_ms, and within any deadline already set */
	if (outer == 0 || mine < outer)
		io->deadline_ms = mine;
	buf_reset(line);
	for (;;) {
		const char *p = io_rptr(io);
		size_t avail = io_avail(io);
		const char *nl = memchr(p, '\n', avail);
		size_t take = nl ? (size_t)(nl - p) : avail;

		if (!too_long) {
			if (line->len + take + (nl != NULL) > limit) {
				too_long = true;
				buf_reset(line);
			} else
				buf_append(line, p, take);
		}
		io_rconsume(io, nl ? take + 1 : take);
		if (nl != NULL)
			break;
		if ((rc = io_fill(io)) < 0)
			break;
	}
	io->deadline_ms = outer;
	if (rc < 0)
		return rc;
	if (!too_long && line->len > 0 && line->ptr[line->len - 1] == '\r')
		line->len--;
	*too_long_r = too_long;
	return IO_OK;
}

/* io_set_deadline - bound the waits of a phase (monotonic ms, io_now_ms()); 0 clears */
void
io_set_deadline(struct io *io, long long deadline_ms)
{
	io->deadline_ms = deadline_ms;
}

/* io_write - queue bytes for output, flushing when enough is pending */
int
io_write(struct io *io, const void *data, size_t len)
{
	buf_append(&io->wbuf, data, len);
	if (io->wbuf.len >= IO_WBUF_HIGH)
		return io_flush(io);
	return IO_OK;
}

/* io_puts - queue a C string */
int
io_puts(struct io *io, const char *s)
{
	return io_write(io, s, strlen(s));
}

/* io_flush - write out everything pending, each write bounded by timeout_ms */
int
io_flush(struct io *io)
{
	size_t off = 0;
	ssize_t n;
	int rc;

	while (off < io->wbuf.len) {
		n = write(io->fd, io->wbuf.ptr + off, io->wbuf.len - off);
		if (n > 0) {
			off += (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
			io->error_errno = errno;
			buf_reset(&io->wbuf);
			return IO_ERROR;
		}
		rc = io_wait_fd(io->fd, POLLOUT, io->timeout_ms);
		if (rc <= 0) {
			io->error_errno = rc == 0 ? ETIMEDOUT : errno;
			buf_reset(&io->wbuf);
			return rc == 0 ? IO_TIMEOUT : IO_ERROR;
		}
	}
	buf_reset(&io->wbuf);
	return IO_OK;
}

/* io_strerror - words for a status, for log lines */
const char *
io_strerror(int status)
{
	switch (status) {
	case IO_OK:
		return "ok";
	case IO_EOF:
		return "connection closed by peer";
	case IO_TIMEOUT:
		return "timeout";
	case IO_STOPPED:
		return "stopping";
	default:
		return "I/O error";
	}
}
