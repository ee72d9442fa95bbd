/*
 * mime_int - what mime.c, mime_param.c and mime_decode.c share
 *
 * Internal to the MIME code: not installed, not part of mime.h. It holds the
 * read size the walk and the decoder both use, the one hex-digit helper that
 * RFC 2231 %XX and quoted-printable =XX both need, and the parsed form of a
 * Content-Type or Content-Disposition value that mime.c asks mime_param.c
 * to build and to read parameters from.
 *
 * See also: mime.c (the walk), mime_param.c (parameters), mime_decode.c
 * (transfer decoding).
 */
#ifndef POSTERN_MIME_INT_H
#define POSTERN_MIME_INT_H

#include <stdbool.h>
#include <stddef.h>

#include "util/buf.h"
#include "util/digits.h"

#define MIME_READ_SIZE	(64 * 1024)	/* bytes per pread(), for the walk and for content */
#define PARAMS_MAX	1024		/* parameters of one field kept; real fields have a handful */

/* Parameters of one structured field, as parsed. */
struct mime_param {
	char   *name;		/* attribute, lower case, RFC 2231 suffix removed, owned */
	int	section;	/* RFC 2231 section number, -1 for none */
	bool	is_ext;		/* RFC 2231 extended value (charset'lang'%XX) */
	char   *value;		/* the value, unquoted, owned */
	size_t	value_len;	/* its length */
};

/*
 * One Content-Type or Content-Disposition value. Past PARAMS_MAX parameters
 * the ones a reader acts on (filename, name, boundary, charset) still take
 * the place of others: padding a field cannot hide a file's name. What is
 * dropped sets overflow, which the walk records as damage.
 */
struct mime_field {
	char   *token;			/* "type/subtype" or the disposition, lower case, owned; NULL if malformed */
	struct mime_param *params;	/* owned array, at most PARAMS_MAX */
	size_t	nparams;		/* entries used */
	size_t	params_size;		/* entries allocated */
	size_t	others;			/* entries no reader acts on (may give way) */
	bool	overflow;		/* a parameter was dropped */
};

/* the hex digits of %XX and =XX */
#define mime_hex_value digit_hex

/* mime_param.c */
void mime_param_parse(const char *s, size_t n, bool has_subtype, struct mime_field *fv);
void mime_param_release(struct mime_field *fv);
bool mime_param_get(const struct mime_field *fv, const char *name, struct buf *out,
		    char **charset_r, bool *is_plain_r);
char *mime_param_text(const struct mime_field *fv, const char *name, struct buf *scratch);
char *mime_param_lower(const struct mime_field *fv, const char *name, struct buf *scratch);

#endif
