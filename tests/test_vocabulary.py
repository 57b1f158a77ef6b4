"""The vocabulary is declared once: the tables, the model, the strategies, the state machine's
rules and the reference server all derive from it, and its grammar agrees with what the
strategies call valid and malformed."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conformance import strategies as smtp
from conformance.engine.client import SMTPClient
from conformance.protocol.commands import Command, group_of
from conformance.protocol.model import ON_SUCCESS, is_positive
from conformance.protocol.tables import EXTENSION_GROUPS, GROUPS, PROFILES, SUPPLEMENTARY_ROWS
from conformance.protocol.vocabulary import (
    END_OF_DATA,
    EXTENSION_BY_KEYWORD,
    EXTENSION_VERBS,
    GREETING,
    SEED_VERBS,
    UNMODELLED_VERBS,
    UNRECOGNISED,
    VERBS,
    State,
    VerbName,
    follows_grammar,
)
from conformance.search.machine import SMTPConformance
from conformance.strategies.commands import ARGUMENTS
from conformance.testing.reference_server import ReferenceServer, implemented_verbs

ALL_VERBS = sorted(VERBS)
SEED_NAMES = [verb.name for verb in SEED_VERBS]


# --- tables ------------------------------------------------------------------------------------

def test_the_seed_groups_are_the_seed_verbs_in_order_with_the_pseudo_commands():
    assert GROUPS == (GREETING, "HELO", "EHLO", "MAIL", "RCPT", "DATA", END_OF_DATA, "RSET",
                      "SEND", "SOML", "SAML", "VRFY", "EXPN", "HELP", "NOOP", "QUIT", "TURN")
    assert [g for g in GROUPS if g in VERBS] == SEED_NAMES


def test_every_verb_has_a_row_in_every_profile_and_every_row_is_a_verb():
    for profile in PROFILES.values():
        for verb in VERBS:
            assert profile.row(verb).group == verb
        assert set(profile.rows) <= {*VERBS, GREETING, END_OF_DATA}
    assert set(SUPPLEMENTARY_ROWS) <= {*VERBS, UNRECOGNISED}
    assert tuple(verb.name for verb in EXTENSION_VERBS) == EXTENSION_GROUPS


def test_every_extension_verb_belongs_to_a_declared_extension():
    assert all(verb.extension in EXTENSION_BY_KEYWORD for verb in EXTENSION_VERBS)


def test_the_verbs_that_end_a_batch_are_rfc_2920s():
    ends = {name for name, verb in VERBS.items() if verb.ends_batch}
    # RFC 2920 §3.1; HELO treated as EHLO; STARTTLS (RFC 3207 §4) and AUTH (RFC 4954 §4)
    assert ends == {"EHLO", "DATA", "VRFY", "EXPN", "TURN", "QUIT", "NOOP", "HELO",
                    "STARTTLS", "AUTH"}


# --- commands and model ----------------------------------------------------------------------

@pytest.mark.parametrize("verb", ALL_VERBS)
def test_a_verb_of_the_vocabulary_is_its_own_group(verb):
    assert group_of(f"{verb.lower()} x\r\n".encode()) == verb


@pytest.mark.parametrize("verb", sorted(UNMODELLED_VERBS))
def test_a_verb_outside_the_vocabulary_is_unrecognised(verb):
    assert group_of(f"{verb}\r\n".encode()) == UNRECOGNISED


def test_the_model_moves_as_the_verbs_declare():
    declared = {(verb.name, before): after for verb in VERBS.values()
                for before, after in verb.moves.items()}
    assert dict(ON_SUCCESS) == {**declared, (GREETING, State.GREETING): State.INIT}
    # and what is declared is what the RFCs say
    assert ON_SUCCESS[("RSET", State.INIT)] is State.INIT  # RFC 5321 §4.1.1.5
    assert ON_SUCCESS[("RSET", State.RCPT)] is State.READY
    assert ON_SUCCESS[("HELO", State.RCPT)] is State.READY  # §4.1.4: HELO/EHLO reset
    assert ON_SUCCESS[("STARTTLS", State.READY)] is State.INIT  # RFC 3207 §4.2
    assert ON_SUCCESS[("TURN", State.READY)] is State.CLOSED  # RFC 821 §4.1.1
    assert ("RCPT", State.READY) not in ON_SUCCESS  # §3.3: no RCPT before MAIL
    assert ("DATA", State.MAIL) not in ON_SUCCESS  # no DATA before a recipient
    assert is_positive("DATA", 354)
    assert not is_positive("DATA", 250)
    assert all(is_positive(name, 250) for name in VERBS if name != "DATA")


# --- strategies --------------------------------------------------------------------------------

def test_every_argument_grammar_has_a_strategy():
    assert {verb.argument.name for verb in VERBS.values()} == set(ARGUMENTS)


@pytest.mark.parametrize("verb", ALL_VERBS)
def test_each_verbs_example_follows_its_grammar(verb):
    assert follows_grammar(f"{VERBS[verb].example}\r\n".encode())


@pytest.mark.parametrize("verb", ALL_VERBS)
@settings(max_examples=50)
@given(data=st.data())
def test_valid_commands_follow_the_grammar(verb, data):
    command = data.draw(smtp.valid_commands(verb))
    assert command.valid
    assert command.group == verb
    assert follows_grammar(command.line), command


@pytest.mark.parametrize("verb", SEED_NAMES)
@settings(max_examples=50)
@given(data=st.data())
def test_malformed_commands_break_the_grammar(verb, data):
    command = data.draw(smtp.malformed_commands(verb=verb))
    assert not command.valid
    assert not follows_grammar(command.line), command


@settings(max_examples=100)
@given(smtp.raw_lines())
def test_raw_lines_break_the_grammar(command: Command):
    assert not follows_grammar(command.line), command


@pytest.mark.parametrize(("line", "ok"), [
    (b"NOOP\r\n", True), (b"noop x\r\n", True), (b"NOOP \r\n", False), (b"RSET x\r\n", False),
    (b"MAIL FROM:<a@example.test> SIZE=10\r\n", True), (b"MAIL FROM: <a@example.test>\r\n", False),
    (b"RCPT TO:<Postmaster>\r\n", True), (b"EHLO [127.0.0.1]\r\n", True), (b"HELO\r\n", False),
    (b"VRFY a b\r\n", False), (b"NOOP\n", False), (b"BDAT 10 LAST\r\n", True),
    (b"XYZZY\r\n", False), (b"HELP " + b"x" * 600 + b"\r\n", False),
])
def test_the_grammar_of_a_command_line(line, ok):
    assert follows_grammar(line) is ok


# --- the state machine and the reference server ----------------------------------------------

def test_the_machine_has_one_rule_per_seed_verb_and_per_extension_feature():
    names = {rule.function.__name__ for rule in SMTPConformance.setup_state().rules}
    per_verb = {f"send_{name.lower()}" for name in SEED_NAMES}
    assert per_verb <= names
    assert names - per_verb == {"send_raw_line", "transaction_complete",
                                "transaction_interrupted", "send_pipelined",
                                "send_with_parameters", "send_starttls", "send_bdat",
                                "send_auth", "send_utf8", "transaction_probed",
                                "send_bare_line_break"}
    # Each extension verb has a rule that sends it.
    assert {f"send_{verb.name.lower()}" for verb in EXTENSION_VERBS} <= names


@pytest.mark.parametrize("profile", list(PROFILES))
def test_the_reference_servers_help_lists_the_verbs_it_implements(profile):
    def reply_to(server: ReferenceServer, line: str) -> list[str]:
        with SMTPClient(server.address, timeout=5) as client:  # a session each: QUIT ends one
            client.connect()
            client.command(b"EHLO client.example.test\r\n")
            reply = client.command(f"{line}\r\n".encode())
            return [str(reply.code), *reply.lines]

    with ReferenceServer(profile=PROFILES[profile]) as server:
        listed = reply_to(server, "HELP")[1].removeprefix("Commands: ").split()
        answered = {name for name in SEED_NAMES
                    if reply_to(server, VERBS[name].example)[0] != "502"}
    assert listed == list(implemented_verbs(PROFILES[profile]))
    assert answered == set(listed)


def test_each_verb_name_is_declared_once_as_a_name_and_once_as_a_verb():
    names = {attribute: name for attribute, name in vars(VerbName).items()
             if not attribute.startswith("_")}
    assert all(attribute == name for attribute, name in names.items())
    assert list(names.values()) == list(VERBS)
    assert all(type(verb.name) is str for verb in VERBS.values())  # plain data, as groups are


# Strings spelt like a verb that do not mean the verb, by module: what each means there.
NOT_A_VERB = {
    ("conformance/checks/extensions.py", "STARTTLS"): "the EHLO keyword",
    ("conformance/checks/extensions.py", "AUTH"): "the EHLO keyword",
    ("conformance/engine/session.py", "AUTH"): "the EHLO keyword",
    ("conformance/search/extension_steps.py", "STARTTLS"): "the EHLO keyword",
    ("conformance/search/plan.py", "STARTTLS"): "the EHLO keyword",
    ("conformance/search/plan.py", "AUTH"): "the EHLO keyword",
    ("conformance/strategies/extensions.py", "AUTH"): "the MAIL parameter (RFC 4954 §5)",
    ("conformance/strategies/commands.py", "MAIL"): "a string argument that looks like a verb",
}
DECLARING = {"conformance/protocol/vocabulary.py", "conformance/protocol/tables.py"}


def _verb_literals(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    inside_text = {id(node) for parent in ast.walk(tree)
                   if isinstance(parent, ast.JoinedStr) for node in ast.walk(parent)}
    inside_text |= {id(owner.body[0].value) for owner in ast.walk(tree)
                    if isinstance(owner, ast.Module | ast.ClassDef | ast.FunctionDef)
                    and owner.body and isinstance(owner.body[0], ast.Expr)}
    return {str(node.value) for node in ast.walk(tree) if isinstance(node, ast.Constant)
            and node.value in VERBS and id(node) not in inside_text}


def test_code_names_a_verb_by_its_declared_name_not_by_a_string():
    root = Path(__file__).parent.parent
    spelt = {(str(path.relative_to(root)), name)
             for path in sorted((root / "conformance").rglob("*.py"))
             if str(path.relative_to(root)) not in DECLARING
             for name in _verb_literals(path)}
    assert spelt - NOT_A_VERB.keys() == set()  # say V.NAME
    assert NOT_A_VERB.keys() - spelt == set()  # an exception no longer needed
