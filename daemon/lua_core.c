/*
 * lua_core - the C half of require "postern": regex, cidr, log
 *
 * The module "postern.core" gives the Lua library (lua/postern/init.lua) what
 * Lua lacks: PCRE2 patterns (rules_pcre.c), client networks (util/net.c) and
 * the daemon's log. Policies use them through the library: P.regex(),
 * P.cidr(), P.log().
 *
 * A match that hits the match limit is neither a match nor a miss: re:match()
 * returns nil and a message, and the rule that asked logs it (DESIGN.md,
 * "Scanners and patterns").
 */
#include <arpa/inet.h>
#include <sys/stat.h>
#include <ctype.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <lauxlib.h>
#include <lua.h>

#include "log.h"
#include "lua_msg.h"
#include "rules_pcre.h"
#include "util/esc.h"
#include "util/net.h"
#include "util/xalloc.h"

#define REGEX_CLASS	"postern.regex"
#define CIDR_CLASS	"postern.cidr"
#define CIDR_MAX	100000	/* networks in one list */

struct lregex {
	struct regex *re;	/* compiled pattern, owned */
};

struct lcidr {
	struct cidr *nets;	/* owned array */
	size_t	n;		/* its length */
};

/*
 * --- P.regex(pattern [, flags]) -> regex
 * Compile a PCRE2 pattern (UTF-8, Unicode properties) once; flags is a
 * string of i (caseless), m (multiline), s (dot matches newline), x
 * (extended). A bad pattern raises an error naming the offset, so a policy
 * with one does not load.
 */
static int
core_regex(lua_State *L)
{
	size_t len;
	const char *pattern = luaL_checklstring(L, 1, &len);
	const char *flags = luaL_optstring(L, 2, "");
	struct lregex *lr = lua_newuserdatauv(L, sizeof(*lr), 0);
	char *error = NULL;

	lr->re = NULL;
	luaL_setmetatable(L, REGEX_CLASS);
	lr->re = regex_compile(pattern, len, flags, &error);
	if (lr->re == NULL) {
		lua_pushfstring(L, "P.regex(\"%s\"): %s", pattern, error);
		free(error);
		return lua_error(L);
	}
	return 1;
}

/*
 * --- regex:match(subject) -> matched [, captures...] | nil, error
 * true and the captures (strings; false for a group that did not take part)
 * when subject matches, false when it does not, nil and a message when the
 * match limit was reached (a pathological pattern or subject).
 */
static int
regex_lua_match(lua_State *L)
{
	struct lregex *lr = luaL_checkudata(L, 1, REGEX_CLASS);
	size_t len, *groups;
	const char *s = luaL_checklstring(L, 2, &len);
	int ngroups, rc = regex_match(lr->re, s, len, NULL, NULL, &groups, &ngroups);

	if (rc == REGEX_LIMIT || rc == REGEX_ERROR) {
		lua_pushnil(L);
		lua_pushfstring(L, "regex /%s/: %s", regex_pattern(lr->re),
				rc == REGEX_LIMIT ? "match limit reached" : "matcher error");
		return 2;
	}
	lua_pushboolean(L, rc == REGEX_MATCHED);
	if (rc != REGEX_MATCHED)
		return 1;
	luaL_checkstack(L, ngroups, "too many captures");
	for (int i = 1; i < ngroups; i++) {
		if (groups[2 * i] == (size_t)-1)
			lua_pushboolean(L, 0);
		else
			lua_pushlstring(L, s + groups[2 * i], groups[2 * i + 1] - groups[2 * i]);
	}
	return ngroups;
}

/*
 * --- regex:find(subject) -> start, end | nil [, error]
 * Where the first match lies (1-based, inclusive, as string.find).
 */
static int
regex_lua_find(lua_State *L)
{
	struct lregex *lr = luaL_checkudata(L, 1, REGEX_CLASS);
	size_t len, start, end;
	const char *s = luaL_checklstring(L, 2, &len);
	int rc = regex_match(lr->re, s, len, &start, &end, NULL, NULL);

	if (rc == REGEX_MATCHED) {
		lua_pushinteger(L, (lua_Integer)start + 1);
		lua_pushinteger(L, (lua_Integer)end);
		return 2;
	}
	lua_pushnil(L);
	if (rc == REGEX_NOMATCH)
		return 1;
	lua_pushfstring(L, "regex /%s/: match limit reached", regex_pattern(lr->re));
	return 2;
}

/* regex_gc - free the compiled pattern */
static int
regex_gc(lua_State *L)
{
	struct lregex *lr = luaL_checkudata(L, 1, REGEX_CLASS);

	lr->re = regex_free(lr->re);
	return 0;
}

/* regex_tostring - "regex /pattern/" */
static int
regex_tostring(lua_State *L)
{
	struct lregex *lr = luaL_checkudata(L, 1, REGEX_CLASS);

	lua_pushfstring(L, "regex /%s/", lr->re ? regex_pattern(lr->re) : "?");
	return 1;
}

/* parse_ip - a textual IPv4 or IPv6 address into ss; false if it is neither */
static bool
parse_ip(const char *text, struct sockaddr_storage *ss)
{
	struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
	char buf[INET6_ADDRSTRLEN + 2];
	size_t len = strlen(text);

	memset(ss, 0, sizeof(*ss));
	if (len >= 2 && len < sizeof(buf) && text[0] == '[' && text[len - 1] == ']') {
		memcpy(buf, text + 1, len - 2);	/* "[2001:db8::1]" as XFORWARD may give it */
		buf[len - 2] = '\0';
		text = buf;
	}
	if (strncasecmp(text, "IPv6:", 5) == 0)
		text += 5;
	if (inet_pton(AF_INET, text, &s4->sin_addr) == 1) {
		s4->sin_family = AF_INET;
		return true;
	}
	if (inet_pton(AF_INET6, text, &s6->sin6_addr) == 1) {
		s6->sin6_family = AF_INET6;
		return true;
	}
	return false;
}

/*
 * as_network_list - the argument of P.cidr as a plain list, at index 1
 *
 * A string is a list of one; a table from P.read_table (networks as keys,
 * "10.0.0.0/8 our LAN" lines) is the list of its keys, as P.addresses takes
 * it. Any other key (a list with holes, { a = "10.0.0.0/8" }) is refused:
 * silently matching nothing would be worse.
 */
static void
as_network_list(lua_State *L)
{
	size_t n;
	lua_Integer next;

	if (lua_type(L, 1) == LUA_TSTRING) {
		lua_createtable(L, 1, 0);
		lua_pushvalue(L, 1);
		lua_rawseti(L, -2, 1);
		lua_replace(L, 1);
		return;
	}
	luaL_checktype(L, 1, LUA_TTABLE);
	n = lua_rawlen(L, 1);
	lua_createtable(L, (int)n, 0);
	next = 1;
	for (size_t i = 1; i <= n; i++) {
		lua_rawgeti(L, 1, (lua_Integer)i);
		lua_rawseti(L, -2, next++);
	}
	lua_pushnil(L);
	while (lua_next(L, 1) != 0) {
		lua_pop(L, 1);		/* the value */
		if (lua_isinteger(L, -1) && lua_tointeger(L, -1) >= 1 &&
		    (size_t)lua_tointeger(L, -1) <= n)
			continue;
		if (lua_type(L, -1) != LUA_TSTRING)
			luaL_error(L, "P.cidr: a list of networks, or a table with networks as keys "
				      "(P.read_table); not a %s key", luaL_typename(L, -1));
		if (next > CIDR_MAX)
			break;
		lua_pushvalue(L, -1);
		lua_rawseti(L, -3, next++);
	}
	lua_replace(L, 1);
}

/*
 * --- P.cidr(networks) -> cidr
 * A list of networks ("192.0.2.0/24", "2001:db8::/32", "10.1.2.3") to match
 * addresses against, or a P.read_table table of them (its keys); a bad entry
 * raises an error naming it.
 */
static int
core_cidr(lua_State *L)
{
	struct lcidr *lc;
	size_t n;

	as_network_list(L);
	n = lua_rawlen(L, 1);
	if (n > CIDR_MAX)
		return luaL_argerror(L, 1, "too many networks");
	lc = lua_newuserdatauv(L, sizeof(*lc), 0);
	lc->nets = NULL;
	lc->n = 0;
	luaL_setmetatable(L, CIDR_CLASS);
	lc->nets = xreallocarray(NULL, n ? n : 1, sizeof(*lc->nets));
	for (size_t i = 1; i <= n; i++) {
		const char *s;

		lua_rawgeti(L, 1, (lua_Integer)i);
		s = lua_tostring(L, -1);
		if (s == NULL || cidr_parse(s, &lc->nets[lc->n]) < 0)
			return luaL_error(L, "P.cidr: entry %d (%s) is not a network", (int)i,
					  s ? s : luaL_typename(L, -1));
		lc->n++;
		lua_pop(L, 1);
	}
	return 1;
}

/*
 * --- cidr:match(address) -> boolean
 * Whether address (IPv4 or IPv6 text, "[...]" and "IPv6:" forms accepted) is
 * in one of the networks; false for anything that is not an address.
 */
static int
cidr_lua_match(lua_State *L)
{
	struct lcidr *lc = luaL_checkudata(L, 1, CIDR_CLASS);
	/* a number or a table is "not an address" as documented, not an error */
	const char *text = lua_type(L, 2) == LUA_TSTRING ? lua_tostring(L, 2) : "";
	struct sockaddr_storage ss;

	if (!parse_ip(text, &ss)) {
		lua_pushboolean(L, 0);
		return 1;
	}
	for (size_t i = 0; i < lc->n; i++)
		if (cidr_match(&lc->nets[i], &ss)) {
			lua_pushboolean(L, 1);
			return 1;
		}
	lua_pushboolean(L, 0);
	return 1;
}

/* cidr_gc - free the networks */
static int
cidr_gc(lua_State *L)
{
	struct lcidr *lc = luaL_checkudata(L, 1, CIDR_CLASS);

	free(lc->nets);
	lc->nets = NULL;
	lc->n = 0;
	return 0;
}

/*
 * --- P.log(level, ...)
 * Log the arguments at level "debug", "info", "warn" or "error" (policy
 * load-time messages; during a message prefer msg:log, which names it).
 */
static int
core_log(lua_State *L)
{
	static const char *const levels[] = { "debug", "info", "warn", "error", NULL };
	int level = luaL_checkoption(L, 1, NULL, levels), n = lua_gettop(L);
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
	switch (level) {
	case 0: log_debug("policy: %s", e); break;
	case 1: log_info("policy: %s", e); break;
	case 2: log_warnx("policy: %s", e); break;
	default: log_error("policy: %s", e); break;
	}
	free(e);
	return 0;
}

#define READ_TABLE_MAX	(16L * 1024 * 1024)	/* P.read_table reads no more */

/*
 * --- P.read_table(file) -> { key = value, ... }
 * Read a lookup file from the policy directory (a name relative to it, no
 * ".."): one entry per line, "key" or "key value...", keys in lower case,
 * blank lines and lines starting with # skipped. Read at policy load, so a
 * SIGHUP reads it again. At most 16 MiB.
 */
static int
core_read_table(lua_State *L)
{
	const char *name = luaL_checkstring(L, 1), *dir;
	char *path, *line = NULL;
	struct stat st;
	size_t cap = 0;
	ssize_t len;
	FILE *f;
	long bytes = 0;

	if (*name == '\0' || name[0] == '/' || strstr(name, "..") != NULL)
		return luaL_argerror(L, 1, "a file name relative to policy_dir, without \"..\"");
	lua_getfield(L, LUA_REGISTRYINDEX, "postern.policy_dir");
	dir = lua_tostring(L, -1);
	path = xasprintf("%s/%s", dir ? dir : ".", name);
	f = fopen(path, "re");
	if (f == NULL) {
		lua_pushfstring(L, "P.read_table: cannot open %s", path);
		free(path);
		return lua_error(L);
	}
	free(path);
	if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > READ_TABLE_MAX) {
		fclose(f);
		return luaL_error(L, "P.read_table: %s is not a regular file of at most 16 MiB", name);
	}
	lua_newtable(L);
	/* getline: a line is one entry however long it is (the file's size is the bound) */
	while ((len = getline(&line, &cap, f)) != -1) {
		char *key = line, *end, *value;

		if ((bytes += (long)len) > READ_TABLE_MAX) {
			free(line);
			fclose(f);
			return luaL_error(L, "P.read_table: %s is larger than 16 MiB", name);
		}
		if (memchr(line, '\0', (size_t)len) != NULL) {
			free(line);
			fclose(f);
			return luaL_error(L, "P.read_table: %s has a NUL byte: not a text file", name);
		}
		line[strcspn(line, "\r\n")] = '\0';
		key += strspn(key, " \t");
		if (*key == '\0' || *key == '#')
			continue;
		end = key + strcspn(key, " \t");
		value = *end ? end + 1 : end;
		*end = '\0';
		value += strspn(value, " \t");
		for (char *c = key; *c; c++)
			*c = (char)tolower((unsigned char)*c);
		lua_pushstring(L, key);
		if (*value != '\0')
			lua_pushstring(L, value);
		else
			lua_pushboolean(L, 1);
		lua_rawset(L, -3);
	}
	free(line);
	fclose(f);
	return 1;
}

/*
 * --- P.config() -> { local_domains = {...}, spamd_on_error =, spamd =, clamav = }
 * What the rule constructors need of the configuration: local_domains,
 * spamd.on_error (P.spamd's default), and whether spamd and ClamAV are
 * configured at all (spamd.address, clamav.database).
 */
static int
core_config(lua_State *L)
{
	lua_createtable(L, 0, 4);
	lua_getfield(L, LUA_REGISTRYINDEX, "postern.spamd");
	lua_setfield(L, -2, "spamd");
	lua_getfield(L, LUA_REGISTRYINDEX, "postern.clamav");
	lua_setfield(L, -2, "clamav");
	lua_getfield(L, LUA_REGISTRYINDEX, "postern.local_domains");
	lua_setfield(L, -2, "local_domains");
	lua_getfield(L, LUA_REGISTRYINDEX, "postern.spamd_on_error");
	lua_setfield(L, -2, "spamd_on_error");
	return 1;
}

static const luaL_Reg regex_methods[] = {
	{ "match", regex_lua_match },
	{ "find", regex_lua_find },
	{ NULL, NULL },
};

static const luaL_Reg cidr_methods[] = {
	{ "match", cidr_lua_match },
	{ NULL, NULL },
};

static const luaL_Reg core_functions[] = {
	{ "regex", core_regex },
	{ "cidr", core_cidr },
	{ "log", core_log },
	{ "read_table", core_read_table },
	{ "config", core_config },
	{ "verdict_problem", lua_msg_verdict_problem },
	{ NULL, NULL },
};

/* new_class - a metatable with methods as __index and a __gc */
static void
new_class(lua_State *L, const char *name, const luaL_Reg *methods, lua_CFunction gc,
	  lua_CFunction tostring)
{
	luaL_newmetatable(L, name);
	lua_newtable(L);
	luaL_setfuncs(L, methods, 0);
	lua_setfield(L, -2, "__index");
	lua_pushcfunction(L, gc);
	lua_setfield(L, -2, "__gc");
	if (tostring != NULL) {
		lua_pushcfunction(L, tostring);
		lua_setfield(L, -2, "__tostring");
	}
	lua_pushboolean(L, 0);
	lua_setfield(L, -2, "__metatable");
	lua_pop(L, 1);
}

/* luaopen_postern_core - the module table */
int
luaopen_postern_core(lua_State *L)
{
	new_class(L, REGEX_CLASS, regex_methods, regex_gc, regex_tostring);
	new_class(L, CIDR_CLASS, cidr_methods, cidr_gc, NULL);
	luaL_newlib(L, core_functions);
	return 1;
}
