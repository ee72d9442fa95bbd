/*
 * rules_pcre - PCRE2 patterns for policies: compiled and JIT-compiled once, matched with a bound
 *
 * regex_compile() compiles a pattern (UTF mode with UCP, so \w and (?i) know
 * letters beyond ASCII; invalid UTF-8 in a subject is tolerated by
 * PCRE2_MATCH_INVALID_UTF) and JIT-compiles it when the JIT is available.
 * Policies compile their patterns when they load, in the master, so workers
 * inherit them ready (Postfix's dict_pcre does the same at table open).
 *
 * regex_match() runs one match under the match limit: a pattern that
 * backtracks catastrophically fails with REGEX_LIMIT, which is an error the
 * rule reports, never "no match". The limit bounds the JIT too (depth and
 * heap limits would not).
 *
 * Errors: NULL/-1 with a message in error_r (a static or caller-freed string
 * as documented per function). Nothing here logs.
 */
#ifndef POSTERN_RULES_PCRE_H
#define POSTERN_RULES_PCRE_H

#include <stdbool.h>
#include <stddef.h>

#define REGEX_MATCH_LIMIT	1000000	/* backtracking steps per match: ms, not minutes */

enum {
	REGEX_NOMATCH = 0,
	REGEX_MATCHED = 1,
	REGEX_LIMIT = -1,	/* the match limit was hit: neither match nor no match */
	REGEX_ERROR = -2,	/* any other matcher error */
};

struct regex;

struct regex *regex_compile(const char *pattern, size_t len, const char *flags, char **error_r);
struct regex *regex_free(struct regex *re);
int regex_match(struct regex *re, const char *subject, size_t len, size_t *start_r, size_t *end_r,
		size_t **groups_r, int *ngroups_r);
const char *regex_pattern(const struct regex *re);

#endif
