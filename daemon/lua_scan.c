/*
 * lua_scan - the scanner methods of postern.msg: msg:clamav(), msg:files(), msg:spamd()
 *
 * Each scanner runs at most once per message: the ClamAV result is kept in
 * struct message (message.c frees it), spamd's answers in the msg object's
 * cache table, per spamd user. A scanner that fails does not raise: the
 * method returns nil and the reason, and the rule decides (DESIGN.md, "The
 * C-Lua boundary"). Both carry their own bounds (ClamAV's scan limits,
 * spamd's timeout): a count hook cannot interrupt one long C call.
 */
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "clam.h"
#include "lua_msg.h"
#include "mime.h"
#include "policy.h"
#include "spamd.h"
#include "spool.h"
#include "stats.h"
#include "util/xalloc.h"

/* libclamav looks at the clock between steps: a scan may end a little past its limit */
#define SCAN_TIME_SLACK_MS	2000

/* ensure_scan - the message's ClamAV result, scanning on first use; NULL without an engine */
static const struct clam_result *
ensure_scan(lua_State *L, struct policy_input *in)
{
	struct message *m = in->m;

	if (in->clam == NULL)
		return NULL;
	if (m->clam == NULL) {
		/* the same walk msg:parts() shows, when the engine takes the message apart by it */
		const struct mime_tree *tree = clam_engine_own_mime(in->clam) ? lua_msg_mime(L, in) :
					       NULL;

		m->clam = xcalloc(1, sizeof(*m->clam));
		/* bounded by clamav.max_scan_time, which the policy's own time does not pay for */
		policy_wait_begin(L, in->cfg->clamav.max_scan_time_ms + SCAN_TIME_SLACK_MS);
		clam_scan(in->clam, spool_fd(m->spool), spool_size(m->spool), tree, m->clam);
		policy_wait_end(L);
		stats_observe(in->listener, STAGE_CLAMAV, m->clam->elapsed_ms * 1000LL);
		if (m->clam->status == CLAM_ERROR)
			stats_error(in->listener, ERR_CLAMAV);
	}
	return m->clam;
}

/*
 * --- msg:clamav() -> result | nil, error
 * Scan the message with libclamav (once per message; later calls return the
 * same result). result.status is "clean", "infected" or "error"; virus is the
 * signature's name when infected; error says why a scan did not finish and
 * incomplete is true when limits or encryption stopped it; on_incomplete is
 * the configured default (clamav.on_incomplete); elapsed_ms. nil and a
 * message when no clamav.database is configured.
 */
static int
msg_clamav(lua_State *L)
{
	struct policy_input *in = lua_msg_check(L, 1);
	const struct clam_result *r = ensure_scan(L, in);
	static const char *const names[] = { "clean", "infected", "error" };

	if (r == NULL) {
		lua_pushnil(L);
		lua_pushliteral(L, "clamav: no clamav.database configured");
		return 2;
	}
	lua_createtable(L, 0, 6);
	lua_pushstring(L, names[r->status]);
	lua_setfield(L, -2, "status");
	if (r->virus != NULL) {
		lua_pushstring(L, r->virus);
		lua_setfield(L, -2, "virus");
	}
	if (r->error != NULL) {
		lua_pushstring(L, r->error);
		lua_setfield(L, -2, "error");
	}
	lua_pushboolean(L, r->incomplete);
	lua_setfield(L, -2, "incomplete");
	lua_pushstring(L, in->cfg->clamav.on_incomplete);
	lua_setfield(L, -2, "on_incomplete");
	lua_pushinteger(L, r->elapsed_ms);
	lua_setfield(L, -2, "elapsed_ms");
	return 1;
}

/* push_file - one files[] entry */
static void
push_file(lua_State *L, const char *name, const char *type, size_t size, unsigned depth,
	  bool encrypted)
{
	lua_createtable(L, 0, 5);
	if (name != NULL) {
		lua_pushstring(L, name);
		lua_setfield(L, -2, "name");
	}
	lua_pushstring(L, type ? type : "");
	lua_setfield(L, -2, "type");
	lua_pushinteger(L, (lua_Integer)size);
	lua_setfield(L, -2, "size");
	lua_pushinteger(L, depth);
	lua_setfield(L, -2, "depth");
	lua_pushboolean(L, encrypted);
	lua_setfield(L, -2, "encrypted");
}

/*
 * --- msg:files() -> { file, ... }
 * Every file in the message: MIME parts and, with ClamAV configured, every
 * member of every archive (zip, rar, 7z, tar, gzip, nested ones too), as
 * libclamav unpacks them. A file is { name =, type =, size =, depth =,
 * encrypted = }: name as the message or archive gives it (may be nil), type
 * as libclamav detects it from the content ("ZIP", "MSEXE", "PDF", "TEXT"...;
 * without ClamAV the MIME content type), depth 0 for the message itself.
 */
static int
msg_files(lua_State *L)
{
	struct policy_input *in = lua_msg_check(L, 1);
	const struct clam_result *r = ensure_scan(L, in);

	lua_Integer n = 0;

	lua_newtable(L);		/* the result; names seen in it, below */
	lua_newtable(L);
	if (r != NULL)
		for (size_t i = 0; i < r->nfiles; i++) {
			const struct clam_file *f = &r->files[i];

			push_file(L, f->name, f->type, f->size, f->depth, f->encrypted);
			lua_rawseti(L, -3, ++n);
			if (f->name != NULL) {
				lua_pushboolean(L, 1);
				lua_setfield(L, -2, f->name);
			}
		}
	/*
	 * The MIME parts with a file name that libclamav did not list (an empty
	 * attachment is not scanned, hence not seen) join them; without ClamAV
	 * they are all there is.
	 */
	lua_getfield(L, 1, "parts");
	lua_pushvalue(L, 1);
	lua_call(L, 1, 1);
	for (lua_Integer i = 1; lua_rawgeti(L, -1, i) == LUA_TTABLE; i++) {
		const char *name, *type;
		lua_Integer size, depth;

		lua_getfield(L, -1, "filename");
		lua_getfield(L, -2, "content_type");
		lua_getfield(L, -3, "size");
		lua_getfield(L, -4, "depth");
		name = lua_tostring(L, -4);
		type = lua_tostring(L, -3);
		size = lua_tointeger(L, -2);
		depth = lua_tointeger(L, -1);
		/* stack: result, seen, parts, part, name, type, size, depth */
		if (r == NULL || (name != NULL && lua_getfield(L, -7, name) == LUA_TNIL)) {
			if (r != NULL)
				lua_pop(L, 1);
			push_file(L, name, type, (size_t)size, (unsigned)depth, false);
			lua_rawseti(L, -9, ++n);
		} else if (r != NULL && name != NULL)
			lua_pop(L, 1);
		lua_pop(L, 5);
	}
	lua_pop(L, 3);			/* nil, parts, seen */
	return 1;
}

/*
 * --- msg:spamd([{ user =, report = }]) -> result | nil, error
 * Ask spamd (SPAMC/1.5, spamd = { address, timeout, max_size }) about the
 * message: once per user; later calls return the same answer. result is
 * { score =, threshold =, is_spam =, symbols = { "RULE", ... }, report = }
 * (report only when asked for). nil and a message when spamd is down, slow
 * past spamd.timeout, the message is over spamd.max_size, or no spamd.address
 * is configured.
 */
static int
msg_spamd(lua_State *L)
{
	struct policy_input *in = lua_msg_check(L, 1);
	const char *user = NULL;
	struct spamd_result r;
	struct spamd_cfg spamd;
	bool report = false;
	char *error = NULL;
	lua_Integer n = 0;
	int rc;

	if (!lua_isnoneornil(L, 2)) {
		luaL_checktype(L, 2, LUA_TTABLE);
		lua_getfield(L, 2, "user");
		user = lua_tostring(L, -1);
		lua_getfield(L, 2, "report");
		report = lua_toboolean(L, -1);
		lua_pop(L, 1);	/* user's string stays on the stack while used */
		if (user != NULL && (strlen(user) > 256 || strpbrk(user, "\r\n") != NULL))
			return luaL_argerror(L, 2, "user: one line of at most 256 bytes");
	}
	if (in->cfg->spamd.address == NULL) {
		lua_pushnil(L);
		lua_pushliteral(L, "spamd: no spamd.address configured");
		return 2;
	}
	lua_getiuservalue(L, 1, 1);
	lua_pushfstring(L, "spamd:%s:%s", user ? user : "", report ? "r" : "s");
	lua_pushvalue(L, -1);
	switch (lua_rawget(L, -3)) {
	case LUA_TTABLE:
		return 1;
	case LUA_TSTRING:	/* it failed before: once per message, not once per call */
		lua_pushnil(L);
		lua_insert(L, -2);
		return 2;
	}
	lua_pop(L, 2);
	/* stack: ..., cache */
	spamd = in->cfg->spamd;
	spamd.timeout_ms = policy_wait_begin(L, spamd.timeout_ms);
	rc = spamd_check(&spamd, spool_fd(in->m->spool), spool_size(in->m->spool), user,
			 report, &r, &error);
	policy_wait_end(L);
	stats_observe(in->listener, STAGE_SPAMD, r.elapsed_ms * 1000LL);
	if (rc < 0) {
		stats_error(in->listener, ERR_SPAMD);
		lua_pushnil(L);
		lua_pushstring(L, error);
		free(error);
		lua_pushfstring(L, "spamd:%s:%s", user ? user : "", report ? "r" : "s");
		lua_pushvalue(L, -2);
		lua_rawset(L, -5);	/* the cache table: cache, nil, error */
		return 2;
	}
	lua_createtable(L, 0, 6);
	lua_pushnumber(L, r.score);
	lua_setfield(L, -2, "score");
	lua_pushnumber(L, r.threshold);
	lua_setfield(L, -2, "threshold");
	lua_pushboolean(L, r.is_spam);
	lua_setfield(L, -2, "is_spam");
	lua_pushinteger(L, r.elapsed_ms);
	lua_setfield(L, -2, "elapsed_ms");
	lua_newtable(L);
	for (char *tok = r.symbols, *save = NULL; (tok = strtok_r(tok, ",", &save)) != NULL; tok = NULL) {
		lua_pushstring(L, tok);
		lua_rawseti(L, -2, ++n);
	}
	lua_setfield(L, -2, "symbols");
	if (r.report != NULL) {
		lua_pushstring(L, r.report);
		lua_setfield(L, -2, "report");
	}
	spamd_result_release(&r);
	lua_pushfstring(L, "spamd:%s:%s", user ? user : "", report ? "r" : "s");
	lua_pushvalue(L, -2);
	lua_rawset(L, -4);	/* the cache table */
	return 1;
}

/* lua_scan_methods - add the scanner methods to the methods table on top */
void
lua_scan_methods(lua_State *L)
{
	static const luaL_Reg methods[] = {
		{ "clamav", msg_clamav },
		{ "files", msg_files },
		{ "spamd", msg_spamd },
		{ NULL, NULL },
	};

	luaL_setfuncs(L, methods, 0);
}
