/*
 * decide - from a received message to an outcome for every recipient
 *
 * decide_message() runs the listener's policy (when it has one), stores what
 * it quarantined, tells the sender about recipients the policy refused when
 * others go on (SMTP mode), and reinjects what passes. It leaves every
 * recipient with its final reply code and text, from which verdict.c writes
 * the reply our client hears and the log line. A policy failure tempfails
 * the whole message: it is still safe in the MTA's queue.
 *
 * See also: policy.c (the Lua side), quarantine.c, reinject.c, verdict.c.
 */
#ifndef POSTERN_DECIDE_H
#define POSTERN_DECIDE_H

#include "config.h"
#include "message.h"
#include "reinject.h"

struct policy;
struct clam_engine;

struct decide_ctx {
	const struct config *cfg;	/* borrowed */
	const struct listener_cfg *lc;	/* borrowed */
	const struct client *client;	/* borrowed */
	struct downstream *ds;		/* the worker's cached downstream, borrowed */
	struct policy *policy;		/* the listener's policy or NULL, borrowed */
	const struct clam_engine *clam;	/* the ClamAV engine or NULL, borrowed */
};

void decide_message(const struct decide_ctx *ctx, struct message *m);

#endif
