/*
 * lua_msg - the postern.msg, postern.rcpt and postern.part classes; see lua_msg.h
 *
 * A msg object is a userdata holding a pointer to the policy_input of the
 * message being decided, never a copy of the message: header fields are
 * parsed from the spool file when first asked for (message.c owns the
 * parsed block), MIME parts are walked only when msg:parts() is called, and
 * content is read only when a rule asks for it. Its user value is a cache
 * table (client, recipients) so repeated reads cost a table lookup.
 *
 * A rcpt object holds the msg object's payload pointer and an index into
 * the recipients (the array may move when msg:add_recipient() grows it).
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>

#include "header.h"
#include "log.h"
#include "lua_msg.h"
#include "mime.h"
#include "spool.h"
#include "verdict.h"
#include "util/esc.h"
#include "util/xalloc.h"

#define MSG_CLASS	"postern.msg"
#define RCPT_CLASS	"postern.rcpt"
#define BODY_DEFAULT_LIMIT	(1024 * 1024)		/* msg:body() without a limit */
#define CONTENT_MAX_LIMIT	(64L * 1024 * 1024)	/* the most one call may read */
#define HEADER_VALUE_MAX	8192	/* a value a policy may add */
#define REPLY_TEXT_MAX		400	/* text of a custom reject/tempfail reply */

struct lmsg {
	struct policy_input *in;	/* the message; NULL once the chain has run */
};

struct lrcpt {
	struct lmsg *owner;		/* the msg payload (kept alive by our user value) */
	size_t	index;			/* into in->m->rcpts */
};

/*
 * Each class's metatable is also in the registry under the address of one of
 * these, so that checking an argument's class compares two tables instead of
 * looking the class name up as a string (luaL_checkudata): every msg method
 * does it on every call, and on the name it cost more than the check.
 */
static const char msg_class_key, rcpt_class_key;

/* check_class - the userdata at idx if its metatable is the one under key, else raise */
static void *
check_class(lua_State *L, int idx, const void *key, const char *name)
{
	void *p = lua_touserdata(L, idx);
	bool same = false;

	if (p != NULL && lua_getmetatable(L, idx)) {
		lua_rawgetp(L, LUA_REGISTRYINDEX, key);
		same = lua_rawequal(L, -1, -2);
		lua_pop(L, 2);
	}
	if (!same)
		luaL_typeerror(L, idx, name);
	return p;
}

/* check_msg - the msg at idx, raising if it is not one or no longer valid */
struct policy_input *
lua_msg_check(lua_State *L, int idx)
{
	struct lmsg *lm = check_class(L, idx, &msg_class_key, MSG_CLASS);

	if (lm->in == NULL)
		luaL_error(L, "message no longer valid (kept after the chain ended?)");
	return lm->in;
}

/* check_rcpt - the recipient at idx */
static struct recipient *
check_rcpt(lua_State *L, int idx, struct policy_input **in_r)
{
	struct lrcpt *lr = check_class(L, idx, &rcpt_class_key, RCPT_CLASS);

	if (lr->owner->in == NULL)
		luaL_error(L, "recipient no longer valid (kept after the chain ended?)");
	if (in_r != NULL)
		*in_r = lr->owner->in;
	return &lr->owner->in->m->rcpts[lr->index];
}

/* push_owned - push a malloc'ed string and free it */
static void
push_owned(lua_State *L, char *s)
{
	lua_pushstring(L, s);
	free(s);
}

/* ensure_header - parse the header block on first use */
static struct header_block *
ensure_header(lua_State *L, struct policy_input *in)
{
	struct message *m = in->m;

	if (m->hdr == NULL) {
		m->hdr = xcalloc(1, sizeof(*m->hdr));
		if (m->spool == NULL || header_read(m->hdr, spool_fd(m->spool),
						    (size_t)in->cfg->max_header_size) < 0)
			luaL_error(L, "cannot read the message header from the spool");
	}
	return m->hdr;
}

/* lua_msg_mime - the message's MIME structure, walked on first use (msg:parts(), ClamAV) */
struct mime_tree *
lua_msg_mime(lua_State *L, struct policy_input *in)
{
	struct message *m = in->m;
	struct mime_limits lim;

	if (m->mime == NULL) {
		lim.max_depth = (int)in->cfg->mime_max_depth;
		lim.max_parts = (size_t)in->cfg->mime_max_parts;
		lim.max_header = (size_t)in->cfg->max_header_size;
		m->mime = xcalloc(1, sizeof(*m->mime));
		if (m->spool == NULL || mime_walk(spool_fd(m->spool), spool_size(m->spool), &lim,
						  m->mime) < 0)
			luaL_error(L, "cannot read the message from the spool");
	}
	return m->mime;
}

/* check_field_name - a header field name a policy may write */
static const char *
check_field_name(lua_State *L, int idx)
{
	size_t len;
	const char *name = luaL_checklstring(L, idx, &len);

	if (len == 0 || len > 128)
		luaL_argerror(L, idx, "a header field name of 1 to 128 characters");
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)name[i] < 33 || (unsigned char)name[i] > 126 || name[i] == ':')
			luaL_argerror(L, idx, "header field names are printable ASCII without ':'");
	return name;
}

/* check_field_value - a value a policy may write: one line, no NUL */
static const char *
check_field_value(lua_State *L, int idx)
{
	size_t len;
	const char *value = luaL_checklstring(L, idx, &len);

	if (len > HEADER_VALUE_MAX)
		luaL_argerror(L, idx, "header value too long (8192 bytes at most)");
	if (memchr(value, '\r', len) || memchr(value, '\n', len) || strlen(value) != len)
		luaL_argerror(L, idx, "header values are one line: no CR, LF or NUL");
	return value;
}

enum value_mode { MODE_DECODED, MODE_RAW, MODE_UNFOLDED };

/* check_mode - "decoded" (default), "raw" or "unfolded" */
static enum value_mode
check_mode(lua_State *L, int idx)
{
	static const char *const names[] = { "decoded", "raw", "unfolded", NULL };

	return (enum value_mode)luaL_checkoption(L, idx, "decoded", names);
}

/*
 * push_value - field i's value in the mode asked for (the msg is at stack index 1)
 *
 * Decoded values are kept in the msg's cache table under the field's index:
 * twenty rules on the same Received: fields decode them once, not twenty
 * times (bench/ measured the decoding as a third of a policy's time).
 */
static void
push_value(lua_State *L, const struct header_block *hb, size_t i, enum value_mode mode)
{
	const struct header_field *f = &hb->fields[i];

	switch (mode) {
	case MODE_RAW:
		lua_pushlstring(L, f->value, f->value_len);
		break;
	case MODE_UNFOLDED:
		push_owned(L, header_unfold(f->value, f->value_len));
		break;
	default:
		lua_getiuservalue(L, 1, 1);
		if (lua_rawgeti(L, -1, (lua_Integer)i + 1) == LUA_TSTRING) {
			lua_remove(L, -2);
			break;
		}
		lua_pop(L, 1);
		push_owned(L, header_decode(f->value, f->value_len));
		lua_pushvalue(L, -1);
		lua_rawseti(L, -3, (lua_Integer)i + 1);
		lua_remove(L, -2);
	}
}

/*
 * --- msg:header(name [, mode]) -> string or nil
 * The first field called name (any case). mode: "decoded" (default: unfolded,
 * RFC 2047 words turned into UTF-8), "unfolded", or "raw" (as received,
 * folds and all, without the final CRLF).
 */
static int
msg_header(lua_State *L)
{
	struct policy_input *in = lua_msg_check(L, 1);
	const char *name = luaL_checkstring(L, 2);
	enum value_mode mode = check_mode(L, 3);
	const struct header_block *hb = ensure_header(L, in);
	const struct header_field *f = header_find(hb, name, 0);

	if (f == NULL)
		lua_pushnil(L);
	else
		push_value(L, hb, (size_t)(f - hb->fields), mode);
	return 1;
}

/*
 * --- msg:headers(name [, mode]) -> { string, ... }
 * Every field called name, in message order (an empty table when none).
 */
static int
msg_headers(lua_State *L)
{
	struct policy_input *in = lua_msg_check(L, 1);
	const char *name = luaL_checkstring(L, 2);
	enum value_mode mode = check_mode(L, 3);
	const struct header_block *hb = ensure_header(L, in);
	lua_Integer n = 0;

	lua_newtable(L);
	for (size_t i = 0; i < hb->nfields; i++)
		if (header_name_is(&hb->fields[i], name)) {
			push_value(L, hb, i, mode);
			lua_rawseti(L, -2, ++n);
		}
	return 1;
}

/*
 * --- msg:header_names() -> { string, ... }
 * The names of all header fields, in message order, as written.
 */
static int
msg_header_names(lua_State *L)
{
	struct policy_input *in = lua_msg_check(L, 1);
	const struct header_block *hb = ensure_header(L, in);

	lua_createtable(L, (int)hb->nfields, 0);
	for (size_t i = 0; i < hb->nfields; i++) {
		lua_pushlstring(L, hb->fields[i].name, hb->fields[i].name_len);
		lua_rawseti(L, -2, (lua_Integer)i + 1);
	}
	return 1;
}

/*
 * --- msg:raw_header() -> string
 * The whole header block as received (without the empty line), at most
 * max_header_size bytes.
 */
static int
msg_raw_header(lua_State *L)
{
	struct policy_input *in = lua_msg_check(L, 1);
	const struct header_block *hb = ensure_header(L, in);

	lua_pushlstring(L, hb->raw ? hb->raw : "", hb->raw_len);
	return 1;
}

/* read_range - push spool bytes [off, off+len) (len already bounded) */
static void
read_range(lua_State *L, struct policy_input *in, off_t off, size_t len)
{
	luaL_Buffer b;
	char *p = luaL_buffinitsize(L, &b, len);
	size_t have = 0;

	while (have < len) {
		ssize_t n = pread(spool_fd(in->m->spool), p + have, len - have, off + (off_t)have);

		if (n <= 0)
			break;
		have += (size_t)n;
	}
	luaL_pushresultsize(&b, have);
}

/* check_limit - an optional byte limit argument */
static size_t
check_limit(lua_State *L, int idx, size_t def)
{
	lua_Integer v = luaL_optinteger(L, idx, (lua_Integer)def);

	if (v < 0 || v > CONTENT_MAX_LIMIT)
		luaL_argerror(L, idx, "a limit from 0 to 64 MiB");
	return (size_t)v;
}

/*
 * --- msg:body([limit]) -> string, truncated
 * The body as received (after the header's empty line, transfer encodings
 * not undone), at most limit bytes (default 1 MiB); truncated is true when
 * there was more.
 */
static int
msg_body(lua_State *L)
{
	struct policy_input *in = lua_msg_check(L, 1);
	size_t limit = check_limit(L, 2, BODY_DEFAULT_LIMIT);
	const struct header_block *hb = ensure_header(L, in);
	off_t total = spool_size(in->m->spool) - hb->body_off;
	size_t len = total < 0 ? 0 : (size_t)total;

	read_range(L, in, hb->body_off, len < limit ? len : limit);
	lua_pushboolean(L, len > limit);
	return 2;
}

/* part_content - part:content([limit]) (upvalue 1: the msg) */
static int
part_content(lua_State *L)
{
	struct policy_input *in = lua_msg_check(L, lua_upvalueindex(1));
	struct mime_tree *t = lua_msg_mime(L, in);
	lua_Integer idx;
	size_t limit;
	struct buf out;
	bool truncated = false;

	luaL_checktype(L, 1, LUA_TTABLE);
	lua_getfield(L, 1, "index");
	idx = lua_tointeger(L, -1);
	lua_pop(L, 1);
	limit = check_limit(L, 2, BODY_DEFAULT_LIMIT);
	if (idx < 0 || (size_t)idx >= t->nparts)
		return luaL_argerror(L, 1, "not a part of this message");
	buf_init(&out, 0);
	if (mime_part_content(spool_fd(in->m->spool), &t->parts[idx], limit, &out, &truncated) < 0) {
		buf_release(&out);
		return luaL_error(L, "cannot read the part from the spool");
	}
	lua_pushlstring(L, out.ptr ? out.ptr : "", out.len);
	buf_release(&out);
	lua_pushboolean(L, truncated);
	return 2;
}

/* set_string_field - t[name] = s, or nothing when s is NULL */
static void
set_string_field(lua_State *L, const char *name, const char *s)
{
	if (s == NULL)
		return;
	lua_pushstring(L, s);
	lua_setfield(L, -2, name);
}

/*
 * --- msg:parts() -> { part, ... }
 * Every MIME part, depth first; parts[1] is the message itself. A part is a
 * table: index, parent, depth, content_type ("type/subtype", lower case),
 * charset, filename (UTF-8), disposition, encoding, size (bytes of the body
 * as received), is_multipart; part:content([limit]) returns its body with the
 * transfer encoding undone (base64, quoted-printable), at most limit bytes
 * (default 1 MiB), and whether it was truncated.
 */
static int
msg_parts(lua_State *L)
{
	struct policy_input *in = lua_msg_check(L, 1);
	struct mime_tree *t = lua_msg_mime(L, in);

	lua_createtable(L, (int)t->nparts, 0);
	lua_createtable(L, 0, 1);		/* the parts' metatable */
	lua_createtable(L, 0, 1);		/* its __index */
	lua_pushvalue(L, 1);
	lua_pushcclosure(L, part_content, 1);
	lua_setfield(L, -2, "content");
	lua_setfield(L, -2, "__index");
	for (size_t i = 0; i < t->nparts; i++) {
		const struct mime_part *p = &t->parts[i];

		lua_createtable(L, 0, 10);
		lua_pushinteger(L, (lua_Integer)p->index);
		lua_setfield(L, -2, "index");
		lua_pushinteger(L, (lua_Integer)p->parent);
		lua_setfield(L, -2, "parent");
		lua_pushinteger(L, p->depth);
		lua_setfield(L, -2, "depth");
		set_string_field(L, "content_type", p->content_type);
		set_string_field(L, "charset", p->charset);
		set_string_field(L, "filename", p->filename);
		set_string_field(L, "disposition", p->disposition);
		set_string_field(L, "encoding", p->encoding);
		lua_pushinteger(L, (lua_Integer)p->body_len);
		lua_setfield(L, -2, "size");
		lua_pushboolean(L, p->is_multipart);
		lua_setfield(L, -2, "is_multipart");
		lua_pushvalue(L, -2);
		lua_setmetatable(L, -2);
		lua_rawseti(L, -3, (lua_Integer)i + 1);
	}
	lua_pop(L, 1);				/* the metatable */
	return 1;
}

/* add_edit - one header edit for the message or one recipient */
static void
add_edit(lua_State *L, struct edit_list *l, enum edit_op op, int name_idx, int value_idx)
{
	const char *name = op == EDIT_SUBJECT_TAG ? "Subject" : check_field_name(L, name_idx);
	const char *value = value_idx > 0 ? check_field_value(L, value_idx) : NULL;

	edit_list_add(l, op, name, value);
}

/*
 * --- msg:add_header(name, value)
 * Add a field at the top of every recipient's copy (below postern's
 * Received:). value is one line of text; UTF-8 is sent as is.
 */
static int
msg_add_header(lua_State *L)
{
	add_edit(L, &lua_msg_check(L, 1)->m->edits, EDIT_ADD, 2, 3);
	return 0;
}

/*
 * --- msg:remove_header(name)
 * Remove every field called name from every recipient's copy.
 */
static int
msg_remove_header(lua_State *L)
{
	add_edit(L, &lua_msg_check(L, 1)->m->edits, EDIT_REMOVE, 2, 0);
	return 0;
}

/*
 * --- msg:replace_header(name, value)
 * Remove every field called name and put one with value where the first was
 * (at the top when there was none).
 */
static int
msg_replace_header(lua_State *L)
{
	add_edit(L, &lua_msg_check(L, 1)->m->edits, EDIT_REPLACE, 2, 3);
	return 0;
}

/*
 * --- msg:tag_subject(tag)
 * Put tag in front of the Subject: of every recipient's copy (a Subject: is
 * added when there is none). Tagging twice with the same tag tags once.
 */
static int
msg_tag_subject(lua_State *L)
{
	add_edit(L, &lua_msg_check(L, 1)->m->edits, EDIT_SUBJECT_TAG, 0, 2);
	return 0;
}

/*
 * --- msg:add_score(points, rule) -> score
 * Add points (may be negative) to the message's score and record that rule
 * fired; returns the new score. msg.score reads it, msg.hits lists the rules.
 */
static int
msg_add_score(lua_State *L)
{
	struct policy_input *in = lua_msg_check(L, 1);
	lua_Number points = luaL_checknumber(L, 2);
	const char *rule = luaL_checkstring(L, 3);

	if (points != points || points > 1e9 || points < -1e9)
		return luaL_argerror(L, 2, "a finite number of points");
	message_add_hit(in->m, rule, points);
	lua_pushnumber(L, in->m->score);
	return 1;
}

/*
 * --- msg:hit(rule)
 * Record that rule fired, without points (shown by postern test and logged).
 */
static int
msg_hit(lua_State *L)
{
	struct policy_input *in = lua_msg_check(L, 1);

	message_add_hit(in->m, luaL_checkstring(L, 2), 0);
	return 0;
}

/*
 * --- msg:log(...)
 * Log the arguments (tostring'ed, separated by spaces) at info level, with
 * the mail id; control bytes are escaped.
 */
static int
msg_log(lua_State *L)
{
	struct policy_input *in = lua_msg_check(L, 1);
	int n = lua_gettop(L);
	luaL_Buffer b;
	char *e;

	luaL_buffinit(L, &b);
	for (int i = 2; i <= n; i++) {
		if (i > 2)
			luaL_addchar(&b, ' ');
		luaL_tolstring(L, i, NULL);
		luaL_addvalue(&b);
	}
	luaL_pushresult(&b);
	e = esc_log(lua_tostring(L, -1), lua_rawlen(L, -1) > 2000 ? 2000 : lua_rawlen(L, -1));
	log_info("%s: policy %s: %s", in->m->id, in->listener, e);
	free(e);
	return 0;
}

/* push_rcpt - a rcpt object for recipient index i of the msg at msg_idx */
static void
push_rcpt(lua_State *L, int msg_idx, size_t i)
{
	struct lrcpt *lr = lua_newuserdatauv(L, sizeof(*lr), 2);

	lr->owner = lua_touserdata(L, msg_idx);
	lr->index = i;
	luaL_setmetatable(L, RCPT_CLASS);
	lua_pushvalue(L, msg_idx);		/* keeps the payload alive */
	lua_setiuservalue(L, -2, 1);
	lua_newtable(L);			/* rcpt.settings */
	lua_setiuservalue(L, -2, 2);
}

/* check_address - an address a policy gives: no <>, no control bytes, bounded */
static const char *
check_address(lua_State *L, int idx)
{
	size_t len;
	const char *a = luaL_checklstring(L, idx, &len);

	if (len == 0 || len > 512 || strlen(a) != len)
		luaL_argerror(L, idx, "an address of 1 to 512 bytes");
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)a[i] < 0x21 || a[i] == 0x7f || a[i] == '<' || a[i] == '>')
			luaL_argerror(L, idx, "an address without spaces, control bytes or <>");
	return a;
}

/* recipients_table - push the cached recipients array of the msg at 1 */
static void
recipients_table(lua_State *L, struct policy_input *in)
{
	lua_getiuservalue(L, 1, 1);
	if (lua_getfield(L, -1, "recipients") == LUA_TTABLE) {
		lua_remove(L, -2);
		return;
	}
	lua_pop(L, 1);
	lua_createtable(L, (int)in->m->nrcpts, 0);
	for (size_t i = 0; i < in->m->nrcpts; i++) {
		push_rcpt(L, 1, i);
		lua_rawseti(L, -2, (lua_Integer)i + 1);
	}
	lua_pushvalue(L, -1);
	lua_setfield(L, -3, "recipients");
	lua_remove(L, -2);
}

/*
 * --- msg:add_recipient(address) -> rcpt
 * Deliver a copy to address too (a bcc, e.g. an archive); the MTA hears no
 * reply for it. Returns its rcpt object, which can take edits of its own.
 */
static int
msg_add_recipient(lua_State *L)
{
	struct policy_input *in = lua_msg_check(L, 1);
	const char *addr = check_address(L, 2);
	struct recipient *r;

	if (in->m->nrcpts >= 100000)
		return luaL_error(L, "too many recipients");
	recipients_table(L, in);		/* built before the array grows */
	r = message_add_rcpt(in->m, addr);
	r->added = true;
	r->decided = true;			/* a bcc copy is delivered, whatever comes later */
	push_rcpt(L, 1, in->m->nrcpts - 1);
	lua_pushvalue(L, -1);
	lua_rawseti(L, -3, (lua_Integer)in->m->nrcpts);
	return 1;
}

/* client_table - push the cached client table of the msg at 1 */
static void
client_table(lua_State *L, struct policy_input *in)
{
	const struct client *c = in->client;
	const char *name = c->xforward[XF_NAME], *login = c->xforward[XF_LOGIN];

	lua_getiuservalue(L, 1, 1);
	if (lua_getfield(L, -1, "client") == LUA_TTABLE) {
		lua_remove(L, -2);
		return;
	}
	lua_pop(L, 1);
	lua_createtable(L, 0, 9);
	lua_pushstring(L, c->xforward[XF_ADDR] ? c->xforward[XF_ADDR] : c->ip);
	lua_setfield(L, -2, "ip");
	if (name != NULL && strcmp(name, "[UNAVAILABLE]") != 0 && strcmp(name, "[TEMPUNAVAIL]") != 0)
		set_string_field(L, "name", name);
	set_string_field(L, "helo", c->xforward[XF_HELO] ? c->xforward[XF_HELO] : c->helo);
	set_string_field(L, "proto", c->xforward[XF_PROTO]);
	if (login != NULL && strcmp(login, "[UNAVAILABLE]") != 0 && *login != '\0')
		set_string_field(L, "login", login);
	set_string_field(L, "source", c->xforward[XF_SOURCE]);
	set_string_field(L, "ident", c->xforward[XF_IDENT]);
	if (c->xforward[XF_PORT] != NULL)
		lua_pushinteger(L, atoi(c->xforward[XF_PORT]));
	else
		lua_pushinteger(L, c->port);
	lua_setfield(L, -2, "port");
	lua_pushstring(L, c->ip);
	lua_setfield(L, -2, "peer");
	lua_pushvalue(L, -1);
	lua_setfield(L, -3, "client");
	lua_remove(L, -2);
}

/* hits_table - push msg.hits: { { rule = ..., score = ... }, ... } */
static void
hits_table(lua_State *L, const struct message *m)
{
	lua_createtable(L, (int)m->nhits, 0);
	for (size_t i = 0; i < m->nhits; i++) {
		lua_createtable(L, 0, 2);
		lua_pushstring(L, m->hits[i].rule);
		lua_setfield(L, -2, "rule");
		lua_pushnumber(L, m->hits[i].score);
		lua_setfield(L, -2, "score");
		lua_rawseti(L, -2, (lua_Integer)i + 1);
	}
}

/*
 * --- msg:all_decided() -> boolean
 * Whether every recipient of the MTA's (not those added by the policy) has
 * its verdict: P.policy ends the chain then.
 */
static int
msg_all_decided(lua_State *L)
{
	struct policy_input *in = lua_msg_check(L, 1);
	bool all = true;

	for (size_t i = 0; i < in->m->nrcpts && all; i++)
		all = in->m->rcpts[i].added || in->m->rcpts[i].decided;
	lua_pushboolean(L, all);
	return 1;
}

static const luaL_Reg msg_methods[] = {
	{ "all_decided", msg_all_decided },
	{ "header", msg_header },
	{ "headers", msg_headers },
	{ "header_names", msg_header_names },
	{ "raw_header", msg_raw_header },
	{ "body", msg_body },
	{ "parts", msg_parts },
	{ "add_header", msg_add_header },
	{ "remove_header", msg_remove_header },
	{ "replace_header", msg_replace_header },
	{ "tag_subject", msg_tag_subject },
	{ "add_score", msg_add_score },
	{ "hit", msg_hit },
	{ "log", msg_log },
	{ "add_recipient", msg_add_recipient },
	{ NULL, NULL },
};

/*
 * --- msg.id, msg.sender, msg.recipients, msg.client, msg.listener, msg.size,
 * --- msg.score, msg.hits, msg.broken, msg.host
 * id: postern's mail id. sender: the envelope sender ("" for the null
 * sender). recipients: the rcpt objects, in RCPT order. client: ip, name,
 * helo, proto, login (SASL), source, ident, port (all from the MTA's
 * XFORWARD when it sent them; ip and helo fall back to our peer's), peer
 * (the MTA's own address). listener: the listener's name. size: bytes.
 * score: the sum of msg:add_score(). hits: { {rule=, score=}, ... }.
 * broken: why the header or MIME structure is damaged, or nil. host: our
 * host name (the configuration's hostname), for headers such as X-Virus-Scanned.
 */
static int
msg_index(lua_State *L)
{
	struct policy_input *in;
	const char *key;

	/* methods first: rules call them far more often than they read fields */
	lua_pushvalue(L, 2);
	if (lua_rawget(L, lua_upvalueindex(1)) != LUA_TNIL)
		return 1;
	lua_pop(L, 1);
	in = lua_msg_check(L, 1);
	key = luaL_checkstring(L, 2);
	if (strcmp(key, "id") == 0)
		lua_pushstring(L, in->m->id);
	else if (strcmp(key, "sender") == 0)
		lua_pushstring(L, in->m->sender);
	else if (strcmp(key, "recipients") == 0)
		recipients_table(L, in);
	else if (strcmp(key, "client") == 0)
		client_table(L, in);
	else if (strcmp(key, "listener") == 0)
		lua_pushstring(L, in->listener);
	else if (strcmp(key, "host") == 0)
		lua_pushstring(L, in->cfg->hostname);
	else if (strcmp(key, "size") == 0)
		lua_pushinteger(L, in->m->size);
	else if (strcmp(key, "score") == 0)
		lua_pushnumber(L, in->m->score);
	else if (strcmp(key, "hits") == 0)
		hits_table(L, in->m);
	else if (strcmp(key, "broken") == 0) {
		const char *why = ensure_header(L, in)->broken_reason;

		if (why == NULL)
			why = lua_msg_mime(L, in)->broken_reason;
		if (why != NULL)
			lua_pushstring(L, why);
		else
			lua_pushnil(L);
	} else
		lua_pushnil(L);
	return 1;
}

/*
 * raw_field - push t[key] without metamethods
 *
 * The chain's return value is read after the policy's limits are off
 * (policy_run): an __index there would run policy code unguarded, so
 * verdict tables are read as the plain tables P.reject{} and friends make.
 */
static int
raw_field(lua_State *L, int idx, const char *key)
{
	lua_pushstring(L, key);
	return lua_rawget(L, idx);
}

/* is_enhanced_code - "C.SSS.DDD" of RFC 3463: digits only, class as given */
static bool
is_enhanced_code(const char *enh, int class)
{
	const char *p = enh;

	if (*p++ != '0' + class || *p++ != '.')
		return false;
	for (int part = 0; part < 2; part++) {
		int digits = 0;

		while (*p >= '0' && *p <= '9' && digits < 4) {
			p++;
			digits++;
		}
		if (digits == 0 || digits > 3 || (digits > 1 && p[-digits] == '0'))
			return false;
		if (part == 0 && *p++ != '.')
			return false;
	}
	return *p == '\0';
}

/* text_field - a text-like field: nil (NULL), a string or a number; -1 for anything else */
static int
text_field(lua_State *L, int idx, const char *key, const char **value)
{
	int type = raw_field(L, idx, key);

	*value = NULL;
	if (type == LUA_TNIL)
		return 0;
	if (type != LUA_TSTRING && type != LUA_TNUMBER)
		return -1;
	*value = lua_tostring(L, -1);	/* the copy on the stack, not the table's value */
	return 0;
}

/*
 * verdict_from - a verdict value: "pass", "discard", "quarantine", "reject",
 * "tempfail", or a table { verdict = ..., code = ..., enh = ..., text = ...,
 * reason = ... } as P.reject{} and friends make.
 *
 * Returns 0 with *v and *reply_r (malloc'ed or NULL: the reply of a reject
 * or tempfail, the reason of a quarantine), or -1 with a static message.
 * Runs no Lua code (see raw_field).
 */
static int
verdict_from(lua_State *L, int idx, enum verdict *v, char **reply_r, const char **why_r)
{
	static const char *const names[] = { "pass", "discard", "quarantine", "reject", "tempfail", NULL };
	const char *name, *text = NULL, *enh = NULL, *reason = NULL;
	lua_Integer code = 0;
	bool has_code = false;
	int i, top = lua_gettop(L), rc = -1;

	*reply_r = NULL;
	idx = lua_absindex(L, idx);
	/* lua_tostring would turn a number into a string in place: check the type first */
	if (lua_type(L, idx) == LUA_TTABLE) {
		raw_field(L, idx, "verdict");
		name = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
		lua_pop(L, 1);		/* the table keeps the string alive */
	} else
		name = lua_type(L, idx) == LUA_TSTRING ? lua_tostring(L, idx) : NULL;
	for (i = 0; name != NULL && names[i] != NULL; i++)
		if (strcmp(name, names[i]) == 0)
			break;
	if (name == NULL || names[i] == NULL) {
		*why_r = "a verdict is \"pass\", \"discard\", \"quarantine\", \"reject\", \"tempfail\" "
			 "or a table such as P.reject{ text = ... }";
		return -1;
	}
	/* the fields stay on the stack until the end: their strings are used until then */
	*v = (enum verdict)i;
	if (lua_type(L, idx) == LUA_TTABLE) {
		int isnum = 1;

		if ((has_code = raw_field(L, idx, "code") != LUA_TNIL) &&
		    (lua_type(L, -1) != LUA_TNUMBER || (code = lua_tointegerx(L, -1, &isnum), !isnum))) {
			*why_r = "code must be a whole number: a 5xx reply code for reject, 4xx for tempfail";
			goto out;
		}
		if (raw_field(L, idx, "enh") != LUA_TNIL) {
			if (lua_type(L, -1) != LUA_TSTRING) {
				*why_r = "enh must be a string, an enhanced status code such as \"5.7.1\"";
				goto out;
			}
			enh = lua_tostring(L, -1);
		}
		if (text_field(L, idx, "text", &text) < 0) {
			*why_r = "text must be a string";
			goto out;
		}
		if (text_field(L, idx, "reason", &reason) < 0) {
			*why_r = "reason must be a string";
			goto out;
		}
		if (*v == VERDICT_QUARANTINE && reason != NULL)
			*reply_r = xstrdup(reason);
	}
	if (*v != VERDICT_REJECT && *v != VERDICT_TEMPFAIL) {
		rc = 0;
		goto out;
	}
	if (!has_code)
		code = *v == VERDICT_REJECT ? 554 : 451;
	if ((*v == VERDICT_REJECT && (code < 500 || code > 599)) ||
	    (*v == VERDICT_TEMPFAIL && (code < 400 || code > 499))) {
		*why_r = "code must be 5xx for reject and 4xx for tempfail";
		goto out;
	}
	if (enh == NULL)
		enh = *v == VERDICT_REJECT ? "5.7.1" : "4.7.1";
	if (!is_enhanced_code(enh, (int)(code / 100))) {
		*why_r = "enh must be an enhanced status code of the reply's class, e.g. \"5.7.1\"";
		goto out;
	}
	if (text == NULL)
		text = *v == VERDICT_REJECT ? "Message rejected by policy" : "Try again later";
	/*
	 * Reply text often carries words of the message (a file name): it is cut
	 * to REPLY_TEXT_MAX and made printable rather than refused, or a message
	 * would be deferred for ever for the length of its attachment's name.
	 */
	*reply_r = xasprintf("%d %s %.*s", (int)code, enh, REPLY_TEXT_MAX, text);
	for (char *p = *reply_r; *p; p++)
		if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
			*p = '?';		/* RFC 5321 4.2: printable ASCII in replies */
	rc = 0;
out:
	if (rc < 0) {
		free(*reply_r);
		*reply_r = NULL;
	}
	lua_settop(L, top);
	return rc;
}

/* decide - set r's verdict unless it was decided; true if this call decided */
static bool
decide(struct recipient *r, enum verdict v, char *reply)
{
	if (r->decided) {
		free(reply);
		return false;
	}
	r->decided = true;
	r->verdict = v;
	free(r->policy_reply);
	r->policy_reply = reply;
	return true;
}

/* rcpt_decide_as - common body of rcpt:pass() ... rcpt:tempfail() */
/*
 * faulty_arg - the stack index of the positional argument verdict_from's
 * why is about: rcpt:reject(text, code, enh) has self at 1
 */
static int
faulty_arg(const char *why)
{
	if (strncmp(why, "code", 4) == 0)
		return 3;
	if (strncmp(why, "enh", 3) == 0)
		return 4;
	return 2;
}

static int
rcpt_decide_as(lua_State *L, const char *verdict)
{
	struct recipient *r = check_rcpt(L, 1, NULL);
	const char *why;
	enum verdict v;
	char *reply;

	/* rcpt:reject("text", 550, "5.7.1") or rcpt:reject{ text = ..., code = ... } */
	lua_settop(L, 4);
	if (lua_type(L, 2) == LUA_TTABLE) {
		/* a copy: the caller's table (often a shared P.tempfail{...}) is not ours to change */
		static const char *const fields[] = { "code", "enh", "text", "reason" };

		lua_createtable(L, 0, 5);
		for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
			raw_field(L, 2, fields[i]);
			lua_setfield(L, -2, fields[i]);
		}
		lua_pushstring(L, verdict);
		lua_setfield(L, -2, "verdict");
	} else {
		lua_createtable(L, 0, 4);
		lua_pushstring(L, verdict);
		lua_setfield(L, -2, "verdict");
		if (!lua_isnoneornil(L, 2)) {
			luaL_checkstring(L, 2);
			lua_pushvalue(L, 2);
			lua_setfield(L, -2, strcmp(verdict, "quarantine") == 0 ? "reason" : "text");
		}
		if (!lua_isnoneornil(L, 3)) {
			lua_pushinteger(L, luaL_checkinteger(L, 3));
			lua_setfield(L, -2, "code");
		}
		if (!lua_isnoneornil(L, 4)) {
			lua_pushstring(L, luaL_checkstring(L, 4));
			lua_setfield(L, -2, "enh");
		}
	}
	if (verdict_from(L, -1, &v, &reply, &why) < 0)
		return luaL_argerror(L, lua_type(L, 2) == LUA_TTABLE ? 2 : faulty_arg(why), why);
	lua_pushboolean(L, decide(r, v, reply));
	return 1;
}

/*
 * --- rcpt:pass() -> decided
 * --- rcpt:discard() -> decided
 * --- rcpt:quarantine([reason]) -> decided
 * --- rcpt:reject([text [, code [, enh]]]) -> decided
 * --- rcpt:tempfail([text [, code [, enh]]]) -> decided
 * Decide this recipient's fate; later rules cannot change it. Returns false
 * when an earlier rule had decided already. reject defaults to 554 5.7.1,
 * tempfail to 451 4.7.1; a table { text =, code =, enh = } works too.
 */
static int rcpt_pass(lua_State *L) { return rcpt_decide_as(L, "pass"); }
static int rcpt_discard(lua_State *L) { return rcpt_decide_as(L, "discard"); }
static int rcpt_quarantine(lua_State *L) { return rcpt_decide_as(L, "quarantine"); }
static int rcpt_reject(lua_State *L) { return rcpt_decide_as(L, "reject"); }
static int rcpt_tempfail(lua_State *L) { return rcpt_decide_as(L, "tempfail"); }

/*
 * --- rcpt:redirect(address)
 * Deliver this recipient's copy to address instead (the MTA's reply still
 * speaks of the original recipient).
 */
static int
rcpt_redirect(lua_State *L)
{
	struct recipient *r = check_rcpt(L, 1, NULL);
	const char *addr = check_address(L, 2);

	free(r->forward_to);
	r->forward_to = xstrdup(addr);
	return 0;
}

/*
 * --- rcpt:add_header(name, value)
 * --- rcpt:remove_header(name)
 * --- rcpt:replace_header(name, value)
 * --- rcpt:tag_subject(tag)
 * As the msg methods, for this recipient's copy only. Recipients whose edits
 * differ get copies of their own (one downstream transaction per copy).
 */
static int
rcpt_add_header(lua_State *L)
{
	add_edit(L, &check_rcpt(L, 1, NULL)->edits, EDIT_ADD, 2, 3);
	return 0;
}

static int
rcpt_remove_header(lua_State *L)
{
	add_edit(L, &check_rcpt(L, 1, NULL)->edits, EDIT_REMOVE, 2, 0);
	return 0;
}

static int
rcpt_replace_header(lua_State *L)
{
	add_edit(L, &check_rcpt(L, 1, NULL)->edits, EDIT_REPLACE, 2, 3);
	return 0;
}

static int
rcpt_tag_subject(lua_State *L)
{
	add_edit(L, &check_rcpt(L, 1, NULL)->edits, EDIT_SUBJECT_TAG, 0, 2);
	return 0;
}

static const luaL_Reg rcpt_methods[] = {
	{ "pass", rcpt_pass },
	{ "discard", rcpt_discard },
	{ "quarantine", rcpt_quarantine },
	{ "reject", rcpt_reject },
	{ "tempfail", rcpt_tempfail },
	{ "redirect", rcpt_redirect },
	{ "add_header", rcpt_add_header },
	{ "remove_header", rcpt_remove_header },
	{ "replace_header", rcpt_replace_header },
	{ "tag_subject", rcpt_tag_subject },
	{ NULL, NULL },
};

/*
 * --- rcpt.address, rcpt.local, rcpt.localpart, rcpt.domain, rcpt.verdict, rcpt.settings,
 * --- rcpt.added
 * address: as in RCPT TO (without <>). local (also localpart, since local is
 * a Lua keyword and needs rcpt["local"]), domain: its two halves, the
 * domain in lower case ("" when there is no @). verdict: the decision so far
 * ("pass", ...) or nil. settings: a table of this recipient's own for the
 * rules (e.g. settings.spam_lover = true). added: true for msg:add_recipient().
 */
static int
rcpt_index(lua_State *L)
{
	struct recipient *r = check_rcpt(L, 1, NULL);
	const char *key = luaL_checkstring(L, 2), *at = strrchr(r->addr, '@');

	if (strcmp(key, "address") == 0)
		lua_pushstring(L, r->addr);
	else if (strcmp(key, "local") == 0 || strcmp(key, "localpart") == 0)
		lua_pushlstring(L, r->addr, at ? (size_t)(at - r->addr) : strlen(r->addr));
	else if (strcmp(key, "domain") == 0) {
		luaL_Buffer b;

		luaL_buffinit(L, &b);
		for (const char *p = at ? at + 1 : ""; *p; p++)
			luaL_addchar(&b, (char)tolower((unsigned char)*p));
		luaL_pushresult(&b);
	} else if (strcmp(key, "verdict") == 0) {
		if (r->decided)
			lua_pushstring(L, verdict_name(r->verdict));
		else
			lua_pushnil(L);
	} else if (strcmp(key, "settings") == 0)
		lua_getiuservalue(L, 1, 2);
	else if (strcmp(key, "added") == 0)
		lua_pushboolean(L, r->added);
	else {
		lua_pushvalue(L, 2);
		lua_rawget(L, lua_upvalueindex(1));
	}
	return 1;
}

/* rcpt_tostring - "rcpt <address>" */
static int
rcpt_tostring(lua_State *L)
{
	lua_pushfstring(L, "rcpt <%s>", check_rcpt(L, 1, NULL)->addr);
	return 1;
}

/* msg_tostring - "msg ID" */
static int
msg_tostring(lua_State *L)
{
	lua_pushfstring(L, "msg %s", lua_msg_check(L, 1)->m->id);
	return 1;
}

/*
 * register_class - metatable name (also under key) with __index, __tostring and
 * a methods table
 *
 * __index gets the methods table as its upvalue: a method is found with one
 * raw table read, before any field name is compared.
 */
static void
register_class(lua_State *L, const char *name, const void *key, const luaL_Reg *methods,
	       lua_CFunction index, lua_CFunction tostring)
{
	luaL_newmetatable(L, name);
	lua_pushvalue(L, -1);
	lua_rawsetp(L, LUA_REGISTRYINDEX, key);
	lua_newtable(L);
	luaL_setfuncs(L, methods, 0);
	lua_pushvalue(L, -1);
	lua_setfield(L, -3, "methods");
	lua_pushcclosure(L, index, 1);
	lua_setfield(L, -2, "__index");
	lua_pushcfunction(L, tostring);
	lua_setfield(L, -2, "__tostring");
	lua_pushboolean(L, 0);
	lua_setfield(L, -2, "__metatable");
	lua_pop(L, 1);
}

/* lua_msg_open - see lua_msg.h (the preload table is on top) */
void
lua_msg_open(lua_State *L)
{
	register_class(L, MSG_CLASS, &msg_class_key, msg_methods, msg_index, msg_tostring);
	luaL_getmetatable(L, MSG_CLASS);
	lua_getfield(L, -1, "methods");
	lua_scan_methods(L);		/* msg:clamav(), msg:files(), msg:spamd() */
	lua_pop(L, 2);
	register_class(L, RCPT_CLASS, &rcpt_class_key, rcpt_methods, rcpt_index, rcpt_tostring);
	lua_pushcfunction(L, luaopen_postern_core);
	lua_setfield(L, -2, "postern.core");
}

/* lua_msg_push - a msg object for in (remembered so that it can be invalidated) */
void
lua_msg_push(lua_State *L, struct policy_input *in)
{
	struct lmsg *lm = lua_newuserdatauv(L, sizeof(*lm), 1);

	lm->in = in;
	luaL_setmetatable(L, MSG_CLASS);
	lua_newtable(L);
	lua_setiuservalue(L, -2, 1);
	lua_pushvalue(L, -1);
	lua_setfield(L, LUA_REGISTRYINDEX, "postern.current_msg");
}

/* lua_msg_invalidate - the chain has run: cut the msg and its rcpts off */
void
lua_msg_invalidate(lua_State *L, struct policy_input *in)
{
	struct lmsg *lm;

	(void)in;
	lua_getfield(L, LUA_REGISTRYINDEX, "postern.current_msg");
	lm = luaL_testudata(L, -1, MSG_CLASS);
	if (lm != NULL)
		lm->in = NULL;
	lua_pop(L, 1);
	lua_pushnil(L);
	lua_setfield(L, LUA_REGISTRYINDEX, "postern.current_msg");
}

/*
 * --- P.verdict_problem(v) -> nil | reason
 * What is wrong with verdict value v, by the rules the chain's result is
 * held to, or nil: the library checks verdicts given to its constructors
 * when the policy loads rather than on every message.
 */
int
lua_msg_verdict_problem(lua_State *L)
{
	const char *why;
	enum verdict v;
	char *reply;

	luaL_checkany(L, 1);
	if (verdict_from(L, 1, &v, &reply, &why) < 0) {
		lua_pushstring(L, why);
		return 1;
	}
	free(reply);
	lua_pushnil(L);
	return 1;
}

/*
 * lua_msg_apply_result - the chain's return value decides the undecided recipients
 *
 * nil and false decide nothing: "cond and P.reject()" is a common Lua idiom.
 */
int
lua_msg_apply_result(lua_State *L, int idx, struct policy_input *in, char **error_r)
{
	const char *why;
	enum verdict v;
	char *reply;

	if (lua_isnoneornil(L, idx) || (lua_isboolean(L, idx) && !lua_toboolean(L, idx)))
		return 0;
	if (verdict_from(L, idx, &v, &reply, &why) < 0) {
		*error_r = xasprintf("the chain returned %s: %s", luaL_typename(L, idx), why);
		return -1;
	}
	for (size_t i = 0; i < in->m->nrcpts; i++)
		if (!in->m->rcpts[i].added)
			decide(&in->m->rcpts[i], v, reply ? xstrdup(reply) : NULL);
	free(reply);
	return 0;
}
