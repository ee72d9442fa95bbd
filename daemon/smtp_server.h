/*
 * smtp_server - the server side of one SMTP or LMTP session with the MTA
 *
 * smtp_session_run() owns the connection from accept() to close: the allow
 * list check, the greeting, the command loop with its limits and timeouts,
 * receiving DATA/BDAT into the spool, and, at the end of each transaction,
 * handing the message on (reinject) and answering from the recipients'
 * outcomes (decide, verdict). It knows nothing of Lua, ClamAV or spamd: the
 * listener's policy is an opaque handle it passes on to decide.c.
 */
#ifndef POSTERN_SMTP_SERVER_H
#define POSTERN_SMTP_SERVER_H

#include <sys/socket.h>

#include "config.h"
#include "reinject.h"

struct policy;
struct clam_engine;

/* what decides a message besides the configuration, handed through unopened */
struct scanners {
	struct policy *policy;		/* the listener's policy, or NULL */
	const struct clam_engine *clam;	/* the ClamAV engine, or NULL */
};

void smtp_session_run(const struct config *cfg, const struct listener_cfg *lc,
		      struct downstream *ds, const struct scanners *sc, int fd,
		      const struct sockaddr_storage *peer);

#endif
