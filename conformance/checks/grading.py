"""How a run grades its findings, and what they come to: the one place that decides.

A finding's verdict comes from the rule's level, --smtp-strict and the baseline (``Policy``);
the verdicts are ordered worst first (``Verdict``, ``worst``); a run's verdict and its exit
status follow from its findings' verdicts and how it ended (``judge_run``).

A finding's key is (check, level, cause, code): its identity, which each check declares
(``Check.identity``). By default the cause is the command group and the code its reply's:
the same deviation, whatever the state. A check about the session or the input names its
cause instead (a close after repeated errors, octets outside US-ASCII, a rule of the reply
syntax), so one behaviour is one finding whichever command carried it. The level is part of
the key, so a MUST finding is never folded into a SHOULD one.
"""

from __future__ import annotations

import enum
from collections.abc import Container, Iterable
from dataclasses import dataclass
from typing import NamedTuple

from conformance.checks import Exchange, Finding, identity_of
from conformance.protocol.errors import EXIT_UNREACHABLE
from conformance.protocol.levels import Level


class Verdict(enum.StrEnum):
    """What a finding means for the run. The order of the members is the one order of
    severity, worst first: the first three decide a run's verdict, the last two never do."""

    FAIL = "FAIL"  # fails the run
    WARN = "WARN"  # reported; fails the run only with --smtp-strict
    INCONCLUSIVE = "INCONCLUSIVE"  # seen once, not when the same session was replayed
    KNOWN = "KNOWN"  # listed in the baseline: reported, never fails
    INFO = "INFO"  # reported

    @property
    def rank(self) -> int:
        """0 for the worst verdict, counting up."""
        return _RANKS[self]


_RANKS = {verdict: rank for rank, verdict in enumerate(Verdict)}
DECIDING = (Verdict.FAIL, Verdict.WARN, Verdict.INCONCLUSIVE)  # what can make a run not PASS


def worst(verdicts: Iterable[Verdict]) -> Verdict | None:
    """The worst of ``verdicts``; None if there are none."""
    return min(verdicts, key=lambda verdict: verdict.rank, default=None)


def grade(level: Level, *, strict: bool = False) -> Verdict:
    """MUST fails; SHOULD warns (fails when strict); INFO informs."""
    if level is Level.MUST or (strict and level is Level.SHOULD):
        return Verdict.FAIL
    return Verdict.WARN if level is Level.SHOULD else Verdict.INFO


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


class RunVerdict(enum.StrEnum):
    """What a whole run comes to: the worst deciding verdict of its findings, PASS, or why it
    has none of those."""

    PASS = "PASS"  # nothing failed, warned or stayed inconclusive: the server conforms
    FAIL = "FAIL"
    WARN = "WARN"
    INCONCLUSIVE = "INCONCLUSIVE"
    SURVEY = "SURVEY"  # nothing fails by design: every finding goes to the baseline written
    INCOMPLETE = "INCOMPLETE"  # the run did not finish, whatever it found before
    UNREACHABLE = "UNREACHABLE"  # no connection could be made: nothing was tested
    ERROR = "ERROR"  # a run of the matrix that left no report to judge, or got no SMTP reply

    @property
    def decided(self) -> bool:
        """Whether the run produced a verdict on the server at all."""
        return self not in (RunVerdict.INCOMPLETE, RunVerdict.UNREACHABLE, RunVerdict.ERROR)


class RunOutcome(NamedTuple):
    verdict: RunVerdict
    exit_status: int  # 0, 1 (a failing finding, or no verdict), or EXIT_UNREACHABLE


def judge_run(verdicts: Iterable[Verdict], *, survey: bool = False, stopped: bool = False,
              lost: bool = False, tested: bool = True) -> RunOutcome:
    """A run's verdict and exit status from its findings' verdicts and how it ended.

    ``stopped``: it did not finish (INCOMPLETE, exit 1); ``lost``: because the server could
    not be reached (exit EXIT_UNREACHABLE), before anything was tested (``tested`` False:
    UNREACHABLE). Else, in a survey, SURVEY (exit 0); else the worst deciding verdict (exit 1
    if it is FAIL), or PASS.
    """
    if lost:
        return RunOutcome(RunVerdict.INCOMPLETE if tested else RunVerdict.UNREACHABLE,
                          EXIT_UNREACHABLE)
    if stopped:
        return RunOutcome(RunVerdict.INCOMPLETE, 1)
    if survey:
        return RunOutcome(RunVerdict.SURVEY, 0)
    found = worst(v for v in verdicts if v in DECIDING)
    verdict = RunVerdict.PASS if found is None else RunVerdict(found.value)
    return RunOutcome(verdict, 1 if verdict is RunVerdict.FAIL else 0)


def survey_exit_status(verdicts: Iterable[RunVerdict]) -> int:
    """The exit status of several runs taken as a survey (the matrix): no finding fails it,
    only a run without a verdict does (EXIT_UNREACHABLE if its server could not be reached)."""
    undecided = {verdict for verdict in verdicts if not verdict.decided}
    if RunVerdict.UNREACHABLE in undecided:
        return EXIT_UNREACHABLE
    return 1 if undecided else 0
