"""The embedded reference server: aiosmtpd on an ephemeral 127.0.0.1 port, in a thread.

It makes no DNS lookups (its hostname is fixed), keeps accepted messages in memory, and is
configured to conform to a profile. Where stock aiosmtpd would answer with a code the profile
does not document, it answers with the substitute listed in ``SUBSTITUTES`` instead; those
are this server's declared deviations from aiosmtpd, not loosened checks.

By default it offers STARTTLS (a certificate from a throwaway trustme CA made at start-up),
AUTH PLAIN and LOGIN with fixed test credentials (before TLS too, never required),
PIPELINING, SMTPUTF8, SIZE and 8BITMIME. Where aiosmtpd breaks RFC 4954 or RFC 3207 the
subclass below corrects it (AUTH in a transaction, MAIL's AUTH= parameter, STARTTLS once TLS
is on). It is the destination only for names reserved for testing and relays nowhere: a
recipient at any other domain is refused (``is_destination``). Leniencies kept: non-ASCII
addresses are accepted without the SMTPUTF8 MAIL parameter (aiosmtpd's), and a recipient at
any address literal is taken as its own (the strategies draw any address).
"""

from __future__ import annotations

import asyncio
import ssl
import threading
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from types import MappingProxyType, TracebackType
from typing import Any

import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session, TLSSetupException

from conformance.engine.address import ServerAddress
from conformance.protocol import grammar
from conformance.protocol.credentials import EMBEDDED_CREDENTIALS
from conformance.protocol.tables import (
    BAD_SEQUENCE,
    CANNOT_VERIFY,
    COMMAND_UNRECOGNISED,
    DEFAULT_PROFILE,
    MAILBOX_NAME_NOT_ALLOWED,
    NOT_IMPLEMENTED,
    PARAMETER_NOT_IMPLEMENTED,
    START_MAIL_INPUT,
    SYNTAX_ERROR,
    Profile,
    get_profile,
)
from conformance.protocol.vocabulary import END_OF_DATA, GREETING, SEED_VERBS, UNRECOGNISED, V

# (group, aiosmtpd's code) -> (code sent instead, new text or None to keep aiosmtpd's), used
# only when the profile does not document aiosmtpd's code for that command.
SUBSTITUTES: Mapping[tuple[str, int], tuple[int, str | None]] = MappingProxyType({
    # "send HELO first", nested MAIL: seed/RFC 821 MAIL has no 503
    (V.MAIL, BAD_SEQUENCE): (SYNTAX_ERROR, None),
    (V.MAIL, MAILBOX_NAME_NOT_ALLOWED): (SYNTAX_ERROR, None),  # malformed address
    (V.MAIL, PARAMETER_NOT_IMPLEMENTED): (SYNTAX_ERROR, None),  # unknown MAIL parameter
    (V.RCPT, PARAMETER_NOT_IMPLEMENTED): (SYNTAX_ERROR, None),
    # QUIT with an argument: the seed's QUIT row is 221, 500
    (V.QUIT, SYNTAX_ERROR): (COMMAND_UNRECOGNISED, None),
    # RFC 821 and the seed have no 252
    (V.VRFY, CANNOT_VERIFY): (NOT_IMPLEMENTED, "VRFY not implemented"),
})

# The names this server is the destination for: the top-level names reserved for testing
# (RFC 2606 §2, RFC 6761 §6) and below them, and the second-level example names themselves
# (RFC 2606 §3; not their sub-domains, where the relay check's domain is).
DESTINATION_TOP_LEVEL = frozenset({"test", "example", "invalid", "localhost"})
DESTINATION_NAMES = frozenset({"example.com", "example.net", "example.org"})
RELAY_DENIED = "550 5.7.1 Relaying denied: not a destination of this server"


def is_destination(address: str) -> bool:
    """Whether a recipient (aiosmtpd's parsed mailbox, any source route dropped) is this
    server's to take: the bare postmaster (RFC 5321 §4.1.1.3), an address literal, or a
    mailbox in a domain reserved for testing."""
    _local, at, domain = address.rpartition("@")
    if not at:
        return True
    domain = domain.lower().rstrip(".")
    return (domain.startswith("[") or domain in DESTINATION_NAMES
            or domain.rpartition(".")[2] in DESTINATION_TOP_LEVEL)


# The seed verbs this server does not implement (502, RFC 5321 §4.2.4); HELP lists the rest.
NOT_IMPLEMENTED_VERBS = frozenset({V.SEND, V.SOML, V.SAML, V.TURN, V.EXPN})


def implemented_verbs(profile: Profile) -> tuple[str, ...]:
    """The seed verbs the server answers otherwise than 502 under ``profile``: a verb whose
    only answer the profile does not document is substituted away (VRFY's 252 under seed)."""
    refused = {group for (group, code), (substitute, _) in SUBSTITUTES.items()
               if substitute == NOT_IMPLEMENTED and not profile.row(group).allows(code)}
    return tuple(sorted(verb.name for verb in SEED_VERBS
                        if verb.name not in NOT_IMPLEMENTED_VERBS | refused))

SERVER_HOSTNAME = "mx.example.test"
LOOPBACK = "127.0.0.1"

# AUTH PLAIN and LOGIN accept exactly these (RFC 4954; the mechanisms are RFC 4616 and the
# LOGIN draft); anything else is 535.
TEST_USERNAME, TEST_PASSWORD = EMBEDDED_CREDENTIALS.username, EMBEDDED_CREDENTIALS.password

# Keywords added to aiosmtpd's EHLO reply. PIPELINING: aiosmtpd reads commands in order from
# one stream and answers each in turn, as RFC 2920 §3.2 asks; it just does not say so.
EXTRA_EHLO_KEYWORDS = ("PIPELINING",)

# aiosmtpd options this server sets unless the caller gives its own.
DEFAULT_SMTP_OPTIONS: Mapping[str, Any] = MappingProxyType({
    "enable_SMTPUTF8": True,  # RFC 6531; aiosmtpd also offers 8BITMIME, as §3.1 requires
    "auth_require_tls": False,  # AUTH offered before STARTTLS, so the suite reaches it
})


def accept_test_credentials(server: SMTP, session: Session, envelope: Envelope,
                            mechanism: str, auth_data: Any) -> AuthResult:
    """aiosmtpd authenticator: TEST_USERNAME with TEST_PASSWORD, nothing else."""
    expected = LoginPassword(TEST_USERNAME.encode(), TEST_PASSWORD.encode())
    if isinstance(auth_data, LoginPassword) and auth_data == expected:
        return AuthResult(success=True, auth_data=auth_data)
    return AuthResult(success=False, handled=False)  # aiosmtpd answers 535 5.7.8


class Certificate:
    """A throwaway CA (trustme) and the server certificate it signed, for SERVER_HOSTNAME
    and LOOPBACK; clients verify against ``ca_pem``."""

    names = (SERVER_HOSTNAME, LOOPBACK)

    def __init__(self) -> None:
        self._ca = trustme.CA()
        self._leaf = self._ca.issue_cert(*self.names)
        self.ca_pem: bytes = self._ca.cert_pem.bytes()

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)  # no client certificate
        self._leaf.configure_cert(context)
        return context


class MemoryHandler:
    """Keeps every accepted message, bounded, so tests can see what was delivered."""

    def __init__(self, *, max_messages: int = 1000) -> None:
        self.messages: list[Envelope] = []
        self.max_messages = max_messages
        self._lock = threading.Lock()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        with self._lock:
            if len(self.messages) < self.max_messages:
                self.messages.append(envelope)
        return "250 Message accepted for delivery"


class ProfileSMTP(SMTP):
    """aiosmtpd's SMTP, answering only with codes the profile documents."""

    def __init__(self, handler: Any, *, profile: Profile, **options: Any) -> None:
        super().__init__(handler, **options)
        self.profile = profile
        self._group = GREETING  # the first push is the greeting
        self._smtp_methods = _AnswersUnknownVerbs(
            {verb: self._tracking(verb, method) for verb, method in self._smtp_methods.items()},
            self._unrecognised)
        self._handler_ehlo = self._handle_hooks.get(V.EHLO)
        if self._ehlo_hook_ver != "old":  # the old 4-argument hook cannot edit the list
            self._handle_hooks[V.EHLO] = self._ehlo_keywords
            self._ehlo_hook_ver = "new"

    def _cb_client_connected(self, reader: asyncio.StreamReader,
                             writer: asyncio.StreamWriter) -> None:
        # aiosmtpd reads a command line up to a bare LF; only CRLF ends one (RFC 5321 §2.3.8).
        reader.__class__ = _CRLFLines
        super()._cb_client_connected(reader, writer)

    def _tracking(self, verb: str, method: Callable[[str], Awaitable[None]]) -> Callable[
            [str], Awaitable[None]]:
        async def call(arg: str) -> None:
            self._group = verb
            try:
                await method(arg)
            finally:
                self._group = UNRECOGNISED
        return call

    async def push(self, status: str | bytes) -> None:
        text = status.decode("utf-8", "replace") if isinstance(status, bytes) else status
        group = self._group
        if group == V.DATA and text.startswith(str(START_MAIL_INPUT)):
            self._group = END_OF_DATA  # the next reply answers the end of the data
        elif group == GREETING:
            self._group = UNRECOGNISED
        await super().push(self._conforming(group, text))

    def _conforming(self, group: str, status: str) -> str:
        # Reply text must be textstring (RFC 5321 §4.2); aiosmtpd echoes what it was sent.
        status = "".join(c if ord(c) in grammar.TEXTSTRING_OCTETS else "?" for c in status)
        code = int(status[:3])
        row = self.profile.row(group)
        if row.allows(code):
            return status
        substitute, text = SUBSTITUTES.get((group, code), (COMMAND_UNRECOGNISED, None))
        if not row.allows(substitute):
            return status
        return f"{substitute} {text}" if text else f"{substitute}{status[3:]}"

    async def _ehlo_keywords(self, server: SMTP, session: Session, envelope: Envelope,
                             hostname: str, responses: list[str]) -> list[str]:
        *keywords, last = responses
        responses = [*keywords, *(f"250-{word}" for word in EXTRA_EHLO_KEYWORDS), last]
        if self._handler_ehlo is not None:
            return list(await self._handler_ehlo(server, session, envelope, hostname,
                                                 responses))
        session.host_name = hostname  # what aiosmtpd does itself when there is no hook
        return responses

    async def smtp_STARTTLS(self, arg: str) -> None:
        # Once TLS is on, STARTTLS is no longer offered (RFC 3207 §4.2); aiosmtpd would say
        # 220 and try a second TLS layer inside the first.
        if self._tls_protocol is not None:
            await self.push("502 Error: TLS already active")
            return
        try:
            await super().smtp_STARTTLS(arg)
        except TLSSetupException:
            # The client left during the handshake (the suite's own hang and injection probes
            # do): no session is left to answer, and no traceback is owed to anyone.
            if self.transport is not None:
                self.transport.close()

    async def smtp_AUTH(self, arg: str) -> None:
        # RFC 4954 §4: "An AUTH command issued during a mail transaction MUST be rejected
        # with a 503 reply"; aiosmtpd does not look.
        if self.envelope is not None and self.envelope.mail_from is not None:
            await self.push("503 5.5.1 AUTH not permitted during a mail transaction")
            return
        await super().smtp_AUTH(arg)

    async def smtp_MAIL(self, arg: str | None) -> None:
        # RFC 6531 §3.4, RFC 5321 §2.4: a UTF-8 mailbox only with SMTPUTF8 asked for;
        # aiosmtpd takes one in any MAIL once SMTPUTF8 is enabled.
        path, _, parameters = (arg or "").partition(">")  # AUTH=<> may follow the path
        if not path.isascii() and "SMTPUTF8" not in parameters.upper().split():
            await self.push("550 5.6.7 Non-ASCII address without SMTPUTF8")  # §3.5
            return
        # RFC 4954 §5: a server that offers AUTH takes MAIL's AUTH= parameter (aiosmtpd
        # answers it 555). It is only a claim about the sender: this server trusts no client
        # with it, so it is dropped, as if the client had sent AUTH=<> (§5).
        kept = [p for p in parameters.split(" ") if not p.upper().startswith("AUTH=")]
        await super().smtp_MAIL(arg if arg is None else f"{path}>{' '.join(kept)}")

    async def _call_handler_hook(self, command: str, *args: Any) -> Any:
        # RFC 5321 §3.6.2, §7.1: relaying is not this server's job; it refuses recipients it
        # is not the destination for before the handler sees them.
        if command == V.RCPT and not is_destination(args[0]):
            return RELAY_DENIED
        return await super()._call_handler_hook(command, *args)

    async def smtp_RCPT(self, arg: str | None) -> None:
        path = (arg or "").rpartition(">")[0]
        if not path.isascii() and not (self.envelope is not None and
                                       self.envelope.smtp_utf8):
            await self.push("553 5.6.7 Non-ASCII address without SMTPUTF8")  # §3.5
            return
        await super().smtp_RCPT(arg)

    async def _unrecognised(self, arg: str) -> None:
        await self.push("500 Error: command not recognized")

    async def smtp_HELP(self, arg: str) -> None:
        await self.push(f"214 Commands: {' '.join(implemented_verbs(self.profile))}")

    async def _not_implemented(self, arg: str) -> None:
        await self.push("502 Command not implemented")


for _verb in NOT_IMPLEMENTED_VERBS:  # aiosmtpd finds its verbs by their smtp_ methods
    setattr(ProfileSMTP, f"smtp_{_verb}", ProfileSMTP._not_implemented)
del _verb


class _CRLFLines(asyncio.StreamReader):
    """A stream whose lines end at CRLF only: where aiosmtpd reads up to the default b"\n"
    (commands, AUTH answers), up to b"\r\n" instead."""

    async def readuntil(self, separator: Any = b"\n") -> bytes:
        return await super().readuntil(b"\r\n" if separator == b"\n" else separator)


class _AnswersUnknownVerbs(dict[str, Callable[[str], Awaitable[None]]]):
    """aiosmtpd's verb table, with an answer for every unknown verb. Stock aiosmtpd counts
    unknown verbs and closes the connection after a few (its module-wide BOGUS_LIMIT); RFC
    5321 §4.2.4 and §3.8 say a server answers 500 and carries on. Per server, no globals."""

    def __init__(self, methods: dict[str, Callable[[str], Awaitable[None]]],
                 unknown: Callable[[str], Awaitable[None]]) -> None:
        super().__init__(methods)
        self.unknown = unknown

    def get(self, verb: str, default: Any = None
            ) -> Callable[[str], Awaitable[None]]:
        return super().get(verb) or self.unknown


class _EphemeralController(Controller):
    """aiosmtpd's Controller, bound to port 0; the port the OS chose is read back."""

    profile: Profile

    def _create_server(self) -> Awaitable[asyncio.AbstractServer]:
        async def create() -> asyncio.AbstractServer:
            server: asyncio.Server = await self.loop.create_server(
                self._factory_invoker, host=self.hostname, port=0
            )
            self.port = server.sockets[0].getsockname()[1]
            return server

        return create()

    def factory(self) -> SMTP:
        return ProfileSMTP(self.handler, profile=self.profile, **self.SMTP_kwargs)


class ReferenceServer:
    """Start with ``with ReferenceServer() as server:``; ``server.address`` is where it listens.

    ``tls=False``: no STARTTLS (aiosmtpd then answers it 454). A ``tls_context`` of the
    caller's replaces the trustme certificate, and ``ca_pem`` is then None. Other keywords
    go to aiosmtpd's SMTP, over DEFAULT_SMTP_OPTIONS.
    """

    tls_server_name = SERVER_HOSTNAME  # the name the certificate is for (LOOPBACK too)

    def __init__(self, *, profile: Profile | None = None, handler: Any = None,
                 tls: bool = True, **smtp_options: Any) -> None:
        self.profile = profile or get_profile(DEFAULT_PROFILE)
        self.handler = handler if handler is not None else MemoryHandler()
        self.ca_pem: bytes | None = None
        if tls and "tls_context" not in smtp_options:
            certificate = Certificate()
            self.ca_pem = certificate.ca_pem
            smtp_options["tls_context"] = certificate.server_context()
        elif not tls:
            smtp_options["tls_context"] = None
        if "authenticator" not in smtp_options and "auth_callback" not in smtp_options:
            smtp_options["authenticator"] = accept_test_credentials
        self._controller = _EphemeralController(
            self.handler,
            hostname=LOOPBACK,
            port=0,
            server_hostname=SERVER_HOSTNAME,
            ready_timeout=10.0,
            **{**DEFAULT_SMTP_OPTIONS, **smtp_options},
        )
        self._controller.profile = self.profile
        self._address: ServerAddress | None = None

    @property
    def address(self) -> ServerAddress:
        if self._address is None:
            raise RuntimeError("reference server is not running")
        return self._address

    def write_ca(self, path: str | Path) -> Path:
        """Write the CA certificate to ``path``, for ``tls_context(cafile=path)``."""
        if self.ca_pem is None:
            raise RuntimeError("this reference server has no trustme certificate")
        Path(path).write_bytes(self.ca_pem)
        return Path(path)

    def start(self) -> ServerAddress:
        self._controller.start()
        self._address = ServerAddress(LOOPBACK, self._controller.port)
        return self._address

    def stop(self) -> None:
        if self._address is not None:
            self._controller.stop()
            self._address = None

    def __enter__(self) -> ReferenceServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
