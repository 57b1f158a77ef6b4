"""Findings cite their table by what it is, and what the seed table's citation says is true."""

from __future__ import annotations

from conformance.protocol.tables import PROFILES, SEED_CITATION, SUPPLEMENTARY_ROWS


def test_no_row_cites_a_file_outside_the_package():
    rows = [row for profile in PROFILES.values() for row in profile.rows.values()]
    for row in [*rows, *SUPPLEMENTARY_ROWS.values()]:
        assert "shared/" not in row.citation, row
        assert ".txt" not in row.citation, row


def test_seed_citation_is_short_and_names_its_group():
    assert len(SEED_CITATION) <= 50
    assert PROFILES["seed"].rows["HELO"].citation == f"{SEED_CITATION}, group 'HELO'"


def test_seed_table_is_rfc821_plus_ehlo_200_and_521_as_its_citation_says():
    seed, rfc821 = PROFILES["seed"].rows, PROFILES["rfc821"].rows
    added = {(group, code) for group, row in seed.items()
             for code in row.code_set - (rfc821[group].code_set if group in rfc821 else set())}
    removed = {(group, code) for group, row in rfc821.items()
               for code in row.code_set - seed[group].code_set}
    assert "RFC 821 §4.3 + EHLO, 200, 521" in SEED_CITATION
    assert removed == set()
    assert {code for group, code in added if group != "EHLO"} == {200, 521}
    assert "EHLO" not in rfc821
    assert "EHLO" in seed
