/*
 * Tiled top-k sparse attention kernel (rgbir::TopKSparseAttention): plain C launcher with the same arguments and
 * return codes as rgbirTopKSparseAttentionLaunch (topkSparseAttentionKernel.h), callable from Python (ctypes).
 * It needs no workspace (workspace / workspace_bytes are accepted and ignored). Design: README.md in this folder.
 */
#pragma once

#include "topkSparseAttentionKernel.h"

#ifdef __cplusplus
extern "C" {
#endif

RGBIR_EXPORT int32_t rgbirTopKSparseAttentionTiledLaunch(void const* q, void const* k, void const* v, void* out,
    int32_t batch, int32_t heads, int32_t n, int32_t n1, int32_t d, int32_t dv, float scale, int32_t const* k_divisors,
    float const* weights, int32_t branches, int32_t dtype, void* workspace, size_t workspace_bytes, void* stream);

#ifdef __cplusplus
}
#endif
