/*
 * tap.h - the smallest TAP producer the unit specs need
 *
 * ok(cond, fmt, ...) prints "ok N - ..." or "not ok N - ..."; is_str and
 * is_int print "# got X, want Y" on failure (Postfix ptest's habit);
 * done_testing() prints the plan and returns the exit status.
 */
#ifndef POSTERN_TAP_H
#define POSTERN_TAP_H

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static int tap_count, tap_failed;

static int __attribute__((format(printf, 2, 3)))
ok(int cond, const char *fmt, ...)
{
	va_list ap;

	printf("%s %d - ", cond ? "ok" : "not ok", ++tap_count);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	if (!cond)
		tap_failed++;
	return cond;
}

#define is_int(got, want, ...) do {						\
	long long g_ = (got), w_ = (want);					\
	if (!ok(g_ == w_, __VA_ARGS__))						\
		printf("# got %lld, want %lld\n", g_, w_);			\
} while (0)

#define is_str(got, want, ...) do {						\
	const char *g_ = (got), *w_ = (want);					\
	if (!ok(g_ && w_ && strcmp(g_, w_) == 0, __VA_ARGS__))			\
		printf("# got \"%s\", want \"%s\"\n", g_ ? g_ : "(null)",	\
		       w_ ? w_ : "(null)");					\
} while (0)

static int
done_testing(void)
{
	printf("1..%d\n", tap_count);
	return tap_failed ? 1 : 0;
}

#endif
