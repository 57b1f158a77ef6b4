"""A checked session: the client, the model and the checks, together, without Hypothesis.

Every command goes out through ``send``; its reply is checked against the profile and the
model's state, then the model advances from what the server actually said.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from conformance.checks import Exchange, run_checks
from conformance.client import ServerAddress, SMTPClient
from conformance.commands import END_OF_DATA, GREETING, Command, Message, Step
from conformance.errors import ServerError
from conformance.failures import failure_type
from conformance.grading import Policy
from conformance.model import Session, State, advance, closed
from conformance.record import RunRecord, records_for
from conformance.replies import Reply
from conformance.tables import CLOSING, SERVICE_NOT_AVAILABLE, Profile


class Pacer:
    """At most ``rate`` commands (connections count too) per second, for production servers;
    ``None``: as fast as the server answers. One pacer may serve many sessions."""

    def __init__(self, rate: float | None = None, *,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.interval = 1 / rate if rate else 0.0
        self.clock, self.sleep = clock, sleep
        self.next_due = float("-inf")

    def wait(self) -> None:
        if not self.interval:
            return
        now = self.clock()
        if now < self.next_due:
            self.sleep(self.next_due - now)
            now = self.next_due
        self.next_due = now + self.interval


class CheckedSession:
    def __init__(self, address: ServerAddress, profile: Profile, *, timeout: float = 5.0,
                 close_timeout: float | None = None, policy: Policy | None = None,
                 record: RunRecord | None = None, deliver: bool = True,
                 pacer: Pacer | None = None) -> None:
        self.address = address
        self.profile = profile
        self.timeout = timeout
        self.close_timeout = close_timeout if close_timeout is not None else timeout
        self.model = Session()
        self.policy = policy if policy is not None else Policy()
        self.record = record if record is not None else RunRecord()
        self.client = SMTPClient(address, timeout=timeout)
        self.steps: list[Step] = []  # this session's, since the last connect
        # False: safe mode. A message is never completed: after the 354 the connection is
        # closed instead of sending the data, so the server aborts the transaction (§4.1.1.4)
        # and nothing is delivered.
        self.deliver = deliver
        self.pacer = pacer if pacer is not None else Pacer()

    @property
    def transcript(self) -> str:
        return self.client.transcript.render()

    def connect(self) -> Reply | None:
        self.client = SMTPClient(self.address, timeout=self.timeout)
        self.model = Session()
        self.steps = []
        return self._exchange(GREETING, None, self.client.connect)

    def send(self, command: Command) -> Reply | None:
        self.steps.append((command.group, command.line))
        return self._exchange(command.group, command, lambda: self.client.command(command.line))

    def send_message(self, message: Message) -> Reply | None:
        """After a 354: the message data and its terminating <CRLF>.<CRLF> (in safe mode,
        nothing: the connection is closed instead)."""
        if not self.deliver:
            self.close()
            return None
        self.steps.append((END_OF_DATA, message.wire))
        return self._exchange(END_OF_DATA, message, lambda: self.client.command(message.wire))

    def close(self) -> None:
        self.client.close()
        self.model = closed(self.model)

    def _exchange(self, group: str, sent: Command | Message | None,
                  io: Callable[[], Reply]) -> Reply | None:
        self.pacer.wait()
        before = self.model
        reply: Reply | None = None
        error: ServerError | None = None
        try:
            reply = io()
        except ServerError as failure:
            error = failure
        closed_after = None
        if reply is not None and (reply.code == SERVICE_NOT_AVAILABLE or
                                  (group == "QUIT" and reply.code == CLOSING)):
            closed_after = self.client.wait_for_close(timeout=self.close_timeout)
        self.record.coverage[(before.state.name, group, reply.code if reply else 0)] += 1
        exchange = Exchange(self.profile, before, group, sent, reply, error, closed_after)
        findings = run_checks(exchange)
        if reply is not None:
            self.model = advance(before, group, reply.code, lines=reply.lines)
        if error is not None or closed_after is not None or self.model.state is State.CLOSED:
            self.close()
        failing = [f for f in findings if self.policy.fails(self.policy.verdict(f, exchange))]
        if failing:  # the failure leads with what fails; the rest follow as "Also:"
            self.close()
            ordered = [*failing, *(f for f in findings if f not in failing)]
            raise failure_type(failing[0].check.id)(ordered, exchange, self.transcript,
                                                    self.steps)
        # Warnings, notes and known deviations are recorded. After a deviation the model can
        # no longer be sure what state the server is in, so the session ends here (the state
        # machine reconnects) rather than report the consequences as findings of their own.
        for record in records_for(findings, exchange, self.transcript, self.policy):
            self.record.note(record)
        if findings:
            self.close()
        return reply
