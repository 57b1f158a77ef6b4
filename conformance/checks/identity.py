"""What a finding is about (its identity), for the checks whose findings are about the
session, the input or a rule rather than the command and its code.
"""

from __future__ import annotations

from conformance.checks.exchange import Exchange, Identity, by_command
from conformance.protocol.commands import Command
from conformance.protocol.errors import (
    ReplyFramingError,
)
from conformance.protocol.levels import Level
from conformance.protocol.tables import (
    SERVICE_READY,
)
from conformance.protocol.violations import RULES
from conformance.protocol.vocabulary import (
    GREETING,
)

THE_SESSION = "the session"  # a behaviour of the session as a whole (a tarpit)


AFTER_ERRORS = "after repeated error replies"  # a server giving up (RFC 5321 §7.8)


ECHOED_OCTETS = "octets of the command echoed raw in the reply"


PIPELINED_BATCH = "a pipelined batch"  # the server's handling of buffered input (RFC 2920)


def session_wide(x: Exchange) -> Identity:
    return THE_SESSION, 0


def batch_wide(x: Exchange) -> Identity:
    return PIPELINED_BATCH, 0


def unusual_input(x: Exchange) -> str | None:
    return x.sent.unusual_input if isinstance(x.sent, Command) else None


def by_input(x: Exchange) -> Identity:
    """The unusual input of the command, where it has one (an overlong line, 8-bit or
    control octets: the same behaviour whichever verb carried it), else the command."""
    return unusual_input(x) or x.filed_under, 0


def errors_by_then(x: Exchange) -> int:
    """The session's 5yz replies, this exchange's included."""
    return x.before.errors + (x.reply is not None and x.reply.first_digit == 5)


def close_identity(x: Exchange) -> Identity:
    """What set the close off: repeated errors, where it closed after a refusal or instead
    of a reply (a server giving up, one behaviour whichever command it gave up on); else the
    command's unusual input (an overlong line, 8-bit octets) or the command, with the reply
    before the close (0: none). Where every close "after errors" followed one unusual input,
    ``RunRecord.consolidate`` makes them one finding with that input's."""
    refused = x.reply is None or x.reply.first_digit in (4, 5)  # not a 221 to RSET, say
    if refused and errors_by_then(x) >= ERRORS_BEFORE_GIVING_UP:
        return AFTER_ERRORS, 0
    return unusual_input(x) or x.filed_under, x.reply.code if x.reply is not None else 0


def _odd_octets(data: bytes) -> set[int]:
    """The octets of a reply outside printable US-ASCII and HT, line ends aside."""
    return {o for o in data.replace(b"\r\n", b"") if (o < 0x20 and o != 0x09) or o >= 0x7f}


def _echoes_command(x: Exchange) -> bool:
    """Every odd octet of the reply is one of the command's own: the server echoed it."""
    if x.reply is None or not isinstance(x.sent, Command):
        return False
    odd = _odd_octets(x.reply.raw)
    return bool(odd) and odd <= set(x.sent.line.split(b"\r\n", 1)[0])


def syntax_identity(x: Exchange) -> Identity:
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


def bare_greeting(x: Exchange) -> bool:
    """A 220 greeting that is its code alone ("220" CRLF): what it lacks is the domain it must
    begin with, which ``greeting_names_server`` reports; the missing text is the same fault."""
    return x.group == GREETING and x.reply is not None and x.reply.code == SERVICE_READY and \
        {v.rule for v in x.reply.violations} == {"code-without-text"}


# RFC 5321 §7.8 lets a server close after repeated failed commands (a defence against
# attacks); §3.8's MUST NOT close is about normal operation. Below this many 5yz replies, a
# silent close breaks that MUST.
ERRORS_BEFORE_GIVING_UP = 3
