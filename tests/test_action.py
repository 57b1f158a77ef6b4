"""action.yml, the composite GitHub Action, run here step by step as a runner would: its shell
steps with their inputs and environment (GITHUB_ACTION_PATH, GITHUB_OUTPUT,
GITHUB_STEP_SUMMARY), against servers on 127.0.0.1. The steps that use other actions
(setup-python, upload-artifact) cannot run here; what they are given is checked instead. The
install step is not run either (it would reinstall this checkout over the one under test):
what it installs is checked."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fault_server import FaultServer

ROOT = Path(__file__).resolve().parent.parent
ACTION: dict[str, Any] = yaml.safe_load((ROOT / "action.yml").read_text())
STEPS: list[dict[str, Any]] = ACTION["runs"]["steps"]
EXPRESSION = re.compile(r"\$\{\{\s*(inputs|steps)\.([\w-]+)(?:\.outputs\.([\w-]+))?\s*\}\}")


@dataclass
class Ran:
    outputs: dict[str, str]
    summary: str
    statuses: dict[str, int]  # step id -> exit status
    directory: Path
    log: str


def evaluate(text: str, inputs: dict[str, str], outputs: dict[str, str]) -> str:
    """``${{ inputs.X }}`` and ``${{ steps.run.outputs.Y }}``, as the runner substitutes them."""
    def value(match: re.Match[str]) -> str:
        kind, name, output = match.groups()
        return inputs[name] if kind == "inputs" else outputs.get(output or "", "")
    return EXPRESSION.sub(value, text)


def run_action(directory: Path, **given: str) -> Ran:
    inputs = {name: str(spec.get("default", "")) for name, spec in ACTION["inputs"].items()}
    unknown = set(given) - set(inputs)
    assert not unknown, f"not inputs of the action: {unknown}"
    inputs.update(given)
    output_file, summary_file = directory / "github_output", directory / "step_summary"
    outputs: dict[str, str] = {}
    statuses, log = {}, []
    for step in STEPS:
        if "uses" in step or step.get("id") == "install":
            continue
        # "python" is the one this checkout is installed in, as setup-python's would be.
        path = os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])
        env = {**os.environ, "PATH": path, "GITHUB_ACTION_PATH": str(ROOT),
               "GITHUB_OUTPUT": str(output_file),
               "GITHUB_STEP_SUMMARY": str(summary_file), "CI": "true",
               **{k: evaluate(str(v), inputs, outputs) for k, v in step.get("env", {}).items()}}
        done = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", step["run"]], cwd=directory,
                              env=env, capture_output=True, text=True, timeout=600, check=False)
        statuses[step["id"]] = done.returncode
        log.append(done.stdout + done.stderr)
        if output_file.exists():
            for line in output_file.read_text().splitlines():
                name, _, value = line.partition("=")
                outputs[name] = value
    summary = summary_file.read_text() if summary_file.exists() else ""
    return Ran(outputs, summary, statuses, directory, "\n".join(log))


def step(name: str) -> dict[str, Any]:
    [found] = [s for s in STEPS if name in (s.get("id"), s.get("uses", "").split("@")[0])]
    return found


def test_the_install_step_installs_this_actions_checkout():
    assert step("install")["run"].strip() == \
        'python -m pip install --quiet "$GITHUB_ACTION_PATH"'
    assert step("actions/setup-python")["with"]["python-version"] == \
        "${{ inputs.python-version }}"


@pytest.mark.timeout(600)
def test_against_a_faulty_server_it_fails_with_the_verdict_reports_and_summary(tmp_path):
    with FaultServer("noop_replies_252") as server:
        ran = run_action(tmp_path, server=str(server.address), seed="0", examples="10",
                         args="--smtp-timeout=1")
    assert ran.outputs == {"verdict": "FAIL", "exit-status": "1"}, ran.log
    assert ran.statuses == {"run": 0, "verdict": 1}  # the run step reports; the last one fails
    assert ran.summary.startswith("## smtp-conformance: FAIL\n")
    assert "`reply_code_documented`" in ran.summary
    for name in ("report", "html", "junit"):  # what the upload step is given exists
        assert (tmp_path / ACTION["inputs"][name]["default"]).is_file()
    assert list((tmp_path / ".smtp-conformance" / "failures").rglob("*.json"))
    assert "smtp-conformance: FAIL (exit status 1)" in ran.log


@pytest.mark.timeout(600)
def test_with_no_server_it_passes_against_the_embedded_one(tmp_path):
    ran = run_action(tmp_path, examples="5", seed="1")
    assert ran.outputs == {"verdict": "PASS", "exit-status": "0"}, ran.log
    assert ran.statuses == {"run": 0, "verdict": 0}
    assert ran.summary.startswith("## smtp-conformance: PASS\n")


@pytest.mark.timeout(600)
def test_an_unreachable_server_is_its_own_verdict_and_fails(tmp_path):
    import socket

    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    ran = run_action(tmp_path, server=f"127.0.0.1:{port}", examples="5")
    assert ran.outputs == {"verdict": "UNREACHABLE", "exit-status": "6"}, ran.log
    assert ran.statuses["verdict"] == 6


def test_the_upload_keeps_every_report_and_the_hidden_failures_folder():
    upload = step("actions/upload-artifact")
    assert upload["if"] == "always() && inputs.artifact != ''"
    assert upload["with"]["include-hidden-files"] is True
    paths = upload["with"]["path"].splitlines()
    assert paths == ["${{ inputs.report }}", "${{ inputs.html }}", "${{ inputs.junit }}",
                     ".smtp-conformance/failures/"]


def test_every_output_is_written_by_the_run_step():
    for name, spec in ACTION["outputs"].items():
        assert spec["value"] == f"${{{{ steps.run.outputs.{name} }}}}"
        assert f'echo "{name}=' in step("run")["run"]
