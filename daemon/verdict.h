/*
 * verdict - per-recipient outcomes into replies and the one log line per message
 *
 * verdict_reply() writes what our client hears after the end of data: one
 * reply in SMTP mode, chosen from the recipients' outcomes (any temporary
 * failure defers the whole message; else any delivery accepts it, the
 * refused ones having been notified by reinject; else the first refusal),
 * or one reply per recipient in LMTP mode (RFC 2033 4.2).
 * verdict_log() writes the summary line documented in posternd(8).
 */
#ifndef POSTERN_VERDICT_H
#define POSTERN_VERDICT_H

#include "config.h"
#include "message.h"
#include "util/buf.h"

void verdict_reply_for(const struct message *m, const struct recipient *r, struct buf *out);
void verdict_smtp_reply(const struct message *m, struct buf *out);
void verdict_log(const struct listener_cfg *lc, const struct client *c, const struct message *m,
		 const char *reply);
const char *verdict_name(enum verdict v);

#endif
