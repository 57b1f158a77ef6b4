"""The checks: a registry of small named functions, one property each.

Every check has one signature: it takes an ``Exchange`` (what was sent, in which state, what
came back) and returns a complaint or None. Each carries an id, a level and its citation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from types import MappingProxyType

from conformance import grammar
from conformance.commands import Command, Message
from conformance.errors import ConnectionClosed, ReplyFramingError, ReplyTimeout, ServerError
from conformance.levels import Level
from conformance.model import Session, State, advance, is_positive
from conformance.replies import Reply
from conformance.tables import (
    CLOSING,
    COMMAND_UNRECOGNISED,
    NOT_IMPLEMENTED,
    SERVICE_NOT_AVAILABLE,
    SERVICE_READY,
    START_MAIL_INPUT,
    Profile,
)
from conformance.vocabulary import END_OF_DATA, GREETING


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
    # Seconds the reply (or the close after 221/421) took, when longer than the timeout.
    late: float | None = None
    timeout: float = 0.0  # the run's per-reply timeout
    # A control probe: this command is the plain form of the one just before it, which was
    # refused; here are that command and its reply (sent in the same state).
    variant_of: tuple[Command, Reply] | None = None


Complaint = str | tuple[str, Level]  # a message, optionally with a level for this instance
CheckFunction = Callable[[Exchange], Complaint | None]


@dataclass(frozen=True)
class Check:
    id: str
    level: Level | None  # None: the level of the profile row the reply is judged against
    citation: str
    run: CheckFunction
    # Timing evidence: a replay answered in time does not refute it, so a finding that does
    # not reproduce is INCONCLUSIVE rather than an intermittent deviation.
    timing: bool = False
    # Per run: the finding stands only if no exchange of the run refuted it (``refuted_by``).
    refuted_by: Callable[[Exchange], bool] | None = None
    # About the session, not the command it happened on (a server that gives up after some
    # errors, a tarpit): one behaviour, whichever command met it.
    about_session: bool = False
    # Whether the model still knows the server's state after this finding, so the session
    # may go on (None: it does not; the session ends, and the run reconnects).
    state_known: Callable[[Exchange], bool] | None = None


_REGISTRY: dict[str, Check] = {}


def check(id: str, *, level: Level | None, citation: str, timing: bool = False,
          refuted_by: Callable[[Exchange], bool] | None = None, about_session: bool = False,
          state_known: Callable[[Exchange], bool] | None = None
          ) -> Callable[[CheckFunction], CheckFunction]:
    """Register ``function`` as a check. A new check is one decorated function."""
    def register(function: CheckFunction) -> CheckFunction:
        if id in _REGISTRY:
            raise ValueError(f"check {id!r} registered twice")
        _REGISTRY[id] = Check(id, level, citation, function, timing=timing,
                              refuted_by=refuted_by, about_session=about_session,
                              state_known=state_known)
        return function
    return register


def _always(x: Exchange) -> bool:
    return True


def _code_documented(x: Exchange) -> bool:
    """A readable reply with a documented code: the model advanced as the server meant."""
    return x.reply is not None and x.reply.well_formed and \
        x.profile.row(x.group).allows(x.reply.code)


def _leaves_state_as_it_was(x: Exchange) -> bool:
    """The reply is readable, of a class the row has (a client acts on the first digit, RFC
    5321 §4.2.1), and the model's state after it is what any reply of that class leaves: the
    state before, or after the end of data, READY whatever the code (§4.1.1.4). An
    undocumented code that would move the session (220 to HELO) leaves the model unsure
    whether the server did what a documented one means."""
    if x.reply is None or not x.reply.well_formed or \
            x.reply.first_digit not in {code // 100 for code in x.profile.row(x.group).code_set}:
        return False
    return x.group == END_OF_DATA or \
        advance(x.before, x.group, x.reply.code).state is x.before.state


# --- the checks ------------------------------------------------------------------------------

@check("reply_well_formed", level=Level.MUST, citation="RFC 5321 §4.2")
def reply_well_formed(x: Exchange) -> Complaint | None:
    if isinstance(x.error, ReplyFramingError):
        return x.error.violation.describe(), Level.MUST
    if x.reply is None or x.reply.well_formed:
        return None
    worst = Level.MUST if any(v.level is Level.MUST for v in x.reply.violations) else Level.SHOULD
    return "; ".join(v.describe() for v in x.reply.violations), worst


@check("command_answered", level=Level.MUST, citation="RFC 5321 §4.2, §4.5.3.2", timing=True)
def command_answered(x: Exchange) -> Complaint | None:
    """No reply at all, even after the longer confirmation wait."""
    return str(x.error) if isinstance(x.error, ReplyTimeout) else None


# RFC 5321 §4.5.3.2 gives a client minutes per command, so a late reply is not a broken one;
# it is reported, and the session ends (a tarpit slows the commands after it too).
@check("reply_within_timeout", level=Level.SHOULD, citation="RFC 5321 §4.5.3.2", timing=True,
       about_session=True)
def reply_within_timeout(x: Exchange) -> Complaint | None:
    if x.late is None:
        return None
    what = "closed the connection" if x.closed_after else "replied"
    return f"the server {what} after {x.late:.1f}s (the run's timeout is {x.timeout:g}s)"


# RFC 5321 §7.8 lets a server under attack close after repeated failed commands; it SHOULD
# still send 421 first (§3.8). Below this many 5yz replies, a silent close breaks the MUST.
ERRORS_BEFORE_GIVING_UP = 3


@check("no_silent_close", level=Level.MUST, citation="RFC 5321 §3.8, §7.8", about_session=True)
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


@check("verb_case_insensitive", level=Level.MUST, citation="RFC 5321 §2.4", state_known=_always)
def verb_case_insensitive(x: Exchange) -> Complaint | None:
    """Differential: the same command with the verb in upper case, sent right after in the
    same state, succeeded where the case variant was refused as unrecognised."""
    if x.variant_of is None or x.reply is None or not is_positive(x.group, x.reply.code):
        return None
    variant, refusal = x.variant_of
    if variant.verb_as_sent == variant.verb or \
            refusal.code not in (COMMAND_UNRECOGNISED, NOT_IMPLEMENTED):
        return None
    return (f"{refusal.code} to {variant.verb_as_sent!r} but {x.reply.code} to {variant.verb!r}:"
            f" verbs are case-insensitive")


@check("noop_ignores_parameter", level=Level.SHOULD, citation="RFC 5321 §4.1.1.9",
       state_known=_always)
def noop_ignores_parameter(x: Exchange) -> Complaint | None:
    """Differential: a bare NOOP succeeded right after a NOOP with a parameter was refused."""
    if x.group != "NOOP" or x.variant_of is None or x.reply is None or \
            not is_positive("NOOP", x.reply.code):
        return None
    variant, refusal = x.variant_of
    if variant.verb_as_sent != variant.verb:
        return None  # a case variant: verb_case_insensitive speaks for it
    return (f"{refusal.code} to {variant.line.rstrip()!r} but {x.reply.code} to a bare NOOP: "
            f"a server should ignore NOOP's parameter")


def _minimum_verb_sent(x: Exchange) -> Command | None:
    """The command, if it is a valid one, with its verb in upper case, of a verb in the
    profile's minimum implementation, and it was answered."""
    sent = x.sent
    if not isinstance(sent, Command) or not sent.valid or x.reply is None or \
            sent.verb not in x.profile.minimum_verbs or sent.verb_as_sent != sent.verb:
        return None
    return sent


def _implemented(x: Exchange) -> bool:
    return _minimum_verb_sent(x) is not None and x.reply is not None and \
        x.reply.code not in (COMMAND_UNRECOGNISED, NOT_IMPLEMENTED)


@check("minimum_implementation", level=Level.MUST, citation="RFC 821 §4.5.1; RFC 5321 §4.5.1",
       refuted_by=_implemented)
def minimum_implementation(x: Exchange) -> Complaint | None:
    """A command every receiver must implement was refused as unknown or not implemented, and
    (per run) no valid form of it was ever answered otherwise."""
    sent = _minimum_verb_sent(x)
    if sent is None or x.reply is None or \
            x.reply.code not in (COMMAND_UNRECOGNISED, NOT_IMPLEMENTED):
        return None
    return (f"{sent.verb} is answered {x.reply.code} whatever its form: it is part of the "
            f"minimum implementation [{x.profile.minimum_citation}]")


@check("greeting_names_server", level=Level.MUST, citation="RFC 5321 §4.2, §4.3.1",
       state_known=_code_documented)
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
@check("reply_code_documented", level=None, citation="the profile's row for the command",
       state_known=_leaves_state_as_it_was)
def reply_code_documented(x: Exchange) -> Complaint | None:
    if x.reply is None:
        return None
    row = x.profile.row(x.group)
    code = x.reply.code
    if row.allows(code):
        return None
    # The RFC 821 table omits 421 for QUIT, TURN and the end of data.
    if code == SERVICE_NOT_AVAILABLE:
        return (f"421 is not in the {x.profile.name} row for {x.group} [{row.citation}], but "
                f"RFC 821 §4.3 and RFC 5321 §3.8 allow 421 for any command"), Level.INFO
    message = f"{code} is not documented for {x.group} [{row.citation}]"
    if code // 100 not in {c // 100 for c in row.code_set}:
        # RFC 5321 §4.2.1: a client acts on the first digit, so a reply of a class the row
        # never has is read as something else entirely, under any profile.
        return (f"{message}, nor is any {code // 100}yz reply (RFC 5321 §4.2.1: clients act "
                f"on the first digit)"), Level.MUST
    return message, row.level


CHECKS: MappingProxyType[str, Check] = MappingProxyType(_REGISTRY)


@dataclass(frozen=True)
class Finding:
    """One check's complaint about one exchange."""

    check: Check
    level: Level
    complaint: str


def refuted_checks(exchange: Exchange) -> list[str]:
    """The per-run checks that ``exchange`` refutes for its command group."""
    return [c.id for c in CHECKS.values() if c.refuted_by is not None and c.refuted_by(exchange)]


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
