/*
 * config_spec - postern.conf: defaults, types, and errors that name file, line and key
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "tap.h"

static char path[] = "/tmp/postern-config-spec-XXXXXX";

/* load - write text to the temp file and load it */
static struct config *
load(const char *text, char **error_r)
{
	FILE *f = fopen(path, "w");

	fputs(text, f);
	fclose(f);
	*error_r = NULL;
	return config_load(path, NULL, 0, error_r);
}

/* expect_error - loading text fails with a message containing want (after the path) */
static void
expect_error(const char *name, const char *text, const char *want)
{
	char *error, full[512];
	struct config *cfg = load(text, &error);

	snprintf(full, sizeof(full), "%s%s", want[0] == ':' ? path : "", want);
	if (!ok(cfg == NULL && error && strstr(error, full), "%s", name))
		printf("# got \"%s\", want it to contain \"%s\"\n", error ? error : "(loaded)", full);
	config_free(cfg);
	free(error);
}

#define ONE_LISTENER "listener \"ext\" { listen = \"127.0.0.1:10024\", forward = \"127.0.0.1:10025\" }\n"

static void
defaults(void)
{
	char *error;
	struct config *cfg = load(ONE_LISTENER, &error);
	const struct listener_cfg *lc;

	if (!ok(cfg != NULL, "a minimal config loads")) {
		printf("# %s\n", error);
		return;
	}
	lc = &cfg->listeners[0];
	is_str(lc->name, "ext", "listener name");
	is_int(lc->is_lmtp, 0, "protocol defaults to smtp");
	is_int(lc->workers, 4, "workers default");
	is_int(lc->max_message_size, 64L * 1024 * 1024, "max_message_size default 64M");
	is_int(lc->max_recipients, 1000, "max_recipients default");
	is_int(lc->command_timeout_ms, 300000, "command_timeout default 300 s");
	is_int(lc->allow_count, 2, "allow defaults to loopback (two networks)");
	is_str(cfg->log_level, "info", "log_level default");
	is_str(cfg->clamav.mail_parser, "postern", "clamav.mail_parser default: postern's own MIME walk");
	ok(cfg->user == NULL, "user has no default");
	config_free(cfg);
}

static void
values(void)
{
	char *error;
	struct config *cfg = load(
	    "spool_dir = \"/tmp/x\"\n"
	    "user, group = \"postern\", \"mail\"\n"
	    "local base = 20000\n"
	    "listener \"sec\" { listen = \"127.0.0.1:\" .. (base + 24), protocol = \"lmtp\",\n"
	    "  forward = \"127.0.0.1:20025\", workers = 2, max_message_size = \"10M\",\n"
	    "  command_timeout = 0.5, allow = { \"127.0.0.0/8\", \"10.0.0.0/8\" } }\n"
	    "listener \"ext\" { listen = \"[::1]:10024\", forward = \"[::1]:10025\", max_message_size = 2048 }\n",
	    &error);
	const struct listener_cfg *lc;

	if (!ok(cfg != NULL, "a config with expressions and two listeners loads")) {
		printf("# %s\n", error);
		free(error);
		return;
	}
	lc = &cfg->listeners[0];
	is_str(cfg->spool_dir, "/tmp/x", "spool_dir");
	is_str(cfg->clamav.temp_dir, "/tmp/x/scan", "clamav.temp_dir defaults to spool_dir/scan");
	is_str(cfg->group, "mail", "multiple assignment sets group");
	is_str(lc->listen, "127.0.0.1:20024", "listen built from a local variable");
	is_int(lc->is_lmtp, 1, "protocol lmtp");
	is_int(lc->max_message_size, 10L * 1024 * 1024, "\"10M\" is 10 MiB");
	is_int(lc->command_timeout_ms, 500, "fractional seconds");
	is_int(lc->allow_count, 2, "explicit allow list");
	is_int(cfg->listeners[1].max_message_size, 2048, "size as a number");
	is_int(cfg->nlisteners, 2, "two listeners");
	config_free(cfg);
}

/* with the leading slash 108 bytes: one more than sockaddr_un's sun_path holds with its NUL */
#define LONG_PATH "run/postern/a-directory-name-that-goes-on/and-on-and-on/until-the-path-is/much-too-long-for-sun-path.socket"

static void
errors(void)
{
	expect_error("unknown top-level key names file, line and key",
		     "\n\nspool_dri = \"/x\"\n" ONE_LISTENER, ":3: unknown key 'spool_dri'");
	expect_error("unknown listener key",
		     "listener \"ext\" { listen = \"127.0.0.1:10024\", fowrard = \"x\" }\n",
		     ":1: listener \"ext\": unknown key 'fowrard'");
	expect_error("a listener key's error names the key's own line",
		     "listener \"ext\" {\n  listen = \"127.0.0.1:10024\",\n  forward = \"127.0.0.1:2\",\n"
		     "  workers = \"many\",\n}\n",
		     ":4: listener \"ext\": key 'workers': expected a whole number");
	expect_error("... also written [\"key\"] =, in the second listener",
		     ONE_LISTENER "listener \"two\" {\n  listen = \"127.0.0.1:10025\",\n"
		     "  forward = \"127.0.0.1:2\", [\"wrokers\"] = 3,\n}\n",
		     ":4: listener \"two\": unknown key 'wrokers'");
	expect_error("wrong type", "log_level = 3\n" ONE_LISTENER, ":1: key 'log_level': expected a string");
	expect_error("a size that overflows is refused, not wrapped round",
		     "policy_memory_limit = \"17179869185G\"\n" ONE_LISTENER,
		     ":1: key 'policy_memory_limit': expected a size in bytes");
	expect_error("bad enum", ONE_LISTENER "log_level = \"loud\"\n", ":2: key 'log_level'");
	expect_error("unknown clamav.mail_parser",
		     ONE_LISTENER "clamav = { database = \"/x\", mail_parser = \"clamd\" }\n",
		     "expected \"libclamav\" or \"postern\"");
	expect_error("unknown syslog facility", ONE_LISTENER "syslog_facility = \"mial\"\n",
		     ":2: key 'syslog_facility': expected a syslog facility");
	expect_error("workers out of range",
		     "listener \"ext\" { listen = \"127.0.0.1:1\", forward = \"127.0.0.1:2\", workers = 0 }\n",
		     ":1: listener \"ext\": key 'workers': must be from 1 to 1024");
	expect_error("bad protocol",
		     "listener \"x\" { listen = \"127.0.0.1:1\", forward = \"127.0.0.1:2\", protocol = \"http\" }\n",
		     "key 'protocol': expected \"smtp\" or \"lmtp\"");
	expect_error("bad address",
		     "listener \"x\" { listen = \"127.0.0.1\", forward = \"127.0.0.1:2\" }\n",
		     "key 'listen': '127.0.0.1': expected address:port");
	expect_error("bad network in allow",
		     "listener \"x\" { listen = \"127.0.0.1:1\", forward = \"127.0.0.1:2\", allow = { \"10.0.0.0/33\" } }\n",
		     "key 'allow': entry 1 is not a network");
	expect_error("missing forward", "\nlistener \"x\" { listen = \"127.0.0.1:1\" }\n",
		     ":2: listener \"x\": key 'forward' is required");
	expect_error("non-loopback listen without allow is refused",
		     "listener \"x\" { listen = \"192.0.2.1:10024\", forward = \"127.0.0.1:2\" }\n",
		     "without an explicit 'allow' list");
	expect_error("a unix spamd.address longer than a socket path holds",
		     ONE_LISTENER "spamd = { address = \"/" LONG_PATH "\" }\n",
		     "key 'spamd.address': the unix socket path /" LONG_PATH " is 108 bytes long; a "
		     "socket path holds at most 107");
	expect_error("a control_socket longer than a socket path holds",
		     ONE_LISTENER "control_socket = \"/" LONG_PATH "\"\n",
		     "key 'control_socket': the unix socket path");
	expect_error("no listener", "spool_dir = \"/x\"\n", "no listener declared");
	expect_error("duplicate listener", ONE_LISTENER ONE_LISTENER, ":2: listener \"ext\" declared twice");
	expect_error("same address twice",
		     ONE_LISTENER "listener \"b\" { listen = \"127.0.0.1:10024\", forward = \"127.0.0.1:2\" }\n",
		     "is already used by listener \"ext\"");
	expect_error("Lua syntax error", "listener \"x\" {\n", ":");
	expect_error("no os library in the sandbox", "os.execute(\"true\")\n" ONE_LISTENER, ":1:");
	expect_error("endless loop is stopped", "while true do end\n" ONE_LISTENER,
		     "takes too long");
	expect_error("memory bomb is stopped",
		     "local t = {} for i = 1, 1e9 do t[i] = string.rep('x', 1000) .. i end\n" ONE_LISTENER,
		     "");
}

int
main(void)
{
	int fd = mkstemp(path);

	if (fd < 0)
		return 99;
	close(fd);
	defaults();
	values();
	errors();
	unlink(path);
	return done_testing();
}
