"""Train rgbir's demo detector reproducibly: YOLO11n-MM with MSC fusion on the synthetic RGB+IR scenes.

    python scripts/train_demo.py [--config yolo11n-mm-mid-msc-res] [--out rgbir/assets/demo-yolo11n-mm-msc.safetensors]

Generates the dataset (seeded), trains on CPU, reports mAP on the validation scenes for fused input and for
each modality alone (the other one blanked), and saves FP16 weights.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from rgbir.data.synthetic import SceneConfig, write_dataset
from rgbir.eval.validate import validate
from rgbir.models import build_model, save
from rgbir.runtime.backends.torch_backend import TorchBackend
from rgbir.train.config import TrainConfig
from rgbir.train.trainer import train

SIZE = (160, 192)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="yolo11n-mm-mid-msc-res", help="shipped config name or YAML")
    parser.add_argument("--out", type=Path, default=Path("rgbir/assets/demo-yolo11n-mm-msc.safetensors"))
    parser.add_argument("--data", type=Path, default=Path("runs/demo-data"))
    parser.add_argument("--train", type=int, default=800)
    parser.add_argument("--val", type=int, default=150)
    parser.add_argument("--epochs", type=int, default=25)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    data = write_dataset(args.data, args.train, args.val, SceneConfig(size=SIZE, seed=args.seed))
    model = build_model(args.config, names=["person", "car", "sign"])
    start = time.perf_counter()
    ema = train(model, data, TrainConfig(epochs=args.epochs, batch=8, imgsz=SIZE, lr=3e-3, seed=args.seed))
    print(f"trained in {time.perf_counter() - start:.0f} s")
    for blank in (None, "rgb", "ir"):
        r = validate(TorchBackend(ema, imgsz=SIZE), str(data), blank=blank)
        label = {None: "fused (RGB + IR)", "rgb": "IR only (RGB blank)", "ir": "RGB only (IR blank)"}[blank]
        print(f"{label:<22} mAP50 {r.ap.map50:.3f}  mAP50-95 {r.ap.map:.3f}  "
              + "  ".join(f"{k} {v[1]:.3f}" for k, v in r.ap.per_class().items()))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save(ema, args.out, meta={"demo": {"imgsz": list(SIZE), "seed": args.seed, "epochs": args.epochs,
                                       "train": args.train}}, half=True)
    print(f"saved {args.out} ({args.out.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
