/*
 * log - the daemon's log: stderr in the foreground, syslog otherwise
 *
 * A foreground line reads "2026-11-24T09:30:00.123Z posternd[42]: info: text";
 * under syslog the same text goes out with the mail facility by default.
 * Lines are written with one write(2) each so that workers sharing stderr do
 * not interleave inside a line.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "util/buf.h"
#include "util/esc.h"
#include "util/proc.h"

static const char *log_ident = "posternd";
static bool log_to_stderr = true;
static enum log_level log_min = LOG_LEVEL_INFO;
static bool log_json;			/* log_format = "json" */

static const struct {
	const char *name;
	int	facility;
} facilities[] = {
	{ "mail", LOG_MAIL }, { "daemon", LOG_DAEMON }, { "user", LOG_USER },
	{ "local0", LOG_LOCAL0 }, { "local1", LOG_LOCAL1 }, { "local2", LOG_LOCAL2 },
	{ "local3", LOG_LOCAL3 }, { "local4", LOG_LOCAL4 }, { "local5", LOG_LOCAL5 },
	{ "local6", LOG_LOCAL6 }, { "local7", LOG_LOCAL7 },
};

/* log_facility_known - is name one of facilities[] (without regard to case) */
bool
log_facility_known(const char *name)
{
	for (size_t i = 0; i < sizeof(facilities) / sizeof(facilities[0]); i++)
		if (strcasecmp(name, facilities[i].name) == 0)
			return true;
	return false;
}

/* log_init - choose the destination; facility is a syslog facility name or NULL */
void
log_init(const char *ident, bool to_stderr, const char *facility)
{
	int fac = LOG_MAIL;

	log_ident = ident;
	log_to_stderr = to_stderr;
	for (size_t i = 0; facility && i < sizeof(facilities) / sizeof(facilities[0]); i++)
		if (strcasecmp(facility, facilities[i].name) == 0)
			fac = facilities[i].facility;
	if (!to_stderr)
		openlog(ident, LOG_PID | LOG_NDELAY, fac);
}

static bool log_silenced;		/* log_silence(): this process logs nothing */
static bool log_level_pinned;		/* posternd -d: a reload does not lower it */

/* log_pin_debug - debug level for good (posternd -d), whatever log_level says */
void
log_pin_debug(void)
{
	log_min = LOG_LEVEL_DEBUG;
	log_level_pinned = true;
}

/* log_set_level - "debug", "info", "warn" or "error"; -1 if unknown */
int
log_set_level(const char *name)
{
	static const char *names[] = { "debug", "info", "warn", "error" };

	if (log_level_pinned)
		return 0;
	for (int i = 0; i < 4; i++)
		if (strcasecmp(name, names[i]) == 0) {
			log_min = (enum log_level)i;
			return 0;
		}
	return -1;
}

/* log_debug_enabled - lets callers skip building debug text nobody will read */
bool
log_debug_enabled(void)
{
	return log_min <= LOG_LEVEL_DEBUG;
}

/*
 * log_silence - log nothing more: a child whose outcome its parent reports
 * (the trial load of the policies), so that a policy's warning at load is
 * not logged twice
 */
void
log_silence(void)
{
	log_silenced = true;
}

/* log_set_json - one JSON object per line from now on (log_format = "json") */
void
log_set_json(bool json)
{
	log_json = json;
}

/* log_is_json - are lines JSON objects */
bool
log_is_json(void)
{
	return log_json;
}

/*
 * emit - one finished line: to syslog, or stamped to stderr
 *
 * The line is built whole, whatever its length (a summary of a thousand
 * recipients), and written with one write(2): a JSON line cut short would
 * not be JSON.
 */
static void
emit(int prio, const char *tag, const char *text)
{
	char stamp[40];
	struct buf line;
	size_t n;

	if (log_silenced)
		return;
	if (!log_to_stderr) {
		syslog(prio, log_json ? "%s" : "%s: %s", log_json ? text : tag, text);
		return;
	}
	{
		struct timespec ts;
		struct tm tm;

		clock_gettime(CLOCK_REALTIME, &ts);
		gmtime_r(&ts.tv_sec, &tm);
		n = strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
		snprintf(stamp + n, sizeof(stamp) - n, ".%03ldZ", ts.tv_nsec / 1000000);
	}
	buf_init(&line, 0);
	if (log_json)
		buf_appendf(&line, "{\"time\":\"%s\",\"prog\":\"%s\",\"pid\":%ld,%s}\n", stamp,
			    log_ident, (long)self_pid(), text);
	else
		buf_appendf(&line, "%s %s[%ld]: %s: %s\n", stamp, log_ident, (long)self_pid(), tag, text);
	if (write(STDERR_FILENO, line.ptr, line.len) < 0) {
		/* nowhere left to complain to */
	}
	buf_release(&line);
}

/*
 * log_event - a structured line: json_fields are "\"key\":value" pairs
 *
 * In JSON mode they become the object's fields (with time, prog, pid and
 * level); the caller checks log_is_json() and logs text otherwise.
 */
void
log_event(const char *json_fields)
{
	struct buf b;

	if (LOG_LEVEL_INFO < log_min)
		return;
	buf_init(&b, 0);
	buf_appendf(&b, "\"level\":\"info\",%s", json_fields);
	emit(LOG_INFO, "info", buf_cstr(&b));
	buf_release(&b);
}

/* vlog - format one line and send it */
static void
vlog(enum log_level level, int prio, const char *tag, bool with_errno, const char *fmt,
     va_list ap)
{
	char text[4096];
	int saved = errno;
	size_t n;

	if (level < log_min)
		return;
	vsnprintf(text, sizeof(text), fmt, ap);
	if (with_errno) {
		n = strlen(text);
		snprintf(text + n, sizeof(text) - n, ": %s", strerror(saved));
	}
	if (log_json) {
		struct buf b;

		buf_init(&b, 0);
		buf_appendf(&b, "\"level\":\"%s\",\"message\":\"", tag);
		esc_json(&b, text);
		buf_appends(&b, "\"");
		emit(prio, tag, buf_cstr(&b));
		buf_release(&b);
	} else
		emit(prio, tag, text);
	errno = saved;
}

#define LOG_FN(fn, level, prio, tag, with_errno)			\
	void fn(const char *fmt, ...)					\
	{								\
		va_list ap;						\
		va_start(ap, fmt);					\
		vlog(level, prio, tag, with_errno, fmt, ap);		\
		va_end(ap);						\
	}

LOG_FN(log_debug, LOG_LEVEL_DEBUG, LOG_DEBUG, "debug", false)
LOG_FN(log_info, LOG_LEVEL_INFO, LOG_INFO, "info", false)
LOG_FN(log_warn, LOG_LEVEL_WARN, LOG_WARNING, "warning", true)
LOG_FN(log_warnx, LOG_LEVEL_WARN, LOG_WARNING, "warning", false)
LOG_FN(log_error, LOG_LEVEL_ERROR, LOG_ERR, "error", false)

/* log_fatal - start-up or reload check failed: say why and exit 1 */
void
log_fatal(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog(LOG_LEVEL_ERROR, LOG_CRIT, "fatal", false, fmt, ap);
	va_end(ap);
	exit(1);
}

/* log_panic - a broken invariant: say what and abort with a core */
void
log_panic(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vlog(LOG_LEVEL_ERROR, LOG_CRIT, "panic", false, fmt, ap);
	va_end(ap);
	abort();
}
