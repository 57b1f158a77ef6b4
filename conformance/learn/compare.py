"""Learned machines against the model and against each other.

Against the model: the model (``model_step``) is walked alongside the learned machine, and
every input answered in a way the checks refuse is a divergence; the checks judge the real
replies, the inputs sent again through a checked session (``Judge``). Breadth first, so each
divergence is the shortest sequence showing it, and one is kept per finding identity (the
check and the cause it names, as a run's findings are told apart): one per cause.

Between servers: the shortest input sequences on which two machines answer differently, with
each side's checks on its own replies (the sequence sent again to each server).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from conformance.checks.grading import FindingKey
from conformance.engine.address import ServerAddress
from conformance.engine.replay import Script, script_of
from conformance.engine.settings import SessionSettings
from conformance.learn.alphabet import Letter, codes_of
from conformance.learn.machine import Learned, model_step
from conformance.learn.sul import ServerSUL
from conformance.protocol.model import Session, advance
from conformance.protocol.tables import SERVICE_READY, Profile
from conformance.protocol.vocabulary import GREETING

EXTRA_DEPTH = 2  # inputs beyond the machine's state count a walk may take


@dataclass(frozen=True)
class Complaint:
    check: str
    level: str
    complaint: str
    key: FindingKey | None = field(default=None, compare=False)  # its identity in a run

    def to_json(self) -> dict[str, str]:
        return {"check": self.check, "level": self.level, "complaint": self.complaint}


@dataclass(frozen=True)
class Judged:
    """The server's answers to a sequence sent again, and the checks' complaints about the
    last one."""

    outputs: tuple[str, ...]
    complaints: tuple[Complaint, ...]


class Judge:
    """Sends input sequences to one server on new connections and says what the checks think
    of the reply to the last input."""

    def __init__(self, address: ServerAddress, settings: SessionSettings,
                 letters: Mapping[str, Letter], *, classes: bool = False) -> None:
        self.address = address
        self.sul = ServerSUL(address, settings, letters, classes=classes)
        # Judged as a run judges: a deviation ends the session, nothing after it is judged.
        self.sul.session.ends_on_deviation = True
        self._cache: dict[tuple[str, ...], Judged] = {}

    def __call__(self, inputs: Sequence[str]) -> Judged:
        key = tuple(inputs)
        if key not in self._cache:
            self._cache[key] = self._send(key)
        return self._cache[key]

    def _send(self, inputs: tuple[str, ...]) -> Judged:
        sul, outputs = self.sul, []
        settings = sul.session.settings
        sul._seen.clear()  # a replay is judged, not held to the learning's answers
        sul.pre()
        try:
            for letter in inputs[:-1]:
                outputs.append(sul.step(letter))
            before = len(sul.session.findings), len(sul.session.noted)
            # The last input alone gets a run's control probe after a refusal (is it the
            # verb's case?), which the checks judge the refusal by; before it, a probe
            # would move the session where the machine's inputs do not.
            sul.session.settings = replace(settings, probes=True)
            outputs.append(sul.step(inputs[-1]))
            found, noted = sul.session.findings[before[0]:], sul.session.noted[before[1]:]
        finally:
            sul.session.settings = settings
            sul.post()
        keys = {(r.check, str(r.level)): r.key for r in noted}
        return Judged(tuple(outputs), tuple(
            Complaint(f.check.id, str(f.level), f.complaint,
                      keys.get((f.check.id, str(f.level)))) for f in found))


@dataclass(frozen=True)
class Divergence:
    """Where the server leaves the model: ``inputs`` (shortest first), the learned outputs,
    the model's state before the last input, whether the last code is documented for its
    command, and the checks' complaints about the real reply."""

    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    model_state: str
    documented: bool
    complaints: tuple[Complaint, ...]
    reproduced: bool  # the replay answered as the learned machine says
    # Each complaint's shortest session, for ``python -m conformance replay``.
    scripts: tuple[Script, ...] = field(default=(), compare=False)

    def to_json(self) -> dict[str, Any]:
        return {"inputs": list(self.inputs), "outputs": list(self.outputs),
                "model_state": self.model_state, "documented": self.documented,
                "reproduced": self.reproduced,
                "complaints": [c.to_json() for c in self.complaints]}


def _key(session: Session) -> tuple[object, ...]:
    """What a walk's product state keeps of the model: what only counts up cut to "none or
    some", the extensions left out (the same EHLO always lists the same)."""
    return (session.state, min(session.recipients, 1), min(session.messages, 1), session.tls,
            session.chunked, session.authenticated, session.utf8, session.reset_by)


def _walks(learned: Learned, letters: Mapping[str, Letter]
           ) -> Iterator[tuple[tuple[str, ...], tuple[str, ...], Session, str]]:
    """Every (inputs, outputs, model before the last input, last input) of the product of the
    machine and the model, breadth first, each product state expanded once."""
    start = advance(Session(), GREETING, SERVICE_READY)
    Walk = tuple[str, Session, tuple[str, ...], tuple[str, ...]]
    frontier: list[Walk] = [(learned.initial, start, (), ())]
    seen = {(learned.initial, _key(start))}
    depth = len(learned.states) + EXTRA_DEPTH
    while frontier:
        after: list[Walk] = []
        for state, model, inputs, outputs in frontier:
            if len(inputs) >= depth or not model.open:
                continue
            for letter in learned.alphabet:
                output, target = learned.step(state, letter)
                walk, said = (*inputs, letter), (*outputs, output)
                yield walk, said, model, letter
                next_model = model_step(model, letters[letter], output)
                if (target, _key(next_model)) not in seen:
                    seen.add((target, _key(next_model)))
                    after.append((target, next_model, walk, said))
        frontier = after


def against_model(learned: Learned, letters: Mapping[str, Letter], profile: Profile,
                  judge: Judge) -> list[Divergence]:
    """The divergences of ``learned`` from the model, one per cause, shortest first."""
    found: dict[FindingKey | tuple[str, str], Divergence] = {}
    for inputs, outputs, model, letter in _walks(learned, letters):
        judged = judge(inputs)
        group = letters[letter].group
        codes = codes_of(outputs[-1])
        documented = all(profile.row(group).allows(c) for c in codes[:1])
        for complaint in judged.complaints:
            identity = complaint.key or (complaint.check, complaint.level)
            if identity not in found:
                found[identity] = Divergence(
                    inputs, outputs, model.state.name, documented, judged.complaints,
                    judged.outputs == outputs)
    # What the whole walk settles, as a run's end does: a per-run finding something refuted,
    # or one another check's finding explains (a RCPT taken after HELO, where RCPT is taken
    # with no MAIL at all, is not HELO keeping the transaction), is no divergence.
    record = judge.sul.record
    record.settle()
    standing = {key.check for key in record.findings}
    kept = []
    for divergence in found.values():
        complaints = tuple(c for c in divergence.complaints
                           if (c.key in record.findings if c.key else c.check in standing))
        kept.append(replace(divergence, complaints=complaints, scripts=tuple(
            script_of(record.findings[c.key], server=str(judge.address))
            for c in complaints if c.key is not None and c.key in record.findings)))
    return sorted((d for d in kept if d.complaints), key=lambda d: (len(d.inputs), d.inputs))


@dataclass(frozen=True)
class Difference:
    """One way two servers answer differently: an input and the two answers to it, shown by
    the shortest sequence ending in it, with each side's view; ``model_states``: every pair
    of model states (one per server) it is seen from, that sequence's first."""

    inputs: tuple[str, ...]
    outputs: tuple[tuple[str, ...], tuple[str, ...]]
    model_states: tuple[tuple[str | None, str | None], ...]
    complaints: tuple[tuple[Complaint, ...], tuple[Complaint, ...]] = field(
        default=((), ()))

    def to_json(self, names: tuple[str, str]) -> dict[str, Any]:
        return {"inputs": list(self.inputs),
                "model_states": [list(pair) for pair in self.model_states],
                **{name: {"outputs": list(out), "complaints": [c.to_json() for c in said]}
                   for name, out, said in zip(names, self.outputs, self.complaints,
                                              strict=True)}}


def between(a: Learned, b: Learned, judges: tuple[Judge, Judge]) -> list[Difference]:
    """What tells ``a`` and ``b`` apart: one difference per (input, answer of each), however
    many states it is seen from, each shown by its shortest sequence and judged on each
    side's own server."""
    alphabet = [letter for letter in a.alphabet if letter in b.alphabet]
    frontier: list[tuple[str, str, tuple[str, ...]]] = [(a.initial, b.initial, ())]
    seen = {(a.initial, b.initial)}
    found: dict[tuple[str, str, str], Difference] = {}
    while frontier:
        after = []
        for sa, sb, inputs in frontier:
            for letter in alphabet:
                (out_a, ta), (out_b, tb) = a.step(sa, letter), b.step(sb, letter)
                walk, where = (*inputs, letter), (a.label[sa], b.label[sb])
                if out_a != out_b:
                    key = (letter, out_a, out_b)
                    if key not in found:
                        found[key] = Difference(walk, (tuple(a.run(walk)), tuple(b.run(walk))),
                                                (where,))
                    elif where not in found[key].model_states:
                        found[key] = replace(found[key], model_states=(
                            *found[key].model_states, where))
                elif (ta, tb) not in seen:
                    seen.add((ta, tb))
                    after.append((ta, tb, walk))
        frontier = after
    return [replace(d, complaints=(judges[0](d.inputs).complaints,
                                   judges[1](d.inputs).complaints))
            for d in sorted(found.values(), key=lambda d: (len(d.inputs), d.inputs))]
