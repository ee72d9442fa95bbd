"""spamd: a real SpamAssassin spamd (local tests only), and fakes for what they isolate.

A real spamd (`spamd -L`, Debian's rules in /usr/share/spamassassin) on a
free 127.0.0.1 port; posternd with spamd.address pointing at it and
local_domains = { "example.com" }. Pinned behaviour:

  GTUBE, P.spamd { tag2 = 5, kill = 10, on_kill = "discard" }: 250 2.7.0,
    nothing delivered, log line verdict=discard with the spamd hit;
  GTUBE, P.spamd { tag = -100, tag2 = 5, kill = 2000 }: 250, delivered with
    X-Spam-Flag: YES, "X-Spam-Status: Yes, score=S tag=-100 tag2=5
    kill=2000 tests=[...GTUBE...]", X-Spam-Score, X-Spam-Level, and the
    Subject tagged "***SPAM*** "; the body byte-identical;
  a clean message on the same listener: X-Spam-Flag: NO, "X-Spam-Status: No,
    score=...", the Subject untouched;
  local_domains: a recipient in example.com and one in other.example ->
    two copies; only the example.com one has X-Spam-* fields and the tagged
    Subject; X-Spam-* fields sent by the client are gone from both copies;
  spamd stopped: the default spamd.on_error ("pass") -> 250, delivered with
    "X-Spam-Status: Unchecked (spamd: cannot connect ...)" and a log line
    naming the failure; P.spamd { on_error = "tempfail" } -> 451 4.7.0
    "Spam check unavailable, try again later", not delivered; so does the
    configuration's spamd.on_error = "tempfail" with P.spamd {};
  a fake spamd that accepts and never answers, spamd.timeout = 2: the
    client's reply comes within timeout + 2 s (never a hang), 250 with
    "X-Spam-Status: Unchecked (spamd: timeout)";
  the same fake with spamd.timeout = 4 and policy_timeout = 1 (the watchdog
    at 3 s): 250 after about 4 s with "Unchecked (spamd: timeout)", not the
    policy's time limit nor its watchdog: the wait for spamd is not the
    policy's time; a policy calling msg:spamd() twice, then P.spamd, gets
    nil and "spamd: timeout" each time from one request (a failure is
    remembered for the message, as a result is);
  a message over spamd.max_size (4K) is not sent to spamd at all (the fake
    sees no request), the log says it is too big, and it passes with
    X-Spam-Status: Unchecked;
  msg:spamd { user = "alice" }: the request is "SYMBOLS SPAMC/1.5" with
    "User: alice" and a Content-length equal to the message, followed by
    exactly the message bytes; a canned "SPAMD/1.1 0 EX_OK" / "Spam: True ;
    20.0 / 5.0" / symbols answer gives score 20, threshold 5, is_spam true
    and the symbols list; msg:spamd { user = "alice", report = true } sends
    REPORT and returns the report text; a second identical call is answered
    from the cache (one request per user and kind).
"""
import atexit
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time

from harness import (Client, Posternd, Reply, Sink, free_port, header_fields, mail_id, skip_all,
                     stuff, t, values, wait_until, workspace)

SPAMD = shutil.which("spamd") or next((p for p in ("/usr/sbin/spamd", "/usr/bin/spamd")
                                       if os.access(p, os.X_OK)), None)
if SPAMD is None:
    skip_all("spamd (SpamAssassin) is not installed")

SENDER = "sender@example.org"
WS = workspace()
POLICY_DIR = os.path.join(WS, "policies")
GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"


# ---------------------------------------------------------------- the real spamd
class RealSpamd:
    """spamd -L on a free port, in the foreground; stopped by PID."""

    def __init__(self):
        self.port = free_port()
        self.logpath = os.path.join(WS, "spamd.log")
        self.logf = open(self.logpath, "ab")
        self.proc = subprocess.Popen(
            [SPAMD, "-L", "-x", "--port", str(self.port), "-i", "127.0.0.1", "-A", "127.0.0.1",
             "--pidfile", os.path.join(WS, "spamd.pid"), "-s", "stderr", "-m", "2",
             "--min-children", "1"],
            stdout=self.logf, stderr=self.logf, stdin=subprocess.DEVNULL)
        atexit.register(self.stop)

    def ping(self):
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2) as s:
                s.settimeout(5)
                s.sendall(b"PING SPAMC/1.5\r\n\r\n")
                return s.recv(100).startswith(b"SPAMD/1.5 0 PONG")
        except OSError:
            return False

    def wait_ready(self, timeout=60):
        return wait_until(lambda: self.proc.poll() is not None or self.ping(), timeout, 0.5) \
            and self.proc.poll() is None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def log(self):
        with open(self.logpath, "rb") as f:
            return f.read().decode("utf-8", "replace")


# ---------------------------------------------------------------- a fake spamd
class FakeSpamd:
    """Records every request; answers a canned result, or never when the body says HANG-ME.

    A fake is fine for what it isolates: the exact request bytes, a spamd that
    accepts and goes silent.
    """

    def __init__(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.requests = []  # (request line, {header: value}, body bytes)
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        self.sock.settimeout(0.5)
        while not self.stopping.is_set():
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            threading.Thread(target=self.handle, args=(conn,), daemon=True).start()

    def handle(self, conn):
        conn.settimeout(10)
        data = b""
        try:
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            headers = {}
            for line in lines[1:]:
                k, _, v = line.partition(":")
                headers[k.strip()] = v.strip()
            want = int(headers.get("Content-length", "0"))
            while len(body) < want:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                body += chunk
            with self.lock:
                self.requests.append((lines[0], headers, body))
            if b"HANG-ME" in body:
                self.stopping.wait(30)  # accepted, read, and silent: bounded by the spec's end
                return
            m = re.search(rb"ANSWER-([A-Z0-9]+)", body)
            if m:  # a canned answer, as it is: what spamd would never send
                conn.sendall(ANSWERS[m.group(1).decode()])
                if m.group(1) == b"KEEPOPEN":  # a whole answer, then the line stays open
                    self.stopping.wait(5)
                return
            if lines[0].startswith("REPORT"):
                text = ("Spam detection software, running on the fake spamd.\r\n\r\n"
                        "Content analysis details:   (20.0 points, 5.0 required)\r\n\r\n"
                        " pts rule name              description\r\n"
                        "---- ---------------------- -----------------------------\r\n"
                        "10.0 FAKE_RULE_ONE          The first fake rule\r\n"
                        "10.0 FAKE_RULE_TWO          The second fake rule\r\n")
            else:
                text = "FAKE_RULE_ONE,FAKE_RULE_TWO"
            out = ("SPAMD/1.1 0 EX_OK\r\nContent-length: %d\r\nSpam: True ; 20.0 / 5.0\r\n\r\n%s"
                   % (len(text), text))
            conn.sendall(out.encode())
        except OSError:
            pass
        finally:
            conn.close()

    def stop(self):
        self.stopping.set()
        self.sock.close()


def answer(spam_header, body="FAKE_RULE_ONE", status="SPAMD/1.1 0 EX_OK", extra=""):
    return ("%s\r\nContent-length: %d\r\n%sSpam: %s\r\n\r\n%s"
            % (status, len(body), extra, spam_header, body)).encode("latin-1")


LONG_RULES = ",".join("FAKE_LONG_RULE_NUMBER_%04d" % i for i in range(900))
# canned answers, chosen by "ANSWER-NAME" in the message body
ANSWERS = {
    "NAN": answer("True ; nan / 5.0"),
    "INF": answer("True ; inf / 5.0"),
    "HUGE": answer("True ; 1e400 / 5.0"),
    "HEX": answer("True ; 0x10 / 5.0"),
    "BIGNUM": answer("True ; 2000000000 / 5.0"),
    "TWOSPAM": answer("True ; 50.0 / 5.0", extra="Spam: False ; -5.0 / 5.0\r\n"),
    "V2": answer("True ; 20.0 / 5.0", status="SPAMD/2.0 0 EX_OK"),
    "NOEND": b"SPAMD/1.1 0 EX_OK\r\nSpam: True ; 20.0 / 5.0\r\n",
    "BADSTATUS": b"SPAMD/1.1 76 Bad\nX-Injected: yes\x1b[31m\r\n\r\n",
    "CTLRULES": answer("True ; 20.0 / 5.0",
                       body="GOOD_RULE,EVIL\x1b[31m,SNEAKY],tests=[FAKE,BELL\x07,OK_TWO"),
    "LONGRULES": answer("True ; 20.0 / 5.0", body=LONG_RULES),
    "NORULES": answer("False ; 0.5 / 5.0", body=""),
    "KEEPOPEN": answer("True ; 20.0 / 5.0"),
}


real = RealSpamd()
if not real.wait_ready(60):
    t.bail("spamd did not answer PING within 60 s:\n" + real.log()[-3000:])
fake = FakeSpamd()
atexit.register(fake.stop)


# ---------------------------------------------------------------- policies and daemons
def policy(text):
    return 'local P = require "postern"\nreturn P.policy {\n%s\n}\n' % text


POLICIES = {
    "kill.lua": policy('  P.spamd { tag2 = 5, kill = 10, on_kill = "discard" },'),
    "tag.lua": policy("  P.spamd { tag = -100, tag2 = 5, kill = 2000 },"),
    "tf.lua": policy('  P.spamd { tag = -100, tag2 = 5, kill = 2000, on_error = "tempfail" },'),
    "plain.lua": policy("  P.spamd { tag = -100, tag2 = 5, kill = 2000 },"),
    "hit.lua": policy('  function(msg) msg:add_score(1.5, "local_rule") end,\n'
                      "  P.spamd { tag = -100, tag2 = 5, kill = 2000 },"),
    "user.lua": policy(r'''  function(msg)
    local r, err = msg:spamd { user = "alice" }
    if not r then msg:add_header("X-Fake-Error", err) return end
    msg:add_header("X-Fake-Score", string.format("%.1f/%.1f %s", r.score, r.threshold,
                   tostring(r.is_spam)))
    msg:add_header("X-Fake-Symbols", table.concat(r.symbols, " "))
    local again = msg:spamd { user = "alice" }
    msg:add_header("X-Fake-Cached", tostring(again == r))
    local rep, err2 = msg:spamd { user = "alice", report = true }
    if not rep then msg:add_header("X-Fake-Error", err2) return end
    local first = rep.report:match("Content analysis details:[^\r\n]*") or "none"
    msg:add_header("X-Fake-Report", first)
    msg:add_header("X-Fake-Report-Rules", tostring(rep.report:find("FAKE_RULE_TWO", 1, true) ~= nil))
  end,'''),
    "twice.lua": policy(r'''  function(msg)
    local r1, e1 = msg:spamd()
    local r2, e2 = msg:spamd()
    msg:add_header("X-Fake-Twice", tostring(r1) .. " " .. tostring(e1) .. " / " ..
                   tostring(r2) .. " " .. tostring(e2))
  end,
  P.spamd { tag = -100, tag2 = 5, kill = 2000 },'''),
}
os.makedirs(POLICY_DIR, exist_ok=True)
for name, text in POLICIES.items():
    with open(os.path.join(POLICY_DIR, name), "w") as f:
        f.write(text)

sink = Sink(name="sink")
FWD = "127.0.0.1:%d" % sink.port
REAL_ADDR = "127.0.0.1:%d" % real.port


def lst(pol):
    return {"policy": pol, "forward": FWD, "workers": 1}


pd = Posternd({"kill": lst("kill.lua"), "tag": lst("tag.lua"), "tf": lst("tf.lua")},
              settings={"spamd": {"address": REAL_ADDR}, "local_domains": ["example.com"]})
pd_tf = Posternd({"plain": lst("plain.lua")},
                 settings={"spamd": {"address": REAL_ADDR, "on_error": "tempfail"}})
pd_fake = Posternd({"plain": lst("plain.lua"), "user": lst("user.lua"), "hit": lst("hit.lua")},
                   settings={"spamd": {"address": "127.0.0.1:%d" % fake.port, "timeout": 2,
                                       "max_size": "4K"}})
# spamd.timeout (4 s) longer than policy_timeout (1 s) and than the watchdog (2 x 1 + 1 s)
pd_slow = Posternd({"twice": lst("twice.lua")},
                   settings={"policy_timeout": 1,
                             "spamd": {"address": "127.0.0.1:%d" % fake.port, "timeout": 4}})
# a unix-socket spamd whose backlog is full: busy, not gone
BUSY_SOCK = os.path.join(WS, "busy-spamd.sock")
busy = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
busy.bind(BUSY_SOCK)
os.chmod(BUSY_SOCK, 0o777)  # posternd's user may connect (the spec may run as root)
busy.listen(0)
fillers = []
for _ in range(8):  # never accepted: the backlog fills (bounded attempts)
    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    c.setblocking(False)
    try:
        c.connect(BUSY_SOCK)
        fillers.append(c)
    except (BlockingIOError, OSError):
        c.close()
        break
pd_busy = Posternd({"plain": lst("plain.lua")},
                   settings={"spamd": {"address": BUSY_SOCK, "timeout": 2}})
ALL = [pd, pd_tf, pd_fake, pd_slow, pd_busy]


# ---------------------------------------------------------------- helpers
def transact(port, rcpts, data, sender=SENDER, timeout=60):
    """One transaction on a fresh connection: (data reply, seconds from the end of data)."""
    try:
        c = Client(port, timeout=timeout)
        r = c.cmd("EHLO client.test")
        assert r.code == 250, r
        r = c.cmd("MAIL FROM:<%s>" % sender)
        assert r.code == 250, r
        for a in rcpts:
            r = c.cmd("RCPT TO:<%s>" % a)
            assert r.code == 250, r
        r = c.cmd("DATA")
        assert r.code == 354, r
        start = time.monotonic()
        c.send(stuff(data))
        out = c.reply()
        took = time.monotonic() - start
        c.sock.settimeout(5)
        c.cmd("QUIT")
        c.close()
        return out, took
    except (AssertionError, OSError, EOFError, ValueError) as e:
        return Reply(0, ["no reply: %r" % (e,)]), None


_tok = [0]


def make(subject, body="Hello,\r\n\r\nthe minutes of today's meeting are below.\r\n", extra=""):
    _tok[0] += 1
    token = "tok%d-%s" % (_tok[0], os.urandom(4).hex())
    data = ("Date: Mon, 24 Nov 2025 10:00:00 +0000\r\nFrom: Sender <%s>\r\n"
            "To: user@example.com\r\nSubject: %s\r\nMessage-ID: <%s@example.org>\r\n"
            "X-Spec-Token: %s\r\n%s\r\n%s" % (SENDER, subject, token, token, extra, body))
    return token, data.encode()


def copies(token):
    return [(e, d) for e, d in sink.messages() if token.encode() in d]


def rcpt_addrs(env):
    return [x["addr"] for x in env.get("rcpts", [])]


def spam_fields(data):
    return [(n, v) for n, v in header_fields(data) if n.lower().startswith("x-spam-")]


def body_of(data):
    return data.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in data else None


GTUBE_BODY = "This is the GTUBE, the\r\n\r\n%s\r\n\r\nGeneric Test for Unsolicited Bulk Email\r\n" \
    % GTUBE

# ---------------------------------------------------------------- GTUBE, killed
tok, data = make("GTUBE kill", body=GTUBE_BODY)
r, _ = transact(pd.ports["kill"], ["user@example.com"], data)
t.match(r"^250 2\.7\.0 id=\w+, ", r.text, "GTUBE, kill 10, on_kill discard: 250 2.7.0")
t.eq(len(copies(tok)), 0, "GTUBE, kill 10: nothing delivered")
line = pd.summary_line("kill", mail_id(r))
t.match(r" verdict=discard score=\d{3,}\.\d+ hits=[^ ]*spamd", line,
        "GTUBE, kill 10: log line verdict=discard, spamd's score and hit")

# ---------------------------------------------------------------- GTUBE, tagged
tok, data = make("GTUBE tag", body=GTUBE_BODY)
r, _ = transact(pd.ports["tag"], ["user@example.com"], data)
t.eq(r.code, 250, "GTUBE, kill 2000: 250")
got = copies(tok)
t.eq(len(got), 1, "GTUBE, kill 2000: delivered once")
d = got[0][1] if got else b""
t.eq(values(d, "X-Spam-Flag"), ["YES"], "GTUBE: X-Spam-Flag: YES")
st = values(d, "X-Spam-Status")
t.ok(len(st) == 1 and re.match(r"^Yes, score=\d{3,}\.\d{3} tag=-100 tag2=5 kill=2000 "
                               r"tests=\[(?:[^\]]*,)?GTUBE(?:,[^\]]*)?\]$", st[0]) is not None,
     "GTUBE: X-Spam-Status: Yes, score=... tag=-100 tag2=5 kill=2000 tests=[...GTUBE...]", st)
t.ok(len(values(d, "X-Spam-Score")) == 1 and float(values(d, "X-Spam-Score")[0]) >= 100,
     "GTUBE: X-Spam-Score is spamd's (>= 100)", values(d, "X-Spam-Score"))
t.eq(values(d, "X-Spam-Level"), ["*" * 50], "GTUBE: X-Spam-Level (stars, at most 50)")
t.eq(values(d, "Subject"), ["***SPAM*** GTUBE tag"], "GTUBE: the Subject is tagged")
t.eq(body_of(d), body_of(data), "GTUBE: the body byte-identical")

# ---------------------------------------------------------------- clean
tok, data = make("Minutes of the meeting")
r, _ = transact(pd.ports["tag"], ["user@example.com"], data)
got = copies(tok)
t.ok(r.code == 250 and len(got) == 1, "clean message: 250, delivered once", r)
d = got[0][1] if got else b""
st = values(d, "X-Spam-Status")
t.ok(len(st) == 1 and re.match(r"^No, score=-?\d+\.\d{3} tag=-100 tag2=5 kill=2000 tests=\[",
                               st[0]) is not None, "clean message: X-Spam-Status: No, score=...", st)
t.eq(values(d, "X-Spam-Flag"), ["NO"], "clean message: X-Spam-Flag: NO")
t.eq(values(d, "Subject"), ["Minutes of the meeting"], "clean message: the Subject is not tagged")
t.ok(d.endswith(data), "clean message: the original bytes follow the added fields", d[-300:])

# ---------------------------------------------------------------- local_domains and forged fields
forged = "X-Spam-Flag: NO\r\nX-Spam-Status: No, score=-100 forged by the client\r\n" \
         "X-Spam-Score: -100\r\nX-Spam-Level: \r\n"
tok, data = make("GTUBE two domains", body=GTUBE_BODY, extra=forged)
r, _ = transact(pd.ports["tag"], ["local@example.com", "remote@other.example"], data)
t.eq(r.code, 250, "local_domains: 250")
got = copies(tok)
t.eq(sorted(a for e, _ in got for a in rcpt_addrs(e)),
     ["local@example.com", "remote@other.example"], "local_domains: each recipient got one copy")
t.eq(len(got), 2, "local_domains: two copies (two downstream transactions)")
for env, d in got:
    who = rcpt_addrs(env)
    sf = spam_fields(d)
    t.ok("forged" not in d.decode("utf-8", "replace") and ("X-Spam-Score", "-100") not in sf and
         ("X-Spam-Flag", "NO") not in sf and len(sf) == len(set(n for n, _ in sf)),
         "local_domains %s: the client's X-Spam-* fields are removed" % who, sf)
    if who == ["local@example.com"]:
        t.eq(values(d, "X-Spam-Flag"), ["YES"], "local_domains: the example.com copy is flagged")
        t.eq(values(d, "Subject"), ["***SPAM*** GTUBE two domains"],
             "local_domains: the example.com copy's Subject is tagged")
    else:
        t.eq(spam_fields(d), [], "local_domains: the other.example copy has no X-Spam-* field")
        t.eq(values(d, "Subject"), ["GTUBE two domains"],
             "local_domains: the other.example copy's Subject is not tagged")
    t.eq(body_of(d), body_of(data), "local_domains %s: the body byte-identical" % who)

# ---------------------------------------------------------------- the fake: request bytes, user, report
tok, data = make("fake user")
r, _ = transact(pd_fake.ports["user"], ["user@example.com"], data)
got = copies(tok)
t.ok(r.code == 250 and len(got) == 1, "msg:spamd{user=}: 250, delivered once", r)
d = got[0][1] if got else b""
with fake.lock:
    reqs = [q for q in fake.requests if tok.encode() in q[2]]
t.eq([q[0] for q in reqs], ["SYMBOLS SPAMC/1.5", "REPORT SPAMC/1.5"],
     "msg:spamd{user=}: one SYMBOLS and one REPORT request (the second SYMBOLS call is cached)")
if reqs:
    line, headers, body = reqs[0]
    t.eq(headers.get("User"), "alice", "msg:spamd{user = \"alice\"}: the request has User: alice")
    t.eq(headers.get("Content-length"), str(len(data)),
         "msg:spamd: Content-length is the message's size")
    t.ok(body == data, "msg:spamd: spamd gets exactly the message bytes", body[-200:])
if len(reqs) > 1:
    t.eq(reqs[1][1].get("User"), "alice", "msg:spamd{report = true}: User: alice too")
t.eq(values(d, "X-Fake-Error"), [], "msg:spamd: no error")
t.eq(values(d, "X-Fake-Score"), ["20.0/5.0 true"], "msg:spamd: score, threshold, is_spam")
t.eq(values(d, "X-Fake-Symbols"), ["FAKE_RULE_ONE FAKE_RULE_TWO"], "msg:spamd: symbols list")
t.eq(values(d, "X-Fake-Cached"), ["true"], "msg:spamd: the same call again gives the cached result")
t.eq(values(d, "X-Fake-Report"), ["Content analysis details:   (20.0 points, 5.0 required)"],
     "msg:spamd{report = true}: the report text")
t.eq(values(d, "X-Fake-Report-Rules"), ["true"], "msg:spamd{report = true}: the whole report")

# ---------------------------------------------------------------- the fake: never answers
before = len(fake.requests)
tok, data = make("fake hang", body="HANG-ME please\r\n")
r, took = transact(pd_fake.ports["plain"], ["user@example.com"], data, timeout=30)
t.eq(r.code, 250, "a spamd that never answers, spamd.timeout = 2: 250 (on_error pass)")
t.ok(took is not None and 1.5 <= took <= 4.0,
     "a spamd that never answers: the reply comes within timeout + 2 s (%s s)" %
     ("%.1f" % took if took is not None else "none"))
t.ok(len(fake.requests) > before, "a spamd that never answers: the fake got the request")
got = copies(tok)
st = values(got[0][1], "X-Spam-Status") if got else []
t.eq(st, ["Unchecked (spamd: timeout)"], "a spamd that never answers: X-Spam-Status: Unchecked "
     "(spamd: timeout)")
t.match(r"policy plain: spamd: spamd: timeout", pd_fake.log(),
        "a spamd that never answers: the log says so")

# ---------------------------------------------------------------- never answers, policy_timeout shorter
# The wait for spamd is spamd.timeout's, not the policy's: it ends in on_error, not
# in the policy's time limit or its watchdog (421 and a new worker every message).
tok, data = make("fake hang, short policy_timeout", body="HANG-ME please\r\n")
r, took = transact(pd_slow.ports["twice"], ["user@example.com"], data, timeout=30)
t.eq(r.code, 250, "spamd.timeout 4 s > policy_timeout 1 s, spamd never answers: 250 (on_error pass)",
     r)
t.ok(took is not None and 3.5 <= took <= 7.0,
     "... the reply comes after spamd.timeout, not the policy's limit (%s s)" %
     ("%.1f" % took if took is not None else "none"))
got = copies(tok)
t.eq(values(got[0][1], "X-Spam-Status") if got else None, ["Unchecked (spamd: timeout)"],
     "... delivered with X-Spam-Status: Unchecked (spamd: timeout)")
t.eq(values(got[0][1], "X-Fake-Twice") if got else None,
     ["nil spamd: timeout / nil spamd: timeout"],
     "... msg:spamd() twice: nil and the error both times")
with fake.lock:
    asked = [q for q in fake.requests if tok.encode() in q[2]]
t.eq(len(asked), 1, "... a failed spamd call is remembered: one request for three calls")
t.ok(not re.search(r"watchdog|policy time limit", pd_slow.log()),
     "... neither the policy's time limit nor its watchdog fired", pd_slow.log()[-2000:])

# ---------------------------------------------------------------- over spamd.max_size
before = len(fake.requests)
tok, data = make("too big", body="A line of ordinary text that fills the message up.\r\n" * 120)
t.ok(len(data) > 4096, "the big message is over spamd.max_size (%d bytes)" % len(data))
mark = len(pd_fake.log())
r, _ = transact(pd_fake.ports["plain"], ["user@example.com"], data)
t.eq(r.code, 250, "over spamd.max_size: 250")
time.sleep(0.3)
with fake.lock:
    sent = [q for q in fake.requests[before:] if tok.encode() in q[2]]
t.eq(len(sent), 0, "over spamd.max_size: not sent to spamd")
t.match(r"spamd: message too big to check \(\d+ bytes, spamd\.max_size 4096\)",
        pd_fake.log()[mark:], "over spamd.max_size: the log says too big")
got = copies(tok)
st = values(got[0][1], "X-Spam-Status") if got else []
t.ok(len(got) == 1 and len(st) == 1 and st[0].startswith("Unchecked (spamd: message too big"),
     "over spamd.max_size: delivered once with X-Spam-Status: Unchecked (... too big ...)", st)

# ---------------------------------------------------------------- answers spamd would never send
# Each is an error for on_error (default pass: Unchecked), never a policy error
# (451 4.3.0, the message deferred for as long as spamd answers the same).
for name, why in (("NAN", r"malformed answer \(its Spam: header\)"),
                  ("INF", r"malformed answer \(its Spam: header\)"),
                  ("HUGE", r"malformed answer \(its Spam: header\)"),
                  ("HEX", r"malformed answer \(its Spam: header\)"),
                  ("BIGNUM", r"malformed answer \(its Spam: header\)"),
                  ("TWOSPAM", r"malformed answer \(two Spam: headers\)"),
                  ("V2", r"malformed answer"),
                  ("NOEND", r"malformed answer \(its header has no end\)"),
                  ("BADSTATUS", r"error: SPAMD/1\.1 76 Bad\?X-Injected: yes\?\[31m")):
    tok, data = make("answer %s" % name, body="ANSWER-%s\r\n" % name)
    r, _ = transact(pd_fake.ports["plain"], ["user@example.com"], data)
    t.eq(r.code, 250, "spamd answers %s: 250 (on_error pass), no policy error" % name, r.text)
    got = copies(tok)
    st = values(got[0][1], "X-Spam-Status") if got else []
    t.ok(len(got) == 1 and len(st) == 1 and re.match(r"^Unchecked \(spamd: %s" % why, st[0])
         is not None, "spamd answers %s: delivered once, X-Spam-Status: Unchecked (...)" % name,
         st)

# a sender's own marks go, whether spamd answers or not
PREMARK = ("X-Spam-Flag: NO\r\nX-Spam-Status: No, score=-5.0 pre-marked\r\n"
           "x-spam-level:\r\nX-Spam-Report: all clean, trust me\r\nX-Spam-Bar: /\r\n")
for name in ("NAN", "KEEPOPEN"):
    tok, data = make("premarked %s" % name, body="ANSWER-%s\r\n" % name, extra=PREMARK)
    r, took = transact(pd_fake.ports["plain"], ["user@example.com"], data)
    t.eq(r.code, 250, "pre-marked message, spamd answers %s: 250" % name, r.text)
    got = copies(tok)
    fields = spam_fields(got[0][1]) if got else None
    ours = [n for n, v in fields or []]
    t.ok(got and not any("pre-marked" in v or "trust me" in v or n.lower() in
                         ("x-spam-bar", "x-spam-report") for n, v in fields),
         "pre-marked message, spamd answers %s: none of the sender's X-Spam-* fields is "
         "delivered" % name, fields)
    if name == "NAN":
        t.eq(ours, ["X-Spam-Status"], "... the copy has our X-Spam-Status (Unchecked) alone")
    else:
        t.eq(sorted(ours), ["X-Spam-Flag", "X-Spam-Level", "X-Spam-Score", "X-Spam-Status"],
             "... the copy has our four X-Spam-* fields")
        # spamd keeps the line open after its whole answer: its Content-length ends it
        t.ok(took < 1.5, "an answer whose Content-length is in ends the exchange "
             "(%.2f s; spamd.timeout is 2 s)" % took)

tok, data = make("control rules", body="ANSWER-CTLRULES\r\n")
r, _ = transact(pd_fake.ports["plain"], ["user@example.com"], data)
got = copies(tok)
st = values(got[0][1], "X-Spam-Status") if got else []
t.ok(r.code == 250 and len(st) == 1 and st[0].endswith("tests=[GOOD_RULE,OK_TWO]"),
     "rule names with other bytes are dropped: tests=[GOOD_RULE,OK_TWO]", st)

tok, data = make("long rules", body="ANSWER-LONGRULES\r\n")
r, _ = transact(pd_fake.ports["plain"], ["user@example.com"], data)
got = copies(tok)
st = values(got[0][1], "X-Spam-Status") if got else []
t.eq(r.code, 250, "900 rule names (23 KB): 250, no policy error", r.text)
t.ok(len(st) == 1 and st[0].startswith("Yes, score=20.000") and st[0].endswith(",...]") and
     len(st[0]) < 2200, "... X-Spam-Status lists the first ones and ends in ',...]' (%d bytes)"
     % (len(st[0]) if st else 0), st[0][:200] if st else st)

tok, data = make("no rules", body="ANSWER-NORULES\r\n")
r, _ = transact(pd_fake.ports["hit"], ["user@example.com"], data)
got = copies(tok)
st = values(got[0][1], "X-Spam-Status") if got else []
t.ok(len(st) == 1 and st[0].endswith("tests=[local_rule=1.5]"),
     "no spamd rule fired, one of the policy's: tests=[local_rule=1.5] (no stray comma)", st)

# ---------------------------------------------------------------- a busy unix socket
tok, data = make("busy unix spamd")
r, took = transact(pd_busy.ports["plain"], ["user@example.com"], data)
got = copies(tok)
st = values(got[0][1], "X-Spam-Status") if got else []
t.ok(r.code == 250 and len(st) == 1 and st[0] == "Unchecked (spamd: cannot connect to %s: "
     "timeout)" % BUSY_SOCK, "a unix-socket spamd with a full backlog is waited for until "
     "spamd.timeout, then Unchecked (... timeout)", st)
t.ok(took >= 1.5, "... after about spamd.timeout (2 s): %.2f s" % took)
for c in fillers:
    c.close()
busy.close()

# ---------------------------------------------------------------- spamd stopped
real.stop()
t.ok(not real.ping(), "the real spamd is stopped")
mark = len(pd.log())
tok, data = make("spamd down, pass")
r, took = transact(pd.ports["tag"], ["user@example.com"], data)
t.eq(r.code, 250, "spamd stopped, default spamd.on_error (pass): 250")
got = copies(tok)
st = values(got[0][1], "X-Spam-Status") if got else []
t.ok(len(got) == 1 and len(st) == 1 and
     re.match(r"^Unchecked \(spamd: cannot connect to %s: .+\)$" % re.escape(REAL_ADDR), st[0])
     is not None, "spamd stopped: delivered once with X-Spam-Status: Unchecked (spamd: cannot "
     "connect ...)", st)
t.eq([v for n, v in spam_fields(got[0][1]) if n.lower() != "x-spam-status"] if got else None, [],
     "spamd stopped: no other X-Spam-* field")
t.match(r"policy tag: spamd: spamd: cannot connect to %s" % re.escape(REAL_ADDR),
        pd.log()[mark:], "spamd stopped: a log line says spamd could not be reached")
tok, data = make("spamd down, tempfail")
r, _ = transact(pd.ports["tf"], ["user@example.com"], data)
t.match(r"^451 4\.7\.0 id=\w+, Spam check unavailable, try again later$", r.text,
        "spamd stopped, P.spamd { on_error = \"tempfail\" }: 451 4.7.0")
t.eq(len(copies(tok)), 0, "spamd stopped, on_error tempfail: not delivered")
tok, data = make("spamd down, configured tempfail")
r, _ = transact(pd_tf.ports["plain"], ["user@example.com"], data)
t.match(r"^451 4\.7\.0 id=\w+, Spam check unavailable, try again later$", r.text,
        "spamd stopped, spamd.on_error = \"tempfail\" in the configuration: 451 4.7.0")
t.eq(len(copies(tok)), 0, "spamd stopped, configured tempfail: not delivered")

# ---------------------------------------------------------------- the end
for d in ALL:
    name = os.path.basename(d.logpath)
    t.ok(not re.search(r"died with signal|exited with status", d.log()),
         "no worker crashed (%s)" % name, d.log()[-3000:])
    t.eq(d.stop(), 0, "posternd stops with status 0 (%s)" % name)
t.eq(os.listdir(pd.spool) if os.path.isdir(pd.spool) else [], [],
     "nothing left in the spool directory")
fake.stop()
t.done()
