"""No loss when forward fails: the client hears 250 only for what forward accepted.

posternd answers 250 only after the reinjection listener (`forward`) accepted
the message; every other outcome is a 4xx (the MTA keeps the message and
retries) or a 5xx passed back (the MTA bounces it). Each scenario has its own
sink and its own listener:

  (a) forward temp-fails one of two recipients at RCPT (SMTP mode): the
      client hears 4xx and the sink stores nothing (the downstream
      transaction is reset, nobody gets a partial copy);
  (b) forward rejects every recipient: 5xx, nothing stored;
  (c) forward rejects one recipient and accepts the other (SMTP mode): as
      amavisd-new does, a delivery status notification (null sender, to the
      original sender, multipart/report) for the rejected recipient goes to
      forward first, then the message for the accepted one, and the client
      hears 250; a message with a null sender gets no notification;
  (d) forward answers the end of data with 451: 4xx; with 554: 5xx;
  (e) forward drops the connection in the middle of DATA: 4xx;
  (f) nothing listens on forward: 451 4.4.1, and the start-up log warned
      that forward is not reachable;
  (g) forward is slower than forward_timeout: 4xx within a bounded time;
  (h) a cached downstream connection that died meanwhile (the sink was
      restarted on the same port; or the connection is cut as the next
      transaction starts on it) is replaced: the next message still gets 250;
  (i) after every failure the next message on the same listener (and the
      same client session) passes normally once forward is healthy; the log
      has one summary line with result=deferred/rejected/partial for each
      failed message; the spool directory is empty at the end;
  LMTP: one reply per recipient after the data; a forward that temp-fails
      one, rejects one and accepts one gives 4xx, 5xx, 2xx in recipient
      order, and the accepted recipient gets the message exactly once.
"""
import re
import socket
import threading
import time

from harness import (Client, Posternd, Reply, Sink, free_port, mail_id, message, send_message,
                     split_added, t)

SENDER = "sender@example.org"


# ---------------------------------------------------------------- helpers of this spec
def attempt(c, rcpts, data, sender=SENDER, hello=None, lmtp=False):
    """send_message, but a protocol surprise becomes a failed reply instead of a crash."""
    try:
        return send_message(c, sender, rcpts, data, hello=hello, lmtp=lmtp)
    except (AssertionError, OSError, EOFError, ValueError) as e:
        bad = Reply(0, ["no reply: %r" % (e,)])
        return [bad] * len(rcpts) if lmtp else bad


def connect(port, hello="EHLO client.test"):
    c = Client(port)
    r = c.cmd(hello)
    t.eq(r.code, 250, "%s on port %d gives 250" % (hello.split()[0], port))
    return c


def rcpt_addrs(env):
    return [x["addr"] for x in env.get("rcpts", [])]


def ends_with_original(data, original):
    return split_added(data, original if original.endswith(b"\r\n") else original + b"\r\n")[0] \
        is not None


failed = []   # (scenario, listener, mail id, expected result) for the summary-line checks


def passes_next(label, c, listener, sink, rcpt="next@example.com"):
    """(i): the next message on the same session passes and reaches sink exactly once."""
    before = sink.count()
    original = message(subject="after " + label)
    r = attempt(c, [rcpt], original)
    t.eq(r.code, 250, "%s (i): the next message on listener %s gets 250" % (label, listener))
    msgs = sink.messages()
    t.eq(len(msgs), before + 1, "%s (i): the healthy sink got it" % label)
    if len(msgs) > before:
        env, data = msgs[-1]
        t.ok(env.get("mail_from") == SENDER and rcpt_addrs(env) == [rcpt] and
             ends_with_original(data, original),
             "%s (i): with its own envelope and bytes only" % label, env)


def restart_sink(old, name, *args):
    """Stop a sink and start another (healthy unless args say otherwise) on the same port."""
    old.stop()
    return Sink(*args, port=old.port, name=name)


class CuttingProxy:
    """TCP relay to a sink that can cut the connections it already has.

    After cut(), a connection opened earlier is closed (both ways, nothing
    relayed) as soon as posternd writes to it again: a cached connection that
    looked alive when posternd checked it and turns out dead once used.
    Connections opened after cut() are relayed normally.
    """

    def __init__(self, target_port):
        self.target = target_port
        self.lsock = socket.socket()
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(16)
        self.port = self.lsock.getsockname()[1]
        self.epoch = 0
        self.cut_below = 0
        self.accepted = 0
        self.cuts = 0
        threading.Thread(target=self._accept_loop, daemon=True).start()

    def cut(self):
        self.epoch += 1
        self.cut_below = self.epoch

    def _accept_loop(self):
        while True:
            try:
                down, _ = self.lsock.accept()
                up = socket.create_connection(("127.0.0.1", self.target), timeout=30)
            except OSError:
                continue
            self.accepted += 1
            epoch = self.epoch
            threading.Thread(target=self._pump, args=(down, up, epoch, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(up, down, epoch, False), daemon=True).start()

    def _pump(self, src, dst, epoch, from_posternd):
        try:
            src.settimeout(120)
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if from_posternd and epoch < self.cut_below:
                    self.cuts += 1
                    break
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()


# ---------------------------------------------------------------- the world
sinks = {
    "a": Sink(name="a"),
    "b": Sink(name="b"),
    "c": Sink(name="c"),
    "d451": Sink("--data-reply", "451 4.3.0 sink is busy", name="d451"),
    "d554": Sink("--data-reply", "554 5.6.0 sink refuses the content", name="d554"),
    "e": Sink("--drop-in-data", name="e"),
    "g": Sink("--data-delay", "3", name="g"),
    "h": Sink(name="h"),
    "hcut": Sink(name="hcut"),
    "lmtp": Sink(name="lmtp"),
}
f_port = free_port()          # nothing listens here until (f) starts a sink on it
proxy = CuttingProxy(sinks["hcut"].port)


def fwd(port):
    return "127.0.0.1:%d" % port


listeners = {name: {"forward": fwd(s.port), "workers": 1} for name, s in sinks.items()}
listeners["f"] = {"forward": fwd(f_port), "workers": 1}
listeners["g"]["forward_timeout"] = 1
listeners["h"]["forward_cache_time"] = 30
listeners["hcut"] = {"forward": fwd(proxy.port), "workers": 1, "forward_cache_time": 30}
listeners["lmtp"]["protocol"] = "lmtp"
pd = Posternd(listeners)
ports = pd.ports

# ---------------------------------------------------------------- (a) temp-fail at RCPT
c = connect(ports["a"])
r = attempt(c, ["ok1@example.com", "tempfail1@example.com"], message(subject="a"))
t.eq(r.cls(), 4, "(a) one recipient temp-failed at RCPT: the client hears 4xx")
t.match(r"^4\d\d 4\.\d+\.\d+ id=\w+, ", r.text, "(a) the 4xx names our mail id")
t.eq(sinks["a"].count(), 0, "(a) the sink stored nothing: no partial copy for the other recipient")
failed.append(("a", "a", mail_id(r), "deferred"))
r = attempt(c, ["tempfail2@example.com", "ok2@example.com"], message(subject="a2"))
t.eq(r.cls(), 4, "(a) same with the temp-failed recipient first: 4xx")
t.eq(sinks["a"].count(), 0, "(a) still nothing stored")
failed.append(("a", "a", mail_id(r), "deferred"))
passes_next("(a)", c, "a", sinks["a"])
c.close()

# ---------------------------------------------------------------- (b) all rejected
c = connect(ports["b"])
r = attempt(c, ["reject1@example.com", "reject2@example.com"], message(subject="b"))
t.eq(r.cls(), 5, "(b) every recipient rejected by forward: the client hears 5xx")
t.match(r"^5\d\d 5\.1\.1 id=\w+, ", r.text, "(b) the 5xx carries forward's status and our mail id")
t.eq(sinks["b"].count(), 0, "(b) the sink stored nothing")
failed.append(("b", "b", mail_id(r), "rejected"))
passes_next("(b)", c, "b", sinks["b"])
c.close()

# ---------------------------------------------------------------- (c) mixed permanent outcome
c = connect(ports["c"])
original = message(subject="c mixed", body="The secret body text.\r\n")
r = attempt(c, ["reject1@example.com", "ok1@example.com"], original)
t.eq(r.code, 250, "(c) one rejected, one accepted: the client hears 250")
t.match(r"^250 2\.0\.0 id=\w+, from MTA: 250 ", r.text, "(c) the 250 carries the downstream reply")
c_mid = mail_id(r)
failed.append(("c", "c", c_mid, "partial"))
msgs = sinks["c"].messages()
t.eq(len(msgs), 2, "(c) the sink got exactly two messages: the notification and the message")
if len(msgs) == 2:
    (denv, dsn), (menv, mdata) = msgs
    t.eq(denv.get("mail_from"), "", "(c) first the notification, from the null sender")
    t.eq(rcpt_addrs(denv), [SENDER], "(c) ... to the original sender only")
    dtext = dsn.decode("utf-8", "replace")
    t.match(r"(?mi)^Content-Type: multipart/report;\s*report-type=delivery-status", dtext,
            "(c) ... a multipart/report of type delivery-status")
    t.match(r"(?mi)^Content-Type: message/delivery-status", dtext,
            "(c) ... with a message/delivery-status part")
    t.match(r"(?mi)^Final-Recipient: rfc822; ?reject1@example\.com\r?$", dtext,
            "(c) ... naming the rejected recipient")
    t.match(r"(?mi)^Action: failed\r?$", dtext, "(c) ... Action: failed")
    t.match(r"(?mi)^Status: 5\.1\.1\r?$", dtext, "(c) ... with forward's status code")
    t.ok("ok1@example.com" not in dtext, "(c) ... and not the accepted recipient", dtext)
    mid = re.search(rb"Message-ID: <([^>]+)>", original).group(1).decode()
    t.ok(mid in dtext, "(c) ... returning the original header (its Message-ID)", dtext)
    t.ok("secret body text" not in dtext, "(c) ... but never the original body", dtext)
    t.eq(menv.get("mail_from"), SENDER, "(c) then the message, from the original sender")
    t.eq(rcpt_addrs(menv), ["ok1@example.com"], "(c) ... to the accepted recipient only")
    t.ok(ends_with_original(mdata, original), "(c) ... with the original bytes", mdata[-300:])
before = sinks["c"].count()
original = message(subject="c bounce of a bounce")
r = attempt(c, ["reject1@example.com", "ok1@example.com"], original, sender="")
t.eq(r.code, 250, "(c) mixed outcome for a null-sender message: 250")
failed.append(("c", "c", mail_id(r), "partial"))
msgs = sinks["c"].messages()[before:]
t.ok(len(msgs) == 1 and msgs[0][0].get("mail_from") == "" and
     rcpt_addrs(msgs[0][0]) == ["ok1@example.com"] and ends_with_original(msgs[0][1], original),
     "(c) ... only the message is delivered: a bounce is never bounced",
     [(e, d[-200:]) for e, d in msgs])
passes_next("(c)", c, "c", sinks["c"])
c.close()

# ---------------------------------------------------------------- (d) end of data 451 / 554
c = connect(ports["d451"])
r = attempt(c, ["ok@example.com"], message(subject="d451"))
t.eq(r.cls(), 4, "(d) forward answers the end of data with 451: the client hears 4xx")
t.match(r"^4\d\d 4\.\d+\.\d+ id=\w+, ", r.text, "(d) the 4xx names our mail id")
t.eq(sinks["d451"].count(), 0, "(d) nothing stored by the 451 sink")
failed.append(("d", "d451", mail_id(r), "deferred"))
sinks["d451"] = restart_sink(sinks["d451"], "d451-healthy")
passes_next("(d 451)", c, "d451", sinks["d451"])
c.close()

c = connect(ports["d554"])
r = attempt(c, ["ok@example.com"], message(subject="d554"))
t.eq(r.cls(), 5, "(d) forward answers the end of data with 554: the client hears 5xx")
t.match(r"^5\d\d 5\.6\.0 id=\w+, ", r.text, "(d) the 5xx carries forward's status and our mail id")
failed.append(("d", "d554", mail_id(r), "rejected"))
sinks["d554"] = restart_sink(sinks["d554"], "d554-healthy")
passes_next("(d 554)", c, "d554", sinks["d554"])
c.close()

# ---------------------------------------------------------------- (e) dropped in DATA
c = connect(ports["e"])
r = attempt(c, ["ok@example.com"], message(subject="e", body="x" * 200 + "\r\n" * 50))
t.eq(r.cls(), 4, "(e) forward drops the connection in the middle of DATA: 4xx")
t.eq(sinks["e"].count(), 0, "(e) nothing stored")
failed.append(("e", "e", mail_id(r), "deferred"))
sinks["e"] = restart_sink(sinks["e"], "e-healthy")
passes_next("(e)", c, "e", sinks["e"])
c.close()

# ---------------------------------------------------------------- (f) nothing listening
t.match(r"listener f: forward 127\.0\.0\.1:%d is not reachable" % f_port, pd.log(),
        "(f) the start-up log warned that forward of listener f is not reachable")
c = connect(ports["f"])
r = attempt(c, ["ok@example.com"], message(subject="f"))
t.match(r"^451 4\.4\.1 id=\w+, ", r.text, "(f) nothing listens on forward: 451 4.4.1")
failed.append(("f", "f", mail_id(r), "deferred"))
sinks["f"] = Sink(port=f_port, name="f")
passes_next("(f)", c, "f", sinks["f"])
c.close()

# ---------------------------------------------------------------- (g) forward too slow
c = connect(ports["g"])
started = time.monotonic()
r = attempt(c, ["ok@example.com"], message(subject="g"))
took = time.monotonic() - started
t.eq(r.cls(), 4, "(g) forward slower than forward_timeout (1 s, sink takes 3 s): 4xx")
t.ok(took < 2.8, "(g) ... heard before the sink would have answered (%.2f s)" % took)
failed.append(("g", "g", mail_id(r), "deferred"))
sinks["g"] = restart_sink(sinks["g"], "g-healthy")
passes_next("(g)", c, "g", sinks["g"])
c.close()

# ---------------------------------------------------------------- (h) cached connection died
c = connect(ports["h"])
first = message(subject="h first")
r = attempt(c, ["ok@example.com"], first)
t.eq(r.code, 250, "(h) first message gets 250 (the worker keeps the connection to forward)")
c.cmd("QUIT")
c.close()
old_dir_count = sinks["h"].count()
t.eq(old_dir_count, 1, "(h) ... and is stored by the first sink")
sinks["h"] = restart_sink(sinks["h"], "h-restarted")
c = connect(ports["h"])
second = message(subject="h second")
r = attempt(c, ["ok@example.com"], second)
t.eq(r.code, 250, "(h) after the sink restarted on the same port, the next message gets 250")
msgs = sinks["h"].messages()
t.ok(len(msgs) == 1 and ends_with_original(msgs[0][1], second),
     "(h) ... delivered once to the restarted sink", len(msgs))
c.close()

c = connect(ports["hcut"])
base = proxy.accepted          # posternd's start-up probe of forward also counts
r = attempt(c, ["ok@example.com"], message(subject="hcut first"))
t.eq(r.code, 250, "(h) through a relay: first message gets 250")
c.cmd("QUIT")
c.close()
t.eq(proxy.accepted - base, 1, "(h) ... over one downstream connection")
proxy.cut()
c = connect(ports["hcut"])
second = message(subject="hcut second")
r = attempt(c, ["ok@example.com"], second)
t.eq(r.code, 250, "(h) the cached connection dies when used for the next message: still 250")
t.ok(proxy.cuts >= 1 and proxy.accepted - base == 2,
     "(h) ... the cached connection was tried, then a fresh one used",
     "cuts=%d accepted=%d" % (proxy.cuts, proxy.accepted - base))
msgs = sinks["hcut"].messages()
t.ok(len(msgs) == 2 and ends_with_original(msgs[1][1], second),
     "(h) ... and the message delivered once", len(msgs))
c.close()

# ---------------------------------------------------------------- LMTP: one reply per recipient
c = connect(ports["lmtp"], hello="LHLO client.test")
original = message(subject="lmtp mixed")
rs = attempt(c, ["tempfail1@example.com", "reject1@example.com", "ok1@example.com"], original,
             lmtp=True)
t.eq([x.cls() for x in rs], [4, 5, 2], "LMTP: replies 4xx, 5xx, 2xx in recipient order")
t.ok(len(set(mail_id(x) for x in rs)) == 1 and mail_id(rs[0]) != "?",
     "LMTP: the three replies name the same mail id", rs)
t.match(r"^250 2\.0\.0 id=\w+, from MTA: 250 ", rs[2].text, "LMTP: the 2xx carries forward's reply")
msgs = sinks["lmtp"].messages()
t.eq(len(msgs), 1, "LMTP: the sink got one message (no notification: the MTA bounces itself)")
if msgs:
    t.eq((msgs[0][0].get("mail_from"), rcpt_addrs(msgs[0][0])), (SENDER, ["ok1@example.com"]),
         "LMTP: ... for the accepted recipient only")
    t.ok(ends_with_original(msgs[0][1], original), "LMTP: ... with the original bytes")
failed.append(("LMTP", "lmtp", mail_id(rs[0]), "partial"))
before = sinks["lmtp"].count()
rs = attempt(c, ["next@example.com"], message(subject="lmtp next"), lmtp=True)
t.eq([x.code for x in rs], [250], "LMTP (i): the next message gets 250")
t.eq(sinks["lmtp"].count(), before + 1, "LMTP (i): ... and is delivered")
c.close()

# ---------------------------------------------------------------- (i) the log and the spool
for label, listener, mid, result in failed:
    line = pd.wait_log(r"msg listener=%s id=%s .*" % (re.escape(listener), re.escape(mid)), 5)
    t.ok(line is not None and " result=%s " % result in line.group(0),
         "(i) %s: summary line for %s has result=%s" % (label, mid, result),
         line.group(0) if line else pd.log()[-3000:])
line = pd.wait_log(r"msg listener=c id=%s .*" % re.escape(c_mid), 1)
t.match(r" result=partial refused=<reject1@example\.com> ", line.group(0) if line else "",
        "(c) the summary line lists the refused recipient")
t.eq(pd.spool_files(), [], "(i) nothing left in the spool directory while running")
t.eq(pd.stop(), 0, "posternd stops with status 0")
t.eq(pd.spool_files(), [], "(i) nothing left in the spool directory at the end")
t.done()
