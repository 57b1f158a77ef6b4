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
from conformance.commands import END_OF_DATA, Command, Message, Step
from conformance.errors import UsageError
from conformance.failures import ConformanceFailure
from conformance.grading import FindingKey, Policy, finding_key
from conformance.model import State
from conformance.session import CheckedSession, Pacer
from conformance.tables import Profile, get_profile

REPLAY_FORMAT = 1


@dataclass(frozen=True)
class Script:
    profile: str
    check: str  # the check that failed when the session was recorded
    steps: tuple[Step, ...]

    def to_json(self) -> dict[str, Any]:
        return {"format": REPLAY_FORMAT, "profile": self.profile, "check": self.check,
                "steps": [{"group": g, "data": data.decode("latin-1")} for g, data in self.steps]}


def script_of(failure: ConformanceFailure) -> Script:
    return Script(failure.exchange.profile.name, failure.check.id, failure.steps)


def failure_key(failure: ConformanceFailure) -> FindingKey:
    """What makes two failures the same: the check, the command group and the reply code."""
    return finding_key(failure.findings[0], failure.exchange)


def file_name(failure: ConformanceFailure) -> str:
    check, group, code = failure_key(failure)
    return re.sub(r"[^A-Za-z0-9_.-]", "_", f"{check}-{group}-{code}.json")


def save(script: Script, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(script.to_json(), indent=2) + "\n")


def load(path: Path) -> Script:
    """Read a replay file; any problem is a one-line UsageError."""
    try:
        data = json.loads(path.read_text())
        if data["format"] != REPLAY_FORMAT:
            raise ValueError(f"format {data['format']!r}")
        steps = tuple((str(s["group"]), str(s["data"]).encode("latin-1")) for s in data["steps"])
        return Script(str(data["profile"]), str(data["check"]), steps)
    except OSError as error:
        raise UsageError(f"cannot read replay file {path}: {error.strerror}") from None
    except (ValueError, KeyError, TypeError, UnicodeEncodeError) as error:
        raise UsageError(f"{path} is not a replay file: {error!r}") from None


def replay(script: Script, address: ServerAddress, *, timeout: float,
           profile: Profile | None = None, pacer: Pacer | None = None, deliver: bool = True
           ) -> tuple[CheckedSession, ConformanceFailure | None]:
    """Send the script's steps in order, checking every reply; stop at the first failure.
    Every finding fails here (strict), since the point is to see the recorded one again.

    A message is only ever sent as recorded: if the server asks for mail data (354) where
    the script has none, the replay stops there, so that later lines are never read as a
    message; ``deliver=False`` closes the connection instead of sending any message."""
    session = CheckedSession(address, profile or get_profile(script.profile), timeout=timeout,
                             policy=Policy(strict=True), pacer=pacer, deliver=deliver)
    try:
        session.connect()
        for group, data in script.steps:
            if not session.model.open:
                break
            if session.model.state is State.DATA and group != END_OF_DATA:
                break
            if group == END_OF_DATA:
                session.send_message(Message.from_wire(data))
            else:
                session.send(Command(data, group=group))
    except ConformanceFailure as failure:
        return session, failure
    finally:
        session.close()
    return session, None


def printf_reproducer(steps: tuple[Step, ...], address: ServerAddress) -> str:
    """A shell line that sends the same bytes (all at once, unlike the suite) with nc."""
    data = b"".join(data for _, data in steps) + b"QUIT\r\n"
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
