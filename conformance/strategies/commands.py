"""Strategies for SMTP commands and message data, valid and malformed.

Valid commands follow RFC 5321 §4.1.1 exactly (verbs in any case, §2.4). Malformed ones break
one rule each: a missing or extra argument, stray spaces, missing angle brackets, an overlong
line, 8-bit or control octets, or an unknown verb.
"""

from __future__ import annotations

import string
from collections.abc import Callable, Mapping
from types import MappingProxyType

from hypothesis import strategies as st

from conformance.protocol import grammar
from conformance.protocol.commands import NON_STANDARD_ENDINGS, Command, DataProbe, Message
from conformance.protocol.vocabulary import (
    SEED_VERBS,
    UNMODELLED_VERBS,
    VERBS,
    Argument,
    V,
    follows_grammar,
)
from conformance.strategies.addresses import (
    address_literals,
    domains,
    forward_paths,
    quoted_strings,
    reverse_paths,
)

SEED_VERB_NAMES = tuple(verb.name for verb in SEED_VERBS)


def mixed_case(verb: str) -> str:
    """``verb`` with every other letter in upper case, from the first: ``MaIl``."""
    return "".join(c.upper() if i % 2 == 0 else c.lower() for i, c in enumerate(verb))


# The case variants of a verb the systematic plan sends (RFC 5321 §2.4: verbs are
# case-insensitive); ``verbs`` draws these and every other mix.
CASE_VARIANTS: Mapping[str, Callable[[str], str]] = MappingProxyType({
    "upper case": str.upper, "lower case": str.lower, "mixed case": mixed_case})


def verbs(verb: str) -> st.SearchStrategy[str]:
    """``verb`` in upper, lower or mixed case: verbs are case-insensitive (RFC 5321 §2.4)."""
    return st.one_of(
        *(st.just(variant(verb)) for variant in CASE_VARIANTS.values()),
        st.integers(0, 2 ** len(verb) - 1).map(
            lambda ups: "".join(c.upper() if ups >> i & 1 else c.lower()
                                for i, c in enumerate(verb))),
    )


def command(verb: str, argument: str = "") -> Command:
    """``verb [SP argument] CRLF``: named, so failing examples print as ``command(...)``."""
    return Command.of(f"{verb} {argument}" if argument else verb)


def esmtp_parameters(*, advertised: frozenset[str] = frozenset()) -> st.SearchStrategy[str]:
    """MAIL parameters for extensions the server advertised (RFC 5321 §4.1.1.11): SIZE, BODY."""
    options = []
    if "SIZE" in advertised:
        options.append(st.integers(0, 10_000).map(lambda n: f"SIZE={n}"))
    if "8BITMIME" in advertised:
        options.append(st.sampled_from(["BODY=7BIT", "BODY=8BITMIME"]))
    if not options:
        return st.just("")
    return st.lists(st.one_of(*options), max_size=1, unique_by=lambda p: p.split("=")[0]).map(
        lambda ps: "".join(f" {p}" for p in ps))


# The longest String a four-letter verb's line holds: VERB SP String CRLF in the 512 octets
# a server must take (RFC 5321 §4.5.3.1.4).
LONGEST_STRING = grammar.MAX_COMMAND_LINE_OCTETS - len("NOOP ") - len("\r\n")


def string_arguments() -> st.SearchStrategy[str]:
    """``String = Atom / Quoted-string`` arguments for VRFY, EXPN, HELP and NOOP, up to the
    longest their line may be."""
    atoms = st.text(grammar.ATEXT_CHARS, min_size=1, max_size=24)
    return st.one_of(st.sampled_from(["postmaster", "user", "list", "MAIL"]), atoms,
                     quoted_strings(), st.just("a" * LONGEST_STRING))


ArgumentStrategy = Callable[[st.SearchStrategy[str] | None], st.SearchStrategy[str]]

# One strategy per argument grammar of the vocabulary (keyed by the argument's name), given
# the recipients' domains (None: the reserved test domains).
ARGUMENTS: Mapping[str, ArgumentStrategy] = MappingProxyType({
    "nothing": lambda _: st.just(""),
    "domain": lambda _: domains(),
    "hello-name": lambda _: st.one_of(domains(), address_literals()),
    "reverse-path": lambda _: st.builds("FROM:{}{}".format, reverse_paths(),
                                        esmtp_parameters()),
    "forward-path": lambda domain: forward_paths(domain=domain).map("TO:{}".format),
    "string": lambda _: string_arguments(),
    "optional-string": lambda _: st.one_of(st.just(""), string_arguments()),
    "mechanism": lambda _: st.sampled_from(["PLAIN", "LOGIN", "CRAM-MD5", "PLAIN ="]),
    "chunk": lambda _: st.builds("{}{}".format, st.integers(0, 64),
                                 st.sampled_from(["", " LAST"])),
})


def arguments(argument: Argument, *, domain: st.SearchStrategy[str] | None = None
              ) -> st.SearchStrategy[str]:
    """Valid arguments for ``argument``'s grammar; recipients in ``domain`` if given."""
    return ARGUMENTS[argument.name](domain)


def valid_commands(verb: str, *, domain: st.SearchStrategy[str] | None = None
                   ) -> st.SearchStrategy[Command]:
    """Any valid command for ``verb`` (RFC 5321 §4.1.1), a verb of the vocabulary; any
    recipient in ``domain`` if given."""
    return st.builds(command, verbs(verb), arguments(VERBS[verb].argument, domain=domain))


def helo_commands() -> st.SearchStrategy[Command]:
    """``HELO Domain`` (RFC 5321 §4.1.1.1)."""
    return valid_commands(V.HELO)


def ehlo_commands() -> st.SearchStrategy[Command]:
    """``EHLO ( Domain / address-literal )`` (RFC 5321 §4.1.1.1)."""
    return valid_commands(V.EHLO)


def mail_commands(*, advertised: frozenset[str] = frozenset(),
                  verb: str = V.MAIL) -> st.SearchStrategy[Command]:
    """``MAIL FROM:Reverse-path [SP Mail-parameters]`` (RFC 5321 §4.1.1.2); also SEND/SOML/SAML;
    with parameters of the ``advertised`` extensions."""
    argument = st.builds("FROM:{}{}".format, reverse_paths(),
                         esmtp_parameters(advertised=advertised))
    return st.builds(command, verbs(verb), argument)


def rcpt_commands(*, domain: st.SearchStrategy[str] | None = None) -> st.SearchStrategy[Command]:
    """``RCPT TO:Forward-path`` (RFC 5321 §4.1.1.3), to reserved test domains by default."""
    return valid_commands(V.RCPT, domain=domain)


# --- malformed -------------------------------------------------------------------------------

def _malformed(line: str | bytes) -> Command:
    data = line.encode() if isinstance(line, str) else line
    return Command(data + b"\r\n", valid=False)


# The ways a malformed command breaks RFC 5321 §4.1 (one rule each): the systematic plan
# sends each, the strategy draws among them.
MALFORMED_KINDS = ("missing-argument", "extra-argument", "extra-spaces", "no-brackets",
                   "overlong", "eight-bit", "control", "space-after-colon")
MALFORMED_PATHS = ("<user@{domain}>", "<>", "<postmaster@{domain}>")
MALFORMED_WORDS = ("example.test", "postmaster", "x")  # the argument of a verb with no path
EXTRA_WORDS = ("=1", "extra=", "x  y")  # words no grammar takes after an argument
CONTROL_OCTETS = (b"\x00", b"\x07", b"\x1b", b"\x7f", b"\x0b")


def malformed_kinds(verb: str) -> tuple[str, ...]:
    """The kinds that break a rule for ``verb`` (a missing argument only where one is
    required: otherwise it is an extra one)."""
    argument = VERBS[verb].argument
    required = argument.pattern is not None and argument.required
    return tuple(kind for kind in MALFORMED_KINDS if kind != "missing-argument" or required)


def malformed_command(verb: str, kind: str, *, domain: str = "example.test", path: int = 0,
                      word: int = 0, extra: int = 0, overlong: int = 0,
                      eight_bit: bytes = b"\xe9", control: int = 0) -> Command:
    """The ``kind`` of malformed ``verb`` (one of ``malformed_kinds(verb)``); the other
    arguments choose among each kind's forms (the first by default: the systematic plan's)."""
    grammar_of = VERBS[verb].argument
    mailbox = MALFORMED_PATHS[path].format(domain=domain)
    keyword = grammar_of.keyword
    argument = f"{keyword}{mailbox}" if keyword else MALFORMED_WORDS[word]
    takes_argument = grammar_of.pattern is not None
    if kind not in malformed_kinds(verb):
        raise ValueError(f"{verb} cannot be malformed as {kind!r}")
    if kind == "missing-argument":
        return _malformed(f"{verb}" if not keyword else f"{verb} {keyword}")
    if kind == "extra-argument":
        words = EXTRA_WORDS[extra]
        return _malformed(f"{verb} {argument} {words}" if takes_argument else f"{verb} {words}")
    if kind == "extra-spaces":
        return _malformed(f"{verb}   {argument}")
    if kind == "no-brackets":
        return _malformed(f"{verb} {keyword}{mailbox.strip('<>') or f'nobody@{domain}'}")
    if kind == "overlong":
        size = grammar.MAX_COMMAND_LINE_OCTETS + overlong
        return _malformed(f"{verb} {keyword}<{'x' * size}@{domain}>")
    if kind == "eight-bit":
        return _malformed(f"{verb} {argument}".encode() + bytes(x | 0x80 for x in eight_bit))
    if kind == "control":
        return _malformed(f"{verb} ".encode() + CONTROL_OCTETS[control] + argument.encode())
    return _malformed(f"{verb} {keyword} {mailbox}" if keyword else f"{verb}:{argument}")


@st.composite
def malformed_commands(draw: st.DrawFn, *, verb: str | None = None,
                       domain: str = "example.test") -> Command:
    """A command that breaks one RFC 5321 §4.1 rule, for ``verb`` or any seed verb; any
    mailbox in it is in ``domain``."""
    v = verb or draw(st.sampled_from(SEED_VERB_NAMES))
    kind = draw(st.sampled_from(MALFORMED_KINDS))
    if kind not in malformed_kinds(v):
        kind = "extra-argument"
    return malformed_command(
        v, kind, domain=domain, path=draw(st.integers(0, len(MALFORMED_PATHS) - 1)),
        word=draw(st.integers(0, len(MALFORMED_WORDS) - 1)),
        extra=draw(st.integers(0, len(EXTRA_WORDS) - 1)),
        overlong=draw(st.integers(0, 2000 - grammar.MAX_COMMAND_LINE_OCTETS)),
        eight_bit=draw(st.binary(min_size=1, max_size=4)),
        control=draw(st.integers(0, len(CONTROL_OCTETS) - 1)))


UNKNOWN_EXAMPLE = "XYZZY"  # the unrecognised verb the systematic plan sends


def unknown_commands() -> st.SearchStrategy[Command]:
    """Verbs no server should recognise (RFC 5321 §4.2.4), with or without an argument."""
    known = {*VERBS, *UNMODELLED_VERBS}
    word = st.text(string.ascii_letters, min_size=3, max_size=8).filter(
        lambda w: w.upper() not in known)
    return st.builds(_unknown, word, st.sampled_from(["", "x", "example.test"]))


def _unknown(verb: str, argument: str) -> Command:
    return Command(f"{verb} {argument}".strip().encode() + b"\r\n", valid=False)


def _garbage(octets: bytes) -> Command:
    return Command(octets + b"\r\n", valid=False)


def raw_lines(*, domain: str = "example.test") -> st.SearchStrategy[Command]:
    """Any malformed line: a broken seed command (any mailbox in ``domain``), an unknown verb,
    or garbage octets."""
    garbage = st.binary(min_size=0, max_size=40).filter(
        lambda b: b"\n" not in b and b"\r" not in b).map(_garbage).filter(
        lambda command: not follows_grammar(command.line))  # "AUTH 0" is no garbage
    return st.one_of(malformed_commands(domain=domain), unknown_commands(), garbage)


# --- message data ----------------------------------------------------------------------------

_TEXT_LINE = st.text(st.characters(codec="ascii", min_codepoint=0x20, max_codepoint=0x7E),
                     max_size=78)


def message_bodies(*, eight_bit: bool = True) -> st.SearchStrategy[Message]:
    """Message content: empty, leading dots (RFC 5321 §4.5.2), long lines up to the 1000-octet
    limit (§4.5.3.1.6), and 8-bit octets when ``eight_bit``."""
    line = st.one_of(
        _TEXT_LINE,
        _TEXT_LINE.map(lambda t: "." + t),
        st.just("."),
        st.integers(0, grammar.MAX_TEXT_LINE_OCTETS - 3).map(lambda n: "y" * n),
    ).map(str.encode)
    if eight_bit:
        line = st.one_of(line, st.binary(min_size=1, max_size=40).map(
            lambda b: bytes(x | 0x80 for x in b)))
    headers = st.sampled_from(
        [b"", b"Subject: conformance test\r\nFrom: <a@example.test>\r\n\r\n"])
    return st.builds(_message, headers, st.lists(line, max_size=8))


def _message(headers: bytes, lines: list[bytes]) -> Message:
    return Message(headers + b"\r\n".join(lines))


# NOOP, a bare LF or CR, and NOOP again, in one command line: a server that takes the bare
# one for a line end answers twice (RFC 5321 §2.3.8). Judged as NOOP (whose verb ends at the
# bare line break, or at the space a server may read a bare CR as).
BARE_LINE_BREAK_COMMANDS = (Command(b"NOOP\nNOOP\r\n", valid=False, group=V.NOOP),
                            Command(b"NOOP\rNOOP\r\n", valid=False, group=V.NOOP))


def bare_line_break_commands() -> st.SearchStrategy[Command]:
    """A command line holding a bare LF or CR (``BARE_LINE_BREAK_COMMANDS``)."""
    return st.sampled_from(BARE_LINE_BREAK_COMMANDS)


# Lines sent after a non-standard end of data: harmless wherever a server runs them.
SMUGGLED_LINES = (b"RSET\r\n", b"NOOP\r\n", b"HELP\r\n")


def data_probes() -> st.SearchStrategy[DataProbe]:
    """End-of-data probes: mail data ending in one of the non-standard endings
    (``NON_STANDARD_ENDINGS``: bare CR or LF, a NUL), then a harmless command line."""
    return st.builds(DataProbe, st.sampled_from(sorted(NON_STANDARD_ENDINGS)),
                     st.sampled_from(SMUGGLED_LINES))
