/*
 * proc - facts about this process that many places ask for (see proc.h)
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proc.h"

static pid_t cached_pid;	/* 0 until asked, and again in a fresh child */

/* forget - runs in the child of every fork(): its pid is a new one */
static void
forget(void)
{
	cached_pid = 0;
}

/* self_pid - this process's id */
pid_t
self_pid(void)
{
	static int registered;

	if (!registered) {
		registered = 1;
		if (pthread_atfork(NULL, NULL, forget) != 0)
			registered = 0;	/* cannot track forks: ask every time */
	}
	if (!registered)
		return getpid();
	if (cached_pid == 0)
		cached_pid = getpid();
	return cached_pid;
}

/*
 * open_standard_fds - give descriptors 0, 1 and 2 a file if they have none
 *
 * Started with one of them closed (a supervisor's or a shell's "<&-" or
 * ">&-"), the first socket, spool or output file we open would take that
 * number, and our log lines on stderr, a report on stdout, or a library's
 * stray printf, would go into an SMTP session, a message or a file the user
 * asked for. /dev/null takes the free ones first, as Postfix's and
 * OpenSMTPD's programs do at start.
 */
void
open_standard_fds(const char *progname)
{
	for (int want = 0; want <= STDERR_FILENO; want++) {
		int fd;

		if (fcntl(want, F_GETFD) >= 0 || errno != EBADF)
			continue;
		if ((fd = open("/dev/null", O_RDWR)) < 0) {
			fprintf(stderr, "%s: /dev/null: %s\n", progname, strerror(errno));
			exit(1);
		}
		if (fd != want) {	/* a lower one was free: cannot happen, we go upwards */
			close(fd);
			exit(1);
		}
	}
}
