"""Policy verdicts end to end, in SMTP and in LMTP mode, and what rules see and change.

A posternd with several policy listeners (workers = 1 each), each forwarding
to its own sink. Pinned behaviour:

  verdicts (SMTP and LMTP, the whole message):
    pass        250 after forward took it; the copy is postern's Received:,
                the policy's added header fields, then the original bytes;
    discard     250, nothing delivered, the log line says verdict=discard;
    quarantine  250 naming the mail id, nothing delivered, a file named by
                the mail id in the quarantine directory, and the log line has
                quarantine=PATH;
    reject      the custom 550 5.7.1 text of P.reject{code=, enh=, text=};
    tempfail    the custom 452 4.3.1 text of P.tempfail{...};
  per recipient (LMTP): one rejected, one quarantined, one passed -> replies
    5xx/250/250 in RCPT order, only the passed one delivered, the quarantine
    file lists only the quarantined recipient;
  SMTP mode, reject + pass: the client hears 250, a delivery status
    notification (null sender, multipart/report) for the refused recipient
    goes to the sender, the passed recipient gets the message;
  SMTP mode, reject + quarantine: 250 (the quarantined recipient's reply),
    the notification for the refused one, the file lists the held one only;
  SMTP mode, one recipient tempfailed by the policy: the whole message gets
    that 4xx, nothing is delivered and nothing quarantined;
  header edits: add/remove/replace for the whole message and per recipient,
    tag_subject for the whole message (tagging twice tags once) and per
    recipient (P.score); two recipients whose edits differ (a spam lover,
    untagged, and tagged ones) -> two downstream transactions, each recipient
    gets exactly one copy with its own header, the body byte-identical;
    X-Spam-* fields sent by the client are removed by P.score;
  a bcc copy that forward defers (450): the message is deferred, in LMTP
    each recipient's reply (the copy has none of its own), before anyone got
    a copy (so the retry brings no duplicate), with a reply that does not
    name the bcc address; the summary says result=deferred and a warning
    names the copy and forward's reply; deferred too when the policy refused
    every recipient (the retry repeats the refusal, the copy gets its retry);
  P.redirect and P.bcc: the redirected recipient's copy goes to the new
    address, the bcc address gets a copy, the client hears one reply per
    original recipient (one in SMTP) and nothing more;
  P.bypass by client network (XFORWARD ADDR, IPv4 and IPv6), by sender, by
    SASL login (XFORWARD LOGIN), by recipient (only that recipient passes);
  P.header on an RFC 2047 encoded Subject matches the decoded text
    (B and Q encodings, UTF-8 and ISO-8859-1), mode = "raw" sees the encoded
    words, msg:header() returns UTF-8;
  msg.client fields come from XFORWARD (ip, name, helo, proto, login, source,
    ident, port) with peer being the MTA; without XFORWARD, ip and helo are
    the peer's;
  msg:parts() gives the filename, type and decoded content of a base64
    attachment;
  a lookup table file in the policy directory through P.lookup (address,
    domain, parent domain) and P.addresses(P.read_table(...)).
"""
import base64
import os
import re
import socket

from harness import (Client, Posternd, Reply, Sink, header_fields, mail_id, stuff, t, values,
                     workspace)

SENDER = "sender@example.org"
POLICY_DIR = os.path.join(workspace(), "policies")
QDIR = os.path.join(workspace(), "quarantine")

POLICIES = {
    "verdicts.lua": r'''
local P = require "postern"
return P.policy {
  function(msg)
    local s = msg:header("Subject") or ""
    msg:add_header("X-Policy-Verdicts", "ran")
    if s == "do pass" then
      msg:add_header("X-Spec-Pass", "yes")
      return P.pass()
    elseif s == "do discard" then
      return P.discard()
    elseif s == "do quarantine" then
      return P.quarantine("spec quarantine reason")
    elseif s == "do reject" then
      return P.reject { code = 550, enh = "5.7.1", text = "Rejected by spec policy" }
    elseif s == "do tempfail" then
      return P.tempfail { code = 452, enh = "4.3.1", text = "Spec policy says later" }
    end
  end,
  function(msg)
    for _, r in ipairs(msg.recipients) do
      if r.address:match("^refuse") then
        r:reject { code = 550, enh = "5.7.1", text = "Recipient refused by spec policy" }
      elseif r.address:match("^hold") then
        r:quarantine("held for " .. r.address)
      elseif r.address:match("^defer") then
        r:tempfail { code = 450, enh = "4.7.1", text = "Recipient deferred by spec policy" }
      end
    end
  end,
}
''',
    "edits.lua": r'''
local P = require "postern"
local lover = P.addresses { "lover@example.com" }
return P.policy {
  function(msg)
    if (msg:header("Subject") or ""):match("^whole tag") then
      msg:tag_subject("[whole] ")
      msg:tag_subject("[whole] ")
      msg:add_header("X-Whole", "tag only")
      return P.pass()
    end
  end,
  function(msg)
    msg:add_header("X-Whole", "for everyone")
    msg:remove_header("X-Remove-Me")
    msg:replace_header("X-Replace-Me", "replaced value")
    msg:add_score(7, "spec:seven")
    for _, r in ipairs(msg.recipients) do
      if lover(r.address) then
        r:add_header("X-Only-Lover", "yes")
        r:remove_header("X-Not-For-Lover")
        r:replace_header("X-Lover-Replace", "lover value")
      end
    end
  end,
  P.settings { ["lover@example.com"] = { spam_lover = true } },
  P.score { tag = 2, tag2 = 5, kill = 100 },
}
''',
    "route.lua": r'''
local P = require "postern"
return P.policy {
  P.redirect { to = "redirected@example.net", recipient = { "moved@example.com" } },
  P.bcc { to = "archive@example.net" },
}
''',
    "lostcopy.lua": r'''
local P = require "postern"
return P.policy {
  P.bcc { to = "tempfail-archive@example.net" },
}
''',
    "lostcopy_reject.lua": r'''
local P = require "postern"
return P.policy {
  P.bcc { to = "tempfail-archive@example.net" },
  function(msg) return P.reject { code = 550, enh = "5.7.1", text = "not wanted" } end,
}
''',
    "bypass.lua": r'''
local P = require "postern"
return P.policy {
  P.bypass { client = { "198.51.100.0/24", "2001:db8:1::/48" }, name = "bypass:client" },
  P.bypass { sender = { "trusted@example.org", "@friends.example" }, name = "bypass:sender" },
  P.bypass { login = { "alice" }, name = "bypass:login" },
  P.bypass { recipient = { "postmaster@example.com" }, name = "bypass:rcpt" },
  function(msg) return P.reject { code = 550, enh = "5.7.1", text = "not bypassed" } end,
}
''',
    "inspect.lua": r'''
local P = require "postern"
local tier = P.lookup("tiers.table")
local blocked = P.addresses(P.read_table("blocked.table"))
return P.policy {
  function(msg)
    if blocked(msg.sender) then
      return P.reject { code = 550, enh = "5.7.1", text = "sender blocked by table" }
    end
  end,
  P.header { field = "Subject", pattern = [[(?i)\bfree money\b]], name = "subject:decoded",
             on_match = P.reject { code = 550, enh = "5.7.1", text = "decoded subject matched" } },
  P.header { field = "Subject", pattern = [[(?i)=\?[^?]+\?[bq]\?]], mode = "raw", score = 1.5,
             name = "subject:raw" },
  P.header { field = "Subject", pattern = [[(?i)=\?[^?]+\?[bq]\?]], score = 100,
             name = "subject:encoded-in-decoded" },
  function(msg)
    local c = msg.client
    for _, k in ipairs { "ip", "name", "helo", "proto", "login", "source", "ident", "port", "peer" } do
      msg:add_header("X-C-" .. k, tostring(c[k]))
    end
    msg:add_header("X-Subject-Decoded", msg:header("Subject") or "")
    msg:add_header("X-Tier", tostring(tier(msg.sender)))
    for _, p in ipairs(msg:parts()) do
      if p.filename then
        msg:add_header("X-Attachment", p.filename .. " " .. tostring(p.content_type) .. " " ..
                       tostring(p.encoding))
        msg:add_header("X-Attachment-Content", (p:content()))
      end
    end
  end,
}
''',
    "tiers.table": "# sender tiers\nvip@example.org      gold\nexample.net          silver\n"
                   ".sub.example.com     bronze\n\n",
    "blocked.table": "# blocked senders\nspammer@bad.example\n@blocked.example\n",
}

os.makedirs(POLICY_DIR, exist_ok=True)
for name, text in POLICIES.items():
    with open(os.path.join(POLICY_DIR, name), "w") as f:
        f.write(text)

sinks = {name: Sink(name=name) for name in ("v", "edits", "route", "lost", "bypass", "inspect")}


def fwd(name):
    return "127.0.0.1:%d" % sinks[name].port


listeners = {
    "v_smtp": {"policy": "verdicts.lua", "forward": fwd("v"), "workers": 1},
    "v_lmtp": {"policy": "verdicts.lua", "forward": fwd("v"), "workers": 1, "protocol": "lmtp"},
    "edits": {"policy": "edits.lua", "forward": fwd("edits"), "workers": 1},
    "route": {"policy": "route.lua", "forward": fwd("route"), "workers": 1},
    "route_l": {"policy": "route.lua", "forward": fwd("route"), "workers": 1, "protocol": "lmtp"},
    "lost": {"policy": "lostcopy.lua", "forward": fwd("lost"), "workers": 1},
    "lost_l": {"policy": "lostcopy.lua", "forward": fwd("lost"), "workers": 1, "protocol": "lmtp"},
    "lostrej": {"policy": "lostcopy_reject.lua", "forward": fwd("lost"), "workers": 1},
    "lostrej_l": {"policy": "lostcopy_reject.lua", "forward": fwd("lost"), "workers": 1,
                  "protocol": "lmtp"},
    "bypass": {"policy": "bypass.lua", "forward": fwd("bypass"), "workers": 1},
    "bypass_l": {"policy": "bypass.lua", "forward": fwd("bypass"), "workers": 1,
                 "protocol": "lmtp"},
    "inspect": {"policy": "inspect.lua", "forward": fwd("inspect"), "workers": 1},
}
pd = Posternd(listeners)
ports = pd.ports


# ---------------------------------------------------------------- helpers
def transact(listener, rcpts, data, sender=SENDER, xforward=(), nopending=False):
    """One transaction on a fresh connection: the data reply (a list in LMTP).

    A protocol surprise becomes a failed reply instead of a crash. With
    nopending, the result also says whether the server sent anything after
    the data reply(ies): (reply, extra_bytes).
    """
    lmtp = listeners[listener].get("protocol") == "lmtp"
    extra = b""
    try:
        c = Client(ports[listener], timeout=20)
        r = c.cmd(("LHLO" if lmtp else "EHLO") + " client.test")
        assert r.code == 250, r
        for x in xforward:
            r = c.cmd("XFORWARD " + x)
            assert r.code == 250, r
        r = c.cmd("MAIL FROM:<%s>" % sender)
        assert r.code == 250, r
        for a in rcpts:
            r = c.cmd("RCPT TO:<%s>" % a)
            assert r.code == 250, r
        r = c.cmd("DATA")
        assert r.code == 354, r
        c.send(stuff(data))
        out = [c.reply() for _ in rcpts] if lmtp else c.reply()
        if nopending:
            extra = c.buf
            c.sock.settimeout(0.5)
            try:
                extra += c.sock.recv(65536)
            except socket.timeout:
                pass
        c.sock.settimeout(5)
        c.cmd("QUIT")
        c.close()
    except (AssertionError, OSError, EOFError, ValueError) as e:
        bad = Reply(0, ["no reply: %r" % (e,)])
        out = [bad] * len(rcpts) if lmtp else bad
    return (out, extra) if nopending else out


_tokens = [0]


def make(subject, extra="", body="Hello from the spec.\r\n", sender=SENDER):
    """A message with a unique X-Spec-Token; returns (token, bytes)."""
    _tokens[0] += 1
    token = "tok%d-%s" % (_tokens[0], os.urandom(4).hex())
    data = ("From: Sender <%s>\r\nTo: someone@example.com\r\nSubject: %s\r\n"
            "Message-ID: <%s@example.org>\r\nX-Spec-Token: %s\r\n%s\r\n%s" %
            (sender, subject, token, token, extra, body)).encode()
    return token, data


def copies(sink, token):
    """[(envelope, bytes)] of what sink got for the message with token (DSNs excluded)."""
    return [(e, d) for e, d in sinks[sink].messages()
            if token.encode() in d and e.get("mail_from") != ""]


def dsns(sink, token):
    return [(e, d) for e, d in sinks[sink].messages()
            if token.encode() in d and e.get("mail_from") == ""]


def rcpt_addrs(env):
    return [x["addr"] for x in env.get("rcpts", [])]


def added_part(data, original):
    """The bytes postern put before the original, or None when data does not end with it."""
    if not data.endswith(original):
        return None
    return data[:len(data) - len(original)]


def body_of(data):
    return data.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in data else None


def quarantine_rcpts(path):
    try:
        with open(path, "rb") as f:
            head = f.read().split(b"\n\n", 1)[0].decode("utf-8", "replace")
    except OSError:
        return None
    return [line[4:-1] for line in head.split("\n") if line.startswith("to <")]


# ---------------------------------------------------------------- whole-message verdicts
for listener, lmtp in (("v_smtp", False), ("v_lmtp", True)):
    mode = "LMTP" if lmtp else "SMTP"
    rc2 = ["a1@example.com", "a2@example.com"]

    def first(r):
        return r[0] if lmtp else r

    def codes(r):
        return [x.code for x in r] if lmtp else r.code

    # pass
    tok, original = make("do pass")
    r = transact(listener, rc2, original)
    t.eq(codes(r), [250, 250] if lmtp else 250, "%s pass: 250" % mode)
    got = copies("v", tok)
    t.eq(len(got), 1, "%s pass: delivered once" % mode)
    if got:
        env, data = got[0]
        t.eq((env.get("mail_from"), rcpt_addrs(env)), (SENDER, rc2),
             "%s pass: with the original envelope" % mode)
        added = added_part(data, original)
        t.ok(added is not None, "%s pass: the copy ends with the original bytes" % mode,
             data[-400:])
        added = (added or b"").decode("utf-8", "replace")
        t.match(r"^Received: from ", added, "%s pass: postern's Received: comes first" % mode)
        t.match(r"(?m)^X-Policy-Verdicts: ran\r$", added,
                "%s pass: the policy's added header X-Policy-Verdicts" % mode)
        t.match(r"(?m)^X-Spec-Pass: yes\r$", added, "%s pass: ... and X-Spec-Pass" % mode)
    line = pd.summary_line(listener, mail_id(first(r)))
    t.match(r" verdict=pass score=0\.000 hits=- result=passed ", line,
            "%s pass: log line verdict=pass result=passed" % mode)

    # discard
    tok, original = make("do discard")
    r = transact(listener, rc2, original)
    t.eq(codes(r), [250, 250] if lmtp else 250, "%s discard: 250" % mode)
    t.match(r"^250 2\.7\.0 id=\w+, ", first(r).text, "%s discard: 250 2.7.0 naming the mail id"
            % mode)
    t.eq(len(copies("v", tok)), 0, "%s discard: nothing delivered" % mode)
    line = pd.summary_line(listener, mail_id(first(r)))
    t.match(r" verdict=discard ", line, "%s discard: log line says verdict=discard" % mode)

    # quarantine
    tok, original = make("do quarantine")
    r = transact(listener, rc2, original)
    mid = mail_id(first(r))
    t.eq(codes(r), [250, 250] if lmtp else 250, "%s quarantine: 250" % mode)
    t.match(r"^250 2\.7\.0 id=%s, .*quarantined as %s" % (mid, mid), first(r).text,
            "%s quarantine: the reply names the mail id" % mode)
    t.eq(len(copies("v", tok)), 0, "%s quarantine: nothing delivered" % mode)
    qpath = os.path.join(QDIR, mid)
    t.ok(os.path.isfile(qpath), "%s quarantine: file %s exists (named by the mail id)"
         % (mode, qpath), sorted(os.listdir(QDIR)) if os.path.isdir(QDIR) else "no dir")
    t.eq(quarantine_rcpts(qpath), rc2, "%s quarantine: the file lists both recipients" % mode)
    if os.path.isfile(qpath):
        with open(qpath, "rb") as f:
            stored = f.read()
        t.ok(stored.startswith(b"postern-quarantine 1\n") and stored.endswith(original) and
             b"\nreason spec quarantine reason\n" in stored,
             "%s quarantine: the file has the envelope, the reason and the original bytes" % mode,
             stored[:600])
    line = pd.summary_line(listener, mid)
    t.match(r" verdict=quarantine score=\S+ hits=\S+ quarantine=%s result=passed " %
            re.escape(qpath), line, "%s quarantine: log line has quarantine=PATH" % mode)

    # reject
    tok, original = make("do reject")
    r = transact(listener, rc2, original)
    for x in (r if lmtp else [r]):
        t.match(r"^550 5\.7\.1 id=\w+, Rejected by spec policy$", x.text,
                "%s reject: the custom 550 5.7.1 reply" % mode)
    t.eq(len(copies("v", tok)), 0, "%s reject: nothing delivered" % mode)
    t.eq(len(dsns("v", tok)), 0, "%s reject: no notification (the MTA bounces itself)" % mode)
    line = pd.summary_line(listener, mail_id(first(r)))
    t.match(r" verdict=reject .* result=rejected ", line,
            "%s reject: log line verdict=reject result=rejected" % mode)

    # tempfail
    tok, original = make("do tempfail")
    r = transact(listener, rc2, original)
    for x in (r if lmtp else [r]):
        t.match(r"^452 4\.3\.1 id=\w+, Spec policy says later$", x.text,
                "%s tempfail: the custom 452 4.3.1 reply" % mode)
    t.eq(len(copies("v", tok)), 0, "%s tempfail: nothing delivered" % mode)
    line = pd.summary_line(listener, mail_id(first(r)))
    t.match(r" verdict=tempfail .* result=deferred ", line,
            "%s tempfail: log line verdict=tempfail result=deferred" % mode)

# ---------------------------------------------------------------- per recipient, LMTP
tok, original = make("per recipient")
rs = transact("v_lmtp", ["refuse1@example.com", "hold1@example.com", "ok1@example.com"], original)
t.eq([x.code for x in rs], [550, 250, 250], "LMTP per recipient: replies 550, 250, 250 in order")
t.match(r"^550 5\.7\.1 id=\w+, Recipient refused by spec policy$", rs[0].text,
        "LMTP per recipient: the refused one hears the policy's text")
t.match(r"quarantined as", rs[1].text, "LMTP per recipient: the held one hears 'quarantined'")
t.match(r"^250 2\.0\.0 id=\w+, from MTA: 250 ", rs[2].text,
        "LMTP per recipient: the passed one hears forward's reply")
got = copies("v", tok)
t.ok(len(got) == 1 and rcpt_addrs(got[0][0]) == ["ok1@example.com"] and
     got[0][1].endswith(original),
     "LMTP per recipient: only the passed one is delivered, once, with the original bytes",
     [(e, d[-200:]) for e, d in got])
t.eq(len(dsns("v", tok)), 0, "LMTP per recipient: no notification in LMTP mode")
mid = mail_id(rs[0])
t.eq(quarantine_rcpts(os.path.join(QDIR, mid)), ["hold1@example.com"],
     "LMTP per recipient: the quarantine file lists only the held recipient")
line = pd.summary_line("v_lmtp", mid)
t.match(r" verdict=mixed .* quarantine=%s result=partial refused=<refuse1@example\.com> " %
        re.escape(os.path.join(QDIR, mid)), line,
        "LMTP per recipient: log line verdict=mixed, quarantine=PATH, refused=<refuse1>")

# ---------------------------------------------------------------- SMTP: reject + pass
tok, original = make("mixed smtp", body="The secret body text.\r\n")
r = transact("v_smtp", ["refuse2@example.com", "ok2@example.com"], original)
t.eq(r.code, 250, "SMTP reject+pass: the client hears 250")
got = copies("v", tok)
t.ok(len(got) == 1 and rcpt_addrs(got[0][0]) == ["ok2@example.com"] and
     got[0][1].endswith(original),
     "SMTP reject+pass: the passed recipient gets the message once", [e for e, d in got])
n = dsns("v", tok)
t.eq(len(n), 1, "SMTP reject+pass: one delivery status notification")
if n:
    env, dsn = n[0]
    text = dsn.decode("utf-8", "replace")
    t.eq((env.get("mail_from"), rcpt_addrs(env)), ("", [SENDER]),
         "SMTP reject+pass: the notification goes from <> to the sender")
    t.match(r"(?mi)^Content-Type: multipart/report;\s*report-type=delivery-status", text,
            "SMTP reject+pass: it is a multipart/report (delivery-status)")
    t.match(r"(?mi)^Final-Recipient: rfc822; ?refuse2@example\.com\r?$", text,
            "SMTP reject+pass: it names the refused recipient")
    t.match(r"(?mi)^Status: 5\.7\.1\r?$", text, "SMTP reject+pass: with the policy's status 5.7.1")
    t.ok(not re.search(r"(?mi)^Final-Recipient: rfc822; ?ok2@", text),
         "SMTP reject+pass: the notification does not name the passed recipient", text)
    t.ok("secret body text" not in text, "SMTP reject+pass: the notification has no body", text)
line = pd.summary_line("v_smtp", mail_id(r))
t.match(r" result=partial refused=<refuse2@example\.com> ", line,
        "SMTP reject+pass: log line result=partial refused=<refuse2>")

# ---------------------------------------------------------------- SMTP: reject + quarantine
tok, original = make("refuse and hold smtp")
r = transact("v_smtp", ["refuse4@example.com", "hold4@example.com"], original)
mid = mail_id(r)
t.match(r"^250 2\.7\.0 id=%s, .*quarantined as %s" % (mid, mid), r.text,
        "SMTP reject+quarantine: the client hears the quarantined recipient's 250")
t.eq(quarantine_rcpts(os.path.join(QDIR, mid)), ["hold4@example.com"],
     "SMTP reject+quarantine: the quarantine file lists the held recipient only")
n = dsns("v", tok)
t.ok(len(n) == 1 and re.search(rb"(?mi)^Final-Recipient: rfc822; ?refuse4@example\.com\r?$",
                               n[0][1]) is not None,
     "SMTP reject+quarantine: a notification for the refused recipient",
     [e for e, d in n])
t.eq(len(copies("v", tok)), 0, "SMTP reject+quarantine: nothing else delivered")

# ---------------------------------------------------------------- SMTP: a recipient tempfailed
tok, original = make("defer smtp")
r = transact("v_smtp", ["ok3@example.com", "hold3@example.com", "defer3@example.com"], original)
t.match(r"^450 4\.7\.1 id=\w+, Recipient deferred by spec policy$", r.text,
        "SMTP with a recipient tempfailed by the policy: the whole message hears its 4xx")
t.eq(len(copies("v", tok)) + len(dsns("v", tok)), 0,
     "SMTP with a recipient tempfailed: nothing delivered, no notification")
t.ok(not os.path.exists(os.path.join(QDIR, mail_id(r))),
     "SMTP with a recipient tempfailed: nothing quarantined for the held recipient either")
t.match(r" result=deferred ", pd.summary_line("v_smtp", mail_id(r)),
        "SMTP with a recipient tempfailed: log line result=deferred")

# ---------------------------------------------------------------- header edits
body = ("First line of the body.\r\n.A line starting with a dot\r\nTrailing spaces   \r\n"
        "\r\n" + "x" * 900 + "\r\nlast\r\n")
extra = ("X-Spam-Flag: YES\r\nX-Spam-Score: 99\r\nX-Spam-Status: Yes, forged by client\r\n"
         "X-Remove-Me: secret\r\nX-Replace-Me: one\r\nX-Replace-Me: two\r\n"
         "X-Not-For-Lover: visible to others\r\nX-Lover-Replace: original\r\n")
tok, original = make("cheap pills", extra=extra, body=body)
rcpts = ["tagged1@example.com", "lover@example.com", "tagged2@example.com"]
r = transact("edits", rcpts, original)
t.eq(r.code, 250, "edits: 250")
got = copies("edits", tok)
t.eq(len(got), 2, "edits: two downstream transactions (two distinct copies)")
all_rcpts = sorted(a for e, d in got for a in rcpt_addrs(e))
t.eq(all_rcpts, sorted(rcpts), "edits: each recipient got exactly one copy")
orig_body = body_of(original)
for env, data in got:
    who = rcpt_addrs(env)
    label = "edits %s" % ",".join(who)
    t.eq(body_of(data), orig_body, "%s: body byte-identical" % label)
    t.match(r"^Received: from ", data.decode("utf-8", "replace"),
            "%s: postern's Received: first" % label)
    t.eq(values(data, "X-Whole"), ["for everyone"], "%s: whole-message add_header" % label)
    t.eq(values(data, "X-Remove-Me"), [], "%s: whole-message remove_header" % label)
    t.eq(values(data, "X-Replace-Me"), ["replaced value"],
         "%s: whole-message replace_header (both old fields gone, one new)" % label)
    t.eq(values(data, "X-Spam-Score"), ["7.000"],
         "%s: the client's X-Spam-Score removed, P.score's added" % label)
    t.eq(values(data, "X-Spam-Flag"), ["YES"], "%s: one X-Spam-Flag (P.score's)" % label)
    t.ok(len(values(data, "X-Spam-Status")) == 1 and
         values(data, "X-Spam-Status")[0].startswith("Yes, score=7.000 tag=2 tag2=5 kill=100") and
         "forged" not in data.decode("utf-8", "replace"),
         "%s: X-Spam-Status is P.score's only" % label, values(data, "X-Spam-Status"))
    t.eq(values(data, "X-Spam-Level"), ["*******"], "%s: X-Spam-Level" % label)
    t.eq(values(data, "X-Spec-Token"), [tok], "%s: other fields kept" % label)
    if who == ["lover@example.com"]:
        t.eq(values(data, "Subject"), ["cheap pills"], "%s: spam lover: subject not tagged" % label)
        t.eq(values(data, "X-Only-Lover"), ["yes"], "%s: per-recipient add_header" % label)
        t.eq(values(data, "X-Not-For-Lover"), [], "%s: per-recipient remove_header" % label)
        t.eq(values(data, "X-Lover-Replace"), ["lover value"],
             "%s: per-recipient replace_header" % label)
    else:
        t.eq(who, ["tagged1@example.com", "tagged2@example.com"],
             "edits: the two tagged recipients share one transaction")
        t.eq(values(data, "Subject"), ["***SPAM*** cheap pills"],
             "%s: subject tagged per recipient" % label)
        t.eq(values(data, "X-Only-Lover"), [], "%s: not the lover's added field" % label)
        t.eq(values(data, "X-Not-For-Lover"), ["visible to others"],
             "%s: not the lover's removal" % label)
        t.eq(values(data, "X-Lover-Replace"), ["original"],
             "%s: not the lover's replacement" % label)

tok, original = make("whole tag me")
r = transact("edits", ["one@example.com", "two@example.com"], original)
t.eq(r.code, 250, "edits, whole-message tag: 250")
got = copies("edits", tok)
t.ok(len(got) == 1 and rcpt_addrs(got[0][0]) == ["one@example.com", "two@example.com"],
     "edits, whole-message tag: one transaction for both", [e for e, d in got])
if got:
    data = got[0][1]
    t.eq(values(data, "Subject"), ["[whole] whole tag me"],
         "edits, whole-message tag: tagged once although tagged twice")
    t.eq(values(data, "X-Whole"), ["tag only"], "edits, whole-message tag: added field")
    t.eq(body_of(data), body_of(original), "edits, whole-message tag: body byte-identical")

# ---------------------------------------------------------------- P.redirect and P.bcc
for listener in ("route", "route_l"):
    lmtp = listener == "route_l"
    mode = "LMTP" if lmtp else "SMTP"
    tok, original = make("route me")
    r, pending = transact(listener, ["moved@example.com", "stay@example.com"], original,
                          nopending=True)
    if lmtp:
        t.eq([x.code for x in r], [250, 250], "%s redirect+bcc: two replies, both 250" % mode)
    else:
        t.eq(r.code, 250, "%s redirect+bcc: 250" % mode)
    t.eq(pending, b"", "%s redirect+bcc: no further reply (none for the bcc copy)" % mode)
    got = copies("route", tok)
    delivered = sorted(a for e, d in got for a in rcpt_addrs(e))
    t.eq(delivered, ["archive@example.net", "redirected@example.net", "stay@example.com"],
         "%s redirect+bcc: the redirected address, the kept one and the bcc each got one copy"
         % mode)
    t.ok(all(d.endswith(original) for e, d in got),
         "%s redirect+bcc: every copy has the original bytes" % mode)
    mid = mail_id(r[0] if lmtp else r)
    line = pd.summary_line(listener, mid)
    t.match(r" to=<moved@example\.com>,<stay@example\.com> .*verdict=pass .*"
            r"hits=redirect:redirected@example\.net,bcc:archive@example\.net result=passed ",
            line, "%s redirect+bcc: the log line lists the original recipients and both rules"
            % mode)


# ---------------------------------------------------------------- a bcc copy forward defers
# The copy has no reply of its own; the recipients it came with carry its deferral, so that
# the MTA's retry brings it again. The reply does not quote the bcc address.
for listener in ("lost", "lost_l"):
    lmtp = listener == "lost_l"
    mode = "LMTP" if lmtp else "SMTP"
    tok, original = make("bcc deferred")
    log_at = len(pd.log())
    r = transact(listener, ["one@example.com", "two@example.com"], original)
    replies = r if lmtp else [r]
    t.eq([x.code // 100 for x in replies], [4] * len(replies),
         "%s bcc copy deferred by forward: the message is deferred (%s)"
         % (mode, "each recipient" if lmtp else "the one reply"), replies)
    t.eq(copies("lost", tok), [],
         "%s bcc copy deferred: nobody got a copy yet, so the retry brings no duplicate" % mode)
    t.ok(all("tempfail-archive" not in " ".join(x.lines) for x in replies),
         "%s bcc copy deferred: the reply does not name the bcc address" % mode, replies)
    line = pd.summary_line(listener, mail_id(replies[0]))
    t.match(r" result=deferred ", line, "%s bcc copy deferred: the summary says deferred" % mode)
    t.ok(pd.wait_log(r"the copy the policy added for <tempfail-archive@example\.net> was not "
                     r"delivered \(450 ", 5, after=log_at) is not None,
         "%s bcc copy deferred: the log names the copy and forward's reply" % mode)

# ... also when the policy refused every recipient: a refusal the retry repeats, rather than
# a copy nobody retries (SMTP mode's one reply always did that)
for listener in ("lostrej", "lostrej_l"):
    lmtp = listener == "lostrej_l"
    mode = "LMTP" if lmtp else "SMTP"
    tok, original = make("bcc deferred, all refused")
    r = transact(listener, ["one@example.com", "two@example.com"], original)
    replies = r if lmtp else [r]
    t.eq([x.code // 100 for x in replies], [4] * len(replies),
         "%s bcc copy deferred, every recipient refused by the policy: deferred, not refused"
         % mode, replies)
    t.ok(all("tempfail-archive" not in " ".join(x.lines) for x in replies),
         "%s bcc copy deferred, every recipient refused: the reply does not name the bcc address"
         % mode, replies)


# ---------------------------------------------------------------- P.bypass
def bypass_case(label, want, sender=SENDER, xforward=(), rcpts=("user@example.com",),
                hit=None):
    tok, original = make("bypass " + label, sender=sender)
    r = transact("bypass", list(rcpts), original, sender=sender, xforward=xforward)
    if want == 250:
        t.eq(r.code, 250, "bypass %s: passes" % label)
        t.eq(len(copies("bypass", tok)), 1, "bypass %s: delivered" % label)
        if hit:
            t.match(r" hits=%s " % re.escape(hit), pd.summary_line("bypass", mail_id(r)),
                    "bypass %s: the log names rule %s" % (label, hit))
    else:
        t.match(r"^550 5\.7\.1 id=\w+, not bypassed$", r.text, "bypass %s: rejected" % label)
        t.eq(len(copies("bypass", tok)), 0, "bypass %s: not delivered" % label)


bypass_case("client 198.51.100.7 (XFORWARD ADDR)", 250,
            xforward=["NAME=relay.example ADDR=198.51.100.7"], hit="bypass:client")
bypass_case("client IPV6:2001:db8:1::5 (XFORWARD ADDR)", 250,
            xforward=["ADDR=IPV6:2001:db8:1::5"], hit="bypass:client")
bypass_case("client 203.0.113.9 (not listed)", 550, xforward=["ADDR=203.0.113.9"])
bypass_case("peer 127.0.0.1 without XFORWARD (not listed)", 550)
bypass_case("sender trusted@example.org", 250, sender="trusted@example.org",
            xforward=["ADDR=203.0.113.9"], hit="bypass:sender")
bypass_case("sender in @friends.example", 250, sender="Pal@Friends.Example",
            xforward=["ADDR=203.0.113.9"], hit="bypass:sender")
bypass_case("SASL login alice (XFORWARD LOGIN)", 250,
            xforward=["ADDR=203.0.113.9", "LOGIN=alice"], hit="bypass:login")
bypass_case("SASL login bob (not listed)", 550, xforward=["ADDR=203.0.113.9 LOGIN=bob"])
bypass_case("recipient postmaster@example.com", 250, xforward=["ADDR=203.0.113.9"],
            rcpts=("postmaster@example.com",), hit="bypass:rcpt:postmaster@example.com")

tok, original = make("bypass one recipient")
rs = transact("bypass_l", ["other@example.com", "postmaster@example.com"], original,
              xforward=["ADDR=203.0.113.9"])
t.eq([x.code for x in rs], [550, 250],
     "bypass recipient (LMTP): only the listed recipient passes, the other goes on and is rejected")
got = copies("bypass", tok)
t.ok(len(got) == 1 and rcpt_addrs(got[0][0]) == ["postmaster@example.com"],
     "bypass recipient (LMTP): delivered to postmaster only", [e for e, d in got])

# ---------------------------------------------------------------- P.header, msg.client, parts, lookup
def b_word(text, charset="UTF-8"):
    return "=?%s?B?%s?=" % (charset, base64.b64encode(text.encode(charset)).decode())


tok, original = make(b_word("Get FREE money now"))
r = transact("inspect", ["user@example.com"], original)
t.match(r"^550 5\.7\.1 id=\w+, decoded subject matched$", r.text,
        "P.header: a B-encoded UTF-8 Subject is matched as decoded text")
t.match(r" hits=subject:decoded ", pd.summary_line("inspect", mail_id(r)),
        "P.header: the log names the decoded-subject rule")
tok, original = make("=?ISO-8859-1?Q?free_m=6Fney_f=FCr_dich?=")
r = transact("inspect", ["user@example.com"], original)
t.match(r"^550 5\.7\.1 id=\w+, decoded subject matched$", r.text,
        "P.header: a Q-encoded ISO-8859-1 Subject is matched as decoded text")

xf = ["NAME=mail.example.net ADDR=203.0.113.5 PORT=40000 PROTO=ESMTP HELO=helo.example.net",
      "LOGIN=bob SOURCE=REMOTE IDENT=abc123"]
tok, original = make(b_word("Grüße aus Köln"))
r = transact("inspect", ["user@example.com"], original, sender="vip@example.org", xforward=xf)
t.eq(r.code, 250, "P.header: an encoded Subject that does not match passes")
got = copies("inspect", tok)
t.eq(len(got), 1, "inspect: delivered once")
data = got[0][1] if got else b""
t.eq(values(data, "X-Subject-Decoded"), ["Grüße aus Köln"],
     "msg:header() decodes RFC 2047 into UTF-8")
line = pd.summary_line("inspect", mail_id(r))
t.match(r" score=1\.500 hits=subject:raw ", line,
        "P.header mode=raw sees the encoded words; the decoded mode does not (score 1.5 only)")
want_client = {"ip": "203.0.113.5", "name": "mail.example.net", "helo": "helo.example.net",
               "proto": "ESMTP", "login": "bob", "source": "REMOTE", "ident": "abc123",
               "port": "40000", "peer": "127.0.0.1"}
t.eq({k: (values(data, "X-C-" + k) or [None])[0] for k in want_client}, want_client,
     "msg.client fields come from XFORWARD (peer is the MTA)")
t.eq(values(data, "X-Tier"), ["gold"], "P.lookup: an address key")
t.match(r"\bfrom helo\.example\.net \(mail\.example\.net \[203\.0\.113\.5\]\)",
        data.decode("utf-8", "replace"), "the Received: line names the XFORWARD client")

tok, original = make("=?ISO-8859-1?Q?Gr=FC=DFe?=")
r = transact("inspect", ["user@example.com"], original, sender="someone@example.net")
got = copies("inspect", tok)
data = got[0][1] if got else b""
t.eq(values(data, "X-Subject-Decoded"), ["Grüße"], "msg:header() turns ISO-8859-1 into UTF-8")
want_client = {"ip": "127.0.0.1", "name": "nil", "helo": "client.test", "login": "nil",
               "peer": "127.0.0.1"}
t.eq({k: (values(data, "X-C-" + k) or [None])[0] for k in want_client}, want_client,
     "msg.client without XFORWARD: ip and helo are the peer's, no name or login")
t.eq(values(data, "X-Tier"), ["silver"], "P.lookup: a domain key")

tok, original = make("plain", sender="x@deep.sub.example.com")
r = transact("inspect", ["user@example.com"], original, sender="x@deep.sub.example.com")
got = copies("inspect", tok)
t.eq(values(got[0][1] if got else b"", "X-Tier"), ["bronze"], "P.lookup: a parent-domain key")
tok, original = make("plain")
r = transact("inspect", ["user@example.com"], original)
got = copies("inspect", tok)
t.eq(values(got[0][1] if got else b"", "X-Tier"), ["nil"], "P.lookup: no entry gives nil")
for s in ("spammer@bad.example", "Anyone@Blocked.Example"):
    tok, original = make("plain", sender=s)
    r = transact("inspect", ["user@example.com"], original, sender=s)
    t.match(r"^550 5\.7\.1 id=\w+, sender blocked by table$", r.text,
            "P.addresses(P.read_table()): sender %s is blocked" % s)

attachment = b"attachment body 42"
mime = ("MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"BOUNDARY42\"\r\n")
mbody = ("This is a MIME message.\r\n\r\n--BOUNDARY42\r\nContent-Type: text/plain\r\n\r\n"
         "See the attachment.\r\n\r\n--BOUNDARY42\r\nContent-Type: application/octet-stream\r\n"
         "Content-Transfer-Encoding: base64\r\n"
         "Content-Disposition: attachment; filename=\"notes.txt\"\r\n\r\n%s\r\n"
         "--BOUNDARY42--\r\n" % base64.b64encode(attachment).decode())
tok, original = make("with attachment", extra=mime, body=mbody)
r = transact("inspect", ["user@example.com"], original)
t.eq(r.code, 250, "msg:parts(): the message with an attachment passes")
got = copies("inspect", tok)
data = got[0][1] if got else b""
t.eq(values(data, "X-Attachment"), ["notes.txt application/octet-stream base64"],
     "msg:parts(): filename, content type and encoding of the base64 attachment")
t.eq(values(data, "X-Attachment-Content"), [attachment.decode()],
     "msg:parts(): part:content() undoes the base64")
t.ok(data.endswith(original), "msg:parts(): the copy keeps the original bytes")

t.eq(pd.spool_files(), [], "nothing left in the spool directory")
t.eq(pd.stop(), 0, "posternd stops with status 0")
t.done()
