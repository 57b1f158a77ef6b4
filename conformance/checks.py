"""The checks: a registry of small named functions, one property each.

Every check has one signature: it takes an ``Exchange`` (what was sent, in which state, what
came back) and returns a complaint or None. Each carries an id, a level and its citation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import MappingProxyType

from conformance import grammar
from conformance.commands import END_OF_DATA, GREETING, MANDATORY_VERBS, Command, Message
from conformance.errors import ConnectionClosed, ReplyFramingError, ReplyTimeout, ServerError
from conformance.levels import Level
from conformance.model import Session, State, is_positive
from conformance.replies import Reply
from conformance.tables import (
    CLOSING,
    COMMAND_UNRECOGNISED,
    SERVICE_NOT_AVAILABLE,
    SERVICE_READY,
    START_MAIL_INPUT,
    Profile,
)


@dataclass(frozen=True)
class Exchange:
    """One step of a session, as the checks see it."""

    profile: Profile
    before: Session
    group: str
    sent: Command | Message | None  # None for the greeting
    reply: Reply | None = None
    error: ServerError | None = None
    closed_after: bool | None = None  # probed only after 221 to QUIT and after 421


Complaint = str | tuple[str, Level]  # a message, optionally with a level for this instance
CheckFunction = Callable[[Exchange], Complaint | None]


@dataclass(frozen=True)
class Check:
    id: str
    level: Level | None  # None: the level of the profile row the reply is judged against
    citation: str
    run: CheckFunction


_REGISTRY: dict[str, Check] = {}


def check(id: str, *, level: Level | None, citation: str) -> Callable[[CheckFunction],
                                                                      CheckFunction]:
    """Register ``function`` as a check. A new check is one decorated function."""
    def register(function: CheckFunction) -> CheckFunction:
        if id in _REGISTRY:
            raise ValueError(f"check {id!r} registered twice")
        _REGISTRY[id] = Check(id, level, citation, function)
        return function
    return register


# --- the checks ------------------------------------------------------------------------------

@check("reply_well_formed", level=Level.MUST, citation="RFC 5321 §4.2")
def reply_well_formed(x: Exchange) -> Complaint | None:
    if isinstance(x.error, ReplyFramingError):
        return x.error.violation.describe(), Level.MUST
    if x.reply is None or x.reply.well_formed:
        return None
    worst = Level.MUST if any(v.level is Level.MUST for v in x.reply.violations) else Level.SHOULD
    return "; ".join(v.describe() for v in x.reply.violations), worst


@check("reply_within_timeout", level=Level.MUST, citation="RFC 5321 §4.2, §4.5.3.2")
def reply_within_timeout(x: Exchange) -> Complaint | None:
    return str(x.error) if isinstance(x.error, ReplyTimeout) else None


# RFC 5321 §7.8 lets a server under attack close after repeated failed commands; it SHOULD
# still send 421 first (§3.8). Below this many 5yz replies, a silent close breaks the MUST.
ERRORS_BEFORE_GIVING_UP = 3


@check("no_silent_close", level=Level.MUST, citation="RFC 5321 §3.8, §7.8")
def no_silent_close(x: Exchange) -> Complaint | None:
    if not isinstance(x.error, ConnectionClosed):
        return None
    if x.before.errors >= ERRORS_BEFORE_GIVING_UP:
        return (f"the server closed the connection without 421 after {x.before.errors} error "
                f"replies (§7.8 allows giving up; §3.8: send 421 first): {x.error}"), Level.SHOULD
    return f"the server closed the connection without 221 or 421: {x.error}"


@check("quit_closes", level=Level.MUST, citation="RFC 5321 §4.1.1.10")
def quit_closes(x: Exchange) -> Complaint | None:
    if x.group == "QUIT" and x.reply is not None and x.reply.code == CLOSING and \
            x.closed_after is False:
        return "the server replied 221 to QUIT but kept the connection open"
    return None


@check("closes_after_421", level=Level.MUST, citation="RFC 5321 §3.8")
def closes_after_421(x: Exchange) -> Complaint | None:
    if x.reply is not None and x.reply.code == SERVICE_NOT_AVAILABLE and \
            x.closed_after is False:
        return "the server replied 421 but kept the connection open"
    return None


@check("rcpt_requires_mail", level=Level.MUST, citation="RFC 5321 §3.3")
def rcpt_requires_mail(x: Exchange) -> Complaint | None:
    if x.group == "RCPT" and x.reply is not None and not x.before.in_transaction and \
            is_positive("RCPT", x.reply.code):
        return f"RCPT succeeded ({x.reply.code}) with no mail transaction open (expected 503)"
    return None


@check("data_requires_recipient", level=Level.MUST, citation="RFC 5321 §3.3, §4.1.4")
def data_requires_recipient(x: Exchange) -> Complaint | None:
    if x.group == "DATA" and x.reply is not None and x.before.state is not State.RCPT and \
            x.reply.code == START_MAIL_INPUT:
        return "354 to DATA with no accepted recipient (expected 503 or 554)"
    return None


@check("verb_case_insensitive", level=Level.MUST, citation="RFC 5321 §2.4, §4.5.1")
def verb_case_insensitive(x: Exchange) -> Complaint | None:
    sent = x.sent
    if not isinstance(sent, Command) or not sent.valid or x.reply is None:
        return None
    if sent.verb in MANDATORY_VERBS and sent.verb_as_sent != sent.verb and \
            x.reply.code == COMMAND_UNRECOGNISED:
        return f"500 to {sent.verb_as_sent!r}: verbs are case-insensitive"
    return None


@check("greeting_names_server", level=Level.MUST, citation="RFC 5321 §4.2, §4.3.1")
def greeting_names_server(x: Exchange) -> Complaint | None:
    if x.group != GREETING or x.reply is None or x.reply.code != SERVICE_READY:
        return None
    first = x.reply.lines[0].split(" ", 1)[0]
    if grammar.is_domain(first) or grammar.is_address_literal(first):
        return None
    return f"220 greeting must begin with the server's domain or address literal, got {first!r}"


@check("end_of_data_reply_is_final", level=Level.MUST, citation="RFC 821 §4.4; RFC 5321 §4.2.5")
def end_of_data_reply_is_final(x: Exchange) -> Complaint | None:
    if x.group == END_OF_DATA and x.reply is not None and x.reply.first_digit not in (2, 4, 5):
        return f"{x.reply.code} after the end of mail data: only a final reply may follow"
    return None


# Last: a check above names the specific rule when a code is also outside the table.
@check("reply_code_documented", level=None, citation="the profile's row for the command")
def reply_code_documented(x: Exchange) -> Complaint | None:
    if x.reply is None:
        return None
    row = x.profile.row(x.group)
    if row.allows(x.reply.code):
        return None
    # The RFC 821 table omits 421 for QUIT, TURN and the end of data.
    if x.reply.code == SERVICE_NOT_AVAILABLE:
        return (f"421 is not in the {x.profile.name} row for {x.group} [{row.citation}], but "
                f"RFC 821 §4.3 and RFC 5321 §3.8 allow 421 for any command"), Level.INFO
    return f"{x.reply.code} is not documented for {x.group} [{row.citation}]", row.level


CHECKS: MappingProxyType[str, Check] = MappingProxyType(_REGISTRY)


@dataclass(frozen=True)
class Finding:
    """One check's complaint about one exchange."""

    check: Check
    level: Level
    complaint: str


def run_checks(exchange: Exchange) -> list[Finding]:
    """Every complaint the registered checks have about ``exchange``, MUST first."""
    findings = []
    for registered in CHECKS.values():
        complaint = registered.run(exchange)
        if complaint is None:
            continue
        message, level = complaint if isinstance(complaint, tuple) else (
            complaint, registered.level or Level.MUST)
        findings.append(Finding(registered, level, message))
    order = {Level.MUST: 0, Level.SHOULD: 1, Level.INFO: 2}
    return sorted(findings, key=lambda f: order[f.level])
