/*
 * spool_spec - what a spool holds is what was written, in memory or on disk
 *
 * A message that fits in the write buffer lives in a memory file, a larger
 * one in the nameless file in spool_dir; readers only see a descriptor.
 * Each case writes a pattern in pieces, finishes, and reads it all back with
 * pread: same bytes, same size, and the file is where it should be. The
 * same spool is then reused (the spare) and must not show the old message.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "spool.h"
#include "tap.h"

#define BUFFER	(64 * 1024)	/* spool.c's SPOOL_WBUF_SIZE */

static char dir[] = "/tmp/postern-spool-spec-XXXXXX";

/* pattern - byte i of message seed; never the same for two seeds at one offset */
static char
pattern(size_t i, unsigned seed)
{
	return (char)((i * 7 + seed * 13 + i / 251) & 0xff);
}

/* write_message - len bytes of pattern seed in pieces of step; 0 or -1 */
static int
write_message(struct spool *sp, size_t len, size_t step, unsigned seed)
{
	char *piece = malloc(step);
	int rc = 0;

	for (size_t off = 0; off < len && rc == 0; off += step) {
		size_t n = len - off < step ? len - off : step;

		for (size_t i = 0; i < n; i++)
			piece[i] = pattern(off + i, seed);
		rc = spool_write(sp, piece, n);
	}
	free(piece);
	return rc == 0 ? spool_finish(sp) : -1;
}

/* reads_back - the file holds exactly len bytes of pattern seed */
static int
reads_back(const struct spool *sp, size_t len, unsigned seed)
{
	char *got = malloc(len + 1);
	size_t have = 0;
	ssize_t n;
	int same = 1;

	while ((n = pread(spool_fd(sp), got + have, len + 1 - have, (off_t)have)) > 0)
		have += (size_t)n;
	if (have != len) {
		printf("# read %zu bytes, want %zu\n", have, len);
		same = 0;
	}
	for (size_t i = 0; same && i < len; i++)
		if (got[i] != pattern(i, seed)) {
			printf("# byte %zu differs\n", i);
			same = 0;
		}
	free(got);
	return same;
}

/* where - "memory" for a memfd, "disk" for a file in dir, else what it is */
static const char *
where(const struct spool *sp)
{
	static char target[PATH_MAX];
	char link[64];
	ssize_t n;

	snprintf(link, sizeof(link), "/proc/self/fd/%d", spool_fd(sp));
	n = readlink(link, target, sizeof(target) - 1);
	if (n < 0)
		return strerror(errno);
	target[n] = '\0';
	if (strncmp(target, "/memfd:", 7) == 0)
		return "memory";
	if (strncmp(target, dir, strlen(dir)) == 0)
		return "disk";
	return target;
}

/* one_message - write, check, and close (into the spare) */
static void
one_message(const char *what, size_t len, size_t step, unsigned seed, const char *want_where)
{
	struct spool *sp = spool_open(dir);

	if (!ok(sp != NULL, "%s: spool_open", what))
		return;
	ok(write_message(sp, len, step, seed) == 0, "%s: written and finished", what);
	is_int(spool_size(sp), (long long)len, "%s: spool_size", what);
	ok(reads_back(sp, len, seed), "%s: pread gives the same %zu bytes", what, len);
	is_str(where(sp), want_where, "%s: the file is in %s", what, want_where);
	spool_close(sp);
}

/* named_files - entries other than . and .. in d, or -1 */
static int
named_files(const char *d)
{
	DIR *dd = opendir(d);
	struct dirent *de;
	int n = 0;

	if (dd == NULL)
		return -1;
	while ((de = readdir(dd)) != NULL)
		if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
			n++;
	closedir(dd);
	return n;
}

int
main(void)
{
	char missing[sizeof(dir) + 16];
	struct spool *sp;

	if (mkdtemp(dir) == NULL) {
		perror("mkdtemp");
		return 2;
	}

	one_message("small message", 4098, 1000, 1, "memory");
	one_message("empty message", 0, 1, 2, "memory");
	one_message("one byte under the buffer", BUFFER - 1, 4096, 3, "memory");
	/* the memory file is reused without being emptied: a shorter message
	 * must still end where it ends, with nothing of the one before */
	one_message("shorter message after a longer one, both in memory", 1000, 333, 10, "memory");
	one_message("same length again", 1000, 1000, 11, "memory");
	one_message("longer again, still in memory", 3000, 1024, 12, "memory");
	one_message("exactly the buffer", BUFFER, 4096, 4, "disk");
	one_message("large message, written in odd pieces", 5 * BUFFER + 17, 9973, 5, "disk");
	/* after a large message the reused spool starts in memory again, and
	 * neither file shows any byte of the earlier, longer message */
	one_message("small message after a large one", 100, 7, 6, "memory");
	one_message("large message after a small one", 2 * BUFFER + 1, BUFFER, 7, "disk");
	one_message("short message after a large one", 10, 10, 8, "memory");

	/* nothing named is in spool_dir while a large message is spooled */
	sp = spool_open(dir);
	ok(sp != NULL && write_message(sp, 3 * BUFFER, BUFFER, 9) == 0, "a large message in use");
	is_int(named_files(dir), 0, "spool_dir holds no named file meanwhile");
	spool_close(sp);

	/* a spool_dir that cannot take files is found at spool_open(), not
	 * later in a large message (the memory file alone would not notice) */
	snprintf(missing, sizeof(missing), "%s/missing", dir);
	errno = 0;
	sp = spool_open(missing);
	ok(sp == NULL && errno == ENOENT, "spool_open in a missing directory fails with ENOENT (got %s)",
	   sp ? "a spool" : strerror(errno));
	spool_close(sp);
	if (!ok(rmdir(dir) == 0, "spool_dir is empty at the end"))
		printf("# rmdir %s: %s\n", dir, strerror(errno));
	return done_testing();
}
