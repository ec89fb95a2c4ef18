"""Write checkpoints in the pickled layout of ultralytics / YOLOMM, without ultralytics.

Each rgbir module is re-classed to a subclass whose ``__module__`` / ``__qualname__`` are the upstream ones,
so ``torch.save`` records ``ultralytics.nn.modules.conv.Conv`` etc. exactly as a real checkpoint does. The
fake ``ultralytics`` modules exist in ``sys.modules`` only while saving.
"""

from __future__ import annotations

import copy
import sys
import types
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

# rgbir class name -> (upstream module path, upstream class name)
UPSTREAM = {
    "Conv": ("ultralytics.nn.modules.conv", "Conv"),
    "DWConv": ("ultralytics.nn.modules.conv", "DWConv"),
    "Concat": ("ultralytics.nn.modules.conv", "Concat"),
    "Bottleneck": ("ultralytics.nn.modules.block", "Bottleneck"),
    "C2f": ("ultralytics.nn.modules.block", "C2f"),
    "C3k": ("ultralytics.nn.modules.block", "C3k"),
    "C3k2": ("ultralytics.nn.modules.block", "C3k2"),
    "SPPF": ("ultralytics.nn.modules.block", "SPPF"),
    "Attention": ("ultralytics.nn.modules.block", "Attention"),
    "PSABlock": ("ultralytics.nn.modules.block", "PSABlock"),
    "C2PSA": ("ultralytics.nn.modules.block", "C2PSA"),
    "DFL": ("ultralytics.nn.modules.block", "DFL"),
    "Detect": ("ultralytics.nn.modules.head", "Detect"),
    "MSC": ("ultralytics.nn.modules.fusion.msc", "MSC"),
    "C2TSSA": ("ultralytics.nn.extraction.c2psa_variants", "C2TSSA"),
    "TSSABlock": ("ultralytics.nn.extraction.c2psa_variants", "TSSAlock"),
    "TSSA": ("ultralytics.nn.extraction.c2psa_base", "AttentionTSSA"),
}


@contextmanager
def fake_ultralytics():
    """Register empty ``ultralytics.*`` modules; yields a function that makes/looks up a fake class."""
    created: dict[str, types.ModuleType] = {}

    def module(path: str) -> types.ModuleType:
        parts = path.split(".")
        for i in range(1, len(parts) + 1):
            name = ".".join(parts[:i])
            if name not in sys.modules:
                created[name] = sys.modules[name] = types.ModuleType(name)
        return sys.modules[path]

    def fake_class(path: str, name: str, base: type = nn.Module) -> type:
        mod = module(path)
        if not hasattr(mod, name):
            cls = type(name, (base,), {"__module__": path, "__qualname__": name})
            setattr(mod, name, cls)
        return getattr(mod, name)

    try:
        yield fake_class
    finally:
        for name in created:
            sys.modules.pop(name, None)


def save_upstream_checkpoint(model, path: Path, *, extra_modules: dict | None = None,
                             version: str = "8.3.163", names: dict | list | None | types.EllipsisType = ...) -> Path:
    """Save ``model`` (an rgbir Detector) as an FP16 EMA DetectionModel inside an ultralytics ckpt dict.

    ``extra_modules`` maps a dotted path under the layer list (e.g. '9.cv1.act') to a module to put there,
    or to an ``(upstream module path, class name)`` pair for a made-up upstream class, to imitate upstream
    variations (8.4.0's SPPF without activation, classes rgbir does not know, ...).
    ``names`` is stored as given instead of the model's (a list, a dict of another length); None stores none.
    """
    seq = copy.deepcopy(model.model).half()
    with fake_ultralytics() as fake_class:
        for m in seq.modules():
            key = type(m).__name__
            if isinstance(m, nn.LayerNorm):  # rgbir's float32-island LayerNorm is a plain LayerNorm upstream
                m.__class__ = nn.LayerNorm
            elif key in UPSTREAM:
                m.__class__ = fake_class(*UPSTREAM[key], base=type(m))
        for name, mod in (extra_modules or {}).items():
            if isinstance(mod, tuple):
                mod = fake_class(*mod, base=nn.Identity)()
            parent, _, attr = name.rpartition(".")
            setattr(seq.get_submodule(parent) if parent else seq, attr, mod)
        detection_model = fake_class("ultralytics.nn.tasks", "DetectionModel")()
        detection_model.model = seq
        detection_model.yaml = copy.deepcopy(model.yaml)
        if names is not None:
            detection_model.names = dict(model.names) if names is ... else copy.deepcopy(names)
        detection_model.stride = model.stride.clone()
        detection_model.save = list(model.save)
        namespace = fake_class("ultralytics.utils", "IterableSimpleNamespace", object)
        args = namespace()
        args.__dict__.update(imgsz=640, batch=16, data="llvip.yaml")
        detection_model.args = args
        router = fake_class("ultralytics.nn.mm.router", "MultiModalRouter", object)()
        router.INPUT_SOURCES = {"RGB": 3, "X": 3, "Dual": 6}
        detection_model.mm_router = router
        ckpt = {
            "date": "2025-07-01T12:00:00",
            "version": version,
            "epoch": -1,
            "best_fitness": 0.5,
            "model": None,
            "ema": detection_model,
            "updates": 1000,
            "optimizer": None,
            "train_args": {"imgsz": 640, "data": "llvip.yaml"},
        }
        torch.save(ckpt, path)
    return path
