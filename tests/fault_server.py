"""A small SMTP server of our own that conforms to every profile, unless told to break a rule.

Each fault is one named deviation (conformance.testing.faults), declared with the check that
must catch it, so the suite can be shown to catch it. Built on conformance.testing.dialogue:
each verb is one method; bounded, every read times out, and the server stops when asked.
"""

from __future__ import annotations

import random
import re
import socket
from collections import Counter
from dataclasses import dataclass

from conformance.protocol.commands import NON_STANDARD_ENDINGS, RELAY_DOMAIN
from conformance.testing.dialogue import MAX_LINE, SmtpHandler, SmtpServer
from conformance.testing.faults import Fault, Faults
from conformance.testing.serving import Served

MAX_MESSAGE = 1 << 20

# The faults a default run of the suite must catch, each with a MUST of its check.
MUST = Faults(
    Fault("helo_replies_220", "reply_code_documented", "HELO answered 220"),
    Fault("noop_replies_252", "reply_code_documented", "NOOP answered 252"),
    # 250 to QUIT, then the close: judged as one.
    Fault("quit_replies_250", "no_silent_close", "QUIT answered 250, then the close"),
    Fault("unknown_verb_accepted", "reply_code_documented", "an unknown verb answered 250"),
    Fault("rcpt_without_mail_accepted", "rcpt_requires_mail", "RCPT taken before MAIL",
          stateful=True),
    Fault("data_without_rcpt_354", "data_requires_recipient", "DATA taken without RCPT",
          stateful=True),
    Fault("rset_keeps_mail_from", "reset_clears_transaction",
          "RSET forgets the recipients but keeps the transaction open", stateful=True),
    Fault("bare_lf_replies", "reply_well_formed", "replies end at a bare LF"),
    Fault("ehlo_mixed_codes", "reply_well_formed", "EHLO's reply lines of 250 and 251"),
    Fault("noop_no_separator", "reply_well_formed", "NOOP answered '250OK'"),
    Fault("control_octet_in_help", "reply_well_formed", "HELP's reply has a control octet"),
    Fault("quit_keeps_connection", "quit_closes", "221 to QUIT, the connection kept"),
    Fault("vrfy_421_keeps_connection", "closes_after_421", "421 to VRFY, the connection kept"),
    Fault("expn_hangs", "command_answered", "EXPN never answered (the session ends in 30 s)"),
    Fault("help_drops_connection", "no_silent_close", "HELP answered by a close"),
    Fault("mail_fails_after_message", "reply_code_documented",
          "MAIL after a message answered 550", stateful=True),
    Fault("third_recipient_554", "reply_code_documented", "the third RCPT answered 554",
          stateful=True),
    Fault("greeting_without_domain", "greeting_names_server", "the greeting is a bare 220"),
    Fault("lowercase_verbs_unrecognised", "verb_case_insensitive",
          "a verb not in upper case answered 500"),
    Fault("end_of_data_replies_354", "end_of_data_reply_is_final",
          "the end of data answered 354"),
    Fault("noop_unrecognised", "minimum_implementation", "NOOP answered 500, whatever its form"),
    Fault("help_never_answers", "command_answered", "HELP never answered"),
    Fault("mail_echoes_argument", "reply_well_formed",
          "501 to MAIL quoting its argument, 8-bit and all"),
    Fault("expn_replies_354", "reply_code_documented",  # a class EXPN's row never has
          "EXPN answered 354"),
    # Blamed on the command that did not clear the transaction (RFC 5321 §4.1.4, §4.1.1.4).
    Fault("helo_keeps_transaction", "reset_clears_transaction",
          "HELO keeps the transaction", stateful=True),
    Fault("message_keeps_transaction", "reset_clears_transaction",
          "the end of data keeps MAIL FROM", stateful=True),
    # A command line ends at CRLF only (RFC 5321 §2.3.8).
    Fault("bare_lf_ends_command_lines", "command_lines_end_only_at_crlf",
          "a command line ends at a bare LF"),
    Fault("bare_cr_ends_command_lines", "command_lines_end_only_at_crlf",
          "a command line ends at a bare CR"),
    Fault("long_lines_refused", "command_line_limit_honoured",
          "a command line over 256 octets answered 'too long'"),
    # A close is judged on the reply before it, or on the input that set it off (§3.8).
    Fault("drops_on_invalid_utf8", "no_silent_close", "closes, no reply, on invalid UTF-8"),
    Fault("long_line_521_closes", "no_silent_close",
          "521 to a line over 512 octets, then the close"),
    Fault("rset_before_hello_503", "rset_succeeds",  # RFC 5321 §4.1.1.5: 250, in any state
          "RSET before HELO answered 503"),
    Fault("second_ehlo_503", "hello_refusal_codes",  # §4.1.4: a later EHLO is fine
          "a second EHLO answered 503"),
    # §4.1.4's MUST names EHLO; a HELO's codes are its §4.3.2 row's (OpenSMTPD's case)
    Fault("second_helo_503", "reply_code_documented", "a second HELO answered 503"),
    Fault("rcpt_without_mail_502", "rcpt_requires_mail",  # §3.3: 503 must be returned
          "RCPT before MAIL answered 502"),
)
# Faults whose finding is a SHOULD: the run warns and passes unless --smtp-strict.
SHOULD = Faults(
    Fault("noop_refuses_parameter", "noop_ignores_parameter", "NOOP with a parameter: 500"),
    Fault("tarpit", "reply_within_timeout",
          "from the fourth non-mail command of a session on, each reply waits 6 s"),
)
# Faults whose finding is a note (INFO): reported, never failing, even with --smtp-strict.
NOTED = Faults(
    # As Exim's smtp_accept_max_nonmail (default 10): 554, and the connection dropped.
    Fault("nonmail_limit", "session_limit",
          "after 10 NOOP, HELP, VRFY or EXPN in a session: 554, then the close"),
    # As Exim does: RFC 5321 §7.8 lets a server give up after repeated failed commands.
    Fault("closes_after_third_error", "no_silent_close",
          "the third error answered 500, then the close"),
)
# No deviation: the suite must report nothing, in runs and in the sessions it minimises and
# replays. As Exim does without PIPELINING advertised (RFC 5321 §4.3.1; RFC 2920 §3.1).
DEFENDING = Faults(
    Fault("enforces_synchronization", None,
          "input before the reply to the line before it: 554, and the close"),
)
# They do not reproduce on replay. A check failure seen on the wire is still graded by its
# level (an intermittent deviation); only timing evidence becomes INCONCLUSIVE.
INTERMITTENT = Faults(
    Fault("helo_220_once", "reply_code_documented", "only the server's third HELO gets 220"),
    Fault("mail_553_at_random", "reply_code_documented", "553 to MAIL three times in ten"),
)
# Each ends the mail data at a non-standard ending as well as at <CRLF>.<CRLF> (the earliest
# in the data; at one place, the longest), then reads what follows as commands: open to SMTP
# smuggling by that ending alone (tests/test_smuggling.py). Fault name -> the ending it takes.
ENDING_TAKEN = {
    "ends_data_at_" + re.sub(r"[<>]+", "_", name).replace(".", "dot").strip("_").lower(): name
    for name in NON_STANDARD_ENDINGS}
SMUGGLING = Faults(*(Fault(fault, "data_ends_only_at_crlf_dot_crlf", f"the data ends at {name}")
                     for fault, name in ENDING_TAKEN.items()))
# Shown only with --smtp-relay-check (tests/test_relay_check.py): without the fault, the
# server refuses recipients at the relay check's domain, as one not their destination must.
RELAY = Faults(Fault("open_relay", "relay_refused", "recipients at the relay domain taken"))
ALL = MUST | SHOULD | NOTED | DEFENDING | INTERMITTENT | SMUGGLING | RELAY

# Views by group: fault name -> the check that must catch it.
FAULTS = MUST.checks()
SHOULD_FAULTS = SHOULD.checks()
NOTED_FAULTS = NOTED.checks()
NONDETERMINISTIC = INTERMITTENT.checks()
SMUGGLING_FAULTS = SMUGGLING.checks()
RELAY_FAULTS = RELAY.checks()
DEFENCES = DEFENDING.defences()
# The faults about the session's state: they measure how deep the search goes.
STATE_FAULTS = {name: {fault.check} for name, fault in MUST.items()
                if fault.stateful and fault.check is not None}

TARPIT_AFTER, TARPIT_DELAY = 3, 6.0
NONMAIL_LIMIT = 10  # Exim's smtp_accept_max_nonmail default
NONMAIL_VERBS = ("NOOP", "HELP", "VRFY", "EXPN")
# A reverse-path, and the one parameter of the one extension EHLO offers (8BITMIME, RFC 6152).
# ASCII only: no SMTPUTF8 here (RFC 5321 §2.4).
MAIL_ARGUMENT = re.compile(r"FROM:<[\x20-\x3b=\x3f-\x7e]*>(?: BODY=(?:7BIT|8BITMIME))?",
                           re.IGNORECASE)
NOT_IMPLEMENTED = "502 Command not implemented"


@dataclass
class _Session:
    greeted: bool = False
    mail: bool = False
    recipients: int = 0
    messages: int = 0
    non_mail: int = 0  # commands other than MAIL, RCPT and DATA (for the tarpit)
    nonmail_limited: int = 0  # NOOP, HELP, VRFY and EXPN (for nonmail_limit)
    errors: int = 0  # 5yz replies so far
    closing: bool = False  # the last reply was the one to close after


class _Server(SmtpServer):
    counts: Counter[str]  # commands seen, by verb, over the server's life

    def count(self, verb: str) -> int:
        with self.lock:
            self.counts[verb] += 1
            return self.counts[verb]


class _Handler(SmtpHandler):
    """The conforming dialogue; each fault changes the verb it is about."""

    server: _Server
    greeting = "220 mx.fault.test ESMTP fault server"
    timeout = 90  # an idle client is dropped after this; a test ends well before

    def setup(self) -> None:
        super().setup()
        self.session = _Session()
        self.line_limit = MAX_LINE if self.has("mail_echoes_argument") else \
            256 if self.has("long_lines_refused") else 512

    # --- reading and replying ----------------------------------------------------------------

    def greet(self) -> None:
        self.reply("220" if self.has("greeting_without_domain") else self.greeting)

    def reply(self, text: str) -> None:
        s = self.session
        if text[:1] == "5":
            s.errors += 1
            if self.has("closes_after_third_error") and s.errors == 3:
                text, s.closing = "500 Too many errors", True
        ending = "\n" if self.has("bare_lf_replies") else "\r\n"
        self.wire.send((text.replace("\r\n", ending) + ending).encode("utf-8", "surrogateescape"))

    def command_line(self) -> bytes:
        line = self.wire.line() if self.has("bare_lf_ends_command_lines") else \
            super().command_line()
        if self.has("bare_cr_ends_command_lines") and \
                0 <= (at := line.find(b"\r")) < len(line) - 2:
            self.wire.unread(line[at + 1:])
            line = line[:at] + b"\r\n"
        return line

    def serve(self, line: bytes) -> bool:
        if self.has("enforces_synchronization") and self.wire.waiting():
            self.server.received.append(line)
            self.reply("554 SMTP synchronization error")
            return False
        if self.has("drops_on_invalid_utf8") and not self.overlong(line):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError:
                self.server.received.append(line)
                return False
        return super().serve(line) and not self.session.closing

    def dispatch(self, verb: str, argument: str) -> bool:
        if self.has("lowercase_verbs_unrecognised") and verb != verb.upper():
            self.reply("500 Command unrecognized")
            return True
        if verb.upper() not in ("MAIL", "RCPT", "DATA"):
            self.session.non_mail += 1
        if self.has("nonmail_limit") and verb.upper() in NONMAIL_VERBS:
            self.session.nonmail_limited += 1
            if self.session.nonmail_limited > NONMAIL_LIMIT:
                self.reply("554 Too many nonmail commands")
                return False
        if self.has("tarpit") and self.session.non_mail > TARPIT_AFTER and \
                self.server.stopping.wait(TARPIT_DELAY):
            return False
        return super().dispatch(verb, argument)

    def too_long(self, line: bytes) -> bool:
        if self.has("long_line_521_closes"):
            self.reply("521 Line too long: closing")
            return False
        return super().too_long(line)

    def read_data(self) -> bool:
        """Mail data, up to its end: <CRLF>.<CRLF>, or a non-standard ending this server's
        faults take too (what follows it is then read as commands). False: the message is
        over MAX_MESSAGE."""
        endings = [b"\r\n.\r\n", *(NON_STANDARD_ENDINGS[name] for fault, name in
                                      ENDING_TAKEN.items() if self.has(fault))]
        data = b"\r\n"  # the DATA line's own: the data may end at once
        while len(data) <= MAX_MESSAGE:
            data += self.wire.until_lf(MAX_LINE + 1)
            ends = [(at, len(ending)) for ending in endings if (at := data.find(ending)) >= 0]
            if ends:
                at, length = min(ends, key=lambda end: (end[0], -end[1]))
                self.wire.unread(data[at + length:])
                return True
        return False

    # --- the verbs ---------------------------------------------------------------------------

    def hello(self, verb: str, argument: str) -> bool:
        s = self.session
        if not argument:
            self.reply("501 Syntax: HELO/EHLO domain")
        elif self.has("helo_replies_220") and verb == "HELO":
            self.reply("220 hello")
        elif self.has("helo_220_once") and verb == "HELO" and self.server.count("HELO") == 3:
            self.reply("220 hello, this once")
        elif self.has("second_ehlo_503") and verb == "EHLO" and s.greeted:
            self.reply("503 Duplicate EHLO")
        elif self.has("second_helo_503") and verb == "HELO" and s.greeted:
            self.reply("503 Already identified")
        else:
            if not self.has("helo_keeps_transaction"):
                s.mail, s.recipients = False, 0
            s.greeted = True
            if verb == "HELO":
                self.reply("250 mx.fault.test")
            else:
                self.reply("250-mx.fault.test\r\n" +
                           ("251 8BITMIME" if self.has("ehlo_mixed_codes") else "250 8BITMIME"))
        return True

    def on_helo(self, argument: str) -> bool:
        return self.hello("HELO", argument)

    def on_ehlo(self, argument: str) -> bool:
        return self.hello("EHLO", argument)

    def on_mail(self, argument: str) -> bool:
        s = self.session
        if self.has("mail_553_at_random") and random.random() < 0.3:
            self.reply("553 sender rejected (lookup failed)")
        elif self.has("mail_echoes_argument") and (len(argument) > 256 or
                not argument.upper().startswith("FROM:<") or not argument.endswith(">")):
            self.reply(f"501 Bad sender address syntax: {argument}")
        elif self.has("mail_fails_after_message") and s.messages:
            self.reply("550 no more mail today")
        elif s.mail or not MAIL_ARGUMENT.fullmatch(argument):
            self.reply("501 Syntax error, nested MAIL, or a parameter not offered")
        else:
            s.mail, s.recipients = True, 0
            self.reply("250 OK")
        return True

    def on_rcpt(self, argument: str) -> bool:
        s = self.session
        if not s.mail and self.has("rcpt_without_mail_502"):
            self.reply("502 Not now")
        elif not s.mail and not self.has("rcpt_without_mail_accepted"):
            self.reply("503 Need MAIL first")
        elif not argument.upper().startswith("TO:<") or not argument.endswith(">") or \
                not argument.isascii():
            self.reply("501 Syntax: RCPT TO:<address>")
        elif RELAY_DOMAIN in argument.lower() and not self.has("open_relay"):
            self.reply("550 5.7.1 Relaying denied")
        elif self.has("third_recipient_554") and s.recipients == 2:
            self.reply("554 too many")
        else:
            s.recipients += 1
            self.reply("250 OK")
        return True

    def on_data(self, argument: str) -> bool:
        s = self.session
        if argument:
            self.reply("501 No arguments allowed")
            return True
        if not s.recipients and not self.has("data_without_rcpt_354"):
            self.reply("503 Need RCPT first")
            return True
        self.reply("354 End data with <CRLF>.<CRLF>")
        if not self.read_data():
            return False
        if self.has("enforces_synchronization") and self.wire.waiting():
            self.reply("554 SMTP synchronization error")
            return False
        self.server.count("messages")
        s.mail, s.recipients = self.has("message_keeps_transaction"), 0
        s.messages += 1
        self.reply("354 Go on" if self.has("end_of_data_replies_354") else "250 Message accepted")
        return True

    def on_rset(self, argument: str) -> bool:
        s = self.session
        if argument:
            self.reply("501 No arguments allowed")
        elif self.has("rset_before_hello_503") and not s.greeted:
            self.reply("503 Say HELO first")
        else:
            # The fault forgets the recipients but keeps the transaction open.
            s.mail, s.recipients = s.mail and self.has("rset_keeps_mail_from"), 0
            self.reply("250 OK")
        return True

    def on_noop(self, argument: str) -> bool:
        if self.has("noop_unrecognised"):
            self.reply("500 Command unrecognized")
        elif self.has("noop_refuses_parameter") and argument:
            self.reply("500 NOOP takes no parameters")
        else:
            self.reply("252 fine" if self.has("noop_replies_252") else
                       "250OK" if self.has("noop_no_separator") else "250 OK")
        return True

    def on_quit(self, argument: str) -> bool:
        if argument:
            self.reply("500 No arguments allowed")
            return True
        self.reply("250 Goodbye" if self.has("quit_replies_250") else "221 Bye")
        return self.has("quit_keeps_connection")

    def on_vrfy(self, argument: str) -> bool:
        if self.has("vrfy_421_keeps_connection"):
            self.reply("421 mx.fault.test shutting down")
        else:  # implemented (RFC 5321 §4.5.1), with a code every row has
            self.reply("550 No such user here" if argument else "501 Syntax: VRFY <string>")
        return True

    def on_expn(self, argument: str) -> bool:
        if self.has("expn_hangs"):
            self.server.stopping.wait(30)
            return False
        self.reply("354 go ahead" if self.has("expn_replies_354") else NOT_IMPLEMENTED)
        return True

    def on_help(self, argument: str) -> bool:
        if self.has("help_never_answers"):
            self.server.stopping.wait(60)
            return False
        if self.has("help_drops_connection"):
            self.request.shutdown(socket.SHUT_RDWR)
            return False
        self.reply("214 Help\x01" if self.has("control_octet_in_help") else "214 See RFC 5321")
        return True

    def not_implemented(self, argument: str) -> bool:
        self.reply(NOT_IMPLEMENTED)
        return True

    on_send = on_soml = on_saml = on_turn = not_implemented

    def unrecognised(self, verb: str, argument: str) -> bool:
        self.reply("250 whatever" if self.has("unknown_verb_accepted") else
                   "500 Command unrecognized")
        return True


class FaultServer(Served):
    """``with FaultServer("expn_hangs") as server:`` ... ``server.address``; several faults
    may be combined: ``FaultServer("helo_replies_220", "noop_replies_252")``."""

    def __init__(self, *faults: str | None) -> None:
        server = _Server(_Handler, faults=ALL.choose(faults))
        server.counts = Counter()
        self._server: _Server = server
        self.received = server.received  # command lines (overlong ones cut), newest last
        super().__init__(server)

    @property
    def messages(self) -> int:
        """Messages whose data ended (at <CRLF>.<CRLF>, or where a fault ends it)."""
        with self._server.lock:
            return self._server.counts["messages"]

