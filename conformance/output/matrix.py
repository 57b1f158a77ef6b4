"""A conformance matrix: the suite run against several servers under several profiles.

    python -m conformance matrix --target NAME=HOST:PORT [--target reference=embedded] \\
        [--profile seed --profile rfc5321] [--examples N] [--seed N] --out DIR

Each (server, profile) is one run of the engine (conformance.search.runner, no pytest) in survey
mode (nothing stops at the first failure, every deviation is recorded) with the relay check
(recipients at a domain no server is the destination for, never followed by a message: an
operator's first question is whether the server relays), read as its JSON report. From the
reports it writes ``DIR/matrix.json`` and ``DIR/matrix.md`` (check x server/profile ->
verdict and count) and one transcript per finding under ``DIR/transcripts/``. The Markdown is
rendered from the JSON alone (``render_markdown``), so the two always agree.

A run that produced no verdict is never PASS: UNREACHABLE when its server could not be reached
(nothing tested: a row of its own, no column), ERROR when the run did not finish, left no
readable report, or no command got an SMTP reply; each with its reason, and the exit status
says so (``exit_status``).
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from conformance.checks import CHECKS
from conformance.checks.grading import RunVerdict, Verdict, judge_run, survey_exit_status, worst
from conformance.engine import outcome
from conformance.engine import settings as run_settings
from conformance.engine.address import ServerAddress
from conformance.engine.failures import RunFailed
from conformance.engine.record import RunError, RunRecord
from conformance.engine.settings import DEFAULT_TIMEOUT
from conformance.output import matrix_pages as pages
from conformance.output.matrix_pages import GENERATED
from conformance.output.report import RunInfo, document
from conformance.output.why import WHY
from conformance.protocol.commands import RELAY_DOMAIN
from conformance.protocol.errors import EXIT_UNREACHABLE, SERVER_LOST, UsageError
from conformance.protocol.tables import PROFILES, get_profile
from conformance.protocol.vocabulary import GREETING
from conformance.search import runner
from conformance.testing.reference_server import ReferenceServer

MATRIX_FORMAT = 2  # 2: findings in detail, servers described, the security checks listed
EMBEDDED = "embedded"
# The checks the security page compares: the security family, and the reply's shape (a
# client's octets echoed raw into a reply are how reply lines get injected).
SECURITY_CHECKS = (*(c.id for c in CHECKS.values() if c.run.__module__.endswith(".security")),
                   "reply_well_formed")


@dataclass(frozen=True)
class About:
    """What a matrix publishes about a server beside its runs: its name and version, the
    configuration it ran with (file name -> text) and the settings that change a finding
    ("check_id" or "check_id CAUSE" -> the setting and its effect)."""

    title: str
    version: str
    configuration: Mapping[str, str] = field(default_factory=dict)
    settings: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Target:
    name: str
    server: ServerAddress | None  # None: the embedded reference server
    rcpt_domain: str | None = None  # this server's own local domain, else the matrix's
    about: About | None = None

    @classmethod
    def parse(cls, text: str) -> Target:
        name, sep, where = text.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
            raise UsageError(f"bad --target {text!r}: expected NAME=HOST:PORT or NAME=embedded")
        return cls(name, None if where == EMBEDDED else ServerAddress.parse(where))


@dataclass(frozen=True)
class Run:
    """One run of the suite: its JSON report (None if it wrote none that could be read), and
    why it produced no verdict (``status`` UNREACHABLE or ERROR, and the reason), if so."""

    server: str
    seed: str
    examples: int
    report: dict[str, Any] | None
    status: RunVerdict | None = None
    reason: str | None = None

    @property
    def findings(self) -> list[dict[str, Any]]:
        return self.report["findings"] if self.report else []

    @property
    def verdict(self) -> RunVerdict:
        """The raw verdict, as a run without a baseline would give it: a survey run's report
        says SURVEY (nothing fails), so it is judged again from the findings."""
        if self.status is not None:
            return self.status
        if not self.report:
            return RunVerdict.ERROR
        return judge_run(Verdict(f["verdict"]) for f in self.findings).verdict


def run_one(target: Target, profile: str, *, examples: int, seed: int, timeout: float,
            deliver: bool, rcpt_domain: str | None, work: Path) -> Run:
    """One survey run of the engine, judged by its exit status and its report."""
    settings = run_settings.RunSettings(
        target.server, get_profile(profile), timeout, examples, run_settings.BUDGETS["fast"][1],
        str(examples), deliver=deliver, rcpt_domain=target.rcpt_domain or rcpt_domain,
        seed=str(seed), survey=True, relay_check=True,
        failures_dir=work / f"{target.name}-{profile}")
    record = RunRecord()
    started = datetime.now(UTC)
    said = ""
    with _serving(target.server, settings) as address:
        if gone := outcome.unreachable(address, timeout):
            record.errors.append(RunError(gone, unreachable=True))
        else:
            try:
                runner.run(settings, address, record, work / f"{target.name}-{profile}")
            except RunFailed:
                pass  # a survey fails nothing: what stopped the run is in the record
            except Exception as error:  # a bug of ours: this run has no verdict, the rest go on
                said = f"the run stopped: {type(error).__name__}: {error}"
    name = run_settings.target_name(target.server)
    if said:
        return Run(name, str(seed), examples, None, RunVerdict.ERROR, said)
    status = outcome.exit_status(record, settings.policy)
    data = document(record, RunInfo(name, settings.profile, False, str(seed), examples,
                                    settings.steps, started, datetime.now(UTC), status,
                                    survey=True))
    verdict, reason = judge(status, data, "")
    return Run(name, str(seed), examples, data, verdict, reason)


@contextmanager
def _serving(server: ServerAddress | None, settings: run_settings.RunSettings
             ) -> Iterator[ServerAddress]:
    """The server's address; for the embedded one (None), started for the run."""
    if server is not None:
        yield server
        return
    with ReferenceServer(profile=settings.profile) as embedded:
        yield embedded.address


def read_report(path: Path) -> dict[str, Any] | None:
    """The run's JSON report; None if it is missing or not a report."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    wanted = {"verdict": str, "findings": list, "errors": list, "coverage": dict}
    if not isinstance(data, dict) or not all(isinstance(data.get(k), t)
                                             for k, t in wanted.items()):
        return None
    return data


def judge(returncode: int, report: dict[str, Any] | None, output: str
          ) -> tuple[RunVerdict | None, str | None]:
    """Whether a survey run produced a verdict: (None, None) if its report's verdict stands,
    else (UNREACHABLE or ERROR, the reason in one line). A survey fails nothing, so any exit
    status but 0 means the run itself went wrong."""
    errors = [str(e) for e in report["errors"]] if report else []
    said = errors[0] if errors else _last_words(output)
    replied = report is not None and any(
        t.get("group") != GREETING and t.get("code")
        for t in report["coverage"].get("triples", []))
    if returncode == EXIT_UNREACHABLE:
        if not replied:
            return RunVerdict.UNREACHABLE, said
        return RunVerdict.ERROR, f"{SERVER_LOST}: {said}"
    if report is None:
        return RunVerdict.ERROR, f"no readable report (pytest exited {returncode}): {said}"
    if errors:
        return RunVerdict.ERROR, said
    if returncode != 0:
        return RunVerdict.ERROR, f"pytest exited {returncode}: {said}"
    if not replied:
        return RunVerdict.ERROR, "no command got an SMTP reply: is it an SMTP server?"
    return None, None


def _last_words(output: str) -> str:
    """What the run said last: the plugin's own message if it gave one, else the last line."""
    lines = [line.strip(" !=") for line in output.splitlines() if line.strip(" !=")]
    ours = [line.split("smtp-conformance: ", 1)[1] for line in lines
            if "smtp-conformance: " in line]
    return (ours or lines or ["no output"])[-1]


def build(runs: dict[tuple[str, str], Run], out: Path,
          about: Mapping[str, About] | None = None) -> dict[str, Any]:
    """The matrix from (target, profile) -> run and what is known about each target; writes
    the transcripts and configuration files under ``out``."""
    columns = [{"target": t, "profile": p, "server": run.server, "verdict": str(run.verdict),
                "reason": run.reason,
                "seed": run.report["hypothesis"]["seed"] if run.report else run.seed,
                "examples": run.report["hypothesis"]["examples"] if run.report
                else run.examples}
               for (t, p), run in runs.items()]
    cells = []
    servers = {(target, ""): run.server for (target, _), run in runs.items()}
    for (target, profile), run in runs.items():
        for check in CHECKS:
            findings = [f for f in run.findings if f["check"] == check]
            found = worst(Verdict(f["verdict"]) for f in findings)
            verdict = found or run.status or RunVerdict.PASS
            transcripts = [_write_transcript(out, target, profile, f) for f in findings]
            cells.append({"target": target, "profile": profile, "check": check,
                          "verdict": str(verdict),
                          "count": sum(f["occurrences"] for f in findings),
                          "findings": [f"{_about(f)}: {f['verdict']}" for f in findings],
                          "transcripts": transcripts,
                          "details": [_detail(f, path) for f, path in zip(findings, transcripts,
                                                                           strict=True)]})
    return {"format": MATRIX_FORMAT, "columns": columns, "checks": list(CHECKS),
            "cells": cells,
            "servers": {name: _described(name, (about or {}).get(name) or About(server, ""), out)
                        for (name, _), server in servers.items()},
            "rules": {check: {"citation": CHECKS[check].citation, "why": WHY[check],
                              "level": str(CHECKS[check].level or "the profile's row")}
                      for check in CHECKS},
            "security": list(SECURITY_CHECKS)}


def _detail(finding: dict[str, Any], transcript: str) -> dict[str, Any]:
    """One finding as the server pages show it."""
    cause, code = _identity(finding)
    return {"cause": cause, "code": code, "verdict": finding["verdict"],
            "level": finding["level"], "complaint": finding["complaint"],
            "occurrences": finding["occurrences"], "transcript": transcript}


def _described(target: str, about: About, out: Path) -> dict[str, Any]:
    """What the matrix says of a server: its title, version and settings, and its
    configuration files, written under ``out/config/TARGET/``."""
    files = []
    for name, text in about.configuration.items():
        path = Path("config") / target / name
        (out / path).parent.mkdir(parents=True, exist_ok=True)
        (out / path).write_text(text)
        files.append(path.as_posix())
    return {"title": about.title, "version": about.version, "settings": dict(about.settings),
            "configuration": files}


def exit_status(matrix: dict[str, Any]) -> int:
    """0 if every run produced a verdict, whatever it is (the matrix is a survey);
    EXIT_UNREACHABLE if a server could not be reached; else 1 if a run erred."""
    return survey_exit_status(RunVerdict(column["verdict"]) for column in matrix["columns"])


def _identity(finding: dict[str, Any]) -> tuple[str, int]:
    """A report finding's cause and code (a format 1 report has neither: its group and
    reply code)."""
    return (finding.get("cause", finding["group"]),
            finding.get("cause_code", finding["reply_code"] or 0))


def _about(finding: dict[str, Any]) -> str:
    cause, code = _identity(finding)
    return f"{cause} {code}" if code else cause


def _write_transcript(out: Path, target: str, profile: str, finding: dict[str, Any]) -> str:
    cause, code = _identity(finding)  # one file per finding: its identity names it
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{target}-{profile}-{finding['check']}-"
                                           f"{finding['level']}-{cause}-{code}")
    path = Path("transcripts") / f"{name}.txt"
    (out / path).parent.mkdir(parents=True, exist_ok=True)
    (out / path).write_text("\n".join([
        f"[{finding['check']}] {finding['verdict']} ({finding['level']}): "
        f"{finding['complaint']}",
        f"state {finding['state']}, sent {finding['sent']}", "", *finding["transcript"], ""]))
    return path.as_posix()


def render_markdown(matrix: dict[str, Any]) -> str:
    """The Markdown table, from the JSON matrix alone. A run that reached no server has no
    column, only its row in the table of runs."""
    runs = matrix["columns"]
    columns = [c for c in runs if c["verdict"] != RunVerdict.UNREACHABLE]
    heads = [f"{c['target']} / {c['profile']}" for c in columns]
    lines = [GENERATED, "", "# Conformance matrix", "",
             "Each column is one run of the suite (survey mode: every deviation recorded; "
             "seed and examples below), with the relay check: recipients at "
             f"`{RELAY_DOMAIN}`, never followed by a message. A cell is the worst verdict "
             "of that check, with the number of findings and links to their transcripts.", ""]
    if columns:
        lines += ["| check | " + " | ".join(heads) + " |",
                  "|---|" + "---|" * len(columns)]
    else:
        lines.append("No server could be reached: nothing was tested.")
    by_key = {(c["target"], c["profile"], c["check"]): c for c in matrix["cells"]}
    for check in matrix["checks"] if columns else []:
        row = []
        for column in columns:
            cell = by_key[(column["target"], column["profile"], check)]
            if not cell["findings"]:
                row.append(cell["verdict"])
                continue
            links = " ".join(f"[{n}]({path})" for n, path in
                             enumerate(cell["transcripts"], 1))
            row.append(f"{cell['verdict']} x{cell['count']} {links}")
        lines.append(f"| `{check}` | " + " | ".join(row) + " |")
    lines += pages.servers_table(matrix)
    lines += ["", "| run | server | verdict | seed | examples |", "|---|---|---|---|---|"]
    for c in runs:
        verdict = c["verdict"] if not c.get("reason") else \
            f"{c['verdict']}: {c['reason']}".replace("|", "\\|")
        lines.append(f"| {c['target']} / {c['profile']} | {c['server']} | {verdict} | "
                     f"{c['seed']} | {c['examples']} |")
    return "\n".join(lines) + "\n"


def make(targets: list[Target], profiles: list[str], out: Path, *, examples: int, seed: int,
         timeout: float = DEFAULT_TIMEOUT, deliver: bool = False, rcpt_domain: str | None = None
         ) -> dict[str, Any]:
    for profile in profiles:
        if profile not in PROFILES:
            raise UsageError(f"unknown profile {profile!r}; known: {', '.join(PROFILES)}")
    out.mkdir(parents=True, exist_ok=True)
    for old in ("transcripts", "config", "servers"):  # only this run's files
        shutil.rmtree(out / old, ignore_errors=True)
    with tempfile.TemporaryDirectory(prefix="smtp-matrix-") as work:
        runs = {(t.name, p): run_one(t, p, examples=examples, seed=seed, timeout=timeout,
                                     deliver=deliver, rcpt_domain=rcpt_domain, work=Path(work))
                for t in targets for p in profiles}
    matrix = build(runs, out, {t.name: t.about for t in targets if t.about is not None})
    (out / "matrix.json").write_text(json.dumps(matrix, indent=2) + "\n")
    (out / "matrix.md").write_text(render_markdown(matrix))
    for path, text in pages.render_pages(matrix).items():
        (out / path).parent.mkdir(parents=True, exist_ok=True)
        (out / path).write_text(text)
    return matrix
