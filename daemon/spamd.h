/*
 * spamd - a client for SpamAssassin's spamd, protocol SPAMC/1.5
 *
 * spamd_check() connects to spamd (host:port, or a unix socket path), sends
 * one SYMBOLS or REPORT request with the spooled message (Content-length and,
 * when given, User for per-user preferences), and reads the answer: the
 * "Spam: True ; 15.3 / 5.0" header and the body (the comma-separated rule
 * names, or the report text). Every step is bounded by the timeout: a spamd
 * that does not answer costs timeout_ms at most, never a hang. A message
 * larger than max_size is not sent at all (like spamc's 500 KB default).
 *
 * Errors: -1 with a short reason in *error_r ("spamd: timeout", "spamd:
 * connection refused", "spamd: message too big (...)"), caller frees.
 * Nothing here logs.
 */
#ifndef POSTERN_SPAMD_H
#define POSTERN_SPAMD_H

#include <stdbool.h>
#include <sys/types.h>

#include "config.h"

struct spamd_result {
	double	score;		/* the message's score */
	double	threshold;	/* spamd's required score */
	bool	is_spam;	/* spamd's own verdict */
	char   *symbols;	/* comma-separated rule names, owned (SYMBOLS) */
	char   *report;		/* the report text, owned (REPORT), or NULL */
	long	elapsed_ms;	/* the whole exchange */
};

int spamd_check(const struct spamd_cfg *sc, int fd, off_t size, const char *user, bool report,
		struct spamd_result *r, char **error_r);
void spamd_result_release(struct spamd_result *r);

#endif
