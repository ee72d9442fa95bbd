/*
 * proc - facts about this process that many places ask for (see proc.h)
 */
#include <pthread.h>
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
