"""The plugin API as docs/plugin.md documents it: each example there, run as a user's own test
file, passes against the embedded server and fails, once and with the finding, against a server
that breaks what it exercises. Each runs in a process of its own (a check of one's own is
registered for the whole process)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.fault_server import FaultServer

DOC = Path(__file__).parent.parent / "docs" / "plugin.md"
EXAMPLE = re.compile(r"<!-- example: (?P<name>\w+\.py) -->\n```python\n(?P<code>.*?)```", re.S)
EXAMPLES = {m["name"]: m["code"] for m in EXAMPLE.finditer(DOC.read_text())}

# Each example: the fault that breaks what it exercises, and what the failure must say.
BROKEN_BY = {
    "test_noop_arguments.py": ("noop_replies_252", [
        "*[[]reply_code_documented[]] MUST: 252 is not documented for NOOP*",
        "Failing test case: test_noop_with_any_argument_is_answered_as_documented(*"]),
    "test_with_my_rule.py": ("third_recipient_554", [
        "*[[]reply_code_documented[]] MUST: 554 is not documented for RCPT*",
        "*python -m conformance replay *"]),
    "test_own_check.py": ("noop_replies_252", [
        "*[[]noop_answered_250[]] MUST: NOOP answered 252, not 250*"]),
}


def run_example(pytester: pytest.Pytester, name: str, *args: str) -> pytest.RunResult:
    pytester.makepyfile(**{name.removesuffix(".py"): EXAMPLES[name]})
    return pytester.runpytest_subprocess(name, "-p", "no:cacheprovider", "--smtp-timeout=1",
                                         *args)


def test_every_example_of_the_page_is_run_here():
    assert set(EXAMPLES) == set(BROKEN_BY)


@pytest.mark.parametrize("name", sorted(BROKEN_BY))
def test_the_example_passes_against_the_embedded_server(pytester, name):
    result = run_example(pytester, name)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["smtp-conformance: target embedded reference server*"
                                 "examples: each test's own (smtp_config.hypothesis_settings()*"])


@pytest.mark.timeout(300)
@pytest.mark.parametrize("name", sorted(BROKEN_BY))
def test_the_example_fails_once_with_the_finding_against_a_broken_server(pytester, name):
    fault, lines = BROKEN_BY[name]
    with FaultServer(fault) as server:
        result = run_example(pytester, name, f"--server={server.address}",
                             "--hypothesis-seed=0")
    result.assert_outcomes(failed=1)  # one failure: no error at teardown beside it
    result.stdout.fnmatch_lines(lines, consecutive=False)
    assert "Traceback" not in result.stdout.str()
