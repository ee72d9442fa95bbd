/*
 * control - the control socket: `postern status` and `postern reload` talk to the master here
 *
 * See control.c.
 */
#ifndef POSTERN_CONTROL_H
#define POSTERN_CONTROL_H

#include <stdbool.h>
#include <sys/types.h>

#include "stats.h"
#include "util/buf.h"

enum control_action {
	CONTROL_NONE,		/* answered, nothing to do */
	CONTROL_RELOAD,		/* the client asked for a reload */
};

int control_listen(const char *path, bool as_root, uid_t uid, gid_t gid, char **error_r);
enum control_action control_serve(int lfd, const struct stats *st);
void control_render_status(const struct stats *st, struct buf *out);
int control_request(const char *path, const char *cmd, int timeout_ms, struct buf *out,
		    char **error_r);

#endif
