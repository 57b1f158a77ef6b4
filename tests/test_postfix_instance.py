"""The Postfix harness runs where Postfix can, and says why it cannot in words a user can act
on; none of these tests needs Postfix."""

from __future__ import annotations

import os
import shutil
import socket
import stat
import tempfile
from pathlib import Path

import pytest

from mtas.postfix import PostfixInstance, closed_to_others


def test_names_the_first_directory_other_users_cannot_enter():
    top = Path(tempfile.mkdtemp(dir="/tmp"))
    try:
        (top / "a" / "b").mkdir(parents=True)
        top.chmod(0o755)
        (top / "a").chmod(0o700)
        assert closed_to_others(top / "a" / "b" / "queue") == top / "a"
        (top / "a").chmod(0o755)
        assert closed_to_others(top / "a" / "b" / "queue") is None
    finally:
        shutil.rmtree(top)


def test_pytest_s_own_temporary_directory_is_closed_to_postfix(tmp_path):
    # Why the tests' instance lives elsewhere: master(8) could not open its lock file here.
    assert closed_to_others(tmp_path / "queue") is not None


def test_an_instance_of_its_own_gets_a_new_directory_outside_pytest_s(tmp_path_factory):
    with socket.create_server(("127.0.0.1", 0)) as probe:
        instance = PostfixInstance.in_new_directory(probe.getsockname()[1])
    try:
        assert instance.root.parent == Path(tempfile.gettempdir()).resolve()
        assert not instance.root.is_relative_to(tmp_path_factory.getbasetemp())
    finally:
        instance.remove()
    assert not instance.root.exists()


def test_without_postfix_on_the_path_the_reason_says_so(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    reason = PostfixInstance.unavailable_reason()
    assert reason == "Postfix is not installed (no `postfix` on PATH)"


def test_a_closed_temporary_directory_is_a_reason_naming_tmpdir(monkeypatch, tmp_path):
    monkeypatch.setattr(shutil, "which", lambda name: f"/usr/sbin/{name}")
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # under pytest's, owner-only
    reason = PostfixInstance.unavailable_reason()
    assert reason is not None
    assert "closed to other users" in reason
    assert "set TMPDIR" in reason


def test_a_failed_postfix_command_shows_the_end_of_postfix_s_log(tmp_path):
    instance = PostfixInstance(tmp_path, 25)
    instance.log.write_text("".join(f"line {n}\n" for n in range(20))
                            + "postfix/master[1]: fatal: open lock file: Permission denied\n")
    with pytest.raises(RuntimeError) as failed:
        instance._postfix("false")  # exits 1, as `postfix start` does when master(8) fails
    message = str(failed.value)
    assert message.startswith(f"false -c {instance.conf} failed (exit 1)")
    assert message.endswith("fatal: open lock file: Permission denied")
    assert "line 11" in message
    assert "line 10" not in message  # only the last ten lines


def test_each_start_makes_a_certificate_whose_key_only_root_reads(tmp_path):
    instance = PostfixInstance(tmp_path, 25)
    instance._write_certificate()
    tls = instance.ca_file.parent
    assert instance.ca_file.read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")
    assert (tls / "server.pem").read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")
    assert b"PRIVATE KEY" in (tls / "server.key").read_bytes()
    assert stat.S_IMODE((tls / "server.key").stat().st_mode) == 0o600
    first = instance.ca_file.read_bytes()
    instance._write_certificate()
    assert instance.ca_file.read_bytes() != first  # a new CA each time
