"""What the benches share: the one function that runs the engine, servers to run it against,
and where results go. Kept small so a change of the engine's API is adapted here only.

Only loopback servers (127.0.0.1, ::1) are ever contacted; every loop is bounded.
"""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hypothesis.errors import FlakyStrategyDefinition

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from conformance.checks.grading import Policy  # noqa: E402
from conformance.engine.address import ServerAddress  # noqa: E402
from conformance.engine.record import RunRecord  # noqa: E402
from conformance.engine.settings import (  # noqa: E402
    BUDGETS,
    DEFAULT_TIMEOUT,
    RunSettings,
)
from conformance.protocol.tables import get_profile  # noqa: E402
from conformance.search.runner import Run  # noqa: E402
from conformance.testing.reference_server import ReferenceServer  # noqa: E402

RESULTS = ROOT / "bench" / "results"
LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})
GREETING = "connect"  # the coverage group of a session's greeting


def loopback_address(text: str) -> ServerAddress:
    """``HOST:PORT`` of a server on this machine; anything else is refused."""
    address = ServerAddress.parse(text)
    if address.host not in LOOPBACK:
        raise SystemExit(f"only 127.0.0.1 or ::1 may be benchmarked, not {address.host}")
    return address


@dataclass(frozen=True)
class EngineRun:
    """What one run of the engine did: exchanges (commands, probes and greetings, from the
    record's coverage), sessions (greetings), wall seconds exploring, and the record."""

    exchanges: int
    sessions: int
    seconds: float
    record: RunRecord
    error: str = ""  # Hypothesis's error, if the run ended in one (see ``engine_run``)

    @property
    def per_second(self) -> float:
        return self.exchanges / self.seconds if self.seconds else 0.0


def engine_run(address: ServerAddress, *, seed: int, profile: str = "seed",
               examples: str = "fast", timeout: float = DEFAULT_TIMEOUT, strict: bool = False,
               fail_fast: bool = False, budget: float = 0.0, finish: bool = False,
               deliver: bool = True, record: RunRecord | None = None) -> EngineRun:
    """One default-like run of the engine (conformance.search.runner) against ``address``:
    ``explore`` only unless ``finish`` (minimising the failing findings); ``record``: where
    the findings go (a new one by default). Messages are completed (``deliver``), as they
    are to the embedded server, and as the fault servers need to show the faults after a
    message. The only place the benches call the engine."""
    count, steps = BUDGETS[examples]
    settings = RunSettings(address, get_profile(profile), timeout, count, steps, examples,
                           seconds=budget, strict=strict, deliver=deliver, fail_fast=fail_fast,
                           seed=str(seed))
    record = record if record is not None else RunRecord()
    with tempfile.TemporaryDirectory(prefix="smtp-bench-") as failures:
        run = Run(settings, address, record, Path(failures))
        started = time.perf_counter()
        error = ""
        try:
            run.explore()
            if finish:
                run.finish()
        except FlakyStrategyDefinition as flaky:
            # When a run stops (fail-fast, budget spent), StopRun passes through Hypothesis
            # as a failure; Hypothesis replays that example, and a replay that stops at
            # another step is "flaky". What was recorded before stands.
            error = f"{type(flaky).__name__}: {str(flaky).splitlines()[0]}"
        seconds = time.perf_counter() - started
    exchanges = sum(record.coverage.values())
    sessions = sum(n for (_, group, _), n in record.coverage.items() if group == GREETING)
    return EngineRun(exchanges, sessions, seconds, record, error)


def failing(record: RunRecord, *, strict: bool = True) -> list[str]:
    """The checks of the findings that fail the run (SHOULD ones too when ``strict``)."""
    policy = Policy(strict=strict)
    return sorted({f.check for f in record.findings.values()
                   if policy.fails(f.verdict)})


@contextmanager
def child_process_line(code: str, *, quiet: bool = False) -> Iterator[str]:
    """Python ``code`` run in a child process that prints one line (a server's address or
    port) and serves until its standard input ends; that line. The child is stopped after
    the block (ended, or killed after 10 s). ``quiet``: its standard error is dropped."""
    child = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL if quiet else None, text=True)
    try:
        assert child.stdout is not None
        yield child.stdout.readline().strip()
    finally:
        assert child.stdin is not None
        child.stdin.close()
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait(timeout=10)


@contextmanager
def reference_server(*, profile: str = "seed", subprocess_: bool = False
                     ) -> Iterator[ServerAddress]:
    """The embedded reference server: in a thread of this process, as the plugin runs it
    (sharing the GIL with the suite), or in a child process of its own."""
    if not subprocess_:
        with ReferenceServer(profile=get_profile(profile)) as server:
            yield server.address
        return
    code = ("import sys, time\n"
            "from conformance.testing.reference_server import ReferenceServer\n"
            "from conformance.protocol.tables import get_profile\n"
            f"with ReferenceServer(profile=get_profile({profile!r})) as s:\n"
            "    print(s.address.port, flush=True)\n"
            "    sys.stdin.read()\n")
    with child_process_line(code) as line:
        if not line.isdigit():
            raise RuntimeError("the reference server's process did not start")
        yield ServerAddress("127.0.0.1", int(line))


def noop_round_trips(address: ServerAddress, seconds: float, *, timeout: float = DEFAULT_TIMEOUT
                     ) -> float:
    """NOOP round trips per second on a bare socket (no parser, no checks) for ``seconds``."""
    family = socket.AF_INET6 if ":" in address.host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect((address.host, address.port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        read_reply(sock)  # the greeting
        count = 0
        started = time.perf_counter()
        end = started + seconds
        while (now := time.perf_counter()) < end:
            sock.sendall(b"NOOP\r\n")
            read_reply(sock)
            count += 1
        sock.sendall(b"QUIT\r\n")
        return count / (now - started)


def read_reply(sock: socket.socket) -> bytes:
    """One reply: lines until one whose fourth octet is a space (bounded: 64 KiB)."""
    data = b""
    while len(data) < 65536:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        data += chunk
        last = data.rstrip(b"\r\n").rsplit(b"\n", 1)[-1]
        if data.endswith(b"\n") and last[3:4] != b"-":
            return data
    raise ConnectionError("reply over 64 KiB")


def machine() -> dict[str, Any]:
    """Where and when the figures were measured."""
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        # Other processes' load: figures from a busy machine are slower and noisier.
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def write_json(path: Path | None, name: str, data: dict[str, Any]) -> Path:
    """Write ``data`` (with the machine's description) to ``path``, by default
    bench/results/NAME.json."""
    target = path or RESULTS / f"{name}.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps({"machine": machine(), **data}, indent=2) + "\n")
    return target
