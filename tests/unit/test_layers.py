"""The layers hold: what a package may import of another, read from its import statements.

The server sees the log engine only through its named interface, and the NATS engine and
the group library do not lean on the log engine at all (see docs/engines.md).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
LOG = "tidings.engines.log"
SERVED = "tidings.engines.log.served"

RULES = [
    # (package, modules it must not import, the one allowed among them)
    ("tidings.server", LOG, SERVED),
    ("tidings.engines.nats", LOG, None),
    ("tidings.engines.groups", LOG, None),
]


def module_of(path: Path) -> str:
    """The dotted module name of a source file under src/."""
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> Iterator[tuple[int, str]]:
    """Everything a file imports, with its line, by its full dotted name (`from a.b import
    c` imports a.b.c, which may be a module or a name in one); relative imports resolved."""
    package = module_of(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *(node.module.split(".") if node.module else [])])
            for alias in node.names:
                yield node.lineno, f"{module}.{alias.name}"


def within(module: str, package: str) -> bool:
    """Whether a dotted name is `package` or inside it."""
    return module == package or module.startswith(package + ".")


def files_of(package: str) -> list[Path]:
    """Every source file of a package, its subpackages included."""
    return sorted((SRC / package.replace(".", "/")).rglob("*.py"))


@pytest.mark.parametrize(("package", "forbidden", "allowed"), RULES, ids=[r[0] for r in RULES])
def test_a_package_imports_only_what_its_layer_allows(
    package: str, forbidden: str, allowed: str | None
) -> None:
    found = [
        f"{path.relative_to(SRC)}:{line} imports {module}"
        for path in files_of(package)
        for line, module in imports(path)
        if within(module, forbidden) and not (allowed and within(module, allowed))
    ]
    assert not found, (
        f"{package} must not import {forbidden}"
        + (f" except {allowed}" if allowed else "")
        + ":\n"
        + "\n".join(found)
    )


def test_the_import_walk_sees_the_server_use_the_named_interface() -> None:
    seen = {name for path in files_of("tidings.server") for _, name in imports(path)}
    assert f"{SERVED}.ServedLog" in seen
    assert "tidings.engines.groups.coordinator" in seen
