"""The import rule, walked over the source: each folder of ``conformance/`` is a layer, and a
module imports only from its own layer and the layers its row below allows. The protocol
layer is pure; only the plugin imports pytest; only the output and the top (plugin, CLI)
start the embedded reference server (``testing``)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "conformance"

TOP = "top"  # the modules at the package's root: options, plugin, cli, __main__ (and the suite)

# What each layer may import from the package, itself included.
MAY_IMPORT: dict[str, frozenset[str]] = {
    "protocol": frozenset({"protocol"}),
    "checks": frozenset({"protocol", "checks"}),
    "strategies": frozenset({"protocol", "strategies"}),
    "engine": frozenset({"protocol", "checks", "engine"}),
    "search": frozenset({"protocol", "checks", "strategies", "engine", "search"}),
    "testing": frozenset({"protocol", "engine", "testing"}),
    "learn": frozenset({"protocol", "checks", "strategies", "engine", "search", "learn"}),
    "output": frozenset({"protocol", "checks", "engine", "search", "testing", "output"}),
    TOP: frozenset({"protocol", "checks", "strategies", "engine", "search", "testing", "output",
                    "learn", TOP}),
}
PURE = frozenset({"protocol", "checks"})  # no I/O, no Hypothesis, no pytest
IMPURE = frozenset({"socket", "ssl", "select", "selectors", "threading", "asyncio",
                    "subprocess", "hypothesis", "pytest", "_pytest", "aiosmtpd"})


def imports_of(path: Path) -> set[str]:
    """Every module ``path`` imports, as dotted names (``from a import b``: ``a`` and
    ``a.b``, since ``b`` may be a module)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def layer_of_path(path: Path) -> str:
    parts = path.relative_to(PACKAGE).parts
    return TOP if len(parts) == 1 or parts[0] == "suite" else parts[0]


def layer_of_name(name: str) -> str | None:
    """The layer of an imported dotted name of the package (None: not the package's)."""
    parts = name.split(".")
    if parts[0] != "conformance" or parts[1:] in ([], ["__version__"]):
        return None  # not the package's, or its version: any layer may name it
    return parts[1] if parts[1] in MAY_IMPORT else TOP


def sources() -> dict[Path, set[str]]:
    return {path: imports_of(path) for path in sorted(PACKAGE.rglob("*.py"))}


def test_every_folder_is_a_layer_with_a_rule():
    folders = {path.name for path in PACKAGE.iterdir()
               if path.is_dir() and (path / "__init__.py").exists()}
    assert folders - {"suite"} == set(MAY_IMPORT) - {TOP}


def test_each_layer_imports_only_what_its_row_allows():
    broken = sorted(
        (path.relative_to(ROOT).as_posix(), name)
        for path, names in sources().items()
        for name in names
        if (layer := layer_of_name(name)) is not None
        and layer not in MAY_IMPORT[layer_of_path(path)])
    assert broken == []


def test_the_pure_layers_do_no_io_and_use_no_test_library():
    broken = sorted(
        (path.relative_to(ROOT).as_posix(), top)
        for path, names in sources().items() if layer_of_path(path) in PURE
        for top in {name.split(".")[0] for name in names} & IMPURE)
    assert broken == []


def test_only_the_plugin_imports_pytest():
    importing = {path.relative_to(ROOT).as_posix() for path, names in sources().items()
                 if {n.split(".")[0] for n in names} & {"pytest", "_pytest"}}
    assert importing == {"conformance/plugin.py"}


def test_the_walk_sees_what_it_claims_to():
    # A rule over an import graph that misread every file would pass: it must see real edges,
    # and a broken edge must be caught.
    found = sources()
    tables = PACKAGE / "protocol" / "tables.py"
    assert "conformance.protocol.vocabulary" in found[tables]
    assert "pytest" in found[PACKAGE / "plugin.py"]
    assert any(name.startswith("conformance.testing") for name in found[PACKAGE / "plugin.py"])
    assert "engine" not in MAY_IMPORT[layer_of_path(tables)]
    assert layer_of_name("conformance.engine.session") == "engine"
    assert layer_of_path(PACKAGE / "suite" / "test_smtp_conformance.py") == TOP


HEAVY = ("hypothesis", "aiosmtpd", "trustme", "cryptography")


def test_loading_the_plugin_costs_no_heavy_library():
    # The pytest11 entry point loads the plugin in every pytest session of an environment
    # where the package is installed: until a run or a fixture is used, it must cost little.
    code = ("import sys, conformance.plugin; "
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True,
                            capture_output=True, text=True, timeout=60).stdout.strip()
    assert loaded == "[]"
    # The check sees a heavy import where there is one.
    code = code.replace("conformance.plugin", "conformance.search.machine")
    loaded = subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True,
                            capture_output=True, text=True, timeout=60).stdout.strip()
    assert "hypothesis" in loaded


LAYER_ORDER = ("protocol", "checks", "strategies", "engine", "search", "learn", "testing",
               "output", TOP)


def test_the_layout_table_lists_every_module_in_layer_order():
    page = (ROOT / "docs" / "development.md").read_text()
    section = page.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    listed = [line.split("`")[1] for line in section.splitlines()
              if line.startswith("| `conformance/")]
    modules = sorted(path.relative_to(ROOT).as_posix() for path in PACKAGE.rglob("*.py")
                     if path.name != "__init__.py")
    assert sorted(listed) == modules
    layers = [LAYER_ORDER.index(layer_of_path(ROOT / name)) for name in listed]
    assert layers == sorted(layers), "the table goes bottom up, one layer after another"


MAX_MODULE_LINES = 500


def test_no_module_is_over_500_lines():
    # A module that grows past this does several jobs: split it along its seams.
    long = {path.relative_to(ROOT).as_posix(): n for path in PACKAGE.rglob("*.py")
            if (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES}
    assert long == {}
