"""STARTTLS in a checked session: a checked exchange, the upgrade as a step of its own, and
the model starting over (RFC 3207 §4.2), against aiosmtpd with trustme certificates and a
STARTTLS server that never completes the handshake, on 127.0.0.1."""

from __future__ import annotations

import time
from collections import deque

import pytest

from conformance.engine.client import tls_context
from conformance.engine.session import CheckedSession
from conformance.engine.settings import SessionSettings
from conformance.protocol.commands import Command, Message, Step
from conformance.protocol.errors import UsageError
from conformance.protocol.model import State
from conformance.protocol.tables import get_profile
from conformance.testing.reference_server import ReferenceServer
from tests.scripted_server import ScriptedServer
from tests.tls_server import SERVER_NAME, Certificates, starttls_server

TIMEOUT = 0.5
SETTINGS = SessionSettings(get_profile("seed"), timeout=TIMEOUT)
SLACK = 3.0
EHLO = Command.of("EHLO client.example.test")
STARTTLS = Command(b"STARTTLS\r\n", group="STARTTLS")


@pytest.fixture(scope="module")
def certificates(tmp_path_factory):
    return Certificates(tmp_path_factory.mktemp("tls"))


def test_after_the_upgrade_the_session_starts_over(certificates):
    with ReferenceServer(tls_context=certificates.server_context()) as server:
        session = CheckedSession(server.address, SessionSettings(get_profile("seed"), timeout=5))
        session.connect()
        session.send(EHLO)
        assert "STARTTLS" in session.model.extensions
        upgrade = session.starttls(certificates.client_context(), SERVER_NAME)
        assert upgrade is not None
        assert upgrade.plaintext_waiting == b""
        assert session.upgrade is upgrade
        assert session.model.state is State.INIT  # EHLO comes next
        assert not session.model.extensions.keywords  # nothing learnt before TLS
        session.send(EHLO)
        assert "STARTTLS" not in session.model.extensions
        replies = session.send_batch([Command.of("MAIL FROM:<a@example.test>"),
                                      Command.of("RCPT TO:<b@example.test>"),
                                      Command.of("DATA")])
        session.send_message(Message(b"Subject: t\r\n\r\nover TLS"))
        session.close()
        [delivered] = server.handler.messages
    assert [r.code if r else None for r in replies] == [250, 250, 354]
    assert delivered.original_content is not None
    assert delivered.original_content.endswith(b"over TLS\r\n")
    assert session.record.findings == {}
    assert session.record.coverage[("READY", "STARTTLS", 220)] == 1
    assert [step.group for step in session.steps] == [
        "EHLO", "STARTTLS", "tls upgrade", "EHLO", "MAIL", "RCPT", "DATA", "received data"]
    assert session.steps[2] == Step.tls(SERVER_NAME)
    assert session.steps[2].server_hostname == SERVER_NAME


def test_a_refused_starttls_is_no_upgrade_and_no_step_of_its_own():
    with ReferenceServer(tls=False) as server:  # no STARTTLS: aiosmtpd answers 454
        session = CheckedSession(server.address, SessionSettings(get_profile("seed"), timeout=5))
        session.connect()
        session.send(EHLO)
        assert session.starttls(tls_context(verify=False)) is None
        assert session.model.open
        assert not session.client.tls
        assert session.send(Command.of("NOOP")) is not None  # still plaintext, still open
        session.close()
    assert session.steps == [Step.of(EHLO), Step.of(STARTTLS), Step.of(Command.of("NOOP"))]
    assert session.record.coverage[("READY", "STARTTLS", 454)] == 1


def test_a_handshake_that_never_completes_ends_the_session_within_the_timeout(certificates):
    script = starttls_server(certificates.server_context(), handshake=False)
    with ScriptedServer(script) as server:
        session = CheckedSession(server.address, SETTINGS)
        session.connect()
        started = time.monotonic()
        assert session.starttls(certificates.client_context(), SERVER_NAME) is None
        elapsed = time.monotonic() - started
    assert elapsed < TIMEOUT + SLACK
    assert not session.model.open
    assert session.tls_failure is not None
    assert "no complete handshake within 0.5s" in str(session.tls_failure)
    assert session.record.notes == [
        "after 220 to STARTTLS, TLS handshake failed: no complete handshake within 0.5s"]
    assert session.steps == [Step.of(STARTTLS), Step.tls(SERVER_NAME)]
    assert session.transcript.splitlines()[-1].endswith(
        "*  TLS handshake failed: no complete handshake within 0.5s")


def test_a_context_that_cannot_verify_as_given_is_refused_before_starttls_is_sent(
        certificates):
    seen: deque[bytes] = deque()
    with ScriptedServer(starttls_server(certificates.server_context(), seen=seen)) as server:
        session = CheckedSession(server.address, SETTINGS)
        session.connect()
        with pytest.raises(UsageError, match="give server_hostname"):
            session.starttls(certificates.client_context())  # verifies, but which name?
        session.send(Command.of("NOOP"))
        session.close()
    assert list(seen) == [b"NOOP\r\n"]
    assert session.steps == [Step.of(Command.of("NOOP"))]
