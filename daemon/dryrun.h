/*
 * dryrun - `postern test`: run a policy on a message file without the daemon
 *
 * dryrun_main() takes the words after "test" (argv[0] is "test") and returns
 * the exit status documented in dryrun.c and postern(1).
 */
#ifndef POSTERN_DRYRUN_H
#define POSTERN_DRYRUN_H

#include <stdbool.h>

int dryrun_main(const char *config_path, bool config_given, int argc, char **argv);

#endif
