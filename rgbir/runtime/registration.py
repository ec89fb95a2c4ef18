"""IR → RGB alignment: a homography or affine map with its source and target sizes, from a calibration file.

``rgbir calibrate`` estimates it from point correspondences; the pipeline warps each IR frame into the RGB
frame's geometry before preprocessing, and maps boxes between the two cameras' pixel coordinates.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import yaml

from ..errors import RgbirError
from ..files import atomic_write

MIN_SPREAD = 0.01  # points whose spread across their main line is under 1% of the spread along it lie on one line
MAX_CONDITION = 1e12  # a transform this close to singular cannot be inverted reliably (boxes map back through it)
MAX_RMS_FRACTION = 0.05  # a fit off by more than 5% of the RGB frame's diagonal on average is not a registration


@dataclass
class Registration:
    matrix: np.ndarray  # 3x3 (homography) or 2x3 (affine), IR pixels → RGB pixels
    ir_size: tuple[int, int]  # (W, H) of the IR frames it was estimated for
    rgb_size: tuple[int, int]  # (W, H) of the RGB frames
    kind: str = "homography"
    reprojection_error: float | None = None

    @property
    def homography(self) -> np.ndarray:
        m = np.asarray(self.matrix, dtype=np.float64)
        return m if m.shape == (3, 3) else np.vstack([m, [0.0, 0.0, 1.0]])

    def warp_ir(self, ir: np.ndarray) -> np.ndarray:
        """An IR frame resampled into the RGB frame (same size and pixel grid)."""
        h, w = ir.shape[:2]
        if (w, h) != tuple(self.ir_size):
            raise RgbirError(f"registration was estimated for {self.ir_size[0]}x{self.ir_size[1]} IR frames, "
                             f"got {w}x{h}: recalibrate or fix the camera mode")
        return cv2.warpPerspective(ir, self.homography, tuple(self.rgb_size), flags=cv2.INTER_LINEAR)

    def rgb_to_ir(self, boxes: np.ndarray) -> np.ndarray:
        """xyxy boxes in RGB pixels → the enclosing xyxy boxes in IR pixels."""
        return _map_boxes(boxes, np.linalg.inv(self.homography))

    def save(self, path: str | Path) -> None:
        data = {"kind": self.kind, "matrix": np.asarray(self.matrix).tolist(), "ir_size": list(self.ir_size),
                "rgb_size": list(self.rgb_size), "reprojection_error": self.reprojection_error}
        atomic_write(path, yaml.safe_dump(data, sort_keys=False))

    @classmethod
    def load(cls, path: str | Path) -> Registration:
        try:
            data = yaml.safe_load(Path(path).read_text())
            matrix = np.asarray(data["matrix"], dtype=np.float64)
            if matrix.shape not in ((3, 3), (2, 3)):
                raise ValueError(f"matrix must be 3x3 or 2x3, got {matrix.shape}")
            if singular(matrix):
                raise ValueError("its matrix is singular; calibrate again from points spread over the frame")
            return cls(matrix, tuple(data["ir_size"]), tuple(data["rgb_size"]), data.get("kind", "homography"),
                       data.get("reprojection_error"))
        except FileNotFoundError as e:
            raise RgbirError(f"no registration file {path}") from e
        except (KeyError, TypeError, ValueError, yaml.YAMLError) as e:
            raise RgbirError(f"registration file {path} is invalid ({e}): it needs matrix, ir_size, rgb_size") from e


def singular(matrix: np.ndarray) -> bool:
    """True for a transform that cannot be inverted reliably (boxes map back through its inverse)."""
    square = np.vstack([matrix, [0.0, 0.0, 1.0]])[:3]
    return not np.isfinite(square).all() or np.linalg.cond(square) > MAX_CONDITION


def _map_boxes(boxes: np.ndarray, h: np.ndarray) -> np.ndarray:
    if len(boxes) == 0:
        return boxes.reshape(0, 4).astype(np.float32)
    x1, y1, x2, y2 = boxes.T
    corners = np.stack([np.stack([x1, y1], -1), np.stack([x2, y1], -1), np.stack([x1, y2], -1),
                        np.stack([x2, y2], -1)], 1).astype(np.float64)  # (K, 4, 2)
    mapped = cv2.perspectiveTransform(corners.reshape(-1, 1, 2), h).reshape(-1, 4, 2)
    return np.concatenate([mapped.min(1), mapped.max(1)], 1).astype(np.float32)


def estimate(ir_points: np.ndarray, rgb_points: np.ndarray, ir_size, rgb_size, kind: str = "homography"
             ) -> Registration:
    """Fit IR → RGB from matched points (N >= 4 for a homography, >= 3 for affine); RMS reprojection error."""
    ir_points, rgb_points = (np.asarray(p, dtype=np.float64).reshape(-1, 2) for p in (ir_points, rgb_points))
    needed = 4 if kind == "homography" else 3
    if len(ir_points) != len(rgb_points) or len(ir_points) < needed:
        raise RgbirError(f"a {kind} needs at least {needed} matched point pairs, got {len(ir_points)} IR and "
                         f"{len(rgb_points)} RGB points")
    for side, points in (("IR", ir_points), ("RGB", rgb_points)):
        spread = np.linalg.svd(points - points.mean(0), compute_uv=False)  # along and across their main line
        if spread[-1] <= MIN_SPREAD * max(spread[0], 1e-9):
            raise RgbirError(f"the {side} points lie on one line (or on one spot): no {kind} follows from them; pick "
                             "points spread over the frame, at least three not in a line")
    if kind == "homography":
        matrix, _ = cv2.findHomography(ir_points, rgb_points, 0)
    elif kind == "affine":
        matrix, _ = cv2.estimateAffine2D(ir_points.astype(np.float32), rgb_points.astype(np.float32),
                                         method=cv2.LMEDS)
    else:
        raise RgbirError(f"registration kind must be 'homography' or 'affine', got '{kind}'")
    if matrix is None or singular(matrix):
        raise RgbirError("the points are degenerate (collinear or repeated): no transform fits them")
    reg = Registration(matrix, tuple(ir_size), tuple(rgb_size), kind)
    projected = cv2.perspectiveTransform(ir_points.reshape(-1, 1, 2), reg.homography).reshape(-1, 2)
    reg.reprojection_error = float(np.sqrt(((projected - rgb_points) ** 2).sum(1).mean()))
    diagonal = float(np.hypot(*rgb_size))
    if reg.reprojection_error > MAX_RMS_FRACTION * diagonal:
        raise RgbirError(f"no {kind} fits these points: the RMS reprojection error is {reg.reprojection_error:.1f} "
                         f"px, {reg.reprojection_error / diagonal:.0%} of the RGB frame's diagonal; check the point "
                         "pairs (an IR point matched to the wrong RGB point?) or try the other --kind")
    return reg


def load_points(path: str | Path) -> tuple[np.ndarray, np.ndarray, tuple, tuple, str]:
    """Point correspondences file (YAML): ir_size, rgb_size, optional kind, and 'pairs' of [[x_ir, y_ir],
    [x_rgb, y_rgb]]."""
    try:
        data = yaml.safe_load(Path(path).read_text())
        pairs = np.asarray(data["pairs"], dtype=np.float64)
        if pairs.ndim != 3 or pairs.shape[1:] != (2, 2):
            raise ValueError("each entry of 'pairs' must be [[x_ir, y_ir], [x_rgb, y_rgb]]")
        return pairs[:, 0], pairs[:, 1], tuple(data["ir_size"]), tuple(data["rgb_size"]), data.get("kind",
                                                                                                    "homography")
    except FileNotFoundError as e:
        raise RgbirError(f"no points file {path}") from e
    except (KeyError, TypeError, ValueError, yaml.YAMLError) as e:
        raise RgbirError(f"points file {path} is invalid ({e}): it needs ir_size, rgb_size and pairs") from e
