"""A checked session for a user's own test (engine/checked.py), against fault servers on
127.0.0.1: its failing findings are raised when the block ends, and only then."""

from __future__ import annotations

import pytest

from conformance.engine.address import ServerAddress
from conformance.engine.checked import checked_session
from conformance.engine.failures import RunFailed
from conformance.engine.session import CheckedSession
from conformance.engine.settings import SessionSettings
from conformance.protocol.commands import Command
from conformance.protocol.replies import Reply
from conformance.protocol.tables import get_profile
from tests.fault_server import FaultServer

SETTINGS = SessionSettings(get_profile("seed"), timeout=1.0)
NOOP = Command.of("NOOP")


def noop_then_help(address: ServerAddress) -> list[Reply | None]:
    with checked_session(address, SETTINGS) as session:
        return [session.send(NOOP), session.send(Command.of("HELP"))]


def test_a_failing_finding_is_raised_when_the_block_ends():
    with FaultServer("noop_replies_252") as server, pytest.raises(RunFailed) as failed:
        noop_then_help(server.address)
    [finding] = failed.value.findings
    assert (finding.check, finding.group, finding.reply_code) == \
        ("reply_code_documented", "NOOP", 252)


def test_a_conforming_session_raises_nothing():
    with FaultServer() as server:
        noop, _ = noop_then_help(server.address)
    assert noop is not None
    assert noop.code == 250


def fails_by_itself(address: ServerAddress, opened: list[CheckedSession]) -> None:
    with checked_session(address, SETTINGS) as session:
        opened.append(session)
        session.send(NOOP)
        raise KeyError("the test's own")


def test_the_tests_own_failure_goes_on_as_it_is_and_the_session_is_closed():
    opened: list[CheckedSession] = []
    with FaultServer("noop_replies_252") as server, pytest.raises(KeyError):
        fails_by_itself(server.address, opened)
    assert not opened[0].client.connected


def noop_until_stopped(address: ServerAddress, settings: SessionSettings) -> None:
    with checked_session(address, settings) as session:
        session.send(NOOP)
        raise AssertionError("not reached: fail-fast stops the session at NOOP's 252")


def test_a_session_stopped_by_fail_fast_fails_with_its_finding_and_why():
    fail_fast = SessionSettings(get_profile("seed"), timeout=1.0, fail_fast=True)
    with FaultServer("noop_replies_252") as server, pytest.raises(RunFailed) as failed:
        noop_until_stopped(server.address, fail_fast)
    [finding] = failed.value.findings
    assert (finding.group, finding.reply_code) == ("NOOP", 252)
    assert failed.value.errors == ("fail-fast: stopped at the first failing finding",)
