/*
 * accept_backoff - what a listening socket does when accept() keeps failing
 *
 * A listening socket with a connection waiting stays readable until the
 * connection is accepted. When accept() fails for want of a resource (the
 * process or the system is out of descriptors: EMFILE, ENFILE; the kernel
 * out of memory: ENOBUFS, ENOMEM), the next poll() returns at once and the
 * next accept() fails the same way: without a pause the process spins on
 * one CPU and, if it logged each failure, fills the log. So such a failure
 * takes the socket out of the poll set for ACCEPT_PAUSE_MS (a worker sleeps
 * that long instead) and is logged at once, then at most once a minute with
 * the number of failures in between. The connection waits in the backlog
 * meanwhile, where the client's own timeout governs it, as with Postfix's
 * master when it runs out of descriptors.
 *
 * The errors that concern one connection only (it was reset before we took
 * it, or Linux passes on a network error pending on it; see accept(2)) are
 * not failures of the socket: the caller just tries the next connection.
 */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include "accept_backoff.h"
#include "log.h"

/* accept_error_is_transient - err concerns one connection, or none: try again now */
bool
accept_error_is_transient(int err)
{
	switch (err) {
	case EAGAIN:
#if EWOULDBLOCK != EAGAIN
	case EWOULDBLOCK:
#endif
	case EINTR:
	case ECONNABORTED:
	case EPROTO:
	case ENETDOWN:
	case ENOPROTOOPT:
	case EHOSTDOWN:
	case ENONET:
	case EHOSTUNREACH:
	case EOPNOTSUPP:
	case ENETUNREACH:
	case EPERM:		/* a firewall rule refused this one connection */
		return true;
	default:
		return false;
	}
}

/*
 * accept_backoff_failed - accept() on the socket named `what` failed with err,
 * not transient: pause the socket, and warn unless a warning went out less
 * than ACCEPT_WARN_EVERY_MS ago
 */
void
accept_backoff_failed(struct accept_backoff *b, const char *what, int err, long long now_ms)
{
	b->paused_until_ms = now_ms + ACCEPT_PAUSE_MS;
	b->unlogged++;
	if (now_ms < b->next_warn_ms)
		return;
	if (b->unlogged > 1)
		log_warnx("%s: accept: %s (%lu times since the last warning); "
			  "not accepting for %d ms at a time", what, strerror(err), b->unlogged,
			  ACCEPT_PAUSE_MS);
	else
		log_warnx("%s: accept: %s; not accepting for %d ms at a time while it lasts",
			  what, strerror(err), ACCEPT_PAUSE_MS);
	b->unlogged = 0;
	b->next_warn_ms = now_ms + ACCEPT_WARN_EVERY_MS;
}

/* accept_backoff_paused - true while the socket must stay out of the poll set */
bool
accept_backoff_paused(const struct accept_backoff *b, long long now_ms)
{
	return now_ms < b->paused_until_ms;
}

/* accept_backoff_timeout - wait_ms, shortened to the end of a pause (-1: no bound) */
int
accept_backoff_timeout(const struct accept_backoff *b, long long now_ms, int wait_ms)
{
	long long left;

	if (!accept_backoff_paused(b, now_ms))
		return wait_ms;
	left = b->paused_until_ms - now_ms;
	return wait_ms < 0 || left < wait_ms ? (int)left : wait_ms;
}

/*
 * accept_backoff_accept - a new connection on listening socket lfd (named
 * `what` in the log), non-blocking and close-on-exec; -1 when none waits, or
 * while the socket is paused, or when accept() failed and paused it
 */
int
accept_backoff_accept(int lfd, struct accept_backoff *b, const char *what, long long now_ms)
{
	if (accept_backoff_paused(b, now_ms))
		return -1;
	for (;;) {
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd >= 0)
			return fd;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return -1;	/* no one else waits */
		if (!accept_error_is_transient(errno)) {
			accept_backoff_failed(b, what, errno, now_ms);
			return -1;
		}
		/* that one gave up (or a signal came): the next may be there */
	}
}
