-- secondary.lua - the policy of the secondary MTA instance (listener "secondary", LMTP, 20024)
--
-- Same rules as inbound, with its own levels: this instance serves
-- mailing-list traffic, where bulk headers are normal, so it tags later and
-- never quarantines; recipients who asked for all their mail get it untagged.
local P = require "postern"

return P.policy {
  P.settings { ["postmaster@"] = { spam_lover = true } },

  P.header { field = "Subject", pattern = [[\b(viagra|cialis|casino|lottery winner)\b]],
             flags = "i", score = 3.0, name = "subject_spam_words" },
  P.header { field = "From", pattern = [[@(?:[0-9]{1,3}\.){3}[0-9]{1,3}>?$]], score = 1.5,
             name = "from_ip_literal" },

  P.score { tag = 3.0, tag2 = 8.0, kill = 1000, subject_tag = "[SPAM] " },
}
