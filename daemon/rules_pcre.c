/*
 * rules_pcre - PCRE2 patterns for policies; see rules_pcre.h
 *
 * One match context per pattern carries the match limit; one match data block
 * per pattern is made at compile time and reused, so a match allocates
 * nothing (a worker runs one message at a time).
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rules_pcre.h"
#include "util/xalloc.h"

struct regex {
	pcre2_code *code;		/* compiled (and JIT-compiled) pattern, owned */
	pcre2_match_data *md;		/* reused for every match, owned */
	pcre2_match_context *mctx;	/* carries the match limit, owned */
	char   *pattern;		/* as written, for messages, owned */
	size_t *groups;			/* start/end offsets handed to callers, owned */
	int	ngroups;		/* capture groups + 1 (the whole match) */
};

/* parse_flags - "i", "m", "s", "x" into PCRE2 options; -1 on an unknown letter */
static int
parse_flags(const char *flags, uint32_t *options)
{
	for (const char *f = flags ? flags : ""; *f; f++) {
		switch (*f) {
		case 'i': *options |= PCRE2_CASELESS; break;
		case 'm': *options |= PCRE2_MULTILINE; break;
		case 's': *options |= PCRE2_DOTALL; break;
		case 'x': *options |= PCRE2_EXTENDED; break;
		default: return -1;
		}
	}
	return 0;
}

/*
 * regex_compile - compile pattern with flags ("i", "m", "s", "x")
 *
 * Returns the regex, or NULL with *error_r (caller frees) naming the offset.
 */
struct regex *
regex_compile(const char *pattern, size_t len, const char *flags, char **error_r)
{
	uint32_t options = PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF;
	PCRE2_UCHAR msg[256];
	PCRE2_SIZE where;
	struct regex *re;
	int err;

	if (parse_flags(flags, &options) < 0) {
		*error_r = xasprintf("unknown regex flag in \"%s\" (use i, m, s, x)", flags);
		return NULL;
	}
	re = xcalloc(1, sizeof(*re));
	re->code = pcre2_compile((PCRE2_SPTR)pattern, len, options, &err, &where, NULL);
	if (re->code == NULL) {
		pcre2_get_error_message(err, msg, sizeof(msg));
		*error_r = xasprintf("bad pattern at offset %zu: %s", (size_t)where, (char *)msg);
		free(re);
		return NULL;
	}
	/* no JIT (some platforms, or W^X policies) only costs speed */
	(void)pcre2_jit_compile(re->code, PCRE2_JIT_COMPLETE);
	re->md = pcre2_match_data_create_from_pattern(re->code, NULL);
	re->mctx = pcre2_match_context_create(NULL);
	if (re->md == NULL || re->mctx == NULL) {
		*error_r = xstrdup("out of memory compiling a pattern");
		return regex_free(re);
	}
	pcre2_set_match_limit(re->mctx, REGEX_MATCH_LIMIT);
	re->pattern = xstrndup(pattern, len);
	re->groups = xreallocarray(NULL, 2 * pcre2_get_ovector_count(re->md), sizeof(size_t));
	{
		uint32_t captures = 0;

		(void)pcre2_pattern_info(re->code, PCRE2_INFO_CAPTURECOUNT, &captures);
		re->ngroups = (int)captures + 1;	/* the ovector holds them all: made from the pattern */
	}
	return re;
}

/* regex_free - free everything; returns NULL */
struct regex *
regex_free(struct regex *re)
{
	if (re == NULL)
		return NULL;
	pcre2_match_data_free(re->md);
	pcre2_match_context_free(re->mctx);
	pcre2_code_free(re->code);
	free(re->pattern);
	free(re->groups);
	free(re);
	return NULL;
}

/*
 * regex_match - match subject[0..len)
 *
 * On REGEX_MATCHED, *start_r and *end_r bound the whole match, and when groups_r
 * is given it points at 2 * *ngroups_r offsets (start, end; SIZE_MAX for a
 * group that did not take part), valid until the next match with this regex.
 */
int
regex_match(struct regex *re, const char *subject, size_t len, size_t *start_r, size_t *end_r,
	    size_t **groups_r, int *ngroups_r)
{
	PCRE2_SIZE *ov;
	int rc = pcre2_match(re->code, (PCRE2_SPTR)subject, len, 0, 0, re->md, re->mctx);

	if (rc == PCRE2_ERROR_NOMATCH)
		return REGEX_NOMATCH;
	if (rc == PCRE2_ERROR_MATCHLIMIT || rc == PCRE2_ERROR_DEPTHLIMIT ||
	    rc == PCRE2_ERROR_HEAPLIMIT || rc == PCRE2_ERROR_JIT_STACKLIMIT)
		return REGEX_LIMIT;
	if (rc < 0)
		return REGEX_ERROR;
	ov = pcre2_get_ovector_pointer(re->md);
	if (start_r != NULL)
		*start_r = ov[0];
	if (end_r != NULL)
		*end_r = ov[1];
	if (groups_r != NULL) {
		/*
		 * rc counts the groups up to the last one that took part; the
		 * ones after it are PCRE2_UNSET, and callers want them too
		 * (re:match gives false for each).
		 */
		int n = re->ngroups;

		for (int i = 0; i < 2 * n; i++)
			re->groups[i] = ov[i] == PCRE2_UNSET ? (size_t)-1 : ov[i];
		*groups_r = re->groups;
		*ngroups_r = n;
	}
	return REGEX_MATCHED;
}

/* regex_pattern - the pattern as written */
const char *
regex_pattern(const struct regex *re)
{
	return re->pattern;
}
