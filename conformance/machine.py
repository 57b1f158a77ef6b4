"""The Hypothesis state machine: strategies choose commands, the checked session runs them.

One TCP session per example (and a fresh one after QUIT or 421). Preconditions read only the
model, so runs are deterministic for a deterministic server. A failing example is printed as
a short program of ``state.send_...`` steps, with the transcript in the failure message.
"""

from __future__ import annotations

from collections import Counter
from typing import ClassVar

from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    precondition,
    rule,
)

import strategies as smtp
from conformance.client import ServerAddress
from conformance.commands import Command, Message
from conformance.model import State
from conformance.session import CheckedSession, Coverage
from conformance.tables import Profile


def _either(verb: str) -> st.SearchStrategy[Command]:
    """Mostly valid commands for ``verb``, sometimes a malformed one."""
    return st.one_of(smtp.valid_commands(verb), smtp.valid_commands(verb),
                     smtp.malformed_commands(verb=verb))


def _is_open(machine: SMTPConformance) -> bool:
    return machine.session.model.open


class SMTPConformance(RuleBasedStateMachine):
    """Configure with ``configure(address, profile, timeout)``, then run with Hypothesis."""

    address: ClassVar[ServerAddress]
    profile: ClassVar[Profile]
    timeout: ClassVar[float] = 5.0
    coverage: ClassVar[Coverage]

    def __init__(self) -> None:
        super().__init__()
        self.session = CheckedSession(self.address, self.profile, timeout=self.timeout,
                                      coverage=self.coverage)

    @initialize()
    def connect(self) -> None:
        self.session.connect()

    def teardown(self) -> None:
        self.session.close()

    def _send(self, command: Command, message: Message | None = None) -> None:
        reply = self.session.send(command)
        if reply is not None and message is not None and self.session.model.state is State.DATA:
            self.session.send_message(message)

    # --- one rule per seed command -------------------------------------------------------------

    @precondition(_is_open)
    @rule(command=_either("HELO"))
    def send_helo(self, command: Command) -> None:
        self._send(command)

    @precondition(_is_open)
    @rule(command=_either("EHLO"))
    def send_ehlo(self, command: Command) -> None:
        self._send(command)

    @precondition(_is_open)
    @rule(command=_either("MAIL"))
    def send_mail(self, command: Command) -> None:
        self._send(command)

    @precondition(_is_open)
    @rule(command=_either("RCPT"))
    def send_rcpt(self, command: Command) -> None:
        self._send(command)

    @precondition(_is_open)
    @rule(command=_either("DATA"), message=smtp.message_bodies())
    def send_data(self, command: Command, message: Message) -> None:
        self._send(command, message)

    @precondition(_is_open)
    @rule(command=_either("RSET"))
    def send_rset(self, command: Command) -> None:
        self._send(command)

    @precondition(_is_open)
    @rule(command=st.one_of(_either("SEND"), _either("SOML"), _either("SAML")))
    def send_send_soml_saml(self, command: Command) -> None:
        self._send(command)

    @precondition(_is_open)
    @rule(command=st.one_of(_either("VRFY"), _either("EXPN")))
    def send_vrfy_expn(self, command: Command) -> None:
        self._send(command)

    @precondition(_is_open)
    @rule(command=st.one_of(_either("HELP"), _either("NOOP")))
    def send_help_noop(self, command: Command) -> None:
        self._send(command)

    @precondition(_is_open)
    @rule(command=_either("TURN"))
    def send_turn(self, command: Command) -> None:
        self._send(command)

    @precondition(_is_open)
    @rule(command=_either("QUIT"))
    def send_quit(self, command: Command) -> None:
        self._send(command)

    @precondition(_is_open)
    @rule(command=smtp.raw_lines())
    def send_raw_line(self, command: Command) -> None:
        self._send(command)

    # --- deep states ---------------------------------------------------------------------------

    @precondition(_is_open)
    @rule(
        hello=st.one_of(smtp.ehlo_commands(), smtp.helo_commands()),
        mail=smtp.mail_commands(),
        recipients=st.lists(smtp.rcpt_commands(), min_size=1, max_size=4),
        message=smtp.message_bodies(),
    )
    def send_transaction(self, hello: Command, mail: Command, recipients: list[Command],
                         message: Message) -> None:
        """A whole valid transaction, so states after a message and after N recipients are
        reached often. Stops early where the server's replies make the next step pointless."""
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

    @precondition(lambda machine: not machine.session.model.open)
    @rule()
    def reconnect(self) -> None:
        self.session.connect()


def configure(address: ServerAddress, profile: Profile, *, timeout: float,
              coverage: Coverage | None = None) -> type[SMTPConformance]:
    """A state machine class bound to one server, profile and timeout."""
    return type("SMTPConformance", (SMTPConformance,), {
        "address": address, "profile": profile, "timeout": timeout,
        "coverage": coverage if coverage is not None else Counter(),
    })
