"""Peak memory of a short run of the engine against each hostile server (tests/hostile_server.py),
next to the same run against the reference server: the bounds hold whatever the server sends.

    python bench/memory.py [--seconds S] [--json PATH]

Each measurement is a child process of its own (``--one NAME``), the server another, so that
the figures are the suite's alone: first one bare client (connect, EHLO, QUIT: what a single
reply can cost), then a run of at most ``--seconds`` (0.5 s reply timeout, findings settled
as a run settles them); for each, the peak of Python's allocations (tracemalloc, traced from
its start), and the process's peak resident size (ru_maxrss, start-up included).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import ROOT, child_process_line, engine_run, loopback_address, write_json
from conformance.engine.client import SMTPClient
from conformance.protocol.errors import ServerError
from tests.hostile_server import BEHAVIOURS

BASELINE = "reference server"
TIMEOUT = 0.5
SEED = 0
CHILD_TIMEOUT = 300  # seconds for one measurement, at most
SERVE = {  # the code of a server's process: it prints its address, and stops at end of input
    BASELINE: "from conformance.testing.reference_server import ReferenceServer as S; s = S()",
    **{name: f"from tests.hostile_server import HostileServer as S; s = S({name!r})"
       for name in BEHAVIOURS},
}


@contextmanager
def server_process(name: str) -> Iterator[str]:
    """The server ``name`` in a child process; its address."""
    code = (f"import sys\n{SERVE[name]}\n"
            "with s:\n    print(s.address, flush=True)\n    sys.stdin.read()\n")
    with child_process_line(code, quiet=True) as address:
        yield address


def one_client(address: str) -> tuple[int, str]:
    """The traced peak of one bare client's connect, EHLO and QUIT, and how it ended."""
    tracemalloc.start()
    outcome = "answered"
    with SMTPClient(loopback_address(address), timeout=TIMEOUT) as client:
        try:
            client.connect()
            client.command(b"EHLO bench.example.test\r\n")
            client.command(b"QUIT\r\n")
        except ServerError as error:
            outcome = f"{type(error).__name__}: {str(error)[:60]}"
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak, outcome


def measure(address: str, seconds: float) -> dict[str, Any]:
    """In this process: one bare client, then one run against ``address``: their peak memory
    and what they found."""
    client_peak, client_outcome = one_client(address)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    started = time.perf_counter()
    run = engine_run(loopback_address(address), seed=SEED, timeout=TIMEOUT, budget=seconds,
                     finish=True)
    wall = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1] - before
    tracemalloc.stop()
    return {"client_peak": client_peak, "client_outcome": client_outcome,
            "traced_peak": peak, "max_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            * 1024, "seconds": round(wall, 2), "exchanges": run.exchanges,
            "sessions": run.sessions, "checks": sorted({f.check for f in
                                                        run.record.findings.values()})}


def one(name: str, seconds: float) -> dict[str, Any]:
    """A child process measuring a run against the server ``name``."""
    with server_process(name) as address:
        done = subprocess.run([sys.executable, str(Path(__file__)), "--one", address,
                               "--seconds", str(seconds)], cwd=ROOT, capture_output=True,
                              text=True, timeout=CHILD_TIMEOUT, check=False)
    if done.returncode:
        raise SystemExit(f"{name}: the measuring process failed:\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return result


def mib(octets: float) -> str:
    return f"{octets / 2**20:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="each run's budget")
    parser.add_argument("--json", type=Path, help="default: bench/results/memory.json")
    parser.add_argument("--one", metavar="HOST:PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not 5 <= args.seconds <= 600:
        parser.error("--seconds in 5..600")
    if args.one:
        print(json.dumps(measure(args.one, args.seconds)))
        return
    runs = {name: one(name, args.seconds) for name in SERVE}
    base = runs[BASELINE]
    print(f"{'server':30} {'client KiB':>10} {'run MiB':>8} {'ratio':>6} {'RSS MiB':>8} "
          f"{'ratio':>6} {'seconds':>8}  checks")
    for name, run in runs.items():
        run["traced_ratio"] = round(run["traced_peak"] / base["traced_peak"], 2)
        run["rss_ratio"] = round(run["max_rss"] / base["max_rss"], 2)
        print(f"{name:30} {run['client_peak'] / 1024:10.0f} {mib(run['traced_peak']):>8} "
              f"{run['traced_ratio']:6.2f} {mib(run['max_rss']):>8} {run['rss_ratio']:6.2f} "
              f"{run['seconds']:8.1f}  {', '.join(run['checks']) or '-'}")
    result = {"seconds": args.seconds, "timeout": TIMEOUT, "seed": SEED, "baseline": BASELINE,
              "runs": runs}
    print(f"written: {write_json(args.json, 'memory', result)}")


if __name__ == "__main__":
    main()
