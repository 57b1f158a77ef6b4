"""Error types, split by who is to blame: the tool's user, or the server under test.

Checks and the pytest plugin rely on this split to choose a message and an exit status.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from conformance.protocol.violations import Violation


# The exit status when the target cannot be reached: nothing was tested, so neither pass nor
# fail. pytest's own statuses are 0-5; this one is distinct from all of them.
EXIT_UNREACHABLE = 6


class ConformanceError(Exception):
    """Base class of every error this package raises on purpose."""


class UsageError(ConformanceError):
    """The tool was misused: a bad ``--server`` value, an unknown profile, a bad option."""


class TargetUnreachable(ConformanceError):
    """No TCP connection to the server could be made; nothing was tested."""


# How a run that lost its server says so (``TargetLost``), in the record, the summary and
# the matrix alike.
SERVER_LOST = "the server stopped accepting connections during the run"


class TargetLost(BaseException):
    """The server stopped accepting connections in the middle of a run.

    A ``BaseException``, like ``KeyboardInterrupt``: Hypothesis lets it through at once
    instead of shrinking it as a failure of the server, and the plugin ends the run with
    ``EXIT_UNREACHABLE``.
    """


class ServerError(ConformanceError):
    """The server under test misbehaved: bad framing, silence, an early close.

    ``partial`` holds the bytes of an unfinished reply, if any, for the report.
    """

    def __init__(self, message: str, *, partial: bytes = b"") -> None:
        super().__init__(message)
        self.partial = partial


class ReplyTimeout(ServerError):
    """No complete reply arrived within the timeout."""


class ConnectionClosed(ServerError):
    """The server closed the connection where a reply was expected."""


class ClosedBeforeSent(ConnectionClosed):
    """The server had closed the connection after its last reply, before the next command
    was sent: the close belongs to that reply, not to the command (which was not sent)."""


class TLSHandshakeFailed(ServerError):
    """The TLS handshake after a 220 to STARTTLS did not complete: it took longer than the
    timeout, the server broke it off, or its certificate failed the caller's verification."""


class TLSHandshakeTimeout(TLSHandshakeFailed, ReplyTimeout):
    """The TLS handshake after a 220 to STARTTLS did not complete within the timeout: the
    server's side of it never came (or never ended), as a reply that never comes."""


class ReplyFramingError(ServerError):
    """The reply stream broke a rule badly enough that replies can no longer be delimited.

    Raised by the sans-IO parser; ``violation`` says which rule, as data.
    """

    def __init__(self, violation: Violation, *, partial: bytes = b"") -> None:
        super().__init__(violation.describe(), partial=partial)
        self.violation = violation


class StopRun(BaseException):
    """The run stops exploring: its time budget is spent, or fail-fast saw a failure.

    A ``BaseException`` for the same reason as ``TargetLost``: Hypothesis passes it through
    at once, and the runner reports what was found so far.
    """
