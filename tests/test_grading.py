"""Grading and the finished run's outputs, as units: the one level-to-verdict rule, the
baseline, --smtp-strict and survey mode; the header, the summary and the exit status."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from conformance.checks.grading import (
    DECIDING,
    FindingKey,
    Policy,
    RunVerdict,
    Verdict,
    grade,
    judge_run,
    worst,
)
from conformance.engine.address import ServerAddress
from conformance.engine.failures import RunFailed
from conformance.engine.outcome import exit_status
from conformance.engine.record import FindingRecord, RunError, RunRecord, Runs
from conformance.engine.settings import BUDGETS, RunSettings
from conformance.output import summary
from conformance.output.report import SCHEMA_PATH, summary_lines
from conformance.protocol.errors import EXIT_UNREACHABLE
from conformance.protocol.levels import Level
from conformance.protocol.tables import get_profile


@pytest.mark.parametrize(("level", "strict", "verdict"), [
    (Level.MUST, False, Verdict.FAIL), (Level.MUST, True, Verdict.FAIL),
    (Level.SHOULD, False, Verdict.WARN), (Level.SHOULD, True, Verdict.FAIL),
    (Level.INFO, False, Verdict.INFO), (Level.INFO, True, Verdict.INFO),
])
def test_a_level_grades_to_one_verdict(level, strict, verdict):
    assert grade(level, strict=strict) is verdict


KEY = FindingKey("reply_code_documented", "MUST", "HELO", 220)


def test_the_baseline_makes_a_finding_known_whatever_its_level():
    known = Policy(known=frozenset({KEY.baseline_key}))
    assert known.verdict_for(KEY) is Verdict.KNOWN
    assert Policy().verdict_for(KEY) is Verdict.FAIL
    # Another code of the same check and command is another behaviour: not covered.
    assert known.verdict_for(KEY._replace(code=250)) is Verdict.FAIL
    assert not known.fails(Verdict.KNOWN)


def test_strict_fails_should_findings_and_survey_fails_none():
    should = KEY._replace(level="SHOULD")
    assert Policy().verdict_for(should) is Verdict.WARN
    assert Policy(strict=True).verdict_for(should) is Verdict.FAIL
    assert Policy().fails(Verdict.FAIL)
    assert not Policy(survey=True).fails(Verdict.FAIL)
    assert not any(Policy().fails(v) for v in Verdict if v is not Verdict.FAIL)


def record_of(*verdicts: Verdict, errors: tuple[RunError, ...] = ()) -> RunRecord:
    record = RunRecord(errors=list(errors))
    for n, verdict in enumerate(verdicts):
        record.note(FindingRecord(
            check="reply_code_documented", level=Level.MUST, verdict=verdict, citation="c",
            complaint="x", profile="seed", state="INIT", group=f"G{n}", sent=None,
            reply_code=220, reply_lines=[], error=None, documented=[], also=[],
            transcript=[]))
    return record


def test_the_exit_status_follows_the_worst_verdict_and_the_errors():
    assert exit_status(record_of(), Policy()) == 0
    assert exit_status(record_of(Verdict.WARN, Verdict.KNOWN, Verdict.INFO), Policy()) == 0
    assert exit_status(record_of(Verdict.WARN, Verdict.FAIL), Policy()) == 1
    assert exit_status(record_of(Verdict.FAIL), Policy(survey=True)) == 0
    assert exit_status(record_of(errors=(RunError("stopped"),)), Policy()) == 1
    gone = RunError("cannot connect", unreachable=True)
    assert exit_status(record_of(Verdict.FAIL, errors=(gone,)), Policy()) == EXIT_UNREACHABLE


def settings(**given: object) -> RunSettings:
    examples, steps = BUDGETS["fast"]
    values: dict[str, object] = {"server": ServerAddress("127.0.0.1", 2525),
                                 "servers": (ServerAddress("127.0.0.1", 2525),),
                                 "profile": get_profile("seed"), "timeout": 5.0,
                                 "examples": examples, "steps": steps, "budget_name": "fast",
                                 "seed": "7", "today": date(2026, 12, 3), **given}
    return RunSettings(**values)  # type: ignore[arg-type]


def test_the_header_says_everything_that_decides_what_is_sent():
    line = summary.header(settings(strict=True, rate=10.0, relay_check=True))
    assert line == ("smtp-conformance: target 127.0.0.1:2525; profile seed (MUST); timeout 5s; "
                    "examples fast (60 x 25 steps); budget 120s; hypothesis-seed 7; strict; "
                    "safe mode (messages are not completed); relay check; "
                    "at most 10 commands/s")
    embedded = summary.header(settings(server=None, servers=()))
    assert "target embedded reference server" in embedded
    assert "safe mode" not in embedded  # the embedded server keeps nothing: messages go


class Lines:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def write_sep(self, sep: str, title: str) -> None:
        self.lines.append(f"{sep * 3} {title}")

    def write_line(self, line: str) -> None:
        self.lines.append(line)


def test_the_summary_is_per_run_then_the_seed_and_nothing_when_nothing_ran(tmp_path: Path):
    runs = Runs()
    out = Lines()
    summary.write_summary(out, settings(), runs, None)
    assert out.lines == []  # the suite did not run
    runs.add("127.0.0.1:2525", record_of(Verdict.FAIL))
    summary.write_summary(out, settings(report=tmp_path / "r.json"), runs, None)
    assert out.lines[0] == "=== smtp-conformance: profile seed"
    assert out.lines[1].startswith("verdict: FAIL")
    assert out.lines[-2:] == ["hypothesis-seed: 7 (rerun: --hypothesis-seed=7)",
                              f"report: {tmp_path / 'r.json'}"]


def test_finish_writes_the_report_and_keeps_the_exit_status_but_for_an_unreachable_server(
        tmp_path: Path):
    report = tmp_path / "report.json"
    runs = Runs()
    runs.add("127.0.0.1:2525", record_of(Verdict.FAIL))
    started = datetime(2026, 12, 3, tzinfo=UTC)
    assert summary.finish(settings(report=report), runs, started, 1).exit_status == 1
    written = json.loads(report.read_text())
    assert (written["verdict"], written["exit_status"]) == ("FAIL", 1)
    runs.add("127.0.0.1:2526", RunRecord(errors=[RunError("gone", unreachable=True)]))
    assert summary.finish(settings(), runs, started, 1).exit_status == EXIT_UNREACHABLE


def test_junit_properties_name_each_failing_check():
    failed = RunFailed(list(record_of(Verdict.FAIL, Verdict.FAIL).findings.values()))
    assert summary.junit_properties(failed) == [("smtp_check", "reply_code_documented")] * 2


def test_the_verdicts_are_ordered_worst_first_once():
    assert [v.rank for v in Verdict] == list(range(len(Verdict)))
    assert worst([Verdict.INFO, Verdict.KNOWN]) is Verdict.KNOWN
    assert worst([Verdict.INFO, Verdict.INCONCLUSIVE, Verdict.WARN]) is Verdict.WARN
    assert worst([]) is None
    # What decides a run's verdict comes before what never does.
    assert list(Verdict)[:len(DECIDING)] == list(DECIDING)


@pytest.mark.parametrize(("verdicts", "ended", "outcome"), [
    ((), {}, (RunVerdict.PASS, 0)),
    ((Verdict.INFO, Verdict.KNOWN), {}, (RunVerdict.PASS, 0)),
    ((Verdict.INFO, Verdict.INCONCLUSIVE), {}, (RunVerdict.INCONCLUSIVE, 0)),
    ((Verdict.INCONCLUSIVE, Verdict.WARN), {}, (RunVerdict.WARN, 0)),
    ((Verdict.WARN, Verdict.FAIL), {}, (RunVerdict.FAIL, 1)),
    ((Verdict.FAIL,), {"survey": True}, (RunVerdict.SURVEY, 0)),
    ((Verdict.FAIL,), {"survey": True, "stopped": True}, (RunVerdict.INCOMPLETE, 1)),
    ((), {"stopped": True}, (RunVerdict.INCOMPLETE, 1)),
    ((Verdict.FAIL,), {"stopped": True, "lost": True}, (RunVerdict.INCOMPLETE, EXIT_UNREACHABLE)),
    ((), {"stopped": True, "lost": True, "tested": False},
     (RunVerdict.UNREACHABLE, EXIT_UNREACHABLE)),
])
def test_a_run_is_judged_once_by_its_verdicts_and_how_it_ended(verdicts, ended, outcome):
    assert judge_run(verdicts, **ended) == outcome
    assert judge_run(verdicts, **ended).verdict.decided == (
        outcome[0] not in (RunVerdict.INCOMPLETE, RunVerdict.UNREACHABLE))


def test_a_record_is_judged_by_the_same_rule():
    gone = RunError("cannot connect", unreachable=True)
    assert record_of(errors=(gone,)).outcome() == (RunVerdict.UNREACHABLE, EXIT_UNREACHABLE)
    assert record_of(Verdict.WARN, errors=(gone,)).outcome() == (
        RunVerdict.INCOMPLETE, EXIT_UNREACHABLE)  # something was tested before it went
    assert record_of(Verdict.WARN).outcome() == (RunVerdict.WARN, 0)


def test_the_reports_verdicts_are_the_run_verdicts():
    schema = json.loads(SCHEMA_PATH.read_text())
    # ERROR is the matrix's: a run there that left no report to judge.
    assert set(schema["properties"]["verdict"]["enum"]) == {str(v) for v in RunVerdict} - {"ERROR"}
    assert schema["properties"]["counts"]["required"] == [str(v) for v in Verdict]


def test_the_summary_line_names_the_run_verdict_and_counts_in_severity_order():
    profile = get_profile("seed")
    [first, *_] = summary_lines(record_of(Verdict.INFO, Verdict.WARN), profile)
    assert first == "verdict: WARN  (0 FAIL, 1 WARN, 0 INCONCLUSIVE, 0 KNOWN, 1 INFO)"
    [first, *_] = summary_lines(record_of(Verdict.FAIL), profile, survey=True)
    assert first.startswith("verdict: SURVEY (nothing fails")
    gone = RunError("cannot connect", unreachable=True)
    [first, *_] = summary_lines(record_of(errors=(gone,)), profile)
    assert first.startswith("verdict: UNREACHABLE (no connection could be made")
