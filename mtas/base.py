"""What every unpacked MTA needs: its packages fetched and unpacked into a prefix, the system
users its binaries expect, a daemon run in the foreground (in a private mount namespace where
it needs compiled-in paths, a resolver on loopback or its own host name), and a wait for its
greeting."""

from __future__ import annotations

import fcntl
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from conformance.engine.address import ServerAddress

LOG_LINES = 15  # of a daemon's log, in the error when it does not start
APT_LOCK_WAIT = 300  # seconds apt waits for another apt's lock
START_TIMEOUT = 60.0  # seconds from start to the greeting
STOP_TIMEOUT = 15.0  # seconds from SIGTERM to SIGKILL
TEST_DOMAIN = "test"  # RFC 2606: the domains the servers accept mail for are under it


class InstallError(RuntimeError):
    """An MTA could not be installed or started; the message says why, in a line or a few."""


def need_root(what: str) -> None:
    if os.geteuid() != 0:
        raise InstallError(f"{what} needs root (system users, packages, mount namespaces)")


def run(argv: Sequence[str], *, timeout: float = 300.0, env: Mapping[str, str] | None = None,
        cwd: Path | None = None) -> str:
    """Run a command to its end; its standard output, or InstallError with its words."""
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout,
                              check=False, env=None if env is None else {**os.environ, **env},
                              cwd=cwd)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise InstallError(f"{' '.join(argv)}: {error}") from None
    if done.returncode != 0:
        words = (done.stderr or done.stdout).strip().splitlines()[-LOG_LINES:]
        raise InstallError(f"{' '.join(argv)} failed (exit {done.returncode})"
                           + "".join(f"\n  {line}" for line in words))
    return done.stdout


def apt_install(packages: Sequence[str]) -> None:
    """Install Debian packages (libraries the unpacked binaries link against, tools), updating
    the package lists once if the first try fails."""
    if not packages:
        return
    argv = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages,
            "-o", f"DPkg::Lock::Timeout={APT_LOCK_WAIT}"]  # another apt may be running
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    try:
        run(argv, env=env)
    except InstallError:
        run(["apt-get", "update", "-q", "-o", f"DPkg::Lock::Timeout={APT_LOCK_WAIT}"], env=env)
        run(argv, env=env)


@contextmanager
def installing(prefix: Path) -> Iterator[None]:
    """One installer at a time under ``prefix`` (two runs unpacking into one prefix at once,
    pytest-xdist's workers say, would see each other's half-written files)."""
    prefix.mkdir(parents=True, exist_ok=True)
    with open(prefix / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def unpack(packages: Sequence[str], prefix: Path) -> None:
    """``apt-get download`` each package and ``dpkg-deb -x`` it into ``prefix`` (nothing is
    installed: no maintainer script runs, no service starts). Done once: a prefix that holds
    its packages' stamp is left as it is."""
    stamp = prefix / ".unpacked"
    if stamp.exists() and stamp.read_text().split() == list(packages):
        return
    prefix.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="mtas-debs-") as debs:
        os.chmod(debs, 0o755)  # apt's download user must write here
        run(["apt-get", "download", *packages], cwd=Path(debs))
        for deb in sorted(Path(debs).glob("*.deb")):
            run(["dpkg-deb", "-x", str(deb), str(prefix)])
    stamp.write_text(" ".join(packages) + "\n")


def package_version(package: str, prefix: Path | None = None) -> str:
    """The Debian version of ``package``: of the unpacked .deb's changelog-less control data
    we keep in ``prefix``, else as dpkg knows it installed."""
    if prefix is not None and (prefix / ".versions").exists():
        for line in (prefix / ".versions").read_text().splitlines():
            name, _, version = line.partition(" ")
            if name == package:
                return version
    return run(["dpkg-query", "-W", "-f", "${Version}", package]).strip()


def record_versions(packages: Sequence[str], prefix: Path) -> None:
    """Write ``prefix/.versions``: each package's candidate version as apt downloaded it."""
    lines = []
    for package in packages:
        policy = run(["apt-cache", "policy", package])
        candidate = next((line.split(":", 1)[1].strip() for line in policy.splitlines()
                          if line.strip().startswith("Candidate:")), "unknown")
        lines.append(f"{package} {candidate}")
    (prefix / ".versions").write_text("\n".join(lines) + "\n")


def system_user(name: str, *, group: bool = True) -> None:
    """A system user (and group) of that name, if there is none."""
    try:
        run(["id", name])
        return
    except InstallError:
        pass
    argv = ["adduser", "--system", "--no-create-home", "--disabled-login", "--allow-bad-names"]
    run([*argv, *(["--group"] if group else []), name])


def missing_libraries(binary: Path) -> list[str]:
    """The shared libraries ``binary`` links against that the machine lacks (``ldd``)."""
    output = run(["ldd", str(binary)])
    return [line.split()[0] for line in output.splitlines() if "not found" in line]


def free_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port: int = probe.getsockname()[1]
        return port


@dataclass
class Daemon:
    """A server process in the foreground, its output in ``log``; in a private mount
    namespace when ``binds`` (source -> mount point) are given, so compiled-in paths, the
    resolver's configuration or the host table can be the instance's own."""

    argv: list[str]
    log: Path
    binds: Mapping[Path, Path] = field(default_factory=dict)
    env: Mapping[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        command = self.argv
        if self.binds:
            mounts = " && ".join(f"mount --bind {_quote(src)} {_quote(dst)}"
                                 for src, dst in self.binds.items())
            for target in self.binds.values():
                if not target.exists():  # a mount point must exist; an empty one is harmless
                    target.mkdir(parents=True, exist_ok=True)
            command = ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
                       f'{mounts} && exec "$@"', "sh", *self.argv]
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, start_new_session=True,
                                            env={**os.environ, **self.env})

    def stop(self) -> None:
        """SIGTERM to the daemon's process group, SIGKILL if it has not gone in time."""
        if self.process is None or self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, 15)
            self.process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, 9)
            self.process.wait(timeout=STOP_TIMEOUT)
        except ProcessLookupError:
            pass

    def exited(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def tail(self) -> str:
        if not self.log.exists():
            return f"\n  (no log at {self.log})"
        lines = self.log.read_text(errors="replace").splitlines()[-LOG_LINES:]
        return f"\n  {self.log} (last lines):" + "".join(f"\n    {line}" for line in lines)


def _quote(path: Path) -> str:
    text = str(path)
    if not all(c.isalnum() or c in "/._-+" for c in text):
        raise InstallError(f"unsafe path for a mount: {text!r}")
    return text


def wait_for_greeting(address: ServerAddress, *, timeout: float = START_TIMEOUT,
                      daemon: Daemon | None = None, logs: Sequence[Path] = ()) -> str:
    """Wait (bounded) until ``address`` greets with 220; the greeting line. If the daemon
    exits or the time runs out, InstallError with its log's last lines."""
    deadline = time.monotonic() + timeout
    said = "nothing"
    while time.monotonic() < deadline:
        if daemon is not None and (status := daemon.exited()) is not None:
            raise InstallError(f"the daemon exited (status {status}) before it greeted"
                               + daemon.tail() + _tails(logs))
        try:
            with socket.create_connection((address.host, address.port), timeout=5) as s:
                s.settimeout(10)
                greeting = s.recv(4096).decode("ascii", "replace")
                if greeting.startswith("220"):
                    s.sendall(b"QUIT\r\n")
                    return greeting.splitlines()[0]
                said = greeting.strip() or "an empty greeting"
        except OSError as error:
            said = str(error)
        time.sleep(0.3)
    raise InstallError(f"{address} did not greet with 220 in {timeout:g}s (last: {said})"
                       + (daemon.tail() if daemon else "") + _tails(logs))


def _tails(logs: Sequence[Path]) -> str:
    parts = []
    for log in logs:
        if log.exists():
            lines = log.read_text(errors="replace").splitlines()[-LOG_LINES:]
            parts.append(f"\n  {log} (last lines):" + "".join(f"\n    {x}" for x in lines))
    return "".join(parts)


def write_private_resolver(directory: Path, host_name: str) -> tuple[Path, Path]:
    """A resolv.conf that points at loopback only (nothing is listening: a lookup fails at
    once, never leaves the machine; ``lookup file`` makes OpenSMTPD's resolver read the hosts
    file first) and a hosts file that names this host ``host_name``, under the machine's own
    name too (Sendmail and OpenSMTPD look that up to qualify themselves); bind them over
    /etc/resolv.conf and /etc/hosts in the daemon's namespace."""
    directory.mkdir(parents=True, exist_ok=True)
    resolv, hosts = directory / "resolv.conf", directory / "hosts"
    resolv.write_text("nameserver 127.0.0.1\noptions timeout:1 attempts:1\nlookup file\n")
    names = " ".join(dict.fromkeys([host_name, host_name.split(".")[0], socket.gethostname(),
                                    "localhost"]))
    hosts.write_text(f"127.0.0.1 {names}\n::1 localhost\n")
    return resolv, hosts


def copy_tree_owned(source: Path, target: Path, owner: str) -> None:
    """``source`` copied to ``target`` (replacing it), owned by ``owner``."""
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source, target)
    for path in [target, *target.rglob("*")]:
        shutil.chown(path, owner, owner)
