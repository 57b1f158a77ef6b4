"""The SMTP vocabulary, declared once: every verb and extension the suite knows, as data.

A verb is its argument grammar, the extension that adds it (none for the seed's verbs),
whether a pipelined batch must end with it, and how a positive reply moves the session. An
extension is its EHLO keyword, the verbs and MAIL/RCPT parameters it adds, and its RFC. The
reply-code tables, the model, the strategies, the state machine's rules, the session's
batches and the reference server's HELP all read these declarations: a new verb is one
``Verb`` here plus its rows in ``tables``. The extensions are declared with the parameters they
add (``strategies.extensions`` has values for each; the checks read ``Advertised``).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final

from conformance.protocol import grammar


class State(enum.Enum):
    """Where a session is, as the client can know it from the replies (RFC 5321 §3.3, §4.1.4)."""

    GREETING = "awaiting greeting"
    INIT = "greeted, no HELO/EHLO"
    READY = "identified, no transaction"
    MAIL = "transaction, no recipient"
    RCPT = "transaction with recipients"
    DATA = "sending mail data"
    CLOSED = "closed"


S = State
OPEN_STATES = (S.INIT, S.READY, S.MAIL, S.RCPT)  # where a command can be sent


class VerbName:
    """Each verb's name, written once: code that means a verb says ``V.MAIL`` (a misspelt
    name is an AttributeError, and mypy's error, not a group nothing answers). The names
    are plain strings, as the groups of the tables and the replay files are. ``VERBS`` has
    one ``Verb`` for each (a test holds them together)."""

    HELO: Final = "HELO"
    EHLO: Final = "EHLO"
    MAIL: Final = "MAIL"
    RCPT: Final = "RCPT"
    DATA: Final = "DATA"
    RSET: Final = "RSET"
    SEND: Final = "SEND"
    SOML: Final = "SOML"
    SAML: Final = "SAML"
    VRFY: Final = "VRFY"
    EXPN: Final = "EXPN"
    HELP: Final = "HELP"
    NOOP: Final = "NOOP"
    QUIT: Final = "QUIT"
    TURN: Final = "TURN"
    STARTTLS: Final = "STARTTLS"
    AUTH: Final = "AUTH"
    BDAT: Final = "BDAT"


V = VerbName

# Pseudo-commands: rows of the tables that answer no verb.
GREETING = "connect"  # the reply to the connection (RFC 5321 §3.1)
END_OF_DATA = "received data"  # the reply to the <CRLF>.<CRLF> ending a message (§4.1.1.4)
UNRECOGNISED = "unrecognised"  # any verb the server should not know (§4.2.4)


@dataclass(frozen=True)
class Argument:
    """What follows a verb (RFC 5321 §4.1.1): ``syntax`` as HELP would show it, the literal
    ``keyword`` before it (``FROM:``), and the pattern a valid argument matches in full."""

    name: str
    syntax: str
    pattern: str | None  # None: nothing may follow the verb
    example: str  # a valid argument, for a command wanted before any was generated
    required: bool = True
    keyword: str = ""

    def accepts(self, text: str) -> bool:
        """Whether ``text`` (everything after the verb and its space) is a valid argument."""
        if self.pattern is None:
            return text == ""
        if text == "":
            return not self.required
        return re.fullmatch(self.pattern, text) is not None

    def parameters(self, text: str) -> dict[str, str | None]:
        """The ESMTP parameters of a valid argument (RFC 5321 §4.1.1.11): keyword (upper
        case, §4.1.2) -> value (None: a keyword without one). Empty for an argument that
        does not follow the grammar or takes none."""
        match = re.fullmatch(self.pattern, text) if self.pattern else None
        found = match.groupdict().get("parameters") if match else None
        if not found:
            return {}
        pairs = (parameter.partition("=") for parameter in found.split(" "))
        return {keyword.upper(): value if sign else None for keyword, sign, value in pairs}


# §4.1.1.11, for MAIL and RCPT (named, for ``Argument.parameters``)
_PARAMETERS = rf"(?: (?P<parameters>{grammar.MAIL_PARAMETERS}))?"

NOTHING = Argument("nothing", "", None, "")
DOMAIN = Argument("domain", "<domain>", grammar.DOMAIN, "client.example.test")  # HELO: §4.1.1.1
HELLO_NAME = Argument("hello-name", "<domain or address literal>",  # EHLO: §4.1.1.1
                      rf"(?:{grammar.DOMAIN}|{grammar.ADDRESS_LITERAL})",
                      "client.example.test")
REVERSE_PATH = Argument("reverse-path", "FROM:<reverse-path> [parameters]",  # §4.1.1.2
                        rf"(?i:FROM:){grammar.REVERSE_PATH}{_PARAMETERS}",
                        "FROM:<sender@example.test>", keyword="FROM:")
FORWARD_PATH = Argument("forward-path", "TO:<forward-path> [parameters]",  # §4.1.1.3
                        rf"(?i:TO:)(?:(?i:<Postmaster>)|{grammar.FORWARD_PATH}){_PARAMETERS}",
                        "TO:<postmaster@example.test>", keyword="TO:")
# VRFY, EXPN: §4.1.1.6, §4.1.1.7
STRING = Argument("string", "<string>", grammar.STRING, "postmaster")
OPTIONAL_STRING = Argument("optional-string", "[<string>]", grammar.STRING, "",  # HELP, NOOP
                           required=False)
MECHANISM = Argument("mechanism", "<mechanism> [initial-response]",  # AUTH: RFC 4954 §4
                     r"[A-Z0-9_-]{1,20}(?: (?:[A-Za-z0-9+/]+=*|=))?", "PLAIN")
CHUNK = Argument("chunk", "<chunk-size> [LAST]", r"[0-9]{1,20}(?: LAST)?",  # BDAT: RFC 3030 §2
                 "0 LAST")


class Effect(enum.Enum):
    """What a positive reply to a verb changes in the session besides its state (the model's
    ``advance`` reads these; each is the verb's, declared with it below)."""

    LISTS_EXTENSIONS = "its reply lists the extensions"  # EHLO: RFC 5321 §4.1.1.1
    FORGETS_EXTENSIONS = "no extension is in use after it"  # HELO: RFC 5321 §4.1.1.1
    STARTS_TRANSACTION = "a new transaction begins"  # MAIL: RFC 5321 §4.1.1.2, §3.3
    ADDS_RECIPIENT = "one more recipient"  # RCPT: RFC 5321 §4.1.1.3
    AUTHENTICATES = "the session is authenticated"  # AUTH: RFC 4954 §4
    CHUNKS = "the transaction's data goes in chunks"  # BDAT: RFC 3030 §2
    LAST_CHUNK_ENDS_MESSAGE = "250 to the LAST chunk ends the message"  # BDAT: RFC 3030 §2


@dataclass(frozen=True)
class Verb:
    """One command. ``ends_batch``: it may only be the last command of a pipelined batch
    (RFC 2920 §3.1: EHLO, DATA, VRFY, EXPN, TURN, QUIT, NOOP; STARTTLS, RFC 3207 §4; AUTH,
    RFC 4954 §4). ``moves``: the state after a positive reply, by the state before (a state
    not listed is left as it was, RFC 5321 §4.1.4); a positive reply's first digit is
    ``positive_class`` (3 for DATA's 354, 2 for everything else)."""

    name: str
    argument: Argument
    moves: Mapping[State, State]
    citation: str
    positive_class: int = 2
    extension: str | None = None  # the EHLO keyword that adds it; None: a seed verb
    ends_batch: bool = False  # RFC 2920 §3.1: the last command of a pipelined batch
    data_reply: str | None = None  # the row answering what the client sends after a positive reply
    upgrades: bool = False  # a positive reply is followed by a TLS handshake, not by SMTP
    challenges: bool = False  # a 334 asks for a line that answers it (RFC 4954 §4)
    effects: frozenset[Effect] = frozenset()  # of a positive reply, beside the move

    @property
    def example(self) -> str:
        """A valid command line of this verb, without its CRLF."""
        return f"{self.name} {self.argument.example}".rstrip()


def _from(states: Sequence[State], to: State) -> Mapping[State, State]:
    return MappingProxyType({before: to for before in states})


_STAYS: Mapping[State, State] = MappingProxyType({})

# In the seed page's order; "received data" follows DATA there because DATA's data_reply is it.
SEED_VERBS: tuple[Verb, ...] = (
    # PIPELINING is an ESMTP extension: a client that said HELO sends no batch, so RFC 2920
    # §3.1 does not list HELO; it resets the session as EHLO does and is treated alike.
    Verb(V.HELO, DOMAIN, _from(OPEN_STATES, S.READY), "RFC 5321 §4.1.1.1, §4.1.4",
         ends_batch=True, effects=frozenset({Effect.FORGETS_EXTENSIONS})),
    Verb(V.EHLO, HELLO_NAME, _from(OPEN_STATES, S.READY), "RFC 5321 §4.1.1.1, §4.1.4",
         ends_batch=True, effects=frozenset({Effect.LISTS_EXTENSIONS})),
    Verb(V.MAIL, REVERSE_PATH, _from((S.INIT, S.READY), S.MAIL), "RFC 5321 §4.1.1.2, §3.3",
         effects=frozenset({Effect.STARTS_TRANSACTION})),
    Verb(V.RCPT, FORWARD_PATH, _from((S.MAIL, S.RCPT), S.RCPT), "RFC 5321 §4.1.1.3, §3.3",
         effects=frozenset({Effect.ADDS_RECIPIENT})),
    Verb(V.DATA, NOTHING, _from((S.RCPT,), S.DATA), "RFC 5321 §4.1.1.4, §3.3",
         positive_class=3, ends_batch=True, data_reply=END_OF_DATA),
    Verb(V.RSET, NOTHING, MappingProxyType({S.INIT: S.INIT, S.READY: S.READY, S.MAIL: S.READY,
                                            S.RCPT: S.READY}), "RFC 5321 §4.1.1.5"),
    # RFC 821 §4.1.1: SEND, SOML and SAML open a transaction as MAIL does.
    *(Verb(name, REVERSE_PATH, _from((S.INIT, S.READY), S.MAIL), "RFC 821 §4.1.1")
      for name in (V.SEND, V.SOML, V.SAML)),
    Verb(V.VRFY, STRING, _STAYS, "RFC 5321 §4.1.1.6", ends_batch=True),
    Verb(V.EXPN, STRING, _STAYS, "RFC 5321 §4.1.1.7", ends_batch=True),
    Verb(V.HELP, OPTIONAL_STRING, _STAYS, "RFC 5321 §4.1.1.8"),
    Verb(V.NOOP, OPTIONAL_STRING, _STAYS, "RFC 5321 §4.1.1.9", ends_batch=True),
    Verb(V.QUIT, NOTHING, _from(OPEN_STATES, S.CLOSED), "RFC 5321 §4.1.1.10", ends_batch=True),
    # RFC 821 §4.1.1: after 250 the roles swap; for this client the session is over.
    Verb(V.TURN, NOTHING, _from(OPEN_STATES, S.CLOSED), "RFC 821 §4.1.1", ends_batch=True),
)


@dataclass(frozen=True)
class Extension:
    """An SMTP service extension (RFC 5321 §2.2): what a server advertises in its EHLO reply,
    and what that adds to the vocabulary."""

    keyword: str  # as advertised (keywords are case-insensitive)
    citation: str
    mail_parameters: tuple[str, ...] = ()  # MAIL parameters it adds (RFC 5321 §4.1.1.11)
    rcpt_parameters: tuple[str, ...] = ()
    ehlo_parameters: str | None = None  # pattern of the parameters after the keyword, if any


EXTENSIONS: tuple[Extension, ...] = (
    Extension("PIPELINING", "RFC 2920"),
    Extension("SIZE", "RFC 1870", mail_parameters=("SIZE",), ehlo_parameters=r"[0-9]{1,20}"),
    Extension("8BITMIME", "RFC 6152", mail_parameters=("BODY",)),
    Extension("SMTPUTF8", "RFC 6531", mail_parameters=("SMTPUTF8",)),
    Extension("DSN", "RFC 3461", mail_parameters=("RET", "ENVID"),
              rcpt_parameters=("NOTIFY", "ORCPT")),
    Extension("ENHANCEDSTATUSCODES", "RFC 2034"),
    Extension("STARTTLS", "RFC 3207"),
    Extension("AUTH", "RFC 4954", mail_parameters=("AUTH",),
              ehlo_parameters=r"[A-Za-z0-9_-]{1,20}(?: [A-Za-z0-9_-]{1,20})*"),
    Extension("CHUNKING", "RFC 3030"),
)

EXTENSION_VERBS: tuple[Verb, ...] = (
    # RFC 3207 §4.2: after the handshake the client knows nothing of the session: greeted,
    # and it must say EHLO again.
    Verb(V.STARTTLS, NOTHING, _from(OPEN_STATES, S.INIT), "RFC 3207 §4", extension="STARTTLS",
         ends_batch=True, upgrades=True),
    Verb(V.AUTH, MECHANISM, _STAYS, "RFC 4954 §4", extension="AUTH", ends_batch=True,
         challenges=True, effects=frozenset({Effect.AUTHENTICATES})),
    Verb(V.BDAT, CHUNK, _STAYS, "RFC 3030 §2", extension="CHUNKING",
         effects=frozenset({Effect.CHUNKS, Effect.LAST_CHUNK_ENDS_MESSAGE})),
)

VERBS: Mapping[str, Verb] = MappingProxyType(
    {verb.name: verb for verb in (*SEED_VERBS, *EXTENSION_VERBS)})
EXTENSION_BY_KEYWORD: Mapping[str, Extension] = MappingProxyType(
    {extension.keyword: extension for extension in EXTENSIONS})
# MAIL or RCPT parameter keyword -> the extension that adds it.
EXTENSION_OF_PARAMETER: Mapping[str, str] = MappingProxyType(
    {parameter: extension.keyword for extension in EXTENSIONS
     for parameter in (*extension.mail_parameters, *extension.rcpt_parameters)})

# The verbs whose positive reply is followed by a TLS handshake (STARTTLS, RFC 3207 §4).
UPGRADING_VERBS = frozenset(verb.name for verb in VERBS.values() if verb.upgrades)

# Verbs real servers implement that the suite does not model (ETRN RFC 1985, ATRN RFC 2645,
# BURL RFC 4468, LHLO RFC 2033, and vendors' own): never sent as an unrecognised verb.
UNMODELLED_VERBS = frozenset({"ETRN", "ATRN", "BURL", "LHLO", "XCLIENT", "XFORWARD", "XEXPS",
                              "VERB", "ONEX", "XUSR", "XQUE"})


def follows_grammar(line: bytes) -> bool:
    """Whether ``line`` is a valid command of a verb in the vocabulary (RFC 5321 §4.1.1): the
    verb in any case (§2.4), its argument after one space, CRLF, at most 512 octets with the
    CRLF (§4.5.3.1.4), ASCII only."""
    if not line.endswith(b"\r\n") or len(line) > grammar.MAX_COMMAND_LINE_OCTETS:
        return False
    try:
        text = line[:-2].decode("ascii")
    except UnicodeDecodeError:
        return False
    if "\r" in text or "\n" in text:
        return False
    name, space, argument = text.partition(" ")
    verb = VERBS.get(name.upper())
    if verb is None or (space and not argument):
        return False
    return verb.argument.accepts(argument)


def seed_groups() -> tuple[str, ...]:
    """The seed page's groups in its order: the greeting, then each verb (and the row for
    the data after it)."""
    groups = [GREETING]
    for verb in SEED_VERBS:
        groups.append(verb.name)
        if verb.data_reply:
            groups.append(verb.data_reply)
    return tuple(groups)


def positive_class(group: str) -> int:
    """The first digit of a reply that moves a command of ``group`` on (RFC 821 §4.4)."""
    verb = VERBS.get(group)
    return verb.positive_class if verb else 2


# --- what a server advertises ----------------------------------------------------------------

@dataclass(frozen=True)
class Advertised:
    """The EHLO reply's extensions (RFC 5321 §4.1.1.1): keyword (upper case) -> parameters.
    Lines that do not follow the ehlo-line grammar are kept apart, unread."""

    keywords: Mapping[str, tuple[str, ...]] = field(
        default_factory=lambda: MappingProxyType({}))
    malformed: tuple[str, ...] = ()

    def __contains__(self, keyword: object) -> bool:
        return isinstance(keyword, str) and keyword.upper() in self.keywords

    def parameters(self, keyword: str) -> tuple[str, ...]:
        return self.keywords.get(keyword.upper(), ())

    @property
    def size_limit(self) -> int | None:
        """The fixed maximum message size SIZE declares (RFC 1870 §3); None: SIZE not
        advertised, 0 or no number (no fixed maximum), or a malformed one."""
        declared = self.parameters("SIZE")
        if len(declared) != 1 or not declared[0].isdigit() or len(declared[0]) > 20:
            return None
        return int(declared[0]) or None


NOTHING_ADVERTISED = Advertised()


def parse_ehlo(lines: Sequence[str]) -> Advertised:
    """The extensions in an EHLO reply's lines (the first names the server, §4.1.1.1)."""
    keywords: dict[str, tuple[str, ...]] = {}
    malformed = []
    for line in lines[1:]:
        if not grammar.is_ehlo_line(line):
            malformed.append(line)
            continue
        keyword, *parameters = line.split(" ")
        keywords.setdefault(keyword.upper(), tuple(parameters))
    return Advertised(MappingProxyType(keywords), tuple(malformed))
