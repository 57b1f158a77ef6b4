"""How many generated sessions the suite needs to find each fault of the fault server.

    python bench/examples_to_detection.py [--runs N] [--profile NAME] [FAULT ...]

For each fault, runs the state machine (strict, so SHOULD findings count; generation only: no
shrinking, no example database)
``--runs`` times with fresh random seeds and prints the median and worst number of examples
until the first failure. A fault whose worst case nears the default budget (60 examples) is
one the default run may miss: make the strategies reach it sooner.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

from hypothesis import HealthCheck, Phase, settings
from hypothesis.stateful import run_state_machine_as_test

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from conformance.failures import ConformanceFailure
from conformance.grading import Policy
from conformance.machine import SMTPConformance, configure
from conformance.tables import PROFILES, get_profile
from tests.fault_server import FAULTS, FaultServer

NOT_FOUND = 10_000


def examples_until_failure(machine: type[SMTPConformance], limit: int) -> tuple[int, str]:
    """Examples run before the first failure (NOT_FOUND if none), and the failing check."""
    started = 0

    class Counting(machine):  # type: ignore[valid-type,misc]
        def __init__(self) -> None:
            nonlocal started
            started += 1
            super().__init__()

    try:
        run_state_machine_as_test(Counting, settings=settings(
            max_examples=limit, stateful_step_count=25, deadline=None, database=None,
            phases=[Phase.generate], suppress_health_check=list(HealthCheck)))
    except ConformanceFailure as failure:
        return started, failure.check.id
    return NOT_FOUND, ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("faults", nargs="*", metavar="FAULT", help="default: every fault")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--limit", type=int, default=500, help="examples per run at most")
    parser.add_argument("--profile", choices=list(PROFILES), default="seed")
    parser.add_argument("--timeout", type=float, default=0.5, help="reply timeout, seconds")
    args = parser.parse_args()
    if unknown := set(args.faults) - set(FAULTS):
        parser.error(f"unknown fault(s) {', '.join(sorted(unknown))}; known: {', '.join(FAULTS)}")
    print(f"{'fault':32} {'median':>6} {'worst':>6}  checks (runs={args.runs})")
    for fault in args.faults or FAULTS:
        counts, checks = [], set()
        with FaultServer(fault) as server:
            for _ in range(args.runs):
                machine = configure(server.address, get_profile(args.profile),
                                    timeout=args.timeout,
                                    policy=Policy(strict=True))
                count, check = examples_until_failure(machine, args.limit)
                counts.append(count)
                checks.add(check or "(not found)")
        worst = "never" if max(counts) == NOT_FOUND else str(max(counts))
        found_by = ", ".join(sorted(checks))
        print(f"{fault:32} {statistics.median(counts):6.0f} {worst:>6}  {found_by}", flush=True)


if __name__ == "__main__":
    main()
