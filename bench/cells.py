"""Which (state, command) cells a default run reaches against the reference server.

    python bench/cells.py [--seeds N] [--json PATH]

A cell is a state the model knows a session to be in (INIT, READY, MAIL, RCPT) and a command
sent there: one of the seed's 15 verbs or an unrecognised one, 4 x 16 = 64 cells. For seeds
0..N-1, one default run each (60 examples x 25 steps, exploring only), read from the run's
coverage (state, group, code); prints the cells each seed reached, the union, and the cells
no seed reached.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import engine_run, reference_server, write_json

STATES = ("INIT", "READY", "MAIL", "RCPT")
VERBS = ("HELO", "EHLO", "MAIL", "RCPT", "DATA", "RSET", "SEND", "SOML", "SAML", "VRFY",
         "EXPN", "HELP", "NOOP", "QUIT", "TURN")
COMMANDS = (*VERBS, "unrecognised")
CELLS = frozenset((state, command) for state in STATES for command in COMMANDS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--json", type=Path, help="default: bench/results/cells.json")
    args = parser.parse_args()
    if not 1 <= args.seeds <= 1000:
        parser.error("--seeds in 1..1000")
    per_seed: dict[int, list[list[str]]] = {}
    union: set[tuple[str, str]] = set()
    with reference_server() as address:
        for seed in range(args.seeds):
            run = engine_run(address, seed=seed)
            reached = {(s, g) for (s, g, _), n in run.record.coverage.items() if n} & CELLS
            per_seed[seed] = sorted([s, g] for s, g in reached)
            union |= reached
            print(f"seed {seed:3}: {len(reached):2}/{len(CELLS)} cells", flush=True)
    counts = [len(cells) for cells in per_seed.values()]
    missing = sorted(CELLS - union)
    print(f"median {statistics.median(counts):g}, min {min(counts)}, max {max(counts)} per "
          f"seed; {len(union)}/{len(CELLS)} over {args.seeds} seeds")
    if missing:
        print("never reached: " + ", ".join(f"{s}/{g}" for s, g in missing))
    path = write_json(args.json, "cells", {
        "seeds": args.seeds, "cells": len(CELLS), "states": STATES, "commands": COMMANDS,
        "per_seed": {str(seed): len(cells) for seed, cells in per_seed.items()},
        "median": statistics.median(counts), "min": min(counts), "max": max(counts),
        "union": len(union), "never_reached": [[s, g] for s, g in missing],
        "reached_by_seed": {str(seed): cells for seed, cells in per_seed.items()}})
    print(f"written: {path}")


if __name__ == "__main__":
    main()
