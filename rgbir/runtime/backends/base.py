"""The backend interface."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from ...metadata import ModelMetadata


class Backend(ABC):
    """Runs a detector on preprocessed inputs. ``metadata`` describes inputs/outputs when the model has it."""

    name: str = "backend"
    metadata: ModelMetadata | None = None

    @property
    @abstractmethod
    def input_names(self) -> list[str]: ...

    @property
    @abstractmethod
    def output_names(self) -> list[str]: ...

    @abstractmethod
    def infer(self, rgb: np.ndarray, ir: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """One forward pass on float arrays normalised as the metadata says; returns outputs by name."""

    def feeds(self, rgb: np.ndarray, ir: np.ndarray | None) -> dict[str, np.ndarray]:
        """Map (rgb, ir) onto the model's named inputs, checking the IR input is given when needed."""
        if "ir" in self.input_names and ir is None:
            from ...errors import RgbirError

            raise RgbirError(f"{self.name}: this model needs an IR input")
        return {"rgb": rgb, "ir": ir} if "ir" in self.input_names else {"rgb": rgb}
