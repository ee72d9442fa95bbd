/*
 * fixture.h - what the unit specs that read "spool files" share
 *
 * temp_file() makes a nameless file holding some bytes, as a spool file is;
 * escape() shows bytes with \r, \n, \0 and \xHH so a failed comparison is
 * readable in the TAP output. Include after tap.h and util/buf.h.
 */
#ifndef POSTERN_SPEC_FIXTURE_H
#define POSTERN_SPEC_FIXTURE_H

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "util/buf.h"

/* temp_file - a nameless file holding bytes, read position at 0; exits 2 on failure */
static inline int
temp_file(const char *bytes, size_t len)
{
	char path[] = "/tmp/postern-spec-XXXXXX";
	int fd = open("/tmp", O_TMPFILE | O_RDWR, 0600);

	if (fd < 0) {
		fd = mkstemp(path);
		if (fd < 0) {
			perror("mkstemp");
			exit(2);
		}
		unlink(path);
	}
	if (len > 0 && write(fd, bytes, len) != (ssize_t)len) {
		perror("write");
		exit(2);
	}
	return fd;
}

/* escape - bytes shown with \r \n \0 and \xHH for 8-bit, appended to out */
static inline void
escape(struct buf *out, const char *p, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)p[i];

		if (c == '\r')
			buf_appends(out, "\\r");
		else if (c == '\n')
			buf_appends(out, "\\n");
		else if (c == '\0')
			buf_appends(out, "\\0");
		else if (c >= 0x80)
			buf_appendf(out, "\\x%02x", c);
		else
			buf_append(out, &p[i], 1);
	}
}

#endif
