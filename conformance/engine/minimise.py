"""The shortest session that still fails the same way: delta debugging over a failing one.

The run records each finding with the session that led to it; here those steps are replayed
against the same server with parts left out, and a shorter session is kept whenever it shows
the same finding: the same check, level, command and reply code (its ``FindingKey``). It
stops when no single step can be dropped (ddmin, Zeller and Hildebrandt, 2002), or when its
budget of replays or time runs out: on a slow or nondeterministic server the result is then
less minimal, never wrong, since every session it returns showed the finding on replay.

A batch (steps sent in one write) is not one unit: its commands are dropped one by one like
any others, and what is left of it keeps its batch number, so it still goes out in one write.
A batch shrinks to the commands the finding needs (two, for a server that answers any batch
short), and a batch of one is a command sent alone but without control probes, as recorded.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from conformance.checks import CHECKS
from conformance.checks.grading import FindingKey
from conformance.engine.address import ServerAddress
from conformance.engine.pacing import Pacer
from conformance.engine.record import FindingRecord
from conformance.engine.replay import Script, replay
from conformance.engine.settings import SessionSettings
from conformance.protocol.commands import UNIT_BONDS, Step, grouped
from conformance.protocol.errors import ServerError, TargetUnreachable

Unit = tuple[Step, ...]  # steps that are kept or dropped together


@dataclass(frozen=True)
class Minimised:
    script: Script
    finding: FindingRecord  # what the shortest session's replay found
    original_steps: int
    replays: int


def units_of(steps: Sequence[Step]) -> list[Unit]:
    """The steps in the units a shorter session keeps or drops whole
    (``commands.UNIT_BONDS``)."""
    return grouped(steps, UNIT_BONDS)


class _Budget:
    def __init__(self, replays: int, seconds: float, clock: Callable[[], float]) -> None:
        self.replays_left = replays
        self.deadline = clock() + seconds
        self.clock = clock
        self.used = 0

    def spend(self) -> bool:
        """True if one more replay is allowed (and counts it)."""
        if self.replays_left <= 0 or self.clock() >= self.deadline:
            return False
        self.replays_left -= 1
        self.used += 1
        return True


def minimise(script: Script, address: ServerAddress, settings: SessionSettings, *,
             key: FindingKey, max_replays: int = 50, seconds: float = 30.0,
             clock: Callable[[], float] = time.monotonic) -> Minimised | None:
    """The shortest part of ``script`` found that shows the finding ``key`` again, each
    candidate replayed with ``settings``. None if a replay of the whole script does not show
    it (the server is not deterministic) or the budget does not allow even that replay."""
    budget = _Budget(max_replays, seconds, clock)
    # A late reply (timing evidence with a reply code) shows again only if the replay waits
    # as long as the run did; anything else, a missing reply included, shows within the
    # timeout, so replays do not wait out a hang each time.
    if not (CHECKS[key.check].timing and key.code):
        settings = dataclasses.replace(settings, hang_wait=0.0)

    pacer = Pacer(settings.rate)  # the rate holds across the replays

    def run(units: Sequence[Unit]) -> FindingRecord | None:
        try:
            return replay(_script(script, units), address, settings, pacer=pacer).first(key)
        except (ServerError, TargetUnreachable):  # this candidate tells nothing
            return None

    units = units_of(script.steps)
    if not budget.spend() or (best := run(units)) is None:
        return None
    parts = 2
    while units:
        size = math.ceil(len(units) / parts)
        for start in range(0, len(units), size):
            if not budget.spend():
                return _result(script, units, best, budget)
            candidate = units[:start] + units[start + size:]
            found = run(candidate)
            if found is not None:
                units, best = candidate, found
                parts = max(parts - 1, 2)
                break
        else:
            if size == 1:  # no single unit can be dropped: 1-minimal
                break
            parts = min(parts * 2, len(units))
    return _result(script, units, best, budget)


def _script(script: Script, units: Sequence[Unit]) -> Script:
    """``script`` with only the steps in ``units``."""
    return Script(script.profile, script.check, tuple(step for unit in units for step in unit))


def _result(script: Script, units: Sequence[Unit], finding: FindingRecord,
            budget: _Budget) -> Minimised:
    return Minimised(_script(script, units), finding, len(script.steps), budget.used)
