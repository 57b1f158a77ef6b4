"""``python -m conformance``: command-line tools that work without pytest.

``profiles`` prints a profile's documented reply codes, as a table or as JSON; ``replay``
re-sends a saved failing session to a server, checks the replies again and grades what it
finds as the suite does (``--strict`` as ``--smtp-strict``); ``matrix`` runs
the suite against several servers and profiles and writes a conformance matrix; ``learn``
learns each server's state machine and compares it with the model and the other servers.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from conformance.checks.grading import Policy, RunVerdict, judge_run
from conformance.engine import failures, outcome, replay
from conformance.engine.address import ServerAddress
from conformance.engine.settings import DEFAULT_TIMEOUT, SessionSettings
from conformance.output import matrix
from conformance.protocol.errors import EXIT_UNREACHABLE, TargetUnreachable, UsageError
from conformance.protocol.tables import (
    DEFAULT_PROFILE,
    PROFILES,
    SUPPLEMENTARY_ROWS,
    Profile,
    Row,
    get_profile,
)


def profile_as_json(profile: Profile) -> dict[str, list[int]]:
    """The profile's own groups, spelled as in the seed, each a sorted list of codes."""
    return {group: sorted(row.code_set) for group, row in profile.rows.items()}


def _format_row(row: Row, *, show_level: bool = False) -> list[str]:
    level = f"  {{{row.level}}}" if show_level else ""
    lines = [f"{row.group}  [{row.citation}]{level}"]
    for code in row.codes:
        note = f"  ({code.note})" if code.note else ""
        lines.append(f"  {code.code}  {code.text}{note}")
    return lines


def format_profile(profile: Profile) -> str:
    lines = [
        f"Profile {profile.name}: {profile.title}",
        f"Weight: {profile.level} ({profile.level_citation})",
        "",
    ]
    for row in profile.rows.values():
        lines += _format_row(row)
    extra = [row for group, row in SUPPLEMENTARY_ROWS.items() if group not in profile.rows]
    if extra:
        lines += ["", "Not covered by the seed page (supplementary rows, graded by their own "
                      "citation):"]
        for row in extra:
            lines += _format_row(row, show_level=True)
    return "\n".join(lines)


def _profiles_command(args: argparse.Namespace) -> int:
    profile = PROFILES[args.profile]
    if args.json:
        rows = profile_as_json(profile).items()
        body = ",\n".join(f"  {json.dumps(group)}: {json.dumps(codes)}" for group, codes in rows)
        print("{\n" + body + "\n}")
    else:
        print(format_profile(profile))
    return 0


def _replay_command(args: argparse.Namespace) -> int:
    script = replay.load(Path(args.file))
    address = ServerAddress.parse(args.server)
    profile = get_profile(args.profile or script.profile)
    print(script.recorded)
    if script.server and script.server != str(address):
        print(f"note: replaying against {address}, not the server it was recorded against: "
              f"another server may well answer otherwise")
    try:
        replayed = replay.replay(script, address, SessionSettings(
            profile, timeout=args.timeout, policy=Policy(strict=args.strict)))
    except TargetUnreachable as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_UNREACHABLE
    same, worst = replayed.of(script), replayed.worst()
    verdict, status = judge_run([] if worst is None else [worst.verdict])
    if verdict not in (RunVerdict.FAIL, RunVerdict.WARN):
        print(replayed.transcript)
        print("verdict: PASS  did not reproduce: every reply passed the checks" if same is None
              else f"verdict: PASS  reproduced only as {same.verdict}: [{same.check}] "
                   f"{same.level} (this profile does not fail it)")
        return status
    assert worst is not None
    shown = same if same is not None and same.verdict == worst.verdict else worst
    print(failures.render(shown))
    which = f"[{shown.check}] {shown.level}"
    told = "the recorded finding" if shown is same else \
        "not the recorded one, which did not reproduce" if same is None else \
        f"and the recorded one as {same.verdict}"
    warning = " (a warning: fails only with --strict)" if verdict is RunVerdict.WARN else ""
    print(f"verdict: {verdict}  reproduced: {which}, {told}{warning}")
    return status


def _matrix_command(args: argparse.Namespace) -> int:
    targets = [matrix.Target.parse(text) for text in args.target]
    result = matrix.make(targets, args.profile or list(PROFILES), Path(args.out),
                         examples=args.examples, seed=args.seed, timeout=args.timeout,
                         deliver=args.deliver, rcpt_domain=args.rcpt_domain)
    for column in result["columns"]:
        reason = f"  ({column['reason']})" if column["reason"] else ""
        print(f"{column['target']:>12} / {column['profile']:8} {column['verdict']}{reason}")
    print(f"wrote {Path(args.out) / 'matrix.md'} and {Path(args.out) / 'matrix.json'}")
    return matrix.exit_status(result)


def _learn_command(args: argparse.Namespace) -> int:
    # AALpy is imported only when learning
    from conformance.learn.run import Target, exit_status, file_name, learn_all, summary
    from conformance.testing.reference_server import ReferenceServer

    out = Path(args.out)
    wanted: list[tuple[str, ServerAddress | None]] = []  # None: the embedded server
    for text in args.server or ["embedded"]:
        name, _, where = text.rpartition("=")
        address = None if where == "embedded" else ServerAddress.parse(where)
        if name and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
            raise UsageError(f"--server {text}: NAME names files: letters, digits, '.-_'")
        wanted.append((name or ("reference" if address is None else file_name(address)),
                       address))
    if len({name for name, _ in wanted}) < len(wanted):
        raise UsageError("two servers with one name: name them, --server NAME=HOST:PORT")
    with contextlib.ExitStack() as stack:
        targets = []
        for name, address in wanted:
            if address is None:
                address = stack.enter_context(
                    ReferenceServer(profile=get_profile(args.profile))).address
            targets.append(Target(name, address))
        for target in targets:
            if gone := outcome.unreachable(target.address, args.timeout):
                print(f"error: {gone}", file=sys.stderr)
                return EXIT_UNREACHABLE
        servers = learn_all(targets, out, profile=get_profile(args.profile),
                            timeout=args.timeout, budget=args.budget, deliver=args.deliver,
                            classes=args.classes, rcpt_domain=args.rcpt_domain,
                            extensions=args.extensions)
    print("\n".join(summary(servers)))
    print(f"wrote {out}/NAME.json, NAME.dot, diff.md and diff.json")
    return exit_status(servers)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m conformance", description="SMTP conformance tools"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    profiles = commands.add_parser("profiles", help="print a profile's documented reply codes")
    profiles.add_argument(
        "--profile", choices=sorted(PROFILES), default=DEFAULT_PROFILE,
        help=f"which profile (default: {DEFAULT_PROFILE})",
    )
    profiles.add_argument("--json", action="store_true", help="print one JSON object")
    profiles.set_defaults(run=_profiles_command)
    again = commands.add_parser("replay", help="re-send a saved failing session and re-check it")
    again.add_argument("file", help="a replay file the suite saved (see the failure message)")
    again.add_argument("--server", required=True, help="HOST[:PORT] to send it to")
    again.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                       help=f"seconds per reply ({DEFAULT_TIMEOUT:g})")
    again.add_argument("--profile", choices=sorted(PROFILES),
                       help="check against this profile (default: the recorded one)")
    again.add_argument("--strict", action="store_true",
                       help="a SHOULD finding fails too, as with --smtp-strict (exit 1)")
    again.set_defaults(run=_replay_command)
    grid = commands.add_parser("matrix", help="run the suite against servers x profiles and "
                                              "write a Markdown and a JSON matrix")
    grid.add_argument("--target", action="append", required=True, metavar="NAME=HOST:PORT",
                      help="a server to run against (repeatable); NAME=embedded for the "
                           "embedded reference server")
    grid.add_argument("--profile", action="append", choices=sorted(PROFILES),
                      help="repeatable (default: every profile)")
    grid.add_argument("--examples", type=int, default=60, help="sessions per run (60)")
    grid.add_argument("--seed", type=int, default=0, help="Hypothesis seed for every run (0)")
    grid.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                       help=f"seconds per reply ({DEFAULT_TIMEOUT:g})")
    grid.add_argument("--deliver", action="store_true",
                      help="complete messages (see docs/safety-and-security.md)")
    grid.add_argument("--rcpt-domain", help="domain of every generated recipient")
    grid.add_argument("--out", required=True, help="directory for matrix.md, matrix.json and "
                                                   "transcripts/")
    grid.set_defaults(run=_matrix_command)
    learner = commands.add_parser("learn", help="learn servers' state machines and compare "
                                                "them with the model and with each other")
    learner.add_argument("--server", action="append", metavar="[NAME=]HOST:PORT",
                         help="repeatable; 'embedded' for the embedded reference server "
                              "(the default); NAME names its files (default: from HOST:PORT)")
    learner.add_argument("--profile", choices=sorted(PROFILES), default=DEFAULT_PROFILE,
                         help=f"the model's documented codes ({DEFAULT_PROFILE})")
    learner.add_argument("--budget", type=float, default=120.0,
                         help="seconds of learning per server (120)")
    learner.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                         help=f"seconds per reply ({DEFAULT_TIMEOUT:g})")
    learner.add_argument("--deliver", action="store_true",
                         help="DATA sends a whole message (see docs/safety-and-security.md)")
    learner.add_argument("--classes", action="store_true",
                         help="outputs are reply classes (2xx) rather than codes (no "
                              "comparison with the model)")
    learner.add_argument("--extensions", action="store_true",
                         help="inputs also the commands of the extensions each server "
                              "advertises (STARTTLS with its handshake, AUTH; BDAT with "
                              "--deliver): a larger machine, slower to learn")
    learner.add_argument("--rcpt-domain", help="domain of the recipients")
    learner.add_argument("--out", required=True, help="directory for the machines and diff")
    learner.set_defaults(run=_learn_command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        status: int = args.run(args)
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return status
