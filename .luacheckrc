-- .luacheckrc - luacheck lua/ policies/ spec/lua/
--
-- The library and the policies run in postern's sandbox (daemon/policy.c,
-- setup_state; postern-lua(7), "The sandbox"), not in a plain Lua 5.4: only
-- what the sandbox offers is a known global there, so a policy that reaches
-- for io, debug, load or print is flagged before posternd refuses it. The
-- specs run under busted on a plain Lua 5.4.

std = "lua54"
max_line_length = 120   -- luacheck's default; the code keeps to about 110

-- the sandbox's environment, nothing more: policies and lua/postern
stds.postern_sandbox = {
  read_globals = {
    "assert", "error", "getmetatable", "ipairs", "next", "pairs", "pcall", "rawequal",
    "rawget", "rawlen", "rawset", "select", "setmetatable", "tonumber", "tostring", "type",
    "xpcall", "warn", "_VERSION", "_G", "require",
    string = { other_fields = true },
    table = { other_fields = true },
    math = { other_fields = true },
    utf8 = { other_fields = true },
    os = { fields = { "time", "date", "clock", "difftime" } },
  },
}

files["lua/"] = { std = "postern_sandbox" }
files["policies/"] = { std = "postern_sandbox" }
files["spec/lua/"] = { std = "lua54+busted" }
