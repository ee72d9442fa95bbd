/*
 * quarantine - keep a message the policy quarantined; list, show, release, delete
 *
 * See quarantine.h. A quarantined message is one file, DIR/<mail id>, mode
 * 0600, in this format (version 1):
 *
 *	postern-quarantine 1
 *	listener NAME
 *	from <SENDER>
 *	to <RCPT>			one line per recipient, at least one
 *	reason TEXT
 *	time UNIXSECONDS
 *					an empty line ends the envelope
 *	MESSAGE				our added header lines, then the spooled bytes
 *
 * Envelope lines end in a bare LF and appear exactly in this order. NAME,
 * SENDER, RCPT and TEXT are written with every control byte (CR and LF
 * included), DEL and backslash as \xHH, so each stays on one line and reads
 * back byte for byte; anything else (UTF-8 included) is written as is. The
 * message after the empty line is not touched at all (CRLF kept), so it can
 * be reinjected exactly as it would have been.
 *
 * The envelope is bounded (QUARANTINE_ENVELOPE_MAX): quarantine_store()
 * refuses to write one that quarantine_open() would refuse to read, and the
 * reader never takes more than that from a file whatever the file holds.
 * Files are created as DIR/.tmp.<id>.<pid>, which no reader mistakes for an
 * entry (a mail id has no dot), then renamed.
 *
 * Errors: -1 with errno (EINVAL: bad id or arguments; EBADMSG: malformed
 * file; EMSGSIZE: envelope too large) and, where asked, *error_r, which the
 * caller frees. Nothing here logs.
 * See also: postern.c (the commands), reinject.c (release delivers through it).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "quarantine.h"
#include "spool.h"
#include "util/buf.h"
#include "util/digits.h"
#include "util/sweep.h"
#include "util/xalloc.h"

#define QUARANTINE_MAGIC	"postern-quarantine 1"
#define QUARANTINE_ENVELOPE_MAX	(4 * 1024 * 1024) /* envelope bytes, blank line included: the
						 * reader's bound on what a file may make it
						 * allocate; holds max_recipients' bound of
						 * 1000 recipients of 512 bytes, escaped, many
						 * times over */
#define QUARANTINE_ID_MAX	15		/* struct quarantine_entry's id[16] */
#define QUARANTINE_TMP_PREFIX	".tmp."		/* temporary names: never a valid id */
#define COPY_CHUNK		(64 * 1024)	/* spool bytes copied per pread */

/* entries collected by quarantine_list() before they are sorted */
struct entry_list {
	struct quarantine_entry *v;	/* owned array, each entry owning its strings */
	size_t	n;			/* entries in use */
	size_t	size;			/* entries allocated */
};

/* quarantine_id_valid - 1..15 characters of [0-9A-Za-z]: safe as a file name */
bool
quarantine_id_valid(const char *id)
{
	size_t n;

	if (id == NULL)
		return false;
	for (n = 0; id[n] != '\0'; n++) {
		char c = id[n];

		/* not isalnum(): the locale must not widen what a file name may hold */
		if (n == QUARANTINE_ID_MAX ||
		    !((c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')))
			return false;
	}
	return n > 0;
}

/* quarantine_entry_release - free what an entry owns and clear it */
void
quarantine_entry_release(struct quarantine_entry *e)
{
	free(e->listener);
	free(e->sender);
	for (size_t i = 0; i < e->nrcpts; i++)
		free(e->rcpts[i]);
	free(e->rcpts);
	free(e->reason);
	memset(e, 0, sizeof(*e));
}

/* append_field - s with control bytes, DEL and backslash as \xHH (one line, reversible) */
static void
append_field(struct buf *out, const char *s)
{
	for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
		if (*p < 0x20 || *p == 0x7f || *p == '\\')
			buf_appendf(out, "\\x%02x", *p);
		else
			buf_append(out, p, 1);
	}
}

/* write_all - write len bytes, retrying short writes; -1 with errno */
static int
write_all(int fd, const void *data, size_t len)
{
	const char *p = data;

	while (len > 0) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* copy_spool - the spool's bytes onto fd; -1 with errno (EIO if the spool is short) */
static int
copy_spool(int fd, const struct spool *sp)
{
	char *chunk = xmalloc(COPY_CHUNK);
	off_t off = 0, size = spool_size(sp);
	int rc = 0;

	while (off < size) {
		size_t want = size - off < COPY_CHUNK ? (size_t)(size - off) : COPY_CHUNK;
		ssize_t n = pread(spool_fd(sp), chunk, want, off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			/* short: spool_finish() was not called, or the file shrank */
			if (n == 0)
				errno = EIO;
			rc = -1;
			break;
		}
		if (write_all(fd, chunk, (size_t)n) < 0) {
			rc = -1;
			break;
		}
		off += n;
	}
	free(chunk);
	return rc;
}

/* sync_dir - fsync a directory so that a name created or removed in it lasts */
static int
sync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int rc, saved;

	if (fd < 0)
		return -1;
	rc = fsync(fd);
	saved = errno;
	close(fd);
	errno = saved;
	return rc;
}

/*
 * make_dir - create the quarantine directory (0700) unless it exists
 *
 * Only the last component is created: its parent is the spool directory or
 * something the administrator chose. A directory we create is made durable
 * by syncing its parent.
 */
static int
make_dir(const char *dir)
{
	struct stat st;
	char *parent;
	int rc;

	if (mkdir(dir, 0700) < 0) {
		if (errno != EEXIST)
			return -1;
		if (stat(dir, &st) < 0)
			return -1;
		if (!S_ISDIR(st.st_mode)) {
			errno = ENOTDIR;
			return -1;
		}
		return 0;
	}
	parent = xasprintf("%s/..", dir);
	rc = sync_dir(parent);
	free(parent);
	return rc;
}

/* build_envelope - the envelope block, empty line included; -1 (EMSGSIZE) when too big */
static int
build_envelope(struct buf *out, const char *listener, const char *sender,
	       const char *const *rcpts, size_t nrcpts, const char *reason, time_t when)
{
	buf_appends(out, QUARANTINE_MAGIC "\nlistener ");
	append_field(out, listener);
	buf_appends(out, "\nfrom <");
	append_field(out, sender);
	buf_appends(out, ">\n");
	for (size_t i = 0; i < nrcpts; i++) {
		buf_appends(out, "to <");
		append_field(out, rcpts[i]);
		buf_appends(out, ">\n");
	}
	buf_appends(out, "reason ");
	append_field(out, reason);
	buf_appendf(out, "\ntime %lld\n\n", (long long)when);
	if (out->len > QUARANTINE_ENVELOPE_MAX) {
		errno = EMSGSIZE;
		return -1;
	}
	return 0;
}

/*
 * quarantine_store - write m to DIR/<m->id>, durably; see quarantine.h
 *
 * rcpts are the recipients that were quarantined (all of them or some);
 * prefix is what goes before the spooled bytes (our added header lines),
 * and the caller has called spool_finish() on m->spool. On success
 * *path_r (if given) is the file's path, which the caller frees. On failure
 * nothing is left behind under any name.
 */
int
quarantine_store(const char *dir, const struct message *m, const char *listener,
		 const char *const *rcpts, size_t nrcpts, const char *reason,
		 const char *prefix, size_t prefix_len, char **path_r)
{
	struct buf env;
	char *tmp = NULL, *path = NULL;
	int fd = -1, rc = -1, saved;

	buf_init(&env, 0);
	if (!quarantine_id_valid(m->id) || listener == NULL || rcpts == NULL || nrcpts == 0) {
		errno = EINVAL;
		goto out;
	}
	for (size_t i = 0; i < nrcpts; i++)
		if (rcpts[i] == NULL) {
			errno = EINVAL;
			goto out;
		}
	if (build_envelope(&env, listener, m->sender ? m->sender : "", rcpts, nrcpts,
			   reason ? reason : "", time(NULL)) < 0)
		goto out;
	if (make_dir(dir) < 0)
		goto out;
	tmp = xasprintf("%s/" QUARANTINE_TMP_PREFIX "%s.%ld", dir, m->id, (long)getpid());
	path = xasprintf("%s/%s", dir, m->id);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		goto out;
	if (fchmod(fd, 0600) < 0 ||		/* whatever the umask said */
	    write_all(fd, env.ptr, env.len) < 0 ||
	    (prefix_len > 0 && write_all(fd, prefix, prefix_len) < 0) ||
	    (m->spool != NULL && copy_spool(fd, m->spool) < 0) ||
	    fsync(fd) < 0)
		goto out;
	saved = close(fd);		/* NFS may report a failed write only here */
	fd = -1;
	if (saved < 0)
		goto out;
	/*
	 * Never replace an entry that exists: mail ids are random, so a clash
	 * is a bug, and overwriting would lose a message. XXX where the file
	 * system cannot refuse (EINVAL), plain rename() replaces after all.
	 */
	if (renameat2(AT_FDCWD, tmp, AT_FDCWD, path, RENAME_NOREPLACE) < 0) {
		if (errno != EINVAL && errno != ENOSYS)
			goto out;
		if (rename(tmp, path) < 0)
			goto out;
	}
	free(tmp);
	tmp = NULL;			/* renamed: nothing to unlink any more */
	if (sync_dir(dir) < 0) {
		/* not known to be durable: undo, so the caller's 4xx tells the truth */
		saved = errno;
		unlink(path);
		errno = saved;
		goto out;
	}
	if (path_r != NULL) {
		*path_r = path;
		path = NULL;
	}
	rc = 0;
out:
	saved = errno;
	if (fd >= 0)
		close(fd);
	if (tmp != NULL)
		unlink(tmp);
	free(tmp);
	free(path);
	buf_release(&env);
	errno = saved;
	return rc;
}

/* decode_field - undo append_field on (p, len); NULL on a raw control byte or bad escape */
static char *
decode_field(const char *p, size_t len)
{
	char *out = xmalloc(len + 1), *o = out;

	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)p[i];

		if (c < 0x20 || c == 0x7f)
			goto bad;
		if (c == '\\') {
			int hi, lo;

			if (len - i < 4 || p[i + 1] != 'x' || (hi = digit_hex((unsigned char)p[i + 2])) < 0 ||
			    (lo = digit_hex((unsigned char)p[i + 3])) < 0 || (hi == 0 && lo == 0))
				goto bad;
			*o++ = (char)(hi * 16 + lo);
			i += 3;
		} else
			*o++ = (char)c;
	}
	*o = '\0';
	return out;
bad:
	free(out);
	return NULL;
}

/* decode_path - "<escaped>" to the address inside; NULL if malformed */
static char *
decode_path(const char *p, size_t len)
{
	if (len < 2 || p[0] != '<' || p[len - 1] != '>')
		return NULL;
	return decode_field(p + 1, len - 2);
}

/* decode_time - decimal seconds, digits only, no overflow; -1 if malformed */
static int
decode_time(const char *p, size_t len, time_t *when_r)
{
	long long v = 0;

	if (len == 0 || len > 19)
		return -1;
	for (size_t i = 0; i < len; i++) {
		if (p[i] < '0' || p[i] > '9')
			return -1;
		if (v > (LLONG_MAX - (p[i] - '0')) / 10)
			return -1;
		v = v * 10 + (p[i] - '0');
	}
	*when_r = (time_t)v;
	return 0;
}

/* keyword - does line (p, len) start with word and a space; advances past them */
static bool
keyword(const char **p, size_t *len, const char *word)
{
	size_t n = strlen(word);

	if (*len <= n || memcmp(*p, word, n) != 0 || (*p)[n] != ' ')
		return false;
	*p += n + 1;
	*len -= n + 1;
	return true;
}

/*
 * parse_envelope - read the envelope at the start of (buf, len) into e
 *
 * len is at most QUARANTINE_ENVELOPE_MAX, so an envelope whose empty line is
 * not within it is refused. Sets *data_off_r to the first byte after the
 * empty line. Returns 0, or -1 with *why_r (static text) and *line_r.
 */
static int
parse_envelope(const char *buf, size_t len, struct quarantine_entry *e, off_t *data_off_r,
	       const char **why_r, int *line_r)
{
	enum { WANT_MAGIC, WANT_LISTENER, WANT_FROM, WANT_TO, WANT_TO_OR_REASON, WANT_TIME,
	       WANT_END } want = WANT_MAGIC;
	size_t pos = 0;
	int lineno = 0;

	for (;;) {
		const char *p = buf + pos, *nl = memchr(p, '\n', len - pos);
		size_t n;
		char *v;

		lineno++;
		*line_r = lineno;
		if (nl == NULL) {
			*why_r = "envelope truncated or too long";
			return -1;
		}
		n = (size_t)(nl - p);
		pos += n + 1;
		switch (want) {
		case WANT_MAGIC:
			if (n != strlen(QUARANTINE_MAGIC) || memcmp(p, QUARANTINE_MAGIC, n) != 0) {
				*why_r = "not a postern quarantine file (version 1)";
				return -1;
			}
			want = WANT_LISTENER;
			break;
		case WANT_LISTENER:
			if (!keyword(&p, &n, "listener") || (e->listener = decode_field(p, n)) == NULL ||
			    e->listener[0] == '\0') {
				*why_r = "expected \"listener NAME\"";
				return -1;
			}
			want = WANT_FROM;
			break;
		case WANT_FROM:
			if (!keyword(&p, &n, "from") || (e->sender = decode_path(p, n)) == NULL) {
				*why_r = "expected \"from <address>\"";
				return -1;
			}
			want = WANT_TO;
			break;
		case WANT_TO:
		case WANT_TO_OR_REASON:
			if (want == WANT_TO_OR_REASON && keyword(&p, &n, "reason")) {
				if ((e->reason = decode_field(p, n)) == NULL) {
					*why_r = "malformed reason";
					return -1;
				}
				want = WANT_TIME;
				break;
			}
			if (!keyword(&p, &n, "to") || (v = decode_path(p, n)) == NULL) {
				*why_r = want == WANT_TO ? "expected \"to <address>\"" :
				    "expected \"to <address>\" or \"reason TEXT\"";
				return -1;
			}
			e->rcpts = xreallocarray(e->rcpts, e->nrcpts + 1, sizeof(*e->rcpts));
			e->rcpts[e->nrcpts++] = v;
			want = WANT_TO_OR_REASON;
			break;
		case WANT_TIME:
			if (!keyword(&p, &n, "time") || decode_time(p, n, &e->when) < 0) {
				*why_r = "expected \"time SECONDS\"";
				return -1;
			}
			want = WANT_END;
			break;
		case WANT_END:
			if (n != 0) {
				*why_r = "expected the empty line that ends the envelope";
				return -1;
			}
			*data_off_r = (off_t)pos;
			return 0;
		}
	}
}

/*
 * open_entry - open and parse DIR/<id> relative to dirfd (AT_FDCWD for a path)
 *
 * Returns the descriptor with e filled, or -1 with errno and *error_r.
 * The file must be a regular file; a symbolic link is refused.
 */
static int
open_entry(int dirfd, const char *dir, const char *id, struct quarantine_entry *e,
	   char **error_r)
{
	char *buf = NULL, *error = NULL, *path = xasprintf("%s/%s", dir, id);
	const char *why = NULL;
	struct stat st;
	size_t have = 0;
	off_t data_off = 0;
	int fd, line = 0, saved = 0;

	memset(e, 0, sizeof(*e));
	fd = openat(dirfd, dirfd == AT_FDCWD ? path : id, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		saved = errno;
		error = saved == ENOENT ? xasprintf("no quarantined message %s in %s", id, dir) :
		    xasprintf("cannot open %s: %s", path, strerror(saved));
		goto out;
	}
	if (fstat(fd, &st) < 0) {
		saved = errno;
		error = xasprintf("cannot stat %s: %s", path, strerror(saved));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		saved = EBADMSG;
		error = xasprintf("%s is not a regular file", path);
		goto out;
	}
	buf = xmalloc(QUARANTINE_ENVELOPE_MAX);
	while (have < QUARANTINE_ENVELOPE_MAX) {
		ssize_t n = pread(fd, buf + have, QUARANTINE_ENVELOPE_MAX - have, (off_t)have);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			saved = errno;
			error = xasprintf("cannot read %s: %s", path, strerror(saved));
			goto out;
		}
		if (n == 0)
			break;
		have += (size_t)n;
	}
	if (parse_envelope(buf, have, e, &data_off, &why, &line) < 0) {
		saved = EBADMSG;
		error = xasprintf("%s: line %d: %s", path, line, why);
		goto out;
	}
	memcpy(e->id, id, strlen(id) + 1);
	e->data_off = data_off;
	/* the file cannot be shorter than what was just read from it, unless truncated meanwhile */
	e->data_len = st.st_size > data_off ? st.st_size - data_off : 0;
out:
	if (error != NULL) {
		if (fd >= 0)
			close(fd);
		fd = -1;
		quarantine_entry_release(e);
		if (error_r != NULL)
			*error_r = error;
		else
			free(error);
		errno = saved;
	}
	free(buf);
	free(path);
	return fd;
}

/*
 * quarantine_open - the entry named id, with its envelope read; see quarantine.h
 *
 * id comes from a command line: anything but a valid mail id (a path, "..")
 * is refused before the file system sees it. Returns a descriptor the
 * caller closes; the message is e->data_len bytes at e->data_off.
 */
int
quarantine_open(const char *dir, const char *id, struct quarantine_entry *e, char **error_r)
{
	if (!quarantine_id_valid(id)) {
		char *shown = xstrndup(id ? id : "", 40);

		/* the id is the user's own input, but keep the terminal sane */
		for (char *s = shown; *s; s++)
			if ((unsigned char)*s < 0x20 || *s == 0x7f)
				*s = '?';
		memset(e, 0, sizeof(*e));
		if (error_r != NULL)
			*error_r = xasprintf("invalid mail id '%s' (1 to %d letters and digits)", shown,
					     QUARANTINE_ID_MAX);
		free(shown);
		errno = EINVAL;
		return -1;
	}
	return open_entry(AT_FDCWD, dir, id, e, error_r);
}

/* compare_entries - qsort order: oldest first, then by id */
static int
compare_entries(const void *a, const void *b)
{
	const struct quarantine_entry *x = a, *y = b;

	if (x->when != y->when)
		return x->when < y->when ? -1 : 1;
	return strcmp(x->id, y->id);
}

/*
 * quarantine_list - call each() for every readable entry, oldest first
 *
 * Temporary files, names that are not mail ids and files that do not parse
 * are skipped (`postern quarantine show ID` says what is wrong with one).
 * A directory that does not exist holds no entries. each() returns 0 to go
 * on; anything else stops the walk and is returned. -1 with *error_r when
 * the directory cannot be read. All entries are read before the first
 * call, so memory grows with the number of entries (about 200 bytes each
 * plus their strings); XXX a quarantine of millions would want a cursor.
 */
int
quarantine_list(const char *dir, int (*each)(const struct quarantine_entry *e, void *arg),
		void *arg, char **error_r)
{
	struct entry_list list = { 0 };
	struct dirent *de;
	DIR *d;
	int rc = 0, saved = 0;

	if ((d = opendir(dir)) == NULL) {
		if (errno == ENOENT)
			return 0;
		saved = errno;
		if (error_r != NULL)
			*error_r = xasprintf("cannot read %s: %s", dir, strerror(saved));
		errno = saved;
		return -1;
	}
	for (;;) {
		struct quarantine_entry e;
		int fd;

		errno = 0;
		if ((de = readdir(d)) == NULL) {
			if (errno != 0) {
				saved = errno;
				if (error_r != NULL)
					*error_r = xasprintf("cannot read %s: %s", dir, strerror(saved));
				rc = -1;
			}
			break;
		}
		if (!quarantine_id_valid(de->d_name))
			continue;	/* ".", "..", temporary files, strangers */
		fd = open_entry(dirfd(d), dir, de->d_name, &e, NULL);
		if (fd < 0)
			continue;	/* malformed, or deleted meanwhile */
		close(fd);
		if (list.n == list.size) {
			list.size = list.size ? list.size * 2 : 16;
			list.v = xreallocarray(list.v, list.size, sizeof(*list.v));
		}
		list.v[list.n++] = e;
	}
	closedir(d);
	if (rc == 0) {
		if (list.n > 1)
			qsort(list.v, list.n, sizeof(*list.v), compare_entries);
		for (size_t i = 0; i < list.n && rc == 0; i++)
			rc = each(&list.v[i], arg);
	}
	for (size_t i = 0; i < list.n; i++)
		quarantine_entry_release(&list.v[i]);
	free(list.v);
	if (rc == -1 && saved != 0)
		errno = saved;
	return rc;
}

/*
 * quarantine_lock - hold the entry open on fd for one release; see quarantine.h
 *
 * An exclusive flock(), not waited for: a second release of the same
 * message at the same time gets EBUSY instead of delivering it again.
 * Then the name must still be this file: a release that rewrote the entry
 * (quarantine_keep_rcpts) renamed a new file over it, and whoever opened
 * the old one before gets ESTALE and must open it again.
 */
int
quarantine_lock(const char *dir, const struct quarantine_entry *e, int fd)
{
	struct stat by_fd, by_name;
	char *path = xasprintf("%s/%s", dir, e->id);
	int rc = 0;

	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		if (errno == EWOULDBLOCK)
			errno = EBUSY;
		rc = -1;
	} else if (fstat(fd, &by_fd) < 0 || stat(path, &by_name) < 0 ||
		   by_fd.st_ino != by_name.st_ino || by_fd.st_dev != by_name.st_dev) {
		errno = ESTALE;
		rc = -1;
	}
	free(path);
	return rc;
}

/*
 * quarantine_keep_rcpts - rewrite the entry open on fd with only rcpts left in it
 *
 * After a release that delivered to some recipients, so that a later one
 * cannot deliver to them again. The same envelope but for the recipients,
 * the same message bytes; written like quarantine_store() (temporary name,
 * fsync, rename, directory fsync), but replacing the entry, whose lock the
 * caller holds. -1 with errno: the old entry is then still there, whole.
 */
int
quarantine_keep_rcpts(const char *dir, const struct quarantine_entry *e, int fd,
		      const char *const *rcpts, size_t nrcpts)
{
	struct buf env;
	char *tmp = NULL, *path = NULL, *chunk = NULL;
	off_t off = 0;
	int out = -1, rc = -1, saved;

	buf_init(&env, 0);
	if (nrcpts == 0 || build_envelope(&env, e->listener, e->sender, rcpts, nrcpts, e->reason,
					  e->when) < 0) {
		if (nrcpts == 0)
			errno = EINVAL;
		goto out;
	}
	tmp = xasprintf("%s/" QUARANTINE_TMP_PREFIX "%s.%ld", dir, e->id, (long)getpid());
	path = xasprintf("%s/%s", dir, e->id);
	out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (out < 0 || fchmod(out, 0600) < 0 || write_all(out, env.ptr, env.len) < 0)
		goto out;
	chunk = xmalloc(64 * 1024);
	while (off < e->data_len) {
		off_t left = e->data_len - off;
		ssize_t n = pread(fd, chunk, left < 64 * 1024 ? (size_t)left : 64 * 1024,
				  e->data_off + off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (n == 0)
				errno = EIO;	/* shorter than when it was opened */
			goto out;
		}
		if (write_all(out, chunk, (size_t)n) < 0)
			goto out;
		off += n;
	}
	if (fsync(out) < 0)
		goto out;
	saved = close(out);
	out = -1;
	if (saved < 0 || rename(tmp, path) < 0)
		goto out;
	free(tmp);
	tmp = NULL;
	/* the rename is the new state; if it is not durable, a crash brings back the old one */
	rc = sync_dir(dir);
out:
	saved = errno;
	if (out >= 0)
		close(out);
	if (tmp != NULL)
		unlink(tmp);
	free(tmp);
	free(path);
	free(chunk);
	buf_release(&env);
	errno = saved;
	return rc;
}

/* quarantine_delete - remove the entry named id; -1 with errno (ENOENT: no such entry) */
int
quarantine_delete(const char *dir, const char *id)
{
	char *path;
	int rc;

	if (!quarantine_id_valid(id)) {
		errno = EINVAL;
		return -1;
	}
	path = xasprintf("%s/%s", dir, id);
	rc = unlink(path);
	free(path);
	if (rc == 0)
		rc = sync_dir(dir);	/* a deleted entry must not come back after a crash */
	return rc;
}

/* tmp_owner - the pid in a temporary name ".tmp.ID.PID", or 0 if it is not one */
static pid_t
tmp_owner(const char *name)
{
	const char *dot = strrchr(name, '.');
	char *end;
	long pid;

	if (strncmp(name, QUARANTINE_TMP_PREFIX, strlen(QUARANTINE_TMP_PREFIX)) != 0 ||
	    dot == NULL || dot < name + strlen(QUARANTINE_TMP_PREFIX))
		return 0;
	errno = 0;
	pid = strtol(dot + 1, &end, 10);
	if (errno != 0 || *end != '\0' || end == dot + 1 || pid <= 0 || pid > INT_MAX)
		return 0;
	return (pid_t)pid;
}

/* is_tmp_leftover - a temporary name of the process *arg, or (0) of one that is gone */
static bool
is_tmp_leftover(const char *name, void *arg)
{
	pid_t pid = *(const pid_t *)arg, owner = tmp_owner(name);

	if (owner == 0 || (pid > 0 && owner != pid))
		return false;
	/* at start-up: only a process that no longer exists; alive, or not ours to ask about: keep */
	return pid > 0 || (kill(owner, 0) < 0 && errno == ESRCH);
}

/*
 * quarantine_clean_tmp - remove temporary files a dead process left in dir
 *
 * A process killed between creating ".tmp.ID.PID" and renaming it leaves
 * the file behind, with a whole message in it. pid > 0: the files of that
 * process (a worker the master saw die); pid 0: those of every process that
 * no longer exists (start-up; a `postern release` running meanwhile keeps
 * its own). Returns how many were removed.
 */
int
quarantine_clean_tmp(const char *dir, pid_t pid)
{
	return sweep_dir(dir, is_tmp_leftover, &pid, false);
}
