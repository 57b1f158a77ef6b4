"""How many generated sessions the suite needs to find each fault of the fault server.

    python bench/examples_to_detection.py [--runs N] [--profile NAME] [FAULT ...]

For each fault, runs the state machine (strict, so SHOULD findings count; fail-fast, so it
stops at the first failing finding; no example database) ``--runs`` times with fresh random
seeds and prints the median and worst number of examples until the first failing finding,
and the checks that found it. A fault whose worst case nears the default budget (60
examples) is one the default run may miss: make the strategies reach it sooner.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
from pathlib import Path

from hypothesis import HealthCheck, Phase, Verbosity, settings

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from conformance.checks.grading import FindingKey, Policy, Verdict
from conformance.engine.record import RunRecord
from conformance.engine.settings import SessionSettings
from conformance.protocol.errors import StopRun
from conformance.protocol.tables import PROFILES, get_profile
from conformance.search.machine import SMTPConformance, configure, explore
from tests.fault_server import FAULTS, NONDETERMINISTIC, SHOULD_FAULTS, FaultServer

NOT_FOUND = 10_000
DEFAULT_FAULTS = {**FAULTS, **SHOULD_FAULTS}
KNOWN_FAULTS = {**DEFAULT_FAULTS, **NONDETERMINISTIC}  # these only when named


def examples_until_failure(machine: type[SMTPConformance], record: RunRecord,
                           limit: int) -> tuple[int, str]:
    """Examples run until the first failing finding (NOT_FOUND if none), and its check.
    ``machine`` must be configured with ``fail_fast=True`` and ``record``: a finding is
    recorded, and StopRun passes through Hypothesis at once. A per-run finding (one a later
    exchange may refute, such as minimum_implementation) never stops a run: it counts from
    the example that first recorded it, if the whole run did not refute it."""
    started = 0
    first_seen: dict[FindingKey, int] = {}

    def note_new_findings() -> None:
        for key in record.findings.keys() - first_seen.keys():
            first_seen[key] = started

    class Counting(machine):  # type: ignore[valid-type,misc]
        def __init__(self) -> None:
            nonlocal started
            note_new_findings()  # those of the example before this one
            started += 1
            super().__init__()

    with contextlib.suppress(StopRun):
        explore(Counting, settings(
            max_examples=limit, stateful_step_count=25, deadline=None, database=None,
            phases=[Phase.generate], suppress_health_check=list(HealthCheck),
            verbosity=Verbosity.quiet))
    note_new_findings()
    record.settle()  # as the runner does: one finding per behaviour, refuted ones dropped
    failing = record.by_verdict(Verdict.FAIL)
    if not failing:
        return NOT_FOUND, ""
    first = min(failing, key=lambda f: first_seen[f.key])
    return first_seen[first.key], first.check


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
    print(f"{'fault':32} {'median':>6} {'worst':>6}  checks (runs={args.runs})")
    for fault in args.faults or DEFAULT_FAULTS:
        counts, checks = [], set()
        with FaultServer(fault) as server:
            for _ in range(args.runs):
                record = RunRecord()
                sessions = SessionSettings(get_profile(args.profile), timeout=args.timeout,
                                           policy=Policy(strict=True), fail_fast=True)
                machine = configure(server.address, sessions, record=record)
                count, check = examples_until_failure(machine, record, args.limit)
                counts.append(count)
                checks.add(check or "(not found)")
        worst = "never" if max(counts) == NOT_FOUND else str(max(counts))
        found_by = ", ".join(sorted(checks))
        print(f"{fault:32} {statistics.median(counts):6.0f} {worst:>6}  {found_by}", flush=True)


if __name__ == "__main__":
    main()
