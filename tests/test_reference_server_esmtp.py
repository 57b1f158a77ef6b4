"""The reference server's ESMTP extensions over raw sockets on 127.0.0.1: what EHLO offers,
PIPELINING, AUTH as RFC 4954 §4 has it, and STARTTLS as RFC 3207 §4 and §4.2 have it; every
reply also allowed by the row of the command it answers, under every profile."""

from __future__ import annotations

import base64
from collections.abc import Iterator, Sequence

import pytest

from conformance.engine.client import SMTPClient, tls_context
from conformance.protocol.tables import PROFILES, Profile
from conformance.testing.reference_server import (
    SERVER_HOSTNAME,
    TEST_PASSWORD,
    TEST_USERNAME,
    ReferenceServer,
)

TIMEOUT = 5


def b64(text: str) -> bytes:
    return base64.b64encode(text.encode())


PLAIN = b64(f"\0{TEST_USERNAME}\0{TEST_PASSWORD}")
WRONG_PLAIN = b64(f"\0{TEST_USERNAME}\0wrong")
EHLO = (b"EHLO client.example.test", "EHLO", 250)
MAIL = (b"MAIL FROM:<a@example.test>", "MAIL", 250)

# (command or AUTH response line, the group its reply answers, the code expected), in order,
# after the greeting. A line answering a 334 is judged as AUTH: it belongs to that command.
Exchange = Sequence[tuple[bytes, str, int]]
AUTH_EXCHANGES: dict[str, Exchange] = {
    "plain with initial response": [EHLO, (b"AUTH PLAIN " + PLAIN, "AUTH", 235)],
    "plain after an empty challenge": [
        EHLO, (b"AUTH PLAIN", "AUTH", 334), (PLAIN, "AUTH", 235)],
    "login": [EHLO, (b"AUTH LOGIN", "AUTH", 334), (b64(TEST_USERNAME), "AUTH", 334),
              (b64(TEST_PASSWORD), "AUTH", 235)],
    "mail afterwards": [EHLO, (b"AUTH PLAIN " + PLAIN, "AUTH", 235), MAIL],
    "mail without auth: never required": [EHLO, MAIL, (b"RCPT TO:<b@example.test>", "RCPT", 250)],
    "bad credentials, plain": [EHLO, (b"AUTH PLAIN " + WRONG_PLAIN, "AUTH", 535)],
    "bad credentials, login": [EHLO, (b"AUTH LOGIN " + b64(TEST_USERNAME), "AUTH", 334),
                               (b64("wrong"), "AUTH", 535)],
    "retry after failure": [EHLO, (b"AUTH PLAIN " + WRONG_PLAIN, "AUTH", 535),
                            (b"AUTH PLAIN " + PLAIN, "AUTH", 235)],
    "unknown mechanism": [EHLO, (b"AUTH X-UNKNOWN", "AUTH", 504)],
    "after a successful auth": [EHLO, (b"AUTH PLAIN " + PLAIN, "AUTH", 235),
                                (b"AUTH PLAIN " + PLAIN, "AUTH", 503)],
    "during a mail transaction": [EHLO, MAIL, (b"AUTH PLAIN " + PLAIN, "AUTH", 503),
                                  (b"RSET", "RSET", 250), (b"AUTH PLAIN " + PLAIN, "AUTH", 235)],
    # After "*" comes one reply, 501, and nothing else: the NOOP gets its own 250.
    "cancelled plain": [EHLO, (b"AUTH PLAIN", "AUTH", 334), (b"*", "AUTH", 501),
                        (b"NOOP", "NOOP", 250)],
    "cancelled login at the password": [
        EHLO, (b"AUTH LOGIN", "AUTH", 334), (b64(TEST_USERNAME), "AUTH", 334),
        (b"*", "AUTH", 501), (b"NOOP", "NOOP", 250)],
    "undecodable response": [EHLO, (b"AUTH PLAIN", "AUTH", 334), (b"not base64!", "AUTH", 501),
                             (b"NOOP", "NOOP", 250)],
}


@pytest.fixture(scope="module", params=list(PROFILES))
def profile(request) -> Profile:
    return PROFILES[request.param]


@pytest.fixture(scope="module")
def server(profile) -> Iterator[ReferenceServer]:
    with ReferenceServer(profile=profile) as running:
        yield running


@pytest.fixture
def client(server) -> Iterator[SMTPClient]:
    with SMTPClient(server.address, timeout=TIMEOUT) as connected:
        assert connected.connect().code == 220
        yield connected


@pytest.fixture(scope="module")
def ca_file(server, tmp_path_factory):
    return server.write_ca(tmp_path_factory.mktemp("ca") / "ca.pem")


def run(client: SMTPClient, profile: Profile, exchange: Exchange) -> list[int]:
    """Each line's reply code, each also checked against its group's row in ``profile``."""
    codes = []
    for line, group, _ in exchange:
        code = client.command(line + b"\r\n").code
        assert profile.row(group).allows(code), (line, group, code)
        codes.append(code)
    return codes


def keywords(client: SMTPClient) -> set[str]:
    reply = client.command(b"EHLO client.example.test\r\n")
    assert reply.code == 250
    return {line.split(" ")[0] for line in reply.lines[1:]}


# --- EHLO and PIPELINING -------------------------------------------------------------------

def test_ehlo_offers_the_extensions(client):
    reply = client.command(b"EHLO client.example.test\r\n")
    assert {"STARTTLS", "AUTH LOGIN PLAIN", "PIPELINING", "SMTPUTF8", "8BITMIME"} \
        <= set(reply.lines[1:])
    assert any(line.startswith("SIZE ") for line in reply.lines[1:])


def test_five_commands_in_one_write_get_five_replies_in_order(client, server):
    keywords(client)
    replies = client.pipeline([b"MAIL FROM:<a@example.test>\r\n", b"RCPT TO:<b@example.test>\r\n",
                               b"RCPT TO:<c@example.test>\r\n", b"RCPT TO:<d@example.test>\r\n",
                               b"DATA\r\n"])
    assert [reply.code for reply in replies] == [250, 250, 250, 250, 354]
    assert client.command(b"Subject: pipelined\r\n\r\nbody\r\n.\r\n").code == 250
    assert server.handler.messages[-1].rcpt_tos == [
        "b@example.test", "c@example.test", "d@example.test"]


def test_a_batch_with_errors_is_answered_in_order_and_loses_nothing(client):
    keywords(client)
    replies = client.pipeline([b"RCPT TO:<b@example.test>\r\n", b"MAIL FROM:<a@example.test>\r\n",
                               b"BOGUS\r\n", b"RCPT TO:<b@example.test>\r\n", b"RSET\r\n"])
    assert [reply.code for reply in replies][1:] == [250, 500, 250, 250]
    assert replies[0].code in (503, 501)  # RCPT before MAIL; seed/RFC 821: see SUBSTITUTES


# --- AUTH (RFC 4954) -----------------------------------------------------------------------

@pytest.mark.parametrize("name", list(AUTH_EXCHANGES))
def test_auth(client, profile, name):
    exchange = AUTH_EXCHANGES[name]
    assert run(client, profile, exchange) == [code for _, _, code in exchange]


def test_helo_session_is_not_offered_auth(client, profile):
    codes = run(client, profile, [(b"HELO client.example.test", "HELO", 250),
                                  (b"AUTH PLAIN " + PLAIN, "AUTH", 0)])
    assert codes[1] in (500, 502, 503)


# --- STARTTLS (RFC 3207) -------------------------------------------------------------------

def upgrade(client: SMTPClient, server: ReferenceServer, ca_file, *, name: str | None = None
            ) -> bytes:
    """STARTTLS, verified against the server's CA; the plaintext that was waiting."""
    assert client.command(b"STARTTLS\r\n").code == 220
    done = client.starttls(tls_context(cafile=ca_file), name or server.tls_server_name,
                           timeout=TIMEOUT)
    return done.plaintext_waiting


def test_starttls_with_a_parameter_is_501(client, profile):
    keywords(client)
    assert run(client, profile, [(b"STARTTLS now", "STARTTLS", 501), (b"NOOP", "NOOP", 250)]) \
        == [501, 250]
    assert not client.tls


@pytest.mark.parametrize("name", [SERVER_HOSTNAME, "127.0.0.1"])
def test_the_certificate_verifies_against_the_ca_for_either_name(client, server, ca_file, name):
    keywords(client)
    assert upgrade(client, server, ca_file, name=name) == b""
    assert client.tls


def test_after_the_handshake_starttls_is_no_longer_offered_and_auth_still_is(
        client, server, ca_file, profile):
    assert "STARTTLS" in keywords(client)
    upgrade(client, server, ca_file)
    after = keywords(client)
    assert "STARTTLS" not in after
    assert {"AUTH", "PIPELINING", "SMTPUTF8"} <= after
    assert run(client, profile, [(b"STARTTLS", "STARTTLS", 502), (b"NOOP", "NOOP", 250)]) \
        == [502, 250]


def test_nothing_of_the_session_survives_the_handshake(client, server, ca_file, profile):
    keywords(client)
    run(client, profile, [(b"AUTH PLAIN " + PLAIN, "AUTH", 235), MAIL])
    upgrade(client, server, ca_file)
    assert run(client, profile, [EHLO, (b"RCPT TO:<b@example.test>", "RCPT", 503),
                                 (b"AUTH PLAIN " + PLAIN, "AUTH", 235)]) == [250, 503, 235]


def test_commands_sent_with_starttls_are_not_run_after_the_handshake(client, server, ca_file):
    """CVE-2011-0411: plaintext in the same write as STARTTLS must be discarded, not read
    as the first commands of the TLS session (RFC 3207 §4.2)."""
    keywords(client)
    client.send(b"STARTTLS\r\nEHLO injected.example.test\r\nMAIL FROM:<i@example.test>\r\n")
    assert client.read_reply().code == 220
    waiting = client.starttls(tls_context(cafile=ca_file), server.tls_server_name,
                              timeout=TIMEOUT).plaintext_waiting
    assert waiting == b""  # nothing answered in plaintext either
    # Had the injected EHLO and MAIL run, their replies would come first and RCPT would pass.
    assert client.command(b"RCPT TO:<b@example.test>\r\n").code == 503
    keywords(client)
    assert client.command(b"RCPT TO:<b@example.test>\r\n").code == 503


def test_without_tls_starttls_is_not_offered_and_refused():
    with ReferenceServer(tls=False) as server, SMTPClient(server.address, timeout=TIMEOUT) as c:
        assert server.ca_pem is None
        c.connect()
        assert "STARTTLS" not in keywords(c)
        assert "AUTH" in keywords(c)
        assert c.command(b"STARTTLS\r\n").code == 454


def test_write_ca_needs_a_trustme_certificate(tmp_path):
    with pytest.raises(RuntimeError, match="no trustme certificate"):
        ReferenceServer(tls=False).write_ca(tmp_path / "ca.pem")


def test_a_handlers_own_ehlo_hook_still_edits_the_reply():
    class Handler:
        async def handle_EHLO(self, server, session, envelope, hostname, responses):
            session.host_name = hostname
            return [line for line in responses if not line.startswith("250-SMTPUTF8")]

    with ReferenceServer(handler=Handler()) as server, \
            SMTPClient(server.address, timeout=TIMEOUT) as c:
        c.connect()
        offered = keywords(c)
        assert "PIPELINING" in offered
        assert "SMTPUTF8" not in offered
        assert c.command(b"MAIL FROM:<a@example.test>\r\n").code == 250


def test_a_client_leaving_during_the_handshake_logs_no_traceback(caplog):
    # The suite's own probes leave mid-handshake; the server must not log a session exception
    # (a traceback on the terminal of anyone running the embedded server).
    import logging
    import socket
    import time

    caplog.set_level(logging.ERROR)
    with ReferenceServer() as server:
        with socket.create_connection((server.address.host, server.address.port),
                                      timeout=TIMEOUT) as raw:
            raw.recv(512)
            raw.sendall(b"EHLO client.example.test\r\nSTARTTLS\r\n")
            deadline = time.monotonic() + TIMEOUT
            seen = b""
            while b"\r\n220" not in seen and time.monotonic() < deadline:
                chunk = raw.recv(4096)
                if not chunk:
                    break
                seen += chunk
            assert b"\r\n220" in seen
            raw.sendall(b"\x16\x03\x01\x00\x05hello")  # the start of a ClientHello, then gone
        with SMTPClient(server.address, timeout=TIMEOUT) as after:  # it still serves
            after.connect()
            assert after.command(b"NOOP\r\n").code == 250
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
