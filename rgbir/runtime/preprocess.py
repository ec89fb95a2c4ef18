"""Frame → network input exactly as training did: letterbox (upstream rounding and pad value 114), channel
order per modality, /255 normalisation, 1- or 3-channel IR. numpy + OpenCV only."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..metadata import InputSpec, ModelMetadata


@dataclass(frozen=True)
class LetterboxInfo:
    """How a frame was mapped into the network input: scale, then padding offsets (network pixels)."""

    scale: float
    pad_left: int
    pad_top: int
    source_shape: tuple[int, int]  # (H, W) of the original frame

    def to_source(self, boxes: np.ndarray) -> np.ndarray:
        """xyxy boxes in network-input pixels → original-frame pixels (clipped to the frame)."""
        out = boxes.astype(np.float32).copy()
        out[..., [0, 2]] = (out[..., [0, 2]] - self.pad_left) / self.scale
        out[..., [1, 3]] = (out[..., [1, 3]] - self.pad_top) / self.scale
        h, w = self.source_shape
        out[..., [0, 2]] = out[..., [0, 2]].clip(0, w)
        out[..., [1, 3]] = out[..., [1, 3]].clip(0, h)
        return out


def letterbox_geometry(source_shape: tuple[int, int], size: tuple[int, int],
                       scaleup: bool = True) -> tuple[tuple[int, int], LetterboxInfo]:
    """Where a frame of ``source_shape`` (H, W) goes in a ``size`` input: (resized H, W) and its LetterboxInfo,
    with ultralytics' rounding (shared by the CPU letterbox and the GPU kernel)."""
    h, w = source_shape
    new_h, new_w = size
    r = min(new_h / h, new_w / w)
    if not scaleup:
        r = min(r, 1.0)
    unpad_w, unpad_h = int(round(w * r)), int(round(h * r))
    dw, dh = (new_w - unpad_w) / 2, (new_h - unpad_h) / 2
    top, left = int(round(dh - 0.1)), int(round(dw - 0.1))
    return (unpad_h, unpad_w), LetterboxInfo(r, left, top, (h, w))


def letterbox(image: np.ndarray, size: tuple[int, int], pad_value: int = 114,
              scaleup: bool = True) -> tuple[np.ndarray, LetterboxInfo]:
    """Resize keeping aspect ratio and pad to ``size`` (H, W), centred, with ultralytics' rounding."""
    (unpad_h, unpad_w), info = letterbox_geometry(image.shape[:2], size, scaleup)
    if image.shape[:2] != (unpad_h, unpad_w):
        image = cv2.resize(image, (unpad_w, unpad_h), interpolation=cv2.INTER_LINEAR)
    top, left = info.pad_top, info.pad_left
    bottom, right = size[0] - unpad_h - top, size[1] - unpad_w - left
    value = (pad_value,) * (image.shape[2] if image.ndim == 3 else 1)
    image = cv2.copyMakeBorder(image, top, bottom, left, right, cv2.BORDER_CONSTANT, value=value)
    return image, info


def colour_frame(frame: np.ndarray) -> np.ndarray:
    """A visible camera's frame as the 8-bit BGR (or grey) the model was trained on: 16-bit values scaled to 8 bits
    (65535 → 255, as OpenCV reads a 16-bit image in colour), an alpha channel dropped."""
    if frame.dtype == np.uint16:
        frame = cv2.convertScaleAbs(frame, alpha=255 / 65535)
    if frame.ndim == 3 and frame.shape[2] == 4:
        frame = cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR)
    elif frame.ndim == 3 and frame.shape[2] == 2:  # grey + alpha
        frame = frame[..., 0]
    return frame


def to_input(image: np.ndarray, spec: InputSpec, dtype=np.float32, scale: float = 1 / 255) -> np.ndarray:
    """A letterboxed OpenCV frame (BGR colour or grey) → (1, C, H, W) in the order the model expects."""
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    if spec.channels == 1:
        if image.ndim == 3:
            image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    elif image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)  # as YOLOMM expands grey IR
    # one C++ pass: HWC → NCHW, channel swap, scale to float32
    blob = cv2.dnn.blobFromImage(image, scalefactor=scale, swapRB=spec.channels == 3 and spec.channel_order == "RGB")
    return blob.astype(dtype, copy=False)


def preprocess_pair(rgb: np.ndarray, ir: np.ndarray | None, meta: ModelMetadata, dtype=np.float32):
    """Both frames of a pair → network inputs plus the letterbox of each (boxes map back per modality)."""
    specs = {s.name: s for s in meta.inputs}
    pad, scale = meta.letterbox.get("pad_value", 114), meta.normalization.get("scale", 1 / 255)
    rgb_boxed, rgb_info = letterbox(rgb, meta.imgsz, pad)
    out = [to_input(rgb_boxed, specs["rgb"], dtype, scale)]
    infos = [rgb_info]
    if "ir" in specs and ir is not None:
        ir_boxed, ir_info = letterbox(ir, meta.imgsz, pad)
        out.append(to_input(ir_boxed, specs["ir"], dtype, scale))
        infos.append(ir_info)
    return out, infos


class HostPreprocessor:
    """Frames → float inputs on the CPU (``preprocess_pair``), stacked into one batch per input for
    ``backend.infer``; a fixed-batch model gets blank inputs for the pairs a batch lacks."""

    def __init__(self, meta: ModelMetadata):
        self.meta = meta

    def pair(self, rgb: np.ndarray, ir: np.ndarray | None) -> tuple[list[np.ndarray], list[LetterboxInfo]]:
        return preprocess_pair(rgb, ir, self.meta, self.meta.input_dtype)

    def run(self, backend, columns: list[list[np.ndarray]]) -> dict[str, np.ndarray]:
        """``columns``: per input, the prepared arrays of each pair."""
        rgb, *ir = [self._stack(column) for column in columns]
        return backend.infer(rgb, ir[0] if ir else None)

    def _stack(self, arrays: list[np.ndarray]) -> np.ndarray:
        out = np.concatenate(arrays)
        fixed = self.meta.batch
        if fixed and len(out) < fixed:
            out = np.concatenate([out, np.zeros((fixed - len(out), *out.shape[1:]), out.dtype)])
        return out


class FramePreprocessor:
    """For backends that letterbox 8-bit frames on their device (TensorRT with GPU preprocessing): the frames
    are handed over as they are, with the geometry the CPU path would use (boxes map back identically)."""

    def __init__(self, meta: ModelMetadata):
        self.meta = meta

    def pair(self, rgb: np.ndarray, ir: np.ndarray | None) -> tuple[list[np.ndarray], list[LetterboxInfo]]:
        frames = [rgb] + ([ir] if ir is not None else [])
        return frames, [letterbox_geometry(f.shape[:2], self.meta.imgsz)[1] for f in frames]

    def run(self, backend, columns: list[list[np.ndarray]]) -> dict[str, np.ndarray]:
        rgb, *ir = columns
        outputs, _ = backend.infer_frames(rgb, ir[0] if ir else None)
        return outputs
