"""A small ESMTP server of our own that speaks the extensions right, unless told to break a rule.

Each fault is one named deviation, declared with the check that must catch it, so each ESMTP
check can be shown to fail. Built like tests/fault_server.py on conformance.testing.dialogue:
each verb one method; lines, messages and chunks have size limits, every socket read times
out, and the server stops (and drops its sessions) when asked.
"""

from __future__ import annotations

import base64
import binascii
import re
import ssl
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from conformance.protocol.tables import PROFILES, get_profile
from conformance.protocol.vocabulary import EXTENSION_BY_KEYWORD
from conformance.testing.dialogue import SmtpHandler, SmtpServer, Wire
from conformance.testing.faults import Fault, Faults
from conformance.testing.serving import Served
from tests.fault_server import MAX_MESSAGE

USERNAME = "conformance"
PASSWORD = "conformance-test-password"
SERVER_NAME = "mx.esmtp.test"
READ_TIMEOUT = 30.0  # an idle client is dropped after this; a test ends well before
HANDSHAKE_TIMEOUT = 5.0
MAX_MESSAGES = 100  # messages kept, newest last

ESMTP = Faults(
    Fault("pipelining_drops_input", "pipelining_answers_every_command",
          "the input read with a command line is dropped after its reply"),
    Fault("size_not_enforced", "size_limit_enforced", "a message over SIZE taken"),
    Fault("enhanced_class_mismatch", "enhanced_status_code_valid",
          "NOOP's enhanced code of class 5 on a 250"),
    Fault("enhanced_code_missing", "enhanced_status_code_valid",
          "RSET's reply without its enhanced code"),
    Fault("enhanced_code_differs_between_lines", "enhanced_status_code_valid",
          "the lines of a reply with different enhanced codes"),
    Fault("starttls_runs_plaintext", "starttls_discards_plaintext",
          "what came with STARTTLS run after the handshake"),
    Fault("starttls_accepts_argument", "starttls_refuses_argument",
          "STARTTLS with an argument taken"),
    Fault("starttls_readvertised", "starttls_not_readvertised",
          "STARTTLS advertised again over TLS"),
    Fault("starttls_keeps_transaction", "reset_clears_transaction",
          "the transaction kept over STARTTLS and the EHLO after it", stateful=True),
    # State faults behind an unusual path: after a message, after refused recipients only.
    Fault("keeps_recipients_after_message", "reset_clears_transaction",
          "the transaction kept after a message", stateful=True),
    Fault("data_after_refused_recipients_354", "data_requires_recipient",
          "DATA taken when every recipient was refused", stateful=True),
    Fault("bdat_mixed_with_data", "bdat_not_mixed_with_data", "DATA taken after BDAT"),
    Fault("ehlo_line_malformed", "ehlo_reply_well_formed", "EHLO advertises 'SIZE=limit'"),
    Fault("dsn_accepted_unadvertised", "esmtp_parameters_advertised",
          "DSN's parameters taken, DSN never advertised"),
    Fault("auth_twice", "auth_once", "a second AUTH taken"),
    Fault("auth_in_transaction", "auth_not_in_transaction", "AUTH taken after MAIL"),
    Fault("auth_cancel_accepted", "auth_cancel_refused", "an AUTH cancelled with '*': 235"),
    Fault("utf8_address_without_smtputf8", "utf8_address_needs_smtputf8",
          "a UTF-8 mailbox taken without SMTPUTF8"),
    Fault("size_parameter_refused", "advertised_parameters_accepted", "SIZE= answered 555"),
    # As Postfix does: a '"' in a parameter's value opens a quoted string to the end of the
    # line, so a SIZE after it goes unseen and the message over the limit is taken.
    Fault("quote_hides_parameters", "size_limit_enforced",
          "a parameter after a '\"' goes unseen"),
    # No deviation, as Exim does: where this session's EHLO did not advertise PIPELINING,
    # input that came before the reply to the line before it is answered 554 and the
    # connection closed (RFC 5321 §4.3.1, RFC 2920 §3.1).
    Fault("enforces_synchronization", None, "input ahead of a reply, unpipelined: 554"),
    Fault("only_bdat_mid_message", None,
          "between the chunks of a message, 503 to all but BDAT, RSET and QUIT (as Exim)"),
    # STARTTLS over TLS is not offered (RFC 3207 §4.2), and no RFC gives its reply there.
    Fault("starttls_again_503", None, "STARTTLS over TLS answered 503 (as Exim)"),
    Fault("starttls_again_554", None, "STARTTLS over TLS answered 554 (as Postfix)"),
)
ESMTP_FAULTS: Mapping[str, str] = MappingProxyType(ESMTP.checks())  # fault -> its check
ESMTP_DEFENCES = ESMTP.defences()  # the suite must report nothing for them

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
    "not_advertised": _r(503, "5.5", "STARTTLS command used when not advertised"),  # Exim
    "tls_active": _r(554, "5.5", "Error: TLS already active"),  # Postfix
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


class _ExchangeEnds(Exception):
    """An AUTH exchange ends before its credentials are judged, with the reply named."""

    def __init__(self, reply: str) -> None:
        super().__init__(reply)
        self.reply = reply


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


class _Handler(SmtpHandler):
    server: _EsmtpServer
    timeout = READ_TIMEOUT  # an idle client is dropped after this; a test ends well before

    def setup(self) -> None:
        super().setup()
        self.session = _Session()

    def greet(self) -> None:
        self.respond("greeting")

    # --- replying ------------------------------------------------------------------------

    def respond(self, name: str) -> None:
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
        self.wire.send("".join(lines).encode())

    # --- the command loop ----------------------------------------------------------------

    def serve(self, line: bytes) -> bool:
        fresh = self.wire.fresh
        if not line.upper().startswith(b"BDAT") and self.out_of_sync():  # (data follows BDAT)
            self.server.received.append(line)
            return False
        go_on = super().serve(line)
        if fresh and self.has("pipelining_drops_input"):
            self.wire.buffer.clear()  # the classic bug: flushes its input (RFC 2920 §3.2)
        return go_on

    def overlong(self, line: bytes) -> bool:
        """Only a line cut at ``max_line``: this server takes long lines."""
        return not line.endswith(b"\n")

    def too_long(self, line: bytes) -> bool:
        self.respond("line_too_long")
        return True

    def out_of_sync(self) -> bool:
        """With ``enforces_synchronization``: input waiting beyond the line just read where
        PIPELINING was not advertised, answered 554 before the session ends."""
        if not self.has("enforces_synchronization") or self.offered("PIPELINING"):
            return False
        if not self.wire.waiting():
            return False
        self.wire.send(b"554 5.5.0 SMTP synchronization error\r\n")
        return True

    def offered(self, keyword: str) -> bool:
        """Whether this session's EHLO advertised ``keyword`` (RFC 5321 §4.1.1.1)."""
        return keyword in self.session.advertised

    def hello(self, argument: str, *, extended: bool) -> bool:
        if not argument:
            self.respond("syntax")
            return True
        s = self.session
        if not (s.tls and self.has("starttls_keeps_transaction")):
            s.reset()  # RFC 5321 §4.1.4: HELO/EHLO clears the transaction
        s.greeted, s.advertised = True, frozenset()
        if not extended:
            self.respond("hello")
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
        self.wire.send("".join(f"{line}\r\n" for line in lines).encode())
        return True

    def on_helo(self, argument: str) -> bool:
        return self.hello(argument, extended=False)

    def on_ehlo(self, argument: str) -> bool:
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

    def on_mail(self, argument: str) -> bool:
        s = self.session
        match = _PATH_ARGUMENT["MAIL"].fullmatch(argument)
        if not s.greeted:
            self.respond("need_hello")
        elif s.mail:
            self.respond("nested_mail")
        elif match is None:
            self.respond("syntax")
        elif refusal := self.parameters("MAIL", match.group(2)):
            s.size_declared = 0
            self.respond(refusal)
        elif s.size_declared > self.server.size_limit and not self.has("size_not_enforced"):
            s.size_declared = 0
            self.respond("too_big")  # RFC 1870 §6.1
        elif not self.utf8_allowed(match.group(1), match.group(2)):
            s.size_declared = 0
            self.respond("syntax")  # RFC 5321 §2.4, RFC 6531 §3.4
        else:
            s.mail = True
            s.utf8 = "SMTPUTF8" in (match.group(2) or "").upper().split(" ")
            self.respond("sender_ok")
        return True

    def on_rcpt(self, argument: str) -> bool:
        match = _PATH_ARGUMENT["RCPT"].fullmatch(argument)
        if not self.session.mail:
            self.respond("sequence")  # RFC 5321 §3.3
        elif match is None:
            self.session.refused += 1
            self.respond("syntax")
        elif refusal := self.parameters("RCPT", match.group(2)):
            self.respond(refusal)
        elif not self.utf8_allowed(match.group(1), None):
            self.respond("syntax")
        else:
            self.session.recipients += 1
            self.respond("recipient_ok")
        return True

    def on_data(self, argument: str) -> bool:
        s = self.session
        if argument:
            self.respond("syntax")
            return True
        refused_only = s.refused and self.has("data_after_refused_recipients_354")
        if (not s.recipients and not refused_only) or \
                (s.chunked and not self.has("bdat_mixed_with_data")):
            self.respond("sequence")  # RFC 5321 §3.3; RFC 3030 §2
            return True
        self.respond("start_data")
        body, size, overlong = bytearray(), 0, False
        after_crlf = True  # the DATA line's: the data may end at once
        # Only <CRLF>.<CRLF> ends it (RFC 5321 §4.1.1.4): not a "." line after a bare LF.
        while (line := self.wire.line()) != b".\r\n" or not after_crlf:
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
        self.respond(refusal or "accepted")

    def dispatch(self, verb: str, argument: str) -> bool:
        if self.has("only_bdat_mid_message") and self.session.chunked and \
                verb.upper() not in ("BDAT", "RSET", "QUIT"):
            self.respond("sequence")
            return True
        return super().dispatch(verb, argument)

    def on_bdat(self, argument: str) -> bool:
        s = self.session
        match = _BDAT_ARGUMENT.fullmatch(argument)
        if match is None:
            self.respond("syntax")
            return True
        size, last = int(match.group(1)), bool(match.group(2))
        # The chunk is read whatever the answer, so the stream stays framed (RFC 3030 §2).
        chunk = self.wire.octets(size, MAX_MESSAGE - sum(map(len, s.chunks)))
        if not self.offered("CHUNKING"):
            self.respond("not_implemented")
        elif not s.recipients:
            self.respond("sequence")  # also every BDAT after BDAT LAST
        else:
            s.chunked, s.size = True, s.size + size
            s.chunks.append(chunk)
            if last:
                self.finish_message(b"".join(s.chunks), s.size, None)
            else:
                self.respond("chunk_ok")  # RFC 3030 §2: a 250 to each chunk
        return True

    def on_rset(self, argument: str) -> bool:
        if argument:
            self.respond("syntax")
        else:
            self.session.reset()
            self.respond("reset")
        return True

    def on_noop(self, argument: str) -> bool:
        self.respond("noop")  # a parameter is ignored (RFC 5321 §4.1.1.9)
        return True

    def on_quit(self, argument: str) -> bool:
        if argument:
            self.respond("unrecognised")  # the seed's QUIT row has 221 and 500 only
            return True
        self.respond("bye")
        return False

    def on_vrfy(self, argument: str) -> bool:
        self.respond("no_user" if argument else "syntax")
        return True

    def on_help(self, argument: str) -> bool:
        self.respond("help")
        return True

    def not_implemented(self, argument: str) -> bool:
        self.respond("not_implemented")
        return True

    on_expn = on_send = on_soml = on_saml = on_turn = not_implemented

    def unrecognised(self, verb: str, argument: str) -> bool:
        self.respond("unrecognised")
        return True

    def on_starttls(self, argument: str) -> bool:
        s = self.session
        context = self.server.tls
        if s.tls and self.has("starttls_again_503"):
            self.respond("not_advertised")
            return True
        if s.tls and self.has("starttls_again_554"):
            self.respond("tls_active")
            return True
        if not self.offered("STARTTLS") or s.tls or context is None:
            self.respond("not_implemented")  # RFC 3207 §4.2: not offered over TLS
            return True
        if argument and not self.has("starttls_accepts_argument"):
            self.respond("syntax")  # RFC 3207 §4
            return True
        self.respond("tls_ready")
        # RFC 3207 §4.2: what came after the STARTTLS line is discarded (CVE-2011-0411).
        waiting = bytes(self.wire.buffer) if self.has("starttls_runs_plaintext") else b""
        self.request.settimeout(HANDSHAKE_TIMEOUT)
        tls = context.wrap_socket(self.request, server_side=True)
        tls.settimeout(READ_TIMEOUT)
        self.server.follow(self.request, tls)
        self.wire = Wire(tls)
        self.wire.buffer += waiting
        # RFC 3207 §4.2: the session starts over; nothing learnt before TLS is kept.
        kept = self.session
        self.session = _Session(tls=True)
        if self.has("starttls_keeps_transaction"):
            self.session.mail, self.session.recipients = kept.mail, kept.recipients
        return True

    def on_auth(self, argument: str) -> bool:
        s = self.session
        if not self.offered("AUTH"):
            self.respond("not_implemented")
        elif (s.authenticated and not self.has("auth_twice")) or \
                (s.mail and not self.has("auth_in_transaction")):
            self.respond("sequence")  # RFC 4954 §4
        else:
            mechanism, _, initial = argument.partition(" ")
            exchange = MECHANISMS.get(mechanism.upper())
            if exchange is None:
                self.respond("mechanism")
                return True
            try:
                result = exchange(self, initial.strip() or None)
            except _ExchangeEnds as ended:
                result = ended.reply
            s.authenticated = s.authenticated or result == "auth_ok"
            self.respond(result)
        return True

    def challenge(self, text: str) -> bytes:
        """A 334 (RFC 4954 §4) and the client's answer, without its line ending."""
        self.wire.send(f"{CHALLENGE} {text}\r\n".encode())
        line = self.wire.line()
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


MECHANISMS: Mapping[str, Callable[[_Handler, str | None], str]] = MappingProxyType({
    "PLAIN": _Handler.plain, "LOGIN": _Handler.login})


class _EsmtpServer(SmtpServer):
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
        chosen = ESMTP.choose(faults)
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
        server = self._server = _EsmtpServer(_Handler, faults=chosen)
        server.tls, server.size_limit = tls, size_limit
        server.extensions = frozenset(wanted)
        server.codes = MappingProxyType({name: _first_allowed(groups, codes, profiles)
                                         for name, (groups, codes) in PROFILE_CODES.items()})
        self.received = server.received
        self.messages: list[bytes] = []
        server.messages = self.messages
        super().__init__(server)
