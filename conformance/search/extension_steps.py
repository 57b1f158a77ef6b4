"""The steps of the machine's extension rules: each sends what an extension adds where the
session's EHLO reply advertised it, and otherwise what any server must refuse (a rule draws
the same whatever the server offers; only what it sends depends on that)."""

from __future__ import annotations

import random

import conformance.strategies.extensions as ext
from conformance.protocol.commands import Command, Message
from conformance.protocol.errors import StopRun
from conformance.protocol.model import State
from conformance.protocol.tables import AUTH_SUCCEEDED, OK
from conformance.protocol.vocabulary import V
from conformance.search.plan import MAX_MESSAGE_SENT
from conformance.search.steering import DIRECTED_SHARE, Steering


class ExtensionSteps(Steering):
    """Pipelined batches, MAIL/RCPT parameters, STARTTLS, BDAT, UTF-8 mailboxes and AUTH."""

    def _with_extensions(self, choose: random.Random) -> None:
        """Say EHLO first in a session not identified yet, or (as ``choose`` decides) in one
        that said HELO or whose EHLO advertised nothing: what follows depends on the list."""
        self._open()
        model = self.session.model
        if model.state is State.INIT or (not model.extensions.keywords and choose.random() < 0.5):
            self._send(self.exploration.valid(V.EHLO, choose))
        self._open()

    def _pipeline(self, commands: list[Command], message: Message, where: int) -> None:
        """The commands in one write where PIPELINING is advertised (RFC 2920), else one by
        one (a client must not pipeline otherwise, §3.1). A session the run's adaptation
        has no room in for the whole batch and its EHLO starts over first."""
        if not self.session.has_room(len(commands) + 1):
            self.session.close()
        self._with_extensions(random.Random(where))
        if "PIPELINING" not in self.session.model.extensions or \
                not self.session.has_room(len(commands)):  # a batch never opens a session
            for command in commands:
                self._send(command, message)
                self._open()
            return
        try:
            self.session.send_batch(commands)
            self._after_data(message)
        except StopRun as stop:
            raise self._stop(stop) from None

    def _mail_parameters(self, mail: Command, recipient: Command, over_limit: bool,
                         where: int) -> None:
        """MAIL and RCPT with ESMTP parameters, advertised or not (RFC 5321 §4.1.1.11);
        ``over_limit``: the declared SIZE, and where the limit is small and messages are
        delivered the message too, over the limit SIZE advertised (RFC 1870 §6)."""
        choose = random.Random(where)
        self._with_extensions(choose)
        limit = self.session.model.extensions.size_limit
        if over_limit and limit is not None:
            mail = ext.with_size(mail, limit + 1)
        if self.session.model.in_transaction:
            self._send(self.exploration.valid(V.RSET, choose))
        self._send(mail)
        if self.session.model.state is State.MAIL:
            self._send(recipient)
        if over_limit and limit is not None and limit <= MAX_MESSAGE_SENT and \
                self.session_settings.deliver and self.session.model.state is State.RCPT:
            self._send(Command.of(V.DATA), ext.oversized_message(limit + 1))

    def _starttls(self, injected: bytes, argument: str, hello: Command, where: int) -> None:
        """STARTTLS where advertised: the TLS upgrade (with lines injected after STARTTLS in
        the same write, if drawn, which the server must drop: CVE-2011-0411), then EHLO over
        TLS. With an argument, or where not advertised, a STARTTLS the server must refuse."""
        self._with_extensions(random.Random(where))
        if argument:
            self._send(Command(f"STARTTLS {argument}\r\n".encode(), valid=False))
            return
        if "STARTTLS" not in self.session.model.extensions or \
                self.session.model.tls:  # over TLS, whatever the server (re)advertises
            self._send(Command(b"STARTTLS\r\n"))
            return
        try:
            settings = self.session_settings
            upgraded = self.session.starttls(settings.tls_context, settings.tls_server_name,
                                             inject=injected)
        except StopRun as stop:
            raise self._stop(stop) from None
        if upgraded is not None and self.session.model.open:
            self._send(hello)

    def _chunks(self, chunks: list[Command], then_data: bool, message: Message,
                where: int) -> None:
        """BDAT chunks in a transaction where CHUNKING is advertised (RFC 3030 §2), then DATA
        if drawn (refused after a chunk: the two never mix). In safe mode no LAST chunk is
        sent, and the session ends after the chunks. Where CHUNKING is not advertised, only
        ``BDAT 0 LAST`` outside a transaction: no data a server could read as commands, and
        no message, even for a server that takes BDAT without advertising it (Postfix after
        HELO)."""
        choose = random.Random(where)
        self._with_extensions(choose)
        if "CHUNKING" not in self.session.model.extensions:
            if self.session.model.in_transaction:
                self._send(self.exploration.valid(V.RSET, choose))
            if not self.session.model.in_transaction:
                self._send(Command(b"BDAT 0 LAST\r\n"))
            return
        if choose.random() < 0.8:
            self._reach(State.RCPT, choose)
        if "CHUNKING" not in self.session.model.extensions:  # the route said HELO, say
            return
        if not self.session_settings.deliver:
            chunks = [c for c in chunks if not c.last_chunk]
        for chunk in chunks:
            reply = self._send(chunk)
            if reply is None or reply.code != OK:
                if self.session.model.in_transaction:  # the state is "indeterminate" (§2)
                    self._send(self.exploration.valid(V.RSET, choose))
                return
        if then_data:
            self._send(Command.of(V.DATA), message)
        if not self.session_settings.deliver:
            self.session.close()

    def _utf8(self, mail: Command, recipient: Command, where: int) -> None:
        """UTF-8 mailboxes (RFC 6531): MAIL, with or without SMTPUTF8 or with an ASCII
        sender, then RCPT to a UTF-8 mailbox; accepted only in a transaction that asked for
        SMTPUTF8 where it is advertised."""
        choose = random.Random(where)
        self._with_extensions(choose)
        if self.session.model.in_transaction:
            self._send(self.exploration.valid(V.RSET, choose))
        self._send(mail)
        if self.session.model.state is State.MAIL:
            self._send(recipient)

    def _auth(self, name: str, twice: bool, where: int) -> None:
        """An AUTH exchange (RFC 4954 §4): the one named, or (as ``where`` decides) the one
        this run has sent least; where the session is or in a mail transaction, where AUTH
        must be refused; ``twice``: after a success, AUTH again, which must be refused too.
        The credentials are the run's (wrong ones when none are configured: the exchange then
        ends in a refusal)."""
        choose = random.Random(where)
        sent = self.exploration.auth_exchanges
        if choose.random() < DIRECTED_SHARE:
            name = min(sorted(ext.AUTH_EXCHANGES), key=lambda each: sent[each])
        sent[name] += 1
        command, answers = ext.auth_exchange(name)
        own_session = choose.random() < 0.5
        if self.session.model.authenticated and own_session:
            self.session.close()  # a session of its own: the exchange, not the second AUTH
        self._with_extensions(choose)
        if choose.random() < 0.3:
            self._reach(State.MAIL, choose)
        try:
            reply = self.session.authenticate(command, answers)
            if twice and reply is not None and reply.code == AUTH_SUCCEEDED:
                self.session.authenticate(command, answers)
        except StopRun as stop:
            raise self._stop(stop) from None
