/*
 * quarantine_admin - release, quarantine list/show/delete: the code behind both ways in
 *
 * `postern release` and `postern quarantine ...` run this code in one of two
 * places: in a child that posternd's master forks for a request on the
 * control socket (the normal way: the daemon's own configuration, user and
 * log), or in the postern command itself when no daemon answers. Either
 * way the words are parsed by qadmin_parse() and run by qadmin_run(),
 * which write what the administrator reads to io->out and io->err.
 */
#ifndef POSTERN_QUARANTINE_ADMIN_H
#define POSTERN_QUARANTINE_ADMIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "config.h"

enum qadmin_op {
	QADMIN_RELEASE,		/* release MAIL_ID [--rcpt ADDR]... [--keep] */
	QADMIN_LIST,		/* quarantine list */
	QADMIN_SHOW,		/* quarantine show MAIL_ID */
	QADMIN_DELETE,		/* quarantine delete MAIL_ID */
};

/* a parsed request; its strings point into the argv it came from */
struct qadmin_req {
	enum qadmin_op op;
	const char *id;			/* MAIL_ID (not for list) */
	const char **rcpts;		/* --rcpt addresses, owned array */
	size_t	nrcpts;
	bool	keep;			/* --keep */
};

/* where the output goes, and whether this is the daemon's audit trail */
struct qadmin_io {
	FILE   *out;			/* what the command prints */
	FILE   *err;			/* "postern: ..." messages */
	const char *who;		/* for the log ("uid 0"), or NULL: log nothing */
};

bool qadmin_is_command(const char *word);
int qadmin_parse(int argc, char **argv, struct qadmin_req *r, FILE *err);
void qadmin_req_release(struct qadmin_req *r);
int qadmin_run(const struct config *cfg, const struct qadmin_req *r, const struct qadmin_io *io);

#endif
