"""What a finished run comes to, with no Hypothesis in sight: its exit status, whether a
server can be reached at all, and how to see a finding again."""

from __future__ import annotations

from pathlib import Path

from conformance.checks.grading import Policy
from conformance.engine import replay
from conformance.engine.address import ServerAddress
from conformance.engine.client import SMTPClient
from conformance.engine.record import FindingRecord, RunRecord
from conformance.protocol.errors import ConformanceError, TargetUnreachable


def exit_status(record: RunRecord, policy: Policy) -> int:
    """The exit status of one run by its record: EXIT_UNREACHABLE if the server could not be
    reached, 1 if a finding fails it or it did not finish, else 0 (``grading.judge_run``)."""
    return record.outcome(survey=policy.survey).exit_status


def unreachable(address: ServerAddress, timeout: float) -> str | None:
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


def replay_hint(finding: FindingRecord, address: ServerAddress) -> str:
    """How to see a finding again: the replay command and a shell one-liner."""
    if finding.replay is None:
        return ""
    path = Path(finding.replay)
    shown = path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path
    return "\n".join([
        "Replay (same bytes, same checks):",
        f"  {replay.command_line(shown, address)}",
        "By hand (sends everything at once):",
        f"  {replay.printf_reproducer(finding.session, address)}",
    ])
