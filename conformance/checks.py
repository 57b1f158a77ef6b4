"""The checks: a registry of small named functions, one property each.

Every check has one signature: it takes an ``Exchange`` (what was sent, in which state, what
came back) and returns a complaint or None. Each carries an id, a level and its citation.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Container
from dataclasses import dataclass, field
from types import MappingProxyType

from conformance import grammar
from conformance.commands import RELAY_PROBES, Command, DataProbe, Message, Sent
from conformance.errors import ConnectionClosed, ReplyFramingError, ReplyTimeout, ServerError
from conformance.levels import Level
from conformance.model import Session, State, advance, is_positive
from conformance.replies import Reply
from conformance.tables import (
    BAD_SEQUENCE,
    CLOSING,
    COMMAND_UNRECOGNISED,
    MAILBOX_NAME_NOT_ALLOWED,
    NO_MAIL_HERE,
    NOT_IMPLEMENTED,
    NOT_TAKEN,
    OK,
    PARAMETER_NOT_IMPLEMENTED,
    PARAMETER_NOT_SUPPORTED,
    SERVICE_NOT_AVAILABLE,
    SERVICE_READY,
    START_MAIL_INPUT,
    SYNTAX_ERROR,
    Profile,
    get_profile,
)
from conformance.violations import RULES
from conformance.vocabulary import (
    END_OF_DATA,
    EXTENSION_OF_PARAMETER,
    GREETING,
    UNRECOGNISED,
    UPGRADING_VERBS,
    VERBS,
    parse_ehlo,
)


@dataclass(frozen=True)
class Exchange:
    """One step of a session, as the checks see it."""

    profile: Profile
    before: Session
    group: str
    sent: Sent | None  # None for the greeting
    reply: Reply | None = None
    error: ServerError | None = None
    closed_after: bool | None = None  # probed only after 221 to QUIT and after 421
    # Seconds the reply (or the close after 221/421) took, when longer than the timeout.
    late: float | None = None
    timeout: float = 0.0  # the run's per-reply timeout
    # A control probe: this command is the plain form of the one just before it, which was
    # refused; here are that command and its reply (sent in the same state).
    variant_of: tuple[Command, Reply] | None = None
    # In a pipelined batch (RFC 2920): this command's place in it (from 0), and how many of
    # the commands before it were answered.
    batch: tuple[int, int] | None = None
    # A reply to nothing this client sent in this state: after a TLS handshake, before the
    # client said anything over TLS (see ``starttls_discards_plaintext``); after the reply to
    # an end-of-data probe, one to the line smuggled after its ending.
    unsolicited: Reply | None = None
    # The reply came before the client ended the mail data (an end-of-data probe's, which
    # must not be answered before its real end: ``data_ends_only_at_crlf_dot_crlf``).
    early: bool = False
    # The server closed the connection after this reply, unasked, before the client sent
    # anything more (judged by ``no_silent_close``: only 221 to QUIT and 421 may do that).
    closed_unasked: bool = False

    @property
    def is_probe(self) -> bool:
        """Whether this exchange is a probe, input no client sends in the normal course (an
        end-of-data probe's data, a bare line break in a command line, plaintext after
        STARTTLS in its write). A probe is judged by the checks made for it
        (``Check.judges_probes``) alone: a server may well refuse such input and close, as
        one that enforces synchronization does (RFC 5321 §4.3.1)."""
        if isinstance(self.sent, DataProbe):
            return True
        return isinstance(self.sent, Command) and (
            self.sent.bare_line_break is not None or
            (self.group in UPGRADING_VERBS and bool(self.sent.line.partition(b"\r\n")[2])))

    @property
    def judged_as(self) -> str:
        """The row the reply's code is judged against: the command's; but for a verb of an
        extension the session's EHLO did not advertise, answered with a code outside that
        verb's row, the unrecognised verb's. A client uses only what was advertised (RFC 5321
        §4.1.1.1); to such a server it is a verb it does not know, and a server that takes
        any unknown verb takes it too: one behaviour, not one per extension verb. (STARTTLS
        over TLS is known to the server that did the upgrade: RFC 3207 §4.2 has it not
        advertised again.)"""
        verb = VERBS.get(self.group)
        if verb is None or verb.extension is None or self.reply is None or \
                verb.extension in self.before.extensions or \
                (self.group in UPGRADING_VERBS and self.before.tls) or \
                self.profile.row(self.group).allows(self.reply.code):
            return self.group
        return UNRECOGNISED

    @property
    def filed_under(self) -> str:
        """The group a finding on this exchange is filed under (its key's): the command's;
        for a reply before an end-of-data probe's real end, with the probe's ending, so that
        each ending a server takes is a finding of its own."""
        if self.early and isinstance(self.sent, DataProbe):
            return f"{self.group} {self.sent.ending}"
        return self.group


Complaint = str | tuple[str, Level]  # a message, optionally with a level for this instance
CheckFunction = Callable[[Exchange], Complaint | None]
# What a finding of a check is about, beyond the check and its level: (cause, code). Two
# findings with the same identity are one behaviour of the server, reported once with every
# command and state it was seen in. By default the command group and the reply code (0:
# none); a check about the session or the input names its cause instead (``Check.identity``).
Identity = tuple[str, int]
IdentityFunction = Callable[[Exchange], Identity]


def by_command(x: Exchange) -> Identity:
    """The command (with an end-of-data probe's ending) and the reply code: the same code to
    the same command is the same deviation, whatever the state."""
    return x.filed_under, x.reply.code if x.reply is not None else 0


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
    # What one of its findings is about (see ``Identity``): the command and the reply code
    # unless the check says otherwise (a tarpit is about the session, a reply that breaks
    # the syntax about the rule it breaks, a close about the input that set it off).
    identity: IdentityFunction = by_command
    # Whether the model still knows the server's state after this finding, so the session
    # may go on (None: it does not; the session ends, and the run reconnects).
    state_known: Callable[[Exchange], bool] | None = None
    # A general check (``reply_code_documented``): where a specific check complains about
    # the same exchange at least as strongly, this one's complaint is listed with that
    # finding, not beside it.
    general: bool = False
    # Checks whose findings, where the run has any, explain this one's symptom without it
    # (a server that takes RCPT with no MAIL at all also takes it after RSET): then this
    # one's findings are dropped at the end of the run.
    explained_by: tuple[str, ...] = ()
    # Whether it judges probes (``Exchange.is_probe``) too; most checks judge only what a client
    # may send.
    judges_probes: bool = False


_REGISTRY: dict[str, Check] = {}


def check(id: str, *, level: Level | None, citation: str, timing: bool = False,
          refuted_by: Callable[[Exchange], bool] | None = None,
          identity: IdentityFunction = by_command,
          state_known: Callable[[Exchange], bool] | None = None, general: bool = False,
          explained_by: tuple[str, ...] = (),
          judges_probes: bool = False) -> Callable[[CheckFunction], CheckFunction]:
    """Register ``function`` as a check. A new check is one decorated function."""
    def register(function: CheckFunction) -> CheckFunction:
        if id in _REGISTRY:
            raise ValueError(f"check {id!r} registered twice")
        _REGISTRY[id] = Check(id, level, citation, function, timing=timing,
                              refuted_by=refuted_by, identity=identity,
                              state_known=state_known, general=general,
                              explained_by=explained_by, judges_probes=judges_probes)
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


# --- identities of the checks about the session, the input or a rule ---------------------------

THE_SESSION = "the session"  # a behaviour of the session as a whole (a tarpit)
AFTER_ERRORS = "after repeated error replies"  # a server giving up (RFC 5321 §7.8)
ECHOED_OCTETS = "octets of the command echoed raw in the reply"
PIPELINED_BATCH = "a pipelined batch"  # the server's handling of buffered input (RFC 2920)


def _session_wide(x: Exchange) -> Identity:
    return THE_SESSION, 0


def _batch_wide(x: Exchange) -> Identity:
    return PIPELINED_BATCH, 0


def _unusual_input(x: Exchange) -> str | None:
    return x.sent.unusual_input if isinstance(x.sent, Command) else None


def _by_input(x: Exchange) -> Identity:
    """The unusual input of the command, where it has one (an overlong line, 8-bit or
    control octets: the same behaviour whichever verb carried it), else the command."""
    return _unusual_input(x) or x.filed_under, 0


def _errors_by_then(x: Exchange) -> int:
    """The session's 5yz replies, this exchange's included."""
    return x.before.errors + (x.reply is not None and x.reply.first_digit == 5)


def _close_identity(x: Exchange) -> Identity:
    """What set the close off: repeated errors, where it closed after a refusal or instead
    of a reply (a server giving up, one behaviour whichever command it gave up on); else the
    command's unusual input (an overlong line, 8-bit octets) or the command, with the reply
    before the close (0: none). Where every close "after errors" followed one unusual input,
    ``RunRecord.consolidate`` makes them one finding with that input's."""
    refused = x.reply is None or x.reply.first_digit in (4, 5)  # not a 221 to RSET, say
    if refused and _errors_by_then(x) >= ERRORS_BEFORE_GIVING_UP:
        return AFTER_ERRORS, 0
    return _unusual_input(x) or x.filed_under, x.reply.code if x.reply is not None else 0


def _odd_octets(data: bytes) -> set[int]:
    """The octets of a reply outside printable US-ASCII and HT, line ends aside."""
    return {o for o in data.replace(b"\r\n", b"") if (o < 0x20 and o != 0x09) or o >= 0x7f}


def _echoes_command(x: Exchange) -> bool:
    """Every odd octet of the reply is one of the command's own: the server echoed it."""
    if x.reply is None or not isinstance(x.sent, Command):
        return False
    odd = _odd_octets(x.reply.raw)
    return bool(odd) and odd <= set(x.sent.line.split(b"\r\n", 1)[0])


def _syntax_identity(x: Exchange) -> Identity:
    """A reply that breaks the syntax is about the rule it breaks (the first, of the
    strongest level), or about echoing the command's octets raw, whatever the command."""
    if isinstance(x.error, ReplyFramingError):
        return f"rule {x.error.violation.rule}", 0
    if x.reply is None or not x.reply.violations:
        return by_command(x)
    if _echoes_command(x):
        return ECHOED_OCTETS, 0
    strongest = min(x.reply.violations, key=lambda v: (v.level is not Level.MUST,
                                                        list(RULES).index(v.rule)))
    return f"rule {strongest.rule}", 0


def _bare_greeting(x: Exchange) -> bool:
    """A 220 greeting that is its code alone ("220" CRLF): what it lacks is the domain it must
    begin with, which ``greeting_names_server`` reports; the missing text is the same fault."""
    return x.group == GREETING and x.reply is not None and x.reply.code == SERVICE_READY and \
        {v.rule for v in x.reply.violations} == {"code-without-text"}


# --- the checks ------------------------------------------------------------------------------

@check("reply_well_formed", level=Level.MUST, citation="RFC 5321 §4.2",
       identity=_syntax_identity,
       judges_probes=True)
def reply_well_formed(x: Exchange) -> Complaint | None:
    if isinstance(x.error, ReplyFramingError):
        return x.error.violation.describe(), Level.MUST
    if x.reply is None or x.reply.well_formed or _bare_greeting(x):
        return None
    worst = Level.MUST if any(v.level is Level.MUST for v in x.reply.violations) else Level.SHOULD
    return "; ".join(v.describe() for v in x.reply.violations), worst


@check("command_answered", level=Level.MUST, citation="RFC 5321 §4.2, §4.5.3.2", timing=True,
       identity=_by_input, judges_probes=True)  # a probe, too, is owed a reply or a close
def command_answered(x: Exchange) -> Complaint | None:
    """No reply at all, even after the longer confirmation wait (in a batch whose earlier
    commands were answered, ``pipelining_answers_every_command`` names the rule; after an
    earlier command of the batch went unanswered, that one's finding is the behaviour)."""
    if not isinstance(x.error, ReplyTimeout) or _batch_reply_lost(x) or \
            (x.batch is not None and x.batch[1] < x.batch[0]):
        return None
    return str(x.error)


# RFC 5321 §4.5.3.2 gives a client minutes per command, so a late reply is not a broken one;
# it is reported, and the session ends (a tarpit slows the commands after it too).
@check("reply_within_timeout", level=Level.SHOULD, citation="RFC 5321 §4.5.3.2", timing=True,
       identity=_session_wide)
def reply_within_timeout(x: Exchange) -> Complaint | None:
    if x.late is None:
        return None
    what = "closed the connection" if x.closed_after else "replied"
    return f"the server {what} after {x.late:.1f}s (the run's timeout is {x.timeout:g}s)"


# RFC 5321 §7.8 lets a server under attack close after repeated failed commands; it SHOULD
# still send 421 first (§3.8). Below this many 5yz replies, a silent close breaks the MUST.
ERRORS_BEFORE_GIVING_UP = 3


@check("no_silent_close", level=Level.MUST, citation="RFC 5321 §3.8, §4.1.1.10, §7.8",
       identity=_close_identity)
def no_silent_close(x: Exchange) -> Complaint | None:
    """The server closed the connection other than after 221 to QUIT or after 421: judged on
    the reply the close followed (the close came before the next command was sent), or on
    the command it came instead of a reply to."""
    if x.closed_unasked and x.reply is not None:
        code = x.reply.code
        # A greeting of 521 says the host takes no mail at all: it may close (RFC 7504 §1).
        if code == SERVICE_NOT_AVAILABLE or (x.group == "QUIT" and code == CLOSING) or \
                (x.group == GREETING and code == NO_MAIL_HERE):
            return None
        what = f"the server closed the connection after its {code} reply to {_what_was_sent(x)}"
    elif isinstance(x.error, ConnectionClosed):
        what = f"no complete reply to {_what_was_sent(x)}: {x.error}"
    else:
        return None
    if _close_identity(x)[0] == AFTER_ERRORS:
        return (f"{what}, after {_errors_by_then(x)} error replies (§7.8 allows giving up; "
                f"§3.8: with 421 first)"), Level.SHOULD
    return f"{what}: only 221 to QUIT and 421 may be followed by a close (§3.8, §4.1.1.10)"


def _what_was_sent(x: Exchange) -> str:
    if x.sent is None:
        return "the connection"
    cause = _unusual_input(x)
    return f"{x.group} ({cause})" if cause else x.group


@check("rset_succeeds", level=Level.MUST, citation="RFC 5321 §4.1.1.5")
def rset_succeeds(x: Exchange) -> Complaint | None:
    """A RSET with no argument "MUST" get 250 OK (§4.1.1.5), in any state after the
    greeting: before HELO/EHLO too (any positive code the profile's row has will do)."""
    if x.group != "RSET" or not isinstance(x.sent, Command) or not x.sent.valid or \
            x.sent.argument or x.reply is None or x.reply.first_digit == 2 or \
            x.reply.code == SERVICE_NOT_AVAILABLE or _case_refused(x.sent, x.reply):
        return None
    return f"{x.reply.code} to RSET in state {x.before.state.name}: RSET must be answered 250"


# RFC 5321 §4.1.4: a HELO/EHLO that is not acceptable gets "501, 500, 502, or 550"; §4.3.2
# adds 504 for both, and 421 may answer anything (§3.8).
HELLO_REFUSALS = frozenset({COMMAND_UNRECOGNISED, SYNTAX_ERROR, NOT_IMPLEMENTED,
                            PARAMETER_NOT_SUPPORTED, NOT_TAKEN, SERVICE_NOT_AVAILABLE})


@check("hello_refusal_codes", level=Level.MUST, citation="RFC 5321 §4.1.4")
def hello_refusal_codes(x: Exchange) -> Complaint | None:
    """HELO or EHLO refused with a code §4.1.4 does not allow: a second EHLO answered 503,
    say (a client may send one at any time; the server then resets as for RSET)."""
    if x.group not in ("HELO", "EHLO") or x.reply is None or x.reply.first_digit != 5 or \
            x.reply.code in HELLO_REFUSALS:
        return None
    again = " (not the session's first)" if x.before.state is not State.INIT else ""
    return (f"{x.reply.code} to {x.group}{again}: a HELO/EHLO that is not acceptable must "
            f"get 500, 501, 502, 504 or 550")


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


def _taken_out_of_transaction(x: Exchange) -> bool:
    """RCPT accepted with no transaction open, or DATA with no recipient accepted."""
    if x.reply is None:
        return False
    return (x.group == "RCPT" and not x.before.in_transaction and
            is_positive("RCPT", x.reply.code)) or \
        (x.group == "DATA" and x.before.state is not State.RCPT and
         x.reply.code == START_MAIL_INPUT)


# Some servers answer a RCPT outside a transaction with the refusal they give any RCPT they
# will not take, 4yz or 5yz; §3.3 asks for 503. 500 and 501 are about the line itself.
_NOT_ABOUT_SEQUENCE = frozenset({COMMAND_UNRECOGNISED, SYNTAX_ERROR, BAD_SEQUENCE,
                                 SERVICE_NOT_AVAILABLE})
# And to a RCPT that breaks the grammar, what is about its mailbox or parameters (RFC 5321
# §4.2.3: 553 "mailbox name not allowed"; §4.1.1.11: 555): a UTF-8 mailbox with no SMTPUTF8.
_ABOUT_THE_ARGUMENT = frozenset({MAILBOX_NAME_NOT_ALLOWED, PARAMETER_NOT_IMPLEMENTED})


@check("rcpt_requires_mail", level=Level.MUST, citation="RFC 5321 §3.3")
def rcpt_requires_mail(x: Exchange) -> Complaint | None:
    """RCPT with no transaction open must get 503: accepted (and no RSET or HELO/EHLO
    before it explains that: ``reset_clears_transaction``), or refused with another code."""
    if x.group != "RCPT" or x.reply is None or x.before.in_transaction or not x.before.open:
        return None
    code = x.reply.code
    if is_positive("RCPT", code):
        if x.before.reset_by is not None:
            return None
        return f"RCPT succeeded ({code}) with no mail transaction open (expected 503)"
    malformed = isinstance(x.sent, Command) and not x.sent.valid
    if code // 100 == 5 and code not in _NOT_ABOUT_SEQUENCE and \
            not (malformed and code in _ABOUT_THE_ARGUMENT):
        return f"{code} to RCPT with no mail transaction open: 503 must be returned (§3.3)"
    return None


@check("data_requires_recipient", level=Level.MUST, citation="RFC 5321 §3.3, §4.1.4")
def data_requires_recipient(x: Exchange) -> Complaint | None:
    if x.group == "DATA" and _taken_out_of_transaction(x) and x.before.reset_by is None:
        return "354 to DATA with no accepted recipient (expected 503 or 554)"
    return None


# What each command that ends a transaction must do, and where that is said.
_RESET_RULES = {
    "HELO": "RFC 5321 §4.1.4: it resets the state exactly as RSET does",
    "EHLO": "RFC 5321 §4.1.4: it resets the state exactly as RSET does",
    "RSET": "RFC 5321 §4.1.1.5: it aborts the transaction, discarding sender and recipients",
    END_OF_DATA: "RFC 5321 §4.1.1.4: the reply to the end of data clears the buffers",
    "STARTTLS": "RFC 3207 §4.2: the server discards what it knew of the session before TLS",
    "BDAT": "RFC 3030 §2: 250 to the LAST chunk ends the transaction as the end of data does",
}


# The commands that end a transaction the same way, each group one behaviour: a server keeps
# its transaction across a new hello whichever verb it was (§4.1.4 says the same of both), or
# across the end of a message however the message was sent.
HELLO_RESET, MESSAGE_END = "HELO or EHLO", "the end of a message"
_RESET_CAUSE = {"HELO": HELLO_RESET, "EHLO": HELLO_RESET, END_OF_DATA: MESSAGE_END,
                "BDAT": MESSAGE_END}


def _reset_identity(x: Exchange) -> Identity:
    reset = x.before.reset_by or x.group
    return _RESET_CAUSE.get(reset, reset), 0


@check("reset_clears_transaction", level=Level.MUST,
       citation="RFC 5321 §4.1.4, §4.1.1.5, §4.1.1.4; RFC 3207 §4.2",
       identity=_reset_identity,
       explained_by=("rcpt_requires_mail", "data_requires_recipient"))
def reset_clears_transaction(x: Exchange) -> Complaint | None:
    """RCPT or DATA was taken as if a transaction were open after a command that ends one
    (HELO/EHLO, RSET, the end of data, STARTTLS) was answered positively: the fault is that
    command's, which did not clear the transaction."""
    reset = x.before.reset_by
    if reset is None or not _taken_out_of_transaction(x) or x.reply is None:
        return None
    return (f"{x.reply.code} to {x.group} after {reset} ended the transaction: the server "
            f"kept the transaction across {reset} ({_RESET_RULES[reset]})")


def _case_refused(sent: Command, reply: Reply) -> bool:
    """A verb not in upper case refused as unknown: the control probe in upper case that
    follows tells whether the case was the reason (``verb_case_insensitive``)."""
    return sent.verb_as_sent != sent.verb and reply.code in (COMMAND_UNRECOGNISED,
                                                             NOT_IMPLEMENTED)


def _case_identity(x: Exchange) -> Identity:
    """One behaviour whatever the verb: refusing verbs not written in upper case."""
    return "a verb not in upper case", x.variant_of[1].code if x.variant_of else 0


@check("verb_case_insensitive", level=Level.MUST, citation="RFC 5321 §2.4", state_known=_always,
       identity=_case_identity)
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
            not is_positive("NOOP", x.reply.code) or not isinstance(x.sent, Command) or \
            x.sent.argument:
        return None
    variant, refusal = x.variant_of
    if variant.verb_as_sent != variant.verb:
        return None  # a case variant: verb_case_insensitive speaks for it
    return (f"{refusal.code} to {variant.line.rstrip()!r} but {x.reply.code} to a bare NOOP: "
            f"a server should ignore NOOP's parameter")


@check("command_line_limit_honoured", level=Level.MUST, citation="RFC 5321 §4.5.3.1.4",
       state_known=_always)
def command_line_limit_honoured(x: Exchange) -> Complaint | None:
    """Differential: a NOOP with a short parameter succeeded right after the same verb with a
    long one, within the 512 octets a server must take, was refused."""
    if x.group != "NOOP" or x.variant_of is None or x.reply is None or \
            not is_positive("NOOP", x.reply.code) or not isinstance(x.sent, Command) or \
            not x.sent.argument:
        return None
    variant, refusal = x.variant_of
    if not len(x.sent.line) < len(variant.line) <= grammar.MAX_COMMAND_LINE_OCTETS:
        return None
    return (f"{refusal.code} to a NOOP line of {len(variant.line)} octets but {x.reply.code} to "
            f"{x.sent.first_line!r}: command lines up to {grammar.MAX_COMMAND_LINE_OCTETS} "
            f"octets, CRLF included, must be taken")


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


# --- extensions: each rule applies only where the server advertised its extension --------------

def _advertised(x: Exchange, keyword: str) -> bool:
    """Whether the session's last EHLO reply, before this exchange, listed ``keyword``."""
    return keyword in x.before.extensions


def _positive(x: Exchange) -> bool:
    return x.reply is not None and is_positive(x.group, x.reply.code)


@check("ehlo_reply_well_formed", level=Level.MUST, citation="RFC 5321 §4.1.1.1",
       state_known=_always)
def ehlo_reply_well_formed(x: Exchange) -> Complaint | None:
    """Every line of a 250 to EHLO after the first is ``keyword *(SP parameter)``."""
    if x.group != "EHLO" or x.reply is None or x.reply.code != OK:
        return None
    malformed = parse_ehlo(x.reply.lines).malformed
    if not malformed:
        return None
    shown = ", ".join(repr(line) for line in malformed[:3])
    return f"EHLO reply line(s) that are not an extension keyword and its parameters: {shown}"


def _batch_reply_lost(x: Exchange) -> bool:
    """The first command of a batch left unanswered, after every one before it was."""
    return x.batch is not None and x.batch[0] > 0 and x.batch[1] == x.batch[0] and \
        isinstance(x.error, ReplyTimeout) and _advertised(x, "PIPELINING")


@check("pipelining_answers_every_command", level=Level.MUST, citation="RFC 2920 §3.2",
       timing=True, identity=_batch_wide)
def pipelining_answers_every_command(x: Exchange) -> Complaint | None:
    if not _batch_reply_lost(x) or x.batch is None:
        return None
    return (f"command {x.batch[0] + 1} of a pipelined batch got no reply after the "
            f"{x.batch[1]} before it were answered: the server lost its buffered input "
            f"(PIPELINING was advertised)")


# RFC 2034 §4 (RFC 3463 §2): class "." subject "." detail, no leading zeros in a sub-code.
ENHANCED_STATUS_CODE = re.compile(r"([245])\.(?:0|[1-9][0-9]{0,2})\.(?:0|[1-9][0-9]{0,2})(?= |$)")
_WITHOUT_ENHANCED_CODE = frozenset({GREETING, "HELO", "EHLO"})  # RFC 2034 §3


@check("enhanced_status_code_valid", level=Level.MUST, citation="RFC 2034 §3, §4; RFC 3463 §2",
       state_known=_always)
def enhanced_status_code_valid(x: Exchange) -> Complaint | None:
    """With ENHANCEDSTATUSCODES, every line of a 2yz, 4yz or 5yz reply (but the greeting's
    and HELO/EHLO's) begins with one status code, of the reply's class, the same on every
    line."""
    if x.reply is None or x.reply.first_digit not in (2, 4, 5) or \
            x.group in _WITHOUT_ENHANCED_CODE or not _advertised(x, "ENHANCEDSTATUSCODES"):
        return None
    code = x.reply.code
    matches = [ENHANCED_STATUS_CODE.match(line) for line in x.reply.lines]
    for line, match in zip(x.reply.lines, matches, strict=True):
        if match is None:
            return (f"{code} reply line {line[:40]!r} does not begin with an enhanced status "
                    f"code (ENHANCEDSTATUSCODES was advertised)")
        if int(match.group(1)) != x.reply.first_digit:
            return f"enhanced status code {match.group(0)} is not of the class of reply {code}"
    found = sorted({match.group(0) for match in matches if match is not None})
    if len(found) > 1:
        return f"the lines of one {code} reply carry different enhanced codes: {found}"
    return None


# A SHOULD: RFC 1870 says a message over the advertised limit "will be rejected" with 552 (§4)
# and what the server does on receipt (§6.1, §6.3), but puts no MUST on the refusal.
@check("size_limit_enforced", level=Level.SHOULD, citation="RFC 1870 §6.1, §6.3")
def size_limit_enforced(x: Exchange) -> Complaint | None:
    """A declared size, or a message, over the limit SIZE advertised was accepted (552, or
    452 while the limit is temporary, is the answer)."""
    limit = x.before.extensions.size_limit
    if limit is None or x.reply is None or not _positive(x):
        return None
    if x.group == "MAIL" and isinstance(x.sent, Command):
        declared = x.sent.parameters.get("SIZE") or ""
        if declared.isdigit() and int(declared) > limit:
            return (f"{x.reply.code} to MAIL declaring SIZE={declared}, over the advertised "
                    f"limit of {limit} octets (expected 552 or 452)")
    if x.group == END_OF_DATA and isinstance(x.sent, Message) and x.sent.size > limit:
        return (f"{x.reply.code} to a message of {x.sent.size} octets, over the advertised "
                f"limit of {limit} (expected 552)")
    return None


# INFO: 555 is for a parameter the server "does not recognize or cannot implement"; one it
# implements but did not advertise in this session (AUTH= before STARTTLS, say) breaks no rule
# of its own (not advertising binds the client, §4.1.1.3). Worth knowing, never a failure.
def _unoffered_parameters(x: Exchange) -> list[str]:
    """The parameters of the MAIL or RCPT that belong to extensions the session's EHLO reply
    did not list (none where that reply had lines the parser could not read: what they
    advertised is not known)."""
    if x.group not in ("MAIL", "RCPT") or not isinstance(x.sent, Command) or \
            not x.before.extensions.keywords or x.before.extensions.malformed:
        return []
    return sorted(parameter for parameter in x.sent.parameters
                  if parameter in EXTENSION_OF_PARAMETER and
                  not _advertised(x, EXTENSION_OF_PARAMETER[parameter]))


def _unoffered_identity(x: Exchange) -> Identity:
    """The extensions whose parameters were taken unadvertised, whichever command had them."""
    extensions = sorted({EXTENSION_OF_PARAMETER[p] for p in _unoffered_parameters(x)})
    return f"parameters of {', '.join(extensions)}, not advertised", 0


@check("esmtp_parameters_advertised", level=Level.INFO, citation="RFC 5321 §4.1.1.11",
       state_known=_always, identity=_unoffered_identity)
def esmtp_parameters_advertised(x: Exchange) -> Complaint | None:
    """MAIL or RCPT with a parameter of an extension the session's EHLO reply did not list
    was accepted."""
    unoffered = _unoffered_parameters(x)
    if not unoffered or not _positive(x) or x.reply is None:
        return None
    extensions = sorted({EXTENSION_OF_PARAMETER[p] for p in unoffered})
    return (f"{x.reply.code} to {x.group} with {', '.join(unoffered)} although EHLO did not "
            f"advertise {', '.join(extensions)} (a server without it answers 555)")


# RFC 5321 §4.1.1.11: 555 says a parameter is "not recognized or not implemented"; 504, that
# a command parameter is not implemented. Neither can be true of a parameter of an extension
# the server advertised in this session.
_PARAMETER_REFUSALS = frozenset({PARAMETER_NOT_IMPLEMENTED, PARAMETER_NOT_SUPPORTED})


@check("advertised_parameters_accepted", level=Level.MUST,
       citation="RFC 5321 §4.1.1.11; RFC 1870 §4; RFC 6152 §3; RFC 3461 §4; RFC 6531 §3.4")
def advertised_parameters_accepted(x: Exchange) -> Complaint | None:
    """A valid MAIL or RCPT whose parameters all belong to extensions the session's EHLO
    advertised was refused as having a parameter not recognised or not implemented."""
    if x.group not in ("MAIL", "RCPT") or not isinstance(x.sent, Command) or \
            not x.sent.valid or x.reply is None or x.reply.code not in _PARAMETER_REFUSALS:
        return None
    parameters = x.sent.parameters
    if not parameters or not all(p in EXTENSION_OF_PARAMETER and
                                 _advertised(x, EXTENSION_OF_PARAMETER[p]) for p in parameters):
        return None
    extensions = sorted({EXTENSION_OF_PARAMETER[p] for p in parameters})
    return (f"{x.reply.code} to {x.sent.first_line!r}: {', '.join(sorted(parameters))} "
            f"belong to {', '.join(extensions)}, which the server advertised (a server "
            f"that advertises an extension takes its parameters)")


@check("starttls_refuses_argument", level=Level.SHOULD, citation="RFC 3207 §4")
def starttls_refuses_argument(x: Exchange) -> Complaint | None:
    if x.group != "STARTTLS" or not isinstance(x.sent, Command) or x.reply is None or \
            x.reply.code != SERVICE_READY or not x.sent.argument:
        return None
    return f"220 to {x.sent.first_line!r}: STARTTLS takes no parameters (expected 501)"


@check("starttls_not_readvertised", level=Level.MUST, citation="RFC 3207 §4.2",
       state_known=_always)
def starttls_not_readvertised(x: Exchange) -> Complaint | None:
    if x.group != "EHLO" or not x.before.tls or x.reply is None or x.reply.code != OK or \
            "STARTTLS" not in parse_ehlo(x.reply.lines):
        return None
    return "EHLO over TLS still advertises STARTTLS"


@check("starttls_discards_plaintext", level=Level.MUST,
       citation="RFC 3207 §4.2; CVE-2011-0411",
       judges_probes=True)
def starttls_discards_plaintext(x: Exchange) -> Complaint | None:
    """Lines sent in plaintext in the same write as STARTTLS were executed after the
    handshake, as if sent over TLS: a man in the middle can inject commands."""
    if x.group != "STARTTLS" or x.unsolicited is None or not isinstance(x.sent, Command):
        return None
    injected = x.sent.line.split(b"\r\n", 1)[1]
    return (f"after the TLS handshake the server answered {x.unsolicited.code} to "
            f"{injected!r}, sent in plaintext in the same write as STARTTLS")


@check("data_ends_only_at_crlf_dot_crlf", level=Level.MUST,
       citation="RFC 5321 §4.1.1.4, §2.3.8; CVE-2023-51764",
       judges_probes=True)
def data_ends_only_at_crlf_dot_crlf(x: Exchange) -> Complaint | None:
    """The server answered mail data before its real end, at a non-standard ending, or ran
    the command line sent after that ending as a command: SMTP smuggling. (A refusal of the
    bare line break, 4yz or 5yz, with nothing run after it, is no exchange: the session
    records it as a remark.)"""
    if not isinstance(x.sent, DataProbe) or not x.early or x.reply is None:
        return None
    complaint = (f"{x.reply.code} before the end of the mail data: the server took "
                 f"{x.sent.ending} for the end of the data")
    if x.unsolicited is not None:
        complaint += (f", then answered {x.unsolicited.code} to {x.sent.smuggled_line!r}, "
                      f"sent after it as message data")
    return complaint + " (SMTP smuggling: a message can carry another)"


@check("command_lines_end_only_at_crlf", level=Level.MUST, citation="RFC 5321 §2.3.8",
       judges_probes=True)
def command_lines_end_only_at_crlf(x: Exchange) -> Complaint | None:
    """A second reply to one command line holding a bare CR or LF: the server took it for a
    line end, and ran what followed as a command of its own."""
    if not isinstance(x.sent, Command) or x.sent.bare_line_break is None or \
            x.unsolicited is None or x.reply is None:
        return None
    return (f"two replies ({x.reply.code}, then {x.unsolicited.code}) to one command line, "
            f"{x.sent.first_line!r}: the server took its bare {x.sent.bare_line_break} for a "
            f"line end")


@check("relay_refused", level=Level.SHOULD, citation="RFC 5321 §3.6.2, §7.1")
def relay_refused(x: Exchange) -> Complaint | None:
    """A recipient at a domain the server is not the destination for, taken without
    authentication: an open relay (sent only with --smtp-relay-check)."""
    if x.group != "RCPT" or not isinstance(x.sent, Command) or x.sent not in RELAY_PROBES or \
            x.before.authenticated or x.reply is None or x.reply.first_digit != 2:
        return None
    return (f"{x.reply.code} to {x.sent.first_line!r} without authentication: the server "
            f"relays to any domain (an open relay)")


@check("bdat_not_mixed_with_data", level=Level.MUST, citation="RFC 3030 §2")
def bdat_not_mixed_with_data(x: Exchange) -> Complaint | None:
    if x.group != "DATA" or not x.before.chunked or x.reply is None or \
            x.reply.code != START_MAIL_INPUT:
        return None
    return "354 to DATA after a BDAT chunk of the same transaction (expected 503)"


UTF8_MAILBOX = "a UTF-8 mailbox without SMTPUTF8"


def _utf8_identity(x: Exchange) -> Identity:
    return UTF8_MAILBOX, 0  # one behaviour, in MAIL or in RCPT


@check("utf8_address_needs_smtputf8", level=Level.SHOULD,
       citation="RFC 5321 §2.4 (lifted by RFC 6531 §3.4 where SMTPUTF8 is used)",
       identity=_utf8_identity)
def utf8_address_needs_smtputf8(x: Exchange) -> Complaint | None:
    """A UTF-8 mailbox was accepted in a transaction whose MAIL did not ask for SMTPUTF8:
    receivers SHOULD reject commands that are not US-ASCII (RFC 5321 §2.4)."""
    if not isinstance(x.sent, Command) or not x.sent.utf8_mailbox or not _positive(x) or \
            x.reply is None:
        return None
    if x.before.utf8 or (x.group == "MAIL" and "SMTPUTF8" in x.sent.parameters):
        return None  # asked for (where not advertised, esmtp_parameters_advertised says so)
    return (f"{x.reply.code} to {x.group} with a UTF-8 mailbox in a transaction whose MAIL "
            f"did not ask for SMTPUTF8")


def _auth_started(x: Exchange) -> bool:
    """AUTH, advertised, went ahead: it succeeded at once, or a challenge (334) came."""
    return x.group == "AUTH" and _advertised(x, "AUTH") and isinstance(x.sent, Command) and \
        x.sent.group == "AUTH" and x.sent.verb == "AUTH" and x.reply is not None and \
        x.reply.first_digit in (2, 3)


@check("auth_once", level=Level.MUST, citation="RFC 4954 §4")
def auth_once(x: Exchange) -> Complaint | None:
    if not _auth_started(x) or not x.before.authenticated or x.reply is None:
        return None
    return f"{x.reply.code} to AUTH after a successful AUTH (expected 503)"


@check("auth_not_in_transaction", level=Level.MUST, citation="RFC 4954 §4")
def auth_not_in_transaction(x: Exchange) -> Complaint | None:
    if not _auth_started(x) or not x.before.in_transaction or x.reply is None:
        return None
    return f"{x.reply.code} to AUTH during a mail transaction (expected 503)"


@check("auth_cancel_refused", level=Level.MUST, citation="RFC 4954 §4")
def auth_cancel_refused(x: Exchange) -> Complaint | None:
    """The client answered a challenge with ``*``: the exchange is cancelled, with 501."""
    if x.group != "AUTH" or not isinstance(x.sent, Command) or x.sent.line != b"*\r\n" or \
            x.reply is None or x.reply.code in (SYNTAX_ERROR, SERVICE_NOT_AVAILABLE):
        return None
    return f"{x.reply.code} to '*', which cancels an AUTH exchange (expected 501)"


# A verb of an extension the session's EHLO did not offer may be refused as unknown (500),
# not implemented (502, RFC 5321 §4.2.4) or out of sequence (503: offered later, after TLS).
_REFUSALS_OF_THE_UNOFFERED = frozenset({COMMAND_UNRECOGNISED, NOT_IMPLEMENTED, BAD_SEQUENCE})


def _documented_identity(x: Exchange) -> Identity:
    """The command (or, for an extension verb not advertised, the unrecognised verb, whose
    row it is judged against: ``Exchange.judged_as``) and the reply code."""
    group = x.judged_as
    return (x.filed_under if group == x.group else group), \
        x.reply.code if x.reply is not None else 0


# Last: a check above names the specific rule when a code is also outside the table.
@check("reply_code_documented", level=None, citation="the profile's row for the command",
       state_known=_leaves_state_as_it_was, general=True, identity=_documented_identity)
def reply_code_documented(x: Exchange) -> Complaint | None:
    if x.reply is None:
        return None
    group = x.judged_as
    row = x.profile.row(group)
    code = x.reply.code
    if row.allows(code) or (group != x.group and code in _REFUSALS_OF_THE_UNOFFERED):
        return None
    # The RFC 821 table omits 421 for QUIT, TURN and the end of data.
    if code == SERVICE_NOT_AVAILABLE:
        return (f"421 is not in the {x.profile.name} row for {group} [{row.citation}], but "
                f"RFC 821 §4.3 and RFC 5321 §3.8 allow 421 for any command"), Level.INFO
    message = f"{code} is not documented for {group} [{row.citation}]"
    if group != x.group:
        message = (f"{code} to {x.group}, whose extension the session's EHLO did not "
                   f"advertise, is documented neither for {x.group} nor for a verb the "
                   f"server does not know [{row.citation}]")
    if code // 100 not in {c // 100 for c in row.code_set} and rfc5321_lists(x) is None:
        # RFC 5321 §4.2.1: a client acts on the first digit, so a reply of a class the row
        # never has is read as something else entirely, under any profile.
        return (f"{message}, nor is any {code // 100}yz reply (RFC 5321 §4.2.1: clients act "
                f"on the first digit)"), Level.MUST
    return message, row.level


CHECKS: MappingProxyType[str, Check] = MappingProxyType(_REGISTRY)
RFC5321 = "rfc5321"  # the profile by whose table a narrower one's findings are triaged


def rfc5321_lists(x: Exchange) -> str | None:
    """For a reply outside a narrower profile's row (the seed's, RFC 821's) that RFC 5321
    lists for the command, the line that says so ("RFC 5321 §4.3.2, §3.3, §4.1.1.11 lists
    503 for MAIL"): a deviation from that table only, not from the RFC. None under rfc5321
    itself, and for a code RFC 5321 does not list either."""
    if x.reply is None or x.profile.name == RFC5321:
        return None
    group = x.judged_as
    row = get_profile(RFC5321).row(group)
    code = next((c for c in row.codes if c.code == x.reply.code), None)
    if code is None:
        return None
    return f"{row.citation} lists {code.code} for {group}" + \
        (f" ({code.note})" if code.note else "")


@dataclass(frozen=True)
class Finding:
    """One check's complaint about one exchange (``also``: a general check's complaint
    about the same exchange, listed with this one)."""

    check: Check
    level: Level
    complaint: str
    also: list[Finding] = field(default_factory=list, compare=False)


def refuted_checks(exchange: Exchange) -> list[str]:
    """The per-run checks that ``exchange`` refutes for its command group."""
    return [c.id for c in CHECKS.values() if c.refuted_by is not None and c.refuted_by(exchange)]


LEVEL_ORDER = {Level.MUST: 0, Level.SHOULD: 1, Level.INFO: 2}  # strongest first


def run_checks(exchange: Exchange, only: Container[str] | None = None) -> list[Finding]:
    """Every complaint the registered checks (``only`` these, if given) have about
    ``exchange``, MUST first. A general check's complaint, where a specific one complains
    at least as strongly, goes with that finding (``Finding.also``) instead."""
    findings = []
    probe = exchange.is_probe
    for registered in CHECKS.values():
        if (only is not None and registered.id not in only) or \
                (probe and not registered.judges_probes):
            continue
        complaint = registered.run(exchange)
        if complaint is None:
            continue
        message, level = complaint if isinstance(complaint, tuple) else (
            complaint, registered.level or Level.MUST)
        findings.append(Finding(registered, level, message))
    findings.sort(key=lambda f: LEVEL_ORDER[f.level])
    return fold(findings)


def fold(findings: list[Finding]) -> list[Finding]:
    """The findings of one exchange, one per behaviour: a close the server made after the
    reply (``no_silent_close``) is the behaviour, every complaint about that reply goes with
    it, and it is graded by the strongest; else a general check's complaint goes with a
    specific one as strong as it or stronger."""
    closing = [f for f in findings if f.check.id == "no_silent_close"]
    if closing:  # graded by the strongest rule the reply before the close broke
        # (a per-run check's finding stays apart: the run may yet refute it)
        per_run = [f for f in findings if f.check.refuted_by is not None]
        others = [f for f in findings if f is not closing[0] and f not in per_run]
        strongest = min((f.level for f in [closing[0], *others]), key=LEVEL_ORDER.__getitem__)
        also = [g for f in [closing[0], *others] for g in (f, *f.also) if g is not closing[0]]
        return [Finding(closing[0].check, strongest, closing[0].complaint, also), *per_run]
    specific = [f for f in findings if not f.check.general]
    kept = []
    for finding in findings:
        absorbing = next((f for f in specific if finding.check.general and
                          LEVEL_ORDER[f.level] <= LEVEL_ORDER[finding.level]), None)
        if absorbing is None:
            kept.append(finding)
        else:
            absorbing.also.append(finding)
    return kept


def identity_of(finding: Finding, exchange: Exchange) -> Identity:
    return finding.check.identity(exchange)
