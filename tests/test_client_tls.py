"""The client's STARTTLS upgrade, with trustme certificates, against aiosmtpd and against a
STARTTLS server that misbehaves on purpose (tests/tls_server.py), all on 127.0.0.1."""

from __future__ import annotations

import time
from collections import deque

import pytest

from conformance.engine.address import ServerAddress
from conformance.engine.client import SMTPClient, tls_context
from conformance.protocol.errors import TLSHandshakeFailed, UsageError
from conformance.testing.reference_server import ReferenceServer
from tests.scripted_server import ScriptedServer
from tests.tls_server import SERVER_NAME, Certificates, starttls_server

TIMEOUT = 0.5
SLACK = 3.0  # as in test_client.py: "within its timeout" without machine noise failing it


@pytest.fixture(scope="module")
def certificates(tmp_path_factory):
    return Certificates(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def tls_reference_server(certificates):
    with ReferenceServer(tls_context=certificates.server_context(),
                         require_starttls=True) as server:
        yield server


def upgraded(client: SMTPClient) -> None:
    assert client.connect().code == 220
    assert client.command(b"EHLO client.example.test\r\n").code == 250
    assert client.command(b"STARTTLS\r\n").code == 220


def test_upgrades_to_tls_and_talks_smtp_over_it(tls_reference_server, certificates):
    with SMTPClient(tls_reference_server.address, timeout=5) as client:
        upgraded(client)
        assert not client.tls
        upgrade = client.starttls(certificates.client_context(), SERVER_NAME)
        assert client.tls
        assert upgrade.version.startswith("TLS")
        assert upgrade.plaintext_waiting == b""
        # RFC 3207 §4.2: the session starts over; aiosmtpd wants a new EHLO, and it no
        # longer offers STARTTLS.
        assert client.command(b"MAIL FROM:<a@example.test>\r\n").code == 501
        ehlo = client.command(b"EHLO client.example.test\r\n")
        assert "STARTTLS" not in ehlo.lines
        assert client.command(b"MAIL FROM:<a@example.test>\r\n").code == 250
    text = client.transcript.render(timestamps=False)
    assert f"*  TLS upgrade: {upgrade.version}, {upgrade.cipher}" in text.splitlines()


def test_a_certificate_from_an_unknown_ca_fails_verification(tls_reference_server):
    with SMTPClient(tls_reference_server.address, timeout=5) as client:
        upgraded(client)
        with pytest.raises(TLSHandshakeFailed, match="certificate verification failed"):
            client.starttls(tls_context(), SERVER_NAME)  # the system's CAs: not trustme's
        assert not client.connected


def test_a_certificate_for_another_name_fails_verification(tls_reference_server,
                                                           certificates):
    with SMTPClient(tls_reference_server.address, timeout=5) as client:
        upgraded(client)
        with pytest.raises(TLSHandshakeFailed, match="certificate verification failed"):
            client.starttls(certificates.client_context(), "other.example.test")


def test_without_verification_any_certificate_is_accepted(tls_reference_server):
    with SMTPClient(tls_reference_server.address, timeout=5) as client:
        upgraded(client)
        client.starttls(tls_context(verify=False), "other.example.test")
        assert client.command(b"NOOP\r\n").code == 250


def test_a_verifying_context_without_a_name_to_check_is_a_usage_error(certificates):
    client = SMTPClient(ServerAddress("127.0.0.1", 25), timeout=TIMEOUT)  # never connected
    with pytest.raises(UsageError, match="give server_hostname"):
        client.starttls(certificates.client_context())


def test_a_handshake_that_never_completes_ends_within_the_timeout(certificates):
    script = starttls_server(certificates.server_context(), handshake=False)
    with ScriptedServer(script) as server, \
            SMTPClient(server.address, timeout=TIMEOUT) as client:
        upgraded(client)
        started = time.monotonic()
        with pytest.raises(TLSHandshakeFailed, match=r"no complete handshake within 0.5s"):
            client.starttls(certificates.client_context(), SERVER_NAME)
        assert time.monotonic() - started < TIMEOUT + SLACK
        assert not client.connected
    assert "*  TLS handshake failed: no complete handshake within 0.5s" in \
        client.transcript.render(timestamps=False)


def test_plaintext_answering_a_command_injected_with_starttls_is_reported(certificates):
    # The client writes STARTTLS and NOOP at once; the server answers both in plaintext, in
    # one write: the 250 is in the parser's buffer when the 220 is read.
    seen: deque[bytes] = deque()
    script = starttls_server(certificates.server_context(), answers_injected=True, seen=seen)
    with ScriptedServer(script) as server, SMTPClient(server.address, timeout=5) as client:
        client.connect()
        client.send(b"STARTTLS\r\nNOOP\r\n")
        assert client.read_reply().code == 220
        upgrade = client.starttls(certificates.client_context(), SERVER_NAME)
        assert upgrade.plaintext_waiting == b"250 2.0.0 Ok\r\n"
        # Discarded: the first reply of the TLS session answers the first TLS command.
        assert client.command(b"EHLO client.example.test\r\n").lines[-1] == "PIPELINING"
    assert list(seen) == [b"STARTTLS\r\n", b"NOOP\r\n", b"EHLO client.example.test\r\n"]
    text = client.transcript.render(timestamps=False)
    assert "S: 250 2.0.0 Ok\n*  14 octet(s) of plaintext were waiting unread at the TLS " \
        "upgrade: discarded" in text


def test_plaintext_readable_on_the_socket_at_the_upgrade_is_reported(certificates):
    # The injected command's answer comes 0.1 s after the 220, in a write of its own: it is
    # not in the parser, but it is on the socket when the upgrade begins.
    script = starttls_server(certificates.server_context(), answers_injected=True,
                             injected_later=True)
    with ScriptedServer(script) as server, SMTPClient(server.address, timeout=5) as client:
        client.connect()
        client.send(b"STARTTLS\r\nNOOP\r\n")
        assert client.read_reply().code == 220
        assert client.parser.pending == b""
        time.sleep(0.5)
        upgrade = client.starttls(certificates.client_context(), SERVER_NAME)
        assert upgrade.plaintext_waiting == b"250 2.0.0 Ok\r\n"
        assert client.command(b"NOOP\r\n").code == 250


def test_a_server_that_discards_injected_commands_leaves_nothing_waiting(certificates):
    script = starttls_server(certificates.server_context())
    with ScriptedServer(script) as server, SMTPClient(server.address, timeout=5) as client:
        client.connect()
        client.send(b"STARTTLS\r\nNOOP\r\n")
        assert client.read_reply().code == 220
        time.sleep(0.2)
        assert client.starttls(certificates.client_context(), SERVER_NAME).plaintext_waiting \
            == b""
