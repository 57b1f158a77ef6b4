"""The run as one self-contained HTML page (``--smtp-html``), made from the JSON report's
document: the verdict, the findings by check with their transcripts and replay commands,
the codes seen per command, and the session diagram. Pure: a document in, a page out; no
script, no stylesheet or font from anywhere else, so the page opens offline.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from html import escape
from typing import Any

from conformance.checks.grading import Verdict
from conformance.engine import replay
from conformance.engine.settings import EMBEDDED

# The page's look, inline. The verdict colours follow the terminal's: red fails, amber warns.
_STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 0 auto; max-width: 72rem;
       padding: 0 1.5rem 3rem; color: #1d2330; }
header { padding: 1.2rem 1.5rem; margin: 1rem 0; border-radius: 6px; color: #fff; }
header h1 { margin: 0; font-size: 2rem; }
header p { margin: .3rem 0 0; }
.v-PASS, .v-SURVEY, .v-KNOWN, .v-INFO { background: #2e7d32; }
.v-FAIL, .v-ERROR { background: #c62828; }
.v-WARN, .v-INCONCLUSIVE { background: #b26a00; }
.v-INCOMPLETE, .v-UNREACHABLE { background: #555d6b; }
table { border-collapse: collapse; margin: .5rem 0 1rem; }
th, td { border: 1px solid #d5d9e0; padding: .25rem .6rem; text-align: left;
         vertical-align: top; }
th { background: #f1f3f6; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
.badge { display: inline-block; padding: 0 .45rem; border-radius: 4px; color: #fff;
         font-size: .8rem; font-weight: 600; }
article.check { border-left: 4px solid #d5d9e0; padding-left: 1rem; margin: 1.2rem 0; }
details.finding { margin: .6rem 0; }
details.finding summary { cursor: pointer; font-weight: 600; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: .1rem 1rem; }
dt { color: #5b6372; }
dd { margin: 0; }
pre { background: #f6f7f9; border: 1px solid #e2e5ea; padding: .6rem; overflow-x: auto;
      font-size: .85rem; }
.undocumented { color: #c62828; font-weight: 600; }
#diagram svg { max-width: 100%; height: auto; }
"""


def render(report: Mapping[str, Any], svg: str | None = None) -> str:
    """The page for ``report`` (a document of report.schema.json); ``svg``: the session
    diagram drawn by Graphviz, else the page shows the diagram's DOT source."""
    verdict = str(report["verdict"])
    title = f"smtp-conformance: {verdict} for {report['target']}"
    parts = [
        "<!doctype html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        f"<title>{escape(title)}</title>", f"<style>{_STYLE}</style>", "</head>", "<body>",
        _header(report), _counts(report["counts"]), _errors(report),
        _runs(report.get("runs", [])), _findings(report), _coverage(report["coverage"]),
        _diagram(svg),
        f"<footer><p>{escape(report['tool']['name'])} {escape(report['tool']['version'])}"
        f"; report format {report['format']}</p></footer>",
        "</body>", "</html>",
    ]
    return "\n".join(part for part in parts if part) + "\n"


def _header(report: Mapping[str, Any]) -> str:
    verdict = str(report["verdict"])
    seed = report["hypothesis"]["seed"]
    return (f'<header class="v-{escape(verdict)}"><h1 id="verdict">{escape(verdict)}</h1>'
            f"<p>{escape(str(report['target']))}: profile {escape(report['profile']['name'])}"
            f" ({escape(report['profile']['level'])}){'; strict' if report['strict'] else ''}"
            f"; hypothesis-seed {escape(str(seed))}; exit status {report['exit_status']}</p>"
            f"<p>{escape(report['started'])} to {escape(report['finished'])}</p></header>")


def _badge(verdict: str) -> str:
    return f'<span class="badge v-{escape(verdict)}">{escape(verdict)}</span>'


def _counts(counts: Mapping[str, int]) -> str:
    cells = "".join(f"<th>{_badge(v.value)}</th>" for v in Verdict)
    numbers = "".join(f'<td class="n">{counts.get(v.value, 0)}</td>' for v in Verdict)
    return (f'<section id="counts"><h2>Findings by verdict</h2><table><tr>{cells}</tr>'
            f"<tr>{numbers}</tr></table></section>")


def _errors(report: Mapping[str, Any]) -> str:
    """Why the run stopped (its verdict is then INCOMPLETE or UNREACHABLE), and its notes."""
    sections = []
    for name, title, lines in (("errors", "Why the run stopped", report["errors"]),
                               ("notes", "Notes", report["notes"])):
        if lines:
            items = "".join(f"<li>{escape(line)}</li>" for line in lines)
            sections.append(f'<section id="{name}"><h2>{title}</h2><ul>{items}</ul></section>')
    return "".join(sections)


def _runs(runs: Iterable[Mapping[str, Any]]) -> str:
    rows = "".join(
        f"<tr><td>{escape(str(run['target']))}</td><td>{_badge(str(run['verdict']))}</td>"
        f'<td class="n">{run["exit_status"]}</td>'
        f'<td class="n">{len(run["findings"])}</td></tr>' for run in runs)
    if not rows:
        return ""
    return ('<section id="runs"><h2>Runs</h2><table><tr><th>Server</th><th>Verdict</th>'
            f"<th>Exit status</th><th>Findings</th></tr>{rows}</table></section>")


def replay_command(finding: Mapping[str, Any], target: str) -> str | None:
    """The command that sends the finding's saved session again (None: none was saved)."""
    if not finding.get("replay"):
        return None
    return replay.command_line(finding["replay"], "HOST:PORT" if target == EMBEDDED else target)


def _findings(report: Mapping[str, Any]) -> str:
    if not report["findings"]:
        return '<section id="findings"><h2>Findings</h2><p>None.</p></section>'
    by_check: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for finding in report["findings"]:  # worst first: so are the checks, by their first
        by_check[finding["check"]].append(finding)
    articles = [
        f'<article class="check" id="check-{escape(check)}"><h3>{escape(check)}</h3>'
        f"<p>{escape(findings[0]['citation'])}</p>"
        + "".join(_finding(f, str(report["target"])) for f in findings) + "</article>"
        for check, findings in by_check.items()]
    return '<section id="findings"><h2>Findings</h2>' + "".join(articles) + "</section>"


def _finding(finding: Mapping[str, Any], target: str) -> str:
    f = finding
    if f["reply_code"] is not None:
        received = " / ".join(f"{f['reply_code']} {line}".rstrip() for line in
                              f["reply_lines"] or [""])
    else:
        received = f"(no reply: {f['error']})" if f["error"] else "(no reply)"
    fields = [("Cause", f"{f['cause']} {f['cause_code'] or ''}".rstrip()),
              ("State", f["state"]), ("Sent", f["sent"] or "(connection opened)"),
              ("Received", received), ("Documented", ", ".join(map(str, f["documented"]))),
              ("Seen", f"{f['occurrences']} time(s): " +
               ", ".join(f"{where} ({n})" for where, n in f["seen"].items())),
              ("Found by", f.get("phase") or "the search")]
    if f["minimised_from"]:
        fields.append(("Shortened", f"from {f['minimised_from']} steps"))
    if f["intermittent"]:
        fields.append(("Intermittent", "a replay of the same session was answered otherwise"))
    fields += [("Also", also) for also in f["also"]]
    rows = "".join(f"<dt>{escape(name)}</dt><dd>{escape(str(value))}</dd>"
                   for name, value in fields)
    replay = replay_command(f, target)
    return (f'<details class="finding" open><summary>{_badge(f["verdict"])} '
            f"[{escape(f['check'])}] {escape(f['level'])}: {escape(f['complaint'])}</summary>"
            f"<dl>{rows}</dl><h4>Transcript</h4>"
            f'<pre class="transcript">{escape(chr(10).join(f["transcript"]))}</pre>'
            + (f'<h4>Replay</h4><pre class="replay">{escape(replay)}</pre>' if replay else "")
            + "</details>")


def _coverage(coverage: Mapping[str, Any]) -> str:
    rows = []
    for group, info in coverage["groups"].items():
        undocumented = ", ".join(map(str, info["undocumented"]))
        rows.append(
            f"<tr><td>{escape(group)}</td><td class=\"n\">{info['exchanges']}</td>"
            f"<td>{escape(', '.join(map(str, info['elicited'])))}</td>"
            f'<td class="undocumented">{escape(undocumented)}</td>'
            f"<td>{escape(', '.join(map(str, info['documented'])))}</td></tr>")
    return ('<section id="coverage"><h2>Reply codes seen, per command</h2><table><tr>'
            "<th>Command</th><th>Exchanges</th><th>Documented codes seen</th>"
            "<th>Undocumented codes seen</th><th>Documented</th></tr>"
            + "".join(rows) + "</table></section>")


def _diagram(svg: str | None) -> str:
    """The model's states, each edge labelled with how often the run took it."""
    if svg is None:
        drawing = "<p>No drawing: Graphviz's <code>dot</code> was not found.</p>"
    else:
        drawing = svg[svg.find("<svg"):]  # past the XML declaration and the DOCTYPE
    return f'<section id="diagram"><h2>Session diagram</h2>{drawing}</section>'
