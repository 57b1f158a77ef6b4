"""What ``pytest`` (README command 1: the suite against the embedded server) spends before
and around the run itself, against the same run done directly by the engine.

    python bench/startup.py [--rounds N] [--json PATH]

Measures, as the median of ``--rounds`` (interleaved): the whole ``pytest`` process from the
checkout (no arguments, fixed seed); ``pytest --collect-only`` (interpreter, plugins,
configuration and collection, no run); a bare interpreter; importing the plugin; and, in
one process, starting the reference server and one run of the engine on the same seed. Then
``python -X importtime`` of the plugin, grouped by top-level package: what the imports cost.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import ROOT, engine_run, reference_server, write_json

TIMEOUT = 600  # seconds per process at most
SEED = 1


def wall(command: list[str]) -> tuple[float, str]:
    """Seconds a process took, and its output."""
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT,
                          check=False)
    return time.perf_counter() - started, done.stdout + done.stderr


def pytest_session_seconds(output: str) -> float | None:
    """pytest's own "N passed in S s": from the session's start, after start-up."""
    found = re.findall(r" in ([0-9.]+)s", output)
    return float(found[-1]) if found else None


def direct() -> dict[str, float]:
    """In this process: the reference server's start, and one engine run (seed ``SEED``)."""
    started = time.perf_counter()
    with reference_server() as address:
        server = time.perf_counter() - started
        run = engine_run(address, seed=SEED)
    return {"server_start": server, "engine_run": run.seconds, "exchanges": run.exchanges}


RUN_IMPORTS = ("import conformance.plugin, conformance.search.runner, "
               "conformance.testing.reference_server")
DIRECT = ("import sys; sys.path.insert(0, '.'); from bench.startup import direct; "
          "print(direct())")


def import_times() -> dict[str, float]:
    """``-X importtime`` of the plugin: seconds of each top-level package's own modules."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", "import conformance.plugin"],
                          cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT, check=False)
    by_package: Counter[str] = Counter()
    for line in done.stderr.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+\d+ \|\s*(\S+)", line)
        if match is not None:
            by_package[match[2].split(".")[0]] += int(match[1])
    return {name: round(us / 1e6, 3) for name, us in by_package.most_common()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path, help="default: bench/results/startup.json")
    args = parser.parse_args()
    if not 1 <= args.rounds <= 20:
        parser.error("--rounds in 1..20")
    python = sys.executable
    samples: dict[str, list[float]] = {k: [] for k in (
        "pytest", "pytest_session", "collect_only", "python", "import_pytest", "import_plugin",
        "import_run", "direct",
        "server_start", "engine_run")}
    exchanges = 0
    for _ in range(args.rounds):
        seconds, output = wall([python, "-m", "pytest", "-p", "no:cacheprovider",
                                f"--hypothesis-seed={SEED}"])
        samples["pytest"].append(seconds)
        session = pytest_session_seconds(output)
        if session is not None:
            samples["pytest_session"].append(session)
        samples["collect_only"].append(wall([python, "-m", "pytest", "-p", "no:cacheprovider",
                                             "--collect-only", "-q"])[0])
        samples["python"].append(wall([python, "-c", "pass"])[0])
        samples["import_pytest"].append(wall([python, "-c", "import pytest"])[0])
        samples["import_plugin"].append(wall([python, "-c", "import conformance.plugin"])[0])
        samples["import_run"].append(wall([python, "-c", RUN_IMPORTS])[0])
        samples["direct"].append(wall([python, "-c", DIRECT])[0])
        run = direct()
        samples["server_start"].append(run["server_start"])
        samples["engine_run"].append(run["engine_run"])
        exchanges = int(run["exchanges"])
    medians = {k: round(statistics.median(v), 3) for k, v in samples.items() if v}
    medians["pytest_overhead"] = round(medians["pytest"] - medians["direct"], 3)
    # What an installed plugin costs a pytest session that does not use it, as a ratio to
    # pytest's own import in the same rounds; and what a run then loads on top.
    medians["plugin_over_pytest"] = round(medians["import_plugin"] / medians["import_pytest"], 2)
    medians["run_over_pytest"] = round(medians["import_run"] / medians["import_pytest"], 2)
    imports = import_times()
    labels = {
        "pytest": "pytest, whole process (README command 1)",
        "pytest_session": "  of which pytest's session (its 'passed in')",
        "collect_only": "pytest --collect-only, whole process",
        "python": "bare interpreter (python -c pass)",
        "import_pytest": "python -c 'import pytest'",
        "import_plugin": "python -c 'import conformance.plugin'",
        "import_run": "  and what a run loads (runner, reference server)",
        "plugin_over_pytest": "plugin import / pytest import (ratio)",
        "run_over_pytest": "plugin + run imports / pytest import (ratio)",
        "direct": "direct run by the engine, whole process",
        "server_start": "  of which the reference server's start",
        "engine_run": f"  of which the engine run, seed {SEED} ({exchanges} exchanges)",
        "pytest_overhead": "pytest minus the direct run",
    }
    for key, label in labels.items():
        if key in medians:
            unit = "x" if key.endswith("_over_pytest") else "s"
            print(f"{label:48} {medians[key]:7.2f} {unit}")
    print("imports of the plugin by package (cumulative s): " +
          ", ".join(f"{k} {v:.2f}" for k, v in list(imports.items())[:8]))
    result: dict[str, Any] = {"rounds": args.rounds, "seed": SEED, "medians": medians,
                              "samples": samples, "imports": imports, "labels": labels}
    print(f"written: {write_json(args.json, 'startup', result)}")


if __name__ == "__main__":
    main()
