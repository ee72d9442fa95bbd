/*
 * stats - counters and stage histograms shared by the master and its workers; see stats.h
 *
 * Workers find their listener's slot by name on every count: a linear scan
 * over at most STATS_LISTENERS_MAX short strings, negligible next to a
 * message, and it needs no index handed through every layer.
 */
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "stats.h"
#include "util/proc.h"

const long stats_bucket_ms[STATS_BUCKETS] = {
	1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, -1 /* +Inf */
};

static struct stats *shared;	/* the mapping, NULL before stats_init() */
static int my_worker = -1;	/* this worker's slot, found at its first count */

/* stats_init - map the shared counters (master, before any fork); -1 with errno */
int
stats_init(void)
{
	void *p = mmap(NULL, sizeof(*shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
		       -1, 0);

	if (p == MAP_FAILED)
		return -1;
	shared = p;
	shared->started = time(NULL);
	shared->last_reload_ok = -1;
	return 0;
}

/* stats_get - the shared counters, or NULL when not initialised */
struct stats *
stats_get(void)
{
	return shared;
}

/* stats_now_us - monotonic microseconds, for stage timings */
long long
stats_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/*
 * stats_listener - the slot of listener name, made if new (master), or -1
 *
 * Only the master makes slots (at start and reload), before the workers
 * that count into them exist, so there is no race on a name being written.
 */
int
stats_listener(const char *name)
{
	int free_slot = -1;

	if (shared == NULL)
		return -1;
	for (int i = 0; i < STATS_LISTENERS_MAX; i++) {
		if (strncmp(shared->listeners[i].name, name, sizeof(shared->listeners[i].name)) == 0)
			return i;
		if (free_slot < 0 && shared->listeners[i].name[0] == '\0')
			free_slot = i;
	}
	if (free_slot >= 0)
		strncpy(shared->listeners[free_slot].name, name,
			sizeof(shared->listeners[free_slot].name) - 1);
	return free_slot;
}

/* find - the slot of a listener that exists, or NULL */
static struct stats_listener *
find(const char *name)
{
	if (shared == NULL || name == NULL)
		return NULL;
	for (int i = 0; i < STATS_LISTENERS_MAX; i++)
		if (strncmp(shared->listeners[i].name, name, sizeof(shared->listeners[i].name)) == 0)
			return &shared->listeners[i];
	return NULL;
}

/* add - atomic addition (workers count concurrently) */
static void
add(uint64_t *counter, uint64_t n)
{
	__atomic_fetch_add(counter, n, __ATOMIC_RELAXED);
}

/* stats_worker_start - the master records a new worker of listener */
void
stats_worker_start(pid_t pid, int listener)
{
	if (shared == NULL)
		return;
	for (int i = 0; i < STATS_WORKERS_MAX; i++)
		if (shared->workers[i].pid == 0) {
			shared->workers[i].listener = listener;
			shared->workers[i].busy = 0;
			__atomic_store_n(&shared->workers[i].pid, pid, __ATOMIC_RELEASE);
			return;
		}
}

/* stats_worker_gone - the master frees the slot of a worker that exited */
void
stats_worker_gone(pid_t pid)
{
	if (shared == NULL)
		return;
	for (int i = 0; i < STATS_WORKERS_MAX; i++)
		if (shared->workers[i].pid == pid) {
			shared->workers[i].busy = 0;
			__atomic_store_n(&shared->workers[i].pid, 0, __ATOMIC_RELEASE);
			return;
		}
}

/* stats_worker_busy - this worker starts or ends a session */
void
stats_worker_busy(bool busy)
{
	pid_t me = self_pid();

	if (shared == NULL)
		return;
	if (my_worker < 0 || shared->workers[my_worker].pid != me)
		for (int i = 0; i < STATS_WORKERS_MAX; i++)
			if (__atomic_load_n(&shared->workers[i].pid, __ATOMIC_ACQUIRE) == me) {
				my_worker = i;
				break;
			}
	if (my_worker >= 0 && shared->workers[my_worker].pid == me)
		__atomic_store_n(&shared->workers[my_worker].busy, busy ? 1 : 0, __ATOMIC_RELAXED);
}

/* stats_observe - one latency of a stage */
void
stats_observe(const char *listener, enum stats_stage stage, long long us)
{
	struct stats_listener *l = find(listener);
	struct stats_hist *h;
	int b = STATS_BUCKETS - 1;

	if (l == NULL || us < 0)
		return;
	h = &l->stage[stage];
	for (int i = 0; i < STATS_BUCKETS - 1; i++)
		if (us <= stats_bucket_ms[i] * 1000) {
			b = i;
			break;
		}
	add(&h->bucket[b], 1);
	add(&h->count, 1);
	add(&h->sum_us, (uint64_t)us);
}

/* stats_error - a scanner or policy failure */
void
stats_error(const char *listener, enum stats_error e)
{
	struct stats_listener *l = find(listener);

	if (l != NULL)
		add(&l->errors[e], 1);
}

/* stats_message - one finished transaction: size, verdicts, result */
void
stats_message(const char *listener, const struct message *m)
{
	struct stats_listener *l = find(listener);
	size_t ok = 0, temp = 0, perm = 0, n = 0;

	if (l == NULL)
		return;
	add(&l->messages, 1);
	add(&l->bytes, (uint64_t)(m->size > 0 ? m->size : 0));
	for (size_t i = 0; i < m->nrcpts; i++) {
		if (m->rcpts[i].added)
			continue;
		n++;
		add(&l->verdicts[m->rcpts[i].verdict], 1);
		ok += m->rcpts[i].code / 100 == 2;
		temp += m->rcpts[i].code == 0 || m->rcpts[i].code / 100 == 4;
		perm += m->rcpts[i].code / 100 == 5;
	}
	add(&l->results[ok == n ? RESULT_PASSED : temp == n ? RESULT_DEFERRED :
			perm == n ? RESULT_REJECTED : RESULT_PARTIAL], 1);
}

/* stats_reload - a reload was done (or refused); signatures of the engine now */
void
stats_reload(bool ok, unsigned int signatures, bool signatures_new)
{
	if (shared == NULL)
		return;
	add(ok ? &shared->reloads : &shared->reload_failures, 1);
	shared->last_reload_ok = ok;
	shared->last_reload = time(NULL);
	if (ok) {
		shared->signatures = signatures;
		if (signatures_new)
			shared->signatures_loaded = time(NULL);
	}
}
