/*
 * postern - the administrator's command: release, quarantine list/show/delete
 *
 * postern [-c FILE] test [--policy FILE | --listener NAME] [...] MSG.eml
 * postern [-c FILE] status | reload
 * postern [-c FILE] release MAIL_ID [--rcpt ADDR]... [--keep]
 * postern [-c FILE] quarantine list
 * postern [-c FILE] quarantine show MAIL_ID
 * postern [-c FILE] quarantine delete MAIL_ID
 * postern [-c FILE] postfix-config [--main | --master] [--inbound NAME] [--submission NAME]
 * postern -V
 *
 * A separate program from posternd: it reads the same configuration, then
 * works on the quarantine directory directly (no daemon needs to run).
 * `release` delivers a quarantined message to the `forward` address of the
 * listener that quarantined it, through the same reinject.c code as the
 * daemon, and deletes the file only once forward accepted every recipient
 * of it. The commands are rows of commands[]; each gets the words after its
 * name and returns the exit status.
 *
 * Exit status: 0 done, 1 failed (message on stderr as "postern: ..."),
 * 2 usage. Library code logs through log.c, which writes to stderr here.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "control.h"
#include "dryrun.h"
#include "log.h"
#include "message.h"
#include "postfix_config.h"
#include "quarantine.h"
#include "reinject.h"
#include "spool.h"
#include "util/esc.h"
#include "util/xalloc.h"

#define COPY_CHUNK	(64 * 1024)	/* bytes per pread when copying a message */

struct command;

/* what every command gets besides its own arguments */
struct context {
	const char *config_path;	/* -c FILE, or DEFAULT_CONFIG */
	bool	config_given;		/* -c was used */
	const struct command *cmd;	/* the row being run, for its usage line */
};

struct command {
	const char *name;		/* one or two words: "release", "quarantine list" */
	int	(*run)(const struct context *ctx, int argc, char **argv); /* the words after name */
	const char *args;		/* usage, after the name */
	const char *doc;		/* one line for the usage text */
};

static int cmd_test(const struct context *ctx, int argc, char **argv);
static int cmd_status(const struct context *ctx, int argc, char **argv);
static int cmd_reload(const struct context *ctx, int argc, char **argv);
static int cmd_release(const struct context *ctx, int argc, char **argv);
static int cmd_quarantine_list(const struct context *ctx, int argc, char **argv);
static int cmd_quarantine_show(const struct context *ctx, int argc, char **argv);
static int cmd_quarantine_delete(const struct context *ctx, int argc, char **argv);
static int cmd_postfix_config(const struct context *ctx, int argc, char **argv);

static const struct command commands[] = {
	{ "test", cmd_test, "[--policy FILE | --listener NAME] [--from ADDR] [--rcpt ADDR]... "
	  "[--client-ip IP] [--client-name NAME] [--helo NAME] [--login NAME] MSG.eml",
	  "run a policy on a message and print verdicts, score, rules and header edits" },
	{ "status", cmd_status, "",
	  "per listener: workers busy and idle, messages by verdict; reloads; ClamAV signatures" },
	{ "reload", cmd_reload, "",
	  "make posternd read its configuration, policies and signatures again (SIGHUP)" },
	{ "release", cmd_release, "MAIL_ID [--rcpt ADDR]... [--keep]",
	  "deliver a quarantined message to its listener's forward address" },
	{ "quarantine list", cmd_quarantine_list, "",
	  "list quarantined messages, oldest first" },
	{ "quarantine show", cmd_quarantine_show, "MAIL_ID",
	  "print a quarantined message's envelope, then the message" },
	{ "quarantine delete", cmd_quarantine_delete, "MAIL_ID",
	  "delete a quarantined message" },
	{ "postfix-config", cmd_postfix_config,
	  "[--main | --master] [--inbound NAME] [--submission NAME]",
	  "print the main.cf and master.cf lines that put postern into Postfix" },
	{ NULL, NULL, NULL, NULL },
};

/* usage - the usage text on stderr (stdout when asked for), then exit */
static void __attribute__((noreturn))
usage(int status)
{
	FILE *out = status == 0 ? stdout : stderr;

	fprintf(out, "usage: postern [-c FILE] COMMAND [ARGS]\n");
	for (const struct command *c = commands; c->name != NULL; c++)
		fprintf(out, "       postern [-c FILE] %s%s%s\n%20s%s\n", c->name, *c->args ? " " : "",
			c->args, "", c->doc);
	fprintf(out, "       postern -V\n%20sprint the version\n"
		"default FILE: %s\n", "", DEFAULT_CONFIG);
	exit(status);
}

/* command_usage - one command's usage line on stderr, exit 2 */
static void __attribute__((noreturn))
command_usage(const struct context *ctx, const char *why)
{
	if (why != NULL)
		fprintf(stderr, "postern: %s\n", why);
	fprintf(stderr, "usage: postern [-c FILE] %s%s%s\n", ctx->cmd->name,
		*ctx->cmd->args ? " " : "", ctx->cmd->args);
	exit(2);
}

/* load_config - the configuration, or a message on stderr and NULL */
static struct config *
load_config(const struct context *ctx)
{
	char *error = NULL;
	struct config *cfg = config_load(ctx->config_path, NULL, 0, &error);

	if (cfg == NULL) {
		fprintf(stderr, "postern: %s\n", error);
		free(error);
	}
	return cfg;
}

/* format_time - ISO 8601 UTC, "2026-01-31T12:00:00Z" */
static void
format_time(time_t when, char *out, size_t size)
{
	struct tm tm;

	if (gmtime_r(&when, &tm) == NULL || strftime(out, size, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		snprintf(out, size, "@%lld", (long long)when);
}

/* print_escaped - s on f with control bytes escaped (it came from mail) */
static void
print_escaped(FILE *f, const char *s)
{
	char *e = esc_logs(s);

	fputs(e, f);
	free(e);
}

/* copy_range - len bytes at off of in onto out (a descriptor); -1 with errno */
static int
copy_range(int in, off_t off, off_t len, int out)
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
		for (ssize_t done = 0; done < n;) {
			ssize_t w = write(out, chunk + done, (size_t)(n - done));

			if (w < 0 && errno == EINTR)
				continue;
			if (w < 0) {
				rc = -1;
				goto out;
			}
			done += w;
		}
		off += n;
		len -= n;
	}
out:
	free(chunk);
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
 * Returns NULL with a message on stderr.
 */
static struct spool *
spool_copy(const struct config *cfg, int fd, const struct quarantine_entry *e, bool *eightbit_r)
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
		fprintf(stderr, "postern: cannot create a spool file in %s or a temporary directory: %s\n",
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
			fprintf(stderr, "postern: cannot copy message %s: %s\n", e->id,
				n == 0 ? "file shorter than expected" : strerror(errno));
			sp = spool_close(sp);
			goto out;
		}
		for (ssize_t i = 0; i < n && !*eightbit_r; i++)
			*eightbit_r = (unsigned char)chunk[i] >= 0x80;
		off += n;
	}
	if (spool_finish(sp) < 0) {
		fprintf(stderr, "postern: cannot copy message %s: %s\n", e->id, strerror(errno));
		sp = spool_close(sp);
	}
out:
	free(chunk);
	return sp;
}

/* find_listener - the listener named name, or NULL */
static const struct listener_cfg *
find_listener(const struct config *cfg, const char *name)
{
	for (size_t i = 0; i < cfg->nlisteners; i++)
		if (strcmp(cfg->listeners[i].name, name) == 0)
			return &cfg->listeners[i];
	return NULL;
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
 * cmd_release - deliver a quarantined message to its listener's forward
 *
 * Every recipient of the entry, or only the --rcpt ones (each must be one
 * of them). Exit 0 when forward accepted all of those; the file is then
 * deleted, unless --keep was given or some recipients of the entry were
 * left out (their copy would be lost). Exit 1 otherwise, the file kept, so
 * a release can be tried again. The message goes out with the Received:
 * lines it had, plus one more that reinject adds for this delivery.
 */
static int
cmd_release(const struct context *ctx, int argc, char **argv)
{
	const char *id = NULL, **wanted = xreallocarray(NULL, (size_t)argc + 1, sizeof(*wanted));
	const char **rcpts = NULL;
	size_t nwanted = 0, nrcpts = 0, accepted = 0;
	bool keep = false, eightbit;
	struct quarantine_entry e = { 0 };
	const struct listener_cfg *lc;
	struct config *cfg = NULL;
	struct message *m = NULL;
	struct downstream *ds = NULL;
	struct client client = { 0 };
	struct spool *sp;
	char *error = NULL;
	int fd = -1, status = 1;

	for (int i = 0; i < argc; i++) {
		if (strcmp(argv[i], "--keep") == 0)
			keep = true;
		else if (strcmp(argv[i], "--rcpt") == 0) {
			if (i + 1 == argc)
				command_usage(ctx, "--rcpt needs an address");
			wanted[nwanted++] = argv[++i];
		} else if (strncmp(argv[i], "--rcpt=", 7) == 0)
			wanted[nwanted++] = argv[i] + 7;
		else if (argv[i][0] == '-' && argv[i][1] != '\0') {
			fprintf(stderr, "postern: unknown option '");
			print_escaped(stderr, argv[i]);
			fprintf(stderr, "'\n");
			command_usage(ctx, NULL);
		}
		else if (id != NULL)
			command_usage(ctx, "one MAIL_ID at a time");
		else
			id = argv[i];
	}
	if (id == NULL)
		command_usage(ctx, "MAIL_ID is missing");
	if ((cfg = load_config(ctx)) == NULL)
		goto out;
	if ((fd = quarantine_open(cfg->quarantine_dir, id, &e, &error)) < 0) {
		fprintf(stderr, "postern: %s\n", error);
		goto out;
	}
	if ((lc = find_listener(cfg, e.listener)) == NULL) {
		fprintf(stderr, "postern: %s: listener \"", id);
		print_escaped(stderr, e.listener);
		fprintf(stderr, "\" that quarantined it is not in %s any more\n", cfg->path);
		goto out;
	}
	rcpts = xreallocarray(NULL, e.nrcpts, sizeof(*rcpts));
	if (nwanted == 0) {
		for (size_t i = 0; i < e.nrcpts; i++)
			rcpts[nrcpts++] = e.rcpts[i];
	}
	for (size_t i = 0; i < nwanted; i++) {
		const char *r = entry_rcpt(&e, wanted[i]);
		bool dup = false;

		if (r == NULL) {
			fprintf(stderr, "postern: %s: <", id);
			print_escaped(stderr, wanted[i]);
			fprintf(stderr, "> is not a recipient of this message (see postern quarantine show %s)\n",
				id);
			goto out;
		}
		for (size_t j = 0; j < nrcpts; j++)
			dup = dup || rcpts[j] == r;
		if (!dup)
			rcpts[nrcpts++] = r;
	}
	if ((sp = spool_copy(cfg, fd, &e, &eightbit)) == NULL)
		goto out;
	m = build_message(&e, rcpts, nrcpts, sp, eightbit);
	/* what our Received: line names as the client: this command, on this host */
	snprintf(client.ip, sizeof(client.ip), "127.0.0.1");
	client.helo = xstrdup("quarantine-release");
	ds = downstream_new();
	reinject_message(ds, cfg, lc, &client, m);
	ds = downstream_free(ds);
	for (size_t i = 0; i < m->nrcpts; i++) {
		const struct recipient *r = &m->rcpts[i];

		accepted += r->code / 100 == 2;
		printf("<");
		print_escaped(stdout, r->addr);
		printf(">: %s: ", r->code / 100 == 2 ? "delivered" :
		       r->code / 100 == 5 ? "refused" : "deferred");
		print_escaped(stdout, r->reply && *r->reply ? r->reply : "no reply");
		printf("\n");
	}
	if (accepted < m->nrcpts) {
		fprintf(stderr, "postern: %s: %zu of %zu recipient(s) not delivered; kept in quarantine",
			id, m->nrcpts - accepted, m->nrcpts);
		/* those forward took have their copy: a second full release would repeat it */
		if (accepted > 0)
			fprintf(stderr, " (to retry only the others, name them with --rcpt)");
		fprintf(stderr, "\n");
		goto out;
	}
	status = 0;
	if (keep)
		printf("%s: released to %s; kept in quarantine (--keep)\n", id, lc->forward);
	else if (nrcpts < e.nrcpts)
		printf("%s: released to %s for %zu of %zu recipient(s); kept in quarantine for the "
		       "others\n", id, lc->forward, nrcpts, e.nrcpts);
	else if (quarantine_delete(cfg->quarantine_dir, id) < 0)
		/* delivered all the same: a second release would deliver twice */
		fprintf(stderr, "postern: %s: released to %s, but cannot delete it from %s: %s\n", id,
			lc->forward, cfg->quarantine_dir, strerror(errno));
	else
		printf("%s: released to %s and deleted from quarantine\n", id, lc->forward);
out:
	if (fd >= 0)
		close(fd);
	downstream_free(ds);
	client_release(&client);
	message_free(m);
	quarantine_entry_release(&e);
	config_free(cfg);
	free(error);
	free(rcpts);
	free(wanted);
	return status;
}

/* list_state - what cmd_quarantine_list's callback counts */
struct list_state {
	size_t	entries;		/* lines printed */
};

/* print_entry - one tab-separated line of `postern quarantine list` */
static int
print_entry(const struct quarantine_entry *e, void *arg)
{
	struct list_state *st = arg;
	char when[32];

	format_time(e->when, when, sizeof(when));
	printf("%s\t%s\t", e->id, when);
	print_escaped(stdout, e->listener);
	printf("\t%lld\t<", (long long)e->data_len);
	print_escaped(stdout, e->sender);
	printf(">\t");
	for (size_t i = 0; i < e->nrcpts; i++) {
		printf("%s<", i ? "," : "");
		print_escaped(stdout, e->rcpts[i]);
		printf(">");
	}
	printf("\t");
	print_escaped(stdout, e->reason);
	printf("\n");
	st->entries++;
	return 0;
}

/* cmd_quarantine_list - one line per entry: id, time, listener, size, sender, recipients, reason */
static int
cmd_quarantine_list(const struct context *ctx, int argc, char **argv)
{
	struct list_state st = { 0 };
	struct config *cfg;
	char *error = NULL;
	int status = 1;

	(void)argv;
	if (argc != 0)
		command_usage(ctx, "no arguments expected");
	if ((cfg = load_config(ctx)) == NULL)
		return 1;
	if (quarantine_list(cfg->quarantine_dir, print_entry, &st, &error) < 0)
		fprintf(stderr, "postern: %s\n", error);
	else {
		if (st.entries == 0)
			printf("no quarantined messages\n");
		status = 0;
	}
	free(error);
	config_free(cfg);
	return status;
}

/* cmd_quarantine_show - the envelope as "Key: value" lines, an empty line, the message */
static int
cmd_quarantine_show(const struct context *ctx, int argc, char **argv)
{
	struct quarantine_entry e = { 0 };
	struct config *cfg;
	char when[32], *error = NULL;
	int fd, status = 1;

	if (argc != 1 || (argv[0][0] == '-' && argv[0][1] != '\0'))
		command_usage(ctx, argc == 0 ? "MAIL_ID is missing" : NULL);
	if ((cfg = load_config(ctx)) == NULL)
		return 1;
	if ((fd = quarantine_open(cfg->quarantine_dir, argv[0], &e, &error)) < 0) {
		fprintf(stderr, "postern: %s\n", error);
		goto out;
	}
	format_time(e.when, when, sizeof(when));
	printf("Id: %s\nTime: %s\nListener: ", e.id, when);
	print_escaped(stdout, e.listener);
	printf("\nFrom: <");
	print_escaped(stdout, e.sender);
	printf(">\n");
	for (size_t i = 0; i < e.nrcpts; i++) {
		printf("To: <");
		print_escaped(stdout, e.rcpts[i]);
		printf(">\n");
	}
	printf("Reason: ");
	print_escaped(stdout, e.reason);
	printf("\nSize: %lld\n\n", (long long)e.data_len);
	if (fflush(stdout) != 0 || copy_range(fd, e.data_off, e.data_len, STDOUT_FILENO) < 0) {
		fprintf(stderr, "postern: %s: cannot print the message: %s\n", e.id, strerror(errno));
		goto out;
	}
	status = 0;
out:
	if (fd >= 0)
		close(fd);
	quarantine_entry_release(&e);
	free(error);
	config_free(cfg);
	return status;
}

/* cmd_quarantine_delete - remove one entry */
static int
cmd_quarantine_delete(const struct context *ctx, int argc, char **argv)
{
	struct config *cfg;
	int status = 1;

	if (argc != 1 || (argv[0][0] == '-' && argv[0][1] != '\0'))
		command_usage(ctx, argc == 0 ? "MAIL_ID is missing" : NULL);
	if (!quarantine_id_valid(argv[0]))
		command_usage(ctx, "MAIL_ID is 1 to 15 letters and digits");
	if ((cfg = load_config(ctx)) == NULL)
		return 1;
	if (quarantine_delete(cfg->quarantine_dir, argv[0]) < 0)
		fprintf(stderr, "postern: %s: %s\n", argv[0], errno == ENOENT ?
			"no such quarantined message" : strerror(errno));
	else {
		printf("%s: deleted from quarantine\n", argv[0]);
		status = 0;
	}
	config_free(cfg);
	return status;
}

/*
 * cmd_postfix_config - the Postfix settings for the configuration's listeners
 *
 * --main and --master print only that file's parts; --inbound NAME names
 * the listener of main.cf's content_filter (default "external"),
 * --submission NAME the one of the submission service (default "outgoing").
 */
static int
cmd_postfix_config(const struct context *ctx, int argc, char **argv)
{
	struct postfix_config_opts o = { 0 };
	struct config *cfg;
	int status;

	for (int i = 0; i < argc; i++) {
		const char **name = NULL;
		const char *arg = argv[i];

		if (strcmp(arg, "--main") == 0)
			o.main = true;
		else if (strcmp(arg, "--master") == 0)
			o.master = true;
		else if (strcmp(arg, "--inbound") == 0 || strncmp(arg, "--inbound=", 10) == 0)
			name = &o.inbound;
		else if (strcmp(arg, "--submission") == 0 || strncmp(arg, "--submission=", 13) == 0)
			name = &o.submission;
		else {
			fprintf(stderr, "postern: unknown argument '");
			print_escaped(stderr, arg);
			fprintf(stderr, "'\n");
			command_usage(ctx, NULL);
		}
		if (name == NULL)
			continue;
		if (strchr(arg, '=') != NULL)
			*name = strchr(arg, '=') + 1;
		else if (i + 1 < argc)
			*name = argv[++i];
		else
			command_usage(ctx, "--inbound and --submission need a listener name");
		if (**name == '\0')
			command_usage(ctx, "empty listener name");
	}
	if ((cfg = load_config(ctx)) == NULL)
		return 1;
	status = postfix_config_print(cfg, stdout, &o) == 0 ? 0 : 1;
	config_free(cfg);
	return status;
}

/*
 * find_command - the row whose words start argv; *used_r tells how many words matched
 *
 * Names are one or two words ("release", "quarantine list").
 */
static const struct command *
find_command(int argc, char **argv, int *used_r)
{
	for (const struct command *c = commands; c->name != NULL; c++) {
		const char *sp = strchr(c->name, ' ');
		size_t first = sp ? (size_t)(sp - c->name) : strlen(c->name);

		if (argc < 1 || strlen(argv[0]) != first || strncmp(argv[0], c->name, first) != 0)
			continue;
		if (sp == NULL) {
			*used_r = 1;
			return c;
		}
		if (argc >= 2 && strcmp(argv[1], sp + 1) == 0) {
			*used_r = 2;
			return c;
		}
	}
	return NULL;
}

/* main - global options, then the command's row */
/* ask_daemon - send cmd over posternd's control socket and print the answer */
static int
ask_daemon(const struct context *ctx, int argc, const char *cmd)
{
	struct config *cfg;
	struct buf answer;
	char *error = NULL;
	int rc;

	if (argc != 0) {
		fprintf(stderr, "postern: %s takes no arguments\n", cmd);
		return 2;
	}
	if ((cfg = config_load(ctx->config_path, NULL, 0, &error)) == NULL) {
		fprintf(stderr, "postern: %s\n", error);
		free(error);
		return 1;
	}
	buf_init(&answer, 0);
	rc = control_request(cfg->control_socket, cmd, 10000, &answer, &error);
	if (rc < 0) {
		fprintf(stderr, "postern: %s\n", error);
		free(error);
	} else {
		fwrite(answer.ptr ? answer.ptr : "", 1, answer.len, stdout);
		if (answer.len >= 6 && strncmp(answer.ptr, "error:", 6) == 0)
			rc = -1;
	}
	buf_release(&answer);
	config_free(cfg);
	return rc < 0 ? 1 : 0;
}

/* cmd_status - posternd's counters, through the control socket */
static int
cmd_status(const struct context *ctx, int argc, char **argv)
{
	(void)argv;
	return ask_daemon(ctx, argc, "status");
}

/* cmd_reload - ask posternd to reload, through the control socket */
static int
cmd_reload(const struct context *ctx, int argc, char **argv)
{
	(void)argv;
	return ask_daemon(ctx, argc, "reload");
}

/* cmd_test - the policy dry run (dryrun.c) */
static int
cmd_test(const struct context *ctx, int argc, char **argv)
{
	/* dryrun_main() parses with getopt_long: give it a program name first */
	char **args = xreallocarray(NULL, (size_t)argc + 2, sizeof(*args));
	int rc;

	args[0] = (char *)"test";
	for (int i = 0; i < argc; i++)
		args[i + 1] = argv[i];
	args[argc + 1] = NULL;
	rc = dryrun_main(ctx->config_path, ctx->config_given, argc + 1, args);
	free(args);
	return rc;
}

int
main(int argc, char **argv)
{
	struct context ctx = { .config_path = DEFAULT_CONFIG };
	int ch, used = 0;

	/* "+": options end at the command, whose own options are its business */
	while ((ch = getopt(argc, argv, "+c:hV")) != -1) {
		switch (ch) {
		case 'c': ctx.config_path = optarg; ctx.config_given = true; break;
		case 'h': usage(0);
		case 'V': printf("postern %s\n", PACKAGE_VERSION); return 0;
		default: usage(2);
		}
	}
	if (optind == argc)
		usage(2);
	if ((ctx.cmd = find_command(argc - optind, argv + optind, &used)) == NULL) {
		fprintf(stderr, "postern: unknown command '");
		print_escaped(stderr, argv[optind]);
		if (optind + 1 < argc && strcmp(argv[optind], "quarantine") == 0) {
			fprintf(stderr, " ");
			print_escaped(stderr, argv[optind + 1]);
		}
		fprintf(stderr, "'\n");
		usage(2);
	}
	log_init("postern", true, NULL);
	/* a downstream that hangs up must be an error, not the end of the process */
	signal(SIGPIPE, SIG_IGN);
	return ctx.cmd->run(&ctx, argc - optind - used, argv + optind + used);
}
