/*
 * postern - the administrator's command: test, status, reload, release, quarantine, postfix-config
 *
 * postern [-c FILE] test [--policy FILE | --listener NAME] [...] MSG.eml
 * postern [-c FILE] status | reload
 * postern [-c FILE] release MAIL_ID [--rcpt ADDR]... [--keep]
 * postern [-c FILE] quarantine list
 * postern [-c FILE] quarantine show MAIL_ID
 * postern [-c FILE] quarantine delete MAIL_ID
 * postern [-c FILE] postfix-config [--main] [--master] [--inbound NAME] [--submission NAME]
 * postern -V
 *
 * A separate program from posternd that reads the same configuration.
 * status and reload ask the daemon over its control socket (control.c).
 * release and quarantine ... go the same way, and the daemon runs them in
 * a child (quarantine_admin.c); when no daemon answers, the same code runs
 * here on the quarantine directory. The commands are rows of commands[];
 * each gets the words after its name and returns the exit status.
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
#include "quarantine_admin.h"
#include "util/esc.h"
#include "util/proc.h"
#include "util/xalloc.h"

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
static int cmd_quarantine_admin(const struct context *ctx, int argc, char **argv);
static int cmd_postfix_config(const struct context *ctx, int argc, char **argv);

static const struct command commands[] = {
	{ "test", cmd_test, "[--policy FILE | --listener NAME] [--from ADDR] [--rcpt ADDR]... "
	  "[--client-ip IP] [--client-name NAME] [--helo NAME] [--login NAME] MSG.eml",
	  "run a policy on a message and print verdicts, score, rules and header edits" },
	{ "status", cmd_status, "",
	  "per listener: workers busy and idle, messages by verdict; reloads; ClamAV signatures" },
	{ "reload", cmd_reload, "",
	  "make posternd read its configuration, policies and signatures again (SIGHUP)" },
	{ "release", cmd_quarantine_admin, "MAIL_ID [--rcpt ADDR]... [--keep]",
	  "deliver a quarantined message to its listener's forward address" },
	{ "quarantine list", cmd_quarantine_admin, "",
	  "list quarantined messages, oldest first" },
	{ "quarantine show", cmd_quarantine_admin, "MAIL_ID",
	  "print a quarantined message's envelope, then the message" },
	{ "quarantine delete", cmd_quarantine_admin, "MAIL_ID",
	  "delete a quarantined message" },
	{ "postfix-config", cmd_postfix_config,
	  "[--main] [--master] [--inbound NAME] [--submission NAME]",
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

/* is_no_daemon - does this errno of connect(2) mean nobody listens on the socket */
static bool
is_no_daemon(int err)
{
	return err == ENOENT || err == ECONNREFUSED;
}

/*
 * cmd_quarantine_admin - release, quarantine list|show|delete
 *
 * Through posternd's control socket: the daemon runs the command as its
 * own user, with its own configuration, and logs it. When no daemon
 * listens there (stopped, or never started), the command works on the
 * quarantine directory of -c FILE directly, which needs the rights of
 * posternd's user, and says so on stderr.
 */
static int
cmd_quarantine_admin(const struct context *ctx, int argc, char **argv)
{
	char **words = xreallocarray(NULL, (size_t)argc + 2, sizeof(*words));
	char *name = xstrdup(ctx->cmd->name), *sp = strchr(name, ' ');
	struct qadmin_io io = { stdout, stderr, NULL };
	struct qadmin_req r;
	struct config *cfg = NULL;
	char *error = NULL;
	int nwords = 0, status;

	words[nwords++] = name;
	if (sp != NULL) {
		*sp = '\0';
		words[nwords++] = sp + 1;
	}
	for (int i = 0; i < argc; i++)
		words[nwords++] = argv[i];
	if ((status = qadmin_parse(nwords, words, &r, stderr)) != 0)
		command_usage(ctx, NULL);
	status = 1;
	if ((cfg = load_config(ctx)) == NULL)
		goto out;
	if (control_request_framed(cfg->control_socket, words, nwords, stdout, stderr, &status,
				   &error) == 0)
		goto out;
	if (!is_no_daemon(errno)) {
		fprintf(stderr, "postern: %s\n", error);
		status = 1;
		goto out;
	}
	fprintf(stderr, "postern: no posternd at %s: working on %s directly\n", cfg->control_socket,
		cfg->quarantine_dir);
	status = qadmin_run(cfg, &r, &io);
out:
	if (status == 2)
		command_usage(ctx, NULL);
	if (fflush(stdout) != 0 && status == 0) {
		fprintf(stderr, "postern: standard output: %s\n", strerror(errno));
		status = 1;
	}
	qadmin_req_release(&r);
	config_free(cfg);
	free(error);
	free(name);
	free(words);
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
			esc_fputs(arg, stderr);
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
		/* the file names the socket; the daemon keeps what it runs */
		fprintf(stderr, "postern: '%s' not sent: the configuration naming posternd's "
			"control_socket does not load; a running posternd keeps its own\n", cmd);
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

/* main - global options, then the command's row */
int
main(int argc, char **argv)
{
	struct context ctx = { .config_path = DEFAULT_CONFIG };
	int ch, used = 0;

	open_standard_fds("postern");
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
		if (optind + 1 == argc && strcmp(argv[optind], "quarantine") == 0) {
			fprintf(stderr, "postern: quarantine: which command? list, show MAIL_ID "
				"or delete MAIL_ID\n");
			usage(2);
		}
		fprintf(stderr, "postern: unknown command '");
		esc_fputs(argv[optind], stderr);
		if (optind + 1 < argc && strcmp(argv[optind], "quarantine") == 0) {
			fprintf(stderr, " ");
			esc_fputs(argv[optind + 1], stderr);
		}
		fprintf(stderr, "'\n");
		usage(2);
	}
	log_init("postern", true, NULL);
	/* a downstream that hangs up must be an error, not the end of the process */
	signal(SIGPIPE, SIG_IGN);
	return ctx.cmd->run(&ctx, argc - optind - used, argv + optind + used);
}
