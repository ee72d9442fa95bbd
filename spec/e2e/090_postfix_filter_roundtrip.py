"""A message goes through a real Postfix and posternd as FILTER_README's advanced content filter.

The world of this spec, all on 127.0.0.1:

    client --SMTP--> Postfix front smtpd (content_filter=scan:[127.0.0.1]:EXTERNAL)
           --scan (smtp, XFORWARD)--> posternd "external" (SMTP)  --+
    client --SMTP--> Postfix second smtpd (content_filter=lmtpscan:...:SECONDARY)
           --lmtpscan (lmtp, XFORWARD)--> posternd "secondary" (LMTP) --+
                                                                         |
           Postfix reinjection smtpd (REINJECT) <--SMTP + XFORWARD-------+
           --relayhost--> sink (demo/sink.py), which stores what it receives

What it pins:
  * the front smtpd answers 250 and the message arrives at the sink with its body
    byte-identical and every original header field present, unchanged and in order, as
    the tail of the header block: Postfix and postern only prepend, and what they
    prepend is exactly three Received: fields (reinjection Postfix, postern, front
    Postfix), of which exactly one is postern's ("by filter.test (postern");
  * XFORWARD works end to end: postern's Received: names the original client
    (HELO client.test, [127.0.0.1]) that Postfix's filter transport forwarded, and postern
    hands the attributes on: the reinjection smtpd logs orig_client= and
    orig_queue_id= (the front queue id), and records the original HELO and address,
    which Postfix's own delivery then forwards to the sink (the final smtp client has
    smtp_send_xforward_command=yes here only so that the sink can show them). Postfix's
    reinjection Received: field names the real session (postern's EHLO filter.test), as
    Postfix always writes it;
  * posternd logs one "msg listener=external ... result=passed queued_as=QID" line, QID is
    the reinjection smtpd's queue id, and the maillog shows QID delivered to the sink
    (status=sent) and the front queue id delivered to postern with postern's reply;
  * the envelope (sender, recipients) reaches the sink;
  * an 8-bit UTF-8 message (BODY=8BITMIME SMTPUTF8, UTF-8 recipient, header and body)
    arrives byte-identical: postern advertises 8BITMIME and SMTPUTF8, so Postfix neither
    converts the body to quoted-printable nor refuses the UTF-8 address;
  * the same holds through an LMTP listener fed by Postfix's lmtp client;
  * a recipient the final hop rejects (the sink answers 550 to local parts starting
    with "reject"): postern's part is done once the reinjection smtpd queued the
    message (result=passed); Postfix then delivers the good recipient, bounces the
    bad one (status=bounced in the maillog) and sends a non-delivery report with a null
    sender to the original sender, which does not go through postern again;
  * in the end the Postfix queue is empty and posternd's spool directory too.

Needs root and Postfix (skipped otherwise). Every wait is bounded.
"""
import re

import harness
import postfix
from harness import Client, Posternd, Reply, Sink, stuff, t

why = postfix.unavailable()
if why:
    harness.skip_all(why)

DELIVERY_WAIT = 60  # seconds; Postfix usually needs one or two


# ---------------------------------------------------------------- message helpers
def fields(head):
    """The header fields of a header block (bytes, without the blank line), each as its
    raw bytes including continuation lines and the final CRLF."""
    out = []
    for line in head.split(b"\r\n"):
        if not line:
            continue
        if line[:1] in (b" ", b"\t") and out:
            out[-1] += line + b"\r\n"
        else:
            out.append(line + b"\r\n")
    return out


def split_message(data):
    """(header fields, body bytes) of a message."""
    head, sep, body = data.partition(b"\r\n\r\n")
    return fields(head), body


def is_subsequence(small, big):
    it = iter(big)
    return all(any(x == y for y in it) for x in small)


def unfold(field):
    return re.sub(rb"\r\n[ \t]+", b" ", field).rstrip(b"\r\n").decode("utf-8", "replace")


def build(headers, body):
    """Message bytes from a list of (name, value) and a body, CRLF everywhere."""
    return ("".join("%s: %s\r\n" % h for h in headers) + "\r\n").encode() + body


def headers(msgid, subject, to="One <one@example.com>, two@example.com", extra=()):
    return [("From", "Sender <sender@example.org>"), ("To", to), ("Subject", subject),
            ("Date", "Mon, 01 Jan 2024 12:00:00 +0000"), ("Message-ID", "<%s>" % msgid),
            ("MIME-Version", "1.0")] + list(extra)


class Refused(Exception):
    pass


def expect(reply, code):
    if reply.code != code:
        raise Refused(reply.text)
    return reply


def submit(port, sender, rcpts, data, params=""):
    """One SMTP transaction on a Postfix smtpd; (final reply, queue id or None). A refused
    step or a broken connection comes back as a reply with code 0 that names it."""
    try:
        c = Client(port, timeout=60)
    except OSError as e:
        return Reply(0, ["connect: %s" % e]), None
    try:
        expect(c.greeting, 220)
        expect(c.cmd("EHLO client.test"), 250)
        expect(c.cmd("MAIL FROM:<%s>%s" % (sender, params)), 250)
        for rc in rcpts:
            expect(c.cmd("RCPT TO:<%s>" % rc), 250)
        expect(c.cmd("DATA"), 354)
        c.send(stuff(data))
        r = c.reply()
        c.cmd("QUIT")
    except (Refused, OSError, EOFError) as e:
        return Reply(0, ["transaction failed: %s" % e]), None
    finally:
        c.close()
    m = re.search(r"queued as (\w+)", r.text)
    return r, (m.group(1) if m else None)


def arrived(msgid, timeout=DELIVERY_WAIT):
    """The sink's (envelope, bytes) for the message with this Message-ID in its own header
    block (not in a report quoting it), or (None, b"")."""
    tag = ("\r\nMessage-ID: <%s>\r\n" % msgid).encode()

    def look():
        return [m for m in sink.messages() if tag in m[1].partition(b"\r\n\r\n")[0] + b"\r\n"]
    found = harness.wait_until(look, timeout, 0.2)
    return found[0] if found else (None, b"")


def summary(mail_id_or_pattern, listener, timeout=30):
    m = pd.wait_log(r"msg listener=%s id=%s(?!\w).*" % (listener, mail_id_or_pattern), timeout)
    return m.group(0) if m else ""


def check_roundtrip(what, original, env, data, postern_port):
    """The common assertions on one delivered message; returns the ids it names."""
    xf = (env or {}).get("xforward", {})
    t.eq((xf.get("HELO"), xf.get("ADDR")), ("client.test", "127.0.0.1"),
         what + ": the original client's HELO and address went through postern into Postfix")
    ofields, obody = split_message(original)
    dfields, dbody = split_message(data)
    t.ok(dbody == obody, what + ": body byte-identical",
         "got %r\nwant %r" % (dbody[:600], obody[:600]))
    t.ok(is_subsequence(ofields, dfields), what + ": every original header field present, "
         "unchanged, in the original order", b"".join(dfields).decode("utf-8", "replace"))
    tail = dfields[len(dfields) - len(ofields):] if len(dfields) >= len(ofields) else []
    t.ok(tail == ofields, what + ": the original header block is the tail of the delivered one",
         b"".join(dfields).decode("utf-8", "replace"))
    added = dfields[:len(dfields) - len(ofields)]
    t.eq([f.split(b":", 1)[0] for f in added], [b"Received"] * 3,
         what + ": exactly three Received: fields prepended (reinjection, postern, front)")
    ours = [unfold(f) for f in dfields if b"by filter.test (postern" in f]
    t.eq(len(ours), 1, what + ": exactly one postern Received: field")
    mine = ours[0] if ours else ""
    t.match(r"^Received: from client\.test \(\S+ \[127\.0\.0\.1\]\) by filter\.test "
            r"\(postern, port %d\) with \w+ id \w+(?: for <[^>]+>)?;" % postern_port, mine,
            what + ": postern's Received: names the original client (XFORWARD from Postfix)")
    ids = {"mail_id": None, "reinject_qid": None, "front_qid": None}
    m = re.search(r" id (\w+)", mine)
    ids["mail_id"] = m.group(1) if m else None
    if len(added) == 3:
        rein, front = unfold(added[0]), unfold(added[2])
        # Postfix's smtpd writes its Received: from the real session (postern's EHLO);
        # XFORWARD only changes what it logs and records (checked in check_logs).
        t.match(r"^Received: from filter\.test \(\S+ \[127\.0\.0\.1\]\) by mta\.test \(Postfix\) "
                r"with \w+ id \w+", rein,
                what + ": the newest Received: is the reinjection smtpd's, from postern's EHLO")
        t.match(r"^Received: from client\.test \(\S+ \[127\.0\.0\.1\]\) by mta\.test \(Postfix\) "
                r"with \w+ id \w+", front,
                what + ": the oldest added Received: is the front smtpd's, from the client")
        t.ok(unfold(added[1]) == mine, what + ": postern's Received: sits between Postfix's two")
        m1, m2 = re.search(r" id (\w+)", rein), re.search(r" id (\w+)", front)
        ids["reinject_qid"] = m1.group(1) if m1 else None
        ids["front_qid"] = m2.group(1) if m2 else None
    t.eq(xf.get("IDENT"), ids["front_qid"],
         what + ": XFORWARD IDENT (the front queue id) went through postern into Postfix")
    return ids


def check_logs(what, ids, listener, postern_port, rcpt, front_qid):
    """posternd's summary and the maillog tie the queue ids together."""
    line = summary(ids["mail_id"] or r"\w+", listener)
    t.match(r"client=127\.0\.0\.1 .*verdict=pass result=passed queued_as=\w+", line,
            what + ": posternd's summary line says passed, client 127.0.0.1")
    m = re.search(r"queued_as=(\w+)", line)
    qid = m.group(1) if m else "?"
    t.eq(qid, ids["reinject_qid"], what + ": queued_as is the reinjection smtpd's queue id")
    t.ok(pf.wait_log(r"postfix/smtpd\[\d+\]: %s: client=\S+\[127\.0\.0\.1\]" % qid, 10)
         is not None, what + ": the queue id appears in the maillog (reinjection smtpd)")
    t.ok(pf.wait_log(r"postfix/smtpd\[\d+\]: %s: client=.*orig_queue_id=%s, "
                     r"orig_client=\S+\[127\.0\.0\.1\]" % (qid, front_qid), 10) is not None,
         what + ": XFORWARD reached the reinjection smtpd (orig_queue_id, orig_client)")
    t.ok(pf.wait_log(r"%s: to=<%s>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:%d, .*status=sent "
                     r"\(250 2\.0\.0 Ok: queued as SINK\w+\)" % (qid, re.escape(rcpt), sink.port),
                     DELIVERY_WAIT) is not None,
         what + ": the maillog shows the queue id delivered to the sink")
    t.ok(pf.wait_log(r"%s: to=<%s>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:%d, .*status=sent "
                     r"\(250 .*queued as %s\)" % (front_qid, re.escape(rcpt), postern_port, qid),
                     DELIVERY_WAIT) is not None,
         what + ": the front queue id was delivered to postern, whose reply names the queue id")


# ---------------------------------------------------------------- the world
sink = Sink()
reinject_port = harness.free_port()
pd = Posternd({"external": {"protocol": "smtp", "forward": "127.0.0.1:%d" % reinject_port},
               "secondary": {"protocol": "lmtp", "forward": "127.0.0.1:%d" % reinject_port}})
ext_port, lmtp_port = pd.ports["external"], pd.ports["secondary"]

# smtp_send_xforward_command=yes for every smtp client, the final delivery included: the
# sink then shows the client attributes the reinjection smtpd recorded from postern's XFORWARD.
pf = postfix.Postfix(relay_port=sink.port, params={"smtp_send_xforward_command": "yes"})
front = pf.front_smtpd("scan:[127.0.0.1]:%d" % ext_port)
front_lmtp = pf.front_smtpd("lmtpscan:inet:[127.0.0.1]:%d" % lmtp_port, name="front_lmtp")
pf.filter_transport("scan")
pf.filter_transport("lmtpscan", client="lmtp")
pf.reinjection_smtpd(port=reinject_port)
ok, why = pf.start()
if not t.ok(ok, "a private Postfix instance starts and listens on 127.0.0.1"):
    postfix.print_diag("postfix", why)
    t.bail("Postfix did not start")

try:
    # ------------------------------------------------------------ 1. the plain message
    original = build(headers("roundtrip-1@example.org", "postfix round trip",
                             extra=[("Content-Type", "text/plain; charset=us-ascii"),
                                    ("X-Folded", "first part\r\n\tsecond part")]),
                     b"Line one.\r\n.Leading dot\r\n..two dots\r\ntrailing spaces   \r\n"
                     b"\tTab\r\n\r\n\r\nFrom the start of a line\r\nlast line\r\n")
    r, front_qid = submit(front, "sender@example.org", ["one@example.com", "two@example.com"],
                          original)
    t.match(r"^250 2\.0\.0 Ok: queued as \w+", r.text, "plain: the front smtpd answers 250")
    env, data = arrived("roundtrip-1@example.org")
    t.ok(env is not None, "plain: the message arrives at the sink", pf.maillog()[-3000:])
    ids = check_roundtrip("plain", original, env, data, ext_port)
    t.eq(ids["front_qid"], front_qid, "plain: the front Received: carries the front queue id")
    t.eq((env or {}).get("mail_from"), "sender@example.org", "plain: envelope sender at the sink")
    t.eq(sorted(r["addr"] for r in (env or {}).get("rcpts", [])),
         ["one@example.com", "two@example.com"], "plain: envelope recipients at the sink")
    check_logs("plain", ids, "external", ext_port, "one@example.com", front_qid)

    # ------------------------------------------------------------ 2. 8-bit UTF-8
    utf8 = build(headers("roundtrip-utf8@example.org", "Grüße aus Köln ✓",
                         to="Jürgen <jürgen@example.com>",
                         extra=[("Content-Type", "text/plain; charset=utf-8"),
                                ("Content-Transfer-Encoding", "8bit")]),
                 "Grüße, schöne Straße.\r\nΚαλημέρα κόσμε\r\n日本語のテキスト\r\n"
                 "€ and ✓ and 🙂\r\n\xa0non-breaking space line\r\n".encode("utf-8"))
    r, front_qid = submit(front, "sender@example.org", ["jürgen@example.com"], utf8,
                          params=" BODY=8BITMIME SMTPUTF8")
    t.match(r"^250 ", r.text, "utf8: the front smtpd answers 250 to BODY=8BITMIME SMTPUTF8")
    env, data = arrived("roundtrip-utf8@example.org")
    t.ok(env is not None, "utf8: the message arrives at the sink", pf.maillog()[-3000:])
    ids = check_roundtrip("utf8", utf8, env, data, ext_port)
    t.eq([r["addr"] for r in (env or {}).get("rcpts", [])], ["jürgen@example.com"],
         "utf8: the UTF-8 recipient reaches the sink")
    params = (env or {}).get("mail_params", [])
    t.ok("BODY=8BITMIME" in params and "SMTPUTF8" in params,
         "utf8: BODY=8BITMIME and SMTPUTF8 reach the sink", env)
    check_logs("utf8", ids, "external", ext_port, "jürgen@example.com", front_qid)

    # ------------------------------------------------------------ 3. through the LMTP listener
    lm = build(headers("roundtrip-lmtp@example.org", "via lmtp",
                       to="three@example.com, four@example.com"),
               b"Through postern's LMTP listener.\r\n.dot\r\n")
    r, front_qid = submit(front_lmtp, "sender@example.org",
                          ["three@example.com", "four@example.com"], lm)
    t.match(r"^250 ", r.text, "lmtp: the second front smtpd answers 250")
    env, data = arrived("roundtrip-lmtp@example.org")
    t.ok(env is not None, "lmtp: the message arrives at the sink", pf.maillog()[-3000:])
    ids = check_roundtrip("lmtp", lm, env, data, lmtp_port)
    t.eq(sorted(r["addr"] for r in (env or {}).get("rcpts", [])),
         ["four@example.com", "three@example.com"], "lmtp: both recipients at the sink")
    check_logs("lmtp", ids, "secondary", lmtp_port, "three@example.com", front_qid)
    t.ok(pf.wait_log(r"%s: to=<four@example\.com>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:%d, "
                     r".*status=sent \(250 " % (front_qid, lmtp_port), 10) is not None,
         "lmtp: Postfix's lmtp client got a 250 for the second recipient too")

    # ------------------------------------------------------------ 4. the final hop rejects one
    rj = build(headers("roundtrip-reject@example.org", "one good, one rejected",
                       to="good@example.com, reject-me@example.com"),
               b"One of us does not exist.\r\n")
    r, front_qid = submit(front, "sender@example.org",
                          ["good@example.com", "reject-me@example.com"], rj)
    t.match(r"^250 ", r.text, "reject: the front smtpd accepts both recipients (it cannot know)")
    env, data = arrived("roundtrip-reject@example.org")
    t.eq([r["addr"] for r in (env or {}).get("rcpts", [])], ["good@example.com"],
         "reject: the sink received the message for the good recipient only")
    line = summary(r"\w+ .*to=<good@example\.com>", "external")
    t.match(r"to=<good@example\.com>,<reject-me@example\.com> .*result=passed", line,
            "reject: postern passed the message for both (the reinjection smtpd queued it)")
    t.ok(pf.wait_log(r": to=<reject-me@example\.com>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:%d, "
                     r".*status=bounced \(host 127\.0\.0\.1\[127\.0\.0\.1\] said: 550 5\.1\.1 "
                     % sink.port, DELIVERY_WAIT) is not None,
         "reject: the maillog shows Postfix bounced the rejected recipient after the sink's 550")

    def bounce():
        return [m for m in sink.messages() if m[0].get("mail_from") == "" and
                b"reject-me@example.com" in m[1]]
    bounces = harness.wait_until(bounce, DELIVERY_WAIT, 0.2)
    t.ok(bool(bounces), "reject: a non-delivery report with a null sender reaches the sink")
    if bounces:
        benv, bdata = bounces[0]
        bfields, _ = split_message(bdata)
        t.eq([r["addr"] for r in benv.get("rcpts", [])], ["sender@example.org"],
             "reject: the report goes to the original sender")
        t.ok(any(re.match(rb"Content-Type: multipart/report;.*report-type=delivery-status",
                          re.sub(rb"\r\n[ \t]+", b" ", f)) for f in bfields),
             "reject: the report is a multipart/report delivery-status notification")
        t.ok(not any(b"(postern" in f for f in bfields),
             "reject: the report did not go through postern (no postern Received: on it)")

    # ------------------------------------------------------------ the end
    t.ok(harness.wait_until(pf.queue_empty, DELIVERY_WAIT, 0.5), "the Postfix queue is empty",
         pf.queue())
    t.eq(len(re.findall(r"msg listener=\w+ id=", pd.log())), 4,
         "posternd logged one summary line per message, none for the report")
finally:
    if t.failed:
        postfix.print_diag("postfix", pf.diagnostics())
        postfix.print_diag("posternd log", pd.log())

pf.stop()
t.ok(not pf.running(), "postfix stop leaves no master process behind")
pd.stop()
t.eq(pd.spool_files(), [], "nothing left in posternd's spool directory")
t.done()
