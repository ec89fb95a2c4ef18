"""PyTorch backend: the model itself, on the CPU or a CUDA GPU.

On a GPU it can run at GPU speed without TensorRT: fp16 weights (``half``), channels-last memory where convolutions
gain from it, the fused top-k attention kernel as a PyTorch op (``attention``), the whole forward captured once per
input shape as a CUDA graph and replayed (``cuda_graph``: eager launch overhead, ~27 ms for a 5 M-parameter model,
becomes one launch), pinned host staging and one stream, 8-bit frames letterboxed on the GPU by the plugin
library's kernel (``gpu_preprocess``, as the TensorRT backend does), and optionally ``torch.compile``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...errors import RgbirError
from .base import Backend, TensorSpec

ATTENTIONS = ("auto", "kernel", "reference", "upstream")  # rgbir.models.attention_kernel.IMPLEMENTATIONS


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


@dataclass
class TorchOptions:
    """How the PyTorch backend runs the model; everything but ``attention`` needs a CUDA device."""

    half: bool = False  # fp16 weights and inputs
    cuda_graph: bool = False  # capture the forward once per input shape, replay it
    channels_last: bool | None = None  # None: on with --half on a GPU (tensor-core convolutions prefer NHWC)
    compile: bool = False  # torch.compile the model (first calls are slow)
    attention: str = "auto"  # top-k attention: the fused kernel on CUDA when its library is found, else reference
    gpu_preprocess: bool = False  # 8-bit frames letterboxed on the GPU by the plugin library's kernel

    def validate(self, device) -> None:
        """One line for an option this device cannot honour."""
        if self.attention not in ATTENTIONS:
            raise RgbirError(f"--attention '{self.attention}' is not one of {', '.join(ATTENTIONS)} for PyTorch")
        if device.type == "cuda":
            return
        asked = [flag for flag, on in (("--half", self.half), ("--cuda-graph", self.cuda_graph),
                                       ("--channels-last", self.channels_last), ("--compile", self.compile),
                                       ("--gpu-preprocess", self.gpu_preprocess)) if on]
        if asked:
            one = len(asked) == 1
            raise RgbirError(f"{', '.join(asked)} {'works' if one else 'work'} on a CUDA GPU only; on {device} leave "
                             f"{'it' if one else 'them'} out, or add --device cuda")


class GraphedForward:
    """The model's forward captured as a CUDA graph for one set of input shapes: inputs are copied into static
    tensors and the graph replayed; a new shape captures again (warm-up on a side stream, as PyTorch advises)."""

    def __init__(self, model, torch):
        self.model, self.torch = model, torch
        self.graph = None
        self.key: tuple | None = None
        self.inputs: list = []
        self.output = None

    def __call__(self, tensors: list):
        key = tuple((t.shape, t.dtype) for t in tensors)
        if key != self.key:
            self._capture(tensors)
            self.key = key
        for static, tensor in zip(self.inputs, tensors):
            static.copy_(tensor, non_blocking=True)
        self.graph.replay()
        return self.output

    def _capture(self, tensors: list) -> None:
        torch = self.torch
        self.inputs = [t.clone() for t in tensors]
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm-up: lazy initialisation and autotuning happen outside the capture
            for _ in range(3):
                self.model(*self.inputs)
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.output = self.model(*self.inputs)


class PinnedUpload:
    """Host arrays onto a CUDA device through page-locked buffers reused by key (asynchronous copies on the current
    stream; each call's result is read back before its buffers are reused)."""

    def __init__(self, device, torch):
        self.device, self.torch = device, torch
        self.buffers: dict[object, object] = {}

    def __call__(self, key, array: np.ndarray):
        host = self.torch.from_numpy(array)
        pinned = self.buffers.get(key)
        if pinned is None or pinned.shape != host.shape or pinned.dtype != host.dtype:
            pinned = self.buffers[key] = self.torch.empty_like(host).pin_memory()
        pinned.copy_(host)
        return pinned.to(self.device, non_blocking=True)


class DeviceFrames:
    """8-bit frames letterboxed on the model's GPU by the plugin library's kernel, straight into one input batch
    per call: a frame crosses PCIe as bytes, not as a float input three to four times its size."""

    def __init__(self, meta, upload: PinnedUpload, dtype: np.dtype):
        from ..gpu_preprocess import LetterboxKernel

        self.kernel, self.upload, self.dtype = LetterboxKernel(meta), upload, np.dtype(dtype)
        self.device, self.torch = upload.device, upload.torch
        self.torch_dtype = self.torch.float16 if self.dtype == np.float16 else self.torch.float32
        self.specs = {s.name: s for s in meta.inputs}

    def __call__(self, frames: dict[str, list[np.ndarray]]) -> tuple[dict[str, object], list[list]]:
        """Input batches by name on the device, and each frame's LetterboxInfo (per pair, per input)."""
        from ..gpu_preprocess import check_frame

        torch = self.torch
        h, w = self.kernel.meta.imgsz
        infos: list[list] = [[] for _ in next(iter(frames.values()))]
        batches = {}
        with torch.cuda.device(self.device):
            stream = torch.cuda.current_stream().cuda_stream
            for name, column in frames.items():
                spec = self.specs[name]
                batch = batches[name] = torch.empty((len(column), spec.channels, h, w), dtype=self.torch_dtype,
                                                    device=self.device)
                for i, frame in enumerate(column):
                    check_frame(frame)
                    src = self.upload((name, i), np.ascontiguousarray(frame))  # a buffer per batch slot
                    infos[i].append(self.kernel(src.data_ptr(), frame.shape, spec, batch[i].data_ptr(), self.dtype,
                                                stream))
        return batches, infos


class TorchBackend(Backend):
    name = "pytorch"

    def __init__(self, model, device: str = "cpu", imgsz: tuple[int, int] = (640, 640),
                 options: TorchOptions | None = None):
        import torch

        from ...models.attention_kernel import set_attention
        from ...models.runtime_metadata import model_metadata

        self.torch = torch
        self.options = options or TorchOptions()
        self.device = torch_device(device)
        self.options.validate(self.device)
        metadata = model_metadata(model, tuple(imgsz), batch=None)
        self.model = model.to(self.device).eval()
        set_attention(self.model, self.options.attention, self.device)
        if self.options.half:
            self.model.half()
        self.channels_last = self.options.half if self.options.channels_last is None and \
            self.device.type == "cuda" else bool(self.options.channels_last)
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.forward = torch.compile(self.model) if self.options.compile else self.model
        self.graphed = GraphedForward(self.forward, torch) if self.options.cuda_graph else None
        self.upload = PinnedUpload(self.device, torch) if self.device.type == "cuda" else None
        dtype = np.dtype(np.float16 if self.options.half else np.float32)
        self.frames = DeviceFrames(metadata, self.upload, dtype) if self.options.gpu_preprocess else None
        super().__init__(metadata, [TensorSpec(s.name, (None, s.channels, None, None), dtype)  # any size
                                    for s in metadata.inputs],
                         [TensorSpec("predictions", (None, 4 + metadata.nc, None), np.dtype(np.float32))])

    @classmethod
    def from_file(cls, path: str, device: str = "cpu", **kwargs) -> TorchBackend:
        """Load ``path`` (weights or config) onto ``device``, checked before the model is built."""
        from ...models import open_model

        device = torch_device(device)
        (kwargs.get("options") or TorchOptions()).validate(device)
        return cls(open_model(path), device=device, **kwargs)

    @property
    def takes_frames(self) -> bool:
        return self.frames is not None

    def _to_device(self, name: str, array: np.ndarray):
        """An input on the model's device (through a reused page-locked buffer on a GPU)."""
        return self.torch.from_numpy(array) if self.upload is None else self.upload(name, array)

    def _infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        with self.torch.inference_mode():
            return self._run([self._to_device(n, feeds[n]) for n in self.input_names])

    def infer_frames(self, rgb: list[np.ndarray], ir: list[np.ndarray] | None = None):
        """8-bit frames in (BGR/grey, any size), letterboxed on the GPU; returns (outputs, LetterboxInfo per
        pair per input). Needs ``gpu_preprocess``."""
        if self.frames is None:
            raise RgbirError("this PyTorch backend was opened without gpu_preprocess")
        columns = self.frame_columns(rgb, ir)
        with self.torch.inference_mode():
            inputs, infos = self.frames(columns)
            return self._run([inputs[n] for n in self.input_names]), infos

    def _run(self, tensors: list) -> dict[str, np.ndarray]:
        """The forward on device tensors (channels-last, captured graph or eager, as the options say)."""
        if self.channels_last:
            tensors = [t.contiguous(memory_format=self.torch.channels_last) for t in tensors]
        out = self.graphed(tensors) if self.graphed is not None else self.forward(*tensors)
        return {"predictions": out.float().cpu().numpy()}
