"""The MTAs this package runs, by name, and a group of them started side by side."""

from __future__ import annotations

import importlib
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path

from mtas import base
from mtas.server import MTA

# name -> "module:class"; imported only when asked for
MTAS = {"postfix": "mtas.postfix:Postfix", "exim": "mtas.exim:Exim",
        "opensmtpd": "mtas.opensmtpd:OpenSMTPD", "sendmail": "mtas.sendmail:Sendmail"}
PREFIX = Path("/opt/smtp-conformance-mtas")  # where the unpacked packages stay between runs


def mta_class(name: str) -> type[MTA]:
    if name not in MTAS:
        raise base.InstallError(f"unknown MTA {name!r}; known: {', '.join(MTAS)}")
    module, _, attribute = MTAS[name].partition(":")
    found: type[MTA] = getattr(importlib.import_module(module), attribute)
    return found


def chosen(names: Sequence[str]) -> list[str]:
    """The names asked for, in the catalogue's order; all of them if none were."""
    for name in names:
        mta_class(name)
    return [name for name in MTAS if not names or name in names]


def new_root() -> Path:
    """A new directory for the instances, every user can enter (the daemons run as their own
    users and must reach their spools in it)."""
    root = Path(tempfile.mkdtemp(prefix="smtp-conformance-mtas-", dir="/tmp"))
    root.chmod(0o755)
    return root


@contextmanager
def running(names: Sequence[str], root: Path, prefix: Path = PREFIX, *, install: bool = True
            ) -> Iterator[list[MTA]]:
    """Each MTA installed (if asked), started on a free port of 127.0.0.1 in ``root/NAME``,
    and stopped at the end, whatever happens; one that fails to start stops the others."""
    with ExitStack() as stack:
        started = []
        for name in chosen(names):
            mta = mta_class(name)(prefix / name, root / name, base.free_port())
            if install:
                with base.installing(prefix):
                    mta.install()
            stack.callback(mta.stop)
            mta.start()
            started.append(mta)
        yield started


def remove(root: Path) -> None:
    if root.is_relative_to("/tmp") and os.path.isdir(root):
        shutil.rmtree(root, ignore_errors=True)
