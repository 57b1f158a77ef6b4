"""The whole suite against hostile servers: each run ends within a bound that follows from the
timeout, with FAIL, exit 1, and the one check that names what the server did, and no other.

A reply counts as never coming after the timeout times HANG_FACTOR (the confirmation wait);
each behaviour's bound is the waits it may cost at most, plus a fixed allowance for pytest,
the run's start and its replays of fast findings.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from dataclasses import dataclass

import pytest

from conformance.engine.client import SMTPClient
from conformance.engine.pacing import HANG_FACTOR
from conformance.protocol.errors import ConnectionClosed, ReplyFramingError
from tests.hostile_server import BEHAVIOURS, GIGABYTE, HOSTILE, HostileServer
from tests.scripted_server import Script, ScriptedServer, read_line
from tests.test_suite_end_to_end import findings, run_checked

TIMEOUT = 0.5
CONFIRMED = TIMEOUT * HANG_FACTOR  # how long until a reply counts as never coming
ALLOWANCE = 15.0  # pytest in-process, the reachability probe, replays of fast findings


@dataclass(frozen=True)
class Expected:
    """Beside the behaviour's declared check (HOSTILE), the only one that fails the run."""

    says: str  # in its complaint: what the server did
    waits: int = 0  # confirmation waits the run may spend, replays included
    group: str | None = None  # the command it is reported on, where there is one to name
    note: str = ""  # in the report's notes: why the run stopped early


STALLED = f"no complete reply within {CONFIRMED:g}s"
EXPECTED = {
    # Not unreachable (exit 6): it accepted the connection. One wait, then one replay's.
    "never_greets": Expected(STALLED, waits=2, group="connect",
                             note=f"did not greet within {CONFIRMED:g}s"),
    # Two commands of different kinds unanswered, nothing ever answered: the run stops.
    "greets_then_stalls": Expected(STALLED, waits=4,
                                   note=f"answered none of 2 different commands within "
                                        f"{CONFIRMED:g}s"),
    "garbage_without_crlf": Expected("line-bound: more than 8192 octets without a line ending",
                                     group="connect"),
    "endless_multiline_reply": Expected("more than 1000 lines"),
    "gigabyte_reply": Expected("reply-bound"),
    "reset_mid_reply": Expected("(Connection reset by peer) in the middle of a reply "
                                "(received: b'250-mx.hostile"),
    # Blamed on the one rule broken (exactly one reply per command, RFC 5321 §4.2), not on
    # whatever each late reply looks like as the answer to the next command.
    "reply_before_any_command": Expected("unsolicited-reply: 18 octet(s)"),
    # The handshake is bounded by the timeout itself; STARTTLS is then not sent again.
    "tls_handshake_never_completes": Expected(f"no complete handshake within {TIMEOUT:g}s",
                                              group="STARTTLS"),
    # --smtp-deliver (run_checked's) sends the end of data.
    "end_of_data_never_answered": Expected(STALLED, waits=2, group="received data"),
}
# Stopped at the first failing finding: every command meets the same behaviour, so the rest
# of the run would repeat it. Not where the run's own early stop (a server that answers
# nothing) or its not waiting twice (an end of data never answered) is the claim.
FAIL_FAST = set(EXPECTED) - {"greets_then_stalls", "never_greets",
                             "end_of_data_never_answered"}


def test_every_behaviour_has_its_expectation():
    assert set(EXPECTED) == set(BEHAVIOURS) == set(HOSTILE)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("behaviour", list(EXPECTED))
def test_suite_ends_in_time_and_names_what_the_hostile_server_did(pytester, behaviour):
    expected = EXPECTED[behaviour]
    bound = expected.waits * CONFIRMED + ALLOWANCE
    started = time.monotonic()
    with HostileServer(behaviour) as server:
        result, report = run_checked(
            pytester, f"--server={server.address}", f"--smtp-timeout={TIMEOUT}",
            "--smtp-examples=10", *(["--smtp-fail-fast"] if behaviour in FAIL_FAST else []))
        elapsed = time.monotonic() - started
        assert server.idle(within=2.0), "a connection outlived the run"
    assert elapsed < bound, f"{elapsed:.1f}s (bound {bound:g}s)"
    assert result.ret == 1
    assert report["verdict"] == "FAIL"
    failed = [f for f in report["findings"] if f["verdict"] == "FAIL"]
    assert {f["check"] for f in failed} == {HOSTILE[behaviour].check}, findings(report)
    assert all(f["level"] == "MUST" for f in failed)
    assert any(expected.says in f["complaint"] for f in failed), failed[0]["complaint"]
    if expected.group is not None:
        assert {f["group"] for f in failed} == {expected.group}, findings(report)
    assert any(expected.note in note for note in report["notes"]), report["notes"]
    assert "Traceback" not in result.stdout.str()


@pytest.mark.timeout(60)
def test_a_gigabyte_reply_is_cut_at_the_bound_and_the_server_stops_streaming(pytester):
    with HostileServer("gigabyte_reply") as server:
        run_checked(pytester, f"--server={server.address}", f"--smtp-timeout={TIMEOUT}",
                    "--smtp-examples=1", "--smtp-fail-fast")
        assert server.idle(within=2.0)  # each stream ended when its client went away
        streamed = server.streamed
    assert 0 < streamed < GIGABYTE // 16, streamed


# --- the client's side of it: what each reading rests on -------------------------------------

def greets_with(extra: bytes) -> Script:
    """A greeting and ``extra`` in one write, then ``250 ok`` to each command."""
    def script(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(b"220 mx.example.test\r\n" + extra)
        while read_line(conn):
            conn.sendall(b"250 ok\r\n")
    return script


def test_a_reply_before_the_command_is_an_unsolicited_reply_and_the_command_is_not_sent():
    with ScriptedServer(greets_with(b"250 nobody asked\r\n")) as server, \
            SMTPClient(server.address, timeout=TIMEOUT) as client:
        client.connect()
        with pytest.raises(ReplyFramingError) as caught:
            client.command(b"NOOP\r\n")
    assert caught.value.violation.rule == "unsolicited-reply"
    assert caught.value.partial == b"250 nobody asked\r\n"
    assert "C: NOOP" not in client.transcript.render(timestamps=False)


def test_a_421_before_the_command_is_read_as_its_reply():
    # RFC 5321 §3.8: a server shutting down may send 421 before the command it answers.
    with ScriptedServer(greets_with(b"421 mx.example.test closing\r\n")) as server, \
            SMTPClient(server.address, timeout=TIMEOUT) as client:
        client.connect()
        assert client.command(b"NOOP\r\n").code == 421


def test_a_reset_in_the_middle_of_a_reply_keeps_what_came_before_it():
    def resets(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(b"220-mx.example.test\r\n220 half")
        time.sleep(0.1)  # the half reply is in before the reset
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()

    said = r"\(Connection reset by peer\) in the middle of a reply"
    with ScriptedServer(resets) as server, SMTPClient(server.address, timeout=TIMEOUT) as client, \
            pytest.raises(ConnectionClosed, match=said) as caught:
        client.connect()
    assert caught.value.partial == b"220-mx.example.test\r\n220 half"
