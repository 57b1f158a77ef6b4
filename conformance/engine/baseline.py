"""Baselines: deviations a team has accepted, so CI fails only on new findings.

A baseline file is JSON: ``{"format": 1, "entries": [{"check": ..., "command": ..., "code":
..., "reason": ..., "expires": "YYYY-MM-DD" | null}]}``. An entry matches the findings with
the same identity (``FindingKey`` less the level): the check, what the finding is about
(``command``: the command group, or the cause a check about the session or the input names,
such as "after repeated error replies") and the code (0: none); the command ``"*"`` matches
any. So a written baseline has one entry per behaviour. Expired entries match nothing;
entries the run never met are reported as stale, so an exemption cannot outlive the bug it
covers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path
from typing import Any

from conformance.checks.grading import BaselineKey, Verdict
from conformance.engine.record import RunRecord
from conformance.protocol.errors import UsageError

BASELINE_FORMAT = 1
ANY_COMMAND = "*"  # an entry's command that matches every command group
WRITTEN_REASON = "recorded from a run on {day}: say why this deviation is accepted"


@dataclass(frozen=True)
class Entry:
    check: str
    command: str
    code: int
    reason: str
    expires: date | None = None

    @property
    def key(self) -> BaselineKey:
        return (self.check, self.command, self.code)

    def matches(self, key: BaselineKey) -> bool:
        """Whether this entry accepts the finding with ``key`` (its expiry aside)."""
        check, group, code = key
        return (self.check, self.code) == (check, code) and self.command in (ANY_COMMAND, group)

    def expired(self, today: date) -> bool:
        return self.expires is not None and self.expires < today

    def describe(self) -> str:
        until = f", expires {self.expires}" if self.expires else ""
        command = "any command" if self.command == ANY_COMMAND else self.command
        return f"[{self.check}] {command} {self.code or 'no reply'} ({self.reason}{until})"

    def to_json(self) -> dict[str, Any]:
        return {"check": self.check, "command": self.command, "code": self.code,
                "reason": self.reason,
                "expires": self.expires.isoformat() if self.expires else None}


@dataclass(frozen=True)
class Status:
    """What a baseline did in one run: findings it matched, entries it did not meet."""

    known: int
    stale: list[Entry]  # live entries the run never met
    expired: list[Entry]  # entries past their date, which matched nothing

    def lines(self) -> list[str]:
        return [f"baseline: {self.known} known, {len(self.stale)} stale, "
                f"{len(self.expired)} expired",
                *(f"  stale (not seen in this run): {e.describe()}" for e in self.stale),
                *(f"  expired (no longer accepted): {e.describe()}" for e in self.expired)]

    def to_json(self) -> dict[str, Any]:
        return {"known": self.known, "stale": [e.to_json() for e in self.stale],
                "expired": [e.to_json() for e in self.expired]}


class KnownKeys(frozenset[BaselineKey]):
    """The keys a baseline accepts: ``key in known`` holds for a key listed as it is, or with
    its command as ``"*"``. A frozenset, so it goes wherever a set of keys does."""

    def __contains__(self, key: object) -> bool:
        if super().__contains__(key):
            return True
        if not (isinstance(key, tuple) and len(key) == 3):
            return False
        return super().__contains__((key[0], ANY_COMMAND, key[2]))


@dataclass(frozen=True)
class Baseline:
    entries: tuple[Entry, ...]

    def known(self, today: date) -> KnownKeys:
        """The keys this baseline accepts today (``"*"`` commands match any group)."""
        return KnownKeys(e.key for e in self.entries if not e.expired(today))

    def expired(self, today: date) -> list[Entry]:
        return [e for e in self.entries if e.expired(today)]

    def status(self, record: RunRecord, today: date) -> Status:
        known = record.by_verdict(Verdict.KNOWN)
        seen = {f.key.baseline_key for f in known}
        return Status(len(known),
                      [e for e in self.entries if not e.expired(today) and
                       not any(e.matches(key) for key in seen)],
                      self.expired(today))


def load(path: Path) -> Baseline:
    """Read a baseline file; any problem is a one-line UsageError."""
    try:
        data = json.loads(path.read_text())
    except OSError as error:
        raise UsageError(f"cannot read baseline {path}: {error.strerror}") from None
    except ValueError as error:
        raise UsageError(f"baseline {path} is not JSON: {error}") from None
    if not isinstance(data, dict) or data.get("format") != BASELINE_FORMAT or \
            not isinstance(data.get("entries"), list):
        raise UsageError(f"baseline {path}: expected {{\"format\": {BASELINE_FORMAT}, "
                         f"\"entries\": [...]}}")
    return Baseline(tuple(_entry(path, n, item) for n, item in enumerate(data["entries"], 1)))


def _entry(path: Path, number: int, item: object) -> Entry:
    where = f"baseline {path}, entry {number}"
    if not isinstance(item, dict):
        raise UsageError(f"{where}: expected an object")
    try:
        check, command, code = item["check"], item["command"], item["code"]
        reason, expires = item.get("reason", ""), item.get("expires")
    except KeyError as missing:
        raise UsageError(f"{where}: missing {missing}") from None
    if not (isinstance(check, str) and isinstance(command, str) and isinstance(code, int)
            and isinstance(reason, str) and reason.strip()):
        raise UsageError(f"{where}: check and command are strings, code an integer, and a "
                         f"non-empty reason is required")
    try:
        day = date.fromisoformat(expires) if expires is not None else None
    except (TypeError, ValueError):
        raise UsageError(f"{where}: expires must be YYYY-MM-DD or null") from None
    return Entry(check, command, code, reason, day)


def from_run(record: RunRecord, today: date, previous: Baseline | None = None) -> Baseline:
    """A baseline accepting every FAIL, WARN and KNOWN finding of ``record``, one entry per
    behaviour (its identity); an entry of ``previous`` with the same key, or else one that
    accepted it, keeps its reason and expiry."""
    wanted = {Verdict.FAIL, Verdict.WARN, Verdict.KNOWN}
    behaviours = dict.fromkeys(f.key.baseline_key for f in record.sorted_findings()
                               if f.verdict in wanted)
    old = previous.entries if previous else ()
    reason = WRITTEN_REASON.format(day=today.isoformat())
    entries = []
    for key in behaviours:
        kept = next((e for e in old if e.key == key), None) or \
            next((e for e in old if e.matches(key)), None)
        entries.append(replace(kept, command=key[1]) if kept else Entry(*key, reason))
    return Baseline(tuple(entries))


def write(baseline: Baseline, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"format": BASELINE_FORMAT,
                                "entries": [e.to_json() for e in baseline.entries]},
                               indent=2) + "\n")
