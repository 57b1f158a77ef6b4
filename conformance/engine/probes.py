"""The probes a checked session makes beside its commands: the control probe after a refused
command (is it the case, the length or the parameter?), end-of-data probes (SMTP smuggling:
does a non-standard ending end the data?), and the listen after a TLS upgrade for replies to
lines injected before it. Each is judged by the checks like any exchange."""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import TYPE_CHECKING

from conformance.checks import Exchange, run_checks
from conformance.engine.pacing import Activity
from conformance.protocol.commands import Command, DataProbe, Step
from conformance.protocol.errors import ReplyTimeout, ServerError
from conformance.protocol.model import State, is_positive
from conformance.protocol.replies import Reply
from conformance.protocol.tables import (
    COMMAND_UNRECOGNISED,
    NOT_IMPLEMENTED,
    SERVICE_NOT_AVAILABLE,
)
from conformance.protocol.vocabulary import END_OF_DATA, VERBS, V

if TYPE_CHECKING:
    from conformance.engine.session import CheckedSession


# A NOOP whose parameter is short: the control for a NOOP line of over LONG_LINE octets
# refused (is it the length, RFC 5321 §4.5.3.1.4, or the parameter at all, §4.1.1.9?).
SHORT_NOOP = Command(b"NOOP x\r\n")
LONG_LINE = 256


def control_probe(command: Command, reply: Reply) -> Command | None:
    """The plain form of a refused valid command, sent next in the same state, so a check can
    tell what the refusal was about: the verb in upper case (RFC 5321 §2.4), NOOP with a
    short parameter after a longer one, or NOOP without its parameter (§4.1.1.9)."""
    if not command.valid or (reply.code not in (COMMAND_UNRECOGNISED, NOT_IMPLEMENTED) and \
            not (command.group == V.NOOP and not is_positive(V.NOOP, reply.code))):
        return None
    verb_as_sent = command.verb_as_sent
    if verb_as_sent != command.verb:
        return Command(command.verb.encode() + command.line[len(verb_as_sent):])
    if command.group == V.NOOP and len(command.line) > LONG_LINE:
        return SHORT_NOOP
    if command.group == V.NOOP and command.line.rstrip(b"\r\n") != b"NOOP":
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


def send_data_probe(session: CheckedSession, probe: DataProbe) -> Reply | None:
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
    if not session.model.open or session.model.state is not State.DATA:
        return None
    session.steps.append(Step.of(probe))
    session.record.exercised["end-of-data probes"] += 1
    session.pacer.wait()
    wait = probe_wait(session)
    reply = None
    try:
        session.client.send(probe.up_to_ending)
        early = reply_within(session, wait)
        smuggled_sent = early is None and probe.ends_at_cr
        if smuggled_sent:  # a CR ends a line only when the octet after it is not LF
            session.client.send(probe.smuggled)
            early = reply_within(session, wait)
        if early is not None:
            note_early(session, probe, early, second_reply(session, wait) if smuggled_sent
                       else smuggled_reply(session, probe, wait))
        elif session.settings.deliver and END_OF_DATA not in session.adaptation.unanswered:
            rest = probe.REAL_END if smuggled_sent else probe.smuggled + probe.REAL_END
            reply = session.checked_exchange(END_OF_DATA, probe, session.sends(rest))
            late = second_reply(session, wait) if reply is not None and \
                session.client.connected else None
            if reply is not None and late is not None:
                note_early(session, probe, reply, late)
    except ServerError as error:  # a close: the server's defence, or its failure
        session.record.remark(f"after mail data ending in {probe.ending}: {error}")
    finally:
        session.close()
    return reply


def probe_wait(session: CheckedSession) -> float:
    """How long to listen for a reply that must not come: PROBE_WAIT, or longer where the
    server is slow (its slowest reply to the end of data in this run, or to this
    session's last command), never longer than the timeout."""
    slowest = max(session.adaptation.slowest_data_reply, session.last_reply_time)
    return min(session.timeout, max(PROBE_WAIT, PROBE_WAIT_FACTOR * slowest))


def reply_within(session: CheckedSession, wait: float) -> Reply | None:
    """The next reply, if one starts within ``wait`` (one that has started gets another
    ``wait`` to end); None if none starts. A close, or a reply still unfinished, raises."""
    try:
        return session.client.read_reply(timeout=wait)
    except ReplyTimeout as timeout:
        if not timeout.partial:
            return None
    return session.client.read_reply(timeout=wait)


def second_reply(session: CheckedSession, wait: float) -> Reply | None:
    """A reply after one already read, within ``wait``: to a line the server should not
    have taken as one. A 421 is not one (the server is leaving, RFC 5321 §3.8), nor is
    anything the server did instead of replying (closing)."""
    try:
        second = reply_within(session, wait)
    except ServerError:
        return None
    return None if second is None or second.code == SERVICE_NOT_AVAILABLE else second


def smuggled_reply(session: CheckedSession, probe: DataProbe, wait: float) -> Reply | None:
    """After a reply to the data up to a probe's ending: the smuggled line, and the
    reply to it within ``wait`` (None: none, or the server closed, as a defence does)."""
    try:
        session.client.send(probe.smuggled)
    except ServerError:
        return None
    return second_reply(session, wait)


def note_early(session: CheckedSession, probe: DataProbe, early: Reply,
               smuggled: Reply | None) -> None:
    """A reply before a probe's real end, and the one after it (to the smuggled line), if
    any. A refusal (4yz, 5yz) with nothing after it is the server's defence against the
    bare line break, which a client must not send (RFC 5321 §2.3.8): a remark, not an
    exchange to check."""
    if smuggled is None and early.first_digit in (4, 5):
        session.record.remark(f"the server refused mail data ending in {probe.ending} "
                              f"before its end: {early.code} {' '.join(early.lines)[:80]}")
        return
    exchange = Exchange(session.profile, session.model, END_OF_DATA, probe, early,
                        timeout=session.timeout, unsolicited=smuggled, early=True)
    session.note(run_checks(exchange), exchange)


def listen_after_upgrade(session: CheckedSession, starttls: Command) -> None:
    """A reply over TLS before the client said anything answers the plaintext injected
    after STARTTLS (CVE-2011-0411): checked as an exchange of the STARTTLS command."""
    try:
        unsolicited = session.client.read_reply(timeout=min(INJECTION_WAIT, session.timeout))
    except ReplyTimeout:  # nothing came: the injected lines were dropped, as they must be
        session.adaptation.injections_dropped += 1
        return
    except ServerError as error:
        session.record.remark(f"after the TLS handshake: {error}")
        session.close()
        return
    exchange = Exchange(session.profile, session.model, starttls.group, starttls,
                        timeout=session.timeout, unsolicited=unsolicited)
    session.note(run_checks(exchange), exchange)


def control_reset(session: CheckedSession, exchange: Exchange) -> None:
    """A RCPT (or DATA) taken after a command that ended the transaction blames that
    command only if the server would not take it with no transaction at all. Once per
    run, a control session asks: EHLO (else HELO), then the same command. Where the server
    takes it there too, that session's own finding (``rcpt_requires_mail``,
    ``data_requires_recipient``) explains the first away (``Check.explained_by``)."""
    session.adaptation.reset_controlled = True
    if not isinstance(exchange.sent, Command):
        return
    control = type(session)(
        session.address, dataclasses.replace(session.settings, deliver=False, probes=False),
        dataclasses.replace(session.state, cells=Counter(), activity=Activity()))
    try:
        control.connect()
        for hello in (V.EHLO, V.HELO):
            if control.model.state is State.INIT:
                control.send(Command.of(VERBS[hello].example))
        if control.model.state is State.READY:
            control.send(exchange.sent)
    finally:
        control.close()
    session.record.remark(f"{exchange.group} taken after {exchange.before.reset_by} ended "
                          f"the transaction: a control session sent it with no transaction at all")
