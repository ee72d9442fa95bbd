"""Signature reloads while clients keep sending: no session fails, every message once.

A posternd with clamav = { database = (a copy of spec/data/clamav),
self_check = 1 } and one listener (8 workers) whose policy is
P.clamav { on_virus = "reject" }, forwarding to a sink. Eight client
threads send continuously (one SMTP session per message, at most 15 s or
MAX_PER_THREAD messages each): mostly clean messages with an attachment,
one in eight EICAR. Meanwhile the main thread:

  (a) sends SIGHUP: the log says "reloaded ...: generation 2";
  (b) drops a new signature file (postern-reload.ndb, a body signature for
      a marker of ours) into the database directory: the master's
      self-check notices it, the log says "clamav: DIR changed, loading the
      signatures again" and "signatures reloaded: generation 3"; a message
      with the marker, which passed before, is rejected with "Virus found:
      Postern.Test.Reload.Marker" once the old workers have left, and the
      clients send such messages too from then on;
  (c) drops a corrupt signature file into the directory: the self-check
      tries, fails and logs "clamav: signature reload failed, keeping the
      running engine: ..." naming the file (a syslog reader has nothing
      else: libclamav's own messages go to stderr), no new generation
      starts, and the running engine keeps catching both EICAR and the new
      marker while clean mail keeps getting 250.

Pinned for the whole run: every transaction completes (no dropped
connection, no 4xx, no 421 before the data reply): every clean message gets
250 and every virus 554 with its signature's name; QUIT gets 221, or
421 4.3.2 from an old-generation worker that is leaving (as spec 110 pins
for idle sessions of a stopping worker); every message answered 250 is
delivered exactly once and no refused one ever; nothing is delivered that
no client sent; no worker crashes; the spool is empty at the end.

  (d) a SIGHUP sent while posternd is still starting (caught reading a
      300 000-signature database) does not kill it: it comes up, then
      reloads (the log says "reloaded"), and stops with status 0.
  (e) a SIGTERM sent at the same point is a stop, not a death by signal:
      posternd finishes starting, logs "stopped" and exits with status 0 (what a supervisor reads as a clean stop).
"""
import base64
import os
import re
import shutil
import signal
import threading
import time

from harness import SRCDIR, Client, Posternd, Sink, stuff, t, wait_until, workspace

SENDER = "sender@example.org"
WS = workspace()
POLICY_DIR = os.path.join(WS, "policies")
DB = os.path.join(WS, "db")
shutil.copytree(os.path.join(SRCDIR, "spec", "data", "clamav"), DB)

EICAR = rb"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
RELOAD_MARKER = b"POSTERN-TEST-RELOAD-SIGNATURE-51c9"
RELOAD_NDB = "Postern.Test.Reload.Marker:0:*:%s\n" % RELOAD_MARKER.hex()
SIG_EICAR = r"Postern\.Test\.EICAR\.(?:Body|Hash)(?:\.UNOFFICIAL)?"
SIG_RELOAD = r"Postern\.Test\.Reload\.Marker(?:\.UNOFFICIAL)?"
THREADS = 8
DURATION = 15.0
MAX_PER_THREAD = 600

os.makedirs(POLICY_DIR, exist_ok=True)
with open(os.path.join(POLICY_DIR, "scan.lua"), "w") as f:
    f.write('local P = require "postern"\nreturn P.policy {\n'
            '  P.clamav { on_virus = "reject" },\n}\n')

sink = Sink(name="sink")
pd = Posternd({"scan": {"policy": "scan.lua", "forward": "127.0.0.1:%d" % sink.port,
                        "workers": THREADS}},
              settings={"clamav": {"database": DB, "self_check": 1}})
PORT = pd.ports["scan"]


def drop(name, text):
    """Put a file into the database directory at once (written aside, then renamed)."""
    tmp = os.path.join(WS, name + ".part")
    with open(tmp, "w") as f:
        f.write(text)
    os.rename(tmp, os.path.join(DB, name))


_lock = threading.Lock()
_seq = [0]


def make(kind):
    """(token, bytes) of a message: "clean", "eicar" or "marker"."""
    with _lock:
        _seq[0] += 1
        n = _seq[0]
    token = "tok%d-%s" % (n, os.urandom(4).hex())
    if kind == "eicar":
        content = EICAR
    elif kind == "marker":
        content = b"some text " + RELOAD_MARKER + b" more text\n"
    else:
        content = b"an ordinary attachment, line %d\n" % n * 8
    b = "b-" + token
    data = ("From: Sender <%s>\r\nTo: user@example.com\r\nSubject: load %s %s\r\n"
            "Message-ID: <%s@example.org>\r\nX-Spec-Token: %s\r\nMIME-Version: 1.0\r\n"
            "Content-Type: multipart/mixed; boundary=\"%s\"\r\n\r\n--%s\r\n"
            "Content-Type: text/plain\r\n\r\nSee the attachment.\r\n--%s\r\n"
            "Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n"
            "Content-Disposition: attachment; filename=\"file.dat\"\r\n\r\n%s--%s--\r\n" %
            (SENDER, kind, n, token, token, b, b, b,
             base64.encodebytes(content).decode().replace("\n", "\r\n"), b))
    return token, data.encode()


def one_message(kind):
    """One whole session: (token, kind, data reply code, its text, QUIT reply text).

    The data reply is the message's fate; QUIT may be answered 221, or
    421 4.3.2 when an old generation's worker is leaving (spec 110 pins that
    idle sessions of a stopping worker get 421 4.3.2).
    """
    token, data = make(kind)
    try:
        c = Client(PORT, timeout=30)
        steps = [("EHLO client.test", 250), ("MAIL FROM:<%s>" % SENDER, 250),
                 ("RCPT TO:<user@example.com>", 250), ("DATA", 354)]
        for cmd, want in steps:
            r = c.cmd(cmd)
            if r.code != want:
                c.close()
                return token, kind, r.code, "%s -> %s" % (cmd, r.text), ""
        c.send(stuff(data))
        r = c.reply()
    except Exception as e:  # any surprise is a failed session, recorded
        return token, kind, 0, "session failed: %r" % (e,), ""
    try:
        q = c.cmd("QUIT").text
    except Exception as e:
        q = "QUIT failed: %r" % (e,)
    c.close()
    return token, kind, r.code, r.text, q


results = []
stop = threading.Event()
marker_live = threading.Event()


def client(i):
    sent = 0
    while not stop.is_set() and sent < MAX_PER_THREAD:
        sent += 1
        if sent % 8 == i % 8:
            kind = "eicar"
        elif marker_live.is_set() and sent % 8 == (i + 4) % 8:
            kind = "marker"
        else:
            kind = "clean"
        res = one_message(kind)
        with _lock:
            results.append(res)


def expect(kind, code, text):
    if kind in ("clean", "marker-before"):
        return code == 250
    sig = SIG_EICAR if kind == "eicar" else SIG_RELOAD
    return code == 554 and re.match(r"^554 5\.7\.0 id=\w+, Virus found: %s$" % sig, text)


start = time.monotonic()
threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(THREADS)]
for th in threads:
    th.start()
time.sleep(2)

# ---------------------------------------------------------------- (a) SIGHUP
mark = len(pd.log())
old = set(pd.children())
pd.signal(signal.SIGHUP)
t.ok(pd.wait_log(r"reloaded \S+: generation 2, 1 listener\(s\)", 15, mark) is not None,
     "(a) SIGHUP under load: the log says reloaded, generation 2", pd.log()[mark:][-2000:])
t.ok(wait_until(lambda: not (set(pd.children()) & old), 20),
     "(a) the old generation's workers leave after their sessions")

# ---------------------------------------------------------------- (b) a new signature file
r = one_message("marker")
t.eq(r[2], 250, "(b) before the new signature file: a message with the new marker passes")
results.append((r[0], "marker-before") + r[2:])
mark = len(pd.log())
old = set(pd.children())
drop("postern-reload.ndb", RELOAD_NDB)
m1 = pd.wait_log(r"clamav: %s changed, loading the signatures again" % re.escape(DB), 15, mark)
t.ok(m1 is not None, "(b) self_check notices the new file: \"clamav: DIR changed, loading the "
     "signatures again\"", pd.log()[mark:][-2000:])
m2 = pd.wait_log(r"clamav: 5 signatures from %s loaded in \d+ ms" % re.escape(DB), 15, mark)
t.ok(m2 is not None, "(b) the log says 5 signatures were loaded", pd.log()[mark:][-2000:])
t.ok(pd.wait_log(r"signatures reloaded: generation 3, 1 listener\(s\)", 15, mark) is not None,
     "(b) the log says signatures reloaded, generation 3", pd.log()[mark:][-2000:])
t.ok(wait_until(lambda: not (set(pd.children()) & old), 20),
     "(b) the old generation's workers leave after their sessions")
r = one_message("marker")
t.ok(expect("marker", r[2], r[3]), "(b) after the reload: the new marker is caught (554 Virus "
     "found: Postern.Test.Reload.Marker)", r)
results.append(r)
marker_live.set()
time.sleep(2)

# ---------------------------------------------------------------- (c) a corrupt signature file
mark = len(pd.log())
drop("postern-zz-broken.ndb", "this line is not a signature\n")
m = pd.wait_log(r"clamav: signature reload failed, keeping the running engine: [^\n]+", 15, mark)
t.ok(m is not None, "(c) a corrupt file: the self-check tries, fails and logs \"clamav: signature "
     "reload failed, keeping the running engine\"", pd.log()[mark:][-2000:])
t.ok(m is not None and "postern-zz-broken.ndb" in m.group(0),
     "(c) that log line names the corrupt file", m.group(0) if m else None)
time.sleep(max(0.0, DURATION - (time.monotonic() - start)))
t.ok(not re.search(r"signatures reloaded: generation|reloaded \S+: generation", pd.log()[mark:]),
     "(c) no new generation starts on the corrupt database", pd.log()[mark:][-2000:])
for kind in ("eicar", "marker", "clean"):
    r = one_message(kind)
    t.ok(expect(kind, r[2], r[3]), "(c) the running engine is kept: %s -> %s" %
         (kind, "250" if kind == "clean" else "554 with its signature"), r)
    results.append(r)

stop.set()
for th in threads:
    th.join(60)
t.ok(not any(th.is_alive() for th in threads), "every client thread finished")

# ---------------------------------------------------------------- the whole run
with _lock:
    done = list(results)
by_kind = {}
for _, kind, code, text, _ in done:
    by_kind[kind] = by_kind.get(kind, 0) + 1
bad = [(kind, code, text) for _, kind, code, text, _ in done if not expect(kind, code, text)]
t.ok(len(done) >= 200, "the clients sent a real load: %d messages %r" % (len(done), by_kind))
t.ok(by_kind.get("marker", 0) >= 5 and by_kind.get("eicar", 0) >= 20,
     "the clients sent viruses too, old and new signatures", by_kind)
t.eq(bad[:10], [], "every session completed its transaction: clean mail 250, every virus 554 "
     "with its signature's name (%d of %d wrong)" % (len(bad), len(done)))
quits = {}
for _, _, _, _, q in done:
    key = q[:9] if q.startswith(("221 ", "421 4.3.2")) else q
    quits[key] = quits.get(key, 0) + 1
t.ok(set(quits) <= {"221 2.0.0", "421 4.3.2"},
     "QUIT after the transaction: 221, or 421 4.3.2 from a leaving old worker %r" % quits, quits)

time.sleep(0.5)
delivered = {}
for env, d in sink.messages():
    mt = re.search(rb"X-Spec-Token: (\S+)", d)
    if mt:
        delivered[mt.group(1).decode()] = delivered.get(mt.group(1).decode(), 0) + 1
passed = [tok for tok, kind, code, _, _ in done if code == 250]
refused = [tok for tok, kind, code, _, _ in done if code != 250]
twice = [tok for tok in passed if delivered.get(tok, 0) != 1]
t.eq(twice[:10], [], "every message answered 250 is delivered exactly once (%d of %d not)"
     % (len(twice), len(passed)))
leaked = [tok for tok in refused if delivered.get(tok, 0)]
t.eq(leaked[:10], [], "no refused message is delivered")
known = set(tok for tok, _, _, _, _ in done)
strays = [tok for tok in delivered if tok not in known]
t.eq(strays[:10], [], "nothing delivered that the clients did not send (and got 250 for)")

t.ok(not re.search(r"died with signal|exited with status", pd.log()), "no worker crashed",
     pd.log()[-3000:])
t.ok(wait_until(lambda: pd.spool_files() == [], 10), "nothing left in the spool directory",
     pd.spool_files())
t.eq(pd.stop(), 0, "posternd stops with status 0")

# (d) A SIGHUP that arrives while posternd is still starting (here: while it loads a
# database of 300 000 hash signatures) is neither fatal (SIGHUP's default action) nor
# lost: posternd comes up, then reloads.
BIG = os.path.join(WS, "db-big")
shutil.copytree(os.path.join(SRCDIR, "spec", "data", "clamav"), BIG)
with open(os.path.join(BIG, "many.hdb"), "w") as f:
    f.write("".join("%032x:%d:Postern.Test.Many-%d\n" % (i * 2654435761 + 7, 1000 + i % 5000, i)
                    for i in range(300000)))
for n in os.listdir(BIG):
    os.chmod(os.path.join(BIG, n), 0o644)
os.chmod(BIG, 0o755)
slow = Posternd({"scan": {"policy": "scan.lua", "forward": "127.0.0.1:%d" % sink.port, "workers": 1}},
                settings={"clamav": {"database": BIG, "self_check": 0}}, start=False)
slow.start(wait=False)


def loading_signatures():
    """posternd has many.hdb open: it is reading the signatures, well inside its start-up."""
    try:
        fds = os.listdir("/proc/%d/fd" % slow.proc.pid)
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink("/proc/%d/fd/%s" % (slow.proc.pid, fd)).endswith("many.hdb"):
                return True
        except OSError:
            pass
    return False


def catch_loading():
    return wait_until(lambda: loading_signatures() or slow.proc.poll() is not None, 30, step=0.001)


seen = catch_loading()
t.ok(seen and slow.proc.poll() is None, "start-up: posternd caught while it reads the signatures")
slow.proc.send_signal(signal.SIGHUP)
# the port is bound before the signatures load: "up" is the master's listener line and a greeting
t.ok(wait_until(lambda: slow.proc.poll() is not None or "listener scan: SMTP on" in slow.log(), 60) and
     slow.proc.poll() is None and Client(slow.ports["scan"], timeout=30).greeting.code == 220,
     "a SIGHUP during start-up: posternd still comes up and greets", slow.log()[-2000:])
t.ok(slow.wait_log(r"reloaded", timeout=60), "... and then reloads, as it was asked",
     slow.log()[-2000:])
t.eq(slow.stop(), 0, "... and stops with status 0")

# (e) The same moment, SIGTERM: held until the master's handlers exist, then an
# ordinary stop. (Before, the default action killed the process: status -15.)
slow.start(wait=False)
seen = catch_loading()
t.ok(seen and slow.proc.poll() is None, "(e) start-up: posternd caught while it reads the signatures")
since = len(slow.log())
slow.proc.send_signal(signal.SIGTERM)
try:
    status = slow.proc.wait(timeout=60)
except Exception:
    status = None
t.eq(status, 0, "(e) a SIGTERM during start-up: posternd exits with status 0", slow.log()[-2000:])
after = slow.log()[since:]
t.ok(re.search(r"stopping: draining sessions", after) and re.search(r"\bstopped\b", after),
     "(e) ... after the ordinary stop (the log says stopping, stopped)", after[-2000:])
t.ok(not re.search(r"died with signal|exited with status", after),
     "(e) ... and no process of it died", after[-2000:])
t.done()
