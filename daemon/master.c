/*
 * master - bind listeners, keep a pool of workers per listener, handle signals
 *
 * Signals only set flags and write a byte to a self-pipe; the main loop
 * polls that pipe and does the work outside the handler (Postfix's master
 * does the same with its event loop). A listener whose workers keep dying
 * young is throttled: each early death doubles the delay before the next
 * spawn, up to THROTTLE_MAX_MS (Dovecot's service_monitor_throttle), so a
 * crash loop cannot eat the machine; a worker that lived long resets it.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "master.h"
#include "clam.h"
#include "policy.h"
#include "control.h"
#include "metrics.h"
#include "notify.h"
#include "quarantine.h"
#include "smtp_server.h"
#include "stats.h"
#include "spool.h"
#include "util/net.h"
#include "util/xalloc.h"
#include "worker.h"

#define THROTTLE_START_MS	1000	/* first delay after a worker died young */
#define THROTTLE_MAX_MS		60000	/* the delay stops doubling here */
#define YOUNG_DEATH_MS		2000	/* a worker dying sooner counts as a crash loop */
#define FORWARD_PROBE_MS	1000	/* start-up probe of each forward address */
#define ADMIN_CHILDREN_MAX	4	/* quarantine commands running at once */
#define TRIAL_REPORT_MAX	8192	/* what the policies' trial load may report */

struct worker_rec {
	pid_t	pid;			/* 0: slot free */
	int	generation;		/* config generation it runs */
	char   *listener;		/* listener name, owned */
	struct timespec started;	/* monotonic */
};

struct listener_state {
	long	throttle_ms;		/* current delay, 0 = none */
	struct timespec not_before;	/* no spawn before this (monotonic) */
};

static int sig_pipe[2] = { -1, -1 };
static volatile sig_atomic_t got_hup, got_term, got_chld;

struct master {
	struct config *cfg;		/* current generation's config, owned */
	struct policy **policies;	/* one per listener of cfg (NULL: none), owned */
	struct clam_engine *clam;	/* the ClamAV engine of this generation, or NULL, owned */
	struct timespec clam_checked;	/* last look at the database directory (monotonic) */
	struct master_fds fds;		/* as main() opened them; control and metrics own theirs */
	struct control_server control;	/* the control socket and its clients, owned */
	struct metrics_server metrics;	/* the metrics listener and its scrapers */
	int	generation;		/* current generation number */
	struct bound *sockets;		/* listening sockets, owned */
	size_t	nsockets;
	struct worker_rec *workers;	/* owned array */
	size_t	nworkers;
	struct listener_state *lstate;	/* one per cfg->listeners */
	pid_t	admin[ADMIN_CHILDREN_MAX]; /* children running quarantine commands, 0: free */
	char *const *overrides;		/* -o key=value, borrowed */
	size_t	noverrides;
	bool	stopping;
};

/* on_signal - flag it and wake the main loop */
static void
on_signal(int sig)
{
	int saved = errno;
	char c = (char)sig;

	if (sig == SIGHUP)
		got_hup = 1;
	else if (sig == SIGCHLD)
		got_chld = 1;
	else
		got_term = 1;
	if (write(sig_pipe[1], &c, 1) < 0) {
		/* the pipe is full: the loop will wake anyway */
	}
	errno = saved;
}

/* install_signals - the master's handlers */
static void
install_signals(void)
{
	struct sigaction sa;

	if (pipe2(sig_pipe, O_NONBLOCK | O_CLOEXEC) < 0)
		log_fatal("cannot create signal pipe: %s", strerror(errno));
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_RESTART;
	sigaction(SIGHUP, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGCHLD, &sa, NULL);
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);
}

/*
 * master_hold_signals - hold SIGHUP, SIGTERM and SIGINT back (main(), before
 * the configuration is read) or let them through (master_run(), once the
 * handlers are in place). Asked for during start-up, a reload runs then,
 * instead of killing the daemon (SIGHUP's default action), and a stop becomes
 * the ordinary drain and exit status 0, instead of a death by signal that a
 * supervisor or script would read as a failure.
 */
void
master_hold_signals(bool hold)
{
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigprocmask(hold ? SIG_BLOCK : SIG_UNBLOCK, &set, NULL);
}

/* ms_since - monotonic ms since t */
static long
ms_since(const struct timespec *t)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (long)((now.tv_sec - t->tv_sec) * 1000 + (now.tv_nsec - t->tv_nsec) / 1000000);
}

/* find_socket - the bound socket for a listen address, -1 if none */
static int
find_socket(struct bound *sockets, size_t n, const char *listen)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(sockets[i].listen, listen) == 0)
			return sockets[i].fd;
	return -1;
}

/*
 * master_bind - one listening socket per listener, reusing those in *sockets
 *
 * On success *sockets holds exactly the sockets cfg needs (others closed).
 * On failure nothing changes and *error_r says which listener failed.
 */
int
master_bind(const struct config *cfg, struct bound **sockets, size_t *nsockets, char **error_r)
{
	struct bound *fresh = xcalloc(cfg->nlisteners, sizeof(*fresh));
	size_t n = 0;

	for (size_t i = 0; i < cfg->nlisteners; i++) {
		const struct listener_cfg *lc = &cfg->listeners[i];
		int fd = find_socket(*sockets, *nsockets, lc->listen);
		bool reused = fd >= 0;

		if (fd < 0 && (fd = net_listen(&lc->listen_ep)) < 0) {
			*error_r = xasprintf("%s:%d: listener \"%s\": cannot listen on %s: %s",
					     cfg->path, lc->line, lc->name, lc->listen, strerror(errno));
			for (size_t j = 0; j < n; j++)
				if (find_socket(*sockets, *nsockets, fresh[j].listen) < 0)
					close(fresh[j].fd);
			for (size_t j = 0; j < n; j++)
				free(fresh[j].listen);
			free(fresh);
			return -1;
		}
		(void)reused;
		fresh[n].listen = xstrdup(lc->listen);
		fresh[n].fd = fd;
		n++;
	}
	for (size_t i = 0; i < *nsockets; i++) {
		if (find_socket(fresh, n, (*sockets)[i].listen) < 0)
			close((*sockets)[i].fd);
		free((*sockets)[i].listen);
	}
	free(*sockets);
	*sockets = fresh;
	*nsockets = n;
	return 0;
}

/* policy_error - "file:line: listener "x": key 'policy': why" (why is freed) */
static char *
policy_error(const struct config *cfg, size_t i, char *why)
{
	char *error = xasprintf("%s:%d: listener \"%s\": key 'policy': %s", cfg->path,
				cfg->listeners[i].line, cfg->listeners[i].name, why);

	free(why);
	return error;
}

/*
 * trial_child - in the trial's child: load every policy, each under a timer
 *
 * Before each policy it reports "L<index>\n" on fd; a policy that does not
 * load is reported as "E<error>" and the child exits 1. The parent follows
 * the report as it comes (follow_report), so its length does not matter. The timer is the
 * watchdog's: the count hook stops any Lua loop at policy_timeout, so only
 * one C call that never returns (a Lua pattern that backtracks) can reach
 * it, and SIGALRM's default action then ends the child.
 */
static void __attribute__((noreturn))
trial_child(const struct config *cfg, int fd)
{
	struct itimerval it = { { 0, 0 }, { 0, 0 } };
	long ms = policy_watchdog_ms(cfg);
	sigset_t alrm;
	char *error = NULL, mark[32];

	log_silence();
	signal(SIGALRM, SIG_DFL);
	sigemptyset(&alrm);
	sigaddset(&alrm, SIGALRM);
	sigprocmask(SIG_UNBLOCK, &alrm, NULL);
	it.it_value.tv_sec = ms / 1000;
	it.it_value.tv_usec = (ms % 1000) * 1000;
	for (size_t i = 0; i < cfg->nlisteners; i++) {
		int n = snprintf(mark, sizeof(mark), "L%zu\n", i);

		if (write(fd, mark, (size_t)n) != n)
			_exit(2);
		setitimer(ITIMER_REAL, &it, NULL);
		if (policy_load(cfg, &cfg->listeners[i], &error) == NULL && error != NULL) {
			char *report = policy_error(cfg, i, error);
			size_t len = strlen(report);

			if (write(fd, "E", 1) != 1 || write(fd, report, len) != (ssize_t)len)
				_exit(2);
			_exit(1);
		}
	}
	_exit(0);
}

/* what the trial's child reported: the policy it loaded last, and its error */
struct trial_report {
	size_t	loading;		/* index of the last "L<i>" line; nlisteners: none */
	char	error[TRIAL_REPORT_MAX];	/* the text after "E", NUL-terminated */
	size_t	error_len;
	bool	in_error;		/* past the "E" */
	char	line[24];		/* the "L" line being read */
	size_t	line_len;
};

/* follow_report - take in n more bytes of the child's report */
static void
follow_report(struct trial_report *r, const char *p, size_t n)
{
	for (size_t k = 0; k < n; k++) {
		if (r->in_error) {
			if (r->error_len < sizeof(r->error) - 1)
				r->error[r->error_len++] = p[k];
		} else if (p[k] == '\n') {
			r->line[r->line_len] = '\0';
			r->loading = strtoul(r->line, NULL, 10);
			r->line_len = 0;
		} else if (p[k] == 'E' && r->line_len == 0)
			r->in_error = true;
		else if (p[k] != 'L' && r->line_len < sizeof(r->line) - 1)
			r->line[r->line_len++] = p[k];
	}
	r->error[r->error_len] = '\0';
}

/* read_report - follow what the trial's child writes on fd until it closes it */
static void
read_report(int fd, struct trial_report *r)
{
	char chunk[512];

	for (;;) {
		ssize_t n = read(fd, chunk, sizeof(chunk));

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		follow_report(r, chunk, (size_t)n);
	}
}

/* trial_verdict - the trial's outcome from its child's status and report */
static int
trial_verdict(const struct config *cfg, int status, const struct trial_report *r,
	      char **error_r)
{
	size_t i = r->loading;
	char *path;

	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return 0;
	if (WIFEXITED(status) && WEXITSTATUS(status) == 1 && r->in_error) {
		*error_r = xstrdup(r->error);
		return -1;
	}
	if (i >= cfg->nlisteners || (path = policy_file(cfg, &cfg->listeners[i])) == NULL) {
		*error_r = xasprintf("%s: the check of the policies ended abnormally (status %d)",
				     cfg->path, status);
		return -1;
	}
	if (WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM)
		*error_r = policy_error(cfg, i, xasprintf(
			"policy %s: loading ran past %ld s (twice policy_timeout, plus one) inside "
			"one C call, where the time limit cannot stop it (a Lua pattern that "
			"backtracks? P.regex has no such case)", path, policy_watchdog_ms(cfg) / 1000));
	else if (WIFSIGNALED(status))
		*error_r = policy_error(cfg, i, xasprintf("policy %s: loading it ended the check "
							  "process with signal %d", path,
							  WTERMSIG(status)));
	else
		*error_r = policy_error(cfg, i, xasprintf("policy %s: loading it ended the check "
							  "process with status %d", path,
							  WEXITSTATUS(status)));
	free(path);
	return -1;
}

/*
 * trial_load - load every policy once in a child first; 0, or -1 with *error_r
 *
 * A policy is the postmaster's code, and at load it runs in the master. The
 * count hook stops it at policy_timeout, but not inside one C call: a Lua
 * pattern that backtracks at load would hang the master for good, on a
 * reload with the running daemon's workers behind it. The child takes that
 * risk instead, under the workers' watchdog; the master loads only what
 * loaded there. The cost is loading the policies twice.
 */
static int
trial_load(const struct config *cfg, char **error_r)
{
	struct trial_report report = { .loading = cfg->nlisteners };
	int fds[2], status;
	pid_t pid;

	if (pipe2(fds, O_CLOEXEC) < 0) {
		*error_r = xasprintf("cannot check the policies: pipe: %s", strerror(errno));
		return -1;
	}
	if ((pid = fork()) < 0) {
		*error_r = xasprintf("cannot check the policies: fork: %s", strerror(errno));
		close(fds[0]);
		close(fds[1]);
		return -1;
	}
	if (pid == 0) {
		close(fds[0]);
		trial_child(cfg, fds[1]);
	}
	close(fds[1]);
	read_report(fds[0], &report);
	close(fds[0]);
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR) {
			*error_r = xasprintf("cannot check the policies: waitpid: %s", strerror(errno));
			return -1;
		}
	return trial_verdict(cfg, status, &report, error_r);
}

/*
 * master_load_policies - every listener's policy, or none and an error
 *
 * Loaded here, before the workers fork, so that they inherit a state that
 * is known to load, with its patterns compiled and its tables read; after
 * a trial load in a child (trial_load), so that no policy can hang the master.
 */
struct policy **
master_load_policies(const struct config *cfg, char **error_r)
{
	struct policy **p;

	*error_r = NULL;
	if (config_any_policy(cfg) && trial_load(cfg, error_r) < 0)
		return NULL;
	p = xcalloc(cfg->nlisteners ? cfg->nlisteners : 1, sizeof(*p));
	for (size_t i = 0; i < cfg->nlisteners; i++) {
		p[i] = policy_load(cfg, &cfg->listeners[i], error_r);
		if (p[i] == NULL && *error_r != NULL) {
			*error_r = policy_error(cfg, i, *error_r);
			master_free_policies(cfg, p);
			return NULL;
		}
	}
	return p;
}

/* master_free_policies - free what master_load_policies() made */
void
master_free_policies(const struct config *cfg, struct policy **p)
{
	if (p == NULL)
		return;
	for (size_t i = 0; i < cfg->nlisteners; i++)
		policy_free(p[i]);
	free(p);
}

/* master_check_forwards - warn now about a forward address nobody listens on */
void
master_check_forwards(const struct config *cfg)
{
	for (size_t i = 0; i < cfg->nlisteners; i++) {
		const struct listener_cfg *lc = &cfg->listeners[i];
		int fd = net_connect(&lc->forward_ep, FORWARD_PROBE_MS);

		if (fd < 0)
			log_warnx("listener %s: forward %s is not reachable now (%s): its mail will be "
				  "answered 4xx (kept in the MTA's queue) until it is", lc->name,
				  lc->forward, strerror(errno));
		else
			close(fd);
	}
}

/* close_master_fds - in a child: the master's descriptors, all but keep */
static void
close_master_fds(struct master *m, int keep)
{
	close(sig_pipe[0]);
	close(sig_pipe[1]);
	for (size_t i = 0; i < m->nsockets; i++)
		if (m->sockets[i].fd != keep && m->sockets[i].fd >= 0)
			close(m->sockets[i].fd);
	control_server_close(&m->control, true);
	metrics_server_close(&m->metrics, true);
}

/* spawn - fork one worker for listener index li of the current generation */
static void
spawn(struct master *m, size_t li)
{
	const struct listener_cfg *lc = &m->cfg->listeners[li];
	int fd = find_socket(m->sockets, m->nsockets, lc->listen);
	struct worker_rec *w = NULL;
	sigset_t saved;
	pid_t pid;

	for (size_t i = 0; i < m->nworkers; i++)
		if (m->workers[i].pid == 0) {
			w = &m->workers[i];
			break;
		}
	if (w == NULL) {
		m->workers = xreallocarray(m->workers, m->nworkers + 1, sizeof(*m->workers));
		w = &m->workers[m->nworkers++];
		memset(w, 0, sizeof(*w));
	}
	/*
	 * Until the child has its own handlers, a SIGTERM or SIGUSR1 the master
	 * sends it would run the master's handler there and be lost (a worker
	 * that then never drains): the child is born with them blocked and
	 * unblocks them once worker_signals() has installed its own.
	 */
	worker_block_signals(&saved);
	pid = fork();
	if (pid == 0) {
		close_master_fds(m, fd);
		struct scanners sc = { m->policies[li], m->clam };

		worker_main(m->cfg, lc, &sc, fd);
	}
	sigprocmask(SIG_SETMASK, &saved, NULL);
	if (pid < 0) {
		log_warn("listener %s: cannot fork a worker", lc->name);
		return;
	}
	w->pid = pid;
	w->generation = m->generation;
	stats_worker_start(pid, stats_listener(lc->name));
	free(w->listener);
	w->listener = xstrdup(lc->name);
	clock_gettime(CLOCK_MONOTONIC, &w->started);
}

/*
 * run_admin - fork a child for a quarantine command from the control socket
 *
 * A child, because a release waits on forward and a show streams a whole
 * message: the master's loop must not. At most ADMIN_CHILDREN_MAX at once;
 * the next client hears "busy" and may try again.
 */
static void
run_admin(struct master *m, struct control_request *req)
{
	pid_t pid;
	int slot = -1;

	for (int i = 0; i < ADMIN_CHILDREN_MAX && slot < 0; i++)
		if (m->admin[i] == 0)
			slot = i;
	if (slot < 0 || m->stopping) {
		control_admin_refuse(req, m->stopping ? "posternd is stopping" :
				     "posternd is busy with other quarantine commands; try again");
		return;
	}
	if ((pid = fork()) < 0) {
		log_warn("control: cannot fork for a quarantine command");
		control_admin_refuse(req, "posternd cannot fork (see its log)");
		return;
	}
	if (pid == 0) {
		close_master_fds(m, -1);
		control_admin_child(m->cfg, req);
	}
	m->admin[slot] = pid;
	control_request_release(req);
}

/* reap_admin - is pid a quarantine command's child: then forget it */
static bool
reap_admin(struct master *m, pid_t pid, int status)
{
	for (int i = 0; i < ADMIN_CHILDREN_MAX; i++) {
		if (m->admin[i] != pid)
			continue;
		m->admin[i] = 0;
		if (WIFSIGNALED(status))
			log_warnx("control: quarantine command (pid %ld) ended by signal %d",
				  (long)pid, WTERMSIG(status));
		return true;
	}
	return false;
}

/* live_workers - workers of the current generation serving listener li */
static long
live_workers(const struct master *m, size_t li)
{
	long n = 0;

	for (size_t i = 0; i < m->nworkers; i++)
		if (m->workers[i].pid != 0 && m->workers[i].generation == m->generation &&
		    strcmp(m->workers[i].listener, m->cfg->listeners[li].name) == 0)
			n++;
	return n;
}

/* fill_pools - spawn what each listener lacks; returns ms until a throttle ends (or -1) */
static long
fill_pools(struct master *m)
{
	long wait = -1;

	if (m->stopping)
		return -1;
	for (size_t li = 0; li < m->cfg->nlisteners; li++) {
		struct listener_state *ls = &m->lstate[li];
		long left = -ms_since(&ls->not_before);

		if (ls->throttle_ms > 0 && left > 0) {
			if (wait < 0 || left < wait)
				wait = left;
			continue;
		}
		while (live_workers(m, li) < m->cfg->listeners[li].workers) {
			spawn(m, li);
			if (ls->throttle_ms > 0)
				break;	/* throttled: one at a time */
		}
	}
	return wait;
}

/* listener_index - index of a listener name in the current config, or -1 */
static long
listener_index(const struct master *m, const char *name)
{
	const struct listener_cfg *lc = config_listener(m->cfg, name);

	return lc != NULL ? (long)(lc - m->cfg->listeners) : -1;
}

/* note_death - log an exit and adjust the listener's throttle */
static void
note_death(struct master *m, struct worker_rec *w, int status)
{
	long lived = ms_since(&w->started), li = listener_index(m, w->listener);
	bool crashed = WIFSIGNALED(status) || (WIFEXITED(status) && WEXITSTATUS(status) != 0);
	struct listener_state *ls;

	if (crashed) {
		if (WIFSIGNALED(status))
			log_warnx("worker %ld of listener %s died with signal %d after %ld ms",
				  (long)w->pid, w->listener, WTERMSIG(status), lived);
		else
			log_warnx("worker %ld of listener %s exited with status %d after %ld ms%s",
				  (long)w->pid, w->listener, WEXITSTATUS(status), lived,
				  WEXITSTATUS(status) == POLICY_WATCHDOG_STATUS ?
				  " (policy watchdog: its policy ran far past policy_timeout inside "
				  "one C call; the client was answered 421)" : "");
	}
	if (spool_clean_dir(m->cfg->spool_dir, w->pid) > 0)
		log_info("removed spool files left by worker %ld", (long)w->pid);
	if (quarantine_clean_tmp(m->cfg->quarantine_dir, w->pid) > 0)
		log_info("quarantine: removed an unfinished file left by worker %ld", (long)w->pid);
	if (li < 0 || w->generation != m->generation)
		return;
	ls = &m->lstate[li];
	if (crashed && lived < YOUNG_DEATH_MS) {
		ls->throttle_ms = ls->throttle_ms ? ls->throttle_ms * 2 : THROTTLE_START_MS;
		if (ls->throttle_ms > THROTTLE_MAX_MS)
			ls->throttle_ms = THROTTLE_MAX_MS;
		clock_gettime(CLOCK_MONOTONIC, &ls->not_before);
		ls->not_before.tv_sec += ls->throttle_ms / 1000;
		ls->not_before.tv_nsec += (ls->throttle_ms % 1000) * 1000000;
		if (ls->not_before.tv_nsec >= 1000000000) {
			ls->not_before.tv_sec++;
			ls->not_before.tv_nsec -= 1000000000;
		}
		log_warnx("listener %s: workers die young; next start in %ld ms", w->listener,
			  ls->throttle_ms);
	} else if (!crashed || lived >= YOUNG_DEATH_MS)
		ls->throttle_ms = 0;
}

/* reap - collect every exited worker */
static void
reap(struct master *m)
{
	int status;
	pid_t pid;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		if (reap_admin(m, pid, status))
			continue;
		for (size_t i = 0; i < m->nworkers; i++) {
			struct worker_rec *w = &m->workers[i];

			if (w->pid != pid)
				continue;
			stats_worker_gone(pid);
			note_death(m, w, status);
			w->pid = 0;
			break;
		}
	}
}

/* signal_generation - send sig to every worker of generations other than keep (-1: all) */
static void
signal_workers(struct master *m, int sig, int keep)
{
	for (size_t i = 0; i < m->nworkers; i++)
		if (m->workers[i].pid != 0 && m->workers[i].generation != keep)
			kill(m->workers[i].pid, sig);
}

/*
 * master_load_engine - the ClamAV engine of cfg, or NULL when none is configured
 *
 * Returns -1 with *error_r when one is configured and does not load.
 */
int
master_load_engine(const struct config *cfg, struct clam_engine **clam_r, char **error_r)
{
	*clam_r = NULL;
	if (cfg->clamav.database == NULL)
		return 0;
	if ((*clam_r = clam_engine_load(&cfg->clamav, cfg->clamav.temp_dir, error_r)) == NULL)
		return -1;
	log_info("clamav: %u signatures from %s loaded in %ld ms", clam_engine_signatures(*clam_r),
		 cfg->clamav.database, clam_engine_load_ms(*clam_r));
	return 0;
}

/*
 * switch_generation - start workers on cfg, policies and clam; the old ones drain
 *
 * The master keeps only the new generation's objects: the old workers have
 * their own copies of everything since fork().
 */
static void
switch_generation(struct master *m, struct config *cfg, struct policy **policies,
		  struct clam_engine *clam, const char *why)
{
	bool new_engine = clam != NULL && clam != m->clam;

	log_set_level(cfg->log_level);
	log_set_json(strcmp(cfg->log_format, "json") == 0);
	if (policies != m->policies)
		master_free_policies(m->cfg, m->policies);
	if (clam != m->clam)
		clam_engine_free(m->clam);
	if (cfg != m->cfg)
		config_free(m->cfg);
	m->cfg = cfg;
	m->policies = policies;
	m->clam = clam;
	clock_gettime(CLOCK_MONOTONIC, &m->clam_checked);
	free(m->lstate);
	m->lstate = xcalloc(cfg->nlisteners, sizeof(*m->lstate));
	m->generation++;
	for (size_t i = 0; i < cfg->nlisteners; i++)
		stats_listener(cfg->listeners[i].name);
	stats_reload(true, clam ? clam_engine_signatures(clam) : 0, new_engine);
	log_info("%s: generation %d, %zu listener(s)", why, m->generation, cfg->nlisteners);
	fill_pools(m);
	/* the old generation finishes its sessions, to the client's QUIT, and leaves */
	signal_workers(m, SIGUSR1, m->generation);
}

/* reload - SIGHUP: a new generation on a new config, or keep the old one */
static void
reload(struct master *m)
{
	char *error = NULL, *why;
	struct config *cfg = config_load(m->cfg->path, m->overrides, m->noverrides, &error);
	struct policy **policies;
	struct clam_engine *clam;

	if (cfg == NULL) {
		log_error("reload failed, keeping the running configuration: %s", error);
		stats_reload(false, 0, false);
		free(error);
		return;
	}
	if ((policies = master_load_policies(cfg, &error)) == NULL) {
		log_error("reload failed, keeping the running configuration and policies: %s", error);
		stats_reload(false, 0, false);
		free(error);
		config_free(cfg);
		return;
	}
	/*
	 * clamav.temp_dir is made at start as root (main.c); a reload that
	 * turns ClamAV on, or moves temp_dir, makes it here, as the user the
	 * scans run as.
	 */
	if (cfg->clamav.database != NULL && mkdir(cfg->clamav.temp_dir, 0700) < 0 &&
	    errno != EEXIST)
		error = xasprintf("clamav.temp_dir %s: %s", cfg->clamav.temp_dir, strerror(errno));
	if (error != NULL || master_load_engine(cfg, &clam, &error) < 0) {
		log_error("reload failed, keeping the running configuration and signatures: %s", error);
		stats_reload(false, 0, false);
		free(error);
		master_free_policies(cfg, policies);
		config_free(cfg);
		return;
	}
	if (master_bind(cfg, &m->sockets, &m->nsockets, &error) < 0) {
		log_error("reload failed, keeping the running configuration: %s", error);
		stats_reload(false, 0, false);
		free(error);
		clam_engine_free(clam);
		master_free_policies(cfg, policies);
		config_free(cfg);
		return;
	}
	if (strcmp(cfg->spool_dir, m->cfg->spool_dir) != 0)
		log_warnx("reload: spool_dir changed to %s; it must exist and be writable",
			  cfg->spool_dir);
	why = xasprintf("reloaded %s", cfg->path);
	switch_generation(m, cfg, policies, clam, why);
	free(why);
	master_check_forwards(cfg);
}

/*
 * check_signatures - clamd's SelfCheck: new signature files make a new engine
 *
 * Only the engine changes; configuration and policies stay as they are. A
 * database that fails to load keeps the running engine (and is tried again
 * at the next check: the directory still differs from what was loaded).
 */
static void
check_signatures(struct master *m)
{
	struct clam_engine *clam;
	char *error = NULL;

	if (m->clam == NULL || m->cfg->clamav.self_check_ms == 0 ||
	    ms_since(&m->clam_checked) < m->cfg->clamav.self_check_ms)
		return;
	clock_gettime(CLOCK_MONOTONIC, &m->clam_checked);
	if (!clam_engine_db_changed(m->clam))
		return;
	log_info("clamav: %s changed, loading the signatures again", m->cfg->clamav.database);
	if (master_load_engine(m->cfg, &clam, &error) < 0) {
		log_error("clamav: signature reload failed, keeping the running engine: %s", error);
		stats_reload(false, 0, false);
		free(error);
		return;
	}
	switch_generation(m, m->cfg, m->policies, clam, "signatures reloaded");
}

/* any_workers - is any worker still running */
static bool
any_workers(const struct master *m)
{
	for (size_t i = 0; i < m->nworkers; i++)
		if (m->workers[i].pid != 0)
			return true;
	return false;
}

/* drain - SIGTERM: stop accepting, let sessions finish, then leave */
static void
drain(struct master *m)
{
	struct timespec start;

	m->stopping = true;
	log_info("stopping: draining sessions (at most %ld s)", m->cfg->drain_timeout_ms / 1000);
	for (size_t i = 0; i < m->nsockets; i++) {
		close(m->sockets[i].fd);
		m->sockets[i].fd = -1;
	}
	signal_workers(m, SIGTERM, -1);
	clock_gettime(CLOCK_MONOTONIC, &start);
	while (any_workers(m) && ms_since(&start) < m->cfg->drain_timeout_ms) {
		struct pollfd pfd = { .fd = sig_pipe[0], .events = POLLIN };
		char drainbuf[64];

		poll(&pfd, 1, 100);
		while (read(sig_pipe[0], drainbuf, sizeof(drainbuf)) > 0)
			;
		reap(m);
	}
	if (any_workers(m)) {
		log_warnx("drain timeout: killing the remaining workers (their MTA retries)");
		signal_workers(m, SIGKILL, -1);
		while (any_workers(m)) {
			int status;
			pid_t pid = waitpid(-1, &status, 0);

			if (pid < 0)
				break;
			for (size_t i = 0; i < m->nworkers; i++)
				if (m->workers[i].pid == pid)
					m->workers[i].pid = 0;
		}
	}
	log_info("stopped");
}

/* master_run - see master.h; returns the exit status */
int
master_run(struct config *cfg, struct policy **policies, struct clam_engine *clam,
	   struct bound *sockets, size_t nsockets, const struct master_fds *fds,
	   char *const *overrides, size_t noverrides)
{
	struct master m = { 0 };

	m.fds = *fds;
	control_server_init(&m.control, m.fds.control);
	m.fds.control = -1;	/* the control server owns it now */
	metrics_server_init(&m.metrics, m.fds.metrics);
	m.fds.metrics = -1;	/* and the metrics server this one */
	m.cfg = cfg;
	m.policies = policies;
	m.clam = clam;
	clock_gettime(CLOCK_MONOTONIC, &m.clam_checked);
	m.sockets = sockets;
	m.nsockets = nsockets;
	m.overrides = overrides;
	m.noverrides = noverrides;
	m.generation = 1;
	m.lstate = xcalloc(cfg->nlisteners, sizeof(*m.lstate));
	install_signals();
	master_hold_signals(false);	/* a stop or reload held during start-up arrives now */
	for (size_t i = 0; i < cfg->nlisteners; i++)
		log_info("listener %s: %s on %s, forward to %s, %ld workers, policy %s",
			 cfg->listeners[i].name, cfg->listeners[i].is_lmtp ? "LMTP" : "SMTP",
			 cfg->listeners[i].listen, cfg->listeners[i].forward, cfg->listeners[i].workers,
			 policies[i] ? policy_path(policies[i]) : "none (every message passes)");
	if (!got_term) {	/* stopped during start-up: no worker to start, only to drain */
		fill_pools(&m);
		notify_ready();	/* Type=notify: the first generation's workers are started */
	}
	for (;;) {
		struct pollfd pfd[1 + CONTROL_CLIENTS_MAX + 1 + METRICS_CLIENTS_MAX + 1] = {
			{ .fd = sig_pipe[0], .events = POLLIN },
		};
		const size_t room = sizeof(pfd) / sizeof(pfd[0]);
		long wait = got_term ? 0 : fill_pools(&m);
		size_t npfd = 1;
		struct control_request req;
		enum control_action action;
		char drainbuf[64];
		int timeout = wait < 0 || wait > 1000 ? 1000 : (int)wait;

		npfd += control_server_pollfds(&m.control, pfd + npfd, room - npfd);
		npfd += metrics_server_pollfds(&m.metrics, pfd + npfd, room - npfd);
		timeout = control_server_timeout(&m.control, timeout);
		timeout = metrics_server_timeout(&m.metrics, timeout);
		poll(pfd, npfd, timeout);
		while (read(sig_pipe[0], drainbuf, sizeof(drainbuf)) > 0)
			;
		while ((action = control_server_work(&m.control, stats_get(), &req)) != CONTROL_NONE) {
			if (action == CONTROL_RELOAD)
				got_hup = 1;
			else
				run_admin(&m, &req);
		}
		metrics_server_work(&m.metrics, stats_get());
		if (got_chld) {
			got_chld = 0;
			reap(&m);
		}
		if (got_term) {
			notify_stopping();
			drain(&m);
			break;
		}
		if (got_hup) {
			got_hup = 0;
			notify_reloading();
			reload(&m);
			notify_ready();
		} else
			check_signatures(&m);
	}
	for (size_t i = 0; i < m.nworkers; i++)
		free(m.workers[i].listener);
	free(m.workers);
	free(m.lstate);
	for (size_t i = 0; i < m.nsockets; i++) {
		if (m.sockets[i].fd >= 0)
			close(m.sockets[i].fd);
		free(m.sockets[i].listen);
	}
	free(m.sockets);
	control_server_close(&m.control, true);
	metrics_server_close(&m.metrics, true);
	master_free_policies(m.cfg, m.policies);
	clam_engine_free(m.clam);
	config_free(m.cfg);
	return 0;
}
