/*
 * spamd - a client for SpamAssassin's spamd, protocol SPAMC/1.5; see spamd.h
 *
 * One connection per request, as spamc does: spamd answers and closes. The
 * request goes out in pieces as the spool is read (no copy of the message in
 * memory); the answer is read into a bounded buffer until the bytes its
 * Content-length announces are in, or spamd closes.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "spamd.h"
#include "util/buf.h"
#include "util/net.h"
#include "util/xalloc.h"

#define ANSWER_MAX	(1024 * 1024)	/* a REPORT of a huge rule set still fits */
#define SEND_CHUNK	(64 * 1024)
#define UNIX_RETRY_MS	20		/* a busy unix socket is tried again this often */
#define SCORE_MAX	1e6		/* a score beyond this is no score SpamAssassin gives */
#define STATUS_SHOWN	200		/* bytes of an error status line kept in the reason */

/* now_ms - monotonic milliseconds */
static long long
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* wait_for - poll fd for events until deadline; 1 ready, 0 timeout, -1 error */
static int
wait_for(int fd, short events, long long deadline)
{
	for (;;) {
		struct pollfd pfd = { .fd = fd, .events = events };
		long long left = deadline - now_ms();
		int n;

		if (left <= 0)
			return 0;
		n = poll(&pfd, 1, (int)(left > 60000 ? 60000 : left));
		if (n > 0)
			return 1;
		if (n < 0 && errno != EINTR)
			return -1;
	}
}

/*
 * connect_unix - a non-blocking connection to a unix socket; -1 with errno
 *
 * A unix socket whose backlog is full refuses at once with EAGAIN (there is
 * no connection in progress to wait for, unlike TCP): that is a busy spamd,
 * so the connect is tried again every UNIX_RETRY_MS until the deadline.
 */
static int
connect_unix(const char *path, long long deadline)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	int fd, err = 0;
	socklen_t len = sizeof(err);

	if (strlen(path) >= sizeof(sun.sun_path)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	strcpy(sun.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	while (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		long long left = deadline - now_ms();

		if (errno == EINTR)
			continue;
		if (errno == EINPROGRESS)
			break;
		if (errno != EAGAIN)
			goto fail;
		if (left <= 0) {
			errno = ETIMEDOUT;
			goto fail;
		}
		poll(NULL, 0, (int)(left < UNIX_RETRY_MS ? left : UNIX_RETRY_MS));
		if (now_ms() >= deadline) {
			errno = ETIMEDOUT;
			goto fail;
		}
	}
	if (wait_for(fd, POLLOUT, deadline) <= 0) {
		errno = ETIMEDOUT;
		goto fail;
	}
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err != 0) {
		errno = err ? err : errno;
		goto fail;
	}
	return fd;
fail:
	err = errno;
	close(fd);
	errno = err;
	return -1;
}

/* open_connection - TCP host:port, or a unix socket path; -1 with *error_r */
static int
open_connection(const struct spamd_cfg *sc, long long deadline, char **error_r)
{
	struct endpoint ep;
	const char *why;
	int fd;

	if (sc->address[0] == '/')
		fd = connect_unix(sc->address, deadline);
	else if (net_parse_endpoint(sc->address, &ep, &why) < 0) {
		*error_r = xasprintf("spamd: address %s: %s", sc->address, why);
		return -1;
	} else {
		long long left = deadline - now_ms();

		fd = net_connect(&ep, (int)(left > 0 ? left : 1));
		/* every later wait is ours to bound: never block on this socket */
		if (fd >= 0 && net_set_nonblock(fd) < 0) {
			close(fd);
			fd = -1;
		}
	}
	if (fd < 0)
		*error_r = xasprintf("spamd: cannot connect to %s: %s", sc->address,
				     errno == ETIMEDOUT ? "timeout" : strerror(errno));
	return fd;
}

/* send_all - write len bytes before deadline; -1 with errno */
static int
send_all(int fd, const char *p, size_t len, long long deadline)
{
	while (len > 0) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);

		if (n > 0) {
			p += n;
			len -= (size_t)n;
			continue;
		}
		if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
			return -1;
		if (wait_for(fd, POLLOUT, deadline) <= 0) {
			errno = ETIMEDOUT;
			return -1;
		}
	}
	return 0;
}

/* send_request - the request line, headers and the spooled message */
static int
send_request(int fd, int spool, off_t size, const char *user, bool report, long long deadline)
{
	char *chunk, head[512];
	off_t off = 0;
	int n, rc = 0;

	n = snprintf(head, sizeof(head), "%s SPAMC/1.5\r\nContent-length: %lld\r\n%s%s%s\r\n",
		     report ? "REPORT" : "SYMBOLS", (long long)size, user ? "User: " : "",
		     user ? user : "", user ? "\r\n" : "");
	if (n < 0 || (size_t)n >= sizeof(head) || send_all(fd, head, (size_t)n, deadline) < 0)
		return -1;
	chunk = xmalloc(SEND_CHUNK);
	while (rc == 0 && off < size) {
		ssize_t got = pread(spool, chunk, size - off < SEND_CHUNK ? (size_t)(size - off) :
				    SEND_CHUNK, off);

		if (got <= 0) {
			errno = got < 0 ? errno : EIO;
			rc = -1;
			break;
		}
		rc = send_all(fd, chunk, (size_t)got, deadline);
		off += got;
	}
	free(chunk);
	/* the request is whole: let spamd see the end (it reads Content-length bytes anyway) */
	if (rc == 0)
		shutdown(fd, SHUT_WR);
	return rc;
}

/*
 * answer_is_whole - has the answer in ans reached the end its Content-length
 * announces? Without that header (an error answer, an older spamd) only
 * spamd's close ends it.
 */
static bool
answer_is_whole(const struct buf *ans)
{
	const char *a = ans->ptr, *end = a ? memmem(a, ans->len, "\r\n\r\n", 4) : NULL;
	size_t head_len;

	if (end == NULL)
		return false;
	head_len = (size_t)(end - a) + 4;
	for (const char *p = memmem(a, head_len, "\r\n", 2); p != NULL && p + 2 < end;
	     p = memmem(p + 2, head_len - (size_t)(p + 2 - a), "\r\n", 2)) {
		unsigned long long cl = 0;
		const char *v = p + 2;
		bool digits = false;

		if (end - v < 15 || strncasecmp(v, "Content-length:", 15) != 0)
			continue;
		for (v += 15; *v == ' ' || *v == '\t'; v++)
			;
		for (; *v >= '0' && *v <= '9' && cl <= ANSWER_MAX; v++, digits = true)
			cl = cl * 10 + (unsigned long long)(*v - '0');
		return digits && cl <= ANSWER_MAX && ans->len - head_len >= cl;
	}
	return false;
}

/*
 * read_answer - what spamd says, until its Content-length is in or it closes,
 * bounded in size and time
 */
static int
read_answer(int fd, struct buf *ans, long long deadline)
{
	char chunk[16384];

	for (;;) {
		ssize_t n = recv(fd, chunk, sizeof(chunk), 0);

		if (n > 0) {
			if (buf_append(ans, chunk, (size_t)n) < 0) {
				errno = EMSGSIZE;
				return -1;
			}
			if (answer_is_whole(ans))
				return 0;
			continue;
		}
		if (n == 0)
			return 0;
		if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
			return -1;
		if (wait_for(fd, POLLIN, deadline) <= 0) {
			errno = ETIMEDOUT;
			return -1;
		}
	}
}

/* printable - a copy of (p, n) with every control byte as '?': text for a header and the log */
static char *
printable(const char *p, size_t n)
{
	char *out = xstrndup(p, n);

	for (char *o = out; *o; o++)
		if ((unsigned char)*o < 0x20 || *o == 0x7f)
			*o = '?';
	return out;
}

/*
 * parse_score - a decimal number as SpamAssassin writes it ("-1.5", "15.3"),
 * nothing else: no exponent, hex, inf or nan, at most SCORE_MAX in size.
 * Returns the first byte after it, or NULL.
 */
static const char *
parse_score(const char *p, double *out)
{
	const char *start = p;
	char *end;
	bool digits = false;

	if (*p == '-' || *p == '+')
		p++;
	for (; *p >= '0' && *p <= '9'; p++)
		digits = true;
	if (*p == '.')
		for (p++; *p >= '0' && *p <= '9'; p++)
			digits = true;
	if (!digits || p - start > 40)
		return NULL;
	*out = strtod(start, &end);
	if (end != p || !(*out >= -SCORE_MAX && *out <= SCORE_MAX))
		return NULL;
	return p;
}

/* skip_blanks - past spaces and tabs */
static const char *
skip_blanks(const char *p)
{
	while (*p == ' ' || *p == '\t')
		p++;
	return p;
}

/* parse_spam_header - the value of "Spam: True ; 15.3 / 5.0" into r; -1 if malformed */
static int
parse_spam_header(const char *p, const char *eol, struct spamd_result *r)
{
	const char *word = p = skip_blanks(p);
	size_t wlen;

	while (p < eol && *p != ' ' && *p != '\t' && *p != ';')
		p++;
	wlen = (size_t)(p - word);
	if ((wlen == 4 && strncasecmp(word, "True", 4) == 0) ||
	    (wlen == 3 && strncasecmp(word, "Yes", 3) == 0))
		r->is_spam = true;
	else if ((wlen == 5 && strncasecmp(word, "False", 5) == 0) ||
		 (wlen == 2 && strncasecmp(word, "No", 2) == 0))
		r->is_spam = false;
	else
		return -1;
	p = skip_blanks(p);
	if (*p++ != ';' || (p = parse_score(skip_blanks(p), &r->score)) == NULL)
		return -1;
	p = skip_blanks(p);
	if (*p++ != '/' || (p = parse_score(skip_blanks(p), &r->threshold)) == NULL)
		return -1;
	return skip_blanks(p) == eol ? 0 : -1;
}

/* is_symbol_char - what a SpamAssassin rule name is made of */
static bool
is_symbol_char(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '_' || c == '-' || c == '.' || c == ':';
}

/*
 * symbol_list - the rule names of a SYMBOLS body's first line, comma-separated
 *
 * A name with anything but a rule name's characters is dropped (spamd never
 * sends one): what goes on into X-Spam-Status cannot forge its syntax.
 */
static char *
symbol_list(const char *body)
{
	size_t len = strcspn(body, "\r\n");
	char *out = xmalloc(len + 1), *o = out;

	for (const char *p = body, *end = body + len; p < end;) {
		const char *comma = memchr(p, ',', (size_t)(end - p)), *stop = comma ? comma : end;
		bool good = stop > p;

		for (const char *c = p; c < stop && good; c++)
			good = is_symbol_char(*c);
		if (good) {
			if (o > out)
				*o++ = ',';
			memcpy(o, p, (size_t)(stop - p));
			o += stop - p;
		}
		p = comma ? comma + 1 : end;
	}
	*o = '\0';
	return out;
}

/*
 * parse_answer - "SPAMD/1.1 0 EX_OK", one "Spam: True ; 15.3 / 5.0", body
 *
 * Strict: a version other than 1.x, a header block without its end, no or
 * two Spam: headers, a score that is no plain decimal number (or beyond
 * SCORE_MAX) make the answer malformed, an error for on_error; a policy
 * never sees nan or inf. Returns 0, or -1 with *error_r.
 */
static int
parse_answer(const char *a, bool report, struct spamd_result *r, char **error_r)
{
	const char *eol = strstr(a, "\r\n"), *head_end = strstr(a, "\r\n\r\n"), *p, *body;
	unsigned code = 0;
	int spam_headers = 0;

	p = a + 8;
	if (eol == NULL || strncmp(a, "SPAMD/1.", 8) != 0 || *p < '0' || *p > '9')
		goto malformed;
	while (*p >= '0' && *p <= '9')
		p++;
	if (*p != ' ' || p[1] < '0' || p[1] > '9')
		goto malformed;
	for (p++; *p >= '0' && *p <= '9' && code < 1000; p++)
		code = code * 10 + (unsigned)(*p - '0');
	if (p != eol && *p != ' ')
		goto malformed;
	if (code != 0) {
		char *line = printable(a, (size_t)(eol - a > STATUS_SHOWN ? STATUS_SHOWN : eol - a));

		*error_r = xasprintf("spamd: error: %s", line);
		free(line);
		return -1;
	}
	if (head_end == NULL) {
		*error_r = xstrdup("spamd: malformed answer (its header has no end)");
		return -1;
	}
	body = head_end + 4;
	for (p = eol + 2; p < head_end + 2; p = strstr(p, "\r\n") + 2) {
		const char *line_end = strstr(p, "\r\n");

		if (strncasecmp(p, "Spam:", 5) != 0)
			continue;
		if (++spam_headers > 1 || parse_spam_header(p + 5, line_end, r) < 0) {
			*error_r = xstrdup(spam_headers > 1 ? "spamd: malformed answer (two Spam: headers)"
					   : "spamd: malformed answer (its Spam: header)");
			return -1;
		}
	}
	if (spam_headers == 0) {
		*error_r = xstrdup("spamd: answer without a Spam: header");
		return -1;
	}
	if (report) {
		r->report = xstrdup(body);
		r->symbols = xstrdup("");
	} else
		r->symbols = symbol_list(body);
	return 0;
malformed:
	*error_r = xstrdup("spamd: malformed answer");
	return -1;
}

/* spamd_check - see spamd.h */
int
spamd_check(const struct spamd_cfg *sc, int spool, off_t size, const char *user, bool report,
	    struct spamd_result *r, char **error_r)
{
	long long start = now_ms(), deadline = start + sc->timeout_ms;
	struct buf ans;
	int fd, rc = -1;

	memset(r, 0, sizeof(*r));
	*error_r = NULL;
	if (size > sc->max_size) {
		*error_r = xasprintf("spamd: message too big to check (%lld bytes, spamd.max_size %ld)",
				     (long long)size, sc->max_size);
		return -1;	/* not sent: no time spent with spamd (elapsed 0) */
	}
	if ((fd = open_connection(sc, deadline, error_r)) < 0) {
		r->elapsed_ms = (long)(now_ms() - start);
		return -1;
	}
	buf_init(&ans, ANSWER_MAX);
	if (send_request(fd, spool, size, user, report, deadline) < 0 ||
	    read_answer(fd, &ans, deadline) < 0)
		*error_r = xasprintf("spamd: %s", errno == ETIMEDOUT ? "timeout" :
				     errno == EMSGSIZE ? "answer too long" : strerror(errno));
	else
		rc = parse_answer(buf_cstr(&ans), report, r, error_r);
	close(fd);
	buf_release(&ans);
	r->elapsed_ms = (long)(now_ms() - start);
	if (rc < 0)
		spamd_result_release(r);
	return rc;
}

/* spamd_result_release - free what a result owns */
void
spamd_result_release(struct spamd_result *r)
{
	free(r->symbols);
	free(r->report);
	r->symbols = r->report = NULL;
}
