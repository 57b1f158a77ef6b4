"""How the findings that fail a run read in a report, and the exception that carries them.

The run records findings and goes on; at its end, the failing ones (each with its shortest
session) are raised together as one ``RunFailed``, rendered without a traceback.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from conformance.engine.record import FindingRecord
from conformance.protocol.model import State
from conformance.protocol.transcript import escape_reply_text


def render(finding: FindingRecord) -> str:
    """One finding as a server author reads it: the rule, the exchange, the session."""
    f = finding
    sent = "(connection opened)" if f.sent is None else f.sent
    if f.reply_code is not None:
        received = " / ".join(escape_reply_text(f"{f.reply_code} {line}".rstrip())
                              for line in f.reply_lines or [""])
    else:
        received = f"(no reply: {f.error})" if f.error else "(no reply)"
    documented = ", ".join(str(c) for c in f.documented)
    seen = f"{f.occurrences} time(s) in this run: {f.where}"
    if f.intermittent:
        seen += "; a replay of the same session was answered differently (intermittent)"
    shortened = "" if f.minimised_from is None else \
        f", shortest found: {len(f.steps)} of {f.minimised_from} steps"
    return "\n".join([
        f"[{f.check}] {f.level}: {f.complaint}",
        f"  Check:      {f.check} ({f.citation})",
        f"  Profile:    {f.profile}",
        f"  State:      {f.state} ({State[f.state].value})",
        f"  Sent:       {sent}",
        f"  Received:   {received}",
        f"  Documented: {documented}  (group {f.group!r})",
        *([f"  About:      {f.cause}"] if f.cause != f.group else []),
        *([f"  Triage:     {f.rfc5321}: outside the {f.profile} table only"]
          if f.rfc5321 else []),
        *(f"  Also:       {also}" for also in f.also),
        f"  Seen:       {seen}",
        *([f"  Found by:   the {f.phase} phase"] if f.phase else []),
        f"  Transcript{shortened}:",
        *(f"    {line}" for line in f.transcript),
    ])


class RunFailed(AssertionError):
    """The run found deviations that fail it, each with its own shortest session, or it
    could not finish (``errors``: one line each)."""

    def __init__(self, findings: Sequence[FindingRecord], footers: Sequence[str] = (),
                 errors: Sequence[str] = ()) -> None:
        self.findings = tuple(findings)
        self.footers = tuple(footers)
        self.errors = tuple(errors)
        super().__init__(self.text())

    def text(self) -> str:
        parts = [render(f) + (f"\n{self.footers[n]}" if n < len(self.footers) else "")
                 for n, f in enumerate(self.findings)]
        if len(parts) > 1:
            parts = [f"--- failure {n} of {len(parts)} ---\n{part}"
                     for n, part in enumerate(parts, 1)]
        return "\n\n".join([*(f"smtp-conformance: {error}" for error in self.errors), *parts])

    def headline(self) -> str:
        if not self.findings:
            return f"smtp-conformance: {self.errors[0]}"
        first = self.findings[0]
        more = f" (and {len(self.findings) - 1} more)" if len(self.findings) > 1 else ""
        return f"[{first.check}] {first.level}: {first.complaint}{more}"


class _Writer(Protocol):
    def line(self, s: str = "") -> None: ...


@dataclass(frozen=True)
class _Crash:
    message: str  # the one line pytest puts in its short summary and JUnit's message


@dataclass(frozen=True)
class FailureText:
    """A pytest ``longrepr`` that shows only what a server author needs: each failing
    finding and its session, with no traceback of our internals."""

    text: str
    reprcrash: _Crash

    def toterminal(self, tw: _Writer) -> None:
        for line in self.text.splitlines():
            tw.line(line)

    def __str__(self) -> str:
        return self.text


def failure_text(failed: RunFailed) -> FailureText:
    """The failure as pytest shows it; with the notes added to it on the way (Hypothesis's
    falsifying example, for a test of one's own under ``@given``)."""
    notes = "\n".join(getattr(failed, "__notes__", ()))
    return FailureText(failed.text() + (f"\n\n{notes}" if notes else ""),
                       _Crash(failed.headline()))
