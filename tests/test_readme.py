"""The README's examples, executed: its commands are the ones CI runs, its output is real."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.fault_server import FaultServer

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
SUITE = ["--pyargs", "conformance.suite", "-p", "no:cacheprovider"]


def console_blocks() -> list[list[str]]:
    """Every ```console block of the README, as lists of lines."""
    return [block.splitlines() for block in re.findall(r"```console\n(.*?)```", README, re.S)]


def block_for(command_prefix: str) -> list[str]:
    return next(block for block in console_blocks() if block[0].startswith(f"$ {command_prefix}"))


def normalised(line: str) -> str:
    """Ports, seeds, transcript timestamps and where a finding was seen differ from run to
    run."""
    line = re.sub(r"127\.0\.0\.1[:_ ]\d+", "127.0.0.1:PORT", line)
    line = re.sub(r"seed(:? |=)\d+", r"seed\1N", line)
    line = re.sub(r"Seen: +\d+ time\(s\) in this run.*", "Seen: N time(s) in this run", line)
    return re.sub(r"^(\s+)\d+\.\d{3} ", r"\1T ", line)


# The status line while a run runs: its counts differ, and off a terminal it shows only in a
# run longer than ten seconds.
PROGRESS = re.compile(r"smtp-conformance: \d+ sessions, ")
VARIES = re.compile(
    r"  State: |  Sent: |  Transcript|  printf |\s+[\d.]+ [CS]: (?!220 hello)")


def in_order(lines: list[str], wanted: list[str]) -> bool:
    """Each of ``wanted`` is one of ``lines``, in the same order."""
    remaining = iter(lines)
    return all(any(line == want for line in remaining) for want in wanted)


def test_first_screen_gives_the_two_commands_that_ci_runs() -> None:
    first_two = console_blocks()[:2]
    assert first_two == [["$ pip install -e . && pytest"],
                         ["$ pip install -e '.[test]' && pytest tests -n 4"]]
    ci = (ROOT / ".ci" / "run").read_text()
    for [command] in first_two:
        assert f"\n{command.removeprefix('$ ')}\n" in ci


def test_embedded_run_example_is_what_the_suite_prints(pytester: pytest.Pytester) -> None:
    block = next(block for block in console_blocks() if block[0] == "$ pytest")
    result = pytester.runpytest(*SUITE)
    result.assert_outcomes(passed=1)
    output = [normalised(line) for line in result.stdout.lines]
    stable = ("smtp-conformance:", "verdict:", "seed groups exercised:", "hypothesis-seed:",
              "  group ")
    shown = [normalised(line) for line in block
             if line.startswith(stable) and not PROGRESS.match(line)]
    assert len(shown) == len(stable)
    assert [line for line in output
            if line.startswith(stable) and not PROGRESS.match(line)] == shown
    assert any(PROGRESS.match(line) for line in block)  # as a terminal shows it


def test_failure_example_is_what_the_suite_prints(pytester: pytest.Pytester) -> None:
    block = block_for("pytest --server=")
    with FaultServer("helo_replies_220") as server:
        result = pytester.runpytest(*SUITE, f"--server={server.address}")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    output = [normalised(line) for line in result.stdout.lines]
    # How far Hypothesis shrinks varies with its random seed: the state the failure was met
    # in, the earlier steps, the HELO line (any HELO gets 220) and the bytes to replay may
    # differ. Everything else is the same.
    stable = [normalised(line) for line in block[1:] if not VARIES.match(line)]
    assert in_order(output, stable), "\n".join(output)
    assert any(line.startswith("  Transcript") for line in block)
