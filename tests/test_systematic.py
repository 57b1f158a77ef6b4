"""The systematic phase: a plan derived from the vocabulary and the strategies, the same on
every seed, that covers every cell by every route with every argument class, and finds
every state fault alone."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import conformance.strategies.extensions as ext
from conformance.checks.extensions import SIZE_AFTER_QUOTE
from conformance.engine.address import ServerAddress
from conformance.engine.record import SYSTEMATIC, RunRecord
from conformance.engine.settings import BUDGETS, DEFAULT_TIMEOUT, RunSettings, SessionSettings
from conformance.protocol.commands import LONG_LINE_INPUT, NON_STANDARD_ENDINGS
from conformance.protocol.credentials import EMBEDDED_CREDENTIALS, Credentials
from conformance.protocol.model import State
from conformance.protocol.tables import get_profile
from conformance.protocol.vocabulary import (
    EXTENSIONS,
    OPEN_STATES,
    UNRECOGNISED,
    VERBS,
    parse_ehlo,
)
from conformance.search import plan as planned
from conformance.search.machine import configure
from conformance.search.plan import COMMAND, Case
from conformance.search.runner import Run
from conformance.search.systematic import sweep
from conformance.strategies.commands import (
    BARE_LINE_BREAK_COMMANDS,
    CASE_VARIANTS,
    malformed_kinds,
)
from conformance.testing.reference_server import ReferenceServer
from tests.esmtp_server import PASSWORD, USERNAME, EsmtpServer
from tests.fault_server import STATE_FAULTS, FaultServer
from tests.tls_server import Certificates

EVERYTHING = parse_ehlo(["server.example.test", "SIZE 10000",
                         *(e.keyword for e in EXTENSIONS if e.keyword != "SIZE")])
# The ESMTP fault server's state faults: each behind an unusual path.
ESMTP_STATE_FAULTS = {
    "starttls_keeps_transaction": {"reset_clears_transaction"},
    "keeps_recipients_after_message": {"reset_clears_transaction"},
    "data_after_refused_recipients_354": {"data_requires_recipient"},
    "bdat_mixed_with_data": {"bdat_not_mixed_with_data"},
    "auth_in_transaction": {"auth_not_in_transaction"},
}


def expected_classes(verb: str, *, forms: bool) -> set[str]:
    """The argument classes the strategies know for ``verb``, written from them here; without
    ``forms``, those sent after every route only."""
    if VERBS[verb].challenges:
        return set(ext.AUTH_EXCHANGES) if forms else {"PLAIN with an initial response"}
    if verb == "BDAT":
        return {"empty last chunk", "empty chunk", "chunk", "last chunk"} if forms else \
            {"chunk"}
    classes = {planned.VALID}
    if not forms:
        return classes
    classes |= {variant for variant in CASE_VARIANTS if variant != "upper case"}
    classes |= set(malformed_kinds(verb))
    declared = {"MAIL": "mail_parameters", "RCPT": "rcpt_parameters"}.get(verb)
    classes |= {f"parameter {p}" for e in EXTENSIONS for p in getattr(e, declared or "", ())
                if declared}
    classes |= {"MAIL": {"utf-8 mailbox", "utf-8 mailbox, SMTPUTF8"},
                "RCPT": {"utf-8 mailbox"}}.get(verb, set())
    return classes


def test_every_move_of_the_vocabulary_is_a_route_into_its_state():
    routes = planned.routes()
    base = planned.base_routes()
    for verb in VERBS.values():
        for before, after in verb.moves.items():
            if after not in OPEN_STATES:
                continue
            wanted = (*(m.command for m in base[before].moves),
                      planned.argument_classes(verb)[planned.VALID].command)
            assert any(tuple(m.command for m in r.moves) == wanted and r.state is after
                       for r in routes), f"{verb.name} from {before.name}"
    names = {(r.state, r.name) for r in routes}
    assert {(State.READY, "EHLO, MAIL, RCPT, DATA"),  # a message ended
            (State.MAIL, "EHLO, MAIL, RCPT (malformed)"),  # only a refused recipient
            (State.MAIL, "EHLO, MAIL, DATA"),  # DATA refused
            (State.READY, "EHLO, MAIL, STARTTLS, EHLO"),  # a transaction, then TLS
            (State.READY, "EHLO, AUTH"), (State.RCPT, "EHLO, MAIL, RCPT, BDAT"),
            (State.READY, "EHLO, EHLO")} <= names


def test_the_plan_holds_every_cell_by_every_route_with_every_argument_class():
    cases = planned.plan(EVERYTHING, deliver=True)
    sent = {(c.route, c.verb, c.argument) for c in cases if c.kind == COMMAND}
    base = set(planned.base_routes().values())
    missing = []
    for route in planned.routes():
        for verb in VERBS:
            for argument in expected_classes(verb, forms=route in base):
                if (route, verb, argument) not in sent:
                    missing.append((route.name, verb, argument))
        if (route, UNRECOGNISED, planned.VALID) not in sent:
            missing.append((route.name, UNRECOGNISED, planned.VALID))
    assert missing == []
    assert {(s, v) for s in OPEN_STATES for v in (*VERBS, UNRECOGNISED)} <= planned.cells(cases)


def test_the_plan_makes_each_probe_once():
    probes = [c for c in planned.plan(EVERYTHING, deliver=True, relay_check=True)
              if c.kind != COMMAND]
    by_kind = {kind: sorted(c.argument for c in probes if c.kind == kind)
               for kind in {c.kind for c in probes}}
    assert by_kind[planned.DATA_PROBE] == sorted(NON_STANDARD_ENDINGS)
    assert by_kind[planned.LINE_PROBE] == sorted(c.bare_line_break or ""
                                                 for c in BARE_LINE_BREAK_COMMANDS)
    assert {planned.INJECTION, planned.BATCH, planned.OVERSIZED, planned.RELAY} <= set(by_kind)


def test_without_delivery_no_case_completes_a_message():
    cases = planned.plan(EVERYTHING, deliver=False)
    assert not any(c.route.delivers for c in cases)
    assert all(c.group == "DATA" for c in cases if c.delivers)  # its 354 ends the session


def _wire(cases: tuple[Case, ...]) -> str:
    octets = b"".join(m.command.line for c in cases for m in (*c.route.moves, *c.moves))
    return hashlib.sha256(octets).hexdigest()


def test_the_plan_is_the_same_in_every_process():
    """No hash seed, no Hypothesis seed: the plan is data."""
    code = ("from conformance.search import plan;"
            "from tests.test_systematic import EVERYTHING, _wire;"
            "print(_wire(plan.plan(EVERYTHING, deliver=True)))")
    root = Path(__file__).resolve().parent.parent
    digests = {subprocess.run([sys.executable, "-c", code], cwd=root, check=True, text=True,
                              capture_output=True, env={"PYTHONHASHSEED": seed}).stdout
               for seed in ("0", "1", "4242")}
    assert digests == {_wire(planned.plan(EVERYTHING, deliver=True)) + "\n"}


def swept(address: ServerAddress, **options: Any) -> RunRecord:
    """The systematic phase alone (no Hypothesis at all) against ``address``, messages
    delivered; ``options``: more of the sessions' settings."""
    record = RunRecord()
    settings = SessionSettings(get_profile("seed"), timeout=DEFAULT_TIMEOUT, **options)
    machine = configure(address, settings, record=record)
    sweep(machine)
    return record


@pytest.mark.timeout(120)
@pytest.mark.parametrize("fault", sorted(STATE_FAULTS))
def test_the_systematic_phase_alone_finds_every_state_fault(fault):
    with FaultServer(fault) as server:
        record = swept(server.address)
    assert STATE_FAULTS[fault] & {key.check for key in record.findings}


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return Certificates(Path(tmp_path_factory.mktemp("systematic-tls")))


@pytest.mark.timeout(120)
@pytest.mark.parametrize("fault", sorted(ESMTP_STATE_FAULTS))
def test_the_systematic_phase_alone_finds_every_esmtp_state_fault(fault, certificates):
    with EsmtpServer(fault, tls=certificates.server_context()) as server:
        record = swept(server.address, credentials=Credentials(USERNAME, PASSWORD))
    assert ESMTP_STATE_FAULTS[fault] & {key.check for key in record.findings}


@pytest.mark.timeout(120)
def test_the_systematic_phase_alone_finds_a_size_hidden_behind_a_quote(certificates):
    """Postfix's: a '"' in ENVID's value hides the SIZE after it (once found by one seed's
    random walk only, so a baseline written on another seed did not hold)."""
    with EsmtpServer("quote_hides_parameters", tls=certificates.server_context()) as server:
        record = swept(server.address, credentials=Credentials(USERNAME, PASSWORD))
    record.settle()
    # Blamed on what set it off: the plain SIZE over the limit was refused.
    assert [(k.check, k.cause, k.code) for k in record.findings] == [
        ("size_limit_enforced", SIZE_AFTER_QUOTE, 250)]
    with EsmtpServer(tls=certificates.server_context()) as server:  # and not without it
        record = swept(server.address, credentials=Credentials(USERNAME, PASSWORD))
    assert not record.findings


@pytest.mark.timeout(120)
def test_a_size_never_enforced_is_one_finding_on_mail_whatever_came_before_it(certificates):
    """A server that takes any declared SIZE takes it after a '"' too: one behaviour (and the
    message over the limit, a rule of its own)."""
    with EsmtpServer("size_not_enforced", tls=certificates.server_context()) as server:
        record = swept(server.address, credentials=Credentials(USERNAME, PASSWORD))
    record.settle()
    assert sorted((k.check, k.cause) for k in record.findings) == [
        ("size_limit_enforced", "MAIL"), ("size_limit_enforced", "received data")]


@pytest.mark.timeout(120)
def test_the_reference_server_gets_no_finding_from_the_systematic_phase():
    with ReferenceServer() as server:
        record = swept(server.address, credentials=EMBEDDED_CREDENTIALS)
    assert [f"{f.check} {f.cause} {f.where}" for f in record.findings.values()] == []


def run_record(address: object, seed: int, tmp_path: Path) -> RunRecord:
    examples, steps = BUDGETS["fast"]
    settings = RunSettings(server=None, profile=get_profile("seed"), timeout=DEFAULT_TIMEOUT,
                           examples=examples, steps=steps, budget_name="fast", seed=str(seed),
                           deliver=True)
    record = RunRecord()
    Run(settings, address, record, tmp_path).explore()  # type: ignore[arg-type]
    return record


@pytest.mark.timeout(300)
@pytest.mark.parametrize("fault", ["rset_keeps_mail_from", "mail_fails_after_message"])
def test_a_runs_findings_are_the_same_on_three_seeds(fault, tmp_path):
    with FaultServer(fault) as server:
        records = [run_record(server.address, seed, tmp_path) for seed in (0, 1, 2)]
    keys = [set(record.findings) for record in records]
    assert keys[0] == keys[1] == keys[2] != set()
    assert {f.phase for f in records[0].findings.values()} == {SYSTEMATIC}


@pytest.mark.timeout(300)
def test_a_close_after_521_is_the_same_one_finding_on_three_seeds(tmp_path):
    # A close after a refusal is waited for wherever the session ends: it was judged on the
    # 521 on some seeds and missed on others (a second finding, reply_code_documented 521).
    with FaultServer("long_line_521_closes") as server:
        records = [run_record(server.address, seed, tmp_path) for seed in (0, 1, 2)]
    for record in records:
        record.settle()
    assert [[(k.check, k.cause, k.code) for k in record.findings] for record in records] == \
        [[("no_silent_close", LONG_LINE_INPUT, 521)]] * 3


@pytest.mark.timeout(120)
def test_lower_case_verbs_refused_are_one_finding_blamed_on_the_case():
    """Every verb of every state is sent in lower and mixed case: refusing them is one
    behaviour (not one per verb, and not rset_succeeds for "rset")."""
    with FaultServer("lowercase_verbs_unrecognised") as server:
        record = swept(server.address)
    assert [(k.check, k.cause) for k in record.findings] == [
        ("verb_case_insensitive", "a verb not in upper case")]


def test_a_message_over_the_size_limit_is_planned_only_for_a_small_limit():
    """The message is built in memory: never for a limit of 20 digits."""
    def oversized(size: str) -> list[str]:
        advertised = parse_ehlo(["server.example.test", f"SIZE {size}"])
        return [c.argument for c in planned.plan(advertised, deliver=True)
                if c.kind == planned.OVERSIZED]
    assert oversized("10000") == ["declared", "message"]
    assert oversized("9" * 20) == ["declared"]
