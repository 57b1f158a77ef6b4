"""The suite's commands per second beside the server's bare NOOP round trips per second.

    python bench/throughput.py [--rounds N] [--seconds S] [--server HOST:PORT] [--json PATH]

Against the embedded reference server (in a thread, as ``pytest`` runs it; with
``--server-process``, in a child process of its own, so the two do not share a GIL), or a
loopback server of yours, it alternates, ``--rounds`` times: (a) NOOP round trips on a bare
socket for ``--seconds``, (b) one default-like run of the engine (60 examples x 25 steps,
exploring only), counting exchanges (commands, control probes and greetings) from the run's
coverage. It prints the medians, their ratio, and where the suite's time went, measured by
timers around the layers (socket I/O, which includes waiting for the server; checks; the
model; recording findings; the rest of the session layer; and everything else: Hypothesis
drawing rules and arguments, and the state machine). ``--profile`` adds the top functions of
a pyinstrument profile of one more run. (The runner keeps what exists before a run out of the
collector while it explores, ``gc.freeze()``; the GC share is what is left.)
"""

from __future__ import annotations

import argparse
import gc
import socket
import statistics
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import (
    engine_run,
    loopback_address,
    noop_round_trips,
    read_reply,
    reference_server,
    write_json,
)
from conformance.engine import client as client_module
from conformance.engine import session as session_module
from conformance.protocol.errors import ReplyTimeout
from conformance.search import systematic as systematic_module
from conformance.search.machine import SMTPConformance

# Layer -> (module or class, attribute) timed as that layer; time nested in another timed
# layer counts for the inner one, except in an I/O layer, which keeps all its time. What no
# timer covers is Hypothesis and the state machine.
LAYERS: dict[str, list[tuple[Any, str]]] = {
    "connecting (TCP, greeting, close)": [
        (client_module.SMTPClient, "connect"), (client_module.SMTPClient, "close")],
    "command I/O (incl. waiting for the server)": [
        (client_module.SMTPClient, "_recv"), (client_module.SMTPClient, "send"),
        (client_module.SMTPClient, "wait_for_close")],
    "checks": [(session_module, "run_checks"), (session_module, "refuted_checks")],
    "model": [(session_module, "advance")],
    "recording findings": [(session_module, "records_for")],
    "session and client (parsing, transcript, glue)": [
        (session_module.CheckedSession, "checked_exchange"),
        (session_module.CheckedSession, "connect")],
}
IO_LAYERS = tuple(LAYERS)[:2]  # what the server and the network bound
REST = "Hypothesis draws and the state machine"


@contextmanager
def layer_timers() -> Iterator[defaultdict[str, float]]:
    """Seconds spent in each layer (exclusive of nested timed layers) while active."""
    spent: defaultdict[str, float] = defaultdict(float)
    stack: list[float] = []  # per active timed call: seconds its nested timed calls took
    in_io: list[bool] = [False]

    def timed(layer: str, function: Callable[..., Any]) -> Callable[..., Any]:
        io = layer in IO_LAYERS

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if in_io[0]:
                return function(*args, **kwargs)
            in_io[0] = io
            stack.append(0.0)
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                in_io[0] = False
                elapsed = time.perf_counter() - started
                nested = stack.pop()
                spent[layer] += elapsed - nested
                if stack:
                    stack[-1] += elapsed
        return wrapper

    with ExitStack() as undo:
        for layer, targets in LAYERS.items():
            for owner, name in targets:
                original = getattr(owner, name)
                setattr(owner, name, timed(layer, original))
                undo.callback(setattr, owner, name, original)
        yield spent


@contextmanager
def gc_timer() -> Iterator[list[float]]:
    """Seconds spent in Python's cyclic garbage collector while active."""
    spent, started = [0.0], [0.0]

    def timing(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            spent[0] += time.perf_counter() - started[0]

    gc.callbacks.append(timing)
    try:
        yield spent
    finally:
        gc.callbacks.remove(timing)


@contextmanager
def captured_sessions() -> Iterator[list[list[bytes]]]:
    """Every session the suite opens while active, as the byte strings it sent, in order."""
    sessions: list[list[bytes]] = []
    client = client_module.SMTPClient
    connect, send = client.connect, client.send

    def connecting(self: Any, *args: Any, **kwargs: Any) -> Any:
        self._bench_sent = []
        sessions.append(self._bench_sent)
        return connect(self, *args, **kwargs)

    def sending(self: Any, data: bytes, *, shown: bytes | None = None) -> None:
        getattr(self, "_bench_sent", []).append(data)
        send(self, data, shown=shown)

    client.connect, client.send = connecting, sending  # type: ignore[method-assign]
    try:
        yield sessions
    finally:
        client.connect, client.send = connect, send  # type: ignore[method-assign]


def replayed_per_second(address: Any, sessions: list[list[bytes]]) -> float:
    """The same sessions again on bare sockets (no Hypothesis, parser or checks): exchanges
    (greetings and replies) per second. What the server allows this command mix at most."""
    exchanges = 0
    started = time.perf_counter()
    for sent in sessions:
        replies: list[bytes] = []
        try:
            with socket.create_connection((address.host, address.port), timeout=2) as sock:
                replies.append(read_reply(sock))
                for data in sent:
                    sock.sendall(data)
                    replies.append(read_reply(sock))
                    if replies[-1][:3] in (b"221", b"421"):
                        break
        except OSError:  # the suite's session ended here too (a close, a timeout)
            pass
        exchanges += len(replies)
    return exchanges / (time.perf_counter() - started)


def profile_top(address: Any, seed: int, top: int) -> list[dict[str, Any]]:
    """The functions with the most self time in a pyinstrument profile of one run, with
    their share (pyinstrument's overhead inflates Python-heavy code)."""
    from pyinstrument import Profiler

    profiler = Profiler(interval=0.0005)
    profiler.start()
    engine_run(address, seed=seed)
    profiler.stop()
    root = profiler.last_session.root_frame() if profiler.last_session else None
    if root is None:
        return []
    selfs: Counter[tuple[str, str]] = Counter()

    def walk(frame: Any, owner: Any) -> None:
        shown = owner if frame.is_synthetic else frame
        own = frame.time - sum(child.time for child in frame.children)
        path = (shown.file_path or "").split("site-packages/")[-1]
        selfs[(shown.function, path.replace(str(Path.cwd()) + "/", ""))] += own
        for child in frame.children:
            walk(child, frame)

    walk(root, root)
    total = root.time or 1.0
    return [{"function": f, "file": p, "seconds": round(s, 4), "share": round(s / total, 4)}
            for (f, p), s in selfs.most_common(top)]


@contextmanager
def listening_timer() -> Iterator[list[float]]:
    """[seconds, count] of reads that ended with no reply while active: the probes' listens
    for a reply that must not come (and any reply that never came)."""
    spent = [0.0, 0.0]
    client = client_module.SMTPClient
    read_reply = client.read_reply

    def timed(self: Any, *, timeout: float | None = None) -> Any:
        started = time.perf_counter()
        try:
            return read_reply(self, timeout=timeout)
        except ReplyTimeout:
            spent[0] += time.perf_counter() - started
            spent[1] += 1
            raise

    client.read_reply = timed  # type: ignore[method-assign]
    try:
        yield spent
    finally:
        client.read_reply = read_reply  # type: ignore[method-assign]


@contextmanager
def systematic_timer(listening: list[float]) -> Iterator[list[float]]:
    """[seconds, exchanges, seconds listening, listens] of the runs' systematic phases while
    active (``listening``: a ``listening_timer``'s running totals)."""
    spent = [0.0, 0.0, 0.0, 0.0]
    sweep = systematic_module.sweep

    def timed(machine: type[SMTPConformance]) -> Any:
        before, started = machine.state.activity.exchanges, time.perf_counter()
        listened = list(listening)
        try:
            return sweep(machine)
        finally:
            spent[0] += time.perf_counter() - started
            spent[1] += machine.state.activity.exchanges - before
            spent[2] += listening[0] - listened[0]
            spent[3] += listening[1] - listened[1]

    systematic_module.sweep = timed
    try:
        yield spent
    finally:
        systematic_module.sweep = sweep


def phase_rates(phase: list[float], listening: list[float], total_seconds: float,
                total_exchanges: float, noop: float) -> dict[str, dict[str, float]]:
    """Exchanges per second of the systematic phase and of the rest of the runs, and the
    seconds each spent listening for replies that did not come."""
    rest = [total_seconds - phase[0], total_exchanges - phase[1], listening[0] - phase[2],
            listening[1] - phase[3]]
    return {name: {"seconds": round(s, 3), "exchanges": int(n),
                   "per_second": round(n / s) if s else 0,
                   "ratio": round(n / s / noop, 4) if s else 0.0,
                   "listening_seconds": round(heard, 3), "listens": int(listens)}
            for name, (s, n, heard, listens) in (("systematic", phase), ("exploration", rest))}


def measure(address: Any, rounds: int, seconds: float) -> dict[str, Any]:
    noops, rates, replays, runs = [], [], [], []
    phase_spent = [0.0, 0.0, 0.0, 0.0]
    listened = [0.0, 0.0]
    layers: defaultdict[str, float] = defaultdict(float)
    total = collected = 0.0
    for seed in range(rounds):
        noops.append(noop_round_trips(address, seconds))
        with layer_timers() as spent, captured_sessions() as sessions, \
                gc_timer() as gc_spent, listening_timer() as listening, \
                systematic_timer(listening) as phase:
            run = engine_run(address, seed=seed)
        for i, part in enumerate(phase):
            phase_spent[i] += part
        for i, part in enumerate(listening):
            listened[i] += part
        collected += gc_spent[0]
        replays.append(replayed_per_second(address, sessions))
        for name, seconds_in in spent.items():
            layers[name] += seconds_in
        total += run.seconds
        rates.append(run.per_second)
        runs.append({"seed": seed, "exchanges": run.exchanges, "sessions": run.sessions,
                     "seconds": round(run.seconds, 3), "per_second": round(run.per_second),
                     "findings": len(run.record.findings)})
    exchanges = sum(r["exchanges"] for r in runs)
    timed = sum(layers.values())
    breakdown = {name: {"seconds": round(s, 3), "share": round(s / total, 4),
                        "us_per_exchange": round(1e6 * s / exchanges, 1)}
                 for name, s in [*sorted(layers.items(), key=lambda kv: -kv[1]),
                                 (REST, total - timed)]}
    noop, suite = statistics.median(noops), statistics.median(rates)
    io_share = sum(layers[name] for name in IO_LAYERS) / total
    return {
        "noop_per_second": round(noop), "noop_rounds": [round(n) for n in noops],
        "suite_per_second": round(suite), "ratio": round(suite / noop, 4),
        # The suite's own sessions replayed on bare sockets: the server's cost of this mix
        # (connections, EHLO, MAIL, messages) against its cost of NOOP.
        "replay_per_second": round(statistics.median(replays)),
        "replay_ratio": round(statistics.median(replays) / noop, 4),
        "runs": runs, "breakdown": breakdown, "gc_share": round(collected / total, 4),
        # If everything but the I/O were free, the suite would run this fast: the server (and
        # the GIL it shares, when in-process) bounds it there.
        "ceiling_per_second": round(suite / io_share) if io_share else None,
        "phases": phase_rates(phase_spent, listened, total, exchanges, noop),
        "sessions_per_run": statistics.median(r["sessions"] for r in runs),
        "exchanges_per_run": statistics.median(r["exchanges"] for r in runs),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="NOOP + suite rounds (seeds 0..)")
    parser.add_argument("--seconds", type=float, default=2.0, help="of NOOPs per round")
    parser.add_argument("--server", type=loopback_address, help="HOST:PORT on loopback")
    parser.add_argument("--server-process", action="store_true",
                        help="the reference server in a child process (no shared GIL)")
    parser.add_argument("--profile", type=int, default=0, metavar="TOP",
                        help="also profile one run with pyinstrument; show TOP functions")
    parser.add_argument("--json", type=Path, help="default: bench/results/throughput.json")
    args = parser.parse_args()
    if not 1 <= args.rounds <= 100 or not 0 < args.seconds <= 60:
        parser.error("--rounds in 1..100, --seconds in (0, 60]")
    with ExitStack() as stack:
        if args.server is not None:
            address, where = args.server, str(args.server)
        else:
            address = stack.enter_context(reference_server(subprocess_=args.server_process))
            where = "reference server, " + ("own process" if args.server_process
                                            else "thread of the suite's process")
        result = measure(address, args.rounds, args.seconds)
        if args.profile:
            result["profile"] = profile_top(address, args.rounds, args.profile)
    result = {"server": where, "rounds": args.rounds, "noop_seconds": args.seconds,
              **result}
    path = write_json(args.json, "throughput", result)
    print(f"server: {where}  (rounds={args.rounds})")
    print(f"  bare-socket NOOP round trips/s   {result['noop_per_second']:>8}")
    print(f"  suite exchanges/s (median)       {result['suite_per_second']:>8}")
    print(f"  ratio                            {result['ratio']:>8.3f}")
    print(f"  same sessions, bare sockets /s   {result['replay_per_second']:>8}  "
          f"(ratio {result['replay_ratio']:.3f}: the server's cost of the mix)")
    for name, part in result["phases"].items():
        print(f"  {name + ' phase exchanges/s':32} {part['per_second']:>8}  "
              f"(ratio {part['ratio']:.3f}, {part['seconds']:.1f}s, of which "
              f"{part['listening_seconds']:.1f}s in {part['listens']} listens)")
    print(f"  ceiling (if only I/O took time)  {result['ceiling_per_second']!s:>8}")
    print(f"  exchanges, sessions per run      {result['exchanges_per_run']:>8} "
          f"{result['sessions_per_run']}")
    print(f"  {'where the suite time goes':48} {'share':>6} {'us/exchange':>12}")
    for name, part in result["breakdown"].items():
        print(f"  {name:48} {100 * part['share']:5.1f}% {part['us_per_exchange']:12.1f}")
    print(f"  {'(of all that, in the cyclic garbage collector)':48} "
          f"{100 * result['gc_share']:5.1f}%")
    for row in result.get("profile", []):
        print(f"  {100 * row['share']:5.1f}%  {row['function']}  {row['file']}")
    print(f"written: {path}")


if __name__ == "__main__":
    main()
