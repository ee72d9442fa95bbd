/*
 * worker - one pre-forked process of a listener: accept, run a session, repeat
 *
 * worker_main() never returns. A worker serves one session at a time (like
 * Postfix's smtpd and amavisd's children), leaves after max_sessions, and on
 * SIGTERM finishes the session in progress (ending an idle one with 421)
 * before it exits. It keeps one downstream connection cached between
 * sessions for forward_cache_time. It runs the listener's policy in the state
 * the master loaded before fork(); when a policy limit spent that state, the
 * worker leaves after the session and the master starts a fresh one.
 */
#ifndef POSTERN_WORKER_H
#define POSTERN_WORKER_H

#include <signal.h>

#include "config.h"

struct scanners;

void worker_block_signals(sigset_t *saved);
void worker_main(const struct config *cfg, const struct listener_cfg *lc,
		 const struct scanners *sc, int listen_fd) __attribute__((noreturn));

#endif
