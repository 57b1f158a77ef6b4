"""The embedded reference server: aiosmtpd on an ephemeral 127.0.0.1 port, in a thread.

It makes no DNS lookups (its hostname is fixed), keeps accepted messages in memory, and is
configured to conform to a profile. Where stock aiosmtpd would answer with a code the profile
does not document, it answers with the substitute listed in ``SUBSTITUTES`` instead; those
are this server's declared deviations from aiosmtpd, not loosened checks.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Mapping
from types import MappingProxyType, TracebackType
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from conformance import grammar
from conformance.client import ServerAddress
from conformance.tables import DEFAULT_PROFILE, NOT_IMPLEMENTED, Profile, get_profile
from conformance.vocabulary import END_OF_DATA, GREETING, SEED_VERBS, UNRECOGNISED

# (group, aiosmtpd's code) -> (code sent instead, new text or None to keep aiosmtpd's), used
# only when the profile does not document aiosmtpd's code for that command.
SUBSTITUTES: Mapping[tuple[str, int], tuple[int, str | None]] = MappingProxyType({
    ("MAIL", 503): (501, None),  # "send HELO first", nested MAIL: seed/RFC 821 MAIL has no 503
    ("MAIL", 553): (501, None),  # malformed address
    ("MAIL", 555): (501, None),  # unknown MAIL parameter
    ("RCPT", 555): (501, None),
    ("QUIT", 501): (500, None),  # QUIT with an argument: the seed's QUIT row is 221, 500
    ("VRFY", 252): (502, "VRFY not implemented"),  # RFC 821 and the seed have no 252
})

# The seed verbs this server does not implement (502, RFC 5321 §4.2.4); HELP lists the rest.
NOT_IMPLEMENTED_VERBS = frozenset({"SEND", "SOML", "SAML", "TURN", "EXPN"})


def implemented_verbs(profile: Profile) -> tuple[str, ...]:
    """The seed verbs the server answers otherwise than 502 under ``profile``: a verb whose
    only answer the profile does not document is substituted away (VRFY's 252 under seed)."""
    refused = {group for (group, code), (substitute, _) in SUBSTITUTES.items()
               if substitute == NOT_IMPLEMENTED and not profile.row(group).allows(code)}
    return tuple(sorted(verb.name for verb in SEED_VERBS
                        if verb.name not in NOT_IMPLEMENTED_VERBS | refused))

SERVER_HOSTNAME = "mx.example.test"
LOOPBACK = "127.0.0.1"


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
        if group == "DATA" and text.startswith("354"):
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
        substitute, text = SUBSTITUTES.get((group, code), (500, None))
        if not row.allows(substitute):
            return status
        return f"{substitute} {text}" if text else f"{substitute}{status[3:]}"

    async def _unrecognised(self, arg: str) -> None:
        await self.push("500 Error: command not recognized")

    async def smtp_HELP(self, arg: str) -> None:
        await self.push(f"214 Commands: {' '.join(implemented_verbs(self.profile))}")

    async def _not_implemented(self, arg: str) -> None:
        await self.push("502 Command not implemented")


for _verb in NOT_IMPLEMENTED_VERBS:  # aiosmtpd finds its verbs by their smtp_ methods
    setattr(ProfileSMTP, f"smtp_{_verb}", ProfileSMTP._not_implemented)
del _verb


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
    """Start with ``with ReferenceServer() as server:``; ``server.address`` is where it listens."""

    def __init__(self, *, profile: Profile | None = None, handler: Any = None,
                 **smtp_options: Any) -> None:
        self.profile = profile or get_profile(DEFAULT_PROFILE)
        self.handler = handler if handler is not None else MemoryHandler()
        self._controller = _EphemeralController(
            self.handler,
            hostname=LOOPBACK,
            port=0,
            server_hostname=SERVER_HOSTNAME,
            ready_timeout=10.0,
            **smtp_options,
        )
        self._controller.profile = self.profile
        self._address: ServerAddress | None = None

    @property
    def address(self) -> ServerAddress:
        if self._address is None:
            raise RuntimeError("reference server is not running")
        return self._address

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
