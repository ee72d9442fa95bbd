"""Hostile input gets a clear refusal: nothing crashes, hangs, leaks into the log or is delivered.

A security review of the server side of SMTP/LMTP, written as probes. Pins:
pathological MAIL/RCPT paths (unbalanced quotes, trailing backslashes, 600-byte
paths, source routes, <>, NUL, bare CR, escaped control bytes) and parameters
(bad SIZE, ENVID, NOTIFY, ORCPT; fifty thousand of them on one line) get
501/555/552 with the session still usable; XFORWARD with bad xtext, overlong or
CR-bearing values, unknown attributes or inside a transaction gets 501/503 and
changes nothing; DATA carries NUL bytes unchanged, a lone CRLF or an empty
message is answered, SMTP smuggling sequences (LF.CRLF, CRLF.LF, CR.CRLF, LF.LF)
never end the data, and garbage pipelined after the dot is answered line for
line; BDAT sizes of 2^63, 2^64, -1 or none end the session with 421 (where the
chunk ends is unknown), a bad BDAT keyword or BDAT between DATA's lines is
refused with the session usable, a promised chunk that never comes delivers
nothing; a command line of 1 MB or 32 MB without a newline gets 500 5.5.2 in
bounded memory; a client trickling one byte per 100 ms is cut off by
command_timeout/data_timeout; a client that never reads its replies does not
hold its worker; a flood of idle, rude and polite connections larger than the
pool is served or refused cleanly; a seeded fuzz of command lines (NUL, CR,
high bytes, long tokens) on SMTP and LMTP gets one well-formed reply per line
and a NOOP in sync after every batch. Reply lines never carry control bytes
(RFC 5321 4.2: textstring), the log never carries raw client control bytes
(they appear as \\xNN), no worker dies (the pool keeps its size, no "died with
signal"), and no refused or smuggled envelope is delivered.
"""
import random
import re
import socket
import threading
import time

from harness import Reply, Client, Posternd, Sink, message, split_added, stuff, t, wait_until

PROBE_TIMEOUT = 5      # every reply comes within this, or the probe fails
SMALL_TIMEOUT = 1      # command_timeout/data_timeout of the "slow" listeners, seconds

sink = Sink()
fwd = "127.0.0.1:%d" % sink.port
WORKERS = {"main": 2, "junk": 3, "wide": 1, "fuzz": 1, "lmtp": 2, "slow": 3, "deaf": 1, "flood": 2}
pd = Posternd({
    "main": {"forward": fwd, "workers": WORKERS["main"], "max_errors": 1000},
    "junk": {"forward": fwd, "workers": WORKERS["junk"]},
    "wide": {"forward": fwd, "workers": WORKERS["wide"], "smtp_line_limit": 1048576,
             "max_errors": 1000},
    "fuzz": {"forward": fwd, "workers": WORKERS["fuzz"], "max_errors": 100000,
             "smtp_line_limit": 1024},
    "lmtp": {"forward": fwd, "workers": WORKERS["lmtp"], "protocol": "lmtp",
             "max_errors": 100000, "smtp_line_limit": 1024},
    "slow": {"forward": fwd, "workers": WORKERS["slow"], "command_timeout": SMALL_TIMEOUT,
             "data_timeout": SMALL_TIMEOUT},
    "deaf": {"forward": fwd, "workers": WORKERS["deaf"], "command_timeout": SMALL_TIMEOUT},
    "flood": {"forward": fwd, "workers": WORKERS["flood"], "command_timeout": 2},
}, settings={"log_level": "debug"})  # debug: the per-error log lines carry client bytes too
P = pd.ports
all_workers = sum(WORKERS.values())
t.ok(wait_until(lambda: len(pd.children()) == all_workers, 10), "all %d workers are up" % all_workers)

probes = []       # every Probe made, for the global reply check at the end
delivered = [0]   # messages the spec expects at the sink so far


class Probe(Client):
    """A Client with short waits that keeps every raw reply line."""

    def __init__(self, port, timeout=PROBE_TIMEOUT, greet=True):
        self.raw = []
        probes.append(self)
        super().__init__(port, timeout=timeout, greet=greet)

    def line(self):
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("connection closed")
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        self.raw.append(line)
        return line.rstrip(b"\r").decode("utf-8", "replace")


def ask(c, line, raw=b""):
    """Send one command line (CRLF added) and any raw bytes after it; the reply, or None."""
    if isinstance(line, str):
        line = line.encode("utf-8", "surrogateescape")
    try:
        c.send(line + b"\r\n" + raw)
        return c.reply()
    except (OSError, EOFError, ValueError):
        return None


def replies(c, n):
    """n replies, or as many as came before a close or a timeout."""
    out = []
    try:
        for _ in range(n):
            out.append(c.reply())
    except (OSError, EOFError, ValueError):
        pass
    return out


def code(r):
    return r.code if r is not None else None


def printable(r):
    """RFC 5321 4.2: reply text is HT and %d32-126; no control byte may be echoed."""
    return r is not None and not any(re.search(r"[\x00-\x08\x0a-\x1f\x7f]", x) for x in r.lines)


def show(b, width=90):
    """Bytes for a TAP diagnostic: escaped, the first control byte in view."""
    m = re.search(rb"[\x00-\x09\x0b-\x1f\x7f]", b)
    start = max(0, m.start() - width // 2) if m and m.start() > width // 2 else 0
    return b[start:start + width].decode("latin-1").encode("unicode_escape").decode()


def label(want):
    """A reply pattern as words: r"^5\\d\\d 5\\.5\\.4 " -> "5xx 5.5.4"."""
    return want.replace(r"\d\d", "xx").replace(r"\.\d", ".x").replace(r"\.", ".").strip("^ ")


def expect_sink(n, wait=10):
    """The sink holds n messages (waiting for them), and not more a moment later."""
    wait_until(lambda: sink.count() >= n, wait)
    time.sleep(0.2)
    return sink.count()


def last_message():
    msgs = sink.messages()
    return msgs[-1] if msgs else ({}, b"")


def crashes_since(offset):
    """Workers that died (a signal) or bailed out (a sanitizer's exit status 1) since offset."""
    time.sleep(0.5)  # the master logs a death when it reaps the worker: give it that moment
    return re.findall(r"worker \d+ of listener \S+ (?:died with signal|exited with status) \d+",
                      pd.log()[offset:])


def hello(port, verb="EHLO"):
    c = Probe(port)
    r = ask(c, verb + " client.test")
    return c, r


def one(c):
    """The next reply, or None."""
    got = replies(c, 1)
    return got[0] if got else None


def envelope(c, sender, rcpts):
    """MAIL and RCPTs, each 250."""
    ok = code(ask(c, "MAIL FROM:<%s>" % sender)) == 250
    for rc in rcpts:
        ok = ok and code(ask(c, "RCPT TO:<%s>" % rc)) == 250
    return ok


def transaction(c, sender, rcpts):
    """MAIL, RCPTs and DATA, up to the 354."""
    return envelope(c, sender, rcpts) and code(ask(c, "DATA")) == 354


def data_reply(c, msg):
    """Send a message after 354; the reply."""
    try:
        c.send(stuff(msg))
    except OSError:
        return None
    return one(c)


# ------------------------------------------------------------ 1. MAIL paths and parameters
mark = len(pd.log())
c, r = hello(P["main"])
t.eq(code(r), 250, "main: EHLO")
bad_mail = [
    ("an unbalanced quote", b'MAIL FROM:<"abc@example.org>', r"^501 5\.5\.4 "),
    ("a backslash before the '>'", b"MAIL FROM:<abc\\>", r"^501 5\.5\.4 "),
    ("a backslash ending the line", b"MAIL FROM:<abc\\", r"^501 5\.5\.4 "),
    ("a 600-byte path", b"MAIL FROM:<" + b"a" * 588 + b"@example.org>", r"^501 5\.5\.4 "),
    ("no closing bracket", b"MAIL FROM:<abc@example.org", r"^501 5\.5\.4 "),
    ("junk glued to the path", b"MAIL FROM:<a@example.org>junk", r"^501 5\.5\.4 "),
    ("no brackets and a quote", b'MAIL FROM:"a"@example.org', r"^501 5\.5\.4 "),
    ("a source route without ':'", b"MAIL FROM:<@a.example,@b.example>", r"^501 5\.5\.4 "),
    ("a bare CR in the path", b"MAIL FROM:<a\rb@example.org>", r"^501 5\.5\.4 "),
    ("an ESC sequence in the path", b"MAIL FROM:<a\x1b[2Jb@example.org>", r"^501 5\.5\.4 "),
    ("a DEL in the path", b"MAIL FROM:<a\x7fb@example.org>", r"^501 5\.5\.4 "),
    ("a CR inside quotes", b'MAIL FROM:<"a\rb"@example.org>', r"^501 5\.5\.4 "),
    # RFC 5321 4.1.2: quoted-pairSMTP = %d92 %d32-126; a backslash does not make a
    # control byte legal, and what is accepted here is repeated downstream and logged
    ("a backslash-escaped CR", b"MAIL FROM:<a\\\rb@example.org>", r"^501 5\.5\.4 "),
    ("a backslash-escaped ESC sequence", b"MAIL FROM:<x\\\x1b[2J@example.org>", r"^501 5\.5\.4 "),
    ("a NUL byte", b"MAIL FROM:<a\x00b@example.org>", r"^500 5\.5\.2 "),
    ("SIZE=-1", b"MAIL FROM:<a@example.org> SIZE=-1", r"^5\d\d 5\.\d\.\d "),
    ("SIZE=2^64", b"MAIL FROM:<a@example.org> SIZE=18446744073709551616", r"^5\d\d 5\.\d\.\d "),
    ("an empty SIZE", b"MAIL FROM:<a@example.org> SIZE=", r"^501 5\.5\.4 "),
    ("ENVID with bad xtext", b"MAIL FROM:<a@example.org> ENVID=+ZZ", r"^501 5\.5\.4 "),
    ("ENVID with a trailing '+'", b"MAIL FROM:<a@example.org> ENVID=abc+", r"^501 5\.5\.4 "),
    ("ENVID of 101 bytes", b"MAIL FROM:<a@example.org> ENVID=" + b"e" * 101, r"^501 5\.5\.4 "),
    ("an empty RET", b"MAIL FROM:<a@example.org> RET=", r"^501 5\.5\.4 "),
    ("BODY=BINARYMIME", b"MAIL FROM:<a@example.org> BODY=BINARYMIME", r"^501 5\.5\.4 "),
    ("an unknown parameter", b"MAIL FROM:<a@example.org> X-EVIL=1", r"^555 5\.5\.4 "),
    ("an unknown parameter with an ESC", b"MAIL FROM:<a@example.org> X\x1b[2JY=1",
     r"^555 5\.5\.4 "),
]
for what, line, want in bad_mail:
    r = ask(c, line)
    t.ok(r is not None and re.search(want, r.text) and printable(r),
         "MAIL with %s: %s, printable" % (what, label(want)),
         "sent %s, got %r" % (show(line), r))
    if code(r) == 250:
        ask(c, "RSET")  # keep the next probe independent of this failure
t.eq(code(ask(c, "NOOP")), 250, "the session is usable after %d refused MAILs" % len(bad_mail))
t.eq(code(ask(c, "MAIL FROM:<>")), 250, "MAIL FROM:<> (the null sender): 250, so no MAIL above "
     "opened a transaction")
t.eq(code(ask(c, "RSET")), 250, "RSET")

# ------------------------------------------------------------ 2. RCPT paths and parameters
t.eq(code(ask(c, "MAIL FROM:<@a.example,@b.example:route@example.org>")), 250,
     "MAIL with a source route: 250 (the route is ignored)")
bad_rcpt = [
    ("<>", b"RCPT TO:<>", r"^501 5\.5\.4 "),
    ("a source route to nobody", b"RCPT TO:<@a.example:>", r"^501 5\.5\.4 "),
    ("'<@>'", b"RCPT TO:<@>", r"^501 5\.5\.4 "),
    ("a 600-byte path", b"RCPT TO:<" + b"r" * 588 + b"@example.com>", r"^501 5\.5\.4 "),
    ("an unbalanced quote", b'RCPT TO:<"victim@example.com>', r"^501 5\.5\.4 "),
    ("a trailing backslash", b"RCPT TO:<victim@example.com\\>", r"^501 5\.5\.4 "),
    ("a bare CR", b"RCPT TO:<victim\r@example.com>", r"^501 5\.5\.4 "),
    ("a backslash-escaped CR", b"RCPT TO:<victim\\\r@example.com>", r"^501 5\.5\.4 "),
    ("a backslash-escaped ESC", b"RCPT TO:<victim\\\x1b[31m@example.com>", r"^501 5\.5\.4 "),
    ("a NUL byte", b"RCPT TO:<victim\x00@example.com>", r"^500 5\.5\.2 "),
    # RFC 3461 4.1: NOTIFY is NEVER or a list of at least one of SUCCESS, FAILURE, DELAY
    ("an empty NOTIFY", b"RCPT TO:<victim@example.com> NOTIFY=", r"^5\d\d 5\.5\.4 "),
    ("NOTIFY=,", b"RCPT TO:<victim@example.com> NOTIFY=,", r"^5\d\d 5\.5\.4 "),
    ("NOTIFY=NEVER,SUCCESS", b"RCPT TO:<victim@example.com> NOTIFY=NEVER,SUCCESS", r"^5\d\d 5\.5\.4 "),
    ("NOTIFY=BOGUS", b"RCPT TO:<victim@example.com> NOTIFY=BOGUS", r"^5\d\d 5\.5\.4 "),
    ("NOTIFY of 200 bytes", b"RCPT TO:<victim@example.com> NOTIFY=" + b"SUCCESS," * 25,
     r"^5\d\d 5\.5\.4 "),
    ("ORCPT with bad xtext", b"RCPT TO:<victim@example.com> ORCPT=rfc822;+ZZ", r"^5\d\d 5\.5\.4 "),
    ("ORCPT without a type", b"RCPT TO:<victim@example.com> ORCPT=victim@example.com",
     r"^5\d\d 5\.5\.4 "),
    ("an unknown parameter with a CR", b"RCPT TO:<victim@example.com> X\rY=1", r"^555 5\.5\.4 "),
]
for what, line, want in bad_rcpt:
    r = ask(c, line)
    t.ok(r is not None and re.search(want, r.text) and printable(r),
         "RCPT with %s: %s, printable" % (what, label(want)),
         "sent %s, got %r" % (show(line), r))
t.eq(code(ask(c, "RSET")), 250, "RSET: none of the RCPT probes is delivered")
t.eq(code(ask(c, "MAIL FROM:<@a.example,@b.example:route@example.org>")), 250, "MAIL again")
t.eq(code(ask(c, "RCPT TO:<@hop1.example,@hop2.example:routed@example.com>")), 250,
     "RCPT with a source route: 250")
t.eq(code(ask(c, 'RCPT TO:<"john q. public"@example.com>')), 250, "RCPT with a quoted local part: 250")
t.eq(code(ask(c, "DATA")), 354, "DATA")
m_routes = message(subject="routes")
t.eq(code(data_reply(c, m_routes)), 250, "the message to the two recipients: 250")
delivered[0] += 1
t.eq(expect_sink(delivered[0]), delivered[0], "delivered once")
env, data = last_message()
t.eq(([r["addr"] for r in env.get("rcpts", [])], env.get("mail_from")),
     (["routed@example.com", '"john q. public"@example.com'], "route@example.org"),
     "source routes stripped, quoted local part kept, no refused recipient delivered")
c.close()

# ------------------------------------------------------------ 3. XFORWARD
c, r = hello(P["main"])
t.eq(code(ask(c, "XFORWARD NAME=good.example ADDR=192.0.2.7")), 250, "a good XFORWARD: 250")
bad_xf = [
    ("bad xtext '+ZZ'", b"XFORWARD NAME=+ZZ"),
    ("xtext '+00' (a NUL)", b"XFORWARD ADDR=192.0.2.1+00"),
    ("a trailing '+'", b"XFORWARD NAME=evil.example+"),
    ("a '+' and one hex digit", b"XFORWARD NAME=evil.example+4"),
    ("a decoded CR LF", b"XFORWARD HELO=evil+0D+0AX-Injected:+20yes"),
    ("a 300-byte value", b"XFORWARD NAME=" + b"n" * 300),
    ("an unknown attribute", b"XFORWARD FOO=bar"),
    ("an attribute without '='", b"XFORWARD NAME"),
    ("an empty attribute name", b"XFORWARD =value"),
    ("no attribute", b"XFORWARD"),
    ("an ESC in the attribute name", b"XFORWARD N\x1b[2JAME=a"),
    ("a CR in the attribute name", b"XFORWARD NA\rME=a"),
    ("100 good attributes then a bad one", b"XFORWARD" + b" NAME=evil.example" * 100 + b" ADDR=+ZZ"),
]
for what, line in bad_xf:
    r = ask(c, line)
    t.ok(r is not None and re.match(r"501 5\.5\.4 ", r.text) and printable(r),
         "XFORWARD with %s: 501 5.5.4, printable" % what, "sent %s, got %r" % (show(line), r))
t.eq(code(ask(c, "MAIL FROM:<xf@example.org>")), 250, "MAIL after the refused XFORWARDs")
r = ask(c, "XFORWARD NAME=evil.example")
t.match(r"^503 5\.5\.1 ", r and r.text, "XFORWARD inside a transaction: 503 5.5.1")
t.eq(code(ask(c, "RCPT TO:<xf@example.com>")), 250, "RCPT")
t.eq(code(ask(c, "DATA")), 354, "DATA")
t.eq(code(data_reply(c, message(subject="xforward"))), 250, "message after XFORWARD probes: 250")
delivered[0] += 1
expect_sink(delivered[0])
env, _ = last_message()
t.eq((env.get("xforward", {}).get("NAME"), env.get("xforward", {}).get("ADDR")),
     ("good.example", "192.0.2.7"), "only the accepted XFORWARD reached forward")
# xtext can encode any byte; a decoded control byte (+1B, +07) is refused, as Postfix's
# smtpd does, so it never reaches forward, a Received: line or the log
t.match(r"^501 5\.5\.4 ", (ask(c, "XFORWARD ADDR=192.0.2.9+1B[2J+07 NAME=esc.example") or
                           Reply(0, [""])).text,
        "XFORWARD ADDR with an ESC sequence and a BEL in xtext: 501 5.5.4")
r = None
if code(ask(c, "MAIL FROM:<esc@example.org>")) == 250 and code(ask(c, "RCPT TO:<esc@example.com>")) == 250 \
        and code(ask(c, "DATA")) == 354:
    r = data_reply(c, message(subject="escaped client"))
t.eq(code(r), 250, "and the next message: 250")
delivered[0] += 1
expect_sink(delivered[0])
env, _ = last_message()
t.eq(env.get("xforward", {}).get("NAME"), None,
     "nothing of the refused XFORWARD (not even its good NAME) reached forward")
# a recipient refused by forward makes a notification to the sender, and a log line naming
# the sender: if a control byte got into the sender (section 1), it must not reach the log raw
r = ask(c, "MAIL FROM:<dsn\\\x1b[2J\\\r@example.org>")
if code(r) == 250:
    r = None
    rcpts_ok = [code(ask(c, "RCPT TO:<%s>" % a)) for a in ("ok@example.com", "reject1@example.com")]
    if rcpts_ok == [250, 250] and code(ask(c, "DATA")) == 354:
        r = data_reply(c, message(subject="one recipient refused downstream"))
    if code(r) == 250:
        delivered[0] += 2  # the notification and the message
    expect_sink(delivered[0])
else:
    t.eq(code(r), 501, "MAIL with a backslash-escaped ESC and CR: 501")
c.close()

# ------------------------------------------------------------ 4. thousands of parameters
c, r = hello(P["wide"])
t.eq(code(r), 250, "wide (1 MB lines): EHLO")
t0 = time.monotonic()
r = ask(c, "XFORWARD" + " NAME=many.example" * 50000)
t.eq(code(r), 250, "XFORWARD with 50,000 attributes: 250")
r = ask(c, "MAIL FROM:<many@example.org>" + " AUTH=<>" * 50000)
t.eq(code(r), 250, "MAIL with 50,000 AUTH parameters: 250")
r = ask(c, "RCPT TO:<many@example.com>" + " NOTIFY=SUCCESS" * 50000)
t.eq(code(r), 250, "RCPT with 50,000 NOTIFY parameters: 250")
r = ask(c, "RCPT TO:<many2@example.com>" + " X=1" * 100000)
t.match(r"^555 5\.5\.4 ", r and r.text, "RCPT with 100,000 unknown parameters: 555 5.5.4")
t.ok(time.monotonic() - t0 < 10, "the four huge lines took %.1f s (bounded)" % (time.monotonic() - t0))
t.eq(code(ask(c, "RSET")), 250, "RSET: nothing of it delivered")
c.close()

# ------------------------------------------------------------ 5. DATA content
c, r = hello(P["main"])
m_nul = (b"Subject: nul\x00bytes\r\nX-Nul: a\x00b\r\n\r\nbody \x00\x00 with NULs\r\n\x00\r\n"
         b"\x00.\r\nend\r\n")
t.ok(transaction(c, "nul@example.org", ["nul@example.com"]), "NUL message: MAIL, RCPT, DATA")
c.send(stuff(m_nul))
t.eq(code(one(c)), 250, "a message with NUL bytes in header and body: 250")
delivered[0] += 1
expect_sink(delivered[0])
added, _ = split_added(last_message()[1], m_nul)
t.ok(added is not None and added.startswith(b"Received: "), "NUL bytes pass through unchanged",
     last_message()[1][-200:])

t.ok(transaction(c, "crlf@example.org", ["crlf@example.com"]), "lone CRLF: MAIL, RCPT, DATA")
c.send(b"\r\n.\r\n")
t.eq(code(one(c)), 250, "a message that is one empty line: 250")
delivered[0] += 1
expect_sink(delivered[0])
data = last_message()[1]
t.ok(data.startswith(b"Received: ") and data.endswith(b"\r\n\r\n") and data.count(b"\r\n\r\n") == 1,
     "it arrives as our header and the empty line", data[-200:])

t.ok(transaction(c, "empty@example.org", ["empty@example.com"]), "empty message: MAIL, RCPT, DATA")
c.send(b".\r\n")
r = one(c)
t.ok(r is not None and r.cls() in (2, 5), "'.' right after 354 (an empty message) is answered", r)
if r is not None and r.cls() == 2:
    delivered[0] += 1
t.eq(expect_sink(delivered[0]), delivered[0], "... and delivered exactly when it was accepted")
t.eq(code(ask(c, "NOOP")), 250, "the session goes on")

# SMTP smuggling: none of these sequences ends the data, so none of the commands after them runs
smuggle = (b"Subject: smuggling\r\n\r\nbefore\n.\r\n"
           b"MAIL FROM:<smuggler@evil.example>\r\nRCPT TO:<victim1@example.com>\r\nDATA\r\nhi\r\n"
           b"\r\n.\nRCPT TO:<victim2@example.com>\r\n"
           b"\r.\r\nRCPT TO:<victim3@example.com>\r\n"
           b"\n.\nRCPT TO:<victim4@example.com>\r\n"
           b".\r\r\nRCPT TO:<victim5@example.com>\r\n"
           b"\r\n.\x00\r\nRCPT TO:<victim6@example.com>\r\nafter\r\n")
t.ok(transaction(c, "legit@example.org", ["legit@example.com"]), "smuggling: MAIL, RCPT, DATA")
c.send(smuggle + b".\r\nNOOP\r\n")
got = replies(c, 2)
t.eq([x.code for x in got], [250, 250], "LF.CRLF, CRLF.LF, CR.CRLF, LF.LF, .CR CRLF and .NUL "
     "are data: one 250 for the message, then NOOP's")
c.sock.settimeout(0.5)
try:
    extra = c.sock.recv(4096) + c.buf
except socket.timeout:
    extra = c.buf
c.sock.settimeout(PROBE_TIMEOUT)
t.eq(extra, b"", "and no reply to any smuggled command")
delivered[0] += 1
t.eq(expect_sink(delivered[0]), delivered[0], "exactly one message delivered")
env, data = last_message()
t.eq(([r["addr"] for r in env.get("rcpts", [])], env.get("mail_from")),
     (["legit@example.com"], "legit@example.org"), "to the legitimate envelope only")
t.ok(b"victim6@example.com" in data and b"after" in data, "the smuggled lines are body text", data[-300:])

# garbage pipelined right after the dot is answered line by line
t.ok(transaction(c, "pipe@example.org", ["pipe@example.com"]), "garbage after the dot: MAIL, RCPT, DATA")
c.send(stuff(message(subject="then garbage")) + b"\x00\xff\xfe garbage\r\nNOOP\r\n" + b"Z" * 5000 +
       b"\r\n\x1b[2J\r\nRSET\r\n")
got = replies(c, 6)
t.eq([x.code for x in got], [250, 500, 250, 500, 502, 250],
     "dot, NUL garbage, NOOP, 5000-byte line, ESC line, RSET: 250 500 250 500 502 250")
t.ok(all(printable(x) for x in got), "all of them printable", [x.text for x in got])
delivered[0] += 1
expect_sink(delivered[0])
c.send(b"QUIT\r\nGARBAGE AFTER QUIT\r\n")
got = replies(c, 2)
t.eq([x.code for x in got], [221], "QUIT then garbage: 221 and nothing more")
t.ok(c.closed(), "closed after QUIT")

# a bare CR in EHLO cannot start a header of its own in our Received: line
c, r = hello(P["main"], "EHLO evil.example\rX-Injected: yes\r")
t.eq(code(r), 250, "EHLO with bare CRs: 250")
t.ok(transaction(c, "hdr@example.org", ["hdr@example.com"]), "header injection: MAIL, RCPT, DATA")
m_hdr = message(subject="header injection")
t.eq(code(data_reply(c, m_hdr)), 250, "its message: 250")
delivered[0] += 1
expect_sink(delivered[0])
added, _ = split_added(last_message()[1], m_hdr)
t.ok(added is not None and not re.search(rb"\r(?!\n)", added) and
     not re.search(rb"(^|\n)X-Injected", added), "no bare CR and no injected header in what we added",
     added)
c.close()
t.eq(crashes_since(mark), [], "no worker died in sections 1-5")

# ------------------------------------------------------------ 6. BDAT
mark = len(pd.log())
c, r = hello(P["main"])
t.ok(envelope(c, "bd@example.org", ["bd@example.com"]), "BDAT then DATA: MAIL, RCPT")
c.send(b"BDAT 10\r\n0123456789")
t.eq(code(one(c)), 250, "a first chunk of 10 bytes: 250")
# a client that switches to DATA: every line it meant as message text is refused as a command
c.send(b"DATA\r\nSubject: smuggled by DATA\r\n\r\nbody\r\n.\r\nRSET\r\n")
got = [x.code for x in replies(c, 6)]
t.ok(got[:1] == [503] and [x // 100 for x in got[1:5]] == [5] * 4 and got[5:] == [250],
     "DATA inside BDAT: 503, its message lines refused one by one, RSET 250", got)
t.eq(code(ask(c, "NOOP")), 250, "in sync after BDAT and DATA interleaved")
t.ok(transaction(c, "bd2@example.org", ["bd2@example.com"]), "a DATA transaction")
t.eq(code(data_reply(c, message(subject="before BDAT"))), 250, "its message: 250")
delivered[0] += 1
c.send(b"BDAT 5\r\nhello")
t.eq(code(one(c)), 503, "BDAT right after a DATA transaction: 503, its 5 bytes skipped")
t.eq(code(ask(c, "NOOP")), 250, "in sync")
c.close()
t.eq(expect_sink(delivered[0]), delivered[0], "only the DATA message was delivered")

for what, line, closes in [
        ("2^63", b"BDAT 9223372036854775808", True), ("2^64", b"BDAT 18446744073709551616", True),
        ("-1", b"BDAT -1 LAST", True), ("no size", b"BDAT", True), ("a hex size", b"BDAT 0x10 LAST", True),
        ("2^40 + 1", b"BDAT 1099511627777", True), ("a NUL in the size", b"BDAT 1\x002", False)]:
    c, r = hello(P["main"])
    envelope(c, "big@example.org", ["big@example.com"])
    c.send(line + b"\r\n")
    got = replies(c, 2 if closes else 1)
    t.ok(len(got) >= 1 and got[0].cls() == 5 and all(printable(x) for x in got),
         "BDAT with %s: 5xx" % what, [x.text for x in got])
    if closes:
        t.ok(len(got) == 2 and got[1].code == 421 and c.closed(3),
             "... then 421 and the connection closed (the end of the chunk is unknown)",
             [x.text for x in got])
    else:
        t.eq(code(ask(c, "NOOP")), 250, "... and the session goes on")
    c.close()

# a chunk promised and never sent: nothing delivered, the worker free again
c, r = hello(P["main"])
envelope(c, "gone@example.org", ["gone@example.com"])
c.send(b"BDAT 1000000000 LAST\r\n" + b"x" * 1000)
c.close()
c, r = hello(P["main"])
envelope(c, "gone@example.org", ["gone@example.com"])
c.send(b"BDAT 100\r\n" + b"y" * 10)
c.sock.shutdown(socket.SHUT_WR)
t.ok(c.closed(3), "a client that promises 100 bytes, sends 10 and closes: closed, no reply wait")
t.ok(pd.wait_log(r"lost connection after BDAT on listener main, transaction aborted", 5, mark),
     "the log says the BDAT transaction was aborted")
cs = [hello(P["main"]) for _ in range(WORKERS["main"])]
t.eq([code(ask(x, "NOOP")) for x, _ in cs], [250] * WORKERS["main"],
     "every main worker serves a new session afterwards")
for x, _ in cs:
    x.close()
t.eq(expect_sink(delivered[0]), delivered[0], "nothing of the half-sent chunks was delivered")

# a bad keyword after the size: the chunk is skipped and refused, the session goes on
for what, setup, line, payload in [
        ("after RCPT", ["MAIL FROM:<k@example.org>", "RCPT TO:<k@example.com>"], b"BDAT 3 LASTX", b"abc"),
        ("after MAIL", ["MAIL FROM:<k@example.org>"], b"BDAT 4 junk", b"abcd"),
        ("outside a transaction", [], b"BDAT 4 LAST LAST", b"abcd")]:
    c, r = hello(P["junk"])
    for s in setup:
        ask(c, s)
    c.send(line + b"\r\n" + payload)
    r = one(c)
    t.match(r"^5\d\d 5\.5\.\d ", r and r.text, "'%s' %s: 5xx" % (line.decode(), what))
    t.eq(code(ask(c, "NOOP")), 250, "... and the session goes on")
    t.eq(code(ask(c, "RSET")), 250, "... RSET ends the transaction")
    c.close()
t.eq(expect_sink(delivered[0]), delivered[0], "no refused BDAT was delivered")
t.eq(crashes_since(mark), [], "no worker died in the BDAT probes")


# ------------------------------------------------------------ 7. long lines without a newline
def vmhwm(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            return int(re.search(r"VmHWM:\s+(\d+) kB", f.read()).group(1)) * 1024
    except (OSError, AttributeError):
        return None


mark = len(pd.log())
c, r = hello(P["main"])
c.send(b"NOOP " + b"x" * (1 << 20))
r = ask(c, b"")
t.match(r"^500 5\.5\.2 ", r and r.text, "1 MB without a newline, then CRLF: 500 5.5.2")
t.eq(code(ask(c, "NOOP")), 250, "the session goes on")
before = {p: vmhwm(p) for p in pd.children()}
try:
    for _ in range(32):
        c.send(b"\xff" * (1 << 20))
    r = ask(c, b"")
except OSError:
    r = None
t.match(r"^500 5\.5\.2 ", r and r.text, "32 MB without a newline, then CRLF: 500 5.5.2")
after = {p: vmhwm(p) for p in pd.children()}
growth = max([after[p] - before[p] for p in after if before.get(p) and after[p]] or [0])
t.ok(growth < 8 << 20, "peak memory of the worker grew by %d kB (< 8 MB): the line is not kept"
     % (growth // 1024))
t.eq(code(ask(c, "NOOP")), 250, "the session goes on")
c.close()


# ------------------------------------------------------------ 8. slow, silent and deaf clients
def trickle(port, setup, result):
    """One byte every 100 ms, never a newline, for at most 6 s; when the server spoke or closed."""
    try:
        c = Probe(port)
        for s in setup:
            ask(c, s)
        start = time.monotonic()
        c.sock.settimeout(0.1)
        while time.monotonic() - start < 6:
            try:
                c.sock.send(b"X")
            except OSError:
                result["closed"] = time.monotonic() - start
                break
            try:
                d = c.sock.recv(4096)
                if not d:
                    result["closed"] = time.monotonic() - start
                    break
                result.setdefault("spoke", time.monotonic() - start)
                result["text"] = result.get("text", b"") + d
            except socket.timeout:
                pass
            except OSError:
                result["closed"] = time.monotonic() - start
                break
        c.close()
    except Exception as e:  # reported as a failed probe below
        result["error"] = repr(e)


def silent_after_long_line(port, result):
    """1 MB without a newline, then nothing: command_timeout must end it."""
    try:
        c = Probe(port)
        ask(c, "EHLO client.test")
        c.send(b"x" * (1 << 20))
        start = time.monotonic()
        r = one(c)
        result["reply"] = r.text if r else None
        result["after"] = time.monotonic() - start
        result["closed"] = c.closed(3)
        c.close()
    except Exception as e:
        result["error"] = repr(e)


mark = len(pd.log())
res_cmd, res_data, res_silent = {}, {}, {}
in_data = ["EHLO client.test", "MAIL FROM:<sl@example.org>", "RCPT TO:<sl@example.com>", "DATA"]
threads = [threading.Thread(target=trickle, args=(P["slow"], ["EHLO client.test"], res_cmd)),
           threading.Thread(target=trickle, args=(P["slow"], in_data, res_data)),
           threading.Thread(target=silent_after_long_line, args=(P["slow"], res_silent))]
for th in threads:
    th.start()
for th in threads:
    th.join(20)
bound = SMALL_TIMEOUT + 2.5
t.ok(res_cmd.get("spoke", 99) < bound and res_cmd.get("text", b"").startswith(b"421 4.4.2 ")
     and res_cmd.get("closed", 99) < bound + 1,
     "a command sent one byte per 100 ms is cut off with 421 4.4.2 within command_timeout "
     "(+%.1f s)" % (bound - SMALL_TIMEOUT), "got %r (nothing: neither a reply nor a close in 6 s)" % res_cmd)
t.ok(res_data.get("spoke", 99) < bound and res_data.get("text", b"").startswith(b"421 4.4.2 ")
     and res_data.get("closed", 99) < bound + 1,
     "message data sent one byte per 100 ms is cut off with 421 4.4.2 within data_timeout "
     "(+%.1f s)" % (bound - SMALL_TIMEOUT), "got %r (nothing: neither a reply nor a close in 6 s)" % res_data)
t.ok((res_silent.get("reply") or "").startswith("421 4.4.2 ") and res_silent.get("after", 99) < bound
     and res_silent.get("closed"),
     "1 MB without a newline, then silence: 421 4.4.2 after command_timeout, closed", "got %r" % res_silent)

# a client that never reads: its replies pile up, the worker must give up on it
deaf = socket.socket()
deaf.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
deaf.connect(("127.0.0.1", P["deaf"]))
deaf.settimeout(2)
start = time.monotonic()
try:
    while time.monotonic() - start < 4:
        deaf.send(b"NOOP\r\n" * 10000)
except OSError:
    pass
start = time.monotonic()
try:
    c2 = Probe(P["deaf"], timeout=10)
    waited = time.monotonic() - start
    r2 = ask(c2, "NOOP")
    c2.close()
except OSError:
    waited, r2 = 99, None
deaf.close()
t.ok(waited < 8 and code(r2) == 250,
     "a client that never reads its replies frees the worker: the next one is served after %.1f s"
     % waited)
t.eq(crashes_since(mark), [], "no worker died in the slow-client probes")

# ------------------------------------------------------------ 9. a flood larger than the pool
mark = len(pd.log())
hogs = [socket.create_connection(("127.0.0.1", P["flood"]), timeout=10) for _ in range(4)]
for _ in range(10):  # connect and reset at once
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    s.connect(("127.0.0.1", P["flood"]))
    s.close()
polite = []


def polite_client(i):
    try:
        c = Probe(P["flood"], timeout=20)
        codes = [c.greeting.code, code(ask(c, "EHLO client%d.test" % i)), code(ask(c, "NOOP")),
                 code(ask(c, "QUIT"))]
        c.close()
    except Exception as e:
        codes = [repr(e)]
    polite.append(codes)


start = time.monotonic()
threads = [threading.Thread(target=polite_client, args=(i,)) for i in range(16)]
for th in threads:
    th.start()
for th in threads:
    th.join(30)
took = time.monotonic() - start
t.eq(sorted(map(str, polite)), [str([220, 250, 250, 221])] * 16,
     "16 polite clients behind 4 idle and 10 reset connections, 2 workers: all served "
     "(%.1f s)" % took)
hog_out = []
for h in hogs:
    got = b""
    try:
        while True:
            d = h.recv(4096)
            if not d:
                break
            got += d
    except OSError:
        pass
    hog_out.append(got)
    h.close()
t.ok(all(g.startswith(b"220 ") and b"\r\n421 4.4.2 " in g for g in hog_out),
     "each idle connection got its greeting, then 421 4.4.2 and a close", hog_out)
t.eq(crashes_since(mark), [], "no worker died in the flood")
t.ok(wait_until(lambda: len(pd.children()) == all_workers, 5), "the pool kept its size in the flood")

# ------------------------------------------------------------ 10. seeded fuzz of command lines
rng = random.Random(60)
SPECIAL = b"\x00\r\t \x1b\x7f\x80\xff\xc3<>\"\\@:=+,;()[].%"
VERBS = [b"EHLO", b"HELO", b"LHLO", b"MAIL FROM:", b"RCPT TO:", b"XFORWARD", b"RSET", b"NOOP", b"VRFY",
         b"HELP", b"EXPN", b"AUTH", b"STARTTLS", b"XCLIENT", b"ETRN", b"mail from:", b"rcpt to:", b"Xforward"]
KEYS = [b"NAME", b"ADDR", b"PORT", b"HELO", b"SIZE", b"ENVID", b"NOTIFY", b"ORCPT", b"BODY", b"RET",
        b"AUTH", b"SMTPUTF8", b"LAST"]


def word():
    return bytes(rng.choice(b"abcdefghijklmnopqrstuvwxyz0123456789.-") for _ in range(rng.randint(1, 12)))


def token():
    k = rng.random()
    if k < 0.25:
        return bytes(rng.choice(SPECIAL) for _ in range(rng.randint(1, 8)))
    if k < 0.45:
        return bytes(rng.randint(0, 255) for _ in range(rng.randint(1, 30)))
    if k < 0.52:
        return b"x" * rng.choice([255, 256, 511, 512, 513, 1000, 1025, 3000])
    if k < 0.7:
        return (rng.choice([b"<", b"<@", b'<"', b"<\\", b"<@a,@b:"]) + word() + rng.choice([b"@", b""]) +
                word() + rng.choice([b">", b"", b"\\>", b'">', b">>", b"\\"]))
    if k < 0.85:
        return rng.choice(KEYS) + rng.choice([b"=", b"", b"=="]) + rng.choice(
            [word(), b"+ZZ", b"+00", b"+", b"+4", b"+0D+0A", b"", word() + b"+2B" + word()])
    return word()


def fuzz_line():
    if rng.random() < 0.15:
        line = bytes(rng.randint(0, 255) for _ in range(rng.randint(0, 200)))
    else:
        line = rng.choice(VERBS) + b"".join(rng.choice([b" ", b"", b"\t", b"  "]) + token()
                                            for _ in range(rng.randint(0, 6)))
    line = line.replace(b"\n", b"")
    seen = line[:-1] if line.endswith(b"\r") else line
    if re.split(rb"[ \t]", seen, maxsplit=1)[0].upper() in (b"DATA", b"BDAT", b"QUIT"):
        line = b"X" + line  # these change the framing; the probes above cover them
    return line


def fuzz(port, greeting, batches, per_batch=40):
    stats = {"lines": 0, "answered": 0, "bad_code": [], "unprintable": [], "unsynced": 0}
    c = Probe(port)
    ask(c, greeting)
    for b in range(batches):
        lines = [fuzz_line() for _ in range(per_batch)]
        wire = b"".join(x + rng.choice([b"\r\n", b"\r\n", b"\n"]) for x in lines)
        try:
            while wire:  # random write sizes: the server sees arbitrary splits
                n = rng.randint(1, 4096)
                c.send(wire[:n])
                wire = wire[n:]
        except OSError:
            pass
        got = replies(c, per_batch)
        stats["lines"] += per_batch
        stats["answered"] += len(got)
        for x, ln in zip(got, lines):
            if not (200 <= x.code < 600) or x.code in (221, 354, 421):
                stats["bad_code"].append((show(ln), x.text))
            if not printable(x):
                stats["unprintable"].append((show(ln), x.text))
        if len(got) < per_batch or code(ask(c, "NOOP")) != 250:
            stats["unsynced"] += 1
            c.close()
            c = Probe(port)
            ask(c, greeting)
    c.close()
    return stats


mark = len(pd.log())
start = time.monotonic()
for name, greeting, batches in (("SMTP", "EHLO fuzz.test", 40), ("LMTP", "LHLO fuzz.test", 15)):
    st = fuzz(P["fuzz" if name == "SMTP" else "lmtp"], greeting, batches)
    t.eq(st["answered"], st["lines"], "%s fuzz: %d seeded command lines, each answered" % (name, st["lines"]))
    t.eq(st["bad_code"], [], "%s fuzz: every reply a 2xx/4xx/5xx that keeps the session" % name)
    t.eq(st["unsynced"], 0, "%s fuzz: NOOP in sync after each of %d batches, no connection lost"
         % (name, batches))
    t.eq(st["unprintable"][:5], [], "%s fuzz: no reply echoes a control byte" % name)
t.ok(time.monotonic() - start < 30, "the fuzz took %.1f s" % (time.monotonic() - start))
t.eq(crashes_since(mark), [], "no worker died in the fuzz")

# ------------------------------------------------------------ 11. LMTP
mark = len(pd.log())
c, r = hello(P["lmtp"], "LHLO")
t.eq(code(r), 250, "LMTP: LHLO")
t.eq(code(ask(c, "EHLO client.test")) // 100, 5, "EHLO on LMTP: 5xx")
t.ok(transaction(c, "lnul@example.org", ["l1@example.com", "l2@example.com"]), "LMTP: MAIL, 2 RCPT, DATA")
c.send(stuff(m_nul))
t.eq([x.code for x in replies(c, 2)], [250, 250], "LMTP: NUL bytes, one 250 per recipient")
delivered[0] += 1
expect_sink(delivered[0])
added, _ = split_added(last_message()[1], m_nul)
t.ok(added is not None, "LMTP: NUL bytes pass through unchanged")
t.ok(envelope(c, "lk@example.org", ["lk@example.com"]), "LMTP: MAIL, RCPT")
c.send(b"BDAT 3 LASTX\r\nabc")
r = one(c)
t.match(r"^5\d\d 5\.5\.\d ", r and r.text, "LMTP: 'BDAT 3 LASTX' after RCPT: 5xx")
t.eq(code(ask(c, "NOOP")), 250, "LMTP: the session goes on")
c.close()
t.eq(crashes_since(mark), [], "no worker died in the LMTP probes")

# ------------------------------------------------------------ the whole run
t.eq(crashes_since(0), [], "no worker died (signal or sanitizer exit) during the whole spec")
t.ok(wait_until(lambda: len(pd.children()) == all_workers, 10),
     "the pool is whole at the end: %d workers (%d)" % (all_workers, len(pd.children())))
unprintable = [show(x) for p in probes for x in p.raw if re.search(rb"[\x00-\x08\x0a-\x1f\x7f]",
                                                                    x.rstrip(b"\r"))]
t.eq(unprintable[:5], [], "no reply line of the whole spec carried a control byte")
with open(pd.logpath, "rb") as f:
    raw_log = f.read()
ctrl = [x for x in raw_log.split(b"\n") if re.search(rb"[\x00-\x09\x0b-\x1f\x7f]", x)]
for level, pick in (("info and above", lambda x: b"]: debug: " not in x),
                    ("debug", lambda x: b"]: debug: " in x)):
    bad = [show(x, 200) for x in ctrl if pick(x)]
    t.eq(bad[:3], [], "the log at %s holds no raw control byte from clients (they appear as "
         "\\xNN; %d lines do not)" % (level, len(bad)))
envs = [env for env, _ in sink.messages()]
addrs = [e.get("mail_from", "") for e in envs] + [r["addr"] for e in envs for r in e.get("rcpts", [])]
addrs += [v for e in envs for v in e.get("xforward", {}).values()]
t.eq([a for a in addrs if re.search(r"victim|smuggler|evil|\\|[\x00-\x1f\x7f]", a)], [],
     "no refused, smuggled or control-bearing envelope value reached forward")
t.eq(sink.count(), delivered[0], "exactly the %d accepted messages were delivered" % delivered[0])
pd.stop()
t.eq(pd.spool_files(), [], "nothing left in the spool")
t.done()
