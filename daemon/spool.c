/*
 * spool - per-worker spool file for the message being received
 *
 * See spool.h. The data is not fsync()ed: until posternd answers, the MTA
 * holds the message in its own queue, so a spool file lost in a crash costs
 * a retry, never a message. Quarantine, which does keep mail, syncs.
 *
 * A worker keeps its last spool file for the next message (emptied with
 * ftruncate) instead of creating and dropping an inode per message: on ext4
 * that pair was a sixth of posternd's time in bench/.
 *
 * A message that fits in the write buffer (most mail) is written to an
 * anonymous memory file (memfd) instead, never to spool_dir: readers still
 * get a descriptor to pread, and the file system's write and truncate paths
 * (ext4's journal among them) drop out of the per-message cost. A message
 * that fills the buffer goes to the disk file from its first byte, so the
 * memory a worker holds this way is bounded by SPOOL_WBUF_SIZE. The disk
 * file is made up front, as before: a spool_dir that cannot take files is
 * still found at spool_open(), not in the middle of a large message.
 *
 * The memory file is not emptied between messages: the next one writes over
 * the same pages, and spool_finish() cuts off whatever an earlier, longer
 * message left past its end. Emptying it freed every page only for the next
 * message to allocate and zero them again (about 1 % of the machine in
 * bench/scanners); readers still see exactly the message, up to end of file.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "spool.h"
#include "util/proc.h"
#include "util/sweep.h"
#include "util/xalloc.h"

#define SPOOL_WBUF_SIZE	(64 * 1024)	/* one write(2) per 64 KiB received */
#define SPOOL_PREFIX	"tmp."		/* names used where O_TMPFILE is missing */

struct spool {
	int	fd;		/* the file in use: mem_fd or disk_fd */
	int	disk_fd;	/* the nameless file in dir, owned */
	int	mem_fd;		/* the memory file, owned; -1 where memfd is missing */
	char   *dir;		/* the directory it lives in, owned */
	pid_t	owner;		/* the process that made it: a spare never crosses a fork */
	char   *wbuf;		/* bytes not yet written, owned */
	size_t	wlen;		/* ... how many */
	off_t	written;	/* bytes of this message in fd */
	off_t	mem_len;	/* length of the memory file: bytes of an earlier message may lie past written */
	off_t	size;		/* bytes accepted so far */
	int	error;		/* errno of the first failed write, sticky */
};

/* open_named - fallback for file systems without O_TMPFILE: create, then unlink */
static int
open_named(const char *dir)
{
	char *path = xasprintf("%s/" SPOOL_PREFIX "%ld.XXXXXX", dir, (long)getpid());
	int fd = mkostemp(path, O_CLOEXEC);

	if (fd >= 0)
		unlink(path);
	free(path);
	return fd;
}

/*
 * An emptied spool kept for the next message. It must never be shared: a
 * spare the master made before fork() would be the same open file in every
 * worker, so a spare made by another process is dropped, not reused.
 */
static struct spool *spare;

/* spool_open - a fresh, nameless spool file in dir; NULL with errno on failure */
struct spool *
spool_open(const char *dir)
{
	struct spool *sp;
	int fd;

	if (spare != NULL && (spare->owner != self_pid() || strcmp(spare->dir, dir) != 0)) {
		sp = spare;
		spare = NULL;
		sp->error = EBADF;	/* so that spool_close() frees it */
		spool_close(sp);
	}
	if (spare != NULL) {
		sp = spare;
		spare = NULL;
		return sp;
	}

	fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (fd < 0 && (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL))
		fd = open_named(dir);
	if (fd < 0)
		return NULL;
	sp = xcalloc(1, sizeof(*sp));
	sp->disk_fd = fd;
	sp->mem_fd = memfd_create("postern-spool", MFD_CLOEXEC);	/* -1: disk only */
	sp->fd = sp->mem_fd >= 0 ? sp->mem_fd : sp->disk_fd;
	sp->dir = xstrdup(dir);
	sp->owner = self_pid();
	sp->wbuf = xmalloc(SPOOL_WBUF_SIZE);
	return sp;
}

/* put - write len bytes at the end of fd; 0, or an errno value */
static int
put(struct spool *sp, const char *data, size_t len)
{
	while (len > 0) {
		ssize_t n = pwrite(sp->fd, data, len, sp->written);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? errno : ENOSPC;
		data += n;
		len -= (size_t)n;
		sp->written += n;
	}
	if (sp->fd == sp->mem_fd && sp->written > sp->mem_len)
		sp->mem_len = sp->written;
	return 0;
}

/* cut_memory_file - the memory file ends where this message does */
static int
cut_memory_file(struct spool *sp)
{
	if (sp->mem_len <= sp->written)
		return 0;
	if (ftruncate(sp->mem_fd, sp->written) < 0)
		return errno;
	sp->mem_len = sp->written;
	return 0;
}

/*
 * to_disk - the message outgrows memory: later bytes go to the disk file
 *
 * Only spool_finish() writes to the memory file, so this message has
 * normally nothing in it yet; whatever it has is copied first all the same.
 * The memory file keeps its pages for the next message.
 */
static int
to_disk(struct spool *sp)
{
	char chunk[8192];
	off_t have = sp->written, off = 0;
	int err = 0;

	sp->fd = sp->disk_fd;
	sp->written = 0;
	while (off < have && err == 0) {
		size_t want = have - off < (off_t)sizeof(chunk) ? (size_t)(have - off) : sizeof(chunk);
		ssize_t n = pread(sp->mem_fd, chunk, want, off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? errno : EIO;
		err = put(sp, chunk, (size_t)n);
		off += n;
	}
	return err;
}

/*
 * flush - write the buffer out; a failure is remembered, later writes are no-ops
 *
 * final: the message is complete (spool_finish), so a message that never
 * filled the buffer may stay in the memory file.
 */
static int
flush(struct spool *sp, bool final)
{
	if (sp->error == 0 && !final && sp->fd == sp->mem_fd)
		sp->error = to_disk(sp);
	if (sp->error == 0)
		sp->error = put(sp, sp->wbuf, sp->wlen);
	if (sp->error == 0 && final && sp->fd == sp->mem_fd)
		sp->error = cut_memory_file(sp);
	sp->wlen = 0;
	if (sp->error != 0) {
		errno = sp->error;
		return -1;
	}
	return 0;
}

/* spool_write - append bytes; -1 with errno once any write failed */
int
spool_write(struct spool *sp, const void *data, size_t len)
{
	const char *p = data;

	if (sp->error != 0) {
		errno = sp->error;
		return -1;
	}
	sp->size += (off_t)len;
	while (len > 0) {
		size_t room = SPOOL_WBUF_SIZE - sp->wlen, take = len < room ? len : room;

		memcpy(sp->wbuf + sp->wlen, p, take);
		sp->wlen += take;
		p += take;
		len -= take;
		if (sp->wlen == SPOOL_WBUF_SIZE && flush(sp, false) < 0)
			return -1;
	}
	return 0;
}

/* spool_finish - flush what is buffered; -1 with errno if anything was lost */
int
spool_finish(struct spool *sp)
{
	return flush(sp, true);
}

/* spool_fd - the descriptor, lent: read it with pread, never close it */
int
spool_fd(const struct spool *sp)
{
	return sp->fd;
}

/* spool_size - bytes written */
off_t
spool_size(const struct spool *sp)
{
	return sp->size;
}

/*
 * spool_close - keep it for the next message, or close and free; returns NULL
 *
 * The disk file is emptied (its blocks are given back); the memory file is
 * left as it is, for spool_finish() to cut (see the top of this file).
 */
struct spool *
spool_close(struct spool *sp)
{
	if (sp == NULL)
		return NULL;
	if (spare == NULL && sp->error == 0 &&
	    (sp->written == 0 || sp->fd == sp->mem_fd || ftruncate(sp->fd, 0) == 0)) {
		sp->fd = sp->mem_fd >= 0 ? sp->mem_fd : sp->disk_fd;
		sp->wlen = 0;
		sp->written = 0;
		sp->size = 0;
		spare = sp;
		return NULL;
	}
	close(sp->disk_fd);
	if (sp->mem_fd >= 0)
		close(sp->mem_fd);
	free(sp->dir);
	free(sp->wbuf);
	free(sp);
	return NULL;
}

/* has_prefix - a name that starts with arg (a string) */
static bool
has_prefix(const char *name, void *arg)
{
	return strncmp(name, arg, strlen(arg)) == 0;
}

/*
 * spool_clean_dir - remove named leftovers of the fallback path
 *
 * pid > 0: only those of that (dead) worker; pid 0: all of them (start-up,
 * when no worker of ours runs). Returns how many were removed.
 */
int
spool_clean_dir(const char *dir, pid_t pid)
{
	char prefix[64];

	if (pid > 0)
		snprintf(prefix, sizeof(prefix), SPOOL_PREFIX "%ld.", (long)pid);
	else
		snprintf(prefix, sizeof(prefix), SPOOL_PREFIX);
	return sweep_dir(dir, has_prefix, prefix, false);
}
