"""Inference backends behind one interface: ``infer(rgb, ir) -> {output name: array}``.

Every backend takes the same preprocessed float arrays (B,3,H,W) and (B,Xch,H,W), declares its input and
output tensors, and returns numpy arrays named as the exported graph's outputs, so parity checks and the
runtime never special-case a backend.
"""

from __future__ import annotations

from pathlib import Path

from ...errors import RgbirError
from .base import Backend, TensorSpec

__all__ = ["BACKENDS", "Backend", "TensorSpec", "backend_kind", "open_backend"]

BACKENDS = ("auto", "onnxruntime", "tensorrt", "pytorch", "triton")
PLAN_MIN_BYTES = 1024  # a serialized engine holds at least its header, bindings and kernels: far more than this


def backend_kind(model: str | Path) -> str:
    """The backend a model implies: triton:// → triton, .onnx → onnxruntime, .engine/.plan/.trt → tensorrt, else
    pytorch."""
    from .tensorrt_backend import ENGINE_SUFFIXES
    from .triton_backend import is_triton_url

    if is_triton_url(model):
        return "triton"

    suffix = Path(str(model)).suffix.lower()
    return "onnxruntime" if suffix == ".onnx" else "tensorrt" if suffix in ENGINE_SUFFIXES else "pytorch"


def check_plan(engine: str | Path) -> None:
    """Refuse a file that cannot be a TensorRT plan (text, or a few bytes) before CUDA is touched, so a wrong
    file is not reported as a missing GPU; a missing file is left to the backend to name."""
    engine = Path(engine)
    if not engine.is_file():
        return
    with open(engine, "rb") as f:
        head = f.read(PLAN_MIN_BYTES)
    if len(head) < PLAN_MIN_BYTES or b"\0" not in head:  # a plan is binary: its header alone holds zero bytes
        raise RgbirError(f"{engine} is not a TensorRT plan: rebuild it with 'rgbir build'")


def open_backend(model: str | Path, backend: str = "auto", *, providers: list[str] | None = None,
                 threads: int | None = None, imgsz: tuple[int, int] | None = None, device: str | None = None,
                 cuda_graph: bool = False, contexts: int = 1, plugin_library: str | None = None,
                 gpu_preprocess: bool = False, half: bool = False, attention: str | None = None,
                 channels_last: bool | None = None, compile: bool = False) -> Backend:
    """A backend for ``model``, with the options that concern it; an option given for another backend is an
    error rather than silently ignored.

    onnxruntime: providers, threads, attention · tensorrt: device (GPU index), cuda_graph, contexts, plugin_library,
    gpu_preprocess · pytorch: imgsz (metadata for preprocessing), device ('cpu', 'cuda', 'cuda:1'), cuda_graph,
    half, attention, channels_last, compile, gpu_preprocess.
    """
    kind = backend_kind(model) if backend == "auto" else backend
    _refuse_foreign(kind, {"--providers": providers, "threads": threads, "--device": device is not None,
                           "--imgsz": imgsz is not None, "--cuda-graph": cuda_graph,
                           "--gpu-preprocess": gpu_preprocess, "contexts": contexts != 1, "--plugin": plugin_library,
                           "--half": half, "--attention": attention, "--channels-last": channels_last is not None,
                           "--compile": compile})
    if kind == "triton":
        from .triton_backend import TritonBackend

        return TritonBackend(str(model))
    if kind == "onnxruntime":
        from .onnxruntime_backend import OnnxRuntimeBackend

        return OnnxRuntimeBackend(model, providers=providers, threads=threads, attention=attention or "auto")
    if kind == "tensorrt":
        from .tensorrt_backend import TensorRTBackend

        index = device.removeprefix("cuda:") if device else "0"
        if not (device in (None, "cuda") or index.isdigit()):
            raise RgbirError(f"TensorRT runs on a GPU: --device '{device}' is not a GPU (0, 1, cuda, cuda:1)")
        gpu = int(index) if index.isdigit() else 0
        check_plan(model)
        return TensorRTBackend(model, device=gpu, cuda_graph=cuda_graph, contexts=contexts,
                               plugin_library=plugin_library, gpu_preprocess=gpu_preprocess)
    if kind == "pytorch":
        from .torch_backend import TorchBackend, TorchOptions

        options = TorchOptions(half, cuda_graph, channels_last, compile, attention or "auto", gpu_preprocess)
        return TorchBackend.from_file(str(model), imgsz=imgsz or (640, 640), device=device or "cpu", options=options)
    raise RgbirError(f"backend must be one of {', '.join(BACKENDS)}, got '{kind}'")


OWNERS = {"--providers": ("onnxruntime",), "threads": ("onnxruntime",), "--device": ("tensorrt", "pytorch"),
          "--imgsz": ("pytorch",), "--cuda-graph": ("tensorrt", "pytorch"), "--gpu-preprocess": ("tensorrt", "pytorch"),
          "contexts": ("tensorrt",), "--plugin": ("tensorrt",), "--half": ("pytorch",),
          "--attention": ("onnxruntime", "pytorch"), "--channels-last": ("pytorch",),
          "--compile": ("pytorch",)}  # backend options and who takes them
SHOWN = {"onnxruntime": "ONNX Runtime", "tensorrt": "TensorRT", "pytorch": "PyTorch"}
INSTEAD = {  # what the other backends do instead, where the owners alone do not say it
    "--device": "ONNX Runtime picks its device through --providers (cuda, tensorrt, cpu), a Triton server places "
                "its model itself (instance groups: rgbir triton-repo --kind, --instances)",
    "--imgsz": "an exported model has the input size it was exported with (export it again with 'rgbir export "
               "--imgsz' to change it)"}


def _refuse_foreign(kind: str, given: dict[str, object]) -> None:
    """Options given for another backend are an error, not silently ignored."""
    foreign = [flag for flag, on in given.items() if on and kind not in OWNERS[flag]]
    if foreign and kind in BACKENDS:
        said = ", ".join(f"{flag} ({' and '.join(SHOWN[o] for o in OWNERS[flag])} only)" for flag in foreign)
        one = len(foreign) == 1
        instead = "".join(f"; {INSTEAD[flag]}" for flag in foreign if flag in INSTEAD)
        raise RgbirError(f"{said} {'does' if one else 'do'} not apply to the {kind} backend: leave "
                         f"{'it' if one else 'them'} out{instead}")
