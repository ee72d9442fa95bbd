"""A policy that fails, runs away or escapes its sandbox tempfails the message, and nothing else.

A posternd with policy_timeout = 1, policy_memory_limit = "8M" (and an
instruction limit too high to matter, so the clock is what stops a loop).
Pinned behaviour:

  (a) a rule that raises an error (also after deciding a recipient: that
      decision is dropped, nothing is quarantined), returns a bad value (a number, an
      unknown verdict name, { verdict = "reject", code = 250 }), makes a
      bad verdict (P.reject{code = 250} raises where it is called), reads or assigns an
      undeclared global, or reaches for what the sandbox withholds
      (os.execute, io.open, require "os", load, dofile, debug,
      package.loadlib, string.dump, the string metatable): the message gets
      451 4.3.0, nothing is delivered, the log says "policy FILE failed,
      message deferred: ..." and, for the errors raised in policy code,
      names the policy file and line (for a bad value: the type returned);
      the summary line says verdict=tempfail result=deferred (not
      verdict=pass: the policy decided nothing); the same worker lives on (the log
      lines of that listener keep one PID) and its next message on the same
      session passes with the policy's header;
  (b) an endless loop (also one wrapped in its own pcall): 451 4.3.0 after
      about policy_timeout, the log says "policy time limit reached", then
      after the session "worker replaced with a fresh state"; a later
      message on the same listener gets the correct verdict from a new
      worker (not a spent state);
  (c) unbounded allocation (a growing table; one huge string.rep): 451 4.3.0
      and "policy memory limit reached"; the next message on the same
      listener passes;
  (d) a msg, rcpt or part kept in an upvalue and used on the next message:
      "message no longer valid" / "recipient no longer valid", 451 4.3.0,
      never a crash; the message after that passes;
  (e) after every failure above, a message on a healthy policy listener
      passes and is delivered;
  (f) a policy file that does not load (a syntax error, an error at load
      time, a constructor error, a value that is not a chain): posternd -t
      exits 1 naming the file and line (or the reason), and posternd refuses
      to start (exits non-zero, never listens).
  (g) a Lua pattern that backtracks for hours inside one C call, where no
      hook can stop it: the watchdog (2 x policy_timeout + 1 s) ends the
      worker, which first writes the replies it still owed (pipelining) and
      then "421 4.3.0 ... the policy ran far past its time limit" for the
      message (in LMTP once per recipient) and closes; nothing is delivered,
      the log says so, and the next message passes from a fresh worker.
"""
import os
import re
import subprocess
import time

from harness import (POSTERND, Client, Posternd, Reply, Sink, mail_id, port_open, stuff, t,
                     wait_until, workspace)

SENDER = "sender@example.org"
POLICY_DIR = os.path.join(workspace(), "policies")

ERR_LUA = r'''local P = require "postern"
local cases = {}
cases["raise"] = function(msg) error("spec boom") end -- @raise
cases["late"] = function(msg) msg.recipients[1]:quarantine("held"); msg:add_header("X-Late", "1"); error("late failure") end -- @late
cases["badval"] = function(msg) return 42 end
cases["badname"] = function(msg) return "maybe" end
cases["badcode"] = function(msg) return { verdict = "reject", code = 250 } end
cases["badreject"] = function(msg) local v = P.reject { code = 250 }; return v end -- @badreject
cases["undeclared"] = function(msg) if undeclared_thing then return "discard" end end -- @undeclared
cases["assign"] = function(msg) leaked_global = 1 end -- @assign
cases["os.execute"] = function(msg) os.execute("touch /tmp/postern-spec-130-pwned") end -- @os.execute
cases["io.open"] = function(msg) io.open("/etc/passwd") end -- @io.open
cases["require os"] = function(msg) local o = require "os"; o.execute("true") end -- @require os
cases["load"] = function(msg) load("return 1")() end -- @load
cases["dofile"] = function(msg) dofile("/etc/passwd") end -- @dofile
cases["debug"] = function(msg) debug.sethook() end -- @debug
cases["package.loadlib"] = function(msg) package.loadlib("libc.so.6", "system") end -- @package.loadlib
cases["string.dump"] = function(msg) local b = string.dump(function() end) end -- @string.dump
cases["string metatable"] = function(msg) local d = getmetatable("").__index.dump end -- @string metatable
return function(msg)
  local f = cases[msg:header("Subject") or ""]
  if f then return f(msg) end
  msg:add_header("X-Err-Ok", "yes")
end
'''

LIMITS_LUA = r'''local P = require "postern"
return function(msg)
  local s = msg:header("Subject") or ""
  if s == "loop" then
    while true do end
  elseif s == "pcall loop" then
    while true do pcall(function() while true do end end) end
  elseif s == "grow" then
    local t = {}
    for i = 1, math.huge do t[i] = string.rep("x", 100) .. i end
  elseif s == "big string" then
    local x = string.rep("x", 1 << 30)
  end
  msg:add_header("X-Limits-Ok", "yes")
end
'''

STALE_LUA = r'''local kept_msg, kept_rcpt, kept_parts
return function(msg)
  local s = msg:header("Subject") or ""
  if s == "keep" then
    kept_msg, kept_rcpt, kept_parts = msg, msg.recipients[1], msg:parts()
  elseif s == "use msg" then
    return kept_msg:header("Subject") -- @use msg
  elseif s == "use field" then
    local x = kept_msg.sender -- @use field
  elseif s == "use rcpt" then
    kept_rcpt:reject() -- @use rcpt
  elseif s == "use part" then
    local c = kept_parts[1]:content() -- @use part
  end
  msg:add_header("X-Stale-Ok", "yes")
end
'''

HEALTHY_LUA = r'''local P = require "postern"
return P.policy {
  function(msg) msg:add_header("X-Healthy", "yes") end,
}
'''

os.makedirs(POLICY_DIR, exist_ok=True)
for name, text in (("err.lua", ERR_LUA), ("limits.lua", LIMITS_LUA), ("stale.lua", STALE_LUA),
                   ("healthy.lua", HEALTHY_LUA)):
    with open(os.path.join(POLICY_DIR, name), "w") as f:
        f.write(text)


def line_of(text, marker):
    for i, line in enumerate(text.split("\n"), 1):
        if line.rstrip().endswith("-- @" + marker):
            return i
    raise KeyError(marker)


sink = Sink(name="sink")
fwd = "127.0.0.1:%d" % sink.port
listeners = {name: {"policy": name + ".lua", "forward": fwd, "workers": 1}
             for name in ("healthy", "err", "limits", "stale")}
settings = {"policy_timeout": 1, "policy_memory_limit": "8M",
            "policy_instruction_limit": 10 ** 12}
pd = Posternd(listeners, settings=settings)
ports = pd.ports
_tok = [0]


def make(subject):
    _tok[0] += 1
    token = "tok%d-%s" % (_tok[0], os.urandom(4).hex())
    return token, ("From: <%s>\r\nTo: <user@example.com>\r\nSubject: %s\r\n"
                   "Message-ID: <%s@example.org>\r\nX-Spec-Token: %s\r\n\r\nBody.\r\n" %
                   (SENDER, subject, token, token)).encode()


class Session:
    """One SMTP session that survives protocol surprises (they become failed replies)."""

    def __init__(self, listener):
        self.listener = listener
        self.c = None
        try:
            self.c = Client(ports[listener], timeout=20)
            r = self.c.cmd("EHLO client.test")
            assert r.code == 250, r
        except (AssertionError, OSError, EOFError, ValueError):
            self.c = None

    def send(self, subject, rcpts=("user@example.com",)):
        """(data reply, token)"""
        tok, data = make(subject)
        if self.c is None:
            return Reply(0, ["no session"]), tok
        try:
            r = self.c.cmd("MAIL FROM:<%s>" % SENDER)
            assert r.code == 250, r
            for a in rcpts:
                r = self.c.cmd("RCPT TO:<%s>" % a)
                assert r.code == 250, r
            r = self.c.cmd("DATA")
            assert r.code == 354, r
            self.c.send(stuff(data))
            return self.c.reply(), tok
        except (AssertionError, OSError, EOFError, ValueError) as e:
            self.c = None
            return Reply(0, ["no reply: %r" % (e,)]), tok

    def quit(self):
        if self.c is not None:
            try:
                self.c.cmd("QUIT")
            except (OSError, EOFError, ValueError):
                pass
            self.c.close()
            self.c = None


def delivered(tok):
    return [d for e, d in sink.messages() if tok.encode() in d]


def deferred_line(mid, timeout=5):
    """The "policy ... failed, message deferred" log line of mail id mid."""
    m = pd.wait_log(r"[^\n]*%s: policy [^\n]* failed, message deferred: [^\n]*" % re.escape(mid),
                    timeout)
    return m.group(0) if m else ""


def worker_pid(listener, mid, timeout=5):
    m = pd.wait_log(r"posternd\[(\d+)\]: \w+: msg listener=%s id=%s " %
                    (re.escape(listener), re.escape(mid)), timeout)
    return int(m.group(1)) if m else None


def healthy_passes(label):
    s = Session("healthy")
    r, tok = s.send("healthy after " + label)
    s.quit()
    got = delivered(tok)
    t.ok(r.code == 250 and len(got) == 1 and b"\r\nX-Healthy: yes\r\n" in got[0],
         "%s (e): the next message on the healthy listener passes and is delivered" % label,
         "%r %d" % (r, len(got)))


def policy_failed(label, r, tok, policy, detail, line=None):
    """The common checks of a failed policy run."""
    t.match(r"^451 4\.3\.0 id=\w+, policy error, try again later$", r.text,
            "%s: 451 4.3.0" % label)
    t.eq(len(delivered(tok)), 0, "%s: nothing delivered" % label)
    text = deferred_line(mail_id(r))
    t.match(r"policy \S*/%s failed, message deferred: .*%s" % (re.escape(policy), detail), text,
            "%s: the log says the policy failed: %s" % (label, detail or "(any reason)"))
    if line:
        t.match(r"/%s:%d:" % (re.escape(policy), line), text,
                "%s: ... and names %s:%d" % (label, policy, line))


# ---------------------------------------------------------------- (a) errors and the sandbox
ERR_CASES = [
    ("raise", r"spec boom"),
    ("late", r"late failure"),
    ("badval", r"the chain returned number: a verdict is "),
    ("badname", r"the chain returned string: a verdict is "),
    ("badcode", r"the chain returned table: code must be 5xx for reject"),
    ("badreject", r"P\.reject: code must be 5xx for reject"),
    ("undeclared", r"read of undeclared global 'undeclared_thing'"),
    ("assign", r"assignment to undeclared global 'leaked_global'"),
    ("os.execute", r"attempt to call a nil value \(field 'execute'\)"),
    ("io.open", r"read of undeclared global 'io'"),
    ("require os", r"\S*os\.lua"),
    ("load", r"read of undeclared global 'load'"),
    ("dofile", r"read of undeclared global 'dofile'"),
    ("debug", r"read of undeclared global 'debug'"),
    ("package.loadlib", r"read of undeclared global 'package'"),
    ("string.dump", r""),
    ("string metatable", r""),
]
err_pids = set()
s = Session("err")
for case, detail in ERR_CASES:
    label = "(a) %s" % case
    r, tok = s.send(case)
    try:
        line = line_of(ERR_LUA, case)
    except KeyError:
        line = None
    policy_failed(label, r, tok, "err.lua", detail, line)
    err_pids.add(worker_pid("err", mail_id(r)))
    if case == "raise":
        m = pd.wait_log(r"msg listener=err id=%s [^\n]*" % mail_id(r), 5)
        t.match(r" verdict=tempfail result=deferred ", m.group(0) if m else "",
                "%s: the summary line says verdict=tempfail (the policy decided nothing, the "
                "message is deferred), not verdict=pass" % label)
    r, tok = s.send("fine")
    got = delivered(tok)
    t.ok(r.code == 250 and len(got) == 1 and b"\r\nX-Err-Ok: yes\r\n" in got[0],
         "%s: the next message on the same session passes with the policy's header" % label, r)
    err_pids.add(worker_pid("err", mail_id(r)))
    healthy_passes(label)
s.quit()
t.ok(len(err_pids) == 1 and None not in err_pids,
     "(a) one worker served every message of listener err: it lived on", err_pids)
t.ok(not os.path.exists("/tmp/postern-spec-130-pwned"), "(a) os.execute ran nothing")
qdir = os.path.join(workspace(), "quarantine")
t.eq(sorted(os.listdir(qdir)) if os.path.isdir(qdir) else [], [],
     "(a) late: a quarantine decided before the error was not carried out")

# ---------------------------------------------------------------- (b) endless loops
for case in ("loop", "pcall loop"):
    label = "(b) %s" % case
    mark = len(pd.log())
    s = Session("limits")
    started = time.monotonic()
    r, tok = s.send(case)
    took = time.monotonic() - started
    policy_failed(label, r, tok, "limits.lua", r".*policy time limit reached")
    t.ok(0.8 <= took < 6, "%s: stopped after about policy_timeout = 1 s (%.2f s)" % (label, took))
    old_pid = worker_pid("limits", mail_id(r))
    s.quit()
    t.ok(pd.wait_log(r"listener limits: policy limit reached, worker replaced with a fresh state",
                     10, after=mark) is not None,
         "%s: after the session the log says the worker is replaced" % label, pd.log()[mark:])
    healthy_passes(label)
    s = Session("limits")
    r, tok = s.send("fine")
    got = delivered(tok)
    t.ok(r.code == 250 and len(got) == 1 and b"\r\nX-Limits-Ok: yes\r\n" in got[0],
         "%s: a later message on listener limits gets its correct verdict (not a spent state)"
         % label, r)
    new_pid = worker_pid("limits", mail_id(r))
    t.ok(old_pid is not None and new_pid is not None and new_pid != old_pid,
         "%s: ... from a new worker" % label, (old_pid, new_pid))
    r, tok = s.send("fine again")
    t.eq(r.code, 250, "%s: ... and the one after it too" % label)
    s.quit()

# ---------------------------------------------------------------- (c) unbounded allocation
for case in ("grow", "big string"):
    label = "(c) %s" % case
    s = Session("limits")
    r, tok = s.send(case)
    policy_failed(label, r, tok, "limits.lua", r"policy memory limit reached")
    r, tok = s.send("fine")
    got = delivered(tok)
    t.ok(r.code == 250 and len(got) == 1 and b"\r\nX-Limits-Ok: yes\r\n" in got[0],
         "%s: the next message on the same listener passes" % label, r)
    s.quit()
    healthy_passes(label)

# ---------------------------------------------------------------- (d) a message kept past its chain
s = Session("stale")
r, tok = s.send("keep")
t.eq(r.code, 250, "(d) the message whose msg object the policy keeps passes")
for case, detail in (("use msg", r"message no longer valid"),
                     ("use field", r"message no longer valid"),
                     ("use rcpt", r"recipient no longer valid"),
                     ("use part", r"message no longer valid")):
    label = "(d) %s" % case
    r, tok = s.send(case)
    policy_failed(label, r, tok, "stale.lua", detail, line_of(STALE_LUA, case))
    r, tok = s.send("fresh")
    got = delivered(tok)
    t.ok(r.code == 250 and len(got) == 1 and b"\r\nX-Stale-Ok: yes\r\n" in got[0],
         "%s: the message after it passes" % label, r)
s.quit()
healthy_passes("(d)")
t.ok(not re.search(r"died with signal|exited with status", pd.log()),
     "no worker crashed (the log reports no abnormal worker exit)",
     "\n".join(l for l in pd.log().splitlines()
               if re.search(r"died with signal|exited with status", l)))

# ---------------------------------------------------------------- (f) policies that do not load
BROKEN = {
    "syntax.lua": ("local P = require \"postern\"\nreturn P.policy {\n  function(msg) if then end,\n}\n",
                   r"syntax\.lua:3: "),
    "loaderr.lua": ("local P = require \"postern\"\n\nerror(\"load-time failure\")\n",
                    r"loaderr\.lua:3: load-time failure"),
    "ctor.lua": ("local P = require \"postern\"\nreturn P.policy {\n"
                 "  P.header { field = \"Subject\" },\n}\n",
                 r"ctor\.lua:3: P\.header: 'pattern' is required"),
    "notchain.lua": ("return 42\n", r"notchain\.lua: the policy must return its chain"),
}
for name, (text, want) in BROKEN.items():
    with open(os.path.join(POLICY_DIR, name), "w") as f:
        f.write(text)
    bad = Posternd({"broken": {"policy": name, "forward": fwd, "workers": 1}}, start=False)
    try:
        p = subprocess.run([POSTERND, "-t", "-c", bad.conf], capture_output=True, timeout=30)
        out = (p.stdout + p.stderr).decode("utf-8", "replace")
        rc = p.returncode
    except subprocess.TimeoutExpired:
        rc, out = None, "posternd -t did not finish in 30 s"
    with open(bad.logpath, "a") as f:
        f.write(out)
    t.eq(rc, 1, "(f) %s: posternd -t exits 1" % name)
    t.match(want, out, "(f) %s: posternd -t names the file and the reason" % name)
    with open(bad.logpath, "ab") as logf:
        p = subprocess.Popen([POSTERND, "-f", "-c", bad.conf], stdout=logf, stderr=logf)
        try:
            rc = p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            rc = None
    t.ok(rc not in (None, 0), "(f) %s: posternd refuses to start (exit %r)" % (name, rc))
    t.ok(not port_open(bad.ports["broken"]), "(f) %s: nothing listens on its port" % name)
    t.match(want, bad.log(), "(f) %s: the start-up error names the file and the reason" % name)

# ---------------------------------------------------------------- (g) stuck inside one C call
# Lua's pattern matcher backtracks for hours inside one C call, where no hook runs:
# the watchdog (2 x policy_timeout + 1 s) ends the worker, which first tells the
# client 421, after the replies it still owed
STUCK_LUA = r'''return function(msg)
  local s = msg:header("Subject") or ""
  if s == "stuck" then
    local x = (("a"):rep(400)):find(("a-"):rep(12) .. "b")
  end
  msg:add_header("X-Stuck-Ok", "yes")
end
'''
with open(os.path.join(POLICY_DIR, "stuck.lua"), "w") as f:
    f.write(STUCK_LUA)
stuckd = Posternd({"stuck": {"policy": "stuck.lua", "forward": fwd, "workers": 1},
                   "stucklmtp": {"policy": "stuck.lua", "forward": fwd, "workers": 1,
                                 "protocol": "lmtp"}},
                  settings={"policy_timeout": 0.5})
WORDS = r"^421 4\.3\.0 filter\.test Error: the policy ran far past its time limit; try again later$"


def rest_of_session(c):
    """Every reply line the server sends until it closes: (lines, closed)."""
    lines = []
    try:
        while True:
            lines.append(c.line())
    except EOFError:
        return lines, True
    except OSError:
        return lines, False


def fine_passes(listener, label, lmtp=False):
    c = Client(stuckd.ports[listener], timeout=20)
    c.cmd("LHLO client.test" if lmtp else "EHLO client.test")
    tok, data = make("fine")
    c.cmd("MAIL FROM:<%s>" % SENDER)
    c.cmd("RCPT TO:<user@example.com>")
    c.cmd("DATA")
    c.send(stuff(data))
    r = c.reply()
    c.close()
    got = delivered(tok)
    t.ok(r.code == 250 and len(got) == 1 and b"\r\nX-Stuck-Ok: yes\r\n" in got[0],
         "%s: the next message passes, from a fresh worker" % label, r)


def stuck_message(listener, rcpts, lmtp=False):
    """A message that gets the policy stuck, one command at a time: (token, the reply
    lines that follow the data until the server closes, whether it closed)."""
    c = Client(stuckd.ports[listener], timeout=30)
    c.cmd("LHLO client.test" if lmtp else "EHLO client.test")
    tok, data = make("stuck")
    c.cmd("MAIL FROM:<%s>" % SENDER)
    for a in rcpts:
        c.cmd("RCPT TO:<%s>" % a)
    c.cmd("DATA")
    c.send(stuff(data))
    lines, closed = rest_of_session(c)
    c.close()
    return tok, lines, closed


mark = len(stuckd.log())
tok, lines, closed = stuck_message("stuck", ["user@example.com"])
t.ok(len(lines) == 1 and re.match(WORDS, lines[0]) and closed,
     "(g) SMTP: a policy stuck in one C call: 421 4.3.0 for the message, then the "
     "connection closes", lines)
t.eq(len(delivered(tok)), 0, "(g) SMTP: nothing delivered")
t.ok(stuckd.wait_log(r"policy watchdog: a policy ran far past policy_timeout", 10, after=mark),
     "(g) SMTP: the log says the watchdog ended the worker", stuckd.log()[mark:])
t.ok(stuckd.wait_log(r"worker \d+ of listener stuck exited with status 3 after \d+ ms "
                    r"\(policy watchdog: ", 10, after=mark),
     "(g) SMTP: the master logs the worker's exit and why (its own line: under syslog the "
     "worker's stderr goes nowhere)", stuckd.log()[mark:])
fine_passes("stuck", "(g) SMTP")

# pipelined: the replies queued before the message come first, in order
c = Client(stuckd.ports["stuck"], timeout=30)
c.cmd("EHLO client.test")
tok, data = make("stuck")
c.send(b"MAIL FROM:<%s>\r\nRCPT TO:<user@example.com>\r\nBDAT %d LAST\r\n%s"
       % (SENDER.encode(), len(data), data))
lines, closed = rest_of_session(c)
c.close()
t.ok(len(lines) == 3 and lines[0].startswith("250 ") and lines[1].startswith("250 ")
     and re.match(WORDS, lines[2]) and closed,
     "(g) pipelined MAIL, RCPT, BDAT LAST: 250, 250, then 421 4.3.0, then the close", lines)
t.eq(len(delivered(tok)), 0, "(g) pipelined: nothing delivered")
fine_passes("stuck", "(g) pipelined")

# LMTP: one reply per recipient (RFC 2033)
tok, lines, closed = stuck_message("stucklmtp", ["one@example.com", "two@example.com"], lmtp=True)
t.ok(len(lines) == 2 and all(re.match(WORDS, l) for l in lines) and closed,
     "(g) LMTP, two recipients: 421 4.3.0 for each, then the connection closes", lines)
t.eq(len(delivered(tok)), 0, "(g) LMTP: nothing delivered")
fine_passes("stucklmtp", "(g) LMTP", lmtp=True)
t.eq(stuckd.stop(), 0, "(g) that posternd stops with status 0")

t.ok(wait_until(lambda: pd.spool_files() == [], 5), "nothing left in the spool directory",
     pd.spool_files())
t.eq(pd.stop(), 0, "posternd stops with status 0")
t.done()
