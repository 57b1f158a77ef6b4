"""The Hypothesis state machine: strategies choose commands, the checked session runs them.

The rules come from the vocabulary: one per seed verb, one for raw lines, two for whole
transactions, and one per thing an extension adds (pipelined batches, MAIL/RCPT parameters,
STARTTLS, BDAT, AUTH), which sends it where the session's EHLO reply advertised it, and
otherwise what a server must refuse. Findings are recorded, never raised, so one run
explores its whole budget and reports every deviation it meets. No rule has a precondition,
and how much Hypothesis draws never depends on the server's answers or the run so far (a
step reconnects by itself when the last session ended): what the run has seen only steers
where a drawn command goes (``conformance.search.steering``), so that every (state, verb)
cell is reached early in every run.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import ClassVar

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.errors import FlakyStrategyDefinition
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    rule,
    run_state_machine_as_test,
)

import conformance.strategies.extensions as ext
from conformance import strategies as smtp
from conformance.engine.address import ServerAddress
from conformance.engine.pacing import Activity
from conformance.engine.record import RunRecord
from conformance.engine.session import CheckedSession, RunState
from conformance.engine.settings import SessionSettings
from conformance.protocol.commands import (
    NON_STANDARD_ENDINGS,
    RELAY_PROBES,
    Command,
    DataProbe,
    Message,
)
from conformance.protocol.errors import StopRun
from conformance.protocol.model import State
from conformance.protocol.replies import Reply
from conformance.protocol.vocabulary import VERBS, V, Verb
from conformance.search.extension_steps import ExtensionSteps
from conformance.search.steering import Exploration

WHERE = st.integers(0, 2**32 - 1)  # seeds how a command is placed (see _send_somewhere)


def _either(verb: str, valid: st.SearchStrategy[Command] | None = None,
            malformed: st.SearchStrategy[Command] | None = None) -> st.SearchStrategy[Command]:
    """Mostly valid commands for ``verb`` (``valid``, by default any), sometimes malformed
    (``malformed``, by default any)."""
    valid = valid if valid is not None else smtp.valid_commands(verb)
    malformed = malformed if malformed is not None else smtp.malformed_commands(verb=verb)
    return st.one_of(valid, valid, malformed)


def _sends(name: str, commands: st.SearchStrategy[Command]) -> Callable[..., None]:
    """A rule named ``name`` that sends one command drawn from ``commands``, where the session
    is or in the cell the run has seen least (``where`` decides; see ``_send_somewhere``)."""
    def send(self: SMTPConformance, command: Command, where: int) -> None:
        self._send_somewhere(command, None, where)
    send.__name__ = send.__qualname__ = name  # Hypothesis prints steps by this name
    return rule(command=commands, where=WHERE)(send)


def _verb_rule(verb: Verb) -> Callable[..., None]:
    """``send_<verb>``: mostly valid commands of ``verb``, sometimes malformed; a verb whose
    positive reply asks for data (DATA) draws a message too."""
    name = f"send_{verb.name.lower()}"
    if verb.data_reply is None:
        return _sends(name, _either(verb.name))

    def send(self: SMTPConformance, command: Command, message: Message, where: int) -> None:
        self._send_somewhere(command, message, where)
    send.__name__ = send.__qualname__ = name
    return rule(command=_either(verb.name), message=smtp.message_bodies(), where=WHERE)(send)


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
          ending=st.one_of(smtp.valid_commands(V.RSET), smtp.ehlo_commands(),
                           smtp.helo_commands()),
          probe=st.one_of(recipients, st.just(Command.of(V.DATA))))
    def transaction_interrupted(self: SMTPConformance, hello: Command, mail: Command,
                                recipients: list[Command], ending: Command,
                                probe: Command) -> None:
        self._interrupt_transaction(hello, mail, recipients, ending, probe)
    return transaction_interrupted


def _recipient_rules(domain: str) -> dict[str, Callable[..., None]]:
    """The rules that send RCPT (raw lines included), with every recipient in ``domain``."""
    recipients = smtp.rcpt_commands(domain=st.just(domain))
    malformed = smtp.malformed_commands(verb=V.RCPT, domain=domain)
    return {
        "send_rcpt": _sends("send_rcpt", _either(V.RCPT, recipients, malformed)),
        "send_raw_line": _sends("send_raw_line", smtp.raw_lines(domain=domain)),
        "transaction_complete": _complete_rule(recipients),
        "transaction_interrupted": _interrupt_rule(recipients),
    }


def _extension_rules(domain: str | None) -> dict[str, Callable[..., None]]:
    """The rules for what extensions add, with every recipient in ``domain`` if given."""
    recipients = st.just(domain) if domain else None

    @rule(commands=st.lists(ext.batched_commands(domain=recipients,
                                                 domain_name=domain or "example.test"),
                            min_size=1, max_size=4),
          ending=ext.batch_endings(), message=smtp.message_bodies(), where=WHERE)
    def send_pipelined(self: SMTPConformance, commands: list[Command], ending: Command | None,
                       message: Message, where: int) -> None:
        self._pipeline([*commands, *([ending] if ending else [])], message, where)

    @rule(mail=ext.mail_with_parameters(), recipient=ext.rcpt_with_parameters(domain=recipients),
          over_limit=st.booleans(), where=WHERE)
    def send_with_parameters(self: SMTPConformance, mail: Command, recipient: Command,
                             over_limit: bool, where: int) -> None:
        self._mail_parameters(mail, recipient, over_limit, where)

    @rule(injected=ext.injected_lines(domain=recipients),
          argument=st.sampled_from(["", "", "", "x"]), hello=smtp.ehlo_commands(), where=WHERE)
    def send_starttls(self: SMTPConformance, injected: bytes, argument: str, hello: Command,
                      where: int) -> None:
        self._starttls(injected, argument, hello, where)

    @rule(chunks=ext.chunks(), then_data=st.booleans(), message=smtp.message_bodies(),
          where=WHERE)
    def send_bdat(self: SMTPConformance, chunks: list[Command], then_data: bool,
                  message: Message, where: int) -> None:
        self._chunks(chunks, then_data, message, where)

    @rule(exchange=ext.auth_exchange_names(), twice=st.booleans(), where=WHERE)
    def send_auth(self: SMTPConformance, exchange: str, twice: bool, where: int) -> None:
        self._auth(exchange, twice, where)

    @rule(mail=st.one_of(ext.utf8_mail(asks=True), ext.utf8_mail(asks=False),
                         smtp.mail_commands()),
          recipient=ext.utf8_rcpt(domain=domain), where=WHERE)
    def send_utf8(self: SMTPConformance, mail: Command, recipient: Command, where: int) -> None:
        self._utf8(mail, recipient, where)

    rules = (send_pipelined, send_with_parameters, send_starttls, send_bdat, send_auth, send_utf8)
    return {rule_.__name__: rule_ for rule_ in rules}



@rule(recipient=st.sampled_from(RELAY_PROBES), where=WHERE)
def transaction_relayed(self: SMTPConformance, recipient: Command, where: int) -> None:
    """With --smtp-relay-check: a recipient at a domain the server is not the destination
    for (``relay_refused``). The session ends after it, whatever the reply: a relayed
    message is never sent."""
    if self.session.model.authenticated:
        self.session.close()  # an authenticated client may relay: it would prove nothing
    self._reach(State.MAIL, random.Random(where))
    if self.session.model.state is State.MAIL:
        self._send(recipient)
    self.session.close()


# End-of-data probes per non-standard ending, and command lines per kind of bare line break,
# in a run (each costs a wait: see CheckedSession.send_probe and _exchange's listen).
PROBES_PER_ENDING = PROBES_PER_KIND = 1


class SMTPConformance(ExtensionSteps, RuleBasedStateMachine):
    """Configure with ``configure(address, settings)``, then run with Hypothesis."""

    address: ClassVar[ServerAddress]

    def __init__(self) -> None:
        super().__init__()
        self.session = self.new_session()

    @classmethod
    def new_session(cls) -> CheckedSession:
        """A checked session of this run: its server, settings and shared state."""
        return CheckedSession(cls.address, cls.session_settings, cls.state)

    @initialize()
    def connect(self) -> None:
        self._open()

    def teardown(self) -> None:
        self.session.close()

    def send(self, command: Command, message: Message | None = None) -> Reply | None:
        """For a rule of your own, in a subclass: send ``command`` as the machine's rules do
        (connecting first where the last session ended; after a 354, ``message``, or without
        one the session ends), the reply checked and recorded. The reply, or None."""
        return self._send(command, message)

    # --- one rule per seed verb (the vocabulary's SEED_VERBS; a test holds the list to it) ------

    send_helo = _verb_rule(VERBS[V.HELO])
    send_ehlo = _verb_rule(VERBS[V.EHLO])
    send_mail = _verb_rule(VERBS[V.MAIL])
    send_rcpt = _verb_rule(VERBS[V.RCPT])
    send_data = _verb_rule(VERBS[V.DATA])
    send_rset = _verb_rule(VERBS[V.RSET])
    send_send = _verb_rule(VERBS[V.SEND])
    send_soml = _verb_rule(VERBS[V.SOML])
    send_saml = _verb_rule(VERBS[V.SAML])
    send_vrfy = _verb_rule(VERBS[V.VRFY])
    send_expn = _verb_rule(VERBS[V.EXPN])
    send_help = _verb_rule(VERBS[V.HELP])
    send_noop = _verb_rule(VERBS[V.NOOP])
    send_quit = _verb_rule(VERBS[V.QUIT])
    send_turn = _verb_rule(VERBS[V.TURN])
    send_raw_line = _sends("send_raw_line", smtp.raw_lines())

    # --- what the extensions add (rebuilt by ``configure`` for a recipient domain) -----------

    # (in the factory's order; a test checks that each name is its rule's)
    send_pipelined, send_with_parameters, send_starttls, send_bdat, send_auth, send_utf8 = \
        _extension_rules(None).values()

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
            self._send(Command.of(V.DATA), message)

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

    @rule(command=smtp.bare_line_break_commands())
    def send_bare_line_break(self, command: Command) -> None:
        """A command line holding a bare LF or CR, where the session is: once per kind in a
        run (each costs a wait for a second reply: see ``CheckedSession.send``)."""
        kind = command.bare_line_break or ""
        if self.exploration.line_probes[kind] < PROBES_PER_KIND:
            self.exploration.line_probes[kind] += 1
            self._send(command)

    @rule(probe=smtp.data_probes(), where=WHERE)
    def transaction_probed(self, probe: DataProbe, where: int) -> None:
        self._probe_end_of_data(probe, where)

    def _probe_end_of_data(self, probe: DataProbe, where: int) -> None:
        """A transaction whose data holds a non-standard end of data and a command after it
        (SMTP smuggling: see ``CheckedSession.send_probe``). Each ending is sent
        PROBES_PER_ENDING times in a run: the drawn one, or once it has been, the one sent
        least; then none."""
        sent = self.exploration.probes
        if sent[probe.ending] >= PROBES_PER_ENDING:
            fewest = min(NON_STANDARD_ENDINGS, key=lambda ending: sent[ending])
            if sent[fewest] >= PROBES_PER_ENDING:
                return
            probe = DataProbe(fewest, probe.smuggled)
        choose = random.Random(where)
        self._reach(State.RCPT, choose)
        if self.session.model.state is not State.RCPT:
            return
        try:
            self.session.send(self.exploration.valid(V.DATA, choose))
            after = self.session.model  # (a new Session: the send moved it)
            if after.state is State.DATA:
                sent[probe.ending] += 1
                self.session.send_probe(probe)
        except StopRun as stop:
            raise self._stop(stop) from None








def explore(machine: type[SMTPConformance], hypothesis_settings: settings) -> None:
    """Run ``machine`` (from ``configure``) with Hypothesis. What stops a run (``StopRun``,
    ``TargetLost``) comes out as itself, even where Hypothesis objects that a session ended
    at a point where an earlier one went on: a steered run's commands depend on what it has
    seen, so the same draws need not end the same way."""
    try:
        run_state_machine_as_test(machine, settings=hypothesis_settings)
    except FlakyStrategyDefinition:
        if machine.exploration.stopped is None:
            raise
        raise machine.exploration.stopped from None


def configure(address: ServerAddress, settings: SessionSettings, *,
              record: RunRecord | None = None, activity: Activity | None = None,
              seed: int | None = None,
              deadline: float = float("inf")) -> type[SMTPConformance]:
    """A state machine class bound to one server and the settings of its sessions, which
    record into ``record`` and say what they are doing in ``activity`` (for a status line;
    each by default new); ``seed``: Hypothesis's; ``deadline`` (``time.monotonic()``) ends
    its exploration. The settings' recipient domain and relay check decide the rules that
    draw recipients."""
    domain = settings.rcpt_domain
    return type("SMTPConformance", (SMTPConformance,), {
        "address": address, "session_settings": settings, "deadline": deadline,
        "state": RunState.of(settings, record, activity),
        # Read by Hypothesis, as @seed(...) would set it: the same seed, the same draws (and,
        # from a server that answers alike and in time, the same sessions).
        "_hypothesis_internal_use_seed": seed,
        **(_recipient_rules(domain) if domain else {}),
        **(_extension_rules(domain) if domain else {}),
        **({"transaction_relayed": transaction_relayed} if settings.relay_check else {}),
        "exploration": Exploration(domain),
    })
