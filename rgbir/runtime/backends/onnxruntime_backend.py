"""ONNX Runtime backend: CPU, CUDA or TensorRT execution providers by availability and preference.

On a GPU provider the inputs and outputs go through IO binding (outputs allocated on the device and copied
back once), instead of ``session.run``'s per-call host staging. On the CPU, the top-k attention runs rgbir's CPU
kernel where it can be had (``ort_attention``), else the op's ONNX function body.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...errors import RgbirError
from ...files import cache_dir
from ...metadata import METADATA_KEY, ModelMetadata, onnx_file
from . import ort_attention
from .base import Backend, TensorSpec

DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(int64)": np.int64,
          "tensor(int32)": np.int32}
PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}
AUTO = ["cuda", "cpu"]  # TensorRT EP only when asked: it builds an engine on the first run (minutes)
DEVICE = {"CUDAExecutionProvider": "cuda", "TensorrtExecutionProvider": "cuda"}


def choose_providers(preference: list[str] | None, available: list[str]) -> list[str]:
    """Provider names in preference order ('cpu', 'cuda', 'tensorrt' or full names; None = CUDA if present, else
    CPU), CPU always last as the fallback for nodes a GPU provider does not take."""
    auto = preference is None or list(preference) == ["auto"]
    wanted = [PROVIDERS.get(p.lower(), p) for p in (AUTO if auto else preference)]
    missing = [p for p in wanted if p not in available]
    if missing and not auto:
        raise RgbirError(f"ONNX Runtime provider(s) {', '.join(missing)} not available here (available: "
                         f"{', '.join(available)}): pip install onnxruntime-gpu for CUDA/TensorRT, or choose cpu")
    chosen = [p for p in wanted if p in available and p != "CPUExecutionProvider"]
    return chosen + ["CPUExecutionProvider"]


def _spec(node) -> TensorSpec:
    """An ONNX Runtime NodeArg as a TensorSpec (symbolic dimensions become None)."""
    shape = tuple(d if isinstance(d, int) else None for d in node.shape)
    return TensorSpec(node.name, shape, np.dtype(DTYPES.get(node.type, np.float32)))


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"

    def __init__(self, path: str | Path, providers: list[str] | None = None, threads: int | None = None,
                 io_binding: bool | None = None, attention: str = "auto"):
        import onnxruntime as ort

        onnx_file(path)
        chosen = choose_providers(providers, ort.get_available_providers())
        provider_options = [self._provider_options(p) for p in chosen]

        def session(model: str | bytes, kernel: bool = False):
            options = ort.SessionOptions()
            if threads:
                options.intra_op_num_threads = threads
            if kernel:
                ort_attention.use_kernel(options)
            try:
                return ort.InferenceSession(model, options, providers=chosen, provider_options=provider_options)
            except Exception as e:  # onnxruntime raises its own exception types for invalid graphs
                raise RgbirError(f"ONNX Runtime cannot load {path}: {str(e).splitlines()[0]}") from e

        self.attention = ort_attention.implementation(Path(path), attention, chosen[0] == "CPUExecutionProvider")
        note = None
        if self.attention == "kernel":
            try:
                self.session = session(ort_attention.kernel_model(Path(path), threads), kernel=True)
            except RgbirError as e:
                if attention == "kernel":
                    raise
                self.attention = "function"
                note = (f"the top-k attention runs its ONNX function body, several times slower than rgbir's CPU "
                        f"kernel: {str(e).splitlines()[0]} (details: rgbir plugins compile-cpu)")
        if self.attention != "kernel":
            self.session = session(str(path))
        meta = self.session.get_modelmeta().custom_metadata_map
        super().__init__(ModelMetadata.from_json(meta[METADATA_KEY]) if METADATA_KEY in meta else None,
                         [_spec(i) for i in self.session.get_inputs()], [_spec(o) for o in self.session.get_outputs()])
        self.warnings += [note] if note else []
        self.providers = self.session.get_providers()
        self.device = DEVICE.get(self.providers[0], "cpu")
        self.io_binding = self.device != "cpu" if io_binding is None else io_binding

    @staticmethod
    def _provider_options(provider: str) -> dict:
        if provider == "TensorrtExecutionProvider":  # keep ORT's TensorRT engines between runs
            cache = cache_dir("ort-tensorrt")
            return {"trt_engine_cache_enable": "True", "trt_engine_cache_path": str(cache),
                    "trt_timing_cache_enable": "True"}
        return {}

    def _infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if not self.io_binding:
            return dict(zip(self.output_names, self.session.run(None, feeds)))
        binding = self.session.io_binding()
        for name, array in feeds.items():
            binding.bind_cpu_input(name, array)
        for name in self.output_names:
            binding.bind_output(name, self.device)
        self.session.run_with_iobinding(binding)
        return dict(zip(self.output_names, binding.copy_outputs_to_cpu()))
