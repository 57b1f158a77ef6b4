"""The RFC 5321 grammar fragments accept what the ABNF allows and nothing else."""

from __future__ import annotations

import pytest

from conformance.protocol import grammar


@pytest.mark.parametrize("text", ["example.test", "a", "mx-1.example.test", "1.2.3.4.test",
                                  "x" * 63 + ".test"])
def test_accepts_domain(text):
    assert grammar.is_domain(text)


@pytest.mark.parametrize("text", ["", "-a.test", "a-.test", "a..test", ".test", "a_b.test",
                                  "caf\u00e9.test", "a." , ("a." * 128) + "test"])
def test_rejects_domain(text):
    assert not grammar.is_domain(text)


@pytest.mark.parametrize("text", ["[127.0.0.1]", "[IPv6:::1]", "[IPv6:2001:db8::1]",
                                  "[IPv6:::ffff:127.0.0.1]",
                                  "[IPv6:1:2:3:4:5:6:7:8]", "[x-tag:stuff]"])
def test_accepts_address_literal(text):
    assert grammar.is_address_literal(text)


@pytest.mark.parametrize("text", ["127.0.0.1", "[256.0.0.1]", "[1.2.3]", "[IPv6:g::1]",
                                  "[IPv6:1:2:3:4:5:6:7:8:9]", "[tag:a[b]"])
def test_rejects_address_literal(text):
    assert not grammar.is_address_literal(text)


@pytest.mark.parametrize("text", ["user@example.test", '"john smith"@example.test',
                                  '"a\\"b"@example.test', "x.y+z@[127.0.0.1]",
                                  "postmaster@[IPv6:::1]"])
def test_accepts_mailbox(text):
    assert grammar.is_mailbox(text)


@pytest.mark.parametrize("text", ["user", "@example.test", "a..b@example.test",
                                  "a b@example.test", "x" * 65 + "@example.test",
                                  '"unterminated@example.test'])
def test_rejects_mailbox(text):
    assert not grammar.is_mailbox(text)


@pytest.mark.parametrize(("text", "ok"), [
    ("<>", True), ("<a@example.test>", True), ("<@relay.test,@b.test:a@example.test>", True),
    ("a@example.test", False), ("<a@example.test", False), ("< a@example.test>", False),
])
def test_reverse_path(text, ok):
    assert grammar.is_reverse_path(text) is ok


@pytest.mark.parametrize(("text", "ok"), [
    ("SIZE 1000", True), ("8BITMIME", True), ("AUTH PLAIN LOGIN", True),
    ("-BAD", False), ("SIZE  1000", False), ("", False),
])
def test_ehlo_line(text, ok):
    assert grammar.is_ehlo_line(text) is ok
