"""release and quarantine list/show/delete go through posternd's control socket.

A posternd whose listener "q" quarantines messages with "quarantine me" in
the Subject. OTHER is a copy of its configuration with the same
control_socket but a quarantine directory that is empty: whatever `postern
-c OTHER` finds in quarantine came from the daemon. Pinned behaviour:

  daemon running: `postern -c OTHER quarantine list` lists the daemon's
    messages (and does not say it works directly); `show` prints the
    envelope and then exactly the stored bytes, also for a message of 1.5 MB
    (many records of the framed answer); `release` delivers to the sink,
    exit 0, the file removed, and posternd's log says "quarantine: ID:
    release to FORWARD by uid N: 1 of 1 recipient(s) delivered"; `delete`
    exit 0, the file gone, the log says "deleted by uid N"; an unknown id:
    exit 1 with "postern: ..." on stderr;
  the socket's rights (as root): a user outside posternd's group cannot
    connect (exit 1, "Permission denied", and no direct fallback); the same
    user with posternd's group as a supplementary group lists the messages;
  raw requests on the socket: a MAIL_ID with a slash, and list with an extra
    word, are answered as usage errors ("x 2"); an unknown command and a
    line of 9,000 bytes without a newline get "error: ..."; a client that
    sends nothing holds up no one: status answers meanwhile, and the client
    hears "error: no complete request line" after 10 s; a request line (ping,
    quarantine list) sent in pieces over one to two seconds is answered;
  at most 4 such commands at once: 4 clients that ask for the 1.5 MB
    message and do not read hold 4 children; the 5th command exits 1 with
    "busy", while `postern status` answers and mail still passes; once the
    4 clients hang up, commands work again;
  daemon stopped: `postern -c CONF quarantine list` says "no posternd at
    SOCKET: working on DIR directly" and lists the files; `-c OTHER` then
    finds nothing.
"""
import os
import pwd
import re
import socket
import subprocess
import time

from harness import POSTERN, Client, Posternd, Sink, stuff, t, wait_until, workspace

SENDER = "sender@example.org"
WS = workspace()
POLICY_DIR = os.path.join(WS, "policies")
QDIR = os.path.join(WS, "quarantine")
EMPTY_QDIR = os.path.join(WS, "elsewhere")

os.makedirs(POLICY_DIR, exist_ok=True)
os.makedirs(EMPTY_QDIR, exist_ok=True)
with open(os.path.join(POLICY_DIR, "q.lua"), "w") as f:
    f.write('local P = require "postern"\nreturn P.policy {\n'
            '  P.header { field = "Subject", pattern = [[quarantine me]], name = "spec:q",\n'
            '             on_match = P.quarantine("held by spec") },\n}\n')

sink = Sink(name="sink")
FWD = "127.0.0.1:%d" % sink.port
pd = Posternd({"q": {"policy": "q.lua", "forward": FWD, "workers": 2}})
CONF = pd.conf
with open(CONF) as f:
    conf_text = f.read()
OTHER = os.path.join(WS, "other.conf")
with open(OTHER, "w") as f:
    f.write(re.sub(r'dir = "[^"]*quarantine"', 'dir = "%s"' % EMPTY_QDIR, conf_text))
SOCKET = re.search(r'control_socket = "([^"]*)"', conf_text).group(1)


def postern(*args, conf=OTHER, user=None):
    """(exit status, stdout bytes, stderr text) of postern -c conf args, maybe as (uid, gid, groups)."""
    pre = None
    if user is not None:
        uid, gid, groups = user

        def pre():
            os.setgroups(groups)
            os.setgid(gid)
            os.setuid(uid)
    try:
        p = subprocess.run([POSTERN, "-c", conf] + list(args), capture_output=True, timeout=60,
                           preexec_fn=pre)
    except subprocess.TimeoutExpired:
        return None, b"", "timed out"
    return p.returncode, p.stdout, p.stderr.decode("utf-8", "replace")


def send(subject, body=b"Hello.\r\n", rcpt="user@example.com"):
    """One message through listener q: the reply."""
    data = ("From: <%s>\r\nTo: <%s>\r\nSubject: %s\r\nMessage-ID: <%s@example.org>\r\n\r\n"
            % (SENDER, rcpt, subject, os.urandom(6).hex())).encode() + body
    c = Client(pd.ports["q"], timeout=30)
    for cmd in ("EHLO client.test", "MAIL FROM:<%s>" % SENDER, "RCPT TO:<%s>" % rcpt):
        r = c.cmd(cmd)
        assert r.code == 250, r
    assert c.cmd("DATA").code == 354
    c.send(stuff(data))
    r = c.reply()
    c.cmd("QUIT")
    c.close()
    return r


def quarantined(subject, body=b"Hello.\r\n"):
    r = send(subject, body)
    m = re.search(r"quarantined as (\w+)", r.text)
    t.ok(r.code == 250 and m is not None, "%s: quarantined" % subject, r.text)
    return m.group(1) if m else "?"


def stored_message(mid):
    """The message part of a quarantine file (after the envelope's empty line)."""
    with open(os.path.join(QDIR, mid), "rb") as f:
        data = f.read()
    return data[data.index(b"\n\n") + 2:]


def raw(line, read=True):
    """Send line on the control socket; the whole answer (bytes), or the open socket."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(20)
    s.connect(SOCKET)
    try:
        s.sendall(line)
    except (BrokenPipeError, ConnectionResetError):
        pass    # the master answered and hung up before taking it all: the answer is queued
    if not read:
        return s
    return answer_of(s)


def answer_of(s):
    """Everything the master sends on s until it closes (or what came before an error);
    s is closed after."""
    out = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
    except OSError:
        pass
    s.close()
    return out


def frames(answer):
    """[(kind, bytes)] of a framed answer; kind '1', '2' or 'x', and '?' for the rest
    of an answer that is not framed from there on."""
    out, i = [], 0
    while i < len(answer):
        nl = answer.find(b"\n", i)
        kind, _, arg = answer[i:nl if nl >= 0 else len(answer)].partition(b" ")
        if nl < 0 or kind not in (b"1", b"2", b"x") or (kind != b"x" and not arg.isdigit()):
            out.append(("?", answer[i:]))
            break
        i = nl + 1
        if kind == b"x":
            out.append(("x", arg))
            continue
        n = int(arg)
        out.append((kind.decode(), answer[i:i + n]))
        i += n
    return out


body_big = b"".join(b"line %06d of a big quarantined message, to fill the framed answer\r\n" % i
                    for i in range(22000))
m1 = quarantined("quarantine me 1")
m2 = quarantined("quarantine me 2")
big = quarantined("quarantine me big", body_big)
t.ok(len(stored_message(big)) > 1500000, "the big message is over 1.5 MB stored",
     len(stored_message(big)))

# ---------------------------------------------------------------- through the daemon
rc, out, err = postern("quarantine", "list")
rows = [l.split("\t")[0] for l in out.decode().splitlines() if "\t" in l]
t.eq(rc, 0, "list through the socket: exit 0", err)
t.eq(sorted(rows), sorted([m1, m2, big]), "list with -c OTHER: the daemon's messages")
t.ok("directly" not in err, "list through the socket: no direct-access note", err)

for mid in (m2, big):
    rc, out, err = postern("quarantine", "show", mid)
    head, sep, msg = out.partition(b"\n\n")
    t.eq(rc, 0, "show %s through the socket: exit 0" % ("big" if mid == big else "m2"), err)
    t.match(r"^Id: %s\nTime: .*\nListener: q\nFrom: <%s>\nTo: <user@example.com>\n"
            r"Reason: held by spec\nSize: \d+$" % (mid, re.escape(SENDER)), head.decode(),
            "show through the socket: the envelope lines")
    t.ok(msg == stored_message(mid), "show %s through the socket: exactly the stored bytes"
         % ("big" if mid == big else "m2"), (len(msg), len(stored_message(mid))))

rc, out, err = postern("quarantine", "show", "NoSuchId1")
t.eq(rc, 1, "show of an unknown id through the socket: exit 1")
t.match(r"^postern: ", err, "show of an unknown id: says why on stderr")

before = sink.count()
log_at = len(pd.log())
rc, out, err = postern("release", m1)
t.eq(rc, 0, "release through the socket: exit 0", err)
t.match(r"(?m)^<user@example\.com>: delivered: 250 ", out.decode(), "release: the recipient")
t.eq(sink.count(), before + 1, "release through the socket: the sink got it")
t.ok(not os.path.exists(os.path.join(QDIR, m1)), "release through the socket: the file is gone")
t.ok(pd.wait_log(r"quarantine: %s: release to %s by uid %d: 1 of 1 recipient\(s\) delivered"
                 % (m1, re.escape(FWD), os.geteuid()), after=log_at),
     "release: posternd's log names the id, forward, the client's uid and the outcome",
     pd.log()[log_at:])

rc, out, err = postern("quarantine", "delete", m2)
t.eq(rc, 0, "delete through the socket: exit 0", err)
t.ok(not os.path.exists(os.path.join(QDIR, m2)), "delete through the socket: the file is gone")
t.ok(pd.wait_log(r"quarantine: %s: deleted by uid %d" % (m2, os.geteuid()), after=log_at),
     "delete: posternd's log says who")

# ---------------------------------------------------------------- the socket's rights
if os.geteuid() == 0:
    daemon_user = pwd.getpwnam("nobody")  # the harness runs posternd as nobody when root
    outsider = pwd.getpwnam("daemon")
    rc, out, err = postern("quarantine", "list", user=(outsider.pw_uid, outsider.pw_gid, []))
    t.eq(rc, 1, "a user outside posternd's group: exit 1")
    t.match(r"Permission denied", err, "a user outside posternd's group: permission denied")
    t.ok("directly" not in err, "a user outside posternd's group: no direct fallback", err)
    rc, out, err = postern("quarantine", "list", user=(outsider.pw_uid, outsider.pw_gid,
                                                       [daemon_user.pw_gid]))
    t.eq((rc, [l.split(b"\t")[0].decode() for l in out.splitlines()]), (0, [big]),
         "the same user in posternd's group: lists the messages", err)
else:
    for what in ("exit 1", "permission denied", "no direct fallback", "in the group: lists"):
        t.skip("the socket's rights: %s" % what, "needs root to act as another user")

# ---------------------------------------------------------------- raw requests
for line, what in ((b"quarantine\tshow\t../../etc/passwd\n", "a MAIL_ID with a slash"),
                   (b"quarantine\tlist\textra\n", "list with an extra word")):
    f = frames(raw(line))
    t.eq(f[-1:], [("x", b"2")], "raw %s: a usage error (x 2)" % what, f)
    t.ok(any(k == "2" and d.startswith(b"postern: ") for k, d in f),
         "raw %s: the reason on the error channel" % what, f)
t.match(r"^error: unknown command", raw(b"bogus\tthing\n").decode(), "raw unknown command: error")
t.match(r"^error: no complete request line", raw(b"q" * 9000).decode(),
        "raw line of 9,000 bytes: error")
silent = raw(b"", read=False)
silent_since = time.monotonic()
rc, out, err = postern("status", conf=CONF)
t.eq(rc, 0, "a client that sends nothing: status still answers", err)


def in_pieces(pieces, pause):
    """Send pieces on one connection with pause seconds between them; the answer."""
    s = raw(pieces[0], read=False)
    try:
        for piece in pieces[1:]:
            time.sleep(pause)
            s.sendall(piece)
    except (BrokenPipeError, ConnectionResetError):
        pass    # the master gave up on the line early: what it answered is queued
    return answer_of(s)


# a client descheduled between connect() and its line (a busy machine) is still served:
# the master polls the connection with its other descriptors, it never waits on one
t.match(r"^pong\n$", in_pieces([b"pi", b"n", b"g\n"], 1.0).decode(),
        "a request line sent in pieces over 2 s: answered")
f = frames(in_pieces([b"quarantine\t", b"list\n"], 1.5))
t.eq((f[-1:], [d.split(b"\t")[0] for k, d in f if k == "1"][:1]), ([("x", b"0")], [big.encode()]),
     "a quarantine command sent in pieces over 1.5 s: its answer", f)
# ... and one that never sends its line gets the error once its time (10 s) is up
silent.settimeout(30)
answer = answer_of(silent)
waited = time.monotonic() - silent_since
t.match(r"^error: no complete request line", answer.decode(),
        "a client that sends nothing: refused once its time is up")
t.ok(5 <= waited < 30, "a client that sends nothing: refused after about 10 s, not at once",
     "%.1f s" % waited)

# ---------------------------------------------------------------- at most 4 at once
holders = [raw(("quarantine\tshow\t%s\n" % big).encode(), read=False) for _ in range(4)]
t.ok(wait_until(lambda: len(pd.children()) >= 2 + 4, 10),
     "4 clients that do not read: 4 children besides the 2 workers", pd.children())
rc, out, err = postern("quarantine", "list")
t.eq(rc, 1, "a 5th command while 4 run: exit 1")
t.match(r"busy", err, "a 5th command while 4 run: says posternd is busy")
rc, out, err = postern("status", conf=CONF)
t.eq(rc, 0, "while 4 run: postern status answers", err)
before = sink.count()
r = send("an ordinary message")
t.ok(r.code == 250 and sink.count() == before + 1, "while 4 run: mail still passes", r.text)
for s in holders:
    s.close()
t.ok(wait_until(lambda: postern("quarantine", "list")[0] == 0, 15),
     "once the 4 clients hung up: commands work again")

# ---------------------------------------------------------------- no daemon
t.eq(pd.stop(), 0, "posternd stops with status 0")
rc, out, err = postern("quarantine", "list", conf=CONF)
t.eq(rc, 0, "daemon stopped: list exit 0", err)
t.match(r"no posternd at %s: working on %s directly" % (re.escape(SOCKET), re.escape(QDIR)), err,
        "daemon stopped: says it works on the directory directly")
t.eq([l.split(b"\t")[0].decode() for l in out.splitlines()], [big],
     "daemon stopped: lists the files")
rc, out, err = postern("quarantine", "list")
t.eq((rc, out.decode().strip()), (0, "no quarantined messages"),
     "daemon stopped: -c OTHER now looks at its own, empty, directory")
t.done()
