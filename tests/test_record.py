"""The run record: one finding per key, the shortest transcript kept, every occurrence
counted, and the same record again after a trip through JSON."""

from __future__ import annotations

from conformance.record import FindingRecord, RunRecord


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
