"""The documentation site: the checks reference is what the registry and the fault servers say
(generated, and kept so), and mkdocs.yml's navigation holds every page under docs/ and no
other. .ci/run builds the site with ``mkdocs build --strict``; so does the last test here,
where MkDocs is installed (pip install -e '.[docs]')."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests import checks_reference

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
CONFIG: dict[str, Any] = yaml.safe_load((ROOT / "mkdocs.yml").read_text())


def pages(nav: list[Any]) -> list[str]:
    found: list[str] = []
    for entry in nav:
        for value in (entry.values() if isinstance(entry, dict) else [entry]):
            found += pages(value) if isinstance(value, list) else [value]
    return found


def test_the_checks_page_is_generated_from_the_registry_and_the_fault_servers():
    assert (DOCS / "checks.md").read_text() == checks_reference.render(), \
        "regenerate: python -m tests.checks_reference > docs/checks.md"


def test_every_check_on_the_page_is_proven_by_a_fault():
    for section in checks_reference.render().split("\n## ")[1:]:
        assert "Proven by:\n\n- `" in section, section.splitlines()[0]


def test_the_navigation_holds_every_page_and_only_pages_that_exist():
    listed = pages(CONFIG["nav"])
    on_disk = sorted(str(path.relative_to(DOCS)) for path in DOCS.rglob("*.md"))
    assert sorted(listed) == on_disk
    assert len(listed) == len(set(listed))


@pytest.mark.skipif(importlib.util.find_spec("mkdocs") is None,
                    reason="MkDocs is not installed (pip install -e '.[docs]'); .ci/run builds "
                           "the site")
@pytest.mark.timeout(300)
def test_the_site_builds_strictly(tmp_path):
    subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir",
                    str(tmp_path / "site")], cwd=ROOT, check=True, capture_output=True,
                   timeout=240, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert (tmp_path / "site" / "checks" / "index.html").is_file()
