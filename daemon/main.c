/*
 * main - posternd: options, configuration, spool, binding, privileges, then master
 *
 * posternd [-f] [-d] [-c FILE] [-o key=value]...   run the daemon
 * posternd -t [-c FILE]                            check the configuration, exit 0/1
 * posternd -k                                      print the table of config keys
 *
 * Order matters: sockets are bound while we may still be root (ports below
 * 1024), the spool directory is made ours, and only then are privileges
 * dropped, before any byte from the network is read.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "clam.h"
#include "config.h"
#include "log.h"
#include "master.h"
#include "policy.h"
#include "quarantine.h"
#include "control.h"
#include "metrics.h"
#include "spool.h"
#include "stats.h"
#include "util/proc.h"
#include "util/xalloc.h"

#define MAX_OVERRIDES	64

/* usage - say how and exit 2 */
static void __attribute__((noreturn))
usage(void)
{
	fprintf(stderr,
		"usage: posternd [-f] [-d] [-c FILE] [-o key=value]...\n"
		"       posternd -t [-c FILE]     check the configuration\n"
		"       posternd -k               list the configuration keys\n"
		"       posternd -V               print the version\n"
		"default FILE: %s\n", DEFAULT_CONFIG);
	exit(2);
}

/*
 * account_problem - what is wrong with the account posternd runs as, or NULL
 *
 * Started as root it needs 'user'; a 'user' or 'group' must exist (checked
 * by -t too, whoever runs it). Fills *uid_r and *gid_r when 'user' is set.
 * The text is the caller's to free.
 */
static char *
account_problem(const struct config *cfg, bool as_root, uid_t *uid_r, gid_t *gid_r)
{
	struct passwd *pw;
	struct group *gr;

	if (cfg->user == NULL)
		return as_root ? xasprintf("%s: running as root needs key 'user' (the account "
					   "postern runs as)", cfg->path) : NULL;
	if ((pw = getpwnam(cfg->user)) == NULL)
		return xasprintf("%s: key 'user': no such user '%s' (create it, e.g. useradd "
				 "--system %s)", cfg->path, cfg->user, cfg->user);
	*uid_r = pw->pw_uid;
	*gid_r = pw->pw_gid;
	if (cfg->group != NULL) {
		if ((gr = getgrnam(cfg->group)) == NULL)
			return xasprintf("%s: key 'group': no such group '%s'", cfg->path,
					 cfg->group);
		*gid_r = gr->gr_gid;
	}
	return NULL;
}

/*
 * mkdir_parents - the directories above path, as mkdir -p would make them (0755)
 *
 * *made_r (may be NULL) says whether the last of them, path's own
 * directory, was made here: only a directory we made is ours to give away.
 */
static int
mkdir_parents(const char *path, bool *made_r)
{
	char *copy = xstrdup(path);
	bool made = false;
	int rc = 0;

	for (char *p = copy + 1; *p != '\0' && rc == 0; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		made = mkdir(copy, 0755) == 0;
		if (!made && errno != EEXIST)
			rc = -1;
		*p = '/';
	}
	free(copy);
	if (made_r != NULL)
		*made_r = made;
	return rc;
}

/*
 * is_unclaimed - an existing directory nobody uses yet: empty, not world-writable
 *
 * Such a directory was made for us: systemd's TemporaryFileSystem= mount
 * on spool_dir/scan and its RuntimeDirectory= (both root's), or a
 * postmaster's mkdir. /tmp or /var/spool are neither empty nor (/tmp) safe.
 */
static bool
is_unclaimed(const char *dir, const struct stat *st)
{
	DIR *d;
	struct dirent *e;
	bool empty = true;

	if ((st->st_mode & S_IWOTH) != 0 || (d = opendir(dir)) == NULL)
		return false;
	while (empty && (e = readdir(d)) != NULL)
		if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
			empty = false;
	closedir(d);
	return empty;
}

/*
 * prepare_dir - create a private directory of ours if missing and give it to the user
 *
 * A directory that was there already is taken only if it is the user's or
 * unclaimed (is_unclaimed); its mode is then made 0700. posternd must not
 * take over a directory in use, as "spool_dir = /tmp" or "/var/spool" would
 * have it do: as OpenSMTPD does with its queue, it refuses to start and
 * says how to fix it.
 */
static void
prepare_dir(const struct config *cfg, const char *key, const char *dir, bool as_root, uid_t uid,
	    gid_t gid)
{
	struct stat st;
	bool made;

	if (mkdir_parents(dir, NULL) < 0)
		log_fatal("%s: key '%s': cannot create %s: %s", cfg->path, key, dir, strerror(errno));
	made = mkdir(dir, 0700) == 0;
	if (!made && errno != EEXIST)
		log_fatal("%s: key '%s': cannot create %s: %s", cfg->path, key, dir, strerror(errno));
	if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode))
		log_fatal("%s: key '%s': %s is not a directory", cfg->path, key, dir);
	if (!as_root)
		return;		/* our own user already; check_spool_writable tells the rest */
	if (!made && st.st_uid != uid && is_unclaimed(dir, &st))
		made = true;	/* made for us by someone else: give it to the user as our own */
	if (!made && st.st_uid != uid)
		log_fatal("%s: key '%s': %s exists, is in use and is not user %s's (its owner is "
			  "uid %ld): posternd takes over only empty directories; run "
			  "\"chown %s: %s && chmod 0700 %s\", or name a directory of posternd's own",
			  cfg->path, key, dir, cfg->user, (long)st.st_uid, cfg->user, dir, dir);
	if ((made && (chown(dir, uid, gid) < 0 || chmod(dir, 0700) < 0)) ||
	    (!made && (st.st_mode & 077) != 0 && chmod(dir, 0700) < 0))
		log_fatal("cannot give %s to user %s: %s", dir, cfg->user, strerror(errno));
}

/*
 * open_services - the control socket and the metrics listener, as root if we are
 *
 * The control socket is given to user/group; its directory is made if
 * missing. A control socket that cannot be made is a warning (the daemon
 * works without it); a metrics listener that cannot bind is fatal, as any
 * listener is.
 */
static void
open_services(const struct config *cfg, bool as_root, uid_t uid, gid_t gid,
	      struct master_fds *fds)
{
	char *error = NULL, *dir = xstrdup(cfg->control_socket), *slash = strrchr(dir, '/');

	fds->control = fds->metrics = -1;
	if (slash != NULL && slash != dir) {
		*slash = '\0';
		struct stat st;
		bool made;

		/* a directory that was there and is in use (/run, say) is not ours to give away */
		if (mkdir_parents(cfg->control_socket, &made) == 0 && as_root &&
		    (made || (stat(dir, &st) == 0 && is_unclaimed(dir, &st))))
			if (chown(dir, uid, gid) < 0) {
				/* the socket itself is chowned; the directory is a nicety */
			}
	}
	free(dir);
	if ((fds->control = control_listen(cfg->control_socket, as_root, uid, gid, &error)) < 0) {
		log_warnx("%s: %s: postern status and postern reload will not reach this posternd",
			  cfg->path, error);
		free(error);
		error = NULL;
	}
	if (cfg->metrics_listen != NULL &&
	    (fds->metrics = metrics_listen(cfg->metrics_listen, &error)) < 0)
		log_fatal("%s: %s", cfg->path, error);
}

/* drop_privileges - become user/group for good */
static void
drop_privileges(const struct config *cfg, uid_t uid, gid_t gid)
{
	if (setgroups(1, &gid) < 0 || setgid(gid) < 0 || setuid(uid) < 0)
		log_fatal("cannot switch to user %s: %s", cfg->user, strerror(errno));
	if (setuid(0) == 0)
		log_fatal("privileges could be regained after switching to %s", cfg->user);
}

/* check_spool_writable - as the final user, one spool file must be creatable */
static void
check_spool_writable(const struct config *cfg)
{
	struct spool *sp = spool_open(cfg->spool_dir);

	if (sp == NULL)
		log_fatal("%s: key 'spool_dir': cannot create files in %s: %s", cfg->path,
			  cfg->spool_dir, strerror(errno));
	spool_close(sp);
}

/* daemonize - detach from the terminal (without -f) */
static void
daemonize(void)
{
	pid_t pid = fork();
	int fd;

	if (pid < 0)
		log_fatal("fork: %s", strerror(errno));
	if (pid > 0)
		_exit(0);
	setsid();
	if (chdir("/") < 0)
		log_fatal("chdir /: %s", strerror(errno));
	fd = open("/dev/null", O_RDWR);
	if (fd >= 0) {
		dup2(fd, STDIN_FILENO);
		dup2(fd, STDOUT_FILENO);
		dup2(fd, STDERR_FILENO);
		if (fd > STDERR_FILENO)
			close(fd);
	}
}

int
main(int argc, char **argv)
{
	const char *path = DEFAULT_CONFIG;
	char *overrides[MAX_OVERRIDES], *error = NULL;
	size_t noverrides = 0, nsockets = 0;
	bool foreground = false, debug = false, check_only = false, as_root;
	struct bound *sockets = NULL;
	struct policy **policies;
	struct clam_engine *clam;
	struct master_fds fds;
	struct config *cfg;
	uid_t uid = 0;
	gid_t gid = 0;
	int ch, rc, n;

	open_standard_fds("posternd");
	while ((ch = getopt(argc, argv, "c:dfko:tVh")) != -1) {
		switch (ch) {
		case 'c': path = optarg; break;
		case 'd': debug = true; break;
		case 'f': foreground = true; break;
		case 'k': config_print_keys(); return 0;
		case 'o':
			if (noverrides == MAX_OVERRIDES) {
				fprintf(stderr, "posternd: at most %d -o options\n", MAX_OVERRIDES);
				return 2;
			}
			overrides[noverrides++] = optarg;
			break;
		case 't': check_only = true; break;
		case 'V': printf("posternd %s\n", PACKAGE_VERSION); return 0;
		default: usage();
		}
	}
	if (optind != argc)
		usage();
	/*
	 * A reload asked for while we start (the configuration rewritten, then
	 * SIGHUP, before the master's handlers exist) must not kill the daemon,
	 * nor be lost; a stop must end as stops do (drain, status 0). Loading
	 * large signature sets takes seconds: SIGHUP, SIGTERM and SIGINT wait,
	 * blocked, until master_run() handles them.
	 */
	if (!check_only)	/* a check is a command: a signal ends it, even mid-load */
		master_hold_signals(true);
	log_init("posternd", true, NULL);
	cfg = config_load(path, overrides, noverrides, &error);
	if (cfg == NULL) {
		fprintf(stderr, "posternd: %s\n", error);
		free(error);
		return 1;
	}
	if (check_only) {
		struct policy **policies;

		/*
		 * A missing account is an error; root without 'user' only a
		 * warning: the check may run as root for a daemon that systemd
		 * starts as the user itself.
		 */
		if ((error = account_problem(cfg, false, &uid, &gid)) != NULL) {
			fprintf(stderr, "posternd: %s\n", error);
			free(error);
			config_free(cfg);
			return 1;
		}
		if ((error = account_problem(cfg, geteuid() == 0, &uid, &gid)) != NULL) {
			fprintf(stderr, "posternd: warning: started as root, posternd would refuse "
				"this: %s\n", error);
			free(error);
		}
		if ((policies = master_load_policies(cfg, &error)) == NULL) {
			fprintf(stderr, "posternd: %s\n", error);
			free(error);
			config_free(cfg);
			return 1;
		}
		if (master_load_engine(cfg, &clam, &error) < 0) {
			fprintf(stderr, "posternd: %s: %s\n", path, error);
			free(error);
			master_free_policies(cfg, policies);
			config_free(cfg);
			return 1;
		}
		if (clam != NULL)
			printf("posternd: clamav: %u signatures load from %s\n",
			       clam_engine_signatures(clam), cfg->clamav.database);
		clam_engine_free(clam);
		printf("posternd: %s: configuration is valid (%zu listener(s))\n", path, cfg->nlisteners);
		for (size_t i = 0; i < cfg->nlisteners; i++)
			if (policies[i] != NULL)
				printf("posternd: listener %s: policy %s loads\n", cfg->listeners[i].name,
				       policy_path(policies[i]));
		master_free_policies(cfg, policies);
		config_free(cfg);
		return 0;
	}
	as_root = geteuid() == 0;
	if ((error = account_problem(cfg, as_root, &uid, &gid)) != NULL)
		log_fatal("%s", error);
	if (!foreground)
		log_init("posternd", false, cfg->syslog_facility);
	if (debug)
		log_pin_debug();
	else
		log_set_level(cfg->log_level);
	log_set_json(strcmp(cfg->log_format, "json") == 0);
	if (!as_root && cfg->user != NULL)
		log_warnx("%s: user '%s' ignored: not started as root", path, cfg->user);
	prepare_dir(cfg, "spool_dir", cfg->spool_dir, as_root, uid, gid);
	if (cfg->clamav.database != NULL)
		prepare_dir(cfg, "clamav.temp_dir", cfg->clamav.temp_dir, as_root, uid, gid);
	if (config_any_policy(cfg))	/* only a policy can quarantine */
		prepare_dir(cfg, "quarantine.dir", cfg->quarantine_dir, as_root, uid, gid);
	if (master_bind(cfg, &sockets, &nsockets, &error) < 0)
		log_fatal("%s", error);
	open_services(cfg, as_root, uid, gid, &fds);
	if (as_root)
		drop_privileges(cfg, uid, gid);
	check_spool_writable(cfg);
	/* as the final user: a policy reads only what that user may read */
	if ((policies = master_load_policies(cfg, &error)) == NULL)
		log_fatal("%s", error);
	if (master_load_engine(cfg, &clam, &error) < 0)
		log_fatal("%s: %s", path, error);
	spool_clean_dir(cfg->spool_dir, 0);
	if ((n = quarantine_clean_tmp(cfg->quarantine_dir, 0)) > 0)
		log_info("quarantine: removed %d unfinished file%s left in %s by an earlier run", n,
			 n == 1 ? "" : "s", cfg->quarantine_dir);
	if (clam != NULL && (n = clam_clean_temp_dir(cfg->clamav.temp_dir)) > 0)
		log_info("clamav: removed %d scan director%s left in %s by an earlier run", n,
			 n == 1 ? "y" : "ies", cfg->clamav.temp_dir);
	signal(SIGPIPE, SIG_IGN);
	if (!foreground)
		daemonize();
	log_info("posternd %s starting with %s", PACKAGE_VERSION, path);
	master_check_forwards(cfg);
	if (stats_init() < 0)
		log_fatal("cannot map the shared counters: %s", strerror(errno));
	for (size_t i = 0; i < cfg->nlisteners; i++)
		stats_listener(cfg->listeners[i].name);
	if (clam != NULL) {
		stats_get()->signatures = clam_engine_signatures(clam);
		stats_get()->signatures_loaded = time(NULL);
	}
	rc = master_run(cfg, policies, clam, sockets, nsockets, &fds, overrides, noverrides);
	return rc;
}
