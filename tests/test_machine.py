"""The state machine outside pytest's plugin: what it does when the server goes away."""

from __future__ import annotations

import socket

import pytest
from hypothesis import settings
from hypothesis.stateful import run_state_machine_as_test

from conformance.client import ServerAddress
from conformance.errors import TargetLost
from conformance.machine import configure
from conformance.tables import get_profile


def test_a_server_that_refuses_connections_stops_hypothesis_at_once():
    # Not a failure of the server for Hypothesis to shrink: it passes straight through.
    with socket.create_server(("127.0.0.1", 0)) as probe:
        address = ServerAddress("127.0.0.1", probe.getsockname()[1])
    machine = configure(address, get_profile("seed"), timeout=0.5)
    with pytest.raises(TargetLost, match=r"cannot connect to 127\.0\.0\.1:\d+"):
        run_state_machine_as_test(machine, settings=settings(max_examples=5, database=None))
