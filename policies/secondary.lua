-- secondary.lua - the policy of the secondary MTA instance (listener "secondary", LMTP, 20024)
--
-- Same rules as inbound, with its own levels: this instance serves
-- mailing-list traffic, where bulk headers are normal, so it tags later and
-- never quarantines spam; viruses are discarded; postmaster gets everything
-- untagged (a spam lover).
local P = require "postern"

return P.policy {
  P.settings { ["postmaster@"] = { spam_lover = true } },

  P.clamav { on_virus = "discard" },

  P.header { field = "Subject", pattern = [[\b(viagra|cialis|casino|lottery winner)\b]],
             flags = "i", score = 3.0, name = "subject_spam_words" },
  P.header { field = "From", pattern = [[@(?:[0-9]{1,3}\.){3}[0-9]{1,3}>?$]], score = 1.5,
             name = "from_ip_literal" },

  P.spamd { tag = 3.0, tag2 = 8.0, kill = 1000, subject_tag = "[SPAM] " },
}
