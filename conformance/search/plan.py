"""The systematic plan: every (state, command) cell, reached by every route into its state,
with every argument class of the command, plus the probes a run makes once. Derived from the
vocabulary (the verbs, their moves, the extensions' parameters) and from the strategies'
deterministic builders (the malformed kinds, the case variants, the parameter values), so
it is the same on every seed and every Hypothesis version. Pure: no I/O; the systematic
phase (``conformance.search.systematic``) sends it.

A route is a base route (the shortest valid way to a state, EHLO first) followed by one move
the vocabulary gives: ``EHLO MAIL RSET`` is "READY, by RSET from MAIL". A case is a route and
one command of one argument class; its cell is (the route's state, the command's group).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

import conformance.strategies.extensions as ext
from conformance.protocol.commands import (
    NON_STANDARD_ENDINGS,
    RELAY_PROBES,
    Command,
    DataProbe,
    Message,
)
from conformance.protocol.vocabulary import (
    EXTENSIONS,
    OPEN_STATES,
    UNRECOGNISED,
    UPGRADING_VERBS,
    VERBS,
    Advertised,
    State,
    V,
    Verb,
)
from conformance.strategies.commands import (
    BARE_LINE_BREAK_COMMANDS,
    CASE_VARIANTS,
    SMUGGLED_LINES,
    UNKNOWN_EXAMPLE,
    malformed_command,
    malformed_kinds,
)

S = State
HELLO = V.EHLO  # the base routes' hello: what follows may depend on the extensions
# A Quoted-string local part with "@" and a quoted pair, as the strategies draw them: Postfix
# reads the "@" as a source route's and refuses a local recipient as relaying (454).
QUOTED_LOCAL_PART = '"route@x\\\\y"'
VALID = "valid"  # the argument class of a verb's example, as the vocabulary gives it
MESSAGE = Message(b"Subject: conformance test\r\n\r\nA message of the systematic phase.\r\n")
CHUNK_DATA = b"Subject: chunked\r\n\r\n"
# A message over the limit SIZE advertises is sent only when the limit is at most this (the
# message is built in memory, and a server may advertise up to 20 digits).
MAX_MESSAGE_SENT = 1 << 20
# Probe kinds: what a case sends beyond one command (see ``conformance.search.systematic``).
COMMAND, BATCH, DATA_PROBE, LINE_PROBE, INJECTION, OVERSIZED, RELAY = (
    "command", "pipelined batch", "end-of-data probe", "bare line break", "STARTTLS injection",
    "over the SIZE limit", "relay check")


@dataclass(frozen=True)
class Move:
    """One command, sent as its verb asks: STARTTLS upgrades (``upgrade``), AUTH answers its
    challenges (``answers``), DATA sends ``message`` after a 354 (when delivering)."""

    command: Command
    message: Message | None = None
    answers: tuple[Command, ...] = ()
    upgrade: bool = False

    @property
    def verb(self) -> str:
        """The verb as a route shows it: "RCPT (malformed)" for a malformed one."""
        verb = self.command.group
        return verb if self.command.valid else f"{verb} (malformed)"


@dataclass(frozen=True)
class Route:
    """Moves from a new connection to ``state`` (as the model expects them to go); ``needs``:
    the extensions it needs advertised; ``delivers``: it completes a message."""

    moves: tuple[Move, ...]
    state: State
    needs: frozenset[str] = frozenset()
    delivers: bool = False

    @property
    def name(self) -> str:
        return ", ".join(move.verb for move in self.moves) or "greeting"

    def then(self, move: Move, state: State, needs: str | None = None) -> Route:
        return Route((*self.moves, move), state, self.needs | ({needs} if needs else set()),
                     self.delivers or (move.message is not None))


@dataclass(frozen=True)
class Case:
    """One command of one argument class after ``route`` (``kind``: COMMAND), or a probe made
    once per run (the other kinds: ``moves`` are what it sends)."""

    route: Route
    moves: tuple[Move, ...]
    argument: str
    kind: str = COMMAND
    delivers: bool = False  # it completes a message: only when delivering
    verb: str = ""  # the verb it was planned for (a malformed line may read as another)

    @property
    def group(self) -> str:
        return self.moves[0].command.group

    @property
    def cell(self) -> tuple[State, str]:
        return self.route.state, self.group


# The ESMTP parameters each verb takes, as the extensions declare them (RFC 5321 §4.1.1.11).
PARAMETERS_OF: Mapping[str, tuple[str, ...]] = MappingProxyType({
    V.MAIL: tuple(p for e in EXTENSIONS for p in e.mail_parameters),
    V.RCPT: tuple(p for e in EXTENSIONS for p in e.rcpt_parameters)})


# --- commands ----------------------------------------------------------------------------

def example(verb: str, rcpt_domain: str | None = None) -> Command:
    """The vocabulary's valid command of ``verb``; RCPT to the postmaster of ``rcpt_domain``
    where one is given."""
    if verb == V.RCPT and rcpt_domain:
        return Command.of(f"RCPT TO:<postmaster@{rcpt_domain}>")
    return Command.of(VERBS[verb].example)


def _recased(command: Command, variant: str) -> Command:
    verb, rest = command.verb_as_sent, command.line[len(command.verb_as_sent):]
    return Command(CASE_VARIANTS[variant](verb).encode() + rest, valid=command.valid)


def argument_classes(verb: Verb, rcpt_domain: str | None = None) -> dict[str, Move]:
    """Every argument class of ``verb`` the strategies know, with its move: the valid example
    and its case variants, each malformed kind, each ESMTP parameter declared for it, UTF-8
    mailboxes; AUTH's exchanges, BDAT's chunk forms."""
    # As the strategies draw them: only RCPT's mailboxes are in the recipients' domain.
    domain = rcpt_domain if rcpt_domain and verb.name == V.RCPT else "example.test"
    if verb.challenges:  # AUTH: an exchange per kind the strategies know
        classes = {}
        for name in sorted(ext.AUTH_EXCHANGES):
            command, answers = ext.auth_exchange(name)
            classes[name] = Move(command, answers=answers)
        return classes
    if verb.name == V.BDAT:  # RFC 3030 §2: a chunk, and an empty last one
        return {"empty last chunk": Move(Command(b"BDAT 0 LAST\r\n")),
                "empty chunk": Move(Command(b"BDAT 0\r\n")),
                "chunk": Move(ext.chunk(CHUNK_DATA, last=False)),
                "last chunk": Move(ext.chunk(CHUNK_DATA, last=True))}
    valid = example(verb.name, rcpt_domain)
    message = MESSAGE if verb.data_reply else None
    upgrade = verb.name in UPGRADING_VERBS
    classes = {VALID: Move(valid, message, upgrade=upgrade)}
    for variant in CASE_VARIANTS:
        recased = _recased(valid, variant)
        if recased != valid:
            classes[variant] = Move(recased, message)
    for kind in malformed_kinds(verb.name):
        classes[kind] = Move(malformed_command(verb.name, kind, domain=domain))
    for keyword in PARAMETERS_OF.get(verb.name, ()):
        classes[f"parameter {keyword}"] = Move(ext.with_parameter(valid, keyword))
    if verb.name == V.MAIL:
        local = ext.UTF8_LOCAL_PARTS[0]
        classes["utf-8 mailbox"] = Move(Command(
            f"MAIL FROM:<{local}@example.test>\r\n".encode(), valid=False))
        classes["utf-8 mailbox, SMTPUTF8"] = Move(Command(
            f"MAIL FROM:<{local}@example.test> SMTPUTF8\r\n".encode(), valid=False))
    if verb.name == V.RCPT:
        classes["utf-8 mailbox"] = Move(Command(
            f"RCPT TO:<{ext.UTF8_LOCAL_PARTS[0]}@{domain}>\r\n".encode(), valid=False))
    if verb.name in (V.MAIL, V.RCPT):  # a Quoted-string local part may hold "@" (§4.1.2)
        prefix = "MAIL FROM" if verb.name == V.MAIL else "RCPT TO"
        classes["quoted local part"] = Move(Command.of(
            f"{prefix}:<{QUOTED_LOCAL_PART}@{domain}>"))
    return classes


# The argument classes a server's parser judges, not its state machine: the case of the verb
# (RFC 5321 §2.4), each malformed kind (§4.1), each ESMTP parameter (§4.1.1.11), UTF-8
# mailboxes (RFC 6531), each AUTH exchange but the plain one (RFC 4954 §4), BDAT's forms but
# the chunk. Each is sent in every state, by the state's base route; the rest (each verb's
# valid command, the plain AUTH, a chunk) after every route.
EVERY_ROUTE = frozenset({VALID, "PLAIN with an initial response", "chunk"})


def is_form(argument: str) -> bool:
    return argument not in EVERY_ROUTE


UNRECOGNISED_MOVE = Move(Command(f"{UNKNOWN_EXAMPLE}\r\n".encode(), valid=False))


def refused_recipient(rcpt_domain: str | None = None) -> Command:
    """A RCPT every server refuses: its mailbox without the angle brackets (§4.1.2)."""
    return malformed_command(V.RCPT, "no-brackets", domain=rcpt_domain or "example.test")


# --- routes ------------------------------------------------------------------------------

def base_routes(rcpt_domain: str | None = None) -> Mapping[State, Route]:
    """The shortest valid route to each open state: nothing to INIT (a new connection), the
    hello to READY, then the first verb in the vocabulary that moves on (MAIL, then RCPT)."""
    found = {S.INIT: Route((), S.INIT),
             S.READY: Route((Move(example(HELLO)),), S.READY)}
    frontier = [S.READY]
    while frontier:
        before = frontier.pop(0)
        for verb in VERBS.values():
            after = verb.moves.get(before)
            if verb.extension or after not in OPEN_STATES or after in found:
                continue
            found[after] = found[before].then(Move(example(verb.name, rcpt_domain)), after)
            frontier.append(after)
    return found


def routes(*, rcpt_domain: str | None = None) -> tuple[Route, ...]:
    """Every route into each open state: the base routes, each move the vocabulary gives
    into an open state (by its valid command, after the base route to where it starts), a
    session started over by STARTTLS before and after its new EHLO (RFC 3207 §4.2), the end
    of a message, and the states a refusal or an extension leaves as they were but not the
    same: a refused RCPT, a refused DATA, after AUTH, after a BDAT chunk."""
    base = base_routes(rcpt_domain)
    found: list[Route] = list(base.values())
    for verb in VERBS.values():
        for before, after in verb.moves.items():
            if after not in OPEN_STATES:
                continue
            move = argument_classes(verb, rcpt_domain)[VALID]
            route = base[before].then(move, after, verb.extension)
            found.append(route)
            if verb.upgrades:  # the session starts over: the new hello
                found.append(route.then(Move(example(HELLO)), S.READY))
    found += [
        base[S.RCPT].then(Move(example(V.DATA), MESSAGE), S.READY),  # §4.1.1.4
        base[S.MAIL].then(Move(refused_recipient(rcpt_domain)), S.MAIL),
        base[S.MAIL].then(Move(example(V.DATA)), S.MAIL),
        base[S.READY].then(argument_classes(VERBS[V.AUTH])["PLAIN with an initial response"],
                           S.READY, "AUTH"),
        base[S.RCPT].then(argument_classes(VERBS[V.BDAT])["chunk"], S.RCPT, "CHUNKING"),
    ]
    return tuple(dict.fromkeys(found))  # each once, in order


# --- the plan ----------------------------------------------------------------------------

def command_cases(route: Route, rcpt_domain: str | None = None, *,
                  forms: bool = True) -> list[Case]:
    """Every verb of the vocabulary and an unrecognised one, in every argument class, after
    ``route`` (``forms``: the classes a parser judges too, ``is_form``); those a
    positive reply would move on come last (the others leave the session where the route
    put it, for the next case)."""
    cases = []
    for verb in VERBS.values():
        for argument, move in argument_classes(verb, rcpt_domain).items():
            if is_form(argument) and not forms:
                continue
            delivers = move.message is not None or move.command.last_chunk
            cases.append(Case(route, (move,), argument, delivers=delivers, verb=verb.name))
    cases.append(Case(route, (UNRECOGNISED_MOVE,), VALID, verb=UNRECOGNISED))
    return sorted(cases, key=lambda case: moves_on(case))


def moves_on(case: Case) -> bool:
    """Whether a positive reply to the case's command undoes what its route did: a move the
    vocabulary declares from the route's state (even to the same state: HELO, RSET), a
    message, an upgrade, an authentication."""
    move = case.moves[0]
    verb = VERBS.get(move.command.group)
    if verb is None or not move.command.valid:
        return False
    return bool(case.route.state in verb.moves or verb.data_reply or verb.upgrades or
                verb.challenges)


def probe_cases(advertised: Advertised, *, rcpt_domain: str | None = None,
                relay_check: bool = False) -> list[Case]:
    """What a run sends once: each kind of bare line break in a command line, each
    non-standard end of data, STARTTLS with a line injected after it, pipelined batches,
    SIZE over the limit, and (with ``relay_check``) recipients the server must not relay to."""
    base = base_routes(rcpt_domain)
    cases = [Case(base[S.READY], (Move(command),), command.bare_line_break or "", LINE_PROBE)
             for command in BARE_LINE_BREAK_COMMANDS]
    cases += [Case(base[S.RCPT], (Move(example(V.DATA)),), ending, DATA_PROBE)
              for ending in sorted(NON_STANDARD_ENDINGS)]
    if "STARTTLS" in advertised:
        cases.append(Case(base[S.READY], (Move(Command(b"STARTTLS\r\n"), upgrade=True),),
                          "NOOP injected", INJECTION))
    if "PIPELINING" in advertised:
        refused = refused_recipient(rcpt_domain)
        for argument, batch in (
                ("transaction", (V.MAIL, V.RCPT, V.DATA)),
                ("refused recipient", (V.MAIL, refused, V.DATA)),
                ("reset", (V.MAIL, V.RCPT, V.RSET, V.NOOP))):
            moves = tuple(Move(c if isinstance(c, Command) else example(c, rcpt_domain),
                               MESSAGE if c == V.DATA else None) for c in batch)
            cases.append(Case(base[S.READY], moves, argument, BATCH,
                              delivers=V.DATA in batch))
    if advertised.size_limit is not None:
        limit = advertised.size_limit
        declared = ext.with_size(example(V.MAIL), limit + 1)
        cases.append(Case(base[S.READY], (Move(declared),), "declared", OVERSIZED))
        if "DSN" in advertised:  # SIZE after a value holding '"', valid xtext (RFC 3461 §4)
            quoted = ext.with_size(ext.with_parameter(example(V.MAIL), "ENVID",
                                                      ext.QUOTE_IN_XTEXT), limit + 1)
            cases.append(Case(base[S.READY], (Move(quoted),), "declared after a quote",
                              OVERSIZED))
    if advertised.size_limit is not None and advertised.size_limit <= MAX_MESSAGE_SENT:
        message = ext.oversized_message(advertised.size_limit + 1)
        cases.append(Case(base[S.READY], (Move(example(V.MAIL)),
                                          Move(example(V.RCPT, rcpt_domain)),
                                          Move(example(V.DATA), message)),
                          "message", OVERSIZED, delivers=True))
    if relay_check:
        cases += [Case(base[S.MAIL], (Move(recipient),), recipient.first_line, RELAY)
                  for recipient in RELAY_PROBES]
    return cases


def smuggled_probe(ending: str) -> DataProbe:
    return DataProbe(ending, SMUGGLED_LINES[1])


def plan(advertised: Advertised, *, deliver: bool, rcpt_domain: str | None = None,
         relay_check: bool = False) -> tuple[Case, ...]:
    """The whole plan for a server that advertised ``advertised``: the command cases of every
    route (but those that complete a message when not delivering), then the probes."""
    cases: list[Case] = []
    base = set(base_routes(rcpt_domain).values())
    for route in routes(rcpt_domain=rcpt_domain):
        if route.delivers and not deliver:
            continue
        cases += command_cases(route, rcpt_domain, forms=route in base)
    cases += probe_cases(advertised, rcpt_domain=rcpt_domain, relay_check=relay_check)
    return tuple(case for case in cases if deliver or not case.delivers or
                 case.group == V.DATA)  # DATA without its message still shows its reply


def cells(cases: Sequence[Case]) -> set[tuple[State, str]]:
    return {case.cell for case in cases}
