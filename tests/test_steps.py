"""A step's one JSON form (reports and replay files alike) and its bonds to the step before."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from conformance.protocol.commands import (
    UNIT_BONDS,
    WRITE_BONDS,
    Bond,
    Message,
    Step,
    bonds,
    grouped,
)


@given(group=st.sampled_from(["HELO", "MAIL", "tls upgrade", "data"]), data=st.binary(),
       valid=st.booleans(), batch=st.integers(min_value=0, max_value=9))
def test_every_octet_and_field_survives_json(group, data, valid, batch):
    step = Step(group, data, valid, batch)
    assert Step.from_json(step.to_json()) == step


def test_the_list_form_of_older_reports_is_still_read():
    assert Step.from_json(["NOOP", "NOOP\r\n", True]) == Step("NOOP", b"NOOP\r\n")
    assert Step.from_json(["RSET", "RSET\r\n", False, 3]) == Step("RSET", b"RSET\r\n", False, 3)


def test_a_bad_batch_is_refused():
    try:
        Step.from_json({"group": "NOOP", "data": "NOOP\r\n", "valid": True, "batch": "x"})
    except ValueError:
        return
    raise AssertionError("a batch that is not a number was read")


DATA = Step("DATA", b"DATA\r\n", batch=1)
RCPT = Step("RCPT", b"RCPT TO:<b@example.test>\r\n", batch=1)
MESSAGE = Step.of(Message(b"Subject: t\r\n\r\nhi"))
STARTTLS = Step("STARTTLS", b"STARTTLS\r\n")


def test_each_bond_names_its_reason():
    assert bonds(RCPT, DATA) == {Bond.BATCH}
    assert bonds(DATA, MESSAGE) == {Bond.MESSAGE}
    assert bonds(STARTTLS, Step.tls("mx.example.test")) == {Bond.UPGRADE}
    assert bonds(MESSAGE, STARTTLS) == frozenset()
    assert all("RFC" in bond.value for bond in Bond)


def test_writes_and_units_group_the_same_steps_differently():
    steps = [RCPT, DATA, MESSAGE]
    # One write holds the batch, and the message goes after the 354.
    assert grouped(steps, WRITE_BONDS) == [(RCPT, DATA), (MESSAGE,)]
    # A shorter session may drop a batched command, never a DATA's message.
    assert grouped(steps, UNIT_BONDS) == [(RCPT,), (DATA, MESSAGE)]
