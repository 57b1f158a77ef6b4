"""How a run grades its findings: by the rule's level, --smtp-strict, and the baseline.

A finding's key is (check, level, cause, code): its identity, which each check declares
(``Check.identity``). By default the cause is the command group and the code its reply's:
the same deviation, whatever the state. A check about the session or the input names its
cause instead (a close after repeated errors, octets outside US-ASCII, a rule of the reply
syntax), so one behaviour is one finding whichever command carried it. The level is part of
the key, so a MUST finding is never folded into a SHOULD one.
"""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass
from typing import NamedTuple

from conformance.checks import Exchange, Finding, identity_of
from conformance.protocol.levels import Level, Verdict, grade

BaselineKey = tuple[str, str, int]  # (check id, cause, code): what a baseline entry names


class FindingKey(NamedTuple):
    """What makes two findings the same deviation (code 0: no reply came, or none is part of
    the cause)."""

    check: str
    level: str
    cause: str
    code: int

    @property
    def baseline_key(self) -> BaselineKey:
        return (self.check, self.cause, self.code)


def finding_key(finding: Finding, exchange: Exchange) -> FindingKey:
    cause, code = identity_of(finding, exchange)
    return FindingKey(finding.check.id, str(finding.level), cause, code)


@dataclass(frozen=True)
class Policy:
    strict: bool = False  # SHOULD findings fail too
    known: Container[BaselineKey] = frozenset()  # the baseline's accepted deviations
    survey: bool = False  # record every finding and fail none (to write a baseline)

    def verdict_for(self, key: FindingKey) -> Verdict:
        if key.baseline_key in self.known:
            return Verdict.KNOWN
        return grade(Level(key.level), strict=self.strict)

    def verdict(self, finding: Finding, exchange: Exchange) -> Verdict:
        return self.verdict_for(finding_key(finding, exchange))

    def fails(self, verdict: Verdict) -> bool:
        return verdict is Verdict.FAIL and not self.survey
