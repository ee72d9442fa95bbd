/*
 * quarantine - keep a message the policy quarantined; list, show, release, delete
 *
 * quarantine_store() writes one file per message, named by its mail id, in the
 * quarantine directory: an envelope block (listener, sender, recipients,
 * reason, time), an empty line, then the message exactly as it would have
 * been reinjected (our added header lines, then the spooled bytes). It is
 * written under a temporary name, fsync()ed, renamed into place, and the
 * directory fsync()ed: once quarantine_store() returned 0 the message
 * survives a crash, and only then may our client hear 250. A half-written
 * file is never visible under a mail id.
 *
 * quarantine_open() reads the envelope back and returns an open descriptor
 * (the caller closes it) with e->data_off/data_len locating the message, for `postern release` (which reinjects it) and
 * `postern quarantine show`. quarantine_list() walks the directory.
 *
 * Errors: -1 with errno and, where given, an error string the caller frees.
 * Nothing here logs. See also: postern.c (the commands), reinject.c.
 */
#ifndef POSTERN_QUARANTINE_H
#define POSTERN_QUARANTINE_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <time.h>

#include "message.h"

struct quarantine_entry {
	char	id[16];			/* the mail id, also the file name */
	char   *listener;		/* listener that quarantined it, owned */
	char   *sender;			/* envelope sender without <>, owned */
	char  **rcpts;			/* envelope recipients, owned */
	size_t	nrcpts;			/* their count */
	char   *reason;			/* why (the rule's words), owned */
	time_t	when;			/* when it was stored */
	off_t	data_off;		/* where the message starts in the file */
	off_t	data_len;		/* its length */
};

int quarantine_store(const char *dir, const struct message *m, const char *listener,
		     const char *const *rcpts, size_t nrcpts, const char *reason,
		     const char *prefix, size_t prefix_len, char **path_r);
int quarantine_open(const char *dir, const char *id, struct quarantine_entry *e, char **error_r);
void quarantine_entry_release(struct quarantine_entry *e);
int quarantine_list(const char *dir, int (*each)(const struct quarantine_entry *e, void *arg),
		    void *arg, char **error_r);
int quarantine_delete(const char *dir, const char *id);
int quarantine_lock(const char *dir, const struct quarantine_entry *e, int fd);
int quarantine_keep_rcpts(const char *dir, const struct quarantine_entry *e, int fd,
			  const char *const *rcpts, size_t nrcpts);
bool quarantine_id_valid(const char *id);
int quarantine_clean_tmp(const char *dir, pid_t pid);

#endif
