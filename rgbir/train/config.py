"""Training settings, torch-free: the command line checks them before torch loads."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import RgbirError


@dataclass
class TrainConfig:
    epochs: int = 30
    batch: int = 8
    imgsz: tuple[int, int] = (256, 320)
    lr: float = 2e-3
    weight_decay: float = 5e-4
    warmup_steps: int = 50
    ema_decay: float = 0.999
    flip: float = 0.5
    brightness: float = 0.3  # RGB gain jitter: ×(1 ± brightness)
    seed: int = 0

    def validate(self) -> None:
        """Each setting in its range, named by its flag."""
        for flag, value in (("--epochs", self.epochs), ("--batch", self.batch), ("warmup_steps", self.warmup_steps)):
            if value < 1:
                raise RgbirError(f"{flag} {value} must be >= 1")
        if not self.lr > 0:
            raise RgbirError(f"--lr {self.lr:g} must be > 0")
