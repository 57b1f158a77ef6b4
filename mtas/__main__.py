"""python -m mtas install|check|serve|matrix: see the package's docstring."""

from __future__ import annotations

import argparse
import json
import signal
import socket
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import BinaryIO

from conformance.engine.settings import DEFAULT_TIMEOUT
from conformance.output import matrix
from conformance.protocol.tables import CLOSING, OK, PROFILES, SERVICE_READY, START_MAIL_INPUT
from mtas import base, catalog
from mtas.server import MTA

SMOKE_SENDER = "smoke@example.test"


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        status: int = args.run(args)
    except base.InstallError as error:
        print(f"mtas: {error}", file=sys.stderr)
        return 1
    return status


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="python -m mtas", description=__doc__)
    top.add_argument("--prefix", type=Path, default=catalog.PREFIX,
                     help=f"where the unpacked packages are kept ({catalog.PREFIX})")
    commands = top.add_subparsers(dest="command", required=True)
    install = commands.add_parser("install", help="packages, libraries, system users (root)")
    check = commands.add_parser("check", help="install, start each, one transaction, stop")
    serve = commands.add_parser("serve", help="start them and wait (Ctrl-C or SIGTERM stops)")
    serve.add_argument("root", type=Path, help="the instances' directory (made if absent)")
    grid = commands.add_parser("matrix", help="start them, run the conformance matrix against "
                                              "them and the embedded server, stop them")
    grid.add_argument("--out", type=Path, required=True, help="docs/matrix, say")
    grid.add_argument("--profile", action="append", choices=sorted(PROFILES),
                      help="repeatable (default: every profile)")
    grid.add_argument("--examples", type=int, default=60, help="sessions per run (60)")
    grid.add_argument("--seed", type=int, default=0, help="Hypothesis seed of every run (0)")
    learner = commands.add_parser("learn", help="start them, learn their state machines and "
                                                "the embedded server's, compare, stop them")
    learner.add_argument("--out", type=Path, required=True, help="docs/learned, say")
    learner.add_argument("--profile", choices=sorted(PROFILES), default="rfc5321",
                         help="the model's documented codes (rfc5321)")
    learner.add_argument("--budget", type=float, default=180.0,
                         help="seconds of learning per server (180)")
    for command, run in ((install, _install), (check, _check), (serve, _serve),
                         (grid, _matrix), (learner, _learn)):
        command.add_argument("names", nargs="*", metavar="NAME",
                             help=f"of {', '.join(catalog.MTAS)} (default: all)")
        command.set_defaults(run=run)
    return top


def _install(args: argparse.Namespace) -> int:
    for name in catalog.chosen(args.names):
        started = time.monotonic()
        with base.installing(args.prefix):
            catalog.mta_class(name)(args.prefix / name, Path("/nonexistent"), 0).install()
        print(f"{name:>10}: installed in {time.monotonic() - started:.1f}s")
    return 0


def _check(args: argparse.Namespace) -> int:
    """The installer's smoke test: each server greets, takes one message for its own domain
    and lets the client go."""
    root = catalog.new_root()
    try:
        with catalog.running(args.names, root, args.prefix) as mtas:
            for mta in mtas:
                said = smoke_transaction(mta)
                print(f"{mta.name:>10}: {mta.version()} on {mta.address}: {said}")
    finally:
        catalog.remove(root)
    return 0


def smoke_transaction(mta: MTA, timeout: float = 30.0) -> str:
    """EHLO, MAIL, RCPT to the server's own domain, DATA, a short message, QUIT: the reply
    codes, or InstallError at the first that is not the expected one."""
    expected = [("", SERVICE_READY), ("EHLO client.example.test", OK),
                (f"MAIL FROM:<{SMOKE_SENDER}>", OK),
                (f"RCPT TO:<postmaster@{mta.local_domain}>", OK), ("DATA", START_MAIL_INPUT),
                ("Subject: smoke\r\n\r\nsmtp-conformance installer check\r\n.", OK),
                ("QUIT", CLOSING)]
    codes = []
    with socket.create_connection((mta.address.host, mta.address.port), timeout=timeout) as s:
        s.settimeout(timeout)
        reader = s.makefile("rb")
        for line, code in expected:
            if line:
                s.sendall(line.encode() + b"\r\n")
            reply = _reply(reader)
            if not reply.startswith(str(code)):
                raise base.InstallError(f"{mta.name}: {line or 'the greeting'!r} got "
                                        f"{reply!r}, expected {code}")
            codes.append(reply[:3])
    return " ".join(codes)


def _reply(reader: BinaryIO) -> str:
    """One whole reply (its last line), bounded."""
    for _ in range(100):
        raw = reader.readline(1024)
        if not raw:
            return "(connection closed)"
        line: str = raw.decode("ascii", "replace").rstrip("\r\n")
        if len(line) < 4 or line[3] != "-":
            return line
    return "(a reply of more than 100 lines)"


def _serve(args: argparse.Namespace) -> int:
    args.root.mkdir(parents=True, exist_ok=True)
    args.root.chmod(0o755)
    stop = False

    def on_signal(number: int, frame: FrameType | None) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_signal)
    with catalog.running(args.names, args.root.resolve(), args.prefix) as mtas:
        servers = {m.name: {"address": str(m.address), "rcpt_domain": m.local_domain,
                            "version": m.version()} for m in mtas}
        (args.root / "servers.json").write_text(json.dumps(servers, indent=2) + "\n")
        for name, server in servers.items():
            print(f"{name:>10}: {server['address']}  (--smtp-rcpt-domain="
                  f"{server['rcpt_domain']})  {server['version']}", flush=True)
        try:
            while not stop:
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
    return 0


def _matrix(args: argparse.Namespace) -> int:
    root = catalog.new_root()
    try:
        with catalog.running(args.names, root, args.prefix) as mtas:
            targets = [matrix.Target.parse("reference=embedded")]
            targets += [matrix.Target(m.name, m.address, m.local_domain, matrix.About(
                m.title, m.version(), m.configuration(), m.settings)) for m in mtas]
            result = matrix.make(targets, args.profile or list(PROFILES), args.out,
                                 examples=args.examples, seed=args.seed, deliver=True)
    finally:
        catalog.remove(root)
    for column in result["columns"]:
        reason = f"  ({column['reason']})" if column["reason"] else ""
        print(f"{column['target']:>10} / {column['profile']:8} {column['verdict']}{reason}")
    print(f"wrote {args.out / 'matrix.md'}, its server pages and {args.out / 'security.md'}")
    return matrix.exit_status(result)


def _learn(args: argparse.Namespace) -> int:
    """Each MTA learned with RCPT to its own domain (safe mode: no message is sent), beside
    the embedded server, all compared with each other."""
    from conformance.learn.run import Target, exit_status, learn_all, summary
    from conformance.testing.reference_server import ReferenceServer

    profile = PROFILES[args.profile]
    root = catalog.new_root()
    try:
        with catalog.running(args.names, root, args.prefix) as mtas, \
                ReferenceServer(profile=profile) as reference:
            targets = [Target("reference", reference.address)]
            targets += [Target(m.name, m.address, m.local_domain) for m in mtas]
            servers = learn_all(targets, args.out, profile=profile, timeout=DEFAULT_TIMEOUT,
                                budget=args.budget)
    finally:
        catalog.remove(root)
    print("\n".join(summary(servers)))
    print(f"wrote {args.out}/NAME.json, NAME.dot, diff.md and diff.json")
    return exit_status(servers)


if __name__ == "__main__":
    sys.exit(main())
