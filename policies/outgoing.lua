-- outgoing.lua - the policy for mail of your own users (listener "outgoing", port 10026)
--
-- Originating mail is not tagged (your users' correspondents do not need
-- our subject tags), but it is held to a stricter line: a virus or a banned
-- file is refused outright, so the user learns at once and nothing leaves
-- under your name, and so is what would be spam inbound. The SASL login the
-- MTA saw is recorded in a header.
local P = require "postern"

return P.policy {
  function(msg)
    local login = msg.client.login
    if login then
      msg:replace_header("X-Authenticated-Sender", login)
    else
      msg:remove_header("X-Authenticated-Sender")   -- nobody may forge it
    end
  end,

  P.banned { filename = [[(?i)\.(exe|scr|pif|com|bat|cmd|vbs|js|jse|wsf|hta|cpl|msi|lnk)$]],
             type = { "MSEXE", "ELF", "MACHO" } },
  P.clamav { on_virus = "reject", on_error = "tempfail", header = false },

  P.header { field = "Subject", pattern = [[\b(viagra|cialis|casino|lottery winner)\b]],
             flags = "i", score = 3.0, name = "subject_spam_words" },
  P.header { field = "From", pattern = [[@(?:[0-9]{1,3}\.){3}[0-9]{1,3}>?$]], score = 1.5,
             name = "from_ip_literal" },

  function(msg)
    if msg.score >= 5.0 then
      return P.reject { code = 550, enh = "5.7.1",
                        text = "Message looks like spam; not sent (id " .. msg.id .. ")" }
    end
  end,
}
