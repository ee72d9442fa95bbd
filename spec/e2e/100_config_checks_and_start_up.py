"""The configuration is checked before anything starts, and start-up is safe.

Pins: `posternd -t` exits 0 on the bundled config and 1 on a broken one, and
every error names the file, the line and the key; a listener on a non-loopback
address without an explicit `allow` list is refused; the string library has
no pattern functions in a configuration (one call could hang a start or a
reload where no limit reaches it), and a policy that hangs in one such call
at load makes `posternd -t` exit 1 naming it; a client outside a
listener's `allow` list gets 554 5.7.1 at connect and a log line; started as
root, the workers run as the configured user; an existing spool_dir that is
not the user's and in use (root's 1777, or with a file in it) stops the start
with exit 1 and how to fix it, and keeps its owner and mode, while an empty
one (a tmpfs mounted for it, a postmaster's mkdir) is taken and made the
user's 0700; the directory of the control socket is given to the user only
when posternd made it or it is empty; `posternd -k` lists every key.
"""
import os
import pwd
import re
import subprocess

from harness import POSTERND, SRCDIR, Client, Posternd, Sink, check_config, t, workspace

# the bundled file, with the policies and the Lua library of the source tree
# (installed, they live in $(sysconfdir)/postern/policies and $(pkgdatadir)/lua)
rc, out, _ = check_config(open(os.path.join(SRCDIR, "etc", "postern.conf")).read() +
                          'policy_dir = "%s/policies"\nlua_dir = "%s/lua"\n' % (SRCDIR, SRCDIR))
t.eq(rc, 0, "the bundled etc/postern.conf is valid")
t.match(r"configuration is valid \(3 listener", out, "... with its three listeners")
t.match(r"listener external: policy .*external\.lua loads", out, "... and their shipped policies load")

L = 'listener "x" { listen = "127.0.0.1:%d", forward = "127.0.0.1:25" }\n'
cases = [
    ("unknown top-level key", 'spool_dri = "/tmp"\n' + L % 10024, r":1: unknown key 'spool_dri'"),
    ("wrong type", 'log_level = 3\n' + L % 10024, r":1: key 'log_level': expected a string"),
    ("bad enum value", 'log_level = "loud"\n' + L % 10024, r":1: key 'log_level': expected \"debug\""),
    ("unknown listener key", '\n\nlistener "x" { listen = "127.0.0.1:1", forward = "127.0.0.1:2", wrokers = 3 }\n',
     r":3: listener \"x\": unknown key 'wrokers'"),
    ("listener key on a line of its own",
     'listener "x" {\n  listen = "127.0.0.1:1",\n  forward = "127.0.0.1:2",\n  protocol = "uucp",\n}\n',
     r":4: listener \"x\": key 'protocol': expected \"smtp\" or \"lmtp\""),
    ("number out of bounds", 'listener "x" { listen = "127.0.0.1:1", forward = "127.0.0.1:2", workers = 0 }\n',
     r":1: listener \"x\": key 'workers': must be from 1 to"),
    ("bad protocol", 'listener "x" { listen = "127.0.0.1:1", forward = "127.0.0.1:2", protocol = "uucp" }\n',
     r"key 'protocol': expected \"smtp\" or \"lmtp\""),
    ("bad address", 'listener "x" { listen = "127.0.0.1", forward = "127.0.0.1:2" }\n',
     r"key 'listen': '127\.0\.0\.1'"),
    ("missing forward", '-- comment\nlistener "x" { listen = "127.0.0.1:1" }\n',
     r":2: listener \"x\": key 'forward' is required"),
    ("no listener at all", 'log_level = "info"\n', r"no listener declared"),
    ("Lua syntax error", 'log_level = "info\n', r":1: unfinished string"),
    ("endless loop", 'while true do end\n', r"takes too long"),
    # one call of a Lua pattern can backtrack for hours, out of the instruction hook's reach
    ("string.find with a pattern", 'local s = string.find(("a"):rep(40), ("a*"):rep(40) .. "b")\n' + L % 10024,
     r":1: attempt to call a nil value \(field 'find'\)"),
    ("a pattern method on a string", 'local s = ("a"):rep(40):match(("a*"):rep(40) .. "b")\n' + L % 10024,
     r":1: attempt to call a nil value \(method 'match'\)"),
    ("duplicate listen address", L % 10024 + 'listener "y" { listen = "127.0.0.1:10024", forward = "127.0.0.1:25" }\n',
     r":2: listener \"y\": key 'listen': 127\.0\.0\.1:10024 is already used"),
    ("the same listen address written another way", L % 10024 +
     'listener "y" { listen = "localhost:10024", forward = "127.0.0.1:25" }\n',
     r":2: listener \"y\": key 'listen': localhost:10024 is already used by listener \"x\""),
    ("an IPv4-mapped IPv6 form of a used address", L % 10024 +
     'listener "y" { listen = "[::ffff:127.0.0.1]:10024", forward = "127.0.0.1:25" }\n',
     r"is already used by listener \"x\""),
    ("0.0.0.0 on a port a listener has", L % 10024 +
     'listener "y" { listen = "0.0.0.0:10024", forward = "127.0.0.1:25", allow = { "127.0.0.1" } }\n',
     r"is already used by listener \"x\""),
    ("forward to the listener's own address", 'listener "x" { listen = "127.0.0.1:10024", '
     'forward = "localhost:10024" }\n', r":1: listener \"x\": key 'forward': localhost:10024 is the "
     r"listener's own address"),
    ("a listener name without { ... }", L % 10024 + 'listener "y"\n',
     r": listener \"y\" has no \{ \.\.\. \} after its name"),
    ("an empty allow list", 'listener "x" { listen = "127.0.0.1:1", forward = "127.0.0.1:2", allow = {} }\n',
     r"key 'allow': an empty list would let no client in"),
    ("allow given as a table with keys", 'listener "x" { listen = "127.0.0.1:1", forward = "127.0.0.1:2", '
     'allow = { lan = "10.0.0.0/8" } }\n', r"key 'allow': expected a list of networks"),
    ("local_domains given as a table with keys", 'local_domains = { a = "example.com" }\n' + L % 10024,
     r":1: key 'local_domains': expected a list of strings"),
    ("error({}) names the file", 'error({})\n' + L % 10024, r"check-\d+\.conf: an error without a text"),
    ("public address without allow", 'listener "pub" { listen = "192.0.2.1:10024", forward = "127.0.0.1:25" }\n',
     r"listener \"pub\": listens on 192\.0\.2\.1:10024, which is not a loopback address, without an explicit 'allow'"),
    ("bad allow entry", 'listener "x" { listen = "127.0.0.1:1", forward = "127.0.0.1:2", allow = { "10.0.0.0/33" } }\n',
     r"key 'allow': entry 1 is not a network"),
    ("os.execute is not there", 'os.execute("true")\n' + L % 10024, r"attempt to index a nil value"),
    # the host name goes into greetings and Received: lines as it is: no line breaks
    ("hostname with CR LF", 'hostname = "evil\\r\\n554 injected"\n' + L % 10024,
     r":1: key 'hostname': expected a string without control characters"),
    ("empty hostname", 'hostname = ""\n' + L % 10024, r":1: key 'hostname': expected a host name"),
    ("hostname with a space", 'hostname = "a b"\n' + L % 10024, r":1: key 'hostname': expected a host name"),
    ("a NUL inside a string", 'user = "a\\0b"\n' + L % 10024, r":1: key 'user': expected a string without NUL"),
    # the daemon started as root would stop on these: the check says so first
    ("a user that does not exist", 'user = "no-such-postern-user"\n' + L % 10024,
     r"key 'user': no such user 'no-such-postern-user'"),
    ("a group that does not exist", 'user = "nobody"\ngroup = "no-such-postern-group"\n' + L % 10024,
     r"key 'group': no such group 'no-such-postern-group'"),
]
for name, text, want in cases:
    rc, out, path = check_config(text)
    t.ok(rc == 1 and path in out, "%s: exit 1 naming the file" % name, "rc=%d %s" % (rc, out))
    t.match(want, out, "%s: the error says where and what" % name)

# -o sets a key, or one key of a section, on top of the file; anything else is refused
ov_conf = os.path.join(workspace(), "ov.conf")
with open(ov_conf, "w") as f:
    f.write('listener "x" { listen = "127.0.0.1:1", forward = "127.0.0.1:2" }\n')


def check_with(*opts):
    p = subprocess.run([POSTERND, "-t", "-c", ov_conf] + list(opts), capture_output=True,
                       text=True, timeout=30)
    return p.returncode, p.stdout + p.stderr


rc, out = check_with("-o", "log_level=warn", "-o", "quarantine.dir=/var/tmp/q", "-o", "max_header_size=2M")
t.eq(rc, 0, "-o key=value and -o section.key=value: valid", out)
rc, out = check_with("-o", "log_level=loud")
t.ok(rc == 1 and re.search(r"key 'log_level': expected \"debug\"", out), "-o with a bad value: exit 1 "
     "and the key's error", out)
for bad in ("a.b.c=1", "foo", "=3", "print(1)x=2"):
    rc, out = check_with("-o", bad)
    t.ok(rc == 1 and "-o %s: expected key=value or section.key=value" % bad in out,
         "-o %s: exit 1, saying which forms -o takes" % bad, out)
rc, out = check_with(*(["-o", "log_level=info"] * 65))
t.ok(rc == 2 and "at most 64 -o options" in out, "65 times -o: exit 2, saying the limit", out)

# A policy's own code runs at load too, where the count hook cannot reach one C
# call: the check loads the policies in a child under the workers' watchdog
# (2 * policy_timeout + 1 s) and reports which one hung, instead of hanging.
HANG_DIR = os.path.join(workspace(), "hang-policies")
os.makedirs(HANG_DIR, exist_ok=True)
with open(os.path.join(HANG_DIR, "hang.lua"), "w") as f:
    f.write('local P = require "postern"\n'
            'local stuck = string.find(("a"):rep(40), ("a*"):rep(40) .. "b")\n'
            'return P.policy {}\n')
hang_conf = os.path.join(workspace(), "hang.conf")
with open(hang_conf, "w") as f:
    f.write('policy_dir = "%s"\nlua_dir = "%s/lua"\npolicy_timeout = 1\n' % (HANG_DIR, SRCDIR) +
            'listener "x" { listen = "127.0.0.1:1", forward = "127.0.0.1:2", policy = "hang.lua" }\n')
try:
    p = subprocess.run([POSTERND, "-t", "-c", hang_conf], capture_output=True, text=True, timeout=30)
    rc, out = p.returncode, p.stdout + p.stderr
except subprocess.TimeoutExpired:
    rc, out = None, "posternd -t still running after 30 s"
t.eq(rc, 1, "a policy that hangs at load in one C call: posternd -t exits 1", out)
t.match(r"hang\.conf:4: listener \"x\": key 'policy': policy \S*hang\.lua: loading ran past 3 s "
        r"\(twice policy_timeout, plus one\) inside one C call", out, "... naming the policy and why")

rc, out, _ = check_config('listener "pub" { listen = "192.0.2.1:10024", forward = "127.0.0.1:25", '
                          'allow = { "192.0.2.0/24" } }\n')
t.eq(rc, 0, "a non-loopback listener with an explicit allow list is accepted")
if os.geteuid() == 0:
    # without 'user' the daemon started as root refuses to start; the check,
    # which may run as root for a daemon systemd starts as the user, warns
    t.match(r"warning: started as root, posternd would refuse this: \S+: running as root needs "
            r"key 'user'", out, "checked as root, a configuration without 'user' gets a warning")
else:
    t.skip("checked as root, a configuration without 'user' gets a warning", "not root")

p = subprocess.run([POSTERND, "-k"], capture_output=True, text=True, timeout=10)
t.ok(p.returncode == 0 and "listener\tmax_message_size\t64M\t" in p.stdout and
     "global\tspool_dir\t" in p.stdout, "posternd -k lists every key with its default", p.stdout)

# the allow list at connect time
sink = Sink()
pd = Posternd({"closed": {"forward": "127.0.0.1:%d" % sink.port, "allow": ["192.0.2.0/24"]},
               "open": {"forward": "127.0.0.1:%d" % sink.port}})
c = Client(pd.ports["closed"])
t.match(r"^554 5\.7\.1 .*client 127\.0\.0\.1 not allowed", c.greeting.text,
        "a client outside the allow list gets 554 5.7.1 at connect")
t.ok(c.closed(), "and is disconnected")
t.ok(pd.wait_log(r"127\.0\.0\.1: client not in the allow list of listener closed: refused"),
     "the refusal is logged")
c = Client(pd.ports["open"])
t.eq(c.greeting.code, 220, "the default allow list (loopback) lets 127.0.0.1 in")
c.close()

if os.geteuid() == 0:
    users = set()
    for pid in pd.children():
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("Uid:"):
                    users.add(int(line.split()[1]))
    t.eq(users, {pwd.getpwnam("nobody").pw_uid}, "started as root, the workers run as the configured user")
    with open("/proc/%d/status" % pd.proc.pid) as f:
        uid = [int(l.split()[1]) for l in f if l.startswith("Uid:")][0]
    t.eq(uid, pwd.getpwnam("nobody").pw_uid, "... and so does the master, after binding")
pd.stop()
t.eq(pd.proc.returncode, 0, "SIGTERM: exit status 0")

if os.geteuid() == 0:
    # directories that were there are not taken over: "spool_dir = /tmp" must not
    # become nobody's 0700, nor /run when the control socket is put there
    def start_with_spool(spool):
        """posternd -f with spool_dir = spool: (exit status, stderr); one still running
        after 20 s (it took the directory: the finding) is killed, status None."""
        pd_try = Posternd({"x": {"forward": "127.0.0.1:%d" % sink.port}},
                          settings={"spool_dir": spool}, start=False)
        p = subprocess.Popen([POSTERND, "-f", "-c", pd_try.conf], stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
        try:
            _, err = p.communicate(timeout=20)
            return p.returncode, err
        except subprocess.TimeoutExpired:
            p.kill()
            return None, p.communicate()[1]

    shared = os.path.join(workspace(), "shared")
    os.makedirs(shared)
    os.chmod(shared, 0o1777)
    rc, err = start_with_spool(shared)
    st = os.stat(shared)
    t.ok(rc == 1 and "is in use and is not user nobody's" in err and "chown nobody:" in err,
         "an existing world-writable spool_dir of root's: exit 1, saying whose it is and how to "
         "fix it", "rc=%r %s" % (rc, err[-500:]))
    t.eq((st.st_uid, oct(st.st_mode & 0o7777)), (0, oct(0o1777)),
         "... and the directory keeps its owner and mode")
    used = os.path.join(workspace(), "used")
    os.makedirs(used)
    open(os.path.join(used, "someone-elses"), "w").close()
    rc, err = start_with_spool(used)
    t.ok(rc == 1 and "is in use" in err and os.stat(used).st_uid == 0,
         "an existing spool_dir of root's with a file in it: exit 1, left as it was",
         "rc=%r %s" % (rc, err[-500:]))
    # an empty directory made for posternd (systemd's TemporaryFileSystem= on scan/, a
    # postmaster's mkdir) is taken and made the user's 0700
    empty = os.path.join(workspace(), "empty-spool")
    os.makedirs(empty)
    os.chmod(empty, 0o755)
    pd6 = Posternd({"x": {"forward": "127.0.0.1:%d" % sink.port}}, settings={"spool_dir": empty})
    st = os.stat(empty)
    t.eq((st.st_uid, oct(st.st_mode & 0o777)), (pwd.getpwnam("nobody").pw_uid, oct(0o700)),
         "an empty spool_dir of root's is taken: the user's, 0700")
    pd6.stop()
    csd = os.path.join(workspace(), "socketdir")
    os.makedirs(csd)
    open(os.path.join(csd, "another-socket"), "w").close()
    pd4 = Posternd({"x": {"forward": "127.0.0.1:%d" % sink.port}},
                   settings={"control_socket": os.path.join(csd, "ctl")})
    t.eq(pd4.ping(), "pong\n", "a control socket in an existing directory in use answers")
    t.eq(os.stat(csd).st_uid, 0, "... and that directory stays root's")
    pd4.stop()
    fresh = os.path.join(workspace(), "fresh", "sockets")
    pd5 = Posternd({"x": {"forward": "127.0.0.1:%d" % sink.port}},
                   settings={"control_socket": os.path.join(fresh, "ctl")})
    t.eq(os.stat(fresh).st_uid, pwd.getpwnam("nobody").pw_uid,
         "a control socket directory posternd made is the user's")
    pd5.stop()
t.done()
