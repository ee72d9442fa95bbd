"""SIGHUP reloads policies and their lookup tables; a broken policy keeps the running one.

One SMTP listener (workers = 1) whose policy adds X-Policy: vN and an X-Tier
field looked up with P.lookup("tiers.table") by the envelope sender.
Pinned behaviour:

  (a) SIGHUP after the policy file changed (v1 -> v2): the log says
      "reloaded ...: generation 2", and new sessions get the new verdicts
      (X-Policy: v2);
  (b) a session opened before the reload and inside a transaction (after
      RCPT) completes after it: 250, delivered once, decided by the policy of
      the generation that accepted the session (v1);
  (c) SIGHUP with a broken policy: a syntax error, a rule constructor error
      (P.header without pattern), a lookup table that is missing at load,
      a Lua pattern that backtracks for hours inside one C call at load
      (where the count hook cannot stop it: the master loads each policy
      in a child first, under the workers' watchdog, twice policy_timeout
      plus one second): the log says "reload failed, keeping the running configuration and
      policies: " with the reason (file:line for the first two), no new
      generation starts, the running workers are kept and the old policy
      (v2) keeps serving;
  (d) the lookup table file changed (the policy file not) + SIGHUP: the new
      entries apply to new messages (generation 3).
"""
import os
import re
import signal
import time

from harness import Client, Posternd, Reply, Sink, stuff, t, wait_until, workspace

SENDER = "sender@example.org"
POLICY_DIR = os.path.join(workspace(), "policies")
POLICY = os.path.join(POLICY_DIR, "reload.lua")
TABLE = os.path.join(POLICY_DIR, "tiers.table")


def policy_text(version, extra=""):
    return ('local P = require "postern"\n'
            'local tier = P.lookup("tiers.table")\n'
            'return P.policy {\n'
            '%s'
            '  function(msg)\n'
            '    msg:add_header("X-Policy", "%s")\n'
            '    msg:add_header("X-Tier", tostring(tier(msg.sender)))\n'
            '  end,\n'
            '}\n' % (extra, version))


def write(path, text):
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.rename(path + ".tmp", path)


os.makedirs(POLICY_DIR, exist_ok=True)
write(POLICY, policy_text("v1"))
write(TABLE, "# tiers\nexample.org first\n")

sink = Sink(name="sink")
POLICY_TIMEOUT = 2            # the watchdog: 2 * 2 + 1 = 5 s
pd = Posternd({"main": {"policy": "reload.lua", "forward": "127.0.0.1:%d" % sink.port,
                        "workers": 1}}, {"policy_timeout": POLICY_TIMEOUT})
PORT = pd.ports["main"]
_tok = [0]


def make(subject, sender=SENDER):
    _tok[0] += 1
    token = "tok%d-%s" % (_tok[0], os.urandom(4).hex())
    return token, ("From: <%s>\r\nTo: <user@example.com>\r\nSubject: %s\r\n"
                   "Message-ID: <%s@example.org>\r\nX-Spec-Token: %s\r\n\r\nBody.\r\n" %
                   (sender, subject, token, token)).encode()


def fields(data, name):
    head = data.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace")
    return re.findall(r"(?mi)^%s: *(.*?)\r?$" % re.escape(name), head)


def copies(tok):
    return [d for e, d in sink.messages() if tok.encode() in d]


def open_transaction(sender=SENDER):
    """A session left after RCPT; (client or None)."""
    try:
        c = Client(PORT, timeout=20)
        for cmd in ("EHLO client.test", "MAIL FROM:<%s>" % sender, "RCPT TO:<user@example.com>"):
            r = c.cmd(cmd)
            assert r.code == 250, r
        return c
    except (AssertionError, OSError, EOFError, ValueError):
        return None


def finish_transaction(c, data):
    try:
        r = c.cmd("DATA")
        assert r.code == 354, r
        c.send(stuff(data))
        r = c.reply()
        c.cmd("QUIT")
        c.close()
        return r
    except (AssertionError, OSError, EOFError, ValueError, AttributeError) as e:
        return Reply(0, ["no reply: %r" % (e,)])


def deliver(subject, sender=SENDER):
    """(reply, [(X-Policy, X-Tier) of each delivered copy])"""
    tok, data = make(subject, sender)
    c = open_transaction(sender)
    r = finish_transaction(c, data) if c else Reply(0, ["no session"])
    got = copies(tok)
    return r, [(fields(d, "X-Policy"), fields(d, "X-Tier")) for d in got]


def check(label, want_policy, want_tier, sender=SENDER):
    r, got = deliver(label, sender)
    t.ok(r.code == 250 and got == [([want_policy], [want_tier])],
         "%s: 250, delivered once with X-Policy: %s, X-Tier: %s" %
         (label, want_policy, want_tier), "%r %r" % (r, got))


def reload_ok(generation):
    """SIGHUP; wait for the new generation and for the old idle workers to leave."""
    old = set(pd.children())
    mark = len(pd.log())
    pd.signal(signal.SIGHUP)
    ok = pd.wait_log(r"reloaded \S+: generation %d, 1 listener\(s\)" % generation, 10, mark)
    gone = wait_until(lambda: not (set(pd.children()) & old) and len(pd.children()) == 1, 10)
    return ok is not None, gone, mark


# ---------------------------------------------------------------- (a) and (b)
check("(a) before the reload", "v1", "first")
inflight = open_transaction()
t.ok(inflight is not None, "(b) a session is inside a transaction (after RCPT) before the reload")
write(POLICY, policy_text("v2"))
old = set(pd.children())
mark = len(pd.log())
pd.signal(signal.SIGHUP)
t.ok(pd.wait_log(r"reloaded \S+: generation 2, 1 listener\(s\)", 10, mark) is not None,
     "(a) SIGHUP: the log says reloaded, generation 2", pd.log()[mark:])
t.ok(wait_until(lambda: len(set(pd.children()) - old) == 1, 10),
     "(a) a worker of the new generation runs", pd.children())
check("(a) after the reload, a new session", "v2", "first")
tok, data = make("(b) in flight")
r = finish_transaction(inflight, data) if inflight else Reply(0, ["no session"])
t.eq(r.code, 250, "(b) the session opened before the reload completes its message with 250")
got = copies(tok)
t.eq([(fields(d, "X-Policy"), fields(d, "X-Tier")) for d in got], [(["v1"], ["first"])],
     "(b) ... delivered once, decided by the policy of its own generation (v1)")
t.ok(wait_until(lambda: not (set(pd.children()) & old), 15),
     "(b) the old worker leaves after its session", pd.children())
t.ok(not re.search(r"died with signal|exited with status", pd.log()[mark:]),
     "(b) ... cleanly", pd.log()[mark:])

# ---------------------------------------------------------------- (c) broken policies
BROKEN = [
    ("a syntax error", policy_text("v3").replace("function(msg)", "function(msg) if then end"),
     r"reload\.lua:4: .*near 'then'"),
    ("a rule constructor error (P.header without pattern)",
     policy_text("v3", '  P.header { field = "Subject" },\n'),
     r"reload\.lua:4: P\.header: 'pattern' is required"),
    ("a lookup table that is missing",
     policy_text("v3").replace('"tiers.table"', '"missing.table"'),
     r"P\.read_table: cannot open \S*missing\.table"),
    ("a Lua pattern that backtracks inside one C call",
     policy_text("v3").replace("return P.policy {",
                               'local stuck = string.find(("a"):rep(40), ("a*"):rep(40) .. "b")\n'
                               'return P.policy {'),
     r"reload\.lua: loading ran past %d s \(twice policy_timeout, plus one\) inside one C call"
     % (2 * POLICY_TIMEOUT + 1)),
]
for label, text, why in BROKEN:
    write(POLICY, text)
    before = sorted(pd.children())
    mark = len(pd.log())
    pd.signal(signal.SIGHUP)
    m = pd.wait_log(r"reload failed, keeping the running configuration and policies: [^\n]*",
                    10 + 2 * POLICY_TIMEOUT + 1, mark)
    t.ok(m is not None, "(c) %s: the log says the reload failed, keeping the running "
         "configuration and policies" % label, pd.log()[mark:])
    t.match(why, m.group(0) if m else "", "(c) %s: ... and why" % label)
    time.sleep(0.3)
    t.eq(sorted(pd.children()), before, "(c) %s: the running worker is kept" % label)
    check("(c) %s: the old policy keeps serving" % label, "v2", "first")
    t.ok(not re.search(r"reloaded \S+: generation", pd.log()[mark:]),
         "(c) %s: no new generation" % label)

# ---------------------------------------------------------------- (d) the lookup table changes
write(POLICY, policy_text("v2"))
write(TABLE, "# tiers, edited\nexample.org second\nexample.net third\n")
check("(d) table changed, not reloaded yet", "v2", "first")
ok, gone, mark = reload_ok(3)
t.ok(ok, "(d) SIGHUP: the log says reloaded, generation 3", pd.log()[mark:])
t.ok(gone, "(d) the old worker left, one new one runs", pd.children())
check("(d) after the reload, a changed entry", "v2", "second")
check("(d) after the reload, a new entry", "v2", "third", sender="someone@example.net")
check("(d) after the reload, no entry", "v2", "nil", sender="someone@example.com")

t.ok(not re.search(r"died with signal|exited with status", pd.log()),
     "no worker crashed", pd.log()[-3000:])
t.eq(pd.stop(), 0, "posternd stops with status 0")
t.done()
