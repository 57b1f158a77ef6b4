"""Checks on the replies themselves: their syntax, that one comes (in time), and that the
connection is closed only where a reply says so.
"""

from __future__ import annotations

from conformance.checks.exchange import Complaint, Exchange, advertised
from conformance.checks.identity import (
    AFTER_ERRORS,
    bare_greeting,
    by_input,
    close_identity,
    errors_by_then,
    session_wide,
    syntax_identity,
    unusual_input,
)
from conformance.checks.registry import check, code_documented
from conformance.protocol import grammar
from conformance.protocol.errors import (
    ConnectionClosed,
    ReplyFramingError,
    ReplyTimeout,
)
from conformance.protocol.levels import Level
from conformance.protocol.tables import (
    CLOSING,
    NO_MAIL_HERE,
    SERVICE_NOT_AVAILABLE,
    SERVICE_READY,
)
from conformance.protocol.vocabulary import END_OF_DATA, GREETING, V


@check("reply_well_formed", level=Level.MUST, citation="RFC 5321 §4.2",
       identity=syntax_identity,
       judges_probes=True)
def reply_well_formed(x: Exchange) -> Complaint | None:
    if isinstance(x.error, ReplyFramingError):
        return x.error.violation.describe(), Level.MUST
    if x.reply is None or x.reply.well_formed or bare_greeting(x):
        return None
    worst = Level.MUST if any(v.level is Level.MUST for v in x.reply.violations) else Level.SHOULD
    return "; ".join(v.describe() for v in x.reply.violations), worst


@check("command_answered", level=Level.MUST, citation="RFC 5321 §4.2, §4.5.3.2", timing=True,
       identity=by_input, judges_probes=True)  # a probe, too, is owed a reply or a close
def command_answered(x: Exchange) -> Complaint | None:
    """No reply at all, even after the longer confirmation wait (in a batch whose earlier
    commands were answered, ``pipelining_answers_every_command`` names the rule; after an
    earlier command of the batch went unanswered, that one's finding is the behaviour)."""
    if not isinstance(x.error, ReplyTimeout) or batch_reply_lost(x) or \
            (x.batch is not None and x.batch[1] < x.batch[0]):
        return None
    return str(x.error)


# RFC 5321 §4.5.3.2 gives a client minutes per command, so a late reply is not a broken one;
# it is reported, and the session ends (a tarpit slows the commands after it too).
@check("reply_within_timeout", level=Level.SHOULD, citation="RFC 5321 §4.5.3.2", timing=True,
       identity=session_wide)
def reply_within_timeout(x: Exchange) -> Complaint | None:
    if x.late is None:
        return None
    what = "closed the connection" if x.closed_after else "replied"
    return f"the server {what} after {x.late:.1f}s (the run's timeout is {x.timeout:g}s)"


@check("no_silent_close", level=Level.MUST, citation="RFC 5321 §3.8, §4.1.1.10, §7.8",
       identity=close_identity)
def no_silent_close(x: Exchange) -> Complaint | None:
    """The server closed the connection other than after 221 to QUIT or after 421: judged on
    the reply the close followed (the close came before the next command was sent), or on
    the command it came instead of a reply to."""
    if x.closed_unasked and x.reply is not None:
        code = x.reply.code
        # A greeting of 521 says the host takes no mail at all: it may close (RFC 7504 §1).
        if code == SERVICE_NOT_AVAILABLE or (x.group == V.QUIT and code == CLOSING) or \
                (x.group == GREETING and code == NO_MAIL_HERE):
            return None
        what = f"the server closed the connection after its {code} reply to {_what_was_sent(x)}"
    elif isinstance(x.error, ConnectionClosed):
        what = f"no complete reply to {_what_was_sent(x)}: {x.error}"
    else:
        return None
    if close_identity(x)[0] == AFTER_ERRORS:  # a server giving up: no rule broken (§7.8)
        return (f"{what}, after {errors_by_then(x)} error replies: a server may give up on a "
                f"client after repeated failed commands (§7.8)"), Level.INFO
    return f"{what}: only 221 to QUIT and 421 may be followed by a close (§3.8, §4.1.1.10)"


def _what_was_sent(x: Exchange) -> str:
    if x.sent is None:
        return "the connection"
    cause = unusual_input(x)
    return f"{x.group} ({cause})" if cause else x.group


@check("greeting_names_server", level=Level.MUST, citation="RFC 5321 §4.2, §4.3.1",
       state_known=code_documented)
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


def batch_reply_lost(x: Exchange) -> bool:
    """The first command of a batch left unanswered, after every one before it was."""
    return x.batch is not None and x.batch[0] > 0 and x.batch[1] == x.batch[0] and \
        isinstance(x.error, ReplyTimeout) and advertised(x, "PIPELINING")
