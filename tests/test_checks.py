"""The check registry: every check is proven by a fault, and findings are ordered and shown."""

from __future__ import annotations

import pytest

from conformance.checks import CHECKS, Exchange, refuted_checks, run_checks
from conformance.checks.grading import Policy
from conformance.engine.failures import RunFailed, failure_text, render
from conformance.engine.record import FindingRecord, records_for
from conformance.protocol.commands import Command, Message
from conformance.protocol.errors import ConnectionClosed, ReplyTimeout
from conformance.protocol.levels import Level
from conformance.protocol.model import Session, State
from conformance.protocol.replies import Reply
from conformance.protocol.tables import get_profile
from conformance.protocol.vocabulary import END_OF_DATA
from tests.esmtp_server import ESMTP_FAULTS
from tests.fault_server import (
    FAULTS,
    NOTED_FAULTS,
    RELAY_FAULTS,
    SHOULD_FAULTS,
    SMUGGLING_FAULTS,
)

READY = Session(state=State.READY)


def test_every_check_has_a_fault_that_only_it_reports_first() -> None:
    faults = {*FAULTS.values(), *SHOULD_FAULTS.values(), *NOTED_FAULTS.values(),
              *ESMTP_FAULTS.values(),
              *SMUGGLING_FAULTS.values(), *RELAY_FAULTS.values()}
    assert faults == set(CHECKS), "a check with no fault is unverified"


@pytest.mark.parametrize("check", list(CHECKS.values()), ids=list(CHECKS))
def test_every_check_cites_its_source(check) -> None:
    assert check.citation
    assert check.run.__doc__ is None or check.run.__doc__.strip()


def _end_of_data(profile: str, code: int) -> Exchange:
    return Exchange(get_profile(profile), Session(state=State.DATA, recipients=1), END_OF_DATA,
                    Message(b"Subject: t\r\n"), Reply.build(code, "Go on"))


def _found(exchange: Exchange) -> list[tuple[str, Level]]:
    return [(f.check.id, f.level) for f in run_checks(exchange)]


def test_the_specific_rule_is_reported_before_the_table() -> None:
    findings = run_checks(_end_of_data("seed", 354))  # one finding: the table's complaint
    assert [f.check.id for f in findings] == ["end_of_data_reply_is_final"]  # goes with it
    assert [f.check.id for f in findings[0].also] == ["reply_code_documented"]


def test_must_findings_come_before_should_findings() -> None:
    # Under rfc5321 the table is a SHOULD (§4.3.1); a 3yz after the data is still a MUST,
    # and so is a code of a class the row never has (§4.2.1).
    findings = run_checks(_end_of_data("rfc5321", 354))
    assert [(f.check.id, f.level) for f in [*findings, *findings[0].also]] == [
        ("end_of_data_reply_is_final", Level.MUST), ("reply_code_documented", Level.MUST)]
    exchange = Exchange(get_profile("rfc5321"), READY, "EXPN", Command.of("EXPN list"),
                        Reply.build(354, "go on"), late=2.0, timeout=1.0)
    assert _found(exchange) == [("reply_code_documented", Level.MUST),
                                ("reply_within_timeout", Level.SHOULD)]


def _record(exchange: Exchange, transcript: str = "S: 354 Go on\n") -> FindingRecord:
    return records_for(run_checks(exchange), exchange, transcript, Policy())[0]


def test_a_finding_names_every_finding_of_its_exchange() -> None:
    text = render(_record(_end_of_data("seed", 354)))
    assert text.startswith("[end_of_data_reply_is_final] MUST: 354 after the end of mail data")
    assert "  Also:       [reply_code_documented] MUST: 354 is not documented" in text
    assert "Documented: 250, 451, 452, 552, 554  (group 'received data')" in text
    assert "  Transcript:\n    S: 354 Go on" in text


def test_every_finding_of_an_exchange_is_recorded_with_its_own_grade() -> None:
    exchange = _end_of_data("rfc5321", 250)
    exchange = Exchange(exchange.profile, exchange.before, exchange.group, exchange.sent,
                        Reply.build(251, "ok"))
    [record] = records_for(run_checks(exchange), exchange, "", Policy(strict=True))
    assert (record.check, record.level, record.verdict) == ("reply_code_documented", "SHOULD",
                                                           "FAIL")
    assert records_for(run_checks(exchange), exchange, "", Policy())[0].verdict == "WARN"


def test_a_clean_exchange_has_no_findings() -> None:
    exchange = Exchange(get_profile("seed"), READY, "NOOP", Command.of("NOOP"),
                        Reply.build(250, "OK"))
    assert run_checks(exchange) == []


def _failing(code: int) -> FindingRecord:
    return _record(_end_of_data("seed", code), "S: ...\n")


def test_failure_text_is_the_rendered_finding_and_its_footer() -> None:
    finding = _failing(354)
    report = failure_text(RunFailed([finding], ["Replay (same bytes, same checks):"]))
    assert str(report) == f"{render(finding)}\nReplay (same bytes, same checks):"
    assert report.reprcrash.message.startswith("[end_of_data_reply_is_final] MUST: 354 after")


def test_failure_text_numbers_several_failures() -> None:
    report = failure_text(RunFailed([_failing(354), _failing(551)]))
    assert str(report).startswith("--- failure 1 of 2 ---\n[end_of_data_reply_is_final]")
    assert "\n\n--- failure 2 of 2 ---\n[reply_code_documented] MUST: 551" in str(report)
    assert report.reprcrash.message.endswith("(and 1 more)")


def test_a_run_that_could_not_finish_says_why_in_one_line() -> None:
    report = failure_text(RunFailed([], errors=["the server stopped accepting connections"]))
    assert str(report) == "smtp-conformance: the server stopped accepting connections"
    assert report.reprcrash.message == str(report)


@pytest.mark.parametrize("profile", ["seed", "rfc821"])
def test_421_outside_the_table_is_only_a_note(profile: str) -> None:
    exchange = Exchange(get_profile(profile), READY, "QUIT",
                        Command.of("QUIT"), Reply.build(421, "too many errors"))
    [finding] = run_checks(exchange)
    assert (finding.check.id, finding.level) == ("reply_code_documented", Level.INFO)
    assert "RFC 821 §4.3 and RFC 5321 §3.8 allow 421 for any command" in finding.complaint


@pytest.mark.parametrize(("errors", "level"), [(0, Level.MUST), (2, Level.MUST),
                                                (3, Level.INFO), (20, Level.INFO)])
def test_silent_close_after_repeated_errors_is_only_a_note(errors: int, level: Level) -> None:
    """RFC 5321 §7.8: a server may give up on a client after repeated failed commands."""
    exchange = Exchange(get_profile("seed"), Session(state=State.READY, errors=errors), "NOOP",
                        Command.of("NOOP"), error=ConnectionClosed("closed by the server"))
    [finding] = run_checks(exchange)
    assert (finding.check.id, finding.level) == ("no_silent_close", level)


# --- timing: no reply at all is a MUST, a late one a SHOULD (RFC 5321 §4.5.3.2) --------------

def _noop(reply: Reply | None = None, **timing: object) -> Exchange:
    return Exchange(get_profile("seed"), READY, "NOOP", Command.of("NOOP"), reply,
                    timeout=1.0, **timing)  # type: ignore[arg-type]


@pytest.mark.parametrize(("exchange", "found"), [
    (_noop(error=ReplyTimeout("no reply within 6s")), [("command_answered", Level.MUST)]),
    (_noop(Reply.build(250, "OK"), late=3.5), [("reply_within_timeout", Level.SHOULD)]),
    (_noop(Reply.build(250, "OK")), []),
], ids=["no reply", "late reply", "reply in time"])
def test_no_reply_is_a_must_and_a_late_reply_only_a_should(exchange: Exchange,
                                                          found: list[tuple[str, Level]]) -> None:
    assert _found(exchange) == found


def test_a_late_reply_says_how_late_and_what_the_timeout_was() -> None:
    [finding] = run_checks(_noop(Reply.build(250, "OK"), late=3.5))
    assert finding.complaint == "the server replied after 3.5s (the run's timeout is 1s)"
    quit_late = Exchange(get_profile("seed"), READY, "QUIT", Command.of("QUIT"),
                         Reply.build(221, "Bye"), closed_after=True, late=2.0, timeout=1.0)
    [finding] = run_checks(quit_late)
    assert finding.complaint == "the server closed the connection after 2.0s (the run's " \
                                "timeout is 1s)"


# --- differential checks: they speak only on a control probe ---------------------------------

def _probe(original: str, refusal: int, probe: str, answer: int) -> Exchange:
    """The control probe ``probe`` answered ``answer``, sent after ``original`` got
    ``refusal``."""
    refused = Command.of(original)
    return Exchange(get_profile("seed"), READY, refused.group, Command.of(probe),
                    Reply.build(answer, "OK"),
                    variant_of=(refused, Reply.build(refusal, "no")))


@pytest.mark.parametrize(("exchange", "found"), [
    (_probe("noop", 500, "NOOP", 250), [("verb_case_insensitive", Level.MUST)]),
    (_probe("Vrfy postmaster", 502, "VRFY postmaster", 250),
     [("verb_case_insensitive", Level.MUST)]),
    # Refused both ways: nothing about case (NOOP itself is then unimplemented).
    (_probe("noop", 500, "NOOP", 500), [("minimum_implementation", Level.MUST)]),
    (_probe("noop", 501, "NOOP", 250), []),  # not refused as unrecognised
    (_probe("NOOP x", 500, "NOOP", 250), [("noop_ignores_parameter", Level.SHOULD)]),
], ids=["500 then 250", "502 then 250", "both refused", "501", "NOOP parameter"])
def test_verb_case_insensitive_fires_on_a_positive_probe_after_an_unrecognised_variant(
        exchange: Exchange, found: list[tuple[str, Level]]) -> None:
    assert _found(exchange) == found


def test_a_plain_500_to_a_lower_case_verb_is_not_a_finding_by_itself() -> None:
    # Only the upper-case probe after it can tell whether the case was the reason.
    refused = Exchange(get_profile("seed"), READY, "NOOP", Command.of("noop"),
                       Reply.build(500, "Command unrecognized"))
    assert run_checks(refused) == []


def test_the_case_finding_names_both_forms_of_the_verb() -> None:
    [finding] = run_checks(_probe("noop", 500, "NOOP", 250))
    assert finding.complaint == "500 to 'noop' but 250 to 'NOOP': verbs are case-insensitive"


@pytest.mark.parametrize(("exchange", "found"), [
    (_probe("NOOP x", 500, "NOOP", 250), [("noop_ignores_parameter", Level.SHOULD)]),
    (_probe("NOOP x", 501, "NOOP", 250), [("noop_ignores_parameter", Level.SHOULD)]),
    # Refused either way: nothing about the parameter (NOOP itself is unimplemented).
    (_probe("NOOP x", 500, "NOOP", 500), [("minimum_implementation", Level.MUST)]),
    (_noop(Reply.build(250, "OK")), []),  # not a probe
], ids=["500", "501", "refused both ways", "not a probe"])
def test_noop_should_ignore_its_parameter(exchange: Exchange,
                                          found: list[tuple[str, Level]]) -> None:
    assert _found(exchange) == found


# --- minimum implementation: per run, refuted by any valid answer ----------------------------

def _answered(line: str, code: int, *, valid: bool = True) -> Exchange:
    command = Command.of(line, valid=valid)
    return Exchange(get_profile("seed"), READY, command.group, command,
                    Reply.build(code, "reply"))


@pytest.mark.parametrize(("exchange", "found"), [
    (_answered("NOOP", 500), [("minimum_implementation", Level.MUST)]),
    (_answered("RSET", 502), [("rset_succeeds", Level.MUST),  # §4.1.1.5; the table's
                              ("minimum_implementation", Level.MUST)]),  # goes with it
    (_answered("noop", 500), []),  # a case variant: the probe speaks for it
    (_answered("NOOP", 500, valid=False), []),  # malformed: 500 is a fair answer
    (_answered("EXPN list", 502), []),  # EXPN is not in RFC 821's minimum
], ids=["NOOP 500", "RSET 502", "lower case", "malformed", "not minimum"])
def test_a_minimum_command_refused_as_unknown_is_a_must(exchange: Exchange,
                                                        found: list[tuple[str, Level]]) -> None:
    assert _found(exchange) == found


@pytest.mark.parametrize(("exchange", "refutes"), [
    (_answered("NOOP", 250), True),
    (_answered("NOOP", 501), True),  # known, just refused: implemented
    (_answered("NOOP", 500), False),
    (_answered("noop", 250), False),  # a case variant proves nothing either way
    (_answered("NOOP", 250, valid=False), False),
], ids=["250", "501", "500", "lower case", "malformed"])
def test_minimum_implementation_is_refuted_by_any_answer_but_unknown(exchange: Exchange,
                                                                     refutes: bool) -> None:
    assert ("minimum_implementation" in refuted_checks(exchange)) is refutes


# --- the table: the class of a code matters under rfc5321 ------------------------------------

@pytest.mark.parametrize(("group", "line", "code", "level"), [
    ("EXPN", "EXPN list", 354, Level.MUST),  # no 3yz reply in the row: §4.2.1
    ("NOOP", "NOOP", 252, Level.SHOULD),  # 2yz is documented, 252 is not: §4.3.1
    ("HELO", "HELO a.example.test", 220, Level.SHOULD),
])
def test_rfc5321_grades_an_undocumented_class_as_must_and_a_code_as_should(
        group: str, line: str, code: int, level: Level) -> None:
    exchange = Exchange(get_profile("rfc5321"), READY, group, Command.of(line),
                        Reply.build(code, "reply"))
    [finding] = run_checks(exchange)
    assert (finding.check.id, finding.level) == ("reply_code_documented", level)
    assert ("clients act on the first digit" in finding.complaint) is (level is Level.MUST)


def test_a_long_noop_refused_where_a_short_one_is_taken_breaks_the_line_limit() -> None:
    longest = Command(b"NOOP " + b"a" * 505 + b"\r\n")  # 512 octets: within the limit
    refused, taken = Reply.build(500, "Line too long"), Reply.build(250, "OK")
    short = Command(b"NOOP x\r\n")
    exchange = Exchange(get_profile("seed"), READY, "NOOP", short, taken,
                        variant_of=(longest, refused))
    assert [check for check, _ in _found(exchange)] == ["command_line_limit_honoured"]
    over = Command(b"NOOP " + b"a" * 506 + b"\r\n")  # 513: a server may refuse it
    assert _found(Exchange(get_profile("seed"), READY, "NOOP", short, taken,
                           variant_of=(over, refused))) == []
