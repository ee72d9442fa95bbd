"""harness - what every end-to-end spec needs: TAP, free ports, the sink, posternd, a client

Python standard library only. Every spec builds its own world in a fresh
directory: a sink (demo/sink.py) on a free 127.0.0.1 port, a posternd with a
config written for the scenario, and raw SMTP clients. Processes are stopped
by PID when the spec ends, whatever happens. Every wait is bounded.

Environment (set by `make check`, see Makefile.am): POSTERND (the binary),
SRCDIR (the source tree).
"""
import atexit
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

SRCDIR = os.environ.get("SRCDIR", os.path.join(os.path.dirname(__file__), "..", ".."))
POSTERND = os.environ.get("POSTERND", os.path.join(SRCDIR, "daemon", "posternd"))
# the postern command: $POSTERN, else the one built beside posternd
POSTERN = os.environ.get("POSTERN", os.path.join(os.path.dirname(POSTERND), "postern"))
SINK = os.path.join(SRCDIR, "demo", "sink.py")


# ---------------------------------------------------------------- TAP
SANITIZER_REPORT = re.compile(r"ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error: |"
                              r"SUMMARY: UndefinedBehaviorSanitizer")
_daemons = []  # every Posternd of the spec, checked for sanitizer reports at the end


class Tap:
    """ok/eq/match print TAP lines; done() prints the plan and exits."""

    def __init__(self):
        self.n = 0
        self.failed = 0

    def ok(self, cond, name, diag=None):
        self.n += 1
        print("%s %d - %s" % ("ok" if cond else "not ok", self.n, name), flush=True)
        if not cond:
            self.failed += 1
            if diag:
                for line in str(diag).splitlines()[:40]:
                    print("# " + line, flush=True)
        return cond

    def eq(self, got, want, name, diag=None):
        return self.ok(got == want, name, "got %r, want %r%s" % (got, want,
                                                                  "\n%s" % diag if diag else ""))

    def skip(self, name, why):
        """A point this run cannot check (TAP's SKIP directive): never a failure in disguise."""
        self.n += 1
        print("ok %d - %s # SKIP %s" % (self.n, name, why), flush=True)

    def match(self, pattern, text, name):
        return self.ok(re.search(pattern, text or "") is not None, name,
                       "no match for %r in %r" % (pattern, (text or "")[-2000:]))

    def done(self):
        for pd in _daemons:
            log = pd.log()
            self.ok(not SANITIZER_REPORT.search(log), "no sanitizer report in posternd's log (%s)"
                    % os.path.basename(pd.logpath), log[-3000:])
        print("1..%d" % self.n, flush=True)
        sys.exit(1 if self.failed else 0)

    def bail(self, why):
        print("Bail out! %s" % why, flush=True)
        sys.exit(1)


t = Tap()


def skip_all(why):
    """A platform truly lacks something (never used to hide a failure)."""
    print("1..0 # SKIP %s" % why, flush=True)
    sys.exit(0)


# ---------------------------------------------------------------- workspace and processes
_children = []
_workspace = []


def workspace():
    """A fresh directory for this spec, removed at exit (kept if KEEP_SPEC_DIRS is set)."""
    if not _workspace:
        d = tempfile.mkdtemp(prefix="postern-spec-")
        os.chmod(d, 0o755)  # posternd drops to an unprivileged user when run as root
        _workspace.append(d)
    return _workspace[0]


def _cleanup():
    for p in _children:
        if p.poll() is None:
            try:
                p.terminate()
                p.wait(timeout=10)
            except Exception:
                p.kill()
    if _workspace and not os.environ.get("KEEP_SPEC_DIRS"):
        shutil.rmtree(_workspace[0], ignore_errors=True)


atexit.register(_cleanup)


def _spec_port_range():
    """Ports the specs listen on: below the kernel's ephemeral range (or above it when
    there is no room below). The kernel takes the local port of every outgoing
    connection, and of bind(0), from that range; a listener port chosen there can be
    taken by one of the thousands of client connections that the specs running beside
    this one make (make -j check) before posternd or the sink binds it."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low, high = (int(x) for x in f.read().split())
    except (OSError, ValueError):
        low, high = 32768, 60999
    if low - 1 >= 21000 + 2000:
        return 21000, low - 1
    if high + 1 <= 65535 - 2000:
        return high + 1, 65535
    return 1024 + 1000, 65535     # a tuned machine: no quiet range, any port will do


_SPEC_PORTS = _spec_port_range()
_ports_given = set()


def free_port():
    """A port on 127.0.0.1 that nothing is bound to now and that this spec has not been
    given before, from _SPEC_PORTS. Specs running at the same time each try their own
    random ports, so they meet only if both pick the same one within the instant
    before it is bound."""
    rng = random.Random()   # from the system's entropy: two specs never share a sequence
    low, high = _SPEC_PORTS
    for _ in range(1000):
        port = rng.randint(low, high)
        if port in _ports_given:
            continue
        s = socket.socket()
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            s.close()
        _ports_given.add(port)
        return port
    raise RuntimeError("no free port in %d-%d after 1000 tries" % (low, high))


def wait_until(pred, timeout=10.0, step=0.05):
    """pred() until true or the time is up; returns its last value."""
    end = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() > end:
            return v
        time.sleep(step)


def port_open(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


# ---------------------------------------------------------------- the sink
class Sink:
    """demo/sink.py on a free port; messages() reads what it stored."""

    def __init__(self, *args, port=None, name="sink"):
        self.port = port or free_port()
        self.dir = os.path.join(workspace(), "%s-%d" % (name, self.port))
        os.makedirs(self.dir, exist_ok=True)
        self.proc = subprocess.Popen(
            [sys.executable, SINK, "--quiet", "--listen", "127.0.0.1:%d" % self.port,
             "--dir", self.dir] + list(args))
        _children.append(self.proc)
        if not wait_until(lambda: port_open(self.port) or self.proc.poll() is not None, 30) \
                or self.proc.poll() is not None:
            t.bail("sink did not start on %d (exit status %r)" % (self.port, self.proc.poll()))

    def messages(self):
        """[(envelope dict, bytes)] in arrival order."""
        out = []
        for name in sorted(os.listdir(self.dir)):
            if name.endswith(".json"):
                base = os.path.join(self.dir, name[:-5])
                with open(base + ".json") as f:
                    env = json.load(f)
                with open(base + ".eml", "rb") as f:
                    out.append((env, f.read()))
        return out

    def count(self):
        return sum(1 for n in os.listdir(self.dir) if n.endswith(".json"))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


# ---------------------------------------------------------------- posternd
def lua_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, (list, tuple)):
        return "{ " + ", ".join(lua_value(x) for x in v) + " }"
    if isinstance(v, dict):
        return "{ " + ", ".join("%s = %s" % (k, lua_value(x)) for k, x in v.items()) + " }"
    return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'


class Posternd:
    """posternd -f on a config made of `settings` and `listeners`.

    listeners: {name: {key: value}}; "listen" defaults to a free port and the
    port is kept in self.ports[name].
    """

    def __init__(self, listeners, settings=None, start=True, args=()):
        self.dir = workspace()
        self.ports = {}
        self.conf = os.path.join(self.dir, "postern-%d.conf" % free_port())
        self.spool = os.path.join(self.dir, "spool")
        self.logpath = self.conf[:-5] + ".log"
        self.args = list(args)
        g = {"spool_dir": self.spool, "hostname": "filter.test", "log_level": "info",
             "quarantine": {"dir": os.path.join(self.dir, "quarantine")},
             "policy_dir": os.path.join(self.dir, "policies"),
             "lua_dir": os.path.join(SRCDIR, "lua"),
             "control_socket": os.path.join(self.dir, "control-%d" % free_port())}
        if os.geteuid() == 0:
            g["user"] = "nobody"
        g.update(settings or {})
        self.write(g, listeners)
        self.proc = None
        _daemons.append(self)
        if start:
            self.start()

    def write(self, settings, listeners):
        self.control = settings.get("control_socket") or None
        lines = ["%s = %s" % (k, lua_value(v)) for k, v in settings.items()]
        for name, keys in listeners.items():
            keys = dict(keys)
            if "listen" not in keys:
                keys["listen"] = "127.0.0.1:%d" % self.ports.get(name, free_port())
            self.ports[name] = int(keys["listen"].rsplit(":", 1)[1])
            body = ",\n".join("  %s = %s" % (k, lua_value(v)) for k, v in keys.items())
            lines.append('listener "%s" {\n%s\n}' % (name, body))
        with open(self.conf, "w") as f:
            f.write("\n".join(lines) + "\n")

    def start(self, wait=True):
        """Start posternd; with wait, until it is ready: every listener's port open and
        the master past its start-up, in its main loop (it answers "ping" on the control
        socket). A port alone is not enough: the master listens before it loads the
        policies and the signatures and cleans up what an earlier run left."""
        self.logf = open(self.logpath, "ab")
        self.proc = subprocess.Popen([POSTERND, "-f", "-c", self.conf] + self.args,
                                     stdout=self.logf, stderr=self.logf)
        _children.append(self.proc)
        if not wait:
            return self

        def ready():
            return (all(port_open(p) for p in self.ports.values()) and
                    (self.control is None or self.ping() == "pong\n"))
        ok = wait_until(lambda: self.proc.poll() is not None or ready(), 30)
        if self.proc.poll() is not None or not ok:
            t.bail("posternd did not start:\n" + self.log())
        return self

    def ping(self):
        """The master's answer to "ping" on the control socket, or None (not there yet,
        or still starting: a connection waits in the backlog until the main loop runs)."""
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(1.0)
        try:
            s.connect(self.control)
            s.sendall(b"ping\n")
            answer = b""
            while True:
                chunk = s.recv(256)
                if not chunk:
                    return answer.decode("ascii", "replace")
                answer += chunk
        except OSError:
            return None
        finally:
            s.close()

    def log(self):
        try:
            with open(self.logpath, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def wait_log(self, pattern, timeout=10.0, after=0):
        """Wait for a log line matching pattern (past byte offset `after`); the match or None."""
        rx = re.compile(pattern)

        def look():
            return rx.search(self.log()[after:])
        return wait_until(look, timeout)

    def summary_line(self, listener, mid, timeout=5.0):
        """The per-message summary log line of mail id mid on listener, or ""."""
        m = self.wait_log(r"msg listener=%s id=%s [^\n]*" % (re.escape(listener), re.escape(mid)),
                          timeout)
        return m.group(0) if m else ""

    def signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, timeout=30):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def children(self):
        """PIDs of the workers (children of the master)."""
        try:
            with open("/proc/%d/task/%d/children" % (self.proc.pid, self.proc.pid)) as f:
                return [int(x) for x in f.read().split()]
        except OSError:
            return []

    def spool_files(self):
        """What is left in the spool directory: its files, and what is inside scan/ (the
        default clamav.temp_dir, a directory of its own that libclamav must leave empty)."""
        if not os.path.isdir(self.spool):
            return []
        out = [n for n in os.listdir(self.spool) if n != "scan"]
        scan = os.path.join(self.spool, "scan")
        if os.path.isdir(scan):
            out += ["scan/" + n for n in os.listdir(scan)]
        return out


def check_config(text):
    """posternd -t on a config text: (exit status, output)."""
    path = os.path.join(workspace(), "check-%d.conf" % free_port())
    with open(path, "w") as f:
        f.write(text)
    p = subprocess.run([POSTERND, "-t", "-c", path], capture_output=True, timeout=30)
    return p.returncode, (p.stdout + p.stderr).decode("utf-8", "replace"), path


# ---------------------------------------------------------------- a raw SMTP client
class Reply:
    def __init__(self, code, lines):
        self.code = code
        self.lines = lines
        self.text = "\n".join(lines)

    def __repr__(self):
        return "Reply(%r)" % self.text

    def cls(self):
        return self.code // 100


class Client:
    """A raw SMTP/LMTP client: every byte is the spec's choice."""

    def __init__(self, port, timeout=30, greet=True):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""
        self.greeting = self.reply() if greet else None

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def line(self):
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("connection closed")
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return line.rstrip(b"\r").decode("utf-8", "replace")

    def reply(self):
        lines = []
        while True:
            line = self.line()
            lines.append(line)
            if len(line) < 4 or line[3] != "-":
                return Reply(int(line[:3]), lines)

    def cmd(self, text):
        self.send(text + "\r\n")
        return self.reply()

    def closed(self, timeout=5):
        """True if the server closes the connection (after any pending bytes)."""
        self.sock.settimeout(timeout)
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
        except socket.timeout:
            return False
        except OSError:
            return True

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def stuff(data):
    """Dot-stuff CRLF message bytes and add the end line."""
    if isinstance(data, str):
        data = data.encode()
    out = re.sub(rb"(^|\r\n)\.", rb"\1..", data)
    if not out.endswith(b"\r\n"):
        out += b"\r\n"
    return out + b".\r\n"


def send_message(c, sender, rcpts, data, hello="EHLO client.test", lmtp=False, params=""):
    """One transaction on client c; returns the data reply (a list of them in LMTP)."""
    if hello:
        r = c.cmd(hello)
        assert r.code == 250, r
    r = c.cmd("MAIL FROM:<%s>%s" % (sender, params))
    assert r.code == 250, r
    for rc in rcpts:
        r = c.cmd("RCPT TO:<%s>" % rc)
        assert r.code == 250, r
    r = c.cmd("DATA")
    assert r.code == 354, r
    c.send(stuff(data))
    if lmtp:
        return [c.reply() for _ in rcpts]
    return c.reply()


def message(subject="test", body="Hello.\r\n", extra=""):
    return ("From: Sender <sender@example.org>\r\nTo: rcpt@example.com\r\n"
            "Subject: %s\r\nMessage-ID: <%s@example.org>\r\n%s\r\n%s" %
            (subject, os.urandom(6).hex(), extra, body)).encode()


def mail_id(reply):
    """The mail id a reply names ("id=..."), or "?" (which matches no log line)."""
    m = re.search(r"\bid=(\w+)", reply.text)
    return m.group(1) if m else "?"


def header_fields(data):
    """[(name, value)] of a message's header block, unfolded, values stripped."""
    head = data.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace")
    out = []
    for line in head.split("\r\n"):
        if line[:1] in (" ", "\t") and out:
            out[-1] = (out[-1][0], out[-1][1] + " " + line.strip())
        elif ":" in line:
            name, _, value = line.partition(":")
            out.append((name, value.strip()))
    return out


def values(data, name):
    """The values of every header field called name (without regard to case)."""
    return [v for n, v in header_fields(data) if n.lower() == name.lower()]


def split_added(received, original):
    """(added header bytes, rest) if received ends with original bytes, else (None, None)."""
    if not received.endswith(original):
        return None, None
    return received[:len(received) - len(original)], received[len(received) - len(original):]
