"""python -m conformance learn: the machine learned from the reference server is the model's,
each state fault server's differs from the model at exactly its fault (and the checks name
it), two servers' diff names their difference, and a server that answers the same session
differently is reported, not learned around."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conformance import cli
from conformance.engine.address import ServerAddress
from conformance.learn import compare
from conformance.learn.alphabet import (
    CLOSED,
    NO_REPLY,
    NOT_SENT,
    alphabet,
    codes_of,
    output_of,
)
from conformance.learn.learner import Learning
from conformance.learn.machine import Learned, Transition, label_of, model_step
from conformance.learn.run import Server, Target, learn_all, render_diff, summary
from conformance.protocol.commands import Command
from conformance.protocol.model import Session, advance
from conformance.protocol.tables import get_profile
from conformance.protocol.vocabulary import GREETING, SEED_VERBS, State, V
from mtas.postfix import DOMAIN as POSTFIX_DOMAIN
from tests.esmtp_server import EsmtpServer
from tests.fault_server import FaultServer
from tests.tls_server import Certificates

BUDGET = 90.0  # seconds per server: each below finishes well within it
MODEL_STATES = {State.INIT.name, State.READY.name, State.MAIL.name, State.RCPT.name,
                State.CLOSED.name}

# The state faults of tests/fault_server.py and the one check each must be blamed on.
STATE_FAULTS = {
    "rcpt_without_mail_accepted": "rcpt_requires_mail",
    "data_without_rcpt_354": "data_requires_recipient",
    "rset_keeps_mail_from": "reset_clears_transaction",
    "helo_keeps_transaction": "reset_clears_transaction",
    "second_ehlo_503": "hello_refusal_codes",
    "rset_before_hello_503": "rset_succeeds",
    # Not a state fault, a form the alphabet has: MAIL in lower case refused as unknown.
    "lowercase_verbs_unrecognised": "verb_case_insensitive",
}


def learned(tmp_path: Path, **servers: FaultServer) -> dict[str, Server]:
    found = learn_all([Target(name, s.address) for name, s in servers.items()], tmp_path,
                      profile=get_profile("seed"), timeout=1.0, budget=BUDGET)
    return {server.name: server for server in found}


# --- the alphabet and the machine as data -------------------------------------------------

def test_the_alphabet_is_every_seed_verb_and_the_strategies_forms():
    letters = alphabet()
    assert [letter.group for letter in letters.values()][:len(SEED_VERBS)] == \
        [verb.name for verb in SEED_VERBS]
    assert all(letters[verb.name].command.valid for verb in SEED_VERBS)
    assert not letters["RCPT (malformed)"].command.valid
    assert letters["unknown verb"].group not in {verb.name for verb in SEED_VERBS}
    assert letters[V.DATA].move.message is None  # safe mode: no message
    assert alphabet(deliver=True)[V.DATA].move.message is not None
    assert alphabet(rcpt_domain="mx.example.test")[V.RCPT].command == \
        Command.of("RCPT TO:<postmaster@mx.example.test>")
    assert letters["MAIL (lower case)"].command == Command.of("mail FROM:<sender@example.test>")


def test_the_extension_commands_are_inputs_where_advertised():
    assert not {V.STARTTLS, V.AUTH, V.BDAT} & set(alphabet())
    letters = alphabet(extensions=frozenset({"STARTTLS", "AUTH", "CHUNKING", "SIZE"}))
    assert letters[V.STARTTLS].move.upgrade  # STARTTLS and its handshake
    assert letters[V.AUTH].command.first_line.startswith("AUTH PLAIN ")
    assert V.BDAT not in letters  # a last chunk completes a message: only when delivering
    delivering = alphabet(deliver=True, extensions=frozenset({"CHUNKING"}))
    assert delivering[V.BDAT].command.last_chunk
    assert V.STARTTLS not in delivering


def test_a_state_after_a_tls_upgrade_or_auth_is_labelled_so():
    session = advance(Session(), GREETING, 220)
    assert label_of(session) == "INIT"
    letters = alphabet(extensions=frozenset({"STARTTLS", "AUTH"}))
    for letter, output in (("EHLO", "250"), ("STARTTLS", "220"), ("EHLO", "250"),
                           ("AUTH", "235")):
        session = model_step(session, letters[letter], output)
    assert label_of(session) == "READY+TLS+AUTH"
    assert model_step(session, letters[V.BDAT] if V.BDAT in letters else letters["NOOP"],
                      NOT_SENT) == session


def test_outputs_are_codes_classes_or_what_happened_to_the_connection():
    assert output_of(354, 250) == "354 250"
    assert output_of(250, classes=True) == "2xx"
    assert output_of(None) == NO_REPLY
    assert codes_of("354 250") == (354, 250)
    assert codes_of(CLOSED) == codes_of("2xx") == ()


def _two_state_machine(server: str, rcpt: str) -> Learned:
    t = Transition
    return Learned(server, ("HELO", "RCPT"), ("s0", "s1"), {"s0": (), "s1": ("HELO",)},
                   {"s0": "INIT", "s1": "READY"},
                   (t("s0", "HELO", "250", "s1"), t("s0", "RCPT", "503", "s0"),
                    t("s1", "HELO", "250", "s1"), t("s1", "RCPT", rcpt, "s1")))


def test_a_machine_as_json_and_dot():
    machine = _two_state_machine("a", "503")
    data = machine.to_json()
    assert data["initial"] == "s0"
    assert data["states"][1] == {"id": "s1", "model_state": "READY", "access": ["HELO"]}
    dot = machine.to_dot()
    assert 's1 [label="s1\\nREADY"]' in dot
    assert 's0 -> s1 [label="HELO / 250"]' in dot
    assert machine.run(["RCPT", "HELO", "RCPT"]) == ["503", "250", "503"]


class _Judged:
    def __init__(self) -> None:
        self.sent: list[tuple[str, ...]] = []

    def __call__(self, inputs: tuple[str, ...]) -> compare.Judged:
        self.sent.append(inputs)
        return compare.Judged((), ())


def test_two_machines_are_told_apart_by_their_shortest_differing_sequence():
    judges = (_Judged(), _Judged())
    found = compare.between(_two_state_machine("a", "503"), _two_state_machine("b", "250"),
                            judges)  # type: ignore[arg-type]
    assert [(d.inputs, d.outputs) for d in found] == [
        (("HELO", "RCPT"), (("250", "503"), ("250", "250")))]
    assert found[0].model_states == (("READY", "READY"),)
    assert judges[0].sent == judges[1].sent == [("HELO", "RCPT")]  # each side on its server
    assert compare.between(_two_state_machine("a", "503"), _two_state_machine("b", "503"),
                           judges) == []  # type: ignore[arg-type]


def test_the_diff_lists_each_servers_own_command_where_their_domains_differ():
    a = Server("a", ServerAddress("127.0.0.1", 1), "a.test")
    b = Server("b", ServerAddress("127.0.0.1", 2), "b.test")
    table = render_diff([(a, b, [])], {"a": alphabet(rcpt_domain="a.test"),
                                       "b": alphabet(rcpt_domain="b.test")})
    assert "- RCPT: `RCPT TO:<postmaster@a.test>` (a), `RCPT TO:<postmaster@b.test>` (b)" \
        in table
    assert "- QUIT: `QUIT`\n" in table  # the same command for both: said once


def test_a_server_learned_no_machine_of_is_said_to_have_none():
    stopped = Learning(machine=None, queries=3, resets=3, steps=5, seconds=1.0,
                       partial="out of budget before a first hypothesis")
    [line] = summary([Server("slow", ServerAddress("127.0.0.1", 1), learning=stopped)])
    assert line.startswith("slow: no machine, 3 queries")
    assert line.endswith("(out of budget before a first hypothesis)")


@pytest.mark.parametrize(("servers", "said"), [
    (["embedded", "reference=127.0.0.1:1"], "two servers with one name"),
    (["127.0.0.1:1", "127.0.0.1:1"], "two servers with one name"),
    (["../up=127.0.0.1:1"], "NAME names files"),
    (["a=not an address"], "not an address"),
])
def test_servers_are_named_once_and_safely_before_anything_starts(servers, said, tmp_path,
                                                                   capsys):
    argv = ["learn", "--out", str(tmp_path)]
    for server in servers:
        argv += ["--server", server]
    assert cli.main(argv) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ")
    assert said in error
    assert error.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


# --- against servers ------------------------------------------------------------------------

@pytest.mark.timeout(300)
def test_the_reference_server_learned_from_the_command_line_is_the_model(tmp_path, capsys):
    status = cli.main(["learn", "--out", str(tmp_path), "--budget", str(BUDGET)])
    said = capsys.readouterr().out
    assert status == 0, said
    data = json.loads((tmp_path / "reference.json").read_text())
    assert data["partial"] is None
    assert data["nondeterminism"] is None
    states = data["machine"]["states"]
    assert {s["model_state"] for s in states} == MODEL_STATES
    assert len(states) == len(MODEL_STATES)  # one learned state per model state
    assert data["divergences"] == []
    assert data["figures"]["queries"] > 0
    assert data["figures"]["resets"] > 0
    assert (tmp_path / "reference.dot").read_text().startswith("digraph learned {")
    assert "0 divergences from the model" in said


@pytest.mark.timeout(300)
@pytest.mark.parametrize("fault", sorted(STATE_FAULTS))
def test_a_state_fault_is_where_the_learned_machine_leaves_the_model(tmp_path, fault,
                                                                    capsys):
    with FaultServer(fault) as server:
        found = learned(tmp_path, fault=server)["fault"]
        # Its session is saved as a run saves one, and replaying it shows the same finding.
        [saved] = json.loads((tmp_path / "fault.json").read_text())["divergences"][0]["replays"]
        status = cli.main(["replay", str(tmp_path / saved), "--server", str(server.address),
                           "--timeout", "1"])
    said = capsys.readouterr().out
    assert status == 1, said
    assert f"[{STATE_FAULTS[fault]}]" in said
    assert "the recorded finding" in said
    assert found.learning is not None
    assert found.learning.partial is None
    [divergence] = found.divergences
    assert [c.check for c in divergence.complaints] == [STATE_FAULTS[fault]]
    assert divergence.reproduced
    # The machine itself shows it: its outputs on the sequence are the ones judged.
    assert found.learned is not None
    assert found.learned.run(divergence.inputs) == list(divergence.outputs)
    # The learner's session goes on after the fault, as the server does (a run's session
    # would end there): the machine holds the server's next answer, not a close of ours.
    if not divergence.outputs[-1].startswith("354"):  # safe mode ends a session at 354
        assert found.learned.run((*divergence.inputs, "NOOP"))[-1] == "250"


@pytest.mark.timeout(400)
def test_a_transaction_kept_across_starttls_is_where_the_learned_machine_leaves_it(tmp_path):
    """With the extensions' commands as inputs (here STARTTLS, the one advertised), the
    fault (RFC 3207 §4.2) is found by the shortest sequence showing it. The budget is short:
    the divergence needs no finished machine (the walk beside the model finds it)."""
    context = Certificates(tmp_path).server_context()
    with EsmtpServer("starttls_keeps_transaction", tls=context,
                     extensions=["STARTTLS"]) as server:
        [found] = learn_all([Target("tls", server.address)], tmp_path / "out",
                            profile=get_profile("seed"), timeout=1.0, budget=30,
                            extensions=True)
    assert found.learned is not None
    assert V.STARTTLS in found.learned.alphabet
    assert any(t.input == V.STARTTLS and t.output == "220" for t in found.learned.transitions)
    first = found.divergences[0]
    assert first.inputs == (V.EHLO, V.MAIL, V.STARTTLS, V.RCPT)
    assert first.outputs == ("250", "250", "220", "250")
    assert [c.check for c in first.complaints] == ["reset_clears_transaction"]
    assert first.reproduced


@pytest.mark.timeout(300)
def test_the_diff_of_two_servers_names_their_difference(tmp_path):
    with FaultServer() as plain, FaultServer("rcpt_without_mail_accepted") as fault:
        learned(tmp_path, plain=plain, fault=fault)
    [pair] = json.loads((tmp_path / "diff.json").read_text())
    assert pair["servers"] == ["plain", "fault"]
    rcpt = next(d for d in pair["differences"] if d["inputs"] == ["RCPT"])
    assert rcpt["model_states"][0] == ["INIT", "INIT"]
    assert rcpt["plain"]["outputs"] == ["503"]
    assert rcpt["plain"]["complaints"] == []
    assert rcpt["fault"]["outputs"] == ["250"]
    assert [c["check"] for c in rcpt["fault"]["complaints"]] == ["rcpt_requires_mail"]
    table = (tmp_path / "diff.md").read_text()
    assert "| RCPT | 503 | 250 | INIT | no complaint | rcpt_requires_mail: " in table
    assert table.count("| RCPT | 503 | 250 |") == 1  # one row per (input, answers)


@pytest.mark.timeout(300)
def test_a_nondeterministic_server_is_reported_not_learned_around(tmp_path):
    with FaultServer("mail_553_at_random") as server:
        found = learned(tmp_path, random=server)["random"]
    assert found.learning is not None
    nondeterminism = found.learning.nondeterminism
    assert nondeterminism is not None
    assert nondeterminism.first != nondeterminism.then
    assert "553" in (nondeterminism.first, nondeterminism.then)
    data = json.loads((tmp_path / "random.json").read_text())
    assert data["nondeterminism"]["inputs"] == list(nondeterminism.inputs)
    assert data["partial"].startswith("stopped: after")


@pytest.mark.timeout(600)
def test_postfix_is_learned_within_the_budget(postfix, tmp_path, capsys):
    """CI's Postfix (Debian's, `mtas/postfix.py`'s settings), as published in docs/learned:
    a whole machine within the default budget, no nondeterminism and nothing outside the
    model: MAIL before HELO is taken (smtpd_helo_required=no), so the greeting's state is
    also HELO's."""
    status = cli.main(["learn", "--server", f"postfix={postfix.address}", "--rcpt-domain",
                       POSTFIX_DOMAIN, "--profile", "rfc5321", "--out", str(tmp_path)])
    said = capsys.readouterr().out
    assert status == 0, said
    data = json.loads((tmp_path / "postfix.json").read_text())
    assert data["partial"] is None, said
    assert data["nondeterminism"] is None
    assert {s["model_state"] for s in data["machine"]["states"]} == {
        State.INIT.name, State.MAIL.name, State.RCPT.name, State.CLOSED.name}
    assert data["divergences"] == []
    print(f"Postfix learned: {data['figures']}")  # the figure, in CI's log with -s or -rA


# --- the published machines (docs/learned, `python -m mtas learn --out docs/learned`) -------

PUBLISHED = Path(__file__).resolve().parent.parent / "docs" / "learned"


def test_the_published_machines_are_whole_and_the_reference_one_is_the_model():
    pairs = json.loads((PUBLISHED / "diff.json").read_text())
    names = {name for pair in pairs for name in pair["servers"]}
    assert names == {"reference", "postfix", "exim", "opensmtpd", "sendmail"}
    for name in names:
        data = json.loads((PUBLISHED / f"{name}.json").read_text())
        assert data["partial"] is None, name  # each learned to the end, within its budget
        assert data["nondeterminism"] is None, name
        assert (PUBLISHED / f"{name}.dot").exists()
        for divergence in data["divergences"]:
            assert divergence["reproduced"], (name, divergence["inputs"])
            assert all((PUBLISHED / path).exists() for path in divergence["replays"])
    reference = json.loads((PUBLISHED / "reference.json").read_text())
    assert {s["model_state"] for s in reference["machine"]["states"]} == MODEL_STATES
    assert reference["divergences"] == []
    assert "MAIL (lower case)" in reference["machine"]["alphabet"]  # as learned today
    page = (PUBLISHED.parent / "learn.md").read_text()
    assert all(f"**{name}**" in page.lower() for name in names - {"reference"})
