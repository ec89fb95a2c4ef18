"""Everything TensorRT, torch-free (as Polygraphy keeps ``backend/trt/`` together): engine builds from rgbir ONNX
exports for TensorRT 10.x and 11.x (``builder``, ``plan``, ``options``, ``calibration``, ``progress``), the engine
sidecar (``sidecar``), the cuda-python layer (``cuda``) and the TensorRT module and plugin registry
(``registry``)."""

from .builder import BuildResult, build_engine
from .options import BatchProfile, EngineOptions
from .plan import BuildPlan, TensorRTFeatures, plan_build

__all__ = ["BatchProfile", "EngineOptions", "BuildPlan", "BuildResult", "TensorRTFeatures", "build_engine",
           "plan_build"]
