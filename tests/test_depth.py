"""The search is deep by construction: a default run reaches every (state, command) cell on
every seed (the systematic phase's plan holds them all: tests/test_systematic.py, which also
shows the phase alone finding every state fault)."""

from __future__ import annotations

from pathlib import Path

import pytest

from conformance.engine.record import RunRecord
from conformance.engine.settings import BUDGETS, RunSettings
from conformance.protocol.tables import get_profile
from conformance.search.runner import Run
from conformance.search.steering import CELLS
from conformance.testing.reference_server import ReferenceServer
from tests.fault_server import FAULTS, STATE_FAULTS


def default_run(address_of_server: object, seed: int, tmp_path: Path, *,
                fail_fast: bool = False) -> RunRecord:
    """Explore as a default run does (the fast budget), and return its record."""
    examples, steps = BUDGETS["fast"]
    settings = RunSettings(server=None, profile=get_profile("seed"), timeout=2.0,
                           examples=examples, steps=steps, budget_name="fast", seed=str(seed),
                           fail_fast=fail_fast, deliver=True)
    record = RunRecord()
    Run(settings, address_of_server, record, tmp_path).explore()  # type: ignore[arg-type]
    return record


def cells_reached(record: RunRecord) -> set[tuple[str, str]]:
    return {(state, group) for state, group, _code in record.coverage}


def test_cells_are_every_open_state_by_every_seed_verb_and_an_unknown_one():
    assert len(CELLS) == 64


@pytest.mark.parametrize("seed", [0, 1])
def test_a_default_run_reaches_every_cell(seed, tmp_path):
    with ReferenceServer() as server:
        record = default_run(server.address, seed, tmp_path)
    expected = {(state.name, group) for state, group in CELLS}
    assert expected - cells_reached(record) == set()


def test_state_faults_are_fault_servers_named_with_their_check():
    assert all(FAULTS[fault] in checks for fault, checks in STATE_FAULTS.items())
