"""The learner's inputs, from the vocabulary: each seed verb's valid command, a malformed
MAIL and RCPT and an unknown verb (what the strategies draw), DATA as one input (DATA, and
when delivering the whole message after a 354), and the outputs it is read into.

An output is the reply code as text ("250"), the codes of DATA and of the end of its data
("354 250"), ``CLOSED`` once the connection is gone, or ``NO_REPLY`` for a reply that never
came. With ``classes``, a code is read as its class ("2xx").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from conformance.protocol.commands import Command
from conformance.protocol.vocabulary import SEED_VERBS, V
from conformance.search.plan import MESSAGE, UNRECOGNISED_MOVE, Move, example
from conformance.strategies.commands import malformed_command

CLOSED = "closed"
NO_REPLY = "no reply"
MALFORMED_KIND = "no-brackets"  # a mailbox without its angle brackets (RFC 5321 §4.1.2)


@dataclass(frozen=True)
class Letter:
    """One input: its name (what the machine's pictures and sequences show) and its move."""

    name: str
    move: Move

    @property
    def command(self) -> Command:
        return self.move.command

    @property
    def group(self) -> str:
        return self.move.command.group


def alphabet(*, deliver: bool = False, rcpt_domain: str | None = None,
             forms: bool = True) -> Mapping[str, Letter]:
    """The inputs by name, in the vocabulary's order. ``forms``: also the malformed MAIL and
    RCPT and the unknown verb."""
    letters = []
    for verb in SEED_VERBS:
        message = MESSAGE if verb.data_reply and deliver else None
        letters.append(Letter(verb.name, Move(example(verb.name, rcpt_domain), message)))
    if forms:
        for name in (V.MAIL, V.RCPT):
            command = malformed_command(name, MALFORMED_KIND,
                                        domain=rcpt_domain or "example.test")
            letters.append(Letter(f"{name} (malformed)", Move(command)))
        letters.append(Letter("unknown verb", UNRECOGNISED_MOVE))
    return MappingProxyType({letter.name: letter for letter in letters})


def output_of(*codes: int | None, classes: bool = False) -> str:
    """The output for the replies to one input (None: no reply)."""
    if any(code is None for code in codes):
        return NO_REPLY
    return " ".join(f"{code // 100}xx" if classes else str(code)
                    for code in codes if code is not None)


def codes_of(output: str) -> tuple[int, ...]:
    """The reply codes an output shows (none for CLOSED, NO_REPLY or a class)."""
    words = output.split()
    return tuple(int(w) for w in words) if all(w.isdigit() for w in words) else ()
