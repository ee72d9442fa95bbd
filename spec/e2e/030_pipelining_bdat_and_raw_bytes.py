"""Pipelined groups, several transactions per connection, BDAT, and bytes SMTP does not promise.

Pins: a whole transaction sent as one pipelined write is answered reply for
reply (RFC 2920); three messages on one connection are three deliveries; RSET
in the middle throws away only that transaction; 8-bit and UTF-8 bodies and
addresses (SMTPUTF8, RFC 6531) arrive byte-identical; body lines over 998
bytes pass unchanged; dot-stuffing is undone exactly; bare LF and bare CR in
DATA neither crash nor hang anything and the message is delivered; BDAT
chunks (RFC 3030), including binary-looking data and a lone "." line, arrive
exactly.
"""
from harness import Client, Posternd, Sink, message, send_message, split_added, stuff, t, wait_until

sink = Sink()
pd = Posternd({"external": {"forward": "127.0.0.1:%d" % sink.port}})
port = pd.ports["external"]


def last_delivery(n):
    """The n-th delivered message (1-based), waiting for it briefly."""
    wait_until(lambda: sink.count() >= n, 10)
    msgs = sink.messages()
    return msgs[n - 1] if len(msgs) >= n else ({}, b"")


def delivered_unchanged(n, original, name):
    env, data = last_delivery(n)
    added, _ = split_added(data, original)
    t.ok(added is not None and added.startswith(b"Received: "), name, data[-400:])
    return env


# 1. one pipelined group: EHLO's reply first, then MAIL RCPT RCPT DATA in one write
c = Client(port)
t.eq(c.cmd("EHLO client.test").code, 250, "EHLO")
m1 = message(subject="pipelined")
c.send("MAIL FROM:<p@example.org>\r\nRCPT TO:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n")
codes = [c.reply().code for _ in range(4)]
t.eq(codes, [250, 250, 250, 354], "pipelined MAIL, RCPT, RCPT, DATA answered in order")
c.send(stuff(m1) + b"MAIL FROM:<q@example.org>\r\nRCPT TO:<c@example.com>\r\nDATA\r\n")
codes = [c.reply().code for _ in range(4)]
t.eq(codes, [250, 250, 250, 354], "end of data pipelined with the next transaction")
m2 = message(subject="second in the same connection")
c.send(stuff(m2))
t.eq(c.reply().code, 250, "second message: 250")
delivered_unchanged(1, m1, "first pipelined message delivered unchanged")
env = delivered_unchanged(2, m2, "second message delivered unchanged")
t.eq([r["addr"] for r in env.get("rcpts", [])], ["c@example.com"], "second message's own envelope")

# 2. RSET mid-transaction, then a third message on the same connection
t.eq(c.cmd("MAIL FROM:<x@example.org>").code, 250, "MAIL then RSET")
t.eq(c.cmd("RCPT TO:<dropped@example.com>").code, 250, "RCPT then RSET")
t.eq(c.cmd("RSET").code, 250, "RSET")
m3 = message(subject="after RSET")
t.eq(send_message(c, "y@example.org", ["kept@example.com"], m3, hello=None).code, 250,
     "message after RSET: 250")
env = delivered_unchanged(3, m3, "message after RSET delivered")
t.eq([r["addr"] for r in env.get("rcpts", [])], ["kept@example.com"], "RSET dropped the old recipient")
t.eq(sink.count(), 3, "three deliveries from one connection, nothing from the reset one")

# 3. 8-bit body and a UTF-8 address with SMTPUTF8
m4 = ("From: Jörg <jörg@bücher.example>\r\nTo: ünïcødé@example.com\r\nSubject: grüße\r\n"
      "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
      "Grüße aus Köln — ½ € ✓\r\n\x80\xff raw high bytes\r\n").encode("utf-8")
r = send_message(c, "jörg@bücher.example", ["ünïcødé@example.com"], m4, hello=None,
                 params=" BODY=8BITMIME SMTPUTF8")
t.eq(r.code, 250, "8-bit UTF-8 message with SMTPUTF8: 250")
env = delivered_unchanged(4, m4, "8-bit body byte-identical")
t.eq(env.get("mail_from"), "jörg@bücher.example", "UTF-8 sender carried over")
t.ok("SMTPUTF8" in env.get("mail_params", []), "SMTPUTF8 carried over", env)
t.match(r"with UTF8SMTP id", last_delivery(4)[1].decode("utf-8", "replace"),
        "Received: says UTF8SMTP (RFC 6531)")

# 4. lines longer than 998 bytes, and dot-stuffing at every place it can bite
m5 = (b"Subject: long lines\r\n\r\n" + b"A" * 5000 + b"\r\n.\r\n..\r\n. \r\n.x\r\n"
      + b"B" * 70000 + b"\r\nend\r\n")
t.eq(send_message(c, "l@example.org", ["l@example.com"], m5, hello=None).code, 250,
     "message with 5,000 and 70,000-byte lines and dot lines: 250")
delivered_unchanged(5, m5, "long lines and dot lines arrive exactly")
t.eq(c.cmd("QUIT").code, 221, "QUIT")

# 5. bare LF and bare CR inside DATA: no crash, no hang, delivered
c = Client(port)
t.eq(c.cmd("EHLO client.test").code, 250, "EHLO for bare LF/CR")
t.eq(c.cmd("MAIL FROM:<lf@example.org>").code, 250, "MAIL")
t.eq(c.cmd("RCPT TO:<lf@example.com>").code, 250, "RCPT")
t.eq(c.cmd("DATA").code, 354, "DATA")
c.send(b"Subject: bare\r\n\r\nbare LF here\nbare CR here\rmixed\n\r\n.\nnot the end\r\n.\r\n")
r = c.reply()
t.eq(r.code, 250, "bare LF and bare CR: the message is accepted, '.\\n' is not the end")
t.eq(c.cmd("NOOP").code, 250, "the session goes on")
env, data = last_delivery(6)
t.ok(b"not the end" in data and b"bare CR here" in data, "the content around bare LF/CR arrives", data)
c.close()
t.eq(len(pd.children()), 4, "all workers still alive after bare LF/CR")

# 6. BDAT: chunks, one of them a lone dot and binary-looking bytes
c = Client(port)
t.eq(c.cmd("EHLO client.test").code, 250, "EHLO for BDAT")
t.eq(c.cmd("MAIL FROM:<bdat@example.org> BODY=BINARYMIME").code // 100, 5,
     "BODY=BINARYMIME is refused (not offered)")
t.eq(c.cmd("MAIL FROM:<bdat@example.org>").code, 250, "MAIL for BDAT")
t.eq(c.cmd("RCPT TO:<bdat@example.com>").code, 250, "RCPT for BDAT")
part1 = b"Subject: chunked\r\n\r\nfirst chunk\r\n.\r\n"
part2 = b"..double dot\r\n" + bytes(range(1, 256)).replace(b"\r", b"").replace(b"\n", b"") + b"\r\n"
c.send(b"BDAT %d\r\n" % len(part1) + part1)
t.match(r"^250 2\.0\.0 ", c.reply().text, "BDAT chunk 1: 250")
c.send(b"BDAT %d LAST\r\n" % len(part2) + part2)
r = c.reply()
t.eq(r.code, 250, "BDAT LAST: 250 after delivery")
env, data = last_delivery(7)
added, _ = split_added(data, part1 + part2)
t.ok(added is not None, "BDAT content arrives exactly, a lone dot line included", data[-300:])
t.eq(c.cmd("DATA").code, 503, "DATA outside a transaction after BDAT: 503")
c.send(b"BDAT 3\r\nabc")
t.eq(c.reply().code, 503, "BDAT without MAIL: 503, and its bytes are skipped")
t.eq(c.cmd("NOOP").code, 250, "still in sync after a refused BDAT")
t.eq(c.cmd("MAIL FROM:<b2@example.org>").code, 250, "MAIL")
t.eq(c.cmd("RCPT TO:<b2@example.com>").code, 250, "RCPT")
c.send(b"BDAT 0 LAST\r\n")
t.eq(c.reply().code // 100, 2, "BDAT 0 LAST (an empty message) is answered")
c.send(b"BDAT 12x\r\n")
r = c.reply()
t.eq(r.code // 100, 5, "BDAT with a malformed size: 5xx")
t.ok(c.closed(), "and the connection is closed: where the chunk ends is unknown")

pd.stop()
t.eq(pd.spool_files(), [], "nothing left in the spool")
t.done()
