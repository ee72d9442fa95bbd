/*
 * metrics - the Prometheus text exposition of the shared counters, served by the master
 *
 * metrics_listen() binds metrics.listen (a loopback address: config.c
 * refuses any other). The master polls it and each scraper's connection with
 * its other descriptors (metrics_server_*), as it does the control socket's
 * clients: one request is answered per connection, up to METRICS_CLIENTS_MAX
 * at a time, each with METRICS_REQUEST_MS to send its request's head and
 * METRICS_ANSWER_MS to take the answer. The master never waits on a scraper,
 * so one that sends or reads a byte at a time costs a slot, not the master's
 * loop (which reaps and restarts workers); the workers pay nothing (they only
 * add to the shared counters).
 *
 * metrics_render() writes the exposition (text format 0.0.4): messages by
 * listener and verdict, results, bytes, stage latency histograms, scanner
 * and policy errors, workers busy and idle, reloads and the last result,
 * ClamAV signatures and their age, uptime.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "metrics.h"
#include "stats.h"
#include "verdict.h"
#include "util/buf.h"
#include "util/io.h"
#include "util/net.h"
#include "util/xalloc.h"

#define METRICS_DEFER_S		10	/* the kernel holds a silent connection this long */

static const char *const stage_names[STAGE_COUNT] = {
	"receive", "policy", "clamav", "spamd", "reinject",
};
static const char *const error_names[ERR_COUNT] = { "policy", "clamav", "spamd" };
static const char *const result_names[RESULT_COUNT] = {
	"passed", "deferred", "rejected", "partial",
};

/* metrics_listen - a listening socket on addr; -1 with *error_r */
int
metrics_listen(const char *addr, char **error_r)
{
	struct endpoint ep;
	const char *why;
	int fd;

	if (net_parse_endpoint(addr, &ep, &why) < 0) {
		*error_r = xasprintf("metrics.listen %s: %s", addr, why);
		return -1;
	}
	if ((fd = net_listen(&ep)) < 0) {
		*error_r = xasprintf("metrics.listen %s: %s", addr, strerror(errno));
		return -1;
	}
	/*
	 * With TCP_DEFER_ACCEPT the kernel wakes us only once the request's
	 * first bytes are there, so connections that never send anything do
	 * not take the slots. Best effort: without it the bounds still hold.
	 */
	{
		int secs = METRICS_DEFER_S;

		(void)setsockopt(fd, IPPROTO_TCP, TCP_DEFER_ACCEPT, &secs, sizeof(secs));
	}
	return fd;
}

/* help_type - the # HELP and # TYPE lines of a metric */
static void
help_type(struct buf *out, const char *name, const char *type, const char *help)
{
	buf_appendf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* render_hist - one histogram series, cumulative buckets in seconds */
static void
render_hist(struct buf *out, const char *listener, const char *stage, const struct stats_hist *h)
{
	uint64_t cum = 0;

	for (int b = 0; b < STATS_BUCKETS; b++) {
		cum += h->bucket[b];
		if (stats_bucket_ms[b] < 0)
			buf_appendf(out, "postern_stage_seconds_bucket{listener=\"%s\",stage=\"%s\","
				    "le=\"+Inf\"} %llu\n", listener, stage, (unsigned long long)cum);
		else
			buf_appendf(out, "postern_stage_seconds_bucket{listener=\"%s\",stage=\"%s\","
				    "le=\"%g\"} %llu\n", listener, stage, stats_bucket_ms[b] / 1000.0,
				    (unsigned long long)cum);
	}
	buf_appendf(out, "postern_stage_seconds_sum{listener=\"%s\",stage=\"%s\"} %.6f\n", listener,
		    stage, h->sum_us / 1e6);
	buf_appendf(out, "postern_stage_seconds_count{listener=\"%s\",stage=\"%s\"} %llu\n", listener,
		    stage, (unsigned long long)h->count);
}

/* workers_of - busy and idle workers of listener slot li */
static void
workers_of(const struct stats *st, int li, unsigned *busy, unsigned *idle)
{
	*busy = *idle = 0;
	for (int i = 0; i < STATS_WORKERS_MAX; i++)
		if (st->workers[i].pid != 0 && st->workers[i].listener == li) {
			if (st->workers[i].busy)
				(*busy)++;
			else
				(*idle)++;
		}
}

/* metrics_render - the whole exposition into out */
void
metrics_render(const struct stats *st, struct buf *out)
{
	time_t now = time(NULL);

	help_type(out, "postern_messages_total", "counter", "Messages received to the end of data.");
	for (int i = 0; i < STATS_LISTENERS_MAX; i++)
		if (st->listeners[i].name[0])
			buf_appendf(out, "postern_messages_total{listener=\"%s\"} %llu\n",
				    st->listeners[i].name,
				    (unsigned long long)st->listeners[i].messages);
	help_type(out, "postern_recipients_total", "counter", "Recipients by the policy's verdict.");
	for (int i = 0; i < STATS_LISTENERS_MAX; i++)
		for (int v = 0; v <= VERDICT_TEMPFAIL && st->listeners[i].name[0]; v++)
			buf_appendf(out, "postern_recipients_total{listener=\"%s\",verdict=\"%s\"} %llu\n",
				    st->listeners[i].name, verdict_name((enum verdict)v),
				    (unsigned long long)st->listeners[i].verdicts[v]);
	help_type(out, "postern_results_total", "counter",
		  "Messages by outcome: passed, deferred (4xx), rejected (5xx), partial.");
	for (int i = 0; i < STATS_LISTENERS_MAX; i++)
		for (int r = 0; r < RESULT_COUNT && st->listeners[i].name[0]; r++)
			buf_appendf(out, "postern_results_total{listener=\"%s\",result=\"%s\"} %llu\n",
				    st->listeners[i].name, result_names[r],
				    (unsigned long long)st->listeners[i].results[r]);
	help_type(out, "postern_bytes_total", "counter", "Bytes of the messages received.");
	for (int i = 0; i < STATS_LISTENERS_MAX; i++)
		if (st->listeners[i].name[0])
			buf_appendf(out, "postern_bytes_total{listener=\"%s\"} %llu\n",
				    st->listeners[i].name, (unsigned long long)st->listeners[i].bytes);
	help_type(out, "postern_errors_total", "counter",
		  "Policy failures and scans that did not finish (limits, timeouts, scanner down).");
	for (int i = 0; i < STATS_LISTENERS_MAX; i++)
		for (int e = 0; e < ERR_COUNT && st->listeners[i].name[0]; e++)
			buf_appendf(out, "postern_errors_total{listener=\"%s\",source=\"%s\"} %llu\n",
				    st->listeners[i].name, error_names[e],
				    (unsigned long long)st->listeners[i].errors[e]);
	help_type(out, "postern_stage_seconds", "histogram",
		  "Time per stage: receive, policy (scanners included), clamav, spamd, reinject.");
	for (int i = 0; i < STATS_LISTENERS_MAX; i++)
		for (int s = 0; s < STAGE_COUNT && st->listeners[i].name[0]; s++)
			render_hist(out, st->listeners[i].name, stage_names[s], &st->listeners[i].stage[s]);
	help_type(out, "postern_workers", "gauge", "Worker processes by state.");
	for (int i = 0; i < STATS_LISTENERS_MAX; i++) {
		unsigned busy, idle;

		if (!st->listeners[i].name[0])
			continue;
		workers_of(st, i, &busy, &idle);
		buf_appendf(out, "postern_workers{listener=\"%s\",state=\"busy\"} %u\n"
			    "postern_workers{listener=\"%s\",state=\"idle\"} %u\n",
			    st->listeners[i].name, busy, st->listeners[i].name, idle);
	}
	help_type(out, "postern_reloads_total", "counter", "Reloads by result (SIGHUP, signatures).");
	buf_appendf(out, "postern_reloads_total{result=\"ok\"} %llu\n"
		    "postern_reloads_total{result=\"failed\"} %llu\n",
		    (unsigned long long)st->reloads, (unsigned long long)st->reload_failures);
	help_type(out, "postern_last_reload_success", "gauge",
		  "1 if the last reload succeeded, 0 if it failed, -1 before any.");
	buf_appendf(out, "postern_last_reload_success %d\n", st->last_reload_ok);
	help_type(out, "postern_clamav_signatures", "gauge", "Signatures of the ClamAV engine in use.");
	buf_appendf(out, "postern_clamav_signatures %u\n", st->signatures);
	help_type(out, "postern_clamav_signatures_age_seconds", "gauge",
		  "Seconds since the ClamAV engine in use was loaded.");
	buf_appendf(out, "postern_clamav_signatures_age_seconds %lld\n",
		    st->signatures_loaded ? (long long)(now - st->signatures_loaded) : -1LL);
	help_type(out, "postern_uptime_seconds", "gauge", "Seconds since posternd started.");
	buf_appendf(out, "postern_uptime_seconds %lld\n", (long long)(now - st->started));
}

/* slot_release - close client c's connection and free what it holds */
static void
slot_release(struct metrics_client *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	free(c->req);
	c->req = NULL;
	buf_release(&c->out);
	c->have = c->sent = 0;
}

/* metrics_server_init - a server for listening socket lfd (-1: metrics off); takes lfd */
void
metrics_server_init(struct metrics_server *ms, int lfd)
{
	ms->lfd = lfd;
	memset(&ms->backoff, 0, sizeof(ms->backoff));
	for (size_t i = 0; i < METRICS_CLIENTS_MAX; i++) {
		ms->clients[i].fd = -1;
		ms->clients[i].req = NULL;
		buf_init(&ms->clients[i].out, 0);
		ms->clients[i].have = ms->clients[i].sent = 0;
	}
}

/* metrics_server_close - close every client, and the listener too with and_listener */
void
metrics_server_close(struct metrics_server *ms, bool and_listener)
{
	for (size_t i = 0; i < METRICS_CLIENTS_MAX; i++)
		slot_release(&ms->clients[i]);
	if (and_listener && ms->lfd >= 0) {
		close(ms->lfd);
		ms->lfd = -1;
	}
}

/* answering - the request is read and the answer is being written */
static bool
answering(const struct metrics_client *c)
{
	return c->req == NULL;
}

/*
 * metrics_server_pollfds - what the master's poll() watches: each client (for
 * its request, then for room for the answer), and the listener while a slot is
 * free and accept() is not paused. Fills at most room entries; returns how many.
 */
size_t
metrics_server_pollfds(const struct metrics_server *ms, struct pollfd *pfd, size_t room)
{
	size_t n = 0;
	bool slot = false;

	if (ms->lfd < 0)
		return 0;
	for (size_t i = 0; i < METRICS_CLIENTS_MAX && n < room; i++) {
		const struct metrics_client *c = &ms->clients[i];

		if (c->fd < 0) {
			slot = true;
			continue;
		}
		pfd[n].fd = c->fd;
		pfd[n].events = answering(c) ? POLLOUT : POLLIN;
		pfd[n++].revents = 0;
	}
	if (slot && n < room && !accept_backoff_paused(&ms->backoff, io_now_ms())) {
		pfd[n].fd = ms->lfd;
		pfd[n].events = POLLIN;
		pfd[n++].revents = 0;
	}
	return n;
}

/* metrics_server_timeout - wait_ms, or less when a client's time is up sooner */
int
metrics_server_timeout(const struct metrics_server *ms, int wait_ms)
{
	long long now = io_now_ms();

	for (size_t i = 0; i < METRICS_CLIENTS_MAX; i++) {
		long long left;

		if (ms->clients[i].fd < 0)
			continue;
		left = ms->clients[i].deadline_ms - now;
		if (left < 0)
			left = 0;
		if (wait_ms < 0 || left < wait_ms)
			wait_ms = (int)left;
	}
	return accept_backoff_timeout(&ms->backoff, now, wait_ms);
}

/* free_slot - an unused client slot, or NULL when all are taken */
static struct metrics_client *
free_slot(struct metrics_server *ms)
{
	for (size_t i = 0; i < METRICS_CLIENTS_MAX; i++)
		if (ms->clients[i].fd < 0)
			return &ms->clients[i];
	return NULL;
}

/* accept_clients - take new scrapers while there is a slot */
static void
accept_clients(struct metrics_server *ms)
{
	struct metrics_client *c;

	while ((c = free_slot(ms)) != NULL) {
		int fd = accept_backoff_accept(ms->lfd, &ms->backoff, "metrics listener", io_now_ms());

		if (fd < 0)
			return;
		c->fd = fd;
		c->req = xmalloc(METRICS_REQUEST_MAX);
		c->have = c->sent = 0;
		c->deadline_ms = io_now_ms() + METRICS_REQUEST_MS;
	}
}

/* request_status - the HTTP status for the request line in req */
static const char *
request_status(const char *req)
{
	if (strncmp(req, "GET ", 4) != 0)
		return "400 Bad Request";
	if (strncmp(req + 4, "/metrics ", 9) != 0 && strncmp(req + 4, "/ ", 2) != 0 &&
	    strncmp(req + 4, "/metrics?", 9) != 0)
		return "404 Not Found";
	return "200 OK";
}

/* prepare_answer - c's request is done (or its time is up): build the answer, drop the request */
static void
prepare_answer(struct metrics_client *c, const char *status, const struct stats *st)
{
	struct buf body;

	buf_init(&body, 0);
	if (strcmp(status, "200 OK") == 0)
		metrics_render(st, &body);
	else
		buf_appendf(&body, "%s\n", status);
	buf_reset(&c->out);
	buf_appendf(&c->out, "HTTP/1.0 %s\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
		    "Content-Length: %zu\r\nConnection: close\r\n\r\n", status, body.len);
	buf_append(&c->out, body.ptr, body.len);
	buf_release(&body);
	free(c->req);
	c->req = NULL;
	c->sent = 0;
	c->deadline_ms = io_now_ms() + METRICS_ANSWER_MS;
}

enum request_state { REQ_MORE, REQ_WHOLE, REQ_GONE };

/*
 * read_request - read what c sent: REQ_WHOLE once the request's head is whole,
 * cannot grow, or ended with the scraper's half-close after some bytes;
 * REQ_GONE when it left without a byte or on an error; REQ_MORE otherwise
 */
static enum request_state
read_request(struct metrics_client *c)
{
	for (;;) {
		ssize_t n = recv(c->fd, c->req + c->have, METRICS_REQUEST_MAX - 1 - c->have, 0);

		if (n < 0)
			return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? REQ_MORE
											  : REQ_GONE;
		if (n == 0)
			return c->have > 0 ? REQ_WHOLE : REQ_GONE;
		c->have += (size_t)n;
		c->req[c->have] = '\0';
		if (strstr(c->req, "\r\n\r\n") || strstr(c->req, "\n\n") ||
		    c->have == METRICS_REQUEST_MAX - 1)
			return REQ_WHOLE;
	}
}

/* write_answer - write what fits of c's answer; true when all of it went or the scraper is gone */
static bool
write_answer(struct metrics_client *c)
{
	while (c->sent < c->out.len) {
		ssize_t n = send(c->fd, c->out.ptr + c->sent, c->out.len - c->sent, MSG_NOSIGNAL);

		if (n < 0)
			return errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR;
		c->sent += (size_t)n;
	}
	return true;
}

/*
 * metrics_server_work - after the master's poll(): take new scrapers, read
 * requests, write answers, end clients whose time is up. A request whose head
 * has not come whole METRICS_REQUEST_MS after the connection gets 408; an
 * answer not all taken METRICS_ANSWER_MS after it was ready is cut. Nothing
 * here waits: a scraper that sends or reads a byte at a time costs a slot,
 * not the master's time.
 */
void
metrics_server_work(struct metrics_server *ms, const struct stats *st)
{
	if (ms->lfd < 0)
		return;
	accept_clients(ms);
	for (size_t i = 0; i < METRICS_CLIENTS_MAX; i++) {
		struct metrics_client *c = &ms->clients[i];

		if (c->fd < 0)
			continue;
		if (!answering(c)) {
			enum request_state rs = read_request(c);

			if (rs == REQ_GONE) {
				slot_release(c);
				continue;
			}
			if (rs == REQ_WHOLE)
				prepare_answer(c, request_status(c->req), st);
			else if (io_now_ms() >= c->deadline_ms)
				prepare_answer(c, "408 Request Timeout", st);
			else
				continue;	/* the rest of the request later */
		}
		if (write_answer(c) || io_now_ms() >= c->deadline_ms)
			slot_release(c);
	}
}
