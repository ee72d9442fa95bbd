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

--- P.version
-- The version of this library's interface ("1"): what a policy may rely on.
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

--- P.config() -> table
-- The configuration the rules need: local_domains, spamd_on_error.
P.config = core.config

--- P.verdict_problem(v) -> nil | reason
-- What is wrong with a verdict value by the rules the chain's result is held
-- to (a code of the wrong class, a bad enh, text that is not a string), or nil.
-- The constructors check their verdicts with it when the policy loads.
P.verdict_problem = core.verdict_problem

-- verdict makers ------------------------------------------------------------

-- verdict_table: P.quarantine/P.reject/P.tempfail; a bad code, enh or text is
-- an error where the verdict is made (at load for a rule's on_match), not a
-- deferral of every message later
local function verdict_table(verdict, t)
  if type(t) == "string" or type(t) == "number" then
    t = verdict == "quarantine" and { reason = tostring(t) } or { text = tostring(t) }
  elseif t ~= nil and type(t) ~= "table" then
    error("P." .. verdict .. ": expects a text or a table { text =, code =, enh = }, got "
          .. type(t), 3)
  end
  local v = { verdict = verdict }
  for k, x in pairs(t or {}) do v[k] = x end
  v.verdict = verdict
  local problem = core.verdict_problem(v)
  if problem then error("P." .. verdict .. ": " .. problem, 3) end
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
function P.quarantine(reason)
  local v = verdict_table("quarantine", reason)
  return v  -- not a tail call: an error names the caller's line
end

--- P.reject([text | { text =, code =, enh = }]) -> verdict
-- Refuse with a 5xx (default 554 5.7.1 "Message rejected by policy").
function P.reject(t)
  local v = verdict_table("reject", t)
  return v
end

--- P.tempfail([text | { text =, code =, enh = }]) -> verdict
-- Refuse with a 4xx (default 451 4.7.1): the MTA keeps the message and retries.
function P.tempfail(t)
  local v = verdict_table("tempfail", t)
  return v
end

local verdict_names = { pass = true, discard = true, quarantine = true, reject = true,
                        tempfail = true }

-- check_verdict: a verdict given to a constructor (on_match = ...), checked at load
local function check_verdict(v, what, level)
  if v == nil then return nil end
  if type(v) == "string" and verdict_names[v] then return v end
  if type(v) == "table" and verdict_names[rawget(v, "verdict")] then
    local problem = core.verdict_problem(v)
    if problem then error(what .. ": " .. problem, level or 3) end
    return v
  end
  error(what .. ": expected \"pass\", \"discard\", \"quarantine\", \"reject\", \"tempfail\" "
        .. "or P.reject{...}, got " .. tostring(v), level or 3)
end

-- recipient decisions by verdict name
--- P.decide(rcpt, verdict) -> decided
-- Decide one recipient with a verdict value as rules return them ("reject",
-- P.reject{...}, ...): rcpt:reject(), rcpt:quarantine() and so on. Returns
-- false when an earlier rule had decided that recipient already.
local function decide(rcpt, v)
  check_verdict(v, "P.decide", 3)
  if v == nil then error("P.decide: a verdict is required", 2) end
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

-- strings_of: list_of for a key whose entries must be strings (field names, types)
local function strings_of(v, what)
  local list = list_of(v)
  for i, x in ipairs(list) do
    if type(x) ~= "string" then
      error(what .. ": entry " .. i .. " is a " .. type(x) .. ", not a string", 3)
    end
  end
  return list
end

-- check_number: a finite number (points, levels), within what msg:add_score takes
local function check_number(x, what, level)
  if type(x) ~= "number" or x ~= x or x > 1e9 or x < -1e9 then
    error(what .. " must be a number (finite, at most 1e9 either way), got " .. tostring(x),
          level or 3)
  end
  return x
end

-- check_address: an address for P.redirect/P.bcc, as rcpt:redirect and msg:add_recipient take it
local function check_address(a, what)
  if type(a) ~= "string" or #a == 0 or #a > 512 or a:find("[%c%s<>]") then
    error(what .. ": an address of 1 to 512 bytes without spaces, control bytes or <>, got "
          .. tostring(a), 3)
  end
  return a
end

-- check_callable: an optional function argument (when =)
local function check_callable(f, what)
  if f ~= nil and type(f) ~= "function" and not (getmetatable(f) or {}).__call then
    error(what .. " must be a function, got " .. type(f), 3)
  end
  return f
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


--- P.policy { rule, ... } -> chain
-- The chain a policy file returns. Rules run in order; a rule's verdict ends
-- the chain; so does every recipient having been decided.
function P.policy(rules)
  check_table(rules, "P.policy")
  local n = 0
  for i, r in ipairs(rules) do
    if not callable(r) then
      error("P.policy: rule " .. i .. " is a " .. type(r) .. ", not a rule", 2)
    end
    n = i
  end
  for k in pairs(rules) do
    if math.type(k) ~= "integer" or k < 1 or k > n then
      error("P.policy: unexpected key '" .. tostring(k) .. "' (rules are a list without holes)", 2)
    end
  end
  return function(msg)
    for _, rule in ipairs(rules) do
      local v = rule(msg)
      if v then return v end	-- nil and false: no verdict ("cond and P.reject()")
      if msg:all_decided() then return nil end
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
  if o.score ~= nil then check_number(o.score, "P.header: 'score'") end
  local re = P.regex(o.pattern, o.flags)
  local fields = o.field ~= nil and o.field ~= "*" and strings_of(o.field, "P.header: field") or nil
  local mode = o.mode or "decoded"
  if mode ~= "decoded" and mode ~= "unfolded" and mode ~= "raw" then
    error("P.header: 'mode' is \"decoded\", \"unfolded\" or \"raw\", got " .. tostring(mode), 2)
  end
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
      local seen, values = {}, {}
      for _, f in ipairs(msg:header_names()) do
        local key = f:lower()
        seen[key] = (seen[key] or 0) + 1
        values[key] = values[key] or msg:headers(f, mode)
        local v = values[key][seen[key]]
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
  if type(o.login) == "table" or type(o.login) == "string" then
    logins = {}
    for _, l in ipairs(list_of(o.login)) do logins[l] = true end
  elseif o.login ~= nil and o.login ~= true then
    error("P.bypass: 'login' is true or a list of logins", 2)
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
-- setting_values: the levels as numbers (a P.read_table value is a string:
-- "8" is taken as 8), subject_tag a one-line string; checked at load
local function setting_values(key, v)
  local out = {}
  for name, x in pairs(v) do
    if name == "tag" or name == "tag2" or name == "kill" then
      local n = tonumber(x)
      if n == nil then
        error("P.settings: " .. key .. ": '" .. name .. "' must be a number, got " .. tostring(x), 3)
      end
      x = check_number(n, "P.settings: " .. key .. ": '" .. name .. "'", 4)
    elseif name == "subject_tag" and (type(x) ~= "string" or x:find("[\r\n]")) then
      error("P.settings: " .. key .. ": 'subject_tag' must be a one-line string", 3)
    end
    out[name] = x
  end
  return out
end

function P.settings(map)
  check_table(map, "P.settings")
  local entries = {}
  for k, v in pairs(map) do
    if type(k) ~= "string" or type(v) ~= "table" then
      error("P.settings: entries are address = { settings }", 2)
    end
    entries[#entries + 1] = { key = k:lower(), match = P.addresses(k), values = setting_values(k, v) }
  end
  -- most specific first (amavisd-new's lookup order): full address, local
  -- part ("user@"), domain ("example.com", "@example.com"), then parent
  -- domains (".example.com"), nearest first; the key breaks ties
  local function rank(key)
    if key:sub(1, 1) == "." then return 0 end
    if key:sub(-1) == "@" then return 2 end
    if key:sub(1, 1) == "@" or not key:find("@", 1, true) then return 1 end
    return 3
  end
  table.sort(entries, function(a, b)
    local ra, rb = rank(a.key), rank(b.key)
    if ra ~= rb then return ra > rb end
    if #a.key ~= #b.key then return #a.key > #b.key end
    return a.key < b.key
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

-- The tests list is cut at TESTS_MAX bytes (ending in ",..."): a message with
-- hundreds of hits (one per bypassed recipient, say), or a spamd answer with
-- thousands of rules, must not make X-Spam-Status longer than a header field
-- may be, which would defer it for ever.
local TESTS_MAX = 2000

-- tests_list: the names given first (spamd's rules), then the hits as
-- name=score (zero scores by name alone)
local function tests_list(hits, first)
  local names, len = {}, 0
  local function add(name)
    if len + #name + 1 > TESTS_MAX then
      names[#names + 1] = "..."
      return false
    end
    names[#names + 1] = name
    len = len + #name + 1
    return true
  end
  for _, name in ipairs(first or {}) do
    if not add(name) then return table.concat(names, ",") end
  end
  for _, h in ipairs(hits) do
    local name = h.score ~= 0 and string.format("%s=%.3g", h.rule, h.score) or h.rule
    if not add(name) then break end
  end
  return table.concat(names, ",")
end

-- remove_spam_fields: every X-Spam-* field that came with the message, from
-- every copy, so that a sender cannot pre-mark its own mail (the four that
-- P.score and P.spamd write are named too: a header cut at max_header_size
-- does not list all its fields)
local SPAM_FIELDS = { "X-Spam-Flag", "X-Spam-Score", "X-Spam-Level", "X-Spam-Status" }
local function remove_spam_fields(msg)
  local gone = {}
  for _, h in ipairs(SPAM_FIELDS) do
    msg:remove_header(h)
    gone[h:lower()] = true
  end
  for _, name in ipairs(msg:header_names()) do
    local lname = name:lower()
    if lname:sub(1, 7) == "x-spam-" and not gone[lname] then
      msg:remove_header(name)
      gone[lname] = true
    end
  end
end

-- apply_levels: amavisd-new's tag, tag2 and kill on score, for the recipients
-- for whom wanted(r) is true (all when wanted is nil); o holds the levels
local function apply_levels(msg, score, o, wanted)
  remove_spam_fields(msg)
  local tests = o.tests or ""
  for _, r in ipairs(msg.recipients) do
    local s = r.settings
    local t1, t2, tk = s.tag or o.tag, s.tag2 or o.tag2, s.kill or o.kill
    if (r.verdict == nil or r.verdict == "pass") and (wanted == nil or wanted(r)) then
      if score >= t1 then
        local spam = score >= t2
        r:add_header("X-Spam-Flag", spam and "YES" or "NO")
        r:add_header("X-Spam-Score", string.format("%.3f", score))
        r:add_header("X-Spam-Level", stars(score))
        r:add_header("X-Spam-Status", string.format("%s, score=%.3f tag=%g tag2=%g kill=%g tests=[%s]",
          spam and "Yes" or "No", score, t1, t2, tk, tests))
        local subject_tag = s.subject_tag
        if subject_tag == nil then subject_tag = o.subject_tag end
        if spam and subject_tag ~= "" and not s.spam_lover then r:tag_subject(subject_tag) end
      end
      if score >= tk and not s.spam_lover and r.verdict == nil then
        if decide(r, o.on_kill) then msg:hit(o.name .. ":kill:" .. r.address) end
      end
    end
  end
end

-- levels: the tag/tag2/kill options of P.score and P.spamd, checked at load
local function levels(o, ctor, defaults)
  local v = {
    tag = o.tag or defaults.tag, tag2 = o.tag2 or defaults.tag2, kill = o.kill or defaults.kill,
    subject_tag = o.subject_tag, name = o.name or defaults.name,
  }
  for _, k in ipairs({ "tag", "tag2", "kill" }) do
    check_number(v[k], ctor .. ": '" .. k .. "'", 4)
  end
  if v.subject_tag == nil then v.subject_tag = "***SPAM*** " end
  if type(v.subject_tag) ~= "string" or v.subject_tag:find("[\r\n]") then
    error(ctor .. ": 'subject_tag' must be a one-line string", 3)
  end
  v.on_kill = check_verdict(o.on_kill or "quarantine", ctor .. ": on_kill", 4)
  return v
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
  local lv = levels(o, "P.score", { tag = 2.0, tag2 = 6.31, kill = 6.31, name = "score" })
  return function(msg)
    lv.tests = tests_list(msg.hits)
    apply_levels(msg, msg.score, lv)
  end
end

-- scanners -----------------------------------------------------------------------

local function local_matcher(list)
  if list == nil then return nil end
  return P.addresses(list)
end

--- P.clamav { on_virus =, quarantine =, on_error =, header =, name = }
-- Scan with ClamAV (msg:clamav()). A virus: the hit "clamav:NAME" and, with
-- quarantine = true, the message is quarantined (reason "virus NAME"), else
-- on_virus (default "discard", amavisd-new's final_virus_destiny). A scan that
-- could not finish (limits, encrypted archive, engine error): on_error, by
-- default clamav.on_incomplete of the configuration: "tempfail" (the MTA
-- retries), "pass" (with X-Virus-Status: Unchecked) or "reject". Every
-- scanned copy gets "X-Virus-Scanned: postern (ClamAV) at HOST" unless
-- header = false.
function P.clamav(o)
  o = o or {}
  check_table(o, "P.clamav")
  check_keys(o, "P.clamav", { on_virus = true, quarantine = true, on_error = true,
                              header = true, name = true })
  local on_virus = check_verdict(o.on_virus or "discard", "P.clamav: on_virus")
  local on_error = check_verdict(o.on_error, "P.clamav: on_error")
  local name = o.name or "clamav"
  if not core.config().clamav then
    P.log("warn", name .. ": no clamav.database configured: this rule does not scan")
    return function() return nil end
  end
  return function(msg)
    local r, err = msg:clamav()
    if not r then
      msg:log(name .. ": " .. err)
      return nil
    end
    msg:remove_header("X-Virus-Scanned")
    msg:remove_header("X-Virus-Status")
    if o.header ~= false then
      msg:add_header("X-Virus-Scanned", "postern (ClamAV) at " .. msg.host)
    end
    if r.status == "infected" then
      msg:hit(name .. ":" .. r.virus)
      msg:log(name .. ": infected: " .. r.virus)
      if o.quarantine then return P.quarantine("virus " .. r.virus) end
      if type(on_virus) == "string" and on_virus == "reject" then
        return P.reject { code = 554, enh = "5.7.0", text = "Virus found: " .. r.virus }
      end
      return on_virus
    elseif r.status == "error" then
      local what = on_error or r.on_incomplete
      msg:hit(name .. ":unchecked")
      msg:log(name .. ": " .. r.error .. " (" .. (type(what) == "table" and what.verdict or what) .. ")")
      if what == "pass" then
        msg:add_header("X-Virus-Status", "Unchecked (" .. r.error .. ")")
        return nil
      elseif what == "reject" then
        return P.reject { code = 554, enh = "5.7.0", text = "Message could not be scanned" }
      elseif what == "tempfail" then
        return P.tempfail { code = 451, enh = "4.7.0", text = "Virus scan incomplete, try again later" }
      end
      return what
    end
    return nil
  end
end

--- P.banned { filename =, type =, on_match =, name = }
-- amavisd-new's banned files: a PCRE2 pattern matched against the name of
-- every file in the message, archive members included (msg:files()), and/or
-- a list of libclamav types ({ "MSEXE", "ELF" }: detected from the content,
-- whatever the name says). The first match ends the chain with on_match
-- (default P.reject "Banned file NAME (TYPE)").
function P.banned(o)
  check_table(o, "P.banned")
  check_keys(o, "P.banned", { filename = true, type = true, on_match = true, name = true,
                              flags = true })
  if o.filename == nil and o.type == nil then
    error("P.banned: give 'filename' (a pattern) and/or 'type' (a list)", 2)
  end
  local re = o.filename and P.regex(o.filename, o.flags)
  local types = {}
  for _, t in ipairs(strings_of(o.type, "P.banned: type")) do types[t:upper()] = true end
  local on_match = check_verdict(o.on_match, "P.banned: on_match")
  local name = o.name or "banned"
  return function(msg)
    for _, f in ipairs(msg:files()) do
      local hit = types[(f.type or ""):upper()]
      if not hit and re and f.name then
        local ok, err = re:match(f.name)
        if ok == nil then msg:log(name .. ": " .. err) end
        hit = ok
      end
      if hit then
        local shown = f.name or "unnamed"
        if #shown > 100 then shown = shown:sub(1, 97) .. "..." end
        local what = shown .. " (" .. (f.type or "?") .. ")"
        msg:hit(name .. ":" .. what)
        return on_match or P.reject { code = 554, enh = "5.7.0", text = "Banned file " .. what }
      end
    end
    return nil
  end
end

--- P.spamd { tag =, tag2 =, kill =, subject_tag =, on_kill =, on_error =, user =,
---           local_domains =, name = }
-- Ask spamd (msg:spamd()) and apply amavisd-new's levels to its score, as
-- P.score does, for the recipients in local_domains (P.addresses entries;
-- default: the configuration's local_domains; none configured: everyone).
-- spamd's score is added to msg.score with the hit "spamd". spamd down, slow
-- or the message too big: on_error, by default spamd.on_error of the
-- configuration: "pass" (X-Spam-Status: Unchecked for those recipients, and
-- a log line) or "tempfail". Without spamd.address in the configuration the
-- rule applies the levels to msg.score alone, as P.score does.
function P.spamd(o)
  o = o or {}
  check_table(o, "P.spamd")
  check_keys(o, "P.spamd", { tag = true, tag2 = true, kill = true, subject_tag = true,
                             on_kill = true, on_error = true, user = true, local_domains = true,
                             name = true })
  local lv = levels(o, "P.spamd", { tag = 2.0, tag2 = 6.31, kill = 6.31, name = "spamd" })
  local on_error = check_verdict(o.on_error, "P.spamd: on_error")
  local conf = core.config()
  local configured = conf.local_domains
  if configured and #configured == 0 then configured = nil end
  local mine = local_matcher(o.local_domains or configured)
  local wanted = mine and function(r) return mine(r.address) end or nil
  if not conf.spamd then
    return function(msg)
      lv.tests = tests_list(msg.hits)
      apply_levels(msg, msg.score, lv, wanted)
    end
  end
  return function(msg)
    local r, err = msg:spamd { user = o.user }
    if not r then
      msg:log(lv.name .. ": " .. err)
      local what = on_error or conf.spamd_on_error or "pass"
      if what == "tempfail" then
        return P.tempfail { code = 451, enh = "4.7.0", text = "Spam check unavailable, try again later" }
      elseif what ~= "pass" then
        return what
      end
      -- unchecked is no licence for the sender's own marks
      remove_spam_fields(msg)
      local why = err:gsub("%c", " "):sub(1, 300)
      for _, rc in ipairs(msg.recipients) do
        if rc.verdict == nil and (wanted == nil or wanted(rc)) then
          rc:add_header("X-Spam-Status", "Unchecked (" .. why .. ")")
        end
      end
      return nil
    end
    msg:add_score(r.score, lv.name)
    -- spamd's rules, then the policy's own hits with points (not spamd's own)
    local scored = {}
    for _, h in ipairs(msg.hits) do
      if h.rule ~= lv.name and h.score ~= 0 then scored[#scored + 1] = h end
    end
    lv.tests = tests_list(scored, r.symbols)
    apply_levels(msg, msg.score, lv, wanted)
  end
end

--- P.redirect { to =, recipient =, when =, name = }
-- Deliver the copies of the matching recipients (P.addresses list; all when
-- absent) to `to` instead, when `when(msg)` (optional) returns true.
function P.redirect(o)
  check_table(o, "P.redirect")
  check_keys(o, "P.redirect", { to = true, recipient = true, when = true, name = true })
  if o.to == nil then error("P.redirect: 'to' is required", 2) end
  check_address(o.to, "P.redirect: 'to'")
  check_callable(o.when, "P.redirect: 'when'")
  local rcpt = o.recipient and P.addresses(o.recipient)
  local name = o.name or ("redirect:" .. o.to)
  return function(msg)
    if o.when and not o.when(msg) then return nil end
    local any = false
    for _, r in ipairs(msg.recipients) do
      if not r.added and (not rcpt or rcpt(r.address)) then
        r:redirect(o.to)
        any = true
      end
    end
    if any then msg:hit(name) end
  end
end

--- P.bcc { to =, when =, name = }
-- Deliver one more copy to `to` (an archive, a monitor), when `when(msg)`
-- (optional) returns true. The MTA hears no reply for it.
function P.bcc(o)
  check_table(o, "P.bcc")
  check_keys(o, "P.bcc", { to = true, when = true, name = true })
  if o.to == nil then error("P.bcc: 'to' is required", 2) end
  check_address(o.to, "P.bcc: 'to'")
  check_callable(o.when, "P.bcc: 'when'")
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
