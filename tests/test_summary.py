"""The terminal summary: its group count matches the table under it, and nothing the server
sent reaches the terminal raw."""

from __future__ import annotations

import unicodedata

import pytest

from conformance.checks.grading import Verdict
from conformance.engine.record import FindingRecord, RunError, RunRecord
from conformance.output.report import summary_lines
from conformance.protocol.levels import Level
from conformance.protocol.tables import GROUPS, PROFILES
from conformance.protocol.transcript import escape_text
from conformance.protocol.vocabulary import UNRECOGNISED

SEED = PROFILES["seed"]


def finding(**changes: object) -> FindingRecord:
    fields: dict[str, object] = dict(
        check="reply_code_documented", level=Level.SHOULD, verdict=Verdict.WARN, citation="c",
        complaint="252 is not documented for NOOP", profile="seed", state="READY",
        group="NOOP", sent="b'NOOP\\r\\n'", reply_code=252, reply_lines=["252 ok"], error=None,
        documented=[250], also=[], transcript=[])
    return FindingRecord(**{**fields, **changes})  # type: ignore[arg-type]


def record_with(groups: list[str], *findings: FindingRecord) -> RunRecord:
    record = RunRecord()
    for group in groups:
        record.coverage[("READY", group, 250)] += 1
    for each in findings:
        record.note(each)
    return record


def table(lines: list[str]) -> tuple[str, list[str], list[str]]:
    """The count line, the rows under it, and the rows under the 'outside' heading."""
    start = next(n for n, line in enumerate(lines) if line.startswith("seed groups exercised:"))
    end = next(n for n, line in enumerate(lines) if line.startswith("extensions advertised:"))
    rows = lines[start + 2:end]
    outside = next((n for n, line in enumerate(rows) if line.startswith("outside")), len(rows))
    return lines[start], rows[:outside], rows[outside + 1:]


def group_of(row: str) -> str:
    return row[2:17].rstrip()


def test_group_count_heads_exactly_the_seed_groups_and_unrecognised_stands_apart():
    count, rows, outside = table(summary_lines(record_with([*GROUPS, UNRECOGNISED]), SEED))
    assert count == f"seed groups exercised: {len(GROUPS)}/{len(GROUPS)}"
    assert [group_of(row) for row in rows] == list(GROUPS)
    assert [group_of(row) for row in outside] == [UNRECOGNISED]
    assert "outside the seed table: 1 exercised" in summary_lines(
        record_with([UNRECOGNISED]), SEED)


def test_count_is_of_exercised_groups_among_every_seed_group_shown():
    count, rows, outside = table(summary_lines(record_with(["HELO", "NOOP"]), SEED))
    assert count == f"seed groups exercised: 2/{len(GROUPS)}"
    assert len(rows) == len(GROUPS)
    assert [group_of(row) for row in rows if " 0  -" not in row] == ["HELO", "NOOP"]
    assert outside == []


def test_the_extensions_part_lists_what_was_advertised_and_where_each_command_went():
    record = record_with(["EHLO"])
    assert summary_lines(record, SEED)[-1] == "extensions advertised: none"
    record.advertised.update({"PIPELINING": "", "SIZE": "1000"})
    record.coverage.update({("READY", "STARTTLS", 220): 2, ("MAIL", "STARTTLS", 501): 1,
                            ("RCPT", "BDAT", 250): 4})
    record.exercised.update({"pipelined batches": 3})
    lines = summary_lines(record, SEED)
    start = lines.index("extensions advertised: PIPELINING SIZE 1000")
    assert lines[start + 1:] == [
        "  STARTTLS            3  sent in: READY 2, MAIL 1",
        "  BDAT                4  sent in: RCPT 4",
        "  pipelined batches: 3"]


HIDDEN = "\x00\x07\x1b[2J\x7f\x85\u202e\u2028"


@pytest.mark.parametrize("field", ["complaint", "sent", "state", "check"])
def test_no_control_byte_from_a_finding_reaches_the_summary(field):
    lines = summary_lines(record_with(["NOOP"], finding(**{field: f"x{HIDDEN}y"})), SEED)
    text = "\n".join(lines)
    assert not [c for c in text if c != "\n" and unicodedata.category(c) in ("Cc", "Cf", "Zl")]
    assert f"x{escape_text(HIDDEN)}y" in text
    assert "\\x00\\x07\\x1b[2J\\x7f\\x85\\u202e\\u2028" in text


def test_no_control_byte_from_a_run_error_reaches_the_summary():
    record = record_with(["NOOP"])
    record.errors.append(RunError("server said \x00\r\n\x1b]0;pwned\x07"))
    [error] = [line for line in summary_lines(record, SEED) if line.startswith("  ERROR")]
    assert error == "  ERROR server said \\x00\\r\\n\\x1b]0;pwned\\x07"


@pytest.mark.parametrize(("text", "shown"), [
    ("plain §4.2 text, a \\ backslash", "plain §4.2 text, a \\ backslash"),
    ("tab\there", "tab\\there"),
    ("nul\x00 del\x7f c1\x9b", "nul\\x00 del\\x7f c1\\x9b"),
    ("rtl\u202eoverride", "rtl\\u202eoverride"),
])
def test_escape_text_escapes_only_what_a_terminal_would_act_on(text, shown):
    assert escape_text(text) == shown
