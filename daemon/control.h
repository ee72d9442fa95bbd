/*
 * control - the control socket: the postern command talks to the master here
 *
 * See control.c.
 */
#ifndef POSTERN_CONTROL_H
#define POSTERN_CONTROL_H

#include <stdbool.h>
#include <stdio.h>
#include <sys/types.h>

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

int control_listen(const char *path, bool as_root, uid_t uid, gid_t gid, char **error_r);
enum control_action control_serve(int lfd, const struct stats *st, struct control_request *req);
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
