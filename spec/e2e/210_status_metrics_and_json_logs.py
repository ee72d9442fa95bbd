"""The operator's view: the Prometheus exposition, `postern status`/`reload`, JSON logs.

A posternd (text log) with metrics = { listen = "127.0.0.1:PORT" } and two
listeners: "filt" (workers = 2) with a policy that rejects a Subject
containing REJECTME, quarantines QUARANTINEME and scores a rule whose name
carries CR, LF and ESC for CTRLHIT; "plain" (workers = 1) without a policy,
forwarding to a sink that answers the end of data with 451. A second
posternd with log_format = "json". Pinned behaviour:

  exposition (GET /metrics through urllib, a real HTTP client): 200 with
    Content-Type text/plain; version=0.0.4; every non-comment line is
    `name{labels} value` with a float value; every family has # HELP and
    # TYPE before its samples, its samples in one group, no series twice;
    every histogram's buckets are cumulative, le ascending, ending in +Inf
    equal to its _count; GET /other is 404;
  counters: after pass, reject, quarantine (filt) and 451-tempfailed (plain)
    messages of known sizes (one with a dot-stuffed line), the deltas are
    exactly what was sent: postern_messages_total, postern_bytes_total (the
    unstuffed bytes), postern_recipients_total by verdict,
    postern_results_total passed/rejected/deferred; the receive and policy
    stage counts move by one per message, reinject moves; postern_workers
    busy + idle equals each listener's workers;
  reloads: postern_last_reload_success is -1 before any; SIGHUP and
    `postern -c CONF reload` each add one to postern_reloads_total{ok} and
    set it to 1; a broken config + SIGHUP adds one to {failed} and sets 0,
    the counters survive; the config restored, a reload is ok again;
  `postern -c CONF status`: each listener with busy + idle = its workers
    and messages/pass/quarant/reject/deferred as sent; the reload line says
    ok, or FAILED after the broken one; `postern status` whose
    control_socket nobody listens on (a stale socket file, a missing path)
    exits 1 with "cannot reach posternd at PATH" on stderr;
  posternd -t refuses metrics.listen on a non-loopback address (0.0.0.0,
    192.0.2.1, ::), naming the key 'metrics.listen'; 127.0.0.1 and [::1]
    pass;
  log_format = "json": every line of the log is valid UTF-8 and a JSON
    object with time, prog, pid, level; a message's summary has event "msg",
    listener, id (the one in the reply), client, from, to (a list), size,
    verdict, result, reply (the reply line the client got), elapsed_ms, and
    score/hits when a policy ran; senders carrying a quote, a backslash, UTF-8
    (SMTPUTF8), a Latin-1 byte, a lead byte 0xFF, an encoded surrogate and
    an overlong sequence decode to the exact address (bytes not part of
    valid UTF-8 as the code point of the same value, as esc.c promises); a rule name with CR/LF/ESC
    decodes exactly; a message to 300 recipients still gives one valid JSON
    summary naming all of them;
  text log: the summary escapes control bytes (no raw CR, LF inside a line,
    or ESC anywhere in the log), and a quote or backslash of a sender.
"""
import codecs
import json
import os
import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request

from harness import (POSTERN, POSTERND, Client, Posternd, Reply, Sink, check_config, free_port,
                     message, send_message, stuff, t, wait_until, workspace)

WS = workspace()
POLICY_DIR = os.path.join(WS, "policies")
os.makedirs(POLICY_DIR, exist_ok=True)
with open(os.path.join(POLICY_DIR, "ops.lua"), "w") as f:
    f.write(r'''
local P = require "postern"
return P.policy {
  function(msg)
    local s = msg:header("Subject") or ""
    if s:find("CTRLHIT", 1, true) then
      msg:add_score(1, "ctl\r\ninjected: fake\27[31mred")
    end
    if s:find("REJECTME", 1, true) then
      return P.reject { code = 550, enh = "5.7.1", text = "Rejected by spec policy" }
    elseif s:find("QUARANTINEME", 1, true) then
      return P.quarantine("spec quarantine")
    elseif s:find("SPLITME", 1, true) then
      for _, r in ipairs(msg.recipients) do
        if r.address:find("^no") then r:reject("not this one", 550, "5.7.1") end
      end
    end
  end,
}
''')

ok_sink = Sink(name="ok")
defer_sink = Sink("--data-reply", "451 4.3.0 sink says later", name="defer")
METRICS_PORT = free_port()
WORKERS = {"filt": 2, "plain": 1}
listeners = {
    "filt": {"policy": "ops.lua", "forward": "127.0.0.1:%d" % ok_sink.port,
             "workers": WORKERS["filt"]},
    "plain": {"forward": "127.0.0.1:%d" % defer_sink.port, "workers": WORKERS["plain"]},
}
pd = Posternd(listeners, {"metrics": {"listen": "127.0.0.1:%d" % METRICS_PORT}})
CONF = pd.conf
with open(CONF) as f:
    GOOD_CONF = f.read()
BASE_URL = "http://127.0.0.1:%d" % METRICS_PORT


# ---------------------------------------------------------------- helpers
def transact(port, rcpts, data, sender="sender@example.org", params=""):
    """One SMTP transaction on a fresh connection: the data reply (a failed Reply on surprise)."""
    try:
        c = BytesClient(port, timeout=20)
        r = c.cmd("EHLO client.test")
        assert r.code == 250, r
        r = c.cmd("MAIL FROM:<%s>%s" % (sender, params) if isinstance(sender, str) else
                  b"MAIL FROM:<" + sender + b">" + params.encode())
        assert r.code == 250, r
        for a in rcpts:
            r = c.cmd("RCPT TO:<%s>" % a)
            assert r.code == 250, r
        r = c.cmd("DATA")
        assert r.code == 354, r
        c.send(stuff(data))
        out = c.reply()
        c.cmd("QUIT")
        c.close()
        return out
    except (AssertionError, OSError, EOFError, ValueError) as e:
        return Reply(0, ["no reply: %r" % (e,)])


class BytesClient(Client):
    """A Client whose commands may be bytes (an address that is not UTF-8)."""

    def cmd(self, text):
        self.send(text + (b"\r\n" if isinstance(text, bytes) else "\r\n"))
        return self.reply()


def mail(subject, body_lines=3, extra_line=b""):
    """A CRLF message whose every byte is counted in size (it ends with CRLF)."""
    body = b"".join(b"line %d of the body, some words to have bytes\r\n" % i
                    for i in range(body_lines)) + extra_line
    return (b"From: Sender <sender@example.org>\r\nTo: rcpt@example.com\r\n"
            b"Subject: " + subject.encode() + b"\r\nMessage-ID: <" + os.urandom(6).hex().encode() +
            b"@example.org>\r\n\r\n" + body)


def mail_id(r):
    m = re.search(r"\bid=(\w+)", r.text)
    return m.group(1) if m else None


def http_get(path):
    """(status, content type, body text) of GET path on the metrics port."""
    try:
        with urllib.request.urlopen(BASE_URL + path, timeout=5) as resp:
            return resp.status, resp.headers.get("Content-Type", ""), resp.read().decode("utf-8")
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read().decode("utf-8", "replace")
    except (urllib.error.URLError, OSError) as e:
        return 0, "", repr(e)


METRIC_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"'
SAMPLE = re.compile(r"^(%s)(?:\{((?:%s)(?:,%s)*,?)?\})? (\S+)(?: -?\d+)?$" % (METRIC_NAME, LABEL,
                                                                            LABEL))
LABEL_RX = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"')


def parse_exposition(text):
    """({(name, frozenset(labels)): value}, [problems], {family: type})."""
    problems, samples, help_of, type_of = [], {}, {}, {}
    done_families, current = set(), None
    if not text.endswith("\n"):
        problems.append("the exposition does not end with a newline")
    for n, line in enumerate(text.split("\n")[:-1], 1):
        if line.startswith("#"):
            m = re.match(r"^# (HELP|TYPE) (%s) (.*)$" % METRIC_NAME, line)
            if m is None:
                if re.match(r"^# (HELP|TYPE)\b", line):
                    problems.append("line %d: malformed %r" % (n, line))
                continue
            kind, name, rest = m.groups()
            table = help_of if kind == "HELP" else type_of
            if name in table:
                problems.append("line %d: second # %s for %s" % (n, kind, name))
            if kind == "TYPE" and rest not in ("counter", "gauge", "histogram", "summary",
                                               "untyped"):
                problems.append("line %d: unknown type %r" % (n, rest))
            if kind == "HELP" and not rest.strip():
                problems.append("line %d: empty HELP for %s" % (n, name))
            table[name] = rest
            continue
        if not line.strip():
            problems.append("line %d: empty line" % n)
            continue
        m = SAMPLE.match(line)
        if m is None:
            problems.append("line %d: not `name{labels} value`: %r" % (n, line))
            continue
        name, labels, value = m.groups()
        try:
            value = float(value)
        except ValueError:
            problems.append("line %d: value %r is not a float" % (n, value))
            continue
        fam = name
        if name not in type_of:
            for suffix in ("_bucket", "_sum", "_count"):
                if name.endswith(suffix) and type_of.get(name[:-len(suffix)]) in ("histogram",
                                                                                  "summary"):
                    fam = name[:-len(suffix)]
        if fam not in type_of or fam not in help_of:
            problems.append("line %d: %s has no # HELP and # TYPE before it" % (n, name))
        if fam != current:
            if fam in done_families:
                problems.append("line %d: samples of %s are not in one group" % (n, fam))
            if current is not None:
                done_families.add(current)
            current = fam
        lab = frozenset(LABEL_RX.findall(labels or ""))
        if (name, lab) in samples:
            problems.append("line %d: series %s%s twice" % (n, name, sorted(lab)))
        samples[(name, lab)] = value
    for fam in type_of:
        if fam not in help_of:
            problems.append("# TYPE %s without # HELP" % fam)
    return samples, problems, type_of


def histogram_problems(samples, type_of):
    """Cumulative buckets, le ascending, last +Inf == _count, for every histogram series."""
    problems, checked = [], 0
    for fam, typ in type_of.items():
        if typ != "histogram":
            continue
        series = {}
        for (name, lab), v in samples.items():
            if name == fam + "_bucket":
                d = dict(lab)
                le = d.pop("le", None)
                if le is None:
                    problems.append("%s bucket without le: %s" % (fam, sorted(lab)))
                    continue
                series.setdefault(frozenset(d.items()), []).append((float(le), v, le))
        for key, buckets in series.items():
            checked += 1
            buckets.sort()
            values = [v for _, v, _ in buckets]
            if any(b < a for a, b in zip(values, values[1:])):
                problems.append("%s%s buckets not cumulative: %s" % (fam, sorted(key), buckets))
            if buckets[-1][2] != "+Inf":
                problems.append("%s%s has no le=\"+Inf\" bucket" % (fam, sorted(key)))
            count = samples.get((fam + "_count", key))
            if count is None or (fam + "_sum", key) not in samples:
                problems.append("%s%s lacks _count or _sum" % (fam, sorted(key)))
            elif buckets[-1][1] != count:
                problems.append("%s%s +Inf %s != _count %s" % (fam, sorted(key), buckets[-1][1],
                                                               count))
    return problems, checked


def scrape(quiet=False):
    """The parsed exposition, or an empty dict (with a failed test unless quiet)."""
    status, ctype, text = http_get("/metrics")
    if status != 200 and not quiet:
        t.ok(False, "GET /metrics answers", "status %r: %s" % (status, text[:500]))
    if status != 200:
        return {}
    samples, _, _ = parse_exposition(text)
    return samples


def val(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())))


def delta(before, after, name, **labels):
    a, b = val(before, name, **labels), val(after, name, **labels)
    return None if a is None or b is None else b - a


def postern(*args, timeout=20):
    p = subprocess.run([POSTERN] + list(args), capture_output=True, timeout=timeout)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def status_table(text):
    """{listener: {column: int}} from `postern status`."""
    rows, cols = {}, None
    for line in text.splitlines():
        words = line.split()
        if words[:3] == ["listener", "busy", "idle"]:
            cols = words[1:]
        elif cols and len(words) == len(cols) + 1 and all(w.isdigit() for w in words[1:]):
            rows[words[0]] = dict(zip(cols, (int(w) for w in words[1:])))
    return rows


def workers_settled(samples=None):
    s = samples if samples is not None else scrape(quiet=True)
    for name, n in WORKERS.items():
        busy = val(s, "postern_workers", listener=name, state="busy")
        idle = val(s, "postern_workers", listener=name, state="idle")
        if busy is None or idle is None or busy + idle != n:
            return None
    return s


# ---------------------------------------------------------------- the exposition itself
status, ctype, text = http_get("/metrics")
t.eq(status, 200, "GET /metrics: 200 from urllib")
t.match(r"^text/plain; version=0\.0\.4", ctype, "GET /metrics: Content-Type text/plain; version=0.0.4")
samples0, problems, types0 = parse_exposition(text)
t.ok(not problems, "the exposition parses: name{labels} float lines, HELP and TYPE for each family",
     "\n".join(problems[:30]))
hproblems, nhist = histogram_problems(samples0, types0)
t.ok(nhist >= 10 and not hproblems,
     "every histogram series (%d): cumulative buckets, le ascending, +Inf == _count" % nhist,
     "\n".join(hproblems[:30]))
for fam in ("postern_messages_total", "postern_recipients_total", "postern_results_total",
            "postern_bytes_total", "postern_stage_seconds", "postern_workers",
            "postern_reloads_total", "postern_last_reload_success", "postern_uptime_seconds"):
    t.ok(fam in types0, "family %s is exposed" % fam, "types: %r" % sorted(types0))
t.eq(types0.get("postern_stage_seconds"), "histogram", "postern_stage_seconds is a histogram")
t.eq(types0.get("postern_messages_total"), "counter", "postern_messages_total is a counter")
t.eq(val(samples0, "postern_last_reload_success"), -1.0,
     "postern_last_reload_success is -1 before any reload")

status404, _, _ = http_get("/other")
t.eq(status404, 404, "GET /other: 404")
status_root = http_get("/metrics?x=1")[0]
t.eq(status_root, 200, "GET /metrics?x=1: 200")

settled = wait_until(workers_settled, 10, 0.2)
t.ok(settled, "postern_workers busy+idle equals workers for each listener (%r)" % WORKERS,
     "samples: %r" % {k: v for k, v in (scrape() or {}).items() if k[0] == "postern_workers"})

# ---------------------------------------------------------------- counters move by what was sent
before = scrape()
sent = {
    "filt": [  # (subject, recipients, expected verdict, expected reply class)
        ("hello pass one", ["a@example.com", "b@example.com"], "pass", 2),
        ("hello pass two", ["c@example.com"], "pass", 2),
        ("please REJECTME now", ["d@example.com"], "reject", 5),
        ("please QUARANTINEME now", ["e@example.com"], "quarantine", 2),
        ("hello pass three", ["f@example.com"], "pass", 2),
    ],
    "plain": [
        ("to the deferring sink", ["g@example.com"], "pass", 4),
        ("to the deferring sink again", ["h@example.com", "i@example.com"], "pass", 4),
    ],
}
sizes = {"filt": 0, "plain": 0}
replies_ok = []
for n, (lname, msgs) in enumerate(sorted(sent.items())):
    for i, (subject, rcpts, verdict, cls) in enumerate(msgs):
        data = mail(subject, body_lines=5 + 37 * i + n,
                    extra_line=b".a line that is dot-stuffed on the wire\r\n" if i == 1 else b"")
        sizes[lname] += len(data)
        r = transact(pd.ports[lname], rcpts, data)
        replies_ok.append(r.cls() == cls or (lname, subject, r))
t.ok(all(x is True for x in replies_ok), "the 7 messages got 2xx (pass, quarantine), 5xx (reject), "
     "4xx (451 from the sink)", [x for x in replies_ok if x is not True])

after = wait_until(lambda: (lambda s: s if delta(before, s, "postern_messages_total",
                                                 listener="plain") == 2 else None)(scrape(True)), 10)
after = after or scrape()
t.eq(delta(before, after, "postern_messages_total", listener="filt"), 5,
     "postern_messages_total{filt} +5")
t.eq(delta(before, after, "postern_messages_total", listener="plain"), 2,
     "postern_messages_total{plain} +2")
t.eq(delta(before, after, "postern_bytes_total", listener="filt"), sizes["filt"],
     "postern_bytes_total{filt} + the unstuffed bytes sent (%d)" % sizes["filt"])
t.eq(delta(before, after, "postern_bytes_total", listener="plain"), sizes["plain"],
     "postern_bytes_total{plain} + the bytes sent (%d)" % sizes["plain"])
want_rcpts = {"filt": {"pass": 4, "discard": 0, "quarantine": 1, "reject": 1, "tempfail": 0},
              "plain": {"pass": 3, "discard": 0, "quarantine": 0, "reject": 0, "tempfail": 0}}
for lname, want in sorted(want_rcpts.items()):
    got = {v: delta(before, after, "postern_recipients_total", listener=lname, verdict=v)
           for v in want}
    t.eq(got, want, "postern_recipients_total{%s} by verdict moved by the recipients sent" % lname)
want_results = {"filt": {"passed": 4, "rejected": 1, "deferred": 0, "partial": 0},
                "plain": {"passed": 0, "rejected": 0, "deferred": 2, "partial": 0}}
for lname, want in sorted(want_results.items()):
    got = {v: delta(before, after, "postern_results_total", listener=lname, result=v)
           for v in want}
    t.eq(got, want, "postern_results_total{%s}: passed/rejected/deferred as sent" % lname)
t.eq(delta(before, after, "postern_stage_seconds_count", listener="filt", stage="receive"), 5,
     "postern_stage_seconds_count{filt,receive} +5")
t.eq(delta(before, after, "postern_stage_seconds_count", listener="filt", stage="policy"), 5,
     "postern_stage_seconds_count{filt,policy} +5")
d = delta(before, after, "postern_stage_seconds_count", listener="filt", stage="reinject")
t.ok(d is not None and 3 <= d <= 5, "postern_stage_seconds_count{filt,reinject} moved (>= the 3 "
     "passes)", "delta %r" % d)
t.eq(delta(before, after, "postern_stage_seconds_count", listener="plain", stage="receive"), 2,
     "postern_stage_seconds_count{plain,receive} +2")
t.eq(delta(before, after, "postern_stage_seconds_count", listener="plain", stage="policy"), 0,
     "postern_stage_seconds_count{plain,policy} +0 (no policy)")
t.eq(delta(before, after, "postern_stage_seconds_count", listener="plain", stage="reinject"), 2,
     "postern_stage_seconds_count{plain,reinject} +2")
d = delta(before, after, "postern_stage_seconds_sum", listener="filt", stage="receive")
t.ok(d is not None and d > 0, "postern_stage_seconds_sum{filt,receive} grew", "delta %r" % d)
_, problems, types1 = parse_exposition(http_get("/metrics")[2])
hproblems, _ = histogram_problems(after, types1)
t.ok(not problems and not hproblems, "after traffic the exposition still parses, histograms "
     "consistent", "\n".join((problems + hproblems)[:30]))
t.ok(wait_until(workers_settled, 10, 0.2), "after traffic postern_workers busy+idle == workers")

# ---------------------------------------------------------------- postern status
rc, out, err = postern("-c", CONF, "status")
t.eq(rc, 0, "postern -c CONF status: exit 0")
rows = status_table(out)
want_status = {"filt": {"messages": 5, "pass": 4, "quarant": 1, "reject": 1, "tempfail": 0,
                        "deferred": 0},
               "plain": {"messages": 2, "pass": 3, "quarant": 0, "reject": 0, "tempfail": 0,
                         "deferred": 2}}
for lname, want in sorted(want_status.items()):
    row = rows.get(lname, {})
    t.eq({k: row.get(k) for k in want}, want, "postern status: %s counts as sent" % lname)
    t.eq(row.get("busy", -99) + row.get("idle", -99), WORKERS[lname],
         "postern status: %s busy+idle == workers (%d)" % (lname, WORKERS[lname]))
t.match(r"(?m)^reloads: 0 done, 0 refused; last: none$", out,
        "postern status before any reload: 0 done, 0 refused, last none")

# ---------------------------------------------------------------- reloads
def wait_reloads(result, want):
    return wait_until(lambda: (lambda s: s if val(s, "postern_reloads_total", result=result) == want
                               else None)(scrape(True)), 15, 0.1)


ok0 = val(after, "postern_reloads_total", result="ok") or 0
failed0 = val(after, "postern_reloads_total", result="failed") or 0
pd.signal(signal.SIGHUP)
s = wait_reloads("ok", ok0 + 1)
t.ok(s, "SIGHUP: postern_reloads_total{ok} +1", "ok=%r" % val(scrape(), "postern_reloads_total",
                                                               result="ok"))
s = s or scrape()
t.eq(val(s, "postern_last_reload_success"), 1.0, "SIGHUP: postern_last_reload_success 1")
t.eq(val(s, "postern_messages_total", listener="filt"),
     val(after, "postern_messages_total", listener="filt"), "the counters survive a reload")

rc, out, err = postern("-c", CONF, "reload")
t.ok(rc == 0 and out.startswith("ok"), "postern -c CONF reload: exit 0, answer ok",
     "rc %r out %r err %r" % (rc, out, err))
s = wait_reloads("ok", ok0 + 2)
t.ok(s, "postern reload: postern_reloads_total{ok} +1 more", "ok=%r" %
     val(scrape(), "postern_reloads_total", result="ok"))
s = s or scrape()
t.eq(val(s, "postern_last_reload_success"), 1.0, "postern reload: postern_last_reload_success 1")
t.eq(val(s, "postern_reloads_total", result="failed"), failed0, "no failed reload yet")
t.ok(wait_until(workers_settled, 15, 0.2), "after two reloads postern_workers busy+idle == workers "
     "(the old generation gone)")
rc, out, err = postern("-c", CONF, "status")
t.match(r"(?m)^reloads: 2 done, 0 refused; last: ok, \d+s ago$", out,
        "postern status after the reloads: 2 done, last ok")
rows = status_table(out)
t.ok(all(rows.get(n, {}).get("busy", -99) + rows.get(n, {}).get("idle", -99) == w
         for n, w in WORKERS.items()) and rows.get("filt", {}).get("messages") == 5,
     "postern status after the reloads: workers and counts kept", out)

mark = len(pd.log())
with open(CONF, "w") as f:
    f.write(GOOD_CONF + "this is { not a valid config\n")
pd.signal(signal.SIGHUP)
s = wait_reloads("failed", failed0 + 1)
t.ok(s, "broken config + SIGHUP: postern_reloads_total{failed} +1",
     "failed=%r" % val(scrape(), "postern_reloads_total", result="failed"))
s = s or scrape()
t.eq(val(s, "postern_last_reload_success"), 0.0, "broken config: postern_last_reload_success 0")
t.eq(val(s, "postern_reloads_total", result="ok"), ok0 + 2, "broken config: {ok} unchanged")
t.ok(pd.wait_log(r"reload failed", 5, mark), "broken config: the log says the reload failed")
rc, out, err = postern("-c", CONF, "reload")
t.ok(rc == 1 and "'reload' not sent: the configuration naming posternd's control_socket does not "
     "load; a running posternd keeps its own" in err,
     "broken config: postern reload exits 1, says nothing was sent and why", err)
with open(CONF, "w") as f:
    f.write(GOOD_CONF)
# postern reads the control_socket from the config, so ask with the good one
rc, out, err = postern("-c", CONF, "status")
t.match(r"(?m)^reloads: 2 done, 1 refused; last: FAILED", out,
        "postern status after the broken reload: 1 refused, last FAILED")
t.eq(status_table(out).get("filt", {}).get("messages"), 5,
     "the counters survive a failed reload")
pd.signal(signal.SIGHUP)
s = wait_reloads("ok", ok0 + 3)
t.ok(s and val(s, "postern_last_reload_success") == 1.0,
     "config restored + SIGHUP: {ok} +1 and postern_last_reload_success 1 again")
t.ok(pd.proc.poll() is None, "posternd still runs after the failed reload")

# ---------------------------------------------------------------- postern status, nobody there
def cli_config(control_socket):
    path = os.path.join(WS, "cli-%d.conf" % free_port())
    with open(path, "w") as f:
        f.write('spool_dir = "%s"\ncontrol_socket = "%s"\npolicy_dir = "%s"\n'
                'listener "x" {\n  listen = "127.0.0.1:%d",\n  forward = "127.0.0.1:%d"\n}\n'
                % (os.path.join(WS, "spool"), control_socket, POLICY_DIR, free_port(),
                   ok_sink.port))
    return path


stale = os.path.join(WS, "stale-%d.sock" % free_port())
s_ = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s_.bind(stale)
s_.close()  # the file stays, nobody listens
for what, path in (("a stale socket file", stale),
                   ("a missing path", os.path.join(WS, "nothing-here.sock"))):
    start = time.monotonic()
    rc, out, err = postern("-c", cli_config(path), "status")
    t.eq(rc, 1, "postern status, control_socket is %s: exit 1" % what)
    t.ok("cannot reach posternd at %s" % path in err and time.monotonic() - start < 10,
         "postern status, control_socket is %s: a clear message naming it" % what,
         "stderr %r out %r" % (err, out))

# ---------------------------------------------------------------- metrics.listen must be loopback
def metrics_conf(addr):
    return ('spool_dir = "%s"\ncontrol_socket = "%s"\nmetrics = { listen = "%s" }\n'
            'listener "x" {\n  listen = "127.0.0.1:%d",\n  forward = "127.0.0.1:%d"\n}\n'
            % (os.path.join(WS, "spool"), os.path.join(WS, "cc.sock"), addr, free_port(),
               ok_sink.port))


for addr in ("0.0.0.0:9724", "192.0.2.1:9724", "[::]:9724"):
    rc, out, _ = check_config(metrics_conf(addr))
    t.ok(rc != 0 and "metrics.listen" in out,
         "posternd -t refuses metrics.listen = %s naming the key" % addr, "rc %r: %s" % (rc, out))
for addr in ("127.0.0.1:%d" % free_port(), "[::1]:%d" % free_port()):
    rc, out, _ = check_config(metrics_conf(addr))
    t.eq(rc, 0, "posternd -t accepts metrics.listen = %s" % addr)

# ---------------------------------------------------------------- text log: escaped summary
r = transact(pd.ports["filt"], ["j@example.com"], mail("a CTRLHIT message"),
             sender='"we\\"ird\\\\one"@example.org')
mid = mail_id(r)
t.ok(r.code == 250 and mid, "text mode: a message with a control-byte rule and a quoted sender "
     "passes", r)
with open(pd.logpath, "rb") as f:
    raw = f.read()
text_lines = [ln for ln in raw.split(b"\n") if (b"id=%s " % (mid or "?").encode()) in ln
              and b"msg listener=" in ln]
t.eq(len(text_lines), 1, "text mode: one summary line for the message")
line = text_lines[0] if text_lines else b""
t.ok(b"\x1b" not in raw, "text mode: no raw ESC anywhere in the log")
t.ok(b"\r" not in raw, "text mode: no raw CR anywhere in the log")
t.ok(not any(ln.startswith(b"injected:") for ln in raw.split(b"\n")),
     "text mode: the rule name's LF does not start a log line of its own")
t.ok(b"hits=ctl\\x0d\\x0ainjected: fake\\x1b[31mred" in line,
     "text mode: the rule name's CR, LF, ESC are escaped as \\xNN", line)
t.ok(b"from=<\\x22we\\x5c\\x22ird\\x5c\\x5cone\\x22@example.org>" in line,
     "text mode: the sender's quote and backslash are escaped", line)

# ---------------------------------------------------------------- log_format = "json"
json_sink = Sink(name="json")
jd = Posternd({"jfilt": {"policy": "ops.lua", "forward": "127.0.0.1:%d" % json_sink.port,
                         "workers": 1},
               "jlmtp": {"policy": "ops.lua", "forward": "127.0.0.1:%d" % json_sink.port,
                         "workers": 1, "protocol": "lmtp"}},
              {"log_format": "json", "spool_dir": os.path.join(WS, "spool-json"),
               "quarantine": {"dir": os.path.join(WS, "quarantine-json")}})
JPORT = jd.ports["jfilt"]


def utf8_or_latin1(b):
    """What esc_json promises: valid UTF-8 as is, any other byte as U+0000+byte."""
    return b.decode("utf-8", "spec-latin1")


def _latin1_errors(e):
    return "".join(chr(x) for x in e.object[e.start:e.end]), e.end


codecs.register_error("spec-latin1", _latin1_errors)

cases = [  # (name, sender bytes, MAIL parameters, subject)
    ("a plain message", b"plain@example.org", "", "hello"),
    ("a quote in the sender", b'"quo\\"te"@example.org', "", "hello"),
    ("a backslash in the sender", b'"back\\\\slash"@example.org', "", "hello"),
    ("a UTF-8 sender with SMTPUTF8", "用户.élan@例子.example".encode(), " SMTPUTF8", "hello"),
    ("a Latin-1 byte in the sender", b"caf\xe9@example.org", "", "hello"),
    ("a lead byte 0xFF before continuation bytes", b"x\xff\x80\x80y@example.org", "", "hello"),
    ("an encoded surrogate (ED A0 80)", b"s\xed\xa0\x80t@example.org", "", "hello"),
    ("an overlong encoding (E0 80 AF)", b"o\xe0\x80\xafv@example.org", "", "hello"),
    ("a rejected message", b"rej@example.org", "", "REJECTME please"),
    ("a quarantined message", b"q@example.org", "", "QUARANTINEME please"),
    ("a rule name with CR LF ESC", b"ctl@example.org", "", "CTRLHIT"),
]
results = []
for name, sender, params, subject in cases:
    data = mail(subject)
    rcpts = ["one@example.com", "two@example.com"]
    r = transact(JPORT, rcpts, data, sender=sender, params=params)
    results.append((name, sender, data, rcpts, r))
many = ["subscriber-%03d@lists.example.com" % i for i in range(300)]
many_data = mail("to a big list")
many_r = transact(JPORT, many, many_data, sender=b"list-owner@example.org")

wait_until(lambda: jd.log().count('"event":"msg"') >= len(cases) + 1, 10)
time.sleep(0.3)
with open(jd.logpath, "rb") as f:
    jraw = f.read()
objects, bad, bad_lines = [], [], []
for ln in jraw.split(b"\n"):
    if not ln:
        continue
    try:
        o = json.loads(ln.decode("utf-8"))  # strict: JSON text is UTF-8 (RFC 8259 8.1)
        if not isinstance(o, dict):
            raise ValueError("not an object")
        objects.append(o)
    except (UnicodeDecodeError, ValueError) as e:
        bad.append("%s: %r" % (e.__class__.__name__, ln[:300]))
        bad_lines.append(ln)
t.ok(objects and not bad, "json log: every line (%d) is valid UTF-8 and a JSON object"
     % (len(objects) + len(bad)), "\n".join(bad[:10]))
missing = [o for o in objects if not (isinstance(o.get("time"), str) and o.get("prog") == "posternd"
                                      and isinstance(o.get("pid"), int) and
                                      o.get("level") in ("debug", "info", "warning", "error",
                                                         "fatal", "panic"))]
t.ok(objects and not missing, "json log: every object has time, prog, pid, level",
     "\n".join(repr(o)[:300] for o in missing[:5]))
t.ok(all(re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", o.get("time", "")) for o in objects),
     "json log: time is ISO 8601 UTC with milliseconds")
summaries = {o.get("id"): o for o in objects if o.get("event") == "msg"}
# a line that is not JSON may still hold a summary: find its id to say so
broken_ids = {m.decode() for ln in bad_lines for m in re.findall(rb'"event":"msg".*?"id":"(\w+)"', ln)}

FIELDS = ("event", "listener", "id", "client", "from", "to", "size", "verdict", "result", "reply",
          "elapsed_ms")
want_verdict = {"a rejected message": ("reject", "rejected"),
                "a quarantined message": ("quarantine", "passed")}
for name, sender, data, rcpts, r in results:
    mid = mail_id(r)
    o = summaries.get(mid)
    if not t.ok(r.code in (250, 550) and o is not None, "json: %s has a summary object" % name,
                "reply %r, id %r, summary in a line that is not JSON: %r" %
                (r, mid, mid in broken_ids)):
        continue
    want_v, want_res = want_verdict.get(name, ("pass", "passed"))
    got = {k: o.get(k) for k in FIELDS}
    want = {"event": "msg", "listener": "jfilt", "id": mid, "client": "127.0.0.1",
            "from": utf8_or_latin1(sender), "to": rcpts, "size": len(data), "verdict": want_v,
            "result": want_res, "reply": r.lines[0], "elapsed_ms": got["elapsed_ms"]}
    t.eq(got, want, "json: %s: the summary's fields and the sender decoded exactly" % name)
    t.ok(isinstance(o.get("elapsed_ms"), int) and o["elapsed_ms"] >= 0 and
         isinstance(o.get("score"), (int, float)) and isinstance(o.get("hits"), list),
         "json: %s: elapsed_ms an integer, score and hits present (a policy ran)" % name, repr(o))
    if name == "a rule name with CR LF ESC":
        t.eq(o.get("hits"), ["ctl\r\ninjected: fake\x1b[31mred"],
             "json: the rule name with CR LF ESC decodes exactly")
    if name == "a quarantined message":
        t.ok(isinstance(o.get("quarantine"), str) and mid in o.get("quarantine", ""),
             "json: the quarantined message names its quarantine file", repr(o))
t.ok(b"\x1b" not in jraw and b"\r" not in jraw, "json log: no raw ESC or CR in the log")

mid = mail_id(many_r)
o = summaries.get(mid)
t.ok(many_r.code == 250 and o is not None,
     "json: a message to 300 recipients has a summary that is one valid JSON object",
     "reply %r; summary line present but not JSON: %r" % (many_r, mid in broken_ids))
if o is not None:
    t.eq((o.get("to"), o.get("result"), o.get("size")), (many, "passed", len(many_data)),
         "json: the 300-recipient summary lists them all, result and size")
# every 250 but the quarantined one was delivered, plus the 300-recipient message
t.eq(json_sink.count(), sum(1 for c in results if c[4].code == 250) - 1 + (many_r.code == 250),
     "json: the passed messages reached the sink (the quarantined one did not)")

# result=partial: the text line's refused=<...> is the JSON object's "refused" list
c = Client(jd.ports["jlmtp"])
split = send_message(c, "split@example.org", ["yes@example.com", "no@example.com"],
                     message("SPLITME json"), hello="LHLO client.test", lmtp=True)
c.close()
split_id = mail_id(split[0])
o = None
if wait_until(lambda: split_id.encode() in open(jd.logpath, "rb").read(), 10):
    for ln in open(jd.logpath, "rb").read().splitlines():
        try:
            x = json.loads(ln.decode("utf-8"))
        except ValueError:
            continue
        if x.get("event") == "msg" and x.get("id") == split_id:
            o = x
t.eq([r.code for r in split], [250, 550], "json, LMTP: one recipient passes, one is rejected")
t.eq((o or {}).get("result"), "partial", "json: the split message's result is partial", repr(o))
t.eq((o or {}).get("refused"), ["no@example.com"],
     "json: a partial result lists the refused recipients, as the text line's refused=")

rc = jd.stop()
t.eq(rc, 0, "json posternd stops cleanly")
rc = pd.stop()
t.eq(rc, 0, "posternd stops cleanly")
t.done()
