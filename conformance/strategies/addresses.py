"""Strategies for the RFC 5321 §4.1.2 argument grammar: domains, literals, mailboxes, paths.

Built from the fragments in ``conformance.protocol.grammar``, and sized within RFC 5321 §4.5.3.1.
Recipient domains default to names reserved for testing (RFC 2606), so nothing generated
here can route mail to a real mailbox.
"""

from __future__ import annotations

import string

from hypothesis import strategies as st

from conformance.protocol import grammar

# Built from the grammar's character classes rather than from its regular expressions: a
# regex strategy (and a filter on what it makes) costs far more per draw, and a run draws
# thousands.
_LET_DIG = string.ascii_letters + string.digits
_LDH = _LET_DIG + "-"
_QTEXT = "".join(chr(c) for c in (0x20, 0x21, *range(0x23, 0x5C), *range(0x5D, 0x7F)))
_PRINTABLE = "".join(chr(c) for c in range(0x20, 0x7F))

TEST_DOMAINS = ("example.test", "mx.example.test", "example.com", "example.net", "localhost")


def labels() -> st.SearchStrategy[str]:
    """One sub-domain: ``Let-dig [Ldh-str]`` (a letter or digit first and last, hyphens
    between), at most 63 octets."""
    edge = st.sampled_from(_LET_DIG)
    return st.one_of(edge, st.builds("{}{}{}".format, edge, st.text(_LDH, max_size=12), edge),
                     st.just("x" * 63))


def domains(*, under: tuple[str, ...] = ("test", "example", "invalid")) -> st.SearchStrategy[str]:
    """A Domain (RFC 5321 §4.1.2) ending in one of ``under``: reserved names by default."""
    return st.one_of(
        st.sampled_from([d for d in TEST_DOMAINS if d.rsplit(".", 1)[-1] in under] or
                        [f"example.{under[0]}"]),
        st.builds(lambda parts, tld: ".".join([*parts, tld]),
                  st.lists(labels(), min_size=1, max_size=3), st.sampled_from(under)),
    ).filter(grammar.is_domain)


def address_literals(*, v6: bool = True) -> st.SearchStrategy[str]:
    """``[IPv4]`` or ``[IPv6:...]`` address literals (RFC 5321 §4.1.3)."""
    v4 = st.ip_addresses(v=4).map(lambda ip: f"[{ip}]")  # always IPv4-address-literal
    if not v6:
        return v4
    # Python's compressed form may have more groups around "::" than IPv6-comp allows.
    return st.one_of(v4, st.one_of(
        st.ip_addresses(v=6).map(lambda ip: f"[IPv6:{ip.exploded}]"),
        st.ip_addresses(v=6).map(lambda ip: f"[IPv6:{ip.compressed}]")).filter(
        grammar.is_address_literal))


def local_parts(*, quoted: bool = True) -> st.SearchStrategy[str]:
    """Dot-string local parts, and Quoted-string ones when ``quoted`` (RFC 5321 §4.1.2)."""
    dot_strings = st.lists(st.text(grammar.ATEXT_CHARS, min_size=1, max_size=12),
                           min_size=1, max_size=3).map(".".join)
    choices = [st.sampled_from(["user", "postmaster", "first.last", "x+tag"]), dot_strings]
    if quoted:
        choices.append(quoted_strings())
    return st.one_of(*choices).filter(lambda s: len(s.encode()) <= grammar.MAX_LOCAL_PART_OCTETS)


def quoted_strings() -> st.SearchStrategy[str]:
    """``DQUOTE *QcontentSMTP DQUOTE`` (RFC 5321 §4.1.2): qtext and quoted pairs."""
    pair = st.one_of(st.just(""), st.sampled_from(_PRINTABLE).map("\\{}".format))
    return st.builds('"{}{}{}"'.format, st.text(_QTEXT, max_size=8), pair,
                     st.text(_QTEXT, max_size=4))


def mailboxes(*, domain: st.SearchStrategy[str] | None = None,
              quoted: bool = True, literals: bool = True) -> st.SearchStrategy[str]:
    """``Local-part "@" ( Domain / address-literal )`` within RFC 5321 §4.5.3.1 limits; with
    ``domain``, always in one of its domains (no address literals)."""
    where = domain if domain is not None else domains()
    if literals and domain is None:
        where = st.one_of(where, address_literals())
    return st.builds(lambda local, dom: f"{local}@{dom}", local_parts(quoted=quoted),
                     where).filter(grammar.is_mailbox)


def reverse_paths(*, quoted: bool = True, literals: bool = True) -> st.SearchStrategy[str]:
    """``<mailbox>`` or the null reverse-path ``<>`` (RFC 5321 §4.1.2, §4.5.5)."""
    paths = mailboxes(quoted=quoted, literals=literals).map(lambda m: f"<{m}>")
    return st.one_of(st.just("<>"), paths).filter(grammar.is_reverse_path)


def forward_paths(*, domain: st.SearchStrategy[str] | None = None) -> st.SearchStrategy[str]:
    """``<mailbox>``, ``<Postmaster>`` or ``<Postmaster@domain>`` (RFC 5321 §4.1.1.3)."""
    return st.one_of(
        st.just("<Postmaster>"),
        (domain if domain is not None else domains()).map(lambda d: f"<Postmaster@{d}>"),
        mailboxes(domain=domain).map(lambda m: f"<{m}>"),
    ).filter(lambda p: len(p) <= grammar.MAX_PATH_OCTETS)
