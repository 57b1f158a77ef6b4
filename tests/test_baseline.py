"""Baselines: known deviations pass as KNOWN, new ones fail, stale and expired ones are named."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from conformance.baseline import Entry, load
from conformance.errors import UsageError
from conformance.report import SCHEMA_PATH
from tests.fault_server import FaultServer

SUITE = ["--pyargs", "conformance.suite", "-p", "no:cacheprovider", "--smtp-timeout=0.5",
         "--smtp-deliver"]
SCHEMA = json.loads(SCHEMA_PATH.read_text())
HELO_220 = {"check": "reply_code_documented", "command": "HELO", "code": 220,
            "reason": "our HELO says 220, tracked in BUG-1", "expires": None}


def run(pytester: pytest.Pytester, server: FaultServer, *args: str
        ) -> tuple[pytest.RunResult, dict[str, Any]]:
    path = pytester.path / "report.json"
    result = pytester.runpytest(*SUITE, f"--server={server.address}", f"--smtp-report={path}",
                                *args)
    report = json.loads(path.read_text())
    jsonschema.validate(report, SCHEMA)
    return result, report


def write_baseline(pytester: pytest.Pytester, *entries: dict[str, Any]) -> Path:
    path = pytester.path / "baseline.json"
    path.write_text(json.dumps({"format": 1, "entries": list(entries)}))
    return path


def test_written_baseline_lists_every_deviation_and_then_suppresses_it(pytester):
    path = pytester.path / "written.json"
    with FaultServer("helo_replies_220") as server:
        result, _ = run(pytester, server, f"--smtp-baseline-write={path}")
        assert result.ret == pytest.ExitCode.OK  # survey mode fails nothing
        written = json.loads(path.read_text())
        assert [(e["check"], e["command"], e["code"]) for e in written["entries"]] == [
            ("reply_code_documented", "HELO", 220)]
        assert "say why this deviation is accepted" in written["entries"][0]["reason"]

        result, report = run(pytester, server, f"--smtp-baseline={path}")
    assert result.ret == pytest.ExitCode.OK
    assert (report["verdict"], report["counts"]["KNOWN"]) == ("PASS", 1)
    assert report["baseline"] == {"known": 1, "stale": [], "expired": []}
    result.stdout.fnmatch_lines(["baseline: 1 known, 0 stale, 0 expired"])


def test_new_finding_fails_and_an_unmatched_entry_is_stale(pytester):
    baseline = write_baseline(pytester, HELO_220)
    with FaultServer("noop_replies_252") as server:
        result, report = run(pytester, server, f"--smtp-baseline={baseline}")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert [(f["check"], f["group"], f["reply_code"], f["verdict"])
            for f in report["findings"]] == [("reply_code_documented", "NOOP", 252, "FAIL")]
    assert report["baseline"]["stale"] == [HELO_220]
    result.stdout.fnmatch_lines([
        "baseline: 0 known, 1 stale, 0 expired",
        "  stale (not seen in this run): [[]reply_code_documented] HELO 220 (*BUG-1)"])


def test_entry_matches_only_its_own_check_command_and_code(pytester):
    other_code = {**HELO_220, "code": 250}
    other_command = {**HELO_220, "command": "EHLO"}
    baseline = write_baseline(pytester, other_code, other_command)
    with FaultServer("helo_replies_220") as server:
        result, report = run(pytester, server, f"--smtp-baseline={baseline}")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert report["findings"][0]["verdict"] == "FAIL"


def test_expired_entry_no_longer_suppresses(pytester):
    baseline = write_baseline(pytester, {**HELO_220, "expires": "2020-01-01"})
    with FaultServer("helo_replies_220") as server:
        result, report = run(pytester, server, f"--smtp-baseline={baseline}")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert report["baseline"]["expired"] == [{**HELO_220, "expires": "2020-01-01"}]
    result.stdout.fnmatch_lines(["  expired (no longer accepted): *expires 2020-01-01)"])


@pytest.mark.parametrize(("content", "message"), [
    ("{", "is not JSON"),
    ('{"entries": []}', 'expected {"format": 1'),
    ('{"format": 1, "entries": [{"check": "x", "command": "HELO"}]}', "entry 1: missing 'code'"),
    ('{"format": 1, "entries": [{"check": "x", "command": "HELO", "code": 1}]}',
     "a non-empty reason is required"),
    ('{"format": 1, "entries": [{"check": "x", "command": "HELO", "code": 1, "reason": "r",'
     ' "expires": "soon"}]}', "expires must be YYYY-MM-DD"),
])
def test_bad_baseline_is_a_one_line_error(tmp_path, content, message):
    path = tmp_path / "b.json"
    path.write_text(content)
    with pytest.raises(UsageError, match=message.replace("{", r"\{").replace("(", r"\(")):
        load(path)


def test_missing_baseline_is_a_usage_error(pytester):
    result = pytester.runpytest_subprocess(*SUITE, "--smtp-baseline=nowhere.json")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: smtp-conformance: cannot read baseline nowhere.json*"])


def test_entry_expiry_is_inclusive_of_its_day() -> None:
    entry = Entry("c", "HELO", 220, "r", date(2026, 1, 31))
    assert not entry.expired(date(2026, 1, 31))
    assert entry.expired(date(2026, 2, 1))
