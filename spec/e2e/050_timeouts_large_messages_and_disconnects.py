"""Idle clients time out with 421, big messages pass whole, a vanished client costs nothing.

Pins: command_timeout and data_timeout end the session with 421 4.4.2 and a log
line, and a transaction cut short that way is never delivered; a 30 MB message
passes byte-identical; a client that disconnects mid-DATA leaves no delivery
and no spool file, and the next session on the same worker works; the LMTP
listener greets as LMTP, wants LHLO and refuses EHLO.
"""
import hashlib
import os

from harness import Client, Posternd, Sink, message, send_message, split_added, stuff, t, wait_until

sink = Sink()
fwd = "127.0.0.1:%d" % sink.port
pd = Posternd({"external": {"forward": fwd, "workers": 1},
               "slowpoke": {"forward": fwd, "command_timeout": 1, "data_timeout": 1},
               "lmtp": {"forward": fwd, "protocol": "lmtp"}})

# command timeout
c = Client(pd.ports["slowpoke"])
t.eq(c.cmd("EHLO client.test").code, 250, "EHLO")
r = c.reply()  # we say nothing: the server speaks first after command_timeout
t.match(r"^421 4\.4\.2 ", r.text, "idle past command_timeout: 421 4.4.2")
t.ok(c.closed(), "and the connection is closed")
t.ok(pd.wait_log(r"timeout after EHLO on listener slowpoke"), "the log says timeout after EHLO")

# data timeout, mid-message: nothing delivered
c = Client(pd.ports["slowpoke"])
t.eq(c.cmd("EHLO client.test").code, 250, "EHLO")
t.eq(c.cmd("MAIL FROM:<s@example.org>").code, 250, "MAIL")
t.eq(c.cmd("RCPT TO:<s@example.com>").code, 250, "RCPT")
t.eq(c.cmd("DATA").code, 354, "DATA")
c.send(b"Subject: half a message\r\n\r\nand then silence")
r = c.reply()
t.match(r"^421 4\.4\.2 ", r.text, "silent past data_timeout mid-message: 421 4.4.2")
t.ok(pd.wait_log(r"timeout after DATA on listener slowpoke, transaction aborted"),
     "the log says the transaction was aborted")

# 30 MB message, byte-identical
c = Client(pd.ports["external"], timeout=120)
big = bytearray(b"Subject: thirty megabytes\r\nMessage-ID: <big@example.org>\r\n\r\n")
line = bytes(range(33, 127)) * 1 + b"\r\n"
while len(big) < 30 * 1024 * 1024:
    big += line
big += b".leading dot line\r\n"
big = bytes(big)
r = send_message(c, "big@example.org", ["big@example.com"], big)
t.eq(r.code, 250, "30 MB message: 250")
wait_until(lambda: sink.count() >= 1, 60)
msgs = sink.messages()
got = msgs[0][1] if msgs else b""
added, _ = split_added(got, big)
t.ok(added is not None, "30 MB message arrives byte-identical (sha256 %s)" %
     hashlib.sha256(big).hexdigest()[:16])
t.eq(c.cmd("QUIT").code, 221, "QUIT")

# disconnect mid-DATA, then the same (single) worker serves the next session
c = Client(pd.ports["external"])
t.eq(c.cmd("EHLO client.test").code, 250, "EHLO")
t.eq(c.cmd("MAIL FROM:<gone@example.org>").code, 250, "MAIL")
t.eq(c.cmd("RCPT TO:<gone@example.com>").code, 250, "RCPT")
t.eq(c.cmd("DATA").code, 354, "DATA")
c.send(b"Subject: never finished\r\n\r\n" + b"z" * 200000)
c.close()
t.ok(pd.wait_log(r"lost connection after DATA on listener external, transaction aborted"),
     "the log says the connection was lost mid-DATA")
c = Client(pd.ports["external"])
m = message(subject="after the disconnect")
t.eq(send_message(c, "next@example.org", ["next@example.com"], m).code, 250,
     "the next session on the same worker: 250")
wait_until(lambda: sink.count() >= 2, 10)
subjects = [d.split(b"Subject: ")[1].split(b"\r\n")[0] for _, d in sink.messages()]
t.eq(subjects, [b"thirty megabytes", b"after the disconnect"],
     "only the complete messages were delivered")
t.eq(pd.spool_files(), [], "no spool file left after the disconnect")

# LMTP listener basics
c = Client(pd.ports["lmtp"])
t.match(r"^220 \S+ LMTP", c.greeting.text, "LMTP listener greets as LMTP")
t.match(r"^500 ", c.cmd("EHLO client.test").text, "EHLO on an LMTP listener: 500")
t.eq(c.cmd("MAIL FROM:<l@example.org>").code, 503, "MAIL before LHLO: 503")
r = c.cmd("LHLO client.test")
t.ok(r.code == 250 and any("PIPELINING" in l for l in r.lines), "LHLO: 250 with extensions")
c.close()

pd.stop()
t.eq(pd.spool_files(), [], "nothing left in the spool at the end")
t.done()
