"""Failing sessions, saved and replayed: the file, the replay, and a copy-paste reproducer.

A replay file is JSON holding the profile, the finding (its check, level and cause), where it
was recorded (the server, the run's seed, the suite's version) and the session's steps (each
step's group and exact bytes, as a latin-1 string so every octet survives; the batch number
of steps sent in one write; TLS upgrades). Replaying sends the same bytes, in the same
order and the same writes, to any server, and runs the same checks on the replies. Files
are kept per server (``failure_path``), so one server's run never overwrites another's.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conformance import __version__
from conformance.checks import CHECKS, THE_SESSION
from conformance.checks.grading import FindingKey, Policy
from conformance.engine.address import ServerAddress
from conformance.engine.pacing import Adaptation, Pacer
from conformance.engine.record import FindingRecord, RunRecord
from conformance.engine.session import CheckedSession, RunState
from conformance.engine.settings import SessionSettings
from conformance.protocol.commands import (
    DATA_PROBE,
    WRITE_BONDS,
    DataProbe,
    Message,
    Step,
    grouped,
)
from conformance.protocol.errors import StopRun, UsageError
from conformance.protocol.model import State
from conformance.protocol.tables import get_profile
from conformance.protocol.vocabulary import END_OF_DATA

# Format 2 adds batches and TLS upgrades; a session with neither is still written as format
# 1, and a tool that knows only format 1 refuses a file it could not replay faithfully.
REPLAY_FORMAT = 2
READABLE_FORMATS = (1, 2)


@dataclass(frozen=True)
class Script:
    profile: str
    check: str  # the check that failed when the session was recorded
    steps: tuple[Step, ...]
    # The rest of the recorded finding's identity ("": a file from before they were kept).
    level: str = ""
    cause: str = ""
    code: int = 0
    # Where it was recorded: the server (HOST:PORT, or the embedded server's name), the
    # run's seed and the suite's version.
    server: str = ""
    seed: str = ""
    version: str = ""

    @property
    def key(self) -> FindingKey | None:
        """The recorded finding's identity; None for a file that does not hold it."""
        return FindingKey(self.check, self.level, self.cause, self.code) if self.level \
            else None

    @property
    def recorded(self) -> str:
        """One line on what was recorded, and where."""
        finding = f"[{self.check}] {self.level}".rstrip()
        if self.cause:
            finding += f" ({self.cause}{f' {self.code}' if self.code else ''})"
        where = ", ".join(part for part in (
            self.server and f"against {self.server}", f"profile {self.profile}",
            self.seed and f"seed {self.seed}",
            self.version and f"smtp-conformance {self.version}") if part)
        return f"recorded: {finding}, {where}"

    def to_json(self) -> dict[str, Any]:
        new = any(step.batch or step.is_tls for step in self.steps)
        return {"format": REPLAY_FORMAT if new else 1, "profile": self.profile,
                "check": self.check, "level": self.level, "cause": self.cause,
                "code": self.code, "server": self.server, "seed": self.seed,
                "version": self.version, "steps": [step.to_json() for step in self.steps]}


def writes_of(steps: Sequence[Step]) -> list[tuple[Step, ...]]:
    """The steps as the client performs them (``commands.WRITE_BONDS``)."""
    return grouped(steps, WRITE_BONDS)


def script_of(finding: FindingRecord, *, server: str = "", seed: str = "") -> Script:
    return Script(finding.profile, finding.check, finding.session, level=finding.level,
                  cause=finding.cause, code=finding.cause_code, server=server, seed=seed,
                  version=__version__)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def file_name(key: FindingKey) -> str:
    return _safe(f"{key.check}-{key.level}-{key.cause}-{key.code}.json")


def failure_path(failures_dir: Path, target: str, key: FindingKey) -> Path:
    """Where a finding's session is saved: a folder per server (HOST_PORT, or the embedded
    server's), then a file per finding, named by its identity."""
    return failures_dir / _safe(target) / file_name(key)


def save(script: Script, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(script.to_json(), indent=2) + "\n")


def loads(text: str | bytes) -> Script:
    """A replay script from its JSON (a replay file's text, an example database's value);
    ``ValueError`` (and its kin: KeyError, TypeError) if it is not one."""
    data = json.loads(text)
    if data["format"] not in READABLE_FORMATS:
        raise ValueError(f"format {data['format']!r}")
    steps = tuple(Step.from_json(s) for s in data["steps"])
    return Script(str(data["profile"]), str(data["check"]), steps,
                  level=str(data.get("level", "")), cause=str(data.get("cause", "")),
                  code=int(data.get("code", 0)), server=str(data.get("server", "")),
                  seed=str(data.get("seed", "")), version=str(data.get("version", "")))


def load(path: Path) -> Script:
    """Read a replay file; any problem is a one-line UsageError."""
    try:
        return loads(path.read_text())
    except OSError as error:
        raise UsageError(f"cannot read replay file {path}: {error.strerror}") from None
    except (ValueError, KeyError, TypeError, UnicodeEncodeError) as error:
        raise UsageError(f"{path} is not a replay file: {error!r}") from None


def shows(finding: FindingRecord, check: str, cause: str, code: int) -> bool:
    """Whether ``finding`` is the finding (check, cause, code) seen again. One about the whole
    session (a tarpit's hangs, made one by ``RunRecord.consolidate``) is seen again as that
    check's finding on whichever command the replayed session stopped at."""
    return finding.check == check and (
        (finding.cause, finding.cause_code) == (cause, code) or cause == THE_SESSION)


@dataclass(frozen=True)
class Replayed:
    """What a replay saw: every finding, in order (the session ends at the first deviation
    whose effect on the state is not known), and the session's transcript."""

    findings: tuple[FindingRecord, ...]
    transcript: str

    def first(self, key: FindingKey | None = None) -> FindingRecord | None:
        """The finding with ``key`` (see ``shows``), or the first one; None if there is none."""
        return next((f for f in self.findings if key is None or
                     (shows(f, key.check, key.cause, key.code) and f.level == key.level)),
                    None)

    def of(self, script: Script) -> FindingRecord | None:
        """The recorded finding, if the replay showed it again: the same check and cause,
        at whatever level the profile replayed against gives it (for an older file, which
        holds only its check: the first finding of that check)."""
        return next((f for f in self.findings if f.check == script.check and (
            script.key is None or shows(f, script.check, script.cause, script.code))), None)

    def worst(self) -> FindingRecord | None:
        """The finding of the worst verdict (FAIL first), shortest transcript first."""
        return min(self.findings, key=lambda f: f.verdict.rank, default=None)


class _OneSession(Adaptation):
    """A replay's adaptation: a slow reply never caps the session, since a reconnection in
    the middle would replay another session than the one recorded (it would not even be
    TLS any more after an upgrade). A late reply is still checked, and ends the replay."""

    def cap(self, commands_before: int, record: RunRecord, why: str, *,
            floor: int = 1) -> None:
        return


def replay(script: Script, address: ServerAddress, settings: SessionSettings | None = None,
           *, pacer: Pacer | None = None) -> Replayed:
    """Send the script's steps in order, in the same writes (``writes_of``), checking every
    reply, until a deviation ends the session. ``settings``: by default the script's
    profile, graded strictly, each message sent; a replay's TLS upgrades verify no
    certificate unless the settings' context does, since a replay is about what the server
    does, not about its certificate, and its AUTH exchanges use the settings' credentials
    (by default ones no server accepts). ``pacer``: one shared by a series of replays keeps
    the settings' rate across them.

    A message is only ever sent as recorded: if the server asks for mail data (354) where
    the script has none, the replay stops there, so that later lines are never read as a
    message; ``deliver=False`` closes the connection instead of sending any message."""
    if settings is None:
        settings = SessionSettings(get_profile(script.profile), policy=Policy(strict=True))
    record = RunRecord()
    session = CheckedSession(address, settings, RunState(
        record=record, pacer=pacer if pacer is not None else Pacer(settings.rate),
        adaptation=_OneSession(reset_controlled=True)))
    context = settings.tls_context
    try:
        session.connect()
        for write in writes_of(script.steps):
            first = write[0]
            if not session.model.open:
                break
            # Mail data only where the server asked for it, and nothing else where it did: a
            # message sent as commands, or commands sent as mail data, replay another session.
            if (session.model.state is State.DATA) != (first.group in (END_OF_DATA,
                                                                       DATA_PROBE)):
                break
            if first.group == END_OF_DATA:
                session.send_message(Message.from_wire(first.data))
            elif first.group == DATA_PROBE:
                session.send_probe(DataProbe.from_wire(first.data))
            elif first.batch:
                session.send_batch([step.command() for step in write])
            elif len(write) > 1 and write[1].answers_challenge:  # AUTH and its answers
                session.authenticate(first.command(), [step.command() for step in write[1:]])
            elif write[-1].is_tls and len(write) == 2:  # STARTTLS, then the upgrade
                injected = first.data.partition(b"\r\n")[2]  # lines sent after STARTTLS
                session.starttls(context, write[-1].server_hostname, inject=injected)
            elif not first.is_tls:  # (an upgrade without its STARTTLS upgrades nothing)
                session.send(first.command())  # a STARTTLS recorded without an upgrade too
    except StopRun:
        pass
    finally:
        session.close()
    record.drop_refuted()
    # A per-run check's finding (``Check.refuted_by``) is the whole run's to settle, which
    # one session cannot do: a replay keeps it only where it is the finding recorded.
    kept = [f for f in record.findings.values()
            if f.check == script.check or CHECKS[f.check].refuted_by is None]
    ordered = sorted(kept, key=lambda f: len(f.transcript))
    return Replayed(tuple(ordered), session.transcript)


def command_line(path: Path | str, server: ServerAddress | str) -> str:
    """The command that replays the session saved at ``path`` against ``server``."""
    return f"python -m conformance replay {path} --server={server}"


def printf_reproducer(steps: tuple[Step, ...], address: ServerAddress) -> str:
    """A shell line that sends the same bytes (all at once, unlike the suite) with nc; for a
    session with a TLS upgrade, only what goes before it, up to STARTTLS."""
    tls_at = next((i for i, step in enumerate(steps) if step.is_tls), None)
    plain = steps if tls_at is None else steps[:tls_at]
    data = b"".join(step.data for step in plain) + (b"QUIT\r\n" if tls_at is None else b"")
    line = f"printf '{_printf_escape(data)}' | nc -w 5 {address.host} {address.port}"
    return line if tls_at is None else \
        line + "  # then TLS, which nc cannot do: replay the file instead"


def _printf_escape(data: bytes) -> str:
    out = []
    for byte in data:
        char = chr(byte)
        if char == "\r":
            out.append("\\r")
        elif char == "\n":
            out.append("\\n")
        elif char in "\\%'" or not 0x20 <= byte < 0x7F:
            out.append(f"\\{byte:03o}")
        else:
            out.append(char)
    return "".join(out)
