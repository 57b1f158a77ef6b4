"""A bounded SMTP client: the thin I/O loop around the sans-IO reply parser, over TCP or TLS.

It sends exact bytes (so malformed commands are possible), reads replies with a deadline
per reply, notices when the server closes, and records everything in a ``Transcript``.
Nothing here blocks past its timeout or buffers past the parser's bounds.
"""

from __future__ import annotations

import errno
import select
import socket
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from conformance.engine.address import ServerAddress
from conformance.protocol.errors import (
    ClosedBeforeSent,
    ConnectionClosed,
    ReplyFramingError,
    ReplyTimeout,
    TargetUnreachable,
    TLSHandshakeFailed,
    TLSHandshakeTimeout,
    UsageError,
)
from conformance.protocol.replies import Limits, Reply, ReplyParser
from conformance.protocol.transcript import Transcript
from conformance.protocol.violations import Violation

RECV_SIZE = 64 * 1024
MAX_PIPELINE = 1000
# Plaintext read and discarded at a TLS upgrade, at most (the rest is left to fail the
# handshake), and octets read before a command is sent, at most: enough to show what was
# waiting.
MAX_WAITING = 64 * 1024
# How long after an end of stream that came instead of a reply the client waits for the reset
# a closed socket answers data with (loopback and LANs answer in well under this).
RESET_WAIT = 0.005
# RFC 5321 §3.8: a server shutting down may send 421 before the command it answers.
ASYNCHRONOUS_REPLY = b"421"


MASKED = b"<masked>"  # in place of a secret the server sent back


@dataclass(frozen=True)
class Upgrade:
    """A completed STARTTLS upgrade: the TLS version and cipher negotiated, and the plaintext
    that was waiting unread when the handshake began. A conforming server sends nothing
    after its 220 to STARTTLS but the handshake; plaintext there answers commands sent in
    the same write as STARTTLS (command injection, CVE-2011-0411) or was injected on the
    way. It was discarded, never read as a reply of the TLS session."""

    version: str
    cipher: str
    plaintext_waiting: bytes = b""


def tls_context(*, cafile: str | Path | None = None, verify: bool = True) -> ssl.SSLContext:
    """A client context for ``SMTPClient.starttls``: the server's certificate verified
    against ``cafile`` (else the system's CAs) and the name given; or, with ``verify=False``,
    any certificate accepted (self-signed, another name) and nothing verified."""
    context = ssl.create_default_context(cafile=cafile if verify else None)
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def check_tls_arguments(context: ssl.SSLContext, server_hostname: str | None) -> None:
    """Raise UsageError if ``context`` cannot be used as given: one that checks the
    certificate's name needs the name to check."""
    if context.check_hostname and not server_hostname:
        raise UsageError("this TLS context checks the server's name: give server_hostname, "
                         "or use tls_context(verify=False)")


def _handshake_failure(error: Exception, timeout: float) -> str | None:
    """Why a handshake failed, in one line; None if ``error`` is not a handshake failure."""
    if isinstance(error, TimeoutError):
        return f"no complete handshake within {timeout:g}s"
    if isinstance(error, ssl.SSLCertVerificationError):
        return f"certificate verification failed: {error.verify_message}"
    if isinstance(error, ssl.SSLError):
        return f"{error.reason or error}"
    if isinstance(error, OSError):
        return f"connection lost: {error.strerror or error}"
    return None


class SMTPClient:
    """One TCP session with an SMTP server.

    ``timeout`` bounds each reply (from the moment we start waiting for it to its last
    octet) and each send; ``connect_timeout`` bounds the TCP handshake.
    """

    def __init__(
        self,
        address: ServerAddress,
        *,
        timeout: float,
        connect_timeout: float | None = None,
        limits: Limits | None = None,
        smtputf8: bool = False,
    ) -> None:
        if timeout <= 0:
            raise UsageError("timeout must be positive")
        self.address = address
        self.timeout = timeout
        self.connect_timeout = connect_timeout or timeout
        self.transcript = Transcript()
        self.limits, self.smtputf8 = limits, smtputf8
        self.parser = ReplyParser(limits=limits, smtputf8=smtputf8)
        self.closed_by_server = False
        self._lost = ""  # how the connection was lost, when it was not an orderly close
        self._sent_unanswered = False  # octets went out since the last reply was read
        self._sock: socket.socket | None = None
        # Octets never to be shown (credentials on the wire): masked in everything the
        # server sends, before it is parsed or recorded. (One split across two reads is
        # not caught; servers that echo what they were sent echo it in one line.)
        self.secrets: tuple[bytes, ...] = ()

    # --- connection ------------------------------------------------------------------------

    def connect(self, *, greeting_timeout: float | None = None) -> Reply:
        """Open the TCP connection and read the greeting (within ``greeting_timeout``, by
        default the reply timeout)."""
        try:
            self._sock = socket.create_connection(
                (self.address.host, self.address.port), timeout=self.connect_timeout
            )
        except TimeoutError:
            raise TargetUnreachable(
                f"cannot connect to {self.address}: no answer in {self.connect_timeout:g}s"
            ) from None
        except OSError as error:
            reason = error.strerror or str(error)
            raise TargetUnreachable(f"cannot connect to {self.address}: {reason}") from None
        self.transcript.event(f"connected to {self.address}")
        return self.read_reply(timeout=greeting_timeout)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> SMTPClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def connected(self) -> bool:
        return self._sock is not None and not self.closed_by_server

    @property
    def tls(self) -> bool:
        """Whether the connection has been upgraded to TLS."""
        return isinstance(self._sock, ssl.SSLSocket)

    def starttls(self, context: ssl.SSLContext, server_hostname: str | None = None, *,
                 timeout: float | None = None) -> Upgrade:
        """Upgrade the connection to TLS, after the server's 220 to STARTTLS (RFC 3207 §4).

        The handshake ends within ``timeout`` (by default the reply timeout) or raises
        ``TLSHandshakeFailed``, and the connection is then closed. Whether the certificate is
        verified is ``context``'s choice (see ``tls_context``). Plaintext left unread at this
        moment (in the parser after the 220, or already readable on the socket) is reported
        and discarded: the TLS session starts with a fresh parser (RFC 3207 §4.2).
        """
        check_tls_arguments(context, server_hostname)
        if self.tls:
            raise UsageError("the connection is already TLS")
        sock = self._socket()
        waiting = self.parser.pending + self._take_readable(sock)
        self.parser = ReplyParser(limits=self.limits, smtputf8=self.smtputf8)
        if waiting:
            self.transcript.server(self._scrub(waiting))
            self.transcript.event(f"{len(waiting)} octet(s) of plaintext were waiting unread "
                                  f"at the TLS upgrade: discarded")
        limit = self.timeout if timeout is None else timeout
        sock.settimeout(limit)
        wrapped = context.wrap_socket(sock, server_hostname=server_hostname,
                                      do_handshake_on_connect=False)
        self._sock = wrapped
        try:
            wrapped.do_handshake()  # one deadline for the whole handshake
        except Exception as error:
            why = _handshake_failure(error, limit)
            if why is None:
                raise
            self.transcript.event(f"TLS handshake failed: {why}")
            self.closed_by_server = True
            self.close()
            failed = TLSHandshakeTimeout if isinstance(error, TimeoutError) else \
                TLSHandshakeFailed
            raise failed(f"TLS handshake failed: {why}") from None
        version, cipher = wrapped.version() or "?", (wrapped.cipher() or ("?",))[0]
        self.transcript.event(f"TLS upgrade: {version}, {cipher}")
        return Upgrade(version, cipher, waiting)

    def _socket(self) -> socket.socket:
        if self._sock is None:
            raise ConnectionClosed("not connected")
        return self._sock

    # --- sending and receiving -------------------------------------------------------------

    def send(self, data: bytes, *, shown: bytes | None = None) -> None:
        """Send ``data`` exactly as given (CRLF included by the caller); the transcript
        shows ``shown`` instead, if given (credentials stay out of it)."""
        sock = self._socket()
        self._check_nothing_waiting(sock)
        if self.closed_by_server and not self.parser.pending:
            raise ClosedBeforeSent("the server had closed the connection after its last reply, "
                                   "before this command was sent")
        self.transcript.client(data if shown is None else shown)
        self._sent_unanswered = True
        sock.settimeout(self.timeout)
        try:
            sock.sendall(data)
        except TimeoutError:
            raise ReplyTimeout(f"server did not read our data within {self.timeout:g}s") from None
        except OSError as error:
            self._server_closed()
            raise ConnectionClosed(f"connection lost while sending: {error}") from None

    def read_reply(self, *, timeout: float | None = None) -> Reply:
        """The next complete reply; raises if it does not arrive within the timeout."""
        limit = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        while True:
            reply = self._next_parsed_reply()
            if reply is not None:
                self.transcript.server(reply.raw)
                self._sent_unanswered = False
                return reply
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                partial = self.parser.pending
                self._record_partial(partial, f"no complete reply within {limit:g}s")
                raise ReplyTimeout(
                    f"no complete reply within {limit:g}s"
                    + (f" (received so far: {partial[:120]!r})" if partial else ""),
                    partial=partial,
                )
            data = self._recv(remaining)
            if data is None:
                continue
            if not data:
                partial = self.parser.pending
                if not partial and self._sent_unanswered and self._refused_by_closed_socket():
                    self._server_closed()
                    raise ClosedBeforeSent("the server had closed the connection after its "
                                           "last reply: what was sent after it was reset")
                how = self._lost or "server closed the connection"
                self._server_closed()
                self._record_partial(partial, how)
                where = "in the middle of a reply" if partial else "instead of replying"
                raise ConnectionClosed(
                    f"{how} {where}"
                    + (f" (received: {partial[:120]!r})" if partial else ""),
                    partial=partial,
                )
            self._feed(data)

    def command(self, data: bytes) -> Reply:
        """Send one command (exact bytes) and read its reply."""
        self.send(data)
        return self.read_reply()

    def pipeline(self, commands: Sequence[bytes]) -> list[Reply]:
        """Send several commands in one write (RFC 2920), then read one reply for each."""
        if len(commands) > MAX_PIPELINE:
            raise UsageError(f"at most {MAX_PIPELINE} commands in one pipeline")
        self.send(b"".join(commands))
        return [self.read_reply() for _ in commands]

    def wait_for_close(self, *, timeout: float | None = None, quiet: bool = False) -> bool:
        """True if the server closes the connection within the timeout (after QUIT or 421).

        Bytes that arrive instead are kept in the transcript; the answer is then False.
        """
        if self.closed_by_server:
            return True
        limit = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                data = self._recv(remaining)
            except ConnectionClosed:
                return True
            if data is None:
                continue
            if not data:
                self._server_closed()
                return True
            self.transcript.server(self._scrub(data))
            return False
        if not quiet:
            self.transcript.event(f"connection still open after {limit:g}s")
        return False

    # --- internals -------------------------------------------------------------------------

    def _next_parsed_reply(self) -> Reply | None:
        try:
            return self.parser.next_reply()
        except ReplyFramingError as error:
            self._record_partial(error.partial, f"unreadable reply: {error}")
            raise

    def _scrub(self, data: bytes) -> bytes:
        for secret in self.secrets:
            data = data.replace(secret, MASKED)
        return data

    def _feed(self, data: bytes) -> None:
        try:
            self.parser.feed(self._scrub(data))
        except ReplyFramingError as error:
            self._record_partial(error.partial, f"unreadable reply: {error}")
            raise

    def _recv(self, timeout: float) -> bytes | None:
        """Up to RECV_SIZE bytes; b"" at end of stream (an orderly close, or a reset: then
        ``_lost`` says so); None if nothing came in time."""
        sock = self._socket()
        sock.settimeout(max(timeout, 0.001))
        try:
            return sock.recv(RECV_SIZE)
        except TimeoutError:
            return None
        except OSError as error:  # reset by peer and the like: what came before it stays
            self._lost = f"connection lost ({error.strerror or error})"
            return b""

    def _check_nothing_waiting(self, sock: socket.socket) -> None:
        """Raise ``ReplyFramingError`` if the server has sent anything since the last reply
        was read, before the next command is sent: a reply then answers nothing, and every
        later reply would be taken for the answer to the command before it (RFC 5321 §4.2:
        exactly one reply per command). What waits is kept for the next reply if it is a
        421 (§3.8 lets a server shutting down send one so)."""
        if self.closed_by_server:
            return
        waiting = self._take_readable(sock)
        if waiting:
            self._feed(waiting)
        pending = self.parser.pending
        if not pending or pending.startswith(ASYNCHRONOUS_REPLY):
            return
        self.parser = ReplyParser(limits=self.limits, smtputf8=self.smtputf8)
        violation = Violation("unsolicited-reply", f"{len(pending)} octet(s) came from the "
                              f"server after its last reply, before this command was sent",
                              pending[:80])
        self._record_partial(self._scrub(pending), f"unsolicited: {violation.detail}")
        raise ReplyFramingError(violation, partial=pending[:1024])

    def _take_readable(self, sock: socket.socket) -> bytes:
        """What is readable on the socket right now, without waiting (at most MAX_WAITING);
        over TLS, what decrypts without waiting for more."""
        taken = b""
        pending = isinstance(sock, ssl.SSLSocket) and sock.pending() > 0
        if not pending and not select.select([sock], [], [], 0)[0]:
            return taken
        sock.settimeout(0.0)
        try:
            while len(taken) < MAX_WAITING:
                data = sock.recv(min(RECV_SIZE, MAX_WAITING - len(taken)))
                if not data:
                    self._server_closed()
                    break
                taken += data
        except OSError:
            pass  # nothing more now (or the connection is lost: the next read will say so)
        finally:
            sock.settimeout(self.timeout)
        return taken

    def _refused_by_closed_socket(self) -> bool:
        """After an end of stream with no reply to what was sent: whether what was sent
        reached a socket the server had closed already, which answers with a reset (the
        server closed after its last reply, not on reading this). Waits RESET_WAIT for it."""
        sock = self._sock
        if sock is None:
            return False
        time.sleep(RESET_WAIT)
        try:
            error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        except OSError:
            return False
        return error in (errno.EPIPE, errno.ECONNRESET)

    def peer_closed(self) -> bool:
        """Whether the server has closed the connection already (its end of stream is
        waiting), without reading anything else or waiting. Over TLS: not known (False)."""
        if self.closed_by_server:
            return True
        sock = self._sock
        if sock is None or isinstance(sock, ssl.SSLSocket) or \
                not select.select([sock], [], [], 0)[0]:
            return False
        sock.settimeout(0.0)
        try:
            ended = sock.recv(1, socket.MSG_PEEK) == b""
        except OSError as error:  # reset by peer and the like
            self._lost = f"connection lost ({error.strerror or error})"
            ended = True
        finally:
            sock.settimeout(self.timeout)
        if ended:
            self._server_closed()
        return ended

    def _server_closed(self) -> None:
        if not self.closed_by_server:
            self.closed_by_server = True
            self.transcript.event(self._lost or "server closed the connection")

    def _record_partial(self, partial: bytes, why: str) -> None:
        if partial:
            self.transcript.server(partial)
        self.transcript.event(why)
