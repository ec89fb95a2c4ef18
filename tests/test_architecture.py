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
        assert out["predictions"].shape == (2, 6, 8) and backend.inference_ms >= 0 and backend.calls == 1
        with pytest.raises(Exception, match="needs an IR input"):
            backend.infer(np.zeros((1, 3, 64, 80)))  # checked before _infer runs
        assert backend.calls == 1
    assert closed == [True]
