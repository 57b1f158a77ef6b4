"""The run in Markdown (``--smtp-summary-md``), for a CI job's summary page (GitHub's
``$GITHUB_STEP_SUMMARY``): the verdict, the counts, a table of the findings, and each
finding's transcript and replay command folded under it. Made from the JSON report's
document, as the HTML page is.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from conformance.checks.grading import Verdict
from conformance.output.html import replay_command


def _cell(text: object) -> str:
    """``text`` (the server's words among it) as one table cell: no line breaks, no column
    separators, no markup."""
    return " ".join(str(text).split()).replace("&", "&amp;").replace("<", "&lt;") \
        .replace("|", "\\|")


def _fence(lines: list[str]) -> str:
    """A code fence no line of ``lines`` can close: longer than any run of backticks in them."""
    longest = max((len(run) for line in lines for run in re.findall(r"`+", line)), default=0)
    return "`" * max(3, longest + 1)


def render(report: Mapping[str, Any]) -> str:
    """The summary of ``report`` (a document of report.schema.json)."""
    lines = [f"## smtp-conformance: {report['verdict']}", "",
             f"**{report['target']}**: profile {report['profile']['name']} "
             f"({report['profile']['level']}){', strict' if report['strict'] else ''}, "
             f"hypothesis-seed {report['hypothesis']['seed']}, "
             f"exit status {report['exit_status']}", ""]
    lines += [f"- {line}" for line in [*report["errors"], *report["notes"]]]
    if report["errors"] or report["notes"]:
        lines.append("")
    lines += ["| " + " | ".join(v.value for v in Verdict) + " |",
              "|" + " --- |" * len(Verdict),
              "| " + " | ".join(str(report["counts"].get(v.value, 0)) for v in Verdict) + " |",
              ""]
    for run in report.get("runs", []):
        lines.append(f"- {_cell(run['target'])}: {run['verdict']} "
                     f"(exit status {run['exit_status']}, {len(run['findings'])} findings)")
    if report.get("runs"):
        lines.append("")
    if not report["findings"]:
        return "\n".join([*lines, "No findings.", ""])
    lines += ["| Verdict | Check | Cause | Finding | Seen |", "| --- | --- | --- | --- | --- |"]
    for f in report["findings"]:
        cause = f"{f['cause']} {f['cause_code'] or ''}".rstrip()
        lines.append(f"| {f['verdict']} | `{f['check']}` | {_cell(cause)} | "
                     f"{_cell(f['complaint'])} | {f['occurrences']} |")
    lines.append("")
    for f in report["findings"]:
        replay = replay_command(f, str(report["target"]))
        fence = _fence(f["transcript"])
        lines += [f"<details><summary>{f['verdict']} [{f['check']}]: "
                  f"{_cell(f['complaint'])}</summary>", "",
                  f"{fence}text", *f["transcript"], fence, ""]
        if replay:
            lines += ["Replay:", "", "```console", replay, "```", ""]
        lines += ["</details>", ""]
    return "\n".join(lines)
