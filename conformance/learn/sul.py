"""A server as AALpy's system under learning: a query is one new connection (the reset),
each input sent through the checked session, so every reply is also checked and recorded
like any run's. A prefix answered otherwise than before is nondeterminism: reported with
both answers (``Nondeterministic``), never learned around."""

from __future__ import annotations

import time
from collections.abc import Mapping

from aalpy.base import SUL

from conformance.engine.address import ServerAddress
from conformance.engine.record import RunRecord
from conformance.engine.sending import not_sendable
from conformance.engine.session import CheckedSession, RunState
from conformance.engine.settings import SessionSettings
from conformance.learn.alphabet import CLOSED, NO_REPLY, NOT_SENT, Letter, output_of
from conformance.protocol.tables import START_MAIL_INPUT
from conformance.search.systematic import send_move


class Nondeterministic(Exception):
    """The server answered the same inputs, on a new connection, otherwise than before."""

    def __init__(self, inputs: tuple[str, ...], first: str, then: str) -> None:
        self.inputs, self.first, self.then = inputs, first, then
        super().__init__(f"after {', '.join(inputs[:-1]) or 'the greeting'}, {inputs[-1]} was "
                         f"answered {first!r}, and later {then!r}")


class BudgetSpent(Exception):
    """The learning's time budget ran out in the middle of a query."""


class ServerSUL(SUL):  # type: ignore[misc]  # AALpy has no type information
    """``letters`` sent to the server at ``address``; queries stop with ``BudgetSpent`` after
    ``deadline`` (time.monotonic)."""

    def __init__(self, address: ServerAddress, settings: SessionSettings,
                 letters: Mapping[str, Letter], *, classes: bool = False,
                 deadline: float = float("inf"), record: RunRecord | None = None) -> None:
        super().__init__()
        self.letters, self.classes, self.deadline = letters, classes, deadline
        self.session = CheckedSession(address, settings, RunState.of(settings, record))
        self.session.ends_on_deviation = False  # the server's next answers are the machine
        self.resets = 0
        self._inputs: tuple[str, ...] = ()
        self._seen: dict[tuple[str, ...], str] = {}

    @property
    def record(self) -> RunRecord:
        return self.session.record

    def pre(self) -> None:
        if time.monotonic() > self.deadline:
            raise BudgetSpent
        self.resets += 1
        self._inputs = ()
        self.session.connect()

    def post(self) -> None:
        self.session.close()

    def step(self, letter: str) -> str:
        self._inputs = (*self._inputs, letter)
        output = self._answer(self.letters[letter])
        seen = self._seen.setdefault(self._inputs, output)
        if seen != output:
            raise Nondeterministic(self._inputs, seen, output)
        return output

    def _answer(self, letter: Letter) -> str:
        session = self.session
        if not session.model.open or not session.client.connected:
            return CLOSED
        # A run caps its sessions' commands once a server slows down (Adaptation); a query
        # must stay one session, or its later inputs would be answered by a new one.
        session.adaptation.max_commands = None
        if not_sendable(letter.command, session.model) is not None:
            return NOT_SENT  # a chunk where the session's EHLO offered no CHUNKING
        reply = send_move(session, letter.move)  # as the systematic phase sends it
        if reply is None:
            session.close()  # a later reply could answer the next input
            return NO_REPLY
        codes: list[int | None] = [reply.code]
        if reply.code == START_MAIL_INPUT and letter.group == letter.command.group and \
                session.model.open:
            if letter.move.message is not None:  # delivering: the message, its end's reply
                end = session.send_message(letter.move.message)
                codes.append(None if end is None else end.code)
            else:
                session.close()  # safe mode: the transaction is aborted (RFC 5321 §4.1.1.4)
        output = output_of(*codes, classes=self.classes)
        if output == NO_REPLY:
            session.close()
        return output
