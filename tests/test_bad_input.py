"""Every bad value a user can give ends the run with one line naming it, and no traceback: a
usage error (exit 4) for a bad option, the unreachable status (exit 6) for a server that
cannot be reached, each run end to end through the plugin."""

from __future__ import annotations

import os
import re
import socket
import time

import pytest

from conformance.options import OPTIONS
from conformance.protocol.errors import EXIT_UNREACHABLE

SUITE = ["--pyargs", "conformance.suite", "-p", "no:cacheprovider"]
USAGE = pytest.ExitCode.USAGE_ERROR
NOT_A_HOST = "is not a host name"

# Files the rows name, made in the test's directory (the working directory of each run).
FILES = {
    "not-json.json": "not json\n",
    "list.json": "[1, 2]\n",
    "no-command.json": '{"format": 1, "entries": [{"check": "x", "code": 500}]}\n',
    "FILE": "a file where a directory is expected\n",
    "secret.json": '{"format": 1, "entries": []}\n',  # made unreadable
}
DIRECTORY = "adir"

# (id, arguments, exit status, the one error line: a regex naming the bad value). "{port}" is
# a port nothing listens on.
CASES = [
    ("server-empty", ["--server="], USAGE, r"--server was given an empty value"),
    ("server-no-host", ["--server=:2525"], USAGE,
     r"smtp-conformance: bad server address ':2525': missing host$"),
    ("server-port-0", ["--server=127.0.0.1:0"], USAGE,
     r"'127\.0\.0\.1:0': port must be 1-65535"),
    ("server-port-70000", ["--server=127.0.0.1:70000"], USAGE,
     r"'127\.0\.0\.1:70000': port must be 1-65535"),
    ("server-port-abc", ["--server=127.0.0.1:abc"], USAGE,
     r"'127\.0\.0\.1:abc': port must be 1-65535"),
    ("server-ipv6-unbracketed", ["--server=::1:2525"], USAGE,
     r"'::1:2525': put an IPv6 address in brackets"),
    ("server-space-before-port", ["--server=127.0.0.1 :2525"], USAGE,
     r"--server '127\.0\.0\.1 :2525' holds a space, which separates servers .*missing host"),
    ("server-space-in-host", ["--server=mail .example.com:2525"], USAGE,
     rf"--server 'mail \.example\.com:2525' holds a space, .*'\.example\.com' {NOT_A_HOST}"),
    ("server-empty-label", ["--server=mail..example.com"], USAGE,
     rf"'mail\.\.example\.com' {NOT_A_HOST}"),
    ("server-with-path", ["--server=mail.example.com/smtp"], USAGE,
     rf"'mail\.example\.com/smtp' {NOT_A_HOST}"),
    ("server-with-scheme", ["--server=smtp://127.0.0.1:2525"], USAGE,
     r"'smtp://127\.0\.0\.1:2525': give HOST\[:PORT\], without a scheme"),
    ("server-unresolvable", ["--server=nonexistent.invalid:2525", "--smtp-timeout=1"],
     EXIT_UNREACHABLE, r"smtp-conformance: cannot connect to nonexistent\.invalid:2525: \S"),
    ("server-refused", ["--server=127.0.0.1:{port}", "--smtp-timeout=1"], EXIT_UNREACHABLE,
     r"smtp-conformance: cannot connect to 127\.0\.0\.1:{port}: Connection refused"),
    ("profile-unknown", ["--smtp-profile=rfc9999"], USAGE,
     r"unknown SMTP profile 'rfc9999' \(choose one of: seed, rfc821, rfc5321\)"),
    ("baseline-missing", ["--smtp-baseline=missing.json"], USAGE,
     r"cannot read baseline missing\.json: No such file or directory"),
    ("baseline-unreadable", [f"--smtp-baseline={DIRECTORY}"], USAGE,
     rf"cannot read baseline {DIRECTORY}: Is a directory"),
    ("baseline-permission-denied", ["--smtp-baseline=secret.json"], USAGE,
     r"cannot read baseline secret\.json: Permission denied"),
    ("baseline-not-json", ["--smtp-baseline=not-json.json"], USAGE,
     r"baseline not-json\.json is not JSON: Expecting value: line 1 column 1"),
    ("baseline-wrong-shape", ["--smtp-baseline=list.json"], USAGE,
     r'baseline list\.json: expected \{"format": 1, "entries": \[\.\.\.\]\}'),
    ("baseline-entry-incomplete", ["--smtp-baseline=no-command.json"], USAGE,
     r"baseline no-command\.json, entry 1: missing 'command'"),
    ("report-under-a-file", ["--smtp-report=FILE/report.json"], USAGE,
     r"--smtp-report FILE/report\.json: FILE is not a directory"),
    ("report-is-a-directory", [f"--smtp-report={DIRECTORY}"], USAGE,
     rf"--smtp-report {DIRECTORY}: is a directory, not a file"),
    ("html-is-a-directory", [f"--smtp-html={DIRECTORY}"], USAGE,
     rf"--smtp-html {DIRECTORY}: is a directory, not a file"),
    ("summary-under-a-file", ["--smtp-summary-md=FILE/summary.md"], USAGE,
     r"--smtp-summary-md FILE/summary\.md: FILE is not a directory"),
    ("timeout-negative", ["--smtp-timeout=-1"], USAGE,
     r"--smtp-timeout must be seconds in \(0, 3600\], got '-1'"),
    ("timeout-not-a-number", ["--smtp-timeout=soon"], USAGE,
     r"--smtp-timeout must be seconds in \(0, 3600\], got 'soon'"),
    ("rate-negative", ["--smtp-rate=-1"], USAGE,
     r"--smtp-rate must be commands per second \(a positive number\), got '-1'"),
    ("rate-not-a-number", ["--smtp-rate=fast"], USAGE,
     r"--smtp-rate must be commands per second \(a positive number\), got 'fast'"),
]


AS_ROOT = pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
PARAMS = [pytest.param(*case[1:], id=case[0],
                       marks=[AS_ROOT] if case[0] == "baseline-permission-denied" else [])
          for case in CASES]


def free_port() -> int:
    """A port nothing listens on: bound, then closed."""
    with socket.create_server(("127.0.0.1", 0)) as probe:
        return int(probe.getsockname()[1])


@pytest.mark.parametrize(("arguments", "status", "pattern"), PARAMS)
def test_bad_input_ends_the_run_with_one_line_naming_it(pytester, monkeypatch, arguments,
                                                        status, pattern):
    for option in OPTIONS:  # only the row's values count
        monkeypatch.delenv(option.env, raising=False)
    for name, text in FILES.items():
        (pytester.path / name).write_text(text)
    (pytester.path / "secret.json").chmod(0)
    (pytester.path / DIRECTORY).mkdir()
    port = str(free_port())
    started = time.monotonic()
    result = pytester.runpytest(*SUITE, *(a.replace("{port}", port) for a in arguments))
    elapsed = time.monotonic() - started
    assert result.ret == status
    said = result.stdout.lines + result.stderr.lines
    assert not any("Traceback" in line for line in said)
    error = re.compile(pattern.replace("{port}", port))
    assert any(error.search(line) for line in said), "\n".join(said)
    if status == USAGE:  # pytest's usage error: that line is all it says
        assert [line for line in result.stderr.lines if line.strip()] == \
            [line for line in said if error.search(line)]
        assert result.stderr.lines[0].startswith("ERROR: smtp-conformance: ")
    assert elapsed < 5, f"took {elapsed:.1f}s: it waited on something"
