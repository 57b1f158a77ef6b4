"""A checked session: the client, the model and the checks, together, without Hypothesis.

Every command goes out through ``send`` (``send_batch``: several in one write; ``starttls``:
STARTTLS, then the TLS upgrade); its reply is checked against the profile and the model's
state, every finding is recorded (never raised), then the model advances from what the
server actually said. ``Adaptation`` keeps a slow or hanging server from slowing the run.
"""

from __future__ import annotations

import dataclasses
import ssl
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from conformance.checks import (
    LEVEL_ORDER,
    Exchange,
    Finding,
    fold,
    refuted_checks,
    run_checks,
)
from conformance.checks.grading import Policy
from conformance.engine.address import ServerAddress
from conformance.engine.client import (
    DEFAULT_TIMEOUT,
    MAX_PIPELINE,
    SMTPClient,
    Upgrade,
    check_tls_arguments,
)
from conformance.engine.record import FindingRecord, RunRecord, records_for
from conformance.protocol.commands import Command, DataProbe, Message, Sent, Step, describe
from conformance.protocol.credentials import WRONG, Credentials
from conformance.protocol.errors import (
    ClosedBeforeSent,
    ReplyTimeout,
    ServerError,
    StopRun,
    TLSHandshakeFailed,
    UsageError,
)
from conformance.protocol.model import Session, State, advance, closed, is_positive, upgraded
from conformance.protocol.replies import Reply
from conformance.protocol.tables import (
    AUTH_CHALLENGE,
    CLOSING,
    COMMAND_UNRECOGNISED,
    NO_MAIL_HERE,
    NOT_IMPLEMENTED,
    SERVICE_NOT_AVAILABLE,
    SERVICE_READY,
    Profile,
)
from conformance.protocol.vocabulary import END_OF_DATA, GREETING, UPGRADING_VERBS, VERBS

# The checks that judge a close the server made unasked (see ``CheckedSession._closed_after``).
CLOSE_CHECKS = frozenset({"no_silent_close"})
# How long a session that a deviation ends waits for the server's own close first (seconds):
# a server closing after its reply does so at once, and its end of stream follows the reply
# within a millisecond on loopback.
CLOSE_GRACE = 0.02

# How much longer than the timeout a command may go unanswered before it counts as never
# answered (a MUST finding) rather than late (a SHOULD finding). RFC 5321 §4.5.3.2 gives a
# client minutes; a run cannot wait that long for every command.
HANG_FACTOR = 6
# Refusals (5yz) a run's session takes before the run starts a new one: a server may slow
# down or give up on a client that errs (RFC 5321 §7.8; Postfix sleeps a second per reply
# after ten errors), and a slowdown the suite's own errors set off is no finding.
ERRORS_PER_SESSION = 5


# EHLO, MAIL, two RCPTs, DATA and its message: a session the run caps for replies that are
# slow but in time still has room for a whole transaction.
COMMANDS_FOR_A_TRANSACTION = 6
# Command groups left unanswered, with none ever answered, after which a run stops.
SILENT_AFTER = 2


class Pacer:
    """At most ``rate`` commands (connections count too) per second, for production servers;
    ``None``: as fast as the server answers. One pacer may serve many sessions."""

    def __init__(self, rate: float | None = None, *,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.interval = 1 / rate if rate else 0.0
        self.clock, self.sleep = clock, sleep
        self.next_due = float("-inf")

    def wait(self) -> None:
        if not self.interval:
            return
        now = self.clock()
        if now < self.next_due:
            self.sleep(self.next_due - now)
            now = self.next_due
        self.next_due = now + self.interval


@dataclass
class Activity:
    """What a run's sessions are doing, for a status line that reads it while they do it
    (``conformance.output.progress``): sessions opened, exchanges made, and the reply awaited now
    (``waiting``: its command group; None when none is)."""

    sessions: int = 0
    exchanges: int = 0
    waiting: str | None = None
    wait_limit: float = 0.0  # seconds the reply may take before it counts as none
    wait_started: float = 0.0  # time.monotonic() when the wait began


@dataclass
class Adaptation:
    """What one run has learnt about the server's timing, shared by all its sessions, so that
    each slow behaviour costs its wait once: a tarpit (replies slow down after some commands)
    caps the commands per session; a command never answered is not sent again; a server that
    keeps the connection open after 221/421 is not waited for again."""

    max_commands: int | None = None  # per session; None: no cap
    slowest_data_reply: float = 0.0  # seconds, the slowest reply to the end of data so far
    injections_dropped: int = 0  # STARTTLS injection probes the server passed (see starttls)
    unanswered: frozenset[str] = frozenset()  # command groups never sent again
    skip_close_wait: bool = False
    # A state fault blamed on a reset was checked against the same command in a session with
    # no transaction ever opened (``CheckedSession._control_reset``): once per run.
    reset_controlled: bool = False
    answered: bool = False  # some command (not the greeting) has had a reply
    # Groups that went unanswered once although answered before in the run: a tarpit's
    # sessions were capped instead; a second time, the group is not sent again.
    hung_once: frozenset[str] = frozenset()

    @property
    def answers_nothing(self) -> bool:
        """No command has had a reply, and commands of several groups went unanswered: the
        server answers nothing (waiting for each group in turn would only cost time)."""
        return not self.answered and len(self.unanswered) >= SILENT_AFTER

    def cap(self, commands_before: int, record: RunRecord, why: str, *,
            floor: int = 1) -> None:
        cap = max(commands_before, floor)
        if self.max_commands is None or cap < self.max_commands:
            self.max_commands = cap
            record.remark(f"{why}: sessions were kept to {cap} command(s) from then on")


def _raises(error: ServerError) -> Callable[[], Reply]:
    """An exchange's I/O that already failed with ``error``."""
    def fail() -> Reply:
        raise error
    return fail


# A NOOP whose parameter is short: the control for a NOOP line of over LONG_LINE octets
# refused (is it the length, RFC 5321 §4.5.3.1.4, or the parameter at all, §4.1.1.9?).
SHORT_NOOP = Command(b"NOOP x\r\n")
LONG_LINE = 256


def control_probe(command: Command, reply: Reply) -> Command | None:
    """The plain form of a refused valid command, sent next in the same state, so a check can
    tell what the refusal was about: the verb in upper case (RFC 5321 §2.4), NOOP with a
    short parameter after a longer one, or NOOP without its parameter (§4.1.1.9)."""
    if not command.valid or (reply.code not in (COMMAND_UNRECOGNISED, NOT_IMPLEMENTED) and \
            not (command.group == "NOOP" and not is_positive("NOOP", reply.code))):
        return None
    verb_as_sent = command.verb_as_sent
    if verb_as_sent != command.verb:
        return Command(command.verb.encode() + command.line[len(verb_as_sent):])
    if command.group == "NOOP" and len(command.line) > LONG_LINE:
        return SHORT_NOOP
    if command.group == "NOOP" and command.line.rstrip(b"\r\n") != b"NOOP":
        return Command(b"NOOP\r\n")
    return None


# How long, after a TLS handshake that followed lines injected after STARTTLS, the session
# listens for a reply to them (a server that runs them answers at once); and how many such
# probes a run makes once the server has dropped the injected lines every time (each costs
# the wait).
INJECTION_WAIT = 0.2
INJECTION_PROBES = 5
# How long a session listens for a reply that must not come (to an end-of-data probe's data
# before its real end; a second one to a command line holding a bare CR or LF): at least
# PROBE_WAIT, and PROBE_WAIT_FACTOR times the run's slowest reply to the end of data so far
# (a server answers an ending it takes as soon as it has queued the message); never longer
# than the timeout.
PROBE_WAIT, PROBE_WAIT_FACTOR = 0.1, 4


def check_batch(commands: Sequence[Command]) -> None:
    """Raise UsageError for a batch the session cannot send: too long, STARTTLS in it, or a
    verb that may only end a batch before its end."""
    if len(commands) > MAX_PIPELINE:
        raise UsageError(f"at most {MAX_PIPELINE} commands in one batch")
    for index, command in enumerate(commands):
        if command.group in UPGRADING_VERBS:
            raise UsageError(f"{command.group} is never sent in a batch: use starttls()")
        verb = VERBS.get(command.group)
        if verb is not None and verb.ends_batch and index != len(commands) - 1:
            raise UsageError(f"{command.group} can only end a batch (RFC 2920 §3.1)")


def not_sendable(command: Command, model: Session) -> str | None:
    """Why no client sends ``command`` on its own in the state ``model``, or None: an answer
    to an AUTH challenge outside its exchange (``authenticate`` sends those, RFC 4954 §4), or
    data after an extension's command (BDAT's chunk) where that extension was not advertised
    (RFC 3030 §2: a server that does not know BDAT reads the data as commands). A replay of
    a session shortened past what made them legal skips them."""
    if command.answers_challenge:
        return f"{describe(command)}: an answer to an {command.group} challenge"
    verb = VERBS.get(command.group)
    extension = verb.extension if verb is not None else None
    if extension is not None and command.line.partition(b"\r\n")[2] and \
            extension not in model.extensions:
        return f"{command.first_line!r} and what follows it: {extension} was not advertised"
    return None


class _BatchIO:
    """The I/O of each exchange of a batch: the first writes every command at once and reads
    its reply; each next one reads its own. Once a reply is missing, every later command of
    the batch gets the same error, without waiting again."""

    def __init__(self, client: SMTPClient, data: bytes, timeout: float) -> None:
        self.client, self.data, self.timeout = client, data, timeout
        self.written = False
        self.error: ServerError | None = None

    def __call__(self) -> Reply:
        if self.error is not None:
            raise self.error
        try:
            if not self.written:
                self.written = True
                self.client.send(self.data)
            return self.client.read_reply(timeout=self.timeout)
        except ServerError as error:
            self.error = error
            raise


class CheckedSession:
    def __init__(self, address: ServerAddress, profile: Profile, *,
                 timeout: float = DEFAULT_TIMEOUT,
                 hang_wait: float | None = None, policy: Policy | None = None,
                 record: RunRecord | None = None, deliver: bool = True,
                 pacer: Pacer | None = None, adaptation: Adaptation | None = None,
                 probes: bool = True, fail_fast: bool = False,
                 cells: Counter[tuple[str, str]] | None = None,
                 credentials: Credentials | None = None,
                 activity: Activity | None = None) -> None:
        self.address = address
        self.profile = profile
        self.timeout = timeout
        # After the timeout, how much longer to wait before a reply counts as never coming.
        self.hang_wait = hang_wait if hang_wait is not None else timeout * (HANG_FACTOR - 1)
        self.model = Session()
        self.policy = policy if policy is not None else Policy()
        self.record = record if record is not None else RunRecord()
        # What fills the placeholders of AUTH commands, on the wire only (see credentials):
        # ``credentials`` during an AUTH exchange where AUTH is offered, else wrong ones.
        self.credentials = credentials if credentials is not None else WRONG
        self.filling = WRONG
        self.client = self._new_client()
        self.steps: list[Step] = []  # this session's, since the last connect
        # False: safe mode. A message is never completed: after the 354 the connection is
        # closed instead of sending the data, so the server aborts the transaction (§4.1.1.4)
        # and nothing is delivered.
        self.deliver = deliver
        self.pacer = pacer if pacer is not None else Pacer()
        self.adaptation = adaptation if adaptation is not None else Adaptation()
        self.probes = probes  # send control probes after refused commands
        self.fail_fast = fail_fast  # stop the run (StopRun) at the first failing finding
        self.findings: list[Finding] = []  # this session's, newest last
        # Exchanges per (state, group), for whoever steers the sessions (the state machine);
        # the record's coverage may be shared with other runs.
        self.cells = cells if cells is not None else Counter()
        self.activity = activity if activity is not None else Activity()
        self.last_reply_time = 0.0  # seconds the session's last reply took (see _probe_wait)
        # The session's last exchange that had a reply: a close found before the next command
        # was sent is judged on it (``_closed_after``).
        self.last_exchange: Exchange | None = None
        self.last_findings: list[Finding] = []  # its findings, and their records
        self.last_noted: list[FindingRecord] = []
        self.upgrade: Upgrade | None = None  # this session's TLS upgrade, if any
        self.tls_failure: TLSHandshakeFailed | None = None  # this session's failed one

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
        self.findings = []
        self.upgrade, self.tls_failure = None, None
        self.last_reply_time = 0.0
        self.last_exchange = None
        greeting = self._exchange(GREETING, None, lambda: self.client.connect(
            greeting_timeout=self.timeout + self.hang_wait))
        if greeting is None and any(f.check.timing for f in self.findings):
            raise StopRun(f"the server did not greet within {self.timeout + self.hang_wait:g}s:"
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
        first = reply = self._exchange(command.group, command,
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
            if reply is None or not self.probes or not self.model.open or \
                    self.model.state is State.DATA or \
                    (probe := control_probe(command, reply)) is None:
                break
            reply = self._exchange(probe.group, probe, lambda: self._command(probe.line),
                                   variant_of=(command, reply))
            command = probe
        return first

    def send_message(self, message: Message) -> Reply | None:
        """After a 354: the message data and its terminating <CRLF>.<CRLF> (in safe mode,
        nothing: the connection is closed instead)."""
        if not self.deliver or END_OF_DATA in self.adaptation.unanswered:
            self.close()
            return None
        self.steps.append(Step.of(message))
        return self._exchange(END_OF_DATA, message, lambda: self._command(message.wire))

    def send_probe(self, probe: DataProbe) -> Reply | None:
        """After a 354: an end-of-data probe's data up to its non-standard ending, then a
        wait for a reply, which must not come before the data's real end
        (``data_ends_only_at_crlf_dot_crlf``). Only then, in a write of its own, the line
        smuggled after the ending: a server that took the ending has answered it, and reads
        the line as a command, whether or not it refuses input sent before its reply
        (RFC 5321 §4.3.1); after a reply, as long again for one to that line. (A server may
        know a CR for a line end only from the octet after it: where the ending ends in CR
        and nothing came, the smuggled line goes, and a second wait.) With ``deliver``, then
        the real end of data, judged by the probe's checks, and a wait for any reply after
        that one (a server that took the ending but answered it late). The
        session ends either way: a server that took the ending may answer what follows in
        ways no model follows. The reply to the real end (None: not sent, none came, or the
        session was not in DATA)."""
        if not self.model.open or self.model.state is not State.DATA:
            return None
        self.steps.append(Step.of(probe))
        self.record.exercised["end-of-data probes"] += 1
        self.pacer.wait()
        wait = self._probe_wait()
        reply = None
        try:
            self.client.send(probe.up_to_ending)
            early = self._reply_within(wait)
            smuggled_sent = early is None and probe.ends_at_cr
            if smuggled_sent:  # a CR ends a line only when the octet after it is not LF
                self.client.send(probe.smuggled)
                early = self._reply_within(wait)
            if early is not None:
                self._note_early(probe, early, self._second_reply(wait) if smuggled_sent
                                 else self._smuggled_reply(probe, wait))
            elif self.deliver and END_OF_DATA not in self.adaptation.unanswered:
                rest = probe.REAL_END if smuggled_sent else probe.smuggled + probe.REAL_END
                reply = self._exchange(END_OF_DATA, probe, self._sends(rest))
                late = self._second_reply(wait) if reply is not None and \
                    self.client.connected else None
                if reply is not None and late is not None:
                    self._note_early(probe, reply, late)
        except ServerError as error:  # a close: the server's defence, or its failure
            self.record.remark(f"after mail data ending in {probe.ending}: {error}")
        finally:
            self.close()
        return reply

    def _probe_wait(self) -> float:
        """How long to listen for a reply that must not come: PROBE_WAIT, or longer where the
        server is slow (its slowest reply to the end of data in this run, or to this
        session's last command), never longer than the timeout."""
        slowest = max(self.adaptation.slowest_data_reply, self.last_reply_time)
        return min(self.timeout, max(PROBE_WAIT, PROBE_WAIT_FACTOR * slowest))

    def _reply_within(self, wait: float) -> Reply | None:
        """The next reply, if one starts within ``wait`` (one that has started gets another
        ``wait`` to end); None if none starts. A close, or a reply still unfinished, raises."""
        try:
            return self.client.read_reply(timeout=wait)
        except ReplyTimeout as timeout:
            if not timeout.partial:
                return None
        return self.client.read_reply(timeout=wait)

    def _second_reply(self, wait: float) -> Reply | None:
        """A reply after one already read, within ``wait``: to a line the server should not
        have taken as one. A 421 is not one (the server is leaving, RFC 5321 §3.8), nor is
        anything the server did instead of replying (closing)."""
        try:
            second = self._reply_within(wait)
        except ServerError:
            return None
        return None if second is None or second.code == SERVICE_NOT_AVAILABLE else second

    def _smuggled_reply(self, probe: DataProbe, wait: float) -> Reply | None:
        """After a reply to the data up to a probe's ending: the smuggled line, and the
        reply to it within ``wait`` (None: none, or the server closed, as a defence does)."""
        try:
            self.client.send(probe.smuggled)
        except ServerError:
            return None
        return self._second_reply(wait)

    def _note_early(self, probe: DataProbe, early: Reply, smuggled: Reply | None) -> None:
        """A reply before a probe's real end, and the one after it (to the smuggled line), if
        any. A refusal (4yz, 5yz) with nothing after it is the server's defence against the
        bare line break, which a client must not send (RFC 5321 §2.3.8): a remark, not an
        exchange to check."""
        if smuggled is None and early.first_digit in (4, 5):
            self.record.remark(f"the server refused mail data ending in {probe.ending} "
                               f"before its end: {early.code} {' '.join(early.lines)[:80]}")
            return
        exchange = Exchange(self.profile, self.model, END_OF_DATA, probe, early,
                            timeout=self.timeout, unsolicited=smuggled, early=True)
        self._note(run_checks(exchange), exchange)

    def send_batch(self, commands: Sequence[Command]) -> list[Reply | None]:
        """Send ``commands`` in one write (RFC 2920), then read one reply per command, in
        order (§3.2), each checked as an exchange of its own; no control probes (a replay
        sends the batch as it was). A reply that does not come (timeout, close) leaves each
        later command of the batch an exchange with the same error. A deviation ends the
        session: the commands after it get None, like a command not sent (see Adaptation).
        DATA may only end a batch, and STARTTLS is never in one (``check_batch``).

        Where the session's last EHLO did not advertise PIPELINING (a replay's session that
        left it out), the commands go one by one, each after the reply before it: a client
        must not pipeline otherwise (RFC 2920 §3.1), and a server may refuse such input and
        close (RFC 5321 §4.3.1)."""
        check_batch(commands)
        if not commands:
            return []
        self.ensure_open(len(commands))
        if not self.model.open:
            return [None] * len(commands)
        sending = [i for i, c in enumerate(commands)
                   if c.group not in self.adaptation.unanswered]
        batch = 1 + max((step.batch for step in self.steps), default=0)
        replies: list[Reply | None] = [None] * len(commands)
        if "PIPELINING" not in self.model.extensions:
            for i in sending:
                if not self.model.open:
                    break
                self.steps.append(Step.of(commands[i], batch=batch))
                replies[i] = self._exchange(commands[i].group, commands[i],
                                            self._sends(commands[i].line))
            return replies
        self.record.exercised["pipelined batches"] += 1
        self.steps += [Step.of(commands[i], batch=batch) for i in sending]
        io = _BatchIO(self.client, b"".join(commands[i].line for i in sending),
                      self.timeout + self.hang_wait)
        for place, i in enumerate(sending):
            if io.error is None:
                if not self.client.connected:
                    break  # a deviation, or a close after 221/421, ended the session
                unanswered = self.model
            else:  # without a reply the model did not advance: the later commands were
                self.model = unanswered  # sent in the state the unanswered one was
            answered = sum(reply is not None for reply in replies)
            replies[i] = self._exchange(commands[i].group, commands[i], io,
                                        adapt=io.error is None, batch=(place, answered))
        return replies

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
        if self.adaptation.injections_dropped >= INJECTION_PROBES:
            inject = b""  # the server has shown it drops them
        plain = Command(b"STARTTLS\r\n")
        command = Command(plain.line + inject, group=plain.group)
        if not self.model.open or command.group in self.adaptation.unanswered:
            return None
        self.steps.append(Step.of(command))
        reply = self._exchange(command.group, command, lambda: self._command(command.line))
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
                self._exchange(plain.group, plain, _raises(failure), adapt=False)
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
            self._listen_after_upgrade(command)
            # An answer to the injected lines later than the listen would be read as the
            # reply to the next command: the session ends here.
            self.close()
        return self.upgrade

    def _listen_after_upgrade(self, starttls: Command) -> None:
        """A reply over TLS before the client said anything answers the plaintext injected
        after STARTTLS (CVE-2011-0411): checked as an exchange of the STARTTLS command."""
        try:
            unsolicited = self.client.read_reply(timeout=min(INJECTION_WAIT, self.timeout))
        except ReplyTimeout:  # nothing came: the injected lines were dropped, as they must be
            self.adaptation.injections_dropped += 1
            return
        except ServerError as error:
            self.record.remark(f"after the TLS handshake: {error}")
            self.close()
            return
        exchange = Exchange(self.profile, self.model, starttls.group, starttls,
                            timeout=self.timeout, unsolicited=unsolicited)
        self._note(run_checks(exchange), exchange)

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
                reply = self._exchange(response.group, response, self._sends(response.line))
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

    def _sends(self, data: bytes) -> Callable[[], Reply]:
        return lambda: self._command(data)

    def _command(self, data: bytes) -> Reply:
        self.client.send(self.filling.fill(data), shown=data)
        return self.client.read_reply(timeout=self.timeout + self.hang_wait)

    def _exchange(self, group: str, sent: Sent | None, io: Callable[[], Reply],
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
        activity.wait_limit, activity.wait_started = self.timeout + self.hang_wait, started
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
        activity.exchanges += 1
        activity.sessions += group == GREETING
        elapsed = time.monotonic() - started
        if reply is not None:
            self.last_reply_time = elapsed
        second = self._second_reply(self._probe_wait()) if listen and reply is not None \
            else None
        late = elapsed if reply is not None and elapsed > self.timeout else None
        closed_after = None
        if reply is not None and (reply.code == SERVICE_NOT_AVAILABLE or
                                  (group == "QUIT" and reply.code == CLOSING)):
            closed_after, close_late = self._wait_for_close()
            late = late or close_late
        # A close right after a reply that is not 221 to QUIT or 421 is judged on that reply.
        closed_unasked = reply is not None and closed_after is None and batch is None and \
            not listen and self.client.connected and self.client.peer_closed()
        if reply is not None and group == "QUIT" and reply.first_digit == 2 and \
                closed_after is None and batch is None and not closed_unasked and \
                not self.adaptation.skip_close_wait and self.client.connected:
            # Another positive reply to QUIT (250, say) ends the session as 221 does: the
            # close that comes with it is waited for, to be judged on that reply.
            closed_unasked = self.client.wait_for_close(timeout=self.timeout, quiet=True)
        self.record.coverage[(before.state.name, group, reply.code if reply else 0)] += 1
        self.cells[(before.state.name, group)] += 1
        exchange = Exchange(self.profile, before, group, sent, reply, error, closed_after,
                            late=late, timeout=self.timeout, variant_of=variant_of,
                            batch=batch, unsolicited=second, closed_unasked=closed_unasked)
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
            if group == "EHLO" and self.model.extensions is not before.extensions:
                self.record.advertised.update(
                    {k: " ".join(v) for k, v in self.model.extensions.keywords.items()})
        if error is not None or closed_after is not None or closed_unasked or \
                self.model.state is State.CLOSED:
            self.close()
        if adapt:
            self._adapt(exchange, elapsed)
        noted = self._note(findings, exchange)
        if reply is not None:
            self.last_findings, self.last_noted = findings, noted
        if adapt and self.adaptation.answers_nothing:
            raise StopRun(f"the server answered none of {len(self.adaptation.unanswered)} "
                          f"different commands within {self.timeout + self.hang_wait:g}s: "
                          f"nothing more can be tested")
        return reply

    def _control_reset(self, exchange: Exchange) -> None:
        """A RCPT (or DATA) taken after a command that ended the transaction blames that
        command only if the server would not take it with no transaction at all. Once per
        run, a control session asks: EHLO (else HELO), then the same command. Where the server
        takes it there too, that session's own finding (``rcpt_requires_mail``,
        ``data_requires_recipient``) explains the first away (``Check.explained_by``)."""
        self.adaptation.reset_controlled = True
        if not isinstance(exchange.sent, Command):
            return
        control = CheckedSession(self.address, self.profile, timeout=self.timeout,
                                 hang_wait=self.hang_wait, policy=self.policy,
                                 record=self.record, deliver=False, pacer=self.pacer,
                                 adaptation=self.adaptation, probes=False)
        try:
            control.connect()
            for hello in ("EHLO", "HELO"):
                if control.model.state is State.INIT:
                    control.send(Command.of(VERBS[hello].example))
            if control.model.state is State.READY:
                control.send(exchange.sent)
        finally:
            control.close()
        self.record.remark(f"{exchange.group} taken after {exchange.before.reset_by} ended the "
                           f"transaction: a control session sent it with no transaction at all")

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
        self._note(fold(sorted([*closing, *findings], key=lambda f: LEVEL_ORDER[f.level])),
                   judged)

    def _wait_for_close(self) -> tuple[bool | None, float | None]:
        """Whether the server closed after 221/421, and how late, if later than the timeout
        (None, None: not waited for, see Adaptation)."""
        if self.adaptation.skip_close_wait:
            return None, None
        started = time.monotonic()
        closed_now = self.client.wait_for_close(timeout=self.timeout + self.hang_wait)
        elapsed = time.monotonic() - started
        return closed_now, elapsed if closed_now and elapsed > self.timeout else None

    def _adapt(self, x: Exchange, elapsed: float) -> None:
        commands_before = len(self.steps) - 1
        self.adaptation.answered |= x.reply is not None and x.group != GREETING
        if x.group == END_OF_DATA and x.reply is not None and x.late is None:
            self.adaptation.slowest_data_reply = max(self.adaptation.slowest_data_reply,
                                                     elapsed)
        if isinstance(x.error, ReplyTimeout) and x.group != GREETING and \
                x.group not in self.adaptation.hung_once and commands_before > 0 and \
                x.group in self.record.answered():
            # Answered in time before: the server stopped answering partway through the
            # session (a tarpit), not this command (RFC 5321 §4.5.3.2).
            self.adaptation.hung_once |= {x.group}
            self.adaptation.cap(commands_before, self.record,
                                f"{x.group}, answered before, went unanswered after "
                                f"{commands_before} command(s) in a session (a tarpit?)")
        elif isinstance(x.error, ReplyTimeout) and x.group != GREETING:
            self.adaptation.unanswered |= {x.group}
            self.record.remark(f"{x.group} went unanswered: it was not sent again in this run")
        elif x.closed_after is False or (x.closed_after and x.late is not None):
            self.adaptation.skip_close_wait = True
            self.record.remark("the server kept the connection open after 221/421: the run "
                               "did not wait for the close again")
        elif x.late is not None and x.group != GREETING:
            self.adaptation.cap(commands_before, self.record,
                                f"a reply came late ({x.late:.1f}s) after {commands_before} "
                                f"command(s) in a session (a tarpit?)")
        elif elapsed > self.timeout / 5 and commands_before >= 3 and x.group != GREETING:
            # Slow but in time (a server that sleeps after errors, as Postfix does): never
            # so short a session that no transaction fits in it.
            self.adaptation.cap(commands_before, self.record,
                                f"replies slowed down ({elapsed:.1f}s) after {commands_before} "
                                f"commands in a session (a tarpit?)",
                                floor=COMMANDS_FOR_A_TRANSACTION)

    def _note(self, findings: list[Finding], exchange: Exchange) -> list[FindingRecord]:
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
        records = records_for(findings, exchange, self.transcript, self.policy, self.steps)
        for record in records:
            self.record.note(record)
        definite = [f for f in findings if f.check.refuted_by is None]
        if any(f.check.state_known is None or not f.check.state_known(exchange)
               for f in definite):
            self._end_after(exchange, findings, records)
        if any(f.check.explained_by for f in findings) and \
                not self.adaptation.reset_controlled:
            self._control_reset(exchange)
        if self.fail_fast and any(self.policy.fails(self.policy.verdict(f, exchange))
                                  for f in definite):
            raise StopRun("fail-fast: stopped at the first failing finding")
        return records
