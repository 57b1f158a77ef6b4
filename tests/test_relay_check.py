"""--smtp-relay-check: recipients at a domain the server is not the destination for, taken
without authentication, are an open relay (``relay_refused``, SHOULD); without the option
none is sent."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from conformance.checks import Exchange, relay_refused
from conformance.engine.client import SMTPClient
from conformance.engine.settings import SessionSettings
from conformance.protocol.commands import RELAY_DOMAIN, RELAY_PROBES, Command
from conformance.protocol.model import Session, State
from conformance.protocol.replies import Reply
from conformance.protocol.tables import get_profile
from conformance.search.machine import configure
from conformance.testing.reference_server import ReferenceServer
from tests.fault_server import FaultServer

SUITE = ["--pyargs", "conformance.suite", "-p", "no:cacheprovider", "--hypothesis-seed=0",
         "--smtp-timeout=1", "--smtp-examples=20"]


def _rcpt(command: Command, code: int, *, authenticated: bool = False) -> Exchange:
    before = Session(state=State.MAIL, authenticated=authenticated)
    return Exchange(get_profile("rfc5321"), before, "RCPT", command, Reply(code, ("ok",)))


@pytest.mark.parametrize("probe", RELAY_PROBES, ids=["plain", "source-route"])
def test_a_relay_probe_taken_without_authentication_is_an_open_relay(probe):
    assert "open relay" in str(relay_refused(_rcpt(probe, 250)))
    assert relay_refused(_rcpt(probe, 250, authenticated=True)) is None
    assert relay_refused(_rcpt(probe, 550)) is None


def test_any_other_recipient_taken_is_no_relay():
    assert relay_refused(_rcpt(Command.of("RCPT TO:<postmaster@example.test>"), 250)) is None


def run(pytester: pytest.Pytester, server: FaultServer, *args: str
        ) -> tuple[pytest.RunResult, dict[str, Any]]:
    report = pytester.path / "report.json"
    result = pytester.runpytest(*SUITE, f"--server={server.address}",
                                f"--smtp-report={report}", *args)
    return result, json.loads(Path(report).read_text())


def relay_findings(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [f for f in report["findings"] if f["check"] == "relay_refused"]


@pytest.mark.timeout(120)
def test_an_open_relay_warns_and_fails_when_strict(pytester):
    with FaultServer("open_relay") as server:
        result, report = run(pytester, server, "--smtp-relay-check")
        strict, strict_report = run(pytester, server, "--smtp-relay-check", "--smtp-strict")
    result.stdout.fnmatch_lines(["smtp-conformance: *; relay check*"])
    assert [f["verdict"] for f in relay_findings(report)] == ["WARN"]
    assert result.ret == pytest.ExitCode.OK
    assert strict.ret == pytest.ExitCode.TESTS_FAILED
    [finding] = relay_findings(strict_report)
    assert RELAY_DOMAIN in finding["complaint"]
    assert len(finding["steps"]) <= 3  # minimised: (HELO,) MAIL, the recipient


@pytest.mark.timeout(120)
def test_a_server_that_refuses_to_relay_passes_and_without_the_option_none_is_sent(pytester):
    with FaultServer() as server:
        result, report = run(pytester, server, "--smtp-relay-check", "--smtp-strict")
        assert any(RELAY_DOMAIN.encode() in line for line in server.received)
    assert result.ret == pytest.ExitCode.OK
    assert relay_findings(report) == []
    with FaultServer("open_relay") as server:
        result, report = run(pytester, server, "--smtp-strict")
        assert not any(RELAY_DOMAIN.encode() in line for line in server.received)
    assert result.ret == pytest.ExitCode.OK


@pytest.mark.parametrize(("fault", "authenticated"), [
    ("open_relay", False), ("open_relay", True), (None, False)])
def test_a_relay_probe_ends_its_session_and_never_goes_out_authenticated(fault, authenticated):
    """Whatever the reply, the session ends after the relay recipient (no message can
    follow it); and it goes out in a session that has not authenticated."""
    with FaultServer(fault) as server:
        machine = configure(server.address, SessionSettings(get_profile("seed"), timeout=1.0,
                                                            relay_check=True))()
        machine.connect()
        if authenticated:  # as a session left by send_auth would be
            machine.session.model = replace(machine.session.model, authenticated=True)
        machine.transaction_relayed(  # type: ignore[attr-defined]
            recipient=RELAY_PROBES[0], where=0)
        assert not machine.session.model.open
        assert not machine.session.client.connected
        machine.teardown()
        sent = list(server.received)
    assert sent[-1] == RELAY_PROBES[0].line
    verdicts = [f.verdict for f in machine.state.record.findings.values()
                if f.check == "relay_refused"]
    assert verdicts == (["WARN"] if fault else [])


USERS_OWN_RUN = """
import math

from hypothesis.stateful import run_state_machine_as_test


def test_users_own_run(smtp_state_machine, smtp_config):
    # Started as the suite's run is: with the run's deadline, not an endless one.
    assert math.isfinite(smtp_state_machine.deadline)
    run_state_machine_as_test(smtp_state_machine, settings=smtp_config.hypothesis_settings())
"""


@pytest.mark.timeout(180)
def test_the_state_machine_fixture_starts_its_run_as_the_suite_does(pytester):
    # The relay check reaches a user's own run through the fixture (it used to be dropped).
    pytester.makepyfile(test_users_own_run=USERS_OWN_RUN)
    report = pytester.path / "report.json"
    with FaultServer("open_relay") as server:
        result = pytester.runpytest("-p", "no:cacheprovider", "--hypothesis-seed=0",
                                    "--smtp-timeout=0.5", "--smtp-examples=40",
                                    f"--server={server.address}", f"--smtp-report={report}",
                                    "--smtp-relay-check", "--smtp-strict",
                                    "test_users_own_run.py")
    assert result.ret == pytest.ExitCode.TESTS_FAILED, result.stdout.str()
    assert [f["verdict"] for f in relay_findings(json.loads(report.read_text()))] == ["FAIL"]


@pytest.mark.parametrize("recipient", [*(p.line for p in RELAY_PROBES),
                                       b"RCPT TO:<user@mail.example.org>\r\n"])
def test_the_embedded_server_relays_nowhere(recipient):
    """The reference server takes recipients only at names reserved for testing (RFC 2606):
    one elsewhere, source-routed through it or not, is refused (550), not relayed."""
    with ReferenceServer() as server, SMTPClient(server.address, timeout=5.0) as client:
        client.connect()
        codes = [client.command(line).code for line in (
            b"HELO client.example.test\r\n", b"MAIL FROM:<a@example.test>\r\n", recipient,
            b"RCPT TO:<user@example.test>\r\n", b"RCPT TO:<user@[192.0.2.1]>\r\n",
            b"RCPT TO:<Postmaster>\r\n")]
    assert codes == [250, 250, 550, 250, 250, 250]


def test_the_embedded_server_passes_the_relay_check(pytester):
    result = pytester.runpytest(*SUITE, "--smtp-relay-check", "--smtp-strict")
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
