"""The run record: one finding per key, the shortest transcript kept, every occurrence
counted, the same record again after a trip through JSON, and one finding per behaviour
once the run is settled."""

from __future__ import annotations

from dataclasses import replace

from conformance.checks import AFTER_ERRORS, THE_SESSION
from conformance.engine.record import FindingRecord, RunRecord


def finding(transcript: list[str], **changes: object) -> FindingRecord:
    fields: dict[str, object] = dict(
        check="reply_code_documented", level="MUST", verdict="FAIL", citation="c",
        complaint="220 is not documented for HELO", profile="seed", state="INIT",
        group="HELO", sent="b'HELO x\\r\\n'", reply_code=220, reply_lines=["hello"],
        error=None, documented=[250], also=[], transcript=transcript)
    return FindingRecord(**{**fields, **changes})  # type: ignore[arg-type]


def test_a_finding_seen_again_keeps_the_shorter_transcript_and_counts_both():
    record = RunRecord()
    record.note(finding(["C: NOOP", "S: 250 ok", "C: HELO x", "S: 220 hello"]))
    record.note(finding(["C: HELO x", "S: 220 hello"]))
    record.note(finding(["C: RSET", "S: 250 ok", "C: HELO x", "S: 220 hello"]))
    (kept,) = record.findings.values()
    assert kept.transcript == ["C: HELO x", "S: 220 hello"]
    assert kept.occurrences == 3


def test_of_two_transcripts_as_long_the_first_is_kept():
    record = RunRecord()
    record.note(finding(["C: HELO x", "S: 220 hello"], complaint="first"))
    record.note(finding(["C: HELO y", "S: 220 hello"], complaint="second"))
    (kept,) = record.findings.values()
    assert (kept.complaint, kept.occurrences) == ("first", 2)


def test_findings_with_another_reply_code_are_kept_apart():
    record = RunRecord()
    record.note(finding(["C: HELO x", "S: 220 hello"]))
    record.note(finding(["C: HELO x", "S: 221 bye"], reply_code=221))
    assert sorted(f.reply_code or 0 for f in record.findings.values()) == [220, 221]


def test_a_record_survives_json():
    record = RunRecord()
    record.note(finding(["C: HELO x", "S: 220 hello"]))
    record.note(finding(["C: HELO x", "S: 220 hello"]))
    record.coverage[("INIT", "HELO", 220)] += 2
    record.remark("a note")
    again = RunRecord.from_json(record.to_json())
    assert again.to_json() == record.to_json()
    assert next(iter(again.findings.values())).occurrences == 2


def test_merged_records_add_up_their_occurrences_and_coverage():
    first, second = RunRecord(), RunRecord()
    for record, times in ((first, 2), (second, 3)):
        for _ in range(times):
            record.note(finding(["C: HELO x", "S: 220 hello"]))
        record.coverage[("INIT", "HELO", 220)] += times
    first.merge(second)
    assert next(iter(first.findings.values())).occurrences == 5
    assert first.coverage[("INIT", "HELO", 220)] == 5


def close(group: str, cause: str, *, level: str = "MUST", inputs: dict[str, int] | None = None,
          times: int = 1) -> FindingRecord:
    """A no_silent_close finding on ``group`` in READY, ``times`` times."""
    return finding([f"C: {group}"], check="no_silent_close", level=level, group=group,
                   state="READY", reply_code=None, cause=cause, cause_code=0,
                   occurrences=times, seen={f"{group} in READY": times},
                   inputs=inputs or {})


def test_closes_seen_on_one_command_only_are_that_commands_close():
    # Closing on every HELP: also seen on a HELP with 8-bit octets, and after three errors.
    record = RunRecord()
    record.note(close("HELP", "HELP", times=5))
    record.note(close("HELP", "octets outside US-ASCII in the command line", times=2,
                      inputs={"octets outside US-ASCII in the command line": 2}))
    record.note(close("HELP", AFTER_ERRORS, level="SHOULD", times=3))
    record.settle()
    (kept,) = record.findings.values()
    assert (kept.cause, kept.occurrences) == ("HELP", 10)
    assert kept.inputs == {"octets outside US-ASCII in the command line": 2}


def test_a_close_after_another_reply_on_that_command_stays_its_own():
    # Closing instead of replying to every HELP, and after 521 to an overlong HELP: two.
    record = RunRecord()
    record.note(close("HELP", "HELP"))
    record.note(replace(close("HELP", "a command line over 512 octets"), cause_code=521))
    record.settle()
    assert sorted((k.cause, k.code) for k in record.findings) == [
        ("HELP", 0), ("a command line over 512 octets", 521)]


def test_closes_on_one_input_over_several_commands_stay_the_inputs():
    # Closing on 8-bit octets whatever the verb: not a close of HELP, though HELP was one.
    record = RunRecord()
    eight_bit = "octets outside US-ASCII in the command line"
    record.note(close("HELP", "HELP"))
    for group in ("NOOP", "MAIL"):
        record.note(close(group, eight_bit, inputs={eight_bit: 1}))
    record.settle()
    assert sorted(k.cause for k in record.findings) == ["HELP", eight_bit]


def test_a_hang_on_commands_answered_elsewhere_is_one_finding_about_the_session():
    record = RunRecord()
    for group in ("NOOP", "EXPN", "HELO"):
        record.note(finding([f"C: {group}"], check="command_answered", group=group,
                            reply_code=None, cause=group, cause_code=0,
                            seen={f"{group} in READY": 1}))
        record.coverage[("INIT", group, 250 if group != "HELO" else 0)] += 1
    record.note(finding(["C: HELP"], check="command_answered", group="HELP", reply_code=None,
                        cause="HELP", cause_code=0, seen={"HELP in READY": 1}))
    record.settle()
    # HELO and HELP were never answered: each may be a command the server never answers.
    assert sorted(k.cause for k in record.findings) == ["HELO", "HELP", THE_SESSION]
    assert record.findings[next(k for k in record.findings if k.cause == THE_SESSION)].seen \
        == {"NOOP in READY": 1, "EXPN in READY": 1}


def test_a_lone_hang_on_a_command_answered_elsewhere_stays_that_commands():
    # STARTTLS answered 220, then a handshake that never ends: not a tarpit.
    record = RunRecord()
    record.note(finding(["C: STARTTLS"], check="command_answered", group="STARTTLS",
                        reply_code=None, cause="STARTTLS", cause_code=0))
    record.coverage[("READY", "STARTTLS", 220)] += 1
    record.settle()
    assert [k.cause for k in record.findings] == ["STARTTLS"]
