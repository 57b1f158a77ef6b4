"""Reads the per-command table of the reference facts (shared/reference/rfc-tables.md §2).

Each row gives one command's codes in four columns: the seed page, RFC 821 §4.3, RFC 5321
§4.3.2 as printed, and RFC 5321 "effective" (printed plus the any-command codes). Cells list
codes in order, optionally split into classes ("S: 250<br>E: 500, 501"); "—" means no row.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from tests.seed_page import shared_dir

REFERENCE_NAME = "rfc-tables.md"
_HEADER = "| command | seed (page order) |"
_CODE = re.compile(r"\b[2-5]\d\d\b")
_ABSENT = "—"


@dataclass(frozen=True)
class ReferenceRow:
    """One command's codes per column, in the order printed; None where the column has none."""

    seed: tuple[int, ...]
    rfc821: tuple[int, ...] | None
    rfc5321_printed: tuple[int, ...] | None
    rfc5321_effective: tuple[int, ...]


def reference_path() -> Path:
    return shared_dir() / "reference" / REFERENCE_NAME


def _codes(cell: str) -> tuple[int, ...] | None:
    cell = cell.strip()
    if cell == _ABSENT:
        return None
    codes = tuple(int(code) for code in _CODE.findall(cell))
    if not codes:
        raise ValueError(f"a cell with no codes: {cell!r}")
    return codes


def parse_reference_table(text: str) -> dict[str, ReferenceRow]:
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(_HEADER))
    rows: dict[str, ReferenceRow] = {}
    for line in lines[start + 2 :]:  # skip the header and its |---| rule
        if not line.startswith("|"):
            break
        command, *cells = (cell.strip() for cell in line.strip().strip("|").split("|"))
        if len(cells) != 4:
            raise ValueError(f"expected 4 code columns: {line!r}")
        seed, rfc821, printed, effective = (_codes(cell) for cell in cells)
        if seed is None or effective is None:
            raise ValueError(f"seed and effective columns always have codes: {line!r}")
        rows[command.strip("*")] = ReferenceRow(seed, rfc821, printed, effective)
    return rows
