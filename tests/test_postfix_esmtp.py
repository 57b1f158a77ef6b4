"""The Postfix instance offers the ESMTP extensions the suite checks, STARTTLS among them with
a certificate its CA file verifies (RFC 3207); over raw sockets on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from conformance.engine.client import SMTPClient, tls_context
from mtas.postfix import TLS_NAMES, PostfixInstance

pytestmark = pytest.mark.postfix
TIMEOUT = 10
# No AUTH: Postfix offers it only with a SASL server (mtas/postfix/main.cf.in).
EXTENSIONS = {"PIPELINING", "SIZE", "8BITMIME", "SMTPUTF8", "DSN", "ENHANCEDSTATUSCODES",
              "CHUNKING", "STARTTLS"}


@pytest.fixture
def client(postfix: PostfixInstance) -> Iterator[SMTPClient]:
    with SMTPClient(postfix.address, timeout=TIMEOUT) as connected:
        assert connected.connect().code == 220
        yield connected


def keywords(client: SMTPClient) -> set[str]:
    reply = client.command(b"EHLO client.example.test\r\n")
    assert reply.code == 250
    return {line.split(" ")[0] for line in reply.lines[1:]}


def test_ehlo_offers_the_extensions(client):
    assert keywords(client) >= EXTENSIONS


@pytest.mark.parametrize("name", TLS_NAMES)
def test_starttls_certificate_verifies_against_the_instance_s_ca(client, postfix, name):
    keywords(client)
    assert client.command(b"STARTTLS\r\n").code == 220
    upgrade = client.starttls(tls_context(cafile=postfix.ca_file), name, timeout=TIMEOUT)
    assert upgrade.plaintext_waiting == b""
    after = keywords(client)
    assert "STARTTLS" not in after  # RFC 3207 §4.2
    assert EXTENSIONS - {"STARTTLS"} <= after


def test_commands_sent_with_starttls_are_not_run_after_the_handshake(client, postfix):
    """CVE-2011-0411 (Postfix fixed it in 2.8.4): plaintext in the same write as STARTTLS is
    discarded, not read as the first commands of the TLS session (RFC 3207 §4.2)."""
    keywords(client)
    client.send(b"STARTTLS\r\nEHLO injected.example.test\r\nMAIL FROM:<i@example.test>\r\n")
    assert client.read_reply().code == 220
    upgrade = client.starttls(tls_context(cafile=postfix.ca_file), TLS_NAMES[0],
                              timeout=TIMEOUT)
    assert upgrade.plaintext_waiting == b""
    assert client.command(b"NOOP\r\n").code == 250  # the first reply over TLS is NOOP's
    keywords(client)
    assert client.command(b"RCPT TO:<postmaster@mx.postfix.test>\r\n").code == 503
