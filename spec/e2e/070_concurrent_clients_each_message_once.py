"""Twenty clients sending ten messages each: every message is delivered exactly once.

Pins the worker pool and the cached downstream connections under concurrency:
200 messages in 20 parallel sessions (more sessions than workers, so clients
queue in the listen backlog), every client hears 250 for each message, the
sink holds each Message-ID exactly once, and each body is unchanged.
"""
import re
import threading

from harness import Client, Posternd, Sink, message, send_message, split_added, t, wait_until

CLIENTS, PER_CLIENT = 20, 10
sink = Sink()
pd = Posternd({"external": {"forward": "127.0.0.1:%d" % sink.port, "workers": 8}},
              settings={"log_level": "warn"})
port = pd.ports["external"]
results = {}
sent = {}
lock = threading.Lock()


def client(n):
    codes = []
    try:
        c = Client(port, timeout=60)
        c.cmd("EHLO client%d.test" % n)
        for i in range(PER_CLIENT):
            mid = "c%02d-m%02d" % (n, i)
            body = ("client %d message %d\r\n" % (n, i)) * (1 + i * 37)
            data = message(subject=mid, body=body).replace(b"Message-ID: <", b"Message-ID: <" + mid.encode() + b".", 1)
            with lock:
                sent[mid] = data
            codes.append(send_message(c, "s%d@example.org" % n, ["r%d@example.com" % n], data,
                                      hello=None).code)
        c.cmd("QUIT")
    except Exception as e:  # recorded, reported as a failure below
        codes.append(repr(e))
    with lock:
        results[n] = codes


threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
for th in threads:
    th.start()
for th in threads:
    th.join(120)
t.ok(not any(th.is_alive() for th in threads), "all clients finished within the bound")
bad = {n: c for n, c in results.items() if c != [250] * PER_CLIENT}
t.ok(len(results) == CLIENTS and not bad, "every client heard 250 for each of its messages", bad)
wait_until(lambda: sink.count() >= CLIENTS * PER_CLIENT, 30)
seen = {}
altered = []
for env, data in sink.messages():
    m = re.search(rb"Message-ID: <(c\d+-m\d+)\.", data)
    key = m.group(1).decode() if m else "?"
    seen[key] = seen.get(key, 0) + 1
    if key in sent and split_added(data, sent[key])[0] is None:
        altered.append(key)
t.eq(sink.count(), CLIENTS * PER_CLIENT, "the sink received exactly 200 messages")
t.eq(sorted(k for k, v in seen.items() if v != 1), [], "no message delivered twice")
t.eq(sorted(set(sent) - set(seen)), [], "no message missing")
t.eq(altered, [], "no body altered")
pd.stop()
t.eq(pd.spool_files(), [], "nothing left in the spool")
t.done()
