"""Contracts that the exported graph and the runtimes share, described once (torch-free): the custom ONNX ops
(export, the ONNX function bodies, the static check and the TensorRT plugins read their identity and attribute
types from here) and the class offset of class-aware NMS (in-graph and numpy NMS must agree on it)."""

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

    def matches(self, node) -> bool:
        """Whether an ONNX node (``NodeProto``) is this op: its domain and op type."""
        return node.domain == self.domain and node.op_type == self.name


TOPK_SPARSE_ATTENTION = OpContract()

MAX_WH = 7680.0  # class offset for batched, class-aware NMS: larger than any box coordinate
