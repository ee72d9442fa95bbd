/*
 * digits - the value of one hex or base64 digit, shared by every decoder
 *
 * xtext (RFC 3461), quoted-printable and RFC 2047 Q words, RFC 2231 %XX,
 * base64 (B words, Content-Transfer-Encoding), the quarantine envelope's
 * \xHH: one definition each instead of one per decoder.
 */
#ifndef POSTERN_DIGITS_H
#define POSTERN_DIGITS_H

/* digit_hex - value of a hex digit (either case), or -1 */
static inline int
digit_hex(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* digit_b64 - value of a base64 digit, or -1 ('=' and anything else) */
static inline int
digit_b64(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

#endif
