"""The fused CUDA kernel as a PyTorch op, ``torch.ops.rgbir.topk_sparse_attention``, and the choice of attention
implementation for a model's MSC modules.

The op calls the plugin library's C launcher (``rgbirTopKSparseAttentionLaunch``) on CUDA tensors, on the
current stream and with the workspace from PyTorch's allocator, so it runs inside CUDA graphs; on other devices,
and for shapes or dtypes the kernel does not take, it computes ``topk_sparse_attention`` (same semantics). Its
fake implementation lets ``torch.compile`` and ``torch.export`` trace it. Inference only: no autograd formula.

Implementations (``--attention``): ``kernel`` (the op), ``reference`` (rgbir's tie-inclusive PyTorch function),
``upstream`` (YOLOMM's topk + scatter formulation), ``auto`` (the kernel on CUDA when the library is found,
else the reference).
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Callable, Sequence

import torch

from ..errors import RgbirError
from .sparse_attention import topk_counts, topk_sparse_attention, topk_sparse_attention_reference

IMPLEMENTATIONS = ("auto", "kernel", "reference", "upstream")
MAX_HEAD_DIM, MAX_BRANCHES = 256, 8  # what the kernel takes (its README)
KERNEL_DTYPES = {torch.float32: 0, torch.float16: 1}


@functools.cache
def launcher() -> ctypes.CDLL:
    """The plugin library's C launcher, loaded once (``RgbirError`` naming the fix when there is none)."""
    from ..plugins.loader import find_library

    lib = ctypes.CDLL(str(find_library()))
    lib.rgbirTopKSparseAttentionWorkspaceSize.restype = ctypes.c_size_t
    lib.rgbirTopKSparseAttentionWorkspaceSize.argtypes = [ctypes.c_int32]
    lib.rgbirTopKSparseAttentionLaunch.restype = ctypes.c_int32
    lib.rgbirTopKSparseAttentionLaunch.argtypes = (
        [ctypes.c_void_p] * 4 + [ctypes.c_int32] * 6 + [ctypes.c_float, ctypes.POINTER(ctypes.c_int32),
         ctypes.POINTER(ctypes.c_float), ctypes.c_int32, ctypes.c_int32, ctypes.c_void_p, ctypes.c_size_t,
         ctypes.c_void_p])
    return lib


def kernel_takes(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, k_divisors: Sequence[int]) -> bool:
    """Whether the fused kernel handles these inputs (else the op computes the reference)."""
    return (q.is_cuda and q.dtype in KERNEL_DTYPES and k.dtype == v.dtype == q.dtype and q.dim() == 4
            and max(q.shape[-1], v.shape[-1]) <= MAX_HEAD_DIM and len(k_divisors) <= MAX_BRANCHES)


@torch.library.custom_op("rgbir::topk_sparse_attention", mutates_args=())
def topk_sparse_attention_op(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float,
                             k_divisors: list[int], weights: list[float]) -> torch.Tensor:
    """Devices without the kernel: the PyTorch formulation of the same semantics."""
    return topk_sparse_attention(q, k, v, scale, k_divisors, weights).clone()  # never an alias of an input


@topk_sparse_attention_op.register_kernel("cuda")
def _on_cuda(q, k, v, scale, k_divisors, weights):
    if not kernel_takes(q, k, v, k_divisors):
        return topk_sparse_attention(q, k, v, scale, k_divisors, weights).clone()
    lib = launcher()
    q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
    (b, h, n, d), n1, dv = q.shape, k.shape[-2], v.shape[-1]
    out = q.new_empty((b, h, n, dv))
    size = lib.rgbirTopKSparseAttentionWorkspaceSize(n1)
    workspace = torch.empty(max(size, 1), dtype=torch.uint8, device=q.device)
    status = lib.rgbirTopKSparseAttentionLaunch(
        q.data_ptr(), k.data_ptr(), v.data_ptr(), out.data_ptr(), b, h, n, n1, d, dv, scale,
        (ctypes.c_int32 * len(k_divisors))(*k_divisors), (ctypes.c_float * len(weights))(*weights),
        len(k_divisors), KERNEL_DTYPES[q.dtype], workspace.data_ptr(), size,
        torch.cuda.current_stream(q.device).cuda_stream)
    if status != 0:
        raise RgbirError(f"the top-k attention kernel refused q {tuple(q.shape)}, k {tuple(k.shape)}, v "
                         f"{tuple(v.shape)} (code {status}): run with --attention reference")
    return out


@topk_sparse_attention_op.register_fake
def _shape(q, k, v, scale, k_divisors, weights):
    return q.new_empty((*q.shape[:-1], v.shape[-1]))


def kernel_attention(q, k, v, scale: float, k_divisors: Sequence[int], weights: Sequence[float]) -> torch.Tensor:
    """MSC's attention through the op; under ONNX export it is the exported node, as with the reference."""
    if torch.onnx.is_in_onnx_export():
        return topk_sparse_attention(q, k, v, scale, k_divisors, weights)
    topk_counts(k.shape[-2], k_divisors)  # the same one-line errors as the reference
    return torch.ops.rgbir.topk_sparse_attention(q, k, v, float(scale), [int(d) for d in k_divisors],
                                                 [float(w) for w in weights])


def attention_function(name: str, device: torch.device | str = "cpu") -> Callable:
    """The attention callable for ``--attention name`` on ``device`` (``auto``: the kernel where it can run)."""
    if name not in IMPLEMENTATIONS:
        raise RgbirError(f"--attention '{name}' is not one of {', '.join(IMPLEMENTATIONS)}")
    on_cuda = torch.device(device).type == "cuda"
    if name == "auto":
        if not on_cuda:
            return topk_sparse_attention
        try:
            launcher()
        except (RgbirError, OSError):
            return topk_sparse_attention
        return kernel_attention
    if name == "kernel":
        if not on_cuda:
            raise RgbirError("--attention kernel runs on CUDA only: add --device cuda, or use --attention reference")
        launcher()  # no library: the error says how to compile it
        return kernel_attention
    return topk_sparse_attention if name == "reference" else topk_sparse_attention_reference


def set_attention(model: torch.nn.Module, name: str, device: torch.device | str = "cpu") -> int:
    """Make every MSC-style module of ``model`` use ``name``'s implementation; returns how many it changed. The
    kernel takes its branch weights as numbers, so they are frozen (``prepare_export``): inference only."""
    function = attention_function(name, device)
    changed = 0
    for module in model.modules():
        if hasattr(module, "attention") and hasattr(module, "prepare_export"):
            if function is kernel_attention:
                module.prepare_export()
            module.attention = function
            changed += 1
    return changed
