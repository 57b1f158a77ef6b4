"""Checks on the behaviours an attacker uses: SMTP smuggling at a non-standard end of data or
line, commands injected before the TLS handshake, and an open relay.
"""

from __future__ import annotations

from conformance.checks.exchange import Complaint, Exchange
from conformance.checks.registry import check
from conformance.protocol.commands import RELAY_PROBES, Command, DataProbe
from conformance.protocol.levels import Level
from conformance.protocol.vocabulary import V


@check("starttls_discards_plaintext", level=Level.MUST,
       citation="RFC 3207 §4.2; CVE-2011-0411",
       judges_probes=True)
def starttls_discards_plaintext(x: Exchange) -> Complaint | None:
    """Lines sent in plaintext in the same write as STARTTLS were executed after the
    handshake, as if sent over TLS: a man in the middle can inject commands."""
    if x.group != V.STARTTLS or x.unsolicited is None or not isinstance(x.sent, Command):
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
    if x.group != V.RCPT or not isinstance(x.sent, Command) or x.sent not in RELAY_PROBES or \
            x.before.authenticated or x.reply is None or x.reply.first_digit != 2:
        return None
    return (f"{x.reply.code} to {x.sent.first_line!r} without authentication: the server "
            f"relays to any domain (an open relay)")
