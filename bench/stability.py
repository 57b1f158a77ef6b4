"""The same server, the same verdict: every fault server's findings on several seeds.

    python bench/stability.py [--seeds N] [--json PATH]

For each fault of the plain fault server (each fault alone, every kind: MUST, SHOULD,
smuggling, state) and of the ESMTP fault server, one default run (the fast budget, timeout
0.5 s, messages completed) per seed 0..N-1, exploring only. It records each run's finding set
(check, cause, code), whether the sets are identical across the seeds, the findings not
found on every seed, and which phase found each. The nondeterministic faults are left out
(they answer differently by design).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import engine_run, write_json
from tests.esmtp_server import ESMTP_FAULTS, EsmtpServer
from tests.fault_server import FAULTS, SHOULD_FAULTS, SMUGGLING_FAULTS, FaultServer


def findings_on_seeds(server: Any, seeds: int) -> dict[str, Any]:
    runs = []
    for seed in range(seeds):
        record = engine_run(server.address, seed=seed, timeout=0.5).record
        runs.append({f"{k.check} {k.cause} {k.code}": f.phase
                     for k, f in record.findings.items()})
    keys = [set(run) for run in runs]
    every = set.intersection(*keys)
    return {"identical": all(k == keys[0] for k in keys),
            "findings": sorted(every),
            "not_on_every_seed": sorted(set.union(*keys) - every),
            "phases": sorted({phase for run in runs for phase in run.values()})}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--json", type=Path, help="default: bench/results/stability.json")
    args = parser.parse_args()
    if not 2 <= args.seeds <= 20:
        parser.error("--seeds in 2..20")
    faults: dict[str, Any] = {}
    for fault in [*FAULTS, *SHOULD_FAULTS, *SMUGGLING_FAULTS]:
        with FaultServer(fault) as server:
            faults[fault] = findings_on_seeds(server, args.seeds)
        print(f"{fault:40} {'same' if faults[fault]['identical'] else 'DIFFERS'}", flush=True)
    for fault in ESMTP_FAULTS:
        with EsmtpServer(fault) as esmtp:
            faults[f"esmtp {fault}"] = findings_on_seeds(esmtp, args.seeds)
        print(f"esmtp {fault:34} {'same' if faults[f'esmtp {fault}']['identical'] else 'DIFFERS'}",
              flush=True)
    stable = sum(result["identical"] for result in faults.values())
    path = write_json(args.json, "stability", {"seeds": args.seeds, "faults": faults,
                                               "identical": stable, "servers": len(faults)})
    print(f"identical finding sets on {args.seeds} seeds: {stable} of {len(faults)} fault "
          f"servers; written: {path}")


if __name__ == "__main__":
    main()
