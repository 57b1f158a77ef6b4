"""The session model: states, and a transition table driven by (command group, reply).

Pure: no I/O. It advances from the server's actual replies (a 550 to RCPT adds no recipient,
RFC 5321 §4.1.4: a rejected command leaves the state unchanged), and draws its own diagram.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType

from conformance.protocol.tables import OK, SERVICE_NOT_AVAILABLE
from conformance.protocol.vocabulary import (
    END_OF_DATA,
    GREETING,
    NOTHING_ADVERTISED,
    OPEN_STATES,
    VERBS,
    Advertised,
    Effect,
    V,
    parse_ehlo,
    positive_class,
)
from conformance.protocol.vocabulary import State as State  # the model's states, declared there

S = State

# (group, state before) -> state after a positive reply (2yz; 3yz for DATA), from each verb's
# declared moves. Anything not listed leaves the state unchanged (RFC 5321 §4.1.4).
ON_SUCCESS: Mapping[tuple[str, State], State] = MappingProxyType({
    (GREETING, S.GREETING): S.INIT,  # §3.1
    **{(verb.name, before): after for verb in VERBS.values()
       for before, after in verb.moves.items()},
})
# The reply to the end of mail data, whatever its code, clears the buffers (§4.1.1.4).
ON_END_OF_DATA = S.READY


@dataclass(frozen=True)
class Session:
    """What the model knows of one session."""

    state: State = S.GREETING
    recipients: int = 0  # accepted in the current transaction
    messages: int = 0  # completed (250 to the end of data) in this session
    extensions: Advertised = NOTHING_ADVERTISED  # by the last EHLO reply of this session
    errors: int = 0  # 5yz replies so far in this session (RFC 5321 §7.8 lets a server give up)
    tls: bool = False  # upgraded by STARTTLS (RFC 3207)
    chunked: bool = False  # a BDAT chunk was accepted in this transaction (RFC 3030 §2)
    authenticated: bool = False  # 235 to AUTH in this session (RFC 4954 §4)
    utf8: bool = False  # this transaction's MAIL asked for SMTPUTF8 (RFC 6531 §3.4)
    # The first command that ended the session's last transaction by a positive reply
    # (HELO/EHLO, RSET, the end of data, STARTTLS), until a new MAIL is accepted: if the
    # server then acts as if the transaction were open, that command did not clear it.
    reset_by: str | None = None

    @property
    def open(self) -> bool:
        return self.state not in (S.GREETING, S.CLOSED)

    @property
    def in_transaction(self) -> bool:
        return self.state in (S.MAIL, S.RCPT)


def is_positive(group: str, code: int) -> bool:
    """A reply that moves the session on: 354 to DATA, 2yz to anything else (RFC 821 §4.4)."""
    return code // 100 == positive_class(group)


def advance(session: Session, group: str, code: int, *, lines: tuple[str, ...] = (),
            last_chunk: bool = False, smtputf8: bool = False) -> Session:
    """The session after the server answered ``code`` to a command of ``group``: its move
    (``ON_SUCCESS``) and its effects (``Verb.effects``); ``last_chunk``: the command was
    ``BDAT ... LAST``; ``smtputf8``: it had the SMTPUTF8 parameter."""
    if code == SERVICE_NOT_AVAILABLE:  # §3.8: the server is closing
        return replace(session, state=S.CLOSED, recipients=0, chunked=False, utf8=False)
    if code // 100 == 5:
        session = replace(session, errors=session.errors + 1)
    verb = VERBS.get(group)
    effects = verb.effects if verb is not None else frozenset()
    if group == END_OF_DATA or (Effect.LAST_CHUNK_ENDS_MESSAGE in effects and last_chunk and
                                code == OK and session.in_transaction):
        # The reply to a message's end, whatever it is, ends the transaction (§4.1.1.4); so
        # does 250 to the last BDAT chunk (RFC 3030 §2). After a refused chunk the state is
        # "indeterminate" (§2): the client resets it with RSET.
        done = session.messages + (1 if code == OK else 0)
        return replace(session, state=ON_END_OF_DATA, recipients=0, messages=done,
                       chunked=False, utf8=False, reset_by=session.reset_by or group)
    if not is_positive(group, code):
        return session
    after = ON_SUCCESS.get((group, session.state), session.state)
    recipients = session.recipients + 1 if Effect.ADDS_RECIPIENT in effects and \
        after is S.RCPT else (session.recipients if after in (S.RCPT, S.DATA) else 0)
    extensions = session.extensions
    if Effect.LISTS_EXTENSIONS in effects:
        extensions = parse_ehlo(lines)
    elif Effect.FORGETS_EXTENSIONS in effects or after is S.INIT:  # or started over (TLS)
        extensions = NOTHING_ADVERTISED
    in_transaction = after in (S.MAIL, S.RCPT, S.DATA)
    starts = Effect.STARTS_TRANSACTION in effects
    chunked = after in (S.MAIL, S.RCPT) and (session.chunked or Effect.CHUNKS in effects)
    utf8 = in_transaction and (session.utf8 or (starts and smtputf8))
    authenticated = (session.authenticated or Effect.AUTHENTICATES in effects) and \
        after is not S.INIT
    reset_by = None if after is S.MAIL and starts else session.reset_by or (
        group if session.in_transaction and not in_transaction else None)
    return replace(session, state=after, recipients=recipients, extensions=extensions,
                   chunked=chunked, authenticated=authenticated, utf8=utf8, reset_by=reset_by)


def upgraded(session: Session) -> Session:
    """The session after a TLS upgrade: started over in INIT with nothing carried over (RFC
    3207 §4.2), a transaction open before it ended by STARTTLS. The count of error replies
    carries over: it is the connection's, not protocol state (Exim gives up after three
    errors, TLS or not), so a close after them is still the server giving up (§7.8)."""
    reset = session.reset_by or (V.STARTTLS if session.in_transaction else None)
    return Session(state=S.INIT, tls=True, reset_by=reset, errors=session.errors)


def closed(session: Session) -> Session:
    return replace(session, state=S.CLOSED, recipients=0)


def to_dot(*, coverage: Mapping[tuple[str, str], int] | None = None) -> str:
    """The transition table as a Graphviz DOT digraph (edges: group; counts if given)."""
    edges: dict[tuple[State, State], list[str]] = {}
    for (group, before), after in ON_SUCCESS.items():
        edges.setdefault((before, after), []).append(group)
    edges.setdefault((S.DATA, ON_END_OF_DATA), []).append(END_OF_DATA)
    for verb in VERBS.values():
        if Effect.LAST_CHUNK_ENDS_MESSAGE in verb.effects:  # 250 to "<verb> n LAST"
            for before in (S.MAIL, S.RCPT):
                edges.setdefault((before, ON_END_OF_DATA), []).append(f"{verb.name} LAST")
    for before in OPEN_STATES:
        edges.setdefault((before, S.CLOSED), []).append(str(SERVICE_NOT_AVAILABLE))
    lines = ["digraph smtp_session {", "  rankdir=LR;", "  node [shape=box];"]
    for state in State:
        lines.append(f'  {state.name} [label="{state.name}\\n{state.value}"];')
    for (before, after), groups in edges.items():
        label, style = ", ".join(dict.fromkeys(groups)), ""
        if coverage is not None:
            # exchanges of the edge's groups in its first state (``BDAT LAST``: of BDAT)
            seen = sum(coverage.get((before.name, g.split(' ')[0]), 0) for g in groups)
            label += f" ({seen})"
            style = "" if seen else ", style=dashed, color=gray"  # never taken in this run
        lines.append(f'  {before.name} -> {after.name} [label="{label}"{style}];')
    lines.append("}")
    return "\n".join(lines)
