"""The sans-IO reply parser: strict RFC 5321 §4.2 framing, violations as data, hard bounds."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conformance import grammar
from conformance.errors import ReplyFramingError
from conformance.replies import Limits, Reply, ReplyParser, parse_replies
from conformance.violations import RULES


def feed_whole(parser: ReplyParser, data: bytes) -> list[Reply]:
    parser.feed(data)
    return drain(parser)


def feed_bytewise(parser: ReplyParser, data: bytes) -> list[Reply]:
    replies = []
    for i in range(len(data)):
        parser.feed(data[i : i + 1])
        replies += drain(parser)
    return replies


def drain(parser: ReplyParser) -> list[Reply]:
    replies = []
    while (reply := parser.next_reply()) is not None:
        replies.append(reply)
    return replies


FEEDERS: dict[str, Callable[[ReplyParser, bytes], list[Reply]]] = {
    "whole": feed_whole,
    "bytewise": feed_bytewise,
}
TRAILING = b"250-start of the next repl"

Expected = list[tuple[int, tuple[str, ...], list[str]]]  # [(code, lines, violated rules)]
CASES: list[tuple[str, bytes, Expected, dict[str, bool]]] = [
    ("single", b"250 OK\r\n", [(250, ("OK",), [])], {}),
    ("multiline", b"250-mx.example.test\r\n250-SIZE 1000\r\n250 HELP\r\n",
     [(250, ("mx.example.test", "SIZE 1000", "HELP"), [])], {}),
    ("sp-without-text", b"250 \r\n", [(250, ("",), [])], {}),
    ("empty-continuation", b"214-\r\n214 end\r\n", [(214, ("", "end"), [])], {}),
    ("tab-in-text", b"214 a\tb\r\n", [(214, ("a\tb",), [])], {}),
    ("two-replies", b"250 one\r\n354 two\r\n", [(250, ("one",), []), (354, ("two",), [])], {}),
    ("utf8-under-smtputf8", "250 café\r\n".encode(), [(250, ("café",), [])],
     {"smtputf8": True}),
    ("code-range-first-digit", b"199 hm\r\n", [(199, ("hm",), ["reply-code-range"])], {}),
    ("code-range-second-digit", b"571 no\r\n", [(571, ("no",), ["reply-code-range"])], {}),
    ("code-range-six", b"600 no\r\n", [(600, ("no",), ["reply-code-range"])], {}),
    ("separator", b"250_OK\r\n", [(250, ("_OK",), ["separator"])], {}),
    ("mixed-codes", b"250-a\r\n251 b\r\n", [(250, ("a", "b"), ["multiline-code-mismatch"])], {}),
    ("bare-lf", b"250 OK\n", [(250, ("OK",), ["bare-lf"])], {}),
    ("bare-lf-multiline", b"250-a\n250 b\r\n", [(250, ("a", "b"), ["bare-lf"])], {}),
    ("bare-cr", b"250 O\rK\r\n", [(250, ("O\rK",), ["bare-cr"])], {}),
    ("control-octet", b"250 O\x00K\r\n", [(250, ("O\x00K",), ["text-characters"])], {}),
    ("eight-bit", "250 café\r\n".encode(), [(250, ("café",), ["text-characters"])], {}),
    ("invalid-utf8-under-smtputf8", b"250 caf\xe9\r\n",
     [(250, ("caf\udce9",), ["text-characters"])], {"smtputf8": True}),
    ("line-too-long", b"250 " + b"x" * 507 + b"\r\n",
     [(250, ("x" * 507,), ["line-too-long"])], {}),
    ("code-without-text", b"250\r\n", [(250, ("",), ["code-without-text"])], {}),
]


@pytest.mark.parametrize("feed", FEEDERS.values(), ids=list(FEEDERS))
@pytest.mark.parametrize("trailing", [b"", TRAILING], ids=["exact", "trailing"])
@pytest.mark.parametrize(("data", "expected", "options"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_parses_reply(feed, trailing, data, expected, options):
    parser = ReplyParser(**options)
    replies = feed(parser, data + trailing)
    got = [(r.code, r.lines, sorted({v.rule for v in r.violations})) for r in replies]
    assert got == [(code, lines, sorted(rules)) for code, lines, rules in expected]
    assert b"".join(r.raw for r in replies) == data
    assert parser.pending == trailing


def test_line_of_exactly_512_octets_is_accepted():
    (reply,) = parse_replies(b"250 " + b"x" * 506 + b"\r\n")
    assert reply.well_formed


def test_violation_carries_rule_section_and_offending_bytes():
    (reply,) = parse_replies(b"250-a\r\n550 b\r\n")
    (violation,) = reply.violations
    assert violation.rule == "multiline-code-mismatch"
    assert violation.section == "RFC 5321 §4.2.1"
    assert violation.offending.startswith(b"550 b")
    assert violation.line == 1
    assert "line 2" in violation.describe()


def test_every_recoverable_rule_has_a_case():
    fatal = {"no-reply-code", "line-bound", "lines-bound", "reply-bound"}
    covered = {rule for case in CASES for *_, rules in case[2] for rule in rules}
    assert covered == set(RULES) - fatal


@pytest.mark.parametrize("feed", FEEDERS.values(), ids=list(FEEDERS))
@pytest.mark.parametrize("data", [b"hello\r\n", b"25 x\r\n", b"\r\n", b"2a0 x\r\n",
                                  b"250-ok\r\nxyz\r\n"])
def test_rejects_line_without_reply_code(feed, data):
    with pytest.raises(ReplyFramingError) as caught:
        feed(ReplyParser(), data)
    assert caught.value.violation.rule == "no-reply-code"


@pytest.mark.parametrize("feed", FEEDERS.values(), ids=list(FEEDERS))
def test_rejects_unterminated_line_past_the_hard_bound(feed):
    parser = ReplyParser(limits=Limits(max_line_octets=100))
    with pytest.raises(ReplyFramingError) as caught:
        feed(parser, b"250 " + b"x" * 200)
    assert caught.value.violation.rule == "line-bound"
    assert caught.value.partial.startswith(b"250 xxx")
    assert parser.pending == b""


def test_rejects_terminated_line_past_the_hard_bound():
    with pytest.raises(ReplyFramingError) as caught:
        parse_replies(b"250 " + b"x" * 200 + b"\r\n", limits=Limits(max_line_octets=100))
    assert caught.value.violation.rule == "line-bound"


def test_rejects_multiline_reply_with_too_many_lines():
    with pytest.raises(ReplyFramingError) as caught:
        parse_replies(b"250-x\r\n" * 11 + b"250 end\r\n", limits=Limits(max_lines=10))
    assert caught.value.violation.rule == "lines-bound"


def test_rejects_reply_with_too_many_octets():
    data = b"250-" + b"x" * 90 + b"\r\n"
    with pytest.raises(ReplyFramingError) as caught:
        parse_replies(data * 20, limits=Limits(max_reply_octets=1000))
    assert caught.value.violation.rule == "reply-bound"


def test_build_renders_a_conforming_reply():
    reply = Reply.build(250, "mx.example.test", "PIPELINING")
    assert reply.raw == b"250-mx.example.test\r\n250 PIPELINING\r\n"
    assert parse_replies(reply.raw) == [reply]


# --- properties ------------------------------------------------------------------------------

reply_codes = st.integers(200, 599).filter(lambda c: grammar.REPLY_CODE_RE.match(str(c)))
texts = st.text(st.characters(codec="ascii", categories=["L", "N", "P", "S", "Zs"]),
                max_size=100).filter(lambda t: all(ord(ch) in grammar.TEXTSTRING_OCTETS
                                                   for ch in t))


@given(code=reply_codes, lines=st.lists(texts, min_size=1, max_size=8))
def test_rendered_valid_reply_parses_back_to_itself(code, lines):
    reply = Reply.build(code, *lines)
    assert parse_replies(reply.raw) == [reply]
    assert feed_bytewise(ReplyParser(), reply.raw) == [reply]


SMALL = Limits(max_line_octets=64, max_lines=4, max_reply_octets=200)


@given(chunks=st.lists(st.binary(max_size=300), max_size=20))
def test_arbitrary_bytes_never_crash_nor_outgrow_the_bounds(chunks):
    parser = ReplyParser(limits=SMALL)
    try:
        for chunk in chunks:
            parser.feed(chunk)
            for reply in drain(parser):
                assert len(reply.raw) <= SMALL.max_reply_octets + SMALL.max_line_octets
                assert len(reply.lines) <= SMALL.max_lines
            # Whatever is buffered is at most one chunk plus one unfinished line and reply.
            assert len(parser.pending) <= len(chunk) + SMALL.max_line_octets + \
                SMALL.max_reply_octets
    except ReplyFramingError as error:
        assert error.violation.rule in RULES  # noqa: PT017 - any fatal rule is acceptable
