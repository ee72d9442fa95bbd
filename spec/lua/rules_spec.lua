-- rules_spec - the rules of lua/postern/init.lua on fake messages: P.header, P.bypass,
-- P.settings, P.score, P.redirect and P.bcc
--
-- Run with spec/lua/run spec/lua/rules_spec.lua (TAP). msg and rcpt are the
-- doubles of spec/lua/doubles.lua; patterns here are literal text, which the
-- regex double matches (PCRE2 itself is spec/unit/policy_spec.c's business).

-- spec/lua/run puts $SRCDIR/lua and spec/lua on LUA_PATH; this tree's copies come after
-- them, so a plain `busted spec/lua` from the top directory works too
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
package.path = package.path .. ";" .. here .. "/?.lua;" .. here .. "/../../lua/?.lua;"
  .. here .. "/../../lua/?/init.lua"

local D = require "doubles"
local P = D.load_postern()

-- has - s contains text, literally
local function has(s, text)
  return type(s) == "string" and s:find(text, 1, true) ~= nil
end

-- edits_named - the edits of a msg or rcpt that touch a field, as "op name value"
local function edits_of(o)
  local t = {}
  for _, e in ipairs(o.edits) do t[#t + 1] = table.concat(e, " ") end
  return t
end

-- header_added - the value r's copy gets for name, or nil
local function header_added(r, name)
  for _, e in ipairs(r.edits) do
    if e[1] == "add" and e[2] == name then return e[3] end
  end
  return nil
end

-- subject_tag - the tag r's copy gets, or nil
local function subject_tag(r)
  for _, e in ipairs(r.edits) do
    if e[1] == "tag_subject" then return e[3] end
  end
  return nil
end

describe("P.header", function()
  local function msg(fields)
    return D.message { headers = fields }
  end

  it("adds its score on a match of the named field, in decoded mode by default", function()
    local m = msg { { "Subject", "get FREE money now" } }
    assert.is_nil(P.header { field = "Subject", pattern = "free money", flags = "i", score = 3 }(m))
    assert.are.equal(3, m.score)
    assert.are.same({ { rule = "header:Subject", score = 3 } }, m.hits)
    assert.are.same({ "decoded" }, m.modes)
  end)

  it("records a hit without points when it has no score", function()
    local m = msg { { "Subject", "hello" } }
    P.header { field = "Subject", pattern = "hello", name = "greeting" }(m)
    assert.are.same({ { rule = "greeting", score = 0 } }, m.hits)
    assert.are.equal(0, m.score)
  end)

  it("passes mode to msg:headers", function()
    local m = msg { { "Subject", "=?UTF-8?Q?x?=" } }
    P.header { field = "Subject", pattern = "UTF-8", mode = "raw" }(m)
    assert.are.same({ "raw" }, m.modes)
    assert.are.same({ "header:Subject" }, D.hit_names(m))
  end)

  it("does nothing without a match", function()
    local m = msg { { "Subject", "hello" } }
    assert.is_nil(P.header { field = "Subject", pattern = "bye", score = 1, on_match = "reject" }(m))
    assert.are.same({}, m.hits)
  end)

  it("does nothing when the field is missing", function()
    local m = msg { { "From", "a@example.com" } }
    assert.is_nil(P.header { field = "Subject", pattern = "a", on_match = "reject" }(m))
    assert.are.same({}, m.hits)
  end)

  it("tries every field of every name in a list, and scores once", function()
    local m = msg { { "To", "a@example.com" }, { "Cc", "spam@evil-example" }, { "Cc", "spam@evil-example" } }
    P.header { field = { "To", "Cc" }, pattern = "@evil-example", score = 2 }(m)
    assert.are.equal(2, m.score)
    assert.are.same({ "header:To,Cc" }, D.hit_names(m))
  end)

  it("with on_match ends the chain with that verdict", function()
    local v = P.reject { code = 550, text = "no" }
    local m = msg { { "From", "x@evil-example" } }
    assert.are.equal(v, P.header { field = "From", pattern = "@evil-example", on_match = v }(m))
    local discard = P.header { field = "From", pattern = "@evil-example", on_match = "discard" }
    assert.are.equal("discard", discard(m))
  end)

  local every = {
    { "no field", nil },
    { "field \"*\"", "*" },
  }
  for _, c in ipairs(every) do
    it(c[1] .. ": every field as \"Name: value\", the Nth of a name its Nth value", function()
      local m = msg { { "X-Dup", "one" }, { "Subject", "s" }, { "x-dup", "two" } }
      P.header { field = c[2], pattern = "^x-dup: two$", flags = "i", name = "any" }(m)
      assert.are.same({ "any" }, D.hit_names(m))
      local miss = msg { { "X-Dup", "one" }, { "x-dup", "one" } }
      P.header { field = c[2], pattern = "^x-dup: two$", flags = "i", name = "any" }(miss)
      assert.are.same({}, miss.hits)
    end)
  end

  it("every field: reads the header in linear time (a hostile message has thousands of fields)", function()
    local fields = {}
    for i = 1, 300 do fields[i] = { "X-F" .. i % 7, "value " .. i } end
    local m = msg(fields)
    P.header { pattern = "never there" }(m)
    local calls = m.calls.header_names + m.calls.headers + m.calls.header
    assert.is_true(calls <= #fields + 1,
      ("%d calls of msg:header_names/headers for %d fields"):format(calls, #fields))
  end)

  it("counts a match that hits the match limit as no match, and logs it with the rule's name", function()
    D.limit_patterns["catastrophic"] = true
    local m = msg { { "Subject", "catastrophic" } }
    assert.is_nil(P.header { field = "Subject", pattern = "catastrophic", score = 5, on_match = "reject",
                             name = "slow" }(m))
    D.limit_patterns["catastrophic"] = nil
    assert.are.same({}, m.hits)
    assert.are.same({ "slow: regex /catastrophic/: match limit reached" }, m.logs)
  end)
end)

describe("P.bypass", function()
  local function msg(o)
    o.recipients = o.recipients or { "a@example.com", "b@example.com" }
    return D.message(o)
  end

  -- rule options, msg options, chain result, hits
  local cases = {
    { "client in the networks", { client = { "192.0.2.0/24" } }, { client = { ip = "192.0.2.9" } },
      "pass", { "bypass" } },
    { "client outside", { client = { "192.0.2.0/24" } }, { client = { ip = "198.51.100.1" } }, nil, {} },
    { "client without an ip", { client = { "192.0.2.0/24" } }, { client = {} }, nil, {} },
    { "sender on the list", { sender = { "@partner.example" } }, { sender = "x@Partner.Example" },
      "pass", { "bypass" } },
    { "null sender", { sender = { "@partner.example" } }, { sender = "" }, nil, {} },
    { "login = true and a login", { login = true }, { client = { ip = "192.0.2.1", login = "alice" } },
      "pass", { "bypass" } },
    { "login = true without one", { login = true }, { client = { ip = "192.0.2.1" } }, nil, {} },
    { "login on the list", { login = { "alice", "bob" } }, { client = { ip = "192.0.2.1", login = "bob" } },
      "pass", { "bypass" } },
    { "login not on the list", { login = { "alice" } }, { client = { ip = "192.0.2.1", login = "eve" } },
      nil, {} },
    { "a name of its own", { client = { "192.0.2.0/24" }, name = "ours" }, { client = { ip = "192.0.2.9" } },
      "pass", { "ours" } },
    { "no criteria", {}, { client = { ip = "192.0.2.9", login = "alice" } }, nil, {} },
  }
  for _, c in ipairs(cases) do
    it(c[1], function()
      local m = msg(c[3])
      assert.are.equal(c[4], P.bypass(c[2])(m))
      assert.are.same(c[5], D.hit_names(m))
      for _, r in ipairs(m.recipients) do assert.is_nil(r.verdict) end
    end)
  end

  it("recipient: only the matching recipients pass, the chain goes on", function()
    local m = msg { recipients = { "postmaster@example.com", "user@example.com", "abuse@example.org" } }
    assert.is_nil(P.bypass { recipient = { "postmaster@", "abuse@" } }(m))
    assert.are.equal("pass", m.recipients[1].verdict)
    assert.is_nil(m.recipients[2].verdict)
    assert.are.equal("pass", m.recipients[3].verdict)
    assert.are.same({ "bypass:postmaster@example.com", "bypass:abuse@example.org" }, D.hit_names(m))
  end)

  it("recipient: one decided earlier keeps its verdict and records no hit", function()
    local m = msg { recipients = { "postmaster@example.com" } }
    m.recipients[1]:reject("no")
    P.bypass { recipient = { "postmaster@" } }(m)
    assert.are.equal("reject", m.recipients[1].verdict)
    assert.are.same({}, m.hits)
  end)

  it("login = \"alice\" (one login, not a list) is refused at load or matches alice", function()
    local ok, rule = pcall(P.bypass, { login = "alice" })
    if ok then
      local m = msg { client = { ip = "192.0.2.1", login = "alice" } }
      assert.are.equal("pass", rule(m), "the rule loaded but never matches alice")
    else
      assert.is_truthy(has(rule, "login"), rule)
    end
  end)
end)

describe("P.settings", function()
  local function settings_of(map, addresses)
    local m = D.message { recipients = addresses }
    P.settings(map)(m)
    local t = {}
    for _, r in ipairs(m.recipients) do t[r.address] = r.settings end
    return t
  end

  it("copies the fields of matching entries into rcpt.settings", function()
    local s = settings_of({ ["example.com"] = { tag2 = 5, kill = 8 } }, { "a@example.com", "a@example.org" })
    assert.are.same({ tag2 = 5, kill = 8 }, s["a@example.com"])
    assert.are.same({}, s["a@example.org"])
  end)

  it("fills what the most specific entry leaves unset from the others", function()
    local s = settings_of({ ["boss@example.com"] = { spam_lover = true }, ["example.com"] = { tag2 = 5 } },
                          { "boss@example.com" })
    assert.are.same({ spam_lover = true, tag2 = 5 }, s["boss@example.com"])
  end)

  it("keeps what an earlier rule set", function()
    local m = D.message { recipients = { "a@example.com" } }
    m.recipients[1].settings.tag2 = 1
    P.settings { ["example.com"] = { tag2 = 5 } }(m)
    assert.are.equal(1, m.recipients[1].settings.tag2)
  end)

  -- the most specific wins: address, then domain, then parent domains (nearest first)
  local map = {
    ["boss@example.com"] = { level = "address" },
    ["example.com"] = { level = "domain" },
    [".example.com"] = { level = "parent" },
    ["sub.example.com"] = { level = "sub domain" },
    [".sub.example.com"] = { level = "sub parent" },
    ["postmaster@"] = { level = "local part" },
  }
  local cases = {
    { "boss@example.com", "address" },
    { "BOSS@EXAMPLE.COM", "address" },
    { "clerk@example.com", "domain" },
    { "clerk@other.example.com", "parent" },
    { "clerk@sub.example.com", "sub domain" },
    { "clerk@deep.sub.example.com", "sub parent" },
    { "clerk@example.org", nil },
  }
  for _, c in ipairs(cases) do
    it(("%s gets %s settings"):format(c[1], tostring(c[2])), function()
      assert.are.equal(c[2], settings_of(map, { c[1] })[c[1]].level)
    end)
  end

  it("an @domain entry beats a .domain entry for that domain, every time", function()
    for _ = 1, 20 do
      local s = settings_of({ ["@example.com"] = { level = "domain" },
                              [".example.com"] = { level = "parent" } }, { "a@example.com" })
      assert.are.equal("domain", s["a@example.com"].level)
    end
  end)
end)

describe("P.score", function()
  -- one recipient at score, with its settings; the rule made from opts
  local function scored(score, opts, settings, hits)
    local r = D.rcpt("user@example.com")
    for k, v in pairs(settings or {}) do r.settings[k] = v end
    local m = D.message { recipients = { r }, score = score, hits = hits }
    local result = P.score(opts)(m)
    return r, m, result
  end

  -- score, opts, settings, flag, tagged, verdict
  local cases = {
    { "below tag: no headers", 1.9, nil, nil, nil, nil, nil },
    { "at tag: headers, flag NO", 2.0, nil, nil, "NO", nil, nil },
    { "between tag and tag2", 5, nil, nil, "NO", nil, nil },
    { "at tag2 = kill: spam, tagged, quarantined", 6.31, nil, nil, "YES", "***SPAM*** ", "quarantine" },
    { "at tag2 below kill: spam, tagged, no verdict", 7, { kill = 10 }, nil, "YES", "***SPAM*** ", nil },
    { "at kill with on_kill discard", 10, { kill = 10, on_kill = "discard" }, nil, "YES", "***SPAM*** ",
      "discard" },
    { "own levels: tag 0", 0.5, { tag = 0 }, nil, "NO", nil, nil },
    { "per-recipient tag2 and kill", 7, nil, { tag2 = 8, kill = 9 }, "NO", nil, nil },
    { "per-recipient tag", 1, nil, { tag = 1 }, "NO", nil, nil },
    { "per-recipient kill", 3, nil, { kill = 3 }, "NO", nil, "quarantine" },
    { "spam_lover: headers, no tag, no verdict", 20, nil, { spam_lover = true }, "YES", nil, nil },
    { "per-recipient subject_tag", 7, { kill = 10 }, { subject_tag = "[S] " }, "YES", "[S] ", nil },
    { "subject_tag \"\": no tag", 7, { kill = 10, subject_tag = "" }, nil, "YES", nil, nil },
    { "per-recipient subject_tag \"\": no tag", 7, { kill = 10 }, { subject_tag = "" }, "YES", nil, nil },
    { "per-recipient subject_tag over a rule's \"\"", 7, { kill = 10, subject_tag = "" },
      { subject_tag = "[S] " }, "YES", "[S] ", nil },
    { "custom tag", 7, { kill = 10, subject_tag = "[SPAM] " }, nil, "YES", "[SPAM] ", nil },
    { "negative score", -3, nil, nil, nil, nil, nil },
  }
  for _, c in ipairs(cases) do
    it(c[1], function()
      local r, _, result = scored(c[2], c[3], c[4])
      assert.is_nil(result)
      assert.are.equal(c[5], header_added(r, "X-Spam-Flag"))
      assert.are.equal(c[6], subject_tag(r))
      assert.are.equal(c[7], r.verdict)
    end)
  end

  it("writes the X-Spam headers as documented", function()
    local r = scored(7.5, nil, nil, { { rule = "subject_spam_words", score = 3 },
                                      { rule = "bulk_mailer", score = 4.5 },
                                      { rule = "newsletter", score = 0 } })
    assert.are.same({
      "add X-Spam-Flag YES",
      "add X-Spam-Score 7.500",
      "add X-Spam-Level *******",
      "add X-Spam-Status Yes, score=7.500 tag=2 tag2=6.31 kill=6.31 "
        .. "tests=[subject_spam_words=3,bulk_mailer=4.5,newsletter]",
      "tag_subject Subject ***SPAM*** ",
    }, edits_of(r))
  end)

  it("cuts a long tests list at 2000 bytes with ... (a header field has a limit)", function()
    local hits = {}
    for i = 1, 500 do hits[i] = { rule = ("bypass:local:user%d@example.com"):format(i), score = 0 } end
    local r = scored(7.5, nil, nil, hits)
    local status = header_added(r, "X-Spam-Status")
    local tests = status:match("tests=%[(.*)%]$")
    assert.is_truthy(tests)
    assert.is_true(#tests <= 2000, "tests=[...] is " .. #tests .. " bytes")
    assert.are.equal(",...", tests:sub(-4))
    assert.are.equal("bypass:local:user1@example.com,", tests:sub(1, 31))
  end)

  local levels = { { 2.5, "**" }, { 3.999, "***" }, { 0.2, "" }, { 75, ("*"):rep(50) } }
  for _, c in ipairs(levels) do
    it(("X-Spam-Level for %s has %d stars"):format(c[1], #c[2]), function()
      local r = scored(c[1], { tag = -100, tag2 = 1000, kill = 1000 })
      assert.are.equal(c[2], header_added(r, "X-Spam-Level"))
    end)
  end

  it("removes X-Spam-* fields the message came with, before anything else, even below tag", function()
    for _, score in ipairs({ 0, 7 }) do
      local _, m = scored(score)
      assert.are.same({ "remove X-Spam-Flag", "remove X-Spam-Score", "remove X-Spam-Level",
                        "remove X-Spam-Status" }, edits_of(m))
    end
  end)

  it("records the kill as name:kill:address", function()
    local _, m = scored(9, { name = "spamlevels" })
    assert.are.same({ "spamlevels:kill:user@example.com" }, D.hit_names(m))
  end)

  it("on_kill takes a verdict table, with its reply", function()
    local r = scored(9, { on_kill = P.reject { code = 550, text = "spam" } })
    assert.are.equal("reject", r.verdict)
    assert.are.same({ verdict = "reject", code = 550, text = "spam" }, r.reply)
  end)

  it("leaves decided recipients alone, except passed ones get the headers", function()
    local rejected, passed, open = D.rcpt("a@example.com"), D.rcpt("b@example.com"), D.rcpt("c@example.com")
    rejected:reject("no")
    passed:pass()
    local m = D.message { recipients = { rejected, passed, open }, score = 9 }
    P.score {}(m)
    assert.are.same({}, rejected.edits)
    assert.are.equal("reject", rejected.verdict)
    assert.are.equal("YES", header_added(passed, "X-Spam-Flag"))
    assert.are.equal("pass", passed.verdict)
    assert.are.equal("quarantine", open.verdict)
    assert.are.same({ "score:kill:c@example.com" }, D.hit_names(m))
  end)

  it("treats each recipient with its own levels", function()
    local a, b = D.rcpt("a@example.com"), D.rcpt("b@example.com")
    b.settings.spam_lover = true
    local m = D.message { recipients = { a, b }, score = 8 }
    P.score {}(m)
    assert.are.equal("quarantine", a.verdict)
    assert.is_nil(b.verdict)
    assert.are.equal("***SPAM*** ", subject_tag(a))
    assert.is_nil(subject_tag(b))
  end)
end)

describe("P.redirect", function()
  it("redirects every recipient when there is no list, and records a hit", function()
    local m = D.message { recipients = { "a@example.com", "b@example.org" } }
    assert.is_nil(P.redirect { to = "help@example.com" }(m))
    assert.are.equal("help@example.com", m.recipients[1].forward_to)
    assert.are.equal("help@example.com", m.recipients[2].forward_to)
    assert.are.same({ "redirect:help@example.com" }, D.hit_names(m))
  end)

  it("redirects only the recipients on its list", function()
    local m = D.message { recipients = { "j.smith@example.com", "other@example.com" } }
    P.redirect { recipient = { "j.smith@example.com" }, to = "help@example.com", name = "smith" }(m)
    assert.are.equal("help@example.com", m.recipients[1].forward_to)
    assert.is_nil(m.recipients[2].forward_to)
    assert.is_nil(m.recipients[1].verdict, "a redirect is not a decision")
    assert.are.same({ "smith" }, D.hit_names(m))
  end)

  it("leaves added copies alone", function()
    local m = D.message { recipients = { "a@example.com" } }
    m:add_recipient("archive@example.com")
    P.redirect { to = "help@example.com" }(m)
    assert.is_nil(m.recipients[2].forward_to)
  end)

  it("does nothing when when(msg) is false", function()
    local m = D.message { recipients = { "a@example.com" } }
    local seen
    P.redirect { to = "help@example.com", when = function(x) seen = x return false end }(m)
    assert.are.equal(m, seen)
    assert.is_nil(m.recipients[1].forward_to)
    assert.are.same({}, m.hits)
  end)

  it("records no hit when no recipient was redirected", function()
    local m = D.message { recipients = { "a@example.com" } }
    P.redirect { recipient = { "nobody@example.com" }, to = "help@example.com" }(m)
    assert.are.same({}, m.hits)
  end)
end)

describe("P.bcc", function()
  it("adds a copy and records a hit", function()
    local m = D.message { recipients = { "a@example.com" } }
    assert.is_nil(P.bcc { to = "archive@example.com" }(m))
    assert.are.equal(2, #m.recipients)
    assert.are.equal("archive@example.com", m.recipients[2].address)
    assert.is_true(m.recipients[2].added)
    assert.are.same({ "bcc:archive@example.com" }, D.hit_names(m))
  end)

  it("does nothing when when(msg) is false", function()
    local m = D.message { recipients = { "a@example.com" } }
    P.bcc { to = "archive@example.com", name = "archive", when = function() return false end }(m)
    assert.are.equal(1, #m.recipients)
    assert.are.same({}, m.hits)
  end)

  it("a bcc in the chain does not keep the chain waiting", function()
    local ran = false
    local m = D.message { recipients = { "a@example.com" } }
    P.policy {
      P.bcc { to = "archive@example.com" },
      function(msg) msg.recipients[1]:pass() end,
      function() ran = true end,
    }(m)
    assert.is_false(ran)
  end)
end)
