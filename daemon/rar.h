/*
 * rar - the names of the files in a RAR archive, read from its headers
 *
 * libclamav lists what a RAR archive holds only through its unrar module,
 * which Debian ships apart (non-free): without it a .rar is scanned as it
 * is, and P.banned would see no name inside. The block headers are not
 * compressed (unless the archive encrypts them), so the names can be read
 * without unpacking anything: RAR 1.5-4.x and RAR 5 archives. Nothing is
 * extracted; a damaged or truncated header ends the walk with what was
 * found before it.
 */
#ifndef POSTERN_RAR_H
#define POSTERN_RAR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RAR_NOT_RAR		(-1)	/* no RAR signature */
#define RAR_HEADERS_ENCRYPTED	(-2)	/* the names are encrypted too */

/* one file of the archive (directories are left out); name is not NUL-terminated */
typedef void rar_member_fn(const char *name, size_t name_len, uint64_t size, bool encrypted,
			   void *arg);

bool rar_is_archive(const unsigned char *p, size_t len);
int rar_list(const unsigned char *p, size_t len, rar_member_fn *each, void *arg);

#endif
