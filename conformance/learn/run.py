"""``python -m conformance learn``: learn each server's machine, compare it with the model and
the servers with each other, and write DIR/NAME.json, DIR/NAME.dot (and .svg where Graphviz
is installed), DIR/diff.json and DIR/diff.md."""

from __future__ import annotations

import itertools
import json
import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conformance.engine import replay
from conformance.engine.address import ServerAddress
from conformance.engine.session import CheckedSession, RunState
from conformance.engine.settings import SessionSettings
from conformance.learn import compare
from conformance.learn.alphabet import Letter, alphabet
from conformance.learn.learner import Learning, learn
from conformance.learn.machine import Learned, from_aalpy
from conformance.learn.sul import ServerSUL
from conformance.protocol.tables import Profile
from conformance.protocol.vocabulary import V
from conformance.search.plan import example

DOT_SECONDS = 30.0


@dataclass(frozen=True)
class Target:
    """A server to learn: its name (for the files), address and, where it has one, the
    domain it takes mail for (its RCPT inputs go there; else the run's)."""

    name: str
    address: ServerAddress
    rcpt_domain: str | None = None


@dataclass
class Server:
    """One server learned: its name (for the files), address and results."""

    name: str
    address: ServerAddress
    rcpt_domain: str | None = None
    learning: Learning | None = None
    learned: Learned | None = None
    divergences: tuple[compare.Divergence, ...] = ()

    def to_json(self) -> dict[str, Any]:
        learning = self.learning
        assert learning is not None
        return {
            "server": str(self.address), "name": self.name, "rcpt_domain": self.rcpt_domain,
            "figures": {"queries": learning.queries, "resets": learning.resets,
                        "steps": learning.steps, "seconds": round(learning.seconds, 2)},
            "partial": learning.partial,
            "nondeterminism": None if learning.nondeterminism is None else {
                "inputs": list(learning.nondeterminism.inputs),
                "first": learning.nondeterminism.first,
                "then": learning.nondeterminism.then},
            "machine": None if self.learned is None else self.learned.to_json(),
            "divergences": [{**d.to_json(), "replays": [str(path) for path in self.replays(d)]}
                            for d in self.divergences]}

    def replays(self, divergence: compare.Divergence) -> dict[Path, replay.Script]:
        """Where each of a divergence's sessions is saved, relative to the output directory:
        NAME.replays/, a file per finding identity, named as a run names it."""
        return {Path(f"{self.name}.replays") / replay.file_name(script.key): script
                for script in divergence.scripts if script.key is not None}


def file_name(address: ServerAddress) -> str:
    return re.sub(r"[^A-Za-z0-9.-]+", "_", str(address)).strip("_")


def learn_all(targets: list[Target], out: Path, *, profile: Profile, timeout: float,
              budget: float, deliver: bool = False, classes: bool = False,
              rcpt_domain: str | None = None, extensions: bool = False) -> list[Server]:
    """Learn every target within ``budget`` seconds each, compare, write the files.
    ``extensions``: each server's inputs include the commands of what its EHLO advertises."""
    out.mkdir(parents=True, exist_ok=True)
    servers = [Server(t.name, t.address, t.rcpt_domain or rcpt_domain) for t in targets]
    judges: dict[str, compare.Judge] = {}
    alphabets: dict[str, Mapping[str, Letter]] = {}
    for server in servers:
        settings = SessionSettings(profile, timeout=timeout, deliver=deliver, probes=False,
                                   rcpt_domain=server.rcpt_domain)
        letters = alphabets[server.name] = alphabet(
            deliver=deliver, rcpt_domain=server.rcpt_domain,
            extensions=advertised(server.address, settings) if extensions else frozenset())
        sul = ServerSUL(server.address, settings, letters, classes=classes)
        server.learning = learn(sul, list(letters), budget=budget)
        judges[server.name] = compare.Judge(server.address, settings, letters, classes=classes)
        if server.learning.machine is not None:
            server.learned = from_aalpy(server.learning.machine, str(server.address), letters)
            if not classes:  # the model needs codes to follow the session
                server.divergences = tuple(compare.against_model(
                    server.learned, letters, profile, judges[server.name]))
        _write_server(server, out)
    differences = [(a, b, compare.between(a.learned, b.learned,
                                          (judges[a.name], judges[b.name])))
                   for a, b in itertools.combinations(servers, 2)
                   if a.learned is not None and b.learned is not None]
    (out / "diff.json").write_text(json.dumps([
        {"servers": [a.name, b.name],
         "differences": [d.to_json((a.name, b.name)) for d in found]}
        for a, b, found in differences], indent=2) + "\n")
    (out / "diff.md").write_text(render_diff(differences, alphabets))
    return servers


def advertised(address: ServerAddress, settings: SessionSettings) -> frozenset[str]:
    """The EHLO keywords the server at ``address`` advertises (none: EHLO refused)."""
    session = CheckedSession(address, settings, RunState.of(settings))
    try:
        session.connect()
        session.send(example(V.EHLO))
        return frozenset(session.model.extensions.keywords)
    finally:
        session.close()


def summary(servers: list[Server]) -> list[str]:
    """One line per server: its machine's size, the figures, the divergences, and why the
    learning stopped short where it did."""
    lines = []
    for server in servers:
        learning = server.learning
        assert learning is not None
        machine = "no machine" if server.learned is None else \
            f"{len(server.learned.states)} states"
        lines.append(f"{server.name}: {machine}, {learning.queries} queries, "
                     f"{learning.resets} connections, {learning.seconds:.1f}s; "
                     f"{len(server.divergences)} divergences from the model"
                     + (f" ({learning.partial})" if learning.partial else ""))
    return lines


def exit_status(servers: list[Server]) -> int:
    """1 if a server answered one sequence two ways: its machine is not what was learned."""
    return 1 if any(s.learning is not None and s.learning.nondeterminism is not None
                    for s in servers) else 0


def _write_server(server: Server, out: Path) -> None:
    for divergence in server.divergences:
        for path, script in server.replays(divergence).items():
            replay.save(script, out / path)
    (out / f"{server.name}.json").write_text(json.dumps(server.to_json(), indent=2) + "\n")
    if server.learned is None:
        return
    dot = out / f"{server.name}.dot"
    dot.write_text(server.learned.to_dot())
    if (graphviz := shutil.which("dot")) is not None:
        subprocess.run([graphviz, "-Tsvg", str(dot), "-o", str(dot.with_suffix(".svg"))],
                       check=False, timeout=DOT_SECONDS, capture_output=True)


def _said(complaints: tuple[compare.Complaint, ...]) -> str:
    return "; ".join(f"{c.check}: {c.complaint}" for c in complaints) or "no complaint"


def _where(pairs: tuple[tuple[str | None, str | None], ...]) -> str:
    return ", ".join((a or "?") if a == b else f"{a or '?'}/{b or '?'}" for a, b in pairs)


def render_diff(differences: list[tuple[Server, Server, list[compare.Difference]]],
                alphabets: Mapping[str, Mapping[str, Letter]]) -> str:
    """diff.md: a table per pair, then the inputs (one command each, per server where the
    servers' own domains make them differ)."""
    lines = ["# Learned machines compared", "",
             "For each pair of servers, each input they answer differently and the two "
             "answers: once, however many states it is seen from (`in`: the model's state "
             "before the input, one per server where they differ), shown by the shortest "
             "input sequence ending in it (each input one command, see the alphabet below), "
             "with what the checks say of each side's real reply.", ""]
    for a, b, found in differences:
        lines += [f"## {a.name} and {b.name}", ""]
        if not found:
            lines += ["No input sequence tells their machines apart.", ""]
            continue
        lines += [f"| inputs | {a.name} | {b.name} | in | {a.name}: checks | {b.name}: checks |",
                  "|---|---|---|---|---|---|"]
        for d in found:
            cells = [", ".join(d.inputs), " ".join(d.outputs[0][-1:]),
                     " ".join(d.outputs[1][-1:]), _where(d.model_states),
                     _said(d.complaints[0]), _said(d.complaints[1])]
            lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
        lines.append("")
    lines += ["## Alphabet", ""]
    for name in dict.fromkeys(n for letters in alphabets.values() for n in letters):
        sent: dict[str, list[str]] = {}
        for server, letters in alphabets.items():
            if name in letters:
                sent.setdefault(letters[name].command.first_line, []).append(server)
        lines.append(f"- {name}: " + ", ".join(
            f"`{line}`" + (f" ({', '.join(servers)})" if len(sent) > 1 else "")
            for line, servers in sent.items()))
    return "\n".join(lines) + "\n"
