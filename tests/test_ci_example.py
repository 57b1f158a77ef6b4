"""docs/github-actions.yml, the workflow docs/ci.md points to, does what a CI run needs: it
installs from a checkout, waits for the server, runs the suite with the repository's action
(inputs it has, options the plugin has, a fixed seed, the server on loopback), and keeps the
reports and the failing sessions (the action's upload: tests/test_action.py)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from conformance.plugin import OPTIONS

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW = ROOT / "docs" / "github-actions.yml"
# Options the run may use that are pytest's or Hypothesis's own, not the plugin's.
OTHER_OPTIONS = {"--pyargs", "-p", "--hypothesis-seed", "--junitxml"}


def job() -> dict[str, Any]:
    """The workflow's one job (PyYAML reads its ``on:`` key as True: it is not used here)."""
    workflow: dict[str, Any] = yaml.safe_load(WORKFLOW.read_text())
    [only] = workflow["jobs"].values()
    return dict(only)


@pytest.fixture(scope="module")
def steps() -> list[dict[str, Any]]:
    return list(job()["steps"])


@pytest.fixture(scope="module")
def env() -> dict[str, str]:
    return dict(job()["env"])


def commands(steps: list[dict[str, Any]], program: str) -> list[tuple[int, list[str]]]:
    """(step index, words) for each shell line of the steps that starts with ``program``."""
    found = []
    for index, step in enumerate(steps):
        for line in step.get("run", "").splitlines():
            words = shlex.split(line)
            if words and words[0] == program:
                found.append((index, words))
    return found


ACTION = yaml.safe_load((ROOT / "action.yml").read_text())


def suite_run(steps: list[dict[str, Any]]) -> tuple[int, dict[str, str]]:
    """The step that runs the suite: this repository's action, from the checkout; its inputs."""
    [(index, step)] = [(i, s) for i, s in enumerate(steps) if s.get("uses", "").startswith("./")]
    return index, {name: str(value) for name, value in step["with"].items()}


def options(words: list[str]) -> dict[str, str]:
    """{--option: value} (a flag or a separate-word value maps to '')."""
    return {word.partition("=")[0]: word.partition("=")[2]
            for word in words if word.startswith("-")}


def test_installs_smtp_conformance_from_a_checkout_not_from_pypi(steps):
    installs = [words for _, words in commands(steps, "python")
                if words[1:4] == ["-m", "pip", "install"]]
    installs += [words for _, words in commands(steps, "pip") if words[1] == "install"]
    assert installs, "no pip install step"
    for words in installs:
        targets = [word for word in words[4 if words[0] == "python" else 2:]
                   if not word.startswith("-")]
        assert targets
        assert all("/" in target or target.endswith(".whl") for target in targets), words


def test_the_checkout_it_installs_from_and_whose_action_it_uses_is_checked_out(steps):
    checkout = next(step for step in steps if step.get("uses", "").startswith("actions/checkout"))
    [(_, words)] = [(i, w) for i, w in commands(steps, "python") if "install" in w]
    assert words[-1] == f"./{checkout['with']['path']}"
    index, _ = suite_run(steps)
    assert steps[index]["uses"] == f"./{checkout['with']['path']}"


def test_waits_for_the_server_port_a_bounded_time_before_the_suite(steps, env):
    suite_index, given = suite_run(steps)
    port = given["server"].rsplit(":", 1)[1]
    waits = [step for step in steps[:suite_index]
             if re.search(r"for \w+ in \$\(seq \d+\)", step.get("run", ""))]
    assert waits, "no bounded wait loop before the suite runs"
    assert port == "${{ env.SMTP_PORT }}"
    assert "$SMTP_PORT" in waits[0]["run"]
    assert "exit 1" in waits[0]["run"]  # gives up, and fails the job, when it never listens
    assert env["SMTP_PORT"].isdigit()


def test_every_input_and_option_of_the_suite_run_exists(steps):
    _, given = suite_run(steps)
    assert set(given) <= set(ACTION["inputs"])
    plugin_options = {option.name for option in OPTIONS}
    for option in options(shlex.split(given.get("args", ""))):
        assert option in plugin_options | OTHER_OPTIONS, f"{option} is not an option"


def test_the_suite_runs_with_a_fixed_seed_on_loopback(steps, env):
    _, given = suite_run(steps)
    assert given["seed"] == "${{ env.SEED }}"
    assert env["SEED"].isdigit()
    assert given["server"].startswith("127.0.0.1:")
    assert (ROOT / given["baseline"].removeprefix("smtp-conformance/")).is_file()


def test_the_reports_and_failing_sessions_are_kept(steps):
    # The action uploads them (tests/test_action.py) unless its artifact input is emptied.
    _, given = suite_run(steps)
    assert given.get("artifact", ACTION["inputs"]["artifact"]["default"]) != ""
    assert not [step for step in steps if step.get("uses", "").startswith("actions/upload")]


def use_in_ci() -> str:
    return (ROOT / "docs" / "ci.md").read_text()


def test_use_in_ci_points_at_the_workflow():
    assert "(github-actions.yml)" in use_in_ci()
    assert "docs/ci.md" in (ROOT / "README.md").read_text()
    assert "pip install smtp-conformance" not in (ROOT / "README.md").read_text() + use_in_ci()


def test_the_pages_excerpt_is_quoted_from_the_workflow_as_it_is():
    [excerpt] = re.findall(r"```yaml\n(.*?)```", use_in_ci(), re.S)
    assert excerpt in WORKFLOW.read_text()
