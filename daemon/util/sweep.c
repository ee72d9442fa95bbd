/*
 * sweep - remove the leftovers of dead processes from a directory (see sweep.h)
 */
#include <dirent.h>
#include <ftw.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sweep.h"
#include "xalloc.h"

/* remove_entry - nftw's callback for a depth-first removal */
static int
remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	if (flag == FTW_DP)
		rmdir(path);
	else
		unlink(path);
	return 0;
}

/*
 * sweep_dir - remove every entry of dir that pick() chooses; returns how many
 *
 * whole_trees: an entry may be a directory, removed with what it holds;
 * otherwise entries are files, unlinked (a directory chosen stays).
 */
int
sweep_dir(const char *dir, sweep_pick_fn *pick, void *arg, bool whole_trees)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	int removed = 0;

	if (d == NULL)
		return 0;
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0 ||
		    !pick(de->d_name, arg))
			continue;
		if (whole_trees) {
			char *path = xasprintf("%s/%s", dir, de->d_name);

			nftw(path, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
			free(path);
			removed++;
		} else if (unlinkat(dirfd(d), de->d_name, 0) == 0)
			removed++;
	}
	closedir(d);
	return removed;
}
