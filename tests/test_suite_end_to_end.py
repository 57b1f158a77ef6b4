"""The suite proves it can fail: each fault server fails with its check; clean servers pass."""

from __future__ import annotations

import re

import pytest

from conformance.tables import PROFILES
from tests.fault_server import FAULTS, FaultServer

FINDING = re.compile(r"\[\w+\] (MUST|SHOULD|INFO): ")  # a failure report's first line
# --smtp-deliver: the fault servers are ours and keep nothing, so messages may be completed.
FAST = ["-p", "no:cacheprovider", "--hypothesis-seed=0", "--smtp-deliver"]


def run_suite(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest("--pyargs", "conformance.suite", *FAST, *args)


# A fault is usually found within ten examples (see bench/examples_to_detection.py); the run
# stops at the first failure, so a larger budget costs time only when a fault hides. Strict:
# a fault that breaks a SHOULD (an unrecognised verb accepted) fails the run too.
FAULT_RUN = ("--smtp-examples=200", "--smtp-strict")


WAITS_OUT_A_TIMEOUT = {"expn_hangs", "quit_keeps_connection", "vrfy_421_keeps_connection"}


# Shrinking a failure re-runs sessions; faults that wait out a timeout make that slow, so the
# reply timeout is short here and the pytest-timeout backstop generous.
@pytest.mark.timeout(600)
@pytest.mark.parametrize(("fault", "check"), list(FAULTS.items()), ids=list(FAULTS))
def test_suite_fails_on_fault(pytester, fault, check):
    timeout = "0.3" if fault in WAITS_OUT_A_TIMEOUT else "0.5"
    with FaultServer(fault) as server:
        result = run_suite(pytester, f"--server={server.address}", f"--smtp-timeout={timeout}",
                           *FAULT_RUN)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    output = result.stdout.str()
    first = next(line for line in result.stdout.lines if FINDING.match(line))
    assert first.startswith(f"[{check}] "), output[-3000:]
    assert "Transcript:" in output
    assert "state = SMTPConformance()" in output  # Hypothesis printed the shrunk session


@pytest.mark.parametrize("profile", list(PROFILES))
def test_clean_fault_server_passes_every_profile(pytester, profile):
    with FaultServer() as server:
        result = run_suite(pytester, f"--server={server.address}", f"--smtp-profile={profile}")
    result.assert_outcomes(passed=1)


@pytest.mark.parametrize("profile", list(PROFILES))
def test_embedded_reference_server_passes_every_profile(pytester, profile):
    result = run_suite(pytester, f"--smtp-profile={profile}")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([
        f"smtp-conformance: target embedded reference server*profile {profile}*"])
