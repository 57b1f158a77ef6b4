"""The RFC 5321 grammar, once: ABNF quoted above each fragment, as regular expressions.

The reply parser, the checks and the strategies all import these, so what the suite generates
and what it accepts cannot drift apart. Fragments are uncompiled ``str`` patterns meant to be
combined; the ``*_RE`` names are compiled, anchored matchers.
"""

from __future__ import annotations

import re

# --- Replies (RFC 5321 §4.2) ------------------------------------------------------------------

# Reply-code = %x32-35 %x30-35 %x30-39
REPLY_CODE = r"[2-5][0-5][0-9]"

# textstring = 1*(%d09 / %d32-126) ; HT, SP, Printable US-ASCII
TEXTSTRING_OCTETS = frozenset([0x09, *range(0x20, 0x7F)])

# Reply-line = *( Reply-code "-" [ textstring ] CRLF )
#              Reply-code [ SP textstring ] CRLF
REPLY_LINE_SEPARATORS = (b"-", b" ")

# Maximum reply line, code and CRLF included (RFC 5321 §4.5.3.1.5).
MAX_REPLY_LINE_OCTETS = 512
# Maximum command line, verb and CRLF included (RFC 5321 §4.5.3.1.4).
MAX_COMMAND_LINE_OCTETS = 512
# Maximum text line of mail data, CRLF included (RFC 5321 §4.5.3.1.6).
MAX_TEXT_LINE_OCTETS = 1000
# Maximum local-part, domain and path lengths (RFC 5321 §4.5.3.1.1-3).
MAX_LOCAL_PART_OCTETS = 64
MAX_DOMAIN_OCTETS = 255
MAX_PATH_OCTETS = 256

# --- Domains and address literals (RFC 5321 §4.1.2, §4.1.3) ----------------------------------

# Let-dig = ALPHA / DIGIT
LET_DIG = r"[A-Za-z0-9]"
# Ldh-str = *( ALPHA / DIGIT / "-" ) Let-dig
LDH_STR = rf"[A-Za-z0-9-]*{LET_DIG}"
# sub-domain = Let-dig [Ldh-str]
SUB_DOMAIN = rf"{LET_DIG}(?:{LDH_STR})?"
# Domain = sub-domain *("." sub-domain)
DOMAIN = rf"{SUB_DOMAIN}(?:\.{SUB_DOMAIN})*"

# Snum = 1*3DIGIT ; representing a decimal integer value in the range 0 through 255
SNUM = r"(?:25[0-5]|2[0-4][0-9]|[01]?[0-9]?[0-9])"
# IPv4-address-literal = Snum 3("." Snum)
IPV4_ADDRESS_LITERAL = rf"{SNUM}(?:\.{SNUM}){{3}}"
# IPv6-hex = 1*4HEXDIG
IPV6_HEX = r"[0-9A-Fa-f]{1,4}"
# IPv6-full = IPv6-hex 7(":" IPv6-hex)
IPV6_FULL = rf"{IPV6_HEX}(?::{IPV6_HEX}){{7}}"
# IPv6-comp = [IPv6-hex *5(":" IPv6-hex)] "::" [IPv6-hex *5(":" IPv6-hex)]
#   ; The "::" represents at least 2 16-bit groups of zeros; no more than 6 groups in addition
IPV6_COMP = rf"(?:{IPV6_HEX}(?::{IPV6_HEX}){{0,5}})?::(?:{IPV6_HEX}(?::{IPV6_HEX}){{0,5}})?"
# IPv6v4-full = IPv6-hex 5(":" IPv6-hex) ":" IPv4-address-literal
IPV6V4_FULL = rf"{IPV6_HEX}(?::{IPV6_HEX}){{5}}:{IPV4_ADDRESS_LITERAL}"
# IPv6v4-comp = [IPv6-hex *3(":" IPv6-hex)] "::"
#               [IPv6-hex *3(":" IPv6-hex) ":"] IPv4-address-literal
IPV6V4_COMP = (
    rf"(?:{IPV6_HEX}(?::{IPV6_HEX}){{0,3}})?::"
    rf"(?:{IPV6_HEX}(?::{IPV6_HEX}){{0,3}}:)?{IPV4_ADDRESS_LITERAL}"
)
# IPv6-addr = IPv6-full / IPv6-comp / IPv6v4-full / IPv6v4-comp
IPV6_ADDR = rf"(?:{IPV6V4_FULL}|{IPV6V4_COMP}|{IPV6_FULL}|{IPV6_COMP})"
# IPv6-address-literal = "IPv6:" IPv6-addr
IPV6_ADDRESS_LITERAL = rf"IPv6:{IPV6_ADDR}"
# dcontent = %d33-90 / %d94-126 ; Printable US-ASCII excl. "[", "\", "]"
DCONTENT = r"[\x21-\x5a\x5e-\x7e]"
# General-address-literal = Standardized-tag ":" 1*dcontent
# Standardized-tag = Ldh-str
#   ; Standardized-tag MUST be specified in a Standards-Track RFC and registered with IANA;
#   ; the tag "IPv6" is IPv6-address-literal's, so a general literal may not use it.
GENERAL_ADDRESS_LITERAL = rf"(?!IPv6:){LDH_STR}:{DCONTENT}+"
# address-literal = "[" ( IPv4-address-literal / IPv6-address-literal /
#                         General-address-literal ) "]"
ADDRESS_LITERAL = (
    rf"\[(?:{IPV4_ADDRESS_LITERAL}|{IPV6_ADDRESS_LITERAL}|{GENERAL_ADDRESS_LITERAL})\]"
)

# --- Mailboxes and paths (RFC 5321 §4.1.2; atext from RFC 5322 §3.2.3) -----------------------

# atext = ALPHA / DIGIT / "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "/" / "=" /
#         "?" / "^" / "_" / "`" / "{" / "|" / "}" / "~"
ATEXT_CHARS = (
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!#$%&'*+-/=?^_`{|}~"
)
ATEXT = r"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]"
# Atom = 1*atext
ATOM = rf"{ATEXT}+"
# Dot-string = Atom *("." Atom)
DOT_STRING = rf"{ATOM}(?:\.{ATOM})*"
# qtextSMTP = %d32-33 / %d35-91 / %d93-126 ; printable US-ASCII excl. '"' and "\"
QTEXT_SMTP = r"[\x20\x21\x23-\x5b\x5d-\x7e]"
# quoted-pairSMTP = %d92 %d32-126 ; backslash followed by any ASCII graphic or space
QUOTED_PAIR_SMTP = r"\\[\x20-\x7e]"
# Quoted-string = DQUOTE *QcontentSMTP DQUOTE
QUOTED_STRING = rf'"(?:{QTEXT_SMTP}|{QUOTED_PAIR_SMTP})*"'
# Local-part = Dot-string / Quoted-string
LOCAL_PART = rf"(?:{DOT_STRING}|{QUOTED_STRING})"
# Mailbox = Local-part "@" ( Domain / address-literal )
MAILBOX = rf"{LOCAL_PART}@(?:{DOMAIN}|{ADDRESS_LITERAL})"
# At-domain = "@" Domain ; A-d-l = At-domain *( "," At-domain )
A_D_L = rf"@{DOMAIN}(?:,@{DOMAIN})*"
# Path = "<" [ A-d-l ":" ] Mailbox ">"
PATH = rf"<(?:{A_D_L}:)?{MAILBOX}>"
# Reverse-path = Path / "<>"
REVERSE_PATH = rf"(?:{PATH}|<>)"
# Forward-path = Path
FORWARD_PATH = PATH
# String = Atom / Quoted-string
STRING = rf"(?:{ATOM}|{QUOTED_STRING})"

# --- ESMTP parameters and EHLO lines (RFC 5321 §4.1.2, §4.1.1.1) -----------------------------

# esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-")
ESMTP_KEYWORD = r"[A-Za-z0-9][A-Za-z0-9-]*"
# esmtp-value = 1*(%d33-60 / %d62-126) ; any CHAR excluding "=", SP, and control characters
ESMTP_VALUE = r"[\x21-\x3c\x3e-\x7e]+"
# esmtp-param = esmtp-keyword ["=" esmtp-value]
ESMTP_PARAM = rf"{ESMTP_KEYWORD}(?:={ESMTP_VALUE})?"
# Mail-parameters = esmtp-param *(SP esmtp-param) ; Rcpt-parameters likewise
MAIL_PARAMETERS = rf"{ESMTP_PARAM}(?: {ESMTP_PARAM})*"
# ehlo-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-")
EHLO_KEYWORD = ESMTP_KEYWORD
# ehlo-param = 1*(%d33-126) ; any CHAR excluding <SP> and all control characters
EHLO_PARAM = r"[\x21-\x7e]+"
# ehlo-line = ehlo-keyword *( SP ehlo-param )
EHLO_LINE = rf"{EHLO_KEYWORD}(?: {EHLO_PARAM})*"

# --- Enhanced status codes (RFC 2034 §4, RFC 3463 §2) ----------------------------------------

# status-code = class "." subject "." detail ; class "2" / "4" / "5", no leading zeros
ENHANCED_STATUS_CODE = r"[245]\.(?:0|[1-9][0-9]{0,2})\.(?:0|[1-9][0-9]{0,2})"
# At the start of a reply line's text, followed by a space or ending it.
ENHANCED_STATUS_CODE_PREFIX_RE = re.compile(rf"{ENHANCED_STATUS_CODE}(?= |$)")


def _anchored(pattern: str) -> re.Pattern[str]:
    return re.compile(rf"(?:{pattern})\Z")


REPLY_CODE_RE = _anchored(REPLY_CODE)
DOMAIN_RE = _anchored(DOMAIN)
ADDRESS_LITERAL_RE = _anchored(ADDRESS_LITERAL)
MAILBOX_RE = _anchored(MAILBOX)
REVERSE_PATH_RE = _anchored(REVERSE_PATH)
FORWARD_PATH_RE = _anchored(FORWARD_PATH)
EHLO_LINE_RE = _anchored(EHLO_LINE)


def is_domain(text: str) -> bool:
    """A syntactically valid Domain within the RFC 5321 §4.5.3.1.2 length limit."""
    return len(text) <= MAX_DOMAIN_OCTETS and DOMAIN_RE.match(text) is not None


def is_address_literal(text: str) -> bool:
    return ADDRESS_LITERAL_RE.match(text) is not None


def is_mailbox(text: str) -> bool:
    """A Mailbox whose local-part and domain respect RFC 5321 §4.5.3.1.1-2."""
    if MAILBOX_RE.match(text) is None:
        return False
    local, _, domain = text.rpartition("@")
    return len(local.encode()) <= MAX_LOCAL_PART_OCTETS and len(domain) <= MAX_DOMAIN_OCTETS


def is_reverse_path(text: str) -> bool:
    return len(text) <= MAX_PATH_OCTETS and REVERSE_PATH_RE.match(text) is not None


def is_forward_path(text: str) -> bool:
    return len(text) <= MAX_PATH_OCTETS and FORWARD_PATH_RE.match(text) is not None


def is_ehlo_line(text: str) -> bool:
    return EHLO_LINE_RE.match(text) is not None
