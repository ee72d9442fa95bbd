/*
 * log - the daemon's log: stderr in the foreground, syslog otherwise
 *
 * log_debug/log_info/log_warnx/log_error write one line at their level;
 * log_warn appends strerror(errno) (OpenSMTPD's convention). log_fatal is for
 * start-up and reload checks and exits 1; log_panic is for a broken invariant
 * and aborts with a core: the master replaces the worker, the MTA keeps the mail.
 * Callers escape network bytes (esc_log) before they reach a format.
 */
#ifndef POSTERN_LOG_H
#define POSTERN_LOG_H

#include <stdbool.h>

enum log_level {
	LOG_LEVEL_DEBUG,
	LOG_LEVEL_INFO,
	LOG_LEVEL_WARN,
	LOG_LEVEL_ERROR,
};

void log_init(const char *ident, bool to_stderr, const char *facility);
bool log_facility_known(const char *name);
int log_set_level(const char *name);
void log_pin_debug(void);
void log_silence(void);
void log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warnx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
void log_panic(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
bool log_debug_enabled(void);
void log_set_json(bool json);
bool log_is_json(void);
void log_event(const char *json_fields);

#endif
