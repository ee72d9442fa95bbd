"""ClamAV database formats beyond .hdb/.ndb: SHA-256 hashes, logical signatures, YARA, .cud.

The database directory is spec/data/clamav-formats (copied into the
workspace) plus a .cud container this spec builds at run time: an unsigned
ClamAV database file (512-byte "ClamAV-VDB:" header carrying the MD5 of what
follows, then a gzip'ed tar of an .info file and an .ndb). The signed
.cvd/.cld need ClamAV's key; .cud is the same container unsigned. Pinned
behaviour, against real libclamav:

  start-up      posternd logs "clamav: 4 signatures from DIR loaded" (one per
                format) and `posternd -t` says the same of the directory;
  .hsb          a base64 attachment whose SHA-256 and size are the signature's
                -> 554 5.7.0, the log names Postern.Formats.SHA256;
  .ldb          a text holding both parts of the logical signature (0&1) ->
                554, Postern.Formats.Logical; a text holding only one part
                passes (250, delivered): the logic is evaluated, not just the
                parts;
  .yara         a text with the rule's string -> 554, YARA.PosternFormatsYara;
  .cud          a text with the container's marker -> 554,
                Postern.Formats.Container;
  clean         a message matching none of them -> 250, delivered once, with
                X-Virus-Scanned;
  every rejected message reaches nobody.
"""
import base64
import gzip
import hashlib
import io
import os
import re
import shutil
import subprocess
import tarfile
import time

from harness import (POSTERND, SRCDIR, Client, Posternd, Reply, Sink, stuff, t, wait_until,
                     workspace)

WS = workspace()
POLICY_DIR = os.path.join(WS, "policies")
DATA = os.path.join(SRCDIR, "spec", "data", "clamav-formats")
SENDER = "sender@example.org"

SHA_BLOB = b"POSTERN-FORMATS-SHA256-BLOB\x00" + bytes(range(256)) * 2
LOGICAL_ONE = b"POSTERN-LOGICAL-PART-ONE-5c1e"
LOGICAL_TWO = b"POSTERN-LOGICAL-PART-TWO-9d02"
YARA_MARKER = b"POSTERN-YARA-MARKER-41b7"
CUD_MARKER = b"POSTERN-CUD-MARKER-e83a"


def tar_member(tar, name, data):
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 0
    tar.addfile(info, io.BytesIO(data))


def cud(path, name, ndb):
    """An unsigned ClamAV database container holding one .ndb file."""
    stamp = time.strftime("%d %b %Y %H-%M +0000", time.gmtime())
    files = {name + ".ndb": ndb}
    info = "ClamAV-VDB:%s:1:%d:90:X:X:postern-spec:%d\n" % (stamp, len(files), int(time.time()))
    info += "".join("%s:%d:%s\n" % (n, len(d), hashlib.sha256(d).hexdigest()) for n, d in files.items())
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        tar_member(tar, name + ".info", info.encode())
        for n, d in files.items():
            tar_member(tar, n, d)
    body = gzip.compress(raw.getvalue(), mtime=0)
    head = "ClamAV-VDB:%s:1:%d:90:%s:X:postern-spec:%d" % (
        stamp, ndb.count(b"\n"), hashlib.md5(body).hexdigest(), int(time.time()))
    with open(path, "wb") as f:
        f.write(head.encode().ljust(512, b" ") + body)


DB = os.path.join(WS, "db-formats")
shutil.copytree(DATA, DB)
cud(os.path.join(DB, "postern-formats.cud"), "postern-formats",
    b"Postern.Formats.Container:0:*:%s\n" % CUD_MARKER.hex().encode())
os.chmod(DB, 0o755)
for n in os.listdir(DB):
    os.chmod(os.path.join(DB, n), 0o644)

os.makedirs(POLICY_DIR, exist_ok=True)
with open(os.path.join(POLICY_DIR, "reject.lua"), "w") as f:
    f.write('local P = require "postern"\nreturn P.policy {\n  P.clamav { on_virus = "reject" },\n}\n')

sink = Sink(name="sink")
pd = Posternd({"scan": {"policy": "reject.lua", "forward": "127.0.0.1:%d" % sink.port, "workers": 1}},
              settings={"clamav": {"database": DB}})

t.ok(pd.wait_log(r"clamav: 4 signatures from %s loaded" % re.escape(DB)),
     "start-up: 4 signatures loaded, one per format (.hsb .ldb .yara .cud)",
     re.findall(r"clamav: [^\n]*", pd.log()))
p = subprocess.run([POSTERND, "-t", "-c", pd.conf], capture_output=True, text=True, timeout=60)
t.ok(p.returncode == 0 and re.search(r"clamav: 4 signatures load from %s" % re.escape(DB),
                                    p.stdout + p.stderr),
     "posternd -t: the configuration is valid and counts 4 signatures", p.stdout + p.stderr)


def transact(data):
    """One transaction on a fresh connection: the reply to the end of data."""
    try:
        c = Client(pd.ports["scan"], timeout=30)
        for cmd, want in (("EHLO client.test", 250), ("MAIL FROM:<%s>" % SENDER, 250),
                          ("RCPT TO:<user@example.com>", 250), ("DATA", 354)):
            r = c.cmd(cmd)
            assert r.code == want, r
        c.send(stuff(data))
        out = c.reply()
        c.close()
        return out
    except (AssertionError, OSError, EOFError, ValueError) as e:
        return Reply(0, ["no reply: %r" % (e,)])


_tok = [0]


def make(subject, body=b"Hello.\r\n", attach=None):
    """(token, message): plain text, or text plus one base64 attachment."""
    _tok[0] += 1
    token = "fmt%d-%s" % (_tok[0], os.urandom(4).hex())
    head = ("From: <%s>\r\nTo: <user@example.com>\r\nSubject: %s\r\nMessage-ID: <%s@example.org>\r\n"
            "X-Spec-Token: %s\r\n" % (SENDER, subject, token, token)).encode()
    if attach is None:
        return token, head + b"\r\n" + body
    b = ("b-" + token).encode()
    return token, (head + b'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="' + b +
                   b'"\r\n\r\n--' + b + b"\r\nContent-Type: text/plain\r\n\r\n" + body + b"\r\n--" + b +
                   b'\r\nContent-Type: application/octet-stream; name="data.bin"\r\n'
                   b"Content-Transfer-Encoding: base64\r\n\r\n" +
                   base64.encodebytes(attach).replace(b"\n", b"\r\n") + b"--" + b + b"--\r\n")


def delivered(token):
    """The messages the sink stored that carry token."""
    return [data for _env, data in sink.messages() if token.encode() in data]


cases = [
    (".hsb (SHA-256 of an attachment)", make("sha256", attach=SHA_BLOB), r"Postern\.Formats\.SHA256"),
    (".ldb (both parts of a logical signature)",
     make("logical", b"first " + LOGICAL_ONE + b"\r\nthen " + LOGICAL_TWO + b"\r\n"),
     r"Postern\.Formats\.Logical"),
    (".yara (a YARA rule's string)", make("yara", b"text " + YARA_MARKER + b" text\r\n"),
     r"YARA\.PosternFormatsYara"),
    (".cud (a signature inside an unsigned container)", make("cud", b"see " + CUD_MARKER + b"\r\n"),
     r"Postern\.Formats\.Container"),
]
for label, (token, data), name in cases:
    r = transact(data)
    t.ok(r.code == 554 and re.search(name, r.text), "%s: 554 naming the signature" % label, r)
    t.ok(pd.wait_log(r"clamav: infected: %s" % name), "%s: the log names it" % label)
    t.eq(delivered(token), [], "%s: nothing delivered" % label)

token, data = make("half of the logical", b"only " + LOGICAL_ONE + b" here\r\n")
r = transact(data)
t.eq(r.code, 250, "one part of the logical signature alone: 250 (the 0&1 logic is evaluated)", r)
token, data = make("clean", b"Nothing to see here.\r\n")
r = transact(data)
t.eq(r.code, 250, "a clean message: 250", r)
t.ok(wait_until(lambda: len(delivered(token)) >= 1, 10) and len(delivered(token)) == 1,
     "a clean message: delivered once")
got = delivered(token)
t.ok(got and b"X-Virus-Scanned: " in got[0], "a clean message: with X-Virus-Scanned")

t.eq(pd.stop(), 0, "posternd stops with status 0")
t.done()
