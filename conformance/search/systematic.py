"""The systematic phase: the plan (``conformance.search.plan``) sent through one checked session at
a time, the same on every seed, before Hypothesis explores. No Hypothesis work per command.

A case's route is walked on a new connection; the cases after it share that session while it
stays where the route left it (a refused command leaves the state unchanged, RFC 5321
§4.1.4), for at most ``ERRORS_PER_SESSION`` refusals after it; a server
that gives up on a client that errs (§7.8: Exim after three) has the sessions after that
kept below the refusals it took. Whatever moved the session on, the next case walks its
route again. What is learnt of the server's timing (``Adaptation``) is shared with the
rest of the run, as are the probes sent once per run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

from conformance.engine.pacing import ERRORS_PER_SESSION
from conformance.engine.sending import not_sendable
from conformance.engine.session import CheckedSession
from conformance.protocol.commands import Command
from conformance.protocol.errors import TargetLost, TargetUnreachable
from conformance.protocol.model import Session, State, is_positive
from conformance.protocol.replies import Reply
from conformance.protocol.vocabulary import VERBS, Advertised, V
from conformance.search import plan as planned
from conformance.search.machine import SMTPConformance
from conformance.search.plan import Case, Move, Route


@dataclass
class Outcome:
    """What the phase did: cases sent of those planned, sessions, seconds; ``cut_short``: the
    budget ran out first."""

    planned: int = 0
    sent: int = 0
    sessions: int = 0
    seconds: float = 0.0
    cut_short: bool = False

    def summary(self) -> str:
        done = f"{self.sent} of {self.planned} cases" if self.cut_short else \
            f"{self.sent} cases"
        return (f"systematic phase: {done} in {self.sessions} sessions, "
                f"{self.seconds:.1f}s" + (" (cut short by the time budget)"
                                          if self.cut_short else ""))


class Systematic:
    """Sends the plan for the server ``machine`` (from ``configure``) is bound to."""

    def __init__(self, machine: type[SMTPConformance]) -> None:
        self.machine = machine
        self.session = machine.new_session()
        self.settings = machine.session_settings
        self.deadline = machine.deadline
        self.route: Route | None = None  # the route the session is at the end of, if any
        self.after_route: Session | None = None  # the model there
        self.errors_allowed = ERRORS_PER_SESSION  # lowered when the server gives up sooner

    def run(self) -> Outcome:
        """The whole plan, within the deadline; what stops a run (``StopRun``, ``TargetLost``)
        comes out as itself."""
        started, sessions = time.monotonic(), self.machine.state.activity.sessions
        outcome = Outcome()
        try:
            cases = planned.plan(self._advertised(), deliver=self.settings.deliver,
                                 rcpt_domain=self.settings.rcpt_domain,
                                 relay_check=self.settings.relay_check)
            outcome.planned = len(cases)
            for case in cases:
                if time.monotonic() >= self.deadline:
                    outcome.cut_short = True
                    break
                self._case(case)
                outcome.sent += 1
        finally:
            self.session.close()
            outcome.seconds = time.monotonic() - started
            outcome.sessions = self.machine.state.activity.sessions - sessions
        return outcome

    def _advertised(self) -> Advertised:
        """What the server's EHLO reply advertises (the plan depends on it)."""
        self._walk(planned.base_routes()[State.READY])
        return self.session.model.extensions

    # --- one case ------------------------------------------------------------------------

    def _case(self, case: Case) -> None:
        if case.kind != planned.COMMAND or not self._at(case.route, len(case.moves)):
            self._walk(case.route)
        if not self.session.model.open:
            return
        if case.kind == planned.COMMAND:
            before = self.session.model
            errors = before.errors - self._errors_at_route()
            reply = self._move(case.moves[0])
            if not self.session.model.open and errors > 1 and not planned.moves_on(case):
                self.errors_allowed = min(self.errors_allowed, errors)  # it gave up after those
            verb = VERBS.get(case.group)
            if reply is not None and verb is not None and before.state in verb.moves and \
                    is_positive(case.group, reply.code):
                self.route = None  # HELO, RSET...: it did what the route did, or undid it
        elif case.kind == planned.BATCH:
            self._batch(case)
        elif case.kind == planned.DATA_PROBE:
            self._data_probe(case)
        elif case.kind == planned.LINE_PROBE:
            self.machine.exploration.line_probes[case.argument] += 1
            self._send(case.moves[0].command)
        elif case.kind == planned.INJECTION:
            self._upgrade(inject=b"NOOP\r\n")
        else:  # OVERSIZED, RELAY: commands in turn, while the session is open
            for move in case.moves:
                if not self.session.model.open:
                    break
                self._move(move)
        if case.kind != planned.COMMAND:
            self._leave()

    def _at(self, route: Route, commands: int) -> bool:
        """Whether the session is where ``route`` left it, with room for ``commands`` more."""
        now, then = self.session.model, self.after_route
        return (self.route == route and then is not None and now.open and
                replace(now, errors=0) == replace(then, errors=0) and
                now.errors - then.errors < self.errors_allowed and
                self.session.has_room(commands))

    def _errors_at_route(self) -> int:
        return self.after_route.errors if self.after_route is not None else 0

    def _walk(self, route: Route) -> None:
        """A new session, then the route's moves while it stays open."""
        self._leave()
        self._open(len(route.moves) + 1)
        for move in route.moves:
            if not self.session.model.open:
                break
            self._move(move)
        self.route, self.after_route = route, self.session.model

    def _leave(self) -> None:
        self.session.close()
        self.route = self.after_route = None

    def _open(self, commands: int) -> None:
        try:
            self.session.ensure_open(commands)
        except TargetUnreachable as error:  # it answered when the run began
            raise TargetLost(str(error)) from None

    # --- sending ---------------------------------------------------------------------------

    def _move(self, move: Move) -> Reply | None:
        """One move (``send_move``), then after a 354 the message (or, when not delivering,
        the end of the session: nothing meant as a command is ever sent as mail data). The
        reply to the command (None: none, or not sendable here)."""
        session = self.session
        try:
            reply = send_move(session, move)
        except TargetUnreachable as error:  # it answered when the run began
            raise TargetLost(str(error)) from None
        if session.model.state is State.DATA:
            if move.message is not None and self.settings.deliver:
                session.send_message(move.message)
            else:
                session.close()
        return reply

    def _send(self, command: Command) -> Reply | None:
        self._open(1)
        return self.session.send(command)

    def _upgrade(self, inject: bytes = b"") -> None:
        self.session.starttls(self.settings.tls_context, self.settings.tls_server_name,
                              inject=inject)

    def _batch(self, case: Case) -> None:
        """The moves in one write (RFC 2920), where this session's EHLO offered PIPELINING."""
        session = self.session
        if "PIPELINING" not in session.model.extensions or not session.has_room(len(case.moves)):
            return
        session.send_batch([move.command for move in case.moves])
        last = case.moves[-1]
        if session.model.state is State.DATA:
            if last.message is not None and self.settings.deliver:
                session.send_message(last.message)
            else:
                session.close()

    def _data_probe(self, case: Case) -> None:
        """DATA, then data with the case's non-standard ending and a line after it (SMTP
        smuggling: ``CheckedSession.send_probe``)."""
        self.session.send(case.moves[0].command)
        if self.session.model.state is State.DATA:
            self.machine.exploration.probes[case.argument] += 1
            self.session.send_probe(planned.smuggled_probe(case.argument))


def send_move(session: CheckedSession, move: Move) -> Reply | None:
    """One move's command as its verb asks: STARTTLS with its TLS handshake where this
    session's EHLO offered it (the reply is STARTTLS's), AUTH answering its challenges,
    anything else as one command. None: no reply, or not sendable in this state (a chunk
    where this session's EHLO, or HELO, offered no CHUNKING)."""
    command, model = move.command, session.model
    if not_sendable(command, model) is not None:
        return None
    if move.upgrade and VERBS[command.group].extension in model.extensions and not model.tls:
        settings = session.settings
        session.starttls(settings.tls_context, settings.tls_server_name)
        return session.last_reply
    if move.answers or command.group == V.AUTH:
        return session.authenticate(command, move.answers)
    return session.send(command)


def sweep(machine: type[SMTPConformance]) -> Outcome:
    """The systematic phase against the server ``machine`` is bound to; its findings go to
    the machine's record. Ends at the machine's deadline."""
    return Systematic(machine).run()
