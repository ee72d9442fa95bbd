--- doubles - stand-ins for the C half of postern, so busted can run lua/postern alone
--
-- The daemon gives the library the module "postern.core" (lua_core.c: regex,
-- cidr, log, read_table, config) and the msg and rcpt objects (lua_msg.c).
-- Here they are small Lua tables that keep the documented contract and
-- record what the library did with them; they isolate the library from C and
-- nothing else. The real PCRE2, CIDR and
-- message paths are covered by spec/unit/policy_spec.c.
--
--   local D = require "doubles"
--   local P = D.load_postern()          -- a fresh require "postern" over the doubles
--   local msg = D.message { recipients = { "a@example.com" }, headers = { ... } }
--
-- What the doubles do not do, they refuse loudly: the regex double knows
-- literal text with ^ and $ and the i flag, the cidr double IPv4 only, and
-- read_table must be stubbed by the spec (P.read_table = function ... end).

local D = {}

-- core -------------------------------------------------------------------------

--- D.logged: every core.log call, as { level, text }
D.logged = {}

--- D.limit_patterns[pattern] = true: re:match/re:find on it hit the match limit
D.limit_patterns = {}

--- D.config: what core.config() returns (P.config; P.spamd's defaults)
D.config = { local_domains = {}, spamd_on_error = "pass" }

local SPECIAL = "[%\\%[%]%(%){}%.%*%+%?|%^%$]"

local Regex = {}
Regex.__index = Regex

local function regex(pattern, flags)
  assert(type(pattern) == "string", "regex double: pattern must be a string")
  flags = flags or ""
  if flags:find("[^imsx]") then
    error("P.regex(\"" .. pattern .. "\"): unknown regex flag in \"" .. flags .. "\" (use i, m, s, x)", 2)
  end
  if flags:find("[msx]") then
    error("regex double: only the i flag is simulated (use the C spec for " .. flags .. ")", 2)
  end
  local body = pattern:gsub("^%^", ""):gsub("%$$", "")
  if body:find(SPECIAL) then
    error("regex double: only literal text with ^ and $ is simulated, not /" .. pattern .. "/", 2)
  end
  local caseless = flags:find("i", 1, true) ~= nil
  return setmetatable({
    pattern = pattern,
    text = caseless and body:lower() or body,
    caseless = caseless,
    anchored_start = pattern:sub(1, 1) == "^",
    anchored_end = pattern:sub(-1) == "$" and #pattern > 1,
  }, Regex)
end

-- locate - start and end of the first match, or nil
function Regex:locate(s)
  assert(type(s) == "string", "regex double: subject must be a string")
  if self.caseless then s = s:lower() end
  local t = self.text
  if self.anchored_start and self.anchored_end then
    if s == t then return 1, #s end
    return nil
  elseif self.anchored_start then
    if s:sub(1, #t) == t then return 1, #t end
    return nil
  elseif self.anchored_end then
    if #t <= #s and s:sub(#s - #t + 1) == t then return #s - #t + 1, #s end
    return nil
  end
  return s:find(t, 1, true)
end

--- re:match(s) -> true | false | nil, error (no captures: the double has no groups)
function Regex:match(s)
  if D.limit_patterns[self.pattern] then
    return nil, "regex /" .. self.pattern .. "/: match limit reached"
  end
  return self:locate(s) ~= nil
end

--- re:find(s) -> start, end | nil [, error]
function Regex:find(s)
  if D.limit_patterns[self.pattern] then
    return nil, "regex /" .. self.pattern .. "/: match limit reached"
  end
  return self:locate(s)
end

local Cidr = {}
Cidr.__index = Cidr

-- ipv4 - the address as a number, or nil
local function ipv4(s)
  if type(s) ~= "string" then return nil end
  local a, b, c, d = s:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
  if not a then return nil end
  local n = 0
  for _, x in ipairs({ a, b, c, d }) do
    x = tonumber(x)
    if x > 255 then return nil end
    n = n * 256 + x
  end
  return n
end

local function cidr(list)
  if type(list) == "string" then list = { list } end
  assert(type(list) == "table", "cidr double: a list of networks")
  local nets = {}
  for i, entry in ipairs(list) do
    local addr, bits = tostring(entry):match("^([^/]+)/?(%d*)$")
    local n = ipv4(addr)
    bits = bits == "" and 32 or tonumber(bits)
    if not n or not bits or bits > 32 then
      error("P.cidr: entry " .. i .. " (" .. tostring(entry) .. ") is not a network"
            .. " (the double knows IPv4 only)", 2)
    end
    local size = 2 ^ (32 - bits)
    nets[#nets + 1] = { first = n - n % size, size = size }
  end
  return setmetatable({ nets = nets }, Cidr)
end

--- cidr:match(ip) -> boolean
function Cidr:match(ip)
  local n = ipv4(ip)
  if not n then return false end
  for _, net in ipairs(self.nets) do
    if n >= net.first and n < net.first + net.size then return true end
  end
  return false
end

D.core = {
  regex = regex,
  cidr = cidr,
  log = function(level, ...)
    local parts = {}
    for i = 1, select("#", ...) do parts[#parts + 1] = tostring((select(i, ...))) end
    D.logged[#D.logged + 1] = { level, table.concat(parts, " ") }
  end,
  config = function() return D.config end,
  -- the daemon checks verdict tables as the chain's result is checked (lua_msg.c);
  -- the double accepts them all: the real check is policy_spec's business
  verdict_problem = function() return nil end,
  read_table = function(file)
    error("read_table double: stub P.read_table in the spec (asked for " .. tostring(file) .. ")", 2)
  end,
}

--- D.load_postern() -> P
-- A fresh copy of the library over the core double (busted insulates files,
-- not tests: a spec that stubs P.read_table gets its own copy this way).
function D.load_postern()
  package.preload["postern.core"] = function() return D.core end
  package.loaded["postern.core"] = nil
  package.loaded["postern"] = nil
  return require("postern")
end

-- rcpt ---------------------------------------------------------------------------

local Rcpt = {}
Rcpt.__index = Rcpt

--- D.rcpt(address [, fields]) -> rcpt
-- address, local, domain (lower case), verdict (nil until decided), settings,
-- added; reply (the table or reason given with the decision), forward_to and
-- edits record what the library asked for.
function D.rcpt(address, fields)
  local localpart, domain = address:match("^(.*)@([^@]*)$")
  local r = setmetatable({
    address = address,
    ["local"] = localpart or address,
    domain = (domain or ""):lower(),
    settings = {},
    added = false,
    edits = {},
  }, Rcpt)
  for k, v in pairs(fields or {}) do r[k] = v end
  return r
end

-- decide - a decision sticks: later calls return false (lua_msg.c decide())
local function decide(r, verdict, reply)
  if r.verdict ~= nil then return false end
  r.verdict, r.reply = verdict, reply
  return true
end

-- reply_table - rcpt:reject("text", code, enh) or rcpt:reject{ ... }
local function reply_table(t, code, enh)
  if type(t) == "table" or (t == nil and code == nil and enh == nil) then return t end
  return { text = t, code = code, enh = enh }
end

function Rcpt:pass() return decide(self, "pass") end
function Rcpt:discard() return decide(self, "discard") end
function Rcpt:quarantine(reason) return decide(self, "quarantine", reason) end
function Rcpt:reject(t, code, enh) return decide(self, "reject", reply_table(t, code, enh)) end
function Rcpt:tempfail(t, code, enh) return decide(self, "tempfail", reply_table(t, code, enh)) end
function Rcpt:redirect(address) self.forward_to = address end
function Rcpt:add_header(name, value) self.edits[#self.edits + 1] = { "add", name, value } end
function Rcpt:remove_header(name) self.edits[#self.edits + 1] = { "remove", name } end
function Rcpt:replace_header(name, value) self.edits[#self.edits + 1] = { "replace", name, value } end
function Rcpt:tag_subject(tag) self.edits[#self.edits + 1] = { "tag_subject", "Subject", tag } end

-- msg ----------------------------------------------------------------------------

local Msg = {}
Msg.__index = Msg

--- D.message { sender =, client =, recipients = { address | rcpt, ... },
---             headers = { { name, value }, ... }, score =, hits = }
-- calls[method] counts calls of header, headers and header_names; modes
-- lists the modes asked for; edits, logs record what the library did.
function D.message(o)
  o = o or {}
  local m = setmetatable({
    id = "TESTID000001",
    sender = o.sender or "sender@example.org",
    client = o.client or { ip = "192.0.2.1" },
    recipients = {},
    fields = o.headers or {},
    score = o.score or 0,
    hits = {},
    edits = {},
    logs = {},
    calls = { header = 0, headers = 0, header_names = 0 },
    modes = {},
  }, Msg)
  for _, r in ipairs(o.recipients or { "rcpt@example.com" }) do
    m.recipients[#m.recipients + 1] = type(r) == "string" and D.rcpt(r) or r
  end
  for _, h in ipairs(o.hits or {}) do m.hits[#m.hits + 1] = h end
  return m
end

function Msg:header(name, mode)
  self.calls.header = self.calls.header + 1
  self.modes[#self.modes + 1] = mode or "decoded"
  for _, f in ipairs(self.fields) do
    if f[1]:lower() == name:lower() then return f[2] end
  end
  return nil
end

function Msg:headers(name, mode)
  self.calls.headers = self.calls.headers + 1
  self.modes[#self.modes + 1] = mode or "decoded"
  local t = {}
  for _, f in ipairs(self.fields) do
    if f[1]:lower() == name:lower() then t[#t + 1] = f[2] end
  end
  return t
end

function Msg:header_names()
  self.calls.header_names = self.calls.header_names + 1
  local t = {}
  for i, f in ipairs(self.fields) do t[i] = f[1] end
  return t
end

function Msg:add_score(points, rule)
  self.score = self.score + points
  self.hits[#self.hits + 1] = { rule = rule, score = points }
  return self.score
end

function Msg:hit(rule)
  self.hits[#self.hits + 1] = { rule = rule, score = 0 }
end

function Msg:add_header(name, value) self.edits[#self.edits + 1] = { "add", name, value } end
function Msg:remove_header(name) self.edits[#self.edits + 1] = { "remove", name } end
function Msg:replace_header(name, value) self.edits[#self.edits + 1] = { "replace", name, value } end
function Msg:tag_subject(tag) self.edits[#self.edits + 1] = { "tag_subject", "Subject", tag } end

function Msg:log(...)
  local parts = {}
  for i = 1, select("#", ...) do parts[#parts + 1] = tostring((select(i, ...))) end
  self.logs[#self.logs + 1] = table.concat(parts, " ")
end

--- msg:all_decided(): every recipient of the MTA's (not the added ones) has its verdict
function Msg:all_decided()
  for _, r in ipairs(self.recipients) do
    if not r.added and r.verdict == nil then return false end
  end
  return true
end

function Msg:add_recipient(address)
  local r = D.rcpt(address, { added = true, verdict = "pass" })
  self.recipients[#self.recipients + 1] = r
  return r
end

--- D.hit_names(msg) -> { rule, ... }
function D.hit_names(msg)
  local t = {}
  for _, h in ipairs(msg.hits) do t[#t + 1] = h.rule end
  return t
end

return D
