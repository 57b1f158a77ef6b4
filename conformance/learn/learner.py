"""AALpy's KV learner over a server (``ServerSUL``), with its query cache, bounded by a time
budget: equivalence by random walks (seeded, so the same server gives the same queries)
and then a W-method of bounded depth; when the budget runs out, the last hypothesis is the
(partial) result, with a note."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

from aalpy.automata import MealyMachine
from aalpy.base import SUL, Oracle
from aalpy.learning_algs import run_KV
from aalpy.oracles import RandomWalkEqOracle, WMethodEqOracle

from conformance.learn.sul import BudgetSpent, Nondeterministic, ServerSUL

WALK_STEPS = 400  # random-walk steps per equivalence query
RESET_PROBABILITY = 0.12  # a walk starts over on a new connection this often
W_DEPTH = 1  # states the W-method allows beyond the hypothesis's


class BoundedOracle(Oracle):  # type: ignore[misc]
    """Random walks, then the W-method, each only while the budget lasts."""

    def __init__(self, alphabet: list[str], sul: SUL, deadline: float) -> None:
        super().__init__(alphabet, sul)
        self.deadline = deadline
        self.cut_short = False

    def find_cex(self, hypothesis: MealyMachine) -> tuple[str, ...] | None:
        oracles = (RandomWalkEqOracle(self.alphabet, self.sul, num_steps=WALK_STEPS,
                                      reset_prob=RESET_PROBABILITY),
                   WMethodEqOracle(self.alphabet, self.sul,
                                   max_number_of_states=len(hypothesis.states) + W_DEPTH))
        for oracle in oracles:
            if time.monotonic() > self.deadline:
                self.cut_short = True
                return None
            found: tuple[str, ...] | None = oracle.find_cex(hypothesis)
            if found:
                return found
        return None


@dataclass
class Learning:
    """What a learning gave: the machine (None: nondeterminism stopped it before any), its
    figures, and why it is partial, if it is."""

    machine: MealyMachine | None
    queries: int
    resets: int
    steps: int
    seconds: float
    partial: str | None = None
    nondeterminism: Nondeterministic | None = None


def learn(sul: ServerSUL, alphabet: list[str], *, budget: float, seed: int = 0) -> Learning:
    """KV over ``alphabet`` within ``budget`` seconds (the SUL's deadline is set from it)."""
    started = time.monotonic()
    sul.deadline = started + budget * 1.5  # a query under way may finish past the budget
    oracle = BoundedOracle(alphabet, sul, started + budget)
    random.seed(seed)  # AALpy's walks draw from the random module
    machine: MealyMachine | None = None
    partial = nondeterminism = None
    try:
        machine = run_KV(alphabet, sul, oracle, automaton_type="mealy", print_level=0)
    except Nondeterministic as error:
        nondeterminism, partial = error, f"stopped: {error}"
    except BudgetSpent:
        partial = f"the budget ({budget:g}s) ran out before a first hypothesis"
    if machine is not None and oracle.cut_short:
        partial = (f"the budget ({budget:g}s) ran out during an equivalence query: the "
                   f"machine is the last hypothesis, not checked further")
    sul.session.close()
    return Learning(machine, sul.num_queries, sul.resets, sul.num_steps,
                    time.monotonic() - started, partial, nondeterminism)
