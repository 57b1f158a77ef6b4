"""Strategies for what ESMTP extensions add (RFC 5321 §2.2): MAIL and RCPT parameters, BDAT
chunks, lines injected after STARTTLS, and pipelined batches.

Every parameter the vocabulary declares has a strategy for its values here (tested); a value
follows its extension's syntax, so a refusal is the server's choice, not our mistake.
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping
from types import MappingProxyType

from hypothesis import strategies as st

from conformance.protocol.commands import Command, Message
from conformance.protocol.credentials import PASSWORD, PLAIN_RESPONSE, USERNAME
from conformance.protocol.vocabulary import VERBS, V
from conformance.strategies.addresses import forward_paths, mailboxes, reverse_paths
from conformance.strategies.commands import command, malformed_commands, valid_commands, verbs


def xtext(text: str) -> str:
    """``text`` as xtext (RFC 3461 §4): "+", "=" and what is not printable ASCII as "+XX"."""
    return "".join(c if "!" <= c <= "~" and c not in "+=" else f"+{ord(c):02X}" for c in text)


_XTEXT = st.text(string.printable[:94], min_size=1, max_size=20).map(xtext)

# Parameter keyword -> its values (None: a keyword that takes none).
MAIL_PARAMETER_VALUES: Mapping[str, st.SearchStrategy[str | None]] = MappingProxyType({
    "SIZE": st.integers(0, 10**7).map(str),  # RFC 1870 §3: 1*20DIGIT
    "BODY": st.sampled_from(["7BIT", "8BITMIME"]),  # RFC 6152 §2
    "SMTPUTF8": st.none(),  # RFC 6531 §3.4
    "RET": st.sampled_from(["FULL", "HDRS"]),  # RFC 3461
    "ENVID": _XTEXT,  # RFC 3461
    "AUTH": st.just("<>"),  # RFC 4954 §5: no identity vouched for
})
RCPT_PARAMETER_VALUES: Mapping[str, st.SearchStrategy[str | None]] = MappingProxyType({
    "NOTIFY": st.one_of(st.just("NEVER"), st.lists(
        st.sampled_from(["SUCCESS", "FAILURE", "DELAY"]), min_size=1, max_size=3,
        unique=True).map(",".join)),  # RFC 3461
    "ORCPT": mailboxes(quoted=False, literals=False).map(
        lambda mailbox: f"rfc822;{xtext(mailbox)}"),  # RFC 3461: addr-type ";" xtext
})


# One value per parameter, in its syntax, for the systematic plan (one of the values the
# strategies above draw: tested).
PARAMETER_EXAMPLES: Mapping[str, str | None] = MappingProxyType({
    "SIZE": "1000", "BODY": "8BITMIME", "SMTPUTF8": None, "RET": "HDRS",
    "ENVID": "conformance-test", "AUTH": "<>", "NOTIFY": "NEVER",
    "ORCPT": "rfc822;postmaster@example.test",
})


# An xtext value holding '"' (xchar: any of "!".."~" but "+" and "="): no quoted string in
# an esmtp-value (RFC 5321 §4.1.2), so the parameters after it are parameters still. Postfix
# reads from such a '"' to the end of the line as one value.
QUOTE_IN_XTEXT = 'conformance"test'


def with_parameter(command_: Command, keyword: str, value: str | None = None) -> Command:
    """``command_`` (a valid MAIL or RCPT) with ``keyword`` added: with ``value``, else with
    its example value."""
    value = PARAMETER_EXAMPLES[keyword] if value is None else value
    suffix = f" {keyword}={value}" if value is not None else f" {keyword}"
    return Command(command_.line[:-2] + suffix.encode() + b"\r\n", valid=command_.valid)


@st.composite
def parameters(draw: st.DrawFn, values: Mapping[str, st.SearchStrategy[str | None]]) -> str:
    """One to three distinct parameters from ``values``, each with a leading space."""
    keywords = draw(st.lists(st.sampled_from(sorted(values)), min_size=1, max_size=3,
                             unique=True))
    drawn = ((keyword, draw(values[keyword])) for keyword in keywords)
    return "".join(f" {k}={v}" if v is not None else f" {k}" for k, v in drawn)


def mail_with_parameters() -> st.SearchStrategy[Command]:
    """``MAIL FROM:<path> parameters`` (RFC 5321 §4.1.1.2, §4.1.1.11)."""
    return st.builds(lambda verb, path, found: command(verb, f"FROM:{path}{found}"),
                     verbs(V.MAIL), reverse_paths(), parameters(MAIL_PARAMETER_VALUES))


def with_size(mail: Command, size: int) -> Command:
    """``mail`` (a valid MAIL command) declaring ``size`` (RFC 1870 §3), its other
    parameters kept."""
    verb, _, argument = mail.first_line.partition(" ")
    match = re.fullmatch(VERBS[V.MAIL].argument.pattern or "", argument)
    if match is None:
        raise ValueError(f"not a valid MAIL command: {mail.line!r}")
    path_end = match.start("parameters") - 1 if match.group("parameters") else len(argument)
    kept = [p for p in (match.group("parameters") or "").split(" ")
            if p and p.partition("=")[0].upper() != "SIZE"]
    return command(verb, " ".join([argument[:path_end], *kept, f"SIZE={size}"]))


def oversized_message(size: int) -> Message:
    """Message content of at least ``size`` octets as RFC 1870 counts them (at most two
    more), in lines within the 1000-octet limit (RFC 5321 §4.5.3.1.6)."""
    line = b"x" * 998 + b"\r\n"
    whole, rest = divmod(size, len(line))
    return Message(line * whole + (b"x" * max(rest - 2, 0) + b"\r\n" if rest else b""))


def rcpt_with_parameters(*, domain: st.SearchStrategy[str] | None = None
                         ) -> st.SearchStrategy[Command]:
    """``RCPT TO:<path> parameters`` (RFC 5321 §4.1.1.3, §4.1.1.11)."""
    return st.builds(lambda verb, path, found: command(verb, f"TO:{path}{found}"),
                     verbs(V.RCPT), forward_paths(domain=domain),
                     parameters(RCPT_PARAMETER_VALUES))


def chunk(data: bytes, last: bool) -> Command:
    """``BDAT <size> [LAST]`` and the chunk's octets, in one write (RFC 3030 §2)."""
    return Command(f"BDAT {len(data)}{' LAST' if last else ''}\r\n".encode() + data,
                   group=V.BDAT)


_CHUNK_DATA = st.one_of(
    st.just(b""),
    st.sampled_from([b"Subject: chunked\r\n\r\n", b"line\r\n", b".\r\n", b"\r\n.\r\n"]),
    st.binary(max_size=64),  # any octets: BDAT data is not read as lines
)


def chunks() -> st.SearchStrategy[list[Command]]:
    """One to three BDAT chunks, the last one with LAST more often than not."""
    return st.builds(
        lambda data, last: [chunk(d, last and i == len(data) - 1) for i, d in enumerate(data)],
        st.lists(_CHUNK_DATA, min_size=1, max_size=3), st.sampled_from([True, True, False]))


def injected_lines(*, domain: st.SearchStrategy[str] | None = None
                   ) -> st.SearchStrategy[bytes]:
    """Command lines a man in the middle would add after a plaintext STARTTLS (CVE-2011-0411):
    nothing, or one or two commands the server must not run after the handshake."""
    injected = st.one_of(valid_commands(V.NOOP), valid_commands(V.RSET),
                         valid_commands(V.MAIL), valid_commands(V.RCPT, domain=domain))
    nothing = st.just(b"")  # twice: most upgrades are plain (an injection costs a wait)
    return st.one_of(nothing, nothing, st.lists(injected, min_size=1, max_size=2).map(
        lambda commands: b"".join(c.line for c in commands)))


def batched_commands(*, domain: st.SearchStrategy[str] | None = None,
                     domain_name: str = "example.test") -> st.SearchStrategy[Command]:
    """Commands that may go anywhere in a pipelined batch (RFC 2920 §3.1), valid or not."""
    return st.one_of(valid_commands(V.MAIL), valid_commands(V.RCPT, domain=domain),
                     valid_commands(V.RCPT, domain=domain), valid_commands(V.RSET),
                     malformed_commands(verb=V.RCPT, domain=domain_name),
                     malformed_commands(verb=V.MAIL, domain=domain_name))


def batch_endings() -> st.SearchStrategy[Command | None]:
    """What may only end a batch (RFC 2920 §3.1), or nothing."""
    return st.one_of(st.none(), st.just(Command.of(V.DATA)), valid_commands(V.NOOP),
                     valid_commands(V.EHLO), valid_commands(V.VRFY))


# AUTH exchanges (RFC 4954 §4): the command, then the client's answers to the challenges. The
# credentials are placeholders, filled in on the wire only (conformance.protocol.credentials).
AUTH_EXCHANGES: Mapping[str, tuple[bytes, tuple[bytes, ...]]] = MappingProxyType({
    "PLAIN with an initial response": (b"AUTH PLAIN " + PLAIN_RESPONSE, ()),
    "PLAIN, challenged": (b"AUTH PLAIN", (PLAIN_RESPONSE,)),
    "LOGIN": (b"AUTH LOGIN", (USERNAME, PASSWORD)),
    "cancelled": (b"AUTH LOGIN", (b"*",)),  # 501 (§4)
    "not base64": (b"AUTH PLAIN", (b"%not-base64%",)),  # 501 (§4)
    "unknown mechanism": (b"AUTH X-SMTP-CONFORMANCE", ()),  # 504 (§4)
})


def auth_exchange(name: str) -> tuple[Command, tuple[Command, ...]]:
    command, answers = AUTH_EXCHANGES[name]
    return (Command(command + b"\r\n", group=V.AUTH),
            tuple(Command(answer + b"\r\n", group=V.AUTH) for answer in answers))


def auth_exchange_names() -> st.SearchStrategy[str]:
    return st.sampled_from(sorted(AUTH_EXCHANGES))


# UTF-8 local parts (RFC 6531 §3.3: a Mailbox's local part may be UTF-8 under SMTPUTF8).
UTF8_LOCAL_PARTS = ("üser", "δοκιμή", "用户", "почта", "josé.garcía")


def utf8_mailboxes() -> st.SearchStrategy[str]:
    return st.sampled_from(UTF8_LOCAL_PARTS).map("{}@example.test".format)


def utf8_mail(asks: bool) -> st.SearchStrategy[Command]:
    """``MAIL FROM:<utf-8 mailbox>``, with the SMTPUTF8 parameter if ``asks``."""
    suffix = " SMTPUTF8" if asks else ""
    return utf8_mailboxes().map(
        lambda mailbox: Command(f"MAIL FROM:<{mailbox}>{suffix}\r\n".encode(), valid=False))


def utf8_rcpt(*, domain: str | None = None) -> st.SearchStrategy[Command]:
    return st.sampled_from(UTF8_LOCAL_PARTS).map(
        lambda local: Command(f"RCPT TO:<{local}@{domain or 'example.test'}>\r\n".encode(),
                              valid=False))
