"""How a run grades its findings: by the rule's level, --smtp-strict, and the baseline.

A finding's key is (check, level, command group, reply code): the same deviation, whatever
the state. The level is part of it, so a MUST finding is never folded into a SHOULD one; an
end-of-data probe's ending is part of its group (``Exchange.filed_under``).
"""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass
from typing import NamedTuple

from conformance.checks import Exchange, Finding
from conformance.levels import Level, Verdict, grade

BaselineKey = tuple[str, str, int]  # (check id, group, reply code): what a baseline entry names


class FindingKey(NamedTuple):
    """What makes two findings the same deviation (code 0: no reply came)."""

    check: str
    level: str
    group: str
    code: int

    @property
    def baseline_key(self) -> BaselineKey:
        return (self.check, self.group, self.code)


def finding_key(finding: Finding, exchange: Exchange) -> FindingKey:
    return FindingKey(finding.check.id, str(finding.level), exchange.filed_under,
                      exchange.reply.code if exchange.reply else 0)


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
