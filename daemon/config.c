/*
 * config - postern.conf: Lua syntax, evaluated in a sandbox, one table row per key
 *
 * The file is a Lua chunk whose _ENV is an empty table with two metamethods:
 * __newindex checks an assignment against global_keys[] and stores it in the
 * struct config being built; __index finds the few safe library functions
 * and the values already set (so `dir = spool_dir .. "/x"` works). The
 * function `listener` returns a closure that takes the listener's table and
 * checks each field against listener_keys[]. The evaluation runs under an
 * instruction budget and a memory cap, so a config cannot hang or balloon the
 * daemon at start or at SIGHUP.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "config.h"
#include "log.h"
#include "util/buf.h"
#include "util/esc.h"
#include "util/xalloc.h"

#define CONFIG_INSTRUCTION_LIMIT (10 * 1000 * 1000)	/* a config is a few dozen lines */
#define CONFIG_MEMORY_LIMIT	(32 * 1024 * 1024)	/* ... and needs little memory */

enum key_type {
	KT_STRING,		/* any string */
	KT_INT,			/* integer within [min, max] */
	KT_SECONDS,		/* number of seconds, stored in ms */
	KT_SIZE,		/* bytes: 1048576, "1024k", "10M", "1G" */
	KT_PROTOCOL,		/* "smtp" or "lmtp", stored as is_lmtp */
	KT_ENDPOINT,		/* "address:port", resolved at load */
	KT_NETLIST,		/* list of networks: { "127.0.0.0/8", "::1" } */
	KT_LOGLEVEL,		/* debug, info, warn, error */
	KT_SECTION,		/* a table of sub-keys: quarantine = { dir = ... } */
	KT_STRLIST,		/* list of strings: { "example.com", ".example.net" } */
	KT_ONERROR,		/* "tempfail", "pass" or "reject" */
	KT_LOGFORMAT,		/* "text" or "json" */
	KT_BOOL,		/* true or false (also "true"/"false" from -o) */
	KT_FACILITY,		/* a syslog facility log.c knows: mail, daemon, local0... */
	KT_MAILPARSER,		/* "libclamav" or "postern" */
	KT_HOSTNAME,		/* a host name: letters, digits, "-", "_" and dots */
};

struct key {
	const char *name;	/* as written in the file */
	enum key_type type;	/* how the value is read */
	size_t	offset;		/* where it lands in its struct */
	const char *def;	/* default as it would be written; NULL = required/none */
	long	min, max;	/* bounds for numbers (ms for seconds, bytes for sizes) */
	const char *doc;	/* one line for postern.conf(5) */
	const struct key *section; /* KT_SECTION: the sub-keys, stored in the same struct */
};

#define G(f) offsetof(struct config, f)
#define L(f) offsetof(struct listener_cfg, f)

static const struct key clamav_keys[] = {
	{ "database", KT_STRING, G(clamav.database), NULL, 0, 0,
	  "directory of ClamAV signature files (.cvd .cld .hdb .ndb .ldb ...); unset: no ClamAV", NULL },
	{ "max_scan_size", KT_SIZE, G(clamav.max_scan_size), "100M", 1024, LONG_MAX,
	  "bytes scanned per message, archives unpacked included", NULL },
	{ "max_file_size", KT_SIZE, G(clamav.max_file_size), "25M", 1024, LONG_MAX,
	  "largest single file (part, archive member) scanned", NULL },
	{ "max_recursion", KT_INT, G(clamav.max_recursion), "16", 1, 100,
	  "archive and container nesting unpacked", NULL },
	{ "max_files", KT_INT, G(clamav.max_files), "10000", 1, 10000000,
	  "files scanned per message, archive members included", NULL },
	{ "max_scan_time", KT_SECONDS, G(clamav.max_scan_time_ms), "120", 1000, 3600000,
	  "seconds one message's scan may take", NULL },
	{ "self_check", KT_SECONDS, G(clamav.self_check_ms), "600", 0, 86400000,
	  "seconds between checks of the database directory for new signatures (0: only SIGHUP)", NULL },
	{ "temp_dir", KT_STRING, G(clamav.temp_dir), NULL, 0, 0,
	  "where libclamav unpacks what it scans; default spool_dir/scan, where the systemd unit "
	  "mounts a private tmpfs (bench/README.md: the scan's cost on disk and on tmpfs)", NULL },
	{ "mail_parser", KT_MAILPARSER, G(clamav.mail_parser), "postern", 0, 0,
	  "who takes a message apart for ClamAV: \"libclamav\" (its mail parser, on the spool "
	  "file) or \"postern\" (postern's MIME walk; libclamav scans each decoded part)", NULL },
	{ "disable_cache", KT_BOOL, G(clamav.disable_cache), "true", 0, 0,
	  "keep libclamav's cache of clean files off (clamd's DisableCache): an archive it had "
	  "cached would not be unpacked again, and its members would not reach P.banned", NULL },
	{ "on_incomplete", KT_ONERROR, G(clamav.on_incomplete), "tempfail", 0, 0,
	  "what P.clamav does when a scan cannot finish (limits, encrypted archive, engine error): "
	  "tempfail, pass (with X-Virus-Status: Unchecked) or reject", NULL },
	{ NULL, 0, 0, NULL, 0, 0, NULL, NULL },
};

static const struct key spamd_keys[] = {
	{ "address", KT_STRING, G(spamd.address), NULL, 0, 0,
	  "spamd's address: host:port (spamd's default is 127.0.0.1:783), or the path of its "
	  "unix socket; unset: no spamd", NULL },
	{ "timeout", KT_SECONDS, G(spamd.timeout_ms), "30", 100, 3600000,
	  "seconds to wait for spamd (connect, send, answer)", NULL },
	{ "max_size", KT_SIZE, G(spamd.max_size), "500K", 1024, 1073741824,
	  "larger messages are not sent to spamd (spamc's default is 500 KB)", NULL },
	{ "on_error", KT_ONERROR, G(spamd.on_error), "pass", 0, 0,
	  "what P.spamd does when spamd is down or slow: pass (X-Spam-Status: Unchecked) or tempfail", NULL },
	{ NULL, 0, 0, NULL, 0, 0, NULL, NULL },
};

static const struct key metrics_keys[] = {
	{ "listen", KT_STRING, G(metrics_listen), NULL, 0, 0,
	  "address:port of the Prometheus exposition (GET /metrics), loopback only; unset: off",
	  NULL },
	{ NULL, 0, 0, NULL, 0, 0, NULL, NULL },
};

static const struct key quarantine_keys[] = {
	{ "dir", KT_STRING, G(quarantine_dir), QUARANTINE_DIR, 0, 0,
	  "directory of quarantined messages (postern release and postern quarantine read it)", NULL },
	{ NULL, 0, 0, NULL, 0, 0, NULL, NULL },
};

static const struct key global_keys[] = {
	{ "user", KT_STRING, G(user), NULL, 0, 0,
	  "user to run as after binding; required when started as root", NULL },
	{ "group", KT_STRING, G(group), NULL, 0, 0,
	  "group to run as; default: the user's login group", NULL },
	{ "spool_dir", KT_STRING, G(spool_dir), SPOOL_DIR, 0, 0,
	  "directory of the per-worker spool files (never shared with other programs)", NULL },
	{ "hostname", KT_HOSTNAME, G(hostname), NULL, 0, 0,
	  "our name in greetings and Received: lines; default: the system's host name", NULL },
	{ "log_level", KT_LOGLEVEL, G(log_level), "info", 0, 0,
	  "debug, info, warn or error", NULL },
	{ "syslog_facility", KT_FACILITY, G(syslog_facility), "mail", 0, 0,
	  "syslog facility when not running in the foreground: mail, daemon, user or local0 to "
	  "local7", NULL },
	{ "drain_timeout", KT_SECONDS, G(drain_timeout_ms), "60", 1, 86400000,
	  "SIGTERM: seconds sessions in progress may take to finish", NULL },
	{ "policy_dir", KT_STRING, G(policy_dir), POLICY_DIR, 0, 0,
	  "where listener policies (and the modules they require) are found", NULL },
	{ "lua_dir", KT_STRING, G(lua_dir), LUA_DIR, 0, 0,
	  "where the postern Lua library is installed (require \"postern\")", NULL },
	{ "policy_memory_limit", KT_SIZE, G(policy_memory_limit), "64M", 1048576, LONG_MAX,
	  "memory one worker's policy state may use; past it the message is tempfailed", NULL },
	{ "policy_timeout", KT_SECONDS, G(policy_timeout_ms), "10", 10, 3600000,
	  "seconds a policy may run on one message; past it the message is tempfailed", NULL },
	{ "policy_instruction_limit", KT_INT, G(policy_instruction_limit), "100000000", 10000, LONG_MAX,
	  "Lua instructions a policy may run on one message; past it the message is tempfailed", NULL },
	{ "max_header_size", KT_SIZE, G(max_header_size), "1M", 1024, 1073741824,
	  "header bytes of a message that policies see; the rest is flagged broken", NULL },
	{ "mime_max_depth", KT_INT, G(mime_max_depth), "32", 1, 1000,
	  "nesting of MIME parts walked for policies", NULL },
	{ "mime_max_parts", KT_INT, G(mime_max_parts), "2000", 1, 1000000,
	  "MIME parts listed for policies", NULL },
	{ "quarantine", KT_SECTION, 0, NULL, 0, 0,
	  "quarantine = { dir = ... }", quarantine_keys },
	{ "clamav", KT_SECTION, 0, NULL, 0, 0,
	  "clamav = { database = ..., limits }", clamav_keys },
	{ "spamd", KT_SECTION, 0, NULL, 0, 0,
	  "spamd = { address = ..., timeout = ... }", spamd_keys },
	{ "metrics", KT_SECTION, 0, NULL, 0, 0,
	  "metrics = { listen = \"127.0.0.1:9724\" }", metrics_keys },
	{ "control_socket", KT_STRING, G(control_socket), CONTROL_SOCKET, 0, 0,
	  "unix socket of postern status and postern reload (mode 0660, the daemon's user and group)",
	  NULL },
	{ "log_format", KT_LOGFORMAT, G(log_format), "text", 0, 0,
	  "text, or json: one JSON object per line, the message summary's fields as keys", NULL },
	{ "local_domains", KT_STRLIST, G(local_domains), NULL, 0, 0,
	  "domains (\"example.com\", \".example.com\" with subdomains) whose recipients get spam headers", NULL },
	{ NULL, 0, 0, NULL, 0, 0, NULL, NULL },
};

static const struct key listener_keys[] = {
	{ "listen", KT_ENDPOINT, L(listen), NULL, 0, 0,
	  "address:port the MTA delivers to (required)", NULL },
	{ "protocol", KT_PROTOCOL, L(is_lmtp), "smtp", 0, 0,
	  "smtp or lmtp (one reply per recipient after the data)", NULL },
	{ "forward", KT_ENDPOINT, L(forward), NULL, 0, 0,
	  "address:port accepted mail is reinjected to over SMTP (required)", NULL },
	{ "workers", KT_INT, L(workers), "4", 1, 1024,
	  "processes, hence concurrent sessions, for this listener", NULL },
	{ "allow", KT_NETLIST, L(allow), NULL, 0, 0,
	  "client networks that may connect; default loopback only; others get 554 5.7.1", NULL },
	{ "max_message_size", KT_SIZE, L(max_message_size), "64M", 1024, LONG_MAX,
	  "largest message accepted; larger ones get 552 5.3.4", NULL },
	{ "max_recipients", KT_INT, L(max_recipients), "1000", 1, 1000000,
	  "recipients per transaction; more get 452 4.5.3", NULL },
	{ "smtp_line_limit", KT_SIZE, L(smtp_line_limit), "2048", 512, 1048576,
	  "longest command line; longer ones get 500 5.5.2", NULL },
	{ "max_errors", KT_INT, L(max_errors), "20", 1, 100000,
	  "client errors in one session before 421 4.7.0 and disconnect", NULL },
	{ "command_timeout", KT_SECONDS, L(command_timeout_ms), "300", 1, 86400000,
	  "seconds to wait for the next command; then 421 4.4.2", NULL },
	{ "data_timeout", KT_SECONDS, L(data_timeout_ms), "300", 1, 86400000,
	  "seconds to wait for each piece of message data; then 421 4.4.2", NULL },
	{ "min_data_rate", KT_INT, L(min_data_rate), "500", 0, 1000000000,
	  "bytes/s: DATA may take data_timeout plus this rate's time for what arrived (0: no bound)", NULL },
	{ "forward_connect_timeout", KT_SECONDS, L(forward_connect_timeout_ms), "30", 1, 86400000,
	  "seconds to connect to forward and read its greeting", NULL },
	{ "forward_timeout", KT_SECONDS, L(forward_timeout_ms), "600", 1, 86400000,
	  "seconds to wait for each reply from forward (600: Postfix's data-done timeout)", NULL },
	{ "forward_cache_time", KT_SECONDS, L(forward_cache_ms), "5", 0, 3600000,
	  "seconds an idle connection to forward is kept for the next message (0: never)", NULL },
	{ "max_sessions", KT_INT, L(max_sessions), "1000", 1, 100000000,
	  "a worker is replaced after this many sessions (bounds any slow leak)", NULL },
	{ "policy", KT_STRING, L(policy), NULL, 0, 0,
	  "the listener's policy file, relative to policy_dir; none: every message passes", NULL },
	{ NULL, 0, 0, NULL, 0, 0, NULL, NULL },
};

struct loader {
	struct config *cfg;	/* being built */
	int	opened;		/* listener "name" seen, its { ... } not (yet) */
	char	last_opened[128]; /* the name of the last one, for the error */
	size_t	mem_used;	/* bytes the Lua state holds */
	long	steps;		/* instruction budget spent, in hook calls */
};

/* find_key - the row for name, or NULL */
static const struct key *
find_key(const struct key *keys, const char *name)
{
	for (const struct key *k = keys; k->name != NULL; k++)
		if (strcmp(k->name, name) == 0)
			return k;
	return NULL;
}

/* parse_size - "10M" and friends into bytes; -1 if malformed */
static long
parse_size(const char *s)
{
	char *end;
	long long v, unit = 1;

	errno = 0;
	v = strtoll(s, &end, 10);
	if (end == s || errno != 0 || v < 0)
		return -1;
	switch (*end) {
	case 'k': case 'K': unit = 1024; end++; break;
	case 'm': case 'M': unit = 1024 * 1024; end++; break;
	case 'g': case 'G': unit = 1024LL * 1024 * 1024; end++; break;
	}
	if (v > LONG_MAX / unit)	/* "17179869185G" must not wrap round to 1G */
		return -1;
	v *= unit;
	if (*end == 'B' || *end == 'b')
		end++;
	if (*end != '\0' || v > LONG_MAX)
		return -1;
	return (long)v;
}

/* number_of - a Lua number or numeric string at idx; false if neither */
static bool
number_of(lua_State *L, int idx, double *out)
{
	int isnum;

	if (lua_type(L, idx) != LUA_TNUMBER && lua_type(L, idx) != LUA_TSTRING)
		return false;
	*out = lua_tonumberx(L, idx, &isnum);
	return isnum != 0;
}

/* store_string - replace the string at slot */
static void
store_string(void *slot, const char *s)
{
	char **p = slot;

	free(*p);
	*p = xstrdup(s);
}

/* set_netlist - an allow list from a string or a table of strings */
/* is_plain_list - a table whose only keys are 1..#t: { x = "..." } is not a list */
static bool
is_plain_list(lua_State *L, int idx)
{
	size_t n = lua_rawlen(L, idx), count = 0;

	lua_pushnil(L);
	while (lua_next(L, idx) != 0) {
		lua_pop(L, 1);
		count++;
	}
	return count == n;
}

static const char *
set_netlist(lua_State *L, int idx, struct listener_cfg *lc)
{
	static char err[200];
	size_t n;

	if (lua_type(L, idx) == LUA_TSTRING) {
		lua_newtable(L);
		lua_pushvalue(L, idx);
		lua_rawseti(L, -2, 1);
		idx = lua_gettop(L);
	}
	if (lua_type(L, idx) != LUA_TTABLE || !is_plain_list(L, idx))
		return "expected a list of networks, e.g. { \"127.0.0.0/8\", \"::1\" }";
	n = lua_rawlen(L, idx);
	if (n == 0)
		return "an empty list would let no client in; leave 'allow' out for loopback only";
	free(lc->allow);
	lc->allow = xreallocarray(NULL, n ? n : 1, sizeof(*lc->allow));
	lc->allow_count = 0;
	for (size_t i = 1; i <= n; i++) {
		const char *s;

		lua_rawgeti(L, idx, (lua_Integer)i);
		s = lua_tostring(L, -1);
		if (lua_type(L, -1) != LUA_TSTRING || cidr_parse(s, &lc->allow[lc->allow_count]) < 0) {
			snprintf(err, sizeof(err), "entry %zu is not a network (address or address/bits)", i);
			lua_pop(L, 1);
			return err;
		}
		lc->allow_count++;
		lua_pop(L, 1);
	}
	lc->allow_set = true;
	return NULL;
}

static const char *set_value(lua_State *L, int idx, const struct key *k, void *base);
static const char *set_strlist(lua_State *L, int idx, struct strlist *sl);

/* set_section - a table of sub-keys, each checked against its row */
static const char *
set_section(lua_State *L, int idx, const struct key *k, void *base)
{
	static char err[400];

	if (lua_type(L, idx) != LUA_TTABLE)
		return "expected a table { key = value, ... }";
	lua_pushnil(L);
	while (lua_next(L, idx) != 0) {
		const char *name = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
		const struct key *sk = name ? find_key(k->section, name) : NULL;
		const char *why;

		if (sk == NULL) {
			snprintf(err, sizeof(err), "unknown key '%s.%s'", k->name, name ? name : "?");
			lua_pop(L, 2);
			return err;
		}
		if ((why = set_value(L, lua_gettop(L), sk, base)) != NULL) {
			snprintf(err, sizeof(err), "'%s.%s': %s", k->name, name, why);
			lua_pop(L, 2);
			return err;
		}
		lua_pop(L, 1);
	}
	return NULL;
}

/*
 * set_value - check the Lua value at idx against row k and store it in base
 *
 * Returns NULL, or a static message saying what was expected.
 */
static const char *
set_value(lua_State *L, int idx, const struct key *k, void *base)
{
	static char err[300];
	void *slot = (char *)base + k->offset;
	const char *s = NULL;
	double d;
	long v;

	if (k->type == KT_SECTION)
		return set_section(L, idx, k, base);
	if (k->type != KT_NETLIST && k->type != KT_INT && k->type != KT_SECONDS &&
	    k->type != KT_SIZE && k->type != KT_STRLIST && k->type != KT_BOOL &&
	    lua_type(L, idx) != LUA_TSTRING)
		return "expected a string";
	if (lua_type(L, idx) == LUA_TSTRING) {
		size_t len;

		s = lua_tolstring(L, idx, &len);
		if (strlen(s) != len)
			return "expected a string without NUL bytes";
		for (size_t i = 0; i < len; i++)
			if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
				return "expected a string without control characters (line breaks, tabs)";
	}
	switch (k->type) {
	case KT_STRING:
		store_string(slot, s);
		return NULL;
	case KT_HOSTNAME:
		/* it goes into greetings, EHLO and Received: lines as it is */
		if (*s == '\0' || strlen(s) > 253 || strspn(s, "abcdefghijklmnopqrstuvwxyz"
		    "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.") != strlen(s) || *s == '.' || *s == '-')
			return "expected a host name (letters, digits, \"-\", \"_\" and dots)";
		store_string(slot, s);
		return NULL;
	case KT_LOGLEVEL:
		if (strcmp(s, "debug") && strcmp(s, "info") && strcmp(s, "warn") && strcmp(s, "error"))
			return "expected \"debug\", \"info\", \"warn\" or \"error\"";
		store_string(slot, s);
		return NULL;
	case KT_PROTOCOL:
		if (strcmp(s, "smtp") != 0 && strcmp(s, "lmtp") != 0)
			return "expected \"smtp\" or \"lmtp\"";
		*(long *)slot = strcmp(s, "lmtp") == 0;
		return NULL;
	case KT_ENDPOINT: {
		struct listener_cfg *lc = base;
		struct endpoint *ep = k->offset == L(listen) ? &lc->listen_ep : &lc->forward_ep;
		const char *why;

		if (net_parse_endpoint(s, ep, &why) < 0) {
			snprintf(err, sizeof(err), "'%s': %s", s, why);
			return err;
		}
		store_string(slot, s);
		return NULL;
	}
	case KT_NETLIST:
		return set_netlist(L, idx, base);
	case KT_STRLIST:
		return set_strlist(L, idx, slot);
	case KT_BOOL:
		if (lua_type(L, idx) == LUA_TBOOLEAN)
			*(long *)slot = lua_toboolean(L, idx);
		else if (s != NULL && (strcmp(s, "true") == 0 || strcmp(s, "false") == 0))
			*(long *)slot = strcmp(s, "true") == 0;
		else
			return "expected true or false";
		return NULL;
	case KT_MAILPARSER:
		if (strcmp(s, "libclamav") != 0 && strcmp(s, "postern") != 0)
			return "expected \"libclamav\" or \"postern\"";
		store_string(slot, s);
		return NULL;
	case KT_FACILITY:
		if (!log_facility_known(s))
			return "expected a syslog facility: \"mail\", \"daemon\", \"user\" or "
			       "\"local0\" to \"local7\"";
		store_string(slot, s);
		return NULL;
	case KT_LOGFORMAT:
		if (strcmp(s, "text") != 0 && strcmp(s, "json") != 0)
			return "expected \"text\" or \"json\"";
		store_string(slot, s);
		return NULL;
	case KT_ONERROR:
		if (strcmp(s, "tempfail") != 0 && strcmp(s, "pass") != 0 && strcmp(s, "reject") != 0)
			return "expected \"tempfail\", \"pass\" or \"reject\"";
		store_string(slot, s);
		return NULL;
	case KT_INT:
		if (!number_of(L, idx, &d) || d != (double)(long)d)
			return "expected a whole number";
		v = (long)d;
		break;
	case KT_SECONDS:
		if (!number_of(L, idx, &d) || d < 0 || d > 1e8)
			return "expected a number of seconds";
		v = (long)(d * 1000 + 0.5);
		break;
	case KT_SIZE:
		if (lua_type(L, idx) == LUA_TSTRING)
			v = parse_size(s);
		else if (number_of(L, idx, &d) && d >= 0 && d == (double)(long)d)
			v = (long)d;
		else
			v = -1;
		if (v < 0)
			return "expected a size in bytes (a number, or a string such as \"10M\")";
		break;
	default:
		return "internal: unknown key type";
	}
	if (v < k->min || v > k->max) {
		if (k->type == KT_SECONDS)
			snprintf(err, sizeof(err), "must be from %g to %g seconds", k->min / 1000.0,
				 k->max / 1000.0);
		else
			snprintf(err, sizeof(err), "must be from %ld to %ld", k->min, k->max);
		return err;
	}
	*(long *)slot = v;
	return NULL;
}

/* set_strlist - a list of strings from a string or a table of strings */
static const char *
set_strlist(lua_State *L, int idx, struct strlist *sl)
{
	size_t n;

	if (lua_type(L, idx) == LUA_TSTRING) {
		lua_newtable(L);
		lua_pushvalue(L, idx);
		lua_rawseti(L, -2, 1);
		idx = lua_gettop(L);
	}
	if (lua_type(L, idx) != LUA_TTABLE || !is_plain_list(L, idx))
		return "expected a list of strings, e.g. { \"example.com\" }";
	n = lua_rawlen(L, idx);
	for (size_t i = 1; i <= n; i++)
		if (lua_rawgeti(L, idx, (lua_Integer)i) != LUA_TSTRING) {
			lua_pop(L, 1);
			return "expected a list of strings";
		} else
			lua_pop(L, 1);
	strlist_free(sl);
	sl->v = xreallocarray(NULL, n ? n : 1, sizeof(*sl->v));
	for (size_t i = 1; i <= n; i++) {
		lua_rawgeti(L, idx, (lua_Integer)i);
		sl->v[sl->n++] = xstrdup(lua_tostring(L, -1));
		lua_pop(L, 1);
	}
	return NULL;
}

/* apply_defaults - set every row that has a default, through set_value */
static void
apply_defaults(lua_State *L, const struct key *keys, void *base)
{
	for (const struct key *k = keys; k->name != NULL; k++) {
		const char *why;

		if (k->type == KT_SECTION)
			apply_defaults(L, k->section, base);
		if (k->def == NULL || k->type == KT_ENDPOINT || k->type == KT_SECTION)
			continue;
		lua_pushstring(L, k->def);
		if ((why = set_value(L, lua_gettop(L), k, base)) != NULL)
			log_panic("default of %s: %s", k->name, why);
		lua_pop(L, 1);
	}
}

/* loader_of - the loader behind the closure running now */
static struct loader *
loader_of(lua_State *L)
{
	return lua_touserdata(L, lua_upvalueindex(1));
}

/* env_newindex - __newindex of the config environment: a top-level assignment */
static int
env_newindex(lua_State *L)
{
	struct loader *ld = loader_of(L);
	const char *name = lua_tostring(L, 2), *why;
	const struct key *k;

	if (lua_type(L, 2) != LUA_TSTRING || (k = find_key(global_keys, name)) == NULL)
		return luaL_error(L, "unknown key '%s'", name ? name : "?");
	if ((why = set_value(L, 3, k, ld->cfg)) != NULL)
		return luaL_error(L, "key '%s': %s", name, why);
	/* remember it in the library table, so later lines can read it back */
	lua_pushvalue(L, 2);
	lua_pushvalue(L, 3);
	lua_rawset(L, lua_upvalueindex(2));
	return 0;
}

/* is_key_at - p starts "key =" or ["key"] = (not "key ==") */
static bool
is_key_at(const char *p, const char *key, size_t klen)
{
	if (strncmp(p, "[\"", 2) == 0 && strncmp(p + 2, key, klen) == 0 && strncmp(p + 2 + klen, "\"]", 2) == 0)
		p += 2 + klen + 2;
	else if (strncmp(p, key, klen) == 0)
		p += klen;
	else
		return false;
	p += strspn(p, " \t");
	return *p == '=' && p[1] != '=';
}

/*
 * key_line - the line of "key =" (or ["key"] =) in the file at path, looking
 * from line `from` (the listener's) on, up to the next listener; 0 if not found
 *
 * Lua keeps no line per table field, so an error in a listener's key would
 * name the listener's first line; a postmaster wants the key's own.
 */
static int
key_line(const char *path, int from, const char *key)
{
	FILE *f = fopen(path, "r");
	char *line = NULL;	/* getline: a line of any length counts as one */
	size_t klen = strlen(key), cap = 0;
	int n = 0, found = 0;

	if (f == NULL || from <= 0) {
		if (f != NULL)
			fclose(f);
		return 0;
	}
	while (found == 0 && getline(&line, &cap, f) > 0) {
		const char *p = line + strspn(line, " \t");

		if (++n < from)
			continue;
		if (n > from && strncmp(p, "listener", 8) == 0 && strchr(" \t\"(", p[8]) != NULL)
			break;		/* the next listener: the key is not written out */
		/* a field starts a line or follows "{" or ",": try each such place */
		for (; p != NULL && found == 0; p = strpbrk(p, "{,")) {
			p += strspn(p, " \t{,");
			if (is_key_at(p, key, klen))
				found = n;
		}
	}
	free(line);
	fclose(f);
	return found;
}

/*
 * key_error - raise "PATH:LINE: listener "NAME": ..." naming the key's line when
 * the listener was read from the configuration file (-o overrides keep Lua's)
 */
static int __attribute__((format(printf, 4, 5)))
key_error(lua_State *L, const struct listener_cfg *lc, const char *key, const char *fmt, ...)
{
	struct loader *ld = loader_of(L);
	lua_Debug ar;
	va_list ap;
	int line = 0;

	if (key != NULL && lua_getstack(L, 1, &ar) && lua_getinfo(L, "S", &ar) &&
	    ar.source[0] == '@' && strcmp(ar.source + 1, ld->cfg->path) == 0)
		line = key_line(ld->cfg->path, lc->line, key);
	if (line > 0)
		lua_pushfstring(L, "%s:%d: ", ld->cfg->path, line);
	else
		luaL_where(L, 1);
	va_start(ap, fmt);
	lua_pushvfstring(L, fmt, ap);
	va_end(ap);
	lua_concat(L, 2);
	return lua_error(L);
}

/* config_listener - the listener named name, or NULL */
const struct listener_cfg *
config_listener(const struct config *cfg, const char *name)
{
	for (size_t i = 0; i < cfg->nlisteners; i++)
		if (strcmp(cfg->listeners[i].name, name) == 0)
			return &cfg->listeners[i];
	return NULL;
}

/* listener_body - second half of listener "name" { ... }: check and store the table */
static int
listener_body(lua_State *L)
{
	struct loader *ld = loader_of(L);
	const char *lname = lua_tostring(L, lua_upvalueindex(2));
	struct config *cfg = ld->cfg;
	struct listener_cfg *lc;
	lua_Debug ar;

	if (lua_type(L, 1) != LUA_TTABLE)
		return luaL_error(L, "listener \"%s\": expected a table { ... }", lname);
	ld->opened--;
	if (config_listener(cfg, lname) != NULL)
		return luaL_error(L, "listener \"%s\" declared twice", lname);
	cfg->listeners = xreallocarray(cfg->listeners, cfg->nlisteners + 1, sizeof(*lc));
	lc = &cfg->listeners[cfg->nlisteners++];
	memset(lc, 0, sizeof(*lc));
	lc->name = xstrdup(lname);
	lc->line = lua_getstack(L, 1, &ar) && lua_getinfo(L, "l", &ar) ? ar.currentline : 0;
	apply_defaults(L, listener_keys, lc);
	lua_pushnil(L);
	while (lua_next(L, 1) != 0) {
		const char *key = lua_tostring(L, -2), *why;
		const struct key *k;

		if (lua_type(L, -2) != LUA_TSTRING)
			return luaL_error(L, "listener \"%s\": unknown key '(not a name)'", lname);
		if ((k = find_key(listener_keys, key)) == NULL)
			return key_error(L, lc, key, "listener \"%s\": unknown key '%s'", lname, key);
		if ((why = set_value(L, lua_gettop(L), k, lc)) != NULL)
			return key_error(L, lc, key, "listener \"%s\": key '%s': %s", lname, key, why);
		lua_pop(L, 1);
	}
	return 0;
}

/* listener_open - first half of listener "name" { ... }: returns listener_body */
static int
listener_open(lua_State *L)
{
	const char *name = luaL_checkstring(L, 1);

	if (*name == '\0' || strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
				     "0123456789_-.") != strlen(name))
		return luaL_error(L, "listener name '%s': use letters, digits, '_', '-', '.'", name);
	{
		struct loader *ld = loader_of(L);

		ld->opened++;
		snprintf(ld->last_opened, sizeof(ld->last_opened), "%s", name);
	}
	lua_pushvalue(L, lua_upvalueindex(1));
	lua_pushvalue(L, 1);
	lua_pushcclosure(L, listener_body, 2);
	return 1;
}

/* budget_hook - end an evaluation that runs too long */
static void
budget_hook(lua_State *L, lua_Debug *ar)
{
	/* luaL_error would name the caller's line; the hook knows the running one */
	if (lua_getinfo(L, "Sl", ar) && ar->currentline > 0)
		luaL_error(L, "%s:%d: evaluation takes too long (a loop that does not end?)",
			   ar->short_src, ar->currentline);
	luaL_error(L, "evaluation takes too long (a loop that does not end?)");
}

/* limited_alloc - Lua allocator refusing growth past CONFIG_MEMORY_LIMIT */
static void *
limited_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
	struct loader *ld = ud;
	size_t old = ptr ? osize : 0;

	if (nsize == 0) {
		free(ptr);
		ld->mem_used -= old;
		return NULL;
	}
	if (nsize > old && ld->mem_used + (nsize - old) > CONFIG_MEMORY_LIMIT)
		return NULL;
	ptr = realloc(ptr, nsize);
	if (ptr != NULL)
		ld->mem_used = ld->mem_used - old + nsize;
	return ptr;
}

/* open_libs - base, string, table, math (run under lua_pcall) */
static int
open_libs(lua_State *L)
{
	luaL_requiref(L, LUA_GNAME, luaopen_base, 1);
	luaL_requiref(L, LUA_STRLIBNAME, luaopen_string, 1);
	/*
	 * Lua's patterns can backtrack for hours inside one call, where the
	 * instruction hook never runs: ("a"):rep(40):find(("a*"):rep(40) .. "b")
	 * would hang a start, a reload in the master, or posternd -t. A
	 * configuration has no need of them; the string library (and the
	 * strings' metatable, which is the same table) loses them here.
	 */
	for (const char *const *name = (const char *const[]){ "find", "match", "gmatch", "gsub",
							       NULL }; *name != NULL; name++) {
		lua_pushnil(L);
		lua_setfield(L, -2, *name);
	}
	lua_pop(L, 1);
	luaL_requiref(L, LUA_TABLIBNAME, luaopen_table, 1);
	luaL_requiref(L, LUA_MATHLIBNAME, luaopen_math, 1);
	return 0;
}

/* push_env - the sandbox environment: empty table, __index = safe library, __newindex = setter */
static void
push_env(lua_State *L, struct loader *ld)
{
	static const char *safe[] = { "string", "table", "math", "tostring", "tonumber", "type",
				      "pairs", "ipairs", "select", "error", "assert", NULL };

	lua_newtable(L);			/* env */
	lua_newtable(L);			/* its metatable */
	lua_newtable(L);			/* the library, read through __index */
	for (int i = 0; safe[i] != NULL; i++) {
		lua_getglobal(L, safe[i]);
		lua_setfield(L, -2, safe[i]);
	}
	lua_pushlightuserdata(L, ld);
	lua_pushcclosure(L, listener_open, 1);
	lua_setfield(L, -2, "listener");
	lua_pushvalue(L, -1);
	lua_setfield(L, -3, "__index");
	lua_pushlightuserdata(L, ld);
	lua_pushvalue(L, -2);
	lua_pushcclosure(L, env_newindex, 2);
	lua_setfield(L, -3, "__newindex");
	lua_pop(L, 1);				/* library */
	lua_pushboolean(L, 0);
	lua_setfield(L, -2, "__metatable");
	lua_setmetatable(L, -2);
}

/* run_chunk - run the function on top with env as its _ENV; returns a Lua status */
static int
run_chunk(lua_State *L)
{
	lua_pushvalue(L, -2);			/* env */
	if (lua_setupvalue(L, -2, 1) == NULL)
		lua_pop(L, 1);
	lua_sethook(L, budget_hook, LUA_MASKCOUNT, CONFIG_INSTRUCTION_LIMIT);
	return lua_pcall(L, 0, 0, 0);
}

/* is_name - len bytes of a Lua name, as keys are: letters, digits, _, not a digit first */
static bool
is_name(const char *p, size_t len)
{
	if (len == 0 || isdigit((unsigned char)*p))
		return false;
	for (size_t i = 0; i < len; i++)
		if (!isalnum((unsigned char)p[i]) && p[i] != '_')
			return false;
	return true;
}

/* is_override_key - "key" or "section.key", the only forms -o takes */
static bool
is_override_key(const char *key, size_t len)
{
	const char *dot = memchr(key, '.', len);

	if (dot == NULL)
		return is_name(key, len);
	return is_name(key, (size_t)(dot - key)) && is_name(dot + 1, len - (size_t)(dot - key) - 1);
}

/* apply_override - "key=value" from the command line (-o), as a string assignment */
static int
apply_override(lua_State *L, const char *ov, struct buf *err)
{
	const char *eq = strchr(ov, '=');
	struct buf chunk;
	int rc;

	if (eq == NULL || !is_override_key(ov, (size_t)(eq - ov))) {
		char *shown = esc_logs(ov);

		buf_appendf(err, "-o %s: expected key=value or section.key=value (a key such as "
			    "log_level or quarantine.dir)", shown);
		free(shown);
		return -1;
	}
	buf_init(&chunk, 0);
	{
		const char *dot = memchr(ov, '.', (size_t)(eq - ov));

		/* "quarantine.dir=X" sets one key of a section: quarantine = { dir = X } */
		if (dot != NULL) {
			buf_append(&chunk, ov, (size_t)(dot - ov));
			buf_appends(&chunk, " = { ");
			buf_append(&chunk, dot + 1, (size_t)(eq - dot - 1));
			buf_appends(&chunk, " = ... }");
		} else {
			buf_append(&chunk, ov, (size_t)(eq - ov));
			buf_appends(&chunk, " = ...");
		}
	}
	rc = luaL_loadbufferx(L, chunk.ptr, chunk.len, "=-o", "t");
	buf_release(&chunk);
	if (rc == LUA_OK) {
		lua_pushvalue(L, -2);
		lua_setupvalue(L, -2, 1);
		lua_pushstring(L, eq + 1);
		rc = lua_pcall(L, 1, 0, 0);
	}
	if (rc != LUA_OK) {
		buf_appendf(err, "%s", lua_tostring(L, -1));
		lua_pop(L, 1);
		return -1;
	}
	return 0;
}

/* verify_metrics - metrics.listen must be a loopback address:port */
static int
verify_metrics(struct config *cfg, struct buf *err)
{
	struct endpoint ep;
	const char *why;

	if (cfg->metrics_listen == NULL)
		return 0;
	if (net_parse_endpoint(cfg->metrics_listen, &ep, &why) < 0) {
		buf_appendf(err, "%s: key 'metrics.listen': '%s': %s", cfg->path, cfg->metrics_listen,
			    why);
		return -1;
	}
	if (!net_is_loopback(&ep.ss)) {
		buf_appendf(err, "%s: key 'metrics.listen': %s is not a loopback address: the "
			    "counters tell about your mail; put a proxy in front to publish them",
			    cfg->path, cfg->metrics_listen);
		return -1;
	}
	return 0;
}

/* verify_listeners - rules that span keys and listeners */
/* v4_of - the IPv4 address of ss (also of an IPv4-mapped IPv6 one); false if none */
static bool
v4_of(const struct sockaddr_storage *ss, struct in_addr *out, in_port_t *port)
{
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)ss;

		*out = s4->sin_addr;
		*port = s4->sin_port;
		return true;
	}
	if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)ss;

		if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
			memcpy(&out->s_addr, &s6->sin6_addr.s6_addr[12], 4);
			*port = s6->sin6_port;
			return true;
		}
	}
	return false;
}

/*
 * same_socket - would a and b be the same listening socket (or collide)
 *
 * "localhost:10024", "127.0.0.1:010024" and "[::ffff:127.0.0.1]:10024" are
 * one address written three ways; 0.0.0.0 takes its port on every IPv4
 * address. posternd -t must see what bind() would refuse at start.
 */
static bool
same_socket(const struct endpoint *a, const struct endpoint *b)
{
	struct in_addr a4, b4;
	in_port_t ap, bp;

	if (v4_of(&a->ss, &a4, &ap) && v4_of(&b->ss, &b4, &bp))
		return ap == bp && (a4.s_addr == b4.s_addr || a4.s_addr == htonl(INADDR_ANY) ||
				    b4.s_addr == htonl(INADDR_ANY));
	if (a->ss.ss_family == AF_INET6 && b->ss.ss_family == AF_INET6) {
		const struct sockaddr_in6 *a6 = (const struct sockaddr_in6 *)&a->ss;
		const struct sockaddr_in6 *b6 = (const struct sockaddr_in6 *)&b->ss;

		return a6->sin6_port == b6->sin6_port &&
		       (IN6_ARE_ADDR_EQUAL(&a6->sin6_addr, &b6->sin6_addr) ||
			IN6_IS_ADDR_UNSPECIFIED(&a6->sin6_addr) ||
			IN6_IS_ADDR_UNSPECIFIED(&b6->sin6_addr));
	}
	return false;
}

static int
verify_listeners(struct config *cfg, struct buf *err)
{
	if (cfg->nlisteners == 0) {
		buf_appendf(err, "%s: no listener declared (listener \"name\" { listen = ..., forward = ... })",
			    cfg->path);
		return -1;
	}
	for (size_t i = 0; i < cfg->nlisteners; i++) {
		struct listener_cfg *lc = &cfg->listeners[i];

		if (lc->listen == NULL || lc->forward == NULL) {
			buf_appendf(err, "%s:%d: listener \"%s\": key '%s' is required", cfg->path,
				    lc->line, lc->name, lc->listen == NULL ? "listen" : "forward");
			return -1;
		}
		if (!lc->allow_set) {
			if (!net_is_loopback(&lc->listen_ep.ss)) {
				buf_appendf(err, "%s:%d: listener \"%s\": listens on %s, which is not a "
					    "loopback address, without an explicit 'allow' list: a content "
					    "filter open to other hosts lets them bypass the MTA's checks",
					    cfg->path, lc->line, lc->name, lc->listen);
				return -1;
			}
			lc->allow = xreallocarray(NULL, 2, sizeof(*lc->allow));
			cidr_parse("127.0.0.0/8", &lc->allow[0]);
			cidr_parse("::1", &lc->allow[1]);
			lc->allow_count = 2;
		}
		if (same_socket(&lc->forward_ep, &lc->listen_ep)) {
			buf_appendf(err, "%s:%d: listener \"%s\": key 'forward': %s is the listener's "
				    "own address: every message would come back to it", cfg->path, lc->line,
				    lc->name, lc->forward);
			return -1;
		}
		for (size_t j = 0; j < i; j++)
			if (same_socket(&cfg->listeners[j].listen_ep, &lc->listen_ep)) {
				buf_appendf(err, "%s:%d: listener \"%s\": key 'listen': %s is already "
					    "used by listener \"%s\"", cfg->path, lc->line, lc->name,
					    lc->listen, cfg->listeners[j].name);
				return -1;
			}
	}
	return 0;
}

/* fill_hostname - default hostname from the system */
static void
fill_hostname(struct config *cfg)
{
	char name[256];

	if (cfg->hostname != NULL)
		return;
	if (gethostname(name, sizeof(name) - 1) < 0)
		strcpy(name, "localhost");
	name[sizeof(name) - 1] = '\0';
	cfg->hostname = xstrdup(name);
}

/* evaluate - protected part of config_load: libs, env, file, overrides */
static int
evaluate(lua_State *L, struct loader *ld, char *const *overrides, size_t noverrides,
	 struct buf *err)
{
	int rc;

	lua_pushcfunction(L, open_libs);
	if (lua_pcall(L, 0, 0, 0) != LUA_OK) {
		buf_appendf(err, "cannot set up Lua: %s", lua_tostring(L, -1));
		return -1;
	}
	push_env(L, ld);
	apply_defaults(L, global_keys, ld->cfg);
	rc = luaL_loadfilex(L, ld->cfg->path, "t");
	if (rc == LUA_OK)
		rc = run_chunk(L);
	if (rc != LUA_OK) {
		const char *msg = lua_tostring(L, -1);
		size_t plen = strlen(ld->cfg->path);

		if (rc == LUA_ERRMEM)
			msg = "the configuration uses too much memory (more than 32 MiB)";
		else if (msg == NULL)
			msg = "an error without a text message";
		/* every error names the file: Lua's own say "PATH:LINE:" or "cannot open PATH" */
		if (strncmp(msg, ld->cfg->path, plen) == 0 || strncmp(msg, "cannot open ", 12) == 0)
			buf_appendf(err, "%s", msg);
		else
			buf_appendf(err, "%s: %s", ld->cfg->path, msg);
		return -1;
	}
	if (ld->opened > 0) {
		buf_appendf(err, "%s: listener \"%s\" has no { ... } after its name, so it declares "
			    "nothing", ld->cfg->path, ld->last_opened);
		return -1;
	}
	for (size_t i = 0; i < noverrides; i++)
		if (apply_override(L, overrides[i], err) < 0)
			return -1;
	return 0;
}

/*
 * verify_socket_paths - unix socket paths that fit a sockaddr_un
 *
 * A path that does not fit would load here and fail only where it is used:
 * every message "Unchecked (File name too long)" for spamd.address, a start
 * that fails for control_socket. posternd -t says so instead.
 */
static int
verify_socket_paths(struct config *cfg, struct buf *err)
{
	const size_t room = sizeof(((struct sockaddr_un *)0)->sun_path);
	const struct { const char *key, *path; } paths[] = {
		{ "spamd.address", cfg->spamd.address },
		{ "control_socket", cfg->control_socket },
	};

	for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
		const char *path = paths[i].path;

		if (path == NULL || path[0] != '/' || strlen(path) < room)
			continue;
		buf_appendf(err, "%s: key '%s': the unix socket path %s is %zu bytes long; a "
			    "socket path holds at most %zu", cfg->path, paths[i].key, path,
			    strlen(path), room - 1);
		return -1;
	}
	return 0;
}

/*
 * fill_scan_dir - clamav.temp_dir defaults to spool_dir/scan
 *
 * A directory of its own, so that a private tmpfs can be mounted there
 * (the systemd unit does) without moving the spool and the quarantine
 * into memory.
 */
static void
fill_scan_dir(struct config *cfg)
{
	if (cfg->clamav.temp_dir == NULL && cfg->spool_dir != NULL)
		cfg->clamav.temp_dir = xasprintf("%s/scan", cfg->spool_dir);
}

/*
 * config_load - read and check a configuration file
 *
 * overrides are "key=value" strings for top-level keys (posternd -o), applied
 * after the file. Returns the config, or NULL with *error_r (caller frees).
 */
struct config *
config_load(const char *path, char *const *overrides, size_t noverrides, char **error_r)
{
	struct loader ld = { 0 };
	struct buf err;
	lua_State *L;
	int rc;

	buf_init(&err, 0);
	ld.cfg = xcalloc(1, sizeof(*ld.cfg));
	ld.cfg->path = xstrdup(path);
	L = lua_newstate(limited_alloc, &ld);
	if (L == NULL)
		log_panic("cannot create a Lua state for the configuration");
	rc = evaluate(L, &ld, overrides, noverrides, &err);
	lua_close(L);
	if (rc == 0)
		rc = verify_listeners(ld.cfg, &err);
	if (rc == 0)
		rc = verify_metrics(ld.cfg, &err);
	if (rc == 0)
		rc = verify_socket_paths(ld.cfg, &err);
	if (rc < 0) {
		*error_r = xstrdup(buf_cstr(&err));
		buf_release(&err);
		return config_free(ld.cfg);
	}
	buf_release(&err);
	fill_hostname(ld.cfg);
	fill_scan_dir(ld.cfg);
	return ld.cfg;
}

/*
 * config_defaults - every global key at its default, no listener
 *
 * For tools that can run without a configuration file (postern test with
 * --policy): the same defaults the file would give.
 */
struct config *
config_defaults(void)
{
	struct loader ld = { 0 };
	lua_State *L;

	ld.cfg = xcalloc(1, sizeof(*ld.cfg));
	ld.cfg->path = xstrdup("(defaults)");
	L = lua_newstate(limited_alloc, &ld);
	if (L == NULL)
		log_panic("cannot create a Lua state for the configuration");
	apply_defaults(L, global_keys, ld.cfg);
	lua_close(L);
	fill_hostname(ld.cfg);
	fill_scan_dir(ld.cfg);
	return ld.cfg;
}

/* strlist_free - empty a list of strings */
void
strlist_free(struct strlist *sl)
{
	for (size_t i = 0; i < sl->n; i++)
		free(sl->v[i]);
	free(sl->v);
	sl->v = NULL;
	sl->n = 0;
}

/* config_any_policy - does any listener run a policy */
bool
config_any_policy(const struct config *cfg)
{
	for (size_t i = 0; i < cfg->nlisteners; i++)
		if (cfg->listeners[i].policy != NULL)
			return true;
	return false;
}

/* config_free - free a configuration; returns NULL */
struct config *
config_free(struct config *cfg)
{
	if (cfg == NULL)
		return NULL;
	for (size_t i = 0; i < cfg->nlisteners; i++) {
		struct listener_cfg *lc = &cfg->listeners[i];

		free(lc->name);
		free(lc->listen);
		free(lc->forward);
		free(lc->allow);
		free(lc->policy);
	}
	free(cfg->listeners);
	free(cfg->path);
	free(cfg->user);
	free(cfg->group);
	free(cfg->spool_dir);
	free(cfg->hostname);
	free(cfg->log_level);
	free(cfg->syslog_facility);
	free(cfg->policy_dir);
	free(cfg->lua_dir);
	free(cfg->quarantine_dir);
	free(cfg->clamav.database);
	free(cfg->clamav.on_incomplete);
	free(cfg->clamav.temp_dir);
	free(cfg->clamav.mail_parser);
	free(cfg->spamd.address);
	free(cfg->metrics_listen);
	free(cfg->control_socket);
	free(cfg->log_format);
	free(cfg->spamd.on_error);
	strlist_free(&cfg->local_domains);
	free(cfg);
	return NULL;
}

/* print_rows - one line per key: name, default, documentation */
static void
print_rows(const char *section, const struct key *keys)
{
	for (const struct key *k = keys; k->name != NULL; k++) {
		if (k->type == KT_SECTION) {
			for (const struct key *sk = k->section; sk->name != NULL; sk++)
				printf("%s\t%s.%s\t%s\t%s\n", section, k->name, sk->name,
				       sk->def ? sk->def : "-", sk->doc);
			continue;
		}
		printf("%s\t%s\t%s\t%s\n", section, k->name, k->def ? k->def : "-", k->doc);
	}
}

/* config_print_keys - the key table, for the manual and for posternd -k */
void
config_print_keys(void)
{
	print_rows("global", global_keys);
	print_rows("listener", listener_keys);
}
