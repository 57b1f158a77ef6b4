"""A run's settings: every default once, and what follows from them (the time budget, the
TLS context, a shard's share, the grading policy, what each session is set to). Light to
import: the plugin and the options load it before anything runs."""

from __future__ import annotations

import dataclasses
import math
import ssl
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

from conformance.checks.grading import Policy
from conformance.engine.address import ServerAddress
from conformance.engine.baseline import Baseline
from conformance.engine.client import tls_context
from conformance.engine.pacing import HANG_FACTOR
from conformance.protocol.credentials import EMBEDDED_CREDENTIALS, Credentials
from conformance.protocol.tables import Profile

if TYPE_CHECKING:
    from hypothesis import settings

# Named example budgets: (examples, steps per example).
BUDGETS = {"fast": (60, 25), "thorough": (1000, 50)}
SECONDS_PER_EXAMPLE = 2  # the default time budget: this much per example, at least a minute
EMBEDDED = "embedded reference server"  # the target's name when no server was given
# Seconds a reply may take, unless told otherwise (--smtp-timeout): RFC 5321 §4.5.3.2 gives a
# client minutes, a test wants a verdict; later is a SHOULD finding, never a MUST.
DEFAULT_TIMEOUT = 5.0


def default_budget(examples: int) -> float:
    return float(max(60, examples * SECONDS_PER_EXAMPLE))


@dataclass(frozen=True)
class SessionSettings:
    """What every session of a run is set to, one value handed to each session, replay and
    minimisation (a run makes it with ``RunSettings.session``)."""

    profile: Profile
    timeout: float = DEFAULT_TIMEOUT  # seconds for each reply; a later one is late
    # How much longer than the timeout a reply may come and count as late, not missing;
    # None: HANG_FACTOR times the timeout in all (0: a late reply counts as none).
    hang_wait: float | None = None
    policy: Policy = field(default_factory=Policy)
    # False: safe mode. A message is never completed: after the 354 the connection is closed
    # instead of sending the data, so the server aborts the transaction (RFC 5321 §4.1.1.4)
    # and nothing is delivered.
    deliver: bool = True
    probes: bool = True  # send control probes after refused commands
    fail_fast: bool = False  # stop the run (StopRun) at the first failing finding
    rate: float | None = None  # commands per second; None: no limit
    credentials: Credentials | None = None  # for AUTH; None: wrong ones (AUTH is refused)
    tls: ssl.SSLContext | None = None  # of STARTTLS upgrades; None: one verifying nothing
    tls_server_name: str | None = None  # the name asked for (SNI); None: the server's host
    rcpt_domain: str | None = None  # None: the strategies' reserved test domains
    relay_check: bool = False  # send recipients the server must not relay to

    @property
    def reply_limit(self) -> float:
        """Seconds after which a reply counts as never coming."""
        extra = self.hang_wait if self.hang_wait is not None else \
            self.timeout * (HANG_FACTOR - 1)
        return self.timeout + extra

    @property
    def tls_context(self) -> ssl.SSLContext:
        """The context of STARTTLS upgrades: the one given, else one that verifies nothing
        (the suite tests SMTP, not the certificate)."""
        return self.tls if self.tls is not None else tls_context(verify=False)


@dataclass(frozen=True)
class RunSettings:
    server: ServerAddress | None  # None: the embedded reference server
    profile: Profile
    timeout: float
    examples: int
    steps: int
    budget_name: str  # how the example budget was given: fast, thorough or a number
    seconds: float = 0.0  # the whole run's time budget; 0: sized to the examples
    strict: bool = False
    deliver: bool = False  # asked for; see ``delivers``
    fail_fast: bool = False
    rcpt_domain: str | None = None  # None: the strategies' reserved test domains
    rate: float | None = None  # commands per second; None: no limit
    report: Path | None = None  # the JSON report
    html: Path | None = None  # the HTML page
    summary_md: Path | None = None  # the Markdown summary
    seed: str = ""  # Hypothesis's seed for this run, as --hypothesis-seed takes it
    baseline: Baseline | None = None
    baseline_write: Path | None = None
    failures_dir: Path | None = None
    today: date = field(default_factory=date.today)
    servers: tuple[ServerAddress, ...] = ()  # every server given (``server`` is the first)
    shards: int = 1  # tests each server's run is split into, each with its share of examples
    shard: int = 0  # which of them this run is
    example_db: str | None = None  # a directory or a redis:// URL; None: no example database
    survey: bool = False  # nothing fails (as with ``baseline_write``)
    tls_verify: bool = False  # verify the certificate after STARTTLS (else accept any)
    tls_cafile: Path | None = None  # None: the system's CAs
    tls_server_name: str | None = None  # None: the server's host
    credentials: Credentials | None = None  # for AUTH; None: none (AUTH is refused)
    relay_check: bool = False  # send recipients the server must not relay to
    progress: bool = True  # a status line while the run runs (conformance.output.progress)

    def session(self, address: ServerAddress) -> SessionSettings:
        """What each session of this run against ``address`` is set to. The TLS context
        verifies the certificate of ``tls_server_name`` (else the server's host) only when
        ``tls_verify``; messages are completed when ``delivers``."""
        return SessionSettings(
            profile=self.profile, timeout=self.timeout, policy=self.policy,
            deliver=self.delivers, fail_fast=self.fail_fast, rate=self.rate,
            credentials=self.credentials,
            tls=tls_context(cafile=self.tls_cafile, verify=self.tls_verify),
            tls_server_name=self.tls_server_name or address.host,
            rcpt_domain=self.rcpt_domain, relay_check=self.relay_check)

    @property
    def targets(self) -> tuple[ServerAddress | None, ...]:
        """One run per target: each server given, or the embedded reference server (None)."""
        return self.servers or (None,)

    def for_run(self, server: ServerAddress | None, shard: int = 0) -> RunSettings:
        """The settings of one run: against ``server`` (None: embedded), and, when the run is
        split into shards, of shard ``shard``: its share of the examples and a seed of its own,
        so shards do not repeat each other's sessions. Its time budget follows from its
        examples as any run's does (at least a minute), or is the --smtp-budget given.
        Against the embedded server, AUTH uses its test credentials unless others were
        given."""
        one = dataclasses.replace(self, server=server, servers=() if server is None
                                  else (server,), shard=shard)
        if server is None and self.credentials is None:
            one = dataclasses.replace(one, credentials=EMBEDDED_CREDENTIALS)
        if self.shards == 1:
            return one
        seed = str((int(self.seed) + shard) % 2**32) if self.seed.isdigit() else self.seed
        return dataclasses.replace(one, examples=math.ceil(self.examples / self.shards),
                                   seed=seed)

    @property
    def time_budget(self) -> float:
        return self.seconds or default_budget(self.examples)

    @property
    def delivers(self) -> bool:
        """Messages are completed only when asked, or to the embedded server (which keeps
        nothing)."""
        return self.deliver or self.server is None

    @property
    def policy(self) -> Policy:
        known = self.baseline.known(self.today) if self.baseline else frozenset()
        return Policy(strict=self.strict, known=known,
                      survey=self.survey or self.baseline_write is not None)

    def hypothesis_settings(self) -> settings:
        """Hypothesis's settings for the run's exploring (for a test's own run of the state
        machine too: ``run_state_machine_as_test(machine, settings=...)``)."""
        from hypothesis import HealthCheck, Phase, settings

        return settings(
            max_examples=self.examples,
            stateful_step_count=self.steps,
            deadline=None,  # network round trips; the per-reply timeout is the bound
            # Nothing is raised to Hypothesis (findings are recorded), so there is nothing to
            # shrink or save: the seed alone decides the run, with or without CI's profile.
            phases=[Phase.explicit, Phase.generate],
            database=None,
            derandomize=False,
            suppress_health_check=list(HealthCheck),
        )


def target_name(server: ServerAddress | None) -> str:
    return EMBEDDED if server is None else str(server)
