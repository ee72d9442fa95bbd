/*
 * header - the header block of a spooled message, parsed once
 *
 * header_read() reads the bytes before the first empty line of the spool
 * file (at most `limit` bytes) and splits them into fields. Field names and
 * raw values point into the block's own copy of the bytes. A header that
 * exceeds the limit, or a line that is not a field (no colon, a space before
 * the colon), does not stop the parse: the block records a broken_reason for
 * the policy to see and keeps what it could read (Dovecot's message-parser
 * habit). A message with no empty line is all header.
 *
 * header_unfold() and header_decode() give a field's value as text:
 * unfolded, trimmed, and (decode) with RFC 2047 encoded-words turned into
 * UTF-8. Both return a fresh string the caller frees; NUL bytes in the raw
 * value become spaces so the result is a C string. header_to_utf8() converts
 * bytes in a named charset the same way (mime_param.c's RFC 2231 parameters).
 *
 * Errors: header_read() returns -1 with errno only when the file cannot be
 * read; damage in the bytes is not an error. Nothing here logs.
 * See also: mime.c (walks the body), message.c (owns the block).
 */
#ifndef POSTERN_HEADER_H
#define POSTERN_HEADER_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct header_field {
	const char *name;	/* the field name, in block->raw, not NUL-terminated */
	size_t	name_len;	/* its length */
	const char *value;	/* the raw value after the colon, folds included, without the final CRLF */
	size_t	value_len;	/* its length */
	size_t	raw_off;	/* offset of the whole field (name to final CRLF) in block->raw */
	size_t	raw_len;	/* its length, final CRLF included */
};

struct header_block {
	char   *raw;			/* the header bytes, owned, NUL-terminated for safety */
	size_t	raw_len;		/* bytes of fields, without the empty line */
	off_t	body_off;		/* where the body starts in the spool (after the empty line) */
	struct header_field *fields;	/* owned array, in message order */
	size_t	nfields;		/* its length */
	const char *broken_reason;	/* static text, NULL when the header is well formed */
	bool	truncated;		/* fields past the size limit were not kept */
};

int header_read(struct header_block *hb, int fd, size_t limit);
void header_parse(struct header_block *hb, const char *raw, size_t len, bool has_end);
void header_release(struct header_block *hb);
bool header_name_is(const struct header_field *f, const char *name);
const struct header_field *header_find(const struct header_block *hb, const char *name, size_t nth);
char *header_unfold(const char *value, size_t len);
char *header_decode(const char *value, size_t len);
char *header_to_utf8(const char *charset, const char *bytes, size_t len);

#endif
