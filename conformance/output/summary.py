"""What a pytest session of runs gives its readers, each output built from the runs' records:
the header line, the terminal summary, the JSON report (and the HTML page and Markdown summary
made from it), JUnit properties, the baseline written.

No pytest here: the plugin's hooks call one function each. With one target the JSON report is
as ``report.schema.json`` always had it; with several, the same document over every run, and
each run's own under ``runs``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from conformance.engine.baseline import Baseline
from conformance.engine.baseline import from_run as from_baseline_run
from conformance.engine.baseline import write as write_baseline
from conformance.engine.failures import RunFailed
from conformance.engine.outcome import exit_status
from conformance.engine.record import RunRecord, Runs
from conformance.engine.settings import RunSettings, target_name
from conformance.output import html, markdown
from conformance.output.report import (
    RunInfo,
    diagram_svg,
    document,
    summary_lines,
    write_diagram,
    write_report,
)
from conformance.protocol.errors import EXIT_UNREACHABLE


class Writer(Protocol):
    """What the summary is written to (pytest's terminal reporter is one)."""

    def write_sep(self, sep: str, title: str) -> None: ...

    def write_line(self, line: str) -> None: ...


@dataclass(frozen=True)
class Finished:
    """What the end of a session decided: its exit status and the baseline it wrote."""

    exit_status: int
    written: Baseline | None = None


def header(suite: RunSettings, *, suite_run: bool = True) -> str:
    """The one line a run starts with: everything that decides what it sends. Without the
    suite's own run (``suite_run``: only tests of the user's own), the examples are each
    test's own; the suite's settings are what ``smtp_config.hypothesis_settings()`` gives, and
    the budget is where a ``smtp_state_machine`` run stops."""
    targets = ", ".join(str(s) for s in suite.servers) or \
        "embedded reference server (aiosmtpd on 127.0.0.1, ephemeral port)"
    shards = f"; {suite.shards} shards per server" if suite.shards > 1 and suite_run else ""
    examples = f"{suite.budget_name} ({suite.examples} x {suite.steps} steps)"
    budget = f"examples {examples}; budget {suite.time_budget:g}s" if suite_run else \
        (f"examples: each test's own (smtp_config.hypothesis_settings(): {examples}; "
         f"a smtp_state_machine run stops at {suite.time_budget:g}s)")
    return (f"smtp-conformance: target {targets}; profile {suite.profile.name} "
            f"({suite.profile.level}); timeout {suite.timeout:g}s; "
            f"{budget}; hypothesis-seed {suite.seed}{shards}"
            f"{'; strict' if suite.strict else ''}{'; fail-fast' if suite.fail_fast else ''}"
            f"{'' if suite.delivers else '; safe mode (messages are not completed)'}"
            f"{'; relay check' if suite.relay_check else ''}"
            f"{f'; at most {suite.rate:g} commands/s' if suite.rate else ''}"
            f"{f'; example database {suite.example_db}' if suite.example_db else ''}")


def junit_properties(failed: RunFailed) -> list[tuple[str, str]]:
    """A failing test's JUnit ``<property>`` elements: the check of each failing finding."""
    return [("smtp_check", finding.check) for finding in failed.findings]


def _names(suite: RunSettings) -> list[str]:
    return [target_name(server) for server in suite.targets]


def write_summary(out: Writer, suite: RunSettings, runs: Runs, finished: Finished | None,
                  *, is_worker: bool = False) -> None:
    """The terminal summary: per run, its verdict, findings and codes seen; then the seed.
    Nothing when no server could be reached at all: pytest's one line exiting the session
    (EXIT_UNREACHABLE) says why, and a table of zeros would say nothing more."""
    if not runs.ran() or runs.unreachable_only():
        return  # the suite did not run
    ordered = runs.ordered(_names(suite))
    for target, record in ordered:
        out.write_sep("=", f"smtp-conformance: {target}, profile {suite.profile.name}"
                      if len(ordered) > 1 else f"smtp-conformance: profile {suite.profile.name}")
        for line in summary_lines(record, suite.profile, survey=_survey(suite)):
            out.write_line(line)
        if suite.baseline is not None:
            for line in suite.baseline.status(record, suite.today).lines():
                out.write_line(line)
    if finished is not None and finished.written is not None:
        out.write_line(f"baseline written: {suite.baseline_write} "
                       f"({len(finished.written.entries)} entries)")
    out.write_line(f"hypothesis-seed: {suite.seed} (rerun: --hypothesis-seed={suite.seed})")
    if suite.report is not None and not is_worker:
        out.write_line(f"report: {suite.report}")


def finish(suite: RunSettings, runs: Runs, started: datetime, status: int) -> Finished:
    """The session's end: its exit status (EXIT_UNREACHABLE when a server could not be
    reached), the baseline written (survey mode) and the JSON report."""
    combined = runs.combined()
    # pytest's status covers every test, a user's own too; a server out of reach outranks it.
    if combined.outcome().exit_status == EXIT_UNREACHABLE:
        status = EXIT_UNREACHABLE
    written = None
    if suite.baseline_write is not None:
        written = from_baseline_run(combined, suite.today, suite.baseline)
        write_baseline(written, suite.baseline_write)
    if suite.report is not None or suite.html is not None or suite.summary_md is not None:
        whole = report(suite, runs, started, datetime.now(UTC), status)
        if suite.report is not None:
            write_report(suite.report, whole)
        if suite.html is not None:
            _write(suite.html, html.render(whole, diagram_svg(runs.combined())))
        if suite.summary_md is not None:
            _write(suite.summary_md, markdown.render(whole))
    return Finished(status, written)


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def report(suite: RunSettings, runs: Runs, started: datetime, finished: datetime,
           status: int) -> dict[str, Any]:
    """The JSON report (report.schema.json): of the one run, or over several with each
    run's own document under ``runs``; the HTML page and the Markdown summary are made
    from it."""
    ordered = runs.ordered(_names(suite)) or [(_names(suite)[0], RunRecord())]
    if len(ordered) == 1:
        [(target, record)] = ordered
        return _document(suite, target, record, started, finished, status, diagram=True)
    combined = runs.combined()
    whole = _document(suite, ", ".join(t for t, _ in ordered), combined, started, finished,
                      status, diagram=True)
    whole["runs"] = [_document(suite, target, record, started, finished,
                               exit_status(record, suite.policy), diagram=False)
                     for target, record in ordered]
    return whole


def _document(suite: RunSettings, target: str, record: RunRecord, started: datetime,
              finished: datetime, status: int, *, diagram: bool) -> dict[str, Any]:
    run = RunInfo(target, suite.profile, suite.strict, suite.seed, suite.examples, suite.steps,
                  started, finished, status, survey=_survey(suite))
    drawn = None
    if diagram and suite.report is not None:  # the diagram's files go beside the report
        dot_path = suite.report.with_suffix(".dot")
        drawn = (dot_path, write_diagram(record, dot_path))
    baseline = suite.baseline.status(record, suite.today).to_json() if suite.baseline else None
    return document(record, run, baseline, drawn)


def _survey(suite: RunSettings) -> bool:
    return suite.survey or suite.baseline_write is not None
