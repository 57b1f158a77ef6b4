"""A checked session for a user's own test, and how what it found fails that test.

    with checked_session(address, settings) as session:
        session.send(Command.of("EHLO client.example.test"))
        session.send(command)  # each reply checked as the suite checks it

Leaving the block ends the session; the findings that fail under the settings' policy are
raised then, together, as one ``RunFailed``. Under Hypothesis's ``@given`` that exception is
the example's failure, so Hypothesis shrinks the example to the smallest that still shows one.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from conformance.engine.address import ServerAddress
from conformance.engine.failures import RunFailed
from conformance.engine.record import RunRecord
from conformance.engine.session import CheckedSession, RunState
from conformance.engine.settings import SessionSettings
from conformance.protocol.errors import StopRun


@contextlib.contextmanager
def checked_session(address: ServerAddress, settings: SessionSettings
                    ) -> Iterator[CheckedSession]:
    """A session with ``address``, greeted and checked as the suite's sessions are, with a
    record of its own. An exception inside the block goes on as it is (the session is closed
    first); a block that ends normally, or is stopped by the session (``StopRun``: fail-fast,
    a greeting that never came), raises ``RunFailed`` if the session found a failing
    deviation or was stopped, with why."""
    record = RunRecord()
    session = CheckedSession(address, settings, RunState.of(settings, record))
    stopped: list[str] = []
    try:
        session.connect()
        yield session
    except StopRun as stop:  # fail-fast, or a server that never greets: the session ends
        stopped.append(str(stop))
    finally:
        session.close()  # a close after a reply with findings is judged on it
    record.settle()
    failing = [f for f in record.sorted_findings() if settings.policy.fails(f.verdict)]
    if failing or stopped:
        raise RunFailed(failing, errors=stopped)
