"""Every SMTP command gets its documented reply, and every limit a clear one.

Pins RFC 5321 behaviour of the server side: HELO/EHLO, NOOP, VRFY (252), HELP
(214), RSET, QUIT; unknown commands 502 5.5.2, unimplemented ones 502 5.5.1;
bad sequences 503 5.5.1; syntax errors 501 5.5.4; an over-long command line
500 5.5.2 with the session still usable; SIZE over the limit 552 5.3.4 at MAIL
and a message over it 552 5.3.4 after the data; too many recipients 452 4.5.3;
too many errors 421 and the connection closed. Nothing here is delivered.
"""
from harness import Client, Posternd, Sink, mail_id, stuff, t

sink = Sink()
fwd = "127.0.0.1:%d" % sink.port
pd = Posternd({"external": {"forward": fwd, "max_recipients": 3, "max_message_size": 10000,
                            "max_errors": 50, "smtp_line_limit": 1024},
               "strict": {"forward": fwd, "max_errors": 8}})
port = pd.ports["external"]

c = Client(port)
t.eq(c.cmd("MAIL FROM:<a@example.org>").code, 503, "MAIL before EHLO: 503")
r = c.cmd("HELO")
t.eq((r.code, r.lines[0][:9]), (501, "501 5.5.4"), "HELO without a name: 501 5.5.4")
r = c.cmd("HELO client.test")
t.eq(r.code, 250, "HELO: 250")
t.eq(len(r.lines), 1, "HELO reply has no extension lines")
t.eq(c.cmd("NOOP").code, 250, "NOOP: 250")
t.eq(c.cmd("VRFY postmaster").code, 252, "VRFY: 252 (cannot verify, will accept)")
t.eq(c.cmd("HELP").code, 214, "HELP: 214")
r = c.cmd("FROB nicate")
t.match(r"^502 5\.5\.2 ", r.text, "unknown command: 502 5.5.2")
t.match(r"^502 5\.5\.1 ", c.cmd("EXPN staff").text, "EXPN: 502 5.5.1 not implemented")
t.eq(c.cmd("RCPT TO:<b@example.com>").code, 503, "RCPT before MAIL: 503")
t.eq(c.cmd("DATA").code, 503, "DATA before MAIL: 503")
r = c.cmd("MAIL FROM:a@example.org")
t.match(r"^501 5\.5\.4 ", r.text, "MAIL without angle brackets: 501 5.5.4")
t.eq(c.cmd("MAIL FROM:<a@example.org>").code, 250, "MAIL: 250")
t.eq(c.cmd("MAIL FROM:<a@example.org>").code, 503, "nested MAIL: 503")
t.eq(c.cmd("DATA").code, 503, "DATA before RCPT: 503")
t.match(r"^555 5\.5\.4 ", c.cmd("RCPT TO:<b@example.com> FOO=bar").text,
        "unknown RCPT parameter: 555 5.5.4")
for i in range(3):
    t.eq(c.cmd("RCPT TO:<r%d@example.com>" % i).code, 250, "RCPT %d of 3: 250" % (i + 1))
r = c.cmd("RCPT TO:<r3@example.com>")
t.match(r"^452 4\.5\.3 ", r.text, "fourth RCPT over max_recipients: 452 4.5.3")
t.eq(c.cmd("RSET").code, 250, "RSET: 250")
t.eq(c.cmd("RCPT TO:<b@example.com>").code, 503, "RSET ended the transaction")

# an over-long command line: 500 5.5.2, and the session goes on
r = c.cmd("NOOP " + "x" * 5000)
t.match(r"^500 5\.5\.2 ", r.text, "5000-byte command line: 500 5.5.2")
t.eq(c.cmd("NOOP").code, 250, "the session survives an over-long line")
# smtp_line_limit (1024 here) counts the CRLF, as RFC 5321's 512 does
r = c.cmd("NOOP " + "x" * (1024 - 5 - 2))
t.eq(r.code, 250, "a command line of exactly smtp_line_limit bytes with its CRLF is taken")
r = c.cmd("NOOP " + "x" * (1024 - 5 - 1))
t.match(r"^500 5\.5\.2 ", r.text, "one byte more (CRLF included) is too long: 500 5.5.2")

# SIZE= over the limit at MAIL
r = c.cmd("MAIL FROM:<a@example.org> SIZE=20000")
t.match(r"^552 5\.3\.4 ", r.text, "SIZE over max_message_size: 552 5.3.4")
r = c.cmd("MAIL FROM:<a@example.org> SIZE=abc")
t.match(r"^501 5\.5\.4 ", r.text, "malformed SIZE: 501 5.5.4")

# a message over the limit without SIZE=: read to the end, then 552 5.3.4
t.eq(c.cmd("MAIL FROM:<a@example.org>").code, 250, "MAIL for an oversized message")
t.eq(c.cmd("RCPT TO:<b@example.com>").code, 250, "RCPT for an oversized message")
t.eq(c.cmd("DATA").code, 354, "DATA for an oversized message")
c.send(stuff(b"Subject: big\r\n\r\n" + (b"y" * 70 + b"\r\n") * 400))
r = c.reply()
t.match(r"^552 5\.3\.4 ", r.text, "message over max_message_size: 552 5.3.4")
big_id = mail_id(r)
# the log line gives what was received (16 + 400 * 72 bytes), not what was kept (none)
t.ok(pd.wait_log(r"id=%s .*size=%d .*result=rejected" % (big_id, 16 + 400 * 72), 10) is not None,
     "message over max_message_size: the log line gives its size", pd.log()[-2000:])
t.eq(c.cmd("NOOP").code, 250, "the session survives an oversized message")
t.eq(c.cmd("QUIT").code, 221, "QUIT: 221")
t.ok(c.closed(), "the server closes after QUIT")

# LMTP's greeting verb on an SMTP listener is unknown there
c = Client(port)
t.eq(c.cmd("LHLO client.test").code // 100, 5, "LHLO on an SMTP listener: 5xx")
c.close()

# the error limit: 421 and close
c = Client(pd.ports["strict"])
codes = [c.cmd("BOGUS%d" % i).code for i in range(8)]
t.eq(codes[:7], [502] * 7, "seven errors answered 502")
more = c.line()
t.match(r"^421 4\.7\.0 ", more, "the eighth error adds 421 4.7.0 (too many errors)")
t.ok(c.closed(), "then the connection is closed")
t.match(r"too many errors", pd.log(), "and the log says why")

# NUL bytes in a command
c = Client(port)
r = c.cmd("EHLO a\0b")
t.eq(r.code // 100, 5, "a NUL byte in a command: 5xx")
t.eq(c.cmd("NOOP").code, 250, "the session survives a NUL byte")
c.close()

t.eq(sink.count(), 0, "nothing was delivered")
pd.stop()
t.eq(pd.spool_files(), [], "nothing left in the spool")
t.done()
