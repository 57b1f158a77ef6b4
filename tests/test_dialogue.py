"""The one pattern of the test servers (conformance.testing.dialogue and .faults): bounded
reading, per-verb dispatch, and faults declared with the check each must trip, a check that
exists. That each fault does trip its check is held per server: tests/test_suite_end_to_end.py
(the fault server), tests/test_extensions.py (ESMTP), tests/test_hostile_servers.py,
tests/test_batch.py."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from conformance.checks import CHECKS
from conformance.testing.dialogue import Closed, SmtpHandler, SmtpServer, Wire
from conformance.testing.faults import Fault, Faults
from conformance.testing.serving import Served
from tests import batch_server, esmtp_server, fault_server, hostile_server
from tests.talk import Talk

DECLARED = {
    "fault_server": fault_server.ALL,
    "esmtp_server": esmtp_server.ESMTP,
    "hostile_server": hostile_server.HOSTILE,
    "batch_server": batch_server.BATCH_FAULTS,
}
EVERY_FAULT = [(server, fault) for server, faults in DECLARED.items() for fault in faults.values()]


@pytest.mark.parametrize(("server", "fault"), EVERY_FAULT,
                         ids=[f"{server}:{fault.name}" for server, fault in EVERY_FAULT])
def test_every_declared_fault_names_a_check_that_exists_and_says_what_it_does(server, fault):
    assert fault.check is None or fault.check in CHECKS
    assert fault.description.strip()


def test_the_fault_servers_views_are_its_declarations_by_group():
    every = fault_server.ALL
    views = (fault_server.FAULTS, fault_server.SHOULD_FAULTS, fault_server.NOTED_FAULTS,
             fault_server.NONDETERMINISTIC, fault_server.SMUGGLING_FAULTS,
             fault_server.RELAY_FAULTS)
    assert all(check == every[name].check for view in views for name, check in view.items())
    defences = fault_server.DEFENCES
    assert set(every) == {*defences, *(name for view in views for name in view)}
    assert defences == {"enforces_synchronization"}
    assert {"enforces_synchronization", "only_bdat_mid_message", "starttls_again_503",
            "starttls_again_554"} == esmtp_server.ESMTP_DEFENCES
    state = fault_server.STATE_FAULTS
    assert state["rcpt_without_mail_accepted"] == {"rcpt_requires_mail"}
    assert "helo_replies_220" not in state  # shown by the first HELO
    assert set(hostile_server.HOSTILE) == set(hostile_server.BEHAVIOURS)


def test_a_fault_is_declared_once_and_only_declared_faults_are_chosen():
    one = Fault("noop_replies_252", "reply_code_documented", "NOOP answered 252")
    with pytest.raises(ValueError, match="declared twice"):
        Faults(one, one)
    faults = Faults(one, Fault("defends", None, "no deviation"))
    assert faults.choose(["noop_replies_252", None]) == {"noop_replies_252"}
    assert faults.checks() == {"noop_replies_252": "reply_code_documented"}
    assert faults.defences() == {"defends"}
    with pytest.raises(ValueError, match="unknown fault"):
        faults.choose(["noop_replies_525"])
    with pytest.raises(ValueError, match="unknown fault"):
        fault_server.FaultServer("no_such_fault")


# --- the dialogue ----------------------------------------------------------------------------

class Polite(SmtpHandler):  # the module docstring's example
    greeting = "220 polite.example.test ESMTP"
    timeout = 5.0

    def on_noop(self, argument: str) -> bool:
        self.reply("250 OK")
        return True

    def on_quit(self, argument: str) -> bool:
        self.reply("221 Bye")
        return False


class Hasty(Polite):
    timeout = 0.2


@pytest.fixture
def polite() -> Iterator[Talk]:
    with Served(SmtpServer(Polite)) as served, Talk(served.address) as talk:
        assert talk.reply() == b"220 polite.example.test ESMTP\r\n"
        yield talk


def test_each_verb_is_answered_by_its_method_whatever_its_case(polite):
    assert polite.say(b"NOOP\r\n") == b"250 OK\r\n"
    assert polite.say(b"nOoP with a parameter\r\n") == b"250 OK\r\n"


@pytest.mark.parametrize("line", [b"HELP\r\n", b"on_noop\r\n", b"NO-OP\r\n", b"N\xc3\x96OP\r\n",
                                  b"\r\n", b"SETUP\r\n", b"NOOP\nNOOP\r\n"])
def test_a_verb_without_its_method_is_unrecognised(polite, line):
    # A bare LF is part of the line (RFC 5321 §2.3.8): "NOOP\nNOOP" is one verb, unknown.
    assert polite.say(line) == b"500 Command unrecognized\r\n"
    assert polite.say(b"NOOP\r\n") == b"250 OK\r\n"


def test_an_overlong_line_is_refused_and_the_session_goes_on(polite):
    assert polite.say(b"NOOP " + b"x" * 10_000 + b"\r\n") == b"500 Line too long\r\n"
    assert polite.say(b"NOOP\r\n") == b"250 OK\r\n"


def test_a_verb_that_ends_the_session_closes_the_connection(polite):
    assert polite.say(b"QUIT\r\n") == b"221 Bye\r\n"
    assert polite.closed(within=2.0)


def test_a_silent_client_is_dropped_after_the_timeout():
    with Served(SmtpServer(Hasty)) as served, Talk(served.address) as talk:
        assert talk.reply().startswith(b"220 ")
        assert talk.closed(within=2.0)


def test_the_server_keeps_the_lines_it_received_up_to_its_bound():
    server = SmtpServer(Polite, keep=2)
    with Served(server) as served, Talk(served.address) as talk:
        talk.reply()
        for line in (b"NOOP 1\r\n", b"NOOP 2\r\n", b"NOOP 3\r\n"):
            talk.say(line)
        assert list(server.received) == [b"NOOP 2\r\n", b"NOOP 3\r\n"]


# --- the wire --------------------------------------------------------------------------------

@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, Wire]]:
    ours, theirs = socket.socketpair()
    theirs.settimeout(2.0)
    with ours, theirs:
        yield ours, Wire(theirs, max_line=16)


def test_a_line_is_cut_at_its_bound_and_the_rest_of_it_discarded(pair):
    ours, wire = pair
    ours.sendall(b"NOOP " + b"x" * 40 + b"\r\nRSET\r\n")
    assert wire.line() == b"NOOP " + b"x" * 11
    assert wire.line() == b"RSET\r\n"


def test_data_is_read_in_bounded_parts_and_what_is_put_back_comes_first(pair):
    ours, wire = pair
    ours.sendall(b"abcdefgh\r\n.\r\n")
    assert wire.until_lf(4) == b"abcd"
    assert wire.until_lf(100) == b"efgh\r\n"
    wire.unread(b"QUIT\r\n")
    assert wire.line() == b"QUIT\r\n"
    assert wire.line() == b".\r\n"
    assert not wire.waiting()
    ours.sendall(b"x")
    assert wire.octets(1, keep=0) == b""


def test_the_end_of_the_stream_is_closed_after_what_was_left(pair):
    ours, wire = pair
    ours.sendall(b"HALF")
    ours.shutdown(socket.SHUT_WR)
    assert wire.line() == b"HALF"
    with pytest.raises(Closed):
        wire.line()


def test_a_read_that_waits_too_long_times_out(pair):
    _, wire = pair
    wire.sock.settimeout(0.1)
    with pytest.raises(TimeoutError):
        wire.line()
