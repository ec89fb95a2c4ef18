"""Inference backends behind one interface: ``infer(rgb, ir) -> {output name: array}``.

Every backend takes the same preprocessed float arrays (B,3,H,W) and (B,Xch,H,W) and returns numpy arrays
named as the exported graph's outputs, so parity checks and the runtime never special-case a backend.
"""

from .base import Backend

__all__ = ["Backend", "open_backend"]


def open_backend(model: str, **kwargs) -> Backend:
    """A backend for a model file: ``.onnx`` → ONNX Runtime; ``.pt``/``.safetensors``/config → PyTorch."""
    if str(model).endswith(".onnx"):
        from .onnxruntime_backend import OnnxRuntimeBackend

        return OnnxRuntimeBackend(model, **kwargs)
    from .torch_backend import TorchBackend

    return TorchBackend.from_file(model, **kwargs)
