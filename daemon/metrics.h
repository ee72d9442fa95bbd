/*
 * metrics - the Prometheus text exposition of the shared counters, served by the master
 *
 * See metrics.c. Off unless metrics = { listen = "127.0.0.1:9724" } is set.
 */
#ifndef POSTERN_METRICS_H
#define POSTERN_METRICS_H

#include <poll.h>
#include <stdbool.h>

#include "accept_backoff.h"
#include "stats.h"
#include "util/buf.h"

#define METRICS_CLIENTS_MAX	8	/* scrapers served at once; more wait in the backlog */
#define METRICS_REQUEST_MAX	8192	/* a GET with headers fits */
#define METRICS_REQUEST_MS	5000	/* to send the request's head, from the connection */
#define METRICS_ANSWER_MS	5000	/* to take the answer, from when it is ready */

/* a scraper's connection: reading its request (req != NULL), then writing the answer */
struct metrics_client {
	int		fd;		/* -1: a free slot; else owned */
	char	       *req;		/* METRICS_REQUEST_MAX bytes while reading, owned; else NULL */
	size_t		have;		/* bytes of the request received */
	struct buf	out;		/* the answer, while writing it */
	size_t		sent;		/* bytes of the answer written */
	long long	deadline_ms;	/* monotonic: the end of the current step */
};

/* the master's side of metrics.listen: never blocks its poll loop */
struct metrics_server {
	int			lfd;	/* the listening socket, -1 when off; owned */
	struct metrics_client	clients[METRICS_CLIENTS_MAX];
	struct accept_backoff	backoff;	/* accept() failing: lfd out of the poll set */
};

int metrics_listen(const char *addr, char **error_r);
void metrics_render(const struct stats *st, struct buf *out);
void metrics_server_init(struct metrics_server *ms, int lfd);
size_t metrics_server_pollfds(const struct metrics_server *ms, struct pollfd *pfd, size_t room);
int metrics_server_timeout(const struct metrics_server *ms, int wait_ms);
void metrics_server_work(struct metrics_server *ms, const struct stats *st);
void metrics_server_close(struct metrics_server *ms, bool and_listener);

#endif
