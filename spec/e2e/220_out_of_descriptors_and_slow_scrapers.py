"""Running out of descriptors, and scrapers that dribble: nothing spins, nothing stalls.

A posternd with one listener "one" (workers = 1, forwarding to a sink), the
control socket and metrics = { listen = "127.0.0.1:PORT" }. The specs take
descriptors away by lowering a running process's soft RLIMIT_NOFILE to its
lowest free descriptor number (prlimit(2)), so that its next accept() fails
with EMFILE, then give them back. Pinned behaviour:

  a worker out of descriptors, a client waiting: it logs one warning naming
    the listener and the error, uses (nearly) no CPU while it lasts (it rests
    ACCEPT_PAUSE_MS between tries instead of spinning on a listening socket
    that stays readable), and once descriptors are back the waiting client
    is greeted and its message delivered;
  the master out of descriptors, a control client and a scraper waiting: one
    warning each for "control socket" and "metrics listener", no spinning;
    once descriptors are back the control client gets "pong" and the
    scraper 200;
  a scraper that sends its request a byte at a time: another scraper and a
    control "ping" are answered while it is still sending (the master polls
    scrapers, it does not wait on one), and the dribbling one gets 408
    Request Timeout, then the connection closes, about METRICS_REQUEST_MS
    (5 s) after it connected;
  posternd started with descriptors 0, 1 and 2 closed: they are /dev/null
    in the master and the worker (a socket or spool file would otherwise take
    them, and log lines on stderr would go into it), and mail passes.
"""
import os
import re
import resource
import socket
import subprocess
import threading
import time
import urllib.request

from harness import (POSTERND, Client, Posternd, Sink, free_port, message, send_message, t,
                     wait_until)

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    """utime + stime of pid, in seconds."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def lowest_free_fd(pid):
    used = {int(n) for n in os.listdir("/proc/%d/fd" % pid)}
    n = 0
    while n in used:
        n += 1
    return n


def ids_of(pid):
    """The real uid and gid of pid."""
    ids = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(("Uid:", "Gid:")):
                ids[line[:3]] = int(line.split()[1])
    return ids["Uid"], ids["Gid"]


def prlimit_nofile(pid, limits=None):
    """prlimit(2) of pid's RLIMIT_NOFILE: set to limits, return the old ones. Root without
    CAP_SYS_RESOURCE (a container) may not touch another user's limits, but a process whose
    ids are the target's may lower and raise its soft limit: a child with the worker's ids
    does it."""
    uid, gid = ids_of(pid)
    if (uid, gid) == (os.getuid(), os.getgid()):
        return resource.prlimit(pid, resource.RLIMIT_NOFILE, *([limits] if limits else []))
    r, w = os.pipe()
    child = os.fork()
    if child == 0:
        try:
            os.close(r)
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
            old = resource.prlimit(pid, resource.RLIMIT_NOFILE, *([limits] if limits else []))
            os.write(w, ("%d %d" % old).encode())
            os._exit(0)
        except BaseException as e:  # noqa: BLE001 - reported by the parent
            os.write(w, ("error %r" % e).encode())
            os._exit(1)
    os.close(w)
    out = b""
    while True:
        chunk = os.read(r, 256)
        if not chunk:
            break
        out += chunk
    os.close(r)
    os.waitpid(child, 0)
    if out.startswith(b"error"):
        raise OSError(out.decode())
    soft, hard = out.split()
    return int(soft), int(hard)


class NoDescriptors:
    """Within the block, pid's next new descriptor fails with EMFILE."""

    def __init__(self, pid):
        self.pid = pid

    def __enter__(self):
        self.old = prlimit_nofile(self.pid)
        prlimit_nofile(self.pid, (lowest_free_fd(self.pid), self.old[1]))
        return self

    def __exit__(self, *exc):
        prlimit_nofile(self.pid, self.old)


def count(pattern, text):
    return len(re.findall(pattern, text))


def control_client(path, line):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(15)
    s.connect(path)
    s.sendall(line)
    return s


def read_all(s):
    out = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return out
            out += chunk
    except OSError:
        return out


sink = Sink()
mport = free_port()
pd = Posternd({"one": {"forward": "127.0.0.1:%d" % sink.port, "workers": 1}},
              {"metrics": {"listen": "127.0.0.1:%d" % mport}})
port = pd.ports["one"]
PAUSE = 2.5    # how long each shortage lasts

# ---------------------------------------------------------------- a worker out of descriptors
wait_until(lambda: len(pd.children()) == 1, 10)
workers = pd.children()
t.eq(len(workers), 1, "one worker for the one listener")
worker = workers[0]
log_at = len(pd.log())
with NoDescriptors(worker):
    cpu0 = cpu_seconds(worker)
    c = Client(port, timeout=15, greet=False)    # connected: it waits in the backlog
    time.sleep(PAUSE)
    spent = cpu_seconds(worker) - cpu0
    during = pd.log()[log_at:]
t.eq(count(r"listener one: accept: Too many open files", during), 1,
     "worker out of descriptors: one warning, naming the listener and the error", during[-2000:])
t.ok(spent < 0.5, "worker out of descriptors: no spinning (%.2f s of CPU in %.1f s)" % (spent, PAUSE))
try:
    greeting = c.reply()
except (OSError, EOFError) as e:
    greeting = e
t.ok(getattr(greeting, "code", None) == 220, "descriptors back: the waiting client is greeted",
     greeting)
if getattr(greeting, "code", None) == 220:
    r = send_message(c, "a@example.org", ["b@example.net"], message("after the shortage"))
    t.eq(r.code, 250, "descriptors back: its message is accepted", r)
    t.ok(wait_until(lambda: sink.count() == 1, 10), "descriptors back: and delivered")
c.close()

# ---------------------------------------------------------------- the master out of descriptors
master = pd.proc.pid
log_at = len(pd.log())
with NoDescriptors(master):
    cpu0 = cpu_seconds(master)
    ctl = control_client(pd.control, b"ping\n")
    scraper = socket.create_connection(("127.0.0.1", mport), timeout=15)
    scraper.sendall(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
    time.sleep(PAUSE)
    spent = cpu_seconds(master) - cpu0
    during = pd.log()[log_at:]
t.eq(count(r"control socket: accept: Too many open files", during), 1,
     "master out of descriptors: one warning for the control socket", during[-2000:])
t.eq(count(r"metrics listener: accept: Too many open files", during), 1,
     "master out of descriptors: one warning for the metrics listener", during[-2000:])
t.ok(spent < 0.5, "master out of descriptors: no spinning (%.2f s of CPU in %.1f s)" % (spent, PAUSE))
t.eq(read_all(ctl), b"pong\n", "descriptors back: the waiting control client gets pong")
answer = read_all(scraper)
t.ok(answer.startswith(b"HTTP/1.0 200 ") and b"postern_messages_total" in answer,
     "descriptors back: the waiting scraper gets the exposition", answer[:200])
ctl.close()
scraper.close()

# ---------------------------------------------------------------- a scraper that dribbles
class Dribbler(threading.Thread):
    """Sends a request line, then a byte every 0.2 s and never the blank line, for at most
    12 s; keeps what it receives and when the connection ended."""

    def __init__(self):
        super().__init__(daemon=True)
        self.sock = socket.create_connection(("127.0.0.1", mport), timeout=15)
        self.start_time = time.monotonic()
        self.answer = b""
        self.secs = None

    def run(self):
        self.sock.sendall(b"GET /metrics HTTP/1.0\r\n")
        self.sock.setblocking(False)
        while time.monotonic() - self.start_time < 12:
            try:
                self.sock.sendall(b"X")
                chunk = self.sock.recv(65536)
                if chunk == b"":
                    break
                self.answer += chunk
            except BlockingIOError:
                pass
            except OSError:
                break
            time.sleep(0.2)
        self.secs = time.monotonic() - self.start_time
        self.sock.setblocking(True)
        self.sock.settimeout(5)
        self.answer += read_all(self.sock)
        self.sock.close()


slow = Dribbler()
slow.start()
time.sleep(0.6)
try:
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % mport, timeout=4) as resp:
        other = (resp.status, slow.answer == b"" and slow.is_alive())
except Exception as e:  # noqa: BLE001 - a timeout is the finding
    other = (repr(e), False)
pong = pd.ping()
slow.join(20)
slow_answer, slow_secs = slow.answer, slow.secs or 0.0
t.eq(other, (200, True), "a dribbling scraper: another scraper gets 200 while it still sends")
t.eq(pong, "pong\n", "a dribbling scraper: the control socket still answers")
t.ok(slow_answer.startswith(b"HTTP/1.0 408 "), "a dribbling scraper gets 408 Request Timeout",
     slow_answer[:200])
t.ok(4.0 <= slow_secs < 12, "a dribbling scraper is cut off after about 5 s (%.1f s)" % slow_secs)
pd.stop()

# ---------------------------------------------------------------- started with 0, 1, 2 closed
sink2 = Sink(name="sink2")
pd2 = Posternd({"two": {"forward": "127.0.0.1:%d" % sink2.port, "workers": 1}}, start=False)
proc = subprocess.Popen(["/bin/sh", "-c", 'exec "$0" -f -c "$1" <&- >&- 2>&-', POSTERND, pd2.conf],
                        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL)
pd2.proc = proc
ok = wait_until(lambda: proc.poll() is not None or pd2.ping() == "pong\n", 30)
t.ok(ok and proc.poll() is None, "started with 0, 1 and 2 closed: posternd runs")
if ok and proc.poll() is None:
    wait_until(lambda: len(pd2.children()) == 1, 10)
    for who, pid in [("master", proc.pid)] + [("worker", w) for w in pd2.children()]:
        targets = [os.readlink("/proc/%d/fd/%d" % (pid, n)) for n in (0, 1, 2)]
        t.eq(targets, ["/dev/null"] * 3,
             "started with 0, 1 and 2 closed: the %s's 0, 1 and 2 are /dev/null, not a socket "
             "or a spool file its log lines would go into" % who)
    c = Client(pd2.ports["two"])
    r = send_message(c, "a@example.org", ["b@example.net"], message("closed fds"))
    c.close()
    t.eq(r.code, 250, "started with 0, 1 and 2 closed: a message is accepted", r)
    t.ok(wait_until(lambda: sink2.count() == 1, 10), "started with 0, 1 and 2 closed: delivered")
    t.ok(sink2.messages() and b"Subject: closed fds" in sink2.messages()[0][1],
         "started with 0, 1 and 2 closed: the message arrives intact")
    pd2.stop()
t.done()
