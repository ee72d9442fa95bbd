/*
 * mime - the MIME structure of a spooled message, walked on demand
 *
 * mime_walk() reads the spool file once and lists every part (RFC 2045/2046):
 * multiparts and their children, message/rfc822 bodies and their parts, in
 * depth-first order. Each part records its headers' essentials and where its
 * body lies in the spool; nothing is decoded until mime_part_content() is
 * asked for one part. Limits (nesting depth, number of parts) come from the
 * caller; past them, or on damage (a boundary that never closes, a header
 * line that is not a field), the walk goes on as well as it can and records
 * a broken_reason. Recursion is an explicit stack: no input can exhaust the C
 * stack.
 *
 * Errors: -1 with errno only when the file cannot be read. Nothing here logs.
 * See also: header.c (the top-level header), lua_msg.c (msg:parts()).
 */
#ifndef POSTERN_MIME_H
#define POSTERN_MIME_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "util/buf.h"

struct mime_limits {
	int	max_depth;		/* nesting of multiparts and message/rfc822 */
	size_t	max_parts;		/* parts listed in all */
	size_t	max_header;		/* bytes of one part's header read */
};

struct mime_part {
	size_t	index;			/* position in the walk, 0 = the message itself */
	size_t	parent;			/* index of the enclosing part (0 for the top) */
	int	depth;			/* 0 = the message itself */
	char   *content_type;		/* "type/subtype", lower case; default per RFC 2045 5.2, owned */
	char   *charset;		/* charset parameter, lower case, or NULL, owned */
	char   *filename;		/* Content-Disposition filename= or Content-Type name=
					   (RFC 2231 and RFC 2047 forms decoded to UTF-8), or NULL, owned */
	char   *disposition;		/* "inline", "attachment", or NULL, owned */
	char   *encoding;		/* Content-Transfer-Encoding, lower case; default "7bit", owned */
	off_t	body_off;		/* the body in the spool file */
	off_t	body_len;
	bool	is_multipart;		/* a container: its body is its children */
};

struct mime_tree {
	struct mime_part *parts;	/* owned array; parts[0] is the message itself */
	size_t	nparts;
	const char *broken_reason;	/* static text, or NULL */
};

int mime_walk(int fd, off_t size, const struct mime_limits *lim, struct mime_tree *tree);
void mime_release(struct mime_tree *tree);
int mime_part_content(int fd, const struct mime_part *p, size_t limit, struct buf *out,
		      bool *truncated_r);
bool mime_uu_next(const char *text, size_t len, size_t *pos, struct buf *out, char **name_r);

#endif
