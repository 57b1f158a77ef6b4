"""Batches (RFC 2920 PIPELINING) in a checked session: one write, one checked exchange per
command, against aiosmtpd and against a server that answers a batch wrong, on 127.0.0.1."""

from __future__ import annotations

import json
import time
from collections import deque

import jsonschema
import pytest

from conformance.checks import PIPELINED_BATCH
from conformance.checks.grading import FindingKey
from conformance.engine.record import FindingRecord
from conformance.engine.session import CheckedSession
from conformance.engine.settings import SessionSettings
from conformance.output.report import SCHEMA_PATH
from conformance.protocol.commands import Command, Message, Step
from conformance.protocol.errors import UsageError
from conformance.protocol.tables import get_profile
from conformance.testing.reference_server import ReferenceServer
from tests.batch_server import pipelining_server
from tests.scripted_server import ScriptedServer

TIMEOUT, HANG_WAIT = 0.3, 0.2
SLACK = 3.0
SCHEMA = json.loads(SCHEMA_PATH.read_text())
EHLO = Command.of("EHLO client.example.test")
MAIL = Command.of("MAIL FROM:<a@example.test>")
RCPT = Command.of("RCPT TO:<b@example.test>")
DATA = Command.of("DATA")
NOOP = Command.of("NOOP")
RSET = Command.of("RSET")  # may stand anywhere in a batch (RFC 2920 §3.1)


def session_with(address, **options) -> CheckedSession:
    session = CheckedSession(address, SessionSettings(get_profile("seed"), timeout=TIMEOUT,
                                                      hang_wait=HANG_WAIT, **options))
    session.connect()
    return session


def test_a_batch_against_aiosmtpd_is_one_exchange_per_command():
    with ReferenceServer() as server:
        session = session_with(server.address)
        session.send(EHLO)
        replies = session.send_batch([MAIL, RCPT, RCPT, DATA])
        end = session.send_message(Message(b"Subject: t\r\n\r\nhello"))
        session.close()
        [delivered] = server.handler.messages
    assert [r.code if r else None for r in replies] == [250, 250, 250, 354]
    assert end is not None
    assert end.code == 250
    assert delivered.rcpt_tos == ["b@example.test", "b@example.test"]
    assert session.record.findings == {}
    assert session.steps == [Step.of(EHLO), *(Step.of(c, batch=1) for c in (MAIL, RCPT, RCPT,
                                                                           DATA)),
                             Step.of(Message(b"Subject: t\r\n\r\nhello"))]
    coverage = session.record.coverage
    assert coverage[("READY", "MAIL", 250)] == coverage[("RCPT", "RCPT", 250)] == 1
    assert coverage[("RCPT", "DATA", 354)] == 1


def test_a_batch_goes_out_in_one_write_and_batches_are_numbered():
    seen: deque[bytes] = deque()
    with ScriptedServer(pipelining_server(seen=seen)) as server:
        session = session_with(server.address)
        session.send(EHLO)
        assert [r.code for r in session.send_batch([RSET, EHLO]) if r] == [250, 250]
        assert [r.code for r in session.send_batch([MAIL, RCPT]) if r] == [250, 250]
        session.close()
    assert list(seen) == [EHLO.line, RSET.line + EHLO.line, MAIL.line + RCPT.line]
    assert [step.batch for step in session.steps] == [0, 1, 1, 2, 2]


def test_without_pipelining_advertised_a_batch_goes_one_command_at_a_time():
    # A client must not pipeline unless the last EHLO advertised PIPELINING (RFC 2920 §3.1):
    # a replay or a minimised session that lost its EHLO sends each command after the
    # reply before it, and records them as the batch they were.
    seen: deque[bytes] = deque()
    with ScriptedServer(pipelining_server(seen=seen)) as server:
        session = session_with(server.address)
        replies = session.send_batch([MAIL, RCPT])
        session.send(Command.of("HELO client.example.test"))  # HELO advertises nothing
        session.send_batch([RSET, NOOP])
        session.close()
    assert [r.code if r else None for r in replies] == [250, 250]
    assert list(seen) == [MAIL.line, RCPT.line, b"HELO client.example.test\r\n", RSET.line,
                          NOOP.line]
    assert [step.batch for step in session.steps] == [1, 1, 0, 2, 2]
    assert session.record.findings == {}
    assert session.record.exercised["pipelined batches"] == 0


def test_a_batch_answered_short_is_a_missing_reply_not_a_hang():
    with ScriptedServer(pipelining_server("short")) as server:
        session = session_with(server.address)
        session.send(EHLO)
        started = time.monotonic()
        replies = session.send_batch([RSET, RSET, NOOP])
        elapsed = time.monotonic() - started
        session.close()
    assert [r.code if r else None for r in replies] == [250, 250, None]
    assert elapsed < TIMEOUT + HANG_WAIT + SLACK
    [finding] = session.record.findings.values()
    assert finding.key == FindingKey("pipelining_answers_every_command", "MUST",
                                     PIPELINED_BATCH, 0)
    assert finding.seen == {"NOOP in READY": 1}
    assert finding.session == (Step.of(EHLO), *(Step.of(c, batch=1) for c in (RSET, RSET,
                                                                               NOOP)))
    assert session.record.coverage[("READY", "RSET", 250)] == 2
    # The record keeps the batch as it travels (xdist, the JSON report), in the schema.
    assert FindingRecord.from_json(json.loads(json.dumps(finding.to_json()))) == finding
    jsonschema.validate(finding.to_json(), {"$defs": SCHEMA["$defs"],
                                            "$ref": "#/$defs/finding"})


def test_after_a_missing_reply_every_later_command_has_the_same_error_without_waiting():
    with ScriptedServer(pipelining_server("first_only")) as server:
        session = session_with(server.address)
        session.send(EHLO)
        started = time.monotonic()
        replies = session.send_batch([RSET, MAIL, RCPT])
        elapsed = time.monotonic() - started
        session.close()
    assert [r.code if r else None for r in replies] == [250, None, None]
    assert elapsed < 2 * (TIMEOUT + HANG_WAIT)  # waited out once, not once per command
    # One behaviour: the input after the batch's first command was lost. The RCPT after
    # the lost MAIL is no finding of its own.
    [finding] = session.record.findings.values()
    assert (finding.check, finding.cause, finding.group) == (
        "pipelining_answers_every_command", PIPELINED_BATCH, "MAIL")
    assert finding.error is not None
    assert finding.error.startswith("no complete reply within 0.5s")
    assert session.record.coverage[("READY", "RCPT", 0)] == 1


def test_replies_out_of_order_are_findings_of_the_commands_they_answer():
    with ScriptedServer(pipelining_server("reversed")) as server:
        session = session_with(server.address)
        session.send(EHLO)
        replies = session.send_batch([MAIL, RCPT, DATA])
        session.close()
    # MAIL gets DATA's 354: a class MAIL's row never has. The deviation ends the session;
    # the replies after it are not read.
    assert [r.code if r else None for r in replies] == [354, None, None]
    [key] = session.record.findings
    assert key == FindingKey("reply_code_documented", "MUST", "MAIL", 354)


def test_no_control_probe_is_sent_inside_a_batch():
    seen: deque[bytes] = deque()
    with ScriptedServer(pipelining_server(seen=seen)) as server:
        session = session_with(server.address)
        session.send(EHLO)
        # Sent alone, the 500 to a lower-case verb would be followed by "SEND FROM:<...>".
        send = Command(b"send FROM:<a@example.test>\r\n")
        replies = session.send_batch([send, NOOP])
        session.close()
    assert [r.code if r else None for r in replies] == [500, 250]
    assert list(seen) == [EHLO.line, send.line + b"NOOP\r\n"]


@pytest.mark.parametrize(("commands", "message"), [
    ([DATA, NOOP], "DATA can only end a batch"),
    ([EHLO, MAIL], "EHLO can only end a batch"),  # RFC 2920 §3.1
    ([NOOP, RCPT], "NOOP can only end a batch"),
    ([RSET, Command(b"STARTTLS\r\n", group="STARTTLS")], "STARTTLS is never sent in a batch"),
])
def test_a_batch_the_session_cannot_send_is_a_usage_error(commands, message):
    with ScriptedServer(pipelining_server()) as server:
        session = CheckedSession(server.address, SessionSettings(get_profile("seed"),
                                                                 timeout=TIMEOUT))
        with pytest.raises(UsageError, match=message):
            session.send_batch(commands)
        session.close()

