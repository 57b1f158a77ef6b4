"""The checked session: pacing (--smtp-rate, on a fake clock), findings recorded rather than
raised, and control probes, against real fault servers on 127.0.0.1."""

from __future__ import annotations

import pytest

from conformance.checks.grading import FindingKey
from conformance.engine.pacing import Pacer
from conformance.engine.probes import SHORT_NOOP, control_probe
from conformance.engine.session import CheckedSession
from conformance.engine.settings import SessionSettings
from conformance.protocol.commands import Command, Step
from conformance.protocol.errors import StopRun
from conformance.protocol.replies import Reply
from conformance.protocol.tables import get_profile
from tests.fault_server import FaultServer


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(round(seconds, 6))
        self.now += seconds


def test_pacer_spaces_commands_at_the_rate() -> None:
    clock = FakeClock()
    pacer = Pacer(4, clock=clock, sleep=clock.sleep)
    for _ in range(3):
        pacer.wait()
    assert clock.slept == [0.25, 0.25]  # the first command goes at once


def test_pacer_does_not_wait_when_the_server_is_slower_than_the_rate() -> None:
    clock = FakeClock()
    pacer = Pacer(2, clock=clock, sleep=clock.sleep)
    pacer.wait()
    clock.now += 0.3
    pacer.wait()  # 0.3 s since the last one: 0.2 s to wait
    clock.now += 1.0
    pacer.wait()  # a second later: nothing
    assert clock.slept == [0.2]


def test_no_rate_means_no_waiting() -> None:
    clock = FakeClock()
    pacer = Pacer(None, clock=clock, sleep=clock.sleep)
    for _ in range(5):
        pacer.wait()
    assert clock.slept == []


# --- findings are recorded, not raised; a deviation ends the session -------------------------

TIMEOUT = 0.5
SETTINGS = SessionSettings(get_profile("seed"), timeout=TIMEOUT)


@pytest.mark.parametrize(("fault", "line", "goes_on"), [
    ("noop_replies_252", "NOOP", True),  # 2yz to NOOP moves nothing: the state is known
    ("helo_replies_220", "HELO a.example.test", False),  # would move to READY: unsure
    ("expn_replies_354", "EXPN list", False),  # a class EXPN's row never has
    ("noop_no_separator", "NOOP", False),  # an unreadable reply
])
def test_a_session_goes_on_after_a_deviation_only_if_its_state_is_known(fault, line, goes_on):
    with FaultServer(fault) as server:
        session = CheckedSession(server.address, SETTINGS)
        session.connect()
        session.send(Command.of(line))
        assert session.findings
        assert session.model.open is goes_on
        session.close()


def test_a_deviation_is_recorded_not_raised_and_ends_the_session() -> None:
    helo = Command.of("HELO a.example.test")
    with FaultServer("helo_replies_220") as server:
        session = CheckedSession(server.address, SETTINGS)
        session.connect()
        session.send(Command.of("NOOP"))
        reply = session.send(helo)  # no exception: the finding is in the record
        assert reply is not None
        assert reply.code == 220
        assert [f.check.id for f in session.findings] == ["reply_code_documented"]
        assert not session.model.open  # closed: the model no longer knows the state
        [finding] = session.record.findings.values()
        assert finding.key == FindingKey("reply_code_documented", "MUST", "HELO", 220)
        assert finding.verdict == "FAIL"
        assert finding.session == (Step("NOOP", b"NOOP\r\n"), Step("HELO", helo.line))
        assert finding.transcript[-1].endswith(" S: 220 hello")
        after = session.send(Command.of("NOOP"))  # a new session, from a new connection
        session.close()
    assert after is not None
    assert after.code == 250
    assert session.steps == [Step("NOOP", b"NOOP\r\n")]
    assert session.findings == []  # this session's: the new one has none
    assert len(session.record.findings) == 1


def test_fail_fast_stops_the_run_at_the_first_failing_finding() -> None:
    with FaultServer("helo_replies_220") as server:
        session = CheckedSession(server.address, SessionSettings(get_profile("seed"),
                                                                 timeout=TIMEOUT, fail_fast=True))
        session.connect()
        with pytest.raises(StopRun, match="fail-fast"):
            session.send(Command.of("HELO a.example.test"))
        session.close()
    assert [f.key.check for f in session.record.findings.values()] == ["reply_code_documented"]


def test_a_command_never_answered_is_a_must_and_is_not_sent_again() -> None:
    with FaultServer("help_never_answers") as server:
        session = CheckedSession(server.address, SessionSettings(get_profile("seed"), timeout=0.2,
                                                                 hang_wait=0.2))
        session.connect()
        assert session.send(Command.of("HELP")) is None
        assert session.send(Command.of("HELP")) is None  # not sent: it would hang again
        session.close()
        sent = list(server.received)
    assert sent == [b"HELP\r\n"]
    [finding] = session.record.findings.values()
    assert finding.key == FindingKey("command_answered", "MUST", "HELP", 0)
    assert "HELP" in session.adaptation.unanswered


# --- control probes: the plain form of a refused valid command -------------------------------

@pytest.mark.parametrize(("sent", "code", "probe"), [
    (Command(b"noop\r\n"), 500, Command(b"NOOP\r\n")),
    (Command(b"Mail FROM:<a@example.test>\r\n"), 502, Command(b"MAIL FROM:<a@example.test>\r\n")),
    (Command(b"NOOP hello\r\n"), 501, Command(b"NOOP\r\n")),  # NOOP's parameter refused
    (Command(b"NOOP " + b"a" * 505 + b"\r\n"), 500, SHORT_NOOP),  # its length? (512 octets)
    (SHORT_NOOP, 501, Command(b"NOOP\r\n")),
    (Command(b"NOOP hello\r\n"), 250, None),  # not refused
    (Command(b"NOOP\r\n"), 500, None),  # already the plain form
    (Command(b"mail FROM:<a@example.test>\r\n"), 501, None),  # refused, but not as unknown
    (Command(b"noop\r\n", valid=False), 500, None),  # malformed: a refusal is fair
])
def test_a_control_probe_is_the_plain_form_of_a_refused_valid_command(
        sent: Command, code: int, probe: Command | None) -> None:
    assert control_probe(sent, Reply.build(code, "no")) == probe


def test_a_500_to_a_lower_case_verb_is_probed_in_upper_case() -> None:
    with FaultServer("lowercase_verbs_unrecognised") as server:
        session = CheckedSession(server.address, SETTINGS)
        session.connect()
        reply = session.send(Command(b"noop\r\n"))
        session.close()
        sent = list(server.received)
    assert reply is not None
    assert reply.code == 500
    assert sent == [b"noop\r\n", b"NOOP\r\n"]
    assert session.steps == [Step("NOOP", b"noop\r\n")]  # the probe is not a step of its own
    [finding] = session.record.findings.values()
    assert finding.key == FindingKey("verb_case_insensitive", "MUST", "a verb not in upper case",
                                     500)
    assert finding.sent == "NOOP\\r\\n"
    assert finding.sent_hex == b"NOOP\r\n".hex()
    assert finding.complaint == "500 to 'noop' but 250 to 'NOOP': verbs are case-insensitive"
    assert finding.session == (Step("NOOP", b"noop\r\n"),)  # replaying it sends the probe again


def test_no_probe_is_sent_when_probes_are_off() -> None:
    with FaultServer("lowercase_verbs_unrecognised") as server:
        session = CheckedSession(server.address, SessionSettings(get_profile("seed"),
                                                                 timeout=TIMEOUT, probes=False))
        session.connect()
        session.send(Command(b"noop\r\n"))
        session.close()
        sent = list(server.received)
    assert sent == [b"noop\r\n"]
    assert session.record.findings == {}


def test_probes_chain_so_a_refused_parameter_is_blamed_whatever_the_case() -> None:
    with FaultServer("lowercase_verbs_unrecognised", "noop_refuses_parameter") as server:
        session = CheckedSession(server.address, SETTINGS)
        session.connect()
        session.send(Command(b"noop x\r\n"))
        session.close()
        sent = list(server.received)
    assert sent == [b"noop x\r\n", b"NOOP x\r\n", b"NOOP\r\n"]  # at most two probes
    assert session.steps == [Step("NOOP", b"noop x\r\n")]
    session.record.drop_refuted()  # "NOOP x" got 500, but NOOP is implemented: 250 to "NOOP"
    assert list(session.record.findings) == [
        FindingKey("noop_ignores_parameter", "SHOULD", "NOOP", 250)]
