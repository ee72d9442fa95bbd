"""SMTP mode: a recipient forward refuses is never dropped silently beside other outcomes.

When the policy discards one recipient and forward refuses the only other
one, no downstream transaction is "mixed", yet our client hears 250 (the
discard is a success): the sender must get a delivery status notification
for the refused recipient. The same when the refused recipient's copy
differs from a delivered one's (per-recipient header edits).
"""
import os

from harness import Client, Posternd, Sink, message, send_message, t, wait_until, workspace

sink = Sink()
pol = os.path.join(workspace(), "policies")
os.makedirs(pol, exist_ok=True)
with open(os.path.join(pol, "p.lua"), "w") as f:
    f.write('''local P = require "postern"
return P.policy {
  function(msg)
    for _, r in ipairs(msg.recipients) do
      if r.address:find("^drop@") then r:discard() end
      if r.address:find("^rejectcopy@") then r:add_header("X-Copy", "own") end
    end
  end,
}
''')
pd = Posternd({"smtp": {"forward": "127.0.0.1:%d" % sink.port, "policy": "p.lua"}})


def dsn_to(sender):
    return [(e, d) for e, d in sink.messages() if e.get("mail_from") == "" and
            [r["addr"] for r in e.get("rcpts", [])] == [sender]]


c = Client(pd.ports["smtp"])
r = send_message(c, "alice@example.org", ["drop@example.com", "rejectme@example.com"],
                 message(subject="discard and refusal"))
t.eq(r.code, 250, "discarded + refused by forward: the client hears 250")
t.ok(wait_until(lambda: dsn_to("alice@example.org"), 10), "a notification goes to the sender")
d = dsn_to("alice@example.org")
body = d[0][1].decode("utf-8", "replace") if d else ""
t.match(r"Final-Recipient: rfc822; rejectme@example\.com", body, "... naming the refused recipient")
t.ok("drop@example.com" not in body.split("text/rfc822-headers")[0],
     "... and not the discarded one")
c.close()

c = Client(pd.ports["smtp"])
r = send_message(c, "bob@example.org", ["ok@example.com", "rejectcopy@example.com"],
                 message(subject="two copies, one refused"))
t.eq(r.code, 250, "two copies, forward refuses one: 250")
t.ok(wait_until(lambda: dsn_to("bob@example.org"), 10),
     "a notification goes to the sender for the refused copy")
delivered = [e for e, d in sink.messages() if e.get("mail_from") == "bob@example.org"]
t.eq([[x["addr"] for x in e["rcpts"]] for e in delivered], [["ok@example.com"]],
     "the accepted copy is delivered once")
c.close()
pd.stop()
t.done()
