"""The installed package's runtime dependencies: each bounded above, where a new major version
could change the sessions a seed sends, and the versions these tests run with inside the bounds
(so the bounds are tested, not guessed)."""

from __future__ import annotations

import importlib.metadata
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

PYPROJECT = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())
RUNTIME = [Requirement(text) for text in PYPROJECT["project"]["dependencies"]]


def test_every_runtime_dependency_has_an_upper_bound():
    unbounded = [str(r) for r in RUNTIME if not any(s.operator in ("<", "<=", "~=", "==")
                                                     for s in r.specifier)]
    assert unbounded == []


def test_the_installed_versions_are_inside_the_bounds():
    outside = {r.name: version for r in RUNTIME
               if not r.specifier.contains(version := importlib.metadata.version(r.name))}
    assert outside == {}


def test_the_installed_package_declares_the_same_bounds():
    # An editable install records its requirements when it is made: stale after an edit of
    # pyproject.toml until it is reinstalled.
    declared = {Requirement(text).name: Requirement(text).specifier
                for text in importlib.metadata.requires("smtp-conformance") or []
                if "extra ==" not in text}
    assert declared == {r.name: r.specifier for r in RUNTIME}, \
        "the installed metadata differs from pyproject.toml: pip install -e '.[test]' again"
