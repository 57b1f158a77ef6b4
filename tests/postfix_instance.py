"""A separate Postfix instance on 127.0.0.1, from the templates in tests/postfix/.

    python -m tests.postfix_instance start ROOT PORT    # .ci/run, before the tests
    python -m tests.postfix_instance stop ROOT          # .ci/run, at exit

The instance lives in ROOT (config, queue, log, and the sink mailbox that local mail for
``postmaster`` and ``sink`` goes to); it makes no DNS lookups and delivers nothing elsewhere.
Facts: shared/reference/postfix-on-loopback.md.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

from conformance.client import ServerAddress

TEMPLATES = Path(__file__).resolve().parent / "postfix"
DOMAIN = "mx.postfix.test"  # a local domain of the instance: RCPT to it is not relaying


class PostfixInstance:
    def __init__(self, root: Path, port: int) -> None:
        self.root = root.resolve()
        self.conf = self.root / "conf"
        self.address = ServerAddress("127.0.0.1", port)

    @staticmethod
    def available() -> bool:
        return shutil.which("postfix") is not None and os.geteuid() == 0

    @property
    def mailbox(self) -> Path:
        return self.root / "mailbox" / "sink"

    @property
    def log(self) -> Path:
        return self.root / "postfix.log"

    def start(self, *, timeout: float = 30.0) -> None:
        for name in ("queue", "data", "spool", "conf", "mailbox"):
            (self.root / name).mkdir(parents=True, exist_ok=True)
        (self.root / "mailbox").chmod(0o1777)  # local(8) writes the sink as nobody
        shutil.chown(self.root / "data", "postfix")
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
        """Messages Postfix accepted into its queue (cleanup logs one message-id each). The
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
        return sum("/cleanup[" in line and "message-id=" in line
                   for line in self.log.read_text(errors="replace").splitlines())

    def wait_for_mailbox(self, *, larger_than: int, timeout: float = 30.0) -> None:
        """Local delivery is asynchronous: wait (bounded) until the sink mailbox grows."""
        deadline = time.monotonic() + timeout
        while not (self.mailbox.exists() and self.mailbox.stat().st_size > larger_than):
            if time.monotonic() > deadline:
                raise AssertionError(f"nothing delivered to {self.mailbox} in {timeout:g}s")
            time.sleep(0.2)

    def _postfix(self, command: str, *args: str) -> None:
        argv = [command, "-c", str(self.conf), *args]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed: {done.stderr.strip()}")

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
                                   f"{timeout:g}s; see {self.log}")
            time.sleep(0.2)

    def __enter__(self) -> PostfixInstance:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[0] == "start":
        PostfixInstance(Path(argv[1]), int(argv[2])).start()
        return 0
    if len(argv) == 2 and argv[0] == "stop":
        PostfixInstance(Path(argv[1]), 0).stop()
        return 0
    print("usage: python -m tests.postfix_instance start ROOT PORT | stop ROOT", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
