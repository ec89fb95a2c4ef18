"""PyTorch backend: the eager reference model (CPU or CUDA)."""

from __future__ import annotations

import numpy as np

from ...errors import RgbirError
from .base import Backend, TensorSpec


def torch_device(name):
    """``name`` ('cpu', 'cuda', 'cuda:1' or a torch.device) as a device this PyTorch can use, else one clear error
    (a CPU-only build would otherwise fail deep inside with an AssertionError)."""
    import torch

    try:
        device = torch.device(name)
    except RuntimeError as e:
        raise RgbirError(f"--device '{name}' is not a PyTorch device (cpu, cuda, cuda:1)") from e
    if device.type == "cuda" and not torch.cuda.is_available():
        why = "this PyTorch is built without CUDA" if torch.version.cuda is None else "no usable CUDA GPU"
        raise RgbirError(f"--device {name}: {why}; use --device cpu")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise RgbirError(f"--device {name}: there are only {torch.cuda.device_count()} CUDA GPU(s)")
    return device


class TorchBackend(Backend):
    name = "pytorch"

    def __init__(self, model, device: str = "cpu", half: bool = False, imgsz: tuple[int, int] = (640, 640)):
        import torch

        from ...models.runtime_metadata import model_metadata

        self.torch = torch
        metadata = model_metadata(model, tuple(imgsz), batch=None)
        self.device = torch_device(device)
        self.model = model.to(self.device).eval()
        self.dtype = torch.float16 if half else torch.float32
        if half:
            self.model.half()
        dtype = np.dtype(np.float16 if half else np.float32)
        super().__init__(metadata, [TensorSpec(s.name, (None, s.channels, None, None), dtype)  # any size
                                    for s in metadata.inputs],
                         [TensorSpec("predictions", (None, 4 + metadata.nc, None), np.dtype(np.float32))])

    @classmethod
    def from_file(cls, path: str, device: str = "cpu", **kwargs) -> "TorchBackend":
        """Load ``path`` (weights or config) onto ``device``, checked before the model is built."""
        from ...models import open_model

        device = torch_device(device)
        return cls(open_model(path), device=device, **kwargs)

    def _infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        tensors = [self.torch.from_numpy(feeds[n]).to(self.device) for n in self.input_names]
        with self.torch.inference_mode():
            out = self.model(*tensors)
        return {"predictions": out.float().cpu().numpy()}
