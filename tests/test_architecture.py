"""The package's layering, checked from the source: no import circle anywhere in rgbir, and export and runtime never
import each other (what they share lives in ``rgbir.ops``, ``rgbir.metadata`` and ``rgbir.models``)."""

from __future__ import annotations

import ast
import graphlib
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "rgbir"


def import_statements(path: Path, root: Path = PACKAGE) -> Iterator[tuple[str, list[str]]]:
    """(module, names taken from it) for every import in ``path``, relative ones resolved, function-level and
    ``TYPE_CHECKING`` ones included ('import x.y' takes no names)."""
    package = [root.name, *path.relative_to(root).with_suffix("").parts][:-1]  # relative imports start here
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from ((alias.name, []) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            yield ".".join(base + ([node.module] if node.module else [])), [alias.name for alias in node.names]


def imported_modules(path: Path) -> set[str]:
    """Absolute names of every module ``path`` imports, relative imports resolved, lazy ones included."""
    names = set()
    for module, taken in import_statements(path):
        names |= {module} | {f"{module}.{name}" for name in taken}
    return names


def module_name(path: Path, root: Path = PACKAGE) -> str:
    parts = [root.name, *path.relative_to(root).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    """Each module of the package → the package's modules it imports: for 'from X import a', X.a where that is a
    module, else X (the packages above a module, whose ``__init__`` re-exports its own modules, are no edge). A
    function-level import counts: it defers loading, not the dependency, so two modules that import each other, one
    of them lazily, still cannot be read, tested or moved apart."""
    paths = {module_name(p, root): p for p in sorted(root.rglob("*.py"))}
    graph = {}
    for name, path in paths.items():
        targets = set()
        for module, taken in import_statements(path, root):
            for target in [f"{module}.{t}" if f"{module}.{t}" in paths else module for t in taken] or [module]:
                if target in paths:
                    targets.add(target)
        graph[name] = targets - {name}
    return graph


def circle(graph: dict[str, set[str]]) -> list[str]:
    """One import circle of ``graph`` (its first module repeated at the end), or [] when there is none."""
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as e:
        return list(reversed(e.args[1]))  # graphlib lists it against the import direction
    return []


def test_no_import_circle_anywhere_in_the_package():
    found = circle(import_graph())
    assert not found, "import circle: " + " → ".join(found)


def test_the_circle_finder_sees_lazy_circles_and_no_false_ones(tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("from .a import f\n")  # a facade over its own modules is no circle
    (pkg / "a.py").write_text("from . import b\n\ndef f():\n    return b.g()\n")
    (pkg / "b.py").write_text("def g():\n    from .c import h\n    return h()\n")
    (pkg / "c.py").write_text("import pkg.d\n")
    (pkg / "d.py").write_text("X = 1\n")
    assert import_graph(pkg) == {"pkg": {"pkg.a"}, "pkg.a": {"pkg.b"}, "pkg.b": {"pkg.c"}, "pkg.c": {"pkg.d"},
                                 "pkg.d": set()}
    assert circle(import_graph(pkg)) == []
    (pkg / "d.py").write_text("def later():\n    from .a import f\n    return f\n")  # lazy, still a circle
    graph = import_graph(pkg)
    found = circle(graph)
    assert sorted(found[1:]) == ["pkg.a", "pkg.b", "pkg.c", "pkg.d"] and found[0] == found[-1]
    assert all(b in graph[a] for a, b in zip(found, found[1:])), found  # in the direction of the imports


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


def test_backends_keep_no_mutable_state_on_the_class():
    """Shared class-level lists/dicts leak between instances (two pipelines, two engines): state is per instance."""
    from rgbir.runtime.backends.base import Backend
    from rgbir.runtime.backends.onnxruntime_backend import OnnxRuntimeBackend
    from rgbir.runtime.backends.tensorrt_backend import TensorRTBackend
    from rgbir.runtime.backends.torch_backend import TorchBackend
    from rgbir.runtime.backends.triton_backend import TritonBackend

    for cls in (Backend, OnnxRuntimeBackend, TensorRTBackend, TorchBackend, TritonBackend):
        mutable = [k for k, v in vars(cls).items() if isinstance(v, (list, dict, set))]
        assert not mutable, f"{cls.__name__} keeps {mutable} on the class"


def test_a_backend_is_a_runner_and_a_context_manager():
    import numpy as np

    from fakes import NumpyBackend

    closed = []

    class Closing(NumpyBackend):
        def close(self):
            closed.append(True)

    with Closing() as backend:
        out = backend.infer(np.zeros((2, 3, 64, 80), np.float64), np.zeros((2, 3, 64, 80)))  # converted to float32
        assert out["predictions"].shape == (2, 6, 8) and backend.calls == 1
        with pytest.raises(Exception, match="needs an IR input"):
            backend.infer(np.zeros((1, 3, 64, 80)))  # checked before _infer runs
        assert backend.calls == 1
    assert closed == [True]
