"""The reply-code tables: the seed profile is the seed page, and the RFC profiles are right."""

from __future__ import annotations

import json

import pytest

from conformance import cli
from conformance.protocol.commands import VERBS
from conformance.protocol.errors import UsageError
from conformance.protocol.levels import Level
from conformance.protocol.tables import (
    GROUPS,
    PROFILES,
    SUPPLEMENTARY_ROWS,
    get_profile,
)
from conformance.protocol.vocabulary import END_OF_DATA, GREETING, UNRECOGNISED
from tests.reference_facts import reference_rows, seed_groups

# The facts, as the project's own data (tests/test_reference_pages.py ties them to the pages).
SEED_PAGE = seed_groups()
REFERENCE = reference_rows()


def test_seed_page_has_17_groups_and_111_entries():
    assert list(SEED_PAGE) == list(GROUPS)
    assert sum(len(entries) for entries in SEED_PAGE.values()) == 111


@pytest.mark.parametrize("group", GROUPS)
def test_seed_profile_equals_seed_page(group):
    row = PROFILES["seed"].rows[group]
    assert [(c.code, c.text) for c in row.codes] == SEED_PAGE[group]


def test_seed_profile_has_exactly_the_seed_groups():
    assert tuple(PROFILES["seed"].rows) == GROUPS


def codes_in_order(row) -> tuple[int, ...]:
    return tuple(code.code for code in row.codes)


def test_reference_table_has_a_row_for_every_seed_group():
    assert tuple(REFERENCE) == GROUPS


@pytest.mark.parametrize("group", GROUPS)
def test_every_profile_matches_the_reference_table_cell_by_cell(group):
    facts = REFERENCE[group]
    assert codes_in_order(PROFILES["seed"].rows[group]) == facts.seed
    if facts.rfc821 is None:
        assert group not in PROFILES["rfc821"].rows
    else:
        assert codes_in_order(PROFILES["rfc821"].rows[group]) == facts.rfc821
    rfc5321 = PROFILES["rfc5321"].rows[group]
    assert codes_in_order(rfc5321) == facts.rfc5321_effective
    printed = tuple(code.code for code in rfc5321.codes if not code.note)
    if facts.rfc5321_printed is None:  # not in §4.3.2: the RFC 821 model (App. F)
        assert "App. F" in rfc5321.citation
        assert printed == facts.rfc821
    else:
        assert printed == facts.rfc5321_printed


@pytest.mark.parametrize(
    ("group", "codes"),
    [
        ("connect", {220, 421}),
        ("HELO", {250, 500, 501, 504, 421}),
        ("RCPT", {250, 251, 550, 551, 552, 553, 450, 451, 452, 500, 501, 503, 421}),
        ("RSET", {250, 500, 501, 504, 421}),
        ("NOOP", {250, 500, 421}),
        ("QUIT", {221, 500}),
        ("TURN", {250, 502, 500, 503}),
    ],
)
def test_rfc821_rows_follow_section_4_3(group, codes):
    assert PROFILES["rfc821"].documented(group) == codes


def test_rfc821_has_no_ehlo_row_and_falls_back_to_the_supplement():
    profile = PROFILES["rfc821"]
    assert "EHLO" not in profile.rows
    assert profile.row("EHLO") is SUPPLEMENTARY_ROWS["EHLO"]
    assert not profile.row("EHLO").in_seed_scope


@pytest.mark.parametrize(
    ("group", "codes"),
    [
        ("connect", {220, 554, 421}),
        ("EHLO", {250, 504, 550, 502, 500, 501, 421}),
        ("MAIL", {250, 552, 451, 452, 550, 553, 503, 455, 555, 500, 501, 421}),
        ("DATA", {354, 503, 554, 500, 501, 421}),
        ("received data", {250, 552, 554, 451, 452, 450, 550, 421}),
        ("RSET", {250, 500, 501, 421}),
        ("VRFY", {250, 251, 252, 550, 551, 553, 502, 504, 500, 501, 421}),
        ("SEND", {250, 552, 451, 452, 500, 501, 502, 421, 503}),
        ("TURN", {250, 502, 500, 503, 501, 421}),
    ],
)
def test_rfc5321_rows_are_section_4_3_2_plus_any_command_codes(group, codes):
    assert PROFILES["rfc5321"].documented(group) == codes


def test_rfc5321_marks_every_code_it_adds_to_the_printed_list():
    row = PROFILES["rfc5321"].row("QUIT")
    assert [c.code for c in row.codes if not c.note] == [221]
    assert all("§4.3.2" in c.note for c in row.codes if c.note)


def test_profiles_carry_their_normative_weight():
    assert PROFILES["seed"].level is Level.MUST
    assert PROFILES["rfc821"].level is Level.MUST
    assert PROFILES["rfc5321"].level is Level.SHOULD
    assert "must be strictly adhered to" in PROFILES["rfc821"].level_citation
    assert "SHOULD be strictly adhered to" in PROFILES["rfc5321"].level_citation


@pytest.mark.parametrize("profile", PROFILES.values(), ids=list(PROFILES))
def test_every_row_cites_its_source_and_every_code_has_text(profile):
    for row in profile.rows.values():
        assert row.citation
        assert row.level is profile.level
        assert all(code.text for code in row.codes)
        assert len(row.codes) == len(row.code_set), f"{row.group} lists a code twice"


def test_rows_outside_the_seed_are_marked():
    assert SUPPLEMENTARY_ROWS[UNRECOGNISED].code_set == {500, 421}
    assert all(not row.in_seed_scope for row in SUPPLEMENTARY_ROWS.values())
    assert {"STARTTLS", "AUTH", "BDAT"} <= set(SUPPLEMENTARY_ROWS)


def test_unknown_profile_is_a_usage_error_naming_the_choices():
    with pytest.raises(UsageError, match=r"unknown SMTP profile 'x'.*seed, rfc821, rfc5321"):
        get_profile("x")


def test_profiles_json_spells_groups_as_the_seed(capsys):
    assert cli.main(["profiles", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert list(printed) == list(GROUPS)
    assert printed["received data"] == [250, 451, 452, 552, 554]
    assert all(codes == sorted(codes) for codes in printed.values())


@pytest.mark.parametrize("name", list(PROFILES))
def test_profiles_json_round_trips_every_profile(capsys, name):
    assert cli.main(["profiles", "--profile", name, "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == {g: sorted(r.code_set) for g, r in PROFILES[name].rows.items()}


def test_profiles_table_shows_texts_citations_and_supplements(capsys):
    assert cli.main(["profiles", "--profile", "rfc821"]) == 0
    out = capsys.readouterr().out
    assert "Weight: MUST" in out
    assert "  354  Start mail input; end with <CRLF>.<CRLF>" in out
    assert "Not covered by the seed page" in out
    assert "unrecognised  [RFC 5321 §4.2.4" in out


@pytest.mark.parametrize("profile", list(PROFILES.values()), ids=list(PROFILES))
def test_every_group_a_session_can_meet_has_a_row(profile) -> None:
    # Reports and checks look rows up without a fallback: a missing one would be a bug here.
    for group in (*VERBS, GREETING, END_OF_DATA, UNRECOGNISED):
        assert profile.documented(group)
