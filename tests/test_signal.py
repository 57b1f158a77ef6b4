"""One behaviour, one finding, blamed on its cause: a close is judged on the reply before it,
a behaviour of the input is one finding whichever command carried it, a state fault is blamed
on the command that did not move the state, and the RFC's MUST sentences grade as MUSTs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from conformance.checks import (
    AFTER_ERRORS,
    ECHOED_OCTETS,
    HELLO_RESET,
    MESSAGE_END,
    PIPELINED_BATCH,
    UTF8_MAILBOX,
    Exchange,
    identity_of,
    run_checks,
)
from conformance.checks.grading import Verdict
from conformance.engine.failures import render
from conformance.engine.record import FindingRecord
from conformance.engine.replay import Script, replay
from conformance.engine.session import CheckedSession
from conformance.engine.settings import SessionSettings
from conformance.output.report import SCHEMA_PATH
from conformance.protocol.commands import (
    EIGHT_BIT_INPUT,
    LONG_LINE_INPUT,
    Command,
    DataProbe,
    Sent,
    Step,
)
from conformance.protocol.errors import ConnectionClosed
from conformance.protocol.model import Session, State, advance
from conformance.protocol.replies import Reply, parse_replies
from conformance.protocol.tables import get_profile
from conformance.protocol.vocabulary import END_OF_DATA, GREETING
from tests.esmtp_server import EsmtpServer
from tests.fault_server import FaultServer
from tests.tls_server import Certificates

SEED, RFC5321 = get_profile("seed"), get_profile("rfc5321")
SCHEMA = json.loads(SCHEMA_PATH.read_text())
# The systematic phase meets every fault here more than once; a few examples after it, and a
# fixed seed, so that the counts below are the same on every run.
RUN = ["--pyargs", "conformance.suite", "-p", "no:cacheprovider", "--hypothesis-seed=3",
       "--smtp-examples=15", "--smtp-timeout=0.5", "--smtp-deliver"]


def run(pytester: pytest.Pytester, address: object, *args: str) -> dict[str, Any]:
    path = pytester.path / "report.json"
    pytester.runpytest(*RUN, f"--server={address}", f"--smtp-report={path}", *args)
    report: dict[str, Any] = json.loads(Path(path).read_text())
    jsonschema.validate(report, SCHEMA)
    return report


def failing(report: dict[str, Any], verdict: str = "FAIL") -> list[dict[str, Any]]:
    return [f for f in report["findings"] if f["verdict"] == verdict]


def only(report: dict[str, Any], verdict: str = "FAIL") -> dict[str, Any]:
    """The one finding of ``verdict`` the run must have, and no other FAIL or WARN."""
    found: list[dict[str, Any]] = [f for f in report["findings"]
                                   if f["verdict"] in ("FAIL", "WARN")]
    assert len(found) == 1, [(f["check"], f["cause"], f["verdict"]) for f in found]
    (finding,) = found
    assert finding["verdict"] == verdict
    return finding


# --- end to end: the fault servers of the issue ------------------------------------------------

@pytest.mark.timeout(300)
def test_a_server_that_drops_on_8_bit_octets_is_one_finding_listing_its_commands(pytester):
    with FaultServer("drops_on_invalid_utf8") as server:
        report = run(pytester, server.address)
    finding = only(report)
    assert (finding["check"], finding["cause"], finding["cause_code"]) == (
        "no_silent_close", EIGHT_BIT_INPUT, 0)
    assert len({place.split(" in ")[0] for place in finding["seen"]}) > 1  # several verbs
    assert sum(finding["seen"].values()) == finding["occurrences"] > 1
    assert finding["inputs"] == {EIGHT_BIT_INPUT: finding["occurrences"]}


@pytest.mark.timeout(300)
def test_a_server_that_gives_up_after_its_third_error_breaks_no_rule(pytester):
    """RFC 5321 §7.8: a server may close after repeated failed commands (Exim's
    smtp_max_synprot_errors); one note, no failure, no warning."""
    with FaultServer("closes_after_third_error") as server:
        report = run(pytester, server.address)
    assert failing(report) == failing(report, "WARN") == []
    [finding] = [f for f in report["findings"] if f["check"] == "no_silent_close"]
    assert (finding["level"], finding["cause"], finding["verdict"]) == (
        "INFO", AFTER_ERRORS, "INFO")
    assert report["verdict"] == "PASS"


@pytest.mark.timeout(300)
def test_giving_up_lends_no_grade_to_what_the_last_reply_broke(pytester):
    """Exim's case: the reply it gives up with echoes the command's 8-bit octets. The echo is
    one finding of its own (MUST, RFC 5321 §4.2); the close after the errors is still a note,
    not a MUST failure borrowed from the echo, nor two findings at two levels."""
    with FaultServer("closes_after_third_error", "mail_echoes_argument") as server:
        report = run(pytester, server.address)
    # (This echo also makes a reply line over 512 octets: a SHOULD of its own.)
    [echo] = failing(report)
    assert (echo["check"], echo["cause"]) == ("reply_well_formed", ECHOED_OCTETS)
    closes = [f for f in report["findings"] if f["check"] == "no_silent_close"]
    assert [(f["level"], f["cause"]) for f in closes] == [("INFO", AFTER_ERRORS)]


@pytest.mark.timeout(300)
def test_a_close_after_521_to_an_overlong_line_is_one_finding_on_the_long_line(pytester):
    with FaultServer("long_line_521_closes") as server:
        report = run(pytester, server.address)
    # 521 is in the seed's rows for HELO and RCPT only: to any other command it is listed
    # with the close, which is always waited for after a 521 (never a finding of its own).
    finding = only(report)
    assert (finding["check"], finding["cause"], finding["cause_code"]) == (
        "no_silent_close", LONG_LINE_INPUT, 521)
    assert "after its 521 reply to" in finding["complaint"]
    assert finding["reply_code"] == 521
    assert bytes.fromhex(finding["sent_hex"]).endswith(b"\r\n")
    assert len(bytes.fromhex(finding["sent_hex"])) > 512


@pytest.mark.timeout(300)
@pytest.mark.parametrize(("fault", "cause", "resets"), [
    ("helo_keeps_transaction", HELLO_RESET, {"HELO", "EHLO"}),
    ("rset_keeps_mail_from", "RSET", {"RSET"}),
    ("message_keeps_transaction", MESSAGE_END, {END_OF_DATA})])
def test_a_transaction_kept_across_a_reset_is_one_finding_blamed_on_the_reset(
        pytester, fault, cause, resets):
    with FaultServer(fault) as server:
        report = run(pytester, server.address)
    finding = only(report)
    assert (finding["check"], finding["cause"]) == ("reset_clears_transaction", cause)
    assert any(f"after {reset} ended the transaction" in finding["complaint"]
               for reset in resets)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("seed", ["1", "2"])
def test_rcpt_taken_with_no_mail_at_all_is_never_blamed_on_a_reset(pytester, seed):
    # Stopped at the first failing finding: a RCPT taken after RSET must not be that finding
    # on its own; the control session with no MAIL at all shows the real fault first.
    with FaultServer("rcpt_without_mail_accepted") as server:
        report = run(pytester, server.address, "--smtp-fail-fast", f"--hypothesis-seed={seed}")
    assert {f["check"] for f in failing(report)} == {"rcpt_requires_mail"}


@pytest.mark.timeout(300)
@pytest.mark.parametrize(("fault", "check", "cause"), [
    ("rset_before_hello_503", "rset_succeeds", "RSET"),
    ("second_ehlo_503", "hello_refusal_codes", "EHLO"),
    ("rcpt_without_mail_502", "rcpt_requires_mail", "RCPT"),
])
def test_the_rfcs_must_sentences_fail_under_rfc5321(pytester, fault, check, cause):
    with FaultServer(fault) as server:
        report = run(pytester, server.address, "--smtp-profile=rfc5321")
    finding = only(report)
    assert (finding["check"], finding["level"], finding["cause"]) == (check, "MUST", cause)


@pytest.mark.timeout(300)
def test_a_second_helo_refused_is_judged_by_helos_row_not_by_ehlos_must(pytester):
    """RFC 5321 §4.1.4's MUST (500, 501, 502 or 550) is about EHLO; 503 to a HELO is outside
    HELO's §4.3.2 row, and that is the rule it breaks (OpenSMTPD's "Already identified")."""
    with FaultServer("second_helo_503") as server:
        report = run(pytester, server.address, "--smtp-profile=rfc5321")
    finding = only(report, "WARN")
    assert (finding["check"], finding["cause"], finding["cause_code"]) == (
        "reply_code_documented", "HELO", 503)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("profile", ["seed", "rfc821", "rfc5321"])
def test_an_advertised_size_parameter_refused_with_555_fails_under_every_profile(pytester,
                                                                               profile):
    with EsmtpServer("size_parameter_refused", profile=profile) as server:
        report = run(pytester, server.address, f"--smtp-profile={profile}")
    found = {(f["check"], f["level"]) for f in failing(report)}
    assert ("advertised_parameters_accepted", "MUST") in found


@pytest.mark.timeout(300)
@pytest.mark.parametrize(("server", "expected"), [
    (lambda: FaultServer("enforces_synchronization"), None),
    (lambda: FaultServer("enforces_synchronization", "noop_replies_252"),
     ("reply_code_documented", "NOOP")),  # minimised, and still nothing else
    (lambda: EsmtpServer("enforces_synchronization"), None),  # PIPELINING after EHLO only
    # Exim's: between the chunks of a message, only BDAT and RSET (503 to the rest).
    (lambda: EsmtpServer("enforces_synchronization", "only_bdat_mid_message"), None),
], ids=["no-pipelining", "no-pipelining-with-a-fault", "pipelining-after-ehlo",
        "only-bdat-mid-message"])
def test_a_server_that_enforces_synchronization_gets_no_finding(pytester, server, expected):
    # Input sent before the reply to the line before it is answered 554 and the connection
    # closed, as Exim does: the suite's sessions never send any outside a batch PIPELINING
    # allows, and its probes (bare line breaks, end-of-data probes) are judged by their own
    # checks alone.
    with server() as running:
        report = run(pytester, running.address)
    if expected is None:
        assert report["verdict"] == "PASS", [(f["check"], f["cause"])
                                             for f in report["findings"]]
    else:
        finding = only(report)
        assert (finding["check"], finding["cause"]) == expected
    assert "synchronization error" not in json.dumps(report)


@pytest.mark.timeout(300)
def test_a_minimised_batch_keeps_the_ehlo_that_advertised_pipelining(pytester):
    with EsmtpServer("enforces_synchronization", "pipelining_drops_input") as server:
        report = run(pytester, server.address)
    finding = only(report)
    assert (finding["check"], finding["cause"]) == ("pipelining_answers_every_command",
                                                    PIPELINED_BATCH)
    steps = [Step.from_json(item) for item in finding["steps"]]
    assert steps[0].group == "EHLO"
    assert any(step.batch for step in steps)
    assert "synchronization error" not in json.dumps(report)


def test_a_replayed_batch_without_its_ehlo_goes_one_command_at_a_time():
    mail, rcpt = Command.of("MAIL FROM:<a@example.test>"), Command.of("RCPT TO:<b@example.test>")
    script = Script("seed", "pipelining_answers_every_command",
                    (Step.of(mail, batch=1), Step.of(rcpt, batch=1)))
    with FaultServer("enforces_synchronization") as server:
        replayed = replay(script, server.address, SessionSettings(SEED, timeout=1.0))
        received = list(server.received)
    assert replayed.findings == ()
    assert received == [mail.line, rcpt.line]  # no 554: each went after the reply before it


def test_an_lf_dot_lf_ending_is_caught_where_the_server_refuses_early_input():
    # The smuggled line goes only after the reply to the data: a server that took <LF>.<LF>
    # has answered by then, and runs the line, whether or not it enforces synchronization.
    with FaultServer("ends_data_at_lf_dot_lf", "enforces_synchronization") as server:
        session = CheckedSession(server.address, SessionSettings(SEED, timeout=1.0))
        session.connect()
        for line in ("EHLO client.example.test", "MAIL FROM:<a@example.test>",
                     "RCPT TO:<b@mx.fault.test>", "DATA"):
            session.send(Command.of(line))
        session.send_probe(DataProbe("<LF>.<LF>", b"NOOP\r\n"))
    (finding,) = session.findings
    assert finding.check.id == "data_ends_only_at_crlf_dot_crlf"
    assert "answered 250 to 'NOOP'" in finding.complaint


def test_probes_are_judged_by_their_own_checks_alone():
    # A refusal and a close are a server's defence against input no client sends.
    refused = reply(b"554 SMTP synchronization error\r\n")
    for group, line in (("STARTTLS", b"STARTTLS\r\nNOOP\r\n"), ("NOOP", b"NOOP\nNOOP\r\n")):
        x = checked(group, Command(line, group=group), refused, closed_unasked=True)
        assert x.is_probe
        assert run_checks(x) == []
    x = checked(END_OF_DATA, DataProbe("<LF>.<LF>", b"NOOP\r\n"), refused,
                before=Session(state=State.DATA), closed_unasked=True)
    assert run_checks(x) == []
    plain = checked("NOOP", Command(b"NOOP\r\n"), refused, closed_unasked=True)
    assert not plain.is_probe
    assert {f.check.id for f in run_checks(plain)} == {"no_silent_close"}


# --- exchange by exchange ------------------------------------------------------------------------

def reply(text: bytes) -> Reply:
    (parsed,) = parse_replies(text)
    return parsed


def checked(group: str, sent: Sent | None, answer: Reply | None, *,
            before: Session | None = None, profile: Any = SEED, **fields: Any) -> Exchange:
    return Exchange(profile, before or Session(state=State.READY), group, sent, answer,
                    **fields)


def definite(x: Exchange) -> list[Any]:
    """The findings that stand whatever the rest of the run shows (no per-run check's)."""
    return [f for f in run_checks(x) if f.check.refuted_by is None]


def test_a_close_after_a_reply_takes_the_replys_other_complaints():
    long_noop = Command(b"NOOP " + b"x" * 600 + b"\r\n")
    x = checked("NOOP", long_noop, reply(b"521 too long\r\n"), closed_unasked=True)
    (finding,) = run_checks(x)  # 521 is not documented for NOOP either: listed with it
    assert finding.check.id == "no_silent_close"
    assert [f.check.id for f in finding.also] == ["reply_code_documented"]
    assert identity_of(finding, x) == (LONG_LINE_INPUT, 521)
    assert not run_checks(checked("NOOP", long_noop, reply(b"521 too long\r\n")))[0].also


def test_a_close_after_221_to_quit_or_after_421_is_no_finding():
    quit_ = Command(b"QUIT\r\n")
    assert not run_checks(checked("QUIT", quit_, reply(b"221 bye\r\n"), closed_unasked=True,
                                  closed_after=True))
    noop = Command(b"NOOP\r\n")
    assert "no_silent_close" not in {f.check.id for f in run_checks(checked(
        "NOOP", noop, reply(b"421 going\r\n"), closed_unasked=True, closed_after=True))}


def test_a_close_after_repeated_errors_is_about_the_session_not_the_command():
    tired = Session(state=State.READY, errors=2)
    for line in (b"VRFY x\r\n", b"EXPN y\r\n", b"MAIL FROM:<\xff>\r\n"):
        x = checked(Command(line).group, Command(line), reply(b"500 enough\r\n"), before=tired,
                    closed_unasked=True)
        (finding,) = definite(x)
        assert (finding.check.id, str(finding.level)) == ("no_silent_close", "INFO")
        assert identity_of(finding, x) == (AFTER_ERRORS, 0)


def test_a_command_dropped_for_its_octets_is_about_the_octets_whatever_the_verb():
    for line in (b"NOOP \xc3\x28\r\n", b"HELP \xff\r\n"):
        x = checked(Command(line).group, Command(line), None,
                    error=ConnectionClosed("closed instead of replying"))
        (finding,) = run_checks(x)
        assert identity_of(finding, x) == (EIGHT_BIT_INPUT, 0)


def test_a_reply_echoing_the_commands_octets_is_one_cause_whatever_the_command():
    for line, group in ((b"SAML \x01x\r\n", "SAML"), (b"TURN \x01\r\n", "TURN")):
        x = checked(group, Command(line), reply(b"502 " + line[5:-2] + b" unknown\r\n"))
        (finding,) = run_checks(x)
        assert finding.check.id == "reply_well_formed"
        assert identity_of(finding, x) == (ECHOED_OCTETS, 0)


def test_a_reply_breaking_the_syntax_is_about_the_rule_not_the_code():
    causes = {identity_of(f, x) for code in (b"250", b"214", b"500")
              for x in [checked("NOOP", Command(b"NOOP\r\n"), reply(code + b" ok\n"))]
              for f in run_checks(x) if f.check.id == "reply_well_formed"}
    assert causes == {("rule bare-lf", 0)}


def test_the_model_remembers_which_command_ended_the_transaction():
    s = Session(state=State.INIT)
    s = advance(s, "EHLO", 250)
    s = advance(s, "MAIL", 250)
    assert s.reset_by is None
    s = advance(s, "RSET", 250)
    assert s.reset_by == "RSET"
    s = advance(advance(s, "EHLO", 250), "NOOP", 250)
    assert s.reset_by == "RSET"  # the first that ended it
    assert advance(s, "MAIL", 250).reset_by is None
    assert advance(s, "MAIL", 503).reset_by == "RSET"


def test_rcpt_taken_after_a_reset_names_the_reset_and_not_rcpt():
    rcpt = Command(b"RCPT TO:<a@example.test>\r\n")
    causes = {}
    for reset in ("RSET", "HELO", "EHLO", END_OF_DATA, "BDAT", "STARTTLS"):
        x = checked("RCPT", rcpt, reply(b"250 ok\r\n"),
                    before=Session(state=State.READY, reset_by=reset))
        (finding,) = run_checks(x)
        assert finding.check.id == "reset_clears_transaction"
        assert f"across {reset}" in finding.complaint
        causes[reset] = identity_of(finding, x)
    # A new hello is one behaviour whichever verb it was, so is the end of a message however
    # it was sent; RSET and STARTTLS are each their own.
    assert causes == {"RSET": ("RSET", 0), "HELO": (HELLO_RESET, 0), "EHLO": (HELLO_RESET, 0),
                      END_OF_DATA: (MESSAGE_END, 0), "BDAT": (MESSAGE_END, 0),
                      "STARTTLS": ("STARTTLS", 0)}


def test_an_extension_verb_not_advertised_answered_as_any_unknown_verb_is_judged_as_one():
    # 250 to AUTH and STARTTLS the session's EHLO did not offer, as to any verb: one cause,
    # that of the unknown verb, and no AUTH rule applies where AUTH was not advertised.
    ehlo = advance(Session(state=State.INIT), "EHLO", 250, lines=("mx.test", "8BITMIME"))
    causes = set()
    for group, line in (("AUTH", b"AUTH PLAIN\r\n"), ("STARTTLS", b"STARTTLS\r\n"),
                        ("unrecognised", b"XYZZY\r\n")):
        for before in (ehlo, advance(ehlo, "MAIL", 250)):
            x = checked(group, Command(line), reply(b"250 whatever\r\n"), before=before)
            (finding,) = run_checks(x)
            assert (finding.check.id, str(finding.level)) == ("reply_code_documented", "MUST")
            causes.add(identity_of(finding, x))
    assert causes == {("unrecognised", 250)}
    # The verb's own row still holds: 503 to AUTH not offered (Postfix) is no finding, nor
    # is 503 to STARTTLS not offered (out of sequence), which STARTTLS's row lacks; and with
    # AUTH advertised, 250 to it is judged by AUTH's row.
    assert not run_checks(checked("AUTH", Command(b"AUTH PLAIN\r\n"),
                                  reply(b"503 5.5.1 Error: authentication not enabled\r\n"),
                                  before=ehlo))
    assert not run_checks(checked("STARTTLS", Command(b"STARTTLS\r\n"),
                                  reply(b"503 STARTTLS command used when not advertised\r\n"),
                                  before=ehlo))
    assert run_checks(checked("STARTTLS", Command(b"STARTTLS\r\n"), reply(b"503 no\r\n"),
                              before=advance(ehlo, "EHLO", 250,
                                             lines=("mx.test", "STARTTLS"))))
    offered = advance(Session(state=State.INIT), "EHLO", 250, lines=("mx.test", "AUTH PLAIN"))
    x = checked("AUTH", Command(b"AUTH PLAIN\r\n"), reply(b"250 whatever\r\n"), before=offered)
    assert identity_of(run_checks(x)[0], x) == ("AUTH", 250)


def test_a_greeting_that_is_its_code_alone_is_one_finding():
    x = checked(GREETING, None, reply(b"220\r\n"), before=Session(state=State.GREETING))
    assert [f.check.id for f in run_checks(x)] == ["greeting_names_server"]
    bare_554 = checked(GREETING, None, reply(b"554\r\n"), before=Session(state=State.GREETING))
    assert "reply_well_formed" in {f.check.id for f in run_checks(bare_554)}


def test_parameters_or_mailboxes_taken_unadvertised_are_one_cause_whatever_the_command():
    ehlo = advance(Session(state=State.INIT), "EHLO", 250, lines=("mx.test", "8BITMIME"))
    in_mail = advance(ehlo, "MAIL", 250)
    dsn = {identity_of(f, x) for group, line, before in (
        ("MAIL", b"MAIL FROM:<a@example.test> RET=HDRS\r\n", ehlo),
        ("RCPT", b"RCPT TO:<b@example.test> NOTIFY=NEVER\r\n", in_mail))
        for x in [checked(group, Command(line), reply(b"250 ok\r\n"), before=before)]
        for f in run_checks(x)}
    assert dsn == {("parameters of DSN, not advertised", 0)}
    utf8 = {identity_of(f, x) for group, line, before in (
        ("MAIL", "MAIL FROM:<jos\u00e9@example.test>\r\n".encode(), ehlo),
        ("RCPT", "RCPT TO:<jos\u00e9@example.test>\r\n".encode(), in_mail))
        for x in [checked(group, Command(line), reply(b"250 ok\r\n"), before=before)]
        for f in run_checks(x) if f.check.id == "utf8_address_needs_smtputf8"}
    assert utf8 == {(UTF8_MAILBOX, 0)}


def test_no_parameter_counts_as_unadvertised_after_an_ehlo_reply_the_parser_could_not_read():
    garbled = advance(Session(state=State.INIT), "EHLO", 250, lines=("mx.test", "SIZE=10000"))
    x = checked("MAIL", Command(b"MAIL FROM:<a@example.test> SIZE=100\r\n"),
                reply(b"250 ok\r\n"), before=garbled)
    assert "esmtp_parameters_advertised" not in {f.check.id for f in run_checks(x)}


def test_rcpt_with_no_transaction_refused_with_another_code_than_503_is_a_must():
    rcpt = Command(b"RCPT TO:<a@example.test>\r\n")
    for profile in (SEED, RFC5321):
        found = {(f.check.id, str(f.level)) for f in definite(
            checked("RCPT", rcpt, reply(b"502 no\r\n"), profile=profile))}
        assert found == {("rcpt_requires_mail", "MUST")}
    assert not definite(checked("RCPT", rcpt, reply(b"503 MAIL first\r\n")))
    assert not definite(checked("RCPT", Command(b"RCPT TO:<>\r\n", valid=False),
                                reply(b"501 syntax\r\n")))


# --- seed findings say what RFC 5321 says ------------------------------------------------------

def test_a_seed_finding_on_a_code_rfc5321_lists_says_so_in_one_line():
    mail = Command(b"MAIL FROM:<a@example.test>\r\n")
    out_of_order = reply(b"503 5.5.1 Error: nested MAIL command\r\n")
    in_transaction = Session(state=State.MAIL)
    for profile, expected in ((SEED, "RFC 5321 §4.3.2, §3.3, §4.1.1.11 lists 503 for MAIL"),
                              (get_profile("rfc821"), "RFC 5321 §4.3.2, §3.3, §4.1.1.11 lists "
                                                      "503 for MAIL"),
                              (RFC5321, None)):
        x = checked("MAIL", mail, out_of_order, before=in_transaction, profile=profile)
        findings = run_checks(x)
        if profile is RFC5321:
            assert findings == []
            continue
        record = FindingRecord.of(findings, x, "", Verdict.FAIL)
        assert (record.check, record.rfc5321, record.table_only) == (
            "reply_code_documented", expected, True)
        assert f"Triage:     {expected}: outside the {profile.name} table only" in \
            render(record)
    # Of a class the seed row never has, but listed by RFC 5321 (a 554 greeting, §3.1): no
    # claim that it breaks the RFC.
    x = checked(GREETING, None, reply(b"554 no service here\r\n"), before=Session())
    record = FindingRecord.of(run_checks(x), x, "", Verdict.FAIL)
    assert record.table_only
    assert "nor is any" not in record.complaint
    # A code RFC 5321 does not list for the command either: an RFC-level deviation.
    x = checked("NOOP", Command(b"NOOP\r\n"), reply(b"252 fine\r\n"))
    record = FindingRecord.of(run_checks(x), x, "", Verdict.FAIL)
    assert (record.rfc5321, record.table_only) == (None, False)


@pytest.mark.timeout(300)
def test_the_rfc_level_deviations_come_first_and_the_table_only_ones_are_named(pytester):
    # A server answering as RFC 5321 says (503 to MAIL out of order), which also refuses the
    # SIZE parameter it advertises: under seed, the 555 is the RFC-level finding and comes
    # first; the 503 is outside the seed table only, and says so.
    path = pytester.path / "report.json"
    with EsmtpServer("size_parameter_refused", profile="rfc5321") as server:
        result = pytester.runpytest(*RUN, f"--server={server.address}", f"--smtp-report={path}")
    report = json.loads(path.read_text())
    jsonschema.validate(report, SCHEMA)
    found = failing(report)
    levels = [f["rfc5321"] is not None for f in found]
    assert levels == sorted(levels)
    assert levels[0] is False
    assert levels[-1] is True
    table_only = [f for f in found if f["rfc5321"]]
    assert ("MAIL", 503) in {(f["cause"], f["cause_code"]) for f in table_only}
    assert all(f["rfc5321"].startswith("RFC 5321 §") for f in table_only)
    out = result.stdout.str()
    assert "of these, outside the seed table only (RFC 5321 lists the code for the command)" \
        in out
    assert out.index("[advertised_parameters_accepted]") < out.index(
        "[reply_code_documented]")


# --- replay and the saved files cannot mislead ---------------------------------------------------

def replay_cli(path: str, server: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "conformance", "replay", path,
                           f"--server={server}", "--timeout=0.5"],
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.timeout(300)
def test_a_replayed_hang_names_command_answered_and_says_what_was_recorded(pytester):
    with FaultServer("expn_hangs") as server, FaultServer() as other:
        report = run(pytester, server.address, "--smtp-fail-fast")
        finding = only(report)
        assert (finding["check"], finding["level"]) == ("command_answered", "MUST")
        saved = json.loads(Path(finding["replay"]).read_text())
        assert (saved["server"], saved["seed"], saved["level"]) == (
            str(server.address), "3", "MUST")
        assert saved["version"]
        again = replay_cli(finding["replay"], server.address)
        elsewhere = replay_cli(finding["replay"], other.address)
    lines = again.stdout.splitlines()
    assert again.returncode == 1, again.stdout
    assert lines[0].startswith("recorded: [command_answered] MUST (EXPN)")
    assert "[command_answered] MUST: no complete reply" in again.stdout
    assert lines[-1] == "verdict: FAIL  reproduced: [command_answered] MUST, the recorded finding"
    assert "note: replaying against" not in again.stdout
    assert elsewhere.returncode == 0
    assert elsewhere.stdout.splitlines()[1].startswith(
        f"note: replaying against {other.address}, not the server it was recorded against")
    # The transcript says how long the run waited, as the headline does.
    assert any("in the run: no complete reply within" in line for line in finding["transcript"])


@pytest.mark.timeout(300)
def test_a_replayed_should_finding_is_a_warning_and_exits_0(pytester):
    with FaultServer("noop_refuses_parameter") as server:
        report = run(pytester, server.address, "--smtp-strict", "--smtp-fail-fast")
        finding = only(report)
        again = replay_cli(finding["replay"], server.address)
    assert again.returncode == 0, again.stdout
    assert again.stdout.splitlines()[-1] == (
        "verdict: WARN  reproduced: [noop_ignores_parameter] SHOULD, the recorded finding (a "
        "warning: fails only with --strict)")


@pytest.mark.timeout(300)
def test_two_servers_runs_keep_two_failure_files(pytester):
    failures = pytester.path / "failures"
    with FaultServer("noop_replies_252") as first, FaultServer("noop_replies_252") as second:
        for server in (first, second):
            run(pytester, server.address, f"--smtp-failures-dir={failures}", "--smtp-fail-fast")
    saved = sorted(failures.glob("*/*.json"))
    assert [path.parent.name for path in saved] == sorted(
        str(server.address).replace(":", "_") for server in (first, second))
    assert {json.loads(path.read_text())["server"] for path in saved} == {
        str(first.address), str(second.address)}


@pytest.mark.timeout(300)
@pytest.mark.parametrize("defence", ["starttls_again_503", "starttls_again_554"])
def test_starttls_over_tls_refused_as_not_offered_is_no_failure(pytester, tmp_path, defence):
    """RFC 3207 §4.2: over TLS, STARTTLS is not offered again, and no RFC gives its reply
    there. Exim says 503 (as to any verb not advertised: no finding); Postfix says 554 (no
    rule broken, a note)."""
    context = Certificates(tmp_path).server_context()
    with EsmtpServer(defence, tls=context) as server:
        report = run(pytester, server.address)
    assert failing(report) == failing(report, "WARN") == [], [
        (f["check"], f["cause"], f["cause_code"]) for f in report["findings"]]
    notes = [(f["check"], f["cause"], f["cause_code"], f["verdict"]) for f in report["findings"]
             if f["cause"] == "STARTTLS"]
    assert notes == ([] if defence.endswith("503") else
                     [("reply_code_documented", "STARTTLS", 554, "INFO")])
