"""Faults declared as data: each a named deviation a test server can be told to commit, the
check it must trip, and what it does, so a table of them says what the server proves.

    WRONG = Faults(
        Fault("noop_replies_252", "reply_code_documented", "NOOP answered 252"),
        Fault("keeps_mail_after_rset", "reset_clears_transaction", "RSET keeps MAIL FROM",
              stateful=True),
    )
    WRONG.checks()  # {"noop_replies_252": "reply_code_documented", ...}
    WRONG.choose(["noop_replies_252", None])  # frozenset({"noop_replies_252"})

A check is named by its id (``conformance.checks.CHECKS``), as a string: this layer sits
beside the checks, not above them, so a test of each server holds that every name exists.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Fault:
    """``check``: the id of the check that must catch the fault; None for a defence, a
    behaviour that is no deviation, for which the suite must report nothing.
    ``stateful``: only the right command after the right sequence shows it."""

    name: str
    check: str | None
    description: str
    stateful: bool = False


class Faults(Mapping[str, Fault]):
    """An ordered table of faults by name; a name is declared once."""

    def __init__(self, *faults: Fault) -> None:
        self._faults: dict[str, Fault] = {}
        for fault in faults:
            if fault.name in self._faults:
                raise ValueError(f"fault {fault.name!r} declared twice")
            self._faults[fault.name] = fault

    def __getitem__(self, name: str) -> Fault:
        return self._faults[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._faults)

    def __len__(self) -> int:
        return len(self._faults)

    def __or__(self, other: Faults) -> Faults:
        return Faults(*self.values(), *other.values())

    def __repr__(self) -> str:
        return f"Faults({', '.join(self)})"

    def checks(self) -> dict[str, str]:
        """Fault name -> the check that must catch it (defences left out)."""
        return {name: f.check for name, f in self._faults.items() if f.check is not None}

    def defences(self) -> frozenset[str]:
        return frozenset(name for name, f in self._faults.items() if f.check is None)

    def choose(self, names: Iterable[str | None]) -> frozenset[str]:
        """The faults ``names`` asks for (None: none), each declared here."""
        chosen = frozenset(name for name in names if name is not None)
        if unknown := chosen - self._faults.keys():
            raise ValueError(f"unknown fault(s) {sorted(unknown)}")
        return chosen
