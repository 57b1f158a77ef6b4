"""Runs end to end: several servers in one pytest run, one run split across pytest-xdist
workers, and an example database shared between runs."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis.database import DirectoryBasedExampleDatabase

from conformance.engine import example_db
from conformance.engine.record import RunRecord
from conformance.engine.settings import RunSettings
from conformance.output.report import SCHEMA_PATH
from conformance.protocol.errors import EXIT_UNREACHABLE
from conformance.protocol.tables import PROFILES
from conformance.search.runner import run
from conformance.testing.reference_server import ReferenceServer
from tests.fault_server import FaultServer
from tests.test_report import stop_after

# The default timeout, not test_report's 0.5 s: these runs are compared with each other, and
# replies slowed by a loaded machine must not make one of them adapt or warn.
SUITE = ["--pyargs", "conformance.suite", "-p", "no:cacheprovider", "--smtp-deliver"]
SCHEMA = json.loads(SCHEMA_PATH.read_text())


def report_of(pytester: pytest.Pytester, name: str = "report.json") -> dict[str, Any]:
    report: dict[str, Any] = json.loads((pytester.path / name).read_text())
    jsonschema.validate(report, SCHEMA)
    return report


def keys(findings: list[dict[str, Any]]) -> set[tuple[str, str, int | None, str]]:
    return {(f["check"], f["group"], f["reply_code"], f["verdict"]) for f in findings}


HELO_220 = ("reply_code_documented", "HELO", 220, "FAIL")
RCPT_554 = ("reply_code_documented", "RCPT", 554, "FAIL")


# --- several servers -------------------------------------------------------------------------

@pytest.mark.timeout(300)
def test_each_server_is_a_test_of_its_own_with_its_own_verdict(pytester):
    with ReferenceServer(profile=PROFILES["seed"]) as reference, \
            FaultServer("helo_replies_220") as faulty:
        clean = reference.address
        result = pytester.runpytest(*SUITE, f"--server={clean}", f"--server={faulty.address}",
                                    "--smtp-examples=30",
                                    f"--smtp-report={pytester.path / 'report.json'}")
    result.assert_outcomes(passed=1, failed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    passed, _, failed = result.reprec.listoutcomes()
    assert [r.nodeid.rsplit("::", 1)[1] for r in passed] == [
        f"test_server_conforms[{clean}]"]
    assert [r.nodeid.rsplit("::", 1)[1] for r in failed] == [
        f"test_server_conforms[{faulty.address}]"]
    result.stdout.fnmatch_lines([f"*= smtp-conformance: {clean}, profile seed =*",
                                 "verdict: PASS (conforms)*",
                                 f"*= smtp-conformance: {faulty.address}, profile seed =*",
                                 "verdict: FAIL *", "  FAIL reply_code_documented: 1"])
    report = report_of(pytester)
    assert report["target"] == f"{clean}, {faulty.address}"
    assert (report["verdict"], report["exit_status"]) == ("FAIL", 1)
    assert keys(report["findings"]) == {HELO_220}
    runs = {run["target"]: run for run in report["runs"]}
    assert list(runs) == [str(clean), str(faulty.address)]
    assert (runs[str(clean)]["verdict"], runs[str(clean)]["exit_status"],
            runs[str(clean)]["findings"]) == ("PASS", 0, [])
    assert (runs[str(faulty.address)]["verdict"], runs[str(faulty.address)]["exit_status"]) \
        == ("FAIL", 1)
    assert keys(runs[str(faulty.address)]["findings"]) == {HELO_220}
    assert runs[str(clean)]["coverage"]["groups"]["HELO"]["exchanges"] > 0


def test_one_server_keeps_the_report_of_one_run(pytester):
    with FaultServer() as server:
        result = pytester.runpytest(*SUITE, f"--server={server.address}", "--smtp-examples=3",
                                    f"--smtp-report={pytester.path / 'report.json'}")
    result.assert_outcomes(passed=1)
    assert "test_server_conforms[" not in result.stdout.str()  # no parameter: the id as ever
    report = report_of(pytester)
    assert "runs" not in report
    assert report["target"] == str(server.address)


@pytest.mark.parametrize("xdist", [[], ["-p", "xdist", "-n", "2"]], ids=["serial", "xdist"])
def test_a_server_out_of_reach_among_several_errors_alone_and_exits_6(pytester, xdist):
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    with FaultServer() as server:
        result = pytester.runpytest_subprocess(
            *SUITE, f"--server=127.0.0.1:{port}", f"--server={server.address}",
            "--smtp-examples=3", *xdist, f"--smtp-report={pytester.path / 'report.json'}")
    assert result.ret == EXIT_UNREACHABLE
    result.stdout.fnmatch_lines([f"*smtp-conformance: cannot connect to 127.0.0.1:{port}*"])
    assert "Traceback" not in result.stdout.str()
    result.assert_outcomes(passed=1, errors=1)
    runs = {run["target"]: run for run in report_of(pytester)["runs"]}
    assert (runs[f"127.0.0.1:{port}"]["verdict"], runs[f"127.0.0.1:{port}"]["exit_status"]) \
        == ("UNREACHABLE", EXIT_UNREACHABLE)
    assert (runs[str(server.address)]["verdict"], runs[str(server.address)]["exit_status"]) \
        == ("PASS", 0)


@pytest.mark.timeout(300)
def test_a_server_that_goes_away_mid_run_stops_only_its_own_test(pytester):
    with FaultServer() as leaving, FaultServer() as staying:
        stopper = stop_after(leaving, 300)
        result = pytester.runpytest(*SUITE, f"--server={leaving.address}",
                                    f"--server={staying.address}", "--smtp-examples=1000",
                                    "--smtp-budget=20",
                                    f"--smtp-report={pytester.path / 'report.json'}")
        stopper.join()
    assert result.ret == EXIT_UNREACHABLE
    result.assert_outcomes(passed=1, failed=1)
    runs = {run["target"]: run for run in report_of(pytester)["runs"]}
    assert (runs[str(leaving.address)]["verdict"], runs[str(leaving.address)]["exit_status"]) \
        == ("INCOMPLETE", EXIT_UNREACHABLE)
    assert runs[str(leaving.address)]["errors"][0].startswith(
        "the server stopped accepting connections during the run")
    assert (runs[str(staying.address)]["verdict"], runs[str(staying.address)]["exit_status"]) \
        == ("PASS", 0)


@pytest.mark.parametrize(("option", "message"), [
    ("--server=127.0.0.1:2525,", "--server was given an empty value"),
    ("--server=127.0.0.1:2525,[::1]:25,127.0.0.1:2525", "names the same server twice"),
    ("--smtp-shards=0", "--smtp-shards must be auto or a number from 1 to 256"),
    ("--smtp-shards=many", "--smtp-shards must be auto or a number"),
    ("--smtp-example-db=/dev/null", "--smtp-example-db /dev/null: is not a directory"),
])
def test_bad_new_option_is_a_one_line_usage_error(pytester, option, message):
    result = pytester.runpytest_subprocess(*SUITE, "--co", option)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: smtp-conformance: *{message}*"])
    assert "Traceback" not in result.stderr.str()


def test_servers_from_the_environment_are_comma_or_space_separated(pytester, monkeypatch):
    monkeypatch.setenv("SMTP_CONFORMANCE_SERVER", "127.0.0.1:2525, [::1]:2526")
    result = pytester.runpytest(*SUITE, "--co")
    result.stdout.fnmatch_lines([
        "smtp-conformance: target 127.0.0.1:2525, [[]::1]:2526; *",
        "*test_server_conforms[[]127.0.0.1:2525]*",
        "*test_server_conforms[[][[]::1]:2526]*"])


# --- pytest-xdist ----------------------------------------------------------------------------

def shard_notes(report: dict[str, Any]) -> list[str]:
    return sorted(note for note in report["notes"] if note.startswith("shard "))


@pytest.mark.timeout(300)
def test_shards_share_a_run_across_xdist_workers_each_with_its_own_seed(pytester):
    args = ["--hypothesis-seed=41", "--smtp-examples=20", "--smtp-shards=2"]
    with FaultServer() as server:
        result = pytester.runpytest_subprocess(
            *SUITE, f"--server={server.address}", *args, "-p", "xdist", "-n", "2",
            f"--smtp-report={pytester.path / 'parallel.json'}")
        pytester.runpytest_subprocess(*SUITE, f"--server={server.address}", *args,
                                      f"--smtp-report={pytester.path / 'serial.json'}")
    result.stdout.fnmatch_lines(["*2 workers*", "*2 passed*"])
    parallel, serial = report_of(pytester, "parallel.json"), report_of(pytester, "serial.json")
    # Each shard ran its half of the examples under a seed of its own, and both are in the
    # one report the controller wrote.
    assert shard_notes(parallel) == [
        "shard 1 of 2: hypothesis-seed 41, 10 examples",
        "shard 2 of 2: hypothesis-seed 42, 10 examples"]
    assert parallel["verdict"] == "PASS"
    # Which worker ran which shard does not matter: the same sessions as run one by one.
    assert parallel["coverage"] == serial["coverage"]
    assert shard_notes(serial) == shard_notes(parallel)


@pytest.mark.timeout(300)
def test_shards_under_xdist_find_a_fault_and_fail(pytester):
    with FaultServer("helo_replies_220") as server:
        result = pytester.runpytest_subprocess(
            *SUITE, f"--server={server.address}", "--smtp-examples=20", "--smtp-shards=auto",
            "-p", "xdist", "-n", "2", f"--smtp-report={pytester.path / 'report.json'}")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*2 workers*", "*2 failed*"])
    report = report_of(pytester)
    assert keys(report["findings"]) == {HELO_220}
    assert report["findings"][0]["occurrences"] >= 2  # from each shard, merged
    assert len(shard_notes(report)) == 2


# --- the example database --------------------------------------------------------------------

@pytest.mark.timeout(300)
def test_example_database_replays_a_failure_saved_by_an_earlier_run_first(pytester):
    db = pytester.path / "example-db"
    with FaultServer("third_recipient_554") as server:
        first = pytester.runpytest(*SUITE, f"--server={server.address}",
                                   "--hypothesis-seed=1", f"--smtp-example-db={db}",
                                   f"--smtp-report={pytester.path / 'first.json'}")
        assert first.ret == pytest.ExitCode.TESTS_FAILED
        assert RCPT_554 in keys(report_of(pytester, "first.json")["findings"])
        saved = example_db.saved(DirectoryBasedExampleDatabase(db), "seed")
        assert [script.check for script in saved] == ["reply_code_documented"]
        # With it, the saved session is replayed first (before the systematic phase, which
        # would find it too) and the failure is found again.
        tiny = ["--hypothesis-seed=2", "--smtp-examples=1"]
        second = pytester.runpytest(*SUITE, f"--server={server.address}", *tiny,
                                    f"--smtp-example-db={db}",
                                    f"--smtp-report={pytester.path / 'second.json'}")
    assert second.ret == pytest.ExitCode.TESTS_FAILED
    report = report_of(pytester, "second.json")
    assert keys(report["findings"]) == {RCPT_554}
    assert report["findings"][0]["phase"] == "example database"
    assert f"example database {db}: 1 saved session(s) replayed first, 1 showed a finding " \
           "again" in report["notes"]
    second.stdout.fnmatch_lines(["[[]reply_code_documented] MUST: 554 is not documented*"])


@pytest.mark.timeout(300)
def test_a_saved_session_that_shows_nothing_any_more_leaves_the_database(pytester):
    db = pytester.path / "example-db"
    with FaultServer("helo_replies_220") as server:
        pytester.runpytest(*SUITE, f"--server={server.address}", "--hypothesis-seed=1",
                           f"--smtp-example-db={db}")
    assert example_db.saved(DirectoryBasedExampleDatabase(db), "seed")
    with FaultServer() as fixed:  # the bug fixed
        result = pytester.runpytest(*SUITE, f"--server={fixed.address}", "--smtp-examples=1",
                                    f"--smtp-example-db={db}",
                                    f"--smtp-report={pytester.path / 'report.json'}")
    result.assert_outcomes(passed=1)
    assert f"example database {db}: 1 saved session(s) replayed first, 0 showed a finding " \
           "again" in report_of(pytester)["notes"]
    assert example_db.saved(DirectoryBasedExampleDatabase(db), "seed") == []


def test_example_database_keeps_scripts_by_profile_and_check(tmp_path: Path):
    from conformance.engine.replay import Script
    from conformance.protocol.commands import Step

    db = DirectoryBasedExampleDatabase(tmp_path)
    script = Script("seed", "reply_code_documented",
                    (Step("HELO", b"HELO x\xff\r\n", True), Step("NOOP", b"NOOP\r\n", False)))
    example_db.keep(db, script)
    example_db.keep(db, script)  # once only
    assert example_db.saved(db, "seed") == [script]  # every octet survives
    assert example_db.saved(db, "rfc5321") == []
    db.save(example_db.key("seed", "reply_well_formed"), b"not a script")
    assert example_db.saved(db, "seed") == [script]  # what is not ours is skipped
    example_db.forget(db, script)
    assert example_db.saved(db, "seed") == []


# --- the engine, without pytest ----------------------------------------------------------------

@pytest.mark.timeout(120)
def test_a_spent_budget_ends_the_run_with_a_note_never_as_flaky_data(tmp_path):
    # Stopped mid-example, Hypothesis could see a shorter draw than an earlier example with
    # the same start and raise FlakyStrategyDefinition: seed 1 did, against this server.
    with FaultServer() as server:
        settings = RunSettings(server.address, PROFILES["seed"], 5.0, 1000, 25, "1000",
                               seconds=20, deliver=True, seed="1")
        record = RunRecord()
        run(settings, server.address, record, tmp_path)
    assert record.errors == []
    assert any(note.startswith("the run's time budget was spent after ")
               for note in record.notes), record.notes
