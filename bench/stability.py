"""The same server, the same verdict: every fault server's findings on several seeds.

    python bench/stability.py [--seeds N] [--json PATH] [--only FAULT ...]

For each fault of the plain fault server (each fault alone, every kind: MUST, SHOULD,
smuggling, state) and of the ESMTP fault server, one default run (the fast budget, timeout
0.5 s, messages completed) per seed 0..N-1: exploring, then its findings settled as a
finished run settles them (no minimising). It records each run's finding set (check,
cause, code), whether the sets are identical across the seeds, the findings not found on
every seed, and which phase found each; one behaviour should be one finding. The
nondeterministic faults are left out (they answer differently by design). The ESMTP server
runs without a TLS context or credentials: its STARTTLS faults and auth_twice show nothing
here (tests/test_systematic.py runs them with both).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import RESULTS, engine_run, write_json
from tests.esmtp_server import ESMTP_FAULTS, EsmtpServer
from tests.fault_server import (
    FAULTS,
    NOTED_FAULTS,
    SHOULD_FAULTS,
    SMUGGLING_FAULTS,
    FaultServer,
)


def findings_on_seeds(server: Any, seeds: int) -> dict[str, Any]:
    runs = []
    for seed in range(seeds):
        record = engine_run(server.address, seed=seed, timeout=0.5).record
        record.settle()  # as a finished run reports them
        runs.append({f"{k.check} {k.cause} {k.code}": f.phase
                     for k, f in record.findings.items()})
    keys = [set(run) for run in runs]
    every = set.intersection(*keys)
    return {"identical": all(k == keys[0] for k in keys),
            "most_findings": max(len(k) for k in keys),
            "findings": sorted(every),
            "not_on_every_seed": sorted(set.union(*keys) - every),
            "phases": sorted({phase for run in runs for phase in run.values()})}


def one_fault(name: str, seeds: int) -> dict[str, Any]:
    """``name``: a fault of the plain fault server, or "esmtp FAULT" of the ESMTP one."""
    kind, _, fault = name.rpartition(" ")
    with (EsmtpServer(fault) if kind == "esmtp" else FaultServer(fault)) as server:
        return findings_on_seeds(server, seeds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                        help="fault servers measured at once, each in a process of its own")
    parser.add_argument("--json", type=Path, help="default: bench/results/stability.json")
    parser.add_argument("--only", action="append", metavar="FAULT",
                        help="measure this fault server again (repeatable; 'esmtp FAULT' for "
                             "the ESMTP one), the others' results kept from the last run")
    args = parser.parse_args()
    if not 2 <= args.seeds <= 20 or not 1 <= args.jobs <= 16:
        parser.error("--seeds in 2..20, --jobs in 1..16")
    every = [*FAULTS, *SHOULD_FAULTS, *NOTED_FAULTS, *SMUGGLING_FAULTS,
             *(f"esmtp {f}" for f in ESMTP_FAULTS)]
    names = args.only or every
    if unknown := set(names) - set(every):
        parser.error(f"no such fault server: {', '.join(sorted(unknown))}")
    faults: dict[str, Any] = {}
    if args.only:
        last = json.loads((args.json or RESULTS / "stability.json").read_text())
        if last["seeds"] != args.seeds:
            parser.error(f"the last run had {last['seeds']} seeds")
        if missing := [name for name in every if name not in last["faults"] and
                       name not in names]:
            parser.error(f"the last run has no result for {', '.join(missing)}: run them all")
        faults = {name: last["faults"].get(name) for name in every}
    with ProcessPoolExecutor(args.jobs) as pool:
        for name, result in zip(names, pool.map(one_fault, names, [args.seeds] * len(names)),
                                strict=True):
            faults[name] = result
            print(f"{name:46} {'same' if result['identical'] else 'DIFFERS'}", flush=True)
    stable = sum(result["identical"] for result in faults.values())
    single = sum(result["most_findings"] <= 1 for result in faults.values())
    path = write_json(args.json, "stability", {"seeds": args.seeds, "faults": faults,
                                               "identical": stable, "single": single,
                                               "servers": len(faults),
                                               "remeasured": args.only or []})
    print(f"identical finding sets on {args.seeds} seeds: {stable} of {len(faults)} fault "
          f"servers; at most one finding on every seed: {single}; written: {path}")


if __name__ == "__main__":
    main()
