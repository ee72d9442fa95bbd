"""The master's lifecycle: workers are replaced, SIGHUP reloads, SIGTERM drains.

  (a) a worker killed with SIGKILL is logged and replaced (the pool is back
      to `workers`), and the next sessions are served;
  (e) a worker that keeps dying young is throttled: the replacement waits
      1 s, then 2 s (the delay doubles), and the log says so, while the
      other workers keep serving;
  (b) SIGHUP with a changed configuration (a second listener on a new port,
      more workers) logs "reloaded ... generation 2"; the new listener takes
      mail, the pool has the new size once the old generation has left, and
      a session that was inside a transaction (after RCPT, before DATA) during
      the reload completes its message with 250: no session is dropped;
  (c) SIGHUP with a broken configuration (a syntax error, an unknown key, a
      listen address that is taken) logs that the reload failed and why (file,
      line, key), keeps the old generation serving mail with the same
      workers, and does not count a generation: the next good reload is
      generation 3;
  (d) SIGTERM while a client is inside a transaction: that transaction
      completes with 250 and is delivered, idle sessions get 421 4.3.2 (or
      are closed), no new session is started, and posternd exits 0 within
      drain_timeout; a session that does not finish within drain_timeout is
      cut (no 250: its message stays with the client) and posternd still
      exits 0 soon after drain_timeout.
"""
import os
import re
import signal
import socket
import time

from harness import Client, Posternd, Sink, message, port_open, stuff, t, wait_until

SENDER = "sender@example.org"
DRAIN = 10

sink = Sink()
FWD = "127.0.0.1:%d" % sink.port


# ---------------------------------------------------------------- helpers of this spec
def settings(**extra):
    """The global settings Posternd writes by default, plus ours (for Posternd.write)."""
    g = {"spool_dir": pd.spool, "hostname": "filter.test", "log_level": "info",
         "drain_timeout": DRAIN}
    if os.geteuid() == 0:
        g["user"] = "nobody"
    g.update(extra)
    return g


def delivered(subject):
    """How many messages with this subject the sink stored."""
    needle = ("Subject: %s\r\n" % subject).encode()
    return sum(1 for _, data in sink.messages() if needle in data)


_serial = [0]


def deliver(port, label):
    """One whole session on port; True if the message got 250 and reached the sink once."""
    _serial[0] += 1
    subject = "%s #%d" % (label, _serial[0])
    try:
        c = Client(port, timeout=15)
        ok = c.cmd("EHLO client.test").code == 250
        ok = ok and c.cmd("MAIL FROM:<%s>" % SENDER).code == 250
        ok = ok and c.cmd("RCPT TO:<rcpt@example.com>").code == 250
        ok = ok and c.cmd("DATA").code == 354
        if ok:
            c.send(stuff(message(subject=subject)))
            ok = c.reply().code == 250
        try:
            c.cmd("QUIT")
        except (OSError, EOFError):
            pass
        c.close()
    except (OSError, EOFError, ValueError) as e:
        print("# session on %d failed: %r" % (port, e))
        return False
    return ok and delivered(subject) == 1


def open_transaction(port):
    """A client inside a transaction: EHLO, MAIL and RCPT done, DATA not yet sent."""
    c = Client(port, timeout=30)
    ok = c.cmd("EHLO inflight.test").code == 250
    ok = ok and c.cmd("MAIL FROM:<%s>" % SENDER).code == 250
    ok = ok and c.cmd("RCPT TO:<inflight@example.com>").code == 250
    return c, ok


def finish_transaction(c, subject):
    """DATA and the message on an open transaction: the final reply (or None)."""
    try:
        if c.cmd("DATA").code != 354:
            return None
        c.send(stuff(message(subject=subject)))
        return c.reply()
    except (OSError, EOFError, ValueError) as e:
        print("# in-flight transaction failed: %r" % (e,))
        return None


def first_reply_or_close(c, timeout):
    """The next reply the server sends unasked, 'closed' if it hangs up, None if silent."""
    c.sock.settimeout(timeout)
    try:
        return c.reply()
    except (EOFError, ConnectionError):
        return "closed"
    except socket.timeout:
        return None


def pool_is(n, without=()):
    kids = pd.children()
    return len(kids) == n and not set(kids) & set(without)


def new_worker(old):
    """PID of a worker that is not in old, waiting at most 10 s."""
    def look():
        fresh = set(pd.children()) - set(old)
        return min(fresh) if fresh else None
    return wait_until(look, 10, 0.02)


pd = Posternd({"main": {"forward": FWD, "workers": 2}}, settings={"drain_timeout": DRAIN})
started = time.monotonic()
main = pd.ports["main"]

# ---------------------------------------------------------------- (a) a killed worker is replaced
t.ok(wait_until(lambda: pool_is(2), 10), "the master starts `workers` (2) workers", pd.children())
time.sleep(max(0, 2.5 - (time.monotonic() - started)))   # past the young-death window
victim = pd.children()[0]
mark = len(pd.log())
os.kill(victim, signal.SIGKILL)
t.ok(pd.wait_log(r"worker %d of listener main died with signal 9" % victim, 10, mark),
     "(a) the master logs the killed worker", pd.log()[mark:])
t.ok(wait_until(lambda: pool_is(2, [victim]), 10), "(a) ... and replaces it: 2 workers again",
     pd.children())
t.ok(all(deliver(main, "after kill") for _ in range(4)), "(a) the next sessions are served")

# ---------------------------------------------------------------- (e) dying young is throttled
time.sleep(2.2)   # every worker is past the young-death window
old = pd.children()
os.kill(old[0], signal.SIGKILL)
w2 = new_worker(old)
t.ok(w2 is not None, "(e) a worker that lived long is replaced at once")
mark = len(pd.log())
delays = []
for expect_ms in (1000, 2000):
    before = pd.children()
    killed_at = time.monotonic()
    if w2:
        os.kill(w2, signal.SIGKILL)
    t.ok(pd.wait_log(r"listener main: workers die young; next start in %d ms" % expect_ms, 5, mark),
         "(e) a worker dying young: the log says the next start waits %d ms" % expect_ms,
         pd.log()[mark:])
    if expect_ms == 2000:
        t.ok(deliver(main, "while throttled"), "(e) the other worker serves while throttled")
    w2 = new_worker([p for p in before if p != w2])
    delays.append(time.monotonic() - killed_at)
    t.ok(w2 is not None and delays[-1] >= expect_ms / 1000.0 * 0.9,
         "(e) ... and the replacement came after %.2f s (>= %.1f s)" % (delays[-1], expect_ms / 1000.0))
t.ok(wait_until(lambda: pool_is(2), 10), "(e) the pool is whole again", pd.children())
t.ok(deliver(main, "after throttle"), "(e) sessions are served after the throttle")

# ---------------------------------------------------------------- (b) SIGHUP, changed config
inflight, ok = open_transaction(main)
t.ok(ok, "(b) a session is inside a transaction (after RCPT) before the reload")
gen1 = pd.children()
pd.write(settings(), {"main": {"forward": FWD, "workers": 3},
                      "second": {"forward": FWD, "workers": 1}})
second = pd.ports["second"]
with open(pd.conf) as f:
    good_conf = f.read()
mark = len(pd.log())
pd.signal(signal.SIGHUP)
t.ok(pd.wait_log(r"reloaded \S+: generation 2, 2 listener\(s\)", 10, mark),
     "(b) SIGHUP: the log says reloaded, generation 2, 2 listeners", pd.log()[mark:])
t.ok(wait_until(lambda: port_open(second), 10), "(b) the new listener listens")
t.ok(deliver(second, "new listener"), "(b) the new listener accepts mail")
t.ok(deliver(main, "main after reload"), "(b) the old listener still accepts mail")
r = finish_transaction(inflight, "in flight during reload")
t.ok(r is not None and r.code == 250,
     "(b) the session open during the reload completes its message with 250", r)
t.eq(delivered("in flight during reload"), 1, "(b) ... and it is delivered once")
inflight.close()
t.ok(wait_until(lambda: pool_is(4, gen1), 15),
     "(b) the old generation leaves; the new pool has 3 + 1 workers", pd.children())
t.ok(not re.search(r"died with signal|exited with status", pd.log()[mark:]),
     "(b) the old workers left cleanly", pd.log()[mark:])

# ---------------------------------------------------------------- (c) SIGHUP, broken config
for label, text, why in [
        ("a syntax error", good_conf + "this is not lua {{\n", r"%s:\d+: .*" % re.escape(pd.conf)),
        ("an unknown key", good_conf + "bogus_key = 1\n",
         r"%s:\d+: unknown key 'bogus_key'" % re.escape(pd.conf)),
        ("an unknown listener key", good_conf.replace('"second" {', '"second" {\n  bogus = 3,'),
         r"%s:\d+: listener \"second\": unknown key 'bogus'" % re.escape(pd.conf)),
        # the sink's port, taken by the sink; forwarding elsewhere (forwarding to its own
        # listen address is refused before any bind is tried)
        ("a listen address that is taken",
         good_conf + 'listener "third" {\n  listen = "127.0.0.1:%d",\n  forward = "127.0.0.1:%d"\n}\n'
         % (sink.port, sink.port + 1 if sink.port < 65535 else sink.port - 1),
         r"listener \"third\": cannot listen on 127\.0\.0\.1:%d" % sink.port)]:
    before = sorted(pd.children())
    with open(pd.conf, "w") as f:
        f.write(text)
    mark = len(pd.log())
    pd.signal(signal.SIGHUP)
    line = pd.wait_log(r"reload failed, keeping the running configuration: .*", 10, mark)
    t.ok(line is not None, "(c) %s: the log says the reload failed" % label, pd.log()[mark:])
    t.match(why, line.group(0) if line else "", "(c) %s: ... and why" % label)
    time.sleep(0.5)
    t.eq(sorted(pd.children()), before, "(c) %s: the running workers are kept" % label)
    t.ok(deliver(main, "old config main") and deliver(second, "old config second"),
         "(c) %s: the running configuration keeps serving mail" % label)
    t.ok("generation 3" not in pd.log()[mark:], "(c) %s: no new generation" % label)
with open(pd.conf, "w") as f:
    f.write(good_conf)
mark = len(pd.log())
pd.signal(signal.SIGHUP)
t.ok(pd.wait_log(r"reloaded \S+: generation 3, 2 listener\(s\)", 10, mark),
     "(c) the good configuration back: the next reload is generation 3", pd.log()[mark:])
t.ok(wait_until(lambda: pool_is(4), 15) and deliver(main, "gen3") and deliver(second, "gen3"),
     "(c) ... and it serves mail", pd.children())

# ---------------------------------------------------------------- (d) SIGTERM drains
inflight, ok = open_transaction(main)
t.ok(ok, "(d) a session is inside a transaction (after RCPT) before SIGTERM")
idle = Client(main, timeout=10)
t.eq(idle.cmd("EHLO idle.test").code, 250, "(d) another session is idle (after EHLO)")
idle2 = Client(second, timeout=10)
mark = len(pd.log())
stop_at = time.monotonic()
pd.signal(signal.SIGTERM)
t.ok(pd.wait_log(r"stopping: draining sessions", 5, mark), "(d) the log says it is draining")
for name, c in (("after EHLO", idle), ("after the greeting", idle2)):
    r = first_reply_or_close(c, 5)
    t.ok(r == "closed" or (r is not None and r.text.startswith("421 4.3.2 ")),
         "(d) the idle session %s gets 421 4.3.2 or is closed" % name, r)
    c.close()
time.sleep(0.3)
late = None
try:
    late = Client(main, timeout=3)
    got = late.greeting
except ConnectionRefusedError:
    got = "refused"
except (socket.timeout, EOFError, ConnectionError) as e:
    got = "no greeting (%r)" % (e,)
t.ok(got == "refused" or (hasattr(got, "code") and got.code == 421),
     "(d) a new connection during the drain is refused or told 421, not left waiting", got)
if late:
    late.close()
r = finish_transaction(inflight, "in flight during SIGTERM")
t.ok(r is not None and r.code == 250, "(d) the transaction in progress completes with 250", r)
t.eq(delivered("in flight during SIGTERM"), 1, "(d) ... and is delivered")
inflight.close()
try:
    status = pd.proc.wait(timeout=DRAIN + 5)
except Exception:
    status = None
took = time.monotonic() - stop_at
t.eq(status, 0, "(d) posternd exits 0")
t.ok(took < DRAIN, "(d) ... within drain_timeout (%.1f s < %d s)" % (took, DRAIN))
t.ok(pd.wait_log(r"\bstopped\b", 2, mark), "(d) the log says stopped", pd.log()[mark:])
t.eq(pd.children(), [], "(d) no worker is left")
t.eq(pd.spool_files(), [], "(d) nothing left in the spool directory")

# ---------------------------------------------------------------- (d) drain_timeout runs out
pd2 = Posternd({"slow": {"forward": FWD, "workers": 1}}, settings={"drain_timeout": 2})
stuck, ok = open_transaction(pd2.ports["slow"])
t.ok(ok, "(d) drain_timeout 2: a session sits inside a transaction and never sends DATA")
workers2 = pd2.children()
stop_at = time.monotonic()
pd2.signal(signal.SIGTERM)
try:
    status = pd2.proc.wait(timeout=15)
except Exception:
    status = None
took = time.monotonic() - stop_at
t.eq(status, 0, "(d) posternd exits 0 when the drain times out")
t.ok(1.5 <= took < 6, "(d) ... soon after drain_timeout (%.1f s)" % took)
t.match(r"drain timeout: killing the remaining workers", pd2.log(),
        "(d) the log says the remaining workers were killed")
t.ok(not any(os.path.exists("/proc/%d" % p) and
             open("/proc/%d/stat" % p).read().split()[2] != "Z" for p in workers2),
     "(d) the stuck worker is gone", workers2)
r = first_reply_or_close(stuck, 5)
t.ok(r == "closed" or (r is not None and r.code // 100 == 4),
     "(d) the cut session never heard 250 (its message stays with the client)", r)
stuck.close()
t.eq(delivered("never sent"), 0, "(d) nothing of it was delivered")
t.done()
