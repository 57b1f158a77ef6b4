"""What a session sends where: which commands no client sends on its own in a state
(``not_sendable``), and what makes a command the same as one the session sent before
(``repeat_key``, for ``session_limit``)."""

from __future__ import annotations

from conformance.protocol.commands import Command, Sent, describe
from conformance.protocol.model import Session, State
from conformance.protocol.vocabulary import VERBS


def repeat_key(sent: Sent | None, before: Session) -> tuple[State, bytes] | None:
    """What identifies a command of a seed verb that leaves the state as it is (NOOP, HELP,
    VRFY, EXPN) among a session's: its state and its line, case aside; None for others."""
    if not isinstance(sent, Command) or sent.bare_line_break is not None:
        return None
    verb = VERBS.get(sent.group)
    if verb is None or verb.extension is not None or verb.moves:
        return None
    return before.state, sent.line.upper()


def not_sendable(command: Command, model: Session) -> str | None:
    """Why no client sends ``command`` on its own in the state ``model``, or None: an answer
    to an AUTH challenge outside its exchange (``authenticate`` sends those, RFC 4954 §4), or
    data after an extension's command (BDAT's chunk) where that extension was not advertised
    (RFC 3030 §2: a server that does not know BDAT reads the data as commands). A replay of
    a session shortened past what made them legal skips them."""
    if command.answers_challenge:
        return f"{describe(command)}: an answer to an {command.group} challenge"
    verb = VERBS.get(command.group)
    extension = verb.extension if verb is not None else None
    if extension is not None and command.line.partition(b"\r\n")[2] and \
            extension not in model.extensions:
        return f"{command.first_line!r} and what follows it: {extension} was not advertised"
    return None
