"""Pipelined batches (RFC 2920): which batches a session can send, and sending one, a reply
read per command, each checked as an exchange of its own."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from conformance.engine.client import MAX_PIPELINE, SMTPClient
from conformance.protocol.commands import Command, Step
from conformance.protocol.errors import ServerError, UsageError
from conformance.protocol.replies import Reply
from conformance.protocol.vocabulary import UPGRADING_VERBS, VERBS

if TYPE_CHECKING:
    from conformance.engine.session import CheckedSession


def check_batch(commands: Sequence[Command]) -> None:
    """Raise UsageError for a batch the session cannot send: too long, STARTTLS in it, or a
    verb that may only end a batch before its end."""
    if len(commands) > MAX_PIPELINE:
        raise UsageError(f"at most {MAX_PIPELINE} commands in one batch")
    for index, command in enumerate(commands):
        if command.group in UPGRADING_VERBS:
            raise UsageError(f"{command.group} is never sent in a batch: use starttls()")
        verb = VERBS.get(command.group)
        if verb is not None and verb.ends_batch and index != len(commands) - 1:
            raise UsageError(f"{command.group} can only end a batch (RFC 2920 §3.1)")


class BatchIO:
    """The I/O of each exchange of a batch: the first writes every command at once and reads
    its reply; each next one reads its own. Once a reply is missing, every later command of
    the batch gets the same error, without waiting again."""

    def __init__(self, client: SMTPClient, data: bytes, timeout: float) -> None:
        self.client, self.data, self.timeout = client, data, timeout
        self.written = False
        self.error: ServerError | None = None

    def __call__(self) -> Reply:
        if self.error is not None:
            raise self.error
        try:
            if not self.written:
                self.written = True
                self.client.send(self.data)
            return self.client.read_reply(timeout=self.timeout)
        except ServerError as error:
            self.error = error
            raise


def send_batch(session: CheckedSession, commands: Sequence[Command]) -> list[Reply | None]:
    """Send ``commands`` in one write (RFC 2920), then read one reply per command, in
    order (§3.2), each checked as an exchange of its own; no control probes (a replay
    sends the batch as it was). A reply that does not come (timeout, close) leaves each
    later command of the batch an exchange with the same error. A deviation ends the
    session: the commands after it get None, like a command not sent (see Adaptation).
    DATA may only end a batch, and STARTTLS is never in one (``check_batch``).

    Where the session's last EHLO did not advertise PIPELINING (a replay's session that
    left it out), the commands go one by one, each after the reply before it: a client
    must not pipeline otherwise (RFC 2920 §3.1), and a server may refuse such input and
    close (RFC 5321 §4.3.1)."""
    check_batch(commands)
    if not commands:
        return []
    session.ensure_open(len(commands))
    if not session.model.open:
        return [None] * len(commands)
    sending = [i for i, c in enumerate(commands)
               if c.group not in session.adaptation.unanswered]
    batch = 1 + max((step.batch for step in session.steps), default=0)
    replies: list[Reply | None] = [None] * len(commands)
    if "PIPELINING" not in session.model.extensions:
        for i in sending:
            if not session.model.open:
                break
            session.steps.append(Step.of(commands[i], batch=batch))
            replies[i] = session.checked_exchange(commands[i].group, commands[i],
                                                  session.sends(commands[i].line))
        return replies
    session.record.exercised["pipelined batches"] += 1
    session.steps += [Step.of(commands[i], batch=batch) for i in sending]
    io = BatchIO(session.client, b"".join(commands[i].line for i in sending),
                  session.settings.reply_limit)
    for place, i in enumerate(sending):
        if io.error is None:
            if not session.client.connected:
                break  # a deviation, or a close after 221/421, ended the session
            unanswered = session.model
        else:  # without a reply the model did not advance: the later commands were
            session.model = unanswered  # sent in the state the unanswered one was
        answered = sum(reply is not None for reply in replies)
        replies[i] = session.checked_exchange(commands[i].group, commands[i], io,
                                              adapt=io.error is None, batch=(place, answered))
    return replies
