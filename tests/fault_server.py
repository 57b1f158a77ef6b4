"""A small SMTP server of our own that conforms to every profile, unless told to break a rule.

Each fault is one named deviation, so the suite can be shown to catch it. Bounded: lines and
messages have size limits, every socket read times out, and the server stops when asked.
"""

from __future__ import annotations

import random
import re
import socket
import socketserver
from collections import Counter, deque
from dataclasses import dataclass

from conformance.protocol.commands import NON_STANDARD_ENDINGS, RELAY_DOMAIN
from conformance.testing.serving import Served, ThreadedServer

MAX_LINE = 4096
MAX_MESSAGE = 1 << 20

# Faults that end the mail data at a non-standard ending as well as at <CRLF>.<CRLF> (the
# earliest in the data; at one place, the longest), then read what follows as commands:
# each open to SMTP smuggling by that ending alone (data_ends_only_at_crlf_dot_crlf, with
# the ending named: tests/test_smuggling.py). Fault name -> the ending it takes.
ENDING_TAKEN = {
    "ends_data_at_" + re.sub(r"[<>]+", "_", name).replace(".", "dot").strip("_").lower(): name
    for name in NON_STANDARD_ENDINGS}
SMUGGLING_FAULTS = dict.fromkeys(ENDING_TAKEN, "data_ends_only_at_crlf_dot_crlf")
# Shown only with --smtp-relay-check (tests/test_relay_check.py): without the fault, the
# server refuses recipients at the relay check's domain, as one that is not their
# destination must.
RELAY_FAULTS = {"open_relay": "relay_refused"}

# fault name -> the check that must catch it
FAULTS = {
    "helo_replies_220": "reply_code_documented",
    "noop_replies_252": "reply_code_documented",
    "quit_replies_250": "no_silent_close",  # 250 to QUIT, then the close: judged as one
    "unknown_verb_accepted": "reply_code_documented",
    "rcpt_without_mail_accepted": "rcpt_requires_mail",
    "data_without_rcpt_354": "data_requires_recipient",
    "rset_keeps_mail_from": "reset_clears_transaction",
    "bare_lf_replies": "reply_well_formed",
    "ehlo_mixed_codes": "reply_well_formed",
    "noop_no_separator": "reply_well_formed",
    "control_octet_in_help": "reply_well_formed",
    "quit_keeps_connection": "quit_closes",
    "vrfy_421_keeps_connection": "closes_after_421",
    "expn_hangs": "command_answered",
    "help_drops_connection": "no_silent_close",
    "mail_fails_after_message": "reply_code_documented",
    "third_recipient_554": "reply_code_documented",
    "greeting_without_domain": "greeting_names_server",
    "lowercase_verbs_unrecognised": "verb_case_insensitive",
    "end_of_data_replies_354": "end_of_data_reply_is_final",
    "noop_unrecognised": "minimum_implementation",  # NOOP answered 500, whatever its form
    "help_never_answers": "command_answered",
    "mail_echoes_argument": "reply_well_formed",  # 501 quoting the argument, 8-bit and all
    "expn_replies_354": "reply_code_documented",  # a class EXPN's row never has: MUST anywhere
    # Blamed on the command that did not clear the transaction (RFC 5321 §4.1.4, §4.1.1.4).
    "helo_keeps_transaction": "reset_clears_transaction",
    "message_keeps_transaction": "reset_clears_transaction",
    # A command line ends at CRLF only (RFC 5321 §2.3.8); these end one at a bare LF or CR.
    "bare_lf_ends_command_lines": "command_lines_end_only_at_crlf",
    "bare_cr_ends_command_lines": "command_lines_end_only_at_crlf",
    "long_lines_refused": "command_line_limit_honoured",  # over 256 octets: "too long"
    # A close is judged on the reply before it, or on the input that set it off (§3.8).
    "drops_on_invalid_utf8": "no_silent_close",  # closes, no reply, on invalid UTF-8
    "long_line_521_closes": "no_silent_close",  # 521 to a line over 512 octets, then closes
    "rset_before_hello_503": "rset_succeeds",  # RFC 5321 §4.1.1.5: 250, whatever the state
    "second_ehlo_503": "hello_refusal_codes",  # §4.1.4: a later EHLO is fine, 503 is not
    "rcpt_without_mail_502": "rcpt_requires_mail",  # §3.3: 503 must be returned
}
# Faults that are no deviation: the suite must report nothing for them, in runs and in the
# sessions it minimises and replays.
DEFENCES = {
    # As Exim does without PIPELINING advertised: input that comes before the reply to the
    # command before it is answered "554 SMTP synchronization error", and the connection
    # closed (RFC 5321 §4.3.1: a client waits for each reply; RFC 2920 §3.1).
    "enforces_synchronization",
}
# The faults about the session's state: only the right command after the right sequence
# shows them, so they measure how deep the search goes. Each with every check that names it
# rightly (a server that keeps its recipients after HELO also takes DATA it must refuse).
STATE_FAULTS = {
    "rcpt_without_mail_accepted": {"rcpt_requires_mail"},
    "data_without_rcpt_354": {"data_requires_recipient"},
    "rset_keeps_mail_from": {"reset_clears_transaction"},
    "mail_fails_after_message": {"reply_code_documented"},
    "third_recipient_554": {"reply_code_documented"},
    "helo_keeps_transaction": {"reset_clears_transaction"},
    "message_keeps_transaction": {"reset_clears_transaction"},
}
# Faults whose finding is a SHOULD: the run warns and passes unless --smtp-strict.
SHOULD_FAULTS = {
    "noop_refuses_parameter": "noop_ignores_parameter",
    # From the fourth non-mail command of a session on, each reply waits 6 s (a tarpit).
    "tarpit": "reply_within_timeout",
    # Answers its third error with 500 and closes, as Exim does (§7.8: may give up; §3.8:
    # with 421 first).
    "closes_after_third_error": "no_silent_close",
}
# Faults that do not reproduce on replay. A check failure seen on the wire is still graded by
# its level (an intermittent deviation); only timing evidence becomes INCONCLUSIVE.
NONDETERMINISTIC = {
    "helo_220_once": "reply_code_documented",  # only the server's third HELO ever gets 220
    "mail_553_at_random": "reply_code_documented",  # 553 to MAIL three times in ten
}
TARPIT_AFTER, TARPIT_DELAY = 3, 6.0
# A reverse-path, and the one parameter of the one extension EHLO offers (8BITMIME, RFC 6152).
# ASCII only: no SMTPUTF8 here (RFC 5321 §2.4).
MAIL_ARGUMENT = re.compile(r"FROM:<[\x20-\x3b=\x3f-\x7e]*>(?: BODY=(?:7BIT|8BITMIME))?",
                           re.IGNORECASE)


@dataclass
class _Session:
    greeted: bool = False
    mail: bool = False
    recipients: int = 0
    messages: int = 0
    non_mail: int = 0  # commands other than MAIL, RCPT and DATA (for the tarpit)
    errors: int = 0  # 5yz replies so far
    closing: bool = False  # the last reply was the one to close after


class _Handler(socketserver.StreamRequestHandler):
    server: _Server
    pending: bytes = b""  # read after a non-standard end of data, not yet taken as commands
    timeout = 90  # an idle client is dropped after this; a test ends well before

    session: _Session | None = None

    def reply(self, text: str) -> None:
        faults = self.server.faults
        if self.session is not None and text[:1] == "5":
            self.session.errors += 1
            if "closes_after_third_error" in faults and self.session.errors == 3:
                text, self.session.closing = "500 Too many errors", True
        ending = "\n" if "bare_lf_replies" in faults else "\r\n"
        data = text.replace("\r\n", ending).encode("utf-8", "surrogateescape")
        self.wfile.write(data + ending.encode())
        self.wfile.flush()

    def read_line(self) -> bytes:
        """The next line (up to MAX_LINE octets), first from what followed a non-standard
        end of data, if anything did."""
        if self.pending:
            line, newline, self.pending = self.pending.partition(b"\n")
            return line + newline if newline else line + self.rfile.readline(MAX_LINE + 1)
        return self.rfile.readline(MAX_LINE + 1)

    def input_waiting(self) -> bool:
        """Whether more input has come than the line just read: a client that did not wait
        for the reply (read without blocking)."""
        if self.pending:
            return True
        self.connection.settimeout(0)
        try:
            return bool(self.rfile.peek(1))  # type: ignore[attr-defined]  # a BufferedReader
        except OSError:
            return False
        finally:
            self.connection.settimeout(self.timeout)

    def command_line(self) -> bytes:
        """The next command line, up to CRLF: a bare LF or CR is part of it, unless a fault
        takes it for a line end."""
        faults = self.server.faults
        line = self.read_line()
        if "bare_lf_ends_command_lines" not in faults:
            while line.endswith(b"\n") and not line.endswith(b"\r\n") and \
                    len(line) <= MAX_LINE and (more := self.read_line()):
                line += more
        if "bare_cr_ends_command_lines" in faults and \
                0 <= (at := line.find(b"\r")) < len(line) - 2:
            self.pending = line[at + 1:] + self.pending
            line = line[:at] + b"\r\n"
        return line

    def read_data(self) -> bool:
        """Mail data, up to its end: <CRLF>.<CRLF>, or a non-standard ending this server's
        faults take too (what follows it is then read as commands). False: the client went
        away, or the message is over MAX_MESSAGE."""
        endings = [b"\r\n.\r\n", *(NON_STANDARD_ENDINGS[name] for fault, name in
                                      ENDING_TAKEN.items() if fault in self.server.faults)]
        data = b"\r\n"  # the DATA line's own: the data may end at once
        while len(data) <= MAX_MESSAGE:
            if not (line := self.read_line()):
                return False
            data += line
            ends = [(at, -len(ending)) for ending in endings if (at := data.find(ending)) >= 0]
            if ends:
                at, length = min(ends)
                self.pending = data[at - length:] + self.pending
                return True
        return False

    def handle(self) -> None:
        faults = self.server.faults
        self.reply("220" if "greeting_without_domain" in faults else
                   "220 mx.fault.test ESMTP fault server")
        s = self.session = _Session()
        while not self.server.stopping.is_set() and not s.closing:
            line = self.command_line()
            if not line:
                return
            self.server.received.append(line)  # an overlong line: its first MAX_LINE octets
            if "enforces_synchronization" in faults and self.input_waiting():
                self.reply("554 SMTP synchronization error")
                return
            limit = MAX_LINE if "mail_echoes_argument" in faults else \
                256 if "long_lines_refused" in faults else 512
            if not line.endswith(b"\n") or len(line) > limit:
                while line and not line.endswith(b"\n"):
                    line = self.read_line()
                if "long_line_521_closes" in faults:
                    self.reply("521 Line too long: closing")
                    return
                self.reply("500 Line too long")
                continue
            if "drops_on_invalid_utf8" in faults:
                try:
                    line.decode("utf-8")
                except UnicodeDecodeError:
                    return
            text = line.rstrip(b"\r\n").decode("utf-8", "surrogateescape")
            verb_sent, _, arg = text.partition(" ")
            verb = verb_sent.upper()
            if "lowercase_verbs_unrecognised" in faults and verb_sent != verb:
                self.reply("500 Command unrecognized")
                continue
            if verb not in ("MAIL", "RCPT", "DATA"):
                s.non_mail += 1
            if "tarpit" in faults and s.non_mail > TARPIT_AFTER and \
                    self.server.stopping.wait(TARPIT_DELAY):
                return
            if not self.command(s, verb, arg.strip()):
                return

    def command(self, s: _Session, verb: str, arg: str) -> bool:
        faults = self.server.faults
        if verb in ("HELO", "EHLO"):
            if not arg:
                self.reply("501 Syntax: HELO/EHLO domain")
            elif "helo_replies_220" in faults and verb == "HELO":
                self.reply("220 hello")
            elif "helo_220_once" in faults and verb == "HELO" and self.server.count("HELO") == 3:
                self.reply("220 hello, this once")
            elif "second_ehlo_503" in faults and verb == "EHLO" and s.greeted:
                self.reply("503 Duplicate EHLO")
            else:
                if "helo_keeps_transaction" not in faults:
                    s.mail, s.recipients = False, 0
                s.greeted = True
                self.reply(("250-mx.fault.test\r\n251 8BITMIME" if "ehlo_mixed_codes" in faults
                            else "250-mx.fault.test\r\n250 8BITMIME") if verb == "EHLO"
                           else "250 mx.fault.test")
        elif verb == "MAIL":
            if "mail_553_at_random" in faults and random.random() < 0.3:
                self.reply("553 sender rejected (lookup failed)")
            elif "mail_echoes_argument" in faults and (len(arg) > 256 or
                    not arg.upper().startswith("FROM:<") or not arg.endswith(">")):
                self.reply(f"501 Bad sender address syntax: {arg}")
            elif "mail_fails_after_message" in faults and s.messages:
                self.reply("550 no more mail today")
            elif s.mail or not MAIL_ARGUMENT.fullmatch(arg):
                self.reply("501 Syntax error, nested MAIL, or a parameter not offered")
            else:
                s.mail, s.recipients = True, 0
                self.reply("250 OK")
        elif verb == "RCPT":
            if not s.mail and "rcpt_without_mail_502" in faults:
                self.reply("502 Not now")
            elif not s.mail and "rcpt_without_mail_accepted" not in faults:
                self.reply("503 Need MAIL first")
            elif not arg.upper().startswith("TO:<") or not arg.endswith(">") or \
                    not arg.isascii():
                self.reply("501 Syntax: RCPT TO:<address>")
            elif RELAY_DOMAIN in arg.lower() and "open_relay" not in faults:
                self.reply("550 5.7.1 Relaying denied")
            elif "third_recipient_554" in faults and s.recipients == 2:
                self.reply("554 too many")
            else:
                s.recipients += 1
                self.reply("250 OK")
        elif verb == "DATA":
            if arg:
                self.reply("501 No arguments allowed")
            elif not s.recipients and "data_without_rcpt_354" not in faults:
                self.reply("503 Need RCPT first")
            else:
                self.reply("354 End data with <CRLF>.<CRLF>")
                if not self.read_data():
                    return False
                if "enforces_synchronization" in faults and self.input_waiting():
                    self.reply("554 SMTP synchronization error")
                    return False
                self.server.count("messages")
                s.mail, s.recipients = "message_keeps_transaction" in faults, 0
                s.messages += 1
                self.reply("354 Go on" if "end_of_data_replies_354" in faults else
                           "250 Message accepted")
        elif verb == "RSET":
            if arg:
                self.reply("501 No arguments allowed")
            elif "rset_before_hello_503" in faults and not s.greeted:
                self.reply("503 Say HELO first")
            else:
                # The fault forgets the recipients but keeps the transaction open.
                s.mail, s.recipients = s.mail and "rset_keeps_mail_from" in faults, 0
                self.reply("250 OK")
        elif verb == "NOOP":
            if "noop_unrecognised" in faults:
                self.reply("500 Command unrecognized")
            elif "noop_refuses_parameter" in faults and arg:
                self.reply("500 NOOP takes no parameters")
            else:
                self.reply("252 fine" if "noop_replies_252" in faults else
                           "250OK" if "noop_no_separator" in faults else "250 OK")
        elif verb == "QUIT":
            if arg:
                self.reply("500 No arguments allowed")
                return True
            self.reply("250 Goodbye" if "quit_replies_250" in faults else "221 Bye")
            return "quit_keeps_connection" in faults
        elif verb == "VRFY" and "vrfy_421_keeps_connection" in faults:
            self.reply("421 mx.fault.test shutting down")
        elif verb == "EXPN" and "expn_replies_354" in faults:
            self.reply("354 go ahead")
        elif verb == "EXPN" and "expn_hangs" in faults:
            self.server.stopping.wait(30)
            return False
        elif verb == "HELP" and "help_never_answers" in faults:
            self.server.stopping.wait(60)
            return False
        elif verb == "HELP":
            if "help_drops_connection" in faults:
                self.connection.shutdown(socket.SHUT_RDWR)
                return False
            self.reply("214 Help\x01" if "control_octet_in_help" in faults else "214 See RFC 5321")
        elif verb == "VRFY":  # implemented (RFC 5321 §4.5.1), with a code every row has
            self.reply("550 No such user here" if arg else "501 Syntax: VRFY <string>")
        elif verb in ("EXPN", "SEND", "SOML", "SAML", "TURN"):
            self.reply("502 Command not implemented")
        else:
            self.reply("250 whatever" if "unknown_verb_accepted" in faults else
                       "500 Command unrecognized")
        return True


class _Server(ThreadedServer):
    faults: frozenset[str]
    received: deque[bytes]  # command lines (overlong ones cut), newest last (bounded)
    counts: Counter[str]  # commands seen, by verb, over the server's life

    def count(self, verb: str) -> int:
        with self.lock:
            self.counts[verb] += 1
            return self.counts[verb]


class FaultServer(Served):
    """``with FaultServer("expn_hangs") as server:`` ... ``server.address``; several faults
    may be combined: ``FaultServer("helo_replies_220", "noop_replies_252")``."""

    def __init__(self, *faults: str | None) -> None:
        known = {*FAULTS, *DEFENCES, *SHOULD_FAULTS, *NONDETERMINISTIC, *SMUGGLING_FAULTS,
                 *RELAY_FAULTS}
        chosen = frozenset(f for f in faults if f is not None)
        if unknown := chosen - known:
            raise ValueError(f"unknown fault(s) {sorted(unknown)}")
        server = _Server(_Handler)
        server.faults = chosen
        self.received: deque[bytes] = deque(maxlen=100_000)
        server.received = self.received
        server.counts = Counter()
        self._server: _Server = server
        super().__init__(server)

    @property
    def messages(self) -> int:
        """Messages whose data ended (at <CRLF>.<CRLF>, or where a fault ends it)."""
        with self._server.lock:
            return self._server.counts["messages"]
