"""The general check: every reply code is in the profile's row for the command. Registered
last: a specific check names the rule when a code is also outside the table.
"""

from __future__ import annotations

from conformance.checks.exchange import Complaint, Exchange, Identity, mid_message_out_of_sequence
from conformance.checks.registry import check, leaves_state_as_it_was
from conformance.protocol.levels import Level
from conformance.protocol.tables import (
    BAD_SEQUENCE,
    COMMAND_UNRECOGNISED,
    NOT_IMPLEMENTED,
    SERVICE_NOT_AVAILABLE,
    get_profile,
)
from conformance.protocol.vocabulary import UPGRADING_VERBS

# A verb of an extension the session's EHLO did not offer may be refused as unknown (500),
# not implemented (502, RFC 5321 §4.2.4) or out of sequence (503: offered later, after TLS);
# so may STARTTLS over TLS, which is not offered again (RFC 3207 §4.2).
_REFUSALS_OF_THE_UNOFFERED = frozenset({COMMAND_UNRECOGNISED, NOT_IMPLEMENTED, BAD_SEQUENCE})


def _documented_identity(x: Exchange) -> Identity:
    """The command (or, for an extension verb not advertised, the unrecognised verb, whose
    row it is judged against: ``Exchange.judged_as``) and the reply code."""
    group = x.judged_as
    return (x.filed_under if group == x.group else group), \
        x.reply.code if x.reply is not None else 0


# Last: a check above names the specific rule when a code is also outside the table.
@check("reply_code_documented", level=None, citation="the profile's row for the command",
       state_known=leaves_state_as_it_was, general=True, identity=_documented_identity)
def reply_code_documented(x: Exchange) -> Complaint | None:
    if x.reply is None:
        return None
    group = x.judged_as
    row = x.profile.row(group)
    code = x.reply.code
    offered_no_more = x.group in UPGRADING_VERBS and x.before.tls  # RFC 3207 §4.2
    if row.allows(code) or mid_message_out_of_sequence(x) or \
            ((group != x.group or offered_no_more) and code in _REFUSALS_OF_THE_UNOFFERED):
        return None
    if offered_no_more and code // 100 == 5:
        return (f"{code} to {x.group} over TLS: no RFC gives the reply to a STARTTLS the "
                f"server no longer offers (RFC 3207 §4.2); a 5yz refusal is what a client "
                f"needs"), Level.INFO
    # The RFC 821 table omits 421 for QUIT, TURN and the end of data.
    if code == SERVICE_NOT_AVAILABLE:
        return (f"421 is not in the {x.profile.name} row for {group} [{row.citation}], but "
                f"RFC 821 §4.3 and RFC 5321 §3.8 allow 421 for any command"), Level.INFO
    message = f"{code} is not documented for {group} [{row.citation}]"
    if group != x.group:
        message = (f"{code} to {x.group}, whose extension the session's EHLO did not "
                   f"advertise, is documented neither for {x.group} nor for a verb the "
                   f"server does not know [{row.citation}]")
    if code // 100 not in {c // 100 for c in row.code_set} and rfc5321_lists(x) is None:
        # RFC 5321 §4.2.1: a client acts on the first digit, so a reply of a class the row
        # never has is read as something else entirely, under any profile.
        return (f"{message}, nor is any {code // 100}yz reply (RFC 5321 §4.2.1: clients act "
                f"on the first digit)"), Level.MUST
    return message, row.level


RFC5321 = "rfc5321"  # the profile by whose table a narrower one's findings are triaged


def rfc5321_lists(x: Exchange) -> str | None:
    """For a reply outside a narrower profile's row (the seed's, RFC 821's) that RFC 5321
    lists for the command, the line that says so ("RFC 5321 §4.3.2, §3.3, §4.1.1.11 lists
    503 for MAIL"): a deviation from that table only, not from the RFC. None under rfc5321
    itself, and for a code RFC 5321 does not list either."""
    if x.reply is None or x.profile.name == RFC5321:
        return None
    group = x.judged_as
    row = get_profile(RFC5321).row(group)
    code = next((c for c in row.codes if c.code == x.reply.code), None)
    if code is None:
        return None
    return f"{row.citation} lists {code.code} for {group}" + \
        (f" ({code.note})" if code.note else "")
