"""Option values become run settings without pytest: defaults, several servers, shards, and a
one-line UsageError for each bad value; and the settings of each run and shard."""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

import pytest
import trustme

from conformance.checks.grading import Verdict
from conformance.engine.address import ServerAddress
from conformance.engine.outcome import exit_status
from conformance.engine.record import FindingRecord, RunError, RunRecord, Runs
from conformance.engine.settings import EMBEDDED, RunSettings
from conformance.options import OPTIONS, Option, choose_seed, parse
from conformance.output.summary import report
from conformance.protocol.credentials import EMBEDDED_CREDENTIALS, Credentials
from conformance.protocol.errors import UsageError
from conformance.protocol.levels import Level

FAILURES = Path("failures")


def settings(values: Mapping[str, str] | None = None, *, seed: str = "7",
             workers: int = 1) -> RunSettings:
    given = dict(values or {})
    assert set(given) <= {o.name for o in OPTIONS}

    def lookup(option: Option) -> str | None:
        return given.get(option.name)
    return parse(lookup, seed=seed, workers=workers, failures_dir=FAILURES)


def test_defaults_test_the_embedded_server_in_one_run():
    suite = settings()
    assert (suite.server, suite.servers, suite.targets) == (None, (), (None,))
    assert (suite.profile.name, suite.examples, suite.shards) == ("seed", 60, 1)
    assert (suite.failures_dir, suite.example_db, suite.seed) == (FAILURES, None, "7")


@pytest.mark.parametrize("text", ["127.0.0.1:1,127.0.0.1:2", "127.0.0.1:1 127.0.0.1:2",
                                  " 127.0.0.1:1,\n127.0.0.1:2 "])
def test_several_servers_are_comma_or_space_separated_in_order(text):
    suite = settings({"--server": text})
    assert suite.servers == (ServerAddress("127.0.0.1", 1), ServerAddress("127.0.0.1", 2))
    assert suite.server == ServerAddress("127.0.0.1", 1)


@pytest.mark.parametrize(("values", "message"), [
    ({"--server": ""}, "--server was given an empty value"),
    ({"--server": "127.0.0.1:1,,127.0.0.1:2"}, "--server was given an empty value"),
    ({"--server": "127.0.0.1:1 127.0.0.1:1"}, "names the same server twice"),
    ({"--smtp-shards": "0"}, "--smtp-shards must be auto or a number from 1 to 256"),
    ({"--smtp-shards": "257"}, "--smtp-shards must be auto or a number from 1 to 256"),
    ({"--smtp-examples": "0"}, "--smtp-examples must be fast, thorough or a positive number"),
    ({"--smtp-timeout": "nan"}, "--smtp-timeout must be seconds"),
    ({"--smtp-strict": "maybe"}, "--smtp-strict must be true or false"),
    ({"--smtp-profile": "rfc9999"}, "unknown SMTP profile"),
    ({"--smtp-tls-cafile": "/nonexistent/ca.pem"}, "is not a readable PEM file"),
    ({"--smtp-tls-cafile": __file__}, "is not a readable PEM file"),
    ({"--smtp-tls-server-name": "not a name"}, "must be a domain name or an IP address"),
    ({"--smtp-tls-verify": "sometimes"}, "--smtp-tls-verify must be true or false"),
    ({"--smtp-auth-user": "someone"}, "go together"),
    ({"--smtp-auth-password": "secret"}, "go together"),
    ({"--smtp-auth-user": "a\nb", "--smtp-auth-password": "c"}, "cannot hold NUL, CR or LF"),
])
def test_a_bad_value_is_a_one_line_usage_error(values, message):
    with pytest.raises(UsageError, match=message) as raised:
        settings(values)
    assert "\n" not in str(raised.value)


def test_tls_and_auth_options_become_settings(tmp_path):
    ca = tmp_path / "ca.pem"
    trustme.CA().cert_pem.write_to_path(str(ca))
    suite = settings({"--server": "127.0.0.1:2525", "--smtp-tls-cafile": str(ca),
                      "--smtp-auth-user": "u", "--smtp-auth-password": "s3cret"})
    assert (suite.tls_verify, suite.tls_cafile) == (True, ca)
    sessions = suite.session(ServerAddress("127.0.0.1", 2525))
    assert (sessions.tls_context.check_hostname, sessions.tls_server_name) == \
        (True, "127.0.0.1")
    assert suite.credentials == Credentials("u", "s3cret")
    assert "s3cret" not in repr(suite)
    # By default: any certificate, and the embedded server's own credentials for AUTH.
    plain = settings()
    assert plain.session(ServerAddress("127.0.0.1", 25)).tls_context.verify_mode == \
        ssl.CERT_NONE
    assert plain.credentials is None
    assert plain.for_run(None).credentials == EMBEDDED_CREDENTIALS
    assert settings({"--server": "127.0.0.1:2525"}).for_run(
        ServerAddress("127.0.0.1", 2525)).credentials is None


def test_shards_auto_is_one_per_xdist_worker():
    assert settings({"--smtp-shards": "auto"}, workers=4).shards == 4
    assert settings({"--smtp-shards": "auto"}).shards == 1
    assert settings({"--smtp-shards": "3"}, workers=4).shards == 3


def test_each_shard_has_its_share_of_examples_and_a_seed_of_its_own():
    suite = settings({"--smtp-shards": "3", "--server": "127.0.0.1:1"}, seed=str(2**32 - 1))
    shards = [suite.for_run(suite.server, n) for n in range(3)]
    assert [s.seed for s in shards] == [str(2**32 - 1), "0", "1"]
    assert {s.examples for s in shards} == {20}
    assert {s.time_budget for s in shards} == {60}  # the default: sized to the share
    unsharded = settings({"--server": "127.0.0.1:1"}).for_run(ServerAddress("127.0.0.1", 1))
    assert (unsharded.seed, unsharded.examples) == ("7", 60)


def test_a_run_against_one_of_several_servers_is_about_that_server_only():
    suite = settings({"--server": "127.0.0.1:1,127.0.0.1:2"})
    second = suite.for_run(ServerAddress("127.0.0.1", 2))
    assert (second.server, second.servers) == (ServerAddress("127.0.0.1", 2),
                                               (ServerAddress("127.0.0.1", 2),))
    embedded = settings().for_run(None)
    assert embedded.delivers
    assert embedded.targets == (None,)


def test_seed_given_beats_inherited_beats_new():
    assert choose_seed("5", "6") == "5"
    assert choose_seed(None, "6") == "6"
    assert choose_seed().isdigit()


def failing(group: str) -> FindingRecord:
    return FindingRecord(
        check="reply_code_documented", level=Level.MUST, verdict=Verdict.FAIL, citation="c",
        complaint=f"220 is not documented for {group}", profile="seed", state="INIT",
        group=group, sent="b'HELO x\\r\\n'", reply_code=220, reply_lines=["220 hi"],
        error=None, documented=[250], also=[], transcript=["C: HELO x", "S: 220 hi"])


def record_of(*findings: FindingRecord, errors: tuple[RunError, ...] = ()) -> RunRecord:
    record = RunRecord(errors=list(errors))
    record.coverage[("INIT", "HELO", 250)] += 1
    for finding in findings:
        record.note(finding)
    return record


@pytest.mark.parametrize(("record", "status"), [
    (record_of(), 0),
    (record_of(failing("HELO")), 1),
    (record_of(errors=(RunError("the suite stopped: boom"),)), 1),
    (record_of(failing("HELO"), errors=(RunError("gone", unreachable=True),)), 6),
])
def test_a_runs_exit_status_is_read_from_its_record(record, status):
    assert exit_status(record, settings().policy) == status


def test_report_of_several_runs_has_each_runs_own_under_runs(tmp_path):
    suite = settings({"--server": "127.0.0.1:1,127.0.0.1:2",
                      "--smtp-report": str(tmp_path / "r.json")})
    runs = Runs()
    runs.add("127.0.0.1:2", record_of(failing("HELO")))
    runs.add("127.0.0.1:1", record_of())
    now = datetime.now(UTC)
    whole = report(suite, runs, now, now, 1)
    assert whole["target"] == "127.0.0.1:1, 127.0.0.1:2"  # in the order given
    assert [(r["target"], r["verdict"], r["exit_status"]) for r in whole["runs"]] == [
        ("127.0.0.1:1", "PASS", 0), ("127.0.0.1:2", "FAIL", 1)]
    assert (whole["verdict"], len(whole["findings"])) == ("FAIL", 1)
    assert whole["coverage"]["triples"] == [
        {"state": "INIT", "group": "HELO", "code": 250, "count": 2}]


def test_report_of_one_run_is_that_runs_and_nothing_more(tmp_path):
    suite = settings({"--smtp-report": str(tmp_path / "r.json")})
    now = datetime.now(UTC)
    empty = report(suite, Runs(), now, now, 0)  # the suite never ran: still a report
    assert (empty["target"], empty["verdict"], "runs" in empty) == (EMBEDDED, "PASS", False)
