/*
 * gzip_name - the original file name a gzip header may carry (RFC 1952)
 *
 * gzip -N, 7-Zip, WinRAR and most tools on Windows name the file they
 * unpack from a .gz by the header's FNAME field, not by the .gz's own name:
 * "invoice.pdf.gz" may unpack as "invoice.exe". libclamav does not read the
 * field, so without this P.banned would never see that name.
 */
#ifndef POSTERN_GZIP_NAME_H
#define POSTERN_GZIP_NAME_H

#include <stdbool.h>
#include <stddef.h>

/*
 * The FNAME of the first member of the gzip data p[0..len), as UTF-8 (the
 * field is ISO 8859-1) and NUL-terminated in out[0..outsize), cut to fit.
 * False when p is not gzip, has no name, or its header is cut short.
 */
bool gzip_stored_name(const unsigned char *p, size_t len, char *out, size_t outsize);

#endif
