"""Fixtures shared by the project's tests: a Postfix instance to test against."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.postfix_instance import PostfixInstance

NO_POSTFIX = ("Postfix is not installed here (or not as root): tests against it skipped; "
              "`bash .ci/run` installs it")


@pytest.fixture(scope="session")
def postfix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostfixInstance]:
    """The Postfix instance .ci/run started (SMTP_CONFORMANCE_POSTFIX_ROOT and _PORT), else
    one of our own on a free port. Absent Postfix skips locally and fails in CI."""
    root, port = (os.environ.get(f"SMTP_CONFORMANCE_POSTFIX_{key}") for key in ("ROOT", "PORT"))
    if root and port:
        yield PostfixInstance(Path(root), int(port))
        return
    if not PostfixInstance.available():
        if os.environ.get("CI"):
            pytest.fail("CI must test against Postfix, but it is not installed or not started")
        pytest.skip(NO_POSTFIX)
    with socket.create_server(("127.0.0.1", 0)) as probe:
        free_port = probe.getsockname()[1]
    with PostfixInstance(tmp_path_factory.mktemp("postfix"), free_port) as instance:
        yield instance
