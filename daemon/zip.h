/*
 * zip - the members of a zip archive, read from its own records
 *
 * libclamav (1.4) unpacks a zip through its central directory and does not
 * read ZIP64 fields: a member whose sizes are in a ZIP64 extra field, and
 * every member of a zip whose central directory is missing or points
 * outside the file, are passed over without a word, while unzip and 7-Zip
 * extract them. zip_inspect tells such an archive; zip_list walks it as
 * those tools do (the central directory, ZIP64 included, or else the local
 * headers one after the other) so that clam.c can unpack the members
 * itself (zip_inflate) and scan them. Every read is bounded by the buffer,
 * never by what a record claims.
 */
#ifndef POSTERN_ZIP_H
#define POSTERN_ZIP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct buf;

#define ZIP_METHOD_STORED	0
#define ZIP_METHOD_DEFLATE	8

/* what zip_inspect found: a bit set for each thing libclamav does not read */
#define ZIP_USES_ZIP64		0x01	/* a ZIP64 end record or extra field */
#define ZIP_NO_DIRECTORY	0x02	/* no end record, or a directory that cannot be walked */

struct zip_member {
	const char *name;		/* not NUL-terminated; points into the archive */
	size_t	name_len;
	unsigned method;		/* compression method */
	bool	encrypted;		/* general purpose flag bit 0 */
	bool	is_dir;			/* the name ends in '/' */
	uint64_t csize, usize;		/* as the records say */
	const unsigned char *data;	/* the compressed bytes; NULL when outside the buffer */
	size_t	data_len;		/* how many of them the buffer holds (<= csize when known) */
};

/* called for each member in archive order; return false to stop the walk */
typedef bool zip_member_fn(const struct zip_member *m, void *arg);

bool zip_is_archive(const unsigned char *p, size_t len);
unsigned zip_inspect(const unsigned char *p, size_t len);
int zip_list(const unsigned char *p, size_t len, zip_member_fn *each, void *arg);
int zip_inflate(const struct zip_member *m, size_t max, struct buf *out);

/* zip_inflate's answers */
#define ZIP_INFLATE_OK		0
#define ZIP_INFLATE_TOO_BIG	1	/* more than max bytes */
#define ZIP_INFLATE_DAMAGED	2	/* out holds what came before the damage */
#define ZIP_INFLATE_UNSUPPORTED	3	/* a method other than stored or deflate */

#endif
