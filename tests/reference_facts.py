"""The facts the tests check the profiles against, from the project's own data file
(tests/data/reference_facts.json): the seed page's codes per group and the reference table.

They were taken from the workspace's pages (shared/seed/..., shared/reference/rfc-tables.md),
which a clone of the project does not have; tests/test_reference_pages.py checks they still
agree wherever those pages exist.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from tests.reference_page import ReferenceRow

FACTS = Path(__file__).resolve().parent / "data" / "reference_facts.json"


@cache
def _facts() -> dict[str, Any]:
    facts: dict[str, Any] = json.loads(FACTS.read_text(encoding="utf-8"))
    return facts


def seed_groups() -> dict[str, list[tuple[int, str]]]:
    """{group: [(code, text), ...]} in page order, as tests/seed_page.py reads the page."""
    groups = _facts()["seed_page"]["groups"]
    return {group: [(code, text) for code, text in entries] for group, entries in groups.items()}


def _codes(cell: list[int] | None) -> tuple[int, ...] | None:
    return None if cell is None else tuple(cell)


def reference_rows() -> dict[str, ReferenceRow]:
    """{command: ReferenceRow}, as tests/reference_page.py reads the reference table."""
    rows = _facts()["reference_table"]["rows"]
    return {
        command: ReferenceRow(tuple(row["seed"]), _codes(row["rfc821"]),
                              _codes(row["rfc5321_printed"]), tuple(row["rfc5321_effective"]))
        for command, row in rows.items()
    }
