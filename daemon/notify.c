/*
 * notify - sd_notify(3) for the master, or nothing without libsystemd
 *
 * The only file that includes <systemd/sd-daemon.h>. See notify.h.
 */
#include "notify.h"

#ifdef HAVE_LIBSYSTEMD

#include <string.h>
#include <time.h>

#include <systemd/sd-daemon.h>

#include "log.h"

/* say - one notification; sd_notify returns 0 when not under systemd */
static void
say(const char *state)
{
	int rc = sd_notify(0, state);

	if (rc < 0)
		log_warnx("sd_notify %s: %s", state, strerror(-rc));
}

/* notify_ready - READY=1: the workers of a generation are started */
void
notify_ready(void)
{
	say("READY=1");
}

/*
 * notify_reloading - RELOADING=1, with the CLOCK_MONOTONIC time of the reload
 *
 * MONOTONIC_USEC is what systemd 253 and later want beside RELOADING=1 (and
 * require for Type=notify-reload); older ones ignore it.
 */
void
notify_reloading(void)
{
	struct timespec now;
	int rc;

	clock_gettime(CLOCK_MONOTONIC, &now);
	rc = sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%llu",
			(unsigned long long)now.tv_sec * 1000000ULL +
			(unsigned long long)now.tv_nsec / 1000ULL);
	if (rc < 0)
		log_warnx("sd_notify RELOADING=1: %s", strerror(-rc));
}

/* notify_stopping - STOPPING=1: SIGTERM, the drain begins */
void
notify_stopping(void)
{
	say("STOPPING=1");
}

#else /* !HAVE_LIBSYSTEMD: built without libsystemd, nobody to tell */

/* notify_ready - nothing to do */
void
notify_ready(void)
{
}

/* notify_reloading - nothing to do */
void
notify_reloading(void)
{
}

/* notify_stopping - nothing to do */
void
notify_stopping(void)
{
}

#endif
