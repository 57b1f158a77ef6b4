"""The checks: a registry of small named functions, one property each.

Every check has one signature: it takes an ``Exchange`` (what was sent, in which state, what
came back) and returns a complaint or None. Each carries an id, a level and its citation.
"""

# The families register their checks as they are imported: in this order, the general
# ``reply_code_documented`` last (see ``Check.general``).
# isort: off
from conformance.checks import replies, sequence, extensions, security, documented  # noqa: F401
# isort: on
from conformance.checks.documented import rfc5321_lists
from conformance.checks.exchange import Complaint, Exchange, Identity
from conformance.checks.extensions import UTF8_MAILBOX
from conformance.checks.identity import AFTER_ERRORS, ECHOED_OCTETS, PIPELINED_BATCH, THE_SESSION
from conformance.checks.registry import (
    CHECKS,
    LEVEL_ORDER,
    Check,
    Finding,
    check,
    fold,
    identity_of,
    refuted_checks,
    run_checks,
)
from conformance.checks.security import data_ends_only_at_crlf_dot_crlf, relay_refused
from conformance.checks.sequence import HELLO_RESET, MESSAGE_END

__all__ = [
    "AFTER_ERRORS",
    "CHECKS",
    "ECHOED_OCTETS",
    "HELLO_RESET",
    "LEVEL_ORDER",
    "MESSAGE_END",
    "PIPELINED_BATCH",
    "THE_SESSION",
    "UTF8_MAILBOX",
    "Check",
    "Complaint",
    "Exchange",
    "Finding",
    "Identity",
    "check",
    "data_ends_only_at_crlf_dot_crlf",
    "fold",
    "identity_of",
    "refuted_checks",
    "relay_refused",
    "rfc5321_lists",
    "run_checks",
]
