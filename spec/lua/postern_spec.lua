-- postern_spec - lua/postern/init.lua: verdicts, address lists, lookups, the chain and
-- what the rule constructors refuse at load
--
-- Run with spec/lua/run spec/lua/postern_spec.lua (TAP). The C half is a test
-- double (spec/lua/doubles.lua); spec/unit/policy_spec.c runs the library on
-- the real one.

-- spec/lua/run puts $SRCDIR/lua and spec/lua on LUA_PATH; this tree's copies come after
-- them, so a plain `busted spec/lua` from the top directory works too
local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
package.path = package.path .. ";" .. here .. "/?.lua;" .. here .. "/../../lua/?.lua;"
  .. here .. "/../../lua/?/init.lua"

local D = require "doubles"
local P = D.load_postern()

-- error_of - the error f(...) raises (the spec fails when it raises none)
local function error_of(f, ...)
  local ok, err = pcall(f, ...)
  assert(not ok, "expected an error, got none")
  return tostring(err)
end

-- has - s contains text, literally
local function has(s, text)
  return type(s) == "string" and s:find(text, 1, true) ~= nil
end

describe("verdict makers", function()
  local cases = {
    { "P.pass()", P.pass(), "pass" },
    { "P.discard()", P.discard(), "discard" },
    { "P.reject()", P.reject(), { verdict = "reject" } },
    { "P.reject(text)", P.reject("go away"), { verdict = "reject", text = "go away" } },
    { "P.reject{...}", P.reject { code = 550, enh = "5.1.1", text = "no such user" },
      { verdict = "reject", code = 550, enh = "5.1.1", text = "no such user" } },
    { "P.reject{verdict = 'pass'} stays a reject", P.reject { verdict = "pass", text = "x" },
      { verdict = "reject", text = "x" } },
    { "P.tempfail()", P.tempfail(), { verdict = "tempfail" } },
    { "P.tempfail(text)", P.tempfail("later"), { verdict = "tempfail", text = "later" } },
    { "P.tempfail{...}", P.tempfail { code = 421, enh = "4.3.2", text = "busy" },
      { verdict = "tempfail", code = 421, enh = "4.3.2", text = "busy" } },
    { "P.quarantine()", P.quarantine(), { verdict = "quarantine" } },
    { "P.quarantine(reason) sets the reason, not the text", P.quarantine("virus"),
      { verdict = "quarantine", reason = "virus" } },
    { "P.quarantine{reason =}", P.quarantine { reason = "spam" },
      { verdict = "quarantine", reason = "spam" } },
  }
  for _, c in ipairs(cases) do
    it(c[1], function() assert.are.same(c[3], c[2]) end)
  end

  it("P.reject{...} copies its argument instead of changing it", function()
    local t = { text = "x", verdict = "pass" }
    local v = P.reject(t)
    assert.are_not.equal(t, v)
    assert.are.same({ text = "x", verdict = "pass" }, t)
  end)

  describe("P.decide(rcpt, verdict)", function()
    local cases2 = {
      { "pass", "pass", nil },
      { "discard", "discard", nil },
      { "quarantine", "quarantine", nil },
      { P.quarantine("virus"), "quarantine", "virus" },
      { "reject", "reject", nil },
      { P.reject { text = "no", code = 550 }, "reject", { verdict = "reject", text = "no", code = 550 } },
      { "tempfail", "tempfail", nil },
      { P.tempfail("later"), "tempfail", { verdict = "tempfail", text = "later" } },
    }
    for _, c in ipairs(cases2) do
      it("decides " .. (type(c[1]) == "table" and "a " .. c[1].verdict .. " table" or c[1]), function()
        local r = D.rcpt("a@example.com")
        assert.is_true(P.decide(r, c[1]))
        assert.are.equal(c[2], r.verdict)
        if type(c[3]) == "table" then
          assert.are.same(c[3], r.reply)
        else
          assert.are.equal(c[3], r.reply)
        end
      end)
    end

    it("returns false for a recipient decided already, which keeps its verdict", function()
      local r = D.rcpt("a@example.com")
      r:reject("first")
      assert.is_false(P.decide(r, "pass"))
      assert.are.equal("reject", r.verdict)
    end)
  end)
end)

describe("P.addresses", function()
  -- entries, address, matches?
  local cases = {
    { { "user@example.com" }, "user@example.com", true },
    { { "user@example.com" }, "USER@Example.COM", true },
    { { "User@Example.COM" }, "user@example.com", true },
    { { "user@example.com" }, "other@example.com", false },
    { { "user@example.com" }, "user@example.org", false },
    { { "@example.com" }, "anyone@example.com", true },
    { { "@example.com" }, "anyone@sub.example.com", false },
    { { "@example.com" }, "anyone@example.com.evil.test", false },
    { { "example.com" }, "anyone@EXAMPLE.com", true },
    { { "example.com" }, "anyone@sub.example.com", false },
    { { "example.com" }, "anyone@badexample.com", false },
    { { ".example.com" }, "anyone@sub.example.com", true },
    { { ".example.com" }, "anyone@deep.sub.example.com", true },
    { { ".example.com" }, "anyone@example.com", true },
    { { ".example.com" }, "anyone@badexample.com", false },
    { { "postmaster@" }, "postmaster@any.example", true },
    { { "postmaster@" }, "PostMaster@other.example", true },
    { { "postmaster@" }, "postmaster2@any.example", false },
    { { "example.com" }, "a@b@example.com", true },
    { { "example.com", "postmaster@" }, "postmaster@x.test", true },
    { { "example.com", "postmaster@" }, "abuse@x.test", false },
    { "example.com", "a@example.com", true },
    { { ["example.com"] = true, ["boss@example.org"] = "vip" }, "x@example.com", true },
    { { ["example.com"] = true, ["boss@example.org"] = "vip" }, "boss@example.org", true },
    { { ["example.com"] = true, ["boss@example.org"] = "vip" }, "x@example.org", false },
    { { "example.com" }, "", false },
    { { "example.com" }, "example.com", false },
    { { "example.com" }, nil, false },
    { { "example.com" }, 42, false },
    { {}, "a@example.com", false },
  }
  for _, c in ipairs(cases) do
    local entries = type(c[1]) == "table" and "{ list }" or c[1]
    it(("%s matches %s: %s"):format(entries, tostring(c[2]), tostring(c[3])), function()
      assert.are.equal(c[3], P.addresses(c[1])(c[2]))
    end)
  end

  it("reads a read_table() result as its keys", function()
    local m = P.addresses { ["@example.net"] = true, [".example.org"] = "x", ["ceo@"] = "y" }
    assert.is_true(m("a@example.net"))
    assert.is_true(m("a@sub.example.org"))
    assert.is_true(m("ceo@anywhere.test"))
    assert.is_false(m("a@example.com"))
  end)

  local bad = {
    { "an empty string", { "" } },
    { "a number", { 42 } },
    { "a table", { {} } },
    { "a boolean key of a map", { [true] = true } },
  }
  for _, c in ipairs(bad) do
    it("raises on " .. c[1] .. ", naming the caller's line", function()
      local err = error_of(function() local m = P.addresses(c[2]) return m end)
      assert.is_truthy(has(err, "P.addresses: entries are non-empty strings"), err)
      assert.is_truthy(err:find("postern_spec%.lua:%d+:"), err)
    end)
  end
end)

describe("P.lookup", function()
  local tbl = {
    ["boss@example.com"] = "address",
    ["example.com"] = "domain",
    ["@other.org"] = "at-domain",
    [".example.com"] = "parent",
    [".org"] = "top",
    ["plain.test"] = true,
  }
  local reads

  before_each(function()
    reads = {}
    P.read_table = function(file)
      reads[#reads + 1] = file
      return tbl
    end
  end)

  after_each(function() P.read_table = D.core.read_table end)

  local cases = {
    { "boss@example.com", "address", "the whole address first" },
    { "Boss@Example.COM", "address", "in any case" },
    { "clerk@example.com", "domain", "then its domain" },
    { "clerk@sub.example.com", "parent", "then a parent domain" },
    { "clerk@a.b.sub.example.com", "parent", "a parent several levels up" },
    { "x@other.org", "at-domain", "an @domain key is a domain key" },
    { "x@sub.other.org", "top", "the nearest parent that has a key" },
    { "x@plain.test", true, "a key without value reads true" },
    { "x@example.net", nil, "nothing matches: nil" },
    { "example.com", "domain", "a bare domain is looked up as one" },
    { nil, nil, "nil: nil" },
    { 42, nil, "not a string: nil" },
  }
  for _, c in ipairs(cases) do
    it(("%s -> %s: %s"):format(tostring(c[1]), tostring(c[2]), c[3]), function()
      assert.are.equal(c[2], P.lookup("senders")(c[1]))
    end)
  end

  it("a domain key beats a parent key for the same domain", function()
    assert.are.equal("domain", P.lookup("senders")("x@example.com"))
  end)

  it("reads its table once, when the policy loads", function()
    local look = P.lookup("senders")
    look("a@example.com")
    look("b@example.com")
    assert.are.same({ "senders" }, reads)
  end)
end)

describe("P.policy", function()
  local function msg_with(...)
    return D.message { recipients = { ... } }
  end

  it("runs the rules in order and returns nil when none decides", function()
    local ran = {}
    local chain = P.policy {
      function() ran[#ran + 1] = 1 end,
      function() ran[#ran + 1] = 2 end,
      function() ran[#ran + 1] = 3 end,
    }
    assert.is_nil(chain(msg_with("a@example.com")))
    assert.are.same({ 1, 2, 3 }, ran)
  end)

  it("a verdict ends the chain: rules after it do not run", function()
    local ran = {}
    local v = P.reject("no")
    local chain = P.policy {
      function() ran[#ran + 1] = 1 end,
      function() ran[#ran + 1] = 2 return v end,
      function() ran[#ran + 1] = 3 end,
    }
    assert.are.equal(v, chain(msg_with("a@example.com")))
    assert.are.same({ 1, 2 }, ran)
  end)

  it("ends once every recipient is decided", function()
    local ran = {}
    local chain = P.policy {
      function(msg) for _, r in ipairs(msg.recipients) do r:reject() end end,
      function() ran[#ran + 1] = 2 end,
    }
    assert.is_nil(chain(msg_with("a@example.com", "b@example.com")))
    assert.are.same({}, ran)
  end)

  it("goes on while one recipient is undecided", function()
    local ran = {}
    local chain = P.policy {
      function(msg) msg.recipients[1]:reject() end,
      function() ran[#ran + 1] = 2 end,
    }
    chain(msg_with("a@example.com", "b@example.com"))
    assert.are.same({ 2 }, ran)
  end)

  it("does not count added (bcc) recipients as undecided", function()
    local ran = {}
    local chain = P.policy {
      function(msg) msg:add_recipient("archive@example.com") msg.recipients[1]:pass() end,
      function() ran[#ran + 1] = 2 end,
    }
    chain(msg_with("a@example.com"))
    assert.are.same({}, ran)
  end)

  it("takes a callable table as a rule", function()
    local rule = setmetatable({}, { __call = function(_, msg) msg:hit("called") end })
    local msg = msg_with("a@example.com")
    P.policy { rule }(msg)
    assert.are.same({ "called" }, D.hit_names(msg))
  end)

  it("an empty chain decides nothing", function()
    assert.is_nil(P.policy {}(msg_with("a@example.com")))
  end)

  local bad = {
    { "a string rule", { "reject" }, "rule 1 is a string, not a rule" },
    { "a number rule after a function", { function() end, 42 }, "rule 2 is a number, not a rule" },
    { "a table without __call", { {} }, "rule 1 is a table, not a rule" },
    { "a named key", { function() end, name = "x" }, "unexpected key 'name'" },
    { "a hole in the list", { function() end, nil, function() end }, "P.policy:" },
    { "a list that starts at 2", { [2] = function() end }, "P.policy:" },
    { "a fractional key", { function() end, [1.5] = function() end }, "P.policy:" },
    { "not a table", "rules", "P.policy expects a table" },
  }
  for _, c in ipairs(bad) do
    it("raises at construction on " .. c[1] .. ", naming the policy's line", function()
      local err = error_of(function() local chain = P.policy(c[2]) return chain end)
      assert.is_truthy(has(err, c[3]), err)
      assert.is_truthy(err:find("postern_spec%.lua:%d+:"), err)
    end)
  end
end)

describe("P.settings levels from a lookup file", function()
  it("takes \"8\" (a P.read_table value) as the number 8", function()
    local r = D.rcpt("user@example.com")
    local m = D.message { recipients = { r } }
    P.settings { ["example.com"] = { kill = "8", tag2 = 5 } }(m)
    assert.are.equal(8, r.settings.kill)
    assert.are.equal("number", math.type(r.settings.kill) and "number")
    assert.are.equal(5, r.settings.tag2)
  end)
end)

describe("P.policy and false", function()
  it("takes a rule's false as no verdict (cond and P.reject())", function()
    local ran = false
    local chain = P.policy { function() return false end, function() ran = true end }
    assert.is_nil(chain(D.message {}))
    assert.is_true(ran)
  end)
end)

describe("constructors refuse bad rules at load", function()
  local f = function() end
  local cases = {
    { "P.header", P.header, { field = "Subject" }, "P.header: 'pattern' is required" },
    { "P.header", P.header, { pattern = 42 }, "P.header: 'pattern' is required" },
    { "P.header", P.header, { pattern = "x", fields = "Subject" }, "P.header: unknown key 'fields'" },
    { "P.header", P.header, { pattern = "x", score = "3" }, "P.header: 'score' must be a number" },
    { "P.header", P.header, { pattern = "x", on_match = "bounce" }, "P.header: on_match: expected" },
    { "P.header", P.header, { pattern = "x", on_match = { verdict = "drop" } }, "on_match: expected" },
    { "P.header", P.header, { pattern = "x", on_match = true }, "on_match: expected" },
    { "P.header", P.header, "Subject", "P.header expects a table { ... }, got string" },
    { "P.header", P.header, { pattern = "x", flags = "q" }, "unknown regex flag" },
    { "P.bypass", P.bypass, { clients = { "127.0.0.1" } }, "P.bypass: unknown key 'clients'" },
    { "P.bypass", P.bypass, nil, "P.bypass expects a table" },
    { "P.bypass", P.bypass, { client = { "not-a-network" } }, "P.cidr: entry 1" },
    { "P.bypass", P.bypass, { sender = { "" } }, "P.addresses: entries are non-empty strings" },
    { "P.settings", P.settings, { ["example.com"] = 5 }, "P.settings: entries are address = { settings }" },
    { "P.settings", P.settings, { { tag2 = 5 } }, "P.settings: entries are address = { settings }" },
    { "P.settings", P.settings, "example.com", "P.settings expects a table" },
    { "P.score", P.score, { tag = "2" }, "P.score: 'tag' must be a number" },
    { "P.score", P.score, { tag2 = {} }, "P.score: 'tag2' must be a number" },
    { "P.score", P.score, { kill = true }, "P.score: 'kill' must be a number" },
    { "P.score", P.score, { kil = 10 }, "P.score: unknown key 'kil'" },
    { "P.score", P.score, { on_kill = "drop" }, "P.score: on_kill: expected" },
    { "P.score", P.score, 6.31, "P.score expects a table" },
    { "P.redirect", P.redirect, {}, "P.redirect: 'to' is required" },
    { "P.redirect", P.redirect, { to = "a@example.com", recipients = {} },
      "P.redirect: unknown key 'recipients'" },
    { "P.bcc", P.bcc, { when = f }, "P.bcc: 'to' is required" },
    { "P.bcc", P.bcc, { to = "a@example.com", cc = "b@example.com" }, "P.bcc: unknown key 'cc'" },
    -- what used to load and then defer every message
    { "P.header", P.header, { pattern = "x", mode = "bogus" }, "P.header: 'mode' is" },
    { "P.header", P.header, { pattern = "x", score = 0 / 0 }, "P.header: 'score' must be a number" },
    { "P.header", P.header, { pattern = "x", score = math.huge }, "P.header: 'score' must be a number" },
    { "P.header", P.header, { pattern = "x", field = true }, "P.header: field: entry 1 is a boolean" },
    { "P.header", P.header, { pattern = "x", field = { "Subject", 7 } }, "field: entry 2 is a number" },
    { "P.banned", P.banned, { type = { 1 } }, "P.banned: type: entry 1 is a number" },
    { "P.score", P.score, { subject_tag = "x\n" }, "P.score: 'subject_tag' must be a one-line string" },
    { "P.score", P.score, { kill = 1 / 0 }, "P.score: 'kill' must be a number" },
    { "P.redirect", P.redirect, { to = "not an address" }, "P.redirect: 'to': an address" },
    { "P.redirect", P.redirect, { to = "a@example.com", when = "yes" }, "P.redirect: 'when' must be a function" },
    { "P.bcc", P.bcc, { to = "" }, "P.bcc: 'to': an address" },
    { "P.bcc", P.bcc, { to = "a@b", when = true }, "P.bcc: 'when' must be a function" },
    { "P.settings", P.settings, { ["example.com"] = { kill = "eight" } },
      "P.settings: example.com: 'kill' must be a number" },
    { "P.settings", P.settings, { ["example.com"] = { subject_tag = 5 } }, "'subject_tag' must be a one-line" },
    { "P.reject", P.reject, true, "P.reject: expects a text or a table" },
  }
  for _, c in ipairs(cases) do
    it(("%s(%s): %s"):format(c[1], type(c[3]), c[4]), function()
      local err = error_of(function() local rule = c[2](c[3]) return rule end)
      assert.is_truthy(has(err, c[4]), err)
    end)
  end

  -- the line a policy author must fix is theirs, not the library's (the
  -- constructors are called inside a table, as in a policy: a tail call would
  -- leave no caller's line to name)
  local located = {
    { "P.header", function() return { P.header { field = "Subject" } } end },
    { "P.header unknown key", function() return { P.header { pattern = "x", feild = "To" } } end },
    { "P.header on_match", function() return { P.header { pattern = "x", on_match = "bounce" } } end },
    { "P.score threshold", function() return { P.score { tag = "2" } } end },
    { "P.score on_kill", function() return { P.score { on_kill = "drop" } } end },
    { "P.redirect", function() return { P.redirect {} } end },
    { "P.bcc", function() return { P.bcc { to = "a@example.com", cc = "x" } } end },
    { "P.settings", function() return { P.settings { ["example.com"] = 5 } } end },
  }
  for _, c in ipairs(located) do
    it(c[1] .. " names the policy's line", function()
      local err = error_of(c[2])
      assert.is_truthy(err:find("^[^\n]*postern_spec%.lua:%d+: P%."), err)
    end)
  end

  local good = {
    { "P.header with a verdict name",
      function() return P.header { pattern = "x", on_match = "discard" } end },
    { "P.header with a verdict table",
      function() return P.header { pattern = "x", on_match = P.reject {} } end },
    { "P.header with every key", function()
        return P.header { field = { "To", "Cc" }, pattern = "x", flags = "i", mode = "raw", score = -1,
                          on_match = "pass", name = "n" }
      end },
    { "P.score with no argument", function() return P.score() end },
    { "P.score with a verdict table", function() return P.score { on_kill = P.tempfail("later") } end },
    { "P.bypass with no criteria", function() return P.bypass {} end },
    { "P.settings empty", function() return P.settings {} end },
  }
  for _, c in ipairs(good) do
    it("accepts " .. c[1], function()
      assert.are.equal("function", type(c[2]()))
    end)
  end
end)

describe("the library's surface", function()
  it("passes the C half through", function()
    assert.are.equal(D.core.regex, P.regex)
    assert.are.equal(D.core.cidr, P.cidr)
    assert.are.equal(D.core.log, P.log)
    assert.are.equal(D.core.read_table, P.read_table)
    assert.are.equal(D.core.config, P.config)
  end)

  it("documents every function it exports with a --- P.name block", function()
    local path = package.searchpath("postern", package.path)
    local f = assert(io.open(path, "r"))
    local source = f:read("a")
    f:close()
    local missing = {}
    for name, v in pairs(P) do
      local documented = source:find("\n%-%-%- P%." .. name .. "[%s%(]")
      if type(v) == "function" and v ~= D.core[name] and not documented then
        missing[#missing + 1] = name
      end
    end
    table.sort(missing)
    assert.are.same({}, missing)
  end)
end)
