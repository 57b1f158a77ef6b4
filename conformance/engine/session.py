"""A checked session: the client, the model and the checks, together, without Hypothesis.

Every command goes out through ``send`` (``send_batch``: several in one write; ``starttls``:
STARTTLS, then the TLS upgrade); its reply is checked against the profile and the model's
state, every finding is recorded (never raised), then the model advances from what the
server actually said. ``Adaptation`` keeps a slow or hanging server from slowing the run
(``pacing``); the probes beside the commands are ``probes``', pipelined batches ``batch``'.
"""

from __future__ import annotations

import dataclasses
import ssl
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from conformance.checks import (
    LEVEL_ORDER,
    Exchange,
    Finding,
    fold,
    refuted_checks,
    run_checks,
)
from conformance.engine import batch, probes
from conformance.engine.address import ServerAddress
from conformance.engine.client import (
    SMTPClient,
    Upgrade,
    check_tls_arguments,
)
from conformance.engine.pacing import Activity, Adaptation, Pacer
from conformance.engine.record import FindingRecord, RunRecord, records_for
from conformance.engine.sending import not_sendable, repeat_key
from conformance.engine.settings import SessionSettings
from conformance.protocol.commands import Command, DataProbe, Message, Sent, Step
from conformance.protocol.credentials import WRONG
from conformance.protocol.errors import (
    ClosedBeforeSent,
    ReplyTimeout,
    ServerError,
    StopRun,
    TLSHandshakeFailed,
)
from conformance.protocol.model import Session, State, advance, closed, is_positive, upgraded
from conformance.protocol.replies import Reply
from conformance.protocol.tables import (
    AUTH_CHALLENGE,
    CLOSING,
    NO_MAIL_HERE,
    SERVICE_NOT_AVAILABLE,
    SERVICE_READY,
)
from conformance.protocol.vocabulary import END_OF_DATA, GREETING, UPGRADING_VERBS, V

# The checks that judge a close the server made unasked (see ``CheckedSession._closed_after``).
CLOSE_CHECKS = frozenset({"no_silent_close"})
# How long a session that a deviation ends waits for the server's own close first (seconds):
# a server closing after its reply does so at once, and its end of stream follows the reply
# within a millisecond on loopback.
CLOSE_GRACE = 0.02


def _raises(error: ServerError) -> Callable[[], Reply]:
    """An exchange's I/O that already failed with ``error``."""
    def fail() -> Reply:
        raise error
    return fail


@dataclass
class RunState:
    """What the sessions of a run share and keep up to date: the record of what they found,
    the pacing, what they learned of the server's timing, the exchanges per (state, group)
    (for whoever steers them; the record's coverage may be shared with other runs), and what
    they are doing now (a status line reads it)."""

    record: RunRecord = field(default_factory=RunRecord)
    pacer: Pacer = field(default_factory=Pacer)
    adaptation: Adaptation = field(default_factory=Adaptation)
    cells: Counter[tuple[str, str]] = field(default_factory=Counter)
    activity: Activity = field(default_factory=Activity)

    @classmethod
    def of(cls, settings: SessionSettings, record: RunRecord | None = None,
           activity: Activity | None = None) -> RunState:
        """A run's new state: paced at the settings' rate, its record and activity given or
        new."""
        return cls(record=record if record is not None else RunRecord(),
                   pacer=Pacer(settings.rate),
                   activity=activity if activity is not None else Activity())


class CheckedSession:
    """Sessions with one server, one after another (``connect`` starts the next), set to
    ``settings``, sharing ``state`` with the run's other sessions (by default a state of
    their own)."""

    def __init__(self, address: ServerAddress, settings: SessionSettings,
                 state: RunState | None = None) -> None:
        self.address = address
        self.settings = settings
        self.profile = settings.profile
        self.state = state = state if state is not None else RunState.of(settings)
        self.record, self.pacer, self.adaptation = state.record, state.pacer, state.adaptation
        self.cells, self.activity = state.cells, state.activity
        self.model = Session()
        # What fills the placeholders of AUTH commands, on the wire only (see credentials):
        # the settings' credentials during an AUTH exchange where AUTH is offered, else
        # wrong ones.
        self.credentials = settings.credentials if settings.credentials is not None else WRONG
        self.filling = WRONG
        self.client = self._new_client()
        self.steps: list[Step] = []  # this session's, since the last connect
        self.findings: list[Finding] = []  # this session's, newest last
        self.noted: list[FindingRecord] = []  # their records, as the run's record got them
        self.last_reply_time = 0.0  # seconds the session's last reply took (see _probe_wait)
        self.last_reply: Reply | None = None  # to the last exchange (None: none came)
        # Commands this session had taken (state, line in upper case), of the verbs that
        # leave the state as it is: the same one refused later is a limit on the session.
        self.taken: set[tuple[State, bytes]] = set()
        # The session's last exchange that had a reply: a close found before the next command
        # was sent is judged on it (``_closed_after``).
        self.last_exchange: Exchange | None = None
        self.last_findings: list[Finding] = []  # its findings, and their records
        self.last_noted: list[FindingRecord] = []
        self.upgrade: Upgrade | None = None  # this session's TLS upgrade, if any
        self.tls_failure: TLSHandshakeFailed | None = None  # this session's failed one
        # A deviation whose effect on the state is unknown ends the session (``note``); a
        # learner, which must see what the server does next, sets this False.
        self.ends_on_deviation = True

    @property
    def timeout(self) -> float:
        return self.settings.timeout

    def _new_client(self) -> SMTPClient:
        """A client whose transcript and replies never show the credentials, even when the
        server echoes them."""
        client = SMTPClient(self.address, timeout=self.timeout)
        client.secrets = self.credentials.encoded()
        return client

    @property
    def transcript(self) -> str:
        return self.client.transcript.render()

    def connect(self) -> Reply | None:
        self.client.close()
        self.client = self._new_client()
        self.model = Session()
        self.steps = []
        self.findings, self.noted = [], []
        self.upgrade, self.tls_failure = None, None
        self.last_reply_time = 0.0
        self.last_exchange = None
        self.taken = set()
        greeting = self.checked_exchange(GREETING, None, lambda: self.client.connect(
            greeting_timeout=self.settings.reply_limit))
        if greeting is None and any(f.check.timing for f in self.findings):
            raise StopRun(f"the server did not greet within {self.settings.reply_limit:g}s:"
                          f" nothing more can be tested")
        return greeting

    def ensure_open(self, commands: int = 1) -> None:
        """Reconnect if the last session ended, or if ``commands`` more would take it past
        as many commands as the run's adaptation allows."""
        if not self.model.open or not self.has_room(commands):
            self.close()
            self.connect()

    def has_room(self, commands: int) -> bool:
        """Whether this session may have ``commands`` more (see Adaptation)."""
        cap = self.adaptation.max_commands
        return cap is None or len(self.steps) + commands <= max(cap, commands)

    def send(self, command: Command) -> Reply | None:
        """Send ``command`` (reconnecting first if needed) and check the reply; then, if the
        reply calls for it, a control probe. None: no reply (or not sent: see Adaptation)."""
        self.ensure_open()
        if not self.model.open:
            return None  # the greeting was refused or broken
        if command.group in self.adaptation.unanswered:
            return None
        if (why := not_sendable(command, self.model)) is not None:
            self.record.remark(f"not sent: {why}")
            return None
        self.steps.append(Step.of(command))
        first = reply = self.checked_exchange(command.group, command,
                                              lambda: self._command(command.line),
                                              listen=command.bare_line_break is not None)
        if command.bare_line_break is not None:
            self.close()  # a second reply later than the listen must not answer another
            return first
        if command.group in UPGRADING_VERBS and reply is not None and \
                reply.code == SERVICE_READY:
            self.close()  # the server now awaits a TLS handshake that starttls() alone does
            return first
        # At most two probes ("noop x" refused, then "NOOP x", then "NOOP"). They are not
        # steps of their own: a replay of the steps sends them again where they are due.
        for _ in range(2):
            if reply is None or not self.settings.probes or not self.model.open or \
                    self.model.state is State.DATA or \
                    (probe := probes.control_probe(command, reply)) is None:
                break
            reply = self.checked_exchange(probe.group, probe, lambda: self._command(probe.line),
                                          variant_of=(command, reply))
            command = probe
        return first

    def send_message(self, message: Message) -> Reply | None:
        """After a 354: the message data and its terminating <CRLF>.<CRLF> (in safe mode,
        nothing: the connection is closed instead)."""
        if not self.settings.deliver or END_OF_DATA in self.adaptation.unanswered:
            self.close()
            return None
        self.steps.append(Step.of(message))
        return self.checked_exchange(END_OF_DATA, message, lambda: self._command(message.wire))

    def send_batch(self, commands: Sequence[Command]) -> list[Reply | None]:
        """``commands`` in one write (RFC 2920), each reply an exchange (``batch.send_batch``)."""
        return batch.send_batch(self, commands)

    def send_probe(self, probe: DataProbe) -> Reply | None:
        """After a 354: an end-of-data probe (``probes.send_data_probe``); the session ends."""
        return probes.send_data_probe(self, probe)

    def starttls(self, context: ssl.SSLContext, server_hostname: str | None = None, *,
                 inject: bytes = b"") -> Upgrade | None:
        """STARTTLS, checked as an exchange of its own; on 220, the TLS handshake (a step of
        its own, bounded by the timeout), after which the model starts over in INIT with
        nothing carried over (RFC 3207 §4.2: EHLO comes next). None: no upgrade (STARTTLS
        refused or unanswered, or the handshake failed: the session then ends, and the
        failure is in the transcript, ``tls_failure`` and the run's notes).

        ``inject``: command lines sent in plaintext in the same write, after STARTTLS. The
        server must drop them; after the handshake the session listens ``INJECTION_WAIT``
        for a reply to them before it says anything (``starttls_discards_plaintext``); once
        the server has dropped them ``INJECTION_PROBES`` times in the run, none are sent."""
        check_tls_arguments(context, server_hostname)  # before STARTTLS, not after its 220
        self.ensure_open()
        if self.client.tls:  # no second upgrade: a 220 now ends the session (see send)
            self.send(Command(b"STARTTLS\r\n"))
            return None
        if self.adaptation.injections_dropped >= probes.INJECTION_PROBES:
            inject = b""  # the server has shown it drops them
        plain = Command(b"STARTTLS\r\n")
        command = Command(plain.line + inject, group=plain.group)
        if not self.model.open or command.group in self.adaptation.unanswered:
            return None
        self.steps.append(Step.of(command))
        reply = self.checked_exchange(command.group, command, lambda: self._command(command.line))
        if reply is None or reply.code != SERVICE_READY or not self.client.connected:
            return None
        self.steps.append(Step.tls(server_hostname))
        try:
            self.upgrade = self.client.starttls(context, server_hostname, timeout=self.timeout)
        except TLSHandshakeFailed as failure:
            self.tls_failure = failure
            self.record.remark(f"after 220 to STARTTLS, {failure}")
            if isinstance(failure, ReplyTimeout):  # the server's side of it never came: the
                # 220 promised a handshake, so STARTTLS went unanswered (and is not sent again;
                # judged as STARTTLS itself, not as the probe of injected lines it carried)
                self.checked_exchange(plain.group, plain, _raises(failure), adapt=False)
                self.adaptation.unanswered |= {command.group}
            self.close()
            return None
        if self.upgrade.plaintext_waiting:
            self.record.remark(f"after 220 to STARTTLS, {len(self.upgrade.plaintext_waiting)} "
                               f"octet(s) of plaintext were waiting, discarded before TLS")
        self.model = upgraded(self.model)
        self.record.exercised["TLS upgrades"] += 1
        if inject:
            self.record.exercised["TLS upgrades after injected plaintext"] += 1
            probes.listen_after_upgrade(self, command)
            # An answer to the injected lines later than the listen would be read as the
            # reply to the next command: the session ends here.
            self.close()
        return self.upgrade

    def authenticate(self, command: Command, responses: Sequence[Command]) -> Reply | None:
        """AUTH (RFC 4954 §4): ``command``, then each of ``responses`` while the server
        challenges (334), each an exchange of the AUTH group; an exchange still open when
        they run out is cancelled with ``*``. The last reply (None: none)."""
        # The run's credentials only where this session's EHLO offered AUTH: never to a
        # server that did not ask for them (after HELO, before a STARTTLS it requires).
        self.filling = self.credentials if "AUTH" in self.model.extensions else WRONG
        try:
            reply = self.send(command)
            for response in (*responses, Command(b"*\r\n", group=command.group)):
                if reply is None or reply.code != AUTH_CHALLENGE or not self.model.open:
                    break
                self.steps.append(Step.of(response))
                reply = self.checked_exchange(response.group, response, self.sends(response.line))
        finally:
            self.filling = WRONG
        return reply

    def close(self) -> None:
        """End the session. Where the server had closed it already, after a reply that had
        findings, the close is judged on that reply first."""
        last, findings, records = self.last_exchange, self.last_findings, self.last_noted
        self.last_exchange, self.last_findings, self.last_noted = None, [], []
        if last is not None and findings and self.client.connected and \
                self._peer_closes_after(last):
            self._judge_close(last, findings, records)
        self.client.close()
        self.model = closed(self.model)

    def sends(self, data: bytes) -> Callable[[], Reply]:
        return lambda: self._command(data)

    def _command(self, data: bytes) -> Reply:
        self.client.send(self.filling.fill(data), shown=data)
        return self.client.read_reply(timeout=self.settings.reply_limit)

    def checked_exchange(self, group: str, sent: Sent | None, io: Callable[[], Reply],
                  *, variant_of: tuple[Command, Reply] | None = None,
                  adapt: bool = True, batch: tuple[int, int] | None = None,
                  listen: bool = False) -> Reply | None:
        """One exchange, checked and recorded. ``adapt``: what it shows of the server's
        timing counts (not for a batch's commands after a missing reply: they were not
        waited for on their own). ``batch``: the command's place in its batch, and how many
        before it were answered. ``listen``: after the reply, wait for a second one, which
        must not come (a command line holding a bare CR or LF: ``unsolicited``)."""
        self.pacer.wait()
        before = self.model
        reply: Reply | None = None
        error: ServerError | None = None
        started = time.monotonic()
        activity = self.activity  # read by a status line's thread: ``waiting`` goes last
        activity.wait_limit, activity.wait_started = self.settings.reply_limit, started
        activity.waiting = group
        try:
            reply = io()
        except ClosedBeforeSent:
            self._closed_after()
            return None
        except ServerError as failure:
            error = failure
        finally:
            activity.waiting = None
        self.last_reply = reply
        activity.exchanges += 1
        activity.sessions += group == GREETING
        elapsed = time.monotonic() - started
        if reply is not None:
            self.last_reply_time = elapsed
        second = probes.second_reply(self, probes.probe_wait(self)) \
            if listen and reply is not None else None
        late = elapsed if reply is not None and elapsed > self.timeout else None
        closed_after = None
        if reply is not None and (reply.code == SERVICE_NOT_AVAILABLE or
                                  (group == V.QUIT and reply.code == CLOSING)):
            closed_after, close_late = self._wait_for_close()
            late = late or close_late
        # A close right after a reply that is not 221 to QUIT or 421 is judged on that reply.
        closed_unasked = reply is not None and closed_after is None and batch is None and \
            not listen and self.client.connected and self.client.peer_closed()
        if reply is not None and group == V.QUIT and reply.first_digit == 2 and \
                closed_after is None and batch is None and not closed_unasked and \
                not self.adaptation.skip_close_wait and self.client.connected:
            # Another positive reply to QUIT (250, say) ends the session as 221 does: the
            # close that comes with it is waited for, to be judged on that reply.
            closed_unasked = self.client.wait_for_close(timeout=self.timeout, quiet=True)
        self.record.coverage[(before.state.name, group, reply.code if reply else 0)] += 1
        self.cells[(before.state.name, group)] += 1
        repeat = repeat_key(sent, before)
        exchange = Exchange(self.profile, before, group, sent, reply, error, closed_after,
                            late=late, timeout=self.timeout, variant_of=variant_of,
                            batch=batch, unsolicited=second, closed_unasked=closed_unasked,
                            taken_before=repeat is not None and repeat in self.taken)
        if repeat is not None and reply is not None and is_positive(group, reply.code):
            self.taken.add(repeat)
        if reply is not None:
            self.last_exchange, self.last_findings, self.last_noted = exchange, [], []
        findings = run_checks(exchange)
        for check_id in refuted_checks(exchange):
            self.record.refuted.add((check_id, group))
        if reply is not None:
            command = sent if isinstance(sent, Command) else None
            self.model = advance(before, group, reply.code, lines=reply.lines,
                                 last_chunk=command is not None and command.last_chunk,
                                 smtputf8=command is not None and
                                 "SMTPUTF8" in command.parameters)
            if group == V.EHLO and self.model.extensions is not before.extensions:
                self.record.advertised.update(
                    {k: " ".join(v) for k, v in self.model.extensions.keywords.items()})
        if error is not None or closed_after is not None or closed_unasked or \
                self.model.state is State.CLOSED:
            self.close()
        if adapt:
            self.adaptation.learn(exchange, elapsed, commands_before=len(self.steps) - 1,
                                  record=self.record, timeout=self.timeout)
        noted = self.note(findings, exchange)
        if reply is not None:
            self.last_findings, self.last_noted = findings, noted
        if adapt and self.adaptation.answers_nothing:
            raise StopRun(f"the server answered none of {len(self.adaptation.unanswered)} "
                          f"different commands within {self.settings.reply_limit:g}s: "
                          f"nothing more can be tested")
        return reply

    def _end_after(self, exchange: Exchange, findings: Sequence[Finding],
                   records: Sequence[FindingRecord]) -> None:
        """End the session after a deviation whose effect on the state is not known. A server
        that closes after such a reply (a refusal, or 221 to another command than QUIT) does
        so at once: waited for (``_peer_closes_after``), so that the close is judged on this
        reply, as when the next command finds it."""
        if exchange.batch is None and not exchange.closed_unasked and \
                self.client.connected and self._peer_closes_after(exchange):
            self.last_exchange = None  # judged here, not again by close()
            self._judge_close(exchange, findings, records)
        self.close()

    def _peer_closes_after(self, exchange: Exchange) -> bool:
        """Whether the server closed the connection after its reply in ``exchange``: waited
        for after a refusal or a 221 (CLOSE_GRACE; after 521, "no mail here", RFC 7504, which
        servers follow with a close, up to the timeout); else only if it has already."""
        reply = exchange.reply
        if reply is None or (reply.first_digit not in (4, 5) and reply.code != CLOSING):
            return self.client.peer_closed()
        wait = self.timeout if reply.code == NO_MAIL_HERE else CLOSE_GRACE
        return self.client.wait_for_close(timeout=wait, quiet=True)

    def _closed_after(self) -> None:
        """The server closed the connection after its last reply, which the client read, and
        before the next command was sent (which was not): the close is judged on that reply
        (``no_silent_close``). The command stays a step of the session, so that a replay
        finds the close where the run did."""
        last, findings, records = self.last_exchange, self.last_findings, self.last_noted
        self.last_exchange = None  # judged here, not again by close()
        self.close()
        if last is not None:
            self._judge_close(last, findings, records)

    def _judge_close(self, exchange: Exchange, findings: Sequence[Finding],
                     records: Sequence[FindingRecord]) -> None:
        """``exchange`` again, now that the server is known to have closed after its reply:
        the close is the behaviour, and what was found on the reply goes with it."""
        if exchange.closed_unasked:
            return
        judged = dataclasses.replace(exchange, closed_unasked=True)
        closing = run_checks(judged, only=CLOSE_CHECKS)
        if not closing:
            return
        for record in records:
            self.record.withdraw(record)
        self.note(fold(sorted([*closing, *findings], key=lambda f: LEVEL_ORDER[f.level])),
                   judged)

    def _wait_for_close(self) -> tuple[bool | None, float | None]:
        """Whether the server closed after 221/421, and how late, if later than the timeout
        (None, None: not waited for, see Adaptation)."""
        if self.adaptation.skip_close_wait:
            return None, None
        started = time.monotonic()
        closed_now = self.client.wait_for_close(timeout=self.settings.reply_limit)
        elapsed = time.monotonic() - started
        return closed_now, elapsed if closed_now and elapsed > self.timeout else None

    def note(self, findings: list[Finding], exchange: Exchange) -> list[FindingRecord]:
        """Record every finding, graded. A deviation whose effect on the state the model
        cannot know ends the session (the state machine reconnects): its consequences would
        be reported as findings of their own. One whose effect is known (an undocumented code
        of a documented class that moves nothing, such as 252 to VRFY under seed) lets the
        session go on, so a server's deviations do not keep its sessions short. Being
        baselined is not enough: Postfix's baselined 221 to a non-command also closes the
        connection."""
        if not findings:
            return []
        self.findings += findings
        records = records_for(findings, exchange, self.transcript, self.settings.policy,
                              self.steps)
        for record in records:
            self.record.note(record)
        self.noted += records
        definite = [f for f in findings if f.check.refuted_by is None]
        if self.ends_on_deviation and any(
                f.check.state_known is None or not f.check.state_known(exchange)
                for f in definite):
            self._end_after(exchange, findings, records)
        if any(f.check.explained_by for f in findings) and \
                not self.adaptation.reset_controlled:
            probes.control_reset(self, exchange)
        policy = self.settings.policy
        if self.settings.fail_fast and any(policy.fails(policy.verdict(f, exchange))
                                           for f in definite):
            raise StopRun("fail-fast: stopped at the first failing finding")
        return records
