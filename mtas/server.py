"""One MTA on loopback: what to install, how to start and stop it, and what to publish about
it (its version, its configuration as run, the settings that change a finding)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import ClassVar

from conformance.engine.address import ServerAddress
from mtas import base


class MTA(ABC):
    """A mail server installed under ``prefix`` (unpacked packages) and run from ``root``
    (configuration, spool, logs: the instance's own) on 127.0.0.1:``port``."""

    name: ClassVar[str]  # the matrix's column: postfix, exim, opensmtpd, sendmail
    title: ClassVar[str]  # for people: "Exim"
    packages: ClassVar[tuple[str, ...]] = ()  # fetched and unpacked into the prefix
    installed: ClassVar[tuple[str, ...]] = ()  # installed with apt: libraries, tools
    users: ClassVar[tuple[str, ...]] = ()  # system users (with a group each) it expects
    local_domain: ClassVar[str]  # mail for it is accepted and kept: --smtp-rcpt-domain
    # "check_id" or "check_id CAUSE" (a finding's cause: VRFY, received data) -> the
    # server's setting that changes those findings, where one does
    settings: ClassVar[Mapping[str, str]] = MappingProxyType({})

    def __init__(self, prefix: Path, root: Path, port: int) -> None:
        self.prefix = prefix.resolve()
        self.root = root.resolve()
        self.address = ServerAddress("127.0.0.1", port)
        self.daemon: base.Daemon | None = None  # the running server, once started

    def install(self) -> None:
        """Libraries and tools with apt, the packages unpacked, the users created (root)."""
        base.need_root(f"installing {self.title}")
        base.apt_install(self.installed)
        if self.packages:
            base.unpack(self.packages, self.prefix)
            base.record_versions(self.packages, self.prefix)
        for user in self.users:
            base.system_user(user)

    @abstractmethod
    def start(self) -> None:
        """Write the configuration into ``root``, start the daemon, return once it greets."""

    def run_daemon(self, daemon: base.Daemon, *, timeout: float = base.START_TIMEOUT,
                   logs: Sequence[Path] = ()) -> None:
        """Start ``daemon`` and return once the server greets; if it does not, stop it and
        raise InstallError with its log's last lines (and those of ``logs``)."""
        self.daemon = daemon
        daemon.start()
        try:
            base.wait_for_greeting(self.address, timeout=timeout, daemon=daemon, logs=logs)
        except base.InstallError:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop this object's daemon (its whole process group: all it started); harmless if
        it is not running. Only ours: another instance of the same binary is left alone."""
        if self.daemon is not None:
            self.daemon.stop()
            self.daemon = None

    @abstractmethod
    def version(self) -> str:
        """The server's own version and the Debian package's: "Exim 4.96 (4.96-15+deb12u10)"."""

    @abstractmethod
    def configuration(self) -> dict[str, str]:
        """The configuration it runs with: file name -> text (as written into ``root``)."""

    def __enter__(self) -> MTA:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
