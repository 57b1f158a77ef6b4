"""Verdicts, exit codes, the JSON report (against its schema), the summary, seeds and xdist."""

from __future__ import annotations

import json
import re
import shutil
import threading
import time
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import jsonschema
import pytest

from conformance.output.report import SCHEMA_PATH
from tests.fault_server import FaultServer

SUITE = ["--pyargs", "conformance.suite", "-p", "no:cacheprovider", "--smtp-timeout=0.5",
         "--smtp-deliver"]
SCHEMA = json.loads(SCHEMA_PATH.read_text())


def run_with_report(pytester: pytest.Pytester, *args: str, subprocess: bool = False
                    ) -> tuple[pytest.RunResult, dict[str, Any]]:
    path = pytester.path / "report.json"
    run = pytester.runpytest_subprocess if subprocess else pytester.runpytest
    result = run(*SUITE, f"--smtp-report={path}", *args)
    report = json.loads(path.read_text())
    jsonschema.validate(report, SCHEMA)
    return result, report


def test_conforming_server_passes_with_exit_0_and_a_valid_report(pytester):
    with FaultServer() as server:
        result, report = run_with_report(pytester, f"--server={server.address}")
    assert result.ret == pytest.ExitCode.OK
    assert (report["verdict"], report["exit_status"], report["findings"]) == ("PASS", 0, [])
    assert report["target"] == str(server.address)
    groups = report["coverage"]["groups"]
    assert all(groups[g]["exchanges"] > 0 for g in ("connect", "HELO", "RCPT", "received data"))
    assert groups["HELO"]["documented"] == [250, 421, 500, 501, 504, 521]
    result.stdout.fnmatch_lines(["verdict: PASS (conforms)*", "seed groups exercised: 17/17"])


def test_must_violation_fails_with_exit_1_and_is_reported(pytester):
    with FaultServer("helo_replies_220") as server:
        result, report = run_with_report(pytester, f"--server={server.address}")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert (report["verdict"], report["exit_status"]) == ("FAIL", 1)
    [finding] = report["findings"]
    assert finding["check"] == "reply_code_documented"
    assert (finding["level"], finding["verdict"]) == ("MUST", "FAIL")
    assert (finding["group"], finding["reply_code"]) == ("HELO", 220)
    # Any HELO line fails; which one the shrunk session ends with depends on the seed.
    assert finding["sent"].upper().startswith("HELO ")  # as escaped text, exactly in hex:
    assert bytes.fromhex(finding["sent_hex"]).decode().upper().startswith("HELO ")
    assert finding["documented"] == [250, 421, 500, 501, 504, 521]
    assert finding["transcript"][-1].endswith("S: 220 hello")  # the shrunk session
    result.stdout.fnmatch_lines(["verdict: FAIL *", "  FAIL reply_code_documented: 1"])


def test_should_violation_warns_and_passes_unless_strict(pytester):
    # Under rfc5321 the table is a SHOULD (RFC 5321 §4.3.1): 252 to NOOP is a warning.
    with FaultServer("noop_replies_252") as server:
        result, report = run_with_report(pytester, f"--server={server.address}",
                                         "--smtp-profile=rfc5321")
        assert result.ret == pytest.ExitCode.OK
        assert report["verdict"] == "WARN"
        assert {(f["check"], f["verdict"], f["group"], f["reply_code"])
                for f in report["findings"]} == {("reply_code_documented", "WARN", "NOOP", 252)}
        result.stdout.fnmatch_lines(["verdict: WARN *", "  WARN [[]reply_code_documented] 252*"])

        result, report = run_with_report(pytester, f"--server={server.address}",
                                         "--smtp-profile=rfc5321", "--smtp-strict")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert [(f["check"], f["verdict"]) for f in report["findings"]] == [
        ("reply_code_documented", "FAIL")]


def test_same_seed_gives_the_same_sessions(pytester):
    with FaultServer() as server:
        runs = [run_with_report(pytester, f"--server={server.address}",
                                "--hypothesis-seed=1234", "--smtp-examples=20")[1]
                for _ in range(2)]
    assert runs[0]["hypothesis"]["seed"] == "1234"
    assert runs[0]["coverage"] == runs[1]["coverage"]


def test_the_printed_rerun_line_reproduces_the_run_it_came_from(pytester):
    # No example database, no saved examples: the seed alone decides the sessions.
    with FaultServer() as server:
        first, report = run_with_report(pytester, f"--server={server.address}",
                                        "--smtp-examples=20")
        rerun = next(line for line in first.stdout.lines if "(rerun: " in line)
        option = rerun.split("(rerun: ", 1)[1].rstrip(")")
        _, again = run_with_report(pytester, f"--server={server.address}",
                                   "--smtp-examples=20", option)
    assert option == f"--hypothesis-seed={report['hypothesis']['seed']}"
    assert again["coverage"] == report["coverage"]


def test_the_run_prints_the_seed_it_chose(pytester):
    with FaultServer() as server:
        result = pytester.runpytest(*SUITE, f"--server={server.address}", "--smtp-examples=3")
    header = next(line for line in result.stdout.lines if line.startswith("smtp-conformance:"))
    seed = header.rsplit("hypothesis-seed ", 1)[1]
    assert seed.isdigit()
    result.stdout.fnmatch_lines([f"hypothesis-seed: {seed} (rerun: --hypothesis-seed={seed})"])


def _findings(report: dict[str, Any]) -> list[tuple[str, str, int | None, str]]:
    return [(f["check"], f["group"], f["reply_code"], f["verdict"]) for f in report["findings"]]


@pytest.mark.timeout(300)
def test_xdist_run_gives_one_merged_report_equal_to_a_serial_run(pytester):
    # A second item, as a user's own test reusing the fixtures: -n 2 runs one on each worker.
    pytester.makepyfile(test_users_own_run="""
        from hypothesis.stateful import run_state_machine_as_test

        def test_users_own_run(smtp_state_machine, smtp_config):
            run_state_machine_as_test(smtp_state_machine,
                                      settings=smtp_config.hypothesis_settings())
    """)
    with FaultServer("third_recipient_554") as server:
        args = (f"--server={server.address}", "--hypothesis-seed=7", "test_users_own_run.py")
        _, serial = run_with_report(pytester, *args, subprocess=True)
        result, parallel = run_with_report(pytester, *args, "-n", "2", subprocess=True)
    # The suite's item fails, and so does the user's own run, once, when its body has run.
    result.stdout.fnmatch_lines(["*2 workers*", "*2 failed in*"])
    assert parallel["exit_status"] == serial["exit_status"] == 1
    assert _findings(parallel) == _findings(serial) != []
    assert [f["occurrences"] for f in parallel["findings"]] == [
        f["occurrences"] for f in serial["findings"]]
    assert parallel["findings"][0]["occurrences"] >= 2  # from each item, merged


def test_report_path_is_written_even_when_its_directory_is_new(pytester):
    path: Path = pytester.path / "reports" / "nested" / "run.json"
    with FaultServer() as server:
        pytester.runpytest(*SUITE, f"--server={server.address}", "--smtp-examples=3",
                           f"--smtp-report={path}")
    jsonschema.validate(json.loads(path.read_text()), SCHEMA)


def test_junit_failure_names_the_check_and_carries_the_session(pytester):
    path = pytester.path / "junit.xml"
    with FaultServer("helo_replies_220") as server:
        pytester.runpytest(*SUITE, f"--server={server.address}", f"--junitxml={path}")
    [failure] = ElementTree.parse(path).getroot().iter("failure")
    assert failure.get("message", "").startswith(
        "[reply_code_documented] MUST: 220 is not documented for HELO")
    assert "Transcript:" in (failure.text or "")
    assert "python -m conformance replay" in (failure.text or "")
    properties = {p.get("name"): p.get("value")
                  for p in ElementTree.parse(path).getroot().iter("property")}
    assert properties == {"smtp_check": "reply_code_documented"}


def test_report_links_the_state_diagram_with_this_runs_counts(pytester):
    with FaultServer() as server:
        _, report = run_with_report(pytester, f"--server={server.address}",
                                    "--smtp-examples=20")
    dot = Path(report["diagram"]["dot"]).read_text()
    assert dot.startswith("digraph smtp_session {")
    helo = re.search(r'INIT -> READY \[label="HELO, EHLO \((\d+)\)"\]', dot)
    assert helo is not None
    assert int(helo.group(1)) > 0
    if shutil.which("dot") is None:
        assert report["diagram"]["svg"] is None  # Graphviz absent: DOT only
        return
    assert "<svg" in Path(report["diagram"]["svg"]).read_text()


def test_a_deviation_that_does_not_reproduce_still_fails_marked_intermittent(pytester):
    # The server answers 220 to its third HELO only: no replay shows it again, but the code
    # was on the wire, so it is graded by its level (only timing evidence is INCONCLUSIVE).
    with FaultServer("helo_220_once") as server:
        result, report = run_with_report(pytester, f"--server={server.address}")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert "Flaky" not in result.stdout.str()
    assert report["verdict"] == "FAIL"
    [finding] = report["findings"]
    assert (finding["check"], finding["verdict"], finding["intermittent"]) == (
        "reply_code_documented", "FAIL", True)
    assert finding["transcript"][-1].endswith("S: 220 hello, this once")  # the evidence
    result.stdout.fnmatch_lines(["*answered differently (intermittent)*", "verdict: FAIL *"])


# --- runs that do not finish -----------------------------------------------------------------

def stop_after(server: FaultServer, lines: int) -> threading.Thread:
    """Stop ``server`` (its port then refuses connections) once it has read ``lines``."""
    def watch() -> None:
        deadline = time.monotonic() + 60
        while len(server.received) < lines and time.monotonic() < deadline:
            time.sleep(0.01)
        server.__exit__(None, None, None)
    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def test_server_that_goes_away_mid_run_ends_it_with_exit_6_and_one_line(pytester):
    with FaultServer() as server:
        stopper = stop_after(server, 300)
        result, report = run_with_report(pytester, f"--server={server.address}",
                                         "--smtp-examples=1000")
        stopper.join()
    assert result.ret == 6
    [message] = report["errors"]
    assert message.startswith(f"the server stopped accepting connections during the run: "
                              f"cannot connect to {server.address}: ")
    assert (report["verdict"], report["exit_status"]) == ("INCOMPLETE", 6)
    result.stdout.fnmatch_lines([f"smtp-conformance: {message}",
                                 "verdict: INCOMPLETE (the run did not finish)*",
                                 f"  ERROR {message}"])
    assert "Traceback" not in result.stdout.str()
    assert "hypothesis.errors" not in result.stdout.str()


RAISES = '''
import pytest
from hypothesis.errors import FlakyStrategyDefinition


def test_raises(smtp_state_machine):
    raise {error}
'''


def test_server_that_answers_differently_on_replay_ends_the_run_with_one_line(pytester):
    pytester.makepyfile(RAISES.format(error='FlakyStrategyDefinition("Inconsistent data")'))
    with FaultServer() as server:
        result = pytester.runpytest("-p", "no:cacheprovider", f"--server={server.address}",
                                    f"--smtp-report={pytester.path / 'report.json'}")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    report = json.loads((pytester.path / "report.json").read_text())
    jsonschema.validate(report, SCHEMA)
    assert report["verdict"] == "INCOMPLETE"
    [error] = report["errors"]
    assert error.startswith("the server answered the same commands differently")
    result.stdout.fnmatch_lines([f"smtp-conformance: {error}", "verdict: INCOMPLETE *"])
    assert "Traceback" not in result.stdout.str()


def test_a_bug_of_ours_keeps_its_traceback_and_the_run_is_incomplete(pytester):
    pytester.makepyfile(RAISES.format(error='ValueError("boom")'))
    with FaultServer() as server:
        result = pytester.runpytest("-p", "no:cacheprovider", f"--server={server.address}")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*raise ValueError*", "verdict: INCOMPLETE *",
                                 "  ERROR the suite stopped: ValueError: boom"])


def test_a_skipped_test_using_the_fixtures_leaves_the_run_complete(pytester):
    pytester.makepyfile(RAISES.format(error='pytest.skip.Exception("not today")'))
    with FaultServer() as server:
        result = pytester.runpytest("-p", "no:cacheprovider", f"--server={server.address}")
    result.assert_outcomes(skipped=1)
    assert "INCOMPLETE" not in result.stdout.str()
