/*
 * spool - per-worker spool file for the message being received
 *
 * spool_open() creates a file in the spool directory that has no name at all
 * (O_TMPFILE, or a name unlinked at once where the file system lacks it): a
 * worker that is killed mid-message leaves nothing behind, and nothing else
 * can open it. spool_write() appends through a 64 KiB buffer; spool_finish()
 * flushes; spool_fd() lends the descriptor to readers (reinject, scanners),
 * the spool keeps owning it. spool_close() frees everything. A message that
 * fits in the buffer is kept in an anonymous memory file instead (see
 * spool.c); readers see a descriptor either way and read it with pread.
 *
 * Errors: -1 with errno (ENOSPC, EIO...); nothing here logs.
 */
#ifndef POSTERN_SPOOL_H
#define POSTERN_SPOOL_H

#include <stddef.h>
#include <sys/types.h>

struct spool;

struct spool *spool_open(const char *dir);
int spool_write(struct spool *sp, const void *data, size_t len);
int spool_finish(struct spool *sp);
int spool_fd(const struct spool *sp);
off_t spool_size(const struct spool *sp);
struct spool *spool_close(struct spool *sp);
int spool_clean_dir(const char *dir, pid_t pid);

#endif
