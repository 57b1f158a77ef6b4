"""The pytest plugin: options, the embedded server, fixtures, the header and failure reports.

Thin on purpose: everything it offers works without pytest (see conformance.session and
conformance.machine). Options come from the command line, then the environment, then ini.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Generator, Iterator
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, Phase, settings

from conformance.client import ServerAddress, SMTPClient
from conformance.errors import ConformanceError, TargetUnreachable, UsageError
from conformance.failures import failure_text
from conformance.machine import SMTPConformance, configure
from conformance.reference_server import ReferenceServer
from conformance.session import Coverage
from conformance.tables import DEFAULT_PROFILE, PROFILES, Profile, get_profile

EXIT_UNREACHABLE = 3  # the target could not be reached: nothing was tested
# Named example budgets: (examples, steps per example).
BUDGETS = {"fast": (60, 25), "thorough": (1000, 50)}


@dataclass(frozen=True)
class Option:
    name: str  # command-line flag
    ini: str
    env: str
    default: str
    help: str


OPTIONS = (
    Option("--server", "smtp_server", "SMTP_CONFORMANCE_SERVER", "",
           "SMTP server to test, HOST[:PORT] (port 25 by default; IPv6 as [::1]:2525). "
           "Without it, an embedded reference server (aiosmtpd) is started on 127.0.0.1."),
    Option("--smtp-profile", "smtp_profile", "SMTP_CONFORMANCE_PROFILE", DEFAULT_PROFILE,
           f"documented reply codes to check against: {', '.join(PROFILES)} "
           f"(default {DEFAULT_PROFILE})"),
    Option("--smtp-timeout", "smtp_timeout", "SMTP_CONFORMANCE_TIMEOUT", "5",
           "seconds to wait for each reply (default 5)"),
    Option("--smtp-examples", "smtp_examples", "SMTP_CONFORMANCE_EXAMPLES", "fast",
           "example budget: 'fast' (60 sessions, CI), 'thorough' (1000), or a number"),
)


@dataclass(frozen=True)
class SuiteConfig:
    server: ServerAddress | None  # None: the embedded reference server
    profile: Profile
    timeout: float
    examples: int
    steps: int
    budget: str

    def hypothesis_settings(self) -> settings:
        return settings(
            max_examples=self.examples,
            stateful_step_count=self.steps,
            deadline=None,  # network round trips; the per-reply timeout is the bound
            # The explain phase re-runs failures under a tracer: slow, and our failure
            # message already says what happened.
            phases=[phase for phase in Phase if phase is not Phase.explain],
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        )


CONFIG_KEY = pytest.StashKey[SuiteConfig]()
COVERAGE_KEY = pytest.StashKey[Coverage]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("smtp-conformance", "SMTP conformance suite")
    for option in OPTIONS:
        group.addoption(option.name, dest=option.ini, default=None, help=option.help)
        parser.addini(option.ini, help=option.help, default=None)


def _value(config: pytest.Config, option: Option) -> str:
    """Command line, then environment, then ini, then the default."""
    given = config.getoption(option.ini)
    if given is None:
        given = os.environ.get(option.env)
    if given is None:
        given = config.getini(option.ini)
    return str(given) if given not in (None, "") else option.default


def parse_config(config: pytest.Config) -> SuiteConfig:
    values = {option.ini: _value(config, option) for option in OPTIONS}
    try:
        server = ServerAddress.parse(values["smtp_server"]) if values["smtp_server"] else None
        profile = get_profile(values["smtp_profile"])
    except UsageError as error:
        raise pytest.UsageError(f"smtp-conformance: {error}") from None
    try:
        timeout = float(values["smtp_timeout"])
        if not 0 < timeout <= 3600:
            raise ValueError
    except ValueError:
        raise pytest.UsageError(
            f"smtp-conformance: --smtp-timeout must be seconds in (0, 3600], "
            f"got {values['smtp_timeout']!r}") from None
    budget = values["smtp_examples"]
    if budget in BUDGETS:
        examples, steps = BUDGETS[budget]
    elif budget.isdigit() and int(budget) > 0:
        examples, steps = int(budget), BUDGETS["fast"][1]
    else:
        raise pytest.UsageError(
            f"smtp-conformance: --smtp-examples must be fast, thorough or a positive number, "
            f"got {budget!r}")
    return SuiteConfig(server, profile, timeout, examples, steps, budget)


def pytest_configure(config: pytest.Config) -> None:
    config.stash[CONFIG_KEY] = parse_config(config)
    config.stash[COVERAGE_KEY] = Counter()


def pytest_report_header(config: pytest.Config) -> str:
    suite = config.stash[CONFIG_KEY]
    target = str(suite.server) if suite.server else \
        "embedded reference server (aiosmtpd on 127.0.0.1, ephemeral port)"
    return (f"smtp-conformance: target {target}; profile {suite.profile.name} "
            f"({suite.profile.level}); timeout {suite.timeout:g}s; "
            f"examples {suite.budget} ({suite.examples} x {suite.steps} steps)")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]
                              ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A failed check reads as its message and the shrunk session, not as our traceback."""
    report = yield
    if report.failed and call.excinfo is not None:
        text = failure_text(call.excinfo.value)
        if text is not None:
            report.longrepr = text  # type: ignore[assignment]
    return report


# --- fixtures --------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def smtp_config(pytestconfig: pytest.Config) -> SuiteConfig:
    """The suite's settings: target, profile, timeout and example budget."""
    return pytestconfig.stash[CONFIG_KEY]


@pytest.fixture(scope="session")
def smtp_server_address(smtp_config: SuiteConfig) -> Iterator[ServerAddress]:
    """The server under test; starts the embedded reference server when none was given."""
    if smtp_config.server is not None:
        _require_reachable(smtp_config.server, smtp_config.timeout)
        yield smtp_config.server
        return
    with ReferenceServer(profile=smtp_config.profile) as server:
        yield server.address


def _require_reachable(address: ServerAddress, timeout: float) -> None:
    probe = SMTPClient(address, timeout=timeout)
    try:
        probe.connect()
    except TargetUnreachable as error:
        pytest.exit(f"smtp-conformance: {error}", returncode=EXIT_UNREACHABLE)
    except ConformanceError:
        pass  # it answered, badly: that is for the checks to report
    finally:
        probe.close()


@pytest.fixture
def smtp_client(smtp_server_address: ServerAddress, smtp_config: SuiteConfig) -> Iterator[
        SMTPClient]:
    """A client connected to the server under test, greeting already read."""
    with SMTPClient(smtp_server_address, timeout=smtp_config.timeout) as client:
        client.connect()
        yield client


@pytest.fixture
def smtp_state_machine(smtp_server_address: ServerAddress, smtp_config: SuiteConfig,
                       pytestconfig: pytest.Config) -> type[SMTPConformance]:
    """The conformance state machine, bound to the target and profile."""
    return configure(smtp_server_address, smtp_config.profile, timeout=smtp_config.timeout,
                     coverage=pytestconfig.stash[COVERAGE_KEY])


@pytest.fixture
def smtp_coverage(pytestconfig: pytest.Config) -> Coverage:
    """(state, group, code) triples observed so far in this run."""
    return pytestconfig.stash[COVERAGE_KEY]
