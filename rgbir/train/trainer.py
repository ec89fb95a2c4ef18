"""A small training routine for YOLO11-MM detectors on paired datasets: enough to fine-tune or train the demo
model on CPU. Letterbox as at inference, horizontal flips of both modalities, RGB brightness jitter; AdamW
with linear warm-up and cosine decay; an exponential moving average of the weights is what gets saved."""

from __future__ import annotations

import copy
import logging
import math
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from ..data.dataset import PairedDataset, Sample, load_dataset
from ..metadata import InputSpec
from ..models import Detector
from ..models.checkpoint import CheckpointWriter
from ..runtime.preprocess import letterbox, to_input
from .config import TrainConfig
from .loss import DetectionLoss

log = logging.getLogger(__name__)
SAVE_SHARE = 10  # an epoch's checkpoint is skipped while the last save took over 1/10 of the time since it


def load_pair(sample: Sample, imgsz: tuple[int, int], ir_channels: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Letterboxed RGB (3,H,W), IR (C,H,W) as float32 in [0,1], and labels (K,5) [cls, cx, cy, w, h] in the
    letterboxed frame."""
    rgb = cv2.imread(str(sample.rgb), cv2.IMREAD_COLOR)
    ir = cv2.imread(str(sample.ir), cv2.IMREAD_GRAYSCALE)
    rgb_box, info = letterbox(rgb, imgsz)
    ir_box, _ = letterbox(ir, imgsz)
    x = to_input(rgb_box, InputSpec("rgb", 3, "RGB"))[0]
    y = to_input(ir_box, InputSpec("ir", ir_channels, "GRAY" if ir_channels == 1 else "RGB"))[0]
    h0, w0 = rgb.shape[:2]
    h, w = imgsz
    boxes = sample.boxes.copy()
    if len(boxes):
        boxes[:, 0] = (boxes[:, 0] * w0 * info.scale + info.pad_left) / w
        boxes[:, 1] = (boxes[:, 1] * h0 * info.scale + info.pad_top) / h
        boxes[:, 2] *= w0 * info.scale / w
        boxes[:, 3] *= h0 * info.scale / h
    labels = np.concatenate([sample.classes[:, None].astype(np.float32), boxes], 1)
    return x, y, labels


class PairedBatches:
    """Shuffled mini-batches of (rgb, ir, targets) with flips and brightness jitter; images cached in memory."""

    def __init__(self, dataset: PairedDataset, config: TrainConfig, ir_channels: int):
        self.config = config
        self.items = [load_pair(s, config.imgsz, ir_channels) for s in dataset.samples]
        self.rng = np.random.default_rng(config.seed)

    def __len__(self) -> int:
        return math.ceil(len(self.items) / self.config.batch)

    def __iter__(self):
        order = self.rng.permutation(len(self.items))
        for start in range(0, len(order), self.config.batch):
            rgbs, irs, targets = [], [], []
            for j, k in enumerate(order[start: start + self.config.batch]):
                rgb, ir, labels = self.items[k]
                labels = labels.copy()
                if self.rng.random() < self.config.flip:
                    rgb, ir = rgb[:, :, ::-1], ir[:, :, ::-1]
                    labels[:, 1] = 1 - labels[:, 1]
                gain = 1 + self.rng.uniform(-self.config.brightness, self.config.brightness)
                rgbs.append(np.clip(rgb * gain, 0, 1))
                irs.append(ir)
                targets.append(np.concatenate([np.full((len(labels), 1), j, np.float32), labels], 1))
            yield (torch.from_numpy(np.stack(rgbs)).float(), torch.from_numpy(np.stack(irs)).float(),
                   torch.from_numpy(np.concatenate(targets)).float())


class _Ema:
    """ema = decay * ema + (1 - decay) * model for the floating-point tensors, all in one foreach call; the others
    (BN counters) copied. The state_dict tensors share storage with the modules', so they are listed once, not per
    step (a state_dict per step cost more than the update)."""

    def __init__(self, ema: Detector, model: Detector):
        pairs = list(zip(ema.state_dict().values(), model.state_dict().values()))
        floats = [(e, m) for e, m in pairs if e.dtype.is_floating_point]
        self.ema_floats, self.model_floats = [e for e, _ in floats], [m for _, m in floats]
        self.others = [(e, m) for e, m in pairs if not e.dtype.is_floating_point]

    @torch.no_grad()
    def update(self, decay: float) -> None:
        torch._foreach_lerp_(self.ema_floats, self.model_floats, 1 - decay)
        for e, m in self.others:
            e.copy_(m)


class _Checkpoints:
    """The EMA weights saved to ``output`` as training goes (nothing without one): when asked ``now``, else only
    once the time since the last save is ``SAVE_SHARE`` times what that save took."""

    def __init__(self, ema: Detector, output: str | Path | None, config: TrainConfig, data: str | Path):
        self.writer = CheckpointWriter(ema) if output is not None else None
        self.output, self.config, self.data = output, config, data
        self.saved_at, self.took = time.monotonic(), 0.0

    def save(self, epochs: int, steps: int, now: bool = True) -> str:
        """Save if due; what the log line says about it ('; saved PATH', or nothing)."""
        if self.writer is None or not (now or time.monotonic() - self.saved_at >= SAVE_SHARE * self.took):
            return ""
        meta = {"train": {"epochs": epochs, "planned_epochs": self.config.epochs, "steps": steps,
                          "imgsz": list(self.config.imgsz), "data": str(self.data)}}
        start = time.monotonic()
        path = self.writer.save(self.output, meta)
        self.saved_at = time.monotonic()
        self.took = self.saved_at - start
        return f"; saved {path}"


def train(model: Detector, data: str | Path, config: TrainConfig, output: str | Path | None = None) -> Detector:
    """Train ``model`` on the dataset's train split; returns the EMA model. With ``output`` (a .safetensors path)
    the EMA weights are saved there after every epoch (epochs far shorter than a save are saved together: saving
    takes at most a tenth of the time), after the last and when training is interrupted (Ctrl-C), each time whole
    or not at all, and each save is logged with the path."""
    config.validate()
    torch.manual_seed(config.seed)
    batches = PairedBatches(load_dataset(data, "train"), config, model.ir_channels)
    loss_fn = DetectionLoss(model.head)
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=config.lr,
                                  foreach=True)  # the default on a CPU is a Python loop over the ~450 parameters
    total = config.epochs * len(batches)
    ema = copy.deepcopy(model).eval()
    for p in ema.parameters():
        p.requires_grad_(False)
    averager = _Ema(ema, model)
    checkpoints = _Checkpoints(ema, output, config, data)
    step = done = 0  # optimizer steps, whole epochs
    try:
        for epoch in range(config.epochs):
            model.train()
            start, sums = time.perf_counter(), torch.zeros(3)
            for rgb, ir, targets in batches:
                warmup = min(1.0, (step + 1) / config.warmup_steps)
                lr = config.lr * warmup * 0.5 * (1 + math.cos(math.pi * step / total))
                for group in optimizer.param_groups:
                    group["lr"] = lr
                loss, parts = loss_fn(model(rgb, ir), targets)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
                optimizer.step()
                averager.update(config.ema_decay * (1 - math.exp(-step / 200)))  # ramps up as upstream's
                sums += parts
                step += 1
            box, cls, dfl = (sums / len(batches)).tolist()
            seconds, done = time.perf_counter() - start, epoch + 1
            log.info(f"epoch {done}/{config.epochs}: box {box:.3f} cls {cls:.3f} dfl {dfl:.3f} ({seconds:.1f} s)"
                     + checkpoints.save(done, step, now=done == config.epochs))
    except KeyboardInterrupt:
        if step:
            log.warning(f"interrupted after {done} of {config.epochs} epochs ({step} steps)"
                        + checkpoints.save(done, step))
        raise
    return ema
