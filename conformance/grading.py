"""How a run grades its findings: by the rule's level, --smtp-strict, and the baseline.

A finding's key is (check, command group, reply code): the same deviation, whatever the state.
"""

from __future__ import annotations

from dataclasses import dataclass

from conformance.checks import Exchange, Finding
from conformance.levels import Verdict, grade

FindingKey = tuple[str, str, int]  # (check id, group, reply code; 0 when no reply came)


def finding_key(finding: Finding, exchange: Exchange) -> FindingKey:
    return (finding.check.id, exchange.group, exchange.reply.code if exchange.reply else 0)


@dataclass(frozen=True)
class Policy:
    strict: bool = False  # SHOULD findings fail too
    known: frozenset[FindingKey] = frozenset()  # the baseline's accepted deviations
    survey: bool = False  # record every finding and fail none (to write a baseline)

    def verdict(self, finding: Finding, exchange: Exchange) -> Verdict:
        if finding_key(finding, exchange) in self.known:
            return Verdict.KNOWN
        return grade(finding.level, strict=self.strict)

    def fails(self, verdict: Verdict) -> bool:
        return verdict is Verdict.FAIL and not self.survey
