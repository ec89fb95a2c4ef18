/*
 * Fused top-k sparse attention kernel. One thread block per query row (batch, head, n):
 *   1. scores s[j] = scale * q·k[j] for all N1 keys, kept in shared memory (or in the workspace for long rows);
 *   2. per branch, the k_i-th largest score by a 4-pass radix select on order-preserving 32-bit keys;
 *   3. one exp(s - max) pass feeding every branch's normaliser Z_i (entries with s >= t_i, ties included);
 *   4. w[j] = exp(s[j] - max) * sum_i weights[i] [s[j] >= t_i] / Z_i, then out = sum_j w[j] v[j] (float32).
 */
#include "topkSparseAttentionKernel.h"

#include "topkLaunchArgs.h"

#include <cuda_fp16.h>
#include <cuda_runtime.h>

namespace
{
constexpr int kThreads = 256;
constexpr int kBins = 256;
constexpr int kScratchBlocks = 1024;        // persistent blocks when rows do not fit in shared memory
constexpr size_t kSharedBudget = 48 * 1024; // no opt-in needed on any architecture

using rgbir::topk::Branches;

__device__ __forceinline__ float toFloat(float x)
{
    return x;
}
__device__ __forceinline__ float toFloat(__half x)
{
    return __half2float(x);
}
__device__ __forceinline__ void store(float* p, float x)
{
    *p = x;
}
__device__ __forceinline__ void store(__half* p, float x)
{
    *p = __float2half(x);
}

// Monotone map float -> uint32: a > b  <=>  key(a) > key(b).
__device__ __forceinline__ unsigned orderKey(float f)
{
    unsigned u = __float_as_uint(f);
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

template <typename Op>
__device__ float blockReduce(float value, float* shared, Op op)
{
    for (int offset = 16; offset > 0; offset >>= 1)
        value = op(value, __shfl_xor_sync(0xffffffffu, value, offset));
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    __syncthreads();
    if (lane == 0)
        shared[warp] = value;
    __syncthreads();
    value = shared[0];
    for (int w = 1; w < kThreads / 32; ++w)
        value = op(value, shared[w]);
    return value;
}

// Key of the k-th largest score of the row (k >= 1), by radix select over 8-bit digits.
__device__ unsigned selectKth(float const* scores, int n1, int k, unsigned* hist, unsigned* state)
{
    unsigned prefix = 0, mask = 0;
    for (int shift = 24; shift >= 0; shift -= 8)
    {
        for (int b = threadIdx.x; b < kBins; b += kThreads)
            hist[b] = 0;
        __syncthreads();
        for (int j = threadIdx.x; j < n1; j += kThreads)
        {
            unsigned key = orderKey(scores[j]);
            if ((key & mask) == prefix)
                atomicAdd(&hist[(key >> shift) & 0xffu], 1u);
        }
        __syncthreads();
        if (threadIdx.x == 0)
        {
            unsigned above = 0;
            for (int b = kBins - 1; b >= 0; --b)
            {
                if (above + hist[b] >= static_cast<unsigned>(k))
                {
                    state[0] = prefix | (static_cast<unsigned>(b) << shift);
                    state[1] = k - above;
                    break;
                }
                above += hist[b];
            }
        }
        __syncthreads();
        prefix = state[0];
        k = static_cast<int>(state[1]);
        mask |= 0xffu << shift;
    }
    return prefix;
}

template <typename T>
__global__ void __launch_bounds__(kThreads) topkSparseAttentionKernel(T const* __restrict__ q, T const* __restrict__ k,
    T const* __restrict__ v, T* __restrict__ out, int rows, int n, int n1, int d, int dv, float scale,
    Branches branches, float* __restrict__ scratch)
{
    extern __shared__ float shared[];
    float* qRow = shared;                                            // d
    float* reduce = qRow + RGBIR_TOPK_MAX_HEAD_DIM;                  // kThreads (partials, warp results)
    unsigned* hist = reinterpret_cast<unsigned*>(reduce + kThreads); // kBins
    unsigned* state = hist + kBins;                                  // 2
    float* scores
        = scratch ? scratch + static_cast<size_t>(blockIdx.x) * n1 : reinterpret_cast<float*>(state + 2); // n1

    for (int row = blockIdx.x; row < rows; row += gridDim.x)
    {
        int const head = row / n;
        T const* kHead = k + static_cast<size_t>(head) * n1 * d;
        T const* vHead = v + static_cast<size_t>(head) * n1 * dv;
        for (int c = threadIdx.x; c < d; c += kThreads)
            qRow[c] = toFloat(q[static_cast<size_t>(row) * d + c]) * scale;
        __syncthreads();

        float localMax = -INFINITY;
        for (int j = threadIdx.x; j < n1; j += kThreads)
        {
            T const* key = kHead + static_cast<size_t>(j) * d;
            float s = 0.f;
            for (int c = 0; c < d; ++c)
                s += qRow[c] * toFloat(key[c]);
            scores[j] = s;
            localMax = fmaxf(localMax, s);
        }
        float const rowMax = blockReduce(localMax, reduce, [](float a, float b) { return fmaxf(a, b); });

        unsigned threshold[RGBIR_TOPK_MAX_BRANCHES];
        for (int i = 0; i < branches.count; ++i)
            threshold[i] = selectKth(scores, n1, branches.k[i], hist, state);

        float partial[RGBIR_TOPK_MAX_BRANCHES];
        for (int i = 0; i < branches.count; ++i)
            partial[i] = 0.f;
        for (int j = threadIdx.x; j < n1; j += kThreads)
        {
            unsigned key = orderKey(scores[j]);
            float e = __expf(scores[j] - rowMax);
            for (int i = 0; i < branches.count; ++i)
                partial[i] += key >= threshold[i] ? e : 0.f;
        }
        float coef[RGBIR_TOPK_MAX_BRANCHES];
        for (int i = 0; i < branches.count; ++i)
            coef[i] = branches.weight[i] / blockReduce(partial[i], reduce, [](float a, float b) { return a + b; });

        __syncthreads();
        for (int j = threadIdx.x; j < n1; j += kThreads)
        {
            unsigned key = orderKey(scores[j]);
            float w = 0.f;
            for (int i = 0; i < branches.count; ++i)
                w += key >= threshold[i] ? coef[i] : 0.f;
            scores[j] = w == 0.f ? 0.f : w * __expf(scores[j] - rowMax);
        }
        __syncthreads();

        // out[c] = sum_j scores[j] v[j][c]: `groups` thread groups split the keys, threads of a group the channels
        int const groups = kThreads / dv > 0 ? kThreads / dv : 1;
        int const c = threadIdx.x % dv, g = threadIdx.x / dv;
        if (g < groups)
        {
            float acc = 0.f;
            for (int j = g; j < n1; j += groups)
            {
                float w = scores[j];
                if (w != 0.f)
                    acc += w * toFloat(vHead[static_cast<size_t>(j) * dv + c]);
            }
            reduce[g * dv + c] = acc;
        }
        __syncthreads();
        if (threadIdx.x < dv)
        {
            float sum = 0.f;
            for (int gg = 0; gg < groups; ++gg)
                sum += reduce[gg * dv + threadIdx.x];
            store(out + static_cast<size_t>(row) * dv + threadIdx.x, sum);
        }
        __syncthreads();
    }
}

size_t fixedSharedBytes()
{
    return (RGBIR_TOPK_MAX_HEAD_DIM + kThreads + kBins + 2) * sizeof(float);
}

bool rowsInShared(int n1)
{
    return fixedSharedBytes() + static_cast<size_t>(n1) * sizeof(float) <= kSharedBudget;
}

template <typename T>
int32_t launch(void const* q, void const* k, void const* v, void* out, int rows, int n, int n1, int d, int dv,
    float scale, Branches const& branches, void* workspace, cudaStream_t stream)
{
    bool const inShared = rowsInShared(n1);
    float* scratch = inShared ? nullptr : static_cast<float*>(workspace);
    int const grid = inShared ? rows : (rows < kScratchBlocks ? rows : kScratchBlocks);
    size_t const sharedBytes = fixedSharedBytes() + (inShared ? static_cast<size_t>(n1) * sizeof(float) : 0);
    topkSparseAttentionKernel<T><<<grid, kThreads, sharedBytes, stream>>>(static_cast<T const*>(q),
        static_cast<T const*>(k), static_cast<T const*>(v), static_cast<T*>(out), rows, n, n1, d, dv, scale, branches,
        scratch);
    return static_cast<int32_t>(cudaGetLastError());
}
} // namespace

extern "C" size_t rgbirTopKSparseAttentionWorkspaceSize(int32_t n1)
{
    return n1 <= 0 || rowsInShared(n1) ? 0 : static_cast<size_t>(kScratchBlocks) * n1 * sizeof(float);
}

extern "C" int32_t rgbirTopKSparseAttentionLaunch(void const* q, void const* k, void const* v, void* out, int32_t batch,
    int32_t heads, int32_t n, int32_t n1, int32_t d, int32_t dv, float scale, int32_t const* k_divisors,
    float const* weights, int32_t branches, int32_t dtype, void* workspace, size_t workspace_bytes, void* stream)
{
    bool const workspaceOk
        = workspace_bytes >= rgbirTopKSparseAttentionWorkspaceSize(n1) && (rowsInShared(n1) || workspace);
    Branches b{};
    int32_t const status
        = rgbir::topk::checkLaunch(batch, heads, n, n1, d, dv, k_divisors, weights, branches, dtype, workspaceOk, b);
    if (status != RGBIR_TOPK_OK)
        return status;
    int const rows = batch * heads * n;
    auto s = static_cast<cudaStream_t>(stream);
    return dtype == 0 ? launch<float>(q, k, v, out, rows, n, n1, d, dv, scale, b, workspace, s)
                      : launch<__half>(q, k, v, out, rows, n, n1, d, dv, scale, b, workspace, s);
}
