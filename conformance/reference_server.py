"""The embedded reference server: aiosmtpd on an ephemeral 127.0.0.1 port, in a thread.

It makes no DNS lookups (its hostname is fixed) and keeps accepted messages in memory.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable
from types import TracebackType
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from conformance.client import ServerAddress

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


class _EphemeralController(Controller):
    """aiosmtpd's Controller, bound to port 0; the port the OS chose is read back."""

    def _create_server(self) -> Awaitable[asyncio.AbstractServer]:
        async def create() -> asyncio.AbstractServer:
            server: asyncio.Server = await self.loop.create_server(
                self._factory_invoker, host=self.hostname, port=0
            )
            self.port = server.sockets[0].getsockname()[1]
            return server

        return create()


class ReferenceServer:
    """Start with ``with ReferenceServer() as server:``; ``server.address`` is where it listens."""

    def __init__(self, *, handler: Any = None, **smtp_options: Any) -> None:
        self.handler = handler if handler is not None else MemoryHandler()
        self._controller = _EphemeralController(
            self.handler,
            hostname=LOOPBACK,
            port=0,
            server_hostname=SERVER_HOSTNAME,
            ready_timeout=10.0,
            **smtp_options,
        )
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
