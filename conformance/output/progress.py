"""A run's progress while it runs: one status line, from a thread of its own.

On a terminal the line (under the test's own) is rewritten in place twice a second, and left
with the run's final counts; elsewhere (a CI log) a line is written at most every ten
seconds, so a long run shows it is alive without flooding the log.
It says what the sessions did so far (``Activity``), the findings, the time spent of the
budget, and, when a reply is slow to come, what the run waits for and how long it may wait.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from types import TracebackType

from conformance.engine.pacing import Activity
from conformance.engine.record import RunRecord

TERMINAL_INTERVAL, LOG_INTERVAL = 0.5, 10.0  # seconds between lines
SLOW_REPLY = 2.0  # seconds a reply takes before the line says it is waited for


def status_text(activity: Activity, record: RunRecord, elapsed: float, budget: float,
                now: float) -> str:
    """"smtp-conformance: 12 sessions, 340 exchanges, 1 finding, 14s of 120s", and what a
    slow reply is waited for."""
    text = (f"smtp-conformance: {_count(activity.sessions, 'session')}, "
            f"{_count(activity.exchanges, 'exchange')}, "
            f"{_count(len(record.findings), 'finding')}, {elapsed:.0f}s of {budget:.0f}s")
    waiting, waited = activity.waiting, now - activity.wait_started
    if waiting is not None and waited >= SLOW_REPLY:
        text += (f"; waiting up to {activity.wait_limit:g}s for a reply to {waiting} "
                 f"({waited:.0f}s so far)")
    return text


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'' if n == 1 else 's'}"


class StatusLine:
    """``with StatusLine(activity, record, budget, write, terminal=True):`` the run. ``write``
    puts text on the output as it is (the line's own CR or LF included)."""

    def __init__(self, activity: Activity, record: RunRecord, budget: float,
                 write: Callable[[str], None], *, terminal: bool,
                 interval: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.activity, self.record, self.budget = activity, record, budget
        self.write, self.terminal, self.clock = write, terminal, clock
        self.interval = interval if interval is not None else \
            TERMINAL_INTERVAL if terminal else LOG_INTERVAL
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._paint, daemon=True,
                                        name="smtp-conformance status line")
        self._shown = 0  # characters of the line on the terminal now
        self._started = 0.0

    def __enter__(self) -> StatusLine:
        self._started = self.clock()
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stopping.set()
        self._thread.join(timeout=5)
        if self.terminal and self._shown:  # the final counts stay; pytest goes on below
            self._put("\r" + self._text().ljust(self._shown) + "\n")

    def _text(self) -> str:
        now = self.clock()
        return status_text(self.activity, self.record, now - self._started, self.budget, now)

    def _paint(self) -> None:
        first = True  # the line goes below what pytest wrote last (the test's name)
        while not self._stopping.wait(self.interval):
            text = self._text()
            if self.terminal:
                self._put(("\n" if first else "\r") + text.ljust(self._shown))
                self._shown = len(text)
            else:
                self._put(("\n" if first else "") + text + "\n")
            first = False

    def _put(self, text: str) -> None:
        try:
            self.write(text)
        except (OSError, ValueError):  # the output went away (a closed pipe): stop showing
            self._stopping.set()
