"""`postern postfix-config` prints a Postfix recipe that works as printed.

The world of this spec, all on 127.0.0.1, every port a free one:

    posternd: external (SMTP)  --forward--> primary Postfix, reinjection REINJECT1
              outgoing (SMTP)  --forward--> primary Postfix, reinjection REINJECT1
              secondary (LMTP) --forward--> second Postfix, reinjection REINJECT2

    client --> primary front smtpd (no -o of its own: main.cf's content_filter applies)
    user   --> primary "submission" smtpd (the spec's service line + the printed -o line)
    client --> second instance's front smtpd (main.cf's content_filter of that instance)
    both Postfix instances relay what they deliver to the sink (relayhost).

`postern -c POSTERND_CONF postfix-config` is run once; its output is cut at its
section headings ("# main.cf...", "# master.cf...") and every line of it is
appended, unchanged, to the main.cf or master.cf its heading names: the primary
instance's, the submission service's -o lines under the spec's submission-like
smtpd, and the second instance's. Nothing else configures the filter: the
spec's own lines are the instance skeleton of postfix.py (no content filter, no
filter transport, no reinjection service), the two front smtpds and the
submission service line.

What it pins:
  * the command exits 0; its header names the postern.conf it read; the ports
    and the process limits come from that configuration; every line printed is
    applied to some file; --main and --master print exactly the main.cf and
    master.cf parts of the whole; an unknown --inbound name fails with exit 1;
  * `postconf -n` and `postconf -M` accept the files without a warning (no unknown
    or unused parameter), `postfix check` passes, and `postconf -P` shows the
    reinjection services' content_filter empty and the submission service's set;
  * inbound mail (front smtpd) goes through postern listener "external", mail
    from the submission service through "outgoing", the second instance's mail
    through "secondary" over LMTP: posternd's summary line names that listener,
    result=passed, queued_as the reinjection smtpd's queue id, and the maillog
    shows the front queue id sent to that listener's port;
  * XFORWARD works both ways: postern's Received: names the original client's
    HELO (sent by the printed scan transport), the reinjection smtpd logs
    orig_queue_id= and orig_client= (authorised by the printed
    smtpd_authorized_xforward_hosts), and the sink sees the original HELO;
  * no loop: each message reaches the sink exactly once with exactly one
    postern Received:, posternd logs exactly one summary line per message, and
    the reinjection queue id is delivered to the sink, never to postern; a
    bounce Postfix writes after postern (the sink refuses a recipient) reaches
    the sink without passing postern, although main.cf's content_filter is global;
  * in the end both queues are empty.

Needs root and Postfix (skipped otherwise). Every wait is bounded.
"""
import os
import re
import subprocess

import harness
import postfix
from harness import POSTERN, Client, Posternd, Reply, Sink, stuff, t

why = postfix.unavailable()
if why:
    harness.skip_all(why)

DELIVERY_WAIT = 60  # seconds; Postfix usually needs one or two


# ---------------------------------------------------------------- helpers
def run(argv, timeout=30, env=None):
    """(exit status, stdout, stderr) of a command, bounded."""
    try:
        p = subprocess.run(argv, capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL,
                           env=env)
    except subprocess.TimeoutExpired:
        return 124, "", "%s: timed out after %ss" % (argv[0], timeout)
    except OSError as e:
        return 127, "", "%s: %s" % (argv[0], e)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def postfix_config(*args):
    return run([POSTERN, "-c", pd.conf, "postfix-config"] + list(args))


def sections(text):
    """(header lines, [(heading, lines)]) of postfix-config's output: a section starts at a
    comment line beginning "# main.cf" or "# master.cf" and its lines include the heading."""
    header, out = [], []
    for line in text.splitlines():
        if line.startswith("# main.cf") or line.startswith("# master.cf"):
            out.append((line, [line]))
        elif out:
            out[-1][1].append(line)
        else:
            header.append(line)
    return header, out


def nonblank(lines):
    return [x for x in lines if x.strip()]


def settings(lines):
    """The non-comment, non-blank lines: what Postfix reads."""
    return [x for x in lines if x.strip() and not x.lstrip().startswith("#")]


class RecipeInstance(postfix.Postfix):
    """A postfix.py instance whose main.cf and master.cf end with lines given verbatim."""

    def __init__(self, *args, main_lines=(), master_lines=(), **kw):
        super().__init__(*args, **kw)
        self.main_lines = list(main_lines)
        self.master_lines = list(master_lines)

    def write(self):
        super().write()
        for name, lines in (("main.cf", self.main_lines), ("master.cf", self.master_lines)):
            with open(os.path.join(self.config_dir, name), "a") as f:
                f.write("".join(line + "\n" for line in lines))

    def raw_service(self, text, port, name):
        """A master.cf entry written as it is (its first line names 127.0.0.1:port)."""
        self.services.append(text)
        self.ports[name] = port

    def postconf(self, *args):
        return run([postfix.POSTCONF, "-c", self.config_dir] + list(args), env=self.env())


class Refused(Exception):
    pass


def expect(reply, code):
    if reply.code != code:
        raise Refused(reply.text)
    return reply


def submit(port, helo, sender, rcpt, data):
    """One SMTP transaction on a Postfix smtpd; (final reply, queue id or None)."""
    try:
        c = Client(port, timeout=60)
    except OSError as e:
        return Reply(0, ["connect: %s" % e]), None
    try:
        expect(c.greeting, 220)
        expect(c.cmd("EHLO " + helo), 250)
        expect(c.cmd("MAIL FROM:<%s>" % sender), 250)
        expect(c.cmd("RCPT TO:<%s>" % rcpt), 250)
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


def message(msgid, subject):
    return ("From: Sender <sender@example.org>\r\nTo: someone@example.com\r\n"
            "Subject: %s\r\nDate: Mon, 01 Jan 2024 12:00:00 +0000\r\nMessage-ID: <%s>\r\n"
            "MIME-Version: 1.0\r\n\r\nThrough the printed recipe.\r\n.dot line\r\n"
            % (subject, msgid)).encode()


def copies(msgid):
    """The sink's (envelope, bytes) of every message with this Message-ID in its own header."""
    tag = ("\r\nMessage-ID: <%s>\r\n" % msgid).encode()
    return [m for m in sink.messages() if tag in b"\r\n" + m[1].partition(b"\r\n\r\n")[0] + b"\r\n"]


def unfold(field):
    return re.sub(rb"\r\n[ \t]+", b" ", field).decode("utf-8", "replace")


def postern_received(data):
    head = data.partition(b"\r\n\r\n")[0]
    fields = re.split(rb"\r\n(?![ \t])", head)
    return [unfold(f) for f in fields if f.startswith(b"Received:") and b"(postern" in f]


# ---------------------------------------------------------------- the world
sink = Sink()
reinject1, reinject2 = harness.free_port(), harness.free_port()
pd = Posternd({"external": {"protocol": "smtp", "forward": "127.0.0.1:%d" % reinject1,
                            "workers": 3},
               "outgoing": {"protocol": "smtp", "forward": "127.0.0.1:%d" % reinject1,
                            "workers": 2},
               "secondary": {"protocol": "lmtp", "forward": "127.0.0.1:%d" % reinject2,
                             "workers": 2}})
ports = pd.ports

# ------------------------------------------------------------ 1. the printed recipe
status, out, err = postfix_config()
t.eq((status, err), (0, ""), "postern postfix-config exits 0 and says nothing on stderr")
if status != 0:
    t.bail("postern postfix-config failed: %s" % err)
header, secs = sections(out)
t.ok(any(os.path.realpath(pd.conf) in h for h in header),
     "the header names the postern.conf it was generated from", "\n".join(header))
t.ok(all(not x.strip() or x.startswith("#") for x in header), "the header is comments only",
     "\n".join(header))
by_heading = {h: lines for h, lines in secs}
main1 = by_heading.get("# main.cf", [])
master1 = by_heading.get("# master.cf: new services", [])
sub = next((lines for h, lines in secs if h.startswith("# master.cf") and
            "submission service" in h), [])
main2 = next((lines for h, lines in secs if
              h.startswith('# main.cf of the Postfix instance for listener "secondary"')), [])
master2 = next((lines for h, lines in secs if
                h.startswith('# master.cf of the Postfix instance for listener "secondary"')), [])
t.eq(len(secs), 5, "five sections: main.cf, submission -o lines, master.cf, and main.cf and "
     "master.cf of the second instance")
t.ok(all((main1, master1, sub, main2, master2)), "each section is there under its heading",
     "\n".join(h for h, _ in secs))
t.eq(header + main1 + sub + master1 + main2 + master2, out.splitlines(),
     "every printed line is applied below (nothing left out, nothing added)")

t.eq(settings(main1), ["content_filter = scan-external:[127.0.0.1]:%d" % ports["external"],
                       "receive_override_options = no_address_mappings"],
     "main.cf: content_filter to listener external's port, address mappings after the filter")
t.eq(settings(sub), ["  -o content_filter=scan-outgoing:[127.0.0.1]:%d" % ports["outgoing"]],
     "submission: one -o content_filter line to listener outgoing's port")
t.eq(settings(main2), ["content_filter = scan-secondary:inet:[127.0.0.1]:%d" % ports["secondary"],
                       "receive_override_options = no_address_mappings"],
     "second instance's main.cf: content_filter to the LMTP listener")
services1 = [x for x in settings(master1) if not x[0].isspace()]
services2 = [x for x in settings(master2) if not x[0].isspace()]
t.eq(services1, ["scan-external unix - - n - 3 smtp", "scan-outgoing unix - - n - 2 smtp",
                 "127.0.0.1:%d inet n - n - - smtpd" % reinject1],
     "master.cf: an smtp transport per listener (maxproc = workers) and one reinjection smtpd")
t.eq(services2, ["scan-secondary unix - - n - 2 lmtp",
                 "127.0.0.1:%d inet n - n - - smtpd" % reinject2],
     "second instance's master.cf: an lmtp transport and its own reinjection smtpd")
for name, lines, p in (("scan-external", master1, "smtp"), ("scan-secondary", master2, "lmtp")):
    text = "\n".join(settings(lines))
    t.ok(all(o in text for o in ("-o %s_send_xforward_command=yes" % p,
                                 "-o %s_dns_support_level=disabled" % p,
                                 "-o %s_data_done_timeout=1200" % p, "-o max_use=20")),
         "%s: XFORWARD on, no DNS, long data-done timeout, max_use (FILTER_README)" % name, text)
for port, lines in ((reinject1, master1), (reinject2, master2)):
    text = "\n".join(settings(lines))
    head = "127.0.0.1:%d inet" % port
    svc = text[text.index(head):] if head in text else ""
    t.ok(all(o in svc.split("\n") for o in (
        "  -o content_filter=",
        "  -o receive_override_options=no_unknown_recipient_checks,no_header_body_checks,no_milters",
        "  -o smtpd_recipient_restrictions=permit_mynetworks,reject",
        "  -o mynetworks=127.0.0.0/8",
        "  -o smtpd_authorized_xforward_hosts=127.0.0.0/8")),
        "reinjection %d: no content filter, no checks or milters, XFORWARD from loopback" % port,
        svc)

status, only_main, err = postfix_config("--main")
t.eq((status, nonblank(only_main.splitlines())), (0, nonblank(header + main1 + main2)),
     "--main prints the header and the main.cf parts only")
status, only_master, err = postfix_config("--master")
t.eq((status, nonblank(only_master.splitlines())), (0, nonblank(header + sub + master1 + master2)),
     "--master prints the header and the master.cf parts only")
status, _, err = postfix_config("--inbound", "nosuch")
t.ok(status == 1 and 'no listener "nosuch"' in err, "--inbound with an unknown listener: exit 1",
     "status %r, stderr %r" % (status, err))

# ------------------------------------------------------------ 2. the instances
# smtp_send_xforward_command=yes for the final smtp client too (a spec setting, not the
# recipe's): the sink then shows the client attributes the reinjection smtpd recorded.
spec_params = {"smtp_send_xforward_command": "yes"}
pf = RecipeInstance(relay_port=sink.port, params=spec_params, name="primary",
                    main_lines=main1, master_lines=master1)
front = harness.free_port()
pf.raw_service("127.0.0.1:%d inet n - n - - smtpd\n  -o syslog_name=postfix/front" % front,
               front, "front")
submission = harness.free_port()
# the submission-like service: the spec's service line, then the printed lines unchanged
pf.raw_service("127.0.0.1:%d inet n - n - - smtpd\n  -o syslog_name=postfix/submission\n%s"
               % (submission, "\n".join(sub)), submission, "submission")
pf.ports["reinject"] = reinject1

pf2 = RecipeInstance(relay_port=sink.port, params=spec_params, name="second",
                     hostname="mta2.test", main_lines=main2, master_lines=master2)
front2 = harness.free_port()
pf2.raw_service("127.0.0.1:%d inet n - n - - smtpd\n  -o syslog_name=postfix/front" % front2,
                front2, "front")
pf2.ports["reinject"] = reinject2

for inst, what in ((pf, "the primary instance"), (pf2, "the second instance")):
    ok, why = inst.start()
    if not t.ok(ok, "%s starts with the printed lines and listens on 127.0.0.1" % what):
        postfix.print_diag(what, why)
        postfix.print_diag("postfix-config output", out)
        t.bail("Postfix did not start")

try:
    # ------------------------------------------------------------ 3. Postfix accepts the files
    for inst, what in ((pf, "primary"), (pf2, "second")):
        s1, _, e1 = inst.postconf("-n")
        s2, _, e2 = inst.postconf("-M")
        t.ok(s1 == 0 and s2 == 0 and "warning" not in e1 + e2,
             "%s: postconf -n and -M read the files without a warning" % what, e1 + e2)
        s, o, e = run([postfix.POSTFIX, "-c", inst.config_dir, "check"], 60, inst.env())
        t.ok(s == 0 and "fatal" not in o + e, "%s: postfix check passes" % what, o + e)
    s, o, e = pf.postconf("-P", "127.0.0.1:%d/inet/content_filter" % reinject1,
                          "127.0.0.1:%d/inet/content_filter" % submission)
    t.eq(sorted(o.splitlines()), sorted(["127.0.0.1:%d/inet/content_filter =" % reinject1,
                                         "127.0.0.1:%d/inet/content_filter = scan-outgoing:"
                                         "[127.0.0.1]:%d" % (submission, ports["outgoing"])]),
         "postconf -P: the reinjection service clears content_filter, submission sets its own")
    s, o, e = pf2.postconf("-hP", "127.0.0.1:%d/inet/content_filter" % reinject2)
    t.eq(o.strip(), "", "postconf -P: the second instance's reinjection clears content_filter")

    # ------------------------------------------------------------ 4. mail through the recipe
    cases = [
        # what, instance, port, EHLO, sender, recipient, listener
        ("inbound", pf, front, "client.test", "sender@example.org", "in@example.com", "external"),
        ("outgoing", pf, submission, "user.test", "user@example.com", "out@example.net",
         "outgoing"),
        ("secondary", pf2, front2, "client2.test", "sender@example.org", "second@example.com",
         "secondary"),
    ]
    sent = []
    for what, inst, port, helo, sender, rcpt, listener in cases:
        msgid = "recipe-%s@example.org" % what
        r, qid = submit(port, helo, sender, rcpt, message(msgid, "recipe " + what))
        t.match(r"^250 2\.0\.0 Ok: queued as \w+", r.text, "%s: Postfix answers 250" % what)
        sent.append((what, inst, helo, sender, rcpt, listener, msgid, qid))

    for what, inst, helo, sender, rcpt, listener, msgid, front_qid in sent:
        found = harness.wait_until(lambda: copies(msgid), DELIVERY_WAIT, 0.2)
        t.ok(bool(found), "%s: the message reaches the sink" % what, inst.maillog()[-3000:])
        env, data = found[0] if found else ({}, b"")
        wait = DELIVERY_WAIT if found else 5  # the rest is diagnosis: do not wait a minute each
        t.eq([x["addr"] for x in env.get("rcpts", [])], [rcpt], "%s: envelope recipient" % what)
        ours = postern_received(data)
        t.eq(len(ours), 1, "%s: exactly one postern Received: field" % what)
        t.match(r"^Received: from %s \(\S+ \[127\.0\.0\.1\]\) by filter\.test \(postern, port %d\)"
                % (re.escape(helo), ports[listener]), ours[0] if ours else "",
                "%s: postern's Received: names the original HELO (XFORWARD from the scan "
                "transport) and listener %s's port" % (what, listener))
        t.eq(env.get("xforward", {}).get("HELO"), helo,
             "%s: the original HELO went on through postern's XFORWARD to Postfix" % what)
        m = pd.wait_log(r"msg listener=(\w+) id=\w+ client=\S+ from=<%s> to=<%s> .*" %
                        (re.escape(sender), re.escape(rcpt)), wait)
        line = m.group(0) if m else ""
        t.eq(m.group(1) if m else None, listener, "%s: posternd took it on listener %s"
             % (what, listener))
        t.match(r"result=passed queued_as=\w+", line, "%s: postern passed it and Postfix queued it"
                % what)
        q = re.search(r"queued_as=(\w+)", line)
        qid = q.group(1) if q else "?"
        t.ok(inst.wait_log(r"%s: to=<%s>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:%d, .*status=sent "
                           r"\(250 .*queued as %s\)" % (front_qid, re.escape(rcpt),
                                                        ports[listener], qid), wait)
             is not None, "%s: the maillog shows the front queue id sent to listener %s, which "
             "answered with the reinjection queue id" % (what, listener))
        t.ok(inst.wait_log(r"postfix/smtpd\[\d+\]: %s: client=.*orig_queue_id=%s, "
                           r"orig_client=\S+\[127\.0\.0\.1\]" % (qid, front_qid), wait) is not None,
             "%s: the reinjection smtpd accepted postern's XFORWARD (orig_queue_id, orig_client)"
             % what)
        t.ok(inst.wait_log(r"%s: to=<%s>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:%d, .*status=sent"
                           % (qid, re.escape(rcpt), sink.port), wait) is not None,
             "%s: the reinjected copy goes to the sink" % what)
        t.ok(re.search(r"%s: to=<[^>]*>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:(%s)," %
                       (qid, "|".join(str(p) for p in ports.values())), inst.maillog()) is None,
             "%s: the reinjected copy is never sent to postern again (no loop)" % what)

    # ------------------------------------------------------------ 5. Postfix's own mail
    # main.cf's content_filter is global: a bounce Postfix writes must not go to postern
    r, bounce_qid = submit(front, "client.test", "sender@example.org", "reject-me@example.com",
                           message("recipe-bounce@example.org", "recipe bounce"))
    t.match(r"^250 ", r.text, "bounce: Postfix accepts mail for a recipient the sink refuses")
    t.ok(pf.wait_log(r"to=<reject-me@example\.com>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:%d, "
                     r".*status=bounced" % sink.port, DELIVERY_WAIT) is not None,
         "bounce: after postern, Postfix bounces the recipient the sink refused")

    def report():
        return [m for m in sink.messages() if m[0].get("mail_from") == "" and
                b"reject-me@example.com" in m[1]]
    reports = harness.wait_until(report, DELIVERY_WAIT, 0.2)
    t.eq(len(reports or []), 1, "bounce: one non-delivery report reaches the sink")
    t.ok(reports and not postern_received(reports[0][1]),
         "bounce: the report did not go through postern (no postern Received: on it)")
    t.eq(re.findall(r"msg listener=\w+ id=\w+ client=\S+ from=<>", pd.log()), [],
         "bounce: posternd never saw a null-sender message")

    # ------------------------------------------------------------ 6. exactly once, queues empty
    for inst, what in ((pf, "primary"), (pf2, "second")):
        t.ok(harness.wait_until(inst.queue_empty, DELIVERY_WAIT, 0.5),
             "the %s instance's queue is empty" % what, inst.queue())
    for what, inst, helo, sender, rcpt, listener, msgid, front_qid in sent:
        t.eq(len(copies(msgid)), 1, "%s: exactly one copy at the sink" % what)
    t.eq(sink.count(), 4, "the sink has four messages in all (three, and the report)")
    t.eq(sorted(re.findall(r"msg listener=(\w+) id=", pd.log())),
         ["external", "external", "outgoing", "secondary"],
         "posternd logged one summary line per message, on the right listeners")
finally:
    if t.failed:
        postfix.print_diag("postfix-config output", out)
        postfix.print_diag("primary postfix", pf.diagnostics())
        postfix.print_diag("second postfix", pf2.diagnostics())
        postfix.print_diag("posternd log", pd.log())

pf.stop()
pf2.stop()
t.ok(not pf.running() and not pf2.running(), "postfix stop leaves no master process behind")
pd.stop()
t.eq(pd.spool_files(), [], "nothing left in posternd's spool directory")
t.done()
