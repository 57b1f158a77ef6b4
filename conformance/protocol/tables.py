"""The documented reply codes per command, for each profile, as frozen data.

Profiles: ``seed`` (the user's page, reproduced exactly), ``rfc821`` (RFC 821 §4.3) and
``rfc5321`` (RFC 5321 §4.3.2 plus the codes it allows for any command). Rows the seed does
not cover (unrecognised verbs, ESMTP extension commands) are kept apart and marked.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from conformance.protocol.errors import UsageError
from conformance.protocol.levels import Level
from conformance.protocol.vocabulary import EXTENSION_VERBS, UNRECOGNISED, seed_groups

# The seed's groups, spelled and ordered as on the page (derived from the vocabulary's verbs).
# "received data" is the reply to the <CRLF>.<CRLF> that ends a message; "connect" is the
# greeting.
GROUPS = seed_groups()

# Groups outside the seed: extension commands (judged by SUPPLEMENTARY_ROWS).
EXTENSION_GROUPS = tuple(verb.name for verb in EXTENSION_VERBS)


@dataclass(frozen=True)
class Code:
    code: int
    text: str
    note: str = ""  # why a code is in a row when the source table does not print it there


@dataclass(frozen=True)
class Row:
    """The documented replies to one command (or pseudo-command) under one profile."""

    group: str
    codes: tuple[Code, ...]
    citation: str
    level: Level
    in_seed_scope: bool = True  # False: a row the seed page does not cover at all

    @functools.cached_property  # asked for every reply; a row never changes
    def code_set(self) -> frozenset[int]:
        return frozenset(c.code for c in self.codes)

    def allows(self, code: int) -> bool:
        return code in self.code_set


@dataclass(frozen=True)
class Profile:
    name: str
    title: str
    level: Level
    level_citation: str
    rows: Mapping[str, Row]
    # The commands every receiver must implement (the "minimum implementation").
    minimum_verbs: frozenset[str] = frozenset()
    minimum_citation: str = ""

    def row(self, group: str) -> Row:
        """The row for ``group``: the profile's own, else the shared supplementary row."""
        if group in self.rows:
            return self.rows[group]
        if group in SUPPLEMENTARY_ROWS:
            return SUPPLEMENTARY_ROWS[group]
        raise KeyError(f"no reply-code row for {group!r}")

    def documented(self, group: str) -> frozenset[int]:
        return self.row(group).code_set


# --- Reply codes the model and the checks act on (RFC 5321 §4.2.2, §4.2.3) ------------------

SERVICE_READY = 220  # the greeting
CLOSING = 221  # to QUIT, then close (§4.1.1.10)
OK = 250
CANNOT_VERIFY = 252  # to VRFY: cannot verify the user, will take the message (§3.5.3)
START_MAIL_INPUT = 354  # to DATA: send the message
AUTH_SUCCEEDED = 235  # RFC 4954 §6
AUTH_CHALLENGE = 334  # to AUTH: a server challenge, answered by the client (RFC 4954 §4)
SERVICE_NOT_AVAILABLE = 421  # any time, then close (§3.8)
COMMAND_UNRECOGNISED = 500
SYNTAX_ERROR = 501  # in parameters or arguments; also how AUTH is cancelled (RFC 4954 §4)
NOT_IMPLEMENTED = 502
BAD_SEQUENCE = 503  # a command out of order (RCPT with no MAIL: RFC 5321 §3.3)
PARAMETER_NOT_SUPPORTED = 504  # a command parameter not implemented
NOT_TAKEN = 550  # requested action not taken (a HELO/EHLO refused by policy: §4.1.4)
MAILBOX_NAME_NOT_ALLOWED = 553  # the mailbox's syntax, say (§4.2.3)
NO_MAIL_HERE = 521  # a greeting: this host accepts no mail (RFC 7504 §1)
PARAMETER_NOT_IMPLEMENTED = 555  # a MAIL/RCPT parameter not recognised (§4.1.1.11)

# --- Code texts ------------------------------------------------------------------------------

# RFC 821 §4.2.2 numeric order list (RFC 5321 §4.2.3 keeps these texts).
RFC821_TEXT = MappingProxyType({
    211: "System status, or system help reply",
    214: "Help message",
    220: "<domain> Service ready",
    221: "<domain> Service closing transmission channel",
    250: "Requested mail action okay, completed",
    251: "User not local; will forward to <forward-path>",
    354: "Start mail input; end with <CRLF>.<CRLF>",
    421: "<domain> Service not available, closing transmission channel",
    450: "Requested mail action not taken: mailbox unavailable",
    451: "Requested action aborted: local error in processing",
    452: "Requested action not taken: insufficient system storage",
    500: "Syntax error, command unrecognized",
    501: "Syntax error in parameters or arguments",
    502: "Command not implemented",
    503: "Bad sequence of commands",
    504: "Command parameter not implemented",
    550: "Requested action not taken: mailbox unavailable",
    551: "User not local; please try <forward-path>",
    552: "Requested mail action aborted: exceeded storage allocation",
    553: "Requested action not taken: mailbox name not allowed",
    554: "Transaction failed",
})
# Codes RFC 5321 §4.2.3 adds to RFC 821's list.
RFC5321_TEXT = MappingProxyType({
    **RFC821_TEXT,
    252: "Cannot VRFY user, but will accept message and attempt delivery",
    455: "Server unable to accommodate parameters",
    554: "Transaction failed (or, in a connection-opening response, No SMTP service here)",
    555: "MAIL FROM/RCPT TO parameters not recognized or not implemented",
})
# The seed page's texts: RFC 821's, except where the page words them differently.
SEED_TEXT = MappingProxyType({
    **RFC821_TEXT,
    200: "(nonstandard success response, see rfc876)",
    521: "<domain> does not accept mail [rfc1846]",
})
_UNRECOGNISED_BRITISH = "Syntax error, command unrecognised"
_SEED_TEXT_OVERRIDES: Mapping[tuple[str, int], str] = MappingProxyType({
    ("connect", 220): "domain Service ready",
    ("connect", 421): "domain Service not available, closing transmission channel",
    ("HELO", 500): _UNRECOGNISED_BRITISH,
    ("EHLO", 550): "Not implemented",
    ("SAML", 500): _UNRECOGNISED_BRITISH,
    ("VRFY", 500): _UNRECOGNISED_BRITISH,
})

# --- Profile: seed ---------------------------------------------------------------------------

# The seed table is the classic per-command reply-code table: RFC 821 §4.3 with an EHLO row,
# 200 (RFC 876) for RSET and NOOP, and 521 (RFC 1846) for HELO and RCPT. Every finding cites
# it, so it is named by what it is, briefly.
SEED_CITATION = "classic table (RFC 821 §4.3 + EHLO, 200, 521)"

# Page order within each group, exactly as the seed lists them.
_SEED_CODES: Mapping[str, tuple[int, ...]] = MappingProxyType({
    "connect": (220, 421),
    "HELO": (250, 500, 501, 504, 521, 421),
    "EHLO": (250, 550, 500, 501, 504, 421),
    "MAIL": (250, 552, 451, 452, 500, 501, 421),
    "RCPT": (250, 251, 550, 551, 552, 553, 450, 451, 452, 500, 501, 503, 521, 421),
    "DATA": (354, 451, 554, 500, 501, 503, 421),
    "received data": (250, 552, 554, 451, 452),
    "RSET": (200, 250, 500, 501, 504, 421),
    "SEND": (250, 552, 451, 452, 500, 501, 502, 421),
    "SOML": (250, 552, 451, 452, 500, 501, 502, 421),
    "SAML": (250, 552, 451, 452, 500, 501, 502, 421),
    "VRFY": (250, 251, 550, 551, 553, 500, 501, 502, 504, 421),
    "EXPN": (250, 550, 500, 501, 502, 504, 421),
    "HELP": (211, 214, 500, 501, 502, 504, 421),
    "NOOP": (200, 250, 500, 421),
    "QUIT": (221, 500),
    "TURN": (250, 502, 500, 503),
})


def _seed_row(group: str) -> Row:
    codes = tuple(
        Code(code, _SEED_TEXT_OVERRIDES.get((group, code), SEED_TEXT[code]))
        for code in _SEED_CODES[group]
    )
    return Row(group, codes, f"{SEED_CITATION}, group {group!r}", Level.MUST)


# --- Profile: rfc821 (RFC 821 §4.3, in its S, F, E order) -----------------------------------

_RFC821_CODES: Mapping[str, tuple[int, ...]] = MappingProxyType({
    "connect": (220, 421),
    "HELO": (250, 500, 501, 504, 421),
    "MAIL": (250, 552, 451, 452, 500, 501, 421),
    "RCPT": (250, 251, 550, 551, 552, 553, 450, 451, 452, 500, 501, 503, 421),
    "DATA": (354, 451, 554, 500, 501, 503, 421),
    "received data": (250, 552, 554, 451, 452),
    "RSET": (250, 500, 501, 504, 421),
    "SEND": (250, 552, 451, 452, 500, 501, 502, 421),
    "SOML": (250, 552, 451, 452, 500, 501, 502, 421),
    "SAML": (250, 552, 451, 452, 500, 501, 502, 421),
    "VRFY": (250, 251, 550, 551, 553, 500, 501, 502, 504, 421),
    "EXPN": (250, 550, 500, 501, 502, 504, 421),
    "HELP": (211, 214, 500, 501, 502, 504, 421),
    "NOOP": (250, 500, 421),
    "QUIT": (221, 500),
    "TURN": (250, 502, 500, 503),
})


def _rfc821_row(group: str) -> Row:
    codes = tuple(Code(code, RFC821_TEXT[code]) for code in _RFC821_CODES[group])
    return Row(group, codes, f"RFC 821 §4.3, {group}", Level.MUST)


# --- Profile: rfc5321 (RFC 5321 §4.3.2 and the codes it allows for any command) -------------

ANY_COMMAND = "any command (RFC 5321 §4.3.2 preamble)"
ANY_TIME = "any time, then close (RFC 5321 §3.8)"
_ANY_COMMAND_CODES = ((500, ANY_COMMAND), (501, ANY_COMMAND), (421, ANY_COMMAND))

# group -> (codes printed in §4.3.2, codes added with the reason, citation)
_RFC5321_SPEC: Mapping[str, tuple[tuple[int, ...], tuple[tuple[int, str], ...], str]] = (
    MappingProxyType({
        "connect": ((220, 554), ((421, ANY_TIME),), "RFC 5321 §4.3.2, §3.1, §3.8"),
        "HELO": ((250, 504, 550, 502), _ANY_COMMAND_CODES, "RFC 5321 §4.3.2, §4.1.4"),
        "EHLO": ((250, 504, 550, 502), _ANY_COMMAND_CODES, "RFC 5321 §4.3.2, §4.1.4"),
        "MAIL": (
            (250, 552, 451, 452, 550, 553, 503, 455, 555), _ANY_COMMAND_CODES,
            "RFC 5321 §4.3.2, §3.3, §4.1.1.11",
        ),
        "RCPT": (
            (250, 251, 550, 551, 552, 553, 450, 451, 452, 503, 455, 555), _ANY_COMMAND_CODES,
            "RFC 5321 §4.3.2, §3.3, §4.1.1.11",
        ),
        "DATA": ((354, 503, 554), _ANY_COMMAND_CODES, "RFC 5321 §4.3.2, §3.3"),
        "received data": (
            (250, 552, 554, 451, 452, 450, 550), ((421, ANY_TIME),),
            "RFC 5321 §4.3.2, §4.2.5, §3.8",
        ),
        "RSET": ((250,), _ANY_COMMAND_CODES, "RFC 5321 §4.3.2, §4.1.1.5"),
        **{
            verb: (
                (250, 552, 451, 452, 500, 501, 502, 421),
                ((503, "out of order (RFC 5321 §4.1.4)"),),
                "RFC 5321 App. F.6 (RFC 821 §4.3 model), §4.1.4",
            )
            for verb in ("SEND", "SOML", "SAML")
        },
        "VRFY": (
            (250, 251, 252, 550, 551, 553, 502, 504), _ANY_COMMAND_CODES,
            "RFC 5321 §4.3.2, §3.5.3, §7.3",
        ),
        "EXPN": (
            (250, 252, 550, 500, 502, 504), ((501, ANY_COMMAND), (421, ANY_COMMAND)),
            "RFC 5321 §4.3.2, §3.5.3",
        ),
        "HELP": ((211, 214, 502, 504), _ANY_COMMAND_CODES, "RFC 5321 §4.3.2, §4.1.1.8"),
        "NOOP": ((250,), _ANY_COMMAND_CODES, "RFC 5321 §4.3.2, §4.1.1.9"),
        "QUIT": ((221,), _ANY_COMMAND_CODES, "RFC 5321 §4.3.2, §4.1.1.10"),
        "TURN": (
            (250, 502, 500, 503), ((501, ANY_COMMAND), (421, ANY_COMMAND)),
            "RFC 5321 App. F.1 (RFC 821 §4.3 model), §4.2.4",
        ),
    })
)


def _rfc5321_row(group: str) -> Row:
    printed, added, citation = _RFC5321_SPEC[group]
    codes = [Code(code, RFC5321_TEXT[code]) for code in printed]
    codes += [Code(code, RFC5321_TEXT[code], note) for code, note in added]
    return Row(group, tuple(codes), citation, Level.SHOULD)


# --- Rows the seed does not cover ------------------------------------------------------------

_NOT_ADVERTISED = "extension not advertised (RFC 5321 §4.2.4)"


def _codes(pairs: Iterable[tuple[int, str]], note: str = "") -> tuple[Code, ...]:
    return tuple(Code(code, text, note) for code, text in pairs)


SUPPLEMENTARY_ROWS: Mapping[str, Row] = MappingProxyType({
    UNRECOGNISED: Row(
        UNRECOGNISED,
        (Code(500, RFC5321_TEXT[500]), Code(421, RFC5321_TEXT[421], ANY_TIME)),
        "RFC 5321 §4.2.4 (500 for a verb not recognised), §3.8",
        Level.SHOULD,
        in_seed_scope=False,
    ),
    # EHLO postdates RFC 821; a profile without its own EHLO row uses RFC 5321's.
    "EHLO": Row(
        "EHLO",
        _rfc5321_row("EHLO").codes,
        "RFC 5321 §4.3.2, §4.1.4 (EHLO is not in RFC 821; RFC 1869)",
        Level.SHOULD,
        in_seed_scope=False,
    ),
    "STARTTLS": Row(
        "STARTTLS",
        _codes([(220, "Ready to start TLS"), (501, "Syntax error (no parameters allowed)"),
                (454, "TLS not available due to temporary reason")])
        + _codes([(500, RFC5321_TEXT[500]), (502, RFC5321_TEXT[502])], _NOT_ADVERTISED)
        + (Code(421, RFC5321_TEXT[421], ANY_TIME),),
        "RFC 3207 §4",
        Level.SHOULD,
        in_seed_scope=False,
    ),
    "AUTH": Row(
        "AUTH",
        _codes([
            (235, "Authentication succeeded"), (334, "Server challenge"),
            (432, "A password transition is needed"),
            (454, "Temporary authentication failure"),
            (500, "Authentication exchange line is too long"),
            (501, "Syntax error / cancelled"), (503, "Bad sequence of commands"),
            (504, "Unrecognized authentication type"),
            (534, "Authentication mechanism is too weak"),
            (535, "Authentication credentials invalid"),
            (538, "Encryption required for requested authentication mechanism"),
        ])
        + _codes([(502, RFC5321_TEXT[502])], _NOT_ADVERTISED)
        + (Code(421, RFC5321_TEXT[421], ANY_TIME),),
        "RFC 4954 §4, §6",
        Level.SHOULD,
        in_seed_scope=False,
    ),
    "BDAT": Row(
        "BDAT",
        _codes([(250, "Chunk accepted"), (503, RFC5321_TEXT[503])])
        + _codes([(451, RFC5321_TEXT[451]), (452, RFC5321_TEXT[452]),
                  (552, RFC5321_TEXT[552]), (554, RFC5321_TEXT[554])],
                 "as for the end of mail data (RFC 5321 §4.3.2)")
        + _codes([(500, RFC5321_TEXT[500]), (502, RFC5321_TEXT[502])], _NOT_ADVERTISED)
        + (Code(501, RFC5321_TEXT[501], ANY_COMMAND), Code(421, RFC5321_TEXT[421], ANY_TIME)),
        "RFC 3030 §2 (quoted sentences only)",
        Level.SHOULD,
        in_seed_scope=False,
    ),
})


# --- The minimum implementation ------------------------------------------------------------

RFC821_MINIMUM = frozenset({"HELO", "MAIL", "RCPT", "DATA", "RSET", "NOOP", "QUIT"})
RFC5321_MINIMUM = RFC821_MINIMUM | {"EHLO", "VRFY"}

# --- The profiles ----------------------------------------------------------------------------

def _rows(groups: Iterable[str], make: Callable[[str], Row]) -> Mapping[str, Row]:
    return MappingProxyType({group: make(group) for group in groups})


PROFILES: Mapping[str, Profile] = MappingProxyType({
    "seed": Profile(
        "seed",
        "The user's documented sets: the seed page, exactly",
        Level.MUST,
        "the user's documented sets; codes outside them are failures",
        _rows(GROUPS, _seed_row),
        RFC821_MINIMUM, "RFC 821 §4.5.1",
    ),
    "rfc821": Profile(
        "rfc821",
        "RFC 821 §4.3 command-reply sequences",
        Level.MUST,
        'RFC 821 §4.3: "These must be strictly adhered to"',
        _rows(_RFC821_CODES, _rfc821_row),
        RFC821_MINIMUM, "RFC 821 §4.5.1",
    ),
    "rfc5321": Profile(
        "rfc5321",
        "RFC 5321 §4.3.2 sequences plus the any-command codes (500, 501, 421)",
        Level.SHOULD,
        'RFC 5321 §4.3.1: "These SHOULD be strictly adhered to"',
        _rows(GROUPS, _rfc5321_row),
        RFC5321_MINIMUM, "RFC 5321 §4.5.1",
    ),
})
DEFAULT_PROFILE = "seed"


def get_profile(name: str) -> Profile:
    """The profile called ``name``; a ``UsageError`` naming the choices otherwise."""
    try:
        return PROFILES[name]
    except KeyError:
        choices = ", ".join(PROFILES)
        raise UsageError(f"unknown SMTP profile {name!r} (choose one of: {choices})") from None
