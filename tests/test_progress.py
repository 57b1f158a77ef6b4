"""The status line a run shows while it runs: rewritten in place on a terminal (a real pseudo
terminal here), a line at most every ten seconds in a log, none with --smtp-no-progress."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import threading
import time

import pytest

from conformance.engine.pacing import Activity
from conformance.engine.record import RunRecord
from conformance.output.progress import LOG_INTERVAL, StatusLine, status_text
from tests.fault_server import FaultServer

SUITE = ["-m", "pytest", "--pyargs", "conformance.suite", "-p", "no:cacheprovider",
         "--smtp-timeout=0.5", "--smtp-fail-fast", "--hypothesis-seed=1"]


def on_a_terminal(args: list[str], cwd: str, seconds: float = 120) -> tuple[int, str]:
    """Run ``python args`` with a pseudo terminal as its stdin, stdout and stderr; its exit
    status and everything it wrote (bounded in time)."""
    master, slave = pty.openpty()
    process = subprocess.Popen([sys.executable, *args], stdin=slave, stdout=slave,
                               stderr=slave, cwd=cwd)
    os.close(slave)
    out = bytearray()
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            if select.select([master], [], [], 0.5)[0]:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # the terminal's other end closed: the process is done
                    break
                if not chunk:
                    break
                out += chunk
            elif process.poll() is not None:
                break
    finally:
        os.close(master)
        if process.poll() is None:
            process.kill()
        status = process.wait(timeout=10)
    return status, out.decode("utf-8", "replace")


@pytest.mark.timeout(180)
def test_on_a_terminal_one_status_line_is_rewritten_and_says_what_it_waits_for(pytester):
    with FaultServer("expn_hangs") as server:
        status, out = on_a_terminal([*SUITE, f"--server={server.address}"], str(pytester.path))
    assert status == 1, out
    painted = [part for part in out.split("\r") if part.startswith("smtp-conformance: ")]
    assert len(painted) > 2, out  # rewritten in place, not a line each time
    assert all(" sessions, " in p and " exchanges, " in p and "s of " in p for p in painted)
    assert any("waiting up to 3s for a reply to EXPN" in p for p in painted), out
    assert "1 finding" in painted[-1]
    assert out.index("smtp-conformance: ") < out.index("[command_answered] MUST")


def test_without_a_terminal_a_line_every_ten_seconds_at_most():
    lines: list[str] = []
    done = threading.Event()
    activity = Activity(sessions=3, exchanges=40)

    def write(text: str) -> None:
        lines.append(text)
        if len(lines) == 3:
            done.set()

    with StatusLine(activity, RunRecord(), 60, write, terminal=False, interval=0.05):
        assert done.wait(10)
    assert LOG_INTERVAL == 10.0
    assert lines[0].startswith("\nsmtp-conformance: 3 sessions, 40 exchanges, 0 findings")
    assert status_text(Activity(sessions=1, exchanges=1), RunRecord(), 0, 60, now=0).startswith(
        "smtp-conformance: 1 session, 1 exchange, 0 findings")
    assert all(line.endswith("\n") and "\r" not in line for line in lines)


def test_a_slow_reply_is_named_with_how_long_it_may_take():
    activity = Activity(sessions=1, exchanges=5, waiting="EXPN", wait_limit=30,
                        wait_started=100.0)
    assert status_text(activity, RunRecord(), 14.2, 120, now=101.0) == (
        "smtp-conformance: 1 session, 5 exchanges, 0 findings, 14s of 120s")
    assert status_text(activity, RunRecord(), 20.0, 120, now=106.4).endswith(
        "20s of 120s; waiting up to 30s for a reply to EXPN (6s so far)")


@pytest.mark.timeout(180)
def test_no_progress_silences_it(pytester):
    with FaultServer("expn_hangs") as server:
        status, out = on_a_terminal([*SUITE, f"--server={server.address}",
                                     "--smtp-no-progress"], str(pytester.path))
    assert status == 1, out
    assert " exchanges, " not in out
