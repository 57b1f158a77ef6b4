"""What learning a server's machine costs: queries, connections (resets) and seconds per
server, beside the same number of bare connections to that server.

    python bench/learn.py [--server NAME=HOST:PORT[/DOMAIN] ...] [--budget S] [--json PATH]

Learns the embedded reference server (always, as the baseline server) and each loopback
``--server`` (RCPT to DOMAIN, its own domain, where given), as ``python -m conformance learn``
does, in safe mode. Beside each learning, in the same process, it times bare connections to
the same server (connect, greeting, QUIT, its reply, close), and reports the learning's
seconds over what its connections alone would take: how much the learner, the checks and
the commands add to the resets, a ratio that holds on a noisy machine where seconds do not.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import loopback_address, read_reply, reference_server, write_json
from conformance.engine.address import ServerAddress
from conformance.engine.settings import DEFAULT_TIMEOUT
from conformance.learn.run import Target, learn_all
from conformance.protocol.tables import get_profile

PROFILE = "rfc5321"
BARE_CONNECTIONS = 200  # per server, timed one after another; the median is kept


def bare_connection_seconds(address: ServerAddress, count: int = BARE_CONNECTIONS) -> float:
    """The median seconds of a bare connection: connect, greeting, QUIT, reply, close."""
    samples = []
    family = socket.AF_INET6 if ":" in address.host else socket.AF_INET
    for _ in range(count):
        started = time.perf_counter()
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.settimeout(DEFAULT_TIMEOUT)
            sock.connect((address.host, address.port))
            read_reply(sock)
            sock.sendall(b"QUIT\r\n")
            read_reply(sock)
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def target(text: str) -> Target:
    name, sep, rest = text.partition("=")
    if not sep or not name:
        raise SystemExit(f"--server {text}: expected NAME=HOST:PORT[/DOMAIN]")
    where, _, domain = rest.partition("/")
    return Target(name, loopback_address(where), domain or None)


def measure(server: Target, budget: float) -> dict[str, Any]:
    bare = bare_connection_seconds(server.address)
    with tempfile.TemporaryDirectory() as out:
        [learned] = learn_all([server], Path(out), profile=get_profile(PROFILE),
                              timeout=DEFAULT_TIMEOUT, budget=budget)
    learning = learned.learning
    assert learning is not None
    connections_alone = learning.resets * bare
    return {"states": None if learned.learned is None else len(learned.learned.states),
            "partial": learning.partial,
            "nondeterministic": learning.nondeterminism is not None,
            "queries": learning.queries, "resets": learning.resets, "steps": learning.steps,
            "seconds": round(learning.seconds, 2),
            "bare_connection_ms": round(bare * 1000, 3),
            "over_bare_connections": round(learning.seconds / connections_alone, 2)
            if connections_alone else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", action="append", default=[], type=target,
                        metavar="NAME=HOST:PORT[/DOMAIN]", help="repeatable; loopback only")
    parser.add_argument("--budget", type=float, default=180.0, help="seconds per server (180)")
    parser.add_argument("--json", type=Path, help="default: bench/results/learn.json")
    args = parser.parse_args()
    results: dict[str, dict[str, Any]] = {}
    with reference_server(profile=PROFILE) as address:
        results["reference"] = measure(Target("reference", address), args.budget)
    for server in args.server:
        results[server.name] = measure(server, args.budget)
    print(f"{'server':>10} {'states':>6} {'queries':>8} {'resets':>7} {'steps':>7} "
          f"{'seconds':>8} {'bare ms':>8} {'x bare':>7}")
    for name, r in results.items():
        print(f"{name:>10} {r['states'] or '-':>6} {r['queries']:>8} {r['resets']:>7} "
              f"{r['steps']:>7} {r['seconds']:>8} {r['bare_connection_ms']:>8} "
              f"{r['over_bare_connections']:>7}" + (f"  ({r['partial']})" if r["partial"] else ""))
    written = write_json(args.json, "learn", {"profile": PROFILE, "budget": args.budget,
                                              "servers": results})
    print(f"written: {written}")


if __name__ == "__main__":
    main()
