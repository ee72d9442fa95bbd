/*
 * buf - growable byte buffer with a hard limit
 *
 * Network data lives in a struct buf, never in a fixed stack array. Content is
 * (ptr, len): NUL may appear in a body. The buffer keeps one spare byte so that
 * buf_cstr() can terminate text without reallocating.
 *
 * buf_append() returns -1 when the limit would be crossed; the caller decides
 * the reply ("500 5.5.2 line too long", "552 5.3.4 message too big").
 * A pointer into a buffer dies at the next append.
 */
#ifndef POSTERN_BUF_H
#define POSTERN_BUF_H

#include <stddef.h>

struct buf {
	char   *ptr;		/* storage, owned by the buf */
	size_t  len;		/* bytes in use */
	size_t  size;		/* bytes allocated */
	size_t  limit;		/* most bytes buf_append() accepts; 0 = none */
};

struct buf *buf_new(size_t limit);
struct buf *buf_free(struct buf *b);
void buf_init(struct buf *b, size_t limit);
void buf_release(struct buf *b);
void buf_reset(struct buf *b);
int buf_append(struct buf *b, const void *data, size_t len);
int buf_appendf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int buf_appends(struct buf *b, const char *s);
const char *buf_cstr(struct buf *b);
void buf_consume(struct buf *b, size_t n);

#endif
