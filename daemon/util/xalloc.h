/*
 * xalloc - allocation that never returns NULL
 *
 * xmalloc()/xcalloc()/xrealloc()/xstrdup()/xstrndup() either succeed or end the
 * process through log_panic(): a worker that cannot allocate a few bytes cannot
 * answer its client sensibly either, and the MTA still holds the message.
 * xmalloc_array() checks the multiplication for overflow before allocating.
 */
#ifndef POSTERN_XALLOC_H
#define POSTERN_XALLOC_H

#include <stddef.h>

void *xmalloc(size_t size);
void *xcalloc(size_t nmemb, size_t size);
void *xrealloc(void *ptr, size_t size);
void *xreallocarray(void *ptr, size_t nmemb, size_t size);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
