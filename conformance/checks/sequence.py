"""Checks on the session's rules (RFC 5321 §3.3, §4.1): the order of commands, what ends a
transaction, RSET and HELO/EHLO, and the differentials (a refused variant, then the plain
form, in the same state).
"""

from __future__ import annotations

from conformance.checks.exchange import (
    Complaint,
    Exchange,
    Identity,
    mid_message_out_of_sequence,
)
from conformance.checks.identity import session_wide
from conformance.checks.registry import always, check
from conformance.protocol import grammar
from conformance.protocol.commands import Command
from conformance.protocol.levels import Level
from conformance.protocol.model import State, is_positive
from conformance.protocol.replies import Reply
from conformance.protocol.tables import (
    BAD_SEQUENCE,
    CLOSING,
    COMMAND_UNRECOGNISED,
    MAILBOX_NAME_NOT_ALLOWED,
    NOT_IMPLEMENTED,
    NOT_TAKEN,
    PARAMETER_NOT_IMPLEMENTED,
    PARAMETER_NOT_SUPPORTED,
    SERVICE_NOT_AVAILABLE,
    START_MAIL_INPUT,
    SYNTAX_ERROR,
)
from conformance.protocol.vocabulary import END_OF_DATA, V


@check("rset_succeeds", level=Level.MUST, citation="RFC 5321 §4.1.1.5")
def rset_succeeds(x: Exchange) -> Complaint | None:
    """A RSET with no argument "MUST" get 250 OK (§4.1.1.5), in any state after the
    greeting: before HELO/EHLO too (any positive code the profile's row has will do)."""
    if x.group != V.RSET or not isinstance(x.sent, Command) or not x.sent.valid or \
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
    """EHLO refused with a code §4.1.4 does not allow: a second EHLO answered 503, say (a
    client may send one at any time; the server then resets as for RSET). The MUST names
    EHLO: a HELO's refusal codes are its row's (§4.3.2, ``reply_code_documented``)."""
    if x.group != V.EHLO or x.reply is None or x.reply.first_digit != 5 or \
            x.reply.code in HELLO_REFUSALS or mid_message_out_of_sequence(x):
        return None
    again = " (not the session's first)" if x.before.state is not State.INIT else ""
    return (f"{x.reply.code} to EHLO{again}: an EHLO that is not acceptable must get 500, "
            f"501, 502 or 550 (504 where a parameter is not implemented, §4.3.2)")


@check("session_limit", level=Level.INFO, citation="RFC 5321 §7.8", identity=session_wide,
       state_known=always)
def session_limit(x: Exchange) -> Complaint | None:
    """A command this session had taken in the same state (NOOP, HELP, VRFY or EXPN, the
    same line, its verb in any case), now refused: the server limits what a session may do
    (Exim's smtp_accept_max_nonmail: 554 after ten such commands), a defence (§7.8), not a
    rule of the command. What else the reply breaks goes with it (``fold``)."""
    if not x.taken_before or x.reply is None or x.reply.first_digit not in (4, 5) or \
            x.reply.code == SERVICE_NOT_AVAILABLE or _refused_for_its_case(x):
        return None
    return (f"{x.reply.code} to {x.group}, which this session had taken in the same state: "
            f"the server limits the session's commands (a defence, §7.8)")


def _refused_for_its_case(x: Exchange) -> bool:
    """Refused as unknown with its verb not in upper case: the verb's case is the question
    (``verb_case_insensitive``, by the control probe), not a limit on the session."""
    return isinstance(x.sent, Command) and x.sent.verb_as_sent != x.sent.verb and \
        x.reply is not None and x.reply.code in (COMMAND_UNRECOGNISED, NOT_IMPLEMENTED)


@check("quit_closes", level=Level.MUST, citation="RFC 5321 §4.1.1.10")
def quit_closes(x: Exchange) -> Complaint | None:
    if x.group == V.QUIT and x.reply is not None and x.reply.code == CLOSING and \
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
    return (x.group == V.RCPT and not x.before.in_transaction and
            is_positive(V.RCPT, x.reply.code)) or \
        (x.group == V.DATA and x.before.state is not State.RCPT and
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
    if x.group != V.RCPT or x.reply is None or x.before.in_transaction or not x.before.open:
        return None
    code = x.reply.code
    if is_positive(V.RCPT, code):
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
    if x.group == V.DATA and _taken_out_of_transaction(x) and x.before.reset_by is None:
        return "354 to DATA with no accepted recipient (expected 503 or 554)"
    return None


# What each command that ends a transaction must do, and where that is said.
_RESET_RULES = {
    V.HELO: "RFC 5321 §4.1.4: it resets the state exactly as RSET does",
    V.EHLO: "RFC 5321 §4.1.4: it resets the state exactly as RSET does",
    V.RSET: "RFC 5321 §4.1.1.5: it aborts the transaction, discarding sender and recipients",
    END_OF_DATA: "RFC 5321 §4.1.1.4: the reply to the end of data clears the buffers",
    V.STARTTLS: "RFC 3207 §4.2: the server discards what it knew of the session before TLS",
    V.BDAT: "RFC 3030 §2: 250 to the LAST chunk ends the transaction as the end of data does",
}


# The commands that end a transaction the same way, each group one behaviour: a server keeps
# its transaction across a new hello whichever verb it was (§4.1.4 says the same of both), or
# across the end of a message however the message was sent.
HELLO_RESET, MESSAGE_END = "HELO or EHLO", "the end of a message"


_RESET_CAUSE = {V.HELO: HELLO_RESET, V.EHLO: HELLO_RESET, END_OF_DATA: MESSAGE_END,
                V.BDAT: MESSAGE_END}


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


@check("verb_case_insensitive", level=Level.MUST, citation="RFC 5321 §2.4", state_known=always,
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
       state_known=always)
def noop_ignores_parameter(x: Exchange) -> Complaint | None:
    """Differential: a bare NOOP succeeded right after a NOOP with a parameter was refused."""
    if x.group != V.NOOP or x.variant_of is None or x.reply is None or \
            not is_positive(V.NOOP, x.reply.code) or not isinstance(x.sent, Command) or \
            x.sent.argument:
        return None
    variant, refusal = x.variant_of
    if variant.verb_as_sent != variant.verb:
        return None  # a case variant: verb_case_insensitive speaks for it
    return (f"{refusal.code} to {variant.line.rstrip()!r} but {x.reply.code} to a bare NOOP: "
            f"a server should ignore NOOP's parameter")


@check("command_line_limit_honoured", level=Level.MUST, citation="RFC 5321 §4.5.3.1.4",
       state_known=always)
def command_line_limit_honoured(x: Exchange) -> Complaint | None:
    """Differential: a NOOP with a short parameter succeeded right after the same verb with a
    long one, within the 512 octets a server must take, was refused."""
    if x.group != V.NOOP or x.variant_of is None or x.reply is None or \
            not is_positive(V.NOOP, x.reply.code) or not isinstance(x.sent, Command) or \
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
