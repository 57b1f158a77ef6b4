"""A separate Postfix instance on 127.0.0.1, from the templates in mtas/postfix/.

    python -m mtas.postfix start ROOT PORT    # .ci/run, before the tests
    python -m mtas.postfix stop ROOT          # .ci/run, at exit

The instance lives in ROOT (config, queue, log, and the sink mailbox that local mail for
``postmaster`` and ``sink`` goes to); it makes no DNS lookups and delivers nothing elsewhere.
It offers STARTTLS with a certificate made at each start by a throwaway trustme CA, whose
certificate is ``ca_file``; no AUTH (Postfix needs a SASL server for it: Cyrus or Dovecot).
Facts: shared/reference/postfix-on-loopback.md.
"""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import MappingProxyType, TracebackType

import trustme

from conformance.engine.address import ServerAddress
from mtas import base
from mtas.server import MTA

TEMPLATES = Path(__file__).resolve().parent / "postfix"
DOMAIN = "mx.postfix.test"  # a local domain of the instance: RCPT to it is not relaying
LOG_LINES = 10  # of Postfix's log, in the error when it does not start
TLS_NAMES = (DOMAIN, "127.0.0.1")  # what the instance's certificate is for


def closed_to_others(path: Path) -> Path | None:
    """The first directory above ``path`` that other users cannot enter, if any."""
    for directory in reversed(path.parents):
        if not directory.stat().st_mode & stat.S_IXOTH:
            return directory
    return None


class PostfixInstance:
    def __init__(self, root: Path, port: int) -> None:
        self.root = root.resolve()
        self.conf = self.root / "conf"
        self.address = ServerAddress("127.0.0.1", port)

    @staticmethod
    def unavailable_reason() -> str | None:
        """Why this machine cannot start an instance of its own, or None if it can."""
        if shutil.which("postfix") is None:
            return "Postfix is not installed (no `postfix` on PATH)"
        if os.geteuid() != 0:
            return "starting a Postfix instance needs root (Postfix runs as its own user)"
        closed = closed_to_others(Path(tempfile.gettempdir()) / "instance")
        if closed is not None:
            return (f"the temporary directory {closed} is closed to other users, and Postfix's "
                    "daemons (user postfix) must reach their queue there: set TMPDIR to a "
                    "directory every user can enter, such as /tmp")
        return None

    @classmethod
    def in_new_directory(cls, port: int) -> PostfixInstance:
        """An instance in a new directory of its own in the temporary directory (not pytest's,
        which only its owner may enter); ``start`` opens it to the postfix user."""
        return cls(Path(tempfile.mkdtemp(prefix="smtp-conformance-postfix-")), port)

    def remove(self) -> None:
        """Stop the instance and delete its directory (queue, log, mailbox and all)."""
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    @property
    def mailbox(self) -> Path:
        return self.root / "mailbox" / "sink"

    @property
    def log(self) -> Path:
        return self.root / "postfix.log"

    @property
    def ca_file(self) -> Path:
        """The CA certificate to verify the instance's STARTTLS certificate with."""
        return self.root / "tls" / "ca.pem"

    def _write_certificate(self) -> None:
        """A new throwaway CA and a certificate for TLS_NAMES, in ROOT/tls (main.cf names
        the files). The key is root's alone: smtpd reads it before it drops privileges."""
        directory = self.ca_file.parent
        directory.mkdir(exist_ok=True)
        directory.chmod(0o755)
        ca = trustme.CA()
        ca.cert_pem.write_to_path(str(self.ca_file))
        leaf = ca.issue_cert(*TLS_NAMES)
        key, chain = directory / "server.key", directory / "server.pem"
        key.touch(mode=0o600)
        key.chmod(0o600)
        leaf.private_key_pem.write_to_path(str(key))
        chain.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))

    def start(self, *, timeout: float = 30.0) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        closed = closed_to_others(self.root)
        if closed is not None:
            raise RuntimeError(
                f"Postfix cannot run in {self.root}: {closed} is closed to other users (mode "
                f"{stat.S_IMODE(closed.stat().st_mode):o}), and Postfix's daemons, running as "
                "the postfix user, must reach their queue and lock files; use a directory "
                "every user can traverse (as the tests' own instance does, in the temporary "
                "directory)")
        self.root.chmod(0o755)
        for name in ("queue", "data", "spool", "conf", "mailbox"):
            (self.root / name).mkdir(exist_ok=True)
            (self.root / name).chmod(0o755)
        (self.root / "mailbox").chmod(0o1777)  # local(8) writes the sink as nobody
        shutil.chown(self.root / "data", "postfix")
        self._write_certificate()
        for template in ("main.cf", "master.cf", "aliases"):
            text = (TEMPLATES / f"{template}.in").read_text()
            text = text.replace("@ROOT@", str(self.root)).replace("@PORT@",
                                                                  str(self.address.port))
            (self.conf / template).write_text(text)
        self._postfix("postalias", str(self.conf / "aliases"))
        self._postfix("postfix", "check")
        self._postfix("postfix", "start")
        self._wait_for_greeting(timeout)

    def stop(self) -> None:
        if (self.conf / "main.cf").exists():
            subprocess.run(["postfix", "-c", str(self.conf), "stop"], capture_output=True,
                           timeout=30, check=False)

    def messages_received(self, *, settle: float = 1.0, timeout: float = 15.0) -> int:
        """Messages Postfix accepted into its queue (its queue manager logs each as it
        takes it: "from=<...>, size=..., nrcpt=..."; cleanup's message-id line is no proof:
        it comes with the first BDAT chunk too, which a closed connection then aborts). The
        log is written asynchronously (postlogd), so first wait, bounded, until it has not
        grown for ``settle`` seconds."""
        deadline, last, stable_since = time.monotonic() + timeout, -1, time.monotonic()
        while time.monotonic() < deadline:
            size = self.log.stat().st_size if self.log.exists() else 0
            if size != last:
                last, stable_since = size, time.monotonic()
            elif time.monotonic() - stable_since >= settle:
                break
            time.sleep(0.1)
        if not self.log.exists():
            return 0
        return sum("/qmgr[" in line and ", nrcpt=" in line
                   for line in self.log.read_text(errors="replace").splitlines())

    def wait_for_mailbox(self, *, larger_than: int, timeout: float = 30.0) -> None:
        """Local delivery is asynchronous: wait (bounded) until the sink mailbox grows."""
        deadline = time.monotonic() + timeout
        while not (self.mailbox.exists() and self.mailbox.stat().st_size > larger_than):
            if time.monotonic() > deadline:
                raise AssertionError(f"nothing delivered to {self.mailbox} in {timeout:g}s")
            time.sleep(0.2)

    @contextmanager
    def settings(self, **values: str) -> Iterator[None]:
        """main.cf's ``values`` (parameter=value) while the block runs, the old ones after:
        each change holds from the next connection on (a reload starts new smtpd processes).
        One test at a time: the instance is shared."""
        old = {name: self._postfix("postconf", "-h", name) for name in values}
        self._configure(values)
        try:
            yield
        finally:
            self._configure(old)

    def _configure(self, values: dict[str, str]) -> None:
        self._postfix("postconf", "-e", *(f"{name}={value}" for name, value in values.items()))
        self._postfix("postfix", "reload")
        self._wait_for_greeting(timeout=30)

    def _postfix(self, command: str, *args: str) -> str:
        """Run a Postfix command on this instance's configuration; its output."""
        argv = [command, "-c", str(self.conf), *args]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed (exit {done.returncode})"
                               + self._evidence(done.stderr))
        return done.stdout.strip()

    def _evidence(self, stderr: str = "") -> str:
        """Postfix's own words on a failure: its stderr, and the end of its log file (daemons
        such as master(8) report only there)."""
        parts = [f"\n  stderr: {stderr.strip()}"] if stderr.strip() else []
        if self.log.exists():
            tail = self.log.read_text(errors="replace").splitlines()[-LOG_LINES:]
            parts.append(f"\n  {self.log} (last lines):")
            parts += [f"\n    {line}" for line in tail]
        else:
            parts.append(f"\n  (no log at {self.log})")
        return "".join(parts)

    def _wait_for_greeting(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with socket.create_connection((self.address.host, self.address.port),
                                              timeout=2) as probe:
                    probe.settimeout(5)
                    if probe.recv(512).startswith(b"220"):
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"Postfix did not greet on {self.address} within "
                                   f"{timeout:g}s" + self._evidence())
            time.sleep(0.2)

    def __enter__(self) -> PostfixInstance:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


class Postfix(MTA):
    """Debian's Postfix, the one MTA installed as a package (``.ci/run`` installs it), run as
    a separate instance (``PostfixInstance``) from the templates in mtas/postfix/."""

    name = "postfix"
    title = "Postfix"
    installed = ("postfix",)
    local_domain = DOMAIN
    settings = MappingProxyType({
        "data_ends_only_at_crlf_dot_crlf":
            "smtpd_forbid_bare_newline = yes (and smtpd_forbid_bare_newline_exclusions "
            "empty: $mynetworks is exempt by default) ends the data only at <CRLF>.<CRLF>; "
            "tests/test_postfix.py runs both",
        "command_lines_end_only_at_crlf":
            "none in 3.7: smtpd_forbid_bare_newline = yes normalizes such lines rather than "
            "refusing them (Postfix 3.9's smtpd_forbid_bare_newline = reject refuses them)",
        "reply_within_timeout":
            "smtpd_error_sleep_time (1s) after smtpd_soft_error_limit (10) errors: the "
            "tarpit that slows a long reply past the run's timeout",
        "reply_code_documented VRFY":
            "disable_vrfy_command = yes answers VRFY with 502 (listed) instead of 252",
    })

    def __init__(self, prefix: Path, root: Path, port: int) -> None:
        super().__init__(prefix, root, port)
        self.instance = PostfixInstance(self.root, port)

    def install(self) -> None:
        base.need_root("installing Postfix")
        if shutil.which("postfix") is None:
            base.apt_install(self.installed)  # .ci/run preseeds debconf: "Local only"

    def start(self) -> None:
        try:
            self.instance.start()
        except RuntimeError as error:
            raise base.InstallError(str(error)) from None

    def stop(self) -> None:
        self.instance.stop()

    def version(self) -> str:
        own = self.instance._postfix("postconf", "-h", "mail_version")
        return f"Postfix {own} (Debian {base.package_version('postfix')})"

    def configuration(self) -> dict[str, str]:
        return {name: (self.conf / name).read_text() for name in ("main.cf", "master.cf")}

    @property
    def conf(self) -> Path:
        return self.instance.conf

    @property
    def ca_file(self) -> Path:
        return self.instance.ca_file


def main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[0] == "start":
        PostfixInstance(Path(argv[1]), int(argv[2])).start()
        return 0
    if len(argv) == 2 and argv[0] == "stop":
        PostfixInstance(Path(argv[1]), 0).stop()
        return 0
    print("usage: python -m mtas.postfix start ROOT PORT | stop ROOT", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
