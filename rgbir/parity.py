"""Parity between two backends on the same inputs: tensor errors per output and detection agreement.

Reports, like Polygraphy, the smallest tolerance that would pass, and separately judges boxes (error relative
to the box coordinate scale) and scores (absolute error). Detections are compared after NMS by one-to-one
matching with equal classes at IoU >= ``match_iou``.

Verdict: when both sides give raw predictions, the tensor tolerances decide (they bound every detection; a
detection list can still differ where two scores nearly tie at a cut-off). A graph with NMS inside gives only
detections, so then their agreement decides.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from .errors import RgbirError
from .metadata import ModelMetadata
from .runtime.backends import Backend
from .runtime.postprocess import Agreement, Detections, from_nms_outputs, match_detections, postprocess
from .runtime.preprocess import preprocess_pair

# Documented pass thresholds per exported precision: boxes = max |Δ| / max |box|, scores = max |Δ|.
# Measured on every shipped config at 640x640 and 512x640 (random weights, BN-calibrated, tests/lively.py):
# fp32 boxes <= 8e-6, scores <= 4e-6; fp16 boxes <= 1.6e-3, scores <= 1.0e-3. Limits leave 2x headroom.
TOLERANCES = {"fp32": {"boxes": 1e-4, "scores": 1e-4}, "fp16": {"boxes": 3e-3, "scores": 2e-3}}
# NMS graphs (and INT8, whose tensor errors are shown but not judged): matched / max(reference, candidate)
# detections. The INT8 figure is a starting point, not a measurement: no INT8 engine could be built here.
MIN_AGREEMENT = {"fp32": 0.95, "fp16": 0.9, "int8": 0.8}


@dataclass
class OutputError:
    name: str
    max_abs: float
    max_rel: float  # max |Δ| / |reference| elementwise (Polygraphy's rtol needed with atol 0)
    scale: float  # max |reference|
    error: float  # the judged error: relative to scale for boxes, absolute for scores
    tolerance: float | None  # None: shown, not judged (INT8)

    @property
    def passed(self) -> bool:
        return self.tolerance is None or self.error <= self.tolerance


@dataclass
class ParityReport:
    reference: str
    candidate: str
    precision: str
    samples: list[str]
    outputs: list[OutputError] = field(default_factory=list)
    detections: Agreement | None = None
    min_agreement: float = 0.99

    @property
    def agreement(self) -> float:
        d = self.detections
        if d is None:
            return 1.0
        most = max(d.reference, d.candidate)
        return d.matched / most if most else 1.0

    @property
    def judged_by_tensors(self) -> bool:
        return any(o.tolerance is not None for o in self.outputs)

    @property
    def passed(self) -> bool:
        if self.judged_by_tensors:
            return all(o.passed for o in self.outputs)
        return self.agreement >= self.min_agreement


def model_mismatch(reference: ModelMetadata, candidate: ModelMetadata) -> str | None:
    """Why ``candidate`` cannot be an export of ``reference`` (class count, inputs, strides), found before any
    comparison; None when they can be compared output for output."""
    for what, ref, cand in (("classes", reference.nc, candidate.nc),
                            ("inputs", [s.name for s in reference.inputs], [s.name for s in candidate.inputs]),
                            ("strides", list(reference.strides), list(candidate.strides))):
        if ref != cand:
            return f"{what} {ref} vs {cand}"
    return None


def random_inputs(meta: ModelMetadata, count: int, seed: int = 0) -> list[tuple[str, list[np.ndarray]]]:
    """``count`` random input sets in [0, 1] shaped as the metadata says."""
    rng = np.random.default_rng(seed)
    batch = meta.batch or 1
    h, w = meta.imgsz
    return [(f"random #{i}", [rng.random((batch, s.channels, h, w), dtype=np.float32) for s in meta.inputs])
            for i in range(count)]


def image_inputs(meta: ModelMetadata, pairs: list[tuple[str, str]]) -> list[tuple[str, list[np.ndarray]]]:
    """Image pairs (RGB file, IR file) letterboxed and normalised as the metadata says."""
    out = []
    for rgb_path, ir_path in pairs:
        frames = [cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in (rgb_path, ir_path)]
        for p, f in zip((rgb_path, ir_path), frames):
            if f is None:
                raise RgbirError(f"cannot read image {p}")
        arrays, _ = preprocess_pair(frames[0], frames[1], meta)
        out.append((f"{Path(rgb_path).name} + {Path(ir_path).name}", arrays))
    return out


def _error(name: str, ref: np.ndarray, cand: np.ndarray, relative_to_scale: bool,
           tolerance: float | None) -> OutputError:
    ref, cand = ref.astype(np.float64), cand.astype(np.float64)
    diff = np.abs(ref - cand)
    scale = float(np.abs(ref).max()) if ref.size else 0.0
    max_abs = float(diff.max()) if diff.size else 0.0
    max_rel = float((diff / np.maximum(np.abs(ref), 1e-12)).max()) if diff.size else 0.0
    error = max_abs / scale if relative_to_scale and scale else max_abs
    return OutputError(name, max_abs, max_rel, scale, error, tolerance)


def _detections(outputs: dict[str, np.ndarray], meta: ModelMetadata) -> list[Detections]:
    if "num_dets" in outputs:
        return from_nms_outputs(outputs["num_dets"], outputs["boxes"], outputs["scores"], outputs["classes"])
    p = meta.postprocess
    return postprocess(outputs["predictions"], p.score_threshold, p.iou_threshold, p.max_det)


def _channels(backend: Backend, name: str) -> int | None:
    return next((s.shape[1] for s in backend.inputs if s.name == name), None)


def compare(reference: Backend, candidate: Backend, inputs: list[tuple[str, list[np.ndarray]]],
            meta: ModelMetadata, match_iou: float = 0.9) -> ParityReport:
    """Run both backends on every input set and judge the differences with the precision's tolerances."""
    precision = meta.precision
    report = ParityReport(reference.name, candidate.name, precision, [d for d, _ in inputs],
                          min_agreement=MIN_AGREEMENT[precision])
    tol = TOLERANCES.get(precision, {"boxes": None, "scores": None})
    refs, cands, ref_dets, cand_dets = [], [], [], []
    for _, arrays in inputs:
        rgb, ir = arrays[0], arrays[1] if len(arrays) > 1 else None
        cand_out = candidate.infer(rgb, ir)
        if ir is not None and ir.shape[1] == 1 and _channels(reference, "ir") == 3:
            ir = np.repeat(ir, 3, axis=1)  # a folded 1-channel IR export vs a model with its 3-channel IR stem
        ref_out = reference.infer(rgb, ir)
        ref_dets += _detections(ref_out, meta)
        cand_dets += _detections(cand_out, meta)
        if "predictions" in cand_out:
            refs.append(ref_out["predictions"])
            cands.append(cand_out["predictions"])
    if refs:
        ref, cand = np.concatenate(refs), np.concatenate(cands)
        report.outputs.append(_error("boxes", ref[:, :4], cand[:, :4], True, tol["boxes"]))
        report.outputs.append(_error("scores", ref[:, 4:], cand[:, 4:], False, tol["scores"]))
    report.detections = match_detections(ref_dets, cand_dets, match_iou)
    return report
