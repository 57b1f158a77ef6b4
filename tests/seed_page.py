"""Reads the seed page itself (shared/seed/...) into {group: [(code, text), ...]}.

The page is a wiki export with quirks: early groups are a bare heading followed by bullets,
RCPT appears as a bullet inside MAIL's list, and later groups are a bulleted heading followed
by one line with all the codes run together. This parser handles those, and nothing else.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

SEED_NAME = "000_a047f27bafda0a16.txt"
_START = "grouped by command"
_END = "Last modified"
_BULLET = "\u2022"
# "250 Requested ... 251 User not local ..." -> one entry per code; a code is three digits
# (2-5 first) at the start or after whitespace, followed by a space.
_RUN = re.compile(r"(?:^|(?<=\s))([2-5]\d\d) (.*?)(?=\s+[2-5]\d\d |\Z)")


def shared_dir() -> Path:
    """$SMTP_CONFORMANCE_SHARED, else ../shared beside the checkout (read-only facts)."""
    shared = os.environ.get("SMTP_CONFORMANCE_SHARED")
    return Path(shared) if shared else Path(__file__).resolve().parents[2] / "shared"


def seed_path() -> Path:
    return shared_dir() / "seed" / SEED_NAME


def parse_seed_page(text: str) -> dict[str, list[tuple[int, str]]]:
    groups: dict[str, list[tuple[int, str]]] = {}
    current: str | None = None
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if _START in line) + 1
    for raw in lines[start:]:
        if _END in raw:
            break
        line = raw.strip()
        if not line:
            continue
        is_bullet = line.startswith(_BULLET)
        body = line.lstrip(_BULLET).strip()
        if _RUN.match(body):
            if current is None:
                raise ValueError(f"codes before any group heading: {line!r}")
            entries = [(int(m[1]), m[2].strip()) for m in _RUN.finditer(body)]
            if is_bullet and len(entries) != 1:
                raise ValueError(f"a bullet with several codes: {line!r}")
            groups[current].extend(entries)
        else:
            current = body
            if current in groups:
                raise ValueError(f"group {current!r} appears twice")
            groups[current] = []
    return groups
