"""The run engine: explore a server with the state machine within a time budget, then give
each failing finding its shortest session, and say what the run found. No pytest here.

Blame is decided here too: the server's deviations are findings; a server that went away or
a spent budget ends exploring with what was found so far; anything else is a bug of ours.
A run replays the sessions its example database kept (``--smtp-example-db``) before
exploring, and keeps the shortest session of each failing finding there.
"""

from __future__ import annotations

import dataclasses
import gc
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from hypothesis.errors import FlakyStrategyDefinition

from conformance.checks.grading import Verdict
from conformance.engine import example_db, replay
from conformance.engine.address import ServerAddress
from conformance.engine.failures import RunFailed
from conformance.engine.minimise import minimise
from conformance.engine.outcome import replay_hint, unreachable
from conformance.engine.pacing import Activity, Pacer
from conformance.engine.record import (
    EXAMPLE_DB,
    EXPLORATION,
    SYSTEMATIC,
    FindingRecord,
    RunError,
    RunRecord,
)
from conformance.engine.settings import RunSettings, SessionSettings, target_name
from conformance.protocol.errors import (
    SERVER_LOST,
    StopRun,
    TargetLost,
    TargetUnreachable,
)
from conformance.protocol.vocabulary import GREETING
from conformance.search import systematic
from conformance.search.machine import SMTPConformance, configure, explore

EXPLORE_SHARE = 0.8  # of the budget; the rest is for minimising the failing findings
MINIMISE_SECONDS = 30.0  # at most, per finding
MINIMISE_REPLAYS = 50


@dataclass
class Run:
    """One run against one server: ``explore`` then ``finish``; findings go to ``record``."""

    settings: RunSettings
    address: ServerAddress
    record: RunRecord
    failures_dir: Path
    clock: Callable[[], float] = time.monotonic
    activity: Activity = field(default_factory=Activity)  # what its sessions are doing
    started: float = field(init=False)
    sessions: SessionSettings = field(init=False)  # what each of its sessions is set to
    # Its replays' (the example database's, minimising's): as its sessions, except that
    # fail-fast stops the run, never a replay, which must get past any earlier finding to
    # the one it replays.
    replays: SessionSettings = field(init=False)

    def __post_init__(self) -> None:
        self.started = self.clock()
        self.sessions = self.settings.session(self.address)
        self.replays = dataclasses.replace(self.sessions, fail_fast=False)

    @property
    def deadline(self) -> float:
        return self.started + self.settings.time_budget

    def explore(self) -> None:
        """The example database's sessions, then the systematic phase (by the first shard
        only: it is the same for all), then Hypothesis's sessions, until the examples or the
        exploring share of the budget are spent. The server going away ends it (an error in
        the record, ``unreachable``)."""
        s = self.settings
        if s.shards > 1:
            self.record.remark(f"shard {s.shard + 1} of {s.shards}: hypothesis-seed {s.seed}, "
                               f"{s.examples} examples")
        machine = self.start()
        if self.record.errors:
            return
        # What exists before the run (imports, pytest's objects) lives through it: kept out of
        # the cyclic collector's scans while it runs, which were a tenth of a run's time.
        gc.freeze()
        try:
            if not s.shard:
                try:
                    self.record.remark(systematic.sweep(machine).summary())
                finally:  # fail-fast stops it at its first failing finding
                    self.record.stamp(SYSTEMATIC)
            explore(machine, s.hypothesis_settings())
        except StopRun as stop:
            sessions = self.record.coverage_of(GREETING)
            self.record.remark(f"{stop} after {sessions} session(s); the findings so far are "
                               f"reported")
        except TargetLost as lost:
            self._lost(lost)
        finally:
            gc.unfreeze()
            self.record.stamp(EXPLORATION)

    def start(self) -> type[SMTPConformance]:
        """The run's beginning, wherever it is started (``explore``, the smtp_state_machine
        fixture): the example database's sessions replayed (a server gone on the way is an
        error in the record), then the state machine configured from the settings, relay
        check, deadline and all."""
        try:
            self.replay_saved()
        except (TargetLost, TargetUnreachable) as lost:
            self._lost(lost)
        self.record.stamp(EXAMPLE_DB)
        s = self.settings
        return configure(self.address, self.sessions, record=self.record,
                         activity=self.activity,
                         seed=int(s.seed) if s.seed.isdigit() else None,
                         deadline=self.started + s.time_budget * EXPLORE_SHARE)

    def _lost(self, lost: BaseException) -> None:
        self.record.errors.append(RunError(
            f"{SERVER_LOST}: {lost}",
            unreachable=True))

    def replay_saved(self) -> None:
        """Replay the sessions the example database kept for this profile (by the first
        shard only), each graded as the run grades: what they show again is a finding of
        this run; one whose own check no longer fails on it is dropped from the database."""
        s = self.settings
        if s.example_db is None or s.shard:
            return
        db = example_db.open_db(s.example_db)
        scripts = example_db.saved(db, s.profile.name)
        shown = 0
        pacer = Pacer(s.rate)  # the rate holds across the replays
        for script in scripts:
            if self.clock() > self.started + s.time_budget * EXPLORE_SHARE:
                break
            replayed = replay.replay(script, self.address, self.replays, pacer=pacer)
            if not any(f.key.check == script.check for f in replayed.findings):
                example_db.forget(db, script)  # its own deviation shows no more
            shown += bool(replayed.findings)
            for finding in replayed.findings:
                self.record.note(finding)
        if scripts:
            self.record.remark(f"example database {s.example_db}: {len(scripts)} saved "
                               f"session(s) replayed first, {shown} showed a finding again")

    def finish(self) -> list[FindingRecord]:
        """Settle the findings: drop per-run findings the run refuted, give each failing
        finding its shortest session (saved for replay), and grade the ones no replay shows
        again. Returns the findings that fail the run, worst first."""
        record, policy = self.record, self.settings.policy
        record.settle()
        failing = [f for f in record.sorted_findings() if policy.fails(f.verdict)]
        for finding in failing:
            record.findings[finding.key] = self._settle(finding)
        return [f for f in record.sorted_findings() if policy.fails(f.verdict)]

    def _settle(self, finding: FindingRecord) -> FindingRecord:
        left = self.deadline - self.clock()
        if left < 1 or (not finding.steps and finding.group != GREETING):
            return self._saved(finding)  # no time, or nothing to replay
        script = replay.script_of(finding)
        minimal = minimise(script, self.address, self.replays, key=finding.key,
                           max_replays=MINIMISE_REPLAYS, seconds=min(MINIMISE_SECONDS, left))
        if minimal is None and finding.timing:
            return self._saved(dataclasses.replace(
                finding, verdict=Verdict.INCONCLUSIVE,
                complaint=finding.complaint + " (timing: a replay of the same session was "
                                              "answered in time)"))
        if minimal is None:
            return self._saved(dataclasses.replace(finding, intermittent=True))
        shorter = len(minimal.script.steps) < len(script.steps)
        transcript = minimal.finding.transcript
        if None not in (minimal.finding.error, finding.error) and \
                minimal.finding.error != finding.error:  # a hang: replays wait less than a run
            transcript = [*transcript, f"   (the shortened session, replayed: "
                                       f"{minimal.finding.error}; in the run: {finding.error})"]
        return self._saved(dataclasses.replace(
            finding, transcript=transcript, steps=minimal.finding.steps,
            minimised_from=len(script.steps) if shorter else None))

    def _saved(self, finding: FindingRecord) -> FindingRecord:
        target = target_name(self.settings.server)
        path = replay.failure_path(self.failures_dir, target, finding.key)
        script = replay.script_of(finding, server=target, seed=self.settings.seed)
        replay.save(script, path)
        if self.settings.example_db is not None:
            example_db.keep(example_db.open_db(self.settings.example_db), script)
        return dataclasses.replace(finding, replay=str(path))




def run(settings: RunSettings, address: ServerAddress, record: RunRecord,
        failures_dir: Path, activity: Activity | None = None) -> None:
    """A whole run; raises ``RunFailed`` if findings fail it (they are in ``record`` too).
    ``activity``: where its sessions say what they are doing (for a status line)."""
    engine = Run(settings, address, record, failures_dir,
                 activity=activity if activity is not None else Activity())
    engine.explore()
    failing = engine.finish()
    if failing or record.errors:
        raise RunFailed(failing, [replay_hint(f, address) for f in failing],
                        [error.message for error in record.errors])




def stopped(error: BaseException, record: RunRecord, address: ServerAddress, timeout: float
            ) -> str | None:
    """Blame for what stopped a run that was not a finding, put in its record: the server
    went away, or answered the same session differently from one replay to the next (the
    one line to show, no traceback); else a bug of ours (None: its traceback stays)."""
    if isinstance(error, TargetLost | TargetUnreachable | FlakyStrategyDefinition):
        if gone := unreachable(address, timeout):
            record.errors.append(RunError(
                f"{SERVER_LOST}: {gone}",
                unreachable=True))
        else:
            record.errors.append(RunError(
                "the server answered the same commands differently from one session to the "
                f"next, so the sessions could not be replayed ({type(error).__name__})"))
        return f"smtp-conformance: {record.errors[-1].message}"
    first_line = (str(error).splitlines() or [""])[0]
    record.errors.append(RunError(f"the suite stopped: {type(error).__name__}: {first_line}"))
    return None
