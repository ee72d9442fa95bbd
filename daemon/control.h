/*
 * control - the control socket: the postern command talks to the master here
 *
 * See control.c.
 */
#ifndef POSTERN_CONTROL_H
#define POSTERN_CONTROL_H

#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <sys/types.h>

#include "accept_backoff.h"
#include "config.h"
#include "stats.h"
#include "util/buf.h"

enum control_action {
	CONTROL_NONE,		/* answered, nothing to do */
	CONTROL_RELOAD,		/* the client asked for a reload */
	CONTROL_ADMIN,		/* a quarantine command: fork control_admin_child() */
};

/* a quarantine command the master hands to a child */
struct control_request {
	int	fd;			/* the client's connection, owned */
	char   *line;			/* its request line, TAB-separated words, owned */
	long	uid;			/* the client's user id (SO_PEERCRED), -1 unknown */
};

#define CONTROL_LINE_MAX	8192	/* a request line, with every --rcpt of a release */
#define CONTROL_CLIENTS_MAX	16	/* clients whose request line the master waits for */

/* a client of the control socket whose request line has not all come yet */
struct control_client {
	int		fd;		/* -1: a free slot; else owned */
	char	       *line;		/* CONTROL_LINE_MAX bytes, owned */
	size_t		have;		/* bytes of it received */
	long long	deadline_ms;	/* monotonic: refused when the line is not whole by then */
};

/* the master's side of the control socket: never blocks its poll loop */
struct control_server {
	int			lfd;	/* the listening socket, -1 when off; owned */
	struct control_client	clients[CONTROL_CLIENTS_MAX];
	struct accept_backoff	backoff;	/* accept() failing: lfd out of the poll set */
};

int control_listen(const char *path, bool as_root, uid_t uid, gid_t gid, char **error_r);
void control_server_init(struct control_server *cs, int lfd);
size_t control_server_pollfds(const struct control_server *cs, struct pollfd *pfd, size_t room);
int control_server_timeout(const struct control_server *cs, int wait_ms);
enum control_action control_server_work(struct control_server *cs, const struct stats *st,
					struct control_request *req);
void control_server_close(struct control_server *cs, bool and_listener);
void control_admin_child(const struct config *cfg, struct control_request *req)
	__attribute__((noreturn));
void control_admin_refuse(struct control_request *req, const char *why);
void control_request_release(struct control_request *req);
void control_render_status(const struct stats *st, struct buf *out);
int control_request(const char *path, const char *cmd, int timeout_ms, struct buf *out,
		    char **error_r);
int control_request_framed(const char *path, char *const *words, int nwords, FILE *out, FILE *err,
			   int *status_r, char **error_r);

#endif
