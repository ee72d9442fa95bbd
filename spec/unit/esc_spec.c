/*
 * esc_spec - what reaches a log line from the network: one line of text
 *
 * esc_log() for the text log, esc_json() for JSON lines: control bytes
 * (C0, DEL and the C1 controls U+0080..U+009F, which some viewers take for
 * a line break or an escape sequence) and bytes that are not UTF-8 are
 * escaped; valid UTF-8 stays readable.
 */
#include <stdlib.h>
#include <string.h>

#include "util/buf.h"
#include "util/esc.h"
#include "tap.h"

struct ecase {
	const char *name;
	const char *in;
	size_t	len;		/* 0: strlen(in) */
	const char *log;	/* esc_log's result */
	const char *json;	/* esc_json's result (NUL-free input only), or NULL */
};

static const struct ecase cases[] = {
	{ "plain text", "hello world", 0, "hello world", "hello world" },
	{ "CR LF and ESC", "a\r\nb\x1b[31m", 0, "a\\x0d\\x0ab\\x1b[31m", "a\\u000d\\u000ab\\u001b[31m" },
	{ "quote and backslash", "\"q\\", 0, "\\x22q\\x5c", "\\\"q\\\\" },
	{ "DEL", "a\x7f", 0, "a\\x7f", "a\\u007f" },
	{ "NUL inside", "a\0b", 3, "a\\x00b", NULL },
	{ "UTF-8 kept", "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", 0,
	  "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80" },
	{ "C1 NEL (U+0085) escaped", "invo\xc2\x85" "e.exe", 0, "invo\\xc2\\x85e.exe",
	  "invo\\u0085e.exe" },
	{ "C1 CSI (U+009B) escaped", "\xc2\x9b" "31m", 0, "\\xc2\\x9b31m", "\\u009b31m" },
	{ "U+00A0 is not C1", "a\xc2\xa0" "b", 0, "a\xc2\xa0" "b", "a\xc2\xa0" "b" },
	{ "a stray continuation byte", "a\x85" "b", 0, "a\\x85b", "a\\u0085b" },
	{ "Latin-1 byte", "caf\xe9", 0, "caf\\xe9", "caf\\u00e9" },
	{ "a cut sequence at the end", "x\xe2\x82", 0, "x\\xe2\\x82", "x\\u00e2\\u0082" },
	{ "an overlong form", "\xc0\xaf", 0, "\\xc0\\xaf", "\\u00c0\\u00af" },
	{ "a surrogate", "\xed\xa0\x80", 0, "\\xed\\xa0\\x80", "\\u00ed\\u00a0\\u0080" },
};

int
main(void)
{
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct ecase *c = &cases[i];
		size_t len = c->len ? c->len : strlen(c->in);
		char *copy = malloc(len ? len : 1), *got;

		/* an exact heap copy: a read past the end is a sanitizer failure */
		memcpy(copy, c->in, len);
		got = esc_log(copy, len);
		is_str(got, c->log, "esc_log: %s", c->name);
		free(got);
		free(copy);
		if (c->json != NULL) {
			struct buf b;

			buf_init(&b, 0);
			esc_json(&b, c->in);
			is_str(buf_cstr(&b), c->json, "esc_json: %s", c->name);
			buf_release(&b);
		}
	}
	return done_testing();
}
