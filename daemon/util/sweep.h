/*
 * sweep - remove the leftovers of dead processes from a directory
 *
 * The spool, the quarantine and libclamav's scan directory each have files
 * (or directories) that only a killed process leaves behind; each module
 * says which names are leftovers, sweep_dir() removes them. A directory
 * that cannot be opened sweeps nothing.
 */
#ifndef POSTERN_UTIL_SWEEP_H
#define POSTERN_UTIL_SWEEP_H

#include <stdbool.h>

/* picks a leftover by its name; arg is sweep_dir's */
typedef bool sweep_pick_fn(const char *name, void *arg);

int sweep_dir(const char *dir, sweep_pick_fn *pick, void *arg, bool whole_trees);

#endif
