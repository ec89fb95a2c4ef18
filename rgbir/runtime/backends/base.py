"""The backend interface: declared input/output tensors and ``infer(rgb, ir) -> {output name: array}``."""

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

    name: str = "backend"
    metadata: ModelMetadata | None = None
    device_preprocess: bool = False  # True: takes 8-bit frames through infer_frames and letterboxes them itself
    max_batch: int | None = None  # the largest batch one call takes (an engine's profile); None: no limit
    warnings: tuple[str, ...] | list[str] = ()  # what the user should know (e.g. an engine built on another GPU)

    _inputs: list[TensorSpec] = []  # set by the constructor, or ``inputs``/``outputs`` overridden
    _outputs: list[TensorSpec] = []

    @property
    def inputs(self) -> list[TensorSpec]:
        return self._inputs

    @property
    def outputs(self) -> list[TensorSpec]:
        return self._outputs

    @abstractmethod
    def infer(self, rgb: np.ndarray, ir: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """One forward pass on float arrays normalised as the metadata says; returns outputs by name."""

    @property
    def input_names(self) -> list[str]:
        return [s.name for s in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [s.name for s in self.outputs]

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

    def infer_frames(self, rgb: list[np.ndarray], ir: list[np.ndarray] | None = None):
        """Frames in, (outputs, LetterboxInfo per input per frame) out: backends with ``device_preprocess``."""
        raise RgbirError(f"the {self.name} backend does not preprocess frames itself")

    def close(self) -> None:
        """Release device memory and handles (backends holding none need not override)."""
