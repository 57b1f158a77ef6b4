"""The project's reference facts (tests/data/reference_facts.json) say what the workspace's
pages say, and the parsers that read those pages handle their quirks.

The pages sit beside the maintainers' checkout (../shared, or $SMTP_CONFORMANCE_SHARED), not in
the project: where they are absent the comparisons skip, unless SMTP_CONFORMANCE_REQUIRE_SHARED
is set (.ci/run runs them with ``pytest tests -m shared``). Every other test uses the facts.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.optional import REQUIRE_SHARED, missing
from tests.reference_facts import FACTS, reference_rows, seed_groups
from tests.reference_page import ReferenceRow, parse_reference_table, reference_path
from tests.seed_page import parse_seed_page, seed_path


def read_shared(request: pytest.FixtureRequest, path: Path) -> str:
    """A workspace page, for tests marked ``shared`` only (.ci/run selects them by it)."""
    assert request.node.get_closest_marker("shared"), "a test that reads ../shared: mark it"
    if not path.exists():
        missing(REQUIRE_SHARED, f"workspace page {path} not found (it is not part of the "
                f"project): {FACTS.name} was not compared with it")
    return path.read_text(encoding="utf-8")


@pytest.fixture
def seed_page(request: pytest.FixtureRequest) -> str:
    return read_shared(request, seed_path())


@pytest.fixture
def reference_page(request: pytest.FixtureRequest) -> str:
    return read_shared(request, reference_path())


@pytest.mark.shared
def test_facts_hold_the_seed_page_groups_in_page_order(seed_page):
    assert seed_groups() == parse_seed_page(seed_page)


@pytest.mark.shared
def test_facts_hold_the_reference_table_cell_by_cell(reference_page):
    assert reference_rows() == parse_reference_table(reference_page)


def test_seed_page_parser_handles_run_together_codes():
    page = (
        "Here is a list of possible codes grouped by command\n"
        "HELO\n  \u2022 250 Okay\n  \u2022 RCPT\n"
        "250 Fine 251 User not local; will forward to <x> 503 Bad [rfc1846] 421 Bye\n"
        "  \u2022 NOOP\n200 (see rfc876) 250 OK\nfooter Last modified 2019\n"
    )
    assert parse_seed_page(page) == {
        "HELO": [(250, "Okay")],
        "RCPT": [(250, "Fine"), (251, "User not local; will forward to <x>"),
                 (503, "Bad [rfc1846]"), (421, "Bye")],
        "NOOP": [(200, "(see rfc876)"), (250, "OK")],
    }


def test_reference_table_parser_reads_classes_and_absent_cells():
    page = (
        "| command | seed (page order) | RFC 821 §4.3 | RFC 5321 §4.3.2 (literal) | eff |\n"
        "|---|---|---|---|---|\n"
        "| **EHLO** | 250, 550 | — | S: 250<br>E: 504, 550 | 250, 504, 550, 421 |\n"
        "\nafter the table\n"
    )
    assert parse_reference_table(page) == {
        "EHLO": ReferenceRow((250, 550), None, (250, 504, 550), (250, 504, 550, 421)),
    }
