"""The import rule, walked over the source: the protocol modules (the tables, the grammar, the
model, the reply parser) are pure and import nothing above them; only the plugin imports
pytest; only the top layers (plugin, CLI and matrix) start the embedded reference server.
The folders that will show these layers are issue 21's; the rule holds already."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "conformance"

# Pure: no I/O, no Hypothesis, no pytest, and nothing of the package outside this set.
PROTOCOL = frozenset({"grammar", "levels", "vocabulary", "tables", "model", "replies",
                      "commands", "transcript", "errors", "violations"})
IMPURE = frozenset({"socket", "ssl", "select", "selectors", "threading", "asyncio",
                    "subprocess", "hypothesis", "pytest", "_pytest", "aiosmtpd"})
TOP = frozenset({"plugin", "cli", "matrix"})  # may start the embedded reference server


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


def package_modules(names: set[str]) -> set[str]:
    """The package's own modules among ``names``, without the ``conformance.`` prefix."""
    return {name.split(".")[1] for name in names
            if name.startswith("conformance.") and (PACKAGE / f"{name.split('.')[1]}.py").exists()}


def modules() -> dict[str, set[str]]:
    return {path.stem: imports_of(path) for path in sorted(PACKAGE.glob("*.py"))}


def test_the_protocol_layer_is_pure_and_imports_nothing_above_it():
    found = modules()
    assert set(found) >= PROTOCOL
    for name in PROTOCOL:
        tops = {imported.split(".")[0] for imported in found[name]}
        assert not tops & IMPURE, (name, sorted(tops & IMPURE))
        assert package_modules(found[name]) <= PROTOCOL, (
            name, sorted(package_modules(found[name]) - PROTOCOL))


def test_only_the_plugin_imports_pytest():
    sources = [*PACKAGE.glob("*.py"), *(ROOT / "strategies").glob("*.py")]
    importing = {path.relative_to(ROOT).as_posix() for path in sources
                 if {n.split(".")[0] for n in imports_of(path)} & {"pytest", "_pytest"}}
    assert importing == {"conformance/plugin.py"}


def test_only_the_top_layers_start_the_reference_server():
    starting = {name for name, imported in modules().items()
                if "reference_server" in package_modules(imported)}
    assert starting <= TOP, sorted(starting - TOP)


def test_the_walk_sees_what_it_claims_to():
    # A rule over an import graph that misread every file would pass: it must see real edges.
    found = modules()
    assert "conformance.vocabulary" in found["tables"] or "vocabulary" in package_modules(
        found["tables"])
    assert "pytest" in {n.split(".")[0] for n in found["plugin"]}
    assert "reference_server" in package_modules(found["plugin"])
