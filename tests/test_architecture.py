"""The package's layering, checked from the source: export and runtime never import each other (what they share
lives in ``rgbir.ops``, ``rgbir.metadata`` and ``rgbir.models``)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "rgbir"


def imported_modules(path: Path) -> set[str]:
    """Absolute names of every module ``path`` imports, relative imports resolved, lazy ones included."""
    package = ["rgbir", *path.relative_to(PACKAGE).with_suffix("").parts][:-1]  # relative imports start here
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            names.add(module)
            names |= {f"{module}.{alias.name}" for alias in node.names}
    return names


@pytest.mark.parametrize("layer, forbidden", [("runtime", "rgbir.export"), ("export", "rgbir.runtime")])
def test_export_and_runtime_do_not_import_each_other(layer, forbidden):
    offenders = {f"{path.relative_to(PACKAGE.parent)} imports {name}"
                 for path in (PACKAGE / layer).rglob("*.py")
                 for name in imported_modules(path) if name == forbidden or name.startswith(forbidden + ".")}
    assert not offenders, sorted(offenders)


def test_the_import_scanner_sees_relative_and_lazy_imports():
    source = PACKAGE / "runtime" / "backends" / "torch_backend.py"
    names = imported_modules(source)
    assert "rgbir.models.runtime_metadata.model_metadata" in names  # a lazy 'from ...models.x import y'
    assert "rgbir.runtime.backends.base" in names  # 'from .base import ...'
