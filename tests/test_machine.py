"""The state machine outside pytest's plugin: findings are recorded and never reach
Hypothesis; what stops a run (the server gone, fail-fast, the time budget) passes through."""

from __future__ import annotations

import socket
import time

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis.errors import FlakyStrategyDefinition
from hypothesis.stateful import run_state_machine_as_test

from conformance.checks.grading import FindingKey
from conformance.engine.address import ServerAddress
from conformance.engine.record import RunRecord
from conformance.engine.settings import SessionSettings
from conformance.protocol.errors import StopRun, TargetLost
from conformance.protocol.tables import get_profile
from conformance.search.machine import SMTPConformance, configure, explore
from tests.fault_server import FaultServer

TIMEOUT = 0.5
SETTINGS = SessionSettings(get_profile("seed"), timeout=TIMEOUT)


def run(machine: type[SMTPConformance], examples: int = 10, steps: int = 10) -> None:
    explore(machine, settings(
        max_examples=examples, stateful_step_count=steps, deadline=None, database=None,
        phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck)))


def test_a_server_that_refuses_connections_stops_hypothesis_at_once():
    # Not a failure of the server for Hypothesis to shrink: it passes straight through.
    with socket.create_server(("127.0.0.1", 0)) as probe:
        address = ServerAddress("127.0.0.1", probe.getsockname()[1])
    machine = configure(address, SETTINGS)
    with pytest.raises(TargetLost, match=r"cannot connect to 127\.0\.0\.1:\d+"):
        run(machine, examples=5)


def test_findings_are_recorded_and_never_reach_hypothesis():
    record = RunRecord()
    with FaultServer("noop_replies_252") as server:
        run(configure(server.address, SETTINGS,
                      record=record, seed=1), examples=30)  # returns: nothing was raised
    assert FindingKey("reply_code_documented", "MUST", "NOOP", 252) in record.findings
    assert record.coverage_of("connect") > 1  # it went on after the finding


def test_fail_fast_stops_hypothesis_at_the_first_failing_finding():
    record = RunRecord()
    with FaultServer("noop_replies_252") as server:
        machine = configure(server.address, SessionSettings(get_profile("seed"), timeout=TIMEOUT,
                                                            fail_fast=True), record=record, seed=1)
        with pytest.raises(StopRun, match="fail-fast"):
            run(machine, examples=30)
    assert list(record.findings) == [FindingKey("reply_code_documented", "MUST", "NOOP", 252)]


def test_a_spent_time_budget_stops_the_run_before_any_session():
    with FaultServer() as server:
        machine = configure(server.address, SETTINGS,
                            deadline=time.monotonic())
        with pytest.raises(StopRun, match="time budget"):
            run(machine)
        assert list(server.received) == []


def test_the_same_seed_sends_the_same_sessions():
    sent = []
    for _ in range(2):
        with FaultServer() as server:
            run(configure(server.address, SETTINGS,
                          seed=7),
                examples=5, steps=5)
            sent.append(list(server.received))
    assert sent[0]
    assert sent[0] == sent[1]



def test_a_stop_comes_out_as_itself_where_hypothesis_sees_flaky_draws():
    # The steered rules send what the run has seen least, so the same draws can end a session
    # in one example and go on in another; Hypothesis calls that flaky. Here the second
    # example stops before drawing anything, where the first went on: explore() gives the
    # run's own reason for stopping instead of Hypothesis's complaint.
    with FaultServer() as server:
        base = configure(server.address, SETTINGS,
                         seed=1)

        class StopsInTheSecondExample(base):  # type: ignore[valid-type,misc]
            examples = 0

            def __init__(self) -> None:
                type(self).examples += 1
                super().__init__()

            def _open(self) -> None:
                if type(self).examples == 2:
                    raise self._stop(StopRun("stopped by the test"))
                super()._open()

        with pytest.raises(StopRun, match="stopped by the test"):
            run(StopsInTheSecondExample, examples=5)
        StopsInTheSecondExample.examples = 0
        with pytest.raises(FlakyStrategyDefinition):  # what Hypothesis alone says
            run_state_machine_as_test(StopsInTheSecondExample, settings=settings(
                max_examples=5, stateful_step_count=10, deadline=None, database=None,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck)))


def test_every_rule_is_declared_in_the_class_one_per_seed_verb():
    # Rules you can find: each is a name in the class body (no setattr loop), and the names
    # follow the vocabulary and the extension rules' factory.
    import inspect

    from conformance.protocol.vocabulary import SEED_VERBS
    from conformance.search import machine

    body = inspect.getsource(machine.SMTPConformance)
    for verb in SEED_VERBS:
        name = f"send_{verb.name.lower()}"
        assert f"    {name} = _verb_rule(VERBS[V.{verb.name}])" in body, name
        assert getattr(machine.SMTPConformance, name).__name__ == name
    for name in machine._extension_rules(None):
        assert name in body
        assert getattr(machine.SMTPConformance, name).__name__ == name
