/*
 * stats - counters and stage histograms shared by the master and its workers
 *
 * stats_init() maps one anonymous shared page set in the master before the
 * first fork(); every worker inherits it and counts into it with atomic
 * additions, lock-free: a worker that dies mid-update loses nothing but its
 * own increment. The master reads it for `postern status` (control.c) and
 * the Prometheus exposition (metrics.c). Listeners are found by name, so the
 * counters of a listener go on across SIGHUP generations.
 *
 * Nothing here allocates after stats_init() and nothing logs.
 */
#ifndef POSTERN_STATS_H
#define POSTERN_STATS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#include "message.h"

#define STATS_LISTENERS_MAX	64	/* listeners counted (more are not counted) */
#define STATS_WORKERS_MAX	4096	/* worker slots (busy/idle) */
#define STATS_BUCKETS		14	/* latency buckets, see stats_bucket_ms[] */

enum stats_stage {
	STAGE_RECEIVE,		/* DATA/BDAT: first byte to end of data */
	STAGE_POLICY,		/* the policy chain, scanners included */
	STAGE_CLAMAV,		/* one ClamAV scan */
	STAGE_SPAMD,		/* one spamd exchange */
	STAGE_REINJECT,		/* reinjection of every copy */
	STAGE_COUNT,
};

enum stats_error {
	ERR_POLICY,		/* a policy failed or hit a limit */
	ERR_CLAMAV,		/* a scan that did not finish */
	ERR_SPAMD,		/* spamd down, slow or refused */
	ERR_COUNT,
};

enum stats_result {
	RESULT_PASSED, RESULT_DEFERRED, RESULT_REJECTED, RESULT_PARTIAL, RESULT_COUNT,
};

struct stats_hist {
	uint64_t bucket[STATS_BUCKETS];	/* counts per upper bound (not cumulative) */
	uint64_t count;			/* observations */
	uint64_t sum_us;		/* their sum, microseconds */
};

struct stats_listener {
	char	name[64];			/* the listener; "" = free slot */
	uint64_t messages;			/* transactions that reached the end of data */
	uint64_t bytes;				/* their size */
	uint64_t verdicts[VERDICT_TEMPFAIL + 1]; /* per recipient */
	uint64_t results[RESULT_COUNT];		/* per message */
	uint64_t errors[ERR_COUNT];		/* scanner and policy failures */
	struct stats_hist stage[STAGE_COUNT];	/* latencies */
};

struct stats_worker {
	pid_t	pid;		/* 0: free */
	int	listener;	/* index into listeners[] */
	int	busy;		/* in a session */
};

struct stats {
	time_t	started;			/* when posternd started */
	uint64_t reloads;			/* SIGHUP and signature reloads done */
	uint64_t reload_failures;		/* ... and refused */
	int	last_reload_ok;			/* 1, 0, or -1 before any */
	time_t	last_reload;			/* when */
	unsigned int signatures;		/* ClamAV signatures of the current engine */
	time_t	signatures_loaded;		/* when they were loaded */
	struct stats_listener listeners[STATS_LISTENERS_MAX];
	struct stats_worker workers[STATS_WORKERS_MAX];
};

extern const long stats_bucket_ms[STATS_BUCKETS];

int stats_init(void);
struct stats *stats_get(void);
int stats_listener(const char *name);
void stats_worker_start(pid_t pid, int listener);
void stats_worker_gone(pid_t pid);
void stats_worker_busy(bool busy);
void stats_observe(const char *listener, enum stats_stage stage, long long us);
void stats_error(const char *listener, enum stats_error e);
void stats_message(const char *listener, const struct message *m);
void stats_reload(bool ok, unsigned int signatures, bool signatures_new);
long long stats_now_us(void);

#endif
