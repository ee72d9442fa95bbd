"""Every Lua-visible name of the policy API has a doc block, and postern-lua(7) documents it.

Pins, for the sources of the policy API (lua/postern/init.lua and the C classes
daemon/lua_*.c: lua_msg.c, lua_core.c, lua_scan.c):
  - every name of a `--- name` doc block (`--- P.header { ... }`, `--- msg:header(...)`,
    `--- msg.id, msg.sender, ...`, ` * --- rcpt:pass() -> decided` in a C comment)
    appears in doc/postern-lua.7;
  - every constructor or value the library exports (`function P.x` or `P.x =` at
    the start of a line of init.lua) has a doc block;
  - every method and field the C classes register (the luaL_Reg tables
    msg_methods, rcpt_methods, regex_methods, cidr_methods, core_functions, the
    scanner methods of lua_scan.c, and the keys msg_index() and rcpt_index()
    answer) has a doc block;
  - every field of a MIME part (msg_parts()), of msg.client (client_table()) and
    of a msg:files() entry (push_file()) appears in doc/postern-lua.7 as
    part.NAME / part:NAME / msg.client.NAME / file.NAME.
A name that is found nowhere fails with the file and line it comes from, so
adding a function to the API without documenting it fails `make check`.

Python standard library only; SRCDIR (set by `make check`) is the source tree.
"""
import glob
import os
import re
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "e2e"))
from harness import SRCDIR, t  # noqa: E402

REQUIRED = ["lua/postern/init.lua", "daemon/lua_msg.c", "daemon/lua_core.c"]
SOURCES = REQUIRED + sorted(
    set(os.path.relpath(p, SRCDIR) for p in glob.glob(os.path.join(SRCDIR, "daemon", "lua_*.c")))
    - set(REQUIRED))
MANPAGE = "doc/postern-lua.7"
NAME = r"[A-Za-z_]\w*(?:[.:][A-Za-z_]\w*)+"

# luaL_Reg table -> how its entries are spelt in Lua
REG_TABLES = {
    "daemon/lua_msg.c": [("msg_methods", "msg:"), ("rcpt_methods", "rcpt:")],
    "daemon/lua_core.c": [("regex_methods", "regex:"), ("cidr_methods", "cidr:"),
                          ("core_functions", "P.")],
    "daemon/lua_scan.c": [("methods", "msg:")],         # lua_scan_methods(): msg:clamav() ...
}
# __index functions whose strcmp(key, "x") branches are fields
INDEX_FUNCTIONS = [("daemon/lua_msg.c", "msg_index", "msg."),
                   ("daemon/lua_msg.c", "rcpt_index", "rcpt.")]
# functions that build the tables of plain fields a policy reads
TABLE_BUILDERS = [("daemon/lua_msg.c", "msg_parts", "part"),
                  ("daemon/lua_msg.c", "client_table", "msg.client"),
                  ("daemon/lua_scan.c", "push_file", "file")]


def read(rel):
    path = os.path.join(SRCDIR, rel)
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError as e:
        t.bail("cannot read %s: %s" % (path, e))


def doc_lines(rel, text):
    """(line number, signature text) of every `--- ` line of a doc block; a
    signature whose brackets are still open goes on on the next `---` line."""
    pat = re.compile(r"^---\s+(.*)$" if rel.endswith(".lua") else r"^\s*\*\s*---\s+(.*)$")
    start, sig = None, ""
    for n, line in enumerate(text.split("\n"), 1):
        m = pat.match(line)
        if not m:
            if start is not None:
                yield start, sig
            start, sig = None, ""
            continue
        if start is None:
            start, sig = n, m.group(1).strip()
        else:
            sig += " " + m.group(1).strip()
        if sum(sig.count(c) for c in "({[") == sum(sig.count(c) for c in ")}]"):
            yield start, sig
            start, sig = None, ""
    if start is not None:
        yield start, sig


def names_of(sig):
    """The API names a signature line declares, or None when it declares none.

    "P.regex(pattern [, flags]) -> regex" -> ["P.regex"]; "msg.id, msg.sender," ->
    ["msg.id", "msg.sender"]; "P.header { field =, ... }" -> ["P.header"].
    """
    head = re.split(r"\s*->\s*", sig, maxsplit=1)[0]
    head = re.split(r"[\s]*[({\[]", head, maxsplit=1)[0]
    names = []
    for piece in head.split(","):
        piece = piece.strip()
        if not piece:
            continue
        if not re.fullmatch(NAME, piece):
            return None
        names.append(piece)
    return names or None


def function_body(text, fname):
    """The body of the C function fname (from its name at a line start to the next
    line that is a lone "}"), or None."""
    m = re.search(r"^%s\(.*?^\}$" % re.escape(fname), text, re.M | re.S)
    return m.group(0) if m else None


def reg_entries(text, table):
    """The Lua names of a luaL_Reg table, or None when the table is not there."""
    m = re.search(r"luaL_Reg\s+%s\[\]\s*=\s*\{(.*?)\};" % re.escape(table), text, re.S)
    if m is None:
        return None
    return re.findall(r'\{\s*"(\w+)"\s*,', m.group(1))


def man_text(src):
    """The man page's words with roff escapes undone and comments dropped."""
    lines = [l for l in src.split("\n") if not l.startswith('.\\"') and not l.startswith("'\\\"")]
    s = "\n".join(lines)
    s = re.sub(r"\\f(\[[^\]]*\]|\(..|.)", "", s)     # font changes
    s = re.sub(r"\\[&%]", "", s)                     # zero-width, no-hyphenation
    s = s.replace("\\-", "-").replace("\\e", "\\")
    s = re.sub(r"\\\((aq|dq|ga|ha|ti)", lambda m: {"aq": "'", "dq": '"', "ga": "`",
                                                   "ha": "^", "ti": "~"}[m.group(1)], s)
    return s


def in_man(name, text):
    return re.search(r"(?<![\w.:])%s(?!\w)" % re.escape(name), text) is not None


# ---------------------------------------------------------------- doc blocks
documented = {}          # name -> "file:line" of its (first) doc block
texts = {rel: read(rel) for rel in SOURCES}
t.ok(True, "doc blocks read from %s" % ", ".join(SOURCES))
for rel in SOURCES:
    for line_no, sig in doc_lines(rel, texts[rel]):
        names = names_of(sig)
        where = "%s:%d" % (rel, line_no)
        if names is None:
            # a file's title line ("--- postern - the Lua library ...") declares no name
            t.ok(re.match(r"^\w+ - ", sig) is not None,
                 "%s: doc block line declares API names or is the file's title" % where,
                 "cannot read a name from %r" % sig)
            continue
        for name in names:
            documented.setdefault(name, where)

t.ok(len(documented) >= 40, "found the doc blocks (%d names)" % len(documented),
     "only %r: has the doc block format changed?" % sorted(documented))

man = man_text(read(MANPAGE))
for name in sorted(documented):
    t.ok(in_man(name, man), "%s (%s) is documented in %s" % (name, documented[name], MANPAGE))

# ---------------------------------------------------------------- init.lua exports
init = texts["lua/postern/init.lua"]
exported = {}
for n, line in enumerate(init.split("\n"), 1):
    m = re.match(r"^(?:function\s+P\.(\w+)\s*\(|P\.(\w+)\s*=)", line)
    if m:
        exported.setdefault("P." + (m.group(1) or m.group(2)), n)
t.ok(len(exported) >= 15, "found the exports of init.lua (%d)" % len(exported),
     "only %r" % sorted(exported))
for name, n in sorted(exported.items()):
    t.ok(name in documented, "%s (lua/postern/init.lua:%d) has a doc block" % (name, n),
         "add a \"--- %s ...\" doc block above it (and document it in %s)" % (name, MANPAGE))

# ---------------------------------------------------------------- what the C classes register
for rel, tables in sorted(REG_TABLES.items()):
    if rel not in texts and rel not in REQUIRED:
        continue                        # an optional class not in this tree
    for table, prefix in tables:
        entries = reg_entries(texts[rel], table)
        if not t.ok(entries, "%s: %s[] found" % (rel, table),
                    "the spec reads the luaL_Reg table %s[]; update REG_TABLES" % table):
            continue
        for e in entries:
            name = prefix + e
            t.ok(name in documented, "%s (%s[] in %s) has a doc block" % (name, table, rel),
                 "add \"--- %s\" above the C function" % name)

for rel, fname, prefix in INDEX_FUNCTIONS:
    body = function_body(texts[rel], fname)
    if not t.ok(body, "%s: %s() found" % (rel, fname)):
        continue
    keys = re.findall(r'strcmp\(key,\s*"(\w+)"\)', body)
    t.ok(keys, "%s() answers some keys" % fname)
    for k in keys:
        name = prefix + k
        t.ok(name in documented, "%s (%s() in %s) has a doc block" % (name, fname, rel),
             "add %s to the \"--- %s...\" doc block above %s()" % (name, prefix, fname))

# ---------------------------------------------------------------- part and client tables
for rel, fname, prefix in TABLE_BUILDERS:
    if rel not in texts:
        continue
    body = function_body(texts[rel], fname)
    if not t.ok(body, "%s: %s() found" % (rel, fname)):
        continue
    fields = []
    pushed_function = False
    for line in body.split("\n"):
        if "lua_pushcclosure" in line or "lua_pushcfunction" in line:
            pushed_function = True
        m = (re.search(r'lua_setfield\(L,\s*-2,\s*"(\w+)"\)', line)
             or re.search(r'set_string_field\(L,\s*"(\w+)"', line))
        if m and not m.group(1).startswith("__"):
            fields.append(prefix + (":" if pushed_function else ".") + m.group(1))
            pushed_function = False
    t.ok(fields, "%s() sets some fields" % fname)
    for name in fields:
        t.ok(in_man(name, man), "%s (set by %s() in %s) is documented in %s"
             % (name, fname, rel, MANPAGE))

t.done()
