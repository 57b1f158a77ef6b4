"""SMTP smuggling: the end-of-data probes, from the bytes they send to a whole run's verdict.

Every non-standard ending (``NON_STANDARD_ENDINGS``) has a fault server open to it alone
(``tests/fault_server.py``'s ENDING_TAKEN): each is caught with its ending named, in safe
mode and with messages delivered, and a server that ends the data only at <CRLF>.<CRLF>
passes, with nothing completed in safe mode. Postfix, off and on: tests/test_postfix.py.
"""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path
from typing import Any

import pytest

from conformance.checks import Exchange, data_ends_only_at_crlf_dot_crlf
from conformance.engine.address import ServerAddress
from conformance.engine.replay import Script, replay, script_of
from conformance.engine.session import CheckedSession
from conformance.engine.settings import SessionSettings
from conformance.protocol.commands import (
    DATA_PROBE,
    NON_STANDARD_ENDINGS,
    Command,
    DataProbe,
    Step,
    describe,
)
from conformance.protocol.model import Session, State
from conformance.protocol.replies import Reply
from conformance.protocol.tables import get_profile
from conformance.protocol.vocabulary import END_OF_DATA
from conformance.strategies.commands import SMUGGLED_LINES
from tests.fault_server import ENDING_TAKEN, FaultServer
from tests.scripted_server import Lines, ScriptedServer
from tests.scripted_server import Script as ScriptFunction

CHECK = "data_ends_only_at_crlf_dot_crlf"
SEED = get_profile("seed")
TRANSACTION = ("EHLO client.example.test", "MAIL FROM:<a@example.test>",
               "RCPT TO:<b@example.test>", "DATA")


@pytest.mark.parametrize("ending", list(NON_STANDARD_ENDINGS))
def test_a_probe_is_its_ending_between_content_and_one_command_line(ending):
    probe = DataProbe(ending, b"RSET\r\n")
    assert probe.wire == DataProbe.CONTENT + NON_STANDARD_ENDINGS[ending] + b"RSET\r\n"
    assert b"\r\n.\r\n" not in probe.wire  # only the real end, after it, ends the data
    assert (probe.wire + probe.REAL_END).endswith(b"\r\n.\r\n")
    assert DataProbe.from_wire(probe.wire) == probe
    assert Step.of(probe).data == probe.wire
    assert ending in describe(probe)


@pytest.mark.parametrize(("ending", "smuggled"), [
    ("<LF>.<LF>", b"RSET"), ("<LF>.<LF>", b"RSET\r\nNOOP\r\n"), ("<LF>", b"RSET\r\n")])
def test_a_probe_is_refused_unless_one_known_ending_and_one_line(ending, smuggled):
    with pytest.raises(ValueError, match=r"unknown end-of-data variant|not one command line"):
        DataProbe(ending, smuggled)


def test_wire_that_is_no_probe_is_refused():
    with pytest.raises(ValueError, match="not an end-of-data probe"):
        DataProbe.from_wire(b"Subject: x\r\n\r\nbody\r\n")


def _early(probe: DataProbe, code: int, smuggled: int | None = None) -> Exchange:
    return Exchange(SEED, Session(state=State.DATA), END_OF_DATA, probe,
                    Reply(code, (f"{code} ok",)), unsolicited=None if smuggled is None else
                    Reply(smuggled, (f"{smuggled} ok",)), early=True)


def test_check_names_the_ending_and_the_command_run_after_it():
    probe = DataProbe("<CR>.<CR>", b"NOOP\r\n")
    assert "took <CR>.<CR> for the end" in str(data_ends_only_at_crlf_dot_crlf(_early(probe, 250)))
    complaint = str(data_ends_only_at_crlf_dot_crlf(_early(probe, 554, smuggled=250)))
    assert "554 before the end" in complaint
    assert "250 to 'NOOP'" in complaint
    assert _early(probe, 250).filed_under == f"{END_OF_DATA} <CR>.<CR>"


def test_check_says_nothing_of_the_reply_to_the_real_end():
    on_time = Exchange(SEED, Session(state=State.DATA), END_OF_DATA,
                       DataProbe("<LF>.<LF>", b"RSET\r\n"), Reply(250, ("250 ok",)))
    assert data_ends_only_at_crlf_dot_crlf(on_time) is None
    assert on_time.filed_under == END_OF_DATA


def _probed(address: ServerAddress, probe: DataProbe, *, deliver: bool) -> CheckedSession:
    session = CheckedSession(address, SessionSettings(SEED, timeout=2.0, deliver=deliver))
    session.connect()
    for line in TRANSACTION:
        session.send(Command.of(line))
    assert session.model.state is State.DATA
    session.send_probe(probe)
    assert not session.client.connected  # the session ends after a probe, either way
    return session


@pytest.mark.parametrize("deliver", [False, True], ids=["safe", "deliver"])
@pytest.mark.parametrize(("fault", "ending"), list(ENDING_TAKEN.items()),
                         ids=list(ENDING_TAKEN))
def test_each_ending_a_server_takes_is_found_and_named(fault, ending, deliver):
    for smuggled in SMUGGLED_LINES:
        with FaultServer(fault) as server:
            session = _probed(server.address, DataProbe(ending, smuggled), deliver=deliver)
        [finding] = session.findings
        assert finding.check.id == CHECK
        assert f"took {ending} for the end" in finding.complaint
        assert repr(smuggled.decode().strip()) in finding.complaint  # and it ran the line


@pytest.mark.parametrize("deliver", [False, True], ids=["safe", "deliver"])
def test_a_strict_server_passes_every_probe_and_completes_only_when_delivering(deliver):
    with FaultServer() as server:
        for ending in NON_STANDARD_ENDINGS:
            session = _probed(server.address, DataProbe(ending, b"RSET\r\n"), deliver=deliver)
            assert session.findings == []
            assert session.steps[-1] == Step.of(DataProbe(ending, b"RSET\r\n"))
        assert server.messages == (len(NON_STANDARD_ENDINGS) if deliver else 0)


def _server_at_data(answer: bytes, *, delay: float = 0.0, then: bytes = b"") -> ScriptFunction:
    """A script: takes a transaction; at the first line of its data that ends in a bare LF,
    answers ``answer`` (after ``delay`` seconds), then each later line with ``then`` (none:
    closes the connection)."""
    def script(conn: socket.socket, stop: threading.Event) -> None:
        lines = Lines(conn)
        conn.sendall(b"220 strict.example.test ESMTP\r\n")
        while (line := lines.next()) and not line.upper().startswith(b"DATA"):
            conn.sendall(b"250 OK\r\n")
        conn.sendall(b"354 go ahead\r\n")
        while (line := lines.next()) and line.endswith(b"\r\n"):
            pass
        stop.wait(delay)
        conn.sendall(answer)
        while then and lines.next():
            conn.sendall(then)
    return script


@pytest.mark.parametrize(("answer", "deliver"), [
    (b"521 5.5.2 bare <LF> received\r\n", True),  # Postfix 3.9's "reject", then a close
    (b"451 4.5.0 bare <LF>, try later\r\n", False),
    (b"554 5.6.0 bare <LF>\r\n421 4.7.0 closing\r\n", True),  # the 421 answers no line
], ids=["521-close", "451-close", "554-then-421"])
def test_a_refusal_of_the_bare_line_break_is_a_remark_not_a_finding(answer, deliver):
    with ScriptedServer(_server_at_data(answer)) as server:
        session = _probed(server.address, DataProbe("<LF>.<LF>", b"RSET\r\n"),
                          deliver=deliver)
    assert session.findings == []
    code = answer[:3].decode()
    assert any(f"refused mail data ending in <LF>.<LF> before its end: {code}" in note
               for note in session.record.notes), session.record.notes


def test_an_ending_answered_after_the_wait_is_still_found_when_delivering():
    """A server that took the ending but answered it late: its answer is read as the real
    end's, and the reply to the smuggled line comes after it."""
    late = _server_at_data(b"250 queued\r\n", delay=0.5, then=b"250 OK\r\n")
    with ScriptedServer(late) as server:
        session = _probed(server.address, DataProbe("<LF>.<LF>", b"RSET\r\n"), deliver=True)
    [finding] = session.findings
    assert finding.check.id == CHECK
    assert "then answered 250 to 'RSET'" in finding.complaint


def test_a_probe_outside_the_data_phase_is_not_sent():
    with FaultServer() as server:
        session = CheckedSession(server.address, SessionSettings(SEED, timeout=2.0))
        session.connect()
        session.send(Command.of("EHLO client.example.test"))
        assert session.send_probe(DataProbe("<LF>.<LF>", b"RSET\r\n")) is None
        assert all(step.group != DATA_PROBE for step in session.steps)
        session.close()


def test_a_replay_never_sends_a_probe_as_commands():
    """A script whose DATA is refused on replay (here: no recipient) stops before the
    probe's data, which would otherwise be read as command lines."""
    steps = (Step.of(Command.of("EHLO client.example.test")),
             Step.of(Command.of("MAIL FROM:<a@example.test>")), Step.of(Command.of("DATA")),
             Step.of(DataProbe("<LF>.<LF>", b"RSET\r\n")))
    with FaultServer() as server:
        replayed = replay(Script("seed", CHECK, steps), server.address, SessionSettings(SEED,
                                                                                        timeout=2.0))
        sent = list(server.received)
    assert replayed.findings == ()
    assert not any(b"probe" in line for line in sent), sent


def test_a_recorded_probe_replays_and_finds_the_same():
    with FaultServer("ends_data_at_crlf_nul_dot_crlf") as server:
        probe = DataProbe("<CRLF><NUL>.<CRLF>", b"HELP\r\n")
        session = _probed(server.address, probe, deliver=False)
        [record] = session.record.findings.values()
        again = replay(script_of(record), server.address, SessionSettings(SEED, timeout=2.0,
                                                                          deliver=False))
    assert again.first(record.key) is not None


# --- whole runs --------------------------------------------------------------------------------

SUITE = ["--pyargs", "conformance.suite", "-p", "no:cacheprovider", "--hypothesis-seed=0",
         "--smtp-timeout=1", "--smtp-examples=30"]


def run(pytester: pytest.Pytester, server: FaultServer, *args: str
        ) -> tuple[pytest.RunResult, dict[str, Any]]:
    report = pytester.path / "report.json"
    result = pytester.runpytest(*SUITE, f"--server={server.address}",
                                f"--smtp-report={report}", *args)
    return result, json.loads(Path(report).read_text())


def _named_endings(report: dict[str, Any]) -> list[str]:
    return sorted(f["group"].removeprefix(f"{END_OF_DATA} ") for f in report["findings"]
                  if f["check"] == CHECK and f["verdict"] == "FAIL")


@pytest.mark.timeout(120)
@pytest.mark.parametrize("mode", [[], ["--smtp-deliver"]], ids=["safe", "deliver"])
def test_a_run_finds_every_ending_a_server_takes_each_a_finding_of_its_own(pytester, mode):
    with FaultServer(*ENDING_TAKEN) as server:
        result, report = run(pytester, server, *mode)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert _named_endings(report) == sorted(NON_STANDARD_ENDINGS)
    for finding in report["findings"]:
        if finding["check"] == CHECK:
            assert finding["group"].removeprefix(f"{END_OF_DATA} ") in finding["complaint"]
            assert len(finding["steps"]) <= 5  # minimised: a transaction and the probe


@pytest.mark.timeout(120)
def test_a_run_blames_only_the_ending_a_server_takes(pytester):
    with FaultServer("ends_data_at_lf_dot_lf") as server:
        result, report = run(pytester, server)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    # <CRLF>.<LF> holds <LF>.<LF>: a server that takes the one takes the other.
    assert _named_endings(report) == ["<CRLF>.<LF>", "<LF>.<LF>"]
    result.stdout.fnmatch_lines(["*took <LF>.<LF> for the end of the data*"])


@pytest.mark.timeout(120)
def test_a_strict_server_passes_and_safe_mode_completes_nothing(pytester):
    with FaultServer() as server:
        result, report = run(pytester, server)
        assert server.messages == 0
    assert result.ret == pytest.ExitCode.OK
    assert report["extensions"]["exercised"]["end-of-data probes"] == len(NON_STANDARD_ENDINGS)


# --- a bare CR or LF in a command line ---------------------------------------------------------

BARE_LF = Command(b"NOOP\nNOOP\r\n", valid=False, group="NOOP")


def _sent_alone(address: ServerAddress, command: Command) -> CheckedSession:
    session = CheckedSession(address, SessionSettings(SEED, timeout=2.0))
    session.connect()
    session.send(command)
    assert not session.client.connected  # the session ends after the listen
    return session


def test_a_second_reply_is_found_even_beside_another_finding_on_the_first():
    with FaultServer("bare_lf_ends_command_lines", "noop_no_separator") as server:
        session = _sent_alone(server.address, BARE_LF)
    found = sorted(f.check.id for f in session.findings)
    assert found == ["command_lines_end_only_at_crlf", "reply_well_formed"], found
    assert len(session.record.findings) == 2  # the first reply judged once


@pytest.mark.parametrize("answers", [b"500 bad line\r\n421 4.7.0 closing\r\n",
                                     b"500 bad line\r\n"], ids=["then-421", "alone"])
def test_one_reply_to_a_line_with_a_bare_lf_is_no_finding(answers):
    def script(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(b"220 strict.example.test ESMTP\r\n")
        if Lines(conn).next():
            conn.sendall(answers)
    with ScriptedServer(script) as server:
        session = _sent_alone(server.address, BARE_LF)
    assert session.findings == []
