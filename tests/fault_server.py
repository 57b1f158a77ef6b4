"""A small SMTP server of our own that conforms to every profile, unless told to break a rule.

Each fault is one named deviation, so the suite can be shown to catch it. Bounded: lines and
messages have size limits, every socket read times out, and the server stops when asked.
"""

from __future__ import annotations

import socket
import socketserver
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass
from types import TracebackType

from conformance.client import ServerAddress

MAX_LINE = 4096
MAX_MESSAGE = 1 << 20

# fault name -> the check that must catch it
FAULTS = {
    "helo_replies_220": "reply_code_documented",
    "noop_replies_252": "reply_code_documented",
    "quit_replies_250": "reply_code_documented",
    "unknown_verb_accepted": "reply_code_documented",
    "rcpt_without_mail_accepted": "rcpt_requires_mail",
    "data_without_rcpt_354": "data_requires_recipient",
    "rset_keeps_mail_from": "rcpt_requires_mail",
    "bare_lf_replies": "reply_well_formed",
    "ehlo_mixed_codes": "reply_well_formed",
    "noop_no_separator": "reply_well_formed",
    "control_octet_in_help": "reply_well_formed",
    "quit_keeps_connection": "quit_closes",
    "vrfy_421_keeps_connection": "closes_after_421",
    "expn_hangs": "reply_within_timeout",
    "help_drops_connection": "no_silent_close",
    "mail_fails_after_message": "reply_code_documented",
    "third_recipient_554": "reply_code_documented",
    "greeting_without_domain": "greeting_names_server",
    "lowercase_verbs_unrecognised": "verb_case_insensitive",
    "end_of_data_replies_354": "end_of_data_reply_is_final",
}
# Faults that do not reproduce: the run must call them INCONCLUSIVE, never FAIL.
NONDETERMINISTIC = {
    "helo_220_once": "reply_code_documented",  # only the server's third HELO ever gets 220
}


@dataclass
class _Session:
    greeted: bool = False
    mail: bool = False
    recipients: int = 0
    messages: int = 0


class _Handler(socketserver.StreamRequestHandler):
    server: _Server
    timeout = 10

    def reply(self, text: str) -> None:
        ending = "\n" if self.server.fault == "bare_lf_replies" else "\r\n"
        self.wfile.write(text.replace("\r\n", ending).encode() + ending.encode())
        self.wfile.flush()

    def handle(self) -> None:
        fault = self.server.fault
        self.reply("220" if fault == "greeting_without_domain" else
                   "220 mx.fault.test ESMTP fault server")
        s = _Session()
        while not self.server.stopping.is_set():
            line = self.rfile.readline(MAX_LINE + 1)
            if not line:
                return
            self.server.received.append(line)  # an overlong line: its first MAX_LINE octets
            if not line.endswith(b"\n") or len(line) > 512:
                while line and not line.endswith(b"\n"):
                    line = self.rfile.readline(MAX_LINE + 1)
                self.reply("500 Line too long")
                continue
            text = line.rstrip(b"\r\n").decode("latin-1")
            verb_sent, _, arg = text.partition(" ")
            verb = verb_sent.upper()
            if fault == "lowercase_verbs_unrecognised" and verb_sent != verb:
                self.reply("500 Command unrecognized")
                continue
            if not self.command(s, verb, arg.strip()):
                return

    def command(self, s: _Session, verb: str, arg: str) -> bool:
        fault = self.server.fault
        if verb in ("HELO", "EHLO"):
            if not arg:
                self.reply("501 Syntax: HELO/EHLO domain")
            elif fault == "helo_replies_220" and verb == "HELO":
                self.reply("220 hello")
            elif fault == "helo_220_once" and verb == "HELO" and self.server.count("HELO") == 3:
                self.reply("220 hello, this once")
            elif verb == "EHLO":
                s.greeted, s.mail, s.recipients = True, False, 0
                self.reply("250-mx.fault.test\r\n251 8BITMIME" if fault == "ehlo_mixed_codes"
                           else "250-mx.fault.test\r\n250 8BITMIME")
            else:
                s.greeted, s.mail, s.recipients = True, False, 0
                self.reply("250 mx.fault.test")
        elif verb == "MAIL":
            if fault == "mail_fails_after_message" and s.messages:
                self.reply("550 no more mail today")
            elif s.mail or not arg.upper().startswith("FROM:<") or not arg.endswith(">"):
                self.reply("501 Syntax error or nested MAIL")
            else:
                s.mail, s.recipients = True, 0
                self.reply("250 OK")
        elif verb == "RCPT":
            if not s.mail and fault != "rcpt_without_mail_accepted":
                self.reply("503 Need MAIL first")
            elif not arg.upper().startswith("TO:<") or not arg.endswith(">"):
                self.reply("501 Syntax: RCPT TO:<address>")
            elif fault == "third_recipient_554" and s.recipients == 2:
                self.reply("554 too many")
            else:
                s.recipients += 1
                self.reply("250 OK")
        elif verb == "DATA":
            if arg:
                self.reply("501 No arguments allowed")
            elif not s.recipients and fault != "data_without_rcpt_354":
                self.reply("503 Need RCPT first")
            else:
                self.reply("354 End data with <CRLF>.<CRLF>")
                size = 0
                while (line := self.rfile.readline(MAX_LINE + 1)) not in (b".\r\n", b""):
                    size += len(line)
                    if size > MAX_MESSAGE:
                        return False
                s.mail, s.recipients = False, 0
                s.messages += 1
                self.reply("354 Go on" if fault == "end_of_data_replies_354" else
                           "250 Message accepted")
        elif verb == "RSET":
            if arg:
                self.reply("501 No arguments allowed")
            else:
                # The fault forgets the recipients but keeps the transaction open.
                s.mail, s.recipients = fault == "rset_keeps_mail_from", 0
                self.reply("250 OK")
        elif verb == "NOOP":
            self.reply({"noop_replies_252": "252 fine",
                        "noop_no_separator": "250OK"}.get(fault or "", "250 OK"))
        elif verb == "QUIT":
            if arg:
                self.reply("500 No arguments allowed")
                return True
            self.reply("250 Goodbye" if fault == "quit_replies_250" else "221 Bye")
            return fault == "quit_keeps_connection"
        elif verb == "VRFY" and fault == "vrfy_421_keeps_connection":
            self.reply("421 mx.fault.test shutting down")
        elif verb == "EXPN" and fault == "expn_hangs":
            self.server.stopping.wait(30)
            return False
        elif verb == "HELP":
            if fault == "help_drops_connection":
                self.connection.shutdown(socket.SHUT_RDWR)
                return False
            self.reply("214 Help\x01" if fault == "control_octet_in_help" else "214 See RFC 5321")
        elif verb in ("VRFY", "EXPN", "SEND", "SOML", "SAML", "TURN"):
            self.reply("502 Command not implemented")
        else:
            self.reply("250 whatever" if fault == "unknown_verb_accepted" else
                       "500 Command unrecognized")
        return True


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    fault: str | None
    stopping: threading.Event
    received: deque[bytes]  # command lines (overlong ones cut), newest last (bounded)
    counts: Counter[str]  # commands seen, by verb, over the server's life
    lock: threading.Lock

    def count(self, verb: str) -> int:
        with self.lock:
            self.counts[verb] += 1
            return self.counts[verb]


class FaultServer:
    """``with FaultServer("expn_hangs") as server:`` ... ``server.address``."""

    def __init__(self, fault: str | None = None) -> None:
        if fault is not None and fault not in FAULTS and fault not in NONDETERMINISTIC:
            raise ValueError(f"unknown fault {fault!r}")
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.fault = fault
        self._server.stopping = threading.Event()
        self.received: deque[bytes] = deque(maxlen=100_000)
        self._server.received = self.received
        self._server.counts, self._server.lock = Counter(), threading.Lock()
        self.address = ServerAddress("127.0.0.1", self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> FaultServer:
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._server.stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
        time.sleep(0)
