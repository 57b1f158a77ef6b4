"""Where the machine's commands go: half of them to the (state, command) cell the run has
exchanged least in, after driving the session into that state by one of the routes into it
(RFC 5321 §3.3, §4.1.4); the rest where the random walk is. How much Hypothesis draws never
depends on this: one integer (``where``) seeds every choice made here.

``Steering`` is the half of the state machine that drives its session (open, send, reach a
state); ``SMTPConformance`` adds the rules. ``Exploration`` is what a run has drawn and seen,
shared by its sessions.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from typing import Any, ClassVar

from conformance.engine.pacing import ERRORS_PER_SESSION
from conformance.engine.session import CheckedSession, RunState
from conformance.engine.settings import SessionSettings
from conformance.protocol.commands import Command, Message
from conformance.protocol.errors import StopRun, TargetLost, TargetUnreachable
from conformance.protocol.model import State
from conformance.protocol.replies import Reply
from conformance.protocol.vocabulary import OPEN_STATES, SEED_VERBS, UNRECOGNISED, V
from conformance.search.plan import UNRECOGNISED_MOVE, example

DIRECTED_SHARE = 0.5  # of the commands sent: the rest go where the random walk is


READY_ROUTES = ("as is", "reset", "hello", "message")


# The (state, command) cells a run should reach: every open state x every seed verb and an
# unrecognised one.
CELLS = tuple((state, group) for state in OPEN_STATES
              for group in (*(verb.name for verb in SEED_VERBS), UNRECOGNISED))


POOL_SIZE = 32  # commands kept per group


class Exploration:
    """What one run's exploration has drawn and seen, shared by its sessions: the commands
    (and messages) its rules drew, per group, for the directed steps to reuse (the
    strategies' variety without drawing anew; a group nothing has been drawn for yet gets its
    verb's example from the vocabulary); its exchanges per (state, group) cell, which steer
    them; and what stopped it, if anything did."""

    def __init__(self, rcpt_domain: str | None = None) -> None:
        self.stopped: StopRun | TargetLost | None = None
        self.commands: dict[str, list[Command]] = {}
        self.messages: list[Message] = []
        self.rcpt_domain = rcpt_domain
        self.probes: Counter[str] = Counter()  # end-of-data probes sent, per ending
        self.line_probes: Counter[str] = Counter()  # bare line breaks sent, per kind
        self.auth_exchanges: Counter[str] = Counter()  # AUTH exchanges sent, per name

    def keep(self, command: Command, message: Message | None = None) -> None:
        _keep(self.commands.setdefault(command.group, []), command)
        if message is not None:
            _keep(self.messages, message)

    def command(self, group: str, choose: random.Random) -> Command:
        """Any command of ``group`` drawn so far, valid or not."""
        pool = self.commands.get(group)
        return choose.choice(pool) if pool else self._example(group)

    def valid(self, verb: str, choose: random.Random) -> Command:
        """A valid command of ``verb``, in upper or mixed case as drawn."""
        pool = [c for c in self.commands.get(verb, ()) if c.valid]
        return choose.choice(pool) if pool else self._example(verb)

    def message(self, choose: random.Random) -> Message:
        return choose.choice(self.messages) if self.messages else Message(b"Subject: test\r\n")

    def postmaster(self) -> Command:
        """RCPT to the postmaster of the recipients' domain, or of the server itself."""
        return self._example(V.RCPT) if self.rcpt_domain else Command.of("RCPT TO:<Postmaster>")

    def _example(self, group: str) -> Command:
        if group == UNRECOGNISED:
            return UNRECOGNISED_MOVE.command
        return example(group, self.rcpt_domain)


def _keep(pool: list[Any], item: Any) -> None:
    if len(pool) < POOL_SIZE:
        pool.append(item)
    else:  # replace the oldest: pools follow what the run draws lately
        pool.append(item)
        del pool[0]


class Steering:
    """Drives the machine's one session: opens it (or a new one), sends through it, and
    places a drawn command where the run needs it."""

    session: CheckedSession
    session_settings: ClassVar[SessionSettings]  # every session's
    state: ClassVar[RunState]  # one per run, shared by its sessions
    deadline: ClassVar[float] = float("inf")  # time.monotonic() at which exploring stops
    exploration: ClassVar[Exploration]  # one per run, shared by its sessions

    def _open(self) -> None:
        """Connect if the last session ended or has had its refusals (``ERRORS_PER_SESSION``);
        the run stops when its budget is spent."""
        if time.monotonic() >= self.deadline:
            raise self._stop(StopRun("the run's time budget was spent"))
        if self.session.model.errors >= ERRORS_PER_SESSION:
            self.session.close()  # before the server slows down for the suite's own errors
        try:
            self.session.ensure_open()
        except TargetUnreachable as error:  # it answered when the run began
            raise self._stop(TargetLost(str(error))) from None
        except StopRun as stop:
            raise self._stop(stop) from None

    def _send(self, command: Command, message: Message | None = None) -> Reply | None:
        """Send ``command``; after a 354, the message if there is one, else end the session
        (lines meant as commands are never sent as mail data). The reply to ``command``."""
        self._open()
        try:
            reply = self.session.send(command)
            self._after_data(message)
        except StopRun as stop:  # fail-fast
            raise self._stop(stop) from None
        return reply

    def _after_data(self, message: Message | None) -> None:
        if self.session.model.state is State.DATA:
            if message is not None:
                self.session.send_message(message)
            else:
                self.session.close()

    def _stop(self, error: StopRun | TargetLost) -> StopRun | TargetLost:
        self.exploration.stopped = error
        return error

    def _send_somewhere(self, command: Command, message: Message | None, where: int) -> None:
        """Send ``command`` in the state the session is in, or (half the time, as ``where``
        decides) to the (state, verb) cell this run has exchanged least in, after driving the
        session into that state by one of the routes into it: ``command`` itself if its verb
        is one of the least seen, else a command of that cell's verb from the run's pools.
        Every cell is reached early in a run, whatever the random walk happens to favour.

        ``where`` is one integer whatever is done with it: what Hypothesis draws may not
        depend on the run so far (it checks that the same choices draw the same way)."""
        choose = random.Random(where)
        self.exploration.keep(command, message)  # what the rules drew, for later visits
        if choose.random() >= DIRECTED_SHARE:
            self._send(command, message)
            return
        cells = self._least_seen_cells()
        own = [state for state, group in cells if group == command.group]
        if own:
            state = choose.choice(own)
        else:
            state, group = choose.choice(cells)
            command = self.exploration.command(group, choose)
            message = self.exploration.message(choose) if group == V.DATA else None
        self._reach(state, choose)
        self._send(command, message)

    def _least_seen_cells(self) -> list[tuple[State, str]]:
        seen = self.state.cells
        fewest = min(seen[(state.name, group)] for state, group in CELLS)
        return [(state, group) for state, group in CELLS if seen[(state.name, group)] == fewest]

    def _reach(self, target: State, choose: random.Random) -> None:
        """Drive the session into ``target`` with valid commands, by a route chosen from the
        ways into it (RFC 5321 §3.3, §4.1.4). Stops short where a reply does not allow the
        next step: the cell is then the one the server's replies led to."""
        self._open()
        model = self.session.model
        if target is State.INIT:
            if model.state is not State.INIT:
                self.session.close()
                self._open()
            return
        if target is State.RCPT and model.state is State.RCPT and choose.random() < 0.5:
            self._send(self.exploration.valid(V.RCPT, choose))  # one more recipient
            return
        self._reach_ready(choose)
        if target is State.READY:
            return
        self._send(self.exploration.valid(V.MAIL, choose))
        for _ in range(choose.randint(1, 3) if target is State.RCPT else 0):
            if not self.session.model.in_transaction:
                break
            self._send(self.exploration.valid(V.RCPT, choose))
        if target is State.RCPT and self.session.model.state is State.MAIL:
            # Every recipient drawn was refused (a real server's unknown users): postmaster,
            # which every server takes (RFC 5321 §4.5.1).
            self._send(self.exploration.postmaster())

    def _reach_ready(self, choose: random.Random) -> None:
        """READY: after HELO/EHLO, or after a transaction ended by RSET, by a new HELO/EHLO
        or by its message (§4.1.1.5, §4.1.4, §4.1.1.4): each route a state bug may hide on."""
        hello = choose.choice((V.HELO, V.EHLO))
        if self.session.model.state is State.INIT:
            self._send(self.exploration.valid(hello, choose))
            return
        route = choose.choice(READY_ROUTES)
        if route == "as is" and self.session.model.state is State.READY:
            return
        if self.session.model.state is State.READY:  # open a transaction to end
            self._send(self.exploration.valid(V.MAIL, choose))
            for _ in range(choose.randint(0, 2)):
                self._send(self.exploration.valid(V.RCPT, choose))
        if not self.session.model.in_transaction:
            return
        if route == "message" and self.session_settings.deliver and \
                self.session.model.state is State.RCPT:
            self._send(self.exploration.valid(V.DATA, choose), self.exploration.message(choose))
        elif route == "hello":
            self._send(self.exploration.valid(hello, choose))
        else:
            self._send(self.exploration.valid(V.RSET, choose))
