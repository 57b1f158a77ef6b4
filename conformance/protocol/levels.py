"""Requirement levels (RFC 2119) shared by the tables, the parser and the checks.

A finding is graded by the strength of the rule it breaks, so every rule carries one of these.
"""

from __future__ import annotations

import enum


class Level(enum.StrEnum):
    """How strongly a rule binds a server (RFC 2119 keywords)."""

    MUST = "MUST"
    SHOULD = "SHOULD"
    INFO = "INFO"
