"""Seconds from the start of a run to its first failing finding, for each fault server.

    python bench/first_failure.py [--runs N] [--timeout S] [--json PATH] [FAULT ...]

For each fault of tests/fault_server.py (FAULTS and SHOULD_FAULTS), runs the engine
``--runs`` times with fresh random seeds (strict, so SHOULD findings count; fail-fast, so
exploring stops at the first failing finding) and times, from the start of the run, the
moment a finding that fails the run was first recorded. A per-run finding (one a later
exchange may refute: ``minimum_implementation``) never stops a run early; it counts from when
it was first recorded if the whole run did not refute it. Prints the median and worst, and
the checks that found it. A hang (``command_answered``) cannot be seen before the reply
timeout times the hang factor (6): with the default 0.5 s here, 3 s; with the suite's 5 s, 30 s.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import engine_run, failing, write_json
from conformance.checks.grading import FindingKey
from conformance.engine.pacing import HANG_FACTOR
from conformance.engine.record import FindingRecord, RunRecord
from tests.fault_server import FAULTS, SHOULD_FAULTS, FaultServer

DEFAULT_FAULTS = {**FAULTS, **SHOULD_FAULTS}
BUDGET = 60.0  # seconds per run at most (exploring stops at 80% of it)


class TimedRecord(RunRecord):
    """A run record that notes when each finding key was first recorded."""

    def __init__(self) -> None:
        super().__init__()
        self.started = time.perf_counter()
        self.first_seen: dict[FindingKey, float] = {}

    def note(self, record: FindingRecord) -> None:
        self.first_seen.setdefault(record.key, time.perf_counter() - self.started)
        super().note(record)


def time_to_first_failure(server: FaultServer, seed: int, timeout: float
                          ) -> tuple[float | None, str, float, str]:
    """Seconds to the first failing finding (None: none), its check, the run's seconds, and
    the error the run ended in, if any."""
    record = TimedRecord()
    run = engine_run(server.address, seed=seed, timeout=timeout, strict=True, fail_fast=True,
                     budget=BUDGET, record=record)
    record.settle()  # as the runner does: one finding per behaviour, refuted ones dropped
    checks = set(failing(record, strict=True))
    fails = [f for f in record.findings.values() if f.check in checks]
    if not fails:
        return None, "", run.seconds, run.error
    first = min(fails, key=lambda f: record.first_seen[f.key])
    return record.first_seen[first.key], first.check, run.seconds, run.error


def spread(times: list[float | None]) -> tuple[float | None, float | None]:
    """Median and worst, a run that found nothing counting as the slowest (None: never)."""
    ordered = sorted(times, key=lambda t: math.inf if t is None else t)
    middle = len(ordered) // 2
    if len(ordered) % 2:
        median = ordered[middle]
    elif ordered[middle] is None or ordered[middle - 1] is None:
        median = None
    else:
        median = (ordered[middle] + ordered[middle - 1]) / 2  # type: ignore[operator]
    return median, ordered[-1] if ordered else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("faults", nargs="*", metavar="FAULT", help="default: every fault")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=0.5, help="reply timeout, seconds")
    parser.add_argument("--seed", type=int, help="seed of the seeds (default: random)")
    parser.add_argument("--json", type=Path, help="default: bench/results/first_failure.json")
    args = parser.parse_args()
    if unknown := set(args.faults) - set(DEFAULT_FAULTS):
        parser.error(f"unknown fault(s) {', '.join(sorted(unknown))}")
    if not 1 <= args.runs <= 100 or not 0 < args.timeout <= 30:
        parser.error("--runs in 1..100, --timeout in (0, 30]")
    seeds = random.Random(args.seed)
    results: dict[str, Any] = {}
    print(f"{'fault':32} {'median':>7} {'worst':>7}  checks (seconds; runs={args.runs}, "
          f"timeout {args.timeout:g}s)")
    for fault in args.faults or DEFAULT_FAULTS:
        times: list[float | None] = []
        checks, runs = set(), []
        with FaultServer(fault) as server:
            for _ in range(args.runs):
                seed = seeds.randrange(2**32)
                seconds, check, total, error = time_to_first_failure(server, seed,
                                                                     args.timeout)
                times.append(seconds)
                checks.add(check or "(not found)")
                runs.append({"seed": seed, "seconds": None if seconds is None else
                             round(seconds, 3), "check": check, "run_seconds": round(total, 3),
                             "error": error})
        found = [t for t in times if t is not None]
        median, worst = spread(times)
        results[fault] = {"expected": DEFAULT_FAULTS[fault], "checks": sorted(checks),
                          "errors": sum(1 for run in runs if run["error"]),
                          "median": None if median is None else round(median, 3),
                          "worst": None if worst is None else round(worst, 3),
                          "found": len(found), "runs": runs}
        shown = [f"{x:7.2f}" if x is not None else "  never" for x in (median, worst)]
        print(f"{fault:32} {shown[0]} {shown[1]}  {', '.join(sorted(checks))}", flush=True)
    path = write_json(args.json, "first_failure", {
        "runs": args.runs, "timeout": args.timeout, "hang_factor": HANG_FACTOR,
        "budget": BUDGET, "faults": results})
    print(f"written: {path}")


if __name__ == "__main__":
    main()
