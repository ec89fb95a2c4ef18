/*
 * Argument checks shared by the two C launchers (rgbirTopKSparseAttentionLaunch and ...TiledLaunch): both
 * reject bad arguments with the same codes before touching the GPU, and hand the kernels the same branch table.
 */
#pragma once

#include "topkSparseAttentionKernel.h"

#include <stddef.h>
#include <stdint.h>

namespace rgbir::topk
{
//! Per-branch constants: k_i = max(N1 // divisor_i, 1) kept scores and the branch's output weight.
struct Branches
{
    int32_t count;
    int32_t k[RGBIR_TOPK_MAX_BRANCHES];
    float weight[RGBIR_TOPK_MAX_BRANCHES];
};

//! Validates a launch and fills `branches`; RGBIR_TOPK_OK or the launcher's negative return code.
inline int32_t checkLaunch(int32_t batch, int32_t heads, int32_t n, int32_t n1, int32_t d, int32_t dv,
    int32_t const* kDivisors, float const* weights, int32_t count, int32_t dtype, bool workspaceOk, Branches& branches)
{
    if (batch < 1 || heads < 1 || n < 1 || n1 < 1 || d < 1 || dv < 1 || d > RGBIR_TOPK_MAX_HEAD_DIM
        || dv > RGBIR_TOPK_MAX_HEAD_DIM)
        return RGBIR_TOPK_BAD_SHAPE;
    if (count < 1 || count > RGBIR_TOPK_MAX_BRANCHES || !kDivisors || !weights)
        return RGBIR_TOPK_BAD_BRANCHES;
    if (dtype != 0 && dtype != 1)
        return RGBIR_TOPK_BAD_DTYPE;
    if (!workspaceOk)
        return RGBIR_TOPK_SMALL_WORKSPACE;
    branches.count = count;
    for (int32_t i = 0; i < count; ++i)
    {
        if (kDivisors[i] < 1)
            return RGBIR_TOPK_BAD_BRANCHES;
        int32_t const kept = n1 / kDivisors[i];
        branches.k[i] = kept > 1 ? kept : 1;
        branches.weight[i] = weights[i];
    }
    return RGBIR_TOPK_OK;
}
} // namespace rgbir::topk
