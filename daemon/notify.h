/*
 * notify - tell systemd what the master is doing (Type=notify)
 *
 * notify_ready() says READY=1: the listeners are bound and the workers of a
 * generation started. notify_reloading() says RELOADING=1 when SIGHUP begins
 * a reload, which ends with notify_ready() whether it succeeded or kept the
 * running configuration. notify_stopping() says STOPPING=1 when SIGTERM
 * begins the drain.
 *
 * Built --with-libsystemd they go through sd_notify(3), which does nothing
 * when NOTIFY_SOCKET is unset (posternd not started by systemd); built
 * without it they do nothing. Only the master calls them: with -f it is the
 * service's main process, and NotifyAccess=main ignores anyone else.
 *
 * Errors: a notification that cannot be sent is logged (log_warnx) and
 * otherwise ignored: systemd's own timeouts handle a daemon it never hears.
 */
#ifndef POSTERN_NOTIFY_H
#define POSTERN_NOTIFY_H

void notify_ready(void);
void notify_reloading(void);
void notify_stopping(void);

#endif
