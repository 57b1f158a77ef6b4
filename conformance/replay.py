"""Failing sessions, saved and replayed: the file, the replay, and a copy-paste reproducer.

A replay file is JSON holding the profile, the failing check and the session's steps (each
step's group and exact bytes, as a latin-1 string so every octet survives). Replaying sends
the same bytes, in the same order, to any server, and runs the same checks on the replies.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conformance.client import ServerAddress
from conformance.commands import Message, Step
from conformance.errors import StopRun, UsageError
from conformance.grading import FindingKey, Policy
from conformance.model import State
from conformance.record import FindingRecord, RunRecord
from conformance.session import CheckedSession, Pacer
from conformance.tables import Profile, get_profile
from conformance.vocabulary import END_OF_DATA

REPLAY_FORMAT = 1


@dataclass(frozen=True)
class Script:
    profile: str
    check: str  # the check that failed when the session was recorded
    steps: tuple[Step, ...]

    def to_json(self) -> dict[str, Any]:
        return {"format": REPLAY_FORMAT, "profile": self.profile, "check": self.check,
                "steps": [{"group": s.group, "data": s.data.decode("latin-1"), "valid": s.valid}
                          for s in self.steps]}


def script_of(finding: FindingRecord) -> Script:
    return Script(finding.profile, finding.check, finding.session)


def file_name(key: FindingKey) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_",
                  f"{key.check}-{key.level}-{key.group}-{key.code}.json")


def save(script: Script, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(script.to_json(), indent=2) + "\n")


def load(path: Path) -> Script:
    """Read a replay file; any problem is a one-line UsageError."""
    try:
        data = json.loads(path.read_text())
        if data["format"] != REPLAY_FORMAT:
            raise ValueError(f"format {data['format']!r}")
        steps = tuple(Step(str(s["group"]), str(s["data"]).encode("latin-1"),
                           bool(s.get("valid", True))) for s in data["steps"])
        return Script(str(data["profile"]), str(data["check"]), steps)
    except OSError as error:
        raise UsageError(f"cannot read replay file {path}: {error.strerror}") from None
    except (ValueError, KeyError, TypeError, UnicodeEncodeError) as error:
        raise UsageError(f"{path} is not a replay file: {error!r}") from None


@dataclass(frozen=True)
class Replayed:
    """What a replay saw: every finding, in order (the session ends at the first deviation),
    and the session's transcript."""

    findings: tuple[FindingRecord, ...]
    transcript: str

    def first(self, key: FindingKey | None = None) -> FindingRecord | None:
        """The finding with ``key``, or the first one; None if there is none."""
        return next((f for f in self.findings if key is None or f.key == key), None)


def replay(script: Script, address: ServerAddress, *, timeout: float,
           profile: Profile | None = None, pacer: Pacer | None = None, deliver: bool = True,
           policy: Policy | None = None, hang_wait: float | None = None) -> Replayed:
    """Send the script's steps in order, checking every reply, until the first deviation.
    ``hang_wait``: how much longer than ``timeout`` a reply may come and count as late rather
    than missing (by default as in a run; 0: a late reply counts as none).

    A message is only ever sent as recorded: if the server asks for mail data (354) where
    the script has none, the replay stops there, so that later lines are never read as a
    message; ``deliver=False`` closes the connection instead of sending any message."""
    record = RunRecord()
    session = CheckedSession(address, profile or get_profile(script.profile), timeout=timeout,
                             hang_wait=hang_wait, policy=policy or Policy(strict=True),
                             record=record,
                             pacer=pacer, deliver=deliver)
    try:
        session.connect()
        for step in script.steps:
            if not session.model.open:
                break
            if session.model.state is State.DATA and step.group != END_OF_DATA:
                break
            if step.group == END_OF_DATA:
                session.send_message(Message.from_wire(step.data))
            else:
                session.send(step.command())
    except StopRun:
        pass
    finally:
        session.close()
    ordered = sorted(record.findings.values(), key=lambda f: len(f.transcript))
    return Replayed(tuple(ordered), session.transcript)


def printf_reproducer(steps: tuple[Step, ...], address: ServerAddress) -> str:
    """A shell line that sends the same bytes (all at once, unlike the suite) with nc."""
    data = b"".join(step.data for step in steps) + b"QUIT\r\n"
    host = address.host
    return f"printf '{_printf_escape(data)}' | nc -w 5 {host} {address.port}"


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
