"""The extension checks, exchange by exchange: each rule applies only where the session's EHLO
reply advertised its extension, and each names the rule it enforces."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

import conformance.strategies.extensions as ext
from conformance.checks import Exchange, run_checks
from conformance.protocol.commands import Command, Message
from conformance.protocol.errors import ReplyTimeout
from conformance.protocol.model import Session, State, advance, upgraded
from conformance.protocol.replies import Reply
from conformance.protocol.tables import get_profile
from conformance.protocol.vocabulary import (
    END_OF_DATA,
    EXTENSION_OF_PARAMETER,
    EXTENSIONS,
    follows_grammar,
    parse_ehlo,
)

SEED = get_profile("seed")
EHLO_LINES = ("mx.example.test", "PIPELINING", "SIZE 1000", "8BITMIME", "ENHANCEDSTATUSCODES",
              "STARTTLS", "CHUNKING", "AUTH PLAIN LOGIN", "DSN")
EVERYTHING = parse_ehlo(EHLO_LINES)
READY = Session(state=State.READY, extensions=EVERYTHING)


def found(exchange: Exchange) -> set[str]:
    return {f.check.id for f in run_checks(exchange)}


def exchange(group: str, sent: Command | Message | None, reply: Reply | None, *,
             before: Session = READY, **fields: object) -> Exchange:
    return Exchange(SEED, before, group, sent, reply, **fields)  # type: ignore[arg-type]


def plain(session: Session) -> Session:
    """``session`` as if EHLO had advertised nothing."""
    return replace(session, extensions=parse_ehlo(("mx.example.test",)))


# --- the EHLO reply --------------------------------------------------------------------------

def test_ehlo_lines_must_be_keywords_with_parameters():
    good = Reply.build(250, *EHLO_LINES)
    bad = Reply.build(250, "mx.example.test", "SIZE=1000", "-BAD")
    ehlo = Command.of("EHLO client.example.test")
    assert "ehlo_reply_well_formed" not in found(exchange("EHLO", ehlo, good))
    assert "ehlo_reply_well_formed" in found(exchange("EHLO", ehlo, bad))


# --- PIPELINING ------------------------------------------------------------------------------

def test_a_lost_reply_in_a_batch_names_pipelining_only_where_advertised():
    timeout = ReplyTimeout("no complete reply within 1s")
    rcpt = Command.of("RCPT TO:<a@example.test>")
    lost = exchange("RCPT", rcpt, None, before=replace(READY, state=State.MAIL), error=timeout,
                    batch=(1, 1))
    assert found(lost) == {"pipelining_answers_every_command"}
    # Without PIPELINING, or for the first command of a batch, no reply is no reply.
    assert found(replace(lost, before=plain(lost.before))) == {"command_answered"}
    assert found(replace(lost, batch=(0, 0))) == {"command_answered"}
    # After an earlier command of the batch already went unanswered, only that one is the
    # finding: the later ones were lost with it.
    assert found(replace(lost, batch=(2, 1))) == set()


# --- ENHANCEDSTATUSCODES ---------------------------------------------------------------------

NOOP = Command.of("NOOP")


@pytest.mark.parametrize(("lines", "ok"), [
    (("2.0.0 Ok",), True),
    (("2.0.0",), True),
    (("Ok",), False),
    (("5.0.0 Ok",), False),  # of another class than 250
    (("2.00.0 Ok",), False),  # a leading zero (RFC 3463 §2)
    (("2.0.0Ok",), False),  # no space after the code
    (("2.1000.0 Ok",), False),
])
def test_every_reply_line_begins_with_an_enhanced_code_of_its_class(lines, ok):
    result = found(exchange("NOOP", NOOP, Reply.build(250, *lines)))
    assert ("enhanced_status_code_valid" not in result) is ok


def test_a_multiline_reply_carries_one_enhanced_code_on_every_line():
    help_ = Command.of("HELP")
    same = Reply.build(214, "2.0.0 Commands:", "2.0.0 HELO EHLO")
    different = Reply.build(214, "2.0.0 Commands:", "2.0.1 HELO EHLO")
    assert "enhanced_status_code_valid" not in found(exchange("HELP", help_, same))
    assert "enhanced_status_code_valid" in found(exchange("HELP", help_, different))


def test_enhanced_codes_are_not_asked_of_the_greeting_hello_3yz_or_without_the_extension():
    assert "enhanced_status_code_valid" not in found(
        exchange("EHLO", Command.of("EHLO a.example.test"), Reply.build(250, "mx ok")))
    assert "enhanced_status_code_valid" not in found(
        exchange("DATA", Command.of("DATA"), Reply.build(354, "go on"),
                 before=replace(READY, state=State.RCPT, recipients=1)))
    assert "enhanced_status_code_valid" not in found(
        exchange("NOOP", NOOP, Reply.build(250, "Ok"), before=plain(READY)))


# --- SIZE ------------------------------------------------------------------------------------

def test_a_declared_size_over_the_limit_must_be_refused():
    over, under = Command.of("MAIL FROM:<> SIZE=1001"), Command.of("MAIL FROM:<> SIZE=1000")
    accepted, refused = Reply.build(250, "2.1.0 Ok"), Reply.build(552, "5.3.4 no")
    assert "size_limit_enforced" in found(exchange("MAIL", over, accepted))
    assert "size_limit_enforced" not in found(exchange("MAIL", over, refused))
    assert "size_limit_enforced" not in found(exchange("MAIL", under, accepted))
    unlimited = replace(READY, extensions=parse_ehlo(("mx.example.test", "SIZE 0")))
    assert "size_limit_enforced" not in found(exchange("MAIL", over, accepted, before=unlimited))


def test_a_message_over_the_limit_must_be_refused():
    in_data = replace(READY, state=State.DATA, recipients=1)
    big, small = ext.oversized_message(1001), Message(b"Subject: small\r\n")
    accepted = Reply.build(250, "2.0.0 Ok")
    assert "size_limit_enforced" in found(exchange(END_OF_DATA, big, accepted, before=in_data))
    assert "size_limit_enforced" not in found(
        exchange(END_OF_DATA, small, accepted, before=in_data))


# --- parameters of extensions not advertised ---------------------------------------------------

def test_a_parameter_of_an_extension_not_advertised_should_be_refused():
    only_size = replace(READY, extensions=parse_ehlo(("mx.example.test", "SIZE 1000")))
    with_dsn = Command.of("MAIL FROM:<> RET=FULL SIZE=10")
    ok = Reply.build(250, "Ok")
    assert "esmtp_parameters_advertised" in found(exchange("MAIL", with_dsn, ok, before=only_size))
    assert "esmtp_parameters_advertised" not in found(exchange("MAIL", with_dsn, ok))
    assert "esmtp_parameters_advertised" not in found(
        exchange("MAIL", with_dsn, Reply.build(555, "no"), before=only_size))
    # After HELO nothing was advertised, nor offered: not this check's business.
    helo = Session(state=State.READY)
    assert "esmtp_parameters_advertised" not in found(exchange("MAIL", with_dsn, ok, before=helo))


def test_every_declared_parameter_has_values_and_an_extension():
    declared = {p for e in EXTENSIONS for p in (*e.mail_parameters, *e.rcpt_parameters)}
    assert declared == {*ext.MAIL_PARAMETER_VALUES, *ext.RCPT_PARAMETER_VALUES}
    assert set(EXTENSION_OF_PARAMETER) == declared


@given(st.one_of(ext.mail_with_parameters(), ext.rcpt_with_parameters()))
def test_commands_with_parameters_follow_the_grammar_and_read_back(command: Command):
    assert follows_grammar(command.line)
    assert command.parameters
    assert set(command.parameters) <= set(EXTENSION_OF_PARAMETER)


@given(ext.mail_with_parameters(), st.integers(0, 10**9))
def test_with_size_declares_the_size_and_keeps_the_rest(mail: Command, size: int):
    resized = ext.with_size(mail, size)
    assert follows_grammar(resized.line)
    assert resized.parameters["SIZE"] == str(size)
    assert {k: v for k, v in resized.parameters.items() if k != "SIZE"} == \
        {k: v for k, v in mail.parameters.items() if k != "SIZE"}


# --- STARTTLS --------------------------------------------------------------------------------

def test_starttls_takes_no_argument():
    ready = Reply.build(220, "2.0.0 Ready")
    assert "starttls_refuses_argument" in found(
        exchange("STARTTLS", Command(b"STARTTLS x\r\n", valid=False), ready))
    assert "starttls_refuses_argument" not in found(
        exchange("STARTTLS", Command.of("STARTTLS"), ready))


def test_starttls_is_not_advertised_over_tls():
    ehlo = Command.of("EHLO client.example.test")
    over_tls = Session(state=State.INIT, tls=True)
    assert "starttls_not_readvertised" in found(
        exchange("EHLO", ehlo, Reply.build(250, *EHLO_LINES), before=over_tls))
    assert "starttls_not_readvertised" not in found(
        exchange("EHLO", ehlo, Reply.build(250, *EHLO_LINES), before=Session(state=State.INIT)))


def test_a_reply_over_tls_to_lines_injected_before_it_is_named():
    starttls = Command(b"STARTTLS\r\nNOOP\r\n", group="STARTTLS")
    after = Session(state=State.INIT, tls=True)
    finding = run_checks(exchange("STARTTLS", starttls, None, before=after,
                                  unsolicited=Reply.build(250, "Ok")))
    assert [f.check.id for f in finding] == ["starttls_discards_plaintext"]
    assert "b'NOOP\\r\\n'" in finding[0].complaint
    assert found(exchange("STARTTLS", starttls, None, before=after)) == set()


def test_a_tls_upgrade_starts_the_session_over():
    in_transaction = replace(READY, state=State.RCPT, recipients=2, authenticated=True)
    upgraded = advance(in_transaction, "STARTTLS", 220)
    assert upgraded.state is State.INIT
    assert not upgraded.extensions.keywords
    assert not upgraded.authenticated


# --- CHUNKING --------------------------------------------------------------------------------

def test_data_after_a_chunk_must_be_refused():
    rcpt = replace(READY, state=State.RCPT, recipients=1)
    chunked = advance(rcpt, "BDAT", 250)
    assert chunked.chunked
    assert chunked.state is State.RCPT
    data = Command.of("DATA")
    assert "bdat_not_mixed_with_data" in found(
        exchange("DATA", data, Reply.build(354, "go on"), before=chunked))
    assert "bdat_not_mixed_with_data" not in found(
        exchange("DATA", data, Reply.build(503, "5.5.1 no"), before=chunked))
    assert "bdat_not_mixed_with_data" not in found(
        exchange("DATA", data, Reply.build(354, "go on"), before=rcpt))


def test_503_between_the_chunks_of_a_message_is_no_finding():
    # Exim answers 503 to anything but BDAT and RSET after a chunk without LAST.
    chunked = advance(replace(READY, state=State.RCPT, recipients=1), "BDAT", 250)
    for line in ("EHLO client.example.test", "HELO client.example.test", "NOOP",
                 "VRFY postmaster"):
        command = Command.of(line)
        assert not found(exchange(command.verb, command, Reply.build(503, "5.5.1 BDAT only"),
                                  before=chunked)), line
    ehlo = Command.of("EHLO client.example.test")  # outside a message, 503 is still wrong
    assert "hello_refusal_codes" in found(exchange("EHLO", ehlo, Reply.build(503, "5.5.1 no")))


def test_the_error_count_carries_over_a_tls_upgrade():
    # A server that gives up after three errors counts them across STARTTLS (Exim does).
    errors = replace(READY, errors=2)
    assert upgraded(errors).errors == 2


def test_the_last_chunk_ends_the_transaction_only_when_accepted():
    rcpt = replace(READY, state=State.RCPT, recipients=1)
    done = advance(rcpt, "BDAT", 250, last_chunk=True)
    assert done.state is State.READY
    assert done.messages == 1
    assert not done.chunked
    # A refused chunk leaves the state "indeterminate" (RFC 3030 §2): the model keeps it.
    assert advance(rcpt, "BDAT", 554, last_chunk=True).state is State.RCPT
    assert ext.chunk(b"abc", True).last_chunk
    assert not ext.chunk(b"abc", False).last_chunk


# --- AUTH ------------------------------------------------------------------------------------

AUTH = Command.of("AUTH PLAIN AGNvbmZvcm1hbmNlAHNlY3JldA==")


def test_auth_only_once_and_never_in_a_transaction():
    authenticated = advance(READY, "AUTH", 235)
    assert authenticated.authenticated
    success = Reply.build(235, "2.7.0 Ok")
    assert "auth_once" in found(exchange("AUTH", AUTH, success, before=authenticated))
    assert "auth_once" not in found(exchange("AUTH", AUTH, success))
    assert "auth_once" not in found(
        exchange("AUTH", AUTH, Reply.build(503, "5.5.1 no"), before=authenticated))
    in_transaction = replace(READY, state=State.MAIL)
    assert "auth_not_in_transaction" in found(
        exchange("AUTH", AUTH, Reply.build(334, ""), before=in_transaction))
    assert "auth_not_in_transaction" not in found(
        exchange("AUTH", AUTH, Reply.build(503, "5.5.1 no"), before=in_transaction))


def test_a_cancelled_auth_exchange_is_answered_501():
    cancel = Command(b"*\r\n", group="AUTH")
    assert "auth_cancel_refused" in found(exchange("AUTH", cancel, Reply.build(235, "2.7.0 Ok")))
    assert "auth_cancel_refused" not in found(
        exchange("AUTH", cancel, Reply.build(501, "5.7.0 cancelled")))


# --- SMTPUTF8 --------------------------------------------------------------------------------

def test_a_utf8_mailbox_needs_a_transaction_that_asked_for_smtputf8():
    ok = Reply.build(250, "2.1.0 Ok")
    plain_mail = Command("MAIL FROM:<üser@example.test>\r\n".encode(), valid=False)
    asking_mail = Command("MAIL FROM:<üser@example.test> SMTPUTF8\r\n".encode(), valid=False)
    rcpt = Command("RCPT TO:<δοκιμή@example.test>\r\n".encode(), valid=False)
    assert asking_mail.parameters == {"SMTPUTF8": None}
    assert plain_mail.utf8_mailbox
    assert rcpt.utf8_mailbox
    assert not Command.of("MAIL FROM:<a@example.test> SMTPUTF8").utf8_mailbox
    assert "utf8_address_needs_smtputf8" in found(exchange("MAIL", plain_mail, ok))
    assert "utf8_address_needs_smtputf8" not in found(exchange("MAIL", asking_mail, ok))
    # A transaction that asked: its recipients may be UTF-8; one that did not: not.
    asked = advance(READY, "MAIL", 250, smtputf8=True)
    assert asked.utf8
    assert "utf8_address_needs_smtputf8" not in found(exchange("RCPT", rcpt, ok, before=asked))
    unasked = advance(READY, "MAIL", 250)
    assert "utf8_address_needs_smtputf8" in found(exchange("RCPT", rcpt, ok, before=unasked))
    assert "utf8_address_needs_smtputf8" not in found(
        exchange("RCPT", rcpt, Reply.build(553, "5.6.7 no"), before=unasked))
    assert not advance(asked, "RSET", 250).utf8
