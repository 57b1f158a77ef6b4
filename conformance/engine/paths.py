"""Output paths checked before a run starts, so a bad one is a one-line usage error instead
of a traceback after the whole run. Pure checks: nothing is created."""

from __future__ import annotations

import os
from pathlib import Path

from conformance.protocol.errors import UsageError


def check_writable_file(path: Path, what: str) -> None:
    """Raise a one-line ``UsageError`` unless the file ``path`` (named ``what`` in the message,
    an option say) can be written, creating any missing directories above it."""
    if os.path.isdir(path):
        raise UsageError(f"{what} {path}: is a directory, not a file")
    if os.path.exists(path):
        if not os.access(path, os.W_OK):
            raise UsageError(f"{what} {path}: cannot write it (permission denied)")
        return
    _check_creatable(path, path.parent, what)


def check_writable_dir(path: Path, what: str) -> None:
    """Raise a one-line ``UsageError`` unless files can be written in the directory ``path``,
    creating it and any missing directories above it."""
    if os.path.lexists(path) and not os.path.isdir(path):
        raise UsageError(f"{what} {path}: is not a directory")
    _check_creatable(path, path, what)


def _check_creatable(target: Path, directory: Path, what: str) -> None:
    """``directory`` exists and is writable, or the nearest directory above it that exists
    is, so the missing ones can be made."""
    existing = next(d for d in (directory, *directory.parents) if os.path.lexists(d))
    if not os.path.isdir(existing):
        raise UsageError(f"{what} {target}: {existing} is not a directory")
    if not _writable(existing):
        verb = "write in" if existing == directory else "create directories in"
        raise UsageError(f"{what} {target}: cannot {verb} {existing} (permission denied)")


def _writable(directory: Path) -> bool:
    return os.access(directory, os.W_OK | os.X_OK)
