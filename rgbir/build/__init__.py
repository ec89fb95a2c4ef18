"""TensorRT engines from rgbir ONNX exports (TensorRT 10.x and 11.x): ``rgbir build`` and ``build_engine``."""

from .engine import BuildResult, build_engine
from .options import BatchProfile, EngineOptions
from .plan import BuildPlan, TensorRTFeatures, plan_build

__all__ = ["BatchProfile", "EngineOptions", "BuildPlan", "BuildResult", "TensorRTFeatures", "build_engine",
           "plan_build"]
