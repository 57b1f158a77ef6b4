"""The conformance matrix: built from real runs, and the committed one is the script's own."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conformance.errors import UsageError
from conformance.matrix import GENERATED, Target, make, render_markdown
from tests.fault_server import FaultServer

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
    written = json.loads((tmp_path / "matrix.json").read_text())
    assert (tmp_path / "matrix.md").read_text() == render_markdown(written)


def test_committed_matrix_is_generated_not_hand_edited():
    matrix = json.loads((DOCS / "matrix.json").read_text())
    text = (DOCS / "matrix.md").read_text()
    assert text.startswith(GENERATED)
    assert text == render_markdown(matrix)
    for cell in matrix["cells"]:
        for transcript in cell["transcripts"]:
            assert (DOCS / transcript).is_file()
    assert {c["target"] for c in matrix["columns"]} == {"reference", "postfix"}


@pytest.mark.parametrize("text", ["nameless", "bad name=embedded", "x=::1:25"])
def test_bad_target_is_a_usage_error(text):
    with pytest.raises(UsageError):
        Target.parse(text)
