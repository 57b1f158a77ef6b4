"""What the project's tests may skip (the workspace's reference pages, a Postfix to test), and
the variables that make each one required instead: a skip then fails (.ci/run sets them).

`CI` is deliberately not one of them: a user's CI sets it, and has neither.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

REQUIRE_SHARED = "SMTP_CONFORMANCE_REQUIRE_SHARED"
REQUIRE_POSTFIX = "SMTP_CONFORMANCE_REQUIRE_POSTFIX"


def required(variable: str) -> bool:
    """Set to anything but empty or 0: what it names must be there."""
    return os.environ.get(variable, "") not in ("", "0")


def missing(variable: str, reason: str) -> NoReturn:
    """Skip with ``reason``, or fail with it when ``variable`` requires the thing missing."""
    if required(variable):
        pytest.fail(f"{reason} ({variable} is set: required here)", pytrace=False)
    pytest.skip(reason)
