"""AUTH credentials: placeholders everywhere the suite writes, real values on the wire only,
and only where AUTH was offered; answers to challenges stay with their command."""

from __future__ import annotations

import base64

import conformance.strategies.extensions as ext
from conformance.engine.minimise import units_of
from conformance.engine.replay import writes_of
from conformance.engine.session import CheckedSession
from conformance.engine.settings import SessionSettings
from conformance.protocol.commands import Command, Step
from conformance.protocol.credentials import PASSWORD, PLAIN_RESPONSE, USERNAME, WRONG, Credentials
from conformance.protocol.tables import get_profile
from tests.esmtp_server import PASSWORD as SERVER_PASSWORD
from tests.esmtp_server import USERNAME as SERVER_USERNAME
from tests.esmtp_server import EsmtpServer
from tests.scripted_server import Lines, ScriptedServer

SECRET = Credentials("someone", "s3cret-passw0rd")


def test_placeholders_are_filled_on_the_wire_only():
    filled = SECRET.fill(b"AUTH PLAIN " + PLAIN_RESPONSE + b"\r\n")
    assert filled == b"AUTH PLAIN " + base64.b64encode(b"\0someone\0s3cret-passw0rd") + b"\r\n"
    assert SECRET.fill(USERNAME) == base64.b64encode(b"someone")
    assert SECRET.fill(PASSWORD) == base64.b64encode(b"s3cret-passw0rd")
    assert "s3cret" not in repr(SECRET)
    assert set(SECRET.encoded()) == {SECRET.fill(p) for p in (PLAIN_RESPONSE, USERNAME, PASSWORD)}


def test_answers_to_a_challenge_stay_with_their_command():
    command, answers = ext.auth_exchange("LOGIN")
    steps = [Step.of(ext.auth_exchange("unknown mechanism")[0]), Step.of(command),
             *map(Step.of, answers)]
    assert [step.answers_challenge for step in steps] == [False, False, True, True]
    assert [len(unit) for unit in units_of(steps)] == [1, 3]
    assert [len(write) for write in writes_of(steps)] == [1, 3]


def test_the_runs_credentials_go_only_where_auth_is_offered_and_never_into_the_record():
    with EsmtpServer() as server:
        credentials = Credentials(SERVER_USERNAME, SERVER_PASSWORD)
        session = CheckedSession(server.address, SessionSettings(get_profile("seed"), timeout=2.0,
                                                                 credentials=credentials))
        session.connect()
        command, answers = ext.auth_exchange("PLAIN with an initial response")
        refused = session.authenticate(command, answers)  # before EHLO: AUTH not offered
        session.send(Command(b"EHLO client.example.test\r\n"))
        accepted = session.authenticate(command, answers)
        session.close()
    assert refused is not None
    assert refused.code != 235
    assert accepted is not None
    assert accepted.code == 235
    wire = b"".join(server.received)
    assert credentials.fill(PLAIN_RESPONSE) in wire  # sent once, after EHLO offered AUTH
    assert wire.count(credentials.fill(PLAIN_RESPONSE)) == 1
    assert WRONG.fill(PLAIN_RESPONSE) in wire  # the first try went with wrong ones
    assert credentials.fill(PLAIN_RESPONSE).decode() not in session.transcript


def test_a_server_that_echoes_the_credentials_has_them_masked():
    def echo(conn, stop):
        lines = Lines(conn)
        conn.sendall(b"220 mx.example.test ESMTP\r\n")
        conn.sendall(b"250-mx.example.test\r\n250 AUTH PLAIN\r\n" if lines.next() else b"")
        line = lines.next()
        conn.sendall(b"535 5.7.8 bad credentials: " + line.split(b" ")[-1].strip() + b"\r\n")
    with ScriptedServer(echo) as server:
        session = CheckedSession(server.address, SessionSettings(get_profile("seed"), timeout=2.0,
                                                                 credentials=SECRET))
        session.connect()
        session.send(Command(b"EHLO client.example.test\r\n"))
        reply = session.authenticate(*ext.auth_exchange("PLAIN with an initial response"))
        session.close()
    assert reply is not None
    assert reply.code == 535
    assert reply.lines == ("5.7.8 bad credentials: <masked>",)
    assert SECRET.fill(PLAIN_RESPONSE).decode() not in session.transcript
