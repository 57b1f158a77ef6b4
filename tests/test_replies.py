"""The sans-IO reply parser: strict RFC 5321 §4.2 framing, violations as data, hard bounds."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conformance.protocol import grammar
from conformance.protocol.errors import ReplyFramingError
from conformance.protocol.replies import Limits, Reply, ReplyParser, parse_replies
from conformance.protocol.violations import FATAL_RULES, RULES


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


Feeder = Callable[[ReplyParser, bytes], list[Reply]]
FEEDERS: dict[str, Feeder] = {
    "whole": feed_whole,
    "bytewise": feed_bytewise,
}
TRAILING = b"250-start of the next repl"

Parsed = list[tuple[int, tuple[str, ...]]]  # [(code, lines)]
WELL_FORMED: list[tuple[str, bytes, Parsed, bool]] = [
    ("single", b"250 OK\r\n", [(250, ("OK",))], False),
    ("multiline", b"250-mx.example.test\r\n250-SIZE 1000\r\n250 HELP\r\n",
     [(250, ("mx.example.test", "SIZE 1000", "HELP"))], False),
    ("sp-without-text", b"250 \r\n", [(250, ("",))], False),
    ("empty-continuation", b"214-\r\n214 end\r\n", [(214, ("", "end"))], False),
    ("tab-in-text", b"214 a\tb\r\n", [(214, ("a\tb",))], False),
    ("two-replies", b"250 one\r\n354 two\r\n", [(250, ("one",)), (354, ("two",))], False),
    ("utf8-under-smtputf8", "250 café\r\n".encode(), [(250, ("café",))], True),
    ("line-of-512-octets", b"250 " + b"x" * 506 + b"\r\n", [(250, ("x" * 506,))], False),
]
# One reply breaking one rule: (case id, bytes, the reply as parsed, the rule, SMTPUTF8).
VIOLATIONS: list[tuple[str, bytes, tuple[int, tuple[str, ...]], str, bool]] = [
    ("code-first-digit-1", b"199 hm\r\n", (199, ("hm",)), "reply-code-range", False),
    ("code-first-digit-6", b"600 no\r\n", (600, ("no",)), "reply-code-range", False),
    ("code-second-digit-7", b"571 no\r\n", (571, ("no",)), "reply-code-range", False),
    ("separator-underscore", b"250_OK\r\n", (250, ("_OK",)), "separator", False),
    ("multiline-mixed-codes", b"250-a\r\n251 b\r\n", (250, ("a", "b")),
     "multiline-code-mismatch", False),
    ("bare-lf", b"250 OK\n", (250, ("OK",)), "bare-lf", False),
    ("bare-lf-in-multiline", b"250-a\n250 b\r\n", (250, ("a", "b")), "bare-lf", False),
    ("bare-cr", b"250 O\rK\r\n", (250, ("O\rK",)), "bare-cr", False),
    ("control-octet", b"250 O\x00K\r\n", (250, ("O\x00K",)), "text-characters", False),
    ("eight-bit", "250 café\r\n".encode(), (250, ("café",)), "text-characters", False),
    ("invalid-utf8-under-smtputf8", b"250 caf\xe9\r\n", (250, ("caf\udce9",)),
     "text-characters", True),
    ("line-of-513-octets", b"250 " + b"x" * 507 + b"\r\n", (250, ("x" * 507,)),
     "line-too-long", False),
    ("code-without-text", b"250\r\n", (250, ("",)), "code-without-text", False),
]


def check_stream(feed: Feeder, trailing: bytes, data: bytes, smtputf8: bool) -> list[Reply]:
    """Feed ``data`` then ``trailing``; the replies must account for ``data`` exactly."""
    parser = ReplyParser(smtputf8=smtputf8)
    replies = feed(parser, data + trailing)
    assert b"".join(r.raw for r in replies) == data
    assert parser.pending == trailing
    return replies


@pytest.mark.parametrize("feed", FEEDERS.values(), ids=list(FEEDERS))
@pytest.mark.parametrize("trailing", [b"", TRAILING], ids=["exact", "trailing"])
@pytest.mark.parametrize(("data", "expected", "smtputf8"), [c[1:] for c in WELL_FORMED],
                         ids=[c[0] for c in WELL_FORMED])
def test_accepts_well_formed_reply(feed, trailing, data, expected, smtputf8):
    replies = check_stream(feed, trailing, data, smtputf8)
    assert [(r.code, r.lines) for r in replies] == expected
    assert all(r.well_formed for r in replies)


@pytest.mark.parametrize("feed", FEEDERS.values(), ids=list(FEEDERS))
@pytest.mark.parametrize("trailing", [b"", TRAILING], ids=["exact", "trailing"])
@pytest.mark.parametrize(("data", "expected", "rule", "smtputf8"), [c[1:] for c in VIOLATIONS],
                         ids=[c[0] for c in VIOLATIONS])
def test_rejects_reply_breaking_a_rule(feed, trailing, data, expected, rule, smtputf8):
    (reply,) = check_stream(feed, trailing, data, smtputf8)
    assert (reply.code, reply.lines) == expected
    assert not reply.well_formed
    assert {v.rule for v in reply.violations} == {rule}


def test_violation_carries_rule_section_and_offending_bytes():
    (reply,) = parse_replies(b"250-a\r\n550 b\r\n")
    (violation,) = reply.violations
    assert violation.rule == "multiline-code-mismatch"
    assert violation.section == "RFC 5321 §4.2.1"
    assert violation.offending.startswith(b"550 b")
    assert violation.line == 1
    assert "line 2" in violation.describe()


def test_every_recoverable_rule_has_a_rejects_case():
    assert {rule for _, _, _, rule, _ in VIOLATIONS} == set(RULES) - FATAL_RULES


@pytest.mark.parametrize("feed", FEEDERS.values(), ids=list(FEEDERS))
@pytest.mark.parametrize("data", [b"hello\r\n", b"25 x\r\n", b"\r\n", b"2a0 x\r\n",
                                  b"250-ok\r\nxyz\r\n"])
def test_rejects_line_without_reply_code(feed, data):
    with pytest.raises(ReplyFramingError) as caught:
        feed(ReplyParser(), data)
    assert caught.value.violation.rule == "no-reply-code"
    assert caught.value.partial == data  # the unreadable line included


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


# Small bounds, each of them the one that binds in one of the settings.
LIMITS = [
    Limits(max_line_octets=64, max_lines=2, max_reply_octets=10_000),
    Limits(max_line_octets=64, max_lines=1000, max_reply_octets=24),
    Limits(max_line_octets=16, max_lines=1000, max_reply_octets=10_000),
]
# Streams of reply lines (mostly continuations, so replies run long) mixed with raw bytes,
# cut into chunks at arbitrary points.
reply_lines = st.builds(
    lambda separator, text, ending: b"250" + separator + text + ending,
    st.sampled_from([b"-", b"-", b"-", b" "]),
    st.binary(max_size=24).map(lambda text: text.replace(b"\n", b"")),
    st.sampled_from([b"\r\n", b"\n"]),
)
streams = st.lists(st.one_of(reply_lines, reply_lines, reply_lines, st.binary(max_size=100)),
                   max_size=40).map(b"".join)


@st.composite
def chunks_of_bytes(draw: st.DrawFn) -> list[bytes]:
    stream = draw(streams)
    cuts = sorted(draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    return [stream[i:j] for i, j in zip([0, *cuts], [*cuts, len(stream)], strict=True)]


@settings(max_examples=500)
@given(chunks=chunks_of_bytes(), limits=st.sampled_from(LIMITS))
def test_arbitrary_bytes_never_crash_nor_outgrow_the_bounds(chunks, limits):
    parser = ReplyParser(limits=limits)
    for chunk in chunks:
        try:
            parser.feed(chunk)
            replies = drain(parser)
        except ReplyFramingError as error:
            # Framing lost: a fatal rule is named and nothing stays buffered; carry on.
            assert error.violation.rule in FATAL_RULES  # noqa: PT017 - the loop goes on
            assert parser.pending == b""
            continue
        for reply in replies:
            assert_within_bounds(reply.raw, limits)
        # Drained, the parser holds at most one unfinished reply and one unterminated line.
        *reply_in_progress, unterminated = parser.pending.split(b"\n")
        assert_within_bounds(b"\n".join(reply_in_progress), limits)
        assert len(unterminated) <= limits.max_line_octets


def assert_within_bounds(reply: bytes, limits: Limits) -> None:
    lines = reply.removesuffix(b"\n").split(b"\n") if reply else []  # without their LF
    assert len(lines) <= limits.max_lines
    assert len(reply) <= limits.max_reply_octets
    assert all(len(line) + 1 <= limits.max_line_octets for line in lines)


def test_parser_starts_clean_after_a_framing_error():
    parser = ReplyParser()
    with pytest.raises(ReplyFramingError):
        feed_whole(parser, b"250-first line\r\ngarbage\r\n")
    assert feed_whole(parser, b"354 go ahead\r\n") == [Reply.build(354, "go ahead")]
