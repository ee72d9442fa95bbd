/*
 * buf - growable byte buffer with a hard limit
 *
 * See buf.h. Growth doubles, so appending n bytes one at a time costs O(n).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/buf.h"
#include "util/xalloc.h"

/* buf_new - allocate an empty buffer that refuses to grow past limit bytes */
struct buf *
buf_new(size_t limit)
{
	struct buf *b = xmalloc(sizeof(*b));

	buf_init(b, limit);
	return b;
}

/* buf_free - free the buffer and its storage; returns NULL for b = buf_free(b) */
struct buf *
buf_free(struct buf *b)
{
	if (b != NULL) {
		buf_release(b);
		free(b);
	}
	return NULL;
}

/* buf_init - set up an embedded buffer */
void
buf_init(struct buf *b, size_t limit)
{
	b->ptr = NULL;
	b->len = 0;
	b->size = 0;
	b->limit = limit;
}

/* buf_release - free the storage of an embedded buffer */
void
buf_release(struct buf *b)
{
	free(b->ptr);
	b->ptr = NULL;
	b->len = b->size = 0;
}

/* buf_reset - forget the content, keep the storage */
void
buf_reset(struct buf *b)
{
	b->len = 0;
}

/* grow - make room for need more bytes plus the spare terminator byte */
static void
grow(struct buf *b, size_t need)
{
	size_t want = b->len + need + 1, size = b->size ? b->size : 64;

	if (want <= b->size)
		return;
	while (size < want) {
		if (size > ((size_t)-1) / 2) {
			size = want;
			break;
		}
		size *= 2;
	}
	b->ptr = xrealloc(b->ptr, size);
	b->size = size;
}

/* buf_append - append len bytes; -1 if that would cross the limit */
int
buf_append(struct buf *b, const void *data, size_t len)
{
	if (len > ((size_t)-1) - b->len - 1)
		return -1;
	if (b->limit != 0 && b->len + len > b->limit)
		return -1;
	grow(b, len);
	if (len > 0)
		memcpy(b->ptr + b->len, data, len);
	b->len += len;
	return 0;
}

/* buf_appends - append a C string */
int
buf_appends(struct buf *b, const char *s)
{
	return buf_append(b, s, strlen(s));
}

/* buf_appendf - append formatted text */
int
buf_appendf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	char *p;
	int n, rc;

	va_start(ap, fmt);
	n = vasprintf(&p, fmt, ap);
	va_end(ap);
	if (n < 0)
		return -1;
	rc = buf_append(b, p, (size_t)n);
	free(p);
	return rc;
}

/* buf_cstr - terminate the content with NUL (not counted in len) and return it */
const char *
buf_cstr(struct buf *b)
{
	grow(b, 0);
	b->ptr[b->len] = '\0';
	return b->ptr;
}

/* buf_consume - drop the first n bytes */
void
buf_consume(struct buf *b, size_t n)
{
	if (n >= b->len) {
		b->len = 0;
		return;
	}
	memmove(b->ptr, b->ptr + n, b->len - n);
	b->len -= n;
}
