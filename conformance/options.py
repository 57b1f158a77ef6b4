"""The suite's options as one table (command line, environment, ini), and the one function that
turns their values into ``RunSettings``, raising a one-line ``UsageError`` for a bad value.

No pytest here: the plugin looks each option up (command line > environment > ini) and passes
what it found; the seed a run uses is chosen here too.
"""

from __future__ import annotations

import random
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from conformance.engine.address import ServerAddress, ip_version
from conformance.engine.baseline import load as load_baseline
from conformance.engine.paths import check_writable_dir, check_writable_file
from conformance.engine.settings import BUDGETS, DEFAULT_TIMEOUT, RunSettings
from conformance.protocol import grammar
from conformance.protocol.credentials import Credentials
from conformance.protocol.errors import UsageError
from conformance.protocol.tables import DEFAULT_PROFILE, PROFILES, get_profile


@dataclass(frozen=True)
class Option:
    name: str  # command-line flag
    ini: str
    env: str
    default: str
    help: str
    flag: bool = False  # takes no value on the command line; "true"/"false" elsewhere
    repeatable: bool = False  # given several times on the command line; else comma-separated


OPTIONS = (
    Option("--server", "smtp_server", "SMTP_CONFORMANCE_SERVER", "",
           "SMTP server to test, HOST[:PORT] (port 25 by default; IPv6 as [::1]:2525); give it "
           "several times (or comma-separated) to test several servers, one test each. "
           "Without it, an embedded reference server (aiosmtpd) is started on 127.0.0.1.",
           repeatable=True),
    Option("--smtp-profile", "smtp_profile", "SMTP_CONFORMANCE_PROFILE", DEFAULT_PROFILE,
           f"documented reply codes to check against: {', '.join(PROFILES)} "
           f"(default {DEFAULT_PROFILE})"),
    Option("--smtp-timeout", "smtp_timeout", "SMTP_CONFORMANCE_TIMEOUT", f"{DEFAULT_TIMEOUT:g}",
           f"seconds to wait for each reply (default {DEFAULT_TIMEOUT:g}); a reply later than "
           "this is a SHOULD "
           "finding, none within 6 times this a MUST finding"),
    Option("--smtp-examples", "smtp_examples", "SMTP_CONFORMANCE_EXAMPLES", "fast",
           "example budget: 'fast' (60 sessions, CI), 'thorough' (1000), or a number"),
    Option("--smtp-budget", "smtp_budget", "SMTP_CONFORMANCE_BUDGET", "",
           "seconds the whole run may take, minimising included (default: 2 per example, at "
           "least 60); when spent, the findings so far are reported"),
    Option("--smtp-fail-fast", "smtp_fail_fast", "SMTP_CONFORMANCE_FAIL_FAST", "false",
           "stop exploring at the first failing finding (default: explore the whole budget "
           "and report every deviation)", flag=True),
    Option("--smtp-strict", "smtp_strict", "SMTP_CONFORMANCE_STRICT", "false",
           "fail on SHOULD findings (WARN) too, not only on MUST findings", flag=True),
    Option("--smtp-deliver", "smtp_deliver", "SMTP_CONFORMANCE_DELIVER", "false",
           "complete messages (send the final <CRLF>.<CRLF>); without it a message is never "
           "completed and nothing is delivered (always on for the embedded server)", flag=True),
    Option("--smtp-relay-check", "smtp_relay_check", "SMTP_CONFORMANCE_RELAY_CHECK", "false",
           "also send recipients at a domain the server is not the destination for "
           "(relay-check.example.net), never followed by a message: taken without "
           "authentication, the server is an open relay (a SHOULD finding)", flag=True),
    Option("--smtp-tls-verify", "smtp_tls_verify", "SMTP_CONFORMANCE_TLS_VERIFY", "false",
           "verify the server's certificate and name after STARTTLS (against the system's "
           "CAs, or --smtp-tls-cafile); by default any certificate, self-signed included, is "
           "accepted: the suite tests SMTP, not the certificate", flag=True),
    Option("--smtp-tls-cafile", "smtp_tls_cafile", "SMTP_CONFORMANCE_TLS_CAFILE", "",
           "PEM file of the CA(s) to verify the server's certificate against (implies "
           "--smtp-tls-verify)"),
    Option("--smtp-tls-server-name", "smtp_tls_server_name", "SMTP_CONFORMANCE_TLS_SERVER_NAME",
           "", "name asked for in the TLS handshake (SNI) and verified (default: the host of "
           "--server)"),
    Option("--smtp-auth-user", "smtp_auth_user", "SMTP_CONFORMANCE_AUTH_USER", "",
           "user name for AUTH PLAIN and LOGIN (RFC 4954); without it AUTH is exercised with "
           "credentials no server accepts"),
    Option("--smtp-auth-password", "smtp_auth_password", "SMTP_CONFORMANCE_AUTH_PASSWORD", "",
           "password for AUTH (better from the environment than the command line); it is "
           "never written to transcripts, reports or replay files"),
    Option("--smtp-rcpt-domain", "smtp_rcpt_domain", "SMTP_CONFORMANCE_RCPT_DOMAIN", "",
           "domain of every generated recipient (default: names reserved for testing, "
           "RFC 2606: example.test, example.com, ...)"),
    Option("--smtp-no-progress", "smtp_no_progress", "SMTP_CONFORMANCE_NO_PROGRESS", "false",
           "show no progress while the run runs (by default: one status line, rewritten on a "
           "terminal, or a line at most every 10 s where output is not a terminal)",
           flag=True),
    Option("--smtp-rate", "smtp_rate", "SMTP_CONFORMANCE_RATE", "",
           "at most this many commands (and connections) per second, for production servers "
           "(default: no limit)"),
    Option("--smtp-shards", "smtp_shards", "SMTP_CONFORMANCE_SHARDS", "1",
           "split each server's run into this many tests, each with its share of the examples "
           "and a seed of its own, so pytest-xdist workers (-n) share the load; 'auto': one "
           "per xdist worker (default 1)"),
    Option("--smtp-example-db", "smtp_example_db", "SMTP_CONFORMANCE_EXAMPLE_DB", "",
           "directory (or redis://HOST:PORT) where the shortest session of each failing "
           "finding is kept; a run replays the saved ones first (default: none)"),
    Option("--smtp-report", "smtp_report", "SMTP_CONFORMANCE_REPORT", "",
           "write a JSON report of the run to this path (schema: "
           "conformance/output/report.schema.json)"),
    Option("--smtp-html", "smtp_html", "SMTP_CONFORMANCE_HTML", "",
           "write the run as one self-contained HTML page to this path (verdict, findings "
           "with transcripts and replay commands, codes seen, the session diagram)"),
    Option("--smtp-summary-md", "smtp_summary_md", "SMTP_CONFORMANCE_SUMMARY_MD", "",
           "write a Markdown summary of the run to this path (for a CI job's summary, such "
           "as GitHub's $GITHUB_STEP_SUMMARY)"),
    Option("--smtp-failures-dir", "smtp_failures_dir", "SMTP_CONFORMANCE_FAILURES_DIR", "",
           "where failing sessions are saved for replay (default: .smtp-conformance/failures "
           "under the rootdir)"),
    Option("--smtp-baseline", "smtp_baseline", "SMTP_CONFORMANCE_BASELINE", "",
           "JSON file of accepted deviations: they are reported as KNOWN and never fail"),
    Option("--smtp-baseline-write", "smtp_baseline_write", "SMTP_CONFORMANCE_BASELINE_WRITE", "",
           "survey mode: fail nothing, and write every finding of the run to this baseline file"),
)
SERVER = OPTIONS[0]
TRUE, FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")
MAX_SHARDS = 256


def choose_seed(given: str | None = None, inherited: str | None = None) -> str:
    """``given`` (--hypothesis-seed) if any; else ``inherited`` (the seed a pytest-xdist
    controller chose for its workers); else a new one."""
    if given is not None:
        return given
    if inherited is not None:
        return inherited
    return str(random.SystemRandom().randrange(2**32))


def parse(given: Callable[[Option], str | None], *, seed: str, workers: int = 1,
          failures_dir: Path | None = None) -> RunSettings:
    """The run's settings from each option's value (None: not given, so its default).
    ``workers``: pytest-xdist's worker count (for ``--smtp-shards=auto``); ``failures_dir``:
    where failing sessions go when ``--smtp-failures-dir`` is not given.
    Any bad value raises a one-line ``UsageError``."""
    values = {o.ini: o.default if (v := given(o)) is None else v for o in OPTIONS}
    servers = _servers(given(SERVER))
    profile = get_profile(values["smtp_profile"])
    timeout = _seconds(values, "smtp_timeout", upper=3600)
    budget = values["smtp_examples"]
    if budget in BUDGETS:
        examples, steps = BUDGETS[budget]
    elif budget.isdigit() and int(budget) > 0:
        examples, steps = int(budget), BUDGETS["fast"][1]
    else:
        raise UsageError(f"--smtp-examples must be fast, thorough or a positive number, "
                         f"got {budget!r}")
    seconds = _seconds(values, "smtp_budget", upper=7 * 86400) if values["smtp_budget"] else 0.0
    rcpt_domain = values["smtp_rcpt_domain"] or None
    if rcpt_domain is not None and not grammar.is_domain(rcpt_domain):
        raise UsageError(f"--smtp-rcpt-domain must be a domain name (RFC 5321 §4.1.2), "
                         f"got {rcpt_domain!r}")
    tls_cafile = _path(values["smtp_tls_cafile"])
    if tls_cafile is not None:
        _check_cafile(tls_cafile)
    tls_server_name = values["smtp_tls_server_name"] or None
    if tls_server_name is not None and not (grammar.is_domain(tls_server_name) or
                                            ip_version(tls_server_name) is not None):
        raise UsageError(f"--smtp-tls-server-name must be a domain name or an IP address, "
                         f"got {tls_server_name!r}")
    credentials = _credentials(values["smtp_auth_user"], values["smtp_auth_password"])
    report = _path(values["smtp_report"])
    html, summary_md = _path(values["smtp_html"]), _path(values["smtp_summary_md"])
    baseline = load_baseline(Path(values["smtp_baseline"])) if values["smtp_baseline"] \
        else None
    baseline_write = _path(values["smtp_baseline_write"])
    failures = _path(values["smtp_failures_dir"])
    example_db = _example_db(values["smtp_example_db"])
    for path, check, option in [(report, check_writable_file, "--smtp-report"),
                                (html, check_writable_file, "--smtp-html"),
                                (summary_md, check_writable_file, "--smtp-summary-md"),
                                (baseline_write, check_writable_file, "--smtp-baseline-write"),
                                (failures, check_writable_dir, "--smtp-failures-dir")]:
        if path is not None:  # before the run, not after it
            check(path, option)
    return RunSettings(servers[0] if servers else None, profile, timeout, examples, steps,
                       budget, seconds=seconds, strict=_flag(values, "smtp_strict"),
                       deliver=_flag(values, "smtp_deliver"),
                       fail_fast=_flag(values, "smtp_fail_fast"), rcpt_domain=rcpt_domain,
                       rate=_rate(values["smtp_rate"]), report=report, html=html,
                       summary_md=summary_md, seed=seed,
                       baseline=baseline, baseline_write=baseline_write,
                       failures_dir=failures or failures_dir, servers=servers,
                       shards=_shards(values["smtp_shards"], workers), example_db=example_db,
                       tls_verify=_flag(values, "smtp_tls_verify") or tls_cafile is not None,
                       tls_cafile=tls_cafile, tls_server_name=tls_server_name,
                       credentials=credentials, relay_check=_flag(values, "smtp_relay_check"),
                       progress=not _flag(values, "smtp_no_progress"))


def _servers(text: str | None) -> tuple[ServerAddress, ...]:
    """Every server given, in order; none: the embedded reference server."""
    if text is None:
        return ()
    chunks = text.split(",")
    if any(not chunk.strip() for chunk in chunks):
        raise UsageError("--server was given an empty value (is the variable behind it set?); "
                         "leave it out to test the embedded reference server")
    servers = tuple(_server(part, chunk) for chunk in chunks for part in chunk.split())
    if len(set(servers)) < len(servers):
        raise UsageError(f"--server names the same server twice: {text.strip()!r}")
    return servers


def _server(part: str, chunk: str) -> ServerAddress:
    """``part`` of the comma-separated ``chunk`` it came from; when a space split the chunk,
    the error says so, since "HOST :PORT" is more likely a typo than two servers."""
    try:
        return ServerAddress.parse(part)
    except UsageError as error:
        if len(chunk.split()) < 2:
            raise
        raise UsageError(f"--server {chunk.strip()!r} holds a space, which separates servers "
                         f"(write HOST:PORT without spaces): {error}") from None


def _path(text: str) -> Path | None:
    return Path(text) if text else None


def _credentials(user: str, password: str) -> Credentials | None:
    if bool(user) != bool(password):
        raise UsageError("--smtp-auth-user and --smtp-auth-password go together: give both "
                         "or neither")
    if any(c in user + password for c in "\0\r\n"):
        raise UsageError("AUTH credentials cannot hold NUL, CR or LF (RFC 4616 §2)")
    return Credentials(user, password) if user else None


def _check_cafile(path: Path) -> None:
    try:
        ssl.create_default_context(cafile=path)
    except (OSError, ssl.SSLError) as error:
        why = error.strerror if isinstance(error, OSError) and error.strerror else error
        raise UsageError(f"--smtp-tls-cafile {str(path)!r} is not a readable PEM file of CA "
                         f"certificates: {why}") from None


def _example_db(text: str) -> str | None:
    if not text:
        return None
    if text.startswith(("redis://", "rediss://")):
        from conformance.engine import example_db  # Hypothesis's storage: loaded when asked for

        example_db.open_db(text)  # a one-line error if Redis cannot be used
        return text
    check_writable_dir(Path(text), "--smtp-example-db")
    return text


def _shards(text: str, workers: int) -> int:
    if text == "auto":
        return max(1, workers)
    if not text.isdigit() or not 0 < int(text) <= MAX_SHARDS:
        raise UsageError(f"--smtp-shards must be auto or a number from 1 to {MAX_SHARDS}, "
                         f"got {text!r}")
    return int(text)


def _seconds(values: dict[str, str], name: str, *, upper: float) -> float:
    text = values[name]
    try:
        seconds = float(text)
        if not 0 < seconds <= upper:
            raise ValueError
    except ValueError:
        raise UsageError(f"--{name.replace('_', '-')} must be seconds in (0, {upper:g}], "
                         f"got {text!r}") from None
    return seconds


def _rate(text: str) -> float | None:
    if not text:
        return None
    try:
        rate = float(text)
        if not 0 < rate <= 100_000:
            raise ValueError
    except ValueError:
        raise UsageError(f"--smtp-rate must be commands per second (a positive number), "
                         f"got {text!r}") from None
    return rate


def _flag(values: dict[str, str], name: str) -> bool:
    text = values[name].lower()
    if text not in TRUE + FALSE:
        raise UsageError(f"--{name.replace('_', '-')} must be true or false, got {text!r}")
    return text in TRUE
