/*
 * worker - one pre-forked process of a listener: accept, run a session, repeat
 *
 * All workers of a listener wait on the same non-blocking listening socket,
 * each through its own epoll set with EPOLLEXCLUSIVE, so a connection wakes
 * one idle worker, not all of them (with plain poll() every idle worker woke,
 * and bench/ measured a third of posternd's time in that herd). The woken
 * worker may still lose the accept() race and see EAGAIN: harmless.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "accept_backoff.h"
#include "log.h"
#include "policy.h"
#include "stats.h"
#include "reinject.h"
#include "smtp_server.h"
#include "util/io.h"
#include "worker.h"

#define WORKER_POLL_MS	1000	/* how often an idle worker looks at its parent */

static int listen_fd_to_close = -1;	/* our copy of the listening socket */
static int stop_pipe_w = -1;		/* on_term writes here; io_stop_fd reads */
static volatile sig_atomic_t retiring;	/* SIGUSR1: no new session, this one ends normally */

/*
 * on_term - SIGTERM/SIGINT: finish the session in progress, then leave
 *
 * Our copy of the listening socket is closed at once (close() is safe in a
 * handler): while any process holds it the kernel keeps accepting connections
 * that nobody will serve, and an MTA would wait on them for the whole drain.
 * close(), not shutdown(): on SIGHUP the new generation shares the socket.
 */
static void
on_term(int sig)
{
	int saved_errno = errno;

	(void)sig;
	io_stop_requested = 1;
	if (stop_pipe_w >= 0 && write(stop_pipe_w, "x", 1) < 0) {
		/* full already: a stop is pending anyway */
	}
	errno = saved_errno;
	if (listen_fd_to_close >= 0) {
		close(listen_fd_to_close);
		listen_fd_to_close = -1;
	}
}

/*
 * on_retire - SIGUSR1: a reload replaced our generation
 *
 * Unlike SIGTERM the session in progress is not cut short, idle or not: it
 * goes on until the client quits (as Postfix's smtpd does on postfix
 * reload), so an MTA that keeps its connection open never sees a 421 for a
 * reload. No new session is accepted: the listening socket is closed here.
 */
static void
on_retire(int sig)
{
	(void)sig;
	retiring = 1;
	if (listen_fd_to_close >= 0) {
		close(listen_fd_to_close);
		listen_fd_to_close = -1;
	}
}

/* stop_signals - what the master sends a worker: a set made fresh each time */
static void
stop_signals(sigset_t *set)
{
	sigemptyset(set);
	sigaddset(set, SIGTERM);
	sigaddset(set, SIGINT);
	sigaddset(set, SIGUSR1);
	sigaddset(set, SIGHUP);
}

/*
 * worker_block_signals - in the master, just before fork(): the signals a
 * worker must see with its own handlers stay pending in the child until
 * worker_signals() has installed them; *saved restores the master's mask
 */
void
worker_block_signals(sigset_t *saved)
{
	sigset_t set;

	stop_signals(&set);
	sigprocmask(SIG_BLOCK, &set, saved);
}

/* worker_signals - the master's handlers do not apply here */
static void
worker_signals(void)
{
	struct sigaction sa;
	sigset_t set;
	int stop_pipe[2];

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_term;	/* no SA_RESTART: a blocked poll() must see it */
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sa.sa_handler = on_retire;
	sigaction(SIGUSR1, &sa, NULL);
	sa.sa_handler = SIG_IGN;
	sigaction(SIGHUP, &sa, NULL);
	sigaction(SIGPIPE, &sa, NULL);
	sa.sa_handler = SIG_DFL;
	sigaction(SIGCHLD, &sa, NULL);
	/* if the master dies, do not linger holding the port */
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	if (pipe2(stop_pipe, O_NONBLOCK | O_CLOEXEC) == 0) {
		io_stop_fd = stop_pipe[0];
		stop_pipe_w = stop_pipe[1];
	}
	/* now a stop the master asked for before this point is delivered here */
	stop_signals(&set);
	sigprocmask(SIG_UNBLOCK, &set, NULL);
}

/* watch_listener - an epoll set that wakes this worker alone for a new connection */
static int
watch_listener(int listen_fd)
{
	struct epoll_event ev = { .events = EPOLLIN | EPOLLEXCLUSIVE, .data.fd = listen_fd };
	int ep = epoll_create1(EPOLL_CLOEXEC);

	if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, listen_fd, &ev) < 0)
		log_panic("epoll on the listening socket: %s", strerror(errno));
	return ep;
}

/* wait_for_client - wait on the listening socket; 1 ready, 0 not yet, -1 stop */
static int
wait_for_client(int ep, long idle_left_ms)
{
	struct epoll_event ev;
	int timeout = WORKER_POLL_MS, n;

	if (idle_left_ms >= 0 && idle_left_ms < timeout)
		timeout = (int)idle_left_ms;
	n = epoll_wait(ep, &ev, 1, timeout);
	if (io_stop_requested || retiring)
		return -1;
	if (n < 0 && errno != EINTR)
		log_panic("epoll_wait on the listening socket: %s", strerror(errno));
	return n > 0;
}

/*
 * rest_after_accept_failure - accept() failed for want of a resource (see
 * accept_backoff.c): the connection stays in the backlog and the listening
 * socket readable, so trying again at once would spin. Warn (rate-limited) and
 * sleep ACCEPT_PAUSE_MS; a stop signal ends the sleep early.
 */
static void
rest_after_accept_failure(struct accept_backoff *backoff, const char *listener, int err)
{
	char what[160];

	snprintf(what, sizeof(what), "listener %s", listener);
	accept_backoff_failed(backoff, what, err, io_now_ms());
	(void)poll(NULL, 0, ACCEPT_PAUSE_MS);
}

/* worker_main - see worker.h */
void
worker_main(const struct config *cfg, const struct listener_cfg *lc, const struct scanners *sc,
	    int listen_fd)
{
	struct downstream *ds = downstream_new();
	pid_t parent = getppid();
	long sessions = 0;
	int ep = watch_listener(listen_fd);
	struct accept_backoff backoff = { 0 };

	listen_fd_to_close = listen_fd;
	worker_signals();
	if (getppid() != parent)	/* the master died before prctl took effect */
		exit(0);
	while (sessions < lc->max_sessions && !io_stop_requested && !retiring) {
		struct sockaddr_storage peer;
		socklen_t plen = sizeof(peer);
		int fd, rc, one = 1;

		rc = wait_for_client(ep, downstream_idle_left_ms(ds, lc->forward_cache_ms));
		if (rc < 0)
			break;
		if (rc == 0) {
			downstream_expire(ds, lc->forward_cache_ms);
			if (getppid() != parent)
				break;
			continue;
		}
		fd = accept4(listen_fd, (struct sockaddr *)&peer, &plen, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (!accept_error_is_transient(errno))
				rest_after_accept_failure(&backoff, lc->name, errno);
			continue;
		}
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		stats_worker_busy(true);
		smtp_session_run(cfg, lc, ds, sc, fd, &peer);
		stats_worker_busy(false);
		sessions++;
		if (policy_is_spent(sc->policy)) {
			log_info("listener %s: policy limit reached, worker replaced with a fresh state",
				 lc->name);
			break;
		}
	}
	downstream_free(ds);
	exit(0);
}
