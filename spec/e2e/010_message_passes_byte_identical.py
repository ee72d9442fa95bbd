"""A message passes through posternd byte-identical, behind postern's own Received: line.

The sink sees the original bytes unchanged after the added header, the envelope
(sender, recipients, DSN parameters) carried over, XFORWARD attributes handed
on, and the client heard 250 with the mail id and the sink's queue id; the log
has one summary line for the message.
"""
import re

from harness import Client, Posternd, Sink, message, send_message, split_added, t

sink = Sink()
pd = Posternd({"external": {"forward": "127.0.0.1:%d" % sink.port}})
port = pd.ports["external"]

original = message(subject="byte identical", body="Line one.\r\n.Leading dot\r\n..two dots\r\n"
                   "trailing spaces   \r\n\tTab\r\n\r\n\r\nlast line without CRLF")
c = Client(port)
t.match(r"^220 filter\.test ESMTP postern", c.greeting.text, "greeting names the host and ESMTP")
r = c.cmd("EHLO mta.test")
for ext in ("PIPELINING", "SIZE", "8BITMIME", "ENHANCEDSTATUSCODES", "XFORWARD", "SMTPUTF8",
            "CHUNKING", "DSN"):
    t.ok(any(l[4:].split(" ")[0] == ext for l in r.lines), "EHLO advertises " + ext)
t.eq(c.cmd("XFORWARD NAME=mx.example.org ADDR=192.0.2.7 PROTO=ESMTP HELO=mx.example.org").code,
     250, "XFORWARD accepted")
t.eq(c.cmd("XFORWARD LOGIN=alice SOURCE=REMOTE").code, 250, "second XFORWARD accepted")
t.eq(c.cmd("MAIL FROM:<sender@example.org> BODY=8BITMIME RET=HDRS ENVID=abc+2Bdef").code, 250,
     "MAIL with BODY, RET, ENVID")
t.eq(c.cmd("RCPT TO:<one@example.com> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;one@example.com").code,
     250, "RCPT with NOTIFY and ORCPT")
t.eq(c.cmd("RCPT TO:<two@example.com>").code, 250, "second RCPT")
t.eq(c.cmd("DATA").code, 354, "DATA gives 354")
from harness import stuff
c.send(stuff(original))
r = c.reply()
t.eq(r.code, 250, "end of data gives 250 after the sink accepted")
t.match(r"^250 2\.0\.0 id=\w{12}, from MTA: 250 2\.0\.0 Ok: queued as SINK\w+", r.text,
        "the reply carries our mail id and the downstream reply")
mail_id = re.search(r"id=(\w+)", r.text).group(1) if r.code == 250 else "?"
t.eq(c.cmd("QUIT").code, 221, "QUIT gives 221")

msgs = sink.messages()
t.eq(len(msgs), 1, "the sink got exactly one message")
env, data = msgs[0] if msgs else ({}, b"")
added, rest = split_added(data, original if original.endswith(b"\r\n") else original + b"\r\n")
t.ok(added is not None, "the original bytes arrive unchanged at the end",
     data[-300:])
t.match(r"^Received: from mx\.example\.org \(mx\.example\.org \[192\.0\.2\.7\]\)\r\n\tby filter\.test "
        r"\(postern, port \d+\)\r\n\twith ESMTP id " + mail_id + r";",
        (added or b"").decode(), "postern's Received: line names the XFORWARD client and the mail id")
t.eq((added or b"").count(b"\r\n") >= 3 and (added or b"").startswith(b"Received:"), True,
     "the only addition is the Received: header")
t.eq(env.get("mail_from"), "sender@example.org", "envelope sender carried over")
t.eq([r["addr"] for r in env.get("rcpts", [])], ["one@example.com", "two@example.com"],
     "recipients carried over in order")
t.ok("BODY=8BITMIME" in env.get("mail_params", []), "BODY=8BITMIME carried over", env)
t.ok("RET=HDRS" in env.get("mail_params", []) and "ENVID=abc+2Bdef" in env.get("mail_params", []),
     "RET and ENVID carried over", env)
t.eq(env.get("rcpts", [{}])[0].get("params"), ["NOTIFY=SUCCESS,FAILURE", "ORCPT=rfc822;one@example.com"],
     "NOTIFY and ORCPT carried over")
xf = env.get("xforward", {})
t.eq((xf.get("ADDR"), xf.get("NAME"), xf.get("LOGIN"), xf.get("SOURCE")),
     ("192.0.2.7", "mx.example.org", "alice", "REMOTE"), "XFORWARD attributes handed on")

line = pd.wait_log(r"msg listener=external id=" + mail_id + r" .*")
t.ok(line is not None, "one summary line for the message", pd.log())
if line:
    t.match(r"client=192\.0\.2\.7 from=<sender@example\.org> to=<one@example\.com>,<two@example\.com> "
            r"size=\d+ verdict=pass result=passed queued_as=SINK\w+ reply=\"250 .*\" elapsed_ms=\d+",
            line.group(0), "summary line: client, envelope, size, verdict, queue id, elapsed")
t.eq(pd.log().count("id=" + mail_id + " "), 1, "exactly one summary line")
pd.stop()
t.eq(pd.spool_files(), [], "nothing left in the spool directory")
t.done()
