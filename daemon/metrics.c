/*
 * metrics - the Prometheus text exposition of the shared counters, served by the master
 *
 * metrics_listen() binds metrics.listen (a loopback address: config.c
 * refuses any other); the master adds the socket to its poll loop and calls
 * metrics_serve() when a scraper connects. One request is answered per
 * connection, with short bounds on reading the request and writing the
 * answer: a slow scraper costs the master at most METRICS_IO_MS, and the
 * workers nothing (they only add to the shared counters).
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
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "metrics.h"
#include "stats.h"
#include "verdict.h"
#include "util/buf.h"
#include "util/net.h"
#include "util/xalloc.h"

#define METRICS_IO_MS		500	/* per request read and per answer write */
#define METRICS_DEFER_S		10	/* the kernel holds a silent connection this long */
#define METRICS_REQUEST_MAX	8192	/* a GET with headers fits */

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
	 * The master reads a request for at most METRICS_IO_MS after accept():
	 * a scraper descheduled on a busy machine between its connect() and its
	 * request would get a 400. With TCP_DEFER_ACCEPT the kernel wakes us
	 * only once the request's first bytes are there. Best effort: without
	 * it the bound still holds.
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

/* wait_io - poll for events with a bound; true when ready */
static bool
wait_io(int fd, short events, int ms)
{
	struct pollfd pfd = { .fd = fd, .events = events };

	return poll(&pfd, 1, ms) == 1;
}

/* send_bounded - write all of out within METRICS_IO_MS overall */
static void
send_bounded(int fd, const char *p, size_t len)
{
	while (len > 0 && wait_io(fd, POLLOUT, METRICS_IO_MS)) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);

		if (n <= 0 && errno != EAGAIN && errno != EINTR)
			return;
		if (n > 0) {
			p += n;
			len -= (size_t)n;
		}
	}
}

/*
 * metrics_serve - answer the scraper waiting on listening socket lfd
 *
 * GET /metrics (or /) gets the exposition; anything else 404 or 400.
 */
void
metrics_serve(int lfd, const struct stats *st)
{
	char req[METRICS_REQUEST_MAX];
	size_t have = 0;
	struct buf body, head;
	const char *status = "200 OK";
	int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

	if (fd < 0)
		return;
	while (have < sizeof(req) - 1 && wait_io(fd, POLLIN, METRICS_IO_MS)) {
		ssize_t n = recv(fd, req + have, sizeof(req) - 1 - have, 0);

		if (n <= 0)
			break;
		have += (size_t)n;
		req[have] = '\0';
		if (strstr(req, "\r\n\r\n") || strstr(req, "\n\n"))
			break;
	}
	req[have] = '\0';
	buf_init(&body, 0);
	buf_init(&head, 0);
	if (strncmp(req, "GET ", 4) != 0)
		status = "400 Bad Request";
	else if (strncmp(req + 4, "/metrics ", 9) != 0 && strncmp(req + 4, "/ ", 2) != 0 &&
		 strncmp(req + 4, "/metrics?", 9) != 0)
		status = "404 Not Found";
	if (strcmp(status, "200 OK") == 0)
		metrics_render(st, &body);
	else
		buf_appendf(&body, "%s\n", status);
	buf_appendf(&head, "HTTP/1.0 %s\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
		    "Content-Length: %zu\r\nConnection: close\r\n\r\n", status, body.len);
	send_bounded(fd, head.ptr, head.len);
	send_bounded(fd, body.ptr, body.len);
	buf_release(&head);
	buf_release(&body);
	close(fd);
}
