/*
 * reinject - the SMTP client that hands accepted mail to the listener's `forward`
 *
 * reinject_message() delivers the recipients of a message whose verdict is
 * pass, and records for each of them the reply that decides what our own
 * client hears (recipient->code/reply) plus the downstream queue id. It never
 * decides a reply itself: verdict.c does, from what is recorded here.
 *
 * The contract (DESIGN.md, "no loss"): a recipient counts as delivered only
 * when forward answered 2xx to the end of data. In SMTP mode, where our client
 * hears one reply for all recipients, a temporary failure of any recipient
 * resets the downstream transaction before DATA so nobody gets a copy, and a
 * mix of accepted and permanently rejected recipients is resolved as
 * amavisd-new does: a delivery status notification for the rejected ones
 * (sent first; if it cannot be sent, the whole message is deferred), then the
 * message for the others.
 *
 * A struct downstream is one cached connection, owned by the worker and kept
 * across sessions for forward_cache_time; a cached connection that died
 * meanwhile is replaced before the message is given up on.
 */
#ifndef POSTERN_REINJECT_H
#define POSTERN_REINJECT_H

#include "config.h"
#include "message.h"

struct downstream;

struct downstream *downstream_new(void);
struct downstream *downstream_free(struct downstream *ds);
void downstream_expire(struct downstream *ds, long idle_limit_ms);
long downstream_idle_left_ms(const struct downstream *ds, long idle_limit_ms);
void reinject_message(struct downstream *ds, const struct config *cfg,
		      const struct listener_cfg *lc, const struct client *c, struct message *m);
int reinject_notify(struct downstream *ds, const struct config *cfg, const struct listener_cfg *lc,
		    const struct client *c, const struct message *m, struct recipient *const *refused,
		    size_t nrefused);

#endif
