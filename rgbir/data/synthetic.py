"""Synthetic paired RGB + IR scenes with YOLO labels, where the two modalities genuinely disagree.

- People and cars are warm: always bright in IR; in RGB they show by day but not at all at night or in fog
  (a first version left a faint residue, and a CNN learned to read it: RGB alone then matched fusion).
- Signs are cold and retro-reflective: clearly coloured in RGB by day and night (half washed out in fog), at
  background temperature, so invisible in IR.
- Both cameras add sensor noise; the IR camera has a lower resolution and, optionally, a known misalignment
  (a homography recorded in data.yaml).

So neither modality alone sees everything, and fusion can beat both. Deterministic from a seed; writes the
YOLOMM dataset layout (images/, images_ir/, labels/, data.yaml) and paired video clips for the runtime.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import yaml

from .dataset import label_line

NAMES = {0: "person", 1: "car", 2: "sign"}
WARM = {0, 1}
CONDITIONS = ("day", "night", "fog")


@dataclass
class SceneConfig:
    size: tuple[int, int] = (256, 320)  # RGB (H, W)
    ir_scale: float = 0.5  # IR resolution relative to RGB
    max_objects: int = 6
    conditions: tuple[str, ...] = CONDITIONS
    misalignment: bool = False  # warp IR by a small known homography
    seed: int = 0


@dataclass
class SceneObject:
    cls: int
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in RGB pixels
    color: tuple[int, int, int] = (0, 0, 0)
    temperature: float = 0.0


@dataclass
class Scene:
    rgb: np.ndarray
    ir: np.ndarray
    objects: list[SceneObject] = field(default_factory=list)
    condition: str = "day"

    def labels(self) -> list[str]:
        """YOLO label lines: class cx cy w h, normalised to the frame (shared by both modalities)."""
        h, w = self.rgb.shape[:2]
        return [label_line(o.cls, o.box, w, h) for o in self.objects]


def misalignment_homography(size: tuple[int, int]) -> np.ndarray:
    """The fixed IR misalignment: a small rotation, scale and shift about the frame centre (IR → RGB pixels)."""
    h, w = size
    m = cv2.getRotationMatrix2D((w / 2, h / 2), 2.0, 1.03)
    m[:, 2] += (0.02 * w, -0.015 * h)
    return np.vstack([m, [0, 0, 1]])


def random_objects(rng: np.random.Generator, config: SceneConfig) -> list[SceneObject]:
    h, w = config.size
    objects: list[SceneObject] = []
    for _ in range(int(rng.integers(1, config.max_objects + 1))):
        cls = int(rng.choice([0, 0, 1, 2]))
        bh = rng.uniform(0.15, 0.4) * h if cls == 0 else rng.uniform(0.1, 0.25) * h
        bw = bh * (rng.uniform(0.35, 0.5) if cls == 0 else rng.uniform(1.6, 2.4) if cls == 1 else 1.0)
        x1, y1 = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
        box = (x1, y1, x1 + bw, y1 + bh)
        if any(_iou(box, o.box) > 0.3 for o in objects):
            continue
        color = tuple(int(c) for c in rng.integers(40, 255, 3))
        objects.append(SceneObject(cls, box, color, rng.uniform(0.6, 1.0) if cls in WARM else 0.0))
    return objects


def render(objects: list[SceneObject], condition: str, config: SceneConfig, rng: np.random.Generator) -> Scene:
    h, w = config.size
    # RGB: a textured background, objects as shapes; night darkens, fog washes out
    base = rng.integers(60, 200, 3).astype(np.float32)
    gradient = np.linspace(0.7, 1.3, h, dtype=np.float32)[:, None, None]
    rgb = np.clip(base[None, None, :] * gradient + rng.normal(0, 12, (h, w, 3)), 0, 255).astype(np.float32)
    if condition == "day":
        for o in objects:
            if o.cls in WARM:
                _draw(rgb, o, o.color)
    if condition == "night":
        rgb = rgb * 0.08 + 4
    elif condition == "fog":
        rgb = rgb * 0.15 + 170
    for o in objects:
        if o.cls not in WARM:
            sign = np.array(o.color, np.float32) * (0.8 if condition == "night" else 1.0)
            if condition == "fog":
                sign = 0.5 * sign + 0.5 * 170
            _draw(rgb, o, tuple(float(c) for c in sign))
    rgb = np.clip(rgb + rng.normal(0, 3 if condition == "day" else 5, rgb.shape), 0, 255).astype(np.uint8)
    # IR: a cool smooth background, warm objects bright (cold signs invisible), blur and noise
    ir = np.full((h, w), 40.0, np.float32) + 15 * np.linspace(0, 1, w, dtype=np.float32)[None, :]
    for o in objects:
        if o.cls in WARM:
            _draw(ir, o, 120 + 120 * o.temperature)
    ir = cv2.GaussianBlur(ir, (0, 0), 1.5)
    if config.misalignment:
        ir = cv2.warpPerspective(ir, np.linalg.inv(misalignment_homography(config.size)), (w, h),
                                 borderMode=cv2.BORDER_REPLICATE)
    ir_size = (max(32, int(round(w * config.ir_scale))), max(32, int(round(h * config.ir_scale))))
    ir = cv2.resize(ir, ir_size, interpolation=cv2.INTER_AREA)
    ir = np.clip(ir + rng.normal(0, 4, ir.shape), 0, 255).astype(np.uint8)
    return Scene(rgb, ir, objects, condition)


def _draw(image: np.ndarray, o: SceneObject, value) -> None:
    x1, y1, x2, y2 = (int(round(v)) for v in o.box)
    if o.cls == 0:  # person: head and body
        cx, head = (x1 + x2) // 2, max(2, (x2 - x1) // 3)
        cv2.circle(image, (cx, y1 + head), head, value, -1)
        cv2.rectangle(image, (x1, y1 + 2 * head), (x2, y2), value, -1)
    elif o.cls == 1:  # car: body and cabin
        cv2.rectangle(image, (x1, (y1 + y2) // 2), (x2, y2), value, -1)
        cv2.rectangle(image, (x1 + (x2 - x1) // 4, y1), (x2 - (x2 - x1) // 4, (y1 + y2) // 2), value, -1)
    else:  # sign: a disc on a square
        cv2.rectangle(image, (x1, y1), (x2, y2), value, -1)
        inner = tuple(255.0 - v for v in value) if isinstance(value, tuple) else value
        cv2.circle(image, ((x1 + x2) // 2, (y1 + y2) // 2), max(1, (x2 - x1) // 3), inner, -1)


def _iou(a, b) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def scene(index: int, config: SceneConfig) -> Scene:
    """Scene number ``index``: the same every time for the same config."""
    rng = np.random.default_rng([config.seed, index])
    condition = config.conditions[index % len(config.conditions)]
    return render(random_objects(rng, config), condition, config, rng)


def write_dataset(root: str | Path, train: int, val: int, config: SceneConfig | None = None) -> Path:
    """YOLOMM layout under ``root``; returns the data.yaml path."""
    config = config or SceneConfig()
    root = Path(root)
    for split, count, offset in (("train", train, 0), ("val", val, 10**6)):
        for sub in ("images", "images_ir", "labels"):
            (root / sub / split).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            s = scene(offset + i, config)
            name = f"{i:06d}"
            cv2.imwrite(str(root / "images" / split / f"{name}.jpg"), s.rgb, [cv2.IMWRITE_JPEG_QUALITY, 95])
            cv2.imwrite(str(root / "images_ir" / split / f"{name}.png"), s.ir)
            (root / "labels" / split / f"{name}.txt").write_text("\n".join(s.labels()) + "\n")
    data = {"path": str(root.resolve()), "train": "images/train", "val": "images/val", "names": NAMES,
            "modality_used": ["rgb", "ir"], "modality": {"rgb": "images", "ir": "images_ir"}, "Xch": 3,
            "synthetic": {"seed": config.seed, "size": list(config.size), "ir_scale": config.ir_scale,
                          "conditions": list(config.conditions)}}
    if config.misalignment:
        data["synthetic"]["ir_to_rgb_homography"] = misalignment_homography(config.size).tolist()
    path = root / "data.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def write_clip(root: str | Path, frames: int = 60, config: SceneConfig | None = None, fps: float = 15.0
               ) -> tuple[Path, Path]:
    """A paired RGB/IR video clip of moving objects (AVI, MJPEG) for the runtime; returns (rgb, ir) paths."""
    config = config or SceneConfig()
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([config.seed, 7])
    objects = random_objects(rng, config)
    velocity = rng.uniform(-3, 3, (len(objects), 2))
    h, w = config.size
    paths = root / "rgb.avi", root / "ir.avi"
    writers = []
    for i in range(frames):
        moved = []
        for o, (vx, _vy) in zip(objects, velocity):  # objects drift sideways only
            x1, y1, x2, y2 = o.box
            dx = (x1 + vx * i) % max(w - (x2 - x1), 1) - x1
            moved.append(SceneObject(o.cls, (x1 + dx, y1, x2 + dx, y2), o.color, o.temperature))
        condition = config.conditions[(i * len(config.conditions)) // frames]
        s = render(moved, condition, config, np.random.default_rng([config.seed, 8, i]))
        ir = cv2.cvtColor(s.ir, cv2.COLOR_GRAY2BGR)
        if not writers:
            fourcc = cv2.VideoWriter_fourcc(*"MJPG")
            writers = [cv2.VideoWriter(str(p), fourcc, fps, (f.shape[1], f.shape[0]))
                       for p, f in zip(paths, (s.rgb, ir))]
        writers[0].write(s.rgb)
        writers[1].write(ir)
    for writer in writers:
        writer.release()
    return paths
