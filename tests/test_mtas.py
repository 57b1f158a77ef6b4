"""The installer of Debian's MTAs side by side (mtas/): its smoke test (each greets, takes a
message for its own domain, lets go, and leaves no process behind) and one short run of the
matrix against one of them. They need root and Debian's package mirror; .ci/run sets
SMTP_CONFORMANCE_REQUIRE_MTAS, so there they must run."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from conformance.checks import CHECKS
from conformance.output.matrix import About, Target, make
from mtas import base, catalog
from tests.optional import missing

REQUIRE_MTAS = "SMTP_CONFORMANCE_REQUIRE_MTAS"


def needs_installer() -> None:
    if os.geteuid() != 0 or shutil.which("apt-get") is None or shutil.which("unshare") is None:
        missing(REQUIRE_MTAS, "the MTA installer needs root, apt-get and unshare (Debian)")


def test_an_unknown_mta_is_a_clear_error():
    with pytest.raises(base.InstallError, match="unknown MTA 'qmail'; known: postfix, exim"):
        catalog.chosen(["qmail"])
    assert catalog.chosen([]) == list(catalog.MTAS)
    assert catalog.chosen(["sendmail", "exim"]) == ["exim", "sendmail"]  # catalogue order


def test_every_mta_says_what_it_is():
    for name in catalog.MTAS:
        mta = catalog.mta_class(name)
        assert mta.name == name
        assert mta.local_domain.endswith(".test")  # RFC 2606: never a real domain


def test_every_setting_names_a_check_and_what_it_changes():
    """A setting is shown under the findings of its check ("check") or of one cause of it
    ("check cause"): a key that names no check is shown nowhere."""
    for name in catalog.MTAS:
        for key, said in catalog.mta_class(name).settings.items():
            assert key.split(" ", 1)[0] in CHECKS, (name, key)
            assert said.strip(), (name, key)


def daemons() -> set[str]:
    """The processes running an unpacked MTA, or in an instance's directory."""
    done = subprocess.run(["pgrep", "-a", "-f", "smtp-conformance-mtas"], capture_output=True,
                          text=True, check=False)
    return {line for line in done.stdout.splitlines() if "pgrep" not in line}


@pytest.mark.timeout(1200)
def test_installer_starts_every_mta_on_loopback_and_one_short_run_goes_through(tmp_path):
    # One test, so that nothing else of ours starts or stops an MTA while it counts processes.
    needs_installer()
    before = daemons()
    done = subprocess.run([sys.executable, "-m", "mtas", "check"], capture_output=True,
                          text=True, timeout=850, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    for name in catalog.MTAS:
        assert f"{name:>10}: " in done.stdout, done.stdout
    assert done.stdout.count(" on 127.0.0.1:") == len(catalog.MTAS)
    assert done.stdout.count("220 250 250 250 354 250 221") == len(catalog.MTAS)
    assert daemons() == before  # nothing left running

    root = catalog.new_root()
    try:
        with catalog.running(["exim"], root) as [exim]:
            target = Target(exim.name, exim.address, exim.local_domain, About(
                exim.title, exim.version(), exim.configuration(), exim.settings))
            matrix = make([target], ["rfc5321"], tmp_path, examples=5, seed=0, deliver=True)
    finally:
        catalog.remove(root)
    [column] = matrix["columns"]
    assert column["verdict"] in {"PASS", "FAIL", "WARN"}, column  # a verdict, not ERROR
    page = (tmp_path / "server-exim.md").read_text()
    assert page.splitlines()[2].startswith("# Exim 4.")
    for path in matrix["servers"]["exim"]["configuration"]:
        assert (tmp_path / path).is_file()
    assert daemons() == before
