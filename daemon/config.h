/*
 * config - postern.conf: Lua syntax, evaluated in a sandbox, one table row per key
 *
 * config_load() runs the file in an environment where an assignment to a known
 * top-level key sets it, `listener "name" { ... }` declares a listener, and
 * anything else is an error naming the file, the line and the key. The rows of
 * global_keys[] and listener_keys[] (config.c) are the single description of
 * every key: name, type, default, bounds and one line of documentation;
 * config_print_keys() prints them for the manual.
 *
 * Errors: config_load() returns NULL and a message the caller frees.
 */
#ifndef POSTERN_CONFIG_H
#define POSTERN_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include "util/net.h"

struct listener_cfg {
	char   *name;			/* from listener "name" */
	int	line;			/* where it was declared */
	char   *listen;			/* "127.0.0.1:10024" as written */
	struct endpoint listen_ep;	/* ... resolved */
	long	is_lmtp;		/* protocol = "lmtp" */
	char   *forward;		/* reinjection address as written */
	struct endpoint forward_ep;	/* ... resolved */
	long	workers;		/* pre-forked worker processes */
	struct cidr *allow;		/* client networks allowed to connect */
	size_t	allow_count;		/* entries in allow */
	bool	allow_set;		/* allow written explicitly */
	long	max_message_size;	/* bytes; beyond: 552 5.3.4 */
	long	max_recipients;		/* per transaction; beyond: 452 4.5.3 */
	long	smtp_line_limit;	/* command line bytes; beyond: 500 5.5.2 */
	long	max_errors;		/* client errors before 421 and close */
	long	command_timeout_ms;	/* wait for a command line */
	long	data_timeout_ms;	/* wait for each DATA/BDAT read */
	long	min_data_rate;		/* bytes/s a DATA/BDAT phase must keep up; 0 = any */
	long	forward_connect_timeout_ms; /* connect + greeting downstream */
	long	forward_timeout_ms;	/* each downstream reply */
	long	forward_cache_ms;	/* keep an idle downstream connection this long */
	long	max_sessions;		/* a worker exits after this many sessions */
	char   *policy;			/* policy file relative to policy_dir, or NULL */
};

struct strlist {
	char  **v;			/* owned strings */
	size_t	n;			/* how many */
};

struct clamav_cfg {
	char   *database;		/* signature directory; NULL: no ClamAV */
	long	max_scan_size;		/* CL_ENGINE_MAX_SCANSIZE */
	long	max_file_size;		/* CL_ENGINE_MAX_FILESIZE */
	long	max_recursion;		/* CL_ENGINE_MAX_RECURSION */
	long	max_files;		/* CL_ENGINE_MAX_FILES */
	long	max_scan_time_ms;	/* CL_ENGINE_MAX_SCANTIME */
	long	self_check_ms;		/* database directory check interval; 0: off */
	char   *on_incomplete;		/* "tempfail", "pass" or "reject" */
	char   *temp_dir;		/* where libclamav unpacks; NULL: spool_dir */
	long	disable_cache;		/* no cache of clean files (the default: see config.c) */
	char   *mail_parser;		/* "libclamav" or "postern": who takes the MIME apart */
};

struct spamd_cfg {
	char   *address;		/* host:port or a unix socket path */
	long	timeout_ms;		/* connect, send and answer */
	long	max_size;		/* larger messages are not sent */
	char   *on_error;		/* "pass" or "tempfail" */
};

struct config {
	char   *path;			/* the file this came from */
	char   *user;			/* run as this user after binding */
	char   *group;			/* ... and this group */
	char   *spool_dir;		/* per-worker spool files */
	char   *hostname;		/* our name in greetings and Received: */
	char   *log_level;		/* debug, info, warn, error */
	char   *syslog_facility;	/* when not in the foreground */
	long	drain_timeout_ms;	/* SIGTERM: how long sessions may finish */
	char   *policy_dir;		/* listener policies and their modules */
	char   *lua_dir;		/* the postern Lua library */
	long	policy_memory_limit;	/* bytes a policy state may hold */
	long	policy_timeout_ms;	/* a policy's time on one message */
	long	policy_instruction_limit; /* ... and its Lua instructions */
	long	max_header_size;	/* header bytes parsed for policies */
	long	mime_max_depth;		/* MIME nesting walked */
	long	mime_max_parts;		/* MIME parts listed */
	char   *quarantine_dir;		/* quarantine = { dir = ... } */
	struct clamav_cfg clamav;	/* clamav = { ... } */
	struct spamd_cfg spamd;		/* spamd = { ... } */
	struct strlist local_domains;	/* recipients that get spam headers */
	char   *metrics_listen;		/* metrics = { listen = ... }, or NULL: off */
	char   *control_socket;		/* unix socket of postern status/reload */
	char   *log_format;		/* "text" or "json" */
	struct listener_cfg *listeners;	/* owned array */
	size_t	nlisteners;		/* its length */
};

struct config *config_load(const char *path, char *const *overrides, size_t noverrides,
			   char **error_r);
struct config *config_free(struct config *cfg);
/* does any listener run a policy */
bool config_any_policy(const struct config *cfg);
const struct listener_cfg *config_listener(const struct config *cfg, const char *name);
struct config *config_defaults(void);
void strlist_free(struct strlist *sl);
void config_print_keys(void);

#endif
