"""Requirement levels (RFC 2119) shared by the tables, the reply parser and the checks.

A finding is graded by the strength of the rule it breaks, so every rule carries one of these.
"""

from __future__ import annotations

import enum


class Level(enum.Enum):
    """How strongly a rule binds a server (RFC 2119 keywords)."""

    MUST = "MUST"
    SHOULD = "SHOULD"
    INFO = "INFO"

    def __str__(self) -> str:
        return self.value
