"""A learned machine as data: states named s0, s1... in breadth-first order over the alphabet
(so the same machine always gets the same names), each with its access sequence and the
model's state there; its transitions; as JSON and as a Graphviz DOT picture."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aalpy.automata import MealyMachine

from conformance.learn.alphabet import CLOSED, NO_REPLY, NOT_SENT, Letter, codes_of
from conformance.protocol.model import Session, advance, closed, upgraded
from conformance.protocol.tables import SERVICE_READY
from conformance.protocol.vocabulary import END_OF_DATA, GREETING, State, V


@dataclass(frozen=True)
class Transition:
    source: str
    input: str
    output: str
    target: str


@dataclass(frozen=True)
class Learned:
    """One server's machine over ``alphabet``: ``access`` maps each state to the shortest
    inputs that reach it, ``label`` to the model's state there (None: the model's
    state is not one state, it depends on more than the replies)."""

    server: str
    alphabet: tuple[str, ...]
    states: tuple[str, ...]
    access: Mapping[str, tuple[str, ...]]
    label: Mapping[str, str | None]
    transitions: tuple[Transition, ...]

    @property
    def initial(self) -> str:
        return self.states[0]

    def step(self, state: str, letter: str) -> tuple[str, str]:
        """(output, next state) for ``letter`` in ``state``."""
        for t in self.transitions:
            if t.source == state and t.input == letter:
                return t.output, t.target
        raise KeyError((state, letter))

    def run(self, inputs: Sequence[str]) -> list[str]:
        """The outputs for ``inputs`` from the initial state."""
        state, outputs = self.initial, []
        for letter in inputs:
            output, state = self.step(state, letter)
            outputs.append(output)
        return outputs

    def to_json(self) -> dict[str, Any]:
        return {"server": self.server, "alphabet": list(self.alphabet), "initial": self.initial,
                "states": [{"id": s, "model_state": self.label[s],
                            "access": list(self.access[s])} for s in self.states],
                "transitions": [{"from": t.source, "input": t.input, "output": t.output,
                                 "to": t.target} for t in self.transitions]}

    def to_dot(self) -> str:
        """One edge per (source, target), its label every input/output pair on it."""
        lines = ["digraph learned {", "  rankdir=LR;", '  node [shape=box, fontname="Helvetica"];',
                 '  edge [fontname="Helvetica", fontsize=9];',
                 '  start [shape=point];', f"  start -> {self.initial};"]
        for state in self.states:
            label = self.label[state] or "?"
            lines.append(f'  {state} [label="{state}\\n{label}"];')
        edges: dict[tuple[str, str], list[str]] = {}
        for t in self.transitions:
            edges.setdefault((t.source, t.target), []).append(f"{t.input} / {t.output}")
        for (source, target), pairs in edges.items():
            text = "\\n".join(p.replace('"', "'") for p in pairs)
            lines.append(f'  {source} -> {target} [label="{text}"];')
        return "\n".join([*lines, "}"]) + "\n"


def from_aalpy(machine: MealyMachine, server: str, letters: Mapping[str, Letter]) -> Learned:
    """``machine``'s states renamed in breadth-first order, labelled by the model."""
    alphabet = tuple(letters)
    names: dict[Any, str] = {machine.initial_state: "s0"}
    access: dict[str, tuple[str, ...]] = {"s0": ()}
    order = [machine.initial_state]
    for state in order:
        for letter in alphabet:
            after = state.transitions[letter]
            if after not in names:
                names[after] = f"s{len(names)}"
                access[names[after]] = (*access[names[state]], letter)
                order.append(after)
    transitions = tuple(Transition(names[s], letter, str(s.output_fun[letter]),
                                   names[s.transitions[letter]])
                        for s in order for letter in alphabet)
    states = tuple(names[s] for s in order)
    learned = Learned(server, alphabet, states, access, {}, transitions)
    labels = {s: model_after(learned, letters, access[s]) for s in states}
    return Learned(server, alphabet, states, access,
                   {s: None if m is None else label_of(m) for s, m in labels.items()},
                   transitions)


def label_of(session: Session) -> str:
    """The model's state, and what the session holds beyond it: "READY+TLS", "MAIL+AUTH"."""
    return "+".join([session.state.name, *(["TLS"] if session.tls else []),
                     *([V.AUTH] if session.authenticated else [])])


def model_after(learned: Learned, letters: Mapping[str, Letter],
                inputs: Sequence[str]) -> Session | None:
    """The model's session after ``inputs``, advanced by the machine's own outputs."""
    session = advance(Session(), GREETING, 220)
    for letter, output in zip(inputs, learned.run(inputs), strict=True):
        session = model_step(session, letters[letter], output)
    return session


def model_step(session: Session, letter: Letter, output: str) -> Session:
    """The model after one input answered ``output``."""
    if output == NOT_SENT:
        return session
    if output in (CLOSED, NO_REPLY):
        return closed(session)
    codes = codes_of(output)
    if not codes:  # a class ("2xx"): the model needs the code
        return closed(session)
    session = advance(session, letter.group, codes[0])
    if letter.move.upgrade and codes[0] == SERVICE_READY and session.open and not session.tls:
        return upgraded(session)  # the handshake followed (else the next output is CLOSED)
    if len(codes) > 1:
        session = advance(session, END_OF_DATA, codes[1])
    elif session.state is State.DATA:  # safe mode: the connection was closed after the 354
        session = closed(session)
    return session
