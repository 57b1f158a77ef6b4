"""How fast and how long: the pacer (commands per second), what a run's sessions are doing (for
a status line), and what a run learns of the server's timing, so that each slow behaviour
costs its wait once (``Adaptation``)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from conformance.checks import Exchange
from conformance.engine.record import RunRecord
from conformance.protocol.errors import ReplyTimeout
from conformance.protocol.vocabulary import END_OF_DATA, GREETING

# How much longer than the timeout a command may go unanswered before it counts as never
# answered (a MUST finding) rather than late (a SHOULD finding). RFC 5321 §4.5.3.2 gives a
# client minutes; a run cannot wait that long for every command.
HANG_FACTOR = 6


# Refusals (5yz) a run's session takes before the run starts a new one: a server may slow
# down or give up on a client that errs (RFC 5321 §7.8; Postfix sleeps a second per reply
# after ten errors), and a slowdown the suite's own errors set off is no finding.
ERRORS_PER_SESSION = 5


# EHLO, MAIL, two RCPTs, DATA and its message: a session the run caps for replies that are
# slow but in time still has room for a whole transaction.
COMMANDS_FOR_A_TRANSACTION = 6


# Command groups left unanswered, with none ever answered, after which a run stops.
SILENT_AFTER = 2


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


@dataclass
class Activity:
    """What a run's sessions are doing, for a status line that reads it while they do it
    (``conformance.output.progress``): sessions opened, exchanges made, and the reply awaited now
    (``waiting``: its command group; None when none is)."""

    sessions: int = 0
    exchanges: int = 0
    waiting: str | None = None
    wait_limit: float = 0.0  # seconds the reply may take before it counts as none
    wait_started: float = 0.0  # time.monotonic() when the wait began


@dataclass
class Adaptation:
    """What one run has learnt about the server's timing, shared by all its sessions, so that
    each slow behaviour costs its wait once: a tarpit (replies slow down after some commands)
    caps the commands per session; a command never answered is not sent again; a server that
    keeps the connection open after 221/421 is not waited for again."""

    max_commands: int | None = None  # per session; None: no cap
    slowest_data_reply: float = 0.0  # seconds, the slowest reply to the end of data so far
    injections_dropped: int = 0  # STARTTLS injection probes the server passed (see starttls)
    unanswered: frozenset[str] = frozenset()  # command groups never sent again
    skip_close_wait: bool = False
    # A state fault blamed on a reset was checked against the same command in a session with
    # no transaction ever opened (``CheckedSession._control_reset``): once per run.
    reset_controlled: bool = False
    answered: bool = False  # some command (not the greeting) has had a reply
    # Groups that went unanswered once although answered before in the run: a tarpit's
    # sessions were capped instead; a second time, the group is not sent again.
    hung_once: frozenset[str] = frozenset()

    @property
    def answers_nothing(self) -> bool:
        """No command has had a reply, and commands of several groups went unanswered: the
        server answers nothing (waiting for each group in turn would only cost time)."""
        return not self.answered and len(self.unanswered) >= SILENT_AFTER

    def cap(self, commands_before: int, record: RunRecord, why: str, *,
            floor: int = 1) -> None:
        cap = max(commands_before, floor)
        if self.max_commands is None or cap < self.max_commands:
            self.max_commands = cap
            record.remark(f"{why}: sessions were kept to {cap} command(s) from then on")

    def learn(self, x: Exchange, elapsed: float, *, commands_before: int, record: RunRecord,
              timeout: float) -> None:
        """What ``x`` (which took ``elapsed`` seconds, after ``commands_before`` commands of its
        session) shows of the server's timing."""
        self.answered |= x.reply is not None and x.group != GREETING
        if x.group == END_OF_DATA and x.reply is not None and x.late is None:
            self.slowest_data_reply = max(self.slowest_data_reply,
                                                     elapsed)
        if isinstance(x.error, ReplyTimeout) and x.group != GREETING and \
                x.group not in self.hung_once and commands_before > 0 and \
                x.group in record.answered():
            # Answered in time before: the server stopped answering partway through the
            # session (a tarpit), not this command (RFC 5321 §4.5.3.2).
            self.hung_once |= {x.group}
            self.cap(commands_before, record,
                                f"{x.group}, answered before, went unanswered after "
                                f"{commands_before} command(s) in a session (a tarpit?)")
        elif isinstance(x.error, ReplyTimeout) and x.group != GREETING:
            self.unanswered |= {x.group}
            record.remark(f"{x.group} went unanswered: it was not sent again in this run")
        elif x.closed_after is False or (x.closed_after and x.late is not None):
            self.skip_close_wait = True
            record.remark("the server kept the connection open after 221/421: the run "
                               "did not wait for the close again")
        elif x.late is not None and x.group != GREETING:
            self.cap(commands_before, record,
                                f"a reply came late ({x.late:.1f}s) after {commands_before} "
                                f"command(s) in a session (a tarpit?)")
        elif elapsed > timeout / 5 and commands_before >= 3 and x.group != GREETING:
            # Slow but in time (a server that sleeps after errors, as Postfix does): never
            # so short a session that no transaction fits in it.
            self.cap(commands_before, record,
                                f"replies slowed down ({elapsed:.1f}s) after {commands_before} "
                                f"commands in a session (a tarpit?)",
                                floor=COMMANDS_FOR_A_TRANSACTION)
