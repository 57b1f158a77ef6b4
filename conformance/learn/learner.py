"""AALpy's KV learner over a server (``ServerSUL``), with its query cache, bounded by a time
budget. Equivalence: the W-method's tests (each hypothesis state's transitions, then each with
one input more, each followed by each word of its characterization set), then from each state
random inputs and a suffix (seeded: the same server gets the same queries). Each test is a
query through the cache, so one the learning already asked costs no connection, and none is
longer than ``MAX_WORD`` inputs. When the budget runs out, the last hypothesis is the
(partial) result, with a note."""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass

from aalpy.automata import MealyMachine
from aalpy.base import SUL, Oracle
from aalpy.learning_algs import run_KV

from conformance.learn.sul import BudgetSpent, Nondeterministic, ServerSUL

# A session of more inputs than this is a session of errors mostly, and servers count those:
# Postfix delays each reply by a second after 10 (smtpd_soft_error_limit) and closes the
# connection after 20, which is a counter, not a state worth learning.
MAX_WORD = 8
W_DEPTH = 1  # inputs between a transition and a suffix: finds a server's extra state
RANDOM_WORDS_PER_STATE = 150  # per hypothesis state, after the W-method's tests
MAX_MIDDLE = 3  # random inputs between a state's access sequence and a suffix


class BoundedOracle(Oracle):  # type: ignore[misc]  # AALpy has no type information
    """The W-method's tests, then random words, each a query through the cache, while the
    budget lasts; remembers the last hypothesis it was asked about."""

    def __init__(self, alphabet: list[str], sul: SUL, deadline: float, seed: int) -> None:
        super().__init__(alphabet, sul)
        self.deadline, self.random = deadline, random.Random(seed)
        self.cut_short = False
        self.hypothesis: MealyMachine | None = None
        self.counterexample: tuple[str, ...] | None = None  # the last hypothesis's

    def find_cex(self, hypothesis: MealyMachine) -> tuple[str, ...] | None:
        self.hypothesis, self.counterexample = hypothesis, None
        for word in self._tests(hypothesis):
            if time.monotonic() > self.deadline:
                self.cut_short = True
                return None
            self.num_queries += 1
            answered = self.sul.query(word)
            expected = hypothesis.compute_output_seq(hypothesis.initial_state, word)
            for length, (real, learned) in enumerate(zip(answered, expected, strict=True), 1):
                if real != learned:
                    self.counterexample = word[:length]
                    return self.counterexample
        return None

    def _tests(self, hypothesis: MealyMachine) -> Iterator[tuple[str, ...]]:
        suffixes = hypothesis.compute_characterization_set(raise_warning=False) or \
            [(letter,) for letter in self.alphabet]  # KV's hypotheses need not be minimal
        for depth in range(W_DEPTH + 1):
            for state in hypothesis.states:
                for letter in self.alphabet:
                    for middle in itertools.product(self.alphabet, repeat=depth):
                        for suffix in suffixes:
                            word = (*state.prefix, letter, *middle, *suffix)
                            if len(word) <= MAX_WORD:
                                yield word
        for state in hypothesis.states:  # from each state, random inputs, then a suffix
            for _ in range(RANDOM_WORDS_PER_STATE):
                walk = tuple(self.random.choice(self.alphabet)
                             for _ in range(self.random.randint(1, MAX_MIDDLE)))
                end = self.random.choice([*suffixes, (self.random.choice(self.alphabet),)])
                yield (*state.prefix, *walk, *end)[:MAX_WORD]


@dataclass
class Learning:
    """What a learning gave: the machine (None: nondeterminism or the budget stopped it
    before any), its figures, and why it is partial, if it is."""

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
    oracle = BoundedOracle(alphabet, sul, started + budget, seed)
    machine: MealyMachine | None = None
    partial = nondeterminism = None
    try:
        machine = run_KV(alphabet, sul, oracle, automaton_type="mealy", print_level=0)
    except Nondeterministic as error:
        nondeterminism, partial = error, f"stopped: {error}"
    except BudgetSpent:  # in a query: the last hypothesis, if there was one, is the result
        machine = oracle.hypothesis
        if machine is None:
            partial = f"the budget ({budget:g}s) ran out before a first hypothesis"
        else:
            refuted = ("" if oracle.counterexample is None else
                       f", which {', '.join(oracle.counterexample)} refutes")
            partial = (f"the budget ({budget:g}s) ran out while learning: the machine is "
                       f"the last hypothesis{refuted}")
    if partial is None and oracle.cut_short:
        partial = (f"the budget ({budget:g}s) ran out during an equivalence query: the "
                   f"machine is the last hypothesis, not checked further")
    sul.session.close()
    return Learning(machine, sul.num_queries, sul.resets, sul.num_steps,
                    time.monotonic() - started, partial, nondeterminism)
