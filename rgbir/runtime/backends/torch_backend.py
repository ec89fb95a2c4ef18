"""PyTorch backend: the eager reference model (CPU or CUDA)."""

from __future__ import annotations

import numpy as np

from .base import Backend, TensorSpec


class TorchBackend(Backend):
    name = "pytorch"

    def __init__(self, model, device: str = "cpu", half: bool = False, imgsz: tuple[int, int] = (640, 640)):
        import torch

        from ...export.exporter import ExportOptions, model_metadata

        self.torch = torch
        self.metadata = model_metadata(model, ExportOptions(imgsz=tuple(imgsz), batch=None))
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.dtype = torch.float16 if half else torch.float32
        if half:
            self.model.half()

    @classmethod
    def from_file(cls, path: str, **kwargs) -> "TorchBackend":
        from ...models import open_model

        return cls(open_model(path), **kwargs)

    @property
    def inputs(self) -> list[TensorSpec]:
        dtype = np.dtype(np.float16 if self.dtype == self.torch.float16 else np.float32)
        return [TensorSpec(s.name, (None, s.channels, None, None), dtype) for s in self.metadata.inputs]  # any size

    @property
    def outputs(self) -> list[TensorSpec]:
        return [TensorSpec("predictions", (None, 4 + self.metadata.nc, None), np.dtype(np.float32))]

    def infer(self, rgb: np.ndarray, ir: np.ndarray | None = None) -> dict[str, np.ndarray]:
        feeds = self.feeds(rgb, ir)
        tensors = [self.torch.from_numpy(feeds[n]).to(self.device) for n in self.input_names]
        with self.torch.inference_mode():
            out = self.model(*tensors)
        return {"predictions": out.float().cpu().numpy()}
