"""Build a detector from an ultralytics 8.3 YOLO11 / YOLOMM YAML (same layer order, channels and keys).

A YAML row is ``[from, repeats, module, args]`` plus YOLOMM's optional 5th routing field
``'RGB' | 'X' | 'Dual'``: that layer reads the raw RGB image, the raw X (infrared) image or their channel
concatenation instead of its ``from`` input, with c1 = 3, Xch or 3 + Xch.
"""

from __future__ import annotations

import ast
import copy
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from torch import nn

from ..errors import RgbirError
from . import blocks, fusion
from .head import Detect

CONFIG_DIR = Path(__file__).parent / "configs"
ROUTES = {"RGB", "X", "Dual"}

# Modules whose first YAML arg is an output channel count (scaled by width) and that take c1 first.
CHANNEL_MODULES = {
    cls.__name__: cls
    for cls in (blocks.Conv, blocks.DWConv, blocks.Bottleneck, blocks.C2f, blocks.C3, blocks.C3k,
                blocks.C3k2, blocks.SPPF, blocks.C2PSA, fusion.C2TSSA)
}
# ... of which these also take the repeat count as their third argument (n repeats inside the module).
REPEAT_MODULES = {"C2f", "C3", "C3k", "C3k2", "C2PSA", "C2TSSA"}
# Modules that keep their input's channels and take it as their first argument.
DIM_MODULES = {cls.__name__: cls for cls in (fusion.ConvAttn, fusion.MiLKConvAttn)}


def make_divisible(x: float, divisor: int = 8) -> int:
    """Smallest multiple of ``divisor`` that is >= x (ultralytics' channel rounding)."""
    return int(math.ceil(x / divisor) * divisor)


@dataclass(frozen=True)
class Scale:
    """Compound scaling constants of one model scale (n/s/m/l/x)."""

    name: str
    depth: float
    width: float
    max_channels: float


@dataclass
class LayerPlan:
    """One resolved YAML row: what to construct and how it is wired."""

    index: int
    source: int | list[int]
    repeats: int
    name: str
    factory: Callable[..., nn.Module]
    args: list
    route: str | None
    out_channels: Any  # int, or a list for multi-output layers (CFSAM)


NOT_A_MODEL = "give weights (.pt, .pth, .safetensors), a model YAML or a shipped config name"


def resolve_config(cfg: str | Path | dict) -> tuple[dict, str | None]:
    """Load a YAML (path, shipped config name, or dict); returns the dict and the scale named by the file name.

    Like upstream, ``yolo11n-mm-mid.yaml`` resolves to ``yolo11-mm-mid.yaml`` at scale ``n``.
    """
    if isinstance(cfg, dict):
        return copy.deepcopy(cfg), None
    path = Path(cfg)
    if path.is_dir():
        raise RgbirError(f"'{cfg}' is a directory: {NOT_A_MODEL}")
    if not path.suffix:
        path = path.with_suffix(".yaml")
    scale_match = re.search(r"yolo[v]?\d+([nslmx])(?![a-z])", path.stem)
    scale = scale_match.group(1) if scale_match else None
    candidates = [path, CONFIG_DIR / path.name]
    if scale:
        unified = re.sub(r"(yolo[v]?\d+)[nslmx](?![a-z])", r"\1", path.name)
        candidates += [path.with_name(unified), CONFIG_DIR / unified]
    for candidate in candidates:
        if candidate.is_file():
            try:
                with open(candidate, encoding="utf-8") as f:
                    d = yaml.safe_load(f)
            except (UnicodeDecodeError, yaml.YAMLError):  # e.g. an image or an .onnx given as the model
                d = None
            if not isinstance(d, dict) or "backbone" not in d or "head" not in d:
                raise RgbirError(f"{candidate} is not a model YAML (with 'backbone' and 'head' sections): "
                                 f"{NOT_A_MODEL}")
            d.setdefault("yaml_file", path.name)
            return d, scale
    shipped = ", ".join(sorted(p.stem for p in CONFIG_DIR.glob("*.yaml")))
    raise RgbirError(f"no model config '{cfg}': give a YAML path or a shipped config ({shipped})")


def select_scale(d: dict, scale: str | None) -> Scale:
    """Depth/width/max_channels for ``scale`` (else the YAML's own ``scale``, else its first scale)."""
    scales = d.get("scales")
    if not scales:
        return Scale("", d.get("depth_multiple", 1.0), d.get("width_multiple", 1.0), float("inf"))
    scale = scale or d.get("scale") or next(iter(scales))
    if scale not in scales:
        raise RgbirError(f"scale '{scale}' is not in this config (choose from {', '.join(scales)})")
    depth, width, max_channels = scales[scale]
    return Scale(scale, depth, width, max_channels)


def x_channels(d: dict) -> int:
    """Channels of the X (infrared) input: YOLOMM stores it as dataset_config.Xch (default 3)."""
    return int(d.get("Xch") or (d.get("dataset_config") or {}).get("Xch") or 3)


def _literal(a, nc: int):
    """YAML arg strings: 'nc' → class count, Python literals evaluated safely, other strings kept."""
    if a == "nc":
        return nc
    if isinstance(a, str):
        try:
            return ast.literal_eval(a)
        except (ValueError, SyntaxError):
            return a
    return a


def _torch_module(name: str):
    cls = getattr(nn, name[3:], None)
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise RgbirError(f"unknown torch module '{name}' in the model config")
    return cls


def plan_layers(d: dict, scale: Scale, ir_channels: int) -> list[LayerPlan]:
    """Resolve every YAML row to a constructor and its arguments, tracking channels as parse_model does."""
    nc = d["nc"]
    rows = d["backbone"] + d["head"]
    unknown = sorted({r[2] for r in rows if not _known(r[2])})
    if unknown:
        raise RgbirError(f"the model config uses modules rgbir does not implement: {', '.join(unknown)}")
    routed_channels = {"RGB": 3, "X": ir_channels, "Dual": 3 + ir_channels}
    first_route = "Dual" if is_multimodal(d) else "RGB"  # what an unrouted layer 0 reads, as upstream
    legacy = not any(r[2] == "C3k2" for r in rows)  # YOLOv8-style head unless the config uses C3k2
    ch: list = []
    plans = []
    for i, row in enumerate(rows):
        if len(row) not in (4, 5):
            raise RgbirError(f"layer {i}: a row needs [from, repeats, module, args] plus an optional route")
        f, n, name, args = row[:4]
        route = row[4] if len(row) == 5 else None
        if route is not None and route not in ROUTES:
            raise RgbirError(f"layer {i}: route '{route}' must be one of {sorted(ROUTES)}")
        if route is None and i == 0:
            route = first_route
        args = [_literal(a, nc) for a in args]
        n = max(round(n * scale.depth), 1) if n > 1 else n
        c1 = routed_channels[route] if route else (ch[f] if isinstance(f, int) else None)
        if name in CHANNEL_MODULES:
            c2 = args[0]
            if c2 != nc:
                c2 = make_divisible(min(c2, scale.max_channels) * scale.width, 8)
            args = [c1, c2, *args[1:]]
            if name in REPEAT_MODULES:
                args.insert(2, n)
                n = 1
            if name == "C3k2" and scale.name in ("m", "l", "x"):
                args[3] = True
            factory = CHANNEL_MODULES[name]
        elif name in DIM_MODULES:
            c2 = c1
            args = [c1, *args]
            factory = DIM_MODULES[name]
        elif name == "Concat":
            c2 = sum(ch[j] for j in f)
            factory = blocks.Concat
        elif name == "Add":
            c2 = ch[f[0]]
            factory = fusion.Add
        elif name == "MSC":
            if isinstance(f, int) or len(f) != 2:
                raise RgbirError(f"layer {i}: MSC takes two inputs ([query, key/value] layers), got from={f}")
            c2 = ch[f[0]]
            args = [c2, *args[1:]] if args and args[0] is None else (args or [c2])
            factory = fusion.MSC
        elif name == "CFSAM":
            c2 = [ch[j] for j in f]
            if args:
                args[0] = make_divisible(min(args[0], scale.max_channels) * scale.width, 8)
            args = [c2, *args]
            factory = fusion.CFSAM
        elif name == "Index":
            index = args[0] if args else 0
            c2 = c1[index]
            args = [c1, c2, index]
            factory = blocks.Index
        elif name == "Detect":
            args = [args[0] if args else nc, [ch[j] for j in f], legacy]
            c2 = None
            factory = Detect
        elif name.startswith("nn."):
            factory = _torch_module(name)
            c2 = c1
            if factory is nn.BatchNorm2d:
                args = [c1]
        else:  # pragma: no cover - guarded by _known
            raise RgbirError(f"layer {i}: unsupported module {name}")
        plans.append(LayerPlan(i, f, n, name, factory, args, route, c2))
        ch.append(c2)
    return plans


def is_multimodal(d: dict) -> bool:
    """True when some layer reads the X modality (route 'X' or 'Dual')."""
    return any(len(r) == 5 and r[4] in ("X", "Dual") for r in d["backbone"] + d["head"])


def _known(name: str) -> bool:
    return (
        name in CHANNEL_MODULES
        or name in DIM_MODULES
        or name in {"Concat", "Add", "MSC", "CFSAM", "Index", "Detect"}
        or (name.startswith("nn.") and isinstance(getattr(nn, name[3:], None), type))
    )


def instantiate(plan: LayerPlan) -> nn.Module:
    """Construct a planned layer (``repeats`` > 1 wraps copies in nn.Sequential, as upstream)."""
    try:
        if plan.repeats > 1:
            module = nn.Sequential(*(plan.factory(*plan.args) for _ in range(plan.repeats)))
        else:
            module = plan.factory(*plan.args)
    except (ValueError, TypeError, ZeroDivisionError, IndexError) as e:
        raise RgbirError(f"layer {plan.index} ({plan.name} {plan.args[1:] if plan.args else ''}): {e}") from e
    module.i, module.f, module.type, module.input_route = plan.index, plan.source, plan.name, plan.route
    module.np = sum(p.numel() for p in module.parameters())
    return module


def parse_activation(spec: str | None) -> nn.Module | None:
    """YAML ``activation`` such as 'nn.ReLU()' or 'nn.LeakyReLU(0.1)' → a module (no eval of arbitrary code)."""
    if not spec:
        return None
    m = re.fullmatch(r"(?:torch\.)?nn\.(\w+)\((.*)\)", spec.strip())
    if not m:
        raise RgbirError(f"activation '{spec}' must look like 'nn.SiLU()' or 'nn.LeakyReLU(0.1)'")
    cls = _torch_module("nn." + m.group(1))
    args = ast.literal_eval(f"({m.group(2)},)") if m.group(2).strip() else ()
    return cls(*args)
