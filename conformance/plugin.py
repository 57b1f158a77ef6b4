"""The pytest plugin: options, the embedded server, fixtures, the header and the report hooks.

Thin on purpose: the run itself is conformance.runner's. Options come from the command line,
then the environment, then ini. Inert in a pytest run that neither collects a test using its
fixtures nor is given one of its options: no header, no option checks, nothing changed.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis.errors import FlakyStrategyDefinition

from conformance import grammar
from conformance.baseline import Baseline
from conformance.baseline import from_run as from_baseline_run
from conformance.baseline import load as load_baseline
from conformance.baseline import write as write_baseline
from conformance.client import ServerAddress, SMTPClient
from conformance.errors import EXIT_UNREACHABLE, TargetLost, TargetUnreachable, UsageError
from conformance.failures import RunFailed, failure_text
from conformance.machine import SMTPConformance, configure
from conformance.paths import check_writable_dir, check_writable_file
from conformance.record import Coverage, RunError, RunRecord
from conformance.reference_server import ReferenceServer
from conformance.report import RunInfo, document, summary_lines, write_diagram, write_report
from conformance.runner import BUDGETS, Run, RunSettings, replay_hint, unreachable
from conformance.runner import run as run_engine
from conformance.tables import DEFAULT_PROFILE, PROFILES, get_profile

SuiteConfig = RunSettings  # the name the fixtures and users' type hints know
FIXTURES = frozenset({"smtp_config", "smtp_server_address", "smtp_client",
                      "smtp_state_machine", "smtp_coverage", "smtp_run"})

@dataclass(frozen=True)
class Option:
    name: str  # command-line flag
    ini: str
    env: str
    default: str
    help: str
    flag: bool = False  # takes no value on the command line; "true"/"false" elsewhere


OPTIONS = (
    Option("--server", "smtp_server", "SMTP_CONFORMANCE_SERVER", "",
           "SMTP server to test, HOST[:PORT] (port 25 by default; IPv6 as [::1]:2525). "
           "Without it, an embedded reference server (aiosmtpd) is started on 127.0.0.1."),
    Option("--smtp-profile", "smtp_profile", "SMTP_CONFORMANCE_PROFILE", DEFAULT_PROFILE,
           f"documented reply codes to check against: {', '.join(PROFILES)} "
           f"(default {DEFAULT_PROFILE})"),
    Option("--smtp-timeout", "smtp_timeout", "SMTP_CONFORMANCE_TIMEOUT", "5",
           "seconds to wait for each reply (default 5); a reply later than this is a SHOULD "
           "finding, none within 6 times this a MUST finding"),
    Option("--smtp-examples", "smtp_examples", "SMTP_CONFORMANCE_EXAMPLES", "fast",
           "example budget: 'fast' (60 sessions, CI), 'thorough' (1000), or a number"),
    Option("--smtp-budget", "smtp_budget", "SMTP_CONFORMANCE_BUDGET", "",
           "seconds the whole run may take, minimising included (default: 2 per example, at "
           "least 60); when spent, the findings so far are reported"),
    Option("--smtp-fail-fast", "smtp_fail_fast", "SMTP_CONFORMANCE_FAIL_FAST", "false",
           "stop exploring at the first failing finding (default: explore the whole budget "
           "and report every deviation)", flag=True),
    Option("--smtp-strict", "smtp_strict", "SMTP_CONFORMANCE_STRICT", "false",
           "fail on SHOULD findings (WARN) too, not only on MUST findings", flag=True),
    Option("--smtp-deliver", "smtp_deliver", "SMTP_CONFORMANCE_DELIVER", "false",
           "complete messages (send the final <CRLF>.<CRLF>); without it a message is never "
           "completed and nothing is delivered (always on for the embedded server)", flag=True),
    Option("--smtp-rcpt-domain", "smtp_rcpt_domain", "SMTP_CONFORMANCE_RCPT_DOMAIN", "",
           "domain of every generated recipient (default: names reserved for testing, "
           "RFC 2606: example.test, example.com, ...)"),
    Option("--smtp-rate", "smtp_rate", "SMTP_CONFORMANCE_RATE", "",
           "at most this many commands (and connections) per second, for production servers "
           "(default: no limit)"),
    Option("--smtp-report", "smtp_report", "SMTP_CONFORMANCE_REPORT", "",
           "write a JSON report of the run to this path (schema: conformance/report.schema.json)"),
    Option("--smtp-failures-dir", "smtp_failures_dir", "SMTP_CONFORMANCE_FAILURES_DIR", "",
           "where failing sessions are saved for replay (default: .smtp-conformance/failures "
           "under the rootdir)"),
    Option("--smtp-baseline", "smtp_baseline", "SMTP_CONFORMANCE_BASELINE", "",
           "JSON file of accepted deviations: they are reported as KNOWN and never fail"),
    Option("--smtp-baseline-write", "smtp_baseline_write", "SMTP_CONFORMANCE_BASELINE_WRITE", "",
           "survey mode: fail nothing, and write every finding of the run to this baseline file"),
)
TRUE, FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")

CONFIG_KEY = pytest.StashKey[RunSettings]()
SEED_KEY = pytest.StashKey[str]()
RECORD_KEY = pytest.StashKey[RunRecord]()  # on the config: the whole run; on an item: its own
ADDRESS_KEY = pytest.StashKey[ServerAddress]()  # on an item: the server its run talks to
SETTLES_AT_TEARDOWN = pytest.StashKey[bool]()  # on an item: its findings settle at teardown


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("smtp-conformance", "SMTP conformance suite")
    for option in OPTIONS:
        if option.flag:
            group.addoption(option.name, dest=option.ini, default=None, help=option.help,
                            action="store_const", const="true")
        else:
            group.addoption(option.name, dest=option.ini, default=None, help=option.help)
        parser.addini(option.ini, help=option.help, default=None)


def _given(config: pytest.Config, option: Option) -> str | None:
    """Command line, then environment, then ini; None if none gives it. An empty value
    given on the command line or in the environment counts as given."""
    given = config.getoption(option.ini)
    if given is None:
        given = os.environ.get(option.env)
    if given is None:
        given = config.getini(option.ini) or None
    return None if given is None else str(given)


def _value(config: pytest.Config, option: Option) -> str:
    given = _given(config, option)
    return option.default if given is None else given


def parse_config(config: pytest.Config) -> RunSettings:
    values = {option.ini: _value(config, option) for option in OPTIONS}
    server_given = _given(config, OPTIONS[0])
    try:
        if server_given is not None and not server_given.strip():
            raise UsageError("--server was given an empty value (is the variable behind it "
                             "set?); leave it out to test the embedded reference server")
        server = ServerAddress.parse(values["smtp_server"]) if values["smtp_server"] else None
        profile = get_profile(values["smtp_profile"])
    except UsageError as error:
        raise pytest.UsageError(f"smtp-conformance: {error}") from None
    timeout = _seconds(values, "smtp_timeout", upper=3600)
    budget = values["smtp_examples"]
    if budget in BUDGETS:
        examples, steps = BUDGETS[budget]
    elif budget.isdigit() and int(budget) > 0:
        examples, steps = int(budget), BUDGETS["fast"][1]
    else:
        raise pytest.UsageError(
            f"smtp-conformance: --smtp-examples must be fast, thorough or a positive number, "
            f"got {budget!r}")
    seconds = _seconds(values, "smtp_budget", upper=7 * 86400) if values["smtp_budget"] else 0.0
    rcpt_domain = values["smtp_rcpt_domain"] or None
    rate = _rate(values["smtp_rate"])
    if rcpt_domain is not None and not grammar.is_domain(rcpt_domain):
        raise pytest.UsageError(f"smtp-conformance: --smtp-rcpt-domain must be a domain name "
                                f"(RFC 5321 §4.1.2), got {rcpt_domain!r}")
    report = Path(values["smtp_report"]) if values["smtp_report"] else None
    try:
        baseline = load_baseline(Path(values["smtp_baseline"])) if values["smtp_baseline"] \
            else None
    except UsageError as error:
        raise pytest.UsageError(f"smtp-conformance: {error}") from None
    baseline_write = Path(values["smtp_baseline_write"]) if values["smtp_baseline_write"] \
        else None
    failures_dir = Path(values["smtp_failures_dir"]) if values["smtp_failures_dir"] else None
    try:  # before the run, not after it
        for path, check, option in [(report, check_writable_file, "--smtp-report"),
                                    (baseline_write, check_writable_file, "--smtp-baseline-write"),
                                    (failures_dir, check_writable_dir, "--smtp-failures-dir")]:
            if path is not None:
                check(path, option)
    except UsageError as error:
        raise pytest.UsageError(f"smtp-conformance: {error}") from None
    return RunSettings(server, profile, timeout, examples, steps, budget, seconds=seconds,
                       strict=_flag(values, "smtp_strict"),
                       deliver=_flag(values, "smtp_deliver"),
                       fail_fast=_flag(values, "smtp_fail_fast"),
                       rcpt_domain=rcpt_domain, rate=rate, report=report,
                       seed=config.stash[SEED_KEY], baseline=baseline,
                       baseline_write=baseline_write, failures_dir=failures_dir)


def _seconds(values: dict[str, str], name: str, *, upper: float) -> float:
    text = values[name]
    try:
        seconds = float(text)
        if not 0 < seconds <= upper:
            raise ValueError
    except ValueError:
        raise pytest.UsageError(
            f"smtp-conformance: --{name.replace('_', '-')} must be seconds in (0, {upper:g}], "
            f"got {text!r}") from None
    return seconds


def _rate(text: str) -> float | None:
    if not text:
        return None
    try:
        rate = float(text)
        if not 0 < rate <= 100_000:
            raise ValueError
    except ValueError:
        raise pytest.UsageError(f"smtp-conformance: --smtp-rate must be commands per second "
                                f"(a positive number), got {text!r}") from None
    return rate


def _flag(values: dict[str, str], name: str) -> bool:
    text = values[name].lower()
    if text not in TRUE + FALSE:
        raise pytest.UsageError(f"smtp-conformance: --{name.replace('_', '-')} must be true "
                                f"or false, got {text!r}")
    return text in TRUE


def _seed(config: pytest.Config) -> str:
    """--hypothesis-seed if given; else the controller's choice under xdist; else a new one."""
    given = config.getoption("hypothesis_seed", default=None)
    if given is not None:
        return str(given)
    worker_input = getattr(config, "workerinput", None)
    if worker_input is not None and "smtp_seed" in worker_input:
        return str(worker_input["smtp_seed"])
    return str(random.SystemRandom().randrange(2**32))


def settings_of(config: pytest.Config) -> RunSettings:
    """The suite's settings, parsed the first time they are needed."""
    if CONFIG_KEY not in config.stash:
        config.stash[CONFIG_KEY] = parse_config(config)
    return config.stash[CONFIG_KEY]


def _active(config: pytest.Config) -> bool:
    return CONFIG_KEY in config.stash


def pytest_configure(config: pytest.Config) -> None:
    config.stash[SEED_KEY] = _seed(config)
    config.stash[RECORD_KEY] = RunRecord()
    if any(config.getoption(option.ini) is not None for option in OPTIONS):
        settings_of(config)  # an option of ours was given: check them all now
    config.pluginmanager.register(_RunReporter(config), "smtp-conformance-reporter")
    if config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(_XdistSeed(config.stash[SEED_KEY]))


class _XdistSeed:
    """Hands the controller's seed to every pytest-xdist worker, so all run the same seed."""

    def __init__(self, seed: str) -> None:
        self.seed = seed

    def pytest_configure_node(self, node: Any) -> None:
        node.workerinput["smtp_seed"] = self.seed


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A test using the fixtures makes the plugin active; the run's own budget, not
    pytest-timeout, ends each such test (the backstop is set past it)."""
    ours = [item for item in items if FIXTURES & set(getattr(item, "fixturenames", ()))]
    if not ours:
        return
    suite = settings_of(config)
    for item in ours:
        if item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(suite.time_budget + 120))


def pytest_report_collectionfinish(config: pytest.Config) -> list[str]:
    if not _active(config):
        return []
    suite = settings_of(config)
    target = str(suite.server) if suite.server else \
        "embedded reference server (aiosmtpd on 127.0.0.1, ephemeral port)"
    return [f"smtp-conformance: target {target}; profile {suite.profile.name} "
            f"({suite.profile.level}); timeout {suite.timeout:g}s; "
            f"examples {suite.budget_name} ({suite.examples} x {suite.steps} steps); "
            f"budget {suite.time_budget:g}s; hypothesis-seed {suite.seed}"
            f"{'; strict' if suite.strict else ''}{'; fail-fast' if suite.fail_fast else ''}"
            f"{'' if suite.delivers else '; safe mode (messages are not completed)'}"
            f"{f'; at most {suite.rate:g} commands/s' if suite.rate else ''}"]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]
                              ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Failing findings read as findings, not as our traceback; the item's record travels
    on its report (to the xdist controller, too)."""
    report = yield
    record = item.stash.get(RECORD_KEY, None)
    if record is None or call.when == "setup":
        return report
    error = call.excinfo.value if call.excinfo is not None else None
    if isinstance(error, RunFailed):
        report.longrepr = failure_text(error)  # type: ignore[assignment]
        for finding in error.findings:
            item.user_properties.append(("smtp_check", finding.check))  # JUnit <property>
    elif isinstance(error, TargetLost | TargetUnreachable | FlakyStrategyDefinition):
        _stopped_by_server(report, record, item, error)
    elif report.failed and error is not None:  # a bug of ours: its traceback stays
        first_line = (str(error).splitlines() or [""])[0]
        record.errors.append(RunError(f"the suite stopped: {type(error).__name__}: "
                                      f"{first_line}"))
    if unreachable_error := next((e for e in record.errors if e.unreachable), None):
        item.session.shouldstop = unreachable_error.message  # nothing after can reach it
    # The record travels once, when it is complete: after the call, or for a test's own run
    # (smtp_state_machine) after the teardown that settles its findings.
    if call.when == ("teardown" if item.stash.get(SETTLES_AT_TEARDOWN, False) else "call"):
        report.smtp_conformance = record.to_json()  # type: ignore[attr-defined]
    return report


def _stopped_by_server(report: pytest.TestReport, record: RunRecord, item: pytest.Item,
                       error: BaseException) -> None:
    """A user's own run cannot go on: the server went away, or it answered the same session
    differently from one replay to the next. A one-line error, no traceback."""
    suite = settings_of(item.config)
    address = item.stash[ADDRESS_KEY]
    gone = unreachable(address, suite.timeout)
    if gone:
        stopped = RunError(f"the server stopped accepting connections during the run: {gone}",
                           unreachable=True)
    else:
        stopped = RunError("the server answered the same commands differently from one "
                           "session to the next, so the sessions could not be replayed "
                           f"({type(error).__name__})")
    record.errors.append(stopped)
    report.longrepr = f"smtp-conformance: {stopped.message}"


class _RunReporter:
    """Merges every test report's record (the xdist controller's included) into the run's,
    and prints the summary and writes the JSON report at the end."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.record = config.stash[RECORD_KEY]
        self.started = datetime.now(UTC)
        self.is_worker = hasattr(config, "workerinput")
        self.written: Baseline | None = None  # the baseline --smtp-baseline-write wrote

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        data = getattr(report, "smtp_conformance", None)
        if data is not None:
            self.record.merge(RunRecord.from_json(data))

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        record = self.record
        if not _active(self.config) or not (record.coverage or record.findings or
                                             record.errors):
            return  # the suite did not run
        suite = settings_of(self.config)
        terminalreporter.write_sep("=", f"smtp-conformance: profile {suite.profile.name}")
        survey = suite.baseline_write is not None
        for line in summary_lines(self.record, suite.profile, survey=survey):
            terminalreporter.write_line(line)
        if suite.baseline is not None:
            for line in suite.baseline.status(self.record, suite.today).lines():
                terminalreporter.write_line(line)
        if self.written is not None:  # written at session finish, which runs first
            terminalreporter.write_line(f"baseline written: {suite.baseline_write} "
                                        f"({len(self.written.entries)} entries)")
        seed = suite.seed
        terminalreporter.write_line(f"hypothesis-seed: {seed} (rerun: --hypothesis-seed={seed})")
        if suite.report is not None and not self.is_worker:
            terminalreporter.write_line(f"report: {suite.report}")

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if self.is_worker or not _active(self.config):
            return
        suite = settings_of(self.config)
        if any(error.unreachable for error in self.record.errors):
            session.exitstatus = exitstatus = EXIT_UNREACHABLE
        if suite.baseline_write is not None:
            self.written = from_baseline_run(self.record, suite.today, suite.baseline)
            write_baseline(self.written, suite.baseline_write)
        if suite.report is None:
            return
        target = str(suite.server) if suite.server else "embedded reference server"
        run = RunInfo(target, suite.profile, suite.strict, suite.seed, suite.examples,
                      suite.steps, self.started, datetime.now(UTC), int(exitstatus),
                      survey=suite.baseline_write is not None)
        dot_path = suite.report.with_suffix(".dot")
        svg_path = write_diagram(self.record, dot_path)
        status = suite.baseline.status(self.record, suite.today) if suite.baseline else None
        write_report(suite.report, document(self.record, run,
                                            status.to_json() if status else None,
                                            (dot_path, svg_path)))


# --- fixtures --------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def smtp_config(pytestconfig: pytest.Config) -> RunSettings:
    """The suite's settings: target, profile, timeout, budgets."""
    return settings_of(pytestconfig)


@pytest.fixture(scope="session")
def smtp_server_address(pytestconfig: pytest.Config, smtp_config: RunSettings
                        ) -> Iterator[ServerAddress]:
    """The server under test; starts the embedded reference server when none was given."""
    if smtp_config.server is not None:
        if gone := unreachable(smtp_config.server, smtp_config.timeout):
            # In the run's record too, so the JSON report says why nothing was tested.
            pytestconfig.stash[RECORD_KEY].errors.append(RunError(gone, unreachable=True))
            pytest.exit(f"smtp-conformance: {gone}", returncode=EXIT_UNREACHABLE)
        yield smtp_config.server
        return
    with ReferenceServer(profile=smtp_config.profile) as server:
        yield server.address


@pytest.fixture
def smtp_client(smtp_server_address: ServerAddress, smtp_config: RunSettings) -> Iterator[
        SMTPClient]:
    """A client connected to the server under test, greeting already read."""
    with SMTPClient(smtp_server_address, timeout=smtp_config.timeout) as client:
        client.connect()
        yield client


def _failures_dir(config: pytest.Config, suite: RunSettings) -> Path:
    return suite.failures_dir or config.rootpath / ".smtp-conformance" / "failures"


@pytest.fixture
def smtp_run(request: pytest.FixtureRequest, smtp_server_address: ServerAddress,
             smtp_config: RunSettings) -> Callable[[], None]:
    """The whole run, as the suite does it: call it; it raises ``RunFailed`` with every
    failing finding, each with its shortest session."""
    record = request.node.stash[RECORD_KEY] = RunRecord()
    request.node.stash[ADDRESS_KEY] = smtp_server_address
    failures_dir = _failures_dir(request.config, smtp_config)
    return lambda: run_engine(smtp_config, smtp_server_address, record, failures_dir)


@pytest.fixture
def smtp_state_machine(request: pytest.FixtureRequest, smtp_server_address: ServerAddress,
                       smtp_config: RunSettings) -> Iterator[type[SMTPConformance]]:
    """The conformance state machine, bound to the target, profile and seed, for a test's
    own run. It records findings rather than raising them; when the test ends, the failing
    ones fail it (at teardown), each with its shortest session."""
    record = request.node.stash[RECORD_KEY] = RunRecord()
    request.node.stash[ADDRESS_KEY] = smtp_server_address
    request.node.stash[SETTLES_AT_TEARDOWN] = True
    engine = Run(smtp_config, smtp_server_address, record,
                 _failures_dir(request.config, smtp_config))
    yield configure(smtp_server_address, smtp_config.profile, timeout=smtp_config.timeout,
                    policy=smtp_config.policy, record=record, deliver=smtp_config.delivers,
                    rcpt_domain=smtp_config.rcpt_domain, rate=smtp_config.rate,
                    fail_fast=smtp_config.fail_fast,
                    seed=int(smtp_config.seed) if smtp_config.seed.isdigit() else None)
    if record.errors:
        return
    failing = engine.finish()
    if failing:
        raise RunFailed(failing, [replay_hint(f, smtp_server_address) for f in failing])


@pytest.fixture
def smtp_coverage(pytestconfig: pytest.Config) -> Coverage:
    """(state, group, code) triples observed so far in this run (code 0: no reply)."""
    return pytestconfig.stash[RECORD_KEY].coverage
