/*
 * policy - a listener's Lua policy: load, sandbox, limits, run the chain on a message
 *
 * policy_load() creates a Lua 5.4 state, opens the sandboxed libraries, the
 * postern library (lua_core.c, lua_msg.c and the files of lua/postern), and runs the
 * listener's policy file, which returns its chain (P.policy{...} or a plain
 * function). The master loads every listener's policy before it forks the
 * workers, so a policy that does not load never replaces a running one, and
 * the workers inherit the loaded state (patterns compiled, tables read).
 *
 * policy_run() runs the chain on one message under the memory limit, the
 * instruction budget and the time limit of the configuration. The chain sets
 * per-recipient verdicts and header edits in the struct message; a returned
 * verdict applies to every recipient still undecided; recipients left
 * undecided pass. An error, a limit or a bad return value decides nothing: it
 * returns -1 with the reason (a Lua traceback with file:line), and the caller
 * tempfails the message. After a limit fired the state is spent
 * (policy_is_spent()): the worker finishes its session and is replaced.
 *
 * Errors: functions return -1/NULL and an error string the caller frees;
 * nothing here logs except msg:log() and warn() on behalf of the policy.
 * See also: lua_msg.c (the msg and rcpt objects), lua_core.c (regex, cidr).
 */
#ifndef POSTERN_POLICY_H
#define POSTERN_POLICY_H

#include <stdbool.h>

#include <lua.h>

#include "config.h"
#include "message.h"

struct policy;
struct clam_engine;

/* what the policy sees of a message besides struct message */
struct policy_input {
	struct message *m;		/* the transaction; verdicts and edits land here */
	const struct client *client;	/* who sent it (peer and XFORWARD) */
	const char *listener;		/* listener name */
	const struct config *cfg;	/* limits (header size, MIME), spamd */
	const struct clam_engine *clam;	/* the ClamAV engine, or NULL when none is configured */
};

struct policy *policy_load(const struct config *cfg, const struct listener_cfg *lc,
			   char **error_r);
struct policy *policy_load_file(const struct config *cfg, const char *path, char **error_r);
struct policy *policy_free(struct policy *p);
int policy_run(struct policy *p, struct policy_input *in, char **error_r);

/*
 * A function the policy watchdog calls, in its signal handler, just before it
 * ends the worker (NULL: none): the session's last words to its client. It
 * may use only async-signal-safe calls.
 */
void policy_set_last_words(void (*last_words)(void));
/*
 * The line the watchdog writes to stderr before it ends the process (a
 * string that outlives the process; NULL: the worker's own line). postern
 * test, which is no worker and has no MTA behind it, says so in its own words.
 */
void policy_set_watchdog_line(const char *line);

/* the exit status of a worker the policy watchdog ended */
#define POLICY_WATCHDOG_STATUS	3
bool policy_is_spent(const struct policy *p);

/*
 * policy_wait_begin/end - a scanner (msg:clamav, msg:spamd) waits inside a C call
 *
 * Called by the scanner methods around the wait. The wait does not count
 * against policy_timeout, up to the message's scanner allowance
 * (clamav.max_scan_time + spamd.timeout, once per message); the watchdog
 * is held off for as long. begin returns how long this wait may take at
 * most (ms, <= want_ms): what is left of the allowance plus of the
 * policy's own time, so a scanner gives up before the policy's limit ends
 * its run. Outside policy_run (load time) begin returns want_ms and end
 * does nothing.
 */
long policy_wait_begin(lua_State *L, long want_ms);
void policy_wait_end(lua_State *L);
const char *policy_path(const struct policy *p);
/* the path of listener lc's policy (caller frees); NULL when it has none */
char *policy_file(const struct config *cfg, const struct listener_cfg *lc);
/* how long one run may take, C calls included, before the watchdog ends it */
long policy_watchdog_ms(const struct config *cfg);
/*
 * policy_guard_load - arm (on) or disarm the watchdog around a load, in a
 * process the watchdog may end (postern test; never the master, which
 * loads in a child first)
 */
void policy_guard_load(const struct config *cfg, bool on);

#endif
