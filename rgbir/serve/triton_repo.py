"""Triton Inference Server model repositories for rgbir models (``rgbir triton-repo``).

The model serves as a TensorRT plan (``tensorrt_plan``), an ONNX file (``onnxruntime_onnx``), or an ONNX file run by
ONNX Runtime inside a Python-backend model (``python-onnxruntime``, for servers without the ONNX Runtime backend).
Its ``config.pbtxt`` declares the tensors an rgbir export has, batching and instances, and carries the rgbir
metadata in its parameters, where ``triton://`` clients read it. With ``preprocess``, a Python-backend model
letterboxes raw 8-bit frames with rgbir's own preprocessing and an ensemble chains the two.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import RgbirError
from ..files import atomic_write
from ..metadata import ModelMetadata, check_choice, load_onnx, onnx_metadata
from ..options import CommandLineOptions, option
from ..paths import PathPlan
from ..preflight import readable_file, writable_file
from ..triton_contract import (
    FRAME_SUFFIX,
    INPUTS_PARAMETER,
    LETTERBOX_SUFFIX,
    METADATA_PARAMETER,
    Tensor,
    network_tensors,
)
from ..trt.sidecar import read_sidecar, sidecar_path
from .pbtxt import Enum, render

PLATFORMS = ("auto", "tensorrt", "onnxruntime", "python-onnxruntime")
PLATFORM_NAMES = {"tensorrt": "tensorrt_plan", "onnxruntime": "onnxruntime_onnx"}
MODEL_FILES = {"tensorrt": "model.plan", "onnxruntime": "model.onnx", "python-onnxruntime": "model.onnx"}
KINDS = ("auto", "gpu", "cpu")
DEFAULT_MAX_BATCH = 8
TRITON_TYPES = {"float32": "TYPE_FP32", "float16": "TYPE_FP16", "int32": "TYPE_INT32", "uint8": "TYPE_UINT8"}
SCRIPTS = Path(__file__).parent / "triton_models"  # Python-backend models, copied into repositories as model.py
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def _entry(tensor: Tensor, batch: int | None = None) -> dict:
    """A tensor's ``input``/``output`` entry; ``batch`` is prepended for a model without Triton batching."""
    dims = tensor.dims if batch is None else (batch, *tensor.dims)
    return {"name": tensor.name, "data_type": Enum(TRITON_TYPES[tensor.dtype]), "dims": list(dims)}


@dataclass
class RepoOptions(CommandLineOptions):
    """What ``rgbir triton-repo`` writes besides the model itself."""

    name: str | None = option(None, shown="the file's stem", help="the model's name in the repository")
    max_batch: int | None = option(None, parse=int, metavar="N",
                                   shown=f"{DEFAULT_MAX_BATCH}, or an engine's profile maximum",
                                   help="dynamic-batch models: the largest batch Triton forms; fixed-batch models are "
                                        "served without batching")
    queue_delay_us: int = option(0, parse=int, metavar="US", shown="0, only requests already queued are batched",
                                 help="dynamic-batch models: microseconds a request may wait for others to join its "
                                      "batch")
    instances: int = option(1, parse=int, metavar="N", help="model instances, on each GPU for kind gpu")
    kind: str = option("auto", choices=KINDS, shown="auto, Triton's choice: a GPU when the server has one",
                       help="where instances run")
    platform: str = option("auto", choices=PLATFORMS, help="auto: .engine → tensorrt, .onnx → onnxruntime; "
                           "python-onnxruntime runs the ONNX file with ONNX Runtime in a Python-backend model "
                           "(servers without the ONNX Runtime backend)")
    preprocess: bool = option(False, help="add NAME_preprocess (letterboxes raw frames as rgbir run does) and "
                                          "NAME_ensemble (frames → detections)")
    plugin: str | None = option(None, metavar="SO", shown="the one the engine was built with",
                                help="engines: the plugin library the server loads")
    force: bool = option(False, help="replace the model if the repository already holds it")

    def validate(self) -> None:
        check_choice(self.platform, PLATFORMS, "platform")
        check_choice(self.kind, KINDS, "instance kind")
        if self.instances < 1:
            raise RgbirError(f"--instances {self.instances} must be >= 1")
        if self.max_batch is not None and self.max_batch < 1:
            raise RgbirError(f"--max-batch {self.max_batch} must be >= 1")
        if self.queue_delay_us < 0:
            raise RgbirError(f"--queue-delay-us {self.queue_delay_us} must be >= 0")
        if self.name is not None and not NAME.fullmatch(self.name):
            raise RgbirError(f"--name '{self.name}' is not a Triton model name: use letters, digits, _ . -")


@dataclass
class Repository:
    """What was written: the repository, its models (the one to call first) and the tritonserver flags it needs."""

    root: Path
    models: list[str]
    server_flags: list[str]


@dataclass
class _Source:
    """The model file and what the repository needs to know about it."""

    path: Path
    meta: ModelMetadata
    platform: str
    batch_limit: int | None = None  # an engine's largest profile batch
    plugin: Path | None = None
    version_compatible: bool = False


def _source(model: Path, options: RepoOptions) -> _Source:
    """The export or engine, its metadata (an engine's from its sidecar) and the platform it serves on."""
    from ..runtime.backends import backend_kind

    readable_file(model, "model file")
    kind = backend_kind(model)
    if kind == "tensorrt":
        if options.platform not in ("auto", "tensorrt"):
            raise RgbirError(f"{model} is a TensorRT engine: it serves on the tensorrt platform, not "
                             f"{options.platform} (give the .onnx export for that)")
        if options.kind == "cpu":
            raise RgbirError("a TensorRT engine runs on a GPU: leave out --kind cpu")
        sidecar = read_sidecar(model)
        if sidecar is None:
            raise RgbirError(f"{model} has no rgbir sidecar ({sidecar_path(model).name}): build it with 'rgbir build', "
                             "which writes the metadata next to the engine")
        plugin = options.plugin or (None if sidecar.plugins_embedded else sidecar.plugin_library)
        if plugin and not options.plugin and not Path(plugin).is_file():
            raise RgbirError(f"{model} was built with the plugin library {plugin}, which is not on this machine: "
                             "give --plugin PATH, the library the server will load")
        profile = (sidecar.build or {}).get("batch") or {}
        return _Source(model, sidecar.model, "tensorrt", profile.get("max", 1),
                       readable_file(plugin, "plugin library").resolve() if plugin else None,
                       sidecar.version_compatible)
    if kind == "onnxruntime":
        if options.platform == "tensorrt":
            raise RgbirError(f"{model} is an ONNX file: build a TensorRT engine from it with 'rgbir build' to serve "
                             "on the tensorrt platform")
        if options.plugin:
            raise RgbirError("--plugin applies to TensorRT engines: ONNX Runtime runs the attention node's "
                             "standard-op body")
        meta = onnx_metadata(load_onnx(model, load_external_data=False), model)
        return _Source(model, meta, "onnxruntime" if options.platform == "auto" else options.platform)
    raise RgbirError(f"{model} is neither an ONNX export (.onnx) nor a TensorRT engine (.engine, .plan): export it "
                     "with 'rgbir export' first")


def _max_batch(source: _Source, options: RepoOptions) -> int:
    """Triton's max_batch_size: 0 for a fixed-batch model (whose dims then include its batch)."""
    fixed, limit = source.meta.batch, source.batch_limit
    if fixed is not None:
        given = [flag for flag, value in (("--max-batch", options.max_batch), ("--queue-delay-us",
                                                                              options.queue_delay_us)) if value]
        if given:
            raise RgbirError(f"{', '.join(given)}: {source.path} has a fixed batch of {fixed}, which Triton serves "
                             "without batching (max_batch_size 0): export with --batch dynamic to batch requests")
        return 0
    wanted = options.max_batch or limit or DEFAULT_MAX_BATCH
    if limit is not None and wanted > limit:
        raise RgbirError(f"--max-batch {wanted}: the engine's profile takes at most {limit} (build it with "
                         f"'rgbir build --batch 1,{wanted},{wanted}')")
    return wanted


def _instances(count: int, kind: str) -> list[dict]:
    group = {"count": count}
    if kind != "auto":  # left out, Triton picks KIND_GPU when it has a GPU
        group["kind"] = Enum(f"KIND_{kind.upper()}")
    return [group]


def _parameters(meta: ModelMetadata, **extra: str) -> list[dict]:
    """The rgbir metadata as config parameters: the whole JSON, and names, input size, strides and letterbox on
    their own for clients that are not rgbir."""
    values = {METADATA_PARAMETER: meta.to_json(),
              "rgbir_names": json.dumps([meta.names[i] for i in sorted(meta.names)]),
              "rgbir_imgsz": ",".join(map(str, meta.imgsz)),
              "rgbir_strides": ",".join(f"{s:g}" for s in meta.strides),
              "rgbir_letterbox": json.dumps(meta.letterbox, sort_keys=True), **extra}
    return [{"key": key, "value": {"string_value": value}} for key, value in values.items()]


def model_config(name: str, source: _Source, options: RepoOptions) -> dict:
    """The served model's config: platform (or the Python backend), tensors, batching, instances, metadata."""
    inputs, outputs = network_tensors(source.meta)
    max_batch = _max_batch(source, options)
    batch = None if max_batch else source.meta.batch
    config = {"name": name}
    if source.platform == "python-onnxruntime":
        config["backend"] = "python"
    else:
        config["platform"] = PLATFORM_NAMES[source.platform]
    config.update(max_batch_size=max_batch, input=[_entry(t, batch) for t in inputs],
                  output=[_entry(t, batch) for t in outputs])
    if max_batch:  # without a delay, Triton batches the requests already queued when an instance frees up
        config["dynamic_batching"] = {"max_queue_delay_microseconds": options.queue_delay_us} \
            if options.queue_delay_us else {}
    extra = {"rgbir_plugin_library": str(source.plugin)} if source.plugin else {}
    config.update(instance_group=_instances(options.instances, options.kind),
                  parameters=_parameters(source.meta, **extra))
    return config


def _frame_tensors(meta: ModelMetadata) -> tuple[list[Tensor], list[Tensor]]:
    """Raw frames in (uint8 H x W x C, C = 3 BGR or 1 grey) and each frame's letterbox out (scale, left, top)."""
    return ([Tensor(m + FRAME_SUFFIX, "uint8", (-1, -1, -1)) for m in meta.modality_order],
            [Tensor(m + LETTERBOX_SUFFIX, "float32", (3,)) for m in meta.modality_order])


def preprocess_configs(name: str, meta: ModelMetadata, options: RepoOptions) -> tuple[dict, dict]:
    """NAME_preprocess (frames → one pair's network inputs) and NAME_ensemble (frames → the model's outputs)."""
    if meta.batch not in (None, 1):
        raise RgbirError(f"--preprocess makes one pair per request: {name} has a fixed batch of {meta.batch}; export "
                         "with --batch 1 or --batch dynamic")
    inputs, outputs = network_tensors(meta)
    frames, letterboxes = _frame_tensors(meta)
    preprocess = {"name": f"{name}_preprocess", "backend": "python", "max_batch_size": 0,
                  "input": [_entry(t) for t in frames],
                  "output": [_entry(t, 1) for t in inputs] + [_entry(t) for t in letterboxes],
                  "instance_group": _instances(options.instances, "cpu"), "parameters": _parameters(meta)}

    def mapping(tensors: list[Tensor]) -> list[dict]:
        return [{"key": t.name, "value": t.name} for t in tensors]

    steps = [{"model_name": preprocess["name"], "model_version": -1, "input_map": mapping(frames),
              "output_map": mapping(inputs + letterboxes)},
             {"model_name": name, "model_version": -1, "input_map": mapping(inputs), "output_map": mapping(outputs)}]
    ensemble = {"name": f"{name}_ensemble", "platform": "ensemble", "max_batch_size": 0,
                "input": [_entry(t) for t in frames],
                "output": [_entry(t, 1) for t in outputs] + [_entry(t) for t in letterboxes],
                "ensemble_scheduling": {"step": steps},
                "parameters": _parameters(meta, **{INPUTS_PARAMETER: "frames"})}
    return preprocess, ensemble


def write_repository(model: str | Path, root: str | Path, options: RepoOptions | None = None) -> Repository:
    """Write ``root/NAME`` (config.pbtxt, 1/model.plan or 1/model.onnx [+ model.py]) and, with ``preprocess``,
    ``NAME_preprocess`` and ``NAME_ensemble``; every target is checked writable before anything is written."""
    options = options or RepoOptions()
    options.validate()
    model, root = Path(model), Path(root)
    source = _source(model, options)
    name = options.name or model.stem
    if not NAME.fullmatch(name):
        raise RgbirError(f"'{name}' (from {model.name}) is not a Triton model name: give --name")
    files: dict[str, str | Path] = {f"{name}/config.pbtxt": render(model_config(name, source, options)),
                                    f"{name}/1/{MODEL_FILES[source.platform]}": source.path}
    if source.platform == "python-onnxruntime":
        files[f"{name}/1/model.py"] = SCRIPTS / "onnxruntime_model.py"
    models = [name]
    if options.preprocess:
        preprocess, ensemble = preprocess_configs(name, source.meta, options)
        files.update({f"{preprocess['name']}/config.pbtxt": render(preprocess),
                      f"{preprocess['name']}/1/model.py": SCRIPTS / "preprocess_model.py",
                      f"{ensemble['name']}/config.pbtxt": render(ensemble)})
        models = [ensemble["name"], name, preprocess["name"]]
    for relative in files:
        writable_file(root / relative, "Triton model repository file")
    PathPlan().reads("the model", model, sidecar_path(model) if source.platform == "tensorrt" else None) \
        .reads("--plugin", source.plugin).writes("-o", *(root / relative for relative in files)).check()
    held = sorted({relative.split("/")[0] for relative in files if (root / relative).exists()})
    if held and not options.force:
        raise RgbirError(f"{root} already holds model {', '.join(held)}: give --force to replace it, or another "
                         "--name or -o")
    for relative, content in files.items():
        atomic_write(root / relative, content if isinstance(content, str) else content.read_bytes())
    if options.preprocess:
        (root / models[0] / "1").mkdir(exist_ok=True)  # an ensemble has a version folder with nothing in it
    flags = [f"--backend-config=tensorrt,plugins={source.plugin}"] if source.plugin else []
    if source.version_compatible:
        flags.append("--backend-config=tensorrt,version-compatible=true")
    return Repository(root, models, flags)
