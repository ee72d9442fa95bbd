"""The administrator's commands: quarantine list/show/delete, release, and the policy dry run.

A posternd whose listener "q" quarantines messages with "quarantine me" in
the Subject (reason "spec says hold"), and a listener "dry" whose policy the
dry run exercises. `postern -c CONF` uses posternd's own configuration file.
Pinned behaviour:

  quarantine list   exit 0; one tab-separated line per message: mail id,
                    ISO 8601 UTC time, listener, size, <sender>, <rcpt>,...,
                    reason; "no quarantined messages" when there are none;
  quarantine show   exit 0; Id/Time/Listener/From/To.../Reason/Size lines,
                    an empty line, then the stored message (which ends with
                    the original bytes); an unknown id: exit 1;
  release ID        delivers to the listener's forward (the sink) with the
                    original envelope, the copy being the original bytes with
                    only Received: lines added before them (the release's,
                    naming the mail id, and the one stored at quarantine
                    time); exit 0, the file is removed and the id leaves the
                    list; releasing it again or releasing an unknown id:
                    exit 1; --rcpt ADDR releases to that recipient only and
                    keeps the file for the others, which is rewritten without
                    the recipients forward accepted, so a later release
                    delivers to nobody twice (also when forward refuses one of
                    them); a release or delete while another release of the
                    entry runs: exit 1, nothing done; --rcpt of an address that
                    is not a recipient: exit 1, nothing delivered; a forward
                    that is down: exit 1, the file kept, and a later release
                    succeeds;
  quarantine delete exit 0 and the file is gone; again: exit 1; no id: exit 2;
  start-up          removes the unfinished quarantine files (".tmp.ID.PID") of
                    processes that no longer exist, keeps those of live ones;
  postern test      `--listener NAME [--rcpt ...] MSG.eml` prints the policy,
                    the score, the rules that fired (with their points), the
                    header edits for every copy and per recipient, and each
                    recipient's verdict (with the reply or the reason), and
                    exits 0 pass, 10 discard, 11 quarantine, 12 reject, 13
                    tempfail (the most severe recipient), 1 when the policy
                    fails (naming file:line and "would tempfail"), 2 for usage
                    errors; the client defaults to 192.0.2.1 (so a bypass of
                    local clients does not hide anything) and --client-ip
                    changes it; without --rcpt the recipients come from To:
                    and Cc:; `--policy FILE` runs a file outside policy_dir,
                    with -c CONF and without any configuration; nothing is
                    delivered or quarantined by a dry run.
"""
import fcntl
import os
import re
import subprocess

from harness import (POSTERN, SRCDIR, Client, Posternd, Reply, Sink, mail_id, stuff, t,
                     workspace)

SENDER = "sender@example.org"
WS = workspace()
POLICY_DIR = os.path.join(WS, "policies")
QDIR = os.path.join(WS, "quarantine")

Q_LUA = r'''local P = require "postern"
return P.policy {
  function(msg) msg:add_header("X-Q-Seen", "yes") end,
  P.header { field = "Subject", pattern = [[quarantine me]], name = "spec:quarantine",
             on_match = P.quarantine("spec says hold") },
}
'''

DRY_LUA = r'''local P = require "postern"
return P.policy {
  P.bypass { client = { "127.0.0.0/8" }, name = "bypass:local" },
  P.header { field = "Subject", pattern = [[(?i)viagra]], score = 2.5, name = "spec:viagra" },
  function(msg)
    local s = msg:header("Subject") or ""
    msg:add_header("X-Dry", "ran")
    if s:find("discard") then return P.discard() end
    if s:find("hold") then return P.quarantine("dry hold") end
    if s:find("refuse") then return P.reject { code = 550, enh = "5.7.1", text = "dry refusal" } end
    if s:find("later") then return P.tempfail { code = 451, enh = "4.7.1", text = "dry later" } end
    if s:find("boom") then error("dry boom") end -- @boom
    for _, r in ipairs(msg.recipients) do
      if r.address:match("^no") then r:reject { code = 550, enh = "5.1.1", text = "no such user" } end
      if r.address:match("^tag") then r:tag_subject("[dry] ") end
    end
  end,
}
'''

os.makedirs(POLICY_DIR, exist_ok=True)
for name, text in (("q.lua", Q_LUA), ("dry.lua", DRY_LUA)):
    with open(os.path.join(POLICY_DIR, name), "w") as f:
        f.write(text)
BOOM_LINE = [i for i, l in enumerate(DRY_LUA.split("\n"), 1) if l.endswith("-- @boom")][0]

sink = Sink(name="sink")
all_sinks = [sink]
FWD = "127.0.0.1:%d" % sink.port
pd = Posternd({"q": {"policy": "q.lua", "forward": FWD, "workers": 1},
               "dry": {"policy": "dry.lua", "forward": FWD, "workers": 1}})
CONF = pd.conf
_tok = [0]


def make(subject, to="user@example.com", cc=None):
    _tok[0] += 1
    token = "tok%d-%s" % (_tok[0], os.urandom(4).hex())
    data = ("From: Sender <%s>\r\nTo: %s\r\n%sSubject: %s\r\nMessage-ID: <%s@example.org>\r\n"
            "X-Spec-Token: %s\r\n\r\nThe body of %s.\r\n.leading dot line\r\n" %
            (SENDER, to, "Cc: %s\r\n" % cc if cc else "", subject, token, token, token)).encode()
    return token, data


def transact(rcpts, data):
    try:
        c = Client(pd.ports["q"], timeout=20)
        for cmd in ["EHLO client.test", "MAIL FROM:<%s>" % SENDER] + \
                ["RCPT TO:<%s>" % a for a in rcpts]:
            r = c.cmd(cmd)
            assert r.code == 250, r
        r = c.cmd("DATA")
        assert r.code == 354, r
        c.send(stuff(data))
        r = c.reply()
        c.cmd("QUIT")
        c.close()
        return r
    except (AssertionError, OSError, EOFError, ValueError) as e:
        return Reply(0, ["no reply: %r" % (e,)])


def postern(*args, conf=CONF):
    """(exit status, stdout, stderr) of postern [-c conf] args."""
    cmd = [POSTERN] + (["-c", conf] if conf else []) + list(args)
    try:
        p = subprocess.run(cmd, capture_output=True, timeout=30)
    except subprocess.TimeoutExpired:
        return None, "", "timed out: %r" % cmd
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def copies(tok):
    return [(e, d) for s in all_sinks for e, d in s.messages() if tok.encode() in d]


def rcpt_addrs(env):
    return [x["addr"] for x in env.get("rcpts", [])]


def quarantine(subject, rcpts):
    """Send a message the policy quarantines: (mail id, token, original bytes)."""
    tok, data = make(subject)
    r = transact(rcpts, data)
    mid = mail_id(r)
    t.match(r"^250 2\.7\.0 id=\w+, .*quarantined as %s" % mid, r.text,
            "%s: posternd quarantines it (250)" % subject)
    t.ok(os.path.isfile(os.path.join(QDIR, mid)), "%s: file %s in the quarantine directory"
         % (subject, mid))
    return mid, tok, data


def list_lines():
    rc, out, err = postern("quarantine", "list")
    return rc, out, {l.split("\t")[0]: l.split("\t") for l in out.splitlines() if "\t" in l}


# ---------------------------------------------------------------- quarantined messages
rc, out, err = postern("quarantine", "list")
t.ok(rc == 0 and out.strip() == "no quarantined messages",
     "list with an empty quarantine: exit 0, 'no quarantined messages'", (rc, out, err))
mid1, tok1, orig1 = quarantine("quarantine me 1", ["a@example.com", "b@example.com"])
mid2, tok2, orig2 = quarantine("quarantine me 2", ["c@example.com"])
mid3, tok3, orig3 = quarantine("quarantine me 3", ["d@example.com", "e@example.com"])
t.eq(copies(tok1) + copies(tok2) + copies(tok3), [], "nothing was delivered while quarantined")

# ---------------------------------------------------------------- list
rc, out, rows = list_lines()
t.eq(rc, 0, "quarantine list: exit 0")
t.eq(sorted(rows), sorted([mid1, mid2, mid3]), "quarantine list: one line per message", )
row = rows.get(mid1, [])
t.eq(len(row), 7, "quarantine list: 7 tab-separated fields", )
if len(row) == 7:
    t.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", row[1], "quarantine list: an ISO 8601 UTC time")
    t.eq(row[2], "q", "quarantine list: the listener")
    t.ok(row[3].isdigit() and int(row[3]) >= len(orig1), "quarantine list: the size", row[3])
    t.eq(row[4], "<%s>" % SENDER, "quarantine list: the sender")
    t.eq(row[5], "<a@example.com>,<b@example.com>", "quarantine list: the recipients")
    t.eq(row[6], "spec says hold", "quarantine list: the reason")

# ---------------------------------------------------------------- show
p = subprocess.run([POSTERN, "-c", CONF, "quarantine", "show", mid1], capture_output=True,
                   timeout=30)
head, _, stored = p.stdout.partition(b"\n\n")
t.eq(p.returncode, 0, "quarantine show: exit 0")
t.match(r"^Id: %s\nTime: \S+Z\nListener: q\nFrom: <%s>\nTo: <a@example\.com>\n"
        r"To: <b@example\.com>\nReason: spec says hold\nSize: (\d+)$" % (mid1, re.escape(SENDER)),
        head.decode("utf-8", "replace"), "quarantine show: the envelope lines")
m = re.search(rb"Size: (\d+)", head)
t.ok(m is not None and int(m.group(1)) == len(stored) and stored.endswith(orig1),
     "quarantine show: then the stored message (Size bytes, ending with the original bytes)",
     stored[:300])
t.match(r"^Received: from ", stored.decode("utf-8", "replace"),
        "quarantine show: the stored message starts with postern's Received:")
rc, out, err = postern("quarantine", "show", "NoSuchId123")
t.eq(rc, 1, "quarantine show of an unknown id: exit 1")

# ---------------------------------------------------------------- release
rc, out, err = postern("release", mid1)
t.eq(rc, 0, "release: exit 0")
t.match(r"(?m)^<a@example\.com>: delivered: 250 ", out, "release: a@ delivered")
t.match(r"(?m)^<b@example\.com>: delivered: 250 ", out, "release: b@ delivered")
t.match(r"(?m)^%s: released to %s and deleted from quarantine$" % (mid1, re.escape(FWD)), out,
        "release: says released and deleted")
got = copies(tok1)
t.eq(len(got), 1, "release: the sink got the message once")
if got:
    env, data = got[0]
    t.eq((env.get("mail_from"), rcpt_addrs(env)), (SENDER, ["a@example.com", "b@example.com"]),
         "release: with the original envelope")
    t.ok(data.endswith(orig1), "release: the copy ends with the original bytes", data[-300:])
    added = data[:len(data) - len(orig1)].decode("utf-8", "replace") if data.endswith(orig1) else ""
    names = re.findall(r"(?m)^([^\s:]+):", added)
    t.ok(names and set(names) <= {"Received"},
         "release: only Received: lines were added before them", added)
    t.eq(len(re.findall(r"(?m)^Received: ", added)), 2,
         "release: the release's Received: and the one stored at quarantine time")
    t.match(r"\bid %s\b" % mid1, added, "release: the Received: lines name the mail id")
t.ok(not os.path.exists(os.path.join(QDIR, mid1)), "release: the file is removed")
rc, out, rows = list_lines()
t.ok(rc == 0 and mid1 not in rows and mid2 in rows, "release: the id leaves the list", out)
rc, out, err = postern("release", mid1)
t.eq(rc, 1, "release of an id already released: exit 1")
rc, out, err = postern("release", "NoSuchId123")
t.eq(rc, 1, "release of an unknown id: exit 1")
t.match(r"^postern: ", err, "release of an unknown id: says why on stderr")
t.eq(len(copies(tok1)), 1, "release: still one copy delivered")

# --rcpt
rc, out, err = postern("release", mid3, "--rcpt", "nobody@example.com")
t.eq(rc, 1, "release --rcpt of an address that is not a recipient: exit 1")
t.eq(copies(tok3), [], "release --rcpt of a stranger: nothing delivered")
rc, out, err = postern("release", mid3, "--rcpt", "d@example.com")
t.eq(rc, 0, "release --rcpt d@: exit 0")
got = copies(tok3)
t.ok(len(got) == 1 and rcpt_addrs(got[0][0]) == ["d@example.com"] and got[0][1].endswith(orig3),
     "release --rcpt d@: delivered to d@ only", [e for e, d in got])
t.ok(os.path.isfile(os.path.join(QDIR, mid3)), "release --rcpt d@: the file is kept for e@")
t.match(r"kept in quarantine for the others", out, "release --rcpt: says it is kept")
rc, out, err = postern("quarantine", "show", mid3)
t.ok(rc == 0 and re.findall(r"(?m)^To: <([^>]*)>$", out) == ["e@example.com"],
     "after release --rcpt d@: the entry lists only e@, still owed it", out[:300])
rc, out, err = postern("release", mid3)
got = copies(tok3)
t.eq(rc, 0, "release of the rest: exit 0")
t.eq(sorted(a for e, d in got for a in rcpt_addrs(e)), ["d@example.com", "e@example.com"],
     "release of the rest: e@ gets it, d@ not a second time")
t.ok(not os.path.exists(os.path.join(QDIR, mid3)), "release of the rest: the file is removed")

# one release at a time: a release or delete of an entry that is being released waits for
# nothing and does nothing (a held flock() stands in for the running release)
mid5, tok5, orig5 = quarantine("quarantine me 5", ["g@example.com"])
with open(os.path.join(QDIR, mid5), "rb") as held:
    fcntl.flock(held, fcntl.LOCK_EX)
    rc, out, err = postern("release", mid5)
    t.eq(rc, 1, "release while another release of it runs: exit 1")
    t.match(r"another release of it is running", err, "release while another runs: says so")
    rc, out, err = postern("quarantine", "delete", mid5)
    t.eq(rc, 1, "delete while a release of it runs: exit 1")
    t.match(r"a release of it is running", err, "delete while a release runs: says so")
t.eq(copies(tok5), [], "while another release runs: nothing delivered")
t.ok(os.path.isfile(os.path.join(QDIR, mid5)), "while another release runs: the file stays")
rc, out, err = postern("release", mid5)
t.ok(rc == 0 and len(copies(tok5)) == 1, "once it is done: the release goes through", err)

# forward refuses one recipient for good and takes the other: the other leaves the entry
mid6, tok6, orig6 = quarantine("quarantine me 6", ["h@example.com", "reject6@example.com"])
rc, out, err = postern("release", mid6)
t.eq(rc, 1, "release with a recipient forward refuses: exit 1")
t.match(r"kept in quarantine for the 1 recipient\(s\) still owed it", err,
        "release with a refused recipient: says who is still owed it")
rc, out, err = postern("quarantine", "show", mid6)
t.eq(re.findall(r"(?m)^To: <([^>]*)>$", out), ["reject6@example.com"],
     "release with a refused recipient: the entry keeps only the refused one")
rc, out, err = postern("release", mid6)
# (the sender also gets a delivery status notification for reject6@ each time)
t.eq([a for e, d in copies(tok6) for a in rcpt_addrs(e) if a == "h@example.com"],
     ["h@example.com"], "a second release: h@ is not delivered twice")

# forward down
mid4, tok4, orig4 = quarantine("quarantine me 4", ["f@example.com"])
port = sink.port
sink.stop()
rc, out, err = postern("release", mid4)
t.eq(rc, 1, "release while forward is down: exit 1")
t.ok(os.path.isfile(os.path.join(QDIR, mid4)), "release while forward is down: the file is kept")
sink = Sink(port=port, name="sink-again")
all_sinks.append(sink)
rc, out, err = postern("release", mid4)
t.eq(rc, 0, "release once forward is back: exit 0")
got = copies(tok4)
t.ok(len(got) == 1 and got[0][1].endswith(orig4) and
     not os.path.exists(os.path.join(QDIR, mid4)),
     "release once forward is back: delivered once, file removed", [e for e, d in got])

# ---------------------------------------------------------------- delete
rc, out, err = postern("quarantine", "delete", mid2)
t.eq(rc, 0, "quarantine delete: exit 0")
t.match(r"%s: deleted from quarantine" % mid2, out, "quarantine delete: says so")
t.ok(not os.path.exists(os.path.join(QDIR, mid2)), "quarantine delete: the file is gone")
rc, out, rows = list_lines()
t.ok(rc == 0 and mid2 not in rows, "quarantine delete: the id leaves the list", out)
rc, out, err = postern("quarantine", "delete", mid2)
t.eq(rc, 1, "quarantine delete again: exit 1")
rc, out, err = postern("quarantine", "delete")
t.eq(rc, 2, "quarantine delete without an id: exit 2 (usage)")
rc, out, err = postern("quarantine")
t.eq(rc, 2, "quarantine without a command: exit 2 (usage)")
t.match(r"postern: quarantine: which command\? list, show MAIL_ID or delete MAIL_ID", err,
        "quarantine without a command: says which commands there are")
t.eq(copies(tok2), [], "a deleted message was never delivered")

# ---------------------------------------------------------------- postern test
def eml(name, subject, to="user@example.com", cc=None):
    path = os.path.join(WS, name)
    with open(path, "wb") as f:
        f.write(make(subject, to=to, cc=cc)[1].replace(b"\r\n", b"\n"))
    return path


before_sink = sink.count()
before_q = sorted(os.listdir(QDIR))
m_pass = eml("pass.eml", "viagra offer")
rc, out, err = postern("test", "--listener", "dry", "--rcpt", "ok@example.com", m_pass)
t.eq(rc, 0, "test pass: exit 0")
t.match(r"(?m)^policy:\s+\S*/dry\.lua$", out, "test pass: names the policy file")
t.match(r"(?m)^score:\s+2\.500$", out, "test pass: the score")
t.match(r"(?m)^rules:\s+spec:viagra$", out, "test pass: the rules that fired")
t.match(r"(?m)^\s+\+2\.500\s+spec:viagra$", out, "test pass: the rule's points")
t.match(r"(?m)^headers \(every copy\):\n\s+add\s+X-Dry: ran$", out,
        "test pass: the header edits of every copy")
t.match(r"(?m)^recipients:\n\s+<ok@example\.com>: pass$", out, "test pass: the recipient's verdict")

for name, subject, status, line in (
        ("discard", "please discard", 10, r"<ok@example\.com>: discard"),
        ("quarantine", "please hold", 11, r"<ok@example\.com>: quarantine \(dry hold\)"),
        ("reject", "please refuse", 12, r"<ok@example\.com>: reject: 550 5\.7\.1 dry refusal"),
        ("tempfail", "try later", 13, r"<ok@example\.com>: tempfail: 451 4\.7\.1 dry later")):
    rc, out, err = postern("test", "--listener", "dry", "--rcpt", "ok@example.com",
                           eml(name + ".eml", subject))
    t.eq(rc, status, "test %s: exit %d" % (name, status))
    t.match(r"(?m)^\s+%s$" % line, out, "test %s: the recipient's verdict" % name)

rc, out, err = postern("test", "--listener", "dry", "--rcpt", "ok@example.com", "--rcpt",
                       "nouser@example.com", "--rcpt", "tagme@example.com",
                       eml("mixed.eml", "mixed"))
t.eq(rc, 12, "test per recipient: exit 12 (the most severe: a reject)")
t.match(r"(?m)^\s+<ok@example\.com>: pass$", out, "test per recipient: ok@ passes")
t.match(r"(?m)^\s+<nouser@example\.com>: reject: 550 5\.1\.1 no such user$", out,
        "test per recipient: nouser@ is rejected with its reply")
t.match(r"(?m)^\s+<tagme@example\.com>: pass\n\s+tag subject\s+\"\[dry\] \"$", out,
        "test per recipient: tagme@ passes with its own subject tag")

rc, out, err = postern("test", "--listener", "dry", eml("boom.eml", "boom"))
t.eq(rc, 1, "test with a policy error: exit 1")
t.match(r"(?m)^error:\s+\S*dry\.lua:%d: dry boom" % BOOM_LINE, out,
        "test with a policy error: names file:line")
t.match(r"would tempfail", out, "test with a policy error: says the daemon would tempfail")

rc, out, err = postern("test", "--listener", "dry", "--rcpt", "ok@example.com",
                       eml("refuse-local.eml", "please refuse"))
t.eq(rc, 12, "test: the default client (192.0.2.1) is not bypassed as local")
rc, out, err = postern("test", "--listener", "dry", "--rcpt", "ok@example.com", "--client-ip",
                       "127.0.0.1", eml("refuse-local2.eml", "please refuse"))
t.eq(rc, 0, "test --client-ip 127.0.0.1: the local bypass passes it (exit 0)")
t.match(r"(?m)^rules:\s+bypass:local$", out, "test --client-ip: the bypass rule fired")

rc, out, err = postern("test", "--listener", "dry",
                       eml("hdr.eml", "plain", to="Ann <ann@example.com>, bob@example.com",
                           cc="nouser@example.com"))
t.eq(rc, 12, "test without --rcpt: recipients from To: and Cc: (nouser@ rejected)")
t.ok(re.search(r"(?m)^\s+<ann@example\.com>: pass$", out) and
     re.search(r"(?m)^\s+<bob@example\.com>: pass$", out) and
     re.search(r"(?m)^\s+<nouser@example\.com>: reject", out),
     "test without --rcpt: lists ann@, bob@ and nouser@", out)

standalone = os.path.join(WS, "standalone.lua")
with open(standalone, "w") as f:
    f.write('local P = require "postern"\nreturn P.policy {\n'
            '  function(msg) if msg.client.ip == "192.0.2.1" then return P.discard() end end,\n}\n')
rc, out, err = postern("test", "--policy", standalone, m_pass)
t.eq(rc, 10, "test --policy FILE (with -c CONF): the file's verdict (discard, exit 10)")
t.match(r"(?m)^policy:\s+%s$" % re.escape(standalone), out, "test --policy: names the file")
rc, out, err = postern("test", "--policy", standalone, "--client-ip", "10.1.2.3", m_pass)
t.eq(rc, 0, "test --policy FILE --client-ip 10.1.2.3: pass (exit 0)")
plain = os.path.join(WS, "plain.lua")
with open(plain, "w") as f:
    f.write('return function(msg) return "reject" end\n')
rc, out, err = postern("test", "--policy", plain, "--rcpt", "x@example.com", m_pass, conf=None)
t.eq(rc, 12, "test --policy FILE without any configuration: runs it (reject, exit 12)")

# a policy stuck in one C call at load (a Lua pattern that backtracks) meets the
# watchdog (2 * policy_timeout + 1 s) as a stuck message run does: exit 3
stuck = os.path.join(WS, "stuck-at-load.lua")
with open(stuck, "w") as f:
    f.write('local P = require "postern"\n'
            'local s = string.find(("a"):rep(40), ("a*"):rep(40) .. "b")\n'
            'return P.policy {}\n')
stuck_conf = os.path.join(WS, "stuck.conf")
with open(stuck_conf, "w") as f:
    f.write('lua_dir = "%s/lua"\npolicy_timeout = 1\n'
            'listener "x" { listen = "127.0.0.1:1", forward = "127.0.0.1:2" }\n' % SRCDIR)
rc, out, err = postern("test", "--policy", stuck, m_pass, conf=stuck_conf)
t.eq(rc, 3, "test --policy FILE stuck at load inside one C call: the watchdog ends it (exit 3)",
     err)
t.match(r"postern test: policy watchdog", err, "... and says so, in its own name")
t.ok("worker" not in err and "MTA" not in err,
     "... without the daemon's words (no worker ends, no MTA keeps anything)", err)

# the same C call in a message run: the watchdog armed around the run ends it alike
stuck_run = os.path.join(WS, "stuck-in-run.lua")
with open(stuck_run, "w") as f:
    f.write('local P = require "postern"\n'
            'return P.policy {\n'
            '  function(msg) string.find(("a"):rep(40), ("a*"):rep(40) .. "b") end,\n'
            '}\n')
rc, out, err = postern("test", "--policy", stuck_run, m_pass, conf=stuck_conf)
t.eq(rc, 3, "test --policy FILE stuck in a message run inside one C call: exit 3", err)
t.match(r"postern test: policy watchdog", err, "... and says so, in its own name")
t.ok("worker" not in err and "MTA" not in err, "... without the daemon's words", err)

for label, args in (("no message file", ["--listener", "dry"]),
                    ("--policy and --listener together", ["--policy", plain, "--listener", "dry",
                                                          m_pass]),
                    ("an unknown option", ["--bogus", m_pass]),
                    # values no session could give the policy
                    ("a --client-ip that is no address", ["--client-ip", "banana", m_pass]),
                    ("an empty --rcpt", ["--rcpt=", m_pass]),
                    ("a --helo with a line break", ["--helo", "a\nb", m_pass])):
    rc, out, err = postern("test", *args)
    t.eq(rc, 2, "test with %s: exit 2 (usage)" % label)
rc, out, err = postern("test", "--listener", "nosuch", m_pass)
t.eq(rc, 1, "test --listener of an unknown listener: exit 1")
t.match(r"no listener \"nosuch\"", err, "test --listener nosuch: says so")

t.eq(sink.count(), before_sink, "the dry runs delivered nothing")
t.eq(sorted(os.listdir(QDIR)), before_q, "the dry runs quarantined nothing")

t.eq(pd.stop(), 0, "posternd stops with status 0")

# A process killed while writing a quarantine file leaves ".tmp.ID.PID" behind, a
# whole message in it: the next start removes those of processes that are gone.
gone = subprocess.Popen(["true"])
gone.wait()
dead_tmp = os.path.join(QDIR, ".tmp.DeadWriter0001.%d" % gone.pid)
live_tmp = os.path.join(QDIR, ".tmp.LiveWriter0001.%d" % os.getpid())
for path in (dead_tmp, live_tmp):
    with open(path, "wb") as f:
        f.write(b"half of a quarantine file")
pd.start()
t.ok(not os.path.exists(dead_tmp), "start-up: the unfinished file of a process that is gone is removed")
t.ok(os.path.exists(live_tmp), "start-up: that of a live process stays")
t.match(r"quarantine: removed 1 unfinished file left in ", pd.log(), "start-up: the log says so")
os.unlink(live_tmp)
t.eq(pd.stop(), 0, "posternd stops with status 0 again")
t.done()
