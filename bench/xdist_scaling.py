"""The packaged suite's commands per second under pytest-xdist, 1, 2 and 4 workers, against
one reference server.

    python bench/xdist_scaling.py [--workers 0 1 2 4] [--rounds N] [--json PATH]

Starts the reference server in a process of its own, then runs, for each worker count K,
``pytest -p no:cacheprovider --server=127.0.0.1:PORT -n K --smtp-shards=auto ...`` from the
checkout (its testpaths: conformance/suite) with a fixed --hypothesis-seed, and reads the
exchanges from the JSON report's coverage triples. Prints wall seconds (the whole pytest
process, start-up included), exchanges and exchanges per second; ``-n 0`` is pytest-xdist
off. ``--smtp-shards=auto`` splits the run's examples into one test per worker, each with a
seed of its own, so K workers share one run's work.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import ROOT, reference_server, write_json

RUN_TIMEOUT = 600  # seconds per pytest run at most


def suite_run(port: int, workers: int, seed: int) -> dict[str, Any]:
    """One pytest run of the packaged suite; its wall seconds, exchanges and test items."""
    with tempfile.TemporaryDirectory(prefix="smtp-xdist-") as work:
        report = Path(work) / "report.json"
        command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
                   f"--server=127.0.0.1:{port}", f"--hypothesis-seed={seed}",
                   f"--smtp-report={report}", f"--smtp-failures-dir={work}/failures",
                   "-n", str(workers), *(["--smtp-shards=auto"] if workers else [])]
        started = time.perf_counter()
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True,
                              timeout=RUN_TIMEOUT, check=False)
        seconds = time.perf_counter() - started
        if not report.exists():
            raise RuntimeError(f"pytest wrote no report (exit {done.returncode}):\n"
                               f"{done.stdout[-2000:]}{done.stderr[-2000:]}")
        data = json.loads(report.read_text())
    triples = data["coverage"]["triples"]
    exchanges = sum(t["count"] for t in triples)
    sessions = sum(t["count"] for t in triples if t["group"] == "connect")
    passed = [line for line in done.stdout.splitlines() if " passed" in line or " failed" in line]
    return {"workers": workers, "seconds": round(seconds, 3), "exchanges": exchanges,
            "sessions": sessions, "per_second": round(exchanges / seconds),
            "exit": done.returncode, "outcome": passed[-1].strip("= ") if passed else ""}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2, 4])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, help="default: bench/results/xdist_scaling.json")
    args = parser.parse_args()
    if not 1 <= args.rounds <= 20 or not all(0 <= k <= 16 for k in args.workers):
        parser.error("--rounds in 1..20, --workers in 0..16")
    rows: dict[int, list[dict[str, Any]]] = {k: [] for k in args.workers}
    with reference_server(subprocess_=True) as address:
        for _ in range(args.rounds):
            for workers in args.workers:  # interleaved, so load drifts hit every K alike
                rows[workers].append(suite_run(address.port, workers, args.seed))
    print(f"{'workers':>7} {'seconds':>8} {'exchanges':>9} {'per s':>7}  (median of "
          f"{args.rounds}; seed {args.seed})")
    summary = []
    for workers, runs in rows.items():
        seconds = statistics.median(r["seconds"] for r in runs)
        exchanges = statistics.median(r["exchanges"] for r in runs)
        rate = statistics.median(r["per_second"] for r in runs)
        summary.append({"workers": workers, "seconds": seconds, "exchanges": exchanges,
                        "per_second": rate, "outcome": runs[-1]["outcome"]})
        print(f"{workers:7} {seconds:8.2f} {exchanges:9g} {rate:7g}  {runs[-1]['outcome']}")
    path = write_json(args.json, "xdist_scaling", {
        "rounds": args.rounds, "seed": args.seed, "summary": summary,
        "runs": {str(k): v for k, v in rows.items()},
        "items": "conformance/suite/test_smtp_conformance.py::test_server_conforms"})
    print(f"written: {path}")


if __name__ == "__main__":
    main()
