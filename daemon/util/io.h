/*
 * io - buffered socket I/O where every read and write has a deadline
 *
 * A struct io wraps one connected socket. Reads go through a 64 KiB buffer that
 * the SMTP parser may look into directly (io_rptr/io_avail/io_rconsume), so the
 * DATA phase can scan large chunks instead of lines. Writes are buffered and go
 * out at io_flush(), which io_fill() calls itself before it would block: replies
 * to pipelined commands leave in one packet, and a client waiting for a reply
 * is never left waiting while we wait for it.
 *
 * Every blocking step is bounded by timeout_ms (per operation, like Postfix's
 * smtp_stream timeouts), and by deadline_ms when one is set: io_getline()
 * sets one for the whole line, so a peer trickling a byte at a time cannot
 * hold a worker (Postfix's smtpd_per_record_deadline); the DATA phase sets
 * its own with io_set_deadline(). Errors: IO_EOF, IO_TIMEOUT, IO_ERROR (errno
 * kept in io->error_errno). Nothing here logs.
 */
#ifndef POSTERN_IO_H
#define POSTERN_IO_H

#include <stdbool.h>
#include <stddef.h>

#include "util/buf.h"

enum {
	IO_OK = 0,
	IO_EOF = -1,		/* peer closed */
	IO_TIMEOUT = -2,	/* no progress within timeout_ms */
	IO_ERROR = -3,		/* read/write error, errno in error_errno */
	IO_STOPPED = -4,	/* io_stop_requested while interruptible */
};

struct io {
	int	fd;		/* the socket; owned by whoever called io_init */
	char   *rbuf;		/* read buffer, owned */
	size_t	rsize;		/* its size */
	size_t	rstart;		/* first unread byte */
	size_t	rend;		/* one past the last unread byte */
	struct buf wbuf;	/* pending output, owned */
	int	timeout_ms;	/* bound on each blocking read or write */
	long long deadline_ms;	/* monotonic bound on a whole phase (a line, the data); 0 = none */
	int	error_errno;	/* errno of the last IO_ERROR */
	bool	interruptible;	/* a stop request may end the current wait */
};

/*
 * Set from a signal handler when the process should stop: a wait on an
 * interruptible io (a session idle between transactions) then ends with
 * IO_STOPPED. Waits inside a transaction ignore it and finish their work.
 */
extern volatile int io_stop_requested;

/*
 * The read end of a pipe the same handler writes to, or -1: an interruptible
 * wait polls it too, so a stop that lands between the check of
 * io_stop_requested and the poll() still ends the wait at once.
 */
extern int io_stop_fd;

void io_init(struct io *io, int fd, int timeout_ms);
void io_release(struct io *io);
int io_fill(struct io *io);
int io_getline(struct io *io, struct buf *line, size_t limit, bool *too_long_r);
int io_write(struct io *io, const void *data, size_t len);
int io_puts(struct io *io, const char *s);
int io_flush(struct io *io);
int io_wait_fd(int fd, short events, int timeout_ms);
int io_wait_fd_stoppable(int fd, short events, int timeout_ms, bool stoppable);
const char *io_strerror(int status);
long long io_now_ms(void);
void io_set_deadline(struct io *io, long long deadline_ms);

/* io_avail - unread bytes in the read buffer */
static inline size_t io_avail(const struct io *io) { return io->rend - io->rstart; }
/* io_rptr - the first unread byte; valid until the next io_fill */
static inline const char *io_rptr(const struct io *io) { return io->rbuf + io->rstart; }
/* io_rconsume - mark n buffered bytes as read */
static inline void io_rconsume(struct io *io, size_t n) { io->rstart += n; }

#endif
