"""The ESMTP test server on the wire: it speaks each extension right, and each named fault
shows its one deviation (and the conforming server does not)."""

from __future__ import annotations

import base64
import re
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from conformance.engine.client import SMTPClient
from conformance.protocol import grammar
from conformance.protocol.errors import ReplyTimeout
from conformance.protocol.replies import Reply
from conformance.protocol.tables import EXTENSION_GROUPS, GROUPS, PROFILES
from tests.esmtp_server import ESMTP_FAULTS, PASSWORD, USERNAME, EsmtpServer
from tests.tls_server import SERVER_NAME, Certificates

PLAIN = base64.b64encode(f"\0{USERNAME}\0{PASSWORD}".encode()).decode()
WRONG = base64.b64encode(f"\0{USERNAME}\0not-the-password".encode()).decode()
ENHANCED = re.compile(r"([245])\.(0|[1-9][0-9]{0,2})\.(0|[1-9][0-9]{0,2}) ")  # RFC 3463 §2


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return Certificates(Path(tmp_path_factory.mktemp("esmtp-tls")))


def connect(server: EsmtpServer, *, ehlo: bool = True) -> SMTPClient:
    client = SMTPClient(server.address, timeout=3)
    assert client.connect().code == 220
    if ehlo:
        assert client.command(b"EHLO client.example.test\r\n").code == 250
    return client


def upgrade(client: SMTPClient, certificates: Certificates) -> None:
    client.starttls(certificates.client_context(), SERVER_NAME)


def unsolicited(client: SMTPClient) -> Reply | None:
    """A reply that arrives within 0.3 s though nothing was asked."""
    try:
        return client.read_reply(timeout=0.3)
    except ReplyTimeout:
        return None


def codes(client: SMTPClient, *commands: bytes) -> list[int]:
    return [client.command(command).code for command in commands]


def enhanced(reply: Reply) -> list[str | None]:
    """The status code opening each line of ``reply`` (None where there is none)."""
    return [m.group(0).strip() if (m := ENHANCED.match(line)) else None
            for line in reply.lines]


@pytest.fixture
def server(certificates: Certificates) -> Iterator[EsmtpServer]:
    with EsmtpServer(tls=certificates.server_context()) as running:
        yield running


# --- the configuration -----------------------------------------------------------------------

def test_refuses_unknown_fault_and_extension():
    with pytest.raises(ValueError, match="no_such_fault"):
        EsmtpServer("no_such_fault")
    with pytest.raises(ValueError, match="XFOO"):
        EsmtpServer(extensions=["XFOO"])
    with pytest.raises(ValueError, match="size_limit"):
        EsmtpServer(size_limit=0)


def test_advertises_what_it_implements_and_starttls_only_with_tls(server):
    with connect(server, ehlo=False) as client:
        lines = client.command(b"EHLO client.example.test\r\n").lines[1:]
    assert lines == ("PIPELINING", "SIZE 10000", "8BITMIME", "SMTPUTF8", "DSN",
                     "ENHANCEDSTATUSCODES", "STARTTLS", "AUTH PLAIN LOGIN", "CHUNKING")
    with EsmtpServer(extensions=["size", "STARTTLS"], size_limit=99) as plain, \
            connect(plain, ehlo=False) as client:
        assert client.command(b"EHLO client.example.test\r\n").lines[1:] == ("SIZE 99",)


def test_stops_with_a_session_open():
    with EsmtpServer() as running:
        client = connect(running)
        started = time.monotonic()
    assert time.monotonic() - started < 2
    assert client.wait_for_close(timeout=2)


# --- the base protocol, under every profile --------------------------------------------------

def _replies_by_group(server: EsmtpServer) -> list[tuple[str, int]]:
    """One session's (group, code) pairs: a valid command of every group, and the refusals."""
    seen: list[tuple[str, int]] = []
    with SMTPClient(server.address, timeout=3) as client:
        seen.append(("connect", client.connect().code))

        def ask(group: str, command: bytes) -> None:
            seen.append((group, client.command(command).code))

        ask("MAIL", b"MAIL FROM:<a@example.test>\r\n")  # before HELO
        ask("HELO", b"HELO client.example.test\r\n")
        ask("MAIL", b"MAIL FROM:<a@example.test> RET=FULL\r\n")  # not advertised after HELO
        ask("EHLO", b"EHLO client.example.test\r\n")
        ask("RCPT", b"RCPT TO:<b@example.test>\r\n")  # no MAIL
        ask("DATA", b"DATA\r\n")  # no recipient
        ask("MAIL", b"MAIL FROM:<a@example.test> XFOO=1\r\n")  # unknown parameter
        ask("MAIL", b"MAIL FROM:<a@example.test> SIZE=10\r\n")
        ask("MAIL", b"MAIL FROM:<a@example.test>\r\n")  # nested
        ask("RCPT", b"RCPT TO:<b@example.test> XFOO=1\r\n")
        ask("RCPT", b"RCPT TO:<b@example.test> NOTIFY=NEVER\r\n")
        ask("DATA", b"DATA\r\n")
        client.send(b"Subject: test\r\n\r\nbody\r\n.\r\n")
        seen.append(("received data", client.read_reply().code))
        for verb in ("SEND", "SOML", "SAML"):
            ask(verb, f"{verb} FROM:<a@example.test>\r\n".encode())
        for command in (b"VRFY postmaster", b"VRFY", b"EXPN staff", b"HELP", b"NOOP", b"RSET",
                        b"RSET x", b"TURN", b"AUTH PLAIN " + PLAIN.encode(), b"BDAT 0 LAST",
                        b"STARTTLS x", b"XYZZY", b"QUIT x", b"QUIT"):
            group = command.split(b" ")[0].decode()
            ask(group if group in (*GROUPS, *EXTENSION_GROUPS) else "unrecognised",
                command + b"\r\n")
    return seen


def test_every_reply_is_documented_by_every_profile(server):
    replies = _replies_by_group(server)
    assert {group for group, _ in replies} >= {*GROUPS, *EXTENSION_GROUPS}
    for profile in PROFILES.values():
        undocumented = [(g, code) for g, code in replies if not profile.row(g).allows(code)]
        assert undocumented == [], profile.name


def test_answers_refusals_with_rfc5321_codes_under_that_profile(certificates):
    with EsmtpServer(profile="rfc5321") as running, connect(running, ehlo=False) as client:
        assert codes(client, b"MAIL FROM:<a@example.test>\r\n", b"EHLO client.example.test\r\n",
                     b"MAIL FROM:<a@example.test> XFOO=1\r\n", b"MAIL FROM:<a@example.test>\r\n",
                     b"MAIL FROM:<a@example.test>\r\n") == [503, 250, 555, 250, 503]


def test_session_rules(server):
    with connect(server) as client:
        assert codes(client, b"RCPT TO:<b@example.test>\r\n", b"DATA\r\n",
                     b"MAIL FROM:<a@example.test>\r\n", b"RSET\r\n",
                     b"RCPT TO:<b@example.test>\r\n", b"MAIL FROM:<a@example.test>\r\n",
                     b"EHLO again.example.test\r\n", b"RCPT TO:<b@example.test>\r\n",
                     b"FROB\r\n", b"EXPN staff\r\n") == [503, 503, 250, 250, 503, 250, 250,
                                                          503, 500, 502]
        assert client.command(b"QUIT\r\n").code == 221
        assert client.wait_for_close(timeout=2)


def test_message_ends_the_transaction_and_is_kept(server):
    with connect(server) as client:
        assert codes(client, b"MAIL FROM:<a@example.test>\r\n", b"RCPT TO:<b@example.test>\r\n",
                     b"DATA\r\n") == [250, 250, 354]
        assert client.command(b"..dot\r\nline\r\n.\r\n").code == 250
        assert client.command(b"RCPT TO:<b@example.test>\r\n").code == 503
    assert server.messages == [b".dot\r\nline\r\n"]


# --- the extensions --------------------------------------------------------------------------

def test_pipelining_answers_a_batch_of_five_in_order(server):
    with connect(server) as client:
        replies = client.pipeline([b"MAIL FROM:<a@example.test>\r\n",
                                   b"RCPT TO:<b@example.test>\r\n", b"RSET\r\n",
                                   b"RCPT TO:<b@example.test>\r\n", b"NOOP\r\n"])
    assert [reply.code for reply in replies] == [250, 250, 250, 503, 250]


def test_size_limit_enforced(server):
    with connect(server) as client:
        assert codes(client, b"MAIL FROM:<a@example.test> SIZE=10001\r\n",
                     b"MAIL FROM:<a@example.test> SIZE=1x\r\n",
                     b"MAIL FROM:<a@example.test> SIZE=10000\r\n",
                     b"RCPT TO:<b@example.test>\r\n", b"DATA\r\n") == [552, 501, 250, 250, 354]
        assert client.command((b"x" * 998 + b"\r\n") * 11 + b".\r\n").code == 552
    assert server.messages == []


def test_enhanced_codes_on_every_2xx_4xx_5xx_after_ehlo_only(server):
    with connect(server, ehlo=False) as client:
        assert enhanced(client.command(b"NOOP\r\n")) == [None]  # not advertised yet
        ehlo = client.command(b"EHLO client.example.test\r\n")
        assert set(enhanced(ehlo)) == {None}  # RFC 2034 §3: not on EHLO's reply
        for command in (b"NOOP", b"HELP", b"FROB", b"RCPT TO:<b@example.test>",
                        b"MAIL FROM:<a@example.test>", b"RCPT TO:<b@example.test>", b"DATA"):
            reply = client.command(command + b"\r\n")
            codes_seen = set(enhanced(reply))
            if reply.code // 100 == 3:
                assert codes_seen == {None}
            else:
                assert len(codes_seen) == 1
                assert next(iter(codes_seen))[0] == str(reply.code)[0]  # type: ignore[index]


def test_starttls_discards_what_came_with_it_and_starts_over(server, certificates):
    with connect(server) as client:
        assert client.command(b"MAIL FROM:<a@example.test>\r\n").code == 250
        assert client.command(b"STARTTLS\r\nNOOP\r\n").code == 220
        upgrade(client, certificates)
        assert unsolicited(client) is None
        assert client.command(b"MAIL FROM:<a@example.test>\r\n").code in (501, 503)
        ehlo = client.command(b"EHLO client.example.test\r\n")
        assert "STARTTLS" not in ehlo.lines
        assert codes(client, b"RCPT TO:<b@example.test>\r\n", b"STARTTLS\r\n") == [503, 502]


def test_starttls_refuses_an_argument(server):
    with connect(server) as client:
        assert codes(client, b"STARTTLS now\r\n", b"NOOP\r\n") == [501, 250]


def test_bdat_chunks(server):
    with connect(server) as client:
        assert codes(client, b"BDAT 4\r\nNOOP", b"NOOP\r\n") == [503, 250]  # framed still
        assert codes(client, b"MAIL FROM:<a@example.test>\r\n", b"RCPT TO:<b@example.test>\r\n",
                     b"BDAT 6\r\nhello\n", b"DATA\r\n", b"BDAT 0 LAST\r\n",
                     b"BDAT 0 LAST\r\n") == [250, 250, 250, 503, 250, 503]
    assert server.messages == [b"hello\n"]


def test_bdat_over_the_size_limit_refused_at_last(server):
    with connect(server) as client:
        assert codes(client, b"MAIL FROM:<a@example.test>\r\n", b"RCPT TO:<b@example.test>\r\n",
                     b"BDAT 10001 LAST\r\n" + b"x" * 10_001, b"NOOP\r\n") == [250, 250, 552, 250]


@pytest.mark.parametrize(("exchange", "expected"), [
    ([f"AUTH PLAIN {PLAIN}"], [235]),
    (["AUTH PLAIN", PLAIN], [334, 235]),
    ([f"AUTH PLAIN {WRONG}"], [535]),
    (["AUTH PLAIN", "*"], [334, 501]),
    (["AUTH PLAIN", "not base64!"], [334, 501]),
    (["AUTH LOGIN", base64.b64encode(USERNAME.encode()).decode(),
      base64.b64encode(PASSWORD.encode()).decode()], [334, 334, 235]),
    (["AUTH CRAM-MD5"], [504]),
    ([f"AUTH PLAIN {PLAIN}", f"AUTH PLAIN {PLAIN}"], [235, 503]),
    (["MAIL FROM:<a@example.test>", f"AUTH PLAIN {PLAIN}"], [250, 503]),
])
def test_auth(server, exchange, expected):
    with connect(server) as client:
        assert codes(client, *(f"{line}\r\n".encode() for line in exchange)) == expected


def test_parameters_of_extensions_not_advertised_refused():
    with EsmtpServer(extensions=["SIZE"]) as running, connect(running) as client:
        assert codes(client, b"MAIL FROM:<a@example.test> RET=FULL\r\n",
                     b"MAIL FROM:<a@example.test> BODY=8BITMIME\r\n",
                     b"MAIL FROM:<a@example.test> SIZE=5\r\n",
                     b"RCPT TO:<b@example.test> NOTIFY=NEVER\r\n") == [501, 501, 250, 501]


# --- the faults: each shows on the wire, and only with the fault -----------------------------

Probe = Callable[[SMTPClient, Certificates], bool]


def _drops_input(client: SMTPClient, certificates: Certificates) -> bool:
    client.send(b"NOOP\r\n" * 5)
    answered = 0
    while unsolicited(client) is not None:
        answered += 1
    return answered < 5


def _runs_plaintext(client: SMTPClient, certificates: Certificates) -> bool:
    client.command(b"STARTTLS\r\nNOOP\r\n")
    upgrade(client, certificates)
    return unsolicited(client) is not None


def _ehlo_after_tls(client: SMTPClient, certificates: Certificates) -> Reply:
    client.command(b"STARTTLS\r\n")
    upgrade(client, certificates)
    return client.command(b"EHLO client.example.test\r\n")


def _keeps_transaction(client: SMTPClient, certificates: Certificates) -> bool:
    client.command(b"MAIL FROM:<a@example.test>\r\n")
    _ehlo_after_tls(client, certificates)
    return client.command(b"RCPT TO:<b@example.test>\r\n").code == 250


def _ehlo_malformed(client: SMTPClient, certificates: Certificates) -> bool:
    lines = client.command(b"EHLO client.example.test\r\n").lines[1:]
    return not all(grammar.is_ehlo_line(line) for line in lines)


def _dsn_unadvertised(client: SMTPClient, certificates: Certificates) -> bool:
    ehlo = client.command(b"EHLO client.example.test\r\n")
    return "DSN" not in ehlo.lines and codes(
        client, b"MAIL FROM:<a@example.test> RET=HDRS\r\n",
        b"RCPT TO:<b@example.test> NOTIFY=NEVER\r\n") == [250, 250]


PROBES: dict[str, Probe] = {
    "pipelining_drops_input": _drops_input,
    "size_not_enforced": lambda client, _: client.command(
        b"MAIL FROM:<a@example.test> SIZE=10001\r\n").code == 250,
    "quote_hides_parameters": lambda client, _: client.command(
        b'MAIL FROM:<a@example.test> ENVID=a"b SIZE=10001\r\n').code == 250,
    "size_parameter_refused": lambda client, _: client.command(
        b"MAIL FROM:<a@example.test> SIZE=100\r\n").code == 555,
    "enhanced_class_mismatch": lambda client, _: enhanced(
        client.command(b"NOOP\r\n"))[0] != "2.0.0",
    "enhanced_code_missing": lambda client, _: enhanced(client.command(b"RSET\r\n")) == [None],
    "enhanced_code_differs_between_lines": lambda client, _: len(
        set(enhanced(client.command(b"HELP\r\n")))) > 1,
    "starttls_runs_plaintext": _runs_plaintext,
    "starttls_accepts_argument": lambda client, _: client.command(
        b"STARTTLS now\r\n").code == 220,
    "starttls_readvertised": lambda client, certificates: "STARTTLS" in _ehlo_after_tls(
        client, certificates).lines,
    "starttls_keeps_transaction": _keeps_transaction,
    "bdat_mixed_with_data": lambda client, _: codes(
        client, b"MAIL FROM:<a@example.test>\r\n", b"RCPT TO:<b@example.test>\r\n",
        b"BDAT 3\r\nabc", b"DATA\r\n")[-1] == 354,
    "ehlo_line_malformed": _ehlo_malformed,
    "dsn_accepted_unadvertised": _dsn_unadvertised,
    "auth_twice": lambda client, _: codes(
        client, *[f"AUTH PLAIN {PLAIN}\r\n".encode()] * 2) == [235, 235],
    "auth_in_transaction": lambda client, _: codes(
        client, b"MAIL FROM:<a@example.test>\r\n", f"AUTH PLAIN {PLAIN}\r\n".encode()
    ) == [250, 235],
    "auth_cancel_accepted": lambda client, _: codes(
        client, b"AUTH PLAIN\r\n", b"*\r\n") == [334, 235],
    "utf8_address_without_smtputf8": lambda client, _: codes(
        client, "MAIL FROM:<üser@example.test>\r\n".encode()) == [250],
    "keeps_recipients_after_message": lambda client, _: codes(
        client, b"MAIL FROM:<a@example.test>\r\n", b"RCPT TO:<b@example.test>\r\n",
        b"DATA\r\n", b"Subject: one\r\n.\r\n", b"RCPT TO:<c@example.test>\r\n")[-1] == 250,
    "data_after_refused_recipients_354": lambda client, _: codes(
        client, b"MAIL FROM:<a@example.test>\r\n", b"RCPT TO:b@example.test\r\n",
        b"DATA\r\n")[-2:] == [501, 354],
}


def test_utf8_mailboxes_only_in_a_transaction_that_asked_for_smtputf8(server):
    with connect(server) as client:
        assert codes(client, "MAIL FROM:<üser@example.test>\r\n".encode(),
                     b"MAIL FROM:<a@example.test>\r\n",
                     "RCPT TO:<δοκιμή@example.test>\r\n".encode(), b"RSET\r\n",
                     "MAIL FROM:<üser@example.test> SMTPUTF8\r\n".encode(),
                     "RCPT TO:<δοκιμή@example.test>\r\n".encode()) == [
            501, 250, 501, 250, 250, 250]


def test_every_fault_has_a_probe():
    assert set(PROBES) == set(ESMTP_FAULTS)


@pytest.mark.parametrize("fault", list(ESMTP_FAULTS))
@pytest.mark.parametrize("faulty", [True, False], ids=["with_fault", "conforming"])
def test_fault_shows_on_the_wire(fault, faulty, certificates):
    with EsmtpServer(fault if faulty else None,
                     tls=certificates.server_context()) as running, \
            connect(running) as client:
        assert PROBES[fault](client, certificates) is faulty


def test_overlong_line_refused_and_session_goes_on(server):
    with socket.create_connection((server.address.host, server.address.port), timeout=3) as raw:
        stream = raw.makefile("rb")
        assert stream.readline().startswith(b"220 ")
        raw.sendall(b"NOOP " + b"x" * 5000 + b"\r\nNOOP\r\n")
        assert stream.readline().startswith(b"500 ")
        assert stream.readline().startswith(b"250 ")
