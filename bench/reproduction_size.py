"""How short the reported failing session is: as recorded, and after minimising it.

    python bench/reproduction_size.py [--runs N] [--profile NAME] [FAULT ...]

For each fault of the fault server, runs the state machine (strict, so SHOULD findings
count; fail-fast, so it stops at the first failing finding; no example database)
``--runs`` times with fresh random seeds. For each failing finding it prints the median and
worst number of steps (commands and messages sent) in the session the run recorded with it
(``FindingRecord.steps``), then in the shortest part of it that ``conformance.engine.minimise``
finds still showing the same finding (its ``FindingKey``), with the replays and seconds
that took. A minimised column with fewer runs than the recorded one means some findings
were not seen again on replay.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import statistics
import sys
import time
from pathlib import Path

from hypothesis import HealthCheck, Phase, Verbosity, settings

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from conformance.checks.grading import Policy, Verdict
from conformance.engine.minimise import minimise
from conformance.engine.record import FindingRecord, RunRecord
from conformance.engine.replay import script_of
from conformance.engine.settings import SessionSettings
from conformance.protocol.errors import StopRun
from conformance.protocol.tables import PROFILES, get_profile
from conformance.search.machine import SMTPConformance, configure, explore
from tests.fault_server import FAULTS, NONDETERMINISTIC, SHOULD_FAULTS, FaultServer

DEFAULT_FAULTS = {**FAULTS, **SHOULD_FAULTS}
KNOWN_FAULTS = {**DEFAULT_FAULTS, **NONDETERMINISTIC}  # these only when named


def recorded_failure(machine: type[SMTPConformance], record: RunRecord,
                     limit: int) -> FindingRecord | None:
    """The first failing finding ``machine`` records (configured with ``record`` and
    ``fail_fast=True``), with the session that led to it; None if the run found none."""
    with contextlib.suppress(StopRun):
        explore(machine, settings(
            max_examples=limit, stateful_step_count=25, deadline=None, database=None,
            phases=[Phase.generate], suppress_health_check=list(HealthCheck),
            verbosity=Verbosity.quiet))
    record.settle()  # as the runner does: one finding per behaviour, refuted ones dropped
    failing = record.by_verdict(Verdict.FAIL)
    return failing[0] if failing else None


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):6.1f} {max(values):5.0f}" if values else "     -     -"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("faults", nargs="*", metavar="FAULT",
                        help="default: every deterministic fault")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--limit", type=int, default=500, help="examples per run at most")
    parser.add_argument("--profile", choices=list(PROFILES), default="seed")
    parser.add_argument("--timeout", type=float, default=0.5, help="reply timeout, seconds")
    args = parser.parse_args()
    if unknown := set(args.faults) - set(KNOWN_FAULTS):
        parser.error(f"unknown fault(s) {', '.join(sorted(unknown))}; "
                     f"known: {', '.join(KNOWN_FAULTS)}")
    print(f"{'':32} {'recorded':>12} {'minimised':>12} {'replays':>12} {'seconds':>12}")
    print(f"{'fault':32} {'median worst':>12} {'median worst':>12} {'median worst':>12} "
          f"{'median worst':>12}  (runs={args.runs})")
    for fault in args.faults or DEFAULT_FAULTS:
        recorded: list[float] = []
        minimal: list[float] = []
        replays: list[float] = []
        seconds: list[float] = []
        with FaultServer(fault) as server:
            for _ in range(args.runs):
                record = RunRecord()
                sessions = SessionSettings(get_profile(args.profile), timeout=args.timeout,
                                           policy=Policy(strict=True), fail_fast=True)
                machine = configure(server.address, sessions, record=record)
                finding = recorded_failure(machine, record, args.limit)
                if finding is None:
                    continue
                recorded.append(len(finding.steps))
                started = time.monotonic()
                result = minimise(script_of(finding), server.address,
                                  dataclasses.replace(sessions, fail_fast=False),
                                  key=finding.key)
                if result is not None:
                    seconds.append(time.monotonic() - started)
                    minimal.append(len(result.script.steps))
                    replays.append(result.replays)
        print(f"{fault:32} {spread(recorded)} {spread(minimal)} {spread(replays)} "
              f"{spread(seconds)}", flush=True)


if __name__ == "__main__":
    main()
