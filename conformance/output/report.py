"""The run's results for people and machines: the terminal summary, the JSON report and the
state diagram with the run's coverage drawn on it.

All are built from one merged ``RunRecord``; the JSON follows ``report.schema.json``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from conformance import __version__
from conformance.checks.grading import RunVerdict, Verdict
from conformance.engine.record import RunRecord
from conformance.protocol.model import is_positive, to_dot
from conformance.protocol.tables import EXTENSION_GROUPS, GROUPS, SERVICE_NOT_AVAILABLE, Profile
from conformance.protocol.transcript import escape_text
from conformance.protocol.vocabulary import END_OF_DATA

SCHEMA_PATH = Path(__file__).with_name("report.schema.json")
REPORT_FORMAT = 4


@dataclass(frozen=True)
class RunInfo:
    """What the report says about the run itself."""

    target: str
    profile: Profile
    strict: bool
    seed: str
    examples: int
    steps: int
    started: datetime
    finished: datetime
    exit_status: int
    survey: bool = False


def codes_by_group(record: RunRecord) -> dict[str, Counter[int]]:
    """For each command group, how often each reply code was seen (0: no reply)."""
    seen: dict[str, Counter[int]] = defaultdict(Counter)
    for (_state, group, code), count in record.coverage.items():
        seen[group][code] += count
    return seen


def group_coverage(record: RunRecord, profile: Profile) -> dict[str, dict[str, Any]]:
    """Per group: the documented codes, those elicited, and any seen outside the set."""
    seen = codes_by_group(record)
    result = {}
    for group in (*GROUPS, *sorted(set(seen) - set(GROUPS))):
        documented = sorted(profile.documented(group))
        codes = seen.get(group, Counter())
        result[group] = {
            "exchanges": sum(codes.values()),
            "documented": documented,
            "elicited": sorted(c for c in codes if c in documented),
            "undocumented": sorted(c for c in codes if c and c not in documented),
        }
    return result


def document(record: RunRecord, run: RunInfo, baseline: dict[str, Any] | None = None,
             diagram: tuple[Path, Path | None] | None = None) -> dict[str, Any]:
    """The JSON report (see report.schema.json); ``baseline``: known, stale and expired;
    ``diagram``: the DOT file and the SVG file (None without Graphviz)."""
    return {
        "format": REPORT_FORMAT,
        "tool": {"name": "smtp-conformance", "version": __version__},
        "target": run.target,
        "profile": {"name": run.profile.name, "level": str(run.profile.level)},
        "strict": run.strict,
        "hypothesis": {"seed": run.seed, "examples": run.examples, "steps": run.steps},
        "started": run.started.isoformat(timespec="seconds"),
        "finished": run.finished.isoformat(timespec="seconds"),
        "exit_status": run.exit_status,
        "verdict": str(record.outcome(survey=run.survey).verdict),
        "errors": [error.message for error in record.errors],
        "notes": list(record.notes),
        "counts": {v.value: len(record.by_verdict(v)) for v in Verdict},
        "findings": [f.to_json() for f in record.sorted_findings()],
        "baseline": baseline,
        "diagram": None if diagram is None else {
            "dot": str(diagram[0]), "svg": str(diagram[1]) if diagram[1] else None},
        "coverage": {
            "triples": [{"state": s, "group": g, "code": c, "count": n}
                        for (s, g, c), n in sorted(record.coverage.items())],
            "groups": group_coverage(record, run.profile),
        },
        "extensions": extension_coverage(record),
    }


def extension_coverage(record: RunRecord) -> dict[str, Any]:
    """What the server advertised, the extension commands sent (exchanges per state), and
    the batches and TLS upgrades."""
    sent: dict[str, Counter[str]] = defaultdict(Counter)
    for (state, group, _code), count in record.coverage.items():
        if group in EXTENSION_GROUPS:
            sent[group][state] += count
    return {"advertised": dict(sorted(record.advertised.items())),
            "commands": {group: dict(sent[group]) for group in EXTENSION_GROUPS if sent[group]},
            "exercised": dict(sorted(record.exercised.items()))}


def extension_lines(coverage: dict[str, Any]) -> list[str]:
    """The extensions part of the summary: advertised, and what of it was exercised."""
    advertised = " ".join(f"{k} {v}".strip() for k, v in coverage["advertised"].items())
    lines = [f"extensions advertised: {advertised or 'none'}"]
    for group, states in coverage["commands"].items():
        where = ", ".join(f"{state} {n}" for state, n in states.items())
        lines.append(f"  {group:15} {sum(states.values()):5}  sent in: {where}")
    lines += [f"  {what}: {n}" for what, n in coverage["exercised"].items()]
    return lines


def transitions_taken(record: RunRecord) -> dict[tuple[str, str], int]:
    """How often each edge of the model's diagram was taken: (state, group) for a positive
    reply, (state, END_OF_DATA) for any reply to the data, (state, "421") for a 421."""
    taken: Counter[tuple[str, str]] = Counter()
    for (state, group, code), count in record.coverage.items():
        if code == SERVICE_NOT_AVAILABLE:
            taken[(state, str(code))] += count
        elif group == END_OF_DATA or (code and is_positive(group, code)):
            taken[(state, group)] += count
    return dict(taken)


def write_diagram(record: RunRecord, dot_path: Path) -> Path | None:
    """The state diagram with this run's counts on its edges, as DOT; also as SVG (returned)
    when Graphviz's ``dot`` is installed."""
    dot_path.parent.mkdir(parents=True, exist_ok=True)
    dot_text = to_dot(coverage=transitions_taken(record)) + "\n"
    dot_path.write_text(dot_text)
    svg = draw(dot_text)
    if svg is None:
        return None
    svg_path = dot_path.with_suffix(".svg")
    svg_path.write_text(svg)
    return svg_path


def diagram_svg(record: RunRecord) -> str | None:
    """The state diagram with this run's counts on its edges, as SVG (None: no Graphviz)."""
    return draw(to_dot(coverage=transitions_taken(record)) + "\n")


def draw(dot_text: str) -> str | None:
    """``dot_text`` drawn as SVG by Graphviz's ``dot`` (bounded: 30 s); None without it."""
    dot = shutil.which("dot")
    if dot is None:
        return None
    try:
        drawn = subprocess.run([dot, "-Tsvg"], input=dot_text, check=True,
                               capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return drawn.stdout


def write_report(path: Path, report: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")


_MEANING = {RunVerdict.PASS: " (conforms)",
            RunVerdict.INCOMPLETE: " (the run did not finish)",
            RunVerdict.UNREACHABLE: " (no connection could be made: nothing was tested)",
            RunVerdict.SURVEY: " (nothing fails: every finding goes to the baseline written)"}


def summary_lines(record: RunRecord, profile: Profile, *, survey: bool = False) -> list[str]:
    """The terminal summary: verdict, findings per check, codes seen per group. Nothing the
    server sent reaches the terminal raw: control and format characters are escaped."""
    verdict = record.outcome(survey=survey).verdict
    counts = ", ".join(f"{len(record.by_verdict(v))} {v}" for v in Verdict)
    lines = [f"verdict: {verdict}{_MEANING.get(verdict, '')}  ({counts})"]
    lines += [f"  ERROR {error.message}" for error in record.errors]
    lines += [f"  NOTE {note}" for note in record.notes]
    per_check = Counter((f.check, f.verdict) for f in record.findings.values())
    for (check, verdict_name), count in sorted(per_check.items()):
        lines.append(f"  {verdict_name:4} {check}: {count}")
    if table_only := [f for f in record.sorted_findings() if f.table_only]:
        lines.append(f"  of these, outside the {profile.name} table only (RFC 5321 lists the "
                     f"code for the command): " +
                     ", ".join(f"{f.cause} {f.cause_code}" for f in table_only))
    # Failures are shown in full by the failing test; the rest, one line each, here.
    quiet = (Verdict.FAIL, Verdict.KNOWN)
    for finding in [f for f in record.sorted_findings() if f.verdict not in quiet]:
        sent = finding.sent if finding.sent is None or len(finding.sent) <= 60 else \
            f"{finding.sent[:57]}..."
        lines.append(f"  {finding.verdict} [{finding.check}] {finding.complaint} "
                     f"(state {finding.state}, sent {sent})")
    lines += coverage_lines(group_coverage(record, profile))
    lines += extension_lines(extension_coverage(record))
    return [escape_text(line) for line in lines]


def coverage_lines(coverage: dict[str, dict[str, Any]]) -> list[str]:
    """The codes-seen table: the seed's groups under a count of those exercised, then any
    group outside the seed that was exercised, under a heading of its own."""
    outside = [g for g in coverage if g not in GROUPS and coverage[g]["exchanges"]]
    exercised = [g for g in GROUPS if coverage[g]["exchanges"]]
    lines = [f"seed groups exercised: {len(exercised)}/{len(GROUPS)}",
             f"  {'group':15} {'sent':>5}  {'codes seen (*: not documented)':32} "
             "elicited/documented"]
    lines += [_coverage_row(group, coverage[group]) for group in GROUPS]
    if outside:
        lines.append(f"outside the seed table: {len(outside)} exercised")
        lines += [_coverage_row(group, coverage[group]) for group in outside]
    return lines


def _coverage_row(group: str, info: dict[str, Any]) -> str:
    codes = " ".join(sorted(
        [str(c) for c in info["elicited"]] + [f"{c}*" for c in info["undocumented"]]))
    share = f"{len(info['elicited'])}/{len(info['documented'])}"
    return f"  {group:15} {info['exchanges']:5}  {codes or '-':32} {share}"

