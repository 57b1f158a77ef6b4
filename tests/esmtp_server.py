"""A small ESMTP server of our own that speaks the extensions right, unless told to break a rule.

Each fault in ESMTP_FAULTS is one named deviation, so each ESMTP check can be shown to fail.
Bounded like tests/fault_server.py: lines, messages and chunks have size limits, every socket
read times out, and the server stops (and drops its sessions) when asked.
"""

from __future__ import annotations

import base64
import binascii
import re
import select
import socket
import socketserver
import ssl
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from conformance.protocol.tables import PROFILES, get_profile
from conformance.protocol.vocabulary import EXTENSION_BY_KEYWORD
from conformance.testing.serving import Served
from tests.fault_server import MAX_LINE, MAX_MESSAGE, _Server

USERNAME = "conformance"
PASSWORD = "conformance-test-password"
SERVER_NAME = "mx.esmtp.test"
READ_TIMEOUT = 30.0  # an idle client is dropped after this; a test ends well before
HANDSHAKE_TIMEOUT = 5.0
MAX_MESSAGES = 100  # messages kept, newest last
RECV_SIZE = 4096

# fault name -> the check that must catch it
ESMTP_FAULTS: Mapping[str, str] = MappingProxyType({
    "pipelining_drops_input": "pipelining_answers_every_command",
    "size_not_enforced": "size_limit_enforced",
    "enhanced_class_mismatch": "enhanced_status_code_valid",
    "enhanced_code_missing": "enhanced_status_code_valid",
    "enhanced_code_differs_between_lines": "enhanced_status_code_valid",
    "starttls_runs_plaintext": "starttls_discards_plaintext",
    "starttls_accepts_argument": "starttls_refuses_argument",
    "starttls_readvertised": "starttls_not_readvertised",
    "starttls_keeps_transaction": "reset_clears_transaction",
    # State faults behind an unusual path: after a message, after refused recipients only.
    "keeps_recipients_after_message": "reset_clears_transaction",
    "data_after_refused_recipients_354": "data_requires_recipient",
    "bdat_mixed_with_data": "bdat_not_mixed_with_data",
    "ehlo_line_malformed": "ehlo_reply_well_formed",
    "dsn_accepted_unadvertised": "esmtp_parameters_advertised",
    "auth_twice": "auth_once",
    "auth_in_transaction": "auth_not_in_transaction",
    "auth_cancel_accepted": "auth_cancel_refused",
    "utf8_address_without_smtputf8": "utf8_address_needs_smtputf8",
    "size_parameter_refused": "advertised_parameters_accepted",  # SIZE= answered 555
    # As Postfix does: a '"' in a parameter's value opens a quoted string to the end of the
    # line, so a SIZE after it goes unseen and the message over the limit is taken.
    "quote_hides_parameters": "size_limit_enforced",
})

# Behaviours that are no deviation: the suite must report nothing for them.
ESMTP_DEFENCES = frozenset({
    # As Exim does: where this session's EHLO did not advertise PIPELINING, input that came
    # before the reply to the line before it is answered 554 and the connection closed
    # (RFC 5321 §4.3.1, RFC 2920 §3.1).
    "enforces_synchronization",
})

# Every extension this server implements, in the order its EHLO reply lists them.
IMPLEMENTED = ("PIPELINING", "SIZE", "8BITMIME", "SMTPUTF8", "DSN", "ENHANCEDSTATUSCODES",
               "STARTTLS", "AUTH", "CHUNKING")
assert set(IMPLEMENTED) <= set(EXTENSION_BY_KEYWORD)

# --- replies, as data ------------------------------------------------------------------------

@dataclass(frozen=True)
class _Reply:
    """``enhanced`` is the subject.detail of the RFC 3463 status code (the class is always
    the reply's first digit); None for replies that never carry one (RFC 2034 §3: the
    greeting, HELO/EHLO's and 3xx replies)."""

    code: int
    enhanced: str | None
    lines: tuple[str, ...]


def _r(code: int, enhanced: str | None, *lines: str) -> _Reply:
    return _Reply(code, enhanced, lines)


REPLIES: Mapping[str, _Reply] = MappingProxyType({
    "greeting": _r(220, None, f"{SERVER_NAME} ESMTP conformance test server"),
    "hello": _r(250, None, f"{SERVER_NAME} at your service"),
    "ok": _r(250, "0.0", "OK"),
    "noop": _r(250, "0.0", "OK"),
    "reset": _r(250, "0.0", "Reset"),
    "sender_ok": _r(250, "1.0", "Sender OK"),
    "recipient_ok": _r(250, "1.5", "Recipient OK"),
    "start_data": _r(354, None, "End data with <CRLF>.<CRLF>"),
    "accepted": _r(250, "0.0", "Message accepted"),
    "chunk_ok": _r(250, "0.0", "Chunk accepted"),
    "bye": _r(221, "0.0", "Bye"),
    "help": _r(214, "0.0", "Commands: HELO EHLO MAIL RCPT DATA BDAT RSET NOOP QUIT",
               "VRFY HELP STARTTLS AUTH", "See RFC 5321"),
    "tls_ready": _r(220, "0.0", "Ready to start TLS"),
    "auth_ok": _r(235, "7.0", "Authentication succeeded"),
    "no_user": _r(550, "1.1", "No such user here"),
    "unrecognised": _r(500, "5.1", "Command unrecognized"),
    "line_too_long": _r(500, "5.6", "Line too long"),
    "syntax": _r(501, "5.4", "Syntax error in parameters or arguments"),
    "bad_base64": _r(501, "5.2", "Cannot decode the response"),
    "auth_cancelled": _r(501, "7.0", "Authentication cancelled"),
    "not_implemented": _r(502, "5.1", "Command not implemented"),
    "sequence": _r(503, "5.1", "Bad sequence of commands"),
    "nested_mail": _r(503, "5.1", "Sender already given"),
    "need_hello": _r(503, "5.1", "Send EHLO or HELO first"),
    "mechanism": _r(504, "5.4", "Unrecognized authentication type"),
    "bad_credentials": _r(535, "7.8", "Authentication credentials invalid"),
    "too_big": _r(552, "3.4", "Message size exceeds fixed maximum message size"),
    "data_line_too_long": _r(554, "6.0", "Line too long in message data"),
    "unknown_parameter": _r(555, "5.4", "Parameter not recognized or not advertised"),
    "size_refused": _r(555, "5.5", "SIZE parameter not implemented"),  # on every profile
})
CHALLENGE = 334  # RFC 4954 §4: "334" SP [base64]; a 3xx, so never an enhanced code
LOGIN_PROMPTS = ("VXNlcm5hbWU6", "UGFzc3dvcmQ6")  # "Username:", "Password:"


def _first_allowed(groups: tuple[str, ...], candidates: tuple[int, ...],
                   profiles: Iterable[str]) -> int:
    """The first of ``candidates`` that every profile's row for each of ``groups`` has."""
    rows = [get_profile(name).row(group) for name in profiles for group in groups]
    return next(code for code in candidates if all(row.allows(code) for row in rows))


# Where RFC 5321 and the older rows disagree, the code every chosen profile documents: MAIL
# out of order is 503 (RFC 5321 §4.1.4), a parameter not recognised 555 (§4.1.1.11); the
# seed and RFC 821 rows have neither for MAIL (nor 555 for RCPT), so there both are 501.
PROFILE_CODES: Mapping[str, tuple[tuple[str, ...], tuple[int, ...]]] = MappingProxyType({
    "need_hello": (("MAIL",), (503, 501)),  # reply name -> (groups, codes by preference)
    "nested_mail": (("MAIL",), (503, 501)),
    "unknown_parameter": (("MAIL", "RCPT"), (555, 501)),
})

# --- MAIL and RCPT parameters (RFC 5321 §4.1.1.11) -------------------------------------------

_XTEXT = r"(?:[\x21-\x2a\x2c-\x3c\x3e-\x7e]|\+[0-9A-F]{2})+"  # RFC 3461 §4
_NOTIFY = "(?:SUCCESS|FAILURE|DELAY)"
# (verb, keyword) -> (the extension that adds it, the pattern its value matches in full;
# None: the parameter takes no value)
PARAMETERS: Mapping[tuple[str, str], tuple[str, str | None]] = MappingProxyType({
    ("MAIL", "SIZE"): ("SIZE", r"[0-9]{1,20}"),  # RFC 1870 §3
    ("MAIL", "BODY"): ("8BITMIME", r"(?i:7BIT|8BITMIME)"),  # RFC 6152 §2
    ("MAIL", "SMTPUTF8"): ("SMTPUTF8", None),  # RFC 6531 §3.4
    ("MAIL", "RET"): ("DSN", r"(?i:FULL|HDRS)"),  # RFC 3461
    ("MAIL", "ENVID"): ("DSN", _XTEXT),
    ("MAIL", "AUTH"): ("AUTH", rf"<>|{_XTEXT}"),  # RFC 4954 §5
    ("RCPT", "NOTIFY"): ("DSN", rf"(?i:NEVER|{_NOTIFY}(?:,{_NOTIFY})*)"),
    ("RCPT", "ORCPT"): ("DSN", rf"[A-Za-z0-9-]+;{_XTEXT}"),
})
_PATH_ARGUMENT = {"MAIL": re.compile(r"(?i:FROM):(<[^<>\s]*>)(?: (.*))?"),
                  "RCPT": re.compile(r"(?i:TO):(<[^<>\s]*>)(?: (.*))?")}
_BDAT_ARGUMENT = re.compile(r"([0-9]{1,20})(?: (?i:(LAST)))?")  # RFC 3030 §2


class _Closed(Exception):
    """The client went away, timed out, or the server is stopping."""


class _ExchangeEnds(Exception):
    """An AUTH exchange ends before its credentials are judged, with the reply named."""

    def __init__(self, reply: str) -> None:
        super().__init__(reply)
        self.reply = reply


class _Connection:
    """A socket and what was read from it ahead of the line being answered (RFC 2920 §3.2:
    buffered input is never lost)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = bytearray()
        self.fresh = False  # the last line came with a new read

    def _read(self) -> None:
        data = self.sock.recv(RECV_SIZE)
        if not data:
            raise _Closed
        self.buffer += data
        self.fresh = True

    def line(self) -> bytes:
        """The next line with its terminator; an overlong line is cut to MAX_LINE octets
        (no terminator) and the rest of it discarded."""
        self.fresh = False
        while (end := self.buffer.find(b"\n", 0, MAX_LINE)) < 0 and len(self.buffer) < MAX_LINE:
            self._read()
        if end >= 0:
            line = bytes(self.buffer[:end + 1])
            del self.buffer[:end + 1]
            return line
        cut = bytes(self.buffer[:MAX_LINE])
        while (end := self.buffer.find(b"\n")) < 0:
            self.buffer.clear()
            self._read()
        del self.buffer[:end + 1]
        return cut

    def octets(self, size: int, keep: int) -> bytes:
        """Read exactly ``size`` octets; return at most the first ``keep`` of them."""
        kept = bytearray()
        while size:
            if not self.buffer:
                self._read()
            part = self.buffer[:size]
            del self.buffer[:len(part)]
            size -= len(part)
            kept += part[:max(keep - len(kept), 0)]
        return bytes(kept)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)


@dataclass
class _Session:
    tls: bool = False
    greeted: bool = False
    advertised: frozenset[str] = frozenset()  # keywords of this session's EHLO reply
    authenticated: bool = False
    mail: bool = False
    size_declared: int = 0
    recipients: int = 0
    refused: int = 0  # recipients refused in this transaction
    chunks: list[bytes] = field(default_factory=list)
    chunked: bool = False  # a BDAT was accepted in this transaction
    size: int = 0  # octets of the chunks so far
    utf8: bool = False  # this transaction's MAIL had SMTPUTF8 (RFC 6531 §3.4)

    def reset(self) -> None:
        """RFC 5321 §4.1.1.5: the transaction is aborted; the rest stays."""
        self.mail, self.size_declared, self.recipients, self.utf8 = False, 0, 0, False
        self.refused = 0
        self.chunks, self.chunked, self.size = [], False, 0


class _Handler(socketserver.BaseRequestHandler):
    server: _EsmtpServer
    request: socket.socket

    def handle(self) -> None:
        self.request.settimeout(READ_TIMEOUT)
        self.conn = _Connection(self.request)
        self.session = _Session()
        self.server.follow(None, self.request)
        try:
            self.reply("greeting")
            while not self.server.stopping.is_set() and self.serve_line():
                pass
        except (_Closed, OSError):  # gone, silent too long, a failed handshake, or stopped
            pass
        finally:
            self.server.follow(self.conn.sock, None)
            if self.conn.sock is not self.request:
                self.conn.sock.close()  # the TLS socket; socketserver closes the plain one

    def has(self, fault: str) -> bool:
        return fault in self.server.faults

    # --- replying ------------------------------------------------------------------------

    def reply(self, name: str) -> None:
        reply = REPLIES[name]
        code = self.server.codes.get(name, reply.code)
        enhanced = reply.enhanced if "ENHANCEDSTATUSCODES" in self.session.advertised else None
        if name == "reset" and self.has("enhanced_code_missing"):
            enhanced = None
        status_class = 5 if name == "noop" and self.has("enhanced_class_mismatch") \
            else code // 100
        lines = []
        for i, text in enumerate(reply.lines):
            separator = " " if i == len(reply.lines) - 1 else "-"
            detail = enhanced
            if detail and i and self.has("enhanced_code_differs_between_lines"):
                detail = f"{detail.partition('.')[0]}.{i}"
            prefix = f"{status_class}.{detail} " if detail else ""
            lines.append(f"{code}{separator}{prefix}{text}\r\n")
        self.conn.send("".join(lines).encode())

    # --- the command loop ----------------------------------------------------------------

    def serve_line(self) -> bool:
        """Answer the next command line; False when the session is over."""
        line = self.conn.line()
        fresh = self.conn.fresh
        # Only CRLF ends a command line (RFC 5321 §2.3.8): a bare LF is part of it.
        while line.endswith(b"\n") and not line.endswith(b"\r\n") and len(line) <= MAX_LINE:
            line += self.conn.line()
        self.server.received.append(line)
        if not line.upper().startswith(b"BDAT") and self.out_of_sync():  # (data follows BDAT)
            return False
        if not line.endswith(b"\n"):
            self.reply("line_too_long")
            return True
        text = line.rstrip(b"\r\n").decode("utf-8", "surrogateescape")
        verb, _, argument = text.partition(" ")
        handler = self.COMMANDS.get(verb.upper(), _Handler.unrecognised)
        go_on = handler(self, argument.strip())
        if fresh and self.has("pipelining_drops_input"):
            self.conn.buffer.clear()  # the classic bug: flushes its input (RFC 2920 §3.2)
        return go_on

    def out_of_sync(self) -> bool:
        """With ``enforces_synchronization``: input waiting beyond the line just read where
        PIPELINING was not advertised, answered 554 before the session ends."""
        if not self.has("enforces_synchronization") or self.offered("PIPELINING"):
            return False
        if not self.conn.buffer and not select.select([self.conn.sock], [], [], 0)[0]:
            return False
        self.conn.send(b"554 5.5.0 SMTP synchronization error\r\n")
        return True

    def offered(self, keyword: str) -> bool:
        """Whether this session's EHLO advertised ``keyword`` (RFC 5321 §4.1.1.1)."""
        return keyword in self.session.advertised

    def hello(self, argument: str, *, extended: bool) -> bool:
        if not argument:
            self.reply("syntax")
            return True
        s = self.session
        if not (s.tls and self.has("starttls_keeps_transaction")):
            s.reset()  # RFC 5321 §4.1.4: HELO/EHLO clears the transaction
        s.greeted, s.advertised = True, frozenset()
        if not extended:
            self.reply("hello")
            return True
        keywords = [k for k in IMPLEMENTED if k in self.server.extensions and
                    (k != "STARTTLS" or not s.tls or self.has("starttls_readvertised"))]
        s.advertised = frozenset(keywords)
        lines = [f"250-{REPLIES['hello'].lines[0]}"]
        for keyword in keywords:
            if keyword == "SIZE":
                keyword += ("=" if self.has("ehlo_line_malformed") else " ") + \
                    str(self.server.size_limit)
            elif keyword == "AUTH":
                keyword += " PLAIN LOGIN"
            lines.append(f"250-{keyword}")
        lines[-1] = "250 " + lines[-1][4:]
        self.conn.send("".join(f"{line}\r\n" for line in lines).encode())
        return True

    def helo(self, argument: str) -> bool:
        return self.hello(argument, extended=False)

    def ehlo(self, argument: str) -> bool:
        return self.hello(argument, extended=True)

    def parameters(self, verb: str, text: str | None) -> str | None:
        """The reply refusing MAIL's or RCPT's parameters; None if they are acceptable."""
        seen = set()
        if text and self.has("quote_hides_parameters") and '"' in text:
            end = text.find(" ", text.index('"'))
            text = text if end < 0 else text[:end]  # what follows is inside the "value"
        for parameter in text.split(" ") if text else ():
            keyword, equals, value = parameter.partition("=")
            keyword = keyword.upper()
            extension, pattern = PARAMETERS.get((verb, keyword), ("", None))
            advertised = self.offered(extension) or (
                extension == "DSN" and self.has("dsn_accepted_unadvertised"))
            if not extension or not advertised:
                return "unknown_parameter"
            if keyword == "SIZE" and self.has("size_parameter_refused"):
                return "size_refused"
            if keyword in seen or (pattern is None) == bool(equals) or \
                    (pattern is not None and re.fullmatch(pattern, value) is None):
                return "syntax"
            seen.add(keyword)
            if keyword == "SIZE":
                self.session.size_declared = int(value)
        return None

    def utf8_allowed(self, path: str, parameters: str | None) -> bool:
        """A non-ASCII mailbox only in a transaction whose MAIL asked for SMTPUTF8 (RFC 6531
        §3.4); ``parameters``: MAIL's, for the MAIL itself."""
        asked = self.session.utf8 or "SMTPUTF8" in (parameters or "").upper().split(" ")
        return path.isascii() or asked or self.has("utf8_address_without_smtputf8")

    def mail(self, argument: str) -> bool:
        s = self.session
        match = _PATH_ARGUMENT["MAIL"].fullmatch(argument)
        if not s.greeted:
            self.reply("need_hello")
        elif s.mail:
            self.reply("nested_mail")
        elif match is None:
            self.reply("syntax")
        elif refusal := self.parameters("MAIL", match.group(2)):
            s.size_declared = 0
            self.reply(refusal)
        elif s.size_declared > self.server.size_limit and not self.has("size_not_enforced"):
            s.size_declared = 0
            self.reply("too_big")  # RFC 1870 §6.1
        elif not self.utf8_allowed(match.group(1), match.group(2)):
            s.size_declared = 0
            self.reply("syntax")  # RFC 5321 §2.4, RFC 6531 §3.4
        else:
            s.mail = True
            s.utf8 = "SMTPUTF8" in (match.group(2) or "").upper().split(" ")
            self.reply("sender_ok")
        return True

    def rcpt(self, argument: str) -> bool:
        match = _PATH_ARGUMENT["RCPT"].fullmatch(argument)
        if not self.session.mail:
            self.reply("sequence")  # RFC 5321 §3.3
        elif match is None:
            self.session.refused += 1
            self.reply("syntax")
        elif refusal := self.parameters("RCPT", match.group(2)):
            self.reply(refusal)
        elif not self.utf8_allowed(match.group(1), None):
            self.reply("syntax")
        else:
            self.session.recipients += 1
            self.reply("recipient_ok")
        return True

    def data(self, argument: str) -> bool:
        s = self.session
        if argument:
            self.reply("syntax")
            return True
        refused_only = s.refused and self.has("data_after_refused_recipients_354")
        if (not s.recipients and not refused_only) or \
                (s.chunked and not self.has("bdat_mixed_with_data")):
            self.reply("sequence")  # RFC 5321 §3.3; RFC 3030 §2
            return True
        self.reply("start_data")
        body, size, overlong = bytearray(), 0, False
        after_crlf = True  # the DATA line's: the data may end at once
        # Only <CRLF>.<CRLF> ends it (RFC 5321 §4.1.1.4): not a "." line after a bare LF.
        while (line := self.conn.line()) != b".\r\n" or not after_crlf:
            after_crlf = line.endswith(b"\r\n") or not line.endswith(b"\n")  # (cut: CRLF)
            overlong = overlong or not line.endswith(b"\n")
            line = line[1:] if line.startswith(b".") else line  # RFC 5321 §4.5.2
            size += len(line)
            body += line[:max(MAX_MESSAGE - len(body), 0)]
        if self.out_of_sync():
            return False
        self.finish_message(bytes(body), size, "data_line_too_long" if overlong else None)
        return True

    def finish_message(self, body: bytes, size: int, refusal: str | None) -> None:
        """The reply to the end of a message (RFC 5321 §4.1.1.4; RFC 1870 §6.3)."""
        limit = MAX_MESSAGE if self.has("size_not_enforced") else self.server.size_limit
        if size > min(limit, MAX_MESSAGE):
            refusal = "too_big"
        if refusal is None:
            self.server.store(body)
        if not self.has("keeps_recipients_after_message"):
            self.session.reset()
        self.reply(refusal or "accepted")

    def bdat(self, argument: str) -> bool:
        s = self.session
        match = _BDAT_ARGUMENT.fullmatch(argument)
        if match is None:
            self.reply("syntax")
            return True
        size, last = int(match.group(1)), bool(match.group(2))
        # The chunk is read whatever the answer, so the stream stays framed (RFC 3030 §2).
        chunk = self.conn.octets(size, MAX_MESSAGE - sum(map(len, s.chunks)))
        if not self.offered("CHUNKING"):
            self.reply("not_implemented")
        elif not s.recipients:
            self.reply("sequence")  # also every BDAT after BDAT LAST
        else:
            s.chunked, s.size = True, s.size + size
            s.chunks.append(chunk)
            if last:
                self.finish_message(b"".join(s.chunks), s.size, None)
            else:
                self.reply("chunk_ok")  # RFC 3030 §2: a 250 to each chunk
        return True

    def rset(self, argument: str) -> bool:
        if argument:
            self.reply("syntax")
        else:
            self.session.reset()
            self.reply("reset")
        return True

    def noop(self, argument: str) -> bool:
        self.reply("noop")  # a parameter is ignored (RFC 5321 §4.1.1.9)
        return True

    def quit(self, argument: str) -> bool:
        if argument:
            self.reply("unrecognised")  # the seed's QUIT row has 221 and 500 only
            return True
        self.reply("bye")
        return False

    def vrfy(self, argument: str) -> bool:
        self.reply("no_user" if argument else "syntax")
        return True

    def help(self, argument: str) -> bool:
        self.reply("help")
        return True

    def not_implemented(self, argument: str) -> bool:
        self.reply("not_implemented")
        return True

    def unrecognised(self, argument: str) -> bool:
        self.reply("unrecognised")
        return True

    def starttls(self, argument: str) -> bool:
        s = self.session
        context = self.server.tls
        if not self.offered("STARTTLS") or s.tls or context is None:
            self.reply("not_implemented")  # RFC 3207 §4.2: not offered over TLS
            return True
        if argument and not self.has("starttls_accepts_argument"):
            self.reply("syntax")  # RFC 3207 §4
            return True
        self.reply("tls_ready")
        # RFC 3207 §4.2: what came after the STARTTLS line is discarded (CVE-2011-0411).
        waiting = bytes(self.conn.buffer) if self.has("starttls_runs_plaintext") else b""
        self.request.settimeout(HANDSHAKE_TIMEOUT)
        tls = context.wrap_socket(self.request, server_side=True)
        tls.settimeout(READ_TIMEOUT)
        self.server.follow(self.request, tls)
        self.conn = _Connection(tls)
        self.conn.buffer += waiting
        # RFC 3207 §4.2: the session starts over; nothing learnt before TLS is kept.
        kept = self.session
        self.session = _Session(tls=True)
        if self.has("starttls_keeps_transaction"):
            self.session.mail, self.session.recipients = kept.mail, kept.recipients
        return True

    def auth(self, argument: str) -> bool:
        s = self.session
        if not self.offered("AUTH"):
            self.reply("not_implemented")
        elif (s.authenticated and not self.has("auth_twice")) or \
                (s.mail and not self.has("auth_in_transaction")):
            self.reply("sequence")  # RFC 4954 §4
        else:
            mechanism, _, initial = argument.partition(" ")
            exchange = MECHANISMS.get(mechanism.upper())
            if exchange is None:
                self.reply("mechanism")
                return True
            try:
                result = exchange(self, initial.strip() or None)
            except _ExchangeEnds as ended:
                result = ended.reply
            s.authenticated = s.authenticated or result == "auth_ok"
            self.reply(result)
        return True

    def challenge(self, text: str) -> bytes:
        """A 334 (RFC 4954 §4) and the client's answer, without its line ending."""
        self.conn.send(f"{CHALLENGE} {text}\r\n".encode())
        line = self.conn.line()
        if not line.endswith(b"\n"):
            raise _ExchangeEnds("line_too_long")
        return line.rstrip(b"\r\n")

    def answer(self, text: bytes | str) -> str:
        """The client's base64 answer (RFC 4954 §4), decoded."""
        raw = text.encode() if isinstance(text, str) else text
        if raw == b"*":  # the client cancels: 501
            raise _ExchangeEnds("auth_ok" if self.has("auth_cancel_accepted") else
                                "auth_cancelled")
        try:
            return base64.b64decode(raw, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise _ExchangeEnds("bad_base64") from None

    def plain(self, initial: str | None) -> str:
        """PLAIN (RFC 4616): [authzid] NUL authcid NUL passwd, as the initial response ("="
        for an empty one) or in answer to an empty challenge."""
        text = "" if initial == "=" else \
            self.answer(initial if initial is not None else self.challenge(""))
        parts = text.split("\0")
        good = len(parts) == 3 and parts[0] in ("", USERNAME) and \
            parts[1:] == [USERNAME, PASSWORD]
        return "auth_ok" if good else "bad_credentials"

    def login(self, initial: str | None) -> str:
        """LOGIN: the username (perhaps as the initial response), then the password."""
        user = self.answer(initial if initial is not None else self.challenge(LOGIN_PROMPTS[0]))
        password = self.answer(self.challenge(LOGIN_PROMPTS[1]))
        return "auth_ok" if (user, password) == (USERNAME, PASSWORD) else "bad_credentials"

    COMMANDS: Mapping[str, Callable[[_Handler, str], bool]] = MappingProxyType({
        "HELO": helo, "EHLO": ehlo, "MAIL": mail, "RCPT": rcpt, "DATA": data, "BDAT": bdat,
        "RSET": rset, "NOOP": noop, "QUIT": quit, "VRFY": vrfy, "HELP": help,
        **dict.fromkeys(("EXPN", "SEND", "SOML", "SAML", "TURN"), not_implemented),
        "STARTTLS": starttls, "AUTH": auth,
    })


MECHANISMS: Mapping[str, Callable[[_Handler, str | None], str]] = MappingProxyType({
    "PLAIN": _Handler.plain, "LOGIN": _Handler.login})


class _EsmtpServer(_Server):
    tls: ssl.SSLContext | None
    size_limit: int
    extensions: frozenset[str]
    codes: Mapping[str, int]  # reply name -> the code the chosen profiles agree on
    messages: list[bytes]

    def store(self, body: bytes) -> None:
        with self.lock:
            self.messages.append(body)
            del self.messages[:-MAX_MESSAGES]


class EsmtpServer(Served):
    """``with EsmtpServer("auth_twice", tls=context) as server:`` ... ``server.address``.

    ``extensions``: the EHLO keywords to advertise (default: all of IMPLEMENTED; STARTTLS
    only with ``tls``). ``profile``: where RFC 5321 and the older rows disagree (503 and 555
    to MAIL), answer with that profile's code; by default, with a code every profile
    documents.
    """

    def __init__(self, *faults: str | None, tls: ssl.SSLContext | None = None,
                 size_limit: int = 10_000, extensions: Iterable[str] | None = None,
                 profile: str | None = None) -> None:
        chosen = frozenset(f for f in faults if f is not None)
        if unknown := chosen - set(ESMTP_FAULTS) - ESMTP_DEFENCES:
            raise ValueError(f"unknown fault(s) {sorted(unknown)}")
        wanted = set(IMPLEMENTED if extensions is None else (k.upper() for k in extensions))
        if strangers := wanted - set(IMPLEMENTED):
            raise ValueError(f"extension(s) not implemented: {sorted(strangers)}")
        if not 0 < size_limit <= MAX_MESSAGE:  # RFC 1870 §3: SIZE 0 would mean "no limit"
            raise ValueError(f"size_limit must be from 1 to {MAX_MESSAGE}")
        if tls is None:
            wanted.discard("STARTTLS")
        if "dsn_accepted_unadvertised" in chosen:
            wanted.discard("DSN")  # the fault: DSN's parameters taken, DSN never advertised
        profiles = list(PROFILES) if profile is None else [profile]
        server = self._server = _EsmtpServer(_Handler)
        server.faults, server.tls, server.size_limit = chosen, tls, size_limit
        server.extensions = frozenset(wanted)
        server.codes = MappingProxyType({name: _first_allowed(groups, codes, profiles)
                                         for name, (groups, codes) in PROFILE_CODES.items()})
        self.received: deque[bytes] = deque(maxlen=100_000)
        self.messages: list[bytes] = []
        server.received, server.messages = self.received, self.messages
        super().__init__(server)
