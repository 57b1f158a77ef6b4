"""Fixtures shared by the project's tests: a Postfix instance to test against."""

from __future__ import annotations

import fcntl
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from mtas.postfix import PostfixInstance
from tests.optional import REQUIRE_POSTFIX, missing


@pytest.fixture(scope="session")
def postfix_instance() -> Iterator[PostfixInstance]:
    """The Postfix instance named by SMTP_CONFORMANCE_POSTFIX_ROOT and _PORT (.ci/run starts
    one), else one of our own on a free port, removed afterwards. Where neither is possible
    the tests skip, unless SMTP_CONFORMANCE_REQUIRE_POSTFIX is set."""
    root, port = (os.environ.get(f"SMTP_CONFORMANCE_POSTFIX_{key}") for key in ("ROOT", "PORT"))
    if root and port:
        yield PostfixInstance(Path(root), int(port))
        return
    reason = PostfixInstance.unavailable_reason()
    if reason is not None:
        missing(REQUIRE_POSTFIX, f"tests against Postfix skipped: {reason} (or start an "
                "instance and name it with SMTP_CONFORMANCE_POSTFIX_ROOT and _PORT; see "
                "docs/development.md)")
    with socket.create_server(("127.0.0.1", 0)) as probe:
        free_port = probe.getsockname()[1]
    instance = PostfixInstance.in_new_directory(free_port)
    try:
        instance.start()
        yield instance
    finally:
        instance.remove()


@pytest.fixture
def postfix(postfix_instance: PostfixInstance) -> Iterator[PostfixInstance]:
    """The Postfix instance, for one test at a time across pytest-xdist's workers: tests change
    its settings and count the messages it received, so two at once would see each other's."""
    with open(postfix_instance.root / "tests.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield postfix_instance
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
