/*
 * put_le.h - little-endian integers appended to a buf, for the specs that
 * build archives record by record (rar_spec, zip_spec)
 */
#ifndef POSTERN_PUT_LE_H
#define POSTERN_PUT_LE_H

#include "util/buf.h"

static inline void
put16(struct buf *b, unsigned v)
{
	unsigned char c[2] = { v & 0xff, v >> 8 & 0xff };

	buf_append(b, (const char *)c, 2);
}

static inline void
put32(struct buf *b, unsigned long v)
{
	put16(b, v & 0xffff);
	put16(b, v >> 16 & 0xffff);
}

static inline void
put64(struct buf *b, unsigned long long v)
{
	put32(b, v & 0xffffffffUL);
	put32(b, v >> 32);
}

#endif
