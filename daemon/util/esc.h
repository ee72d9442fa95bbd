/*
 * esc - make network bytes safe to log
 *
 * esc_log() copies text and replaces control bytes (CR, LF, NUL, ESC...) and
 * backslash and double quote with \xHH, so a peer cannot forge log lines or terminal escapes.
 * Valid UTF-8 stays as it is (UTF-8 addresses remain readable), but for
 * the C1 controls; any other byte >= 0x80 is escaped too.
 */
#ifndef POSTERN_ESC_H
#define POSTERN_ESC_H

#include <stddef.h>
#include <stdio.h>

char *esc_log(const char *p, size_t len);
char *esc_logs(const char *s);
void esc_fputs(const char *s, FILE *f);
struct buf;
void esc_json(struct buf *out, const char *s);

#endif
