"""The man pages render without warnings and document every key, option and command.

Pins:
  - every doc/*.[0-9] renders with `groff -z -ww -man` without a word of output
    (a warning is a page that shows wrong somewhere);
  - every key `posternd -k` prints has an entry (a .TP tag) in postern.conf(5),
    under GLOBAL KEYS or LISTENER KEYS as -k says, and the entry gives the
    default -k prints ("default 64M"; build-dependent paths aside); an entry
    there for a key -k does not print is stale and fails too; and its EXAMPLE
    is etc/postern.conf as it is;
  - every option letter of posternd's usage text has an entry under OPTIONS of
    posternd(8);
  - every command of postern's usage text ("test", "quarantine list", ...) has a
    section ".SS postern COMMAND" in postern(1), and every option of the usage
    text (-c, -V, --rcpt, --keep, ...) an entry there.
So adding a key, an option or a command without documenting it fails `make check`.

groff comes with man-db on Debian; without it the spec is skipped. Python standard
library only; SRCDIR, POSTERND and POSTERN are set by `make check`.
"""
import glob
import os
import re
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "e2e"))
from harness import POSTERND, SRCDIR, skip_all, t  # noqa: E402

POSTERN = os.environ.get("POSTERN", os.path.join(os.path.dirname(POSTERND), "postern"))
CONF_PAGE = "doc/postern.conf.5"
DAEMON_PAGE = "doc/posternd.8"
COMMAND_PAGE = "doc/postern.1"
KEY_SECTIONS = {"global": "GLOBAL KEYS", "listener": "LISTENER KEYS"}

if shutil.which("groff") is None:
    skip_all("groff not installed")


def run(argv):
    """(exit status, stdout + stderr) of argv, or (None, why) when it cannot run."""
    try:
        p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           stdin=subprocess.DEVNULL, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        return None, "cannot run %s: %s" % (" ".join(argv), e)
    return p.returncode, p.stdout.decode("utf-8", "replace")


def read(rel):
    path = os.path.join(SRCDIR, rel)
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError as e:
        t.bail("cannot read %s: %s" % (path, e))


# ---------------------------------------------------------------- roff to words
ESCAPES = {"aq": "'", "dq": '"', "ga": "`", "ha": "^", "ti": "~", "em": "--", "en": "-",
           "bu": "*", "lq": '"', "rq": '"'}


def plain(s):
    """Text of a roff line with font changes and escapes undone."""
    s = re.sub(r"\\f(\[[^\]]*\]|\(..|.)", "", s)
    s = re.sub(r"\\\((..)", lambda m: ESCAPES.get(m.group(1), ""), s)
    s = re.sub(r"\\[&%]", "", s)
    s = s.replace("\\-", "-").replace("\\ ", " ").replace("\\e", "\\")
    return s


def macro_args(rest):
    """The arguments of a macro line: blank-separated, "..." quoted."""
    args, cur, quoted, i = [], "", False, 0
    while i < len(rest):
        c = rest[i]
        if quoted:
            if c == '"' and rest[i + 1:i + 2] == '"':
                cur += '"'
                i += 1
            elif c == '"':
                quoted = False
            else:
                cur += c
        elif c == '"' and cur == "":
            quoted = True
        elif c in " \t":
            if cur:
                args.append(cur)
            cur = ""
        else:
            cur += c
        i += 1
    if cur or quoted:
        args.append(cur)
    return args


def line_text(line):
    """What a source line prints: text lines as they are, font macros' arguments."""
    m = re.match(r"^\.(B|I|R|SM|SB|BI|BR|IB|IR|RB|RI)(?:\s+(.*))?$", line)
    if m is None:
        return plain(line)
    args = macro_args(m.group(2) or "")
    sep = " " if m.group(1) in ("B", "I", "R", "SM", "SB") else ""
    return plain(sep.join(args))


def structure(src):
    """[(section, subsection, tag, body)] of every .TP/.TQ entry of a page, and
    [(section, subsection title)] of every .SS."""
    lines = [l for l in src.split("\n") if not l.startswith('.\\"') and not l.startswith("'\\\"")]
    entries, subsections = [], []
    sh = ss = None
    i = 0
    while i < len(lines):
        line = lines[i]
        m = re.match(r"^\.(SH|SS)\s+(.*)$", line)
        if m:
            title = plain(" ".join(macro_args(m.group(2))))
            if m.group(1) == "SH":
                sh, ss = title, None
            else:
                ss = title
                subsections.append((sh, title))
            i += 1
            continue
        if re.match(r"^\.(TP|TQ)\b", line) and i + 1 < len(lines):
            tag = line_text(lines[i + 1]).strip()
            body, j = [], i + 2
            while j < len(lines) and not re.match(r"^\.(TP|TQ|SH|SS)\b", lines[j]):
                if not lines[j].startswith("."):
                    body.append(line_text(lines[j]))
                elif re.match(r"^\.(B|I|BI|BR|IB|IR|RB|RI)\b", lines[j]):
                    body.append(line_text(lines[j]))
                j += 1
            entries.append((sh, ss, tag, " ".join(body)))
            i += 2
            continue
        i += 1
    return entries, subsections


# ---------------------------------------------------------------- every page renders
pages = sorted(glob.glob(os.path.join(SRCDIR, "doc", "*.[0-9]")))
t.ok(len(pages) >= 4, "found the man pages (%s)" % ", ".join(os.path.basename(p) for p in pages),
     "expected postern.1, postern.conf.5, postern-lua.7 and posternd.8 in doc/")
for page in pages:
    rc, out = run(["groff", "-z", "-ww", "-man", page])
    t.ok(rc == 0 and out == "", "%s renders without warnings (groff -z -ww -man)"
         % os.path.relpath(page, SRCDIR), out if out else "exit status %r" % rc)

# ---------------------------------------------------------------- postern.conf(5): every key
conf_entries, _ = structure(read(CONF_PAGE))
rc, out = run([POSTERND, "-k"])
keys = []                               # (section, key, default)
if t.ok(rc == 0, "%s -k runs" % POSTERND, out):
    for line in out.splitlines():
        f = line.split("\t")
        if len(f) >= 3 and f[0] in KEY_SECTIONS:
            keys.append((f[0], f[1], f[2]))
t.ok(len(keys) >= 20, "posternd -k lists the keys (%d)" % len(keys),
     "has the format of posternd -k (section TAB key TAB default TAB doc) changed?")

for section, title in sorted(KEY_SECTIONS.items()):
    t.ok(any(e[0] == title for e in conf_entries), "%s has a section %s" % (CONF_PAGE, title))

for section, key, default in keys:
    title = KEY_SECTIONS[section]
    found = [e for e in conf_entries if e[0] == title and e[2].split()[0:1] == [key]]
    if not t.ok(found, "%s key %s has an entry under %s in %s" % (section, key, title, CONF_PAGE),
                "add \".TP\" \".B %s\" with its type, default and meaning" % key):
        continue
    if default == "-" or default.startswith("/"):
        continue                        # none, or a path of the build
    body = found[0][3]
    t.ok(re.search(r"\bdefault\s+%s(?!\w)" % re.escape(default), body) is not None,
         "%s: the entry of %s gives its default %s" % (CONF_PAGE, key, default),
         "the entry says: %s" % body[:400])

# the EXAMPLE is the bundled file, byte for byte
def first_difference(a, b):
    """The number of the first line where texts a and b differ."""
    la, lb = a.split("\n"), b.split("\n")
    return next((i + 1 for i, (x, y) in enumerate(zip(la, lb)) if x != y),
                min(len(la), len(lb)) + 1)


m = re.search(r"^\.SH EXAMPLE\n.*?^\.EX\n(.*?)^\.EE$", read(CONF_PAGE), re.M | re.S)
shown, bundled = plain(m.group(1)) if m else "", read("etc/postern.conf")
t.ok(shown == bundled, "%s: the first example under EXAMPLE is etc/postern.conf" % CONF_PAGE,
     "copy etc/postern.conf there (- as \\-, ' as \\(aq, ` as \\(ga); they differ from line %d"
     % first_difference(shown, bundled))

known = {(KEY_SECTIONS[s], k) for s, k, _ in keys}
if keys:
    for sh, ss, tag, body in conf_entries:
        if sh in KEY_SECTIONS.values():
            name = (tag.split() or [""])[0]
            t.ok((sh, name) in known, "%s: %s %s is a key posternd -k lists" % (CONF_PAGE, sh, name),
                 "a stale entry, or a key missing from config.c's tables")

# ---------------------------------------------------------------- posternd(8): every option
daemon_entries, _ = structure(read(DAEMON_PAGE))
rc, out = run([POSTERND, "-h"])          # any unknown option prints the usage text
usage = "\n".join(l for l in out.splitlines() if "posternd" in l)
letters = sorted(set(re.findall(r"(?<![\w-])-([A-Za-z])\b", usage)))
t.ok(len(letters) >= 5, "posternd's usage text lists its options (%s)" % " ".join(
    "-" + c for c in letters), out)
for c in letters:
    t.ok(any(e[0] == "OPTIONS" and e[2].startswith("-" + c) for e in daemon_entries),
         "posternd option -%s has an entry under OPTIONS in %s" % (c, DAEMON_PAGE))

# ---------------------------------------------------------------- postern(1): every command
cmd_entries, cmd_subsections = structure(read(COMMAND_PAGE))
rc, out = run([POSTERN, "-h"])
t.ok(rc == 0, "%s -h prints the usage text" % POSTERN, out)
commands, options = [], set()
for line in out.splitlines():
    m = re.match(r"^\s*(?:usage:\s*)?postern\s+(.*)$", line)
    if m is None:
        continue
    words = m.group(1).replace("[-c FILE]", "").split()
    name = []
    for w in words:
        if not re.fullmatch(r"[a-z][a-z-]*", w):
            break
        name.append(w)
    if name:
        commands.append(" ".join(name))
    options.update(re.findall(r"(?<![\w-])(--[a-z][a-z-]*|-[A-Za-z])\b", m.group(1)))
t.ok(len(commands) >= 4, "postern's usage text lists its commands (%s)" % ", ".join(commands), out)
for cmd in commands:
    t.ok(("COMMANDS", "postern " + cmd) in cmd_subsections,
         "postern %s has a section in %s" % (cmd, COMMAND_PAGE),
         "add \".SS postern %s\" under COMMANDS" % cmd)
for opt in sorted(options):
    t.ok(any(e[2].split()[0:1] == [opt] for e in cmd_entries),
         "postern option %s has an entry in %s" % (opt, COMMAND_PAGE))

t.done()
