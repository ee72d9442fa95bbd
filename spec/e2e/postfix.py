"""postfix - a throwaway Postfix instance for the end-to-end specs

Python standard library only. A `Postfix` object builds a complete, private
Postfix instance under harness.workspace(): its own config_directory (main.cf
and master.cf written here), queue_directory, data_directory and maillog_file,
listening on 127.0.0.1 only, relaying everything it accepts to one next hop
(normally the capturing harness.Sink). It never touches the system instance's
queue or listeners; the only change outside the workspace is the
`alternate_config_directories` entry in /etc/postfix/main.cf that Postfix
requires before it runs a non-default configuration directory. That entry is
added under a lock and removed again when the spec ends (other entries are
kept); a minimal /etc/postfix/main.cf is created if the machine has none.

The services follow Postfix's FILTER_README "advanced content filter":

    client -> front smtpd (content_filter=scan:[127.0.0.1]:FILTER)
           -> "scan" smtp transport (XFORWARD on, no DNS, max_use)
           -> the content filter (posternd)
           -> reinjection smtpd (content_filter empty, no header/body checks,
              no milters, XFORWARD authorised for 127.0.0.0/8)
           -> relayhost [127.0.0.1]:NEXTHOP (the sink)

Usage:

    pf = Postfix(relay_port=sink.port)
    front = pf.front_smtpd("scan:[127.0.0.1]:%d" % filter_port)
    pf.filter_transport("scan")
    pf.reinjection_smtpd(port=reinject_port)
    pf.start()              # bounded; stopped again at exit, whatever happens
    ... pf.wait_log(r"status=sent"), pf.queue(), pf.flush(), pf.maillog()

Every wait is bounded. The instance is stopped with `postfix -c DIR stop` at
exit (atexit), and, should that fail, by the master's PID from pid/master.pid.
"""
import atexit
import fcntl
import os
import pwd
import grp
import re
import signal
import subprocess
import sys
import tempfile

import harness

POSTFIX = "/usr/sbin/postfix"
POSTCONF = "/usr/sbin/postconf"
POSTQUEUE = "/usr/sbin/postqueue"
DEFAULT_CONFIG_DIR = "/etc/postfix"
LOCKFILE = os.path.join(tempfile.gettempdir(), "postern-spec-postfix.lock")

# The internal services a relay-only instance needs (no pickup, no local
# delivery, no TLS): type, private, unpriv, chroot, wakeup, maxproc, command.
# chroot is "n" everywhere, so nothing has to be copied into the queue directory.
INTERNAL_SERVICES = """\
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


def unavailable():
    """Why a real Postfix instance cannot run here (a string), or None if it can."""
    if os.geteuid() != 0:
        return "Postfix instances need root (postfix start runs the master as root)"
    for prog in (POSTFIX, POSTCONF, POSTQUEUE):
        if not os.access(prog, os.X_OK):
            return "Postfix is not installed (%s missing)" % prog
    try:
        pwd.getpwnam("postfix")
        grp.getgrnam("postdrop")
    except KeyError:
        return "the postfix user or the postdrop group does not exist"
    try:
        daemon_dir = subprocess.run([POSTCONF, "-dh", "daemon_directory"], capture_output=True,
                                    timeout=30).stdout.decode().strip()
    except (OSError, subprocess.SubprocessError) as e:
        return "postconf does not run: %s" % e
    if not os.access(os.path.join(daemon_dir, "master"), os.X_OK):
        return "the Postfix master program is missing from %s" % daemon_dir
    return None


def _run(argv, timeout=60, env=None):
    """(exit status, combined output) of a command, bounded; never raises on failure."""
    try:
        p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           stdin=subprocess.DEVNULL, timeout=timeout, env=env)
        return p.returncode, p.stdout.decode("utf-8", "replace")
    except subprocess.TimeoutExpired:
        return 124, "%s: timed out after %ss" % (argv[0], timeout)
    except OSError as e:
        return 127, "%s: %s" % (argv[0], e)


def _exit_on_sigterm():
    """Turn SIGTERM (e.g. from `timeout`) into a normal exit, so that the atexit handlers
    stop the instance instead of leaving a Postfix master running."""
    if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


def _split_list(value):
    return [x for x in re.split(r"[\s,]+", value.strip()) if x]


class _DefaultMainCf:
    """The alternate_config_directories entry in the default main.cf, under a lock."""

    def __init__(self):
        self.main_cf = os.path.join(DEFAULT_CONFIG_DIR, "main.cf")

    def _locked(self, change):
        with open(LOCKFILE, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                return change()
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _current(self):
        status, out = _run([POSTCONF, "-c", DEFAULT_CONFIG_DIR, "-h",
                            "alternate_config_directories"], 30)
        if status != 0:
            raise RuntimeError("postconf -h alternate_config_directories failed: " + out)
        return _split_list(out)

    def _set(self, dirs):
        status, out = _run([POSTCONF, "-c", DEFAULT_CONFIG_DIR, "-e",
                            "alternate_config_directories = " + " ".join(dirs)], 30)
        if status != 0:
            raise RuntimeError("postconf -e alternate_config_directories failed: " + out)

    def add(self, directory):
        def change():
            if not os.path.exists(self.main_cf):
                os.makedirs(DEFAULT_CONFIG_DIR, exist_ok=True)
                with open(self.main_cf, "w") as f:
                    f.write("# Created by postern's end-to-end specs (spec/e2e/postfix.py): Postfix\n"
                            "# runs a private instance only if its configuration directory is\n"
                            "# listed here.\n"
                            "alternate_config_directories =\n")
            dirs = self._current()
            if directory not in dirs:
                self._set(dirs + [directory])
        self._locked(change)

    def remove(self, directory):
        def change():
            if not os.path.exists(self.main_cf):
                return
            dirs = self._current()
            if directory in dirs:
                self._set([d for d in dirs if d != directory])
        self._locked(change)


class Postfix:
    """A private Postfix instance (see the module docstring).

    relay_port: where every accepted message goes (relayhost [127.0.0.1]:relay_port).
    params: extra main.cf settings, overriding the defaults written here.
    """

    def __init__(self, relay_port, params=None, name="postfix", hostname="mta.test"):
        self.base = os.path.join(harness.workspace(), "%s-%d" % (name, harness.free_port()))
        self.config_dir = os.path.join(self.base, "etc")
        self.queue_dir = os.path.join(self.base, "queue")
        self.data_dir = os.path.join(self.base, "data")
        self.logpath = os.path.join(self.base, "maillog")
        self.startlog = os.path.join(self.base, "postfix-start.out")
        self.hostname = hostname
        self.relay_port = relay_port
        self.services = []      # master.cf lines of the spec's own services
        self.ports = {}         # service name -> port
        self.started = False
        self.registered = False
        self.main = {
            "compatibility_level": "3.6",
            "queue_directory": self.queue_dir,
            "data_directory": self.data_dir,
            "mail_owner": "postfix",
            "setgid_group": "postdrop",
            "syslog_name": "postfix",
            "maillog_file": self.logpath,
            "maillog_file_prefixes": self.base,
            "myhostname": hostname,
            "mydomain": hostname.split(".", 1)[-1],
            "myorigin": "$myhostname",
            "mydestination": "",
            "relay_domains": "",
            "local_recipient_maps": "",
            "alias_maps": "",
            "alias_database": "",
            "inet_interfaces": "127.0.0.1",
            "inet_protocols": "ipv4",
            "mynetworks": "127.0.0.0/8",
            "relayhost": "[127.0.0.1]:%d" % relay_port,
            "smtp_dns_support_level": "disabled",
            "smtputf8_enable": "yes",
            "biff": "no",
            "readme_directory": "no",
            "html_directory": "no",
            "delay_warning_time": "0",
            "smtpd_banner": "$myhostname ESMTP $mail_name",
        }
        self.main.update(params or {})
        os.makedirs(self.config_dir)

    # ------------------------------------------------------------ services
    def service(self, line, *overrides, port=None, name=None):
        """Add a master.cf service line with its -o overrides (list of "k=v")."""
        text = line + "".join("\n  -o %s" % o for o in overrides)
        self.services.append(text)
        if name:
            self.ports[name] = port
        return port

    def front_smtpd(self, content_filter, port=None, name="front"):
        """An smtpd on 127.0.0.1:port whose mail goes to content_filter (FILTER_README step 1).

        Address mappings are left to the reinjection side, as FILTER_README advises."""
        port = port or harness.free_port()
        return self.service("127.0.0.1:%d inet n - n - - smtpd" % port,
                            "content_filter=" + content_filter,
                            "receive_override_options=no_address_mappings",
                            port=port, name=name)

    def filter_transport(self, name="scan", client="smtp", maxproc=10):
        """The transport that hands mail to the filter, with FILTER_README's settings
        (XFORWARD on, a long data-done timeout, no DNS, max_use); client is "smtp" or
        "lmtp". smtp_dns_support_level=disabled is Postfix 3's spelling of the
        README's disable_dns_lookups=yes."""
        p = client  # smtp_* or lmtp_* parameter prefix
        self.service("%s unix - - n - %d %s" % (name, maxproc, client),
                     "%s_send_xforward_command=yes" % p,
                     "%s_data_done_timeout=1200" % p,
                     "%s_dns_support_level=disabled" % p,
                     "max_use=20")

    def reinjection_smtpd(self, port=None, name="reinject"):
        """The smtpd the filter gives mail back to (FILTER_README step 2): no second
        content filter, no header/body checks or milters, XFORWARD trusted from loopback."""
        port = port or harness.free_port()
        return self.service(
            "127.0.0.1:%d inet n - n - - smtpd" % port,
            "content_filter=",
            "receive_override_options=no_unknown_recipient_checks,no_header_body_checks,no_milters",
            "smtpd_helo_restrictions=",
            "smtpd_client_restrictions=",
            "smtpd_sender_restrictions=",
            "smtpd_relay_restrictions=",
            "smtpd_recipient_restrictions=permit_mynetworks,reject",
            "smtpd_data_restrictions=",
            "smtpd_end_of_data_restrictions=",
            "mynetworks=127.0.0.0/8",
            "smtpd_authorized_xforward_hosts=127.0.0.0/8",
            "smtpd_error_sleep_time=0",
            "smtpd_soft_error_limit=1001",
            "smtpd_hard_error_limit=1000",
            "smtpd_client_connection_count_limit=0",
            "smtpd_client_connection_rate_limit=0",
            port=port, name=name)

    # ------------------------------------------------------------ files
    def write(self):
        with open(os.path.join(self.config_dir, "main.cf"), "w") as f:
            f.write("# a throwaway instance for one postern end-to-end spec\n")
            for k, v in self.main.items():
                f.write("%s = %s\n" % (k, v))
        with open(os.path.join(self.config_dir, "master.cf"), "w") as f:
            f.write("# service type private unpriv chroot wakeup maxproc command + args\n")
            for s in self.services:
                f.write(s + "\n")
            f.write(INTERNAL_SERVICES)
        # The queue's top directory must exist (postfix-script cd's into it before
        # post-install creates the rest with the right owners and modes).
        os.makedirs(self.queue_dir, exist_ok=True)
        os.chmod(self.queue_dir, 0o755)

    def env(self):
        e = dict(os.environ)
        e["MAIL_CONFIG"] = self.config_dir
        return e

    # ------------------------------------------------------------ life cycle
    def start(self, timeout=60):
        """Write the files, register the directory, `postfix -c DIR start`, wait for the
        listeners. Returns (ok, diagnostics)."""
        self.write()
        atexit.register(self.stop)
        _exit_on_sigterm()
        self.registered = True
        try:
            _DefaultMainCf().add(self.config_dir)
        except (OSError, RuntimeError) as e:
            return False, "cannot list %s in alternate_config_directories: %s" % (self.config_dir, e)
        with open(self.startlog, "wb") as out:
            # Output to a file, not a pipe: the daemonised master must not hold our pipe.
            try:
                p = subprocess.run([POSTFIX, "-c", self.config_dir, "start"], stdout=out,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   timeout=timeout)
                status = p.returncode
            except subprocess.TimeoutExpired:
                status = 124
        self.started = True  # stop() copes with a master that never came up
        if status != 0:
            return False, "postfix start exited %d:\n%s\n%s" % (status, self.start_output(),
                                                               self.maillog())
        ports = [p for p in self.ports.values() if p]
        if not harness.wait_until(lambda: all(harness.port_open(p) for p in ports), timeout, 0.2):
            return False, "Postfix listeners %r did not open:\n%s" % (ports, self.maillog())
        return True, ""

    def master_pid(self):
        try:
            with open(os.path.join(self.queue_dir, "pid", "master.pid")) as f:
                return int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def running(self):
        pid = self.master_pid()
        if pid is None:
            return False
        try:
            os.kill(pid, 0)
            return True
        except OSError:
            return False

    def stop(self):
        """Stop the instance (idempotent): postfix stop, then the master's process group
        by its PID if need be; then drop the alternate_config_directories entry. SIGTERM
        is ignored meanwhile so that the cleanup itself cannot be cut short."""
        previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            if self.started:
                if self.running():
                    _run([POSTFIX, "-c", self.config_dir, "stop"], 30)
                pid = self.master_pid()
                if pid is not None and self.running():
                    # The master leads its own process group (postfix stop does the same).
                    for sig in (signal.SIGTERM, signal.SIGKILL):
                        try:
                            os.killpg(pid, sig)
                        except OSError:
                            break
                        if harness.wait_until(lambda: not self.running(), 10, 0.2):
                            break
                self.started = False
            if self.registered:
                try:
                    _DefaultMainCf().remove(self.config_dir)
                    self.registered = False
                except (OSError, RuntimeError):
                    pass
        finally:
            signal.signal(signal.SIGTERM, previous)

    # ------------------------------------------------------------ inspection
    def start_output(self):
        try:
            with open(self.startlog, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def maillog(self):
        try:
            with open(self.logpath, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def wait_log(self, pattern, timeout=60.0):
        """Wait for a maillog line matching pattern; the match object or None."""
        rx = re.compile(pattern, re.M)
        return harness.wait_until(lambda: rx.search(self.maillog()), timeout, 0.2)

    def queue(self):
        """`postqueue -p` output."""
        return _run([POSTQUEUE, "-c", self.config_dir, "-p"], 30, self.env())[1]

    def queue_empty(self):
        return "Mail queue is empty" in self.queue()

    def flush(self):
        """`postqueue -f`: retry every deferred message now."""
        return _run([POSTQUEUE, "-c", self.config_dir, "-f"], 30, self.env())

    def diagnostics(self):
        """Everything useful when a spec failed: queue, start output, maillog tail."""
        log = self.maillog().splitlines()
        return ("--- postqueue -p\n%s\n--- postfix start\n%s\n--- maillog (last 80 lines)\n%s"
                % (self.queue().rstrip(), self.start_output().rstrip(), "\n".join(log[-80:])))


def print_diag(title, text):
    """Print text as TAP diagnostics (every line behind '# ')."""
    print("# ---- %s" % title, flush=True)
    for line in text.splitlines():
        print("# " + line, flush=True)
