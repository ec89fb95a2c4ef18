"""One step of the data path for a batch of pairs: register → preprocess → infer → decode/NMS → frame coords."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from ..errors import RgbirError
from ..metadata import PostprocessSpec, check_nms
from .backends import Backend
from .frames import FramePair
from .postprocess import Detections, from_nms_outputs, postprocess
from .registration import Registration
from .results import Detection, PairResult


@dataclass
class Batch:
    """Preprocessed pairs on their way through inference. The last Batch of a call holds every result of the
    call (failed pairs included), so each result is emitted exactly once and only when complete."""

    results: list[PairResult]
    ready: list[PairResult]
    arrays: list[list[np.ndarray]]
    infos: list


@dataclass
class DetectSettings:
    """Detection thresholds and class filter. None: the model graph's own setting when it was exported with NMS,
    else PostprocessSpec's default (conf 0.25, iou 0.7, max_det 300)."""

    conf: float | None = None
    iou: float | None = None
    max_det: int | None = None
    classes: list[int] | None = None

    def resolve(self, graph: PostprocessSpec) -> DetectSettings:
        """The thresholds in effect for a model whose graph postprocesses as ``graph`` says, checked: the given ones
        over the defaults; after a graph's own NMS, only what is stricter than it."""
        base = graph if graph.kind == "nms" else PostprocessSpec()
        resolved = DetectSettings(base.score_threshold if self.conf is None else self.conf,
                                  base.iou_threshold if self.iou is None else self.iou,
                                  base.max_det if self.max_det is None else self.max_det, self.classes)
        check_nms(resolved.conf, resolved.iou, resolved.max_det)
        if graph.kind == "nms":
            resolved.conf = max(resolved.conf, graph.score_threshold)
            resolved.iou, resolved.max_det = graph.iou_threshold, min(resolved.max_det, graph.max_det)
        return resolved

    def unheeded(self, graph: PostprocessSpec) -> list[str]:
        """One line for each given threshold a graph with NMS cannot honour: its NMS ran first, with the settings
        it was exported with (a higher --conf and a lower --max-det are applied after it; the rest cannot be)."""
        if graph.kind != "nms":
            return []
        again = "export it again with 'rgbir export --postprocess nms"
        notes = []
        if self.conf is not None and self.conf < graph.score_threshold:
            notes.append(f"--conf {self.conf:g} is below the model's in-graph NMS threshold {graph.score_threshold:g}: "
                         f"lower scores are already gone ({again} --conf {self.conf:g}')")
        if self.iou is not None and self.iou != graph.iou_threshold:
            notes.append(f"--iou {self.iou:g} has no effect: the model's in-graph NMS uses IoU "
                         f"{graph.iou_threshold:g} ({again} --iou {self.iou:g}')")
        if self.max_det is not None and self.max_det > graph.max_det:
            notes.append(f"--max-det {self.max_det} has no effect beyond {graph.max_det}: the model's in-graph NMS "
                         f"keeps at most {graph.max_det} detections per image ({again} --max-det {self.max_det}')")
        return notes


class PairDetector:
    """Runs a backend on frame pairs and returns results with boxes in each camera's pixels."""

    def __init__(self, backend: Backend, settings: DetectSettings, registration: Registration | None = None):
        if backend.metadata is None:
            raise RgbirError("the model has no rgbir metadata: export it with 'rgbir export'")
        self.backend, self.registration = backend, registration
        self.meta = backend.metadata
        self.settings = settings.resolve(self.meta.postprocess)
        self.warnings = settings.unheeded(self.meta.postprocess)  # what the caller should tell the user, once
        self.names = self.meta.names
        self._check_classes(settings.classes)
        self.preprocessor = backend.preprocessor()  # chosen once: CPU letterbox, or the backend's own

    def _check_classes(self, classes: list[int] | None) -> None:
        """Class ids the model does not have would silently filter every detection away: refused."""
        unknown = [c for c in classes or [] if c not in self.names]
        if unknown:
            known = ", ".join(f"{i} {name}" for i, name in list(self.names.items())[:6])
            more = ", …" if len(self.names) > 6 else ""
            raise RgbirError(f"--classes {' '.join(map(str, unknown))}: the model has {len(self.names)} classes, "
                             f"0-{len(self.names) - 1} ({known}{more})")

    @property
    def max_batch(self) -> int:
        return self.meta.batch or self.backend.max_batch or 64

    def __call__(self, pairs: list[FramePair]) -> list[PairResult]:
        """All three steps for a list of pairs (the pipeline runs them on separate threads)."""
        results = []
        for batch in self.prepare(pairs):
            results += self.finish(batch, self.infer(batch))
        return results

    def prepare(self, pairs: list[FramePair]) -> list[Batch]:
        """Register and preprocess; pairs with a corrupt frame become failed results. One Batch per call."""
        start = time.perf_counter()
        results, ready, arrays, infos = [], [], [], []
        for pair in pairs:
            result = PairResult(pair)
            results.append(result)
            if pair.rgb.image is None or (pair.ir is not None and pair.ir.image is None):
                result.error = "corrupt " + ("rgb" if pair.rgb.image is None else "ir") + " frame"
                continue
            ir = pair.ir.image if pair.ir is not None else None
            if ir is not None and self.registration is not None:
                ir = self.registration.warp_ir(ir)
            inputs, info = self.preprocessor.pair(pair.rgb.image, ir)
            ready.append(result)
            arrays.append(inputs)
            infos.append(info)
        pre_ms = (time.perf_counter() - start) * 1e3 / max(len(pairs), 1)
        for result in results:
            result.timings_ms["preprocess"] = pre_ms
        batches = [Batch([], ready[i: i + self.max_batch], arrays[i: i + self.max_batch],
                         infos[i: i + self.max_batch]) for i in range(0, max(len(ready), 1), self.max_batch)]
        batches[-1].results = results  # batches finish in order: the last one releases every result
        return batches

    def infer(self, batch: Batch) -> dict[str, np.ndarray] | None:
        n = len(batch.ready)
        if not n:
            return None
        columns = [[a[i] for a in batch.arrays] for i in range(len(batch.arrays[0]))]  # per input, per pair
        start = time.perf_counter()
        outputs = self.preprocessor.run(self.backend, columns)
        for result in batch.ready:
            result.timings_ms["infer"] = (time.perf_counter() - start) * 1e3 / n
        return outputs

    def finish(self, batch: Batch, outputs: dict[str, np.ndarray] | None) -> list[PairResult]:
        """Decode/NMS and map boxes into each camera's pixels; returns the batch's results in pair order."""
        if outputs is not None:
            start = time.perf_counter()
            dets = self._detections(outputs)[: len(batch.ready)]
            for result, det, (rgb_info, *ir_info) in zip(batch.ready, dets, batch.infos):
                result.detections = self._to_frames(det, rgb_info, ir_info[0] if ir_info else None)
            post_ms = (time.perf_counter() - start) * 1e3 / len(batch.ready)
            for result in batch.ready:
                result.timings_ms["postprocess"] = post_ms
        return batch.results

    def _detections(self, outputs: dict[str, np.ndarray]) -> list[Detections]:
        s = self.settings
        if "num_dets" in outputs:
            dets = from_nms_outputs(outputs["num_dets"], outputs["boxes"], outputs["scores"], outputs["classes"])
            return [_filter(d, s.conf, s.classes, s.max_det) for d in dets]
        return postprocess(outputs["predictions"], s.conf, s.iou, s.max_det, s.classes)

    def _to_frames(self, det: Detections, rgb_info, ir_info) -> list[Detection]:
        box_rgb = rgb_info.to_source(det.boxes)
        if self.registration is not None:
            box_ir = self.registration.rgb_to_ir(box_rgb)
        elif ir_info is not None:
            box_ir = ir_info.to_source(det.boxes)
        else:
            box_ir = None
        return [Detection(int(c), self.names.get(int(c), str(int(c))), float(s), box_rgb[i].tolist(),
                          None if box_ir is None else box_ir[i].tolist())
                for i, (c, s) in enumerate(zip(det.classes, det.scores))]


def _filter(det: Detections, conf: float, classes: list[int] | None, max_det: int) -> Detections:
    """A graph's NMS output (best first) cut to the run's stricter settings: score, classes, count."""
    keep = det.scores >= conf
    if classes is not None:
        keep &= np.isin(det.classes, classes)
    index = np.flatnonzero(keep)[:max_det]
    return Detections(det.boxes[index], det.scores[index], det.classes[index])
