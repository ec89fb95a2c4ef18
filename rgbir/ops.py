"""Custom ONNX ops that rgbir exports, described once (torch-free): export, the ONNX function bodies, the
static check and the TensorRT plugins all read their identity and attribute types from here."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class OpContract:
    """The exported node's identity and attribute types: shared by export, the ONNX function and the plugin."""

    domain: str = "rgbir"
    name: str = "TopKSparseAttention"
    version: str = "1"
    # attribute name -> ONNX attribute type; the TensorRT plugin's creator fields carry exactly these
    attributes: tuple[tuple[str, str], ...] = (("scale", "FLOAT"), ("k_divisors", "INTS"), ("weights", "FLOATS"))


TOPK_SPARSE_ATTENTION = OpContract()
