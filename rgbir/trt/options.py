"""What ``rgbir build`` is asked to make, checked against the ONNX model before TensorRT is touched."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import RgbirError
from ..metadata import FLOAT_PRECISIONS, ModelMetadata, check_choice
from ..options import CommandLineOptions, option
from .registry import EDITIONS


def compute_capabilities(text: str) -> list[str]:
    """'7.5,8.6' → ['7.5', '8.6']: TensorRT-RTX's target compute capabilities."""
    values = [v.strip() for v in str(text).split(",") if v.strip()]
    if not values or not all(v.count(".") == 1 and v.replace(".", "").isdigit() for v in values):
        raise ValueError(f"'{text}' is not a list of compute capabilities such as 7.5 or 8.6,12.0")
    return values

PRECISIONS = ("auto", *FLOAT_PRECISIONS, "int8")


@dataclass(frozen=True)
class BatchProfile:
    """Optimisation profile for the batch dimension of a dynamic-batch model (TensorRT tunes for ``opt``)."""

    min: int = 1
    opt: int = 1
    max: int = 1

    @classmethod
    def parse(cls, text: str) -> BatchProfile:
        """'4' → 1,4,4 (tuned for 4); '1,2,8' → min 1, opt 2, max 8."""
        try:
            values = [int(v) for v in text.replace("x", ",").split(",") if v.strip()]
        except ValueError:
            values = []
        if len(values) == 1:
            values = [1, values[0], values[0]]
        if len(values) != 3:
            raise RgbirError(f"batch profile '{text}' is not N or MIN,OPT,MAX (e.g. --batch 4 or --batch 1,2,8)")
        return cls(*values)

    def validate(self) -> None:
        if not 1 <= self.min <= self.opt <= self.max:
            raise RgbirError(f"batch profile {self.min},{self.opt},{self.max} must satisfy 1 <= min <= opt <= max")


@dataclass
class EngineOptions(CommandLineOptions):
    precision: str = option("auto", choices=PRECISIONS, help="auto: as the ONNX is (strongly typed). fp16/int8 use "
                            "TensorRT 10's weak-typing flags; TensorRT 11 needs an fp16 export (rgbir export "
                            "--precision fp16) or a Q/DQ model for INT8")
    batch: BatchProfile | None = option(None, parse=BatchProfile.parse, metavar="N|MIN,OPT,MAX", shown="1",
                                        help="optimisation profile of a dynamic-batch model")
    workspace_mib: int | None = option(None, flag="--workspace", parse=int, metavar="MIB",
                                       help="limit on TensorRT's scratch memory for tactics (default: the GPU's)")
    timing_cache: Path | None = option(None, parse=Path, metavar="FILE",
                                       help="timing cache, read if present and updated: repeated builds skip "
                                            "tactic timing")
    dla_core: int | None = option(None, parse=int, help="Jetson: run on this DLA core, falling back to the GPU")
    version_compatible: bool = option(False, help="loadable by later TensorRT of this and the next major version "
                                                  "(10 → 11); embeds the plugin library")
    hardware_compatible: bool = option(False, help="loadable on any discrete Ampere or newer GPU (not on Jetson)")
    calibration_data: str | None = option(None, flag="--calib", metavar="DATA",
                                          help="INT8 calibration images (TensorRT 10): data.yaml or RGB_DIR,IR_DIR")
    calibration_cache: Path | None = option(None, flag="--calib-cache", parse=Path, metavar="FILE",
                                            help="INT8 calibration cache: reused when present, else written")
    calibration_images: int = option(512, flag="--calib-images", parse=int, help="at most this many calibration "
                                                                                 "pairs, spread over the set")
    plugin_library: Path | None = option(None, flag="--plugin", parse=Path, metavar="PATH",
                                         shown="the search path", help="rgbir plugin library")
    optimization_level: int | None = option(None, flag="--opt-level", parse=int,
                                            help="builder optimisation level 0-5 (TensorRT's default 3)")
    edition: str = option("auto", flag="--tensorrt", choices=EDITIONS,
                          help="which TensorRT builds: standard (the full TensorRT, on the GPU the engine is for), "
                               "rtx (TensorRT-RTX: on any machine, a CPU included, for RTX GPUs), auto (standard "
                               "when installed, else rtx)")
    compute_capabilities: list[str] | None = option(None, flag="--compute-capability", parse=compute_capabilities,
                                                    metavar="CC[,CC]", shown="TensorRT-RTX's own: 8.0, 8.6, 8.9, "
                                                    "12.0 and later", help="TensorRT-RTX: the GPUs the engine "
                                                    "targets (7.5 for Turing)")

    def to_dict(self) -> dict:
        d = asdict(self)
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in d.items()}

    def validate(self, meta: ModelMetadata) -> None:
        """Reject options that cannot work for this model, whatever TensorRT version builds it."""
        check_choice(self.precision, PRECISIONS, "precision")
        check_choice(self.edition, EDITIONS, "TensorRT edition")
        if self.precision == "fp32" and meta.precision != "fp32":
            raise RgbirError(f"the ONNX model is {meta.precision}: an fp32 engine needs an fp32 export "
                             "('rgbir export --precision fp32')")
        if self.batch is not None:
            self.batch.validate()
            if meta.batch is not None and (self.batch.min, self.batch.max) != (meta.batch, meta.batch):
                raise RgbirError(f"the ONNX model has a fixed batch of {meta.batch}, so --batch cannot be "
                                 f"{self.batch.min},{self.batch.opt},{self.batch.max}: export with --batch dynamic")
        if self.workspace_mib is not None and self.workspace_mib <= 0:
            raise RgbirError(f"workspace {self.workspace_mib} MiB must be positive")
        if self.dla_core is not None:
            if self.dla_core < 0:
                raise RgbirError(f"DLA core {self.dla_core} must be 0 or 1")
            if self.precision == "fp32" or (self.precision == "auto" and meta.precision == "fp32"):
                raise RgbirError("DLA runs FP16 or INT8 only: add --precision fp16 (TensorRT 10) or build an fp16 "
                                 "export ('rgbir export --precision fp16')")
            if self.hardware_compatible:
                raise RgbirError("a hardware-compatible engine cannot use DLA: drop --dla-core or "
                                 "--hardware-compatible")
            if meta.batch is None and self.batch is not None and not self.batch.min == self.batch.opt == self.batch.max:
                raise RgbirError("DLA has no dynamic shapes: give one batch size (--batch N,N,N), or export a "
                                 "fixed batch")
        if self.precision == "int8" and self.calibration_data is None and not (
                self.calibration_cache and Path(self.calibration_cache).is_file()):
            raise RgbirError("INT8 needs calibration images (--calib data.yaml or --calib RGB_DIR,IR_DIR) or an "
                             "existing --calib-cache")
        if self.calibration_data is not None and self.precision != "int8":
            raise RgbirError("--calib only applies to --precision int8")
        if self.calibration_images < 1:
            raise RgbirError(f"--calib-images {self.calibration_images} must be at least 1")
        if self.optimization_level is not None and not 0 <= self.optimization_level <= 5:
            raise RgbirError(f"optimisation level {self.optimization_level} is not in 0..5")

    def profile_batch(self, meta: ModelMetadata) -> BatchProfile | None:
        """The batch profile to build: None for a fixed-batch model, else the option or 1,1,1."""
        if meta.batch is not None:
            return None
        return self.batch or BatchProfile()
