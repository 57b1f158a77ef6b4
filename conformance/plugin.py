"""The pytest plugin: options, the embedded server, fixtures, the header and failure reports.

Thin on purpose: everything it offers works without pytest (see conformance.session and
conformance.machine). Options come from the command line, then the environment, then ini.
"""

from __future__ import annotations

import dataclasses
import os
import random
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis.errors import FlakyStrategyDefinition

from conformance import grammar, replay
from conformance.baseline import Baseline
from conformance.baseline import from_run as from_baseline_run
from conformance.baseline import load as load_baseline
from conformance.baseline import write as write_baseline
from conformance.client import ServerAddress, SMTPClient
from conformance.errors import (
    EXIT_UNREACHABLE,
    ConformanceError,
    TargetLost,
    TargetUnreachable,
    UsageError,
)
from conformance.failures import (
    ConformanceFailure,
    conformance_failures,
    failure_text,
    unreproduced_failures,
)
from conformance.grading import Policy
from conformance.levels import Verdict
from conformance.machine import SMTPConformance, configure
from conformance.minimise import Minimised, minimise
from conformance.record import Coverage, RunError, RunRecord, records_for
from conformance.reference_server import ReferenceServer
from conformance.report import RunInfo, document, summary_lines, write_diagram, write_report
from conformance.session import Pacer
from conformance.tables import DEFAULT_PROFILE, PROFILES, Profile, get_profile

# Named example budgets: (examples, steps per example).
BUDGETS = {"fast": (60, 25), "thorough": (1000, 50)}


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
           "seconds to wait for each reply (default 5)"),
    Option("--smtp-examples", "smtp_examples", "SMTP_CONFORMANCE_EXAMPLES", "fast",
           "example budget: 'fast' (60 sessions, CI), 'thorough' (1000), or a number"),
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


@dataclass(frozen=True)
class SuiteConfig:
    server: ServerAddress | None  # None: the embedded reference server
    profile: Profile
    timeout: float
    examples: int
    steps: int
    budget: str
    strict: bool = False
    deliver: bool = False  # asked for; see ``delivers``
    rcpt_domain: str | None = None  # None: the strategies' reserved test domains
    rate: float | None = None  # commands per second; None: no limit
    report: Path | None = None
    seed: str = ""  # Hypothesis's seed for this run, as --hypothesis-seed takes it
    baseline: Baseline | None = None
    baseline_write: Path | None = None
    failures_dir: Path | None = None
    today: date = field(default_factory=date.today)

    @property
    def delivers(self) -> bool:
        """Messages are completed only when asked, or to the embedded server (which keeps
        nothing)."""
        return self.deliver or self.server is None

    @property
    def policy(self) -> Policy:
        known = self.baseline.known(self.today) if self.baseline else frozenset()
        return Policy(strict=self.strict, known=known, survey=self.baseline_write is not None)

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
RECORD_KEY = pytest.StashKey[RunRecord]()  # on the config: the whole run; on an item: its own
ADDRESS_KEY = pytest.StashKey[ServerAddress]()  # on an item: the server its machine talks to


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("smtp-conformance", "SMTP conformance suite")
    for option in OPTIONS:
        if option.flag:
            group.addoption(option.name, dest=option.ini, default=None, help=option.help,
                            action="store_const", const="true")
        else:
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
    strict, deliver = _flag(values, "smtp_strict"), _flag(values, "smtp_deliver")
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
    return SuiteConfig(server, profile, timeout, examples, steps, budget,
                       strict=strict, deliver=deliver, rcpt_domain=rcpt_domain, rate=rate,
                       report=report, seed=_seed(config),
                       baseline=baseline, baseline_write=baseline_write,
                       failures_dir=Path(values["smtp_failures_dir"])
                       if values["smtp_failures_dir"] else None)


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


def pytest_configure(config: pytest.Config) -> None:
    config.stash[CONFIG_KEY] = parse_config(config)
    config.stash[RECORD_KEY] = RunRecord()
    config.pluginmanager.register(_RunReporter(config), "smtp-conformance-reporter")
    if config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(_XdistSeed(config.stash[CONFIG_KEY].seed))


class _XdistSeed:
    """Hands the controller's seed to every pytest-xdist worker, so all run the same seed."""

    def __init__(self, seed: str) -> None:
        self.seed = seed

    def pytest_configure_node(self, node: Any) -> None:
        node.workerinput["smtp_seed"] = self.seed


def pytest_report_header(config: pytest.Config) -> str:
    suite = config.stash[CONFIG_KEY]
    target = str(suite.server) if suite.server else \
        "embedded reference server (aiosmtpd on 127.0.0.1, ephemeral port)"
    return (f"smtp-conformance: target {target}; profile {suite.profile.name} "
            f"({suite.profile.level}); timeout {suite.timeout:g}s; "
            f"examples {suite.budget} ({suite.examples} x {suite.steps} steps); "
            f"seed {suite.seed}{'; strict' if suite.strict else ''}"
            f"{'' if suite.delivers else '; safe mode (messages are not completed)'}"
            f"{f'; at most {suite.rate:g} commands/s' if suite.rate else ''}")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]
                              ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A failed check reads as its message and the shrunk session, not as our traceback; the
    item's findings and coverage travel on its report (to the xdist controller, too)."""
    report = yield
    failures = conformance_failures(call.excinfo.value) if call.excinfo is not None else []
    record = item.stash.get(RECORD_KEY, None)
    if record is None or call.when != "call":
        return report
    suite = item.config.stash[CONFIG_KEY]
    error = call.excinfo.value if call.excinfo is not None else None
    if isinstance(error, TargetLost | TargetUnreachable | FlakyStrategyDefinition):
        _stopped_by_server(report, record, item, suite)
        return report
    unreproduced = unreproduced_failures(error) if error is not None else []
    if unreproduced:
        _inconclusive(report, record, unreproduced, suite.policy)
        return report
    if report.failed and not failures:  # a bug of ours: its traceback stays
        first_line = (str(error).splitlines() or [""])[0]
        record.errors.append(RunError(f"the suite stopped: {type(error).__name__}: "
                                      f"{first_line}"))
    address = item.stash[ADDRESS_KEY]  # set with the record, by the state machine fixture
    shortest = [_shortest(failure, address, suite) for failure in failures]
    replays = [_save_replay(item, suite, failure, script)
               for failure, (script, _) in zip(failures, shortest, strict=True)]
    if report.failed and failures:
        report.longrepr = failure_text(  # type: ignore[assignment]
            failures, [_replay_hint(path, script, address, minimal)
                       for path, (script, minimal) in zip(replays, shortest, strict=True)])
    for path, failure in zip(replays, failures, strict=True):
        item.user_properties.append(("smtp_check", failure.check.id))  # JUnit <property>
        _note(record, failure, suite.policy, replay=str(path))
    report.smtp_conformance = record.to_json()  # type: ignore[attr-defined]
    return report


def _note(record: RunRecord, failure: ConformanceFailure, policy: Policy, *,
          replay: str | None = None, verdict: Verdict | None = None, remark: str = "") -> None:
    """Record each finding of ``failure``; ``verdict`` overrides the policy's grading and
    ``remark`` is appended to the complaint."""
    for finding in records_for(failure.findings, failure.exchange, failure.transcript, policy):
        record.note(dataclasses.replace(
            finding, replay=replay, verdict=str(verdict) if verdict else finding.verdict,
            complaint=finding.complaint + remark))


def _stopped_by_server(report: pytest.TestReport, record: RunRecord, item: pytest.Item,
                       suite: SuiteConfig) -> None:
    """The run cannot go on: the server went away, or it answered the same session differently
    from one replay to the next, so Hypothesis could not follow it. A one-line error, no
    traceback; if the server is gone, the run stops there with EXIT_UNREACHABLE."""
    address = item.stash[ADDRESS_KEY]
    gone = _unreachable(address, suite.timeout)
    if gone:
        error = RunError(f"the server stopped accepting connections during the run: {gone}",
                         unreachable=True)
    else:
        error = RunError("the server answered the same commands differently from one session "
                         "to the next (it is not deterministic, or its state changed during "
                         "the run), so the sessions could not be replayed")
    record.errors.append(error)
    report.longrepr = f"smtp-conformance: {error.message}"
    report.smtp_conformance = record.to_json()  # type: ignore[attr-defined]
    if error.unreachable:  # nothing after this can reach it either
        item.session.shouldstop = error.message


def _inconclusive(report: pytest.TestReport, record: RunRecord,
                  failures: list[ConformanceFailure], policy: Policy) -> None:
    """The server answered a session differently when Hypothesis ran it again: not a
    conformance failure to report as FAIL, but a finding to show with its evidence."""
    for failure in failures:
        _note(record, failure, policy, verdict=Verdict.INCONCLUSIVE,
              remark=" (seen once; the same session, replayed, was answered differently)")
    report.outcome, report.longrepr = "passed", None
    report.smtp_conformance = record.to_json()  # type: ignore[attr-defined]


def _shortest(failure: ConformanceFailure, address: ServerAddress, suite: SuiteConfig
              ) -> tuple[replay.Script, Minimised | None]:
    """The failing session to save and show: the shortest part of it that, replayed, fails
    the same way (``None`` beside it when no step could be dropped)."""
    script = replay.script_of(failure)
    minimal = minimise(script, address, timeout=suite.timeout, key=replay.failure_key(failure),
                       pacer=Pacer(suite.rate), deliver=suite.delivers)
    if minimal is None or len(minimal.script.steps) == len(script.steps):
        return script, None
    return minimal.script, minimal


def _save_replay(item: pytest.Item, suite: SuiteConfig, failure: ConformanceFailure,
                 script: replay.Script) -> Path:
    directory = suite.failures_dir or item.config.rootpath / ".smtp-conformance" / "failures"
    path = directory / replay.file_name(failure)
    replay.save(script, path)
    return path


def _replay_hint(path: Path, script: replay.Script, address: ServerAddress,
                 minimal: Minimised | None) -> str:
    shown = path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path
    shortest = [] if minimal is None else [
        f"Shortest session found ({len(minimal.script.steps)} of the "
        f"{minimal.original_steps} steps; replayed, it fails the same way):",
        *(f"    {line}" for line in minimal.failure.transcript.splitlines()),
    ]
    return "\n".join([
        *shortest,
        "Replay (same bytes, same checks):",
        f"  python -m conformance replay {shown} --server={address}",
        "By hand (sends everything at once):",
        f"  {replay.printf_reproducer(script.steps, address)}",
    ])


class _RunReporter:
    """Merges every test report's findings and coverage (the xdist controller's included) into
    the run's record, and prints the summary and writes the JSON report at the end."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.suite = config.stash[CONFIG_KEY]
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
        if not (record.coverage or record.findings or record.errors):
            return  # the suite did not run
        terminalreporter.write_sep("=", f"smtp-conformance: profile {self.suite.profile.name}")
        for line in summary_lines(self.record, self.suite.profile):
            terminalreporter.write_line(line)
        suite = self.suite
        if suite.baseline is not None:
            for line in suite.baseline.status(self.record, suite.today).lines():
                terminalreporter.write_line(line)
        if self.written is not None:  # written at session finish, which runs first
            terminalreporter.write_line(f"baseline written: {suite.baseline_write} "
                                        f"({len(self.written.entries)} entries)")
        seed = self.suite.seed
        terminalreporter.write_line(f"seed: {seed} (rerun: --hypothesis-seed={seed})")
        if self.suite.report is not None and not self.is_worker:
            terminalreporter.write_line(f"report: {self.suite.report}")

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        suite = self.suite
        if self.is_worker:
            return
        if any(error.unreachable for error in self.record.errors):
            session.exitstatus = exitstatus = EXIT_UNREACHABLE
        if suite.baseline_write is not None:
            self.written = from_baseline_run(self.record, suite.today, suite.baseline)
            write_baseline(self.written, suite.baseline_write)
        if suite.report is None:
            return
        target = str(suite.server) if suite.server else "embedded reference server"
        run = RunInfo(target, suite.profile, suite.strict, suite.seed, suite.examples,
                      suite.steps, self.started, datetime.now(UTC), int(exitstatus))
        dot_path = suite.report.with_suffix(".dot")
        svg_path = write_diagram(self.record, dot_path)
        status = suite.baseline.status(self.record, suite.today) if suite.baseline else None
        write_report(suite.report, document(self.record, run,
                                            status.to_json() if status else None,
                                            (dot_path, svg_path)))


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
    if gone := _unreachable(address, timeout):
        pytest.exit(f"smtp-conformance: {gone}", returncode=EXIT_UNREACHABLE)


def _unreachable(address: ServerAddress, timeout: float) -> str | None:
    """Why no connection to ``address`` can be made; None if one can."""
    probe = SMTPClient(address, timeout=timeout)
    try:
        probe.connect()
    except TargetUnreachable as error:
        return str(error)
    except ConformanceError:
        pass  # it answered, badly: that is for the checks to report
    finally:
        probe.close()
    return None


@pytest.fixture
def smtp_client(smtp_server_address: ServerAddress, smtp_config: SuiteConfig) -> Iterator[
        SMTPClient]:
    """A client connected to the server under test, greeting already read."""
    with SMTPClient(smtp_server_address, timeout=smtp_config.timeout) as client:
        client.connect()
        yield client


@pytest.fixture
def smtp_state_machine(request: pytest.FixtureRequest, smtp_server_address: ServerAddress,
                       smtp_config: SuiteConfig) -> type[SMTPConformance]:
    """The conformance state machine, bound to the target, profile and seed; its findings
    and coverage go into this test's report and the run's summary."""
    record = request.node.stash[RECORD_KEY] = RunRecord()
    request.node.stash[ADDRESS_KEY] = smtp_server_address
    return configure(smtp_server_address, smtp_config.profile, timeout=smtp_config.timeout,
                     policy=smtp_config.policy, record=record, deliver=smtp_config.delivers,
                     rcpt_domain=smtp_config.rcpt_domain, rate=smtp_config.rate,
                     seed=int(smtp_config.seed) if smtp_config.seed.isdigit() else None)


@pytest.fixture
def smtp_coverage(pytestconfig: pytest.Config) -> Coverage:
    """(state, group, code) triples observed so far in this run (code 0: no reply)."""
    return pytestconfig.stash[RECORD_KEY].coverage
