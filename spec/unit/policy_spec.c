/*
 * policy_spec - the Lua bindings with real Lua and real PCRE2: what a policy reads of a
 * message, what it decides and edits, and the sandbox and limits it runs under
 *
 * Each case writes a policy file into a temporary policy_dir, loads it with
 * policy_load_file() (the postern library from $SRCDIR/lua, "." without
 * SRCDIR) and runs it with policy_run() on a message in a real spool. A
 * policy reports what it saw with msg:hit("key=value"); the spec reads those
 * hits back from struct message (said()) next to the verdicts, replies and
 * header edits the run recorded there. Log lines are caught by pointing
 * stderr at a file for the duration of one run (expect_log()).
 *
 * The one case that can hang (a Lua pattern that backtracks for hours inside
 * one C call) runs in a child process under alarm(), so a failure is a "not
 * ok", never a stuck suite.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "config.h"
#include "message.h"
#include "policy.h"
#include "spool.h"
#include "util/xalloc.h"
#include "tap.h"

#define LISTENER	"ext"

static char top[] = "/tmp/postern-policy-spec-XXXXXX";
static struct config *cfg;
static struct client client;

/* the two lines every case policy starts with: the library and say() */
#define PRELUDE \
	"local P = require \"postern\"\n" \
	"local function say(msg, k, v) msg:hit(k .. \"=\" .. tostring(v)) end\n"

/* write_file - a file in the policy directory */
static void
write_file(const char *name, const char *text)
{
	char *path = xasprintf("%s/%s", top, name);
	FILE *f = fopen(path, "w");

	if (f == NULL || fwrite(text, 1, strlen(text), f) != strlen(text) || fclose(f) != 0) {
		printf("Bail out! cannot write %s: %s\n", path, strerror(errno));
		exit(1);
	}
	free(path);
}

/* load - write a policy file and load it; NULL with *error_r when it does not load */
static struct policy *
load(const char *name, const char *text, char **error_r)
{
	char *path = xasprintf("%s/%s", top, name);
	struct policy *p;

	write_file(name, text);
	*error_r = NULL;
	p = policy_load_file(cfg, path, error_r);
	free(path);
	return p;
}

/* must_load - load, or say why not and give up on the cases that need it */
static struct policy *
must_load(const char *name, const char *text)
{
	char *error;
	struct policy *p = load(name, text, &error);

	if (!ok(p != NULL, "%s loads", name))
		printf("# %s\n", error ? error : "(no error)");
	free(error);
	return p;
}

/* make_message - sender, recipients (space-separated) and the bytes in a real spool */
static struct message *
make_message(const char *sender, const char *rcpts, const char *bytes)
{
	struct message *m = message_new();
	char *list = xstrdup(rcpts), *save = NULL;

	m->sender = xstrdup(sender);
	for (char *a = strtok_r(list, " ", &save); a != NULL; a = strtok_r(NULL, " ", &save))
		message_add_rcpt(m, a);
	free(list);
	m->spool = spool_open(top);
	if (m->spool == NULL || spool_write(m->spool, bytes, strlen(bytes)) < 0 ||
	    spool_finish(m->spool) < 0) {
		printf("Bail out! cannot spool in %s: %s\n", top, strerror(errno));
		exit(1);
	}
	m->size = (long)strlen(bytes);
	return m;
}

/* run - policy_run on m from our client; *error_r NULL or the error (caller frees) */
static int
run(struct policy *p, struct message *m, char **error_r)
{
	struct policy_input in = { .m = m, .client = &client, .listener = LISTENER, .cfg = cfg };

	*error_r = NULL;
	return policy_run(p, &in, error_r);
}

/* said - the value the policy reported with say(msg, key, value), or NULL */
static const char *
said(const struct message *m, const char *key)
{
	size_t klen = strlen(key);

	for (size_t i = 0; i < m->nhits; i++)
		if (strncmp(m->hits[i].rule, key, klen) == 0 && m->hits[i].rule[klen] == '=')
			return m->hits[i].rule + klen + 1;
	return NULL;
}

/* has_hit - a hit with exactly this rule name */
static bool
has_hit(const struct message *m, const char *rule)
{
	for (size_t i = 0; i < m->nhits; i++)
		if (strcmp(m->hits[i].rule, rule) == 0)
			return true;
	return false;
}

/* contains - haystack contains needle (either may be NULL) */
static bool
contains(const char *haystack, const char *needle)
{
	return haystack != NULL && needle != NULL && strstr(haystack, needle) != NULL;
}

/* is_error - rc is -1 and the error contains want; print what came otherwise */
static void
is_error(int rc, const char *error, const char *want, const char *what)
{
	if (!ok(rc == -1 && contains(error, want), "%s", what))
		printf("# rc %d, error \"%s\", want it to contain \"%s\"\n", rc,
		       error ? error : "(null)", want);
}

/* one_run - load text, run it once on a fresh message, free both; rc and *error_r */
static int
one_run(const char *name, const char *text, const char *bytes, char **error_r)
{
	char *lerr;
	struct policy *p = load(name, text, &lerr);
	struct message *m;
	int rc;

	if (p == NULL) {
		*error_r = xasprintf("did not load: %s", lerr ? lerr : "?");
		free(lerr);
		return -2;
	}
	m = make_message("s@example.org", "r@example.net", bytes);
	rc = run(p, m, error_r);
	message_free(m);
	policy_free(p);
	return rc;
}

/* --- catching log lines: stderr into a file for one stretch */

static int saved_stderr = -1;
static FILE *log_file;

static void
log_catch(void)
{
	fflush(stderr);
	log_file = tmpfile();
	saved_stderr = dup(2);
	dup2(fileno(log_file), 2);
}

/* log_release - stderr back; returns what was logged meanwhile (caller frees) */
static char *
log_release(void)
{
	long n;
	char *s;

	fflush(stderr);
	dup2(saved_stderr, 2);
	close(saved_stderr);
	n = ftell(log_file);
	s = xmalloc((size_t)(n < 0 ? 0 : n) + 1);
	rewind(log_file);
	n = (long)fread(s, 1, (size_t)(n < 0 ? 0 : n), log_file);
	s[n] = '\0';
	fclose(log_file);
	return s;
}

/* expect_log - the caught log contains want */
static void
expect_log(const char *logged, const char *want, const char *what)
{
	if (!ok(contains(logged, want), "%s", what))
		printf("# log was \"%s\", want a line containing \"%s\"\n", logged, want);
}

/* --- the messages */

static const char plain_msg[] =
	"Received: from mx.example.org by relay.example.net\r\n"
	"From: Alice <alice@example.org>\r\n"
	"To: bob@example.net\r\n"
	"Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?= from\r\n"
	"\tthe FREE MONEY desk\r\n"
	"X-Dup: one\r\n"
	"x-dup: two\r\n"
	"Message-ID: <1@example.org>\r\n"
	"\r\n"
	"Hello.\r\n";

static const char multipart_msg[] =
	"From: alice@example.org\r\n"
	"Subject: report\r\n"
	"MIME-Version: 1.0\r\n"
	"Content-Type: multipart/mixed; boundary=\"b1\"\r\n"
	"\r\n"
	"preamble\r\n"
	"--b1\r\n"
	"Content-Type: text/plain; charset=UTF-8\r\n"
	"\r\n"
	"see attached\r\n"
	"--b1\r\n"
	"Content-Type: application/pdf; name=\"report.pdf\"\r\n"
	"Content-Disposition: attachment; filename*=UTF-8''r%C3%A9sum%C3%A9.pdf\r\n"
	"Content-Transfer-Encoding: base64\r\n"
	"\r\n"
	"JVBERi0xLjQK\r\n"
	"--b1--\r\n";

/* --- loading */

static void
shipped_policies_load(void)
{
	static const char *const names[] = { "external.lua", "outgoing.lua", "secondary.lua" };
	const char *srcdir = getenv("SRCDIR");

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		char *path = xasprintf("%s/policies/%s", srcdir ? srcdir : ".", names[i]), *error = NULL;
		struct policy *p = policy_load_file(cfg, path, &error);

		if (!ok(p != NULL, "shipped policy %s loads", names[i]))
			printf("# %s\n", error ? error : "(no error)");
		free(error);
		free(path);
		policy_free(p);
	}
}

static void
bad_policies_do_not_load(void)
{
	static const struct {
		const char *name, *text, *want, *what;
	} cases[] = {
		{ "ld_syntax.lua", "local P = require \"postern\"\nreturn P.policy {\n  function(msg\n}\n",
		  "ld_syntax.lua:4:", "a syntax error names the file and line" },
		{ "ld_number.lua", "return 42\n", "must return its chain",
		  "a policy returning a number is refused" },
		{ "ld_nopattern.lua", "local P = require \"postern\"\nreturn P.policy {\n"
		  "  P.header { field = \"Subject\" },\n}\n",
		  "ld_nopattern.lua:3: P.header: 'pattern' is required",
		  "a constructor error names the policy's line, not the library's" },
		{ "ld_badre.lua", "local P = require \"postern\"\nlocal re = P.regex(\"(unclosed\")\n"
		  "return function() end\n", "offset", "a bad PCRE2 pattern is refused with its offset" },
		{ "ld_badflag.lua", "local P = require \"postern\"\nlocal re = P.regex(\"x\", \"q\")\n"
		  "return function() end\n", "unknown regex flag", "an unknown regex flag is refused" },
		{ "ld_global.lua", "local P = require \"postern\"\nchain = P.policy {}\nreturn chain\n",
		  "ld_global.lua:2: assignment to undeclared global 'chain'",
		  "a global assignment at load is an error" },
		{ "ld_binary.lua", "\033Lua\x54\x00 not really bytecode", "binary",
		  "a binary chunk is refused" },
		{ "ld_loop.lua", "while true do end\n", "limit reached",
		  "an endless loop at load hits a limit" },
		{ "ld_badcidr.lua", "local P = require \"postern\"\nlocal n = P.cidr { \"10.0.0.0/8\", "
		  "\"300.1.2.3\" }\nreturn function() end\n", "entry 2 (300.1.2.3) is not a network",
		  "a bad network is refused, naming the entry" },
		{ "ld_noreq.lua", "local x = require \"../etc/passwd\"\n", "dotted words",
		  "require refuses a path" },
		/* verdicts are checked where they are made, with the rules of the chain's result */
		{ "ld_onmatch451.lua", "local P = require \"postern\"\nreturn P.policy {\n"
		  "  P.header { pattern = \"x\", on_match = P.reject { code = 451 } },\n}\n",
		  "ld_onmatch451.lua:3: P.reject: code must be 5xx",
		  "P.reject{ code = 451 } is a load error naming the line" },
		{ "ld_onkill451.lua", "local P = require \"postern\"\nreturn P.policy {\n"
		  "  P.score { on_kill = { verdict = \"reject\", code = 451 } },\n}\n",
		  "on_kill: code must be 5xx", "a hand-made verdict table is checked too" },
		{ "ld_badenh.lua", "local P = require \"postern\"\nlocal V = P.tempfail { enh = \"4.-1.2\" }\n"
		  "return function() return V end\n", "ld_badenh.lua:2: P.tempfail: enh must be",
		  "a bad enh is a load error" },
		{ "ld_cidrkeys.lua", "local P = require \"postern\"\nlocal n = P.cidr { a = \"10.0.0.0/8\" }\n"
		  "return function() end\n", "(a) is not a network",
		  "P.cidr with a key that is not a network is refused, not an empty list" },
	};
	long timeout = cfg->policy_timeout_ms;

	cfg->policy_timeout_ms = 500;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *error;
		struct policy *p = load(cases[i].name, cases[i].text, &error);

		if (!ok(p == NULL && contains(error, cases[i].want), "load: %s", cases[i].what))
			printf("# loaded: %s, error \"%s\", want \"%s\"\n", p ? "yes" : "no",
			       error ? error : "(null)", cases[i].want);
		free(error);
		policy_free(p);
	}
	cfg->policy_timeout_ms = timeout;
}

/* --- reading the message */

static void
msg_reads_header_envelope_and_client(void)
{
	struct policy *p = must_load("read.lua", PRELUDE
		"return P.policy { function(msg)\n"
		"  say(msg, 'decoded', msg:header('subject'))\n"
		"  say(msg, 'unfolded', msg:header('Subject', 'unfolded'))\n"
		"  say(msg, 'raw', msg:header('SUBJECT', 'raw'))\n"
		"  say(msg, 'missing', msg:header('X-None'))\n"
		"  say(msg, 'dups', table.concat(msg:headers('X-DUP'), '|'))\n"
		"  say(msg, 'none', #msg:headers('X-None'))\n"
		"  say(msg, 'names', table.concat(msg:header_names(), ','))\n"
		"  local c = msg.client\n"
		"  say(msg, 'client', table.concat({ c.ip, tostring(c.name), c.helo, c.proto,\n"
		"      tostring(c.login), tostring(c.port), c.peer }, ' '))\n"
		"  say(msg, 'sender', msg.sender)\n"
		"  say(msg, 'listener', msg.listener)\n"
		"  say(msg, 'size', msg.size)\n"
		"  say(msg, 'id', msg.id)\n"
		"  say(msg, 'broken', msg.broken)\n"
		"  local r = {}\n"
		"  for _, x in ipairs(msg.recipients) do\n"
		"    r[#r + 1] = x.address .. '/' .. x['local'] .. '/' .. x.domain .. '/' .. tostring(x.verdict)\n"
		"  end\n"
		"  say(msg, 'rcpts', table.concat(r, ' '))\n"
		"  say(msg, 'same', msg.recipients == msg.recipients and msg.client == msg.client)\n"
		"  say(msg, 'tostring', tostring(msg.recipients[1]))\n"
		"  local body, more = msg:body()\n"
		"  say(msg, 'body', body)\n"
		"  say(msg, 'body3', table.concat({ tostring(msg:body(3)), tostring(select(2, msg:body(3))) }, ' '))\n"
		"end }\n");
	struct message *m;
	char *error;

	if (p == NULL)
		return;
	m = make_message("alice@example.org", "Bob@Example.NET postmaster", plain_msg);
	is_int(run(p, m, &error), 0, "the reading policy runs");
	if (error)
		printf("# %s\n", error);
	is_str(said(m, "decoded"), "Grüße from\tthe FREE MONEY desk",
	       "msg:header decodes RFC 2047 and unfolds (CRLF removed, WSP kept), any case of the name");
	is_str(said(m, "unfolded"), "=?UTF-8?Q?Gr=C3=BC=C3=9Fe?= from\tthe FREE MONEY desk",
	       "mode unfolded: folds removed, words kept");
	is_str(said(m, "raw"), " =?UTF-8?Q?Gr=C3=BC=C3=9Fe?= from\r\n\tthe FREE MONEY desk",
	       "mode raw: as received, folds and all, without the final CRLF");
	is_str(said(m, "missing"), "nil", "a missing field is nil");
	is_str(said(m, "dups"), "one|two", "msg:headers gives every field of the name, in order");
	is_str(said(m, "none"), "0", "msg:headers of a missing field is an empty table");
	is_str(said(m, "names"), "Received,From,To,Subject,X-Dup,x-dup,Message-ID",
	       "msg:header_names lists the names as written, in order");
	is_str(said(m, "client"), "192.0.2.7 mx.example.org [192.0.2.7] ESMTP alice 4242 127.0.0.1",
	       "msg.client comes from XFORWARD, peer is the MTA");
	is_str(said(m, "sender"), "alice@example.org", "msg.sender");
	is_str(said(m, "listener"), LISTENER, "msg.listener");
	is_int(atoi(said(m, "size") ? said(m, "size") : "-1"), (long long)strlen(plain_msg), "msg.size");
	is_str(said(m, "id"), m->id, "msg.id is the mail id");
	is_str(said(m, "broken"), "nil", "msg.broken is nil for a well-formed message");
	is_str(said(m, "rcpts"), "Bob@Example.NET/Bob/example.net/nil postmaster/postmaster//nil",
	       "recipients: address as given, local part, domain in lower case, no verdict yet");
	is_str(said(m, "same"), "true", "msg.recipients and msg.client are cached per message");
	is_str(said(m, "tostring"), "rcpt <Bob@Example.NET>", "tostring(rcpt)");
	is_str(said(m, "body"), "Hello.\r\n", "msg:body() is the body as received");
	is_str(said(m, "body3"), "Hel true", "msg:body(limit) truncates and says so");
	is_int(m->rcpts[0].decided, 0, "reading decides nothing");
	message_free(m);
	policy_free(p);
}

static void
client_without_xforward(void)
{
	struct client bare = { .ip = "198.51.100.9", .port = 2525 };
	struct policy *p = must_load("bare.lua", PRELUDE
		"return function(msg)\n"
		"  local c = msg.client\n"
		"  say(msg, 'client', table.concat({ c.ip, tostring(c.name), tostring(c.helo),\n"
		"      tostring(c.login), tostring(c.port), c.peer }, ' '))\n"
		"end\n");
	struct message *m;
	struct policy_input in;
	char *error = NULL;

	if (p == NULL)
		return;
	bare.helo = xstrdup("peer.example");
	m = make_message("", "r@example.net", plain_msg);
	in = (struct policy_input){ .m = m, .client = &bare, .listener = LISTENER, .cfg = cfg };
	is_int(policy_run(p, &in, &error), 0, "runs without XFORWARD");
	is_str(said(m, "client"), "198.51.100.9 nil peer.example nil 2525 198.51.100.9",
	       "without XFORWARD, ip, helo and port are the peer's; name and login are nil");
	free(error);
	client_release(&bare);
	message_free(m);
	policy_free(p);
}

/* --- deciding */

static void
recipients_take_verdicts_and_replies(void)
{
	struct policy *p = must_load("decide.lua", PRELUDE
		"return P.policy {\n"
		"  function(msg)\n"
		"    local r = msg.recipients\n"
		"    say(msg, 'first', r[1]:reject('no such user', 550, '5.1.1'))\n"
		"    say(msg, 'again', r[1]:pass())\n"
		"    say(msg, 'verdict', r[1].verdict)\n"
		"    r[2]:tempfail()\n"
		"    r[3]:reject { text = 'policy says no', code = 553 }\n"
		"    r[4]:quarantine('virus Eicar')\n"
		"    r[5]:reject('Gr\\195\\188\\195\\159e')\n"
		"  end,\n"
		"  function(msg) return P.reject('spam') end,\n"
		"  function(msg) say(msg, 'after_verdict', 'ran') end,\n"
		"}\n");
	struct message *m;
	char *error;

	if (p == NULL)
		return;
	m = make_message("s@example.org",
			 "a@example.net b@example.net c@example.net d@example.net e@example.net f@example.net",
			 plain_msg);
	is_int(run(p, m, &error), 0, "the deciding policy runs");
	if (error)
		printf("# %s\n", error);
	is_str(said(m, "first"), "true", "rcpt:reject returns true when it decided");
	is_str(said(m, "again"), "false", "a decided recipient cannot be decided again");
	is_str(said(m, "verdict"), "reject", "rcpt.verdict reads the decision");
	is_int(m->rcpts[0].verdict, VERDICT_REJECT, "a: reject");
	is_str(m->rcpts[0].policy_reply, "550 5.1.1 no such user", "a: text, code and enh");
	is_int(m->rcpts[1].verdict, VERDICT_TEMPFAIL, "b: tempfail");
	is_str(m->rcpts[1].policy_reply, "451 4.7.1 Try again later", "b: the tempfail default");
	is_str(m->rcpts[2].policy_reply, "553 5.7.1 policy says no", "c: a table with a code");
	is_int(m->rcpts[3].verdict, VERDICT_QUARANTINE, "d: quarantine");
	is_str(m->rcpts[3].policy_reply, "virus Eicar", "d: the quarantine reason");
	is_str(m->rcpts[4].policy_reply, "554 5.7.1 Gr????e", "e: non-ASCII reply text becomes '?'");
	is_int(m->rcpts[5].verdict, VERDICT_REJECT, "f: the chain's verdict decides the undecided");
	is_str(m->rcpts[5].policy_reply, "554 5.7.1 spam", "f: P.reject(text) with the default code");
	ok(said(m, "after_verdict") == NULL, "rules after a verdict do not run");
	for (size_t i = 0; i < m->nrcpts; i++)
		ok(m->rcpts[i].decided, "recipient %zu is decided", i + 1);
	message_free(m);
	policy_free(p);
}

/* rcpt:reject(tbl) decides with a copy: a shared verdict table keeps its own verdict */
static void
rcpt_verdict_methods_leave_the_table_alone(void)
{
	struct policy *p = must_load("shared.lua", PRELUDE
		"local LATER = P.tempfail('try later')\n"
		"return function(msg)\n"
		"  msg.recipients[1]:reject(LATER)\n"
		"  say(msg, 'shared', LATER.verdict)\n"
		"  return LATER\n"
		"end\n");
	struct message *m;
	char *error;

	if (p == NULL)
		return;
	for (int round = 1; round <= 2; round++) {
		m = make_message("s@example.org", "a@example.net b@example.net", plain_msg);
		is_int(run(p, m, &error), 0, "shared verdict table, message %d: runs", round);
		if (error)
			printf("# %s\n", error);
		is_str(said(m, "shared"), "tempfail", "message %d: rcpt:reject(LATER) leaves "
		       "LATER.verdict as it was", round);
		is_str(m->rcpts[0].policy_reply, "554 5.7.1 try later",
		       "message %d: a: rejected with LATER's text", round);
		is_int(m->rcpts[1].verdict, VERDICT_TEMPFAIL, "message %d: b: LATER still defers", round);
		message_free(m);
	}
	policy_free(p);
}

/* 400 x's: the longest reply text */
#define REP40	"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
#define REP400	REP40 REP40 REP40 REP40 REP40 REP40 REP40 REP40 REP40 REP40

static void
chain_results(void)
{
	static const struct {
		const char *ret;
		int	rc;
		enum verdict v;
		const char *reply, *want_error, *what;
	} cases[] = {
		{ "nil", 0, VERDICT_PASS, NULL, NULL, "nil: every recipient passes" },
		{ "'discard'", 0, VERDICT_DISCARD, NULL, NULL, "\"discard\"" },
		{ "P.quarantine('spam')", 0, VERDICT_QUARANTINE, "spam", NULL, "P.quarantine(reason)" },
		{ "P.tempfail { text = 'later', code = 421, enh = '4.3.2' }", 0, VERDICT_TEMPFAIL,
		  "421 4.3.2 later", NULL, "P.tempfail{...}" },
		{ "{ verdict = 'reject' }", 0, VERDICT_REJECT, "554 5.7.1 Message rejected by policy",
		  NULL, "a plain verdict table, reject's default reply" },
		{ "42", -1, VERDICT_PASS, NULL, "the chain returned number", "a number is an error" },
		{ "'bounce'", -1, VERDICT_PASS, NULL, "a verdict is", "an unknown verdict is an error" },
		{ "{ verdict = 'pass!' }", -1, VERDICT_PASS, NULL, "a verdict is",
		  "a table with an unknown verdict is an error" },
		{ "P.reject { code = 450 }", -1, VERDICT_PASS, NULL, "5xx for reject",
		  "reject with a 4xx code is an error" },
		{ "P.tempfail { code = 451, enh = '5.7.1' }", -1, VERDICT_PASS, NULL, "enhanced status",
		  "an enh of the wrong class is an error" },
		/* reply text often quotes the message (a file name): cut and made printable, never
		 * an error, or the message would be deferred for ever */
		{ "P.reject(('x'):rep(401))", 0, VERDICT_REJECT, "554 5.7.1 " REP400,
		  NULL, "an overlong reply text is cut at 400 bytes" },
		{ "P.reject('two\\r\\nlines')", 0, VERDICT_REJECT, "554 5.7.1 two??lines", NULL,
		  "CR and LF in a reply text become ?" },
		/* the result is read after the limits are off: no metamethod may run then */
		{ "setmetatable({}, { __index = function() error('boom') end })", -1, VERDICT_PASS,
		  NULL, "a verdict is", "a table whose __index raises is read raw: an error, no crash" },
		{ "setmetatable({}, { __index = function() return 'reject' end })", -1, VERDICT_PASS,
		  NULL, "a verdict is", "a verdict table's __index is not called" },
		{ "P.reject { code = 'abc' }", -1, VERDICT_PASS, NULL, "whole number",
		  "a code that is not a number is an error, not the default" },
		{ "P.reject { code = 550.5 }", -1, VERDICT_PASS, NULL, "whole number",
		  "a fractional code is an error" },
		{ "P.tempfail { code = 0 }", -1, VERDICT_PASS, NULL, "4xx for tempfail",
		  "code 0 is an error, not the default" },
		{ "P.reject { enh = '5.-1.+2' }", -1, VERDICT_PASS, NULL, "enhanced status",
		  "an enh with signs is an error" },
		{ "P.reject { enh = '5. 7. 1' }", -1, VERDICT_PASS, NULL, "enhanced status",
		  "an enh with blanks is an error" },
		{ "P.reject { enh = '5.07.1' }", -1, VERDICT_PASS, NULL, "enhanced status",
		  "an enh with a leading zero is an error (RFC 3463)" },
		{ "P.reject { text = {} }", -1, VERDICT_PASS, NULL, "text must be a string",
		  "a table as text is an error" },
		{ "P.reject { code = 550.0, enh = '5.7.10', text = 42 }", 0, VERDICT_REJECT,
		  "550 5.7.10 42", NULL, "a whole float code, a two-digit detail and a number as text" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *text = xasprintf(PRELUDE "return P.policy { function(msg) return %s end }\n",
				       cases[i].ret), *error;
		struct policy *p = load("result.lua", text, &error);
		struct message *m;
		int rc;

		free(text);
		if (!ok(p != NULL, "result %s: loads", cases[i].ret)) {
			printf("# %s\n", error);
			free(error);
			continue;
		}
		m = make_message("s@example.org", "a@example.net b@example.net", plain_msg);
		rc = run(p, m, &error);
		if (cases[i].rc == 0) {
			if (!ok(rc == 0 && m->rcpts[0].verdict == cases[i].v && m->rcpts[1].verdict ==
				cases[i].v, "result: %s", cases[i].what))
				printf("# rc %d (%s), verdicts %d %d, want %d\n", rc, error ? error : "",
				       m->rcpts[0].verdict, m->rcpts[1].verdict, cases[i].v);
			if (cases[i].reply != NULL)
				is_str(m->rcpts[1].policy_reply, cases[i].reply, "result: %s: reply",
				       cases[i].what);
		} else {
			is_error(rc, error, cases[i].want_error, cases[i].what);
		}
		free(error);
		message_free(m);
		policy_free(p);
	}
}

static void
all_decided_ignores_added_copies(void)
{
	struct policy *p = must_load("alldec.lua", PRELUDE
		"return function(msg)\n"
		"  local r = msg.recipients\n"
		"  say(msg, 'start', msg:all_decided())\n"
		"  r[1]:reject()\n"
		"  say(msg, 'one', msg:all_decided())\n"
		"  msg:add_recipient('archive@example.net')\n"
		"  r[2]:pass()\n"
		"  say(msg, 'both', msg:all_decided())\n"
		"end\n");
	struct message *m;
	char *error;

	if (p == NULL)
		return;
	m = make_message("s@example.org", "a@example.net b@example.net", plain_msg);
	is_int(run(p, m, &error), 0, "the all_decided policy runs");
	free(error);
	is_str(said(m, "start"), "false", "msg:all_decided() is false before any decision");
	is_str(said(m, "one"), "false", "... and while one recipient is open");
	is_str(said(m, "both"), "true", "... and true once every MTA recipient is decided, added copies aside");
	message_free(m);
	policy_free(p);
}

/* --- editing */

static void
edits_land_in_the_message(void)
{
	struct policy *p = must_load("edit.lua", PRELUDE
		"return function(msg)\n"
		"  msg:add_header('X-Added', 'yes')\n"
		"  msg:remove_header('X-Dup')\n"
		"  msg:replace_header('X-Replaced', 'new')\n"
		"  msg:tag_subject('[tag] ')\n"
		"  local r = msg.recipients[2]\n"
		"  r:add_header('X-Only', 'b')\n"
		"  r:tag_subject('***SPAM*** ')\n"
		"  r:remove_header('X-Gone')\n"
		"  r:replace_header('X-Set', 'v')\n"
		"  msg.recipients[1]:redirect('other@example.net')\n"
		"  local added = msg:add_recipient('archive@example.net')\n"
		"  added:add_header('X-Archive', '1')\n"
		"  say(msg, 'count', #msg.recipients)\n"
		"  say(msg, 'added', tostring(added.added) .. ' ' .. tostring(added.verdict))\n"
		"  say(msg, 'score', msg:add_score(1.5, 'one'))\n"
		"  msg:add_score(-0.25, 'two')\n"
		"  msg:hit('three')\n"
		"  say(msg, 'total', msg.score)\n"
		"  local h = {}\n"
		"  for _, x in ipairs(msg.hits) do\n"
		"    if not x.rule:find('=', 1, true) then h[#h + 1] = x.rule .. ':' .. x.score end\n"
		"  end\n"
		"  say(msg, 'hits', table.concat(h, ','))\n"
		"end\n");
	struct message *m;
	char *error;

	if (p == NULL)
		return;
	m = make_message("s@example.org", "a@example.net b@example.net", plain_msg);
	is_int(run(p, m, &error), 0, "the editing policy runs");
	if (error)
		printf("# %s\n", error);
	if (ok(m->edits.n == 4, "four message edits")) {
		ok(m->edits.v[0].op == EDIT_ADD && strcmp(m->edits.v[0].name, "X-Added") == 0 &&
		   strcmp(m->edits.v[0].value, "yes") == 0, "msg:add_header records EDIT_ADD");
		ok(m->edits.v[1].op == EDIT_REMOVE && strcmp(m->edits.v[1].name, "X-Dup") == 0 &&
		   m->edits.v[1].value == NULL, "msg:remove_header records EDIT_REMOVE");
		ok(m->edits.v[2].op == EDIT_REPLACE && strcmp(m->edits.v[2].value, "new") == 0,
		   "msg:replace_header records EDIT_REPLACE");
		ok(m->edits.v[3].op == EDIT_SUBJECT_TAG && strcmp(m->edits.v[3].name, "Subject") == 0 &&
		   strcmp(m->edits.v[3].value, "[tag] ") == 0, "msg:tag_subject records EDIT_SUBJECT_TAG");
	} else
		printf("# got %zu\n", m->edits.n);
	is_int(m->rcpts[0].edits.n, 0, "the first recipient has no edits of its own");
	if (ok(m->rcpts[1].edits.n == 4, "the second recipient has four")) {
		ok(m->rcpts[1].edits.v[0].op == EDIT_ADD && strcmp(m->rcpts[1].edits.v[0].name, "X-Only") == 0,
		   "rcpt:add_header");
		ok(m->rcpts[1].edits.v[1].op == EDIT_SUBJECT_TAG &&
		   strcmp(m->rcpts[1].edits.v[1].value, "***SPAM*** ") == 0, "rcpt:tag_subject");
		ok(m->rcpts[1].edits.v[2].op == EDIT_REMOVE, "rcpt:remove_header");
		ok(m->rcpts[1].edits.v[3].op == EDIT_REPLACE, "rcpt:replace_header");
	}
	is_str(m->rcpts[0].forward_to, "other@example.net", "rcpt:redirect sets forward_to");
	is_int(m->nrcpts, 3, "msg:add_recipient adds a recipient");
	if (m->nrcpts == 3) {
		is_str(m->rcpts[2].addr, "archive@example.net", "... with that address");
		ok(m->rcpts[2].added && m->rcpts[2].decided && m->rcpts[2].verdict == VERDICT_PASS,
		   "... added, decided, passing");
		ok(m->rcpts[2].edits.n == 1, "... and it takes edits of its own");
	}
	is_str(said(m, "count"), "3", "msg.recipients grows with it");
	is_str(said(m, "added"), "true pass", "the added rcpt reads added = true, verdict pass");
	is_str(said(m, "score"), "1.5", "msg:add_score returns the new score");
	is_str(said(m, "total"), "1.25", "msg.score sums the points");
	is_str(said(m, "hits"), "one:1.5,two:-0.25,three:0.0", "msg.hits lists rule and score, in order");
	ok(m->score == 1.25, "struct message has the score");
	ok(has_hit(m, "one") && has_hit(m, "two") && has_hit(m, "three"), "struct message has the hits");
	message_free(m);
	policy_free(p);
}

static void
bad_edits_are_errors(void)
{
	static const struct {
		const char *call, *want, *what;
	} cases[] = {
		{ "msg:add_header('X-A', 'one\\r\\nX-Forged: yes')", "one line", "a value with CRLF" },
		{ "msg:add_header('X-A', 'a\\0b')", "one line", "a value with NUL" },
		{ "msg:add_header('X A', 'v')", "without ':'", "a name with a space" },
		{ "msg:add_header('X-A:', 'v')", "without ':'", "a name with a colon" },
		{ "msg:add_header('', 'v')", "1 to 128", "an empty name" },
		{ "msg:add_header('X-A', ('v'):rep(8193))", "too long", "an overlong value" },
		{ "msg.recipients[1]:redirect('<x@example.net>')", "<>", "a redirect address with <>" },
		{ "msg:add_recipient('a b@example.net')", "without spaces", "an added address with a space" },
		{ "msg:add_score(0/0, 'nan')", "finite", "a NaN score" },
		{ "msg:header('Subject', 'cooked')", "invalid option", "an unknown header mode" },
		{ "msg.recipients[1]:reject('x', 450)", "5xx", "rcpt:reject with a 4xx code" },
		/* the argument named is the one at fault: #1 text, #2 code, #3 enh */
		{ "msg.recipients[1]:reject('x', 250)", "bad argument #2 to 'reject' (code",
		  "rcpt:reject: a bad code is argument #2" },
		{ "msg.recipients[1]:tempfail('x', 451, '5.1.1')", "bad argument #3 to 'tempfail' (enh",
		  "rcpt:tempfail: a bad enh is argument #3" },
		{ "msg.recipients[1]:reject({ code = 250 })", "bad argument #1 to 'reject' (code",
		  "rcpt:reject: a bad table is argument #1" },
		{ "msg.header(nil, 'Subject')", "postern.msg expected", "a method without its object" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *text = xasprintf(PRELUDE "return function(msg)\n  %s\nend\n", cases[i].call), *error;
		int rc = one_run("badedit.lua", text, plain_msg, &error);

		free(text);
		is_error(rc, error, cases[i].want, cases[i].what);
		ok(contains(error, "badedit.lua:4:"), "%s: the error names the policy's line", cases[i].what);
		free(error);
	}
}

/* --- MIME parts */

static void
parts_and_content(void)
{
	struct policy *p = must_load("parts.lua", PRELUDE
		"return function(msg)\n"
		"  local parts = msg:parts()\n"
		"  say(msg, 'n', #parts)\n"
		"  local t = {}\n"
		"  for _, x in ipairs(parts) do\n"
		"    t[#t + 1] = table.concat({ x.index, x.parent, x.depth, x.content_type,\n"
		"      tostring(x.filename), tostring(x.disposition), x.encoding, tostring(x.is_multipart) }, ':')\n"
		"  end\n"
		"  say(msg, 'parts', table.concat(t, ' '))\n"
		"  say(msg, 'charset', parts[2].charset)\n"
		"  local c, more = parts[3]:content()\n"
		"  say(msg, 'content', c .. '|' .. tostring(more))\n"
		"  c, more = parts[3]:content(4)\n"
		"  say(msg, 'content4', c .. '|' .. tostring(more))\n"
		"  say(msg, 'text', (parts[2]:content()))\n"
		"  say(msg, 'size', parts[3].size)\n"
		"end\n");
	struct message *m;
	char *error;

	if (p == NULL)
		return;
	m = make_message("s@example.org", "r@example.net", multipart_msg);
	is_int(run(p, m, &error), 0, "the parts policy runs");
	if (error)
		printf("# %s\n", error);
	is_str(said(m, "n"), "3", "msg:parts lists the message and its two parts");
	is_str(said(m, "parts"),
	       "0:0:0:multipart/mixed:nil:nil:7bit:true "
	       "1:0:1:text/plain:nil:nil:7bit:false "
	       "2:0:1:application/pdf:résumé.pdf:attachment:base64:false",
	       "each part: index, parent, depth, type, filename (RFC 2231, UTF-8), disposition, encoding");
	is_str(said(m, "charset"), "utf-8", "charset in lower case");
	is_str(said(m, "content"), "%PDF-1.4\n|false", "part:content() undoes base64");
	is_str(said(m, "content4"), "%PDF|true", "part:content(limit) truncates and says so");
	is_str(said(m, "text"), "see attached", "a 7bit part's content is its body");
	is_str(said(m, "size"), "12", "part.size: the body as received, without the CRLF before the boundary");
	message_free(m);
	policy_free(p);
}

/* --- patterns and networks */

static void
regex_and_cidr(void)
{
	struct policy *p = must_load("re.lua", PRELUDE
		"local re = P.regex([[(\\w+)@(\\w+)(?:\\.(org))?(x)?]])\n"
		"local ci = P.regex('^free money$', 'i')\n"
		"local dot = P.regex('^.$')\n"
		"local bad = P.regex('^(a|aa)+$')\n"
		"local nets = P.cidr { '192.0.2.0/24', '2001:db8::/32', '10.1.2.3' }\n"
		"local one = P.cidr '172.16.0.0/12'\n"
		"return function(msg)\n"
		"  say(msg, 'match', table.concat({ tostring(re:match('mail alice@example.org now')) }, ''))\n"
		"  local ok, a, b, c, d = re:match('alice@example.org')\n"
		"  say(msg, 'captures', table.concat({ tostring(ok), a, b, c, tostring(d) }, ' '))\n"
		"  say(msg, 'nomatch', select('#', re:match('nothing here')) .. ' ' .. tostring(re:match('nothing here')))\n"
		"  say(msg, 'find', table.concat({ re:find('to: bob@host') }, ' '))\n"
		"  say(msg, 'nofind', tostring(re:find('none')))\n"
		"  say(msg, 'caseless', tostring(ci:match('FREE Money')))\n"
		"  say(msg, 'utf8', tostring(dot:match('\\195\\188')))\n"
		"  say(msg, 'invalid_utf8', tostring(P.regex('abc'):match('\\255 abc')))\n"
		"  local r, err = bad:match(('a'):rep(64) .. 'b')\n"
		"  say(msg, 'limit', tostring(r) .. ' ' .. tostring(err))\n"
		"  local s, e, ferr = bad:find(('a'):rep(64) .. 'b')\n"
		"  say(msg, 'findlimit', tostring(s) .. ' ' .. tostring(ferr or e))\n"
		"  say(msg, 'retostring', tostring(ci))\n"
		"  local t = {}\n"
		"  for _, ip in ipairs({ '192.0.2.77', '192.0.3.1', '2001:db8::1', '[2001:db8::1]',\n"
		"      'IPv6:2001:db8::1', '2001:db9::1', '10.1.2.3', '10.1.2.4', 'garbage', '' }) do\n"
		"    t[#t + 1] = tostring(nets:match(ip))\n"
		"  end\n"
		"  say(msg, 'cidr', table.concat(t, ' '))\n"
		"  say(msg, 'cidr1', tostring(one:match('172.31.255.255')) .. ' ' .. tostring(one:match('172.32.0.1')))\n"
		"  say(msg, 'cidrnil', tostring(nets:match()))\n"
		"end\n");
	struct message *m;
	char *error;

	if (p == NULL)
		return;
	m = make_message("s@example.org", "r@example.net", plain_msg);
	is_int(run(p, m, &error), 0, "the regex policy runs");
	if (error)
		printf("# %s\n", error);
	is_str(said(m, "match"), "true", "re:match finds a match anywhere");
	is_str(said(m, "captures"), "true alice example org false",
	       "re:match returns true and the captures, false for a group that took no part");
	is_str(said(m, "nomatch"), "1 false", "no match: false alone");
	is_str(said(m, "find"), "5 12", "re:find gives 1-based inclusive bounds");
	is_str(said(m, "nofind"), "nil", "re:find without a match: nil");
	is_str(said(m, "caseless"), "true", "flag i");
	is_str(said(m, "utf8"), "true", "UTF mode: one character of two bytes is one '.'");
	is_str(said(m, "invalid_utf8"), "true", "invalid UTF-8 in the subject is tolerated");
	is_str(said(m, "limit"), "nil regex /^(a|aa)+$/: match limit reached",
	       "a pathological match returns nil and a message, not false");
	is_str(said(m, "findlimit"), "nil regex /^(a|aa)+$/: match limit reached",
	       "re:find on the match limit: nil and a message");
	is_str(said(m, "retostring"), "regex /^free money$/", "tostring(regex)");
	is_str(said(m, "cidr"), "true false true true true false true false false false",
	       "cidr:match: IPv4, IPv6, [..] and IPv6: forms, single addresses, junk is false");
	is_str(said(m, "cidr1"), "true false", "P.cidr of one string");
	is_str(said(m, "cidrnil"), "false", "cidr:match(nil) is false");
	message_free(m);
	policy_free(p);
}

static void
header_rule_with_pcre(void)
{
	struct policy *p = must_load("hdr.lua", PRELUDE
		"return P.policy {\n"
		"  P.header { field = 'Subject', pattern = [[\\bfree money\\b]], flags = 'i', score = 3.0 },\n"
		"  P.header { field = 'Subject', pattern = [[=\\?UTF-8\\?Q]], mode = 'raw', name = 'raw_word' },\n"
		"  P.header { field = 'Subject', pattern = [[=\\?UTF-8\\?Q]], name = 'decoded_word' },\n"
		"  P.header { pattern = [[(?i)^x-dup: two$]], score = 0.5, name = 'any_field' },\n"
		"  P.header { field = { 'To', 'Cc' }, pattern = [[^(a|aa)+$]], name = 'catastrophic' },\n"
		"  P.header { field = 'X-None', pattern = 'x', on_match = 'reject', name = 'absent' },\n"
		"  P.header { field = 'From', pattern = 'alice', on_match = P.reject { code = 550, text = 'no' } },\n"
		"  function(msg) say(msg, 'after', 'ran') end,\n"
		"}\n");
	struct message *m;
	char *error, *logged;
	int rc;

	if (p == NULL)
		return;
	m = make_message("s@example.org", "r@example.net",
			 "From: alice@example.org\r\n"
			 "To: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab\r\n"
			 "Subject: =?UTF-8?Q?FREE_money?= inside\r\n"
			 "X-Dup: one\r\nx-dup: two\r\n\r\nbody\r\n");
	log_catch();
	rc = run(p, m, &error);
	logged = log_release();
	is_int(rc, 0, "the header policy runs");
	if (error)
		printf("# %s\n", error);
	ok(has_hit(m, "header:Subject") && m->score == 3.5,
	   "P.header scores on the decoded Subject and on the Nth field of any name");
	ok(has_hit(m, "raw_word"), "mode raw sees the encoded word");
	ok(!has_hit(m, "decoded_word"), "the default mode sees the decoded text");
	ok(has_hit(m, "any_field"), "no field: every field as \"Name: value\", duplicates included");
	ok(!has_hit(m, "catastrophic"), "a match that hits the match limit counts as no match");
	expect_log(logged, "catastrophic: regex /^(a|aa)+$/: match limit reached",
		   "... and is logged with the rule's name and the mail id");
	expect_log(logged, m->id, "... the log line carries the mail id");
	ok(!has_hit(m, "absent"), "a missing field does not match");
	is_int(m->rcpts[0].verdict, VERDICT_REJECT, "on_match with a P.reject table ends the chain");
	is_str(m->rcpts[0].policy_reply, "550 5.7.1 no", "... with its reply");
	ok(said(m, "after") == NULL, "rules after it do not run");
	free(logged);
	message_free(m);
	policy_free(p);
}

static void
msg_log_escapes(void)
{
	struct policy *p = must_load("log.lua", PRELUDE
		"return function(msg) msg:log('hello', 42, nil, 'a\\r\\nforged: line') ; warn('careful')\n"
		"  warn('one ', 'line ', 'in pieces') ; warn('spamd said\\r\\nforged: too\\xc2\\x85') end\n");
	struct message *m;
	char *error, *logged;

	if (p == NULL)
		return;
	m = make_message("s@example.org", "r@example.net", plain_msg);
	log_catch();
	is_int(run(p, m, &error), 0, "the logging policy runs");
	logged = log_release();
	free(error);
	expect_log(logged, "policy " LISTENER ": hello 42 nil a\\x0d\\x0aforged: line",
		   "msg:log joins its arguments, names the listener and escapes CR LF");
	expect_log(logged, m->id, "msg:log names the mail id");
	ok(strstr(logged, "\nforged") == NULL, "no forged log line");
	expect_log(logged, "careful", "warn() goes to the log");
	expect_log(logged, "policy warning: one line in pieces", "warn(a, b, c) is one log line");
	expect_log(logged, "policy warning: spamd said\\x0d\\x0aforged: too\\xc2\\x85",
		   "warn() escapes CR LF and C1 controls, as msg:log does");
	free(logged);
	message_free(m);
	policy_free(p);
}

/* --- sandbox */

static void
sandbox_refuses(void)
{
	static const struct {
		const char *name, *stmt, *want, *what;
	} cases[] = {
		{ "sb_exec.lua", "os.execute('true')", "execute", "os.execute is absent" },
		{ "sb_exit.lua", "os.exit(1)", "exit", "os.exit is absent" },
		{ "sb_getenv.lua", "local h = os.getenv('HOME')", "getenv", "os.getenv is absent" },
		{ "sb_remove.lua", "os.remove('/tmp/x')", "remove", "os.remove is absent" },
		{ "sb_io.lua", "io.open('/etc/passwd')", "undeclared global 'io'", "io is absent" },
		{ "sb_debug.lua", "debug.getinfo(1)", "undeclared global 'debug'", "debug is absent" },
		{ "sb_load.lua", "load('return 1')", "undeclared global 'load'", "load is absent" },
		{ "sb_loadstr.lua", "local f = loadstring('return 1')", "undeclared global 'loadstring'",
		  "loadstring is absent" },
		{ "sb_dofile.lua", "dofile('/etc/passwd')", "undeclared global 'dofile'", "dofile is absent" },
		{ "sb_loadfile.lua", "loadfile('/etc/passwd')", "undeclared global 'loadfile'",
		  "loadfile is absent" },
		{ "sb_gc.lua", "collectgarbage()", "undeclared global 'collectgarbage'",
		  "collectgarbage is absent" },
		{ "sb_package.lua", "local p = package.loaded", "undeclared global 'package'",
		  "package is absent" },
		{ "sb_reqos.lua", "local os2 = require 'os'", "os.lua", "require \"os\" finds no module" },
		{ "sb_reqio.lua", "local io2 = require 'io'", "io.lua", "require \"io\" finds no module" },
		{ "sb_dump.lua", "local s = string.dump(function() end)", "dump",
		  "string.dump is absent (bytecode is never loadable here)" },
		{ "sb_strmeta.lua", "local t = getmetatable('').__index", "index a boolean",
		  "the string metatable is out of reach" },
		{ "sb_envmeta.lua", "setmetatable(_ENV, nil)", "protected metatable",
		  "the environment's metatable cannot be removed" },
		{ "sb_msgmeta.lua", "local mt = getmetatable(msg).__index", "index a boolean",
		  "the msg metatable is out of reach" },
		{ "sb_read.lua", "local x = undeclared_thing", "read of undeclared global 'undeclared_thing'",
		  "reading an undeclared global is an error" },
		{ "sb_write.lua", "counter = 1", "assignment to undeclared global 'counter'",
		  "assigning an undeclared global is an error" },
		{ "sb_gcmeta.lua", "setmetatable({}, { __gc = function() while true do end end })", "__gc",
		  "finalizers are refused" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *text = xasprintf("local P = require \"postern\"\n"
				       "return P.policy { function(msg)\n"
				       "  %s\n"
				       "end }\n", cases[i].stmt), *error;
		char *where = xasprintf("%s:3:", cases[i].name);
		int rc = one_run(cases[i].name, text, plain_msg, &error);

		is_error(rc, error, cases[i].want, cases[i].what);
		if (!ok(contains(error, where), "%s: the error names %s", cases[i].what, where))
			printf("# error \"%s\"\n", error ? error : "(null)");
		free(error);
		free(where);
		free(text);
	}
}

static void
sandbox_keeps_what_policies_need(void)
{
	struct policy *p = must_load("sb_ok.lua", PRELUDE
		"return function(msg)\n"
		"  say(msg, 'libs', table.concat({ type(string.format), type(table.sort), type(math.floor),\n"
		"      type(utf8.char), type(os.time), type(os.date), type(pcall), type(_G) }, ','))\n"
		"  say(msg, 'G', tostring(_G == _ENV))\n"
		"  say(msg, 'method', ('abc'):upper())\n"
		"  local ok, err = pcall(error, 'caught')\n"
		"  say(msg, 'pcall', tostring(ok) .. ' ' .. err)\n"
		"end\n");
	struct message *m;
	char *error;

	if (p == NULL)
		return;
	m = make_message("s@example.org", "r@example.net", plain_msg);
	is_int(run(p, m, &error), 0, "a policy using the allowed libraries runs");
	if (error)
		printf("# %s\n", error);
	is_str(said(m, "libs"), "function,function,function,function,function,function,function,table",
	       "string, table, math, utf8, os.time/os.date, pcall and _G are there");
	is_str(said(m, "G"), "true", "_G is the sandbox environment");
	is_str(said(m, "method"), "ABC", "string methods work");
	is_str(said(m, "pcall"), "false caught", "pcall catches a policy's own errors");
	message_free(m);
	policy_free(p);
}

static void
policy_modules_from_policy_dir(void)
{
	struct policy *p;
	struct message *m;
	char *error;

	write_file("sitelib.lua", "local M = {}\nfunction M.tag() return 'site' end\nreturn M\n");
	p = must_load("usemod.lua", PRELUDE
		"local site = require 'sitelib'\n"
		"local again = require 'sitelib'\n"
		"local core = require 'postern.core'\n"
		"return function(msg)\n"
		"  say(msg, 'mod', site.tag() .. ' ' .. tostring(site == again))\n"
		"  say(msg, 'core', type(core) .. ' ' .. tostring(core == require 'postern.core'))\n"
		"end\n");
	if (p == NULL)
		return;
	m = make_message("s@example.org", "r@example.net", plain_msg);
	is_int(run(p, m, &error), 0, "a policy with its own module runs");
	free(error);
	is_str(said(m, "mod"), "site true", "require finds policy_dir modules and caches them");
	/* init.lua required it first: a built-in module is cached like any other */
	is_str(said(m, "core"), "table true", "require 'postern.core' after the library did: the same table");
	message_free(m);
	policy_free(p);
}

/* P.read_table: one entry per line, however long the line */
static void
read_table_lines(void)
{
	struct policy *p;
	struct message *m;
	char *long_line = xcalloc(1, 6000), *error;

	memcpy(long_line, "LongKey ", 8);
	memset(long_line + 8, 'v', 5000);
	strcat(long_line, "\n");
	{
		char *text = xasprintf("# a comment\n\nAlice@Example.COM  trusted  friend\nbare\n%s"
				       "last 42", long_line);

		write_file("lines.table", text);
		free(text);
	}
	p = must_load("readtab.lua", PRELUDE
		"local t = P.read_table('lines.table')\n"
		"local n = 0\n"
		"for _ in pairs(t) do n = n + 1 end\n"
		"return function(msg)\n"
		"  say(msg, 'alice', t['alice@example.com'])\n"
		"  say(msg, 'bare', t.bare)\n"
		"  say(msg, 'long', #(t.longkey or ''))\n"
		"  say(msg, 'last', t.last)\n"
		"  say(msg, 'n', n)\n"
		"end\n");
	if (p != NULL) {
		m = make_message("s@example.org", "r@example.net", plain_msg);
		is_int(run(p, m, &error), 0, "a policy with a read_table runs");
		free(error);
		is_str(said(m, "alice"), "trusted  friend", "read_table: key in lower case, the rest is the value");
		is_str(said(m, "bare"), "true", "read_table: a key alone is true");
		is_str(said(m, "long"), "5000", "read_table: a 5000-byte value stays one entry");
		is_str(said(m, "last"), "42", "read_table: a last line without a newline counts");
		is_str(said(m, "n"), "4", "read_table: four entries, comments and blank lines skipped");
		message_free(m);
		policy_free(p);
	}
	write_file("nul.table", "a b\n");
	{
		char *path = xasprintf("%s/nul.table", top);
		FILE *f = fopen(path, "w");

		if (f != NULL) {
			fwrite("a b\n\0c d\n", 1, 9, f);
			fclose(f);
		}
		free(path);
	}
	p = load("readnul.lua", PRELUDE "local t = P.read_table('nul.table')\nreturn function() end\n",
		 &error);
	ok(p == NULL && error != NULL && strstr(error, "NUL byte") != NULL,
	   "read_table: a file with a NUL byte is a load error");
	policy_free(p);
	free(error);
	free(long_line);
}

/* --- limits */

static void
time_and_instruction_limits(void)
{
	static const struct {
		const char *name, *body;
		long	timeout_ms, instructions;
		const char *want, *what;
	} cases[] = {
		{ "lim_instr.lua", "while true do end", 60000, 100000, "instruction limit",
		  "an endless loop hits the instruction limit" },
		{ "lim_time.lua", "while true do end", 100, 1000000000000L, "time limit",
		  "an endless loop hits the time limit" },
		{ "lim_pcall.lua", "pcall(function() while true do end end) msg:hit('escaped')", 60000,
		  100000, "instruction limit", "a policy's own pcall cannot swallow the limit" },
	};
	long timeout = cfg->policy_timeout_ms, instructions = cfg->policy_instruction_limit;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *text = xasprintf(PRELUDE "return function(msg)\n"
				       "  if msg.sender == 'loop@example.org' then %s end\n"
				       "end\n", cases[i].body), *error;
		struct policy *p;
		struct message *m;
		int rc;

		cfg->policy_timeout_ms = cases[i].timeout_ms;
		cfg->policy_instruction_limit = cases[i].instructions;
		p = must_load(cases[i].name, text);
		free(text);
		if (p == NULL)
			continue;
		m = make_message("fine@example.org", "r@example.net", plain_msg);
		is_int(run(p, m, &error), 0, "%s: a message that does not loop passes", cases[i].name);
		free(error);
		message_free(m);
		ok(!policy_is_spent(p), "%s: not spent yet", cases[i].name);

		m = make_message("loop@example.org", "r@example.net", plain_msg);
		rc = run(p, m, &error);
		is_error(rc, error, cases[i].want, cases[i].what);
		ok(contains(error, cases[i].name), "%s: the error names the file", cases[i].name);
		ok(!has_hit(m, "escaped"), "%s: nothing runs after the limit fired", cases[i].name);
		ok(!m->policy_ran, "%s: policy_ran stays false", cases[i].name);
		ok(policy_is_spent(p), "%s: the state is spent", cases[i].name);
		free(error);
		message_free(m);

		m = make_message("fine@example.org", "r@example.net", plain_msg);
		rc = run(p, m, &error);
		is_error(rc, error, "spent", "a spent state runs nothing more");
		free(error);
		message_free(m);
		policy_free(p);
	}
	cfg->policy_timeout_ms = timeout;
	cfg->policy_instruction_limit = instructions;
}

static void
memory_limit(void)
{
	long limit = cfg->policy_memory_limit;
	struct policy *p;
	struct message *m;
	char *error;
	int rc;

	cfg->policy_memory_limit = 4L * 1024 * 1024;
	p = must_load("lim_mem.lua", PRELUDE
		"return function(msg)\n"
		"  if msg.sender == 'fill@example.org' then\n"
		"    local t = {}\n"
		"    for i = 1, 1e8 do t[i] = ('x'):rep(64) .. i end\n"
		"  end\n"
		"  say(msg, 'ran', 'yes')\n"
		"end\n");
	cfg->policy_memory_limit = limit;
	if (p == NULL)
		return;
	m = make_message("fill@example.org", "r@example.net", plain_msg);
	rc = run(p, m, &error);
	is_error(rc, error, "policy memory limit", "filling a table past 4 MiB hits the memory limit");
	free(error);
	message_free(m);

	m = make_message("fine@example.org", "r@example.net", plain_msg);
	is_int(run(p, m, &error), 0, "after a memory error the state still runs the next message");
	if (error)
		printf("# %s\n", error);
	free(error);
	is_str(said(m, "ran"), "yes", "... all of it");
	message_free(m);
	policy_free(p);
}

/*
 * long_c_call_is_bounded - one string.find that backtracks for hours
 *
 * The count hook cannot interrupt a C function, so every C function a
 * policy can reach must carry its own bound (DESIGN.md, "Time"). Lua's own
 * pattern matcher has none; policy.c's watchdog ends the process at twice
 * the policy timeout plus a second (exit status 3, a line on stderr): the
 * worker leaves, the MTA keeps the message. Run in a child, with alarm()
 * as the spec's own last resort (the watchdog's timer replaces it).
 */
static void
long_c_call_is_bounded(void)
{
	int fds[2], status;
	pid_t pid;
	char buf[512] = "";
	ssize_t n;

	if (pipe(fds) < 0) {
		ok(0, "pipe: %s", strerror(errno));
		return;
	}
	fflush(stdout);
	pid = fork();
	if (pid == 0) {
		char *error = NULL, *lerr = NULL;
		struct policy *p;
		struct message *m;
		int rc;

		close(fds[0]);
		alarm(5);
		cfg->policy_timeout_ms = 500;
		p = load("lim_lpat.lua", PRELUDE
			 "return function(msg)\n"
			 "  local s = msg:header('Subject') .. ('a'):rep(300)\n"
			 "  return s:find(('a-'):rep(8) .. 'b') and 'reject' or nil\n"
			 "end\n", &lerr);
		if (p == NULL) {
			dprintf(fds[1], "load: %s", lerr);
			_exit(0);
		}
		m = make_message("s@example.org", "r@example.net", plain_msg);
		rc = run(p, m, &error);
		dprintf(fds[1], "%d %s", rc, error ? error : "");
		_exit(0);
	}
	close(fds[1]);
	n = read(fds[0], buf, sizeof(buf) - 1);
	buf[n > 0 ? n : 0] = '\0';
	close(fds[0]);
	waitpid(pid, &status, 0);
	if (!ok(WIFEXITED(status) && WEXITSTATUS(status) == 3 && buf[0] == '\0',
		"a Lua pattern that backtracks for hours ends the process by the watchdog (status 3)"))
		printf("# %s\n", WIFSIGNALED(status) ? "killed by a signal (no watchdog)" :
		       buf[0] ? buf : "exited otherwise");
}

/* --- lifetime */

static void
kept_objects_die_with_their_message(void)
{
	static const struct {
		const char *use, *want, *what;
	} cases[] = {
		{ "kept:header('Subject')", "message no longer valid", "a msg kept from the last message" },
		{ "kept.sender", "message no longer valid", "a msg field read after its message" },
		{ "kept_rcpt:reject()", "recipient no longer valid", "a rcpt kept from the last message" },
		{ "kept_part:content()", "message no longer valid", "a MIME part kept from the last message" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *text = xasprintf(PRELUDE "local kept, kept_rcpt, kept_part\n"
				       "return function(msg)\n"
				       "  if kept then local x = %s end\n"
				       "  kept, kept_rcpt, kept_part = msg, msg.recipients[1], msg:parts()[1]\n"
				       "end\n", cases[i].use), *error;
		struct policy *p = must_load("keep.lua", text);
		struct message *m;
		int rc;

		free(text);
		if (p == NULL)
			continue;
		m = make_message("s@example.org", "r@example.net", plain_msg);
		is_int(run(p, m, &error), 0, "%s: the first run keeps it", cases[i].what);
		free(error);
		message_free(m);
		m = make_message("s@example.org", "r@example.net", plain_msg);
		rc = run(p, m, &error);
		is_error(rc, error, cases[i].want, cases[i].what);
		ok(contains(error, "keep.lua:5:"), "%s: the error names the line", cases[i].what);
		free(error);
		message_free(m);
		policy_free(p);
	}
}

int
main(void)
{
	const char *srcdir = getenv("SRCDIR");

	if (mkdtemp(top) == NULL) {
		printf("Bail out! mkdtemp: %s\n", strerror(errno));
		return 1;
	}
	cfg = config_defaults();
	free(cfg->policy_dir);
	cfg->policy_dir = xstrdup(top);
	free(cfg->lua_dir);
	cfg->lua_dir = xasprintf("%s/lua", srcdir ? srcdir : ".");
	cfg->policy_timeout_ms = 10000;

	strcpy(client.ip, "127.0.0.1");
	client.port = 40000;
	client.helo = xstrdup("relay.example.net");
	client.xforward[XF_ADDR] = xstrdup("192.0.2.7");
	client.xforward[XF_NAME] = xstrdup("mx.example.org");
	client.xforward[XF_HELO] = xstrdup("[192.0.2.7]");
	client.xforward[XF_PROTO] = xstrdup("ESMTP");
	client.xforward[XF_LOGIN] = xstrdup("alice");
	client.xforward[XF_PORT] = xstrdup("4242");

	shipped_policies_load();
	bad_policies_do_not_load();
	msg_reads_header_envelope_and_client();
	client_without_xforward();
	recipients_take_verdicts_and_replies();
	rcpt_verdict_methods_leave_the_table_alone();
	chain_results();
	all_decided_ignores_added_copies();
	edits_land_in_the_message();
	bad_edits_are_errors();
	parts_and_content();
	regex_and_cidr();
	header_rule_with_pcre();
	msg_log_escapes();
	sandbox_refuses();
	sandbox_keeps_what_policies_need();
	policy_modules_from_policy_dir();
	read_table_lines();
	time_and_instruction_limits();
	memory_limit();
	long_c_call_is_bounded();
	kept_objects_die_with_their_message();

	client_release(&client);
	config_free(cfg);
	{
		char *cmd = xasprintf("rm -rf '%s'", top);

		if (system(cmd) != 0)
			printf("# could not remove %s\n", top);
		free(cmd);
	}
	return done_testing();
}
