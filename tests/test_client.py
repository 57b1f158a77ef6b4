"""The bounded client against aiosmtpd and against servers that misbehave on purpose."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from conformance.engine.address import ServerAddress
from conformance.engine.client import SMTPClient
from conformance.protocol.errors import (
    ConnectionClosed,
    ReplyFramingError,
    ReplyTimeout,
    TargetUnreachable,
    UsageError,
)
from conformance.testing.reference_server import ReferenceServer
from tests.scripted_server import ScriptedServer, read_line

TIMEOUT = 0.5
# Generous: proves "ends within its timeout" without turning machine noise into failures.
SLACK = 3.0


@pytest.fixture(scope="module")
def aiosmtpd_server():
    with ReferenceServer() as server:
        yield server


# --- addresses -------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("text", "host", "port"),
    [
        ("127.0.0.1", "127.0.0.1", 25),
        ("127.0.0.1:2525", "127.0.0.1", 2525),
        ("localhost:587", "localhost", 587),
        ("[::1]", "::1", 25),
        ("[::1]:2525", "::1", 2525),
    ],
)
def test_parses_server_address(text, host, port):
    address = ServerAddress.parse(text)
    assert (address.host, address.port) == (host, port)
    assert ServerAddress.parse(str(address)) == address


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty server address"),
        (":25", "missing host"),
        ("host:", "empty port"),
        ("[::1]:", "empty port"),
        ("host:0", "port must be 1-65535"),
        ("host:70000", "port must be 1-65535"),
        ("host:smtp", "port must be 1-65535"),
        ("::1:25", "put an IPv6 address in brackets"),
        ("[::1", "missing ']'"),
        ("[::1]25", "expected ':PORT'"),
        ("[nothost]:25", "is not IPv6"),
        ("2525", "neither a host name nor a dotted-quad IPv4 address"),  # 0.0.9.221 to a resolver
        ("127.1:2525", "neither a host name nor a dotted-quad IPv4 address"),
        ("999.0.0.1", "neither a host name nor a dotted-quad IPv4 address"),
    ],
)
def test_rejects_bad_server_address_with_one_line(text, message):
    with pytest.raises(UsageError, match=message) as caught:
        ServerAddress.parse(text)
    assert "\n" not in str(caught.value)


def test_unreachable_server_is_a_clear_error():
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    client = SMTPClient(ServerAddress("127.0.0.1", port), timeout=TIMEOUT)
    with pytest.raises(TargetUnreachable, match=r"cannot connect to 127\.0\.0\.1:\d+"):
        client.connect()


# --- a real server ---------------------------------------------------------------------------

def test_talks_to_aiosmtpd_and_keeps_a_transcript(aiosmtpd_server):
    with SMTPClient(aiosmtpd_server.address, timeout=5) as client:
        assert client.connect().code == 220
        ehlo = client.command(b"EHLO client.example.test\r\n")
        assert ehlo.code == 250
        assert ehlo.multiline
        assert ehlo.well_formed
        assert client.command(b"QUIT\r\n").code == 221
        assert client.wait_for_close(timeout=5)
    text = client.transcript.render(timestamps=False)
    assert text.splitlines()[:3] == [
        f"*  connected to {aiosmtpd_server.address}",
        "S: 220 mx.example.test Python SMTP 1.4.6",
        "C: EHLO client.example.test",
    ]
    assert text.endswith("S: 221 Bye\n*  server closed the connection")


def test_pipelined_replies_come_back_in_order(aiosmtpd_server):
    with SMTPClient(aiosmtpd_server.address, timeout=5) as client:
        client.connect()
        replies = client.pipeline([
            b"EHLO client.example.test\r\n", b"MAIL FROM:<a@example.test>\r\n",
            b"RCPT TO:<b@example.test>\r\n", b"DATA\r\n",
        ])
        assert [r.code for r in replies] == [250, 250, 250, 354]
        assert client.command(b"hello\r\n.\r\n").code == 250


def test_malformed_commands_go_out_as_exact_bytes(aiosmtpd_server):
    with SMTPClient(aiosmtpd_server.address, timeout=5) as client:
        client.connect()
        reply = client.command(b"nOoP  \xff\x00 extra\r\n")
        assert reply.code in {250, 500}
    assert b"nOoP  \xff\x00 extra\r\n" in [e.data for e in client.transcript]


# --- misbehaving servers ---------------------------------------------------------------------
# Each script plays one bad server on one connection; every test must end within the client's
# timeout (plus slack for a busy machine) with a specific error.

def never_greets(conn: socket.socket, stop: threading.Event) -> None:
    stop.wait(10)


def stalls_mid_reply(conn: socket.socket, stop: threading.Event) -> None:
    conn.sendall(b"220-mx.example.test\r\n220 still typ")
    stop.wait(10)


def trickles_a_byte_at_a_time(conn: socket.socket, stop: threading.Event) -> None:
    """Never finishes a line, but is never silent for long: a per-recv timeout never fires."""
    conn.sendall(b"220-")
    for _ in range(200):  # 10 s, then close
        if stop.wait(0.05):
            return
        conn.sendall(b"x")


def floods_without_newline(conn: socket.socket, stop: threading.Event) -> None:
    conn.settimeout(2.0)
    block = b"2" * 65536
    for _ in range(160):  # 10 MB
        if stop.is_set():
            return
        conn.sendall(block)


def endless_multiline_reply(conn: socket.socket, stop: threading.Event) -> None:
    conn.settimeout(2.0)
    block = b"220-more to come\r\n" * 1000
    while not stop.is_set():
        conn.sendall(block)


def closes_mid_reply(conn: socket.socket, stop: threading.Event) -> None:
    conn.sendall(b"220-mx.example.test\r\n220 half")


def closes_without_greeting(conn: socket.socket, stop: threading.Event) -> None:
    pass


def speaks_http(conn: socket.socket, stop: threading.Event) -> None:
    conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")


def bare_lf_replies(conn: socket.socket, stop: threading.Event) -> None:
    conn.sendall(b"220 mx.example.test\n")
    while read_line(conn):
        conn.sendall(b"250-first\n250 ok\n")


def greets_and_never_reads(conn: socket.socket, stop: threading.Event) -> None:
    conn.sendall(b"220 mx.example.test\r\n")
    stop.wait(10)


def greets_and_answers(conn: socket.socket, stop: threading.Event) -> None:
    conn.sendall(b"220 mx.example.test\r\n")
    while line := read_line(conn):
        if line.upper().startswith(b"QUIT"):
            conn.sendall(b"221 bye\r\n")
            return  # the connection is closed behind us
        conn.sendall(b"250 ok\r\n")


@contextlib.contextmanager
def ends_within(limit: float) -> Iterator[None]:
    start = time.monotonic()
    yield
    assert time.monotonic() - start < limit + SLACK


@contextlib.contextmanager
def talking_to(script, *, host: str = "127.0.0.1",
               timeout: float = TIMEOUT) -> Iterator[SMTPClient]:
    with ScriptedServer(script, host=host) as server, SMTPClient(server.address,
                                                                 timeout=timeout) as client:
        yield client


def test_server_that_never_greets_times_out():
    with talking_to(never_greets) as client, ends_within(TIMEOUT):
        with pytest.raises(ReplyTimeout, match=r"no complete reply within 0\.5s") as caught:
            client.connect()
        assert caught.value.partial == b""


def test_server_that_stalls_mid_reply_times_out_with_the_partial_reply():
    with talking_to(stalls_mid_reply) as client, ends_within(TIMEOUT):
        with pytest.raises(ReplyTimeout, match="received so far") as caught:
            client.connect()
        assert caught.value.partial == b"220-mx.example.test\r\n220 still typ"
        assert "S: 220 still typ  <no CRLF>" in client.transcript.render(timestamps=False)


def test_server_that_trickles_bytes_still_times_out_on_the_whole_reply():
    with talking_to(trickles_a_byte_at_a_time) as client, ends_within(TIMEOUT):
        with pytest.raises(ReplyTimeout) as caught:
            client.connect()
        assert caught.value.partial.startswith(b"220-x")


@pytest.mark.parametrize(("script", "bound"), [
    (floods_without_newline, "line-bound"),  # 10 MB in one line
    (endless_multiline_reply, "lines-bound"),  # a multiline reply that never ends
])
def test_server_that_floods_hits_a_hard_bound(script, bound):
    with talking_to(script) as client, ends_within(TIMEOUT):
        with pytest.raises(ReplyFramingError) as caught:
            client.connect()
        assert caught.value.violation.rule == bound
        assert client.parser.pending == b""
        assert len(caught.value.partial) <= 1024


def test_server_that_is_not_smtp_is_unreadable_and_shown_as_sent():
    with talking_to(speaks_http) as client, ends_within(TIMEOUT):
        with pytest.raises(ReplyFramingError) as caught:
            client.connect()
        assert caught.value.violation.rule == "no-reply-code"
        assert caught.value.partial.startswith(b"HTTP/1.1 400 Bad Request\r\nContent-Length")
    assert client.transcript.render(timestamps=False).splitlines()[1:4] == [
        "S: HTTP/1.1 400 Bad Request", "S: Content-Length: 0", "S: "]


def test_server_that_closes_mid_reply_is_reported_as_closed():
    with talking_to(closes_mid_reply) as client, ends_within(TIMEOUT):
        with pytest.raises(ConnectionClosed, match="in the middle of a reply") as caught:
            client.connect()
        assert caught.value.partial == b"220-mx.example.test\r\n220 half"
        assert client.closed_by_server
        assert not client.connected


def test_server_that_closes_without_greeting_is_reported_as_closed():
    with talking_to(closes_without_greeting) as client, ends_within(TIMEOUT):
        with pytest.raises(ConnectionClosed, match="instead of replying") as caught:
            client.connect()
        assert caught.value.partial == b""


def test_bare_lf_replies_are_returned_with_the_violation():
    with talking_to(bare_lf_replies) as client, ends_within(2 * TIMEOUT):
        greeting = client.connect()
        assert [v.rule for v in greeting.violations] == ["bare-lf"]
        reply = client.command(b"NOOP\r\n")
        assert reply.lines == ("first", "ok")
        assert {v.rule for v in reply.violations} == {"bare-lf"}


def test_sending_to_a_server_that_never_reads_times_out():
    # More than the loopback socket buffers hold, so the write cannot complete.
    with talking_to(greets_and_never_reads) as client, ends_within(TIMEOUT):
        client.connect()
        with pytest.raises(ReplyTimeout, match="did not read our data"):
            client.send(b"x" * (64 * 1024 * 1024))


def ipv6_loopback() -> bool:
    try:
        with socket.create_server(("::1", 0), family=socket.AF_INET6):
            return True
    except OSError:
        return False


@pytest.mark.skipif(not ipv6_loopback(), reason="no IPv6 loopback (::1) on this machine")
def test_talks_over_ipv6_to_a_bracketed_address():
    with talking_to(greets_and_answers, host="::1", timeout=5) as client:
        assert str(client.address).startswith("[::1]:")
        assert ServerAddress.parse(str(client.address)) == client.address
        assert client.connect().code == 220
        assert [r.code for r in client.pipeline([b"NOOP\r\n", b"QUIT\r\n"])] == [250, 221]
        assert client.wait_for_close(timeout=5)


def test_wait_for_close_is_false_when_the_server_stays_open(aiosmtpd_server):
    with SMTPClient(aiosmtpd_server.address, timeout=5) as client:
        client.connect()
        assert client.command(b"NOOP\r\n").code == 250
        assert not client.wait_for_close(timeout=TIMEOUT)
        assert "connection still open" in client.transcript.render()
