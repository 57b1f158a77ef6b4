"""``python -m conformance learn``: learn each server's machine, compare it with the model and
the servers with each other, and write DIR/NAME.json, DIR/NAME.dot (and .svg where Graphviz
is installed), DIR/diff.json and DIR/diff.md."""

from __future__ import annotations

import itertools
import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conformance.engine.address import ServerAddress
from conformance.engine.settings import SessionSettings
from conformance.learn import compare
from conformance.learn.alphabet import Letter, alphabet
from conformance.learn.learner import Learning, learn
from conformance.learn.machine import Learned, from_aalpy
from conformance.learn.sul import ServerSUL
from conformance.protocol.tables import Profile

DOT_SECONDS = 30.0


@dataclass
class Server:
    """One server learned: its name (for the files), address and results."""

    name: str
    address: ServerAddress
    learning: Learning | None = None
    learned: Learned | None = None
    divergences: tuple[compare.Divergence, ...] = ()

    def to_json(self) -> dict[str, Any]:
        learning = self.learning
        assert learning is not None
        return {
            "server": str(self.address), "name": self.name,
            "figures": {"queries": learning.queries, "resets": learning.resets,
                        "steps": learning.steps, "seconds": round(learning.seconds, 2)},
            "partial": learning.partial,
            "nondeterminism": None if learning.nondeterminism is None else {
                "inputs": list(learning.nondeterminism.inputs),
                "first": learning.nondeterminism.first,
                "then": learning.nondeterminism.then},
            "machine": None if self.learned is None else self.learned.to_json(),
            "divergences": [d.to_json() for d in self.divergences]}


def file_name(address: ServerAddress) -> str:
    return re.sub(r"[^A-Za-z0-9.-]+", "_", str(address)).strip("_")


def learn_all(targets: list[tuple[str, ServerAddress]], out: Path, *, profile: Profile,
              timeout: float, budget: float, deliver: bool = False, classes: bool = False,
              rcpt_domain: str | None = None) -> list[Server]:
    """Learn every target within ``budget`` seconds each, compare, write the files."""
    settings = SessionSettings(profile, timeout=timeout, deliver=deliver, probes=False,
                               rcpt_domain=rcpt_domain)
    letters = alphabet(deliver=deliver, rcpt_domain=rcpt_domain)
    out.mkdir(parents=True, exist_ok=True)
    servers = [Server(name, address) for name, address in targets]
    judges: dict[str, compare.Judge] = {}
    for server in servers:
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
    (out / "diff.md").write_text(render_diff(differences, letters))
    return servers


def _write_server(server: Server, out: Path) -> None:
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
                letters: dict[str, Letter] | Any) -> str:
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
    lines += [f"- {name}: `{letter.command.first_line}`" for name, letter in letters.items()]
    return "\n".join(lines) + "\n"
