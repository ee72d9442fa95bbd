-- empty.lua - bench/policy_bench's baseline: a chain without rules
--
-- What a message costs the policy engine before any rule runs: the msg
-- object, one protected call into Lua, the empty chain, the limits' hook.
return require("postern").policy {}
