/*
 * proc - facts about this process that many places ask for
 *
 * self_pid() is getpid() without a system call per question: a worker asks
 * for it on every log line and every session. The cache is refreshed in the
 * child of every fork() (pthread_atfork), so it never names the parent.
 *
 * open_standard_fds() gives descriptors 0, 1 and 2 /dev/null when they are
 * closed; a program calls it first thing in main(). Exits when it cannot.
 */
#ifndef POSTERN_UTIL_PROC_H
#define POSTERN_UTIL_PROC_H

#include <sys/types.h>

pid_t self_pid(void);
void open_standard_fds(const char *progname);

#endif
