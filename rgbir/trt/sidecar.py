"""The sidecar JSON next to a TensorRT engine: what the runtime needs to know and to check before loading it.

The engine stays a plain TensorRT plan (trtexec, DeepStream and Triton read it as is); ``model.engine.json``
carries the ONNX metadata plus how and where the engine was built. TensorRT plans only load in the TensorRT
version and on the GPU (compute capability) they were built for, unless built version-compatible (later
TensorRT of its major and the next) or hardware-compatible (discrete Ampere+); ``check_compatible`` refuses the rest
with a clear message instead of TensorRT's deserialisation error. Torch- and TensorRT-free.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import RgbirError
from ..files import atomic_write
from ..metadata import ModelMetadata

SIDECAR_SUFFIX = ".json"
RTX_DEFAULT_TARGETS = ("8.0", "8.6", "8.9", "12.0+")  # what TensorRT-RTX targets unless told (its docs)


@dataclass
class EngineMetadata:
    model: ModelMetadata  # the ONNX metadata, with ``precision`` set to the engine's
    tensorrt_version: str
    gpu_name: str  # the build GPU; "" for a TensorRT-RTX engine built ahead of time (no GPU needed)
    compute_capability: tuple[int, int]  # the build GPU's; (0, 0) for TensorRT-RTX (see compute_targets)
    build: dict[str, Any] = field(default_factory=dict)  # the EngineOptions that made it, as JSON
    version_compatible: bool = False
    hardware_compatible: bool = False  # built with a hardware-compatibility level (Ampere+)
    plugin_library: str | None = None
    plugin_sha256: str | None = None
    plugins_embedded: bool = False  # plugin library serialised into the plan (plugins_to_serialize)
    onnx_sha256: str | None = None
    edition: str = "standard"  # "standard" (TensorRT) | "rtx" (TensorRT-RTX: JIT-compiled on the GPU at load)
    compute_targets: list[str] = field(default_factory=list)  # TensorRT-RTX: the compute capabilities it runs on

    def to_json(self) -> str:
        d = asdict(self)
        d["model"] = json.loads(self.model.to_json())
        return json.dumps(d, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> EngineMetadata:
        d = json.loads(text)
        d["model"] = ModelMetadata.from_json(json.dumps(d["model"]))
        d["compute_capability"] = tuple(d["compute_capability"])
        return cls(**d)


def sidecar_path(engine: str | Path) -> Path:
    """``model.engine`` → ``model.engine.json``."""
    engine = Path(engine)
    return engine.with_name(engine.name + SIDECAR_SUFFIX)


def write_sidecar(engine: str | Path, meta: EngineMetadata) -> Path:
    """Written whole, then renamed into place: a reader never sees half a sidecar."""
    return atomic_write(sidecar_path(engine), meta.to_json() + "\n")


def read_sidecar(engine: str | Path) -> EngineMetadata | None:
    """The engine's sidecar, or None when there is none (an engine built by another tool)."""
    path = sidecar_path(engine)
    if not path.is_file():
        return None
    try:
        return EngineMetadata.from_json(path.read_text())
    except (ValueError, KeyError, TypeError) as e:
        raise RgbirError(f"{path} is not an rgbir engine sidecar ({e}): rebuild the engine with 'rgbir build' "
                         "or delete the file") from e


NEXT_MAJOR = {8: 10, 10: 11}  # version-compatible plans also load in the next major release (8.6 → 10, 10 → 11)


def version_tuple(text: str) -> tuple[int, ...]:
    """'10.3.0.26' → (10, 3, 0, 26)."""
    return tuple(int(p) for p in str(text).split(".") if p.isdigit())


def _covers(targets: list[str], cc: tuple[int, int]) -> bool:
    """Whether TensorRT-RTX targets such as ['7.5', '12.0+'] include compute capability ``cc``."""
    for target in targets:
        major, minor = (int(p) for p in target.rstrip("+").split("."))
        if cc == (major, minor) or (target.endswith("+") and cc >= (major, minor)):
            return True
    return False


def _check_rtx(meta: EngineMetadata, edition: str, tensorrt_version: str, gpu_name: str,
               compute_capability: tuple[int, int], engine: str | Path) -> None:
    """TensorRT-RTX engines load only in the release that built them, on a GPU among their targets."""
    if edition != "rtx":
        raise RgbirError(f"{engine} is a TensorRT-RTX engine: run it with TensorRT-RTX (pip install 'rgbir[rtx]') on "
                         "an RTX GPU, or build a TensorRT engine with 'rgbir build --tensorrt standard'")
    if version_tuple(tensorrt_version) != version_tuple(meta.tensorrt_version):
        raise RgbirError(f"{engine} was built with TensorRT-RTX {meta.tensorrt_version} and this is TensorRT-RTX "
                         f"{tensorrt_version}, which loads only its own engines: rebuild it with 'rgbir build "
                         "--tensorrt rtx'")
    if not _covers(meta.compute_targets, tuple(compute_capability)):
        cc = f"{compute_capability[0]}.{compute_capability[1]}"
        raise RgbirError(f"{engine} targets compute capabilities {', '.join(meta.compute_targets)} and {gpu_name} is "
                         f"{cc}: rebuild it with 'rgbir build --tensorrt rtx --compute-capability {cc}'")


def check_compatible(meta: EngineMetadata, tensorrt_version: str, gpu_name: str,
                     compute_capability: tuple[int, int], engine: str | Path = "the engine",
                     integrated: bool = False, edition: str = "standard") -> list[str]:
    """Raise when this TensorRT/GPU cannot load the engine; return warnings for what merely may be slower.

    Plans are tied to the exact TensorRT version (major.minor.patch.build) that built them; a version-compatible
    plan (TensorRT >= 8.6) loads in the same or a later release of its major version, or of the next major
    (8.6 → 10.x, 10.x → 11.x). Plans
    are tied to the compute capability unless built hardware-compatible (any Ampere or newer discrete GPU,
    compute capability >= 8.0; not Jetson). TensorRT-RTX engines (``meta.edition``) follow ``_check_rtx``.
    """
    if meta.edition == "rtx":
        _check_rtx(meta, edition, tensorrt_version, gpu_name, compute_capability, engine)
        return []
    if edition == "rtx":
        raise RgbirError(f"{engine} is a TensorRT engine and TensorRT-RTX cannot load it: run it with TensorRT "
                         "(pip install 'rgbir[trt]'), or rebuild it with 'rgbir build --tensorrt rtx'")
    built, here = version_tuple(meta.tensorrt_version), version_tuple(tensorrt_version)
    rebuild = "rebuild it here with 'rgbir build' (or build it with --version-compatible)"
    if meta.version_compatible:
        if here < built or built < (8, 6) or here[0] not in (built[0], NEXT_MAJOR.get(built[0])):
            raise RgbirError(f"{engine} is version-compatible from TensorRT {meta.tensorrt_version} to the next major "
                             f"version, but this is TensorRT {tensorrt_version}: {rebuild}")
    elif here != built:
        raise RgbirError(f"{engine} was built with TensorRT {meta.tensorrt_version} and this is TensorRT "
                         f"{tensorrt_version}: {rebuild}")
    cc, built_cc = tuple(compute_capability), tuple(meta.compute_capability)
    if meta.hardware_compatible:
        if cc < (8, 0) or integrated:
            raise RgbirError(f"{engine} is hardware-compatible for Ampere and newer GPUs, but {gpu_name} has compute "
                             f"capability {cc[0]}.{cc[1]}: rebuild it on this GPU with 'rgbir build'")
    elif cc != built_cc:
        raise RgbirError(f"{engine} was built for compute capability {built_cc[0]}.{built_cc[1]} "
                         f"({meta.gpu_name}) and this GPU is {gpu_name} ({cc[0]}.{cc[1]}): rebuild it on this GPU "
                         "with 'rgbir build'")
    warnings = []
    if gpu_name != meta.gpu_name and cc == built_cc:
        warnings.append(f"{engine} was built on {meta.gpu_name}; this is {gpu_name} (same compute capability, so it "
                        "loads, but its tactics were timed on the other GPU: rebuild for best speed)")
    return warnings
