/*
 * quarantine_spec - quarantine files: stored durably, read back exactly, listed, deleted,
 * and refused when the id or the file is not what it must be
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "message.h"
#include "quarantine.h"
#include "spool.h"
#include "util/xalloc.h"
#include "tap.h"

static char top[] = "/tmp/postern-quarantine-spec-XXXXXX";
static char qdir[sizeof(top) + 8];

/* make_message - a message with a real spool holding body */
static struct message *
make_message(const char *sender, const char *body)
{
	struct message *m = message_new();

	m->sender = xstrdup(sender);
	m->spool = spool_open(top);
	if (m->spool == NULL || spool_write(m->spool, body, strlen(body)) < 0 ||
	    spool_finish(m->spool) < 0) {
		printf("Bail out! cannot spool in %s: %s\n", top, strerror(errno));
		exit(1);
	}
	return m;
}

/* read_range - len bytes at off of fd into a fresh string */
static char *
read_range(int fd, off_t off, off_t len)
{
	char *s = xmalloc((size_t)len + 1);
	ssize_t n = pread(fd, s, (size_t)len, off);

	s[n < 0 ? 0 : n] = '\0';
	return s;
}

/* read_file - the whole of path into a fresh string (NULL if it cannot be read) */
static char *
read_file(const char *path)
{
	struct stat st;
	char *s;
	int fd = open(path, O_RDONLY);

	if (fd < 0)
		return NULL;
	fstat(fd, &st);
	s = read_range(fd, 0, st.st_size);
	close(fd);
	return s;
}

/* write_entry - a file in the quarantine directory, written by hand */
static void
write_entry(const char *name, const char *text, size_t len)
{
	char *path = xasprintf("%s/%s", qdir, name);
	FILE *f = fopen(path, "w");

	fwrite(text, 1, len, f);
	fclose(f);
	free(path);
}

/* write_text - write_entry of a C string */
static void
write_text(const char *name, const char *text)
{
	write_entry(name, text, strlen(text));
}

/* count_temp_files - files in the quarantine directory whose name starts with a dot */
static int
count_temp_files(void)
{
	DIR *d = opendir(qdir);
	struct dirent *de;
	int n = 0;

	while (d && (de = readdir(d)) != NULL)
		n += de->d_name[0] == '.' && strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0;
	if (d)
		closedir(d);
	return n;
}

static void
store_and_open(void)
{
	static const char body[] = "Subject: hi\r\n\r\nbody line\r\n.dot line\r\n";
	static const char prefix[] = "X-Spam-Flag: YES\r\n";
	const char *rcpts[] = { "a@example.net", "b@example.net" };
	struct message *m = make_message("sender@example.org", body);
	struct quarantine_entry e;
	struct stat st;
	char *path = NULL, *error = NULL, *data, *want_path;
	time_t before = time(NULL);
	int fd;

	is_int(quarantine_store(qdir, m, "external", rcpts, 2, "virus Eicar-Test-Signature",
				prefix, strlen(prefix), &path), 0, "store writes the message");
	want_path = xasprintf("%s/%s", qdir, m->id);
	is_str(path, want_path, "store returns DIR/<mail id>");
	ok(stat(qdir, &st) == 0 && S_ISDIR(st.st_mode) && (st.st_mode & 0777) == 0700,
	   "a missing quarantine directory is created with mode 0700");
	ok(stat(want_path, &st) == 0 && (st.st_mode & 0777) == 0600, "the file has mode 0600");
	is_int(count_temp_files(), 0, "no temporary file is left behind");

	fd = quarantine_open(qdir, m->id, &e, &error);
	if (!ok(fd >= 0, "open reads it back"))
		printf("# %s\n", error ? error : "(no error)");
	if (fd >= 0) {
		is_str(e.id, m->id, "entry id");
		is_str(e.listener, "external", "listener");
		is_str(e.sender, "sender@example.org", "sender");
		is_int(e.nrcpts, 2, "two recipients");
		if (e.nrcpts == 2) {
			is_str(e.rcpts[0], "a@example.net", "first recipient");
			is_str(e.rcpts[1], "b@example.net", "second recipient");
		}
		is_str(e.reason, "virus Eicar-Test-Signature", "reason");
		ok(e.when >= before && e.when <= time(NULL), "time is when it was stored");
		is_int(e.data_len, strlen(prefix) + strlen(body), "data_len is prefix plus spool bytes");
		data = read_range(fd, e.data_off, e.data_len);
		ok(strncmp(data, prefix, strlen(prefix)) == 0 &&
		   strcmp(data + strlen(prefix), body) == 0,
		   "the message is the prefix, then the spool bytes unchanged (CRLF, leading dot)");
		free(data);
		close(fd);
	}
	quarantine_entry_release(&e);
	free(error);
	free(path);
	free(want_path);
	message_free(m);
}

static void
fields_round_trip(void)
{
	const char *rcpts[] = { "\"odd \\\\ one\"@example.net", "caf\xc3\xa9@example.net" };
	struct message *m = make_message("", "x\r\n");
	struct quarantine_entry e;
	char *path = NULL, *text, *error = NULL, *reason_line;
	int fd;

	quarantine_store(qdir, m, "ext\tname", rcpts, 2, "line one\r\nline two\rthree\x1b[31m",
			 NULL, 0, &path);
	text = path ? read_file(path) : NULL;
	ok(text != NULL, "stored with a null sender and odd fields");
	reason_line = text ? strstr(text, "\nreason ") : NULL;
	ok(reason_line != NULL && strchr(reason_line + 1, '\n') ==
	   reason_line + 1 + strlen("reason line one\\x0d\\x0aline two\\x0dthree\\x1b[31m"),
	   "a reason with CR, LF and ESC stays one line in the file");
	ok(text && strstr(text, "\nfrom <>\n") != NULL, "the null sender is written as <>");
	fd = path ? quarantine_open(qdir, m->id, &e, &error) : -1;
	if (!ok(fd >= 0, "and read back"))
		printf("# %s\n", error ? error : "");
	if (fd >= 0) {
		is_str(e.sender, "", "null sender");
		is_str(e.listener, "ext\tname", "listener with a tab, byte for byte");
		is_str(e.rcpts[0], rcpts[0], "quoted local part with backslashes, byte for byte");
		is_str(e.rcpts[1], rcpts[1], "UTF-8 address, byte for byte");
		is_str(e.reason, "line one\r\nline two\rthree\x1b[31m", "reason, byte for byte");
		is_int(e.data_len, 3, "message bytes without a prefix");
		close(fd);
		quarantine_entry_release(&e);
	}
	free(error);
	free(text);
	free(path);
	message_free(m);
}

static void
store_refusals(void)
{
	const char *one[] = { "a@example.net" };
	const char **many = xreallocarray(NULL, 10000, sizeof(*many));
	struct message *m = make_message("s@example.org", "x\r\n");
	char *big = xmalloc(501);

	memset(big, 'r', 500);
	big[500] = '\0';
	for (int i = 0; i < 10000; i++)
		many[i] = big;
	errno = 0;
	is_int(quarantine_store(qdir, m, "external", many, 10000, "r", NULL, 0, NULL), -1,
	       "an envelope beyond 4 MiB is not written");
	is_int(errno, EMSGSIZE, "... EMSGSIZE");
	is_int(quarantine_store(qdir, m, "external", one, 0, "r", NULL, 0, NULL), -1,
	       "no recipients: refused");
	strcpy(m->id, "../x");
	errno = 0;
	is_int(quarantine_store(qdir, m, "external", one, 1, "r", NULL, 0, NULL), -1,
	       "a message whose id is not a mail id: refused");
	is_int(errno, EINVAL, "... EINVAL");
	is_int(count_temp_files(), 0, "refusals leave no temporary file");
	free(big);
	free(many);
	message_free(m);
}

static void
ids(void)
{
	static const struct {
		const char *id;
		bool	valid;
		const char *shown;	/* for the TAP line, when id is not printable */
	} cases[] = {
		{ "A", true, NULL }, { "0123456789abcde", true, "15 characters" }, { "Zz09", true, NULL },
		{ "", false, NULL }, { "../x", false, NULL }, { "a/b", false, NULL },
		{ "..", false, NULL }, { ".", false, NULL },
		{ "0123456789abcdef", false, "16 characters" }, { ".tmp.abc.12", false, NULL },
		{ "a b", false, NULL }, { "ab\n", false, "ab + LF" }, { "caf\xc3\xa9", false, "non-ASCII" },
		{ "-x", false, NULL },
	};
	struct quarantine_entry e;
	char *error = NULL;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		is_int(quarantine_id_valid(cases[i].id), cases[i].valid, "id \"%s\" is %s",
		       cases[i].shown ? cases[i].shown : cases[i].id, cases[i].valid ? "valid" : "invalid");
	ok(!quarantine_id_valid(NULL), "NULL is not an id");
	errno = 0;
	ok(quarantine_open(qdir, "../x", &e, &error) == -1 && errno == EINVAL && error &&
	   strstr(error, "invalid mail id"), "open refuses \"../x\" before touching the file system");
	free(error);
	error = NULL;
	ok(quarantine_open(qdir, "", &e, &error) == -1 && errno == EINVAL, "open refuses \"\"");
	free(error);
	errno = 0;
	ok(quarantine_delete(qdir, "a/b") == -1 && errno == EINVAL, "delete refuses \"a/b\"");
	errno = 0;
	ok(quarantine_delete(qdir, "0123456789abcdef") == -1 && errno == EINVAL,
	   "delete refuses 16 characters");
}

#define GOOD_HEAD "postern-quarantine 1\nlistener ext\nfrom <s@x>\nto <r@x>\n"

static void
malformed(void)
{
	static const struct {
		const char *name;
		const char *text;
	} cases[] = {
		{ "wrong magic", "postern-quarantine 2\nlistener ext\nfrom <s@x>\nto <r@x>\nreason r\ntime 1\n\nM" },
		{ "empty file", "" },
		{ "no empty line after the envelope", GOOD_HEAD "reason r\ntime 1\n" },
		{ "missing listener", "postern-quarantine 1\nfrom <s@x>\nto <r@x>\nreason r\ntime 1\n\nM" },
		{ "empty listener", "postern-quarantine 1\nlistener \nfrom <s@x>\nto <r@x>\nreason r\ntime 1\n\nM" },
		{ "sender without <>", "postern-quarantine 1\nlistener ext\nfrom s@x\nto <r@x>\nreason r\ntime 1\n\nM" },
		{ "no recipient", "postern-quarantine 1\nlistener ext\nfrom <s@x>\nreason r\ntime 1\n\nM" },
		{ "CR in a line", GOOD_HEAD "reason r\r\ntime 1\n\nM" },
		{ "bad escape", GOOD_HEAD "reason \\xZZ\ntime 1\n\nM" },
		{ "escaped NUL", GOOD_HEAD "reason a\\x00b\ntime 1\n\nM" },
		{ "lone backslash", GOOD_HEAD "reason a\\\ntime 1\n\nM" },
		{ "time not a number", GOOD_HEAD "reason r\ntime 12x\n\nM" },
		{ "negative time", GOOD_HEAD "reason r\ntime -1\n\nM" },
		{ "time overflows", GOOD_HEAD "reason r\ntime 99999999999999999999\n\nM" },
		{ "time before reason", GOOD_HEAD "time 1\nreason r\n\nM" },
		{ "unknown key", GOOD_HEAD "reason r\ntime 1\nscore 3\n\nM" },
		{ "key without its space", GOOD_HEAD "reason r\ntime1\n\nM" },
	};
	char name[16];
	char *error;
	struct quarantine_entry e;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		snprintf(name, sizeof(name), "Bad%zu", i);
		write_text(name, cases[i].text);
		error = NULL;
		errno = 0;
		if (!ok(quarantine_open(qdir, name, &e, &error) == -1 && errno == EBADMSG,
			"open refuses: %s", cases[i].name))
			printf("# errno %d, error \"%s\"\n", errno, error ? error : "(none)");
		free(error);
	}
}

static void
oversized(void)
{
	struct buf text;
	struct quarantine_entry e;
	char *error = NULL;
	int fd;

	buf_init(&text, 0);
	buf_appends(&text, GOOD_HEAD);
	while (text.len < 4 * 1024 * 1024 + 4096)
		buf_appends(&text, "to <another-recipient@example.net>\n");
	buf_appends(&text, "reason r\ntime 1\n\nM");
	write_entry("Huge1", text.ptr, text.len);
	errno = 0;
	fd = quarantine_open(qdir, "Huge1", &e, &error);
	ok(fd == -1 && errno == EBADMSG && error && strstr(error, "too long"),
	   "an envelope past 4 MiB is refused");
	if (fd >= 0)
		close(fd);
	free(error);
	buf_release(&text);
}

struct seen {
	char	ids[16][16];	/* ids in the order each() saw them */
	int	n;		/* how many */
	int	stop_after;	/* return 1 after this many; 0 = never */
};

/* collect - quarantine_list callback that records ids */
static int
collect(const struct quarantine_entry *e, void *arg)
{
	struct seen *s = arg;

	if (s->n < 16)
		snprintf(s->ids[s->n], sizeof(s->ids[0]), "%s", e->id);
	s->n++;
	return s->stop_after && s->n >= s->stop_after ? 1 : 0;
}

static void
listing(void)
{
	const char *rcpts[] = { "r@example.net" };
	struct message *m[3];
	struct seen seen = { 0 }, stop = { .stop_after = 2 }, none = { 0 };
	struct quarantine_entry e;
	char *error = NULL, *missing = xasprintf("%s/none", top), *subdir = xasprintf("%s/Dir1", qdir);
	DIR *d = opendir(qdir);
	struct dirent *de;
	bool stored_last = true;

	/* start clean: earlier sections left entries and refused files */
	while (d && (de = readdir(d)) != NULL)
		if (de->d_name[0] != '.')
			unlinkat(dirfd(d), de->d_name, 0);
	if (d)
		closedir(d);
	for (int i = 0; i < 3; i++) {
		m[i] = make_message("s@example.org", "m\r\n");
		quarantine_store(qdir, m[i], "external", rcpts, 1, "spam", NULL, 0, NULL);
	}
	write_text("Old2", GOOD_HEAD "reason r\ntime 200\n\nM");
	write_text("Tie2", GOOD_HEAD "reason r\ntime 300\n\nM");
	write_text("Old1", GOOD_HEAD "reason r\ntime 100\n\nM");
	write_text("Tie1", GOOD_HEAD "reason r\ntime 300\n\nM");
	write_text("Bad", "garbage\n");
	write_text(".tmp.Abc.123", GOOD_HEAD "reason r\ntime 1\n\nM");
	write_text("not-an-id", GOOD_HEAD "reason r\ntime 1\n\nM");
	mkdir(subdir, 0700);

	is_int(quarantine_list(qdir, collect, &seen, &error), 0, "list walks the directory");
	is_int(seen.n, 7, "seven entries: malformed, temporary, non-id names and directories are skipped");
	if (seen.n == 7) {
		is_str(seen.ids[0], "Old1", "oldest first");
		is_str(seen.ids[1], "Old2", "then the next oldest");
		is_str(seen.ids[2], "Tie1", "same time: ordered by id");
		is_str(seen.ids[3], "Tie2", "... the other");
		for (int i = 4; i < 7; i++)
			stored_last = stored_last && (strcmp(seen.ids[i], m[0]->id) == 0 ||
						      strcmp(seen.ids[i], m[1]->id) == 0 ||
						      strcmp(seen.ids[i], m[2]->id) == 0);
		ok(stored_last, "the entries stored just now come last");
	}
	is_int(quarantine_list(qdir, collect, &stop, &error), 1,
	       "a non-zero return from each() stops the walk and is returned");
	is_int(stop.n, 2, "... after that call");
	is_int(quarantine_list(missing, collect, &none, &error), 0, "a missing directory lists nothing");
	is_int(none.n, 0, "... and calls nothing");

	is_int(quarantine_delete(qdir, m[0]->id), 0, "delete removes an entry");
	errno = 0;
	ok(quarantine_open(qdir, m[0]->id, &e, &error) == -1 && errno == ENOENT && error &&
	   strstr(error, "no quarantined message"), "a deleted entry cannot be opened");
	free(error);
	error = NULL;
	errno = 0;
	ok(quarantine_delete(qdir, m[0]->id) == -1 && errno == ENOENT, "deleting it again: ENOENT");
	memset(&seen, 0, sizeof(seen));
	quarantine_list(qdir, collect, &seen, &error);
	is_int(seen.n, 6, "list no longer shows it");
	errno = 0;
	ok(quarantine_open(qdir, "Dir1", &e, &error) == -1 && errno == EBADMSG,
	   "a directory with an id's name is refused");
	errno = 0;
	free(error);
	error = NULL;
	ok(quarantine_open(qdir, "Bad", &e, &error) == -1 && errno == EBADMSG && error &&
	   strstr(error, "/Bad: line 1: "), "a malformed file is refused, naming file and line");
	free(error);
	free(missing);
	free(subdir);
	for (int i = 0; i < 3; i++)
		message_free(m[i]);
}

/* remove_tree - rm -r of the spec's directory (two levels deep at most) */
static void
remove_tree(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;

	while (d && (de = readdir(d)) != NULL) {
		char *p;

		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		p = xasprintf("%s/%s", dir, de->d_name);
		if (de->d_type == DT_DIR)
			remove_tree(p);
		else
			unlink(p);
		free(p);
	}
	if (d)
		closedir(d);
	rmdir(dir);
}

/* keep_and_lock - a release takes the delivered recipients out; one release at a time */
static void
keep_and_lock(void)
{
	static const char body[] = "Subject: keep\r\n\r\nline\r\n";
	const char *rcpts[] = { "a@example.net", "b\\odd@example.net", "c@example.net" };
	const char *owed[] = { "b\\odd@example.net" };
	struct message *m = make_message("s@example.org", body);
	struct quarantine_entry e, e2;
	char *error = NULL, *before = NULL, *after = NULL;
	int fd, fd2, fd3, temps = count_temp_files();

	if (!ok(quarantine_store(qdir, m, "q", rcpts, 3, "held", "X: y\r\n", 6, NULL) == 0,
		"keep: stored"))
		goto out;
	fd = quarantine_open(qdir, m->id, &e, &error);
	fd2 = quarantine_open(qdir, m->id, &e2, &error);
	ok(fd >= 0 && fd2 >= 0, "keep: opened twice");
	is_int(quarantine_lock(qdir, &e, fd), 0, "lock: the first holder gets it");
	ok(quarantine_lock(qdir, &e2, fd2) < 0 && errno == EBUSY, "lock: a second one is EBUSY");
	before = read_range(fd, e.data_off, e.data_len);
	is_int(quarantine_keep_rcpts(qdir, &e, fd, owed, 1), 0, "keep: rewritten with one recipient");
	is_int(count_temp_files(), temps, "keep: no temporary file left behind");
	close(fd);
	quarantine_entry_release(&e);
	ok(quarantine_lock(qdir, &e2, fd2) < 0 && errno == ESTALE,
	   "lock: whoever opened the old file before the rewrite gets ESTALE");
	close(fd2);
	quarantine_entry_release(&e2);
	fd3 = quarantine_open(qdir, m->id, &e, &error);
	if (ok(fd3 >= 0, "keep: the rewritten entry opens")) {
		is_int(e.nrcpts, 1, "keep: one recipient left");
		if (e.nrcpts == 1)
			is_str(e.rcpts[0], "b\\odd@example.net", "keep: the one still owed, escapes intact");
		is_str(e.listener, "q", "keep: listener kept");
		is_str(e.sender, "s@example.org", "keep: sender kept");
		is_str(e.reason, "held", "keep: reason kept");
		after = read_range(fd3, e.data_off, e.data_len);
		ok(before != NULL && after != NULL && strcmp(before, after) == 0,
		   "keep: the message bytes are the same");
		is_int(quarantine_lock(qdir, &e, fd3), 0, "lock: the new file locks");
		ok(quarantine_keep_rcpts(qdir, &e, fd3, owed, 0) < 0 && errno == EINVAL,
		   "keep: no recipient left is not a rewrite (the caller deletes)");
		close(fd3);
	}
	quarantine_entry_release(&e);
out:
	free(before);
	free(after);
	free(error);
	message_free(m);
}

/* in_dir - path of name in d, fresh */
static char *
in_dir(const char *d, const char *name)
{
	return xasprintf("%s/%s", d, name);
}

/* put_file - a file name in d holding text */
static void
put_file(const char *d, const char *name, const char *text)
{
	char *path = in_dir(d, name);
	FILE *f = fopen(path, "w");

	if (f != NULL) {
		fputs(text, f);
		fclose(f);
	}
	free(path);
}

/* exists - a file of that name is in d */
static bool
exists(const char *d, const char *name)
{
	char *path = in_dir(d, name);
	bool there = access(path, F_OK) == 0;

	free(path);
	return there;
}

/*
 * leftovers - unfinished files of dead processes are removed, nothing else:
 * not an entry, not the file of a live process, not a name that only looks
 * like a temporary one (in a directory of its own, so that the files of the
 * cases above do not count)
 */
static void
leftovers(void)
{
	char dead_name[64], live_name[64], other_name[64];
	char *d = in_dir(top, "leftovers");
	pid_t dead = fork();

	if (dead == 0)
		_exit(0);
	waitpid(dead, NULL, 0);		/* its pid now names no process */
	mkdir(d, 0700);
	snprintf(dead_name, sizeof(dead_name), ".tmp.DeadWorker01.%ld", (long)dead);
	snprintf(live_name, sizeof(live_name), ".tmp.LiveWorker01.%ld", (long)getpid());
	snprintf(other_name, sizeof(other_name), ".tmp.Another0001.%ld", (long)getpid());
	put_file(d, dead_name, "half a message");
	put_file(d, live_name, "a message being written");
	put_file(d, "EntryStaysHere", "an entry");
	put_file(d, ".tmp.NoPidHere", "not ours");
	put_file(d, ".tmp.BadPid.12x", "not ours");

	is_int(quarantine_clean_tmp(d, 0), 1, "start-up: one leftover removed");
	ok(!exists(d, dead_name), "the dead process's file is gone");
	ok(exists(d, live_name), "a live process's file stays");
	ok(exists(d, "EntryStaysHere"), "an entry stays");
	ok(exists(d, ".tmp.NoPidHere") && exists(d, ".tmp.BadPid.12x"), "names without a pid stay");

	put_file(d, other_name, "another");
	is_int(quarantine_clean_tmp(d, getpid()), 2, "a worker's death: both of its files removed");
	ok(!exists(d, live_name) && !exists(d, other_name), "its files are gone");
	ok(exists(d, "EntryStaysHere") && exists(d, ".tmp.NoPidHere"), "the others stay");
	is_int(quarantine_clean_tmp(d, getpid()), 0, "nothing more to remove");
	is_int(quarantine_clean_tmp("/nonexistent/postern-q", 0), 0, "a missing directory: nothing");
	free(d);
}

int
main(void)
{
	if (mkdtemp(top) == NULL) {
		printf("Bail out! mkdtemp: %s\n", strerror(errno));
		return 1;
	}
	snprintf(qdir, sizeof(qdir), "%s/q", top);
	store_and_open();
	fields_round_trip();
	store_refusals();
	ids();
	malformed();
	oversized();
	listing();
	keep_and_lock();
	leftovers();
	remove_tree(top);
	return done_testing();
}
