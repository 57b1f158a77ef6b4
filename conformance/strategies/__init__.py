"""Hypothesis strategies for SMTP: addresses, commands (valid and malformed), message data
(and end-of-data probes).

Every strategy is built on ``conformance.protocol.grammar``, so what is generated is exactly
what the parser and checks accept as valid. Options are keyword-only.
"""

from conformance.strategies.addresses import (
    address_literals,
    domains,
    forward_paths,
    local_parts,
    mailboxes,
    reverse_paths,
)
from conformance.strategies.commands import (
    bare_line_break_commands,
    data_probes,
    ehlo_commands,
    esmtp_parameters,
    helo_commands,
    mail_commands,
    malformed_commands,
    message_bodies,
    raw_lines,
    rcpt_commands,
    unknown_commands,
    valid_commands,
    verbs,
)

__all__ = [
    "address_literals", "bare_line_break_commands", "data_probes", "domains", "ehlo_commands",
    "esmtp_parameters", "forward_paths", "helo_commands", "local_parts", "mail_commands",
    "mailboxes", "malformed_commands", "message_bodies", "raw_lines", "rcpt_commands",
    "reverse_paths", "unknown_commands", "valid_commands", "verbs",
]
