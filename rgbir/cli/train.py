"""``rgbir train``: train or fine-tune a YOLO11-MM detector on a paired RGB+IR dataset (CPU or GPU)."""

from __future__ import annotations

import argparse

from ..options import image_size
from .common import add_model_arguments, console, load_model


def add_parser(sub) -> None:
    p = sub.add_parser("train", help="train a detector on a paired dataset", description=__doc__.replace("``", ""))
    add_model_arguments(p)
    p.add_argument("--data", required=True, help="data.yaml with train/val splits")
    p.add_argument("-o", "--output", default="model.safetensors", help="where to save the EMA weights (a "
                   ".safetensors file, written after every epoch and on Ctrl-C)")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--imgsz", type=image_size, default=(256, 320), help="training input H or H,W")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..data.dataset import load_dataset, split_folders
    from ..errors import RgbirError
    from ..paths import PathPlan
    from ..preflight import readable_file, writable_file
    from ..train.config import TrainConfig

    config = TrainConfig(epochs=args.epochs, batch=args.batch, imgsz=args.imgsz, lr=args.lr, seed=args.seed)
    config.validate()
    readable_file(args.data, "dataset file")
    output = writable_file(args.output, "weights file", (".safetensors",))  # known before the epochs, not after
    PathPlan().reads("--data", args.data, *split_folders(args.data)).reads("the model", args.model) \
        .reads("--cfg", args.cfg).writes("-o", output).check()
    names = load_dataset(args.data, "val").names
    # torch loads here: only once the flags, paths and dataset have been checked
    from ..models import is_weights_file
    from ..train.trainer import train

    if args.nc is None and not is_weights_file(args.model):
        args.nc = len(names)  # a config: size its head for the dataset
    model = load_model(args)
    if model.nc != len(names):
        raise RgbirError(f"the model has {model.nc} classes but {args.data} names {len(names)}: pass --nc")
    model.names = dict(names)
    train(model, args.data, config, output)
    console.print(f"saved {output}")
    return 0
