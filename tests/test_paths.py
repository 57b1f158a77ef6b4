"""Output paths are checked before a run: a bad one is a one-line usage error, and checking
creates nothing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from conformance.engine import paths
from conformance.engine.paths import check_writable_dir, check_writable_file
from conformance.protocol.errors import UsageError

# (check, path under tmp_path, error or None). tmp_path holds a regular file FILE and a
# directory DIR.
CASES = [
    (check_writable_file, "r.json", None),
    (check_writable_file, "FILE", None),  # overwritten
    (check_writable_file, "DIR/r.json", None),
    (check_writable_file, "new/deeper/r.json", None),
    (check_writable_file, "FILE/r.json", "--opt {tmp}/FILE/r.json: {tmp}/FILE is not a directory"),
    (check_writable_file, "FILE/a/b/r.json",
     "--opt {tmp}/FILE/a/b/r.json: {tmp}/FILE is not a directory"),
    (check_writable_file, "DIR", "--opt {tmp}/DIR: is a directory, not a file"),
    (check_writable_dir, "DIR", None),
    (check_writable_dir, "new/deeper", None),
    (check_writable_dir, "FILE", "--opt {tmp}/FILE: is not a directory"),
    (check_writable_dir, "FILE/f", "--opt {tmp}/FILE/f: {tmp}/FILE is not a directory"),
    (check_writable_dir, "DIR/FILE/f", "--opt {tmp}/DIR/FILE/f: {tmp}/DIR/FILE is not a "
                                       "directory"),
]


def layout(tmp_path: Path) -> list[Path]:
    (tmp_path / "FILE").write_text("x")
    (tmp_path / "DIR").mkdir()
    (tmp_path / "DIR" / "FILE").write_text("x")
    return sorted(tmp_path.rglob("*"))


@pytest.mark.parametrize(("check", "relative", "error"), CASES,
                         ids=[f"{c.__name__}-{r}" for c, r, _ in CASES])
def test_output_path_is_accepted_or_refused_in_one_line_creating_nothing(
        tmp_path, check, relative, error):
    before = layout(tmp_path)
    if error is None:
        check(tmp_path / relative, "--opt")
    else:
        with pytest.raises(UsageError) as raised:
            check(tmp_path / relative, "--opt")
        assert str(raised.value) == error.format(tmp=tmp_path)
    assert sorted(tmp_path.rglob("*")) == before


def test_a_relative_path_is_checked_from_the_working_directory(tmp_path, monkeypatch):
    layout(tmp_path)
    monkeypatch.chdir(tmp_path)
    check_writable_file(Path("r.json"), "--opt")
    with pytest.raises(UsageError, match=r"^--opt FILE/r\.json: FILE is not a directory$"):
        check_writable_file(Path("FILE/r.json"), "--opt")


@pytest.mark.parametrize(("check", "relative", "error"), [
    (check_writable_file, "DIR/r.json", "cannot write in {tmp}/DIR (permission denied)"),
    (check_writable_file, "DIR/new/r.json",
     "cannot create directories in {tmp}/DIR (permission denied)"),
    (check_writable_dir, "DIR", "cannot write in {tmp}/DIR (permission denied)"),
    (check_writable_dir, "DIR/new", "cannot create directories in {tmp}/DIR (permission denied)"),
])
def test_a_directory_that_cannot_be_written_is_refused(tmp_path, monkeypatch, check, relative,
                                                       error):
    layout(tmp_path)
    monkeypatch.setattr(paths, "_writable", lambda d: Path(d) != tmp_path / "DIR")
    with pytest.raises(UsageError) as raised:
        check(tmp_path / relative, "--opt")
    assert str(raised.value) == f"--opt {tmp_path / relative}: {error.format(tmp=tmp_path)}"


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_a_read_only_directory_is_refused_for_real(tmp_path):
    (tmp_path / "ro").mkdir(mode=0o500)
    try:
        with pytest.raises(UsageError, match="permission denied"):
            check_writable_file(tmp_path / "ro" / "r.json", "--opt")
    finally:
        (tmp_path / "ro").chmod(0o700)


def test_a_read_only_file_is_refused(tmp_path, monkeypatch):
    (tmp_path / "r.json").write_text("{}")
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    with pytest.raises(UsageError, match=r"r.json: cannot write it \(permission denied\)$"):
        check_writable_file(tmp_path / "r.json", "--opt")
