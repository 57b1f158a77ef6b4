"""Checks on the service extensions: each rule applies only where the server advertised its
extension (RFC 5321 §4.1.1.1: a client uses only what EHLO offered).
"""

from __future__ import annotations

from conformance.checks.exchange import (
    Complaint,
    Exchange,
    Identity,
    advertised,
    by_command,
    positive,
)
from conformance.checks.identity import batch_wide
from conformance.checks.registry import always, check
from conformance.checks.replies import batch_reply_lost
from conformance.protocol import grammar
from conformance.protocol.commands import Command, Message
from conformance.protocol.levels import Level
from conformance.protocol.tables import (
    OK,
    PARAMETER_NOT_IMPLEMENTED,
    PARAMETER_NOT_SUPPORTED,
    SERVICE_NOT_AVAILABLE,
    SERVICE_READY,
    START_MAIL_INPUT,
    SYNTAX_ERROR,
)
from conformance.protocol.vocabulary import (
    END_OF_DATA,
    EXTENSION_OF_PARAMETER,
    GREETING,
    V,
    parse_ehlo,
)


@check("ehlo_reply_well_formed", level=Level.MUST, citation="RFC 5321 §4.1.1.1",
       state_known=always)
def ehlo_reply_well_formed(x: Exchange) -> Complaint | None:
    """Every line of a 250 to EHLO after the first is ``keyword *(SP parameter)``."""
    if x.group != V.EHLO or x.reply is None or x.reply.code != OK:
        return None
    malformed = parse_ehlo(x.reply.lines).malformed
    if not malformed:
        return None
    shown = ", ".join(repr(line) for line in malformed[:3])
    return f"EHLO reply line(s) that are not an extension keyword and its parameters: {shown}"


@check("pipelining_answers_every_command", level=Level.MUST, citation="RFC 2920 §3.2",
       timing=True, identity=batch_wide)
def pipelining_answers_every_command(x: Exchange) -> Complaint | None:
    if not batch_reply_lost(x) or x.batch is None:
        return None
    return (f"command {x.batch[0] + 1} of a pipelined batch got no reply after the "
            f"{x.batch[1]} before it were answered: the server lost its buffered input "
            f"(PIPELINING was advertised)")


_WITHOUT_ENHANCED_CODE = frozenset({GREETING, V.HELO, V.EHLO})  # RFC 2034 §3


@check("enhanced_status_code_valid", level=Level.MUST, citation="RFC 2034 §3, §4; RFC 3463 §2",
       state_known=always)
def enhanced_status_code_valid(x: Exchange) -> Complaint | None:
    """With ENHANCEDSTATUSCODES, every line of a 2yz, 4yz or 5yz reply (but the greeting's
    and HELO/EHLO's) begins with one status code, of the reply's class, the same on every
    line."""
    if x.reply is None or x.reply.first_digit not in (2, 4, 5) or \
            x.group in _WITHOUT_ENHANCED_CODE or not advertised(x, "ENHANCEDSTATUSCODES"):
        return None
    code = x.reply.code
    matches = [grammar.ENHANCED_STATUS_CODE_PREFIX_RE.match(line) for line in x.reply.lines]
    for line, match in zip(x.reply.lines, matches, strict=True):
        if match is None:
            return (f"{code} reply line {line[:40]!r} does not begin with an enhanced status "
                    f"code (ENHANCEDSTATUSCODES was advertised)")
        if int(match.group(0)[0]) != x.reply.first_digit:  # its class
            return f"enhanced status code {match.group(0)} is not of the class of reply {code}"
    found = sorted({match.group(0) for match in matches if match is not None})
    if len(found) > 1:
        return f"the lines of one {code} reply carry different enhanced codes: {found}"
    return None


# The cause of a declared size taken where a '"' stood in a parameter's value before it: a '"'
# is valid in an esmtp-value (RFC 5321 §4.1.2; xtext, RFC 3461 §4), and a server that reads it
# as opening a quoted string misses what follows (Postfix). Where the run also has a plain
# SIZE taken, the two are one finding (``RunRecord.consolidate``: seen on MAIL only).
SIZE_AFTER_QUOTE = "SIZE after a '\"' in a parameter's value"


def _quote_before_size(command: Command) -> bool:
    """A '"' in the MAIL line's parameters, before its SIZE."""
    parameters = command.line.split(b"\r\n", 1)[0].partition(b">")[2]
    at = parameters.upper().find(b"SIZE=")
    return at > 0 and b'"' in parameters[:at]


def _size_identity(x: Exchange) -> Identity:
    if x.group == V.MAIL and isinstance(x.sent, Command) and _quote_before_size(x.sent):
        return SIZE_AFTER_QUOTE, x.reply.code if x.reply is not None else 0
    return by_command(x)


# A SHOULD: RFC 1870 says a message over the advertised limit "will be rejected" with 552 (§4)
# and what the server does on receipt (§6.1, §6.3), but puts no MUST on the refusal.
@check("size_limit_enforced", level=Level.SHOULD, citation="RFC 1870 §6.1, §6.3",
       identity=_size_identity)
def size_limit_enforced(x: Exchange) -> Complaint | None:
    """A declared size, or a message, over the limit SIZE advertised was accepted (552, or
    452 while the limit is temporary, is the answer)."""
    limit = x.before.extensions.size_limit
    if limit is None or x.reply is None or not positive(x):
        return None
    if x.group == V.MAIL and isinstance(x.sent, Command):
        declared = x.sent.parameters.get("SIZE") or ""
        if declared.isdigit() and int(declared) > limit:
            quoted = (", after a '\"' in an earlier parameter's value (valid there: RFC 5321 "
                      "§4.1.2), which a parser that opens a quoted string at it reads past the "
                      "SIZE") if _quote_before_size(x.sent) else ""
            return (f"{x.reply.code} to MAIL declaring SIZE={declared}, over the advertised "
                    f"limit of {limit} octets (expected 552 or 452){quoted}")
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
    if x.group not in (V.MAIL, V.RCPT) or not isinstance(x.sent, Command) or \
            not x.before.extensions.keywords or x.before.extensions.malformed:
        return []
    return sorted(parameter for parameter in x.sent.parameters
                  if parameter in EXTENSION_OF_PARAMETER and
                  not advertised(x, EXTENSION_OF_PARAMETER[parameter]))


def _unoffered_identity(x: Exchange) -> Identity:
    """The extensions whose parameters were taken unadvertised, whichever command had them."""
    extensions = sorted({EXTENSION_OF_PARAMETER[p] for p in _unoffered_parameters(x)})
    return f"parameters of {', '.join(extensions)}, not advertised", 0


@check("esmtp_parameters_advertised", level=Level.INFO, citation="RFC 5321 §4.1.1.11",
       state_known=always, identity=_unoffered_identity)
def esmtp_parameters_advertised(x: Exchange) -> Complaint | None:
    """MAIL or RCPT with a parameter of an extension the session's EHLO reply did not list
    was accepted."""
    unoffered = _unoffered_parameters(x)
    if not unoffered or not positive(x) or x.reply is None:
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
    if x.group not in (V.MAIL, V.RCPT) or not isinstance(x.sent, Command) or \
            not x.sent.valid or x.reply is None or x.reply.code not in _PARAMETER_REFUSALS:
        return None
    parameters = x.sent.parameters
    if not parameters or not all(p in EXTENSION_OF_PARAMETER and
                                 advertised(x, EXTENSION_OF_PARAMETER[p]) for p in parameters):
        return None
    extensions = sorted({EXTENSION_OF_PARAMETER[p] for p in parameters})
    return (f"{x.reply.code} to {x.sent.first_line!r}: {', '.join(sorted(parameters))} "
            f"belong to {', '.join(extensions)}, which the server advertised (a server "
            f"that advertises an extension takes its parameters)")


@check("starttls_refuses_argument", level=Level.SHOULD, citation="RFC 3207 §4")
def starttls_refuses_argument(x: Exchange) -> Complaint | None:
    if x.group != V.STARTTLS or not isinstance(x.sent, Command) or x.reply is None or \
            x.reply.code != SERVICE_READY or not x.sent.argument:
        return None
    return f"220 to {x.sent.first_line!r}: STARTTLS takes no parameters (expected 501)"


@check("starttls_not_readvertised", level=Level.MUST, citation="RFC 3207 §4.2",
       state_known=always)
def starttls_not_readvertised(x: Exchange) -> Complaint | None:
    if x.group != V.EHLO or not x.before.tls or x.reply is None or x.reply.code != OK or \
            "STARTTLS" not in parse_ehlo(x.reply.lines):
        return None
    return "EHLO over TLS still advertises STARTTLS"


@check("bdat_not_mixed_with_data", level=Level.MUST, citation="RFC 3030 §2")
def bdat_not_mixed_with_data(x: Exchange) -> Complaint | None:
    if x.group != V.DATA or not x.before.chunked or x.reply is None or \
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
    if not isinstance(x.sent, Command) or not x.sent.utf8_mailbox or not positive(x) or \
            x.reply is None:
        return None
    if x.before.utf8 or (x.group == V.MAIL and "SMTPUTF8" in x.sent.parameters):
        return None  # asked for (where not advertised, esmtp_parameters_advertised says so)
    return (f"{x.reply.code} to {x.group} with a UTF-8 mailbox in a transaction whose MAIL "
            f"did not ask for SMTPUTF8")


def _auth_started(x: Exchange) -> bool:
    """AUTH, advertised, went ahead: it succeeded at once, or a challenge (334) came."""
    return x.group == V.AUTH and advertised(x, "AUTH") and isinstance(x.sent, Command) and \
        x.sent.group == V.AUTH and x.sent.verb == V.AUTH and x.reply is not None and \
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
    if x.group != V.AUTH or not isinstance(x.sent, Command) or x.sent.line != b"*\r\n" or \
            x.reply is None or x.reply.code in (SYNTAX_ERROR, SERVICE_NOT_AVAILABLE):
        return None
    return f"{x.reply.code} to '*', which cancels an AUTH exchange (expected 501)"
