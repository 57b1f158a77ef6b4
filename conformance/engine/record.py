"""What a run found and covered, as plain data that travels on pytest reports and into JSON.

Each test item fills a ``RunRecord``; the plugin attaches it to the item's report (so it
crosses from pytest-xdist workers to the controller) and merges all of them into one.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from conformance.checks import (
    AFTER_ERRORS,
    CHECKS,
    THE_SESSION,
    Exchange,
    Finding,
    identity_of,
    rfc5321_lists,
)
from conformance.checks.grading import (
    FindingKey,
    Policy,
    RunOutcome,
    RunVerdict,
    Verdict,
    judge_run,
)
from conformance.protocol.commands import Command, Step, describe, exact_octets
from conformance.protocol.levels import Level

Coverage = Counter[tuple[str, str, int]]  # (state, group, code) -> times seen; code 0: no reply


@dataclass(frozen=True)
class FindingRecord:
    """One finding, with everything a reader needs to act on it."""

    check: str
    level: Level
    verdict: Verdict
    citation: str
    complaint: str
    profile: str
    state: str
    group: str
    sent: str | None  # None for the greeting; octets escaped (``escape_octets``)
    reply_code: int | None  # None when no reply came (timeout, close, framing error)
    reply_lines: list[str]
    error: str | None
    documented: list[int]
    also: list[str]
    transcript: list[str]
    occurrences: int = 1
    replay: str | None = None  # the saved session, for python -m conformance replay
    # The session's steps up to the finding, to replay it (``Step.to_json``).
    steps: list[dict[str, str | bool | int]] = field(default_factory=list)
    minimised_from: int | None = None  # steps before minimisation, when it shortened them
    intermittent: bool = False  # seen on the wire, not when the session was replayed
    # The finding's identity (``FindingKey``): what it is about, and the code that is part
    # of it (the group and reply code, unless the check names another cause).
    cause: str = ""
    cause_code: int = 0
    # Where the behaviour was seen: "GROUP in STATE" -> times.
    seen: dict[str, int] = field(default_factory=dict)
    sent_hex: str | None = None  # what was sent, exactly (None: the greeting, a message)
    # The unusual input (``Command.unusual_input``) of the commands it was seen on -> times.
    inputs: dict[str, int] = field(default_factory=dict)
    # Where the profile's table is narrower than RFC 5321's and RFC 5321 lists the code for
    # the command: the line that says so (``rfc5321_lists``). Such a finding is a deviation
    # from that table only, and is listed after the RFC-level ones.
    rfc5321: str | None = None
    # Which phase of the run first found it (``PHASES``): what a gate can rely on is the
    # systematic one's, the same on every seed.
    phase: str = ""

    def __post_init__(self) -> None:
        # Given as their names (from JSON, say), the level and the verdict are the enums.
        object.__setattr__(self, "level", Level(self.level))
        object.__setattr__(self, "verdict", Verdict(self.verdict))
        if not self.cause:  # a record written before causes were recorded
            object.__setattr__(self, "cause", self.group)
            object.__setattr__(self, "cause_code", self.reply_code or 0)
        if not self.seen:
            object.__setattr__(self, "seen", {f"{self.group} in {self.state}":
                                              self.occurrences})

    @classmethod
    def of(cls, findings: Sequence[Finding], exchange: Exchange, transcript: str,
           verdict: Verdict, steps: Sequence[Step] = ()) -> FindingRecord:
        """The record of ``findings[0]``; the others on the same exchange go under ``also``
        (with the general complaints it took over)."""
        first, x = findings[0], exchange
        cause, cause_code = identity_of(first, x)
        others = [*first.also, *findings[1:]]
        return cls(
            check=first.check.id, level=first.level, verdict=verdict,
            citation=first.check.citation, complaint=first.complaint, profile=x.profile.name,
            state=x.before.state.name, group=x.filed_under,
            sent=None if x.sent is None else describe(x.sent),
            sent_hex=None if x.sent is None else exact_octets(x.sent),
            reply_code=x.reply.code if x.reply else None,
            reply_lines=list(x.reply.lines) if x.reply else [],
            error=str(x.error) if x.error else None,
            documented=sorted(x.profile.documented(x.judged_as)),
            also=[f"[{f.check.id}] {f.level}: {f.complaint}" for f in others],
            transcript=transcript.splitlines(),
            steps=[step.to_json() for step in steps],
            cause=cause, cause_code=cause_code,
            seen={f"{x.filed_under} in {x.before.state.name}": 1},
            inputs={unusual: 1} if isinstance(x.sent, Command) and
            (unusual := x.sent.unusual_input) else {},
            rfc5321=rfc5321_lists(x) if first.check.general else None,
        )

    @property
    def table_only(self) -> bool:
        """A deviation from the profile's table that RFC 5321 allows (see ``rfc5321``)."""
        return self.rfc5321 is not None

    @property
    def key(self) -> FindingKey:
        return FindingKey(self.check, self.level, self.cause, self.cause_code)

    @property
    def where(self) -> str:
        """Where it was seen, most often first: "MAIL in READY (3), NOOP in MAIL (1)"."""
        ranked = sorted(self.seen.items(), key=lambda item: (-item[1], item[0]))
        return ", ".join(f"{place} ({times})" for place, times in ranked)

    @property
    def session(self) -> tuple[Step, ...]:
        """The steps, as the client sent them."""
        return tuple(Step.from_json(s) for s in self.steps)

    @property
    def timing(self) -> bool:
        """Timing evidence (see ``Check.timing``)."""
        registered = CHECKS.get(self.check)
        return registered is not None and registered.timing

    def to_json(self) -> dict[str, Any]:
        """Plain JSON types only (it crosses to the xdist controller)."""
        return {**asdict(self), "level": str(self.level), "verdict": str(self.verdict)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FindingRecord:
        return cls(**data)


# The phases of a run, in order (``FindingRecord.phase``).
EXAMPLE_DB, SYSTEMATIC, EXPLORATION = "example database", "systematic", "exploration"
PHASES = (EXAMPLE_DB, SYSTEMATIC, EXPLORATION)


@dataclass(frozen=True)
class RunError:
    """Why a run did not finish: the server went away (``unreachable``), or it answered the
    same session differently on replay, or the suite itself failed."""

    message: str
    unreachable: bool = False


@dataclass
class RunRecord:
    """Findings (one per key, the shortest transcript kept), coverage, anything that stopped
    the run before it finished, and remarks on how the run adapted (``notes``)."""

    findings: dict[FindingKey, FindingRecord] = field(default_factory=dict)
    coverage: Coverage = field(default_factory=Counter)
    errors: list[RunError] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    refuted: set[tuple[str, str]] = field(default_factory=set)  # (per-run check, group)
    # The extensions the server advertised (keyword -> its parameters, as last seen), and
    # how often the run exercised what is not a command of its own: batches, TLS upgrades.
    advertised: dict[str, str] = field(default_factory=dict)
    exercised: Counter[str] = field(default_factory=Counter)

    def answered(self) -> set[str]:
        """The command groups that had a reply at least once in the run."""
        return {group for (_, group, code) in self.coverage if code}

    def coverage_of(self, group: str) -> int:
        """Exchanges of ``group`` in the run (of the greeting: sessions opened)."""
        return sum(n for (_, g, _), n in self.coverage.items() if g == group)

    def remark(self, note: str) -> None:
        if note not in self.notes:
            self.notes.append(note)

    def stamp(self, phase: str) -> None:
        """Say of each finding no phase has claimed yet that ``phase`` found it."""
        for key, found in self.findings.items():
            if not found.phase:
                self.findings[key] = replace(found, phase=phase)

    def settle(self) -> None:
        """What a finished run reports: one finding per behaviour where exchanges could not
        tell causes apart (``consolidate``), and no per-run finding the run refuted or
        explained (``drop_refuted``)."""
        self.consolidate()
        self.drop_refuted()

    def drop_refuted(self) -> None:
        """Per-run findings stand only if no exchange of the run refuted them, and no finding
        of a check that explains their symptom was found (``Check.explained_by``)."""
        found = {k.check for k in self.findings}
        for key in list(self.findings):
            registered = CHECKS.get(key.check)
            explained = registered is not None and not found.isdisjoint(registered.explained_by)
            if (key.check, key.cause) in self.refuted or explained:
                del self.findings[key]

    def note(self, record: FindingRecord) -> None:
        known = self.findings.get(record.key)
        if known is None:
            self.findings[record.key] = record
            return
        shorter = record if len(record.transcript) < len(known.transcript) else known
        self.findings[record.key] = replace(
            shorter, occurrences=known.occurrences + record.occurrences,
            seen=_added(known.seen, record.seen), inputs=_added(known.inputs, record.inputs),
            phase=known.phase or record.phase)  # the phase that found it first

    def consolidate(self) -> None:
        """One finding per behaviour where one exchange could not tell two causes apart:

        - a server that closes after its reply to an overlong line is also seen closing "after
          repeated errors" when that line came after two errors: where every such close
          followed one unusual input and the run has a finding for that input, they are one;
        - a server that closes on every HELP is also seen closing on a HELP with 8-bit octets:
          a finding seen on one command only, where the run has the same check's finding for
          that command, is that finding;
        - commands that went unanswered although each was answered in time elsewhere in the
          run: the server stopped answering partway through its sessions (a tarpit), one
          finding whichever commands it stopped at.
        """
        for key in [k for k in self.findings if k.cause == AFTER_ERRORS]:
            record = self.findings[key]
            if len(record.inputs) == 1 and sum(record.inputs.values()) == record.occurrences:
                (cause,) = record.inputs
                self._fold_into(key, cause)
        for key in list(self.findings):
            groups = {place.split(" in ")[0] for place in self.findings[key].seen}
            if len(groups) == 1 and key.cause not in groups:
                self._fold_into(key, groups.pop(), code=key.code)
        answered = self.answered()
        hangs = [k for k in self.findings if k.check == "command_answered" and
                 k.cause in answered]
        if len(hangs) > 1:  # one command's may be its own (a TLS handshake that never ends)
            for key in hangs:
                record = self.findings.pop(key)
                self.note(replace(record, cause=THE_SESSION, cause_code=0))

    def _fold_into(self, key: FindingKey, cause: str, *, code: int | None = None) -> None:
        """Make the finding ``key`` part of the same check's finding with ``cause`` (and
        ``code``, if given), if the run has one."""
        same = [k for k in self.findings if k.check == key.check and k.cause == cause and
                code in (None, k.code)]
        if not same:
            return
        record = self.findings.pop(key)
        into = self.findings[same[0]]
        self.findings[same[0]] = replace(
            into, occurrences=into.occurrences + record.occurrences,
            seen=_added(into.seen, record.seen), inputs=_added(into.inputs, record.inputs))

    def withdraw(self, record: FindingRecord) -> None:
        """Take back one noted record (its exchange is judged anew: see
        ``CheckedSession._closed_after``)."""
        known = self.findings.get(record.key)
        if known is None:
            return
        if known.occurrences <= record.occurrences:
            del self.findings[record.key]
            return
        seen = {place: times - record.seen.get(place, 0) for place, times in known.seen.items()}
        self.findings[record.key] = replace(
            known, occurrences=known.occurrences - record.occurrences,
            seen={place: times for place, times in seen.items() if times > 0})

    def merge(self, other: RunRecord) -> None:
        for record in other.findings.values():
            self.note(record)
        self.coverage.update(other.coverage)
        self.errors += [error for error in other.errors if error not in self.errors]
        for note in other.notes:
            self.remark(note)
        self.refuted |= other.refuted
        self.advertised.update(other.advertised)
        self.exercised.update(other.exercised)

    def outcome(self, *, survey: bool = False) -> RunOutcome:
        """The run's verdict and exit status (``grading.judge_run``): a server out of reach
        before the first exchange left nothing tested."""
        return judge_run((f.verdict for f in self.findings.values()), survey=survey,
                         stopped=bool(self.errors),
                         lost=any(error.unreachable for error in self.errors),
                         tested=bool(self.coverage or self.findings))

    def by_verdict(self, verdict: Verdict) -> list[FindingRecord]:
        return [f for f in self.sorted_findings() if f.verdict == verdict]

    def sorted_findings(self) -> list[FindingRecord]:
        """Worst verdict first; within one, the RFC-level deviations before those from the
        profile's table only."""
        return sorted(self.findings.values(),
                      key=lambda f: (f.verdict.rank, f.table_only, f.key))

    def to_json(self) -> dict[str, Any]:
        return {
            "findings": [f.to_json() for f in self.sorted_findings()],
            "coverage": [[s, g, c, n] for (s, g, c), n in sorted(self.coverage.items())],
            "errors": [asdict(error) for error in self.errors],
            "notes": list(self.notes),
            "refuted": sorted([check, group] for check, group in self.refuted),
            "advertised": dict(sorted(self.advertised.items())),
            "exercised": dict(sorted(self.exercised.items())),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunRecord:
        record = cls()
        for finding in data["findings"]:
            record.note(FindingRecord.from_json(finding))
        record.coverage.update({(s, g, c): n for s, g, c, n in data["coverage"]})
        record.errors = [RunError(**error) for error in data["errors"]]
        record.notes = list(data.get("notes", []))
        record.refuted = {(check, group) for check, group in data.get("refuted", [])}
        record.advertised = dict(data.get("advertised", {}))
        record.exercised = Counter(data.get("exercised", {}))
        return record


def _added(counts: dict[str, int], more: dict[str, int]) -> dict[str, int]:
    total = dict(counts)
    for name, times in more.items():
        total[name] = total.get(name, 0) + times
    return total


def records_for(findings: Sequence[Finding], exchange: Exchange, transcript: str,
                policy: Policy, steps: Sequence[Step] = ()) -> list[FindingRecord]:
    """One record per finding, each graded by ``policy``."""
    return [FindingRecord.of([f, *(o for o in findings if o is not f)], exchange, transcript,
                             policy.verdict(f, exchange), steps) for f in findings]



@dataclass
class Runs:
    """The records of one pytest session's runs, one per target, each merged from its tests'
    records (its shards, under pytest-xdist its workers'); ``coverage`` sums them all."""

    by_target: dict[str, RunRecord] = field(default_factory=dict)
    coverage: Coverage = field(default_factory=Counter)

    def add(self, target: str, record: RunRecord) -> None:
        self.by_target.setdefault(target, RunRecord()).merge(record)
        self.coverage.update(record.coverage)

    def ran(self) -> bool:
        """Whether any run recorded anything (else the suite did not run)."""
        return any(r.coverage or r.findings or r.errors for r in self.by_target.values())

    def unreachable_only(self) -> bool:
        """Whether every run ended before its first exchange, its server out of reach."""
        return all(r.outcome().verdict is RunVerdict.UNREACHABLE for r in self.by_target.values())

    def ordered(self, targets: Sequence[str]) -> list[tuple[str, RunRecord]]:
        """The records in the order of ``targets`` (any other after them)."""
        rank = {target: n for n, target in enumerate(targets)}
        return sorted(self.by_target.items(), key=lambda item: rank.get(item[0], len(rank)))

    def combined(self) -> RunRecord:
        record = RunRecord()
        for each in self.by_target.values():
            record.merge(each)
        return record
