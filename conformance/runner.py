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
import math
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from hypothesis import HealthCheck, Phase, settings
from hypothesis.errors import FlakyStrategyDefinition

from conformance import example_db, replay, systematic
from conformance.baseline import Baseline
from conformance.client import ServerAddress, SMTPClient, tls_context
from conformance.credentials import EMBEDDED_CREDENTIALS, Credentials
from conformance.errors import (
    EXIT_UNREACHABLE,
    SERVER_LOST,
    ConformanceError,
    StopRun,
    TargetLost,
    TargetUnreachable,
)
from conformance.failures import RunFailed
from conformance.grading import Policy
from conformance.levels import Verdict
from conformance.machine import SMTPConformance, configure, explore
from conformance.minimise import minimise
from conformance.record import (
    EXAMPLE_DB,
    EXPLORATION,
    SYSTEMATIC,
    FindingRecord,
    RunError,
    RunRecord,
)
from conformance.session import Activity, Pacer
from conformance.tables import Profile
from conformance.vocabulary import GREETING

# Named example budgets: (examples, steps per example).
BUDGETS = {"fast": (60, 25), "thorough": (1000, 50)}
SECONDS_PER_EXAMPLE = 2  # the default time budget: this much per example, at least a minute
EXPLORE_SHARE = 0.8  # of the budget; the rest is for minimising the failing findings
MINIMISE_SECONDS = 30.0  # at most, per finding
MINIMISE_REPLAYS = 50
EMBEDDED = "embedded reference server"  # the target's name when no server was given


def default_budget(examples: int) -> float:
    return float(max(60, examples * SECONDS_PER_EXAMPLE))


@dataclass(frozen=True)
class RunSettings:
    server: ServerAddress | None  # None: the embedded reference server
    profile: Profile
    timeout: float
    examples: int
    steps: int
    budget_name: str  # how the example budget was given: fast, thorough or a number
    seconds: float = 0.0  # the whole run's time budget; 0: sized to the examples
    strict: bool = False
    deliver: bool = False  # asked for; see ``delivers``
    fail_fast: bool = False
    rcpt_domain: str | None = None  # None: the strategies' reserved test domains
    rate: float | None = None  # commands per second; None: no limit
    report: Path | None = None
    seed: str = ""  # Hypothesis's seed for this run, as --hypothesis-seed takes it
    baseline: Baseline | None = None
    baseline_write: Path | None = None
    failures_dir: Path | None = None
    today: date = field(default_factory=date.today)
    servers: tuple[ServerAddress, ...] = ()  # every server given (``server`` is the first)
    shards: int = 1  # tests each server's run is split into, each with its share of examples
    shard: int = 0  # which of them this run is
    example_db: str | None = None  # a directory or a redis:// URL; None: no example database
    survey: bool = False  # nothing fails (as with ``baseline_write``)
    tls_verify: bool = False  # verify the certificate after STARTTLS (else accept any)
    tls_cafile: Path | None = None  # None: the system's CAs
    tls_server_name: str | None = None  # None: the server's host
    credentials: Credentials | None = None  # for AUTH; None: none (AUTH is refused)
    relay_check: bool = False  # send recipients the server must not relay to
    progress: bool = True  # a status line while the run runs (conformance.progress)

    def tls(self, address: ServerAddress) -> tuple[ssl.SSLContext, str | None]:
        """The TLS context of STARTTLS upgrades against ``address``, and the name to ask for
        (SNI; verified when ``tls_verify``)."""
        name = self.tls_server_name or address.host
        return tls_context(cafile=self.tls_cafile, verify=self.tls_verify), name

    @property
    def targets(self) -> tuple[ServerAddress | None, ...]:
        """One run per target: each server given, or the embedded reference server (None)."""
        return self.servers or (None,)

    def for_run(self, server: ServerAddress | None, shard: int = 0) -> RunSettings:
        """The settings of one run: against ``server`` (None: embedded), and, when the run is
        split into shards, of shard ``shard``: its share of the examples and a seed of its own,
        so shards do not repeat each other's sessions. Its time budget follows from its
        examples as any run's does (at least a minute), or is the --smtp-budget given.
        Against the embedded server, AUTH uses its test credentials unless others were
        given."""
        one = dataclasses.replace(self, server=server, servers=() if server is None
                                  else (server,), shard=shard)
        if server is None and self.credentials is None:
            one = dataclasses.replace(one, credentials=EMBEDDED_CREDENTIALS)
        if self.shards == 1:
            return one
        seed = str((int(self.seed) + shard) % 2**32) if self.seed.isdigit() else self.seed
        return dataclasses.replace(one, examples=math.ceil(self.examples / self.shards),
                                   seed=seed)

    @property
    def time_budget(self) -> float:
        return self.seconds or default_budget(self.examples)

    @property
    def delivers(self) -> bool:
        """Messages are completed only when asked, or to the embedded server (which keeps
        nothing)."""
        return self.deliver or self.server is None

    @property
    def policy(self) -> Policy:
        known = self.baseline.known(self.today) if self.baseline else frozenset()
        return Policy(strict=self.strict, known=known,
                      survey=self.survey or self.baseline_write is not None)

    def hypothesis_settings(self) -> settings:
        return settings(
            max_examples=self.examples,
            stateful_step_count=self.steps,
            deadline=None,  # network round trips; the per-reply timeout is the bound
            # Nothing is raised to Hypothesis (findings are recorded), so there is nothing to
            # shrink or save: the seed alone decides the run, with or without CI's profile.
            phases=[Phase.explicit, Phase.generate],
            database=None,
            derandomize=False,
            suppress_health_check=list(HealthCheck),
        )


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

    def __post_init__(self) -> None:
        self.started = self.clock()

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
        tls, tls_server_name = s.tls(self.address)
        return configure(
            self.address, s.profile, timeout=s.timeout, policy=s.policy, record=self.record,
            deliver=s.delivers, rcpt_domain=s.rcpt_domain, rate=s.rate, fail_fast=s.fail_fast,
            deadline=self.started + s.time_budget * EXPLORE_SHARE,
            seed=int(s.seed) if s.seed.isdigit() else None, tls=tls,
            tls_server_name=tls_server_name, credentials=s.credentials,
            relay_check=s.relay_check, activity=self.activity)

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
        for script in scripts:
            if self.clock() > self.started + s.time_budget * EXPLORE_SHARE:
                break
            replayed = replay.replay(script, self.address, timeout=s.timeout,
                                     profile=s.profile, pacer=Pacer(s.rate),
                                     deliver=s.delivers, policy=s.policy,
                                     tls=s.tls(self.address)[0], credentials=s.credentials)
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
        failing = [f for f in record.sorted_findings() if policy.fails(Verdict(f.verdict))]
        for finding in failing:
            record.findings[finding.key] = self._settle(finding)
        return [f for f in record.sorted_findings() if policy.fails(Verdict(f.verdict))]

    def _settle(self, finding: FindingRecord) -> FindingRecord:
        left = self.deadline - self.clock()
        if left < 1 or (not finding.steps and finding.group != GREETING):
            return self._saved(finding)  # no time, or nothing to replay
        script = replay.script_of(finding)
        minimal = minimise(script, self.address, timeout=self.settings.timeout,
                           key=finding.key, pacer=Pacer(self.settings.rate),
                           deliver=self.settings.delivers, max_replays=MINIMISE_REPLAYS,
                           seconds=min(MINIMISE_SECONDS, left),
                           tls=self.settings.tls(self.address)[0],
                           credentials=self.settings.credentials)
        if minimal is None and finding.timing:
            return self._saved(dataclasses.replace(
                finding, verdict=str(Verdict.INCONCLUSIVE),
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


def replay_hint(finding: FindingRecord, address: ServerAddress) -> str:
    """How to see a finding again: the replay command and a shell one-liner."""
    if finding.replay is None:
        return ""
    path = Path(finding.replay)
    shown = path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path
    return "\n".join([
        "Replay (same bytes, same checks):",
        f"  python -m conformance replay {shown} --server={address}",
        "By hand (sends everything at once):",
        f"  {replay.printf_reproducer(finding.session, address)}",
    ])


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


def target_name(server: ServerAddress | None) -> str:
    return EMBEDDED if server is None else str(server)


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


def exit_status(record: RunRecord, policy: Policy) -> int:
    """The exit status of one run by its record: EXIT_UNREACHABLE if the server could not be
    reached, 1 if a finding fails it or it did not finish, else 0."""
    if any(error.unreachable for error in record.errors):
        return EXIT_UNREACHABLE
    failing = any(policy.fails(Verdict(f.verdict)) for f in record.findings.values())
    return 1 if failing or record.errors else 0


def unreachable(address: ServerAddress, timeout: float) -> str | None:
    """Why no connection to ``address`` can be made; None if one can."""
    probe = SMTPClient(address, timeout=timeout)
    try:
        probe.connect()
    except TargetUnreachable as error:
        return str(error)
    except ConformanceError:
        pass  # it answered, badly: that is for the checks to report
    finally:
        probe.close()
    return None
