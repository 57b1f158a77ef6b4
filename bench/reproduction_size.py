"""How short the reported failing session is: after Hypothesis's shrinking, and after ours.

    python bench/reproduction_size.py [--runs N] [FAULT ...]

For each fault of the fault server, runs the state machine as the suite does (shrinking on,
no example database) ``--runs`` times with fresh random seeds. For each failure it prints the
median and worst number of steps (commands and messages sent) in the session Hypothesis
shrank to, then in the shortest part of it that ``conformance.minimise`` finds still failing
the same way, with the replays and seconds that took.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from hypothesis import HealthCheck, Phase, settings
from hypothesis.stateful import run_state_machine_as_test

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from conformance.failures import ConformanceFailure, conformance_failures
from conformance.grading import Policy
from conformance.machine import SMTPConformance, configure
from conformance.minimise import minimise
from conformance.replay import script_of
from conformance.tables import get_profile
from tests.fault_server import FAULTS, FaultServer


def shrunk_failure(machine: type[SMTPConformance]) -> ConformanceFailure | None:
    """The first check failure Hypothesis reports for ``machine``, after shrinking."""
    try:
        run_state_machine_as_test(machine, settings=settings(
            max_examples=500, stateful_step_count=25, deadline=None, database=None,
            phases=[phase for phase in Phase if phase is not Phase.explain],
            suppress_health_check=list(HealthCheck)))
    except Exception as error:  # anything but a check failure counts as not found
        found = conformance_failures(error)
        return found[0] if found else None
    return None


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):6.1f} {max(values):5.0f}" if values else "     -     -"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("faults", nargs="*", metavar="FAULT", help="default: every fault")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--timeout", type=float, default=0.5, help="reply timeout, seconds")
    args = parser.parse_args()
    if unknown := set(args.faults) - set(FAULTS):
        parser.error(f"unknown fault(s) {', '.join(sorted(unknown))}; known: {', '.join(FAULTS)}")
    print(f"{'':32} {'hypothesis':>12} {'minimised':>12} {'replays':>12} {'seconds':>12}")
    print(f"{'fault':32} {'median worst':>12} {'median worst':>12} {'median worst':>12} "
          f"{'median worst':>12}  (runs={args.runs})")
    for fault in args.faults or FAULTS:
        shrunk: list[float] = []
        minimal: list[float] = []
        replays: list[float] = []
        seconds: list[float] = []
        with FaultServer(fault) as server:
            for _ in range(args.runs):
                machine = configure(server.address, get_profile("seed"), timeout=args.timeout,
                                    policy=Policy(strict=True))
                failure = shrunk_failure(machine)
                if failure is None:
                    continue
                started = time.monotonic()
                result = minimise(script_of(failure), server.address, timeout=args.timeout)
                shrunk.append(len(failure.steps))
                if result is not None:
                    seconds.append(time.monotonic() - started)
                    minimal.append(len(result.script.steps))
                    replays.append(result.replays)
        print(f"{fault:32} {spread(shrunk)} {spread(minimal)} {spread(replays)} "
              f"{spread(seconds)}", flush=True)


if __name__ == "__main__":
    main()
