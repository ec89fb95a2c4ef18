"""The backend interface, as Polygraphy's runners: ``infer(rgb, ir)`` checks and converts the feeds against the
declared input tensors, times the call and hands the feeds to the subclass's ``_infer``; backends are context
managers that release their device memory on exit; each says how its inputs are prepared (``preprocessor``)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from ...errors import RgbirError
from ...metadata import ModelMetadata


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int | None, ...]  # None: dynamic (batch)
    dtype: np.dtype


class Backend(ABC):
    """Runs a detector on preprocessed inputs. ``metadata`` describes inputs/outputs when the model has it."""

    name = "backend"

    def __init__(self, metadata: ModelMetadata | None = None, inputs: list[TensorSpec] | None = None,
                 outputs: list[TensorSpec] | None = None, max_batch: int | None = None):
        self.metadata = metadata
        self._inputs, self._outputs = list(inputs or []), list(outputs or [])
        self.max_batch = max_batch  # the largest batch one call takes (an engine's profile); None: no limit
        self.warnings: list[str] = []  # what the user should know (e.g. an engine built on another GPU)

    @property
    def inputs(self) -> list[TensorSpec]:
        return self._inputs

    @property
    def outputs(self) -> list[TensorSpec]:
        return self._outputs

    @property
    def input_names(self) -> list[str]:
        return [s.name for s in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [s.name for s in self.outputs]

    def infer(self, rgb: np.ndarray, ir: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """One forward pass on float arrays normalised as the metadata says; returns outputs by name."""
        return self._infer(self.feeds(rgb, ir))

    @abstractmethod
    def _infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The forward pass on checked feeds (by input name, contiguous, in each input's dtype)."""

    def feeds(self, rgb: np.ndarray, ir: np.ndarray | None) -> dict[str, np.ndarray]:
        """(rgb, ir) as the model's named inputs, contiguous and in each input's dtype; checks IR is given."""
        given = {"rgb": rgb, "ir": ir}
        if "ir" in self.input_names and ir is None:
            raise RgbirError(f"{self.name}: this model needs an IR input")
        for s in self.inputs:
            shape = np.shape(given[s.name])
            if len(shape) != len(s.shape) or any(e is not None and e != g for e, g in zip(s.shape[1:], shape[1:])):
                takes = "x".join("N" if d is None else str(d) for d in s.shape)
                raise RgbirError(f"{self.name}: input '{s.name}' has shape {'x'.join(map(str, shape))}; the model "
                                 f"takes {takes} (preprocess with the model's metadata)")
        if ir is not None and "ir" in self.input_names and len(ir) != len(rgb):
            raise RgbirError(f"{self.name}: {len(rgb)} RGB inputs but {len(ir)} IR inputs in one batch")
        return {s.name: np.ascontiguousarray(given[s.name], dtype=s.dtype) for s in self.inputs}

    @property
    def takes_frames(self) -> bool:
        """Whether this backend letterboxes 8-bit frames on its device itself (``infer_frames``)."""
        return False

    def preprocessor(self):
        """How frames become this backend's inputs: letterboxed on the CPU unless the backend does it itself."""
        from ..preprocess import FramePreprocessor, HostPreprocessor

        return FramePreprocessor(self.metadata) if self.takes_frames else HostPreprocessor(self.metadata)

    def frame_columns(self, rgb: list[np.ndarray], ir: list[np.ndarray] | None) -> dict[str, list[np.ndarray]]:
        """``infer_frames``' frames by input name, with one IR frame per RGB frame where the model takes IR."""
        frames = {"rgb": list(rgb)}
        if "ir" in self.input_names:
            if ir is None or len(ir) != len(frames["rgb"]):
                raise RgbirError(f"{self.name}: this model needs one IR frame per RGB frame")
            frames["ir"] = list(ir)
        return frames

    def close(self) -> None:
        """Release device memory and handles (backends holding none need not override)."""

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
