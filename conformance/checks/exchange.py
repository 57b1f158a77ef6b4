"""What a check sees: one exchange of a session (``Exchange``), and what a check returns.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from conformance.protocol.commands import Command, DataProbe, Sent
from conformance.protocol.errors import (
    ServerError,
)
from conformance.protocol.levels import Level
from conformance.protocol.model import Session, is_positive
from conformance.protocol.replies import Reply
from conformance.protocol.tables import (
    BAD_SEQUENCE,
    Profile,
)
from conformance.protocol.vocabulary import (
    UNRECOGNISED,
    UPGRADING_VERBS,
    VERBS,
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
    # The same command (its verb in any case), of a verb that leaves the state as it is, was
    # taken in this state earlier in the session (judged by ``session_limit``).
    taken_before: bool = False

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


def advertised(x: Exchange, keyword: str) -> bool:
    """Whether the session's last EHLO reply, before this exchange, listed ``keyword``."""
    return keyword in x.before.extensions


def positive(x: Exchange) -> bool:
    return x.reply is not None and is_positive(x.group, x.reply.code)


def mid_message_out_of_sequence(x: Exchange) -> bool:
    """503 to a command between the chunks of a message (after a BDAT without LAST): the
    message is under way, and RFC 5321 §4.2.4's "bad sequence of commands" says "not now"
    (Exim takes only BDAT or RSET there). RFC 3030 §2 leaves the state mid-message to the
    client to end with the last chunk or RSET."""
    return x.before.chunked and x.reply is not None and x.reply.code == BAD_SEQUENCE
