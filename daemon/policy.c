/*
 * policy - a listener's Lua policy: load, sandbox, limits, run the chain on a message
 *
 * See policy.h for the contract. The shape follows DESIGN.md and STYLE.md
 * ("The C-Lua boundary"): one state per listener, made in the master and
 * inherited by the workers; an allocator that counts bytes and refuses growth
 * past policy_memory_limit (HAProxy's hlua_alloc); a count hook every
 * HOOK_STEP instructions that checks a monotonic deadline and an instruction
 * budget and, once fired, re-arms itself to fire at every instruction so a
 * policy's own pcall cannot swallow the limit (Redis's luaMaskCountHook);
 * every entry into Lua through call_protected() with a traceback handler.
 *
 * The sandbox is an explicit _ENV table made once per state: safe base
 * functions without load/dofile/loadfile/collectgarbage, string, table,
 * math, utf8, a few os time functions, our own require, and nothing else.
 * Reading or assigning an undeclared global is an error, so a typo in a
 * policy fails loudly at the first message instead of passing it silently.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "log.h"
#include "lua_msg.h"
#include "policy.h"
#include "util/esc.h"
#include "util/io.h"
#include "util/proc.h"
#include "util/xalloc.h"

/*
 * Instructions between two hook calls. HAProxy measured anything from 500 to
 * 10,000 as free; 1,000 keeps the overshoot past a limit negligible.
 */
#define HOOK_STEP		1000
#define REQUIRE_NAME_MAX	128	/* module names are short dotted words */

struct policy {
	lua_State *L;			/* the state, owned */
	const struct config *cfg;	/* limits and directories, borrowed */
	char   *path;			/* the policy file, owned */
	int	chain_ref;		/* registry reference of the chain function */
	size_t	mem_used;		/* bytes the state holds */
	size_t	mem_limit;		/* policy_memory_limit */
	bool	armed;			/* limits apply (policy code is running) */
	long long deadline_ms;		/* monotonic end of the current run */
	long long steps_left;		/* instruction budget left, in HOOK_STEPs */
	const char *fired;		/* which limit fired, or NULL */
	bool	spent;			/* a limit fired: this state must not run again */
	long long watchdog_at;		/* monotonic time the watchdog fires, 0: not armed */
	long long wait_credit_ms;	/* scanner waiting this run may still not count */
	long long wait_started_ms;	/* a scanner's wait began here, 0: none */
	char	warning[1024];		/* warn()'s pieces until the last (cut there) */
};

/* policy_of - the policy a state belongs to (kept in its extra space) */
static struct policy *
policy_of(lua_State *L)
{
	return *(struct policy **)lua_getextraspace(L);
}

/*
 * policy_alloc - the state's allocator: count bytes, refuse growth past the limit
 *
 * When ptr is NULL, osize is a type tag, not a size: count it as 0. A
 * shrink never fails. Lua answers a refusal with a full collection and one
 * more try before it raises LUA_ERRMEM.
 */
static void *
policy_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
	struct policy *p = ud;
	size_t old = ptr != NULL ? osize : 0;
	void *np;

	if (nsize == 0) {
		free(ptr);
		p->mem_used -= old;
		return NULL;
	}
	if (nsize > old && p->mem_used + (nsize - old) > p->mem_limit)
		return NULL;
	np = realloc(ptr, nsize);
	if (np != NULL)
		p->mem_used = p->mem_used - old + nsize;
	return np;
}

/* policy_hook - the time and instruction limits */
static void
policy_hook(lua_State *L, lua_Debug *ar)
{
	struct policy *p = policy_of(L);

	(void)ar;
	if (!p->armed)
		return;
	if (p->fired == NULL) {
		p->steps_left--;
		if (p->steps_left <= 0)
			p->fired = "instruction limit";
		else if (io_now_ms() > p->deadline_ms)
			p->fired = "time limit";
		else
			return;
		p->spent = true;
		/* from now on at every instruction: a pcall in the policy cannot go on */
		lua_sethook(L, policy_hook, LUA_MASKCOUNT, 1);
	}
	luaL_error(L, "policy %s reached", p->fired);
}

static void (*watchdog_last_words)(void);
static const char *watchdog_line;

/* policy_set_watchdog_line - see policy.h */
void
policy_set_watchdog_line(const char *line)
{
	watchdog_line = line;
}

/* policy_set_last_words - see policy.h */
void
policy_set_last_words(void (*last_words)(void))
{
	watchdog_last_words = last_words;
}

/*
 * watchdog - the last resort for one long C call the count hook cannot reach
 *
 * A Lua pattern (string.find and friends) can backtrack for hours inside one
 * C call, where no hook runs. While a message is decided, an interval timer
 * of twice the policy timeout plus a second ends the worker. Before it does,
 * the session's last words (policy_set_last_words) tell the client "421": the
 * MTA defers the message with a reason and keeps it queued (never lost), and
 * the master starts a fresh worker. Not armed at load, in the master: the
 * master first loads every policy in a child of its own under a timer
 * (master_load_policies), so that a policy hanging there ends the child,
 * never the running daemon.
 */
static void
watchdog_fired(int sig)
{
	static const char worker_line[] = "posternd: policy watchdog: a policy ran far past "
					  "policy_timeout inside one C call (a pathological Lua "
					  "pattern?); worker exits, the MTA keeps the message\n";
	const char *line = watchdog_line != NULL ? watchdog_line : worker_line;

	(void)sig;
	if (write(STDERR_FILENO, line, strlen(line)) < 0) {
		/* nothing more to say */
	}
	if (watchdog_last_words != NULL)
		watchdog_last_words();
	_exit(POLICY_WATCHDOG_STATUS);
}

/*
 * watchdog - arm (ms > 0) or disarm (0) the watchdog
 *
 * The handler is installed once per process, not once per message; a
 * process that inherited it across fork() and set SIGALRM to something
 * else (the control socket's children) gets it back if it ever arms.
 */
static void
watchdog(long ms)
{
	static pid_t handler_in;	/* the process that installed it */
	struct itimerval it = { { 0, 0 }, { ms / 1000, (ms % 1000) * 1000 } };
	struct sigaction sa;

	if (ms > 0 && handler_in != self_pid()) {
		memset(&sa, 0, sizeof(sa));
		sa.sa_handler = watchdog_fired;
		sigemptyset(&sa.sa_mask);
		if (sigaction(SIGALRM, &sa, NULL) == 0)
			handler_in = self_pid();
	}
	setitimer(ITIMER_REAL, &it, NULL);
}

/* policy_guard_load - see policy.h */
void
policy_guard_load(const struct config *cfg, bool on)
{
	watchdog(on ? policy_watchdog_ms(cfg) : 0);
}

/* arm - start the limits for one run (load or message) */
static void
arm(struct policy *p)
{
	p->fired = NULL;
	p->deadline_ms = io_now_ms() + p->cfg->policy_timeout_ms;
	p->wait_credit_ms = p->cfg->clamav.max_scan_time_ms + p->cfg->spamd.timeout_ms;
	p->wait_started_ms = 0;
	p->steps_left = p->cfg->policy_instruction_limit / HOOK_STEP + 1;
	p->armed = true;
	lua_sethook(p->L, policy_hook, LUA_MASKCOUNT, HOOK_STEP);
}

/* disarm - policy code is not running */
static void
disarm(struct policy *p)
{
	p->armed = false;
}

/* arm_watchdog, disarm_watchdog - the watchdog of one message's run (see watchdog) */
static void
arm_watchdog(struct policy *p, long ms)
{
	p->watchdog_at = io_now_ms() + ms;
	watchdog(ms);
}

static void
disarm_watchdog(struct policy *p)
{
	p->watchdog_at = 0;
	watchdog(0);
}

/*
 * policy_wait_begin - see policy.h
 *
 * policy_timeout is the policy's own time: a spamd that takes 20 s of its
 * 30 s spamd.timeout must end in msg:spamd's nil and P.spamd's on_error,
 * not in the policy's time limit or the watchdog. The allowance is per
 * message, so a policy asking spamd for a thousand users is still bounded.
 */
long
policy_wait_begin(lua_State *L, long want_ms)
{
	struct policy *p = policy_of(L);
	long long now = io_now_ms(), own_left, allowed;

	if (p == NULL || !p->armed || p->wait_started_ms != 0)
		return want_ms;
	own_left = p->deadline_ms > now ? p->deadline_ms - now : 0;
	allowed = p->wait_credit_ms + own_left;
	if (allowed > want_ms)
		allowed = want_ms;
	if (allowed < 1)
		allowed = 1;
	p->wait_started_ms = now;
	if (p->watchdog_at != 0)
		watchdog((long)(p->watchdog_at - now + allowed));
	return (long)allowed;
}

/* policy_wait_end - see policy.h: the wait's time, up to the allowance, moves the limits */
void
policy_wait_end(lua_State *L)
{
	struct policy *p = policy_of(L);
	long long now = io_now_ms(), waited, credited;

	if (p == NULL || p->wait_started_ms == 0)
		return;
	waited = now - p->wait_started_ms;
	credited = waited < p->wait_credit_ms ? waited : p->wait_credit_ms;
	p->wait_credit_ms -= credited;
	p->deadline_ms += credited;
	p->wait_started_ms = 0;
	if (p->watchdog_at != 0) {
		p->watchdog_at += credited;
		watchdog(p->watchdog_at > now ? (long)(p->watchdog_at - now) : 1);
	}
}

/* traceback - message handler: the error with a Lua traceback (file:line) */
static int
traceback(lua_State *L)
{
	const char *msg = lua_tostring(L, 1);

	if (msg == NULL) {
		if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING)
			return 1;
		msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
	}
	luaL_traceback(L, L, msg, 1);
	return 1;
}

/*
 * call_protected - lua_pcall with the traceback handler; the one way into Lua
 *
 * The function and its nargs arguments are on the stack. On success the
 * results are left; on failure *error_r gets the message with its traceback
 * (LUA_ERRMEM comes without one: Lua skips the handler) and nothing is left.
 */
static int
call_protected(struct policy *p, int nargs, int nresults, char **error_r)
{
	lua_State *L = p->L;
	int base = lua_gettop(L) - nargs, rc;

	lua_pushcfunction(L, traceback);
	lua_insert(L, base);
	rc = lua_pcall(L, nargs, nresults, base);
	lua_remove(L, base);
	if (rc == LUA_OK)
		return 0;
	if (rc == LUA_ERRMEM)
		*error_r = xasprintf("policy memory limit reached (%ld bytes)",
				     p->cfg->policy_memory_limit);
	else
		*error_r = xstrdup(lua_tostring(L, -1) ? lua_tostring(L, -1) : "unknown error");
	lua_pop(L, 1);
	return -1;
}

/* env_index, env_newindex - undeclared globals are errors, read or written */
static int
env_index(lua_State *L)
{
	return luaL_error(L, "read of undeclared global '%s' (declare it with local)",
			  luaL_tolstring(L, 2, NULL));
}

static int
env_newindex(lua_State *L)
{
	return luaL_error(L, "assignment to undeclared global '%s' (declare it with local)",
			  luaL_tolstring(L, 2, NULL));
}

/*
 * sandbox_setmetatable - setmetatable without finalizers
 *
 * A __gc metamethod runs whenever the collector gets to it, also outside a
 * message's limits (lua_close when a worker leaves, a collection between
 * messages): a finalizer that loops would hang the worker for good.
 */
static int
sandbox_setmetatable(lua_State *L)
{
	if (lua_type(L, 2) == LUA_TTABLE) {
		lua_pushliteral(L, "__gc");
		if (lua_rawget(L, 2) != LUA_TNIL)
			return luaL_error(L, "finalizers (__gc) are not available to policies");
		lua_pop(L, 1);
	}
	lua_settop(L, 2);
	lua_getfield(L, LUA_REGISTRYINDEX, "postern.setmetatable");
	lua_insert(L, 1);
	lua_call(L, 2, 1);
	return 1;
}

/* policy_warn - warn() from a policy goes to the log */
static void
policy_warn(void *ud, const char *msg, int tocont)
{
	struct policy *p = ud;
	size_t len = strlen(p->warning);
	char *e;

	/* warn("a", "b") comes in pieces (tocont): one log line for the whole call */
	snprintf(p->warning + len, sizeof(p->warning) - len, "%s", msg);
	if (tocont)
		return;
	e = esc_logs(p->warning);	/* it may hold what a message or spamd said */
	log_warnx("policy warning: %s", e);
	free(e);
	p->warning[0] = '\0';
}

/* load_module_file - load path as a module chunk in the sandbox; pushes its function */
static int
load_module_file(lua_State *L, const char *path)
{
	if (luaL_loadfilex(L, path, "t") != LUA_OK)
		return lua_error(L);
	lua_getfield(L, LUA_REGISTRYINDEX, "postern.env");
	if (lua_setupvalue(L, -2, 1) == NULL)
		lua_pop(L, 1);
	return 1;
}

/*
 * sandbox_require - require(name): postern.* from lua_dir, the rest from policy_dir
 *
 * Names are dotted words only, so no path can be smuggled in. Results are
 * cached like package.loaded, in the registry.
 */
static int
sandbox_require(lua_State *L)
{
	struct policy *p = policy_of(L);
	size_t len;
	const char *name = luaL_checklstring(L, 1, &len);
	char *path, *rel;

	if (len == 0 || len > REQUIRE_NAME_MAX || strspn(name, "abcdefghijklmnopqrstuvwxyz"
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.") != len || name[0] == '.' ||
	    strstr(name, "..") != NULL || name[len - 1] == '.')
		return luaL_argerror(L, 1, "module names are dotted words: letters, digits, _");
	lua_getfield(L, LUA_REGISTRYINDEX, "postern.loaded");
	if (lua_getfield(L, -1, name) != LUA_TNIL)
		return 1;
	lua_pop(L, 1);
	if (lua_getfield(L, LUA_REGISTRYINDEX, "postern.preload") == LUA_TTABLE &&
	    lua_getfield(L, -1, name) == LUA_TFUNCTION) {
		lua_pushstring(L, name);
		lua_call(L, 1, 1);
		lua_remove(L, -2);	/* the preload table: the result goes into loaded */
	} else {
		lua_pop(L, 2);
		rel = xstrdup(name);
		for (char *c = rel; *c; c++)
			if (*c == '.')
				*c = '/';
		if (strcmp(name, "postern") == 0)
			path = xasprintf("%s/postern/init.lua", p->cfg->lua_dir);
		else if (strncmp(name, "postern.", 8) == 0)
			path = xasprintf("%s/%s.lua", p->cfg->lua_dir, rel);
		else
			path = xasprintf("%s/%s.lua", p->cfg->policy_dir, rel);
		free(rel);
		lua_pushstring(L, path);
		free(path);
		load_module_file(L, lua_tostring(L, -1));
		lua_pushstring(L, name);
		lua_call(L, 1, 1);
		lua_remove(L, -2);	/* the path */
	}
	if (lua_isnil(L, -1)) {
		lua_pop(L, 1);
		lua_pushboolean(L, 1);
	}
	lua_pushvalue(L, -1);
	lua_setfield(L, -3, name);
	return 1;
}

/* copy_fields - env[name] = from[name] for each name */
static void
copy_fields(lua_State *L, int from, int env, const char *const *names)
{
	for (int i = 0; names[i] != NULL; i++) {
		lua_getfield(L, from, names[i]);
		lua_setfield(L, env, names[i]);
	}
}

/* setup_state - libraries, sandbox environment, our modules (run under lua_pcall) */
static int
setup_state(lua_State *L)
{
	static const char *const base[] = { "assert", "error", "ipairs", "next", "pairs", "pcall",
		"rawequal", "rawget", "rawlen", "rawset", "select", "setmetatable", "getmetatable",
		"tonumber", "tostring", "type", "xpcall", "warn", "_VERSION", NULL };
	static const char *const os_safe[] = { "time", "date", "clock", "difftime", NULL };
	int env;

	luaL_requiref(L, LUA_GNAME, luaopen_base, 1);
	luaL_requiref(L, LUA_STRLIBNAME, luaopen_string, 1);
	luaL_requiref(L, LUA_TABLIBNAME, luaopen_table, 1);
	luaL_requiref(L, LUA_MATHLIBNAME, luaopen_math, 1);
	luaL_requiref(L, LUA_UTF8LIBNAME, luaopen_utf8, 1);
	luaL_requiref(L, LUA_OSLIBNAME, luaopen_os, 1);
	lua_settop(L, 0);
	lua_newtable(L);
	env = lua_gettop(L);
	lua_pushglobaltable(L);
	copy_fields(L, -1, env, base);
	lua_pop(L, 1);
	lua_pushcfunction(L, sandbox_require);
	lua_setfield(L, env, "require");
	lua_getfield(L, env, "setmetatable");
	lua_setfield(L, LUA_REGISTRYINDEX, "postern.setmetatable");
	lua_pushcfunction(L, sandbox_setmetatable);
	lua_setfield(L, env, "setmetatable");
	static const char *const libs[] = { LUA_STRLIBNAME, LUA_TABLIBNAME, LUA_MATHLIBNAME,
					    LUA_UTF8LIBNAME, NULL };
	/* bytecode is refused at load anyway; dump would only leak function internals */
	lua_getglobal(L, LUA_STRLIBNAME);
	lua_pushnil(L);
	lua_setfield(L, -2, "dump");
	lua_pop(L, 1);
	lua_pushglobaltable(L);
	copy_fields(L, -1, env, libs);
	lua_newtable(L);	/* os: clocks and dates only */
	lua_getfield(L, -2, LUA_OSLIBNAME);
	copy_fields(L, -1, lua_gettop(L) - 1, os_safe);
	lua_pop(L, 1);
	lua_setfield(L, env, "os");
	lua_pop(L, 1);		/* the real globals stay out of reach */
	lua_pushvalue(L, env);
	lua_setfield(L, env, "_G");
	lua_newtable(L);	/* env's metatable: undeclared globals are errors */
	lua_pushcfunction(L, env_index);
	lua_setfield(L, -2, "__index");
	lua_pushcfunction(L, env_newindex);
	lua_setfield(L, -2, "__newindex");
	lua_pushboolean(L, 0);
	lua_setfield(L, -2, "__metatable");
	lua_setmetatable(L, env);
	lua_setfield(L, LUA_REGISTRYINDEX, "postern.env");
	/* the string metatable is shared by every string: keep it out of reach */
	lua_pushliteral(L, "");
	lua_getmetatable(L, -1);
	lua_pushboolean(L, 0);
	lua_setfield(L, -2, "__metatable");
	lua_pop(L, 2);
	lua_newtable(L);
	lua_setfield(L, LUA_REGISTRYINDEX, "postern.loaded");
	lua_pushstring(L, policy_of(L)->cfg->policy_dir);
	lua_setfield(L, LUA_REGISTRYINDEX, "postern.policy_dir");
	lua_pushstring(L, policy_of(L)->cfg->spamd.on_error);
	lua_setfield(L, LUA_REGISTRYINDEX, "postern.spamd_on_error");
	lua_pushboolean(L, policy_of(L)->cfg->spamd.address != NULL);
	lua_setfield(L, LUA_REGISTRYINDEX, "postern.spamd");
	lua_pushboolean(L, policy_of(L)->cfg->clamav.database != NULL);
	lua_setfield(L, LUA_REGISTRYINDEX, "postern.clamav");
	lua_createtable(L, (int)policy_of(L)->cfg->local_domains.n, 0);
	for (size_t i = 0; i < policy_of(L)->cfg->local_domains.n; i++) {
		lua_pushstring(L, policy_of(L)->cfg->local_domains.v[i]);
		lua_rawseti(L, -2, (lua_Integer)i + 1);
	}
	lua_setfield(L, LUA_REGISTRYINDEX, "postern.local_domains");
	lua_newtable(L);
	lua_msg_open(L);	/* postern.msg, postern.rcpt and the C module postern.core */
	lua_setfield(L, LUA_REGISTRYINDEX, "postern.preload");
	return 0;
}

/* load_chain - run the policy file; leave its chain in the registry */
static int
load_chain(struct policy *p, char **error_r)
{
	lua_State *L = p->L;
	int t;

	if (luaL_loadfilex(L, p->path, "t") != LUA_OK) {
		*error_r = xstrdup(lua_tostring(L, -1));
		lua_pop(L, 1);
		return -1;
	}
	lua_getfield(L, LUA_REGISTRYINDEX, "postern.env");
	if (lua_setupvalue(L, -2, 1) == NULL)
		lua_pop(L, 1);
	arm(p);
	if (call_protected(p, 0, 1, error_r) < 0) {
		disarm(p);
		return -1;
	}
	disarm(p);
	t = lua_type(L, -1);
	if (t != LUA_TFUNCTION && !(t == LUA_TTABLE && luaL_getmetafield(L, -1, "__call") != LUA_TNIL)) {
		*error_r = xasprintf("%s: the policy must return its chain (P.policy { ... } or a "
				     "function), not a %s value", p->path, luaL_typename(L, -1));
		lua_pop(L, 1);
		return -1;
	}
	if (t == LUA_TTABLE)
		lua_pop(L, 1);	/* the __call metafield */
	p->chain_ref = luaL_ref(L, LUA_REGISTRYINDEX);
	return 0;
}

/*
 * policy_load_file - a state running the policy in path
 *
 * Returns the policy, or NULL with *error_r (caller frees).
 */
struct policy *
policy_load_file(const struct config *cfg, const char *path, char **error_r)
{
	struct policy *p = xcalloc(1, sizeof(*p));
	char *why = NULL;

	p->cfg = cfg;
	p->path = xstrdup(path);
	p->mem_limit = (size_t)cfg->policy_memory_limit;
	p->chain_ref = LUA_NOREF;
	p->L = lua_newstate(policy_alloc, p);
	if (p->L == NULL) {
		*error_r = xasprintf("%s: cannot create a Lua state", path);
		return policy_free(p);
	}
	*(struct policy **)lua_getextraspace(p->L) = p;
	lua_setwarnf(p->L, policy_warn, p);
	lua_pushcfunction(p->L, setup_state);
	if (call_protected(p, 0, 0, &why) < 0 || load_chain(p, &why) < 0) {
		*error_r = xasprintf("policy %s: %s", path, why);
		free(why);
		return policy_free(p);
	}
	lua_gc(p->L, LUA_GCCOLLECT);	/* start the workers with a clean heap */
	return p;
}

/* policy_watchdog_ms - how long one run may take before the watchdog ends it */
long
policy_watchdog_ms(const struct config *cfg)
{
	return 2 * cfg->policy_timeout_ms + 1000;
}

/* policy_file - the path of listener lc's policy, owned by the caller; NULL if none */
char *
policy_file(const struct config *cfg, const struct listener_cfg *lc)
{
	if (lc->policy == NULL)
		return NULL;
	return lc->policy[0] == '/' ? xstrdup(lc->policy) :
	       xasprintf("%s/%s", cfg->policy_dir, lc->policy);
}

/* policy_load - the policy of listener lc (NULL with no error when it has none) */
struct policy *
policy_load(const struct config *cfg, const struct listener_cfg *lc, char **error_r)
{
	struct policy *p;
	char *path;

	*error_r = NULL;
	if ((path = policy_file(cfg, lc)) == NULL)
		return NULL;
	p = policy_load_file(cfg, path, error_r);
	free(path);
	return p;
}

/* policy_free - close the state; returns NULL */
struct policy *
policy_free(struct policy *p)
{
	if (p == NULL)
		return NULL;
	if (p->L != NULL)
		lua_close(p->L);
	free(p->path);
	free(p);
	return NULL;
}

/* policy_is_spent - a limit fired: the worker must be replaced after this session */
bool
policy_is_spent(const struct policy *p)
{
	return p != NULL && p->spent;
}

/* policy_path - the policy file */
const char *
policy_path(const struct policy *p)
{
	return p->path;
}

/*
 * policy_run - run the chain on one message; see policy.h
 *
 * On failure no verdict set during the run is trusted: the caller tempfails
 * every recipient, whatever a rule had decided before it failed.
 */
int
policy_run(struct policy *p, struct policy_input *in, char **error_r)
{
	lua_State *L = p->L;
	int rc;

	if (p->spent) {
		*error_r = xstrdup("policy state spent by an earlier limit");
		return -1;
	}
	lua_rawgeti(L, LUA_REGISTRYINDEX, p->chain_ref);
	lua_msg_push(L, in);
	arm(p);
	arm_watchdog(p, policy_watchdog_ms(p->cfg));
	rc = call_protected(p, 1, 1, error_r);
	disarm_watchdog(p);
	disarm(p);
	if (rc == 0) {
		rc = lua_msg_apply_result(L, -1, in, error_r);
		lua_pop(L, 1);
	}
	lua_msg_invalidate(L, in);
	if (rc == 0)
		in->m->policy_ran = true;
	if (p->mem_used > p->mem_limit / 2)
		lua_gc(L, LUA_GCCOLLECT);
	return rc;
}
