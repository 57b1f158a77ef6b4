"""Requirement levels (RFC 2119) shared by the tables, the parser and the checks; verdicts.

A finding is graded by the strength of the rule it breaks, so every rule carries one of these.
"""

from __future__ import annotations

import enum


class Level(enum.StrEnum):
    """How strongly a rule binds a server (RFC 2119 keywords)."""

    MUST = "MUST"
    SHOULD = "SHOULD"
    INFO = "INFO"


class Verdict(enum.StrEnum):
    """What a finding means for the run, worst first (the one order of severity)."""

    FAIL = "FAIL"  # fails the run
    WARN = "WARN"  # reported; fails the run only with --smtp-strict
    INFO = "INFO"  # reported
    KNOWN = "KNOWN"  # listed in the baseline: reported, never fails
    INCONCLUSIVE = "INCONCLUSIVE"  # seen once, not when the same session was replayed


def grade(level: Level, *, strict: bool = False) -> Verdict:
    """MUST fails; SHOULD warns (fails when strict); INFO informs."""
    if level is Level.MUST or (strict and level is Level.SHOULD):
        return Verdict.FAIL
    return Verdict.WARN if level is Level.SHOULD else Verdict.INFO
