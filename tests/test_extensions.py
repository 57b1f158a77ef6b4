"""The suite against a server with every extension: quiet where it conforms, and for each
broken extension rule (tests/esmtp_server.py) the check that names that rule."""

from __future__ import annotations

from pathlib import Path

import pytest

from conformance.checks import CHECKS
from conformance.engine.record import RunRecord
from conformance.engine.settings import BUDGETS, RunSettings
from conformance.protocol.credentials import Credentials
from conformance.protocol.levels import Level
from conformance.protocol.tables import PROFILES, get_profile
from conformance.search.runner import Run
from tests.esmtp_server import ESMTP_FAULTS, PASSWORD, USERNAME, EsmtpServer
from tests.tls_server import Certificates

CREDENTIALS = Credentials(USERNAME, PASSWORD)


def run(server: EsmtpServer, tmp_path: Path, *, profile: str = "seed", seed: int = 0,
        examples: int | None = None, fail_fast: bool = False,
        credentials: Credentials | None = CREDENTIALS) -> RunRecord:
    """A default run (the fast budget) against ``server``, messages delivered; with
    ``fail_fast``, stopped at the first finding of level SHOULD or above."""
    fast, steps = BUDGETS["fast"]
    settings = RunSettings(server=None, profile=get_profile(profile), timeout=2.0,
                           examples=examples or fast, steps=steps, budget_name="fast",
                           seed=str(seed), deliver=True, fail_fast=fail_fast,
                           strict=fail_fast, credentials=credentials)
    record = RunRecord()
    Run(settings, server.address, record, tmp_path).explore()
    return record


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return Certificates(tmp_path_factory.mktemp("tls"))


@pytest.mark.parametrize("profile", list(PROFILES))
def test_a_server_that_honours_every_extension_passes(profile, certificates, tmp_path):
    with EsmtpServer(tls=certificates.server_context(), profile=profile) as server:
        record = run(server, tmp_path, profile=profile)
    assert {key: f.complaint for key, f in record.findings.items()} == {}
    # Every extension was exercised where it was advertised, in the states it was sent in.
    assert {"PIPELINING", "SIZE", "STARTTLS", "AUTH", "CHUNKING",
            "ENHANCEDSTATUSCODES"} <= set(record.advertised)
    sent_in = {(state, group) for state, group, _code in record.coverage}
    for group, states in (("STARTTLS", {"READY", "MAIL"}), ("AUTH", {"READY", "MAIL"}),
                          ("BDAT", {"READY", "RCPT"})):
        assert {state for state, g in sent_in if g == group} >= states, group
    assert record.exercised["pipelined batches"] > 10
    assert record.exercised["TLS upgrades"] > 5
    assert record.exercised["TLS upgrades after injected plaintext"] > 0
    codes = {(group, code) for _state, group, code in record.coverage}
    assert {("AUTH", 235), ("AUTH", 501), ("AUTH", 503), ("BDAT", 250),
            ("DATA", 503), ("MAIL", 552), ("STARTTLS", 220), ("STARTTLS", 501)} <= codes


@pytest.mark.timeout(300)
@pytest.mark.parametrize("fault", list(ESMTP_FAULTS))
def test_each_broken_extension_rule_is_named_by_its_check(fault, certificates, tmp_path):
    found: set[str] = set()
    stops = CHECKS[ESMTP_FAULTS[fault]].level is not Level.INFO  # an INFO never stops a run
    with EsmtpServer(fault, tls=certificates.server_context()) as server:
        for seed in range(3):  # a default run finds it; more seeds only if one does not
            record = run(server, tmp_path, seed=seed, fail_fast=stops)
            found |= {key.check for key in record.findings}
            if ESMTP_FAULTS[fault] in found:
                break
    assert ESMTP_FAULTS[fault] in found, f"{fault}: found only {sorted(found)}"


def test_credentials_never_reach_the_record(certificates, tmp_path):
    with EsmtpServer("auth_twice", tls=certificates.server_context()) as server:
        record = run(server, tmp_path, examples=30)
    findings = [f for f in record.findings.values() if f.key.check == "auth_once"]
    assert findings
    written = repr(record.to_json())
    assert "<credentials: " in written
    for secret in (PASSWORD, CREDENTIALS.fill(b"<credentials: password>").decode(),
                   CREDENTIALS.fill(b"<credentials: PLAIN response>").decode()):
        assert secret not in written
    for finding in findings:  # the session to replay, and the transcript shown
        assert any(b"<credentials: " in step.data for step in finding.session)
        assert "<credentials: " in "\n".join(finding.transcript)


def test_without_credentials_auth_is_exercised_and_refused(certificates, tmp_path):
    with EsmtpServer(tls=certificates.server_context()) as server:
        record = run(server, tmp_path, credentials=None, examples=30)
    codes = {code for _state, group, code in record.coverage if group == "AUTH"}
    assert 535 in codes
    assert 235 not in codes
    assert record.findings == {}
