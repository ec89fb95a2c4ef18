/*
 * TopKSparseAttention on the CPU: the kernel ONNX Runtime runs in place of the op's standard-op function body (the
 * body sorts and masks every row through generic ops, at ~25x the cost of dense attention). Same semantics as the
 * CUDA kernels (README.md in this folder); plain C entry point for ctypes. Built by `rgbir plugins compile-cpu` (or
 * on first use) with the host C++ compiler, no CUDA or TensorRT needed.
 */
#pragma once

#include <stdint.h>

#include "../common/rgbirExport.h"
#include "topkSparseAttentionKernel.h" /* limits and return codes, shared with the CUDA launchers */

#ifdef __cplusplus
extern "C" {
#endif

/*
 * q (B,H,N,D), k (B,H,N1,D), v (B,H,N1,DV), out (B,H,N,DV): contiguous float32 host arrays. k_divisors / weights:
 * `branches` entries. `threads` worker threads (1 or more; the calling thread is one of them). Returns RGBIR_TOPK_OK
 * or one of the negative codes of topkSparseAttentionKernel.h.
 */
RGBIR_EXPORT int32_t rgbirTopKSparseAttentionCpu(float const* q, float const* k, float const* v, float* out,
    int32_t batch, int32_t heads, int32_t n, int32_t n1, int32_t d, int32_t dv, float scale,
    int32_t const* k_divisors, float const* weights, int32_t branches, int32_t threads);

#ifdef __cplusplus
}
#endif
