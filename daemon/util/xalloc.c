/*
 * xalloc - allocation that never returns NULL
 *
 * Every function here either returns memory or calls log_panic(). Sizes that
 * would overflow are refused the same way, so an overflowed length is caught
 * at the allocator instead of turning into a short buffer.
 */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "util/xalloc.h"

/* xmalloc - malloc or panic; a zero size still yields a unique pointer */
void *
xmalloc(size_t size)
{
	void *p = malloc(size ? size : 1);

	if (p == NULL)
		log_panic("out of memory allocating %zu bytes", size);
	return p;
}

/* xcalloc - calloc or panic */
void *
xcalloc(size_t nmemb, size_t size)
{
	void *p = calloc(nmemb ? nmemb : 1, size ? size : 1);

	if (p == NULL)
		log_panic("out of memory allocating %zu x %zu bytes", nmemb, size);
	return p;
}

/* xrealloc - realloc or panic */
void *
xrealloc(void *ptr, size_t size)
{
	void *p = realloc(ptr, size ? size : 1);

	if (p == NULL)
		log_panic("out of memory reallocating %zu bytes", size);
	return p;
}

/* xreallocarray - realloc of nmemb elements, refusing an overflowing product */
void *
xreallocarray(void *ptr, size_t nmemb, size_t size)
{
	if (size != 0 && nmemb > SIZE_MAX / size)
		log_panic("allocation size overflow: %zu x %zu", nmemb, size);
	return xrealloc(ptr, nmemb * size);
}

/* xstrdup - strdup or panic */
char *
xstrdup(const char *s)
{
	return xstrndup(s, strlen(s));
}

/* xstrndup - copy at most n bytes of s and terminate the copy */
char *
xstrndup(const char *s, size_t n)
{
	char *p;
	size_t len = strnlen(s, n);

	p = xmalloc(len + 1);
	memcpy(p, s, len);
	p[len] = '\0';
	return p;
}

/* xasprintf - format into a fresh string the caller frees */
char *
xasprintf(const char *fmt, ...)
{
	va_list ap;
	char *p;
	int n;

	va_start(ap, fmt);
	n = vasprintf(&p, fmt, ap);
	va_end(ap);
	if (n < 0)
		log_panic("out of memory formatting a string");
	return p;
}
