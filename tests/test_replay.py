"""Saved failing sessions replay the same way; the printf reproducer sends the same bytes."""

from __future__ import annotations

import dataclasses
import json
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path

import pytest

from conformance.checks import PIPELINED_BATCH, THE_SESSION
from conformance.checks.grading import FindingKey
from conformance.engine.address import ServerAddress
from conformance.engine.replay import (
    Script,
    file_name,
    load,
    printf_reproducer,
    replay,
    save,
    script_of,
    writes_of,
)
from conformance.engine.session import CheckedSession
from conformance.engine.settings import SessionSettings
from conformance.protocol.commands import Command, Step
from conformance.protocol.tables import get_profile
from tests.fault_server import FAULTS, FaultServer
from tests.scripted_server import ScriptedServer, read_line
from tests.tls_server import SERVER_NAME, Certificates, starttls_server

# Fail-fast: the first failing finding is the one to save and replay here.
SUITE = ["--pyargs", "conformance.suite", "-p", "no:cacheprovider", "--smtp-timeout=0.5",
         "--smtp-deliver", "--smtp-strict", "--smtp-examples=200", "--smtp-fail-fast"]
# A fault early in a session, one after N recipients, one after a message, a framing fault.
SETTINGS = SessionSettings(get_profile("seed"), timeout=0.5)
REPLAYED = ["helo_replies_220", "third_recipient_554", "mail_fails_after_message",
            "end_of_data_replies_354", "bare_lf_replies"]


def replay_cli(path: Path, server: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "conformance", "replay", str(path),
                           f"--server={server}", "--timeout=0.5", *extra],
                          capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("fault", REPLAYED)
def test_replaying_a_saved_failure_fails_the_same_way(pytester, fault):
    failures = pytester.path / "failures"
    report = pytester.path / "report.json"
    with FaultServer(fault) as server:
        result = pytester.runpytest(*SUITE, f"--server={server.address}",
                                    f"--smtp-failures-dir={failures}", f"--smtp-report={report}")
        assert result.ret == pytest.ExitCode.TESTS_FAILED
        [saved] = json.loads(report.read_text())["findings"][:1]
        assert saved["check"] == FAULTS[fault]
        result.stdout.fnmatch_lines([
            "Replay (same bytes, same checks):",
            f"  python -m conformance replay *{Path(saved['replay']).name} "
            f"--server={server.address}"])
        replayed = replay_cli(Path(saved["replay"]), str(server.address))
    assert replayed.returncode == 1, replayed.stdout + replayed.stderr
    lines = replayed.stdout.splitlines()
    assert lines[0].startswith(f"recorded: [{FAULTS[fault]}] MUST ({saved['cause']}")
    assert f"against {server.address}, profile seed, seed " in lines[0]
    assert lines[-1] == f"verdict: FAIL  reproduced: [{FAULTS[fault]}] MUST, the recorded finding"
    # Kept in a folder of its server's: another server's run does not overwrite it.
    assert Path(saved["replay"]).parent == failures / str(server.address).replace(":", "_")


def test_replay_against_a_conforming_server_does_not_reproduce(tmp_path):
    path = tmp_path / "s.json"
    save(Script("seed", "reply_code_documented", (Step("HELO", b"HELO example.test\r\n"),)), path)
    with FaultServer() as server:
        replayed = replay_cli(path, str(server.address))
    assert replayed.returncode == 0
    assert "did not reproduce" in replayed.stdout
    assert "C: HELO example.test" in replayed.stdout


def test_replay_of_an_unreachable_server_exits_6_with_one_line(tmp_path):
    path = tmp_path / "s.json"
    save(Script("seed", "x", (Step("NOOP", b"NOOP\r\n"),)), path)
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    replayed = replay_cli(path, f"127.0.0.1:{port}")
    assert replayed.returncode == 6
    assert replayed.stderr.count("\n") == 1
    assert "cannot connect" in replayed.stderr


@pytest.mark.parametrize("content", ["{", '{"format": 1}', '{"format": 9, "steps": []}'])
def test_replay_of_a_bad_file_is_a_one_line_usage_error(tmp_path, content):
    path = tmp_path / "bad.json"
    path.write_text(content)
    replayed = replay_cli(path, "127.0.0.1:25")
    assert replayed.returncode == 2
    assert replayed.stderr.startswith("error: ")
    assert replayed.stderr.count("\n") == 1


def test_replay_file_keeps_every_octet(tmp_path):
    steps = (Step("unrecognised", bytes(range(256)) + b"\r\n", valid=False),
             Step("received data", b".\r\n"))
    path = tmp_path / "octets.json"
    save(Script("rfc5321", "reply_well_formed", steps), path)
    assert load(path) == Script("rfc5321", "reply_well_formed", steps)


def test_printf_reproducer_sends_exactly_the_session_bytes_then_quit():
    steps = (Step("HELO", b"HELO 100% 'quoted' \\ back\r\n"),
             Step("unrecognised", b"\x01\xff\tX\r\n"))
    line = printf_reproducer(steps, ServerAddress("127.0.0.1", 2525))
    assert line.endswith(" | nc -w 5 127.0.0.1 2525")
    printf = line.rsplit(" | nc", 1)[0]
    sent = subprocess.run(["sh", "-c", printf], capture_output=True, timeout=10, check=True)
    assert sent.stdout == b"".join(step.data for step in steps) + b"QUIT\r\n"


A_LONG_FAILING_SESSION = '''
from conformance.protocol.commands import Command


def test_long_session(smtp_state_machine):
    # As a test of a user's own would: findings recorded by a session of the state machine
    # fixture's run fail the test when it ends, each with its shortest session.
    session = smtp_state_machine.new_session()
    session.connect()
    for line in [b"EHLO a.example.test", b"NOOP", b"HELP", b"EHLO b.example.test",
                 b"NOOP", b"HELO c.example.test"]:
        session.send(Command(line + b"\\r\\n"))
'''


def test_the_saved_and_shown_session_is_the_shortest_that_fails(pytester):
    pytester.makepyfile(A_LONG_FAILING_SESSION)
    failures = pytester.path / "failures"
    with FaultServer("helo_replies_220") as server:
        result = pytester.runpytest("-p", "no:cacheprovider", "--smtp-timeout=0.5",
                                    f"--server={server.address}",
                                    f"--smtp-failures-dir={failures}")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    [saved] = failures.glob("*/*.json")
    assert load(saved).steps == (Step("HELO", b"HELO c.example.test\r\n"),)
    result.stdout.fnmatch_lines([
        "[[]reply_code_documented[]] MUST: 220 is not documented for HELO*",
        "  Transcript, shortest found: 1 of 6 steps:",
        "*C: HELO c.example.test",
        "*S: 220 hello",
        "Replay (same bytes, same checks):",
        "*printf 'HELO c.example.test\\r\\nQUIT\\r\\n' | nc *",
    ])


TRANSACTION = (Step("MAIL", b"MAIL FROM:<a@example.test>\r\n"),
               Step("RCPT", b"RCPT TO:<b@example.test>\r\n"), Step("DATA", b"DATA\r\n"))


def test_replay_never_sends_lines_as_a_message_the_script_does_not_have():
    # Recorded where DATA got 503; if the server now answers 354, the "." must not follow.
    steps = (*TRANSACTION, Step("unrecognised", b".\r\n"))
    with FaultServer() as server:
        replayed = replay(Script("seed", "x", steps), server.address, SETTINGS)
    assert replayed.findings == ()
    assert replayed.transcript.splitlines()[-1].endswith("S: 354 End data with <CRLF>.<CRLF>")


def test_replay_in_safe_mode_never_completes_a_message():
    steps = (*TRANSACTION, Step("received data", b"hello\r\n.\r\n"))
    with FaultServer() as server:
        replayed = replay(Script("seed", "x", steps), server.address, dataclasses.replace(SETTINGS,
                                                                                          deliver=False))
    assert replayed.findings == ()
    assert "Message accepted" not in replayed.transcript
    assert "C: hello" not in replayed.transcript


def test_a_replay_returns_its_findings_and_ends_at_the_first_deviation():
    # 220 to HELO would move the session on: the model cannot know the server's state after
    # it, so the session ends there. (252 to NOOP moves nothing: a session goes on after it.)
    steps = (Step("NOOP", b"NOOP\r\n"), Step("HELO", b"HELO a.example.test\r\n"),
             Step("NOOP", b"NOOP\r\n"))
    noop_252 = FindingKey("reply_code_documented", "MUST", "NOOP", 252)
    helo_220 = noop_252._replace(cause="HELO", code=220)
    with FaultServer("noop_replies_252", "helo_replies_220") as server:
        replayed = replay(Script("seed", "reply_code_documented", steps), server.address, SETTINGS)
        sent = list(server.received)
    assert sent == [b"NOOP\r\n", b"HELO a.example.test\r\n"]  # no NOOP after the HELO
    assert [f.key for f in replayed.findings] == [noop_252, helo_220]
    assert replayed.first() == replayed.first(noop_252) == replayed.findings[0]
    assert replayed.first(helo_220) == replayed.findings[1]
    assert replayed.first(helo_220._replace(code=221)) is None
    assert replayed.findings[0].session == steps[:1]
    assert replayed.findings[1].session == steps[:2]


def test_a_replay_sends_the_control_probe_again_where_it_is_due():
    # The recorded steps hold only the lower-case NOOP; its probe is not a step of its own.
    script = Script("seed", "verb_case_insensitive", (Step("NOOP", b"noop\r\n"),))
    with FaultServer("lowercase_verbs_unrecognised") as server:
        replayed = replay(script, server.address, SETTINGS)
        sent = list(server.received)
    assert sent == [b"noop\r\n", b"NOOP\r\n"]
    finding = replayed.first()
    assert finding is not None
    assert finding.key == FindingKey("verb_case_insensitive", "MUST", "a verb not in upper case",
                                     500)
    assert script_of(finding).steps == script.steps
    assert script_of(finding).key == finding.key


@pytest.mark.parametrize(("key", "name"), [
    (FindingKey("reply_code_documented", "MUST", "HELO", 220),
     "reply_code_documented-MUST-HELO-220.json"),
    (FindingKey("reply_code_documented", "MUST", "received data", 354),
     "reply_code_documented-MUST-received_data-354.json"),
    (FindingKey("command_answered", "MUST", "HELP", 0), "command_answered-MUST-HELP-0.json"),
    # A MUST and a SHOULD of one check, command and code do not share a file.
    (FindingKey("reply_well_formed", "SHOULD", "MAIL", 501),
     "reply_well_formed-SHOULD-MAIL-501.json"),
])
def test_a_replay_file_is_named_after_its_finding(key, name):
    assert file_name(key) == name


def slow_noop(conn: socket.socket, stop: threading.Event) -> None:
    """Every NOOP is answered 0.8 s late; anything else at once."""
    conn.sendall(b"220 mx.example.test\r\n")
    while line := read_line(conn):
        if line.upper().startswith(b"NOOP"):
            time.sleep(0.8)
        conn.sendall(b"250 ok\r\n")


def test_a_late_reply_replays_as_late_not_as_missing():
    late = FindingKey("reply_within_timeout", "SHOULD", THE_SESSION, 0)
    with ScriptedServer(slow_noop) as server:
        replayed = replay(Script("seed", "reply_within_timeout", (Step("NOOP", b"NOOP\r\n"),)),
                          server.address, SETTINGS)
    assert [f.key for f in replayed.findings] == [late]


def test_replaying_a_recorded_session_sends_exactly_what_the_session_sent():
    with FaultServer("lowercase_verbs_unrecognised", "helo_replies_220") as server:
        session = CheckedSession(server.address, SETTINGS)
        session.connect()
        session.send(Command(b"noop x y\r\n", valid=False))  # 500, and no probe: malformed
        session.send(Command.of("HELO a.example.test"))
        session.close()
        recorded = list(server.received)
        server.received.clear()
        finding = session.record.findings[FindingKey("reply_code_documented", "MUST", "HELO",
                                                     220)]
        replayed = replay(script_of(finding), server.address, SETTINGS)
        assert list(server.received) == recorded
    first = replayed.first()
    assert first is not None
    assert first.key == finding.key


NOOP_252 = Script("rfc5321", "reply_code_documented", (Step("NOOP", b"NOOP\r\n"),))


@pytest.mark.parametrize(("profile", "extra", "status", "verdict"), [
    ("rfc5321", (), 0, "verdict: WARN  reproduced: [reply_code_documented] SHOULD, the recorded "
                       "finding (a warning: fails only with --strict)"),
    ("rfc5321", ("--strict",), 1, "verdict: FAIL  reproduced: [reply_code_documented] SHOULD, "
                                  "the recorded finding"),
    ("seed", (), 1, "verdict: FAIL  reproduced: [reply_code_documented] MUST, the recorded "
                    "finding"),
    ("seed", ("--strict",), 1, "verdict: FAIL  reproduced: [reply_code_documented] MUST, the "
                               "recorded finding"),
])
def test_replay_grades_like_the_suite_should_fails_only_when_strict(tmp_path, profile, extra,
                                                                    status, verdict):
    path = tmp_path / "s.json"
    save(NOOP_252, path)
    with FaultServer("noop_replies_252") as server:
        replayed = replay_cli(path, str(server.address), f"--profile={profile}", *extra)
    assert replayed.returncode == status, replayed.stdout + replayed.stderr
    assert replayed.stdout.splitlines()[-1] == verdict
    assert [line for line in replayed.stdout.splitlines() if line.startswith("verdict:")] == [
        verdict]


def test_replay_that_does_not_reproduce_says_pass_in_its_verdict_line(tmp_path):
    path = tmp_path / "s.json"
    save(NOOP_252, path)
    with FaultServer() as server:
        replayed = replay_cli(path, str(server.address), "--strict")
    assert replayed.returncode == 0
    assert replayed.stdout.splitlines()[-1].startswith("verdict: PASS  did not reproduce")


# --- batches and TLS upgrades ----------------------------------------------------------------

EHLO_STEP = Step("EHLO", b"EHLO client.example.test\r\n")
STARTTLS_STEP = Step("STARTTLS", b"STARTTLS\r\n")
TLS_STEP = Step.tls("mx.example.test")


def batched(*steps: Step, batch: int) -> tuple[Step, ...]:
    return tuple(step._replace(batch=batch) for step in steps)


def test_writes_are_batches_upgrades_with_their_starttls_and_single_steps():
    first, second = batched(*TRANSACTION[:2], batch=1), batched(*TRANSACTION[:2], batch=2)
    steps = (EHLO_STEP, *first, *second, STARTTLS_STEP, TLS_STEP, EHLO_STEP, STARTTLS_STEP,
             EHLO_STEP)
    assert writes_of(steps) == [(EHLO_STEP,), first, second, (STARTTLS_STEP, TLS_STEP),
                                (EHLO_STEP,), (STARTTLS_STEP,), (EHLO_STEP,)]


def test_a_session_with_batches_and_tls_round_trips_as_format_2(tmp_path):
    steps = (EHLO_STEP, STARTTLS_STEP, TLS_STEP, *batched(*TRANSACTION, batch=1))
    path = tmp_path / "new.json"
    save(Script("seed", "command_answered", steps), path)
    assert json.loads(path.read_text())["format"] == 2
    assert load(path).steps == steps
    plain = tmp_path / "plain.json"
    save(Script("seed", "command_answered", (EHLO_STEP,)), plain)
    assert json.loads(plain.read_text())["format"] == 1  # what an older tool can replay


def test_a_replay_file_of_the_first_format_still_loads(tmp_path):
    path = tmp_path / "old.json"
    path.write_text(json.dumps({"format": 1, "profile": "seed", "check": "x", "steps": [
        {"group": "NOOP", "data": "NOOP\r\n"},
        {"group": "unrecognised", "data": "x\r\n", "valid": False}]}))
    assert load(path).steps == (Step("NOOP", b"NOOP\r\n"),
                                Step("unrecognised", b"x\r\n", False, 0))


def test_the_printf_reproducer_stops_at_starttls():
    line = printf_reproducer((EHLO_STEP, STARTTLS_STEP, TLS_STEP, EHLO_STEP),
                             ServerAddress("127.0.0.1", 2525))
    assert line == ("printf 'EHLO client.example.test\\r\\nSTARTTLS\\r\\n' | nc -w 5 127.0.0.1 "
                    "2525  # then TLS, which nc cannot do: replay the file instead")


def test_replaying_a_session_with_a_tls_upgrade_and_a_batch_sends_the_same_writes(tmp_path):
    certificates = Certificates(tmp_path)
    seen: deque[bytes] = deque()
    script = starttls_server(certificates.server_context(), batch_fault="short", seen=seen)
    missing = FindingKey("pipelining_answers_every_command", "MUST", PIPELINED_BATCH, 0)
    with ScriptedServer(script) as server:
        session = CheckedSession(server.address, dataclasses.replace(SETTINGS, hang_wait=0.0))
        session.connect()
        session.send(Command.of("EHLO client.example.test"))
        assert session.starttls(certificates.client_context(), SERVER_NAME) is not None
        session.send(Command.of("EHLO client.example.test"))
        session.send_batch([Command.of("MAIL FROM:<a@example.test>"),
                            Command.of("RCPT TO:<b@example.test>"), Command.of("NOOP")])
        session.close()
        recorded = list(seen)
        seen.clear()
        finding = session.record.findings[missing]
        path = tmp_path / "tls.json"
        save(script_of(finding), path)
        replayed = replay(load(path), server.address, dataclasses.replace(SETTINGS, hang_wait=0.0))
        assert list(seen) == recorded
    assert recorded[-1] == b"MAIL FROM:<a@example.test>\r\nRCPT TO:<b@example.test>\r\nNOOP\r\n"
    assert [step.group for step in finding.session] == [
        "EHLO", "STARTTLS", "tls upgrade", "EHLO", "MAIL", "RCPT", "NOOP"]
    assert [step.batch for step in finding.session] == [0, 0, 0, 0, 1, 1, 1]
    first = replayed.first()
    assert first is not None
    assert first.key == missing
    assert first.session == finding.session
    assert "*  TLS upgrade: TLS" in "\n".join(first.transcript)
