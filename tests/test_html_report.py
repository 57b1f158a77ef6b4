"""The HTML page (--smtp-html) and the Markdown summary (--smtp-summary-md) of a run against a
fault server on 127.0.0.1: each holds what the JSON report holds, loads nothing from elsewhere,
and the page renders in headless Chromium with its findings visible."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import zlib
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from conformance.output import html, markdown
from tests.fault_server import FaultServer

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
NEEDS_CHROMIUM = pytest.mark.skipif(
    CHROMIUM is None and not os.environ.get("SMTP_CONFORMANCE_REQUIRE_CHROMIUM"),
    reason="no headless Chromium (Debian: apt-get install chromium); .ci/run installs it")


class Outputs:
    def __init__(self, directory: Path) -> None:
        self.report: dict[str, Any] = json.loads((directory / "report.json").read_text())
        self.page = (directory / "report.html").read_text()
        self.summary = (directory / "summary.md").read_text()
        self.page_path = directory / "report.html"


@pytest.fixture(scope="module")
def outputs(tmp_path_factory: pytest.TempPathFactory) -> Outputs:
    """One run, two deviations (a code and a state fault), its three outputs."""
    out = tmp_path_factory.mktemp("outputs")
    with FaultServer("noop_replies_252", "rset_keeps_mail_from") as server:
        subprocess.run(
            [sys.executable, "-m", "pytest", "--pyargs", "conformance.suite", "-p",
             "no:cacheprovider", f"--server={server.address}", "--hypothesis-seed=1",
             "--smtp-examples=20", "--smtp-timeout=1", f"--smtp-report={out / 'report.json'}",
             f"--smtp-html={out / 'report.html'}", f"--smtp-summary-md={out / 'summary.md'}"],
            cwd=out, capture_output=True, timeout=300, check=False)
    return Outputs(out)


class Page(HTMLParser):
    """What a reader of the page gets: the text of each element with an id or a class, and
    every attribute that could load something."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.open: list[tuple[str, dict[str, str | None]]] = []
        self.texts: dict[str, list[str]] = {}
        self.loads: list[tuple[str, str | None]] = []
        self.tags: Counter[str] = Counter()
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags[tag] += 1
        self.loads += [(name, value) for name, value in attrs if name in ("src", "href")]
        if tag not in ("br", "meta"):
            self.open.append((tag, dict(attrs)))

    def handle_endtag(self, tag: str) -> None:
        while self.open and self.open.pop()[0] != tag:
            pass

    def handle_data(self, data: str) -> None:
        for _, attrs in self.open:
            for key in (f"#{attrs.get('id')}", f".{attrs.get('class')}"):
                self.texts.setdefault(key, []).append(data)

    def text(self, key: str) -> str:
        return "".join(self.texts.get(key, []))


def test_the_run_found_both_deviations(outputs):
    assert outputs.report["verdict"] == "FAIL"
    assert {f["check"] for f in outputs.report["findings"]} == \
        {"reply_code_documented", "reset_clears_transaction"}


def test_the_page_holds_the_verdict_and_every_finding_with_its_replay(outputs):
    page = Page(outputs.page)
    assert page.text("#verdict") == "FAIL"
    for finding in outputs.report["findings"]:
        article = page.text(f"#check-{finding['check']}")
        assert finding["complaint"] in article
        assert finding["transcript"][-1] in article
        assert f"python -m conformance replay {finding['replay']}" in article
    assert page.tags["details"] == len(outputs.report["findings"])
    assert page.tags["tr"] >= len(outputs.report["coverage"]["groups"]) + 1
    assert "RCPT" in page.text("#coverage")


def test_the_page_loads_nothing_and_runs_nothing(outputs):
    page = Page(outputs.page)
    assert page.loads == []
    assert page.tags["script"] == page.tags["link"] == page.tags["iframe"] == 0
    assert "url(" not in outputs.page
    assert "@import" not in outputs.page


def test_the_servers_words_cannot_become_markup(outputs):
    hostile = json.loads(json.dumps(outputs.report))
    finding = hostile["findings"][0]
    finding["transcript"].append("   0.002 S: 250 <script>alert(1)</script>")
    finding["reply_lines"] = ['<img src="http://example.test/x">']
    page = html.render(hostile)
    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert Page(page).loads == []


def test_the_diagram_is_drawn_inline_or_its_absence_said():
    assert "<svg" in html._diagram('<?xml version="1.0"?>\n<svg><g/></svg>')
    assert "<?xml" not in html._diagram('<?xml version="1.0"?>\n<svg><g/></svg>')
    assert "Graphviz's <code>dot</code> was not found" in html._diagram(None)


def test_the_summary_has_the_verdict_a_row_per_finding_and_each_transcript(outputs):
    summary = outputs.summary
    assert summary.startswith("## smtp-conformance: FAIL\n")
    rows = [line for line in summary.splitlines() if line.startswith("| FAIL | `")]
    assert len(rows) == len(outputs.report["findings"])
    for finding in outputs.report["findings"]:
        assert finding["transcript"][-1] in summary
        assert f"python -m conformance replay {finding['replay']}" in summary
    assert summary.count("<details>") == summary.count("</details>") == len(rows)


def test_a_table_cell_keeps_its_row_and_shows_markup_as_text():
    assert markdown._cell("a | b\nc") == "a \\| b c"
    assert markdown._cell('<img src="x"> & co') == '&lt;img src="x"> &amp; co'


def test_a_servers_backticks_cannot_close_the_transcripts_fence(outputs):
    hostile = json.loads(json.dumps(outputs.report))
    hostile["findings"][0]["transcript"].append("   0.002 S: 250 ```` then markdown")
    summary = markdown.render(hostile)
    assert "\n`````text\n" in summary
    assert summary.count("\n`````\n") == 1


# --- the page in a browser -------------------------------------------------------------------

def chromium(*arguments: str) -> subprocess.CompletedProcess[bytes]:
    assert CHROMIUM is not None, "SMTP_CONFORMANCE_REQUIRE_CHROMIUM is set: install chromium"
    # No network of its own: no updates, no sync, no first-run pages.
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-default-apps", "--hide-scrollbars", *arguments],
        capture_output=True, timeout=120, check=True)


def pixels(png: bytes) -> tuple[int, int, list[bytes]]:
    """Width, height and the RGB rows of an 8-bit RGB or RGBA PNG (as Chromium writes them)."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    chunks: dict[bytes, bytes] = {}
    at = 8
    data = b""
    while at < len(png):
        size, kind = struct.unpack(">I4s", png[at:at + 8])
        body = png[at + 8:at + 8 + size]
        chunks.setdefault(kind, body)
        data += body if kind == b"IDAT" else b""
        at += 12 + size
    width, height, depth, colour = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert depth == 8
    assert colour in (2, 6)
    step = 3 if colour == 2 else 4
    raw, stride, rows = zlib.decompress(data), width * step, []
    previous = bytearray(stride)
    for y in range(height):
        start = y * (stride + 1)
        kind, line = raw[start], bytearray(raw[start + 1:start + 1 + stride])
        for x in range(stride):
            left = line[x - step] if x >= step else 0
            up, corner = previous[x], previous[x - step] if x >= step else 0
            if kind == 1:
                line[x] = (line[x] + left) & 0xFF
            elif kind == 2:
                line[x] = (line[x] + up) & 0xFF
            elif kind == 3:
                line[x] = (line[x] + (left + up) // 2) & 0xFF
            elif kind == 4:
                guess = left + up - corner
                nearest = min((abs(guess - left), 0, left), (abs(guess - up), 1, up),
                              (abs(guess - corner), 2, corner))[2]
                line[x] = (line[x] + nearest) & 0xFF
        previous = line
        rows.append(bytes(b for i, b in enumerate(line) if i % step < 3))
    return width, height, rows


@NEEDS_CHROMIUM
@pytest.mark.timeout(300)
def test_the_page_renders_in_headless_chromium_with_its_findings_visible(outputs, tmp_path):
    url = outputs.page_path.as_uri()
    dom = chromium("--dump-dom", url).stdout.decode()
    rendered = Page(dom)
    assert rendered.text("#verdict") == "FAIL"
    for finding in outputs.report["findings"]:
        assert finding["complaint"] in rendered.text(f"#check-{finding['check']}")
    shot = tmp_path / "page.png"
    chromium("--window-size=1000,1400", f"--screenshot={shot}", url)
    width, height, rows = pixels(shot.read_bytes())
    assert (width, height) == (1000, 1400)
    # The verdict's banner is drawn in FAIL's red (#c62828), across the top of the page.
    red = sum(1 for row in rows[:150] for x in range(0, len(row), 3)
              if abs(row[x] - 0xC6) < 12 and abs(row[x + 1] - 0x28) < 12 and
              abs(row[x + 2] - 0x28) < 12)
    assert red > 0.3 * width * 60
    # Below it, text: the findings' part of the page is not blank.
    inked = sum(1 for row in rows[300:1400] for x in range(0, len(row), 3) if row[x] < 100)
    assert inked > 2000
