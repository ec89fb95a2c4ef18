/*
 * Fused top-k sparse attention (rgbir::TopKSparseAttention): plain C launcher, callable from the TensorRT
 * plugin and from Python (ctypes) for testing. Semantics: README.md in this folder.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "../common/rgbirExport.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Limits of this implementation. */
#define RGBIR_TOPK_MAX_BRANCHES 8
#define RGBIR_TOPK_MAX_HEAD_DIM 256

/* Return codes: 0 success, < 0 invalid arguments, > 0 a cudaError_t from the launch. */
#define RGBIR_TOPK_OK 0
#define RGBIR_TOPK_BAD_SHAPE -1
#define RGBIR_TOPK_BAD_BRANCHES -2
#define RGBIR_TOPK_BAD_DTYPE -3
#define RGBIR_TOPK_SMALL_WORKSPACE -4

/* dtype: 0 = float32, 1 = float16 (q, k, v and out share it; accumulation is float32). */

/* Bytes of scratch the launcher needs for a key count n1 (0 while the row of scores fits in shared memory). */
RGBIR_EXPORT size_t rgbirTopKSparseAttentionWorkspaceSize(int32_t n1);

/*
 * q (B,H,N,D), k (B,H,N1,D), v (B,H,N1,DV), out (B,H,N,DV), contiguous, device pointers.
 * k_divisors / weights: host arrays of `branches` entries. No allocation and no synchronisation: safe
 * inside CUDA-graph capture. `stream` is a cudaStream_t (NULL: the legacy default stream).
 */
RGBIR_EXPORT int32_t rgbirTopKSparseAttentionLaunch(void const* q, void const* k, void const* v, void* out, int32_t batch,
    int32_t heads, int32_t n, int32_t n1, int32_t d, int32_t dv, float scale, int32_t const* k_divisors,
    float const* weights, int32_t branches, int32_t dtype, void* workspace, size_t workspace_bytes, void* stream);

#ifdef __cplusplus
}
#endif
