"""Why each check matters to someone running a server: one sentence per check, for the
published matrix's pages (tests/test_matrix.py holds that every check has one)."""

from __future__ import annotations

from types import MappingProxyType

WHY = MappingProxyType({
    "reply_well_formed":
        "Clients parse replies by their shape; a malformed reply, or a client's own octets "
        "echoed raw, can be misread or split into lines the server never meant to send.",
    "command_answered":
        "A client waits for every reply; a command left unanswered stalls the session until "
        "the client's timeout.",
    "reply_within_timeout":
        "Slow replies tie up client connections and queues; past a client's timeout the "
        "message is retried later or bounced.",
    "no_silent_close":
        "A connection dropped without 421 leaves the client unsure whether its mail was "
        "taken: it retries, which can duplicate or delay mail.",
    "greeting_names_server":
        "The greeting's host name is what logs, Received lines and loop detection rely on.",
    "end_of_data_reply_is_final":
        "After the end of data the client needs one final answer: it decides whether the "
        "message is delivered, retried or bounced.",
    "rset_succeeds":
        "Clients abort a transaction with RSET and reuse the connection; a refused RSET forces "
        "a reconnect and leaves the state unknown.",
    "hello_refusal_codes":
        "Clients fall back from EHLO to HELO on the codes the RFC allows; other codes make "
        "them give up on a server that could take the mail.",
    "session_limit":
        "A server that caps what one session may do answers the cap, not the command: a client "
        "that opens a new session goes on; worth knowing for a client that sends many "
        "commands in one.",
    "quit_closes":
        "A client ends the session with QUIT; a server that keeps the connection holds "
        "resources on both sides.",
    "closes_after_421":
        "421 tells the client the service is going away; a server that goes on after it "
        "leaves the client guessing what happened to its commands.",
    "rcpt_requires_mail":
        "A recipient taken with no transaction open belongs to no sender: mail can go to the "
        "wrong envelope.",
    "data_requires_recipient":
        "Data taken with no accepted recipient has nowhere to go: it is lost or delivered to "
        "someone not named.",
    "reset_clears_transaction":
        "A transaction that outlives RSET, HELO/EHLO, a message or STARTTLS mixes senders and "
        "recipients across messages: mail reaches people it was not sent to.",
    "verb_case_insensitive":
        "Commands are case-insensitive; a server that refuses lower case refuses real clients.",
    "noop_ignores_parameter":
        "NOOP with a parameter must be harmless; clients use it as a keep-alive.",
    "command_line_limit_honoured":
        "Every server must take command lines up to 512 octets; shorter limits refuse valid "
        "commands.",
    "minimum_implementation":
        "Every client may rely on the minimum command set; a server refusing one of them "
        "cannot take mail from some clients.",
    "ehlo_reply_well_formed":
        "Clients read the EHLO reply's lines as extension keywords; a malformed line can hide "
        "an extension or invent one.",
    "pipelining_answers_every_command":
        "A pipelining client counts replies to match them to its commands; one missing or "
        "extra reply shifts every answer after it.",
    "enhanced_status_code_valid":
        "Bounce handling and client logic read the enhanced status code; an invalid one "
        "misclassifies the failure.",
    "size_limit_enforced":
        "A server that advertises a size limit and takes more wastes bandwidth on mail it will "
        "refuse, or lets oversized mail through.",
    "esmtp_parameters_advertised":
        "A parameter of an extension not offered was taken: harmless, but the client may "
        "believe a service (DSN, SMTPUTF8) is in force when it is not.",
    "advertised_parameters_accepted":
        "A server that refuses a parameter of an extension it advertised refuses clients that "
        "trusted its EHLO reply.",
    "starttls_refuses_argument":
        "STARTTLS takes no argument; a server that ignores one is parsing command lines "
        "differently from what the client sent.",
    "starttls_not_readvertised":
        "Offering STARTTLS again over TLS invites a client into a second handshake the server "
        "cannot do.",
    "bdat_not_mixed_with_data":
        "Mixing BDAT and DATA in one transaction leaves client and server disagreeing on "
        "where the message ends.",
    "utf8_address_needs_smtputf8":
        "A UTF-8 address taken without SMTPUTF8 may be passed on to servers that cannot "
        "handle it, and bounce late.",
    "auth_once":
        "A second AUTH in one session lets a client switch identities mid-session.",
    "auth_not_in_transaction":
        "AUTH during a transaction changes who sends a message already begun.",
    "auth_cancel_refused":
        "A client that cancels an authentication must be told it did not succeed.",
    "starttls_discards_plaintext":
        "Commands injected in plaintext before the TLS handshake and run after it let a "
        "man in the middle act inside the encrypted session (CVE-2011-0411).",
    "data_ends_only_at_crlf_dot_crlf":
        "A server that ends data at another sequence lets one message smuggle a second, with "
        "a forged sender, past the sending server's checks (SMTP smuggling, CVE-2023-51764).",
    "command_lines_end_only_at_crlf":
        "When servers disagree on where a line ends, a proxy or filter sees one command and "
        "the server runs two.",
    "relay_refused":
        "A server that takes mail for any domain from anyone is an open relay: it will carry "
        "spam and be blocklisted.",
    "reply_code_documented":
        "Clients act on the reply code; a code outside the documented set for the command may "
        "be taken for the wrong outcome (retry for a refusal, or the reverse).",
})
