--- postern - the Lua library that policies require: rule constructors and helpers
--
-- local P = require "postern"
-- return P.policy { rule, rule, ... }
--
-- A rule is a function(msg) or a table made by a constructor below. It
-- returns nothing to let the chain go on, or a verdict to end it for every
-- recipient not yet decided. A rule can also decide single recipients
-- (rcpt:reject(), rcpt:pass() ...); the chain ends early once every
-- recipient is decided. Recipients left undecided at the end pass.
--
-- The C half (regex, cidr, log, read_table) is the module "postern.core";
-- the msg and rcpt objects are documented in postern-lua(7).

local core = require "postern.core"

local P = {}

P.version = "1"

--- P.regex(pattern [, flags]) -> regex
-- A PCRE2 pattern compiled once (see postern-lua(7)); re:match(s), re:find(s).
P.regex = core.regex

--- P.cidr(networks) -> cidr
-- A list of networks; cidr:match(ip).
P.cidr = core.cidr

--- P.log(level, ...)
-- Log at "debug", "info", "warn" or "error".
P.log = core.log

--- P.read_table(file) -> table
-- A lookup file from the policy directory: { key = value or true }.
P.read_table = core.read_table

-- verdict makers ------------------------------------------------------------

local function verdict_table(verdict, t)
  if type(t) == "string" then
    t = verdict == "quarantine" and { reason = t } or { text = t }
  end
  local v = { verdict = verdict }
  for k, x in pairs(t or {}) do v[k] = x end
  v.verdict = verdict
  return v
end

--- P.pass() -> verdict
-- Deliver (the undecided recipients) and end the chain.
function P.pass() return "pass" end

--- P.discard() -> verdict
-- Accept and drop the message: the MTA hears 250, nothing is delivered.
function P.discard() return "discard" end

--- P.quarantine([reason]) -> verdict
-- Keep the message in the quarantine directory (postern release can deliver
-- it later); the MTA hears 250.
function P.quarantine(reason) return verdict_table("quarantine", reason) end

--- P.reject([text | { text =, code =, enh = }]) -> verdict
-- Refuse with a 5xx (default 554 5.7.1 "Message rejected by policy").
function P.reject(t) return verdict_table("reject", t) end

--- P.tempfail([text | { text =, code =, enh = }]) -> verdict
-- Refuse with a 4xx (default 451 4.7.1): the MTA keeps the message and retries.
function P.tempfail(t) return verdict_table("tempfail", t) end

local verdict_names = { pass = true, discard = true, quarantine = true, reject = true,
                        tempfail = true }

-- check_verdict: a verdict given to a constructor (on_match = ...), checked at load
local function check_verdict(v, what)
  if v == nil then return nil end
  if type(v) == "string" and verdict_names[v] then return v end
  if type(v) == "table" and verdict_names[v.verdict] then return v end
  error(what .. ": expected \"pass\", \"discard\", \"quarantine\", \"reject\", \"tempfail\" "
        .. "or P.reject{...}, got " .. tostring(v), 3)
end

-- recipient decisions by verdict name
local function decide(rcpt, v)
  local name = type(v) == "table" and v.verdict or v
  if name == "reject" or name == "tempfail" then
    return rcpt[name](rcpt, type(v) == "table" and v or nil)
  elseif name == "quarantine" then
    return rcpt:quarantine(type(v) == "table" and v.reason or nil)
  end
  return rcpt[name](rcpt)
end
P.decide = decide

-- checks ----------------------------------------------------------------------

local function check_table(o, ctor)
  if type(o) ~= "table" then
    error(ctor .. " expects a table { ... }, got " .. type(o), 3)
  end
  return o
end

local function check_keys(o, ctor, allowed)
  for k in pairs(o) do
    if not allowed[k] then
      error(ctor .. ": unknown key '" .. tostring(k) .. "'", 3)
    end
  end
end

local function list_of(v)
  if v == nil then return {} end
  if type(v) == "table" then return v end
  return { v }
end

-- address matching ------------------------------------------------------------

--- P.addresses(list) -> function(address) -> boolean
-- A matcher for envelope addresses. Entries: "user@example.com" (that
-- address), "@example.com" or "example.com" (that domain), ".example.com"
-- (its subdomains too), "user@" (that local part at any domain). Case does
-- not matter. A table from P.read_table() works as a list of its keys.
function P.addresses(list)
  local exact, domains, subdomains, locals = {}, {}, {}, {}
  local entries = list_of(list)
  local keys = {}
  if #entries == 0 and next(entries) ~= nil then
    for k in pairs(entries) do keys[#keys + 1] = k end   -- a read_table() result
  else
    keys = entries
  end
  for _, e in ipairs(keys) do
    if type(e) ~= "string" or e == "" then
      error("P.addresses: entries are non-empty strings", 2)
    end
    e = e:lower()
    if e:sub(1, 1) == "." then
      subdomains[#subdomains + 1] = e:sub(2)
    elseif e:sub(1, 1) == "@" then
      domains[e:sub(2)] = true
    elseif e:sub(-1) == "@" then
      locals[e:sub(1, -2)] = true
    elseif e:find("@", 1, true) then
      exact[e] = true
    else
      domains[e] = true
    end
  end
  return function(address)
    if type(address) ~= "string" then return false end
    local a = address:lower()
    if exact[a] then return true end
    local localpart, domain = a:match("^(.*)@([^@]*)$")
    if not domain then return false end
    if domains[domain] or locals[localpart] then return true end
    for _, d in ipairs(subdomains) do
      if domain == d or domain:sub(-(#d + 1)) == "." .. d then return true end
    end
    return false
  end
end

-- the chain ---------------------------------------------------------------------

local function callable(r)
  if type(r) == "function" then return true end
  local mt = type(r) == "table" and getmetatable(r)
  return mt and mt.__call ~= nil
end

local function all_decided(msg)
  for _, r in ipairs(msg.recipients) do
    if not r.added and r.verdict == nil then return false end
  end
  return true
end

--- P.policy { rule, ... } -> chain
-- The chain a policy file returns. Rules run in order; a rule's verdict ends
-- the chain; so does every recipient having been decided.
function P.policy(rules)
  check_table(rules, "P.policy")
  for i, r in ipairs(rules) do
    if not callable(r) then
      error("P.policy: rule " .. i .. " is a " .. type(r) .. ", not a rule", 2)
    end
  end
  for k in pairs(rules) do
    if type(k) ~= "number" then
      error("P.policy: unexpected key '" .. tostring(k) .. "' (rules are a list)", 2)
    end
  end
  return function(msg)
    for _, rule in ipairs(rules) do
      local v = rule(msg)
      if v ~= nil then return v end
      if all_decided(msg) then return nil end
    end
    return nil
  end
end

-- rules -------------------------------------------------------------------------

--- P.header { field =, pattern =, flags =, mode =, score =, on_match =, name = }
-- Match a PCRE2 pattern against every field called field (a name, or a list
-- of names; "*" or nil: every field, as "Name: value"). mode: "decoded"
-- (default), "unfolded" or "raw". On the first match the rule adds score
-- (or records a hit) and, with on_match, ends the chain with that verdict.
-- A match that hits the PCRE2 match limit is logged and counts as no match.
function P.header(o)
  check_table(o, "P.header")
  check_keys(o, "P.header", { field = true, pattern = true, flags = true, mode = true,
                              score = true, on_match = true, name = true })
  if type(o.pattern) ~= "string" then error("P.header: 'pattern' is required", 2) end
  if o.score ~= nil and type(o.score) ~= "number" then
    error("P.header: 'score' must be a number", 2)
  end
  local re = P.regex(o.pattern, o.flags)
  local fields = o.field ~= nil and o.field ~= "*" and list_of(o.field) or nil
  local mode = o.mode or "decoded"
  local on_match = check_verdict(o.on_match, "P.header: on_match")
  local name = o.name or ("header:" .. (fields and table.concat(fields, ",") or "*"))

  local function test(msg, value)
    local ok, err = re:match(value)
    if ok == nil then msg:log(name .. ": " .. err) end
    return ok
  end

  return function(msg)
    local hit = false
    if fields then
      for _, f in ipairs(fields) do
        for _, v in ipairs(msg:headers(f, mode)) do
          if test(msg, v) then hit = true break end
        end
        if hit then break end
      end
    else
      for i, f in ipairs(msg:header_names()) do
        local nth = 0
        for j = 1, i - 1 do
          if msg:header_names()[j]:lower() == f:lower() then nth = nth + 1 end
        end
        local v = msg:headers(f, mode)[nth + 1]
        if v and test(msg, f .. ": " .. v) then hit = true break end
      end
    end
    if not hit then return nil end
    if o.score then msg:add_score(o.score, name) else msg:hit(name) end
    return on_match
  end
end

--- P.bypass { client =, sender =, recipient =, login =, name = }
-- Let mail through the rest of the chain untouched. client: networks
-- (P.cidr list); sender: addresses (P.addresses list); login: true for any
-- SASL-authenticated client, or a list of logins; recipient: addresses, for
-- which only those recipients pass (the others go on through the chain).
function P.bypass(o)
  check_table(o, "P.bypass")
  check_keys(o, "P.bypass", { client = true, sender = true, recipient = true, login = true,
                              name = true })
  local nets = o.client and P.cidr(o.client)
  local sender = o.sender and P.addresses(o.sender)
  local rcpt = o.recipient and P.addresses(o.recipient)
  local logins
  if type(o.login) == "table" then
    logins = {}
    for _, l in ipairs(o.login) do logins[l] = true end
  end
  local name = o.name or "bypass"
  return function(msg)
    local c = msg.client
    if (nets and nets:match(c.ip))
        or (sender and sender(msg.sender))
        or (o.login == true and c.login ~= nil)
        or (logins and c.login and logins[c.login]) then
      msg:hit(name)
      return "pass"
    end
    if rcpt then
      for _, r in ipairs(msg.recipients) do
        if rcpt(r.address) and r:pass() then msg:hit(name .. ":" .. r.address) end
      end
    end
    return nil
  end
end

--- P.settings(map) -> rule
-- Per-recipient settings by address or domain (keys as P.addresses
-- entries; the most specific wins: address, then domain, then parent
-- domains): P.settings{ ["example.com"] = { tag2 = 5 }, ["boss@example.com"] =
-- { spam_lover = true } } copies the fields into rcpt.settings.
function P.settings(map)
  check_table(map, "P.settings")
  local entries = {}
  for k, v in pairs(map) do
    if type(k) ~= "string" or type(v) ~= "table" then
      error("P.settings: entries are address = { settings }", 2)
    end
    entries[#entries + 1] = { key = k:lower(), match = P.addresses(k), values = v }
  end
  -- most specific first: full addresses, then longer domains
  table.sort(entries, function(a, b)
    local aa, ba = a.key:find("@", 1, true) and a.key:sub(-1) ~= "@", b.key:find("@", 1, true) and b.key:sub(-1) ~= "@"
    if aa ~= ba then return aa and true or false end
    return #a.key > #b.key
  end)
  return function(msg)
    for _, r in ipairs(msg.recipients) do
      for _, e in ipairs(entries) do
        if e.match(r.address) then
          for k, v in pairs(e.values) do
            if r.settings[k] == nil then r.settings[k] = v end
          end
        end
      end
    end
  end
end

local function stars(score)
  local n = math.floor(score)
  if n < 0 then n = 0 end
  if n > 50 then n = 50 end
  return string.rep("*", n)
end

local function tests_list(msg)
  local names = {}
  for _, h in ipairs(msg.hits) do
    names[#names + 1] = h.score ~= 0 and string.format("%s=%.3g", h.rule, h.score) or h.rule
  end
  return table.concat(names, ",")
end

--- P.score { tag =, tag2 =, kill =, subject_tag =, on_kill =, name = }
-- amavisd-new's levels on msg.score, per recipient (rcpt.settings.tag,
-- .tag2, .kill override them; rcpt.settings.spam_lover = true turns off
-- the subject tag and on_kill for that recipient). At or above tag: the
-- X-Spam-Score, X-Spam-Level and X-Spam-Status headers. At or above tag2:
-- X-Spam-Flag: YES, "Yes" in X-Spam-Status, and subject_tag in front of the
-- subject. At or above kill: on_kill (default "quarantine") for that
-- recipient. X-Spam-* fields that came with the message are removed first,
-- so a sender cannot pre-mark its own mail. Defaults: tag 2.0, tag2 6.31,
-- kill 6.31, subject_tag "***SPAM*** ".
function P.score(o)
  o = o or {}
  check_table(o, "P.score")
  check_keys(o, "P.score", { tag = true, tag2 = true, kill = true, subject_tag = true,
                             on_kill = true, name = true })
  local tag, tag2, kill = o.tag or 2.0, o.tag2 or 6.31, o.kill or 6.31
  for k, v in pairs({ tag = tag, tag2 = tag2, kill = kill }) do
    if type(v) ~= "number" then error("P.score: '" .. k .. "' must be a number", 2) end
  end
  local subject_tag = o.subject_tag
  if subject_tag == nil then subject_tag = "***SPAM*** " end
  local on_kill = check_verdict(o.on_kill or "quarantine", "P.score: on_kill")
  local name = o.name or "score"
  return function(msg)
    local score = msg.score
    for _, h in ipairs({ "X-Spam-Flag", "X-Spam-Score", "X-Spam-Level", "X-Spam-Status" }) do
      msg:remove_header(h)
    end
    local tests = tests_list(msg)
    for _, r in ipairs(msg.recipients) do
      local s = r.settings
      local t1, t2, tk = s.tag or tag, s.tag2 or tag2, s.kill or kill
      if r.verdict == nil or r.verdict == "pass" then
        if score >= t1 then
          local spam = score >= t2
          r:add_header("X-Spam-Flag", spam and "YES" or "NO")
          r:add_header("X-Spam-Score", string.format("%.3f", score))
          r:add_header("X-Spam-Level", stars(score))
          r:add_header("X-Spam-Status", string.format("%s, score=%.3f tag=%g tag2=%g kill=%g tests=[%s]",
            spam and "Yes" or "No", score, t1, t2, tk, tests))
          if spam and subject_tag ~= "" and not s.spam_lover then
            r:tag_subject(s.subject_tag or subject_tag)
          end
        end
        if score >= tk and not s.spam_lover and r.verdict == nil then
          if decide(r, on_kill) then msg:hit(name .. ":kill:" .. r.address) end
        end
      end
    end
  end
end

--- P.redirect { to =, recipient =, when =, name = }
-- Deliver the copies of the matching recipients (P.addresses list; all when
-- absent) to `to` instead, when `when(msg)` (optional) returns true.
function P.redirect(o)
  check_table(o, "P.redirect")
  check_keys(o, "P.redirect", { to = true, recipient = true, when = true, name = true })
  if type(o.to) ~= "string" then error("P.redirect: 'to' is required", 2) end
  local rcpt = o.recipient and P.addresses(o.recipient)
  local name = o.name or ("redirect:" .. o.to)
  return function(msg)
    if o.when and not o.when(msg) then return nil end
    for _, r in ipairs(msg.recipients) do
      if not r.added and (not rcpt or rcpt(r.address)) then r:redirect(o.to) end
    end
    msg:hit(name)
  end
end

--- P.bcc { to =, when =, name = }
-- Deliver one more copy to `to` (an archive, a monitor), when `when(msg)`
-- (optional) returns true. The MTA hears no reply for it.
function P.bcc(o)
  check_table(o, "P.bcc")
  check_keys(o, "P.bcc", { to = true, when = true, name = true })
  if type(o.to) ~= "string" then error("P.bcc: 'to' is required", 2) end
  local name = o.name or ("bcc:" .. o.to)
  return function(msg)
    if o.when and not o.when(msg) then return nil end
    msg:add_recipient(o.to)
    msg:hit(name)
  end
end

--- P.lookup(file) -> function(address) -> value | nil
-- A lookup table file (P.read_table) keyed by address or domain: the value
-- for the whole address, else for its domain, else for a parent domain
-- (".example.com" keys), else nil.
function P.lookup(file)
  local t = P.read_table(file)
  return function(address)
    if type(address) ~= "string" then return nil end
    local a = address:lower()
    if t[a] ~= nil then return t[a] end
    local domain = a:match("@([^@]*)$") or a
    if t[domain] ~= nil then return t[domain] end
    if t["@" .. domain] ~= nil then return t["@" .. domain] end
    local d = domain
    while true do
      if t["." .. d] ~= nil then return t["." .. d] end
      local rest = d:match("^[^.]*%.(.+)$")
      if not rest then return nil end
      d = rest
    end
  end
end

return P
