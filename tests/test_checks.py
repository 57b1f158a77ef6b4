"""The check registry: every check is proven by a fault, and findings are ordered and shown."""

from __future__ import annotations

import pytest

from conformance.checks import CHECKS, Exchange, run_checks
from conformance.commands import END_OF_DATA, Command, Message
from conformance.errors import ConnectionClosed
from conformance.failures import (
    ConformanceFailure,
    conformance_failures,
    failure_text,
    failure_type,
)
from conformance.levels import Level
from conformance.model import Session, State
from conformance.replies import Reply
from conformance.tables import get_profile
from tests.fault_server import FAULTS


def test_every_check_has_a_fault_that_only_it_reports_first() -> None:
    assert set(FAULTS.values()) == set(CHECKS), "a check with no fault is unverified"


@pytest.mark.parametrize("check", list(CHECKS.values()), ids=list(CHECKS))
def test_every_check_cites_its_source(check) -> None:
    assert check.citation
    assert check.run.__doc__ is None or check.run.__doc__.strip()


def _end_of_data(profile: str, code: int) -> Exchange:
    return Exchange(get_profile(profile), Session(state=State.DATA, recipients=1), END_OF_DATA,
                    Message(b"Subject: t\r\n"), Reply.build(code, "Go on"))


def test_the_specific_rule_is_reported_before_the_table() -> None:
    findings = run_checks(_end_of_data("seed", 354))
    assert [f.check.id for f in findings] == ["end_of_data_reply_is_final",
                                              "reply_code_documented"]


def test_must_findings_come_before_should_findings() -> None:
    # Under rfc5321 the table is a SHOULD (§4.3.1); a 3yz after the data is still a MUST.
    findings = run_checks(_end_of_data("rfc5321", 354))
    assert [(f.check.id, f.level) for f in findings] == [
        ("end_of_data_reply_is_final", Level.MUST), ("reply_code_documented", Level.SHOULD)]


def test_a_failure_names_every_finding_of_its_exchange() -> None:
    exchange = _end_of_data("seed", 354)
    findings = run_checks(exchange)
    failure = failure_type(findings[0].check.id)(findings, exchange, "S: 354 Go on\n")
    text = str(failure)
    assert text.startswith("[end_of_data_reply_is_final] MUST: 354 after the end of mail data")
    assert "  Also:       [reply_code_documented] MUST: 354 is not documented" in text
    assert "Documented: 250, 451, 452, 552, 554  (group 'received data')" in text
    assert type(failure).__name__ == "EndOfDataReplyIsFinalFailure"


def test_a_clean_exchange_has_no_findings() -> None:
    exchange = Exchange(get_profile("seed"), Session(state=State.READY), "NOOP",
                        Command.of("NOOP"), Reply.build(250, "OK"))
    assert run_checks(exchange) == []


def _failure(code: int) -> ConformanceFailure:
    exchange = _end_of_data("seed", code)
    findings = run_checks(exchange)
    return failure_type(findings[0].check.id)(findings, exchange, "S: ...\n")


def test_failure_text_is_the_message_and_hypothesis_notes() -> None:
    failure = _failure(354)
    failure.add_note("state = SMTPConformance()")
    report = failure_text(conformance_failures(failure))
    assert str(report) == f"{failure}\nstate = SMTPConformance()"
    assert report.reprcrash.message.startswith("[end_of_data_reply_is_final] MUST: 354 after")


def test_failure_text_numbers_several_failures() -> None:
    report = failure_text(conformance_failures(
        ExceptionGroup("two bugs", [_failure(354), _failure(551)])))
    assert str(report).startswith("--- failure 1 of 2 ---\n[end_of_data_reply_is_final]")
    assert "\n\n--- failure 2 of 2 ---\n[reply_code_documented] MUST: 551" in str(report)


def test_failure_text_keeps_the_traceback_of_anything_else() -> None:
    assert conformance_failures(ValueError("a bug in the tool")) == []
    assert conformance_failures(ExceptionGroup("mixed", [_failure(354), ValueError("x")])) == []


@pytest.mark.parametrize("profile", ["seed", "rfc821"])
def test_421_outside_the_table_is_only_a_note(profile: str) -> None:
    exchange = Exchange(get_profile(profile), Session(state=State.READY), "QUIT",
                        Command.of("QUIT"), Reply.build(421, "too many errors"))
    [finding] = run_checks(exchange)
    assert (finding.check.id, finding.level) == ("reply_code_documented", Level.INFO)
    assert "RFC 821 §4.3 and RFC 5321 §3.8 allow 421 for any command" in finding.complaint


@pytest.mark.parametrize(("errors", "level"), [(0, Level.MUST), (2, Level.MUST),
                                                (3, Level.SHOULD), (20, Level.SHOULD)])
def test_silent_close_after_repeated_errors_is_only_a_should(errors: int, level: Level) -> None:
    exchange = Exchange(get_profile("seed"), Session(state=State.READY, errors=errors), "NOOP",
                        Command.of("NOOP"), error=ConnectionClosed("closed by the server"))
    [finding] = run_checks(exchange)
    assert (finding.check.id, finding.level) == ("no_silent_close", level)
