"""What a failed check raises, and how a failure reads in a report.

One exception type per check id, so Hypothesis shrinks each kind of failure on its own; the
message names the check, the exchange, the documented set and the transcript.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from hypothesis.errors import FlakyFailure

from conformance.checks import Exchange, Finding
from conformance.commands import Step, describe


class ConformanceFailure(AssertionError):
    """A check failed. One subclass per check id, so Hypothesis shrinks each one separately."""

    check_id = ""

    def __init__(self, findings: Sequence[Finding], exchange: Exchange, transcript: str,
                 steps: Sequence[Step] = ()) -> None:
        self.findings = tuple(findings)  # the worst first; the others follow as "Also:"
        self.steps = tuple(steps)  # what the client sent in this session, to replay it
        self.check = findings[0].check
        self.level = findings[0].level
        self.complaint = findings[0].complaint
        self.exchange = exchange
        self.transcript = transcript
        super().__init__(self.render())

    def render(self) -> str:
        x = self.exchange
        sent = "(connection opened)" if x.sent is None else describe(x.sent)
        received = str(x.reply) if x.reply is not None else f"({type(x.error).__name__})"
        documented = ", ".join(str(c) for c in sorted(x.profile.documented(x.group)))
        return "\n".join([
            f"[{self.check.id}] {self.level}: {self.complaint}",
            f"  Check:      {self.check.id} ({self.check.citation})",
            f"  Profile:    {x.profile.name}",
            f"  State:      {x.before.state.name} ({x.before.state.value})",
            f"  Sent:       {sent}",
            f"  Received:   {received}",
            f"  Documented: {documented}  (group {x.group!r})",
            *(f"  Also:       [{f.check.id}] {f.level}: {f.complaint}" for f in self.findings[1:]),
            "  Transcript:",
            *(f"    {line}" for line in self.transcript.splitlines()),
        ])


_FAILURE_TYPES: dict[str, type[ConformanceFailure]] = {}


def failure_type(check_id: str) -> type[ConformanceFailure]:
    if check_id not in _FAILURE_TYPES:
        name = "".join(part.title() for part in check_id.split("_")) + "Failure"
        _FAILURE_TYPES[check_id] = type(name, (ConformanceFailure,), {"check_id": check_id})
    return _FAILURE_TYPES[check_id]


class _Writer(Protocol):
    def line(self, s: str = "") -> None: ...


@dataclass(frozen=True)
class _Crash:
    message: str  # the one line pytest puts in its short summary and JUnit's message


@dataclass(frozen=True)
class FailureText:
    """A pytest ``longrepr`` that shows only what a server author needs: each failure's
    message and the shrunk session Hypothesis printed, with no traceback of our internals."""

    text: str
    reprcrash: _Crash

    def toterminal(self, tw: _Writer) -> None:
        for line in self.text.splitlines():
            tw.line(line)

    def __str__(self) -> str:
        return self.text


def failure_text(failures: Sequence[ConformanceFailure],
                 footers: Sequence[str] = ()) -> FailureText:
    """The report of one or more check failures, with the notes Hypothesis added to each,
    and each failure's footer (how to replay it), if given."""
    parts = [str(f) + "".join(f"\n{note}" for note in getattr(f, "__notes__", ()))
             + (f"\n{footers[n]}" if n < len(footers) else "")
             for n, f in enumerate(failures)]
    if len(parts) > 1:
        parts = [f"--- failure {n} of {len(parts)} ---\n{part}" for n, part in
                 enumerate(parts, 1)]
    first = failures[0]
    return FailureText("\n\n".join(parts),
                       _Crash(f"[{first.check.id}] {first.level}: {first.complaint}"))


def conformance_failures(error: BaseException) -> list[ConformanceFailure]:
    """The check failures ``error`` consists of; empty if it is (or holds) anything else,
    which is then a bug in the tool, not the server, and keeps its traceback."""
    if isinstance(error, ConformanceFailure):
        return [error]
    if isinstance(error, BaseExceptionGroup):
        found = [conformance_failures(e) for e in error.exceptions]
        if all(found):
            return [f for group in found for f in group]
    return []


def unreproduced_failures(error: BaseException) -> list[ConformanceFailure]:
    """The check failures inside a Hypothesis ``FlakyFailure``: a session that failed once and
    was answered differently when replayed (the server is not deterministic)."""
    if not isinstance(error, FlakyFailure):
        return []
    found: list[ConformanceFailure] = []

    def collect(inner: BaseException) -> None:
        if isinstance(inner, ConformanceFailure):
            found.append(inner)
        elif isinstance(inner, BaseExceptionGroup):
            for each in inner.exceptions:
                collect(each)

    collect(error)
    return found
