"""Argument types and helpers shared by the sub-commands."""

from __future__ import annotations

import argparse
import contextlib
import logging
import warnings
from pathlib import Path

from rich.console import Console

from ..errors import RgbirError

# results (tables, summaries, written files) go to stdout through this one console, plain text (no markup, so
# file names with brackets print as they are) and never wrapped (soft_wrap: long paths and commands stay whole);
# messages go to the 'rgbir' logger (stderr, rgbir.log)
console = Console(markup=False, highlight=False, soft_wrap=True)
log = logging.getLogger("rgbir.cli")


def class_names(text: str) -> list[str] | dict:
    """'person,car' → ['person', 'car']; a .yaml/.yml path → that file's ``names`` (a data.yaml's list or
    {index: name} mapping)."""
    if not text.endswith((".yaml", ".yml")):
        names = [n.strip() for n in text.split(",")]
        if not all(names):
            raise argparse.ArgumentTypeError(f"'{text}' is not a list of class names: give name,name,... or a "
                                             "data.yaml")
        return names
    import yaml

    try:
        data = yaml.safe_load(Path(text).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise argparse.ArgumentTypeError(f"cannot read class names from {text}: {str(e).splitlines()[0]}") from e
    names = data.get("names") if isinstance(data, dict) else None
    if not isinstance(names, (list, dict)) or not names:
        raise argparse.ArgumentTypeError(f"{text} has no 'names' list or mapping")
    return names


def require_torch(feature: str):
    """Import torch or explain how to get it (the runtime deploys without it)."""
    try:
        import torch
    except ImportError as e:
        raise RgbirError(f"{feature} needs PyTorch: pip install 'rgbir[torch]'") from e
    return torch


TORCH_EXPORT_LOGGER = "torch.onnx._internal.exporter._registration"  # logs a line per torchvision op it skips


@contextlib.contextmanager
def quiet_torch_export():
    """Around torch's ONNX export: hide what torch says to its own developers rather than to rgbir's users, the
    'torchvision is not installed. Skipping torchvision::nms' log lines (rgbir exports no torchvision op) and the
    FutureWarnings of deprecations inside torch. Every other warning and log line still shows."""
    logger = logging.getLogger(TORCH_EXPORT_LOGGER)

    def keep(record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("torchvision is not installed")

    logger.addFilter(keep)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            yield
    finally:
        logger.removeFilter(keep)


def add_model_arguments(parser: argparse.ArgumentParser, ir_channels: bool = True) -> None:
    """Options that pick a model: a config or weights file, plus overrides for configs and state_dicts
    (``ir_channels=False`` where the command's own --ir-channels means something else, as export's does)."""
    parser.add_argument("model", help="shipped config name (e.g. yolo11n-mm-mid-msc), YAML path, or weights file "
                                      "(.pt from ultralytics/YOLOMM, rgbir .safetensors, state_dict .pt)")
    parser.add_argument("--cfg", help="architecture for a weights file that holds only a state_dict")
    parser.add_argument("--scale", choices=list("nslmx"), help="model scale for a config (default: from the name)")
    parser.add_argument("--nc", type=int, help="number of classes for a config (default: the config's nc, or one "
                                               "per --names); a weights file's comes from its weights")
    parser.add_argument("--names", type=class_names, metavar="NAMES",
                        help="class names, one per class: a,b,c or a data.yaml whose names are used")
    parser.set_defaults(architecture_ir_channels=ir_channels)
    if ir_channels:
        parser.add_argument("--ir-channels", type=int, choices=(1, 3),
                            help="IR input channels for a config (default 3)")


ARCHITECTURE_FLAGS = {"cfg": "--cfg", "scale": "--scale", "ir_channels": "--ir-channels"}


def architecture(args: argparse.Namespace, name: str):
    """An architecture flag's value, None where the command does not take it as one."""
    return getattr(args, name) if name != "ir_channels" or args.architecture_ir_channels else None


def check_architecture_flags(args: argparse.Namespace, kind: str) -> None:
    """Refuse architecture flags the model named is not built from (they would be silently overruled): ``kind``
    'config' takes --scale and --ir-channels but no --cfg; 'state_dict' weights take all three; a full checkpoint
    ('ultralytics', 'rgbir') carries its own architecture and takes none."""
    if kind == "state_dict":
        return
    if kind == "config":
        if args.cfg is not None:
            raise RgbirError(f"--cfg names the architecture of state_dict weights: {args.model} is a config itself; "
                             "leave out --cfg")
        return
    given = [flag for name, flag in ARCHITECTURE_FLAGS.items() if architecture(args, name) is not None]
    if given:
        raise RgbirError(f"{', '.join(given)} apply to configs and state_dict weights only: {args.model} is a full "
                         "checkpoint that carries its own architecture; leave them out")


def load_model(args: argparse.Namespace):
    """Build from a config or load weights, as the model arguments say (what loading mended in the file shows as
    one 'warning:' line each, as every rgbir warning does)."""
    require_torch("loading a model")
    from ..models import is_weights_file, open_model

    # known from the name: a config, or rgbir's own .safetensors (always a full checkpoint); a .pt tells once loaded
    kind = "rgbir" if str(args.model).endswith(".safetensors") else None if is_weights_file(args.model) else "config"
    if kind:
        check_architecture_flags(args, kind)
    model = open_model(args.model, args.cfg, scale=args.scale, nc=args.nc,
                       ir_channels=architecture(args, "ir_channels"), names=args.names)
    if kind is None:
        check_architecture_flags(args, model.checkpoint.format)
    return model
