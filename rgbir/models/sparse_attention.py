"""Top-k sparse attention: the one function every MSC-style module calls.

Semantics (tie-inclusive; the ONNX op and the CUDA plugin implement exactly this):

    s      = q · kᵀ · scale                                   (B, h, N, N1)
    k_i    = max(N1 // k_divisors[i], 1)
    t_i    = the k_i-th largest entry of each row of s
    P_i    = softmax of s over the entries s >= t_i (others get probability 0)
    out    = (Σ_i weights[i] · P_i) · v                       (B, h, N, dv)

Upstream MSC keeps exactly k_i entries via topk + scatter; keeping every entry >= t_i is the same
except on exact ties, and it needs only one selection (the largest k_i) for all branches. Every
mask keeps the row maximum, so one ``exp(s - max)`` pass serves all softmaxes, and the weighted
probabilities are summed before a single product with v.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..ops import TOPK_SPARSE_ATTENTION


def topk_counts(n_keys: int, k_divisors: Sequence[int]) -> list[int]:
    """Number of keys each branch keeps: max(N1 // divisor, 1)."""
    if not k_divisors:
        raise ValueError("k_divisors must name at least one branch")
    if any(int(d) < 1 for d in k_divisors):
        raise ValueError(f"k_divisors must be positive integers, got {list(k_divisors)}")
    return [max(n_keys // int(d), 1) for d in k_divisors]


def topk_sparse_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    scale: float,
    k_divisors: Sequence[int],
    weights: Sequence[float | torch.Tensor],
) -> torch.Tensor:
    """Multi-branch tie-inclusive top-k attention; q (B,h,N,d), k (B,h,N1,d), v (B,h,N1,dv) → (B,h,N,dv).

    Scores, selection and normalisation run in float32 whatever the input dtype (as the plugin does);
    the result has q's dtype. Under ONNX export this is one ``rgbir::TopKSparseAttention`` node, whose
    ``weights`` attribute needs plain floats (see ``MSC.prepare_export``).
    """
    if len(weights) != len(k_divisors):
        raise ValueError(f"{len(k_divisors)} k_divisors but {len(weights)} weights")
    topk_counts(k.shape[-2], k_divisors)  # validates the divisors
    if torch.onnx.is_in_onnx_export():
        return _export_node(q, k, v, scale, k_divisors, weights)
    scores = (q.float() @ k.float().transpose(-2, -1)) * scale
    counts = topk_counts(scores.shape[-1], k_divisors)
    top = scores.topk(max(counts), dim=-1).values  # sorted, largest first
    e = (scores - top[..., :1]).exp()
    mixed = 0
    for count, w in zip(counts, weights):
        masked = e * (scores >= top[..., count - 1 : count])
        mixed = mixed + w * masked / masked.sum(-1, keepdim=True)
    return (mixed @ v.float()).to(q.dtype)


def _export_node(q, k, v, scale, k_divisors, weights):
    if any(isinstance(w, torch.Tensor) for w in weights):
        raise TypeError("export needs float branch weights: call prepare_export() on the module first")
    c = TOPK_SPARSE_ATTENTION
    attrs = {"scale": float(scale), "k_divisors": [int(d) for d in k_divisors], "weights": [float(w) for w in weights],
             "plugin_version": c.version, "plugin_namespace": c.domain}
    return torch.onnx.ops.symbolic(f"{c.domain}::{c.name}", (q, k, v), attrs=attrs, dtype=q.dtype,
                                   shape=(*q.shape[:-1], v.shape[-1]), version=int(c.version))


def topk_sparse_attention_reference(q, k, v, scale, k_divisors, weights):
    """Upstream MSC formulation (topk indices + scatter mask + one softmax per branch), for tests."""
    scores = (q @ k.transpose(-2, -1)) * scale
    out = 0
    for count, w in zip(topk_counts(scores.shape[-1], k_divisors), weights):
        mask = torch.zeros_like(scores, dtype=torch.bool)
        mask.scatter_(-1, scores.topk(count, dim=-1).indices, True)
        probs = scores.masked_fill(~mask, float("-inf")).softmax(-1)
        out = out + (probs @ v) * w
    return out
