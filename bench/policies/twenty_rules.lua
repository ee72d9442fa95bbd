-- twenty_rules.lua - bench/policy_bench's load: 20 header rules and P.score
--
-- The issue's target case ("< 50 us per message for 20 header rules on a
-- 4 KiB message"): header rules of the kind a site writes, on the fields
-- spam rules look at, with realistic PCRE2 patterns (alternations, classes,
-- anchors, case-insensitive ones). No rule has on_match, so every message
-- goes through all 20 and P.score. Scores are small: on bench's message
-- (an ordinary mail from a dial-up submitter) two rules fire, 0.8 in all,
-- below P.score's tag level, as for most ham.
local P = require "postern"

return P.policy {
  -- Subject (5)
  P.header { field = "Subject", pattern = [=[\b(?:viagra|cialis|casino|lottery|winner|bitcoin)\b]=],
             flags = "i", score = 3.0, name = "subject_spam_words" },
  P.header { field = "Subject", pattern = [=[^\s*$]=], score = 0.5, name = "subject_empty" },
  P.header { field = "Subject", pattern = [=[[!?$]{3,}]=], score = 1.0, name = "subject_shouting" },
  P.header { field = "Subject", pattern = [=[^[^\p{Ll}]{20,}$]=], score = 0.8, name = "subject_all_caps" },
  P.header { field = "Subject", pattern = [=[(?:\$\s?\d{3,}|\b\d{2,3}\s?%\s+off\b|\bfree\s+(?:gift|money|access)\b)]=],
             flags = "i", score = 1.2, name = "subject_money" },

  -- From, Reply-To (4)
  P.header { field = "From", pattern = [=[@(?:[0-9]{1,3}\.){3}[0-9]{1,3}>?$]=], score = 1.5,
             name = "from_ip_literal" },
  P.header { field = "From", pattern = [=["[^"]*@[^"]*"\s*<]=], score = 0.7, name = "from_address_in_name" },
  P.header { field = "From", pattern = [=[\b[a-z]+[0-9]{4,}@(?:gmail|yahoo|hotmail|outlook)\.com\b]=],
             flags = "i", score = 0.6, name = "from_freemail_digits" },
  P.header { field = "Reply-To", pattern = [=[@(?:gmail|yahoo|hotmail|outlook|mail)\.(?:com|ru)>?\s*$]=],
             flags = "i", score = 0.4, name = "reply_to_freemail" },

  -- To (1)
  P.header { field = "To", pattern = [=[undisclosed[- ]recipients]=], flags = "i", score = 0.6,
             name = "to_undisclosed" },

  -- Received (3)
  P.header { field = "Received", pattern = [=[\b(?:dsl|dyn|dynamic|dip\d*|pool|ppp|dhcp|cable)[-.]]=],
             flags = "i", score = 0.5, name = "received_dynamic_rdns" },
  P.header { field = "Received", pattern = [=[^from \[\d{1,3}(?:\.\d{1,3}){3}\] ]=], score = 0.3,
             name = "received_helo_ip_literal" },
  P.header { field = "Received", pattern = [=[\(unknown \[\d{1,3}(?:\.\d{1,3}){3}\]\)]=], score = 1.0,
             name = "received_no_rdns" },

  -- Message-ID (2)
  P.header { field = "Message-ID", pattern = [=[@(?:\[?\d{1,3}(?:\.\d{1,3}){3}\]?|localhost(?:\.localdomain)?)>]=],
             flags = "i", score = 0.8, name = "msgid_bad_domain" },
  P.header { field = "Message-ID", pattern = [=[^<[0-9a-f]{32}@]=], score = 0.3, name = "msgid_bulk_hash" },

  -- X-Mailer (2)
  P.header { field = "X-Mailer", pattern = [=[(?:mass|bulk)\s*mail|\bsendblaster\b|\bphpmailer\b]=],
             flags = "i", score = 1.5, name = "mailer_bulk" },
  P.header { field = "X-Mailer", pattern = [=[Outlook Express 6\.00\.2[0-9]{3}|The Bat! \(v[12]\.]=],
             score = 0.9, name = "mailer_forged_old" },

  -- Content-Type (2)
  P.header { field = "Content-Type", pattern = [=[charset="?(?:gb2312|koi8-r|big5|windows-1251)]=], flags = "i",
             score = 0.5, name = "ct_unusual_charset" },
  P.header { field = "Content-Type", pattern = [=[^\s*text/html\b]=], flags = "i", score = 0.4,
             name = "ct_html_only" },

  -- Date (1)
  P.header { field = "Date", pattern = [=[\b(?:19[0-8][0-9]|20[4-9][0-9])\b|[+-](?:1[5-9]|[2-9][0-9])[0-9]{2}\b]=],
             score = 1.0, name = "date_implausible" },

  P.score { tag = 2.0, tag2 = 6.31, kill = 6.31, subject_tag = "***SPAM*** ", on_kill = "quarantine" },
}
