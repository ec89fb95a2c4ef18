"""ONNX Runtime backend: CPU by default, CUDA/TensorRT execution providers when available and asked for."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...errors import RgbirError
from ...metadata import METADATA_KEY, ModelMetadata
from .base import Backend

DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16}


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"

    def __init__(self, path: str | Path, providers: list[str] | None = None, threads: int | None = None):
        import onnxruntime as ort

        if not Path(path).is_file():
            raise RgbirError(f"no such ONNX file: {path}")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        available = ort.get_available_providers()
        chosen = [p for p in (providers or ["CPUExecutionProvider"]) if p in available] or ["CPUExecutionProvider"]
        try:
            self.session = ort.InferenceSession(str(path), options, providers=chosen)
        except Exception as e:  # onnxruntime raises its own exception types for invalid graphs
            raise RgbirError(f"ONNX Runtime cannot load {path}: {str(e).splitlines()[0]}") from e
        meta = self.session.get_modelmeta().custom_metadata_map
        self.metadata = ModelMetadata.from_json(meta[METADATA_KEY]) if METADATA_KEY in meta else None
        self._inputs = {i.name: DTYPES.get(i.type, np.float32) for i in self.session.get_inputs()}

    @property
    def input_names(self) -> list[str]:
        return list(self._inputs)

    @property
    def output_names(self) -> list[str]:
        return [o.name for o in self.session.get_outputs()]

    def infer(self, rgb: np.ndarray, ir: np.ndarray | None = None) -> dict[str, np.ndarray]:
        feeds = {k: np.ascontiguousarray(v, dtype=self._inputs[k]) for k, v in self.feeds(rgb, ir).items()}
        return dict(zip(self.output_names, self.session.run(None, feeds)))
