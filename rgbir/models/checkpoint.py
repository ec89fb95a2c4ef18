"""Load detectors from ultralytics / YOLOMM ``.pt`` files, plain state_dicts, and rgbir's own safetensors files.

Upstream checkpoints pickle whole module objects. They are read with torch's ``weights_only`` unpickler,
so no code from the file runs: ``torch.nn`` classes are allowed as themselves and every other class the
file names (``ultralytics.*`` and anything else) becomes an inert stand-in that only stores its state. From
the stand-in tree we take the YAML, class names, the state_dict and the details a state_dict lacks (which
activation each Conv used, BatchNorm eps), then rebuild the network with rgbir's own modules.

The weights are the truth: a file's class count is its Detect head's, whatever its YAML or class names say.
"""

from __future__ import annotations

import importlib
import json
import re
import warnings
import zipfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import RgbirError, RgbirWarning
from ..files import atomic_write, file_sha256
from ..version import __version__
from .detector import Detector, Names, build_model, check_names, names_dict

# Upstream class names rgbir rebuilds (module path ignored: forks move classes around).
SUPPORTED_UPSTREAM = {
    "DetectionModel", "Conv", "DWConv", "Bottleneck", "C2f", "C3", "C3k", "C3k2", "SPPF", "Attention",
    "PSABlock", "C2PSA", "Concat", "Index", "DFL", "Detect", "MSC", "C2TSSA", "TSSAlock", "AttentionTSSA",
    "ConvAttn", "ConvolutionalAttention", "MiLKConvAttn", "CFSAM", "Add",
    # rgbir's own names, for checkpoints saved from rgbir modules
    "TSSA", "TSSABlock", "DynamicKernel", "EncoderLayer",
}
ACTIVATIONS = (nn.SiLU, nn.Identity, nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.Hardswish, nn.GELU, nn.Mish, nn.Sigmoid)
SAFETENSORS_MAGIC_KEY = "rgbir.config"
WEIGHTS_SUFFIXES = (".pt", ".pth", ".safetensors")
HEAD_CLASS_CONV = re.compile(r"model\.(\d+)\.cv3\.(\d+)\.(\d+)\.weight")  # a Conv2d directly in cv3[level]


class CheckpointWarning(RgbirWarning):
    """A weights file disagreed with itself (YAML nc, class names vs its head) and loading mended it."""


def is_weights_file(spec: str | Path) -> bool:
    """True for a weights file (by suffix); anything else names a config."""
    return str(spec).endswith(WEIGHTS_SUFFIXES)


def open_model(spec: str | Path, cfg=None, *, scale: str | None = None, nc: int | None = None,
               ir_channels: int | None = None, names: Names | None = None) -> Detector:
    """Load a weights file or build a config, whichever ``spec`` names; ``names`` replaces the class names."""
    if is_weights_file(spec):
        return load(spec, cfg=cfg, scale=scale, nc=nc, ir_channels=ir_channels, names=names)
    return build_model(spec, scale=scale, nc=nc, ir_channels=ir_channels, names=names)


class StandIn(nn.Module):
    """Inert replacement for a pickled class: keeps the object's state, runs nothing."""

    upstream_name = ""

    def __init__(self, *args, **kwargs):
        super().__init__()
        self.reduce_args = args

    def __setstate__(self, state):
        nn.Module.__init__(self)
        if isinstance(state, tuple):  # (dict state, slot state)
            state = {**(state[0] or {}), **(state[1] or {})}
        self.__dict__.update(state or {})


@dataclass
class CheckpointInfo:
    """Where a model came from; exported into ONNX metadata later."""

    path: str
    format: str  # "ultralytics" | "rgbir" | "state_dict"
    sha256: str
    upstream_version: str | None = None
    channel_order: dict[str, str] = field(default_factory=dict)  # per modality: "RGB" | "BGR"
    extra: dict[str, Any] = field(default_factory=dict)


def _stand_in(qualified: str) -> type:
    return type(qualified.rsplit(".", 1)[-1], (StandIn,), {"upstream_name": qualified})


def _resolve_torch_module(qualified: str):
    """A torch.nn module class named in the file, or None if the name is anything else."""
    module_path, _, name = qualified.rpartition(".")
    if not module_path.startswith("torch.nn."):
        return None
    try:
        obj = getattr(importlib.import_module(module_path), name)
    except (ImportError, AttributeError):
        return None
    return obj if isinstance(obj, type) and issubclass(obj, nn.Module) else None


def read_pickled(path: Path) -> Any:
    """Unpickle a torch file without running its code: unknown classes load as ``StandIn`` subclasses."""
    if not zipfile.is_zipfile(path):
        raise RgbirError(f"{path} is not a torch zip checkpoint; re-save it with a torch >= 1.6 torch.save")
    names = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    allowed = [(_resolve_torch_module(n) or _stand_in(n), n) for n in names]
    try:
        with torch.serialization.safe_globals(allowed):
            return torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises UnpicklingError / RuntimeError variants for corrupt files
        raise RgbirError(f"cannot read {path}: {str(e).splitlines()[0]}") from e


def _unsupported_modules(root: nn.Module) -> list[str]:
    """Qualified names of pickled module classes that rgbir has no re-implementation of."""
    return sorted({
        m.upstream_name for m in root.modules()
        if isinstance(m, StandIn) and m.upstream_name.rsplit(".", 1)[-1] not in SUPPORTED_UPSTREAM
    })


def _pick_root(ckpt: Any) -> Any:
    """The model inside a checkpoint dict (EMA first, as upstream), or the object itself."""
    if isinstance(ckpt, Mapping):
        for key in ("ema", "model", "state_dict"):
            if ckpt.get(key) is not None:
                return ckpt[key]
    return ckpt


def activation_overrides(model: nn.Module, reference: nn.Module) -> dict[str, nn.Module]:
    """Activation modules of ``reference`` whose class differs from ``model``'s at the same name."""
    ours = dict(model.named_modules())
    out = {}
    for name, theirs in reference.named_modules():
        mine = ours.get(name)
        if isinstance(mine, ACTIVATIONS) and isinstance(theirs, ACTIVATIONS) and type(mine) is not type(theirs):
            out[name] = theirs
    return out


def set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, attr = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, attr, module)


def load_weights(model: Detector, state_dict: Mapping[str, torch.Tensor]) -> None:
    """Load a state_dict strictly, dropping biases the checkpoint's variant does not have (e.g. MSCN's q/kv)."""
    for name, m in model.named_modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)) and m.bias is not None:
            if f"{name}.weight" in state_dict and f"{name}.bias" not in state_dict:
                m.register_parameter("bias", None)
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    reshaped = [k for k in expected if k in state_dict and state_dict[k].shape != expected[k].shape]
    problems = [
        f"{len(keys)} {what} (e.g. {', '.join(keys[:3])})"
        for keys, what in ((missing, "missing"), (unexpected, "unexpected"), (reshaped, "of another shape"))
        if keys
    ]
    if problems:
        raise RgbirError(
            "weights do not match the model config: " + "; ".join(problems)
            + " — check the config, scale, nc and IR channels"
        )
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state_dict.items()})


def head_classes(state_dict: Mapping[str, torch.Tensor], source: str) -> int | None:
    """Classes of the Detect head in a state_dict: out_channels of each level's last class conv (``cv3[i][-1]``)
    in the last layer that has them; None when there is no such head."""
    last: dict[tuple[int, int], tuple[int, int]] = {}  # (layer, level) -> (position in cv3[level], out_channels)
    for key, tensor in state_dict.items():
        match = HEAD_CLASS_CONV.fullmatch(key)
        if match and tensor.dim() == 4:
            layer, level, position = map(int, match.groups())
            if position >= last.get((layer, level), (-1, 0))[0]:
                last[layer, level] = (position, tensor.shape[0])
    if not last:
        return None
    head = max(layer for layer, _ in last)
    counts = sorted({out for (layer, _), (_, out) in last.items() if layer == head})
    if len(counts) > 1:
        raise RgbirError(f"{source} is damaged: its head's class convs disagree ({' vs '.join(map(str, counts))} "
                         "classes); re-export it from its training run")
    return counts[0]


def weights_classes(path: Path, state_dict: Mapping[str, torch.Tensor], claimed_nc: int | None,
                    nc: int | None) -> tuple[int | None, list[str]]:
    """A weights file's class count: its head's. A requested ``nc`` (--nc) must agree; the file's own YAML nc
    (``claimed_nc``) may not, and that is noted. Without a recognisable head: ``nc``, else ``claimed_nc``."""
    head_nc = head_classes(state_dict, path.name)
    if head_nc is None:
        return (nc if nc is not None else claimed_nc), []
    if nc is not None and nc != head_nc:
        raise RgbirError(f"{path.name}'s head has {head_nc} classes, not {nc}: leave out --nc (a weights file's "
                         "class count comes from its weights)")
    if claimed_nc is not None and claimed_nc != head_nc:
        note = f"{path.name}: its YAML says nc={claimed_nc} but its head has {head_nc} classes: built {head_nc}"
        return head_nc, [note]
    return head_nc, []


def fit_names(names: Names, nc: int) -> tuple[dict[int, str], str | None]:
    """Stored class names fitted to an nc-class head (extra ones dropped, missing ones ``class{i}`` as upstream
    names them) and what was changed, None if nothing."""
    given = names_dict(names)
    fitted = {i: given.get(i, f"class{i}") for i in range(nc)}
    if fitted == given:
        return fitted, None
    done = []
    kept = sum(k in fitted for k in given)
    if kept < len(given):
        done.append(f"kept the first {kept}")
    padded = [fitted[i] for i in range(nc) if i not in given]
    if padded:
        done.append(f"padded with {padded[0]}" + (f"…{padded[-1]}" if len(padded) > 1 else ""))
    entries = f"{len(given)} entr{'y' if len(given) == 1 else 'ies'}"
    return fitted, f"names has {entries} but the head has {nc} classes: {' and '.join(done)}"


def weights_names(path: Path, stored: Names | None, nc: int | None,
                  names: Names | None) -> tuple[dict[int, str] | None, list[str]]:
    """Class names for a weights file with nc classes: ``names`` (--names) if given, one per class; else its stored
    names fitted to nc, noting any change. None: the model names its classes itself."""
    if names is not None:
        given = names_dict(names)
        return (given if nc is None else check_names(given, nc, f"{path.name}'s head has {nc} classes")), []
    if nc is None or stored is None:  # nothing to fit them to, or nothing to fit
        return (None if stored is None else names_dict(stored)), []
    fitted, change = fit_names(stored, nc)
    return fitted, [f"{path.name}: {change}"] if change else []


def _build_for_weights(path: Path, cfg: str | Path | dict, state_dict: Mapping[str, torch.Tensor], *,
                       claimed_nc: int | None, stored_names: Names | None, nc: int | None, names: Names | None,
                       scale: str | None = None, ir_channels: int | None = None) -> tuple[Detector, list[str]]:
    """Build the model a weights file needs (class count from its head, names fitted or replaced) and load the
    weights; returns it with notes on what disagreed in the file and was mended."""
    weights_nc, notes = weights_classes(path, state_dict, claimed_nc, nc)
    fitted, changes = weights_names(path, stored_names, weights_nc, names)
    model = build_model(cfg, scale=scale, nc=weights_nc, ir_channels=ir_channels, names=fitted)
    load_weights(model, state_dict)
    return model, notes + changes


def _from_ultralytics(root: StandIn, path: Path, ckpt: Mapping, nc: int | None,
                      names: Names | None) -> tuple[Detector, dict, list[str]]:
    missing = _unsupported_modules(root)
    if missing:
        raise RgbirError(
            f"{path.name} uses module classes rgbir does not implement: {', '.join(missing)}"
        )
    cfg = getattr(root, "yaml", None)
    if not isinstance(cfg, dict):
        raise RgbirError(f"{path.name} has no model YAML attached; load it with cfg=... and its state_dict")
    model, notes = _build_for_weights(path, cfg, root.state_dict(), claimed_nc=cfg.get("nc"),
                                      stored_names=getattr(root, "names", None), nc=nc, names=names)
    for name, m in activation_overrides(model, root).items():
        set_submodule(model, name, m)
    ours = dict(model.named_modules())
    for name, theirs in root.named_modules():
        if isinstance(theirs, nn.BatchNorm2d) and isinstance(ours.get(name), nn.BatchNorm2d):
            ours[name].eps, ours[name].momentum = theirs.eps, theirs.momentum
    extra = {k: ckpt[k] for k in ("epoch", "best_fitness", "date") if isinstance(ckpt.get(k), (int, float, str))}
    return model, {"format": "ultralytics", "upstream_version": ckpt.get("version"), "extra": extra}, notes


def load(
    path: str | Path,
    cfg: str | Path | dict | None = None,
    *,
    scale: str | None = None,
    nc: int | None = None,
    ir_channels: int | None = None,
    names: Names | None = None,
) -> Detector:
    """Load a detector from an ultralytics/YOLOMM checkpoint, an rgbir ``.safetensors`` file, or a plain
    state_dict (then ``cfg`` names the architecture; ``scale`` and ``ir_channels`` apply to it). The class count
    comes from the head's weights (``nc``, if given, must agree); ``names`` replaces the class names, one per
    class. The result is in eval mode, float32, with ``model.checkpoint`` (a CheckpointInfo) describing the
    source. What the file contradicts itself on and loading mends is reported as a CheckpointWarning.
    """
    path = Path(path)
    if not path.is_file():
        raise RgbirError(f"no such weights file: {path}")
    digest = file_sha256(path)
    if path.suffix == ".safetensors":
        model, info, notes = _from_safetensors(path, nc, names)
    else:
        ckpt = read_pickled(path)
        root = _pick_root(ckpt)
        if isinstance(root, StandIn) and isinstance(getattr(root, "model", None), nn.Module):
            model, info, notes = _from_ultralytics(root, path, ckpt, nc, names)
        elif isinstance(root, Mapping) and all(isinstance(v, torch.Tensor) for v in root.values()):
            if cfg is None:
                raise RgbirError(f"{path.name} holds only a state_dict: name its architecture with cfg (--cfg)")
            model, notes = _build_for_weights(path, cfg, root, claimed_nc=None, stored_names=None, nc=nc,
                                              names=names, scale=scale, ir_channels=ir_channels)
            info = {"format": "state_dict"}
        else:
            raise RgbirError(f"{path.name} holds a {type(root).__name__}, not a detector checkpoint")
    for note in notes:
        warnings.warn(note, CheckpointWarning, stacklevel=2)
    info.setdefault("channel_order", default_channel_order(model, info["format"]))
    model.checkpoint = CheckpointInfo(path=str(path), sha256=digest, **info)
    return model.float().eval()


def default_channel_order(model: Detector, fmt: str) -> dict[str, str]:
    """Channel order the weights expect. YOLOMM trains on two concatenated OpenCV images that are never
    flipped (BGR per modality); stock ultralytics training flips 3-channel images to RGB."""
    if fmt == "ultralytics" and model.multimodal:
        return {"rgb": "BGR", "ir": "BGR"}
    return {"rgb": "RGB", "ir": "RGB"} if model.multimodal else {"rgb": "RGB"}


class CheckpointWriter:
    """Saves one model in rgbir's format as often as asked (training: after every epoch), each time whole or not at
    all; what the file records besides the weights and ``meta`` (the YAML, names, activations) is worked out once."""

    def __init__(self, model: Detector):
        reference = Detector(model.yaml, names=model.names)
        self.model = model
        self.activations = json.dumps({k: type(v).__name__ for k, v in activation_overrides(reference, model).items()})

    def save(self, path: str | Path, meta: dict | None = None, half: bool = False) -> Path:
        """Write ``path`` (its suffix made .safetensors); a failed write leaves the previous file as it was."""
        import safetensors.torch

        path = Path(path).with_suffix(".safetensors")
        model, info = self.model, getattr(self.model, "checkpoint", None)
        header = {
            SAFETENSORS_MAGIC_KEY: json.dumps(model.yaml),
            "rgbir.names": json.dumps({str(k): v for k, v in model.names.items()}),
            "rgbir.activations": self.activations,
            "rgbir.meta": json.dumps({"rgbir_version": __version__, **(meta or {}),
                                      **({"source": asdict(info)} if info else {})}),
        }
        state = {k: (v.half() if half and v.is_floating_point() else v).detach().contiguous()
                 for k, v in model.state_dict().items()}
        atomic_write(path, safetensors.torch.save(state, metadata=header))
        return path


def save(model: Detector, path: str | Path, meta: dict | None = None, half: bool = False) -> Path:
    """Write rgbir's own format: one safetensors file with the weights, the YAML, class names and metadata
    (``half``: store floating-point weights as FP16, half the size; they load back as float32)."""
    return CheckpointWriter(model).save(path, meta, half)


def read_safetensors(path: str | Path, tensors: bool = True) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    """A safetensors file's header metadata and (with ``tensors``) its tensors; a truncated, empty or foreign
    file is one RgbirError naming it."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return f.metadata() or {}, {k: f.get_tensor(k) for k in f.keys()} if tensors else {}
    except SafetensorError as e:
        raise RgbirError(f"{path} is not a readable safetensors file ({' '.join(str(e).split())}): it is cut "
                         "short or another format; save or download it again") from e


def _from_safetensors(path: Path, nc: int | None, names: Names | None) -> tuple[Detector, dict, list[str]]:
    header, state = read_safetensors(path)
    if SAFETENSORS_MAGIC_KEY not in header:
        raise RgbirError(f"{path.name} is a safetensors file without rgbir metadata; load it with cfg=...")
    cfg = json.loads(header[SAFETENSORS_MAGIC_KEY])
    model, notes = _build_for_weights(path, cfg, state, claimed_nc=cfg.get("nc"),
                                      stored_names=json.loads(header["rgbir.names"]), nc=nc, names=names)
    for name, cls_name in json.loads(header.get("rgbir.activations", "{}")).items():
        set_submodule(model, name, getattr(nn, cls_name)())
    meta = json.loads(header.get("rgbir.meta", "{}"))
    source = meta.get("source") or {}
    return model, {
        "format": "rgbir",
        "upstream_version": source.get("upstream_version"),
        "channel_order": source.get("channel_order") or default_channel_order(model, "rgbir"),
        "extra": {k: v for k, v in meta.items() if k != "source"},
    }, notes
