"""The Hypothesis state machine: strategies choose commands, the checked session runs them.

Findings are recorded, never raised, so one run explores its whole budget and reports every
deviation it meets. No rule has a precondition: what Hypothesis draws never depends on the
server's answers (a step reconnects by itself when the last session ended), so its replays
cannot break on a server that answers differently from one session to the next.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import ClassVar

from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    rule,
)

import strategies as smtp
from conformance.client import ServerAddress
from conformance.commands import Command, Message
from conformance.errors import StopRun, TargetLost, TargetUnreachable
from conformance.grading import Policy
from conformance.model import State
from conformance.record import RunRecord
from conformance.session import Adaptation, CheckedSession, Pacer
from conformance.tables import Profile


def _either(verb: str, valid: st.SearchStrategy[Command] | None = None,
            malformed: st.SearchStrategy[Command] | None = None) -> st.SearchStrategy[Command]:
    """Mostly valid commands for ``verb`` (``valid``, by default any), sometimes malformed
    (``malformed``, by default any)."""
    valid = valid if valid is not None else smtp.valid_commands(verb)
    malformed = malformed if malformed is not None else smtp.malformed_commands(verb=verb)
    return st.one_of(valid, valid, malformed)


def _sends(name: str, commands: st.SearchStrategy[Command]) -> Callable[..., None]:
    """A rule named ``name`` that sends one command drawn from ``commands``."""
    def send(self: SMTPConformance, command: Command) -> None:
        self._send(command)
    send.__name__ = send.__qualname__ = name  # Hypothesis prints steps by this name
    return rule(command=commands)(send)


def _complete_rule(recipients: st.SearchStrategy[Command]) -> Callable[..., None]:
    @rule(hello=st.one_of(smtp.ehlo_commands(), smtp.helo_commands()),
          mail=smtp.mail_commands(), recipients=st.lists(recipients, min_size=1, max_size=4),
          message=smtp.message_bodies())
    def transaction_complete(self: SMTPConformance, hello: Command, mail: Command,
                             recipients: list[Command], message: Message) -> None:
        self._complete_transaction(hello, mail, recipients, message)
    return transaction_complete


def _interrupt_rule(recipients: st.SearchStrategy[Command]) -> Callable[..., None]:
    @rule(hello=st.one_of(smtp.ehlo_commands(), smtp.helo_commands()),
          mail=smtp.mail_commands(), recipients=st.lists(recipients, max_size=2),
          ending=st.one_of(smtp.valid_commands("RSET"), smtp.ehlo_commands(),
                           smtp.helo_commands()),
          probe=st.one_of(recipients, st.just(Command.of("DATA"))))
    def transaction_interrupted(self: SMTPConformance, hello: Command, mail: Command,
                                recipients: list[Command], ending: Command,
                                probe: Command) -> None:
        self._interrupt_transaction(hello, mail, recipients, ending, probe)
    return transaction_interrupted


def _recipient_rules(domain: str) -> dict[str, Callable[..., None]]:
    """The rules that send RCPT (raw lines included), with every recipient in ``domain``."""
    recipients = smtp.rcpt_commands(domain=st.just(domain))
    malformed = smtp.malformed_commands(verb="RCPT", domain=domain)
    return {
        "send_rcpt": _sends("send_rcpt", _either("RCPT", recipients, malformed)),
        "send_raw_line": _sends("send_raw_line", smtp.raw_lines(domain=domain)),
        "transaction_complete": _complete_rule(recipients),
        "transaction_interrupted": _interrupt_rule(recipients),
    }


class SMTPConformance(RuleBasedStateMachine):
    """Configure with ``configure(address, profile, timeout)``, then run with Hypothesis."""

    address: ClassVar[ServerAddress]
    profile: ClassVar[Profile]
    timeout: ClassVar[float] = 5.0
    policy: ClassVar[Policy] = Policy()
    deliver: ClassVar[bool] = True
    pacer: ClassVar[Pacer] = Pacer()
    record: ClassVar[RunRecord]
    adaptation: ClassVar[Adaptation]  # one per run, shared by its sessions
    fail_fast: ClassVar[bool] = False
    deadline: ClassVar[float] = float("inf")  # time.monotonic() at which exploring stops

    def __init__(self) -> None:
        super().__init__()
        self.session = CheckedSession(self.address, self.profile, timeout=self.timeout,
                                      policy=self.policy, record=self.record,
                                      deliver=self.deliver, pacer=self.pacer,
                                      adaptation=self.adaptation, fail_fast=self.fail_fast)

    @initialize()
    def connect(self) -> None:
        self._open()

    def teardown(self) -> None:
        self.session.close()

    def _open(self) -> None:
        """Connect if the last session ended; the run stops when its budget is spent."""
        if time.monotonic() >= self.deadline:
            raise StopRun("the run's time budget was spent")
        try:
            self.session.ensure_open()
        except TargetUnreachable as error:  # it answered when the run began
            raise TargetLost(str(error)) from None

    def _send(self, command: Command, message: Message | None = None) -> None:
        """Send ``command``; after a 354, the message if there is one, else end the session
        (lines meant as commands are never sent as mail data)."""
        self._open()
        self.session.send(command)
        if self.session.model.state is State.DATA:
            if message is not None:
                self.session.send_message(message)
            else:
                self.session.close()

    # --- one rule per seed command (and one for raw lines) -------------------------------------

    send_helo = _sends("send_helo", _either("HELO"))
    send_ehlo = _sends("send_ehlo", _either("EHLO"))
    send_mail = _sends("send_mail", _either("MAIL"))
    send_rcpt = _sends("send_rcpt", _either("RCPT"))
    send_rset = _sends("send_rset", _either("RSET"))
    send_send = _sends("send_send", _either("SEND"))
    send_soml = _sends("send_soml", _either("SOML"))
    send_saml = _sends("send_saml", _either("SAML"))
    send_vrfy = _sends("send_vrfy", _either("VRFY"))
    send_expn = _sends("send_expn", _either("EXPN"))
    send_help = _sends("send_help", _either("HELP"))
    send_noop = _sends("send_noop", _either("NOOP"))
    send_turn = _sends("send_turn", _either("TURN"))
    send_quit = _sends("send_quit", _either("QUIT"))
    send_raw_line = _sends("send_raw_line", smtp.raw_lines())

    @rule(command=_either("DATA"), message=smtp.message_bodies())
    def send_data(self, command: Command, message: Message) -> None:
        self._send(command, message)

    # --- deep states ---------------------------------------------------------------------------
    # Hypothesis orders rules by name and shrinks toward the first, so these compound rules are
    # named to sort after the send_* rules: a failure shrinks to the single command showing it.

    transaction_complete = _complete_rule(smtp.rcpt_commands())
    transaction_interrupted = _interrupt_rule(smtp.rcpt_commands())

    def _complete_transaction(self, hello: Command, mail: Command, recipients: list[Command],
                              message: Message) -> None:
        """A whole valid transaction, so states after a message and after N recipients are
        reached often. Stops early where the server's replies make the next step pointless."""
        self._open()
        if self.session.model.state in (State.INIT, State.MAIL, State.RCPT):
            self._send(hello)
        if self.session.model.state is State.READY:
            self._send(mail)
        for recipient in recipients:
            if self.session.model.state not in (State.MAIL, State.RCPT):
                return
            self._send(recipient)
        if self.session.model.state is State.RCPT:
            self._send(Command.of("DATA"), message)

    def _interrupt_transaction(self, hello: Command, mail: Command, recipients: list[Command],
                               ending: Command, probe: Command) -> None:
        """Open a transaction, end it with RSET, HELO or EHLO (RFC 5321 §4.1.1.5, §4.1.4),
        then send RCPT or DATA: the server must answer as if no transaction were open."""
        self._open()
        if self.session.model.state is State.INIT:
            self._send(hello)
        if self.session.model.state is State.READY:
            self._send(mail)
        for recipient in recipients:
            if not self.session.model.in_transaction:
                break
            self._send(recipient)
        if not self.session.model.in_transaction:
            return
        self._send(ending)
        if self.session.model.state is State.READY:
            self._send(probe, Message(b"Subject: must not be delivered\r\n"))

def configure(address: ServerAddress, profile: Profile, *, timeout: float,
              policy: Policy | None = None, record: RunRecord | None = None,
              seed: int | None = None, deliver: bool = True,
              rcpt_domain: str | None = None, rate: float | None = None,
              fail_fast: bool = False, deadline: float = float("inf")
              ) -> type[SMTPConformance]:
    """A state machine class bound to one server, profile and timeout; ``deadline``
    (``time.monotonic()``) ends its exploration."""
    return type("SMTPConformance", (SMTPConformance,), {
        "address": address, "profile": profile, "timeout": timeout,
        "policy": policy if policy is not None else Policy(), "deliver": deliver,
        "pacer": Pacer(rate), "adaptation": Adaptation(), "fail_fast": fail_fast,
        "deadline": deadline,
        "record": record if record is not None else RunRecord(),
        # Read by Hypothesis, as @seed(...) would set it: the same seed, the same sessions.
        "_hypothesis_internal_use_seed": seed,
        **(_recipient_rules(rcpt_domain) if rcpt_domain else {}),
    })
