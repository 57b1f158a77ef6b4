"""The session transcript: timed C:/S: lines, hidden bytes made visible, bounded memory."""

from __future__ import annotations

import re

from conformance.protocol.transcript import Transcript, escape_line


def test_renders_one_line_per_protocol_line_with_timestamps():
    transcript = Transcript()
    transcript.event("connected to 127.0.0.1:25")
    transcript.server(b"220 mx.example.test\r\n")
    transcript.client(b"EHLO a.example.test\r\nNOOP\r\n")
    transcript.server(b"250-mx.example.test\r\n250 SIZE\r\n")
    lines = transcript.render().splitlines()
    assert [re.sub(r"^\s*\d+\.\d{3} ", "", line) for line in lines] == [
        "*  connected to 127.0.0.1:25",
        "S: 220 mx.example.test",
        "C: EHLO a.example.test",
        "C: NOOP",
        "S: 250-mx.example.test",
        "S: 250 SIZE",
    ]
    stamps = [float(line.split()[0]) for line in lines]
    assert stamps == sorted(stamps)
    assert stamps[0] >= 0


def test_bytes_a_terminal_would_hide_are_escaped():
    transcript = Transcript()
    transcript.client(b"MAIL FROM:<a\x00\\b>\tx\r\n")
    transcript.server(b"250 ok\n")
    transcript.server(b"354 go\r")
    assert transcript.render(timestamps=False).splitlines() == [
        "C: MAIL FROM:<a\\x00\\\\b>\\tx",
        "S: 250 ok\\n  <no CRLF>",
        "S: 354 go\\r  <no CRLF>",
    ]


def test_long_lines_are_cut_with_their_size():
    transcript = Transcript()
    transcript.server(b"250 " + b"x" * 1000 + b"\r\n")
    (line,) = transcript.render(timestamps=False, max_line=50).splitlines()
    assert line == "S: 250 " + "x" * 46 + "... (1006 octets)"


def test_oldest_entries_are_dropped_and_counted_past_the_bound():
    transcript = Transcript(max_entries=3)
    for number in range(5):
        transcript.client(b"NOOP %d\r\n" % number)
    assert len(transcript) == 3
    assert transcript.dropped == 2
    assert transcript.render(timestamps=False).splitlines() == [
        "... 2 earlier entries dropped", "C: NOOP 2", "C: NOOP 3", "C: NOOP 4",
    ]


def test_each_octet_alone_shows_as_itself_only_when_printable_ascii_and_not_a_backslash():
    shown = {"\\": "\\\\", "\r": "\\r", "\n": "\\n", "\t": "\\t"}
    for octet in range(256):
        char = chr(octet)
        expected = char if 0x20 <= octet < 0x7F and char != "\\" else \
            shown.get(char, f"\\x{octet:02x}")
        assert escape_line(b"VRFY a" + bytes([octet]) + b"\r\n") == f"VRFY a{expected}"
