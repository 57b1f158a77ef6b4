"""The pytest plugin: options, the embedded server, fixtures, the header and the report hooks.

Glue only: the options' table and parsing are conformance.options', the run is
conformance.search.runner's, and every output (summary, JSON report, JUnit properties, baseline) is
conformance.output.summary'; each hook calls them in a line. Options come from the command line,
then the environment, then ini. Inert in a pytest run that neither collects a test using its
fixtures nor is given one of its options: no header, no option checks, nothing changed.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Generator, Iterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pytest

from conformance import options
from conformance.engine.address import ServerAddress
from conformance.engine.client import SMTPClient
from conformance.engine.failures import RunFailed, failure_text
from conformance.engine.outcome import replay_hint, unreachable
from conformance.engine.pacing import Activity
from conformance.engine.record import Coverage, RunError, RunRecord, Runs
from conformance.engine.settings import RunSettings, target_name
from conformance.options import OPTIONS, Option
from conformance.output import summary as outputs
from conformance.output.progress import StatusLine
from conformance.protocol.errors import EXIT_UNREACHABLE, TargetUnreachable, UsageError

if TYPE_CHECKING:  # the machine, the runner and the reference server load Hypothesis,
    # aiosmtpd and trustme: imported where a run starts, not by every pytest session
    from conformance.engine.session import CheckedSession
    from conformance.search.machine import SMTPConformance

__all__ = ["OPTIONS", "Option", "SuiteConfig"]

SuiteConfig = RunSettings  # the name the fixtures and users' type hints know
FIXTURES = frozenset({"smtp_config", "smtp_server_address", "smtp_client", "smtp_session",
                      "smtp_state_machine", "smtp_coverage", "smtp_run", "smtp_shard"})

CONFIG_KEY = pytest.StashKey[RunSettings]()
SEED_KEY = pytest.StashKey[str]()
RUNS_KEY = pytest.StashKey[Runs]()  # on the config: every run's record, by target
RECORD_KEY = pytest.StashKey[RunRecord]()  # on an item: its own run's record
TARGET_KEY = pytest.StashKey[str]()  # on an item: the name of the server its run talks to
ADDRESS_KEY = pytest.StashKey[ServerAddress]()  # on an item: the server its run talks to
SETTLE_KEY = pytest.StashKey[Callable[[], None]]()  # on an item: settles its own run's findings
SUITE_KEY = pytest.StashKey[bool]()  # on the config: whether the suite's own run is collected


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("smtp-conformance", "SMTP conformance suite")
    for option in OPTIONS:
        action = "store_const" if option.flag else "append" if option.repeatable else "store"
        extra: dict[str, Any] = {"const": "true"} if option.flag else {}
        group.addoption(option.name, dest=option.ini, default=None, help=option.help,
                        action=action, **extra)
        parser.addini(option.ini, help=option.help, default=None)


def _given(config: pytest.Config, option: Option) -> str | None:
    """Command line, then environment, then ini; None if none gives it. An empty value
    given on the command line or in the environment counts as given."""
    given = config.getoption(option.ini)
    if isinstance(given, list):  # a repeatable option given several times
        given = ",".join(given)
    if given is None:
        given = os.environ.get(option.env)
    if given is None:
        given = config.getini(option.ini) or None
    return None if given is None else str(given)


def _workers(config: pytest.Config) -> int:
    worker_input = getattr(config, "workerinput", None)
    if worker_input is not None:
        return int(worker_input.get("workercount", 1))
    count = config.getoption("numprocesses", default=None)
    return count if isinstance(count, int) else 1


def settings_of(config: pytest.Config) -> RunSettings:
    """The suite's settings, parsed the first time they are needed."""
    if CONFIG_KEY not in config.stash:
        try:
            config.stash[CONFIG_KEY] = options.parse(
                lambda option: _given(config, option), seed=config.stash[SEED_KEY],
                workers=_workers(config),
                failures_dir=config.rootpath / ".smtp-conformance" / "failures")
        except UsageError as error:
            raise pytest.UsageError(f"smtp-conformance: {error}") from None
    return config.stash[CONFIG_KEY]


def _active(config: pytest.Config) -> bool:
    return CONFIG_KEY in config.stash


def pytest_configure(config: pytest.Config) -> None:
    given = config.getoption("hypothesis_seed", default=None)
    inherited = getattr(config, "workerinput", {}).get("smtp_seed")
    config.stash[SEED_KEY] = options.choose_seed(None if given is None else str(given),
                                                 None if inherited is None else str(inherited))
    config.stash[RUNS_KEY] = Runs()
    if any(config.getoption(option.ini) is not None for option in OPTIONS):
        settings_of(config)  # an option of ours was given: check them all now
    config.pluginmanager.register(_RunReporter(config), "smtp-conformance-reporter")
    if config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(_XdistSeed(config.stash[SEED_KEY]))


class _XdistSeed:
    """Hands the controller's seed to every pytest-xdist worker, so all run the same seed
    (and the shards of a run, each on whichever worker, the seeds derived from it)."""

    def __init__(self, seed: str) -> None:
        self.seed = seed

    def pytest_configure_node(self, node: Any) -> None:
        node.workerinput["smtp_seed"] = self.seed


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Several servers: a test per server (its id the address); several shards: a suite
    run per shard of each server's run."""
    if "smtp_server_address" not in metafunc.fixturenames:
        return
    try:
        suite = settings_of(metafunc.config)
    except pytest.UsageError:
        return  # raised again after collection, where it is a usage error, not a test's
    if len(suite.servers) > 1:
        metafunc.parametrize("smtp_server_address", suite.servers, indirect=True,
                             ids=[str(server) for server in suite.servers], scope="session")
    if suite.shards > 1 and "smtp_run" in metafunc.fixturenames:
        metafunc.parametrize("smtp_shard", range(suite.shards), indirect=True,
                             ids=[f"shard{n + 1}of{suite.shards}" for n in range(suite.shards)])


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A test using the fixtures makes the plugin active; the run's own budget, not
    pytest-timeout, ends each such test (the backstop is set past it)."""
    ours = [item for item in items if FIXTURES & set(getattr(item, "fixturenames", ()))]
    if not ours:
        return
    config.stash[SUITE_KEY] = any("smtp_run" in getattr(item, "fixturenames", ()) for item in ours)
    suite = settings_of(config)
    for item in ours:
        if item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(suite.time_budget + 120))


def pytest_report_collectionfinish(config: pytest.Config) -> list[str]:
    return [outputs.header(settings_of(config), suite_run=config.stash.get(SUITE_KEY, True))] \
        if _active(config) else []


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]
                              ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Failing findings read as findings, not as our traceback; the item's record travels
    on its report (to the xdist controller, too)."""
    report = yield
    error = call.excinfo.value if call.excinfo is not None else None
    params = getattr(getattr(item, "callspec", None), "params", {})
    if isinstance(error, TargetUnreachable) and "smtp_server_address" in params:
        # One of several servers is out of reach: its tests error, its run says why.
        report.longrepr = f"smtp-conformance: {error}"
        report.smtp_conformance = RunRecord(  # type: ignore[attr-defined]
            errors=[RunError(str(error), unreachable=True)]).to_json()
        report.smtp_target = str(params["smtp_server_address"])  # type: ignore[attr-defined]
        return report
    record = item.stash.get(RECORD_KEY, None)
    if isinstance(error, RunFailed) and call.when != "setup":
        report.longrepr = failure_text(error)  # type: ignore[assignment]
        item.user_properties += outputs.junit_properties(error)
    if record is None or call.when == "setup":
        return report
    if error is not None and report.failed and not isinstance(error, RunFailed):
        from conformance.search.runner import stopped

        line = stopped(error, record, item.stash[ADDRESS_KEY], settings_of(item.config).timeout)
        if line is not None:
            report.longrepr = line
    gone = next((e for e in record.errors if e.unreachable), None)
    if gone is not None and len(settings_of(item.config).servers) <= 1:
        item.session.shouldstop = gone.message  # nothing after can reach it (other servers can)
    # The record travels once, when it is complete: after the call (a test's own run,
    # smtp_state_machine's, settles in the call: see pytest_runtest_call).
    if call.when == "call":
        report.smtp_conformance = record.to_json()  # type: ignore[attr-defined]
        report.smtp_target = item.stash[TARGET_KEY]  # type: ignore[attr-defined]
    return report


class _RunReporter:
    """Merges every test report's record (the xdist controller's included) into its run's,
    and, at the end, has the outputs written (summary, JSON report, baseline)."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.runs = config.stash[RUNS_KEY]
        self.started = datetime.now(UTC)
        self.is_worker = hasattr(config, "workerinput")
        self.finished: outputs.Finished | None = None

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        data = getattr(report, "smtp_conformance", None)
        if data is not None:
            self.runs.add(str(getattr(report, "smtp_target", "")), RunRecord.from_json(data))

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if _active(self.config):
            outputs.write_summary(terminalreporter, settings_of(self.config), self.runs,
                                  self.finished, is_worker=self.is_worker)

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if self.is_worker or not _active(self.config):
            return
        self.finished = outputs.finish(settings_of(self.config), self.runs, self.started,
                                       int(exitstatus))
        if self.finished.exit_status != exitstatus:
            session.exitstatus = self.finished.exit_status


# --- fixtures --------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def smtp_config(pytestconfig: pytest.Config) -> RunSettings:
    """The suite's settings: targets, profile, timeout, budgets."""
    return settings_of(pytestconfig)


@pytest.fixture(scope="session")
def smtp_server_address(request: pytest.FixtureRequest, smtp_config: RunSettings
                        ) -> Iterator[ServerAddress]:
    """The server under test (with several, each test's own); starts the embedded reference
    server when none was given."""
    server: ServerAddress | None = getattr(request, "param", smtp_config.server)
    if server is None:
        from conformance.testing.reference_server import ReferenceServer

        with ReferenceServer(profile=smtp_config.profile) as embedded:
            yield embedded.address
        return
    if gone := unreachable(server, smtp_config.timeout):
        if len(smtp_config.servers) > 1:
            raise TargetUnreachable(gone)  # this server's tests error; the others go on
        # In the run's record too, so the JSON report says why nothing was tested.
        request.config.stash[RUNS_KEY].add(str(server), RunRecord(
            errors=[RunError(gone, unreachable=True)]))
        pytest.exit(f"smtp-conformance: {gone}", returncode=EXIT_UNREACHABLE)
    yield server


@pytest.fixture
def smtp_shard(request: pytest.FixtureRequest) -> int:
    """Which shard of its server's run a test is (0 unless ``--smtp-shards``)."""
    return int(getattr(request, "param", 0))


@pytest.fixture
def smtp_client(smtp_server_address: ServerAddress, smtp_config: RunSettings) -> Iterator[
        SMTPClient]:
    """A client connected to the server under test, greeting already read."""
    with SMTPClient(smtp_server_address, timeout=smtp_config.timeout) as client:
        client.connect()
        yield client


def _own_run(request: pytest.FixtureRequest, address: ServerAddress, suite: RunSettings,
             shard: int = 0) -> tuple[RunSettings, RunRecord]:
    """A test's own run: its settings (its server's, its shard's) and its record."""
    settings = suite.for_run(address if suite.servers else None, shard)
    request.node.stash[RECORD_KEY] = record = RunRecord()
    request.node.stash[ADDRESS_KEY] = address
    request.node.stash[TARGET_KEY] = target_name(settings.server)
    return settings, record


@pytest.fixture
def smtp_run(request: pytest.FixtureRequest, smtp_server_address: ServerAddress,
             smtp_config: RunSettings, smtp_shard: int) -> Callable[[], None]:
    """The whole run, as the suite does it: call it; it raises ``RunFailed`` with every
    failing finding, each with its shortest session."""
    settings, record = _own_run(request, smtp_server_address, smtp_config, smtp_shard)
    failures_dir = settings.failures_dir
    assert failures_dir is not None
    activity = Activity()

    def run() -> None:
        from conformance.search.runner import run as run_engine

        with _status_line(request.config, settings, record, activity):
            run_engine(settings, smtp_server_address, record, failures_dir, activity)
    return run


def _status_line(config: pytest.Config, settings: RunSettings, record: RunRecord,
                 activity: Activity) -> contextlib.AbstractContextManager[object]:
    """The run's status line on pytest's terminal output, past the test's output capture
    (as live logging writes); none in an xdist worker, whose output nobody reads live, or
    with --smtp-no-progress. The capture is lifted from the status line's thread, for the
    moment of a write: what the run's own thread prints then (nothing, in a suite run)
    would reach the terminal too."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if not settings.progress or reporter is None or hasattr(config, "workerinput"):
        return contextlib.nullcontext()
    capture = config.pluginmanager.get_plugin("capturemanager")

    def write(text: str) -> None:
        with capture.global_and_fixture_disabled() if capture is not None else \
                contextlib.nullcontext():
            reporter.write(text, flush=True)
    return StatusLine(activity, record, settings.time_budget, write,
                      terminal=bool(reporter.isatty))


@pytest.fixture
def smtp_state_machine(request: pytest.FixtureRequest, smtp_server_address: ServerAddress,
                       smtp_config: RunSettings) -> type[SMTPConformance]:
    """The conformance state machine, bound to the target, profile and seed, for a test's
    own run, started as the suite's own is (``Run.start``: the example database's sessions
    first, the relay check, the deadline). Subclass it to add rules of your own (each sends
    with ``self.send``). It records findings rather than raising them; when the test's body
    has run, the failing ones fail the test, each with its shortest session."""
    settings, record = _own_run(request, smtp_server_address, smtp_config)
    assert settings.failures_dir is not None
    from conformance.search.runner import Run

    engine = Run(settings, smtp_server_address, record, settings.failures_dir)

    def settle() -> None:
        if record.errors:
            return  # the run stopped: its errors say why, in the test's failure and the report
        if failing := engine.finish():
            raise RunFailed(failing, [replay_hint(f, smtp_server_address) for f in failing])
    request.node.stash[SETTLE_KEY] = settle
    return engine.start()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    """A test's own run settles when the test's body has run, so its failing findings fail
    the test there: one failure, not a pass and an error at teardown. A body that failed by
    itself keeps its own failure; its run's findings still reach the report."""
    settle = item.stash.get(SETTLE_KEY, None)
    if settle is None:
        return (yield)
    try:
        result = yield
    except BaseException:
        with contextlib.suppress(RunFailed):
            settle()
        raise
    settle()
    return result


@pytest.fixture(scope="session")
def smtp_session(smtp_server_address: ServerAddress, smtp_config: RunSettings
                 ) -> Callable[[], contextlib.AbstractContextManager[CheckedSession]]:
    """Checked sessions for a test of your own, ``@given`` included (the fixture lasts the
    whole pytest session, so Hypothesis's health check for function-scoped fixtures has
    nothing to object to): ``with smtp_session() as session: session.send(command)``. Each
    block is one session with the server under test, greeted, each reply checked as the
    suite checks it; when the block ends, its failing findings fail the test, together."""
    settings = smtp_config.session(smtp_server_address)

    def new_session() -> contextlib.AbstractContextManager[CheckedSession]:
        from conformance.engine.checked import checked_session

        return checked_session(smtp_server_address, settings)
    return new_session


@pytest.fixture
def smtp_coverage(pytestconfig: pytest.Config) -> Coverage:
    """(state, group, code) triples observed so far in this session (every server's)."""
    return pytestconfig.stash[RUNS_KEY].coverage
