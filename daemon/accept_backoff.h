/*
 * accept_backoff - what a listening socket does when accept() keeps failing
 *
 * See accept_backoff.c.
 */
#ifndef POSTERN_ACCEPT_BACKOFF_H
#define POSTERN_ACCEPT_BACKOFF_H

#include <stdbool.h>

#define ACCEPT_PAUSE_MS		1000	/* no accept() on the socket for this long after a failure */
#define ACCEPT_WARN_EVERY_MS	60000	/* one warning per socket per minute at most */

/* one listening socket's state; all zero: accepting, nothing logged yet */
struct accept_backoff {
	long long	paused_until_ms;	/* monotonic; accept again from then on */
	long long	next_warn_ms;		/* monotonic; the next warning may be logged then */
	unsigned long	unlogged;		/* failures since the last warning */
};

bool accept_error_is_transient(int err);
void accept_backoff_failed(struct accept_backoff *b, const char *what, int err, long long now_ms);
bool accept_backoff_paused(const struct accept_backoff *b, long long now_ms);
int accept_backoff_timeout(const struct accept_backoff *b, long long now_ms, int wait_ms);
int accept_backoff_accept(int lfd, struct accept_backoff *b, const char *what, long long now_ms);

#endif
