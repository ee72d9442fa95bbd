-- external.lua - the policy for mail from the Internet (listener "external", port 10024)
--
-- In the order amavisd-new checks: banned files, viruses, then spam. Header
-- rules add to the message's score; P.spamd adds spamd's score (when
-- spamd.address is configured) and applies amavisd-new's default levels:
-- X-Spam-* headers from 2.0, spam (X-Spam-Flag: YES and a subject tag) from
-- 6.31, quarantine from 6.31 (amavisd-new's kill level). P.clamav scans when
-- clamav.database is configured and does nothing otherwise.
-- Adjust the rules and levels to your site: see postern-lua(7) and the
-- cookbook in the README. Check a change with `postern test` before SIGHUP.
local P = require "postern"

return P.policy {
  -- our own networks and relays are not scanned (amavisd-new's @mynetworks)
  P.bypass { client = { "127.0.0.0/8", "::1" }, name = "bypass:local" },

  -- executables and scripts, by name (also inside archives) or by content
  P.banned { filename = [[(?i)\.(exe|scr|pif|com|bat|cmd|vbs|js|jse|wsf|hta|cpl|msi|lnk)$]],
             type = { "MSEXE", "ELF", "MACHO" } },

  P.clamav { quarantine = true },

  -- a missing or implausible header costs a little
  function(msg)
    if not msg:header("Date") then msg:add_score(0.5, "missing_date") end
    if not msg:header("Message-ID") then msg:add_score(0.5, "missing_message_id") end
    if msg.broken then msg:add_score(1.0, "broken_structure") end
  end,

  P.header { field = "Subject", pattern = [[\b(viagra|cialis|casino|lottery winner)\b]],
             flags = "i", score = 3.0, name = "subject_spam_words" },
  P.header { field = "Subject", pattern = [[^\s*$]], score = 0.5, name = "empty_subject" },
  P.header { field = "Subject", pattern = [[(?:[!?$]){3,}]], score = 1.0, name = "subject_shouting" },
  P.header { field = "From", pattern = [[@(?:[0-9]{1,3}\.){3}[0-9]{1,3}>?$]], score = 1.5,
             name = "from_ip_literal" },
  P.header { field = "X-Mailer", pattern = [[(?:mass|bulk)\s*mail]], flags = "i", score = 1.5,
             name = "bulk_mailer" },
  P.header { field = "Content-Type", pattern = [[charset="?(?:gb2312|koi8-r)]], flags = "i",
             score = 0.5, name = "unusual_charset" },

  P.spamd { tag = 2.0, tag2 = 6.31, kill = 6.31, subject_tag = "***SPAM*** ",
            on_kill = "quarantine" },
}
