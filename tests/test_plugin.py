"""The pytest plugin end to end: options, precedence, clear errors, and coverage of the seed."""

from __future__ import annotations

import json
import re
import socket

import pytest

from conformance.protocol.errors import EXIT_UNREACHABLE
from conformance.protocol.tables import GROUPS
from tests.fault_server import FaultServer

SUITE = ["--pyargs", "conformance.suite", "-p", "no:cacheprovider"]


@pytest.mark.parametrize(("option", "message"), [
    ("--server=::1:25", "put an IPv6 address in brackets"),
    ("--server=host:99999", "port must be 1-65535"),
    ("--smtp-profile=rfc9999", "unknown SMTP profile 'rfc9999'"),
    ("--smtp-timeout=soon", "--smtp-timeout must be seconds"),
    ("--smtp-examples=lots", "--smtp-examples must be fast, thorough or a positive number"),
    ("--smtp-rate=0", "--smtp-rate must be commands per second"),
    ("--server=", "--server was given an empty value"),
    ("--smtp-budget=-1", "--smtp-budget must be seconds"),
    ("--smtp-tls-cafile=/nonexistent/ca.pem", "is not a readable PEM file"),
    ("--smtp-auth-user=someone", "--smtp-auth-user and --smtp-auth-password go together"),
])
def test_bad_option_is_a_one_line_usage_error(pytester, option, message):
    result = pytester.runpytest_subprocess(*SUITE, option)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: smtp-conformance: *{message}*"])
    assert "Traceback" not in result.stderr.str()


def test_unreachable_server_exits_with_its_own_code(pytester):
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    report = pytester.path / "report.json"
    result = pytester.runpytest_subprocess(*SUITE, f"--server=127.0.0.1:{port}",
                                           f"--smtp-report={report}")
    assert result.ret == EXIT_UNREACHABLE
    result.stdout.fnmatch_lines([f"*smtp-conformance: cannot connect to 127.0.0.1:{port}*"])
    # One line says it: no table of zeros after it.
    said = result.stdout.lines + result.stderr.lines
    assert len([line for line in said if "cannot connect" in line]) == 1, said
    assert not any(line.startswith(("verdict:", "seed groups")) for line in said)
    written = json.loads(report.read_text())  # and the report says so: nothing was tested
    assert (written["verdict"], written["exit_status"]) == ("UNREACHABLE", EXIT_UNREACHABLE)
    assert written["errors"][0].startswith(f"cannot connect to 127.0.0.1:{port}")


def test_command_line_beats_environment_beats_ini(pytester, monkeypatch):
    pytester.makeini("[pytest]\nsmtp_profile = rfc821\nsmtp_timeout = 7\nsmtp_examples = 5\n")
    result = pytester.runpytest(*SUITE, "--co")
    result.stdout.fnmatch_lines(
        ["*profile rfc821 (MUST); timeout 7s; examples 5 (5 x 25 steps); budget *"])
    monkeypatch.setenv("SMTP_CONFORMANCE_PROFILE", "rfc5321")
    monkeypatch.setenv("SMTP_CONFORMANCE_EXAMPLES", "thorough")
    result = pytester.runpytest(*SUITE, "--co")
    result.stdout.fnmatch_lines(
        ["*profile rfc5321 (SHOULD); timeout 7s; examples thorough (1000 x 50 steps); budget *"])
    result = pytester.runpytest(*SUITE, "--co", "--smtp-profile=seed", "--smtp-examples=3")
    result.stdout.fnmatch_lines(
        ["*profile seed (MUST); timeout 7s; examples 3 (3 x 25 steps); budget *"])


def test_header_names_the_rate_limit(pytester):
    result = pytester.runpytest(*SUITE, "--co", "--smtp-rate=2.5")
    result.stdout.fnmatch_lines(["smtp-conformance: *; at most 2.5 commands/s"])


def test_strict_comes_from_flag_environment_or_ini(pytester, monkeypatch):
    result = pytester.runpytest(*SUITE, "--co", "--smtp-strict")
    result.stdout.fnmatch_lines(["smtp-conformance: *; hypothesis-seed *; strict"])
    monkeypatch.setenv("SMTP_CONFORMANCE_STRICT", "yes")
    result = pytester.runpytest(*SUITE, "--co")
    result.stdout.fnmatch_lines(["smtp-conformance: *; hypothesis-seed *; strict"])
    monkeypatch.setenv("SMTP_CONFORMANCE_STRICT", "maybe")
    result = pytester.runpytest_subprocess(*SUITE, "--co")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: smtp-conformance: --smtp-strict must be true or false*"])


def test_default_run_exercises_all_17_seed_groups(pytester):
    pytester.makeconftest(
        "import pytest\n"
        "@pytest.fixture(autouse=True)\n"
        "def report_groups(smtp_coverage):\n"
        "    yield\n"
        "    groups = sorted({g for (_, g, _) in smtp_coverage})\n"
        "    print('GROUPS=' + '|'.join(groups))\n"
    )
    result = pytester.runpytest(*SUITE, "-s", "--hypothesis-seed=0")
    result.assert_outcomes(passed=1)
    line = next(x for x in result.stdout.lines if "GROUPS=" in x)
    assert set(GROUPS) <= set(line.split("GROUPS=", 1)[1].split("|"))


def test_fixtures_give_users_a_connected_client(pytester):
    pytester.makepyfile(
        "def test_noop(smtp_client):\n"
        "    assert smtp_client.command(b'NOOP\\r\\n').code == 250\n"
    )
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)


def recipient_domain(line: bytes) -> bytes | None:
    """The domain of the path in an RCPT line, valid or not: after the path's last "@" (a
    quoted local part may hold "@", ">" or spaces of its own)."""
    body = line.rstrip(b"\r\n")
    if b"<" in body and b">" in body:
        path = body[body.index(b"<") + 1 : body.rindex(b">")]
    else:  # no brackets: everything after the colon
        path = body.partition(b":")[2].strip()
    return path.rpartition(b"@")[2] if b"@" in path else None


def test_recipient_domain_reads_odd_paths():
    assert recipient_domain(b'RCPT TO:<"a@b c>"@mx.rcpt.test> x\r\n') == b"mx.rcpt.test"
    assert recipient_domain(b"RCPT TO:user@mx.rcpt.test\r\n") == b"mx.rcpt.test"
    assert recipient_domain(b"RCPT TO:<postmaster>\r\n") is None
    assert recipient_domain(b"RCPT TO:\r\n") is None


def test_rcpt_domain_puts_every_generated_recipient_there(pytester):
    with FaultServer() as server:
        result = pytester.runpytest(*SUITE, f"--server={server.address}", "--smtp-examples=30",
                                    "--smtp-rcpt-domain=mx.rcpt.test")
    result.assert_outcomes(passed=1)
    valid = re.compile(rb"RCPT TO:(<[^>]{1,254}>)\r\n", re.I)  # a path within §4.5.3.1.3
    recipients = {m.group(1) for line in server.received if (m := valid.fullmatch(line))}
    assert recipients, "no valid RCPT was sent"
    assert all(r.lower() == b"<postmaster>" or r.lower().endswith(b"@mx.rcpt.test>")
               for r in recipients), recipients
    # Malformed RCPTs too: any domain in any RCPT line is the one given.
    rcpt_lines = [line for line in server.received if line[:4].upper() == b"RCPT"]
    domains = {d for line in rcpt_lines if (d := recipient_domain(line)) is not None}
    assert domains == {b"mx.rcpt.test"}, domains
    assert any(not valid.fullmatch(line) for line in rcpt_lines), "no malformed RCPT was sent"


def test_rcpt_domain_must_be_a_domain(pytester):
    result = pytester.runpytest_subprocess(*SUITE, "--co", "--smtp-rcpt-domain=not a domain")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: smtp-conformance: --smtp-rcpt-domain must be a domain*"])


def test_unrelated_project_sees_nothing_of_the_plugin(pytester, monkeypatch):
    # Installed, the plugin loads in every pytest run: a project that does not use it must
    # not see a header or summary, nor fail on our environment variables.
    monkeypatch.setenv("SMTP_CONFORMANCE_PROFILE", "no-such-profile")
    pytester.makepyfile("def test_plain():\n    assert 1 + 1 == 2\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    output = [line for line in result.outlines + result.errlines
              if not line.startswith("plugins:")]  # pytest's own list of installed plugins
    assert not [line for line in output if "smtp-conformance" in line], output


def test_importing_the_plugin_changes_no_aiosmtpd_global():
    import aiosmtpd.smtp

    import conformance.plugin
    import conformance.testing.reference_server  # noqa: F401

    assert aiosmtpd.smtp.BOGUS_LIMIT == 5  # aiosmtpd's own default


def test_a_project_with_its_own_strategies_and_helpers_modules_runs_green(pytester):
    # The installed package's import names are all under ``conformance``: a user's own
    # ``strategies.py`` (a common name in a Hypothesis project) is the one its tests get,
    # even after the plugin and the suite's own strategies are loaded.
    pytester.makepyfile(
        strategies="def mine():\n    return 'the project s own strategies'\n",
        conformance_helpers="def helper():\n    return 'the project s own helpers'\n",
        test_project=(
            "import conformance.search.machine  # loads conformance.strategies\n"
            "from conformance_helpers import helper\n"
            "from strategies import mine\n\n"
            "def test_own_modules(smtp_client):\n"
            "    assert mine() == 'the project s own strategies'\n"
            "    assert helper() == 'the project s own helpers'\n"
            "    assert smtp_client.command(b'NOOP\\r\\n').code == 250\n"))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
