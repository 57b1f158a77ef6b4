"""The session model, tested directly, and the strategies checked against the grammar."""

from __future__ import annotations

import pytest
from hypothesis import given

from conformance import strategies as smtp
from conformance.protocol import grammar
from conformance.protocol.commands import Command, Message
from conformance.protocol.model import ON_SUCCESS, Session, State, advance, to_dot

S = State


def run(*steps: tuple[str, int]) -> Session:
    session = Session()
    for group, code in steps:
        session = advance(session, group, code)
    return session


@pytest.mark.parametrize(("steps", "state", "recipients"), [
    ([("connect", 220)], S.INIT, 0),
    ([("connect", 220), ("EHLO", 250)], S.READY, 0),
    ([("connect", 220), ("EHLO", 250), ("MAIL", 250), ("RCPT", 550)], S.MAIL, 0),
    ([("connect", 220), ("EHLO", 250), ("MAIL", 250), ("RCPT", 250), ("RCPT", 251)], S.RCPT, 2),
    ([("connect", 220), ("EHLO", 250), ("MAIL", 250), ("RCPT", 250), ("RSET", 250)], S.READY, 0),
    ([("connect", 220), ("EHLO", 250), ("MAIL", 250), ("RCPT", 250), ("HELO", 250)], S.READY, 0),
    ([("connect", 220), ("HELO", 250), ("MAIL", 250), ("RCPT", 250), ("DATA", 354)], S.DATA, 1),
    ([("connect", 220), ("HELO", 250), ("MAIL", 250), ("RCPT", 250), ("DATA", 354),
      ("received data", 554)], S.READY, 0),
    ([("connect", 220), ("EHLO", 250), ("RCPT", 250)], S.READY, 0),
    ([("connect", 220), ("EHLO", 250), ("NOOP", 421)], S.CLOSED, 0),
    ([("connect", 220), ("QUIT", 221)], S.CLOSED, 0),
    ([("connect", 220), ("RSET", 250)], S.INIT, 0),
])
def test_model_advances_from_actual_replies(steps, state, recipients):
    session = run(*steps)
    assert (session.state, session.recipients) == (state, recipients)


def test_completed_message_is_counted_and_ehlo_keywords_kept():
    session = advance(Session(state=S.INIT), "EHLO", 250,
                      lines=("mx", "SIZE 10", "8bitmime", "AUTH PLAIN LOGIN", "-bad"))
    assert dict(session.extensions.keywords) == {"SIZE": ("10",), "8BITMIME": (),
                                                 "AUTH": ("PLAIN", "LOGIN")}
    assert session.extensions.malformed == ("-bad",)
    assert "auth" in session.extensions
    assert session.extensions.parameters("size") == ("10",)
    assert not advance(session, "HELO", 250).extensions.keywords
    assert not advance(session, "STARTTLS", 220).extensions.keywords  # the session starts over
    assert advance(session, "STARTTLS", 220).state is S.INIT
    session = advance(Session(state=S.DATA, recipients=1), "received data", 250)
    assert session.messages == 1


def test_dot_diagram_is_drawn_from_the_table():
    dot = to_dot(coverage={("READY", "MAIL"): 3})
    assert dot.startswith("digraph smtp_session {")
    for (_group, before), after in ON_SUCCESS.items():
        assert f"{before.name} -> {after.name}" in dot
    assert 'READY -> MAIL [label="MAIL, SEND, SOML, SAML (3)"];' in dot
    assert 'MAIL -> RCPT [label="RCPT (0)", style=dashed, color=gray];' in dot  # never taken


def test_message_wire_form_is_dot_stuffed_and_terminated():
    assert Message(b".a\r\nb").wire == b"..a\r\nb\r\n.\r\n"
    assert Message(b"").wire == b".\r\n"


@given(smtp.message_bodies())
def test_a_message_is_recovered_from_its_wire_form(message: Message):
    assert Message.from_wire(message.wire).wire == message.wire


@given(smtp.mail_commands())
def test_valid_mail_commands_follow_the_grammar(command: Command):
    path = command.line.decode()[len("MAIL FROM:"):].rstrip("\r\n")
    assert grammar.is_reverse_path(path)


@given(smtp.rcpt_commands())
def test_valid_rcpt_commands_use_reserved_domains(command: Command):
    text = command.line.decode().rstrip("\r\n")
    domain = text.rsplit("@", 1)[-1].rstrip(">") if "@" in text else "postmaster"
    assert grammar.is_forward_path(text[len("RCPT TO:"):]) or text.upper().endswith(
        "<POSTMASTER>")
    assert domain == "postmaster" or domain.startswith("[") or domain.endswith(
        (".test", ".example", ".invalid", "example.com", "example.net", "localhost"))


@given(smtp.raw_lines())
def test_malformed_lines_are_marked_invalid_and_terminated(command: Command):
    assert not command.valid
    assert command.line.endswith(b"\r\n")


def test_error_replies_are_counted_per_session():
    session = advance(advance(Session(state=State.READY), "NOOP", 500), "MAIL", 250)
    assert (session.errors, session.state) == (1, State.MAIL)
    assert advance(session, "RCPT", 550).errors == 2
    assert advance(session, "RCPT", 450).errors == 1  # a 4yz is not a protocol error


def test_every_effect_is_a_verbs_and_the_diagram_draws_the_last_chunk():
    from conformance.protocol.model import to_dot
    from conformance.protocol.vocabulary import VERBS, Effect

    declared = {effect for verb in VERBS.values() for effect in verb.effects}
    assert declared == set(Effect)
    dot = to_dot(coverage={("RCPT", "BDAT"): 2})
    assert 'RCPT -> READY [label="HELO, EHLO, RSET, BDAT LAST (2)"]' in dot
    assert 'MAIL -> READY [label="HELO, EHLO, RSET, BDAT LAST (0)", style=dashed' in dot


def test_a_last_chunk_ends_the_message_and_a_refused_one_does_not():
    from conformance.protocol.model import Session, advance

    in_rcpt = Session(state=State.RCPT, recipients=1, chunked=True)
    done = advance(in_rcpt, "BDAT", 250, last_chunk=True)
    assert (done.state, done.messages, done.chunked, done.reset_by) == (
        State.READY, 1, False, "BDAT")
    assert advance(in_rcpt, "BDAT", 250).state is State.RCPT  # not the last chunk
    assert advance(in_rcpt, "BDAT", 554, last_chunk=True).state is State.RCPT
