/*
 * quarantine_admin - release, quarantine list/show/delete (see quarantine_admin.h)
 *
 * `release` delivers a quarantined message to the `forward` address of the
 * listener that quarantined it, through the same reinject.c code as the
 * daemon, and deletes the file only once forward accepted every recipient
 * of it. Everything that came from mail (addresses, reasons) is printed
 * with its control bytes escaped: an administrator's terminal is no place
 * for a sender's escape sequences.
 *
 * Exit status, as the command's: 0 done, 1 failed (a "postern: ..." line
 * on io->err), 2 usage.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "message.h"
#include "quarantine.h"
#include "quarantine_admin.h"
#include "reinject.h"
#include "spool.h"
#include "util/esc.h"
#include "util/xalloc.h"

#define COPY_CHUNK	(64 * 1024)	/* bytes per pread when copying a message */

/* qadmin_is_command - does a command line starting with word belong here */
bool
qadmin_is_command(const char *word)
{
	return strcmp(word, "release") == 0 || strcmp(word, "quarantine") == 0;
}

/* has_control - any byte below 0x20 or DEL: no address or id has one */
static bool
has_control(const char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return true;
	return false;
}

/* usage_error - "postern: why" on err; returns 2, the usage status */
static int
usage_error(FILE *err, const char *why)
{
	fprintf(err, "postern: %s\n", why);
	return 2;
}

/* parse_release - "release" MAIL_ID [--rcpt ADDR]... [--keep] */
static int
parse_release(int argc, char **argv, struct qadmin_req *r, FILE *err)
{
	r->rcpts = xreallocarray(NULL, (size_t)argc + 1, sizeof(*r->rcpts));
	for (int i = 0; i < argc; i++) {
		const char *rcpt = NULL;

		if (strcmp(argv[i], "--keep") == 0)
			r->keep = true;
		else if (strcmp(argv[i], "--rcpt") == 0) {
			if (i + 1 == argc)
				return usage_error(err, "--rcpt needs an address");
			rcpt = argv[++i];
		} else if (strncmp(argv[i], "--rcpt=", 7) == 0)
			rcpt = argv[i] + 7;
		else if (argv[i][0] == '-' && argv[i][1] != '\0') {
			char *e = esc_logs(argv[i]);

			fprintf(err, "postern: unknown option '%s'\n", e);
			free(e);
			return 2;
		} else if (r->id != NULL)
			return usage_error(err, "one MAIL_ID at a time");
		else
			r->id = argv[i];
		if (rcpt != NULL) {
			if (*rcpt == '\0' || has_control(rcpt))
				return usage_error(err, "--rcpt needs an address without control characters");
			r->rcpts[r->nrcpts++] = rcpt;
		}
	}
	return 0;
}

/*
 * qadmin_parse - the words after "postern": release ..., quarantine list|show|delete ...
 *
 * Returns 0 with *r filled (release it with qadmin_req_release), or 2 with
 * the reason on err.
 */
int
qadmin_parse(int argc, char **argv, struct qadmin_req *r, FILE *err)
{
	const char *sub = argc >= 2 ? argv[1] : "";
	int rc;

	memset(r, 0, sizeof(*r));
	if (argc >= 1 && strcmp(argv[0], "release") == 0) {
		r->op = QADMIN_RELEASE;
		if ((rc = parse_release(argc - 1, argv + 1, r, err)) != 0)
			return rc;
	} else if (argc >= 2 && strcmp(argv[0], "quarantine") == 0 &&
		   (strcmp(sub, "list") == 0 || strcmp(sub, "show") == 0 || strcmp(sub, "delete") == 0)) {
		r->op = strcmp(sub, "list") == 0 ? QADMIN_LIST :
			strcmp(sub, "show") == 0 ? QADMIN_SHOW : QADMIN_DELETE;
		if (r->op == QADMIN_LIST && argc != 2)
			return usage_error(err, "no arguments expected");
		if (r->op != QADMIN_LIST) {
			if (argc > 3 || (argc == 3 && argv[2][0] == '-' && argv[2][1] != '\0'))
				return usage_error(err, "one MAIL_ID, no options");
			r->id = argc == 3 ? argv[2] : NULL;
		}
	} else
		return usage_error(err, "unknown command (release, quarantine list|show|delete)");
	if (r->op != QADMIN_LIST) {
		if (r->id == NULL)
			return usage_error(err, "MAIL_ID is missing");
		if (!quarantine_id_valid(r->id))
			return usage_error(err, "MAIL_ID is 1 to 15 letters and digits");
	}
	return 0;
}

/* qadmin_req_release - free what qadmin_parse allocated */
void
qadmin_req_release(struct qadmin_req *r)
{
	free(r->rcpts);
	r->rcpts = NULL;
	r->nrcpts = 0;
}

/* format_time - ISO 8601 UTC, "2026-01-31T12:00:00Z" */
static void
format_time(time_t when, char *out, size_t size)
{
	struct tm tm;

	if (gmtime_r(&when, &tm) == NULL || strftime(out, size, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		snprintf(out, size, "@%lld", (long long)when);
}

/* copy_range - len bytes at off of in onto out; -1 with errno */
static int
copy_range(int in, off_t off, off_t len, FILE *out)
{
	char *chunk = xmalloc(COPY_CHUNK);
	int rc = 0;

	while (len > 0) {
		ssize_t n = pread(in, chunk, len < COPY_CHUNK ? (size_t)len : COPY_CHUNK, off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (n == 0)
				errno = EIO;	/* the file is shorter than its envelope said */
			rc = -1;
			break;
		}
		if (fwrite(chunk, 1, (size_t)n, out) != (size_t)n) {
			rc = -1;
			break;
		}
		off += n;
		len -= n;
	}
	free(chunk);
	if (rc == 0 && fflush(out) != 0)
		rc = -1;
	return rc;
}

/* has_8bit - any byte >= 0x80 in s */
static bool
has_8bit(const char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s >= 0x80)
			return true;
	return false;
}

/*
 * spool_copy - a fresh spool holding the quarantined message's bytes
 *
 * The spool directory is tried first (it belongs to the user posternd runs
 * as, so root or that user can write it), then $TMPDIR and /tmp. A spool
 * file has no name, so the message never shows up in any of them.
 * *eightbit_r tells whether a byte >= 0x80 was seen (for BODY=8BITMIME).
 * Returns NULL with a message on err.
 */
static struct spool *
spool_copy(const struct config *cfg, int fd, const struct quarantine_entry *e, bool *eightbit_r,
	   FILE *err)
{
	const char *tmpdir = getenv("TMPDIR");
	const char *dirs[] = { cfg->spool_dir, tmpdir && *tmpdir ? tmpdir : "/tmp", "/tmp" };
	struct spool *sp = NULL;
	char *chunk = NULL;
	off_t off = 0;
	int first_errno = 0;

	*eightbit_r = false;
	for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]) && sp == NULL; i++) {
		sp = spool_open(dirs[i]);
		if (sp == NULL && first_errno == 0)
			first_errno = errno;
	}
	if (sp == NULL) {
		fprintf(err, "postern: cannot create a spool file in %s or a temporary directory: %s\n",
			cfg->spool_dir, strerror(first_errno));
		goto out;
	}
	chunk = xmalloc(COPY_CHUNK);
	while (off < e->data_len) {
		off_t left = e->data_len - off;
		ssize_t n = pread(fd, chunk, left < COPY_CHUNK ? (size_t)left : COPY_CHUNK,
				  e->data_off + off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0 || spool_write(sp, chunk, (size_t)n) < 0) {
			fprintf(err, "postern: cannot copy message %s: %s\n", e->id,
				n == 0 ? "file shorter than expected" : strerror(errno));
			sp = spool_close(sp);
			goto out;
		}
		for (ssize_t i = 0; i < n && !*eightbit_r; i++)
			*eightbit_r = (unsigned char)chunk[i] >= 0x80;
		off += n;
	}
	if (spool_finish(sp) < 0) {
		fprintf(err, "postern: cannot copy message %s: %s\n", e->id, strerror(errno));
		sp = spool_close(sp);
	}
out:
	free(chunk);
	return sp;
}

/* entry_rcpt - the entry's spelling of addr (compared without case), or NULL */
static const char *
entry_rcpt(const struct quarantine_entry *e, const char *addr)
{
	for (size_t i = 0; i < e->nrcpts; i++)
		if (strcmp(e->rcpts[i], addr) == 0)
			return e->rcpts[i];
	for (size_t i = 0; i < e->nrcpts; i++)
		if (strcasecmp(e->rcpts[i], addr) == 0)
			return e->rcpts[i];
	return NULL;
}

/*
 * build_message - the struct message release hands to reinject_message()
 *
 * It keeps the quarantine's mail id, so the Received: line reinject adds
 * ("... id MAILID") ties the released copy to the daemon's log line.
 * Version 1 of the quarantine format does not record BODY=, SMTPUTF8 or the
 * DSN parameters: BODY=8BITMIME and SMTPUTF8 are inferred from the bytes,
 * and NOTIFY/ORCPT/RET/ENVID are lost (forward's defaults apply).
 * XXX recording them in the envelope would make release exact.
 */
static struct message *
build_message(const struct quarantine_entry *e, const char *const *rcpts, size_t nrcpts,
	      struct spool *sp, bool eightbit)
{
	struct message *m = message_new();

	memcpy(m->id, e->id, sizeof(m->id));
	m->sender = xstrdup(e->sender);
	m->smtputf8 = has_8bit(e->sender);
	for (size_t i = 0; i < nrcpts; i++) {
		message_add_rcpt(m, rcpts[i]);
		m->smtputf8 = m->smtputf8 || has_8bit(rcpts[i]);
	}
	m->body = eightbit ? BODY_8BITMIME : BODY_UNSPECIFIED;
	m->spool = sp;
	m->size = (long)spool_size(sp);
	return m;
}

/*
 * pick_rcpts - the recipients a release delivers to: all, or the --rcpt ones
 *
 * Each --rcpt must be one of the entry's (compared without case, as the
 * administrator may not type it as the sender did); duplicates count once.
 * Returns the array (the caller frees it) with *n_r, or NULL with a
 * message on err.
 */
static const char **
pick_rcpts(const struct quarantine_entry *e, const struct qadmin_req *r, size_t *n_r, FILE *err)
{
	const char **rcpts = xreallocarray(NULL, e->nrcpts + 1, sizeof(*rcpts));
	size_t n = 0;

	if (r->nrcpts == 0)
		for (size_t i = 0; i < e->nrcpts; i++)
			rcpts[n++] = e->rcpts[i];
	for (size_t i = 0; i < r->nrcpts; i++) {
		const char *found = entry_rcpt(e, r->rcpts[i]);
		bool dup = false;

		if (found == NULL) {
			fprintf(err, "postern: %s: <", e->id);
			esc_fputs(r->rcpts[i], err);
			fprintf(err, "> is not a recipient of this message (see postern quarantine show "
				"%s)\n", e->id);
			free(rcpts);
			return NULL;
		}
		for (size_t j = 0; j < n; j++)
			dup = dup || rcpts[j] == found;
		if (!dup)
			rcpts[n++] = found;
	}
	*n_r = n;
	return rcpts;
}

/* report_delivery - one line per recipient; returns how many forward accepted */
static size_t
report_delivery(const struct message *m, FILE *out)
{
	size_t accepted = 0;

	for (size_t i = 0; i < m->nrcpts; i++) {
		const struct recipient *rc = &m->rcpts[i];

		accepted += rc->code / 100 == 2;
		fprintf(out, "<");
		esc_fputs(rc->addr, out);
		fprintf(out, ">: %s: ", rc->code / 100 == 2 ? "delivered" :
			rc->code / 100 == 5 ? "refused" : "deferred");
		esc_fputs(rc->reply && *rc->reply ? rc->reply : "no reply", out);
		fprintf(out, "\n");
	}
	return accepted;
}

/* still_owed - the entry's recipients this release did not deliver to; their count */
static size_t
still_owed(const struct quarantine_entry *e, const struct message *m, const char **owed)
{
	size_t n = 0;

	for (size_t i = 0; i < e->nrcpts; i++) {
		bool done = false;

		for (size_t j = 0; j < m->nrcpts && !done; j++)
			done = m->rcpts[j].code / 100 == 2 && strcmp(m->rcpts[j].addr, e->rcpts[i]) == 0;
		if (!done)
			owed[n++] = e->rcpts[i];
	}
	return n;
}

/* report_kept - --keep: the entry stays as it is; the exit status */
static int
report_kept(const struct quarantine_entry *e, const struct listener_cfg *lc,
	    const struct message *m, size_t accepted, const struct qadmin_io *io)
{
	if (accepted < m->nrcpts) {
		fprintf(io->err, "postern: %s: %zu of %zu recipient(s) not delivered; kept in "
			"quarantine (--keep)\n", e->id, m->nrcpts - accepted, m->nrcpts);
		return 1;
	}
	fprintf(io->out, "%s: released to %s; kept in quarantine (--keep)\n", e->id, lc->forward);
	return 0;
}

/*
 * settle_entry - after a release: delete the entry, or keep it for those still owed it
 *
 * The recipients forward accepted leave the entry (it is rewritten
 * without them), so a later release, --rcpt or not, cannot deliver to
 * them twice; when none is left, the entry is deleted. Returns the exit
 * status: 0 when every recipient asked for was delivered.
 */
static int
settle_entry(const struct config *cfg, const struct quarantine_entry *e, int fd,
	     const struct listener_cfg *lc, const struct message *m, size_t accepted,
	     const struct qadmin_io *io)
{
	const char **owed = xreallocarray(NULL, e->nrcpts + 1, sizeof(*owed));
	size_t nowed = still_owed(e, m, owed);
	int status = accepted == m->nrcpts ? 0 : 1;

	if (nowed == 0) {
		if (quarantine_delete(cfg->quarantine_dir, e->id) < 0) {
			/* delivered all the same: a second release would deliver twice */
			fprintf(io->err, "postern: %s: released to %s, but cannot delete it from %s: "
				"%s\n", e->id, lc->forward, cfg->quarantine_dir, strerror(errno));
			/* still 0: delivered, and a script that retries on 1 would deliver twice */
		} else
			fprintf(io->out, "%s: released to %s and deleted from quarantine\n", e->id,
				lc->forward);
	} else if (accepted > 0 &&
		   quarantine_keep_rcpts(cfg->quarantine_dir, e, fd, owed, nowed) < 0) {
		fprintf(io->err, "postern: %s: delivered to %zu recipient(s), but cannot take them "
			"out of the quarantine entry: %s; a later release would deliver to them "
			"again (name the others with --rcpt)\n", e->id, accepted, strerror(errno));
	} else if (status != 0)
		fprintf(io->err, "postern: %s: %zu of %zu recipient(s) not delivered; kept in "
			"quarantine for the %zu recipient(s) still owed it\n", e->id,
			m->nrcpts - accepted, m->nrcpts, nowed);
	else
		fprintf(io->out, "%s: released to %s for %zu of %zu recipient(s); kept in "
			"quarantine for the others\n", e->id, lc->forward, m->nrcpts, e->nrcpts);
	free(owed);
	return status;
}

/*
 * run_release - deliver a quarantined message to its listener's forward
 *
 * Every recipient of the entry, or only the --rcpt ones. Status 0 when
 * forward accepted all of those, 1 otherwise. Unless --keep was given, the
 * recipients forward accepted leave the entry and the entry goes once
 * nobody is left in it (settle_entry), so a release can be tried again
 * without delivering twice. The message goes out with the Received: lines
 * it had, plus one more that reinject adds for this delivery.
 */
static int
run_release(const struct config *cfg, const struct qadmin_req *r, const struct qadmin_io *io)
{
	struct quarantine_entry e = { 0 };
	const struct listener_cfg *lc;
	const char **rcpts = NULL;
	struct message *m = NULL;
	struct downstream *ds;
	struct client client = { 0 };
	struct spool *sp;
	size_t nrcpts = 0, accepted;
	char *error = NULL;
	bool eightbit;
	int fd, status = 1;

	if ((fd = quarantine_open(cfg->quarantine_dir, r->id, &e, &error)) < 0) {
		fprintf(io->err, "postern: %s\n", error);
		goto out;
	}
	if (quarantine_lock(cfg->quarantine_dir, &e, fd) < 0) {
		fprintf(io->err, "postern: %s: %s\n", e.id, errno == EBUSY ?
			"another release of it is running" : errno == ESTALE ?
			"it changed while it was being opened (released meanwhile?); try again" :
			strerror(errno));
		goto out;
	}
	if ((lc = config_listener(cfg, e.listener)) == NULL) {
		fprintf(io->err, "postern: %s: listener \"", r->id);
		esc_fputs(e.listener, io->err);
		fprintf(io->err, "\" that quarantined it is not in %s any more\n", cfg->path);
		goto out;
	}
	if ((rcpts = pick_rcpts(&e, r, &nrcpts, io->err)) == NULL ||
	    (sp = spool_copy(cfg, fd, &e, &eightbit, io->err)) == NULL)
		goto out;
	m = build_message(&e, rcpts, nrcpts, sp, eightbit);
	/* what our Received: line names as the client: this command, on this host */
	snprintf(client.ip, sizeof(client.ip), "127.0.0.1");
	client.helo = xstrdup("quarantine-release");
	ds = downstream_new();
	reinject_message(ds, cfg, lc, &client, m);
	downstream_free(ds);
	accepted = report_delivery(m, io->out);
	if (io->who != NULL)
		log_info("quarantine: %s: release to %s by %s: %zu of %zu recipient(s) delivered", e.id,
			 lc->forward, io->who, accepted, m->nrcpts);
	status = r->keep ? report_kept(&e, lc, m, accepted, io) :
		 settle_entry(cfg, &e, fd, lc, m, accepted, io);
out:
	if (fd >= 0)
		close(fd);
	client_release(&client);
	message_free(m);
	quarantine_entry_release(&e);
	free(error);
	free(rcpts);
	return status;
}

/* list_state - what run_list's callback needs */
struct list_state {
	FILE   *out;
	size_t	entries;		/* lines printed */
};

/* print_entry - one tab-separated line of `postern quarantine list` */
static int
print_entry(const struct quarantine_entry *e, void *arg)
{
	struct list_state *st = arg;
	FILE *out = st->out;
	char when[32];

	format_time(e->when, when, sizeof(when));
	fprintf(out, "%s\t%s\t", e->id, when);
	esc_fputs(e->listener, out);
	fprintf(out, "\t%lld\t<", (long long)e->data_len);
	esc_fputs(e->sender, out);
	fprintf(out, ">\t");
	for (size_t i = 0; i < e->nrcpts; i++) {
		fprintf(out, "%s<", i ? "," : "");
		esc_fputs(e->rcpts[i], out);
		fprintf(out, ">");
	}
	fprintf(out, "\t");
	esc_fputs(e->reason, out);
	fprintf(out, "\n");
	st->entries++;
	return 0;
}

/* run_list - one line per entry: id, time, listener, size, sender, recipients, reason */
static int
run_list(const struct config *cfg, const struct qadmin_io *io)
{
	struct list_state st = { io->out, 0 };
	char *error = NULL;

	if (quarantine_list(cfg->quarantine_dir, print_entry, &st, &error) < 0) {
		fprintf(io->err, "postern: %s\n", error);
		free(error);
		return 1;
	}
	if (st.entries == 0)
		fprintf(io->out, "no quarantined messages\n");
	return 0;
}

/* run_show - the envelope as "Key: value" lines, an empty line, the message */
static int
run_show(const struct config *cfg, const struct qadmin_req *r, const struct qadmin_io *io)
{
	struct quarantine_entry e = { 0 };
	FILE *out = io->out;
	char when[32], *error = NULL;
	int fd, status = 1;

	if ((fd = quarantine_open(cfg->quarantine_dir, r->id, &e, &error)) < 0) {
		fprintf(io->err, "postern: %s\n", error);
		goto out;
	}
	format_time(e.when, when, sizeof(when));
	fprintf(out, "Id: %s\nTime: %s\nListener: ", e.id, when);
	esc_fputs(e.listener, out);
	fprintf(out, "\nFrom: <");
	esc_fputs(e.sender, out);
	fprintf(out, ">\n");
	for (size_t i = 0; i < e.nrcpts; i++) {
		fprintf(out, "To: <");
		esc_fputs(e.rcpts[i], out);
		fprintf(out, ">\n");
	}
	fprintf(out, "Reason: ");
	esc_fputs(e.reason, out);
	fprintf(out, "\nSize: %lld\n\n", (long long)e.data_len);
	if (copy_range(fd, e.data_off, e.data_len, out) < 0) {
		fprintf(io->err, "postern: %s: cannot print the message: %s\n", e.id, strerror(errno));
		goto out;
	}
	status = 0;
out:
	if (fd >= 0)
		close(fd);
	quarantine_entry_release(&e);
	free(error);
	return status;
}

/* run_delete - remove one entry, not while a release of it runs */
static int
run_delete(const struct config *cfg, const struct qadmin_req *r, const struct qadmin_io *io)
{
	struct quarantine_entry e = { 0 };
	char *error = NULL;
	int fd, status = 1;

	if ((fd = quarantine_open(cfg->quarantine_dir, r->id, &e, &error)) < 0) {
		fprintf(io->err, "postern: %s\n", error);
		free(error);
		return 1;
	}
	if (quarantine_lock(cfg->quarantine_dir, &e, fd) < 0)
		fprintf(io->err, "postern: %s: %s\n", r->id, errno == EBUSY ?
			"a release of it is running" : errno == ESTALE ?
			"it changed while it was being opened; try again" : strerror(errno));
	else if (quarantine_delete(cfg->quarantine_dir, r->id) < 0)
		fprintf(io->err, "postern: %s: %s\n", r->id, errno == ENOENT ?
			"no such quarantined message" : strerror(errno));
	else {
		if (io->who != NULL)
			log_info("quarantine: %s: deleted by %s", r->id, io->who);
		fprintf(io->out, "%s: deleted from quarantine\n", r->id);
		status = 0;
	}
	close(fd);
	quarantine_entry_release(&e);
	return status;
}

/* qadmin_run - carry out a parsed request on cfg's quarantine; returns the exit status */
int
qadmin_run(const struct config *cfg, const struct qadmin_req *r, const struct qadmin_io *io)
{
	int status = 1;

	switch (r->op) {
	case QADMIN_RELEASE: status = run_release(cfg, r, io); break;
	case QADMIN_LIST: status = run_list(cfg, io); break;
	case QADMIN_SHOW: status = run_show(cfg, r, io); break;
	case QADMIN_DELETE: status = run_delete(cfg, r, io); break;
	}
	if (fflush(io->out) != 0 && status == 0)
		status = 1;	/* the reader went away: it did not get everything */
	fflush(io->err);
	return status;
}
