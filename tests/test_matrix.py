"""The conformance matrix: built from real runs, and the committed one is the script's own."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from conformance.checks import CHECKS
from conformance.checks.grading import RunVerdict
from conformance.output.matrix import (
    SECURITY_CHECKS,
    About,
    Run,
    Target,
    build,
    exit_status,
    judge,
    make,
    read_report,
    render_markdown,
)
from conformance.output.matrix_pages import GENERATED, render_pages
from conformance.output.why import WHY
from conformance.protocol.errors import EXIT_UNREACHABLE, UsageError
from tests.fault_server import FaultServer
from tests.scripted_server import ScriptedServer

UNREACHABLE, ERROR = RunVerdict.UNREACHABLE, RunVerdict.ERROR

DOCS = Path(__file__).resolve().parent.parent / "docs" / "matrix"


@pytest.mark.timeout(300)
def test_matrix_shows_each_servers_verdict_per_check(tmp_path):
    with FaultServer("noop_replies_252") as server:
        matrix = make([Target.parse(f"faulty={server.address}"), Target.parse("ref=embedded")],
                      ["seed"], tmp_path, examples=30, seed=0, deliver=True)
    cells = {(c["target"], c["check"]): c for c in matrix["cells"]}
    faulty = cells[("faulty", "reply_code_documented")]
    assert (faulty["verdict"], faulty["findings"]) == ("FAIL", ["NOOP 252: FAIL"])
    assert "252 is not documented for NOOP" in (tmp_path / faulty["transcripts"][0]).read_text()
    assert {c["verdict"] for c in matrix["cells"] if c["target"] == "ref"} == {"PASS"}
    # Each run's own verdict is the raw one (the survey run behind it fails nothing).
    assert {c["target"]: c["verdict"] for c in matrix["columns"]} == {"faulty": "FAIL",
                                                                      "ref": "PASS"}
    written = json.loads((tmp_path / "matrix.json").read_text())
    assert (tmp_path / "matrix.md").read_text() == render_markdown(written)


@pytest.mark.timeout(300)
def test_a_servers_page_explains_each_finding_once_with_its_rule_and_setting(tmp_path):
    about = About("Faulty", "1.0", {"faulty.conf": "noop = 252\n"},
                  {"reply_code_documented NOOP": "noop = 250 answers NOOP as documented"})
    with FaultServer("noop_replies_252") as server:
        make([Target("faulty", server.address, None, about)], ["seed", "rfc821"], tmp_path,
             examples=10, seed=0)
    page = (tmp_path / "server-faulty.md").read_text()
    assert page.startswith(GENERATED)
    assert "\n# Faulty 1.0\n" in page
    assert page.count("### `reply_code_documented`: NOOP 252") == 1  # one entry, two profiles
    assert "- **Verdict**: seed FAIL, rfc821 FAIL" in page
    assert f"- **Why it matters**: {WHY['reply_code_documented']}" in page
    assert "- **Setting that changes it**: noop = 250 answers NOOP as documented" in page
    assert "[seed](transcripts/faulty-seed-reply_code_documented-" in page
    assert (tmp_path / "config" / "faulty" / "faulty.conf").read_text() == "noop = 252\n"
    security = (tmp_path / "security.md").read_text()
    assert "| `data_ends_only_at_crlf_dot_crlf` | PASS |" in security
    assert "[security.md](security.md)" in (tmp_path / "matrix.md").read_text()


def test_every_check_says_why_it_matters_and_the_security_page_has_the_whole_family():
    assert set(WHY) == set(CHECKS)
    family = {c.id for c in CHECKS.values() if c.run.__module__ == "conformance.checks.security"}
    assert family
    assert family <= set(SECURITY_CHECKS)


def test_committed_matrix_is_generated_not_hand_edited():
    matrix = json.loads((DOCS / "matrix.json").read_text())
    text = (DOCS / "matrix.md").read_text()
    assert text.startswith(GENERATED)
    assert text == render_markdown(matrix)
    for path, page in render_pages(matrix).items():
        assert (DOCS / path).read_text() == page, path
    for path in (p for server in matrix["servers"].values() for p in server["configuration"]):
        assert (DOCS / path).is_file()
    for cell in matrix["cells"]:
        for transcript in cell["transcripts"]:
            assert (DOCS / transcript).is_file()
    assert {c["target"] for c in matrix["columns"]} == {"reference", "postfix", "exim",
                                                        "opensmtpd", "sendmail"}
    for name in ("postfix", "exim", "opensmtpd", "sendmail"):
        assert matrix["servers"][name]["version"], name  # each server's version recorded
        assert matrix["servers"][name]["configuration"], name


@pytest.mark.parametrize("text", ["nameless", "bad name=embedded", "x=::1:25"])
def test_bad_target_is_a_usage_error(text):
    with pytest.raises(UsageError):
        Target.parse(text)


# --- a run that produced no verdict is never PASS --------------------------------------------

def free_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        return int(probe.getsockname()[1])


def http_400(conn: socket.socket, stop: threading.Event) -> None:
    conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")


def matrix_cli(out: Path, *targets: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "conformance", "matrix", "--profile=seed", "--examples=5",
            "--timeout=1", f"--out={out}", *(f"--target={t}" for t in targets)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)


@pytest.mark.timeout(300)
def test_unreachable_target_is_a_row_of_its_own_and_exits_6(tmp_path):
    port = free_port()
    done = matrix_cli(tmp_path, f"bad=127.0.0.1:{port}", "ref=embedded")
    assert done.returncode == EXIT_UNREACHABLE == 6, done.stdout + done.stderr
    assert re.search(rf"bad / seed +UNREACHABLE +\(cannot connect to 127.0.0.1:{port}",
                     done.stdout)
    matrix = json.loads((tmp_path / "matrix.json").read_text())
    [bad] = [c for c in matrix["columns"] if c["target"] == "bad"]
    assert (bad["verdict"], bad["reason"]) == (
        UNREACHABLE, f"cannot connect to 127.0.0.1:{port}: Connection refused")
    assert {c["verdict"] for c in matrix["cells"] if c["target"] == "bad"} == {UNREACHABLE}
    text = (tmp_path / "matrix.md").read_text()
    assert "| check | ref / seed |" in text  # no column for what was not tested
    assert f"| bad / seed | 127.0.0.1:{port} | UNREACHABLE: cannot connect to " in text


@pytest.mark.timeout(300)
def test_non_smtp_server_is_error_never_pass_and_exits_1(tmp_path):
    with ScriptedServer(http_400) as server:
        done = matrix_cli(tmp_path, f"http={server.address}")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "http / seed     ERROR  (no command got an SMTP reply" in done.stdout
    matrix = json.loads((tmp_path / "matrix.json").read_text())
    assert [c["verdict"] for c in matrix["columns"]] == [ERROR]
    cells = {c["check"]: c["verdict"] for c in matrix["cells"]}
    assert cells.pop("reply_well_formed") == "FAIL"  # what it did say is evidence
    assert set(cells.values()) == {ERROR}


def report_of(*, replied: bool = True, errors: tuple[str, ...] = ()) -> dict[str, Any]:
    triples = [{"state": "GREETING", "group": "connect", "code": 220, "count": 1}]
    if replied:
        triples.append({"state": "INIT", "group": "HELO", "code": 250, "count": 1})
    return {"verdict": "PASS", "findings": [], "errors": list(errors),
            "coverage": {"triples": triples, "groups": {}},
            "hypothesis": {"seed": "0", "examples": 5}}


EXIT_LINE = "! _pytest.outcomes.Exit: smtp-conformance: cannot connect to h:1: refused !"
JUDGED = [
    (0, report_of(), "", (None, None)),
    (6, None, f"no tests ran\n{EXIT_LINE}\n", (UNREACHABLE, "cannot connect to h:1: refused")),
    (6, report_of(replied=False), EXIT_LINE, (UNREACHABLE, "cannot connect to h:1: refused")),
    (6, report_of(errors=("the server went away",)), "",
     (ERROR, "the server stopped accepting connections during the run: the server went away")),
    (0, None, "Traceback\nKeyError: 'x'\n", (ERROR, "no readable report (pytest exited 0): "
                                                    "KeyError: 'x'")),
    (1, report_of(errors=("answered differently",)), "", (ERROR, "answered differently")),
    (3, report_of(), "INTERNALERROR> boom\n", (ERROR, "pytest exited 3: INTERNALERROR> boom")),
    (0, report_of(replied=False), "", (ERROR, "no command got an SMTP reply: is it an SMTP "
                                              "server?")),
]


@pytest.mark.parametrize(("returncode", "report", "output", "judged"), JUDGED)
def test_a_run_is_judged_by_its_exit_status_and_report(returncode, report, output, judged):
    assert judge(returncode, report, output) == judged


@pytest.mark.parametrize("content", [None, "", "{", "[]", '{"verdict": "PASS"}'])
def test_a_missing_or_unreadable_report_is_no_report(tmp_path, content):
    path = tmp_path / "r.json"
    if content is not None:
        path.write_text(content)
    assert read_report(path) is None


def test_a_run_without_a_report_shows_error_in_every_cell_never_pass(tmp_path):
    run = Run("127.0.0.1:25", "0", 5, None, ERROR, "no readable report (pytest exited 3): x")
    matrix = build({("t", "seed"): run}, tmp_path)
    assert {c["verdict"] for c in matrix["cells"]} == {ERROR}
    assert matrix["columns"][0]["verdict"] == ERROR
    assert exit_status(matrix) == 1
    assert "| t / seed | 127.0.0.1:25 | ERROR: no readable report" in render_markdown(matrix)


@pytest.mark.parametrize(("verdicts", "status"), [
    (["PASS", "FAIL", "WARN", "INCONCLUSIVE"], 0),  # a survey: findings are not its failure
    (["PASS", ERROR], 1),
    (["FAIL", "INCOMPLETE"], 1),  # no verdict either
    ([ERROR, UNREACHABLE], EXIT_UNREACHABLE),
])
def test_matrix_exit_status_says_whether_every_run_produced_a_verdict(verdicts, status):
    assert exit_status({"columns": [{"verdict": v} for v in verdicts]}) == status


def test_two_findings_on_one_command_and_code_keep_two_transcripts(tmp_path):
    from conformance.output.matrix import _write_transcript

    def finding(level: str, cause: str) -> dict[str, Any]:
        return {"check": "no_silent_close", "verdict": "FAIL", "level": level,
                "complaint": f"closed ({cause})", "state": "READY", "sent": "NOOP\\r\\n",
                "group": "NOOP", "reply_code": 500, "cause": cause, "cause_code": 0,
                "transcript": [cause]}

    paths = {_write_transcript(tmp_path, "t", "seed", finding(level, cause))
             for level, cause in (("SHOULD", "after repeated error replies"), ("MUST", "NOOP"),
                                  ("MUST", "after repeated error replies"))}
    assert len(paths) == 3
    assert {(tmp_path / p).read_text().splitlines()[-1] for p in paths} == {
        "after repeated error replies", "NOOP"}
