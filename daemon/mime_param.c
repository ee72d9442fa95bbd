/*
 * mime_param - Content-Type and Content-Disposition values and their parameters
 *
 * mime_param_parse() takes an unfolded field value apart: the token
 * ("type/subtype" or the disposition) and its parameters, following RFC 2045
 * (tokens, quoted strings, comments) and RFC 2231 (sections "name*0",
 * extended values "name*" with charset'lang'%XX), with the common
 * leniencies: no ';' needed before the first parameter, an unquoted value
 * runs to ';' or '(', damage is stepped over. mime_param_get() reassembles
 * one parameter from its RFC 2231 pieces; mime_param_text() turns it into
 * UTF-8 for the policy, decoding RFC 2047 words inside a plain (quoted)
 * filename; mime_param_lower() gives a lower-case value such as charset=.
 *
 * Errors: none; malformed input yields less, never a failure. Nothing here
 * logs. See also: mime.c (calls this for each part's header), header.c
 * (RFC 2047 and charset conversion).
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "header.h"
#include "mime_int.h"
#include "util/xalloc.h"

#define SECTION_MAX	999		/* highest RFC 2231 section assembled */

/* is_token_char - allowed in an RFC 2045 token: not a space, control or tspecial */
static bool
is_token_char(unsigned char c)
{
	return c > 32 && c < 127 && strchr("()<>@,;:\\\"/[]?=", c) == NULL;
}

/* lower - ASCII lower case in place */
static void
lower(char *s)
{
	for (; *s; s++)
		if (*s >= 'A' && *s <= 'Z')
			*s = (char)(*s - 'A' + 'a');
}

/* skip_cfws - past whitespace and (nested (comments)) */
static size_t
skip_cfws(const char *s, size_t n, size_t i)
{
	while (i < n) {
		if (s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\n') {
			i++;
		} else if (s[i] == '(') {
			size_t depth = 1;

			for (i++; i < n && depth > 0; i++) {
				if (s[i] == '\\')
					i++;
				else if (s[i] == '(')
					depth++;
				else if (s[i] == ')')
					depth--;
			}
		} else
			break;
	}
	return i < n ? i : n;
}

/* skip_token - past a run of token characters */
static size_t
skip_token(const char *s, size_t n, size_t i)
{
	while (i < n && is_token_char((unsigned char)s[i]))
		i++;
	return i;
}

/* is_acted_on - a parameter a reader acts on, kept whatever comes before it */
static bool
is_acted_on(const char *name, size_t len)
{
	static const char *const names[] = { "filename", "name", "boundary", "charset" };

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strlen(names[i]) == len && strncasecmp(names[i], name, len) == 0)
			return true;
	return false;
}

/*
 * param_slot - where the parameter attr goes: a new entry, or past
 * PARAMS_MAX the place of one no reader acts on (freed here); NULL when it
 * is dropped. Either of the last two sets overflow.
 */
static struct mime_param *
param_slot(struct mime_field *fv, const char *attr, size_t alen)
{
	bool acted_on = is_acted_on(attr, alen);

	if (fv->nparams < PARAMS_MAX) {
		if (fv->nparams == fv->params_size) {
			fv->params_size = fv->params_size ? fv->params_size * 2 : 8;
			fv->params = xreallocarray(fv->params, fv->params_size, sizeof(*fv->params));
		}
		fv->others += !acted_on;
		return &fv->params[fv->nparams++];
	}
	fv->overflow = true;
	if (!acted_on || fv->others == 0)
		return NULL;
	for (size_t i = fv->nparams; i-- > 0;) {
		struct mime_param *pm = &fv->params[i];

		if (!is_acted_on(pm->name, strlen(pm->name))) {
			free(pm->name);
			free(pm->value);
			fv->others--;
			return pm;
		}
	}
	return NULL;
}

/* add_param - record attr = value, splitting off an RFC 2231 "*n" / "*" suffix */
static void
add_param(struct mime_field *fv, const char *attr, size_t alen, struct buf *value)
{
	const char *star = memchr(attr, '*', alen);
	struct mime_param *pm;
	int section = -1;
	bool is_ext = false;

	if (star != NULL) {
		const char *q = star + 1, *end = attr + alen;

		if (q == end) {
			is_ext = true;	/* "name*": one extended value */
		} else {
			if (*q < '0' || *q > '9')
				return;	/* "name*x": no form we know */
			section = 0;
			while (q < end && *q >= '0' && *q <= '9') {
				section = section * 10 + (*q++ - '0');
				if (section > SECTION_MAX)
					return;
			}
			if (q < end && *q == '*') {
				is_ext = true;	/* "name*0*" */
				q++;
			}
			if (q != end)
				return;
		}
		alen = (size_t)(star - attr);
	}
	if (alen == 0)
		return;
	if ((pm = param_slot(fv, attr, alen)) == NULL)
		return;
	pm->name = xstrndup(attr, alen);
	lower(pm->name);
	pm->section = section;
	pm->is_ext = is_ext;
	pm->value_len = value->len;
	pm->value = xmalloc(value->len + 1);
	if (value->len > 0)
		memcpy(pm->value, value->ptr, value->len);
	pm->value[value->len] = '\0';
}

/*
 * mime_param_parse - "token[/token] *(; attribute=value)" from an unfolded value
 *
 * Damage is stepped over: junk before a parameter is skipped, an attribute
 * without '=' is dropped, an unterminated quoted string or comment ends at
 * the end of the value. fv owns what it is given until mime_param_release().
 */
void
mime_param_parse(const char *s, size_t n, bool has_subtype, struct mime_field *fv)
{
	struct buf value;
	size_t i, a;

	memset(fv, 0, sizeof(*fv));
	buf_init(&value, 0);
	i = skip_cfws(s, n, 0);
	a = i;
	i = skip_token(s, n, i);
	if (i > a) {
		size_t type_end = i, b;

		if (has_subtype) {
			i = skip_cfws(s, n, i);
			if (i < n && s[i] == '/') {
				i = skip_cfws(s, n, i + 1);
				b = i;
				i = skip_token(s, n, i);
				if (i > b)
					fv->token = xasprintf("%.*s/%.*s", (int)(type_end - a), s + a,
							      (int)(i - b), s + b);
			}
		} else
			fv->token = xstrndup(s + a, i - a);
		if (fv->token != NULL)
			lower(fv->token);
	}
	while (i < n) {
		size_t attr, attr_end;

		i = skip_cfws(s, n, i);
		if (i >= n)
			break;
		if (!is_token_char((unsigned char)s[i]) || s[i] == '*') {
			i++;
			continue;
		}
		attr = i;
		attr_end = i = skip_token(s, n, i);
		i = skip_cfws(s, n, i);
		if (i >= n || s[i] != '=') {
			while (i < n && s[i] != ';')
				i++;
			continue;
		}
		i = skip_cfws(s, n, i + 1);
		buf_reset(&value);
		if (i < n && s[i] == '"') {
			for (i++; i < n && s[i] != '"'; i++) {
				if (s[i] == '\\' && i + 1 < n)
					i++;
				buf_append(&value, &s[i], 1);
			}
			i++;
		} else {
			size_t v = i, end;

			while (i < n && s[i] != ';' && s[i] != '(')
				i++;
			end = i;
			while (end > v && (s[end - 1] == ' ' || s[end - 1] == '\t'))
				end--;
			buf_append(&value, s + v, end - v);
		}
		add_param(fv, s + attr, attr_end - attr, &value);
		while (i < n && s[i] != ';')
			i++;
	}
	buf_release(&value);
}

/* mime_param_release - free what mime_param_parse() made */
void
mime_param_release(struct mime_field *fv)
{
	free(fv->token);
	for (size_t i = 0; i < fv->nparams; i++) {
		free(fv->params[i].name);
		free(fv->params[i].value);
	}
	free(fv->params);
	memset(fv, 0, sizeof(*fv));
}

/* find_param - the first parameter name with this section and form, or NULL */
static const struct mime_param *
find_param(const struct mime_field *fv, const char *name, int section, int is_ext)
{
	for (size_t i = 0; i < fv->nparams; i++) {
		const struct mime_param *pm = &fv->params[i];

		if (pm->section == section && strcmp(pm->name, name) == 0 &&
		    (is_ext < 0 || pm->is_ext == (bool)is_ext))
			return pm;
	}
	return NULL;
}

/* percent_decode - append s[0..n) with %XX decoded (a bad escape stays as it is) */
static void
percent_decode(struct buf *out, const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		int hi, lo;
		char c = s[i];

		if (c == '%' && i + 2 < n && (hi = mime_hex_value((unsigned char)s[i + 1])) >= 0 &&
		    (lo = mime_hex_value((unsigned char)s[i + 2])) >= 0) {
			c = (char)(hi << 4 | lo);
			i += 2;
		}
		buf_append(out, &c, 1);
	}
}

/* decode_ext_first - "charset'lang'%XX..." : the bytes into out, the charset into *charset_r */
static void
decode_ext_first(const struct mime_param *pm, struct buf *out, char **charset_r)
{
	const char *q1 = memchr(pm->value, '\'', pm->value_len), *q2 = NULL, *rest = pm->value;

	if (q1 != NULL)
		q2 = memchr(q1 + 1, '\'', pm->value_len - (size_t)(q1 + 1 - pm->value));
	if (q2 != NULL) {
		free(*charset_r);
		*charset_r = xstrndup(pm->value, (size_t)(q1 - pm->value));
		rest = q2 + 1;
	}
	percent_decode(out, rest, pm->value_len - (size_t)(rest - pm->value));
}

/*
 * mime_param_get - the value of parameter name, RFC 2231 forms first
 *
 * Fills out with the value's bytes. *charset_r gets the RFC 2231 charset
 * (or NULL); *is_plain_r says the value was an ordinary one, where RFC 2047
 * words may hide. Sections are joined in number order up to the first
 * missing one. Returns false when the parameter is absent.
 */
bool
mime_param_get(const struct mime_field *fv, const char *name, struct buf *out,
	       char **charset_r, bool *is_plain_r)
{
	const struct mime_param *pm;
	int section;

	buf_reset(out);
	*charset_r = NULL;
	*is_plain_r = false;
	if ((pm = find_param(fv, name, -1, 1)) != NULL) {
		decode_ext_first(pm, out, charset_r);
		return true;
	}
	for (section = 0; section <= SECTION_MAX; section++) {
		if ((pm = find_param(fv, name, section, -1)) == NULL)
			break;
		if (pm->is_ext && section == 0)
			decode_ext_first(pm, out, charset_r);
		else if (pm->is_ext)
			percent_decode(out, pm->value, pm->value_len);
		else
			buf_append(out, pm->value, pm->value_len);
	}
	if (section > 0)
		return true;
	if ((pm = find_param(fv, name, -1, 0)) != NULL) {
		buf_append(out, pm->value, pm->value_len);
		*is_plain_r = true;
		return true;
	}
	return false;
}

/*
 * mime_param_text - a parameter as UTF-8 text for the policy (filename, name), or NULL
 *
 * The caller frees the result; scratch is only working space.
 */
char *
mime_param_text(const struct mime_field *fv, const char *name, struct buf *scratch)
{
	char *charset, *text;
	bool is_plain;

	if (!mime_param_get(fv, name, scratch, &charset, &is_plain))
		return NULL;
	text = is_plain ? header_decode(scratch->ptr ? scratch->ptr : "", scratch->len)
			: header_to_utf8(charset, scratch->ptr ? scratch->ptr : "", scratch->len);
	free(charset);
	if (text[0] == '\0') {
		free(text);
		return NULL;
	}
	return text;
}

/*
 * mime_param_lower - a parameter's bytes as a lower-case C string (charset=), or NULL
 *
 * The caller frees the result; scratch is only working space.
 */
char *
mime_param_lower(const struct mime_field *fv, const char *name, struct buf *scratch)
{
	char *charset, *s;
	bool is_plain;

	if (!mime_param_get(fv, name, scratch, &charset, &is_plain))
		return NULL;
	free(charset);
	if (scratch->len == 0 || memchr(scratch->ptr, '\0', scratch->len) != NULL)
		return NULL;
	s = xstrndup(scratch->ptr, scratch->len);
	lower(s);
	return s;
}
