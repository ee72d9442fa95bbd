/*
 * le - little-endian integers read from bytes (archive headers: zip, rar)
 *
 * The caller has checked that the bytes are there; these only assemble them.
 */
#ifndef POSTERN_LE_H
#define POSTERN_LE_H

#include <stdint.h>

static inline uint32_t
le16(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8;
}

static inline uint32_t
le32(const unsigned char *p)
{
	return le16(p) | le16(p + 2) << 16;
}

static inline uint64_t
le64(const unsigned char *p)
{
	return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32;
}

#endif
