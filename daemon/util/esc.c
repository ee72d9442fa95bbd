/*
 * esc - make network bytes safe to log; see esc.h
 */
#include <stdio.h>
#include <string.h>

#include "util/esc.h"
#include "util/xalloc.h"

/* esc_log - escaped copy of (p, len); the caller frees it */
char *
esc_log(const char *p, size_t len)
{
	char *out, *o;

	if (len > ((size_t)-1) / 4 - 1)
		len = ((size_t)-1) / 4 - 1;
	o = out = xmalloc(len * 4 + 1);
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)p[i];

		if (c < 0x20 || c == 0x7f || c == '\\' || c == '"') {
			snprintf(o, 5, "\\x%02x", c);
			o += 4;
		} else
			*o++ = (char)c;
	}
	*o = '\0';
	return out;
}

/* esc_logs - esc_log of a C string; NULL reads as "" */
char *
esc_logs(const char *s)
{
	return esc_log(s ? s : "", s ? strlen(s) : 0);
}
