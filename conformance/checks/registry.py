"""The registry: ``@check`` registers a small named function; ``run_checks`` runs them on
one exchange and folds their complaints into one finding per behaviour.
"""

from __future__ import annotations

from collections.abc import Callable, Container
from dataclasses import dataclass, field
from types import MappingProxyType

from conformance.checks.exchange import (
    CheckFunction,
    Exchange,
    Identity,
    IdentityFunction,
    by_command,
)
from conformance.protocol.levels import Level
from conformance.protocol.model import advance
from conformance.protocol.vocabulary import (
    END_OF_DATA,
)


@dataclass(frozen=True)
class Check:
    id: str
    level: Level | None  # None: the level of the profile row the reply is judged against
    citation: str
    run: CheckFunction
    # Timing evidence: a replay answered in time does not refute it, so a finding that does
    # not reproduce is INCONCLUSIVE rather than an intermittent deviation.
    timing: bool = False
    # Per run: the finding stands only if no exchange of the run refuted it (``refuted_by``).
    refuted_by: Callable[[Exchange], bool] | None = None
    # What one of its findings is about (see ``Identity``): the command and the reply code
    # unless the check says otherwise (a tarpit is about the session, a reply that breaks
    # the syntax about the rule it breaks, a close about the input that set it off).
    identity: IdentityFunction = by_command
    # Whether the model still knows the server's state after this finding, so the session
    # may go on (None: it does not; the session ends, and the run reconnects).
    state_known: Callable[[Exchange], bool] | None = None
    # A general check (``reply_code_documented``): where a specific check complains about
    # the same exchange at least as strongly, this one's complaint is listed with that
    # finding, not beside it.
    general: bool = False
    # Checks whose findings, where the run has any, explain this one's symptom without it
    # (a server that takes RCPT with no MAIL at all also takes it after RSET): then this
    # one's findings are dropped at the end of the run.
    explained_by: tuple[str, ...] = ()
    # Whether it judges probes (``Exchange.is_probe``) too; most checks judge only what a client
    # may send.
    judges_probes: bool = False


_REGISTRY: dict[str, Check] = {}


def check(id: str, *, level: Level | None, citation: str, timing: bool = False,
          refuted_by: Callable[[Exchange], bool] | None = None,
          identity: IdentityFunction = by_command,
          state_known: Callable[[Exchange], bool] | None = None, general: bool = False,
          explained_by: tuple[str, ...] = (),
          judges_probes: bool = False) -> Callable[[CheckFunction], CheckFunction]:
    """Register ``function`` as a check. A new check is one decorated function."""
    def register(function: CheckFunction) -> CheckFunction:
        if id in _REGISTRY:
            raise ValueError(f"check {id!r} registered twice")
        _REGISTRY[id] = Check(id, level, citation, function, timing=timing,
                              refuted_by=refuted_by, identity=identity,
                              state_known=state_known, general=general,
                              explained_by=explained_by, judges_probes=judges_probes)
        return function
    return register


def always(x: Exchange) -> bool:
    return True


def code_documented(x: Exchange) -> bool:
    """A readable reply with a documented code: the model advanced as the server meant."""
    return x.reply is not None and x.reply.well_formed and \
        x.profile.row(x.group).allows(x.reply.code)


def leaves_state_as_it_was(x: Exchange) -> bool:
    """The reply is readable, of a class the row has (a client acts on the first digit, RFC
    5321 §4.2.1), and the model's state after it is what any reply of that class leaves: the
    state before, or after the end of data, READY whatever the code (§4.1.1.4). An
    undocumented code that would move the session (220 to HELO) leaves the model unsure
    whether the server did what a documented one means."""
    if x.reply is None or not x.reply.well_formed or \
            x.reply.first_digit not in {code // 100 for code in x.profile.row(x.group).code_set}:
        return False
    return x.group == END_OF_DATA or \
        advance(x.before, x.group, x.reply.code).state is x.before.state


CHECKS: MappingProxyType[str, Check] = MappingProxyType(_REGISTRY)


@dataclass(frozen=True)
class Finding:
    """One check's complaint about one exchange (``also``: a general check's complaint
    about the same exchange, listed with this one)."""

    check: Check
    level: Level
    complaint: str
    also: list[Finding] = field(default_factory=list, compare=False)


def refuted_checks(exchange: Exchange) -> list[str]:
    """The per-run checks that ``exchange`` refutes for its command group."""
    return [c.id for c in CHECKS.values() if c.refuted_by is not None and c.refuted_by(exchange)]


LEVEL_ORDER = {Level.MUST: 0, Level.SHOULD: 1, Level.INFO: 2}  # strongest first


def run_checks(exchange: Exchange, only: Container[str] | None = None) -> list[Finding]:
    """Every complaint the registered checks (``only`` these, if given) have about
    ``exchange``, MUST first. A general check's complaint, where a specific one complains
    at least as strongly, goes with that finding (``Finding.also``) instead."""
    findings = []
    probe = exchange.is_probe
    for registered in CHECKS.values():
        if (only is not None and registered.id not in only) or \
                (probe and not registered.judges_probes):
            continue
        complaint = registered.run(exchange)
        if complaint is None:
            continue
        message, level = complaint if isinstance(complaint, tuple) else (
            complaint, registered.level or Level.MUST)
        findings.append(Finding(registered, level, message))
    findings.sort(key=lambda f: LEVEL_ORDER[f.level])
    return fold(findings)


def fold(findings: list[Finding]) -> list[Finding]:
    """The findings of one exchange, one per behaviour: a close the server made after the
    reply (``no_silent_close``) is the behaviour, every complaint about that reply goes with
    it, and it is graded by the strongest; else a general check's complaint goes with a
    specific one as strong as it or stronger. A refusal of a command the session had taken
    in the same state (``session_limit``) is the server limiting the session: every
    complaint about that reply goes with it, a note. A server giving up after repeated errors
    (graded INFO, RFC 5321 §7.8) keeps that grade: the reply's complaints go with it but
    lend it none (what a server's other replies break is a finding there; where the close
    followed one unusual input every time, ``RunRecord.consolidate`` joins it to that
    input's close)."""
    limited = [f for f in findings if f.check.id == "session_limit"]
    if limited:  # a refusal that is the server's limit on the session: its complaints (a
        # close, a code outside the row) are that limit, a note (RFC 5321 §7.8)
        also = [g for f in findings for g in (f, *f.also) if g is not limited[0]]
        return [Finding(limited[0].check, limited[0].level, limited[0].complaint, also)]
    closing = [f for f in findings if f.check.id == "no_silent_close"]
    if closing:  # graded by the strongest rule the reply before the close broke
        # (a per-run check's finding stays apart: the run may yet refute it)
        per_run = [f for f in findings if f.check.refuted_by is not None]
        others = [f for f in findings if f is not closing[0] and f not in per_run]
        strongest = closing[0].level if closing[0].level is Level.INFO else \
            min((f.level for f in [closing[0], *others]), key=LEVEL_ORDER.__getitem__)
        also = [g for f in [closing[0], *others] for g in (f, *f.also) if g is not closing[0]]
        return [Finding(closing[0].check, strongest, closing[0].complaint, also), *per_run]
    specific = [f for f in findings if not f.check.general]
    kept = []
    for finding in findings:
        absorbing = next((f for f in specific if finding.check.general and
                          LEVEL_ORDER[f.level] <= LEVEL_ORDER[finding.level]), None)
        if absorbing is None:
            kept.append(finding)
        else:
            absorbing.also.append(finding)
    return kept


def identity_of(finding: Finding, exchange: Exchange) -> Identity:
    return finding.check.identity(exchange)
