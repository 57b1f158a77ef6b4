"""Delta debugging over failing sessions, against real (fault-injected) servers on 127.0.0.1."""

from __future__ import annotations

import dataclasses
import itertools
import socket
import threading

from conformance.checks import PIPELINED_BATCH
from conformance.checks.grading import FindingKey
from conformance.engine import example_db
from conformance.engine.address import ServerAddress
from conformance.engine.minimise import minimise, units_of
from conformance.engine.record import RunRecord
from conformance.engine.replay import Script
from conformance.engine.settings import RunSettings, SessionSettings
from conformance.protocol.commands import Message, Step
from conformance.protocol.tables import get_profile
from conformance.protocol.vocabulary import GREETING
from conformance.search.runner import Run
from tests.fault_server import FaultServer
from tests.scripted_server import ScriptedServer, read_line
from tests.tls_server import Certificates, starttls_server

TIMEOUT = 0.5
SETTINGS = SessionSettings(get_profile("seed"), timeout=TIMEOUT)
MESSAGE = Step.of(Message(b"Subject: t\r\n\r\nhello"))


def step(group: str, line: str) -> Step:
    return Step(group, f"{line}\r\n".encode())


EHLO = step("EHLO", "EHLO client.example.test")
NOOP = step("NOOP", "NOOP")
HELP = step("HELP", "HELP")
MAIL = step("MAIL", "MAIL FROM:<a@example.test>")
RCPT = step("RCPT", "RCPT TO:<b@example.test>")
DATA = step("DATA", "DATA")
HELO = step("HELO", "HELO client.example.test")

HELO_220 = FindingKey("reply_code_documented", "MUST", "HELO", 220)
MAIL_550 = FindingKey("reply_code_documented", "MUST", "MAIL", 550)
RCPT_554 = FindingKey("reply_code_documented", "MUST", "RCPT", 554)
NOOP_252 = FindingKey("reply_code_documented", "MUST", "NOOP", 252)


def test_a_message_stays_with_its_data_command():
    assert units_of([EHLO, DATA, MESSAGE, NOOP, MESSAGE]) == [
        (EHLO,), (DATA, MESSAGE), (NOOP,), (MESSAGE,)]


def test_redundant_commands_are_dropped():
    script = Script("seed", "reply_code_documented", (EHLO, EHLO, NOOP, HELP, NOOP, HELO))
    with FaultServer("helo_replies_220") as server:
        result = minimise(script, server.address, SETTINGS, key=HELO_220)
    assert result is not None
    assert result.script.steps == (HELO,)
    assert result.finding.key == HELO_220
    assert result.finding.transcript[-1].endswith(" S: 220 hello")
    assert result.finding.session == (HELO,)  # the finding's own steps: the shortest session
    assert result.original_steps == 6


def test_the_steps_a_deep_fault_needs_are_kept():
    noise = [NOOP, EHLO, HELP]
    steps = [EHLO, *noise, MAIL, NOOP, RCPT, *noise[:1], RCPT, HELP, RCPT]
    script = Script("seed", "reply_code_documented", tuple(steps))
    with FaultServer("third_recipient_554") as server:
        result = minimise(script, server.address, SETTINGS, key=RCPT_554)
    assert result is not None
    assert result.script.steps == (MAIL, RCPT, RCPT, RCPT)


def test_a_message_and_its_data_are_kept_or_dropped_together():
    steps = (EHLO, MAIL, RCPT, NOOP, DATA, MESSAGE, NOOP, MAIL)
    script = Script("seed", "reply_code_documented", steps)
    with FaultServer("mail_fails_after_message") as server:
        result = minimise(script, server.address, SETTINGS, key=MAIL_550)
    assert result is not None
    assert result.script.steps == (MAIL, RCPT, DATA, MESSAGE, MAIL)
    assert result.finding.key == MAIL_550


def test_a_failure_at_the_greeting_needs_no_step_at_all():
    script = Script("seed", "greeting_names_server", (EHLO, NOOP))
    key = FindingKey("greeting_names_server", "MUST", GREETING, 220)
    with FaultServer("greeting_without_domain") as server:
        result = minimise(script, server.address, SETTINGS, key=key)
    assert result is not None
    assert result.script.steps == ()


def test_a_session_that_does_not_fail_again_gives_nothing():
    script = Script("seed", "reply_code_documented", (EHLO, HELO))
    with FaultServer() as server:
        assert minimise(script, server.address, SETTINGS, key=HELO_220) is None


def test_a_minimal_session_is_left_as_it_is():
    steps = (MAIL, RCPT, RCPT, RCPT)
    script = Script("seed", "reply_code_documented", steps)
    with FaultServer("third_recipient_554") as server:
        result = minimise(script, server.address, SETTINGS, key=RCPT_554)
    assert result is not None
    assert result.script.steps == steps
    assert result.replays > 1


def two_bugs(conn: socket.socket, stop: threading.Event) -> None:
    """HELO after NOOP gets 220; VRFY as the first command gets 252 (another failure)."""
    conn.sendall(b"220 mx.example.test\r\n")
    seen: list[bytes] = []
    while line := read_line(conn):
        verb = line.split()[0].upper() if line.split() else b""
        if verb == b"HELO":
            conn.sendall(b"220 hello\r\n" if b"NOOP" in seen else b"250 mx.example.test\r\n")
        elif verb == b"VRFY":
            conn.sendall(b"502 no\r\n" if seen else b"252 maybe\r\n")
        else:
            conn.sendall(b"250 ok\r\n")
        seen.append(verb)


def test_a_different_failure_is_not_taken_for_the_recorded_one():
    vrfy = step("VRFY", "VRFY postmaster")
    script = Script("seed", "reply_code_documented", (NOOP, vrfy, HELO))
    with ScriptedServer(two_bugs) as server:
        result = minimise(script, server.address, SETTINGS, key=HELO_220)
    # Dropping the NOOP makes VRFY fail instead (252): a failure, but not the recorded one
    # (and it ends that session, so the HELO after it is never sent).
    assert result is not None
    assert result.script.steps == (NOOP, HELO)
    assert result.finding.key == HELO_220


def test_the_budget_bounds_the_replays_and_the_time():
    script = Script("seed", "reply_code_documented", (EHLO, EHLO, NOOP, HELP, NOOP, HELO))
    with FaultServer("helo_replies_220") as server:
        once = minimise(script, server.address, SETTINGS, key=HELO_220, max_replays=1)
        assert once is not None
        assert (once.script, once.replays) == (script, 1)
        assert minimise(script, server.address, SETTINGS, key=HELO_220, max_replays=0) is None
        ticks = itertools.count(step=10.0)  # every look at the clock: 10 s later
        late = minimise(script, server.address, SETTINGS, key=HELO_220, seconds=15.0,
                        clock=lambda: next(ticks))
        assert late is not None
        assert late.replays == 1


def test_in_safe_mode_no_replay_completes_a_message():
    # The failure needs a completed message; without delivery it cannot be seen again.
    script = Script("seed", "reply_code_documented", (MAIL, RCPT, DATA, MESSAGE, MAIL))
    with FaultServer("mail_fails_after_message") as server:
        assert minimise(script, server.address, dataclasses.replace(SETTINGS, deliver=False),
                        key=MAIL_550) is None
        assert minimise(script, server.address, SETTINGS, key=MAIL_550) is not None


def test_a_server_that_has_gone_away_gives_nothing():
    script = Script("seed", "reply_code_documented", (EHLO, HELO))
    with socket.create_server(("127.0.0.1", 0)) as probe:
        address = ServerAddress("127.0.0.1", probe.getsockname()[1])
    assert minimise(script, address, SETTINGS, key=HELO_220) is None


def test_a_replay_that_fails_otherwise_than_recorded_gives_nothing():
    # Recorded: the HELO got 220. Replayed against a server where it does not, the session
    # fails another way (NOOP 252): that is not the failure to cut down.
    script = Script("seed", "reply_code_documented", (NOOP, HELO))
    with FaultServer("noop_replies_252") as server:
        assert minimise(script, server.address, SETTINGS, key=HELO_220) is None
        other = minimise(script, server.address, SETTINGS, key=NOOP_252)
    assert other is not None
    assert other.finding.key == NOOP_252
    assert other.script.steps == (NOOP,)


def test_the_same_deviation_at_another_level_is_not_the_recorded_one():
    # Under rfc5321 a 252 to NOOP is a SHOULD (2yz is documented for NOOP); the MUST key
    # of the seed profile names another finding, so it is not shown again.
    script = Script("rfc5321", "reply_code_documented", (EHLO, NOOP))
    rfc5321 = dataclasses.replace(SETTINGS, profile=get_profile("rfc5321"))
    with FaultServer("noop_replies_252") as server:
        assert minimise(script, server.address, rfc5321, key=NOOP_252) is None
        should = minimise(script, server.address, rfc5321, key=NOOP_252._replace(level="SHOULD"))
    assert should is not None
    assert should.script.steps == (NOOP,)


# --- batches and TLS upgrades ----------------------------------------------------------------

STARTTLS = step("STARTTLS", "STARTTLS")
TLS = Step.tls("mx.example.test")


def in_batch(batch: int, *steps: Step) -> tuple[Step, ...]:
    return tuple(s._replace(batch=batch) for s in steps)


def test_an_upgrade_stays_with_its_starttls_and_a_batch_is_split():
    batch = in_batch(1, MAIL, RCPT, DATA)
    assert units_of([EHLO, STARTTLS, TLS, *batch, MESSAGE]) == [
        (EHLO,), (STARTTLS, TLS), batch[:1], batch[1:2], (batch[2], MESSAGE)]


def test_a_session_with_tls_and_a_batch_is_cut_down_to_what_the_finding_needs(tmp_path):
    # Over TLS, the server answers every batch short: the finding needs the upgrade, the
    # EHLO that advertises PIPELINING over TLS, and a batch of two, whose last command goes
    # unanswered.
    certificates = Certificates(tmp_path)
    script = Script("seed", "pipelining_answers_every_command", (
        EHLO, NOOP, STARTTLS, TLS, EHLO, HELP, *in_batch(1, MAIL, RCPT, NOOP)))
    missing = FindingKey("pipelining_answers_every_command", "MUST", PIPELINED_BATCH, 0)
    server_script = starttls_server(certificates.server_context(), batch_fault="short")
    with ScriptedServer(server_script) as server:
        result = minimise(script, server.address, SETTINGS, key=missing)
    assert result is not None
    steps = result.script.steps
    assert steps[:2] == (STARTTLS, TLS)
    assert len(steps) == 5
    assert steps[2] == EHLO
    assert steps[-1] == NOOP._replace(batch=1)
    assert steps[3].batch == 1  # still one write: a batch of two
    assert result.finding.key == missing
    assert result.finding.session == steps



def test_a_fail_fast_runs_replays_get_past_an_earlier_finding(tmp_path):
    # Fail-fast stops the run at its first failing finding, not its replays: the example
    # database's session and its minimising must reach the finding replayed (HELO's 220),
    # past another one (NOOP's 252) before it.
    db = str(tmp_path / "db")
    script = Script("seed", "reply_code_documented", (NOOP, HELO), level="MUST",
                    cause="HELO", code=220)
    example_db.keep(example_db.open_db(db), script)
    settings = RunSettings(server=None, profile=get_profile("seed"), timeout=TIMEOUT,
                           examples=1, steps=1, budget_name="1", fail_fast=True,
                           example_db=db)
    with FaultServer("noop_replies_252", "helo_replies_220") as server:
        run = Run(settings, server.address, RunRecord(), tmp_path)
        run.replay_saved()
        assert HELO_220 in run.record.findings
        minimal = minimise(script, server.address, run.replays, key=HELO_220)
    assert minimal is not None
    assert minimal.script.steps == (HELO,)
