/*
 * dsn - delivery status notifications (RFC 3464) for recipients forward refused
 *
 * dsn_wanted() says whether a notification is due (not for a null sender,
 * not for recipients that asked NOTIFY=NEVER or a NOTIFY without FAILURE);
 * dsn_build() writes the whole notification message: a text part, the
 * message/delivery-status part, and the original header as text/rfc822-headers.
 */
#ifndef POSTERN_DSN_H
#define POSTERN_DSN_H

#include <stdbool.h>

#include "message.h"
#include "util/buf.h"

bool dsn_wanted(const struct message *m, const struct recipient *r);
void dsn_build(const struct message *m, struct recipient *const *failed, size_t nfailed,
	       const char *hostname, const char *forward, struct buf *out);

#endif
