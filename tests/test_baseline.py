"""Baselines: known deviations pass as KNOWN, new ones fail, stale and expired ones are named."""

from __future__ import annotations

import json
import socket
import threading
from datetime import date
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from conformance.checks import AFTER_ERRORS, THE_SESSION
from conformance.checks.grading import Verdict
from conformance.engine.baseline import Baseline, Entry, from_run, load, write
from conformance.engine.record import FindingRecord, RunRecord
from conformance.output.report import SCHEMA_PATH
from conformance.protocol.errors import UsageError
from conformance.protocol.levels import Level
from conformance.protocol.tables import GROUPS
from tests.fault_server import FaultServer
from tests.scripted_server import ScriptedServer, read_line

SUITE = ["--pyargs", "conformance.suite", "-p", "no:cacheprovider", "--smtp-timeout=0.5",
         "--smtp-deliver"]
SCHEMA = json.loads(SCHEMA_PATH.read_text())
HELO_220 = {"check": "reply_code_documented", "command": "HELO", "code": 220,
            "reason": "our HELO says 220, tracked in BUG-1", "expires": None}


def run(pytester: pytest.Pytester, server: FaultServer | ScriptedServer, *args: str
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
        result, survey = run(pytester, server, f"--smtp-baseline-write={path}")
        assert result.ret == pytest.ExitCode.OK  # survey mode fails nothing
        assert survey["verdict"] == "SURVEY"  # and says so, not FAIL beside exit 0
        result.stdout.fnmatch_lines(["verdict: SURVEY (nothing fails*"])
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


# --- one entry per behaviour: "*" for checks about the session -------------------------------

TODAY = date(2026, 6, 1)
CLOSES = Entry("no_silent_close", "*", 0, "we close after 3 errors, see BUG-2")
HELO = Entry("reply_code_documented", "HELO", 220, "our HELO says 220, tracked in BUG-1")


def finding(check: str, group: str, code: int | None, verdict: Verdict = Verdict.WARN,
            cause: str = "") -> FindingRecord:
    """A record met on ``group``; ``cause``: its identity's, where the check names one."""
    return FindingRecord(
        check=check, level=Level.SHOULD, verdict=verdict, citation="c", complaint="x",
        profile="seed", state="READY", group=group, sent=None, reply_code=code,
        reply_lines=[], error=None, documented=[], also=[], transcript=[], cause=cause)


def record_of(*findings: FindingRecord) -> RunRecord:
    record = RunRecord()
    for each in findings:
        record.note(each)
    return record


def test_star_entry_accepts_its_check_and_code_on_any_command():
    known = Baseline((CLOSES,)).known(TODAY)
    for group in ("HELO", "HELP", "received data", "unrecognised"):
        assert ("no_silent_close", group, 0) in known
    assert ("no_silent_close", "HELP", 421) not in known
    assert ("reply_within_timeout", "HELP", 0) not in known
    assert isinstance(known, frozenset)


def test_entry_for_one_command_still_matches_only_that_command():
    known = Baseline((HELO,)).known(TODAY)
    assert ("reply_code_documented", "HELO", 220) in known
    assert ("reply_code_documented", "EHLO", 220) not in known
    assert ("reply_code_documented", "*", 220) not in known


def test_expired_star_entry_matches_nothing():
    expired = Entry("no_silent_close", "*", 0, "r", date(2026, 1, 1))
    assert ("no_silent_close", "HELP", 0) not in Baseline((expired,)).known(TODAY)


def test_written_baseline_has_one_entry_per_behaviour_its_identity():
    record = record_of(*(finding("no_silent_close", group, None, cause=AFTER_ERRORS)
                         for group in GROUPS[1:]),
                       finding("reply_within_timeout", "EXPN", None, Verdict.FAIL, THE_SESSION),
                       finding("reply_within_timeout", "HELP", None, Verdict.FAIL, THE_SESSION),
                       finding("reply_code_documented", "VRFY", 252),
                       finding("reply_code_documented", "NOOP", 252))
    written = from_run(record, TODAY)
    assert sorted(e.key for e in written.entries) == [
        ("no_silent_close", AFTER_ERRORS, 0), ("reply_code_documented", "NOOP", 252),
        ("reply_code_documented", "VRFY", 252), ("reply_within_timeout", THE_SESSION, 0)]


def test_rewritten_baseline_keeps_the_reason_of_the_entry_that_accepted_the_finding():
    old = Entry("no_silent_close", "*", 0, "old reason", date(2027, 1, 1))
    record = record_of(finding("no_silent_close", "HELP", None, Verdict.KNOWN, AFTER_ERRORS),
                       finding("no_silent_close", "NOOP", None, Verdict.KNOWN, AFTER_ERRORS))
    [entry] = from_run(record, TODAY, Baseline((old,))).entries
    assert entry == Entry("no_silent_close", AFTER_ERRORS, 0, "old reason", date(2027, 1, 1))


def test_star_entry_is_stale_only_when_no_command_met_it():
    baseline = Baseline((CLOSES,))
    known = finding("no_silent_close", "VRFY", None, Verdict.KNOWN)
    met = baseline.status(record_of(known), TODAY)
    assert (met.known, met.stale) == (1, [])
    unmet = baseline.status(record_of(finding("no_silent_close", "VRFY", 421)), TODAY)
    assert unmet.stale == [CLOSES]
    assert "[no_silent_close] any command no reply" in unmet.lines()[1]


def test_star_entry_loads_from_the_same_file_format(tmp_path):
    path = tmp_path / "b.json"
    write(Baseline((CLOSES, HELO)), path)
    assert json.loads(path.read_text())["entries"][0]["command"] == "*"
    assert load(path).entries == (CLOSES, HELO)


def closes_after_three_errors(conn: socket.socket, stop: threading.Event) -> None:
    """Answers every command 500, and after the third closes without a word."""
    conn.sendall(b"220 mx.closes.test ESMTP\r\n")
    for _ in range(3):
        if not read_line(conn):
            return
        conn.sendall(b"500 Command unrecognised\r\n")
    read_line(conn)


def test_server_that_closes_after_errors_needs_no_baseline_entry_for_it(pytester):
    """Giving up after repeated errors is a note (RFC 5321 §7.8), one behaviour however many
    commands it closed on, and not a failure a baseline must excuse."""
    path = pytester.path / "written.json"
    seed = "--hypothesis-seed=0"  # the same sessions both times, so the same findings
    with ScriptedServer(closes_after_three_errors) as server:
        result, report = run(pytester, server, f"--smtp-baseline-write={path}", seed)
        closes = [f for f in report["findings"] if f["check"] == "no_silent_close"]
        assert [(f["cause"], f["verdict"]) for f in closes] == [(AFTER_ERRORS, "INFO")]
        assert len(closes[0]["seen"]) > 1, closes  # it closed on several commands
        entries = json.loads(path.read_text())["entries"]
        assert entries  # (this scripted server breaks other rules: those are entries)
        assert "no_silent_close" not in {e["check"] for e in entries}

        result, report = run(pytester, server, f"--smtp-baseline={path}", seed)
    assert result.ret == pytest.ExitCode.OK
    assert {f["verdict"] for f in report["findings"]} == {"KNOWN", "INFO"}
    assert report["baseline"]["stale"] == []
